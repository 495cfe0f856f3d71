"""
The certificates of a cluster: a CA, a key and certificate per node, and
the certificate directory the C{clustersync-certs} command
(L{clustersync.cli.certs}) and C{make cluster} (L{ensureDevCerts},
L{devClusterSettings}) keep.  EC P-256 keys, made with C{cryptography}.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from typing import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from clustersync.links.security import validServerId
from clustersync.links.tls import certificateIdentity

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "DEFAULT_HOSTS",
    "makeCA",
    "makeNodeCertificate",
    "writeKey",
    "writeCertificate",
    "initCertDir",
    "addNode",
    "ensureDevCerts",
    "devClusterSettings",
]

#: File names inside a certificate directory.
CA_CERT = "ca.pem"
CA_KEY = "ca.key"

#: Host names and addresses every node certificate carries by default, so
#: that dialing a peer on loopback passes the host-name check.
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")

_ID_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
)


def _fileSafe(serverId: str) -> bool:
    return bool(serverId) and set(serverId) <= _ID_CHARS and not serverId.startswith(".")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def makeCA(
    name: str = "clustersync cluster CA", days: int = 3650
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """
    Create a cluster CA: a new EC P-256 key and a self-signed certificate
    valid for C{days}.

    @return: C{(key, certificate)}.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _generalName(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def makeNodeCertificate(
    caKey,
    caCert: x509.Certificate,
    serverId: str,
    hosts: Iterable[str] = DEFAULT_HOSTS,
    days: int = 825,
    notBefore: datetime.datetime | None = None,
    notAfter: datetime.datetime | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """
    Create a node's key and certificate, signed by the cluster CA.

    The subject common name is C{serverId} (the identity checked against
    the HELLO); the subject alternative names are C{serverId} (as a DNS
    name) and every one of C{hosts} (DNS names or IP addresses), which the
    dialing side checks against the host it dialed.  The certificate is good
    for both TLS server and client authentication.

    @param notBefore: override the start of validity (tests).
    @param notAfter: override the end of validity (tests: an expired one).
    @raise ValueError: C{serverId} is not a valid id or is longer than the
        64 characters a common name may hold.
    """
    if not validServerId(serverId) or len(serverId) > 64:
        raise ValueError(f"{serverId!r} cannot name a certificate (at most 64 characters, no spaces)")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    names: list[x509.GeneralName] = []
    for host in (serverId, *hosts):
        name = _generalName(host)
        if name not in names:
            names.append(name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, serverId)]))
        .issuer_name(caCert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(notBefore or now - datetime.timedelta(minutes=5))
        .not_valid_after(notAfter or now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=True, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(caKey.public_key()), critical=False
        )
        .sign(caKey, hashes.SHA256())
    )
    return key, cert


def _writePrivate(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def writeKey(path: str, key) -> None:
    """Write C{key} as unencrypted PKCS#8 PEM, readable by its owner only."""
    _writePrivate(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def writeCertificate(path: str, cert: x509.Certificate) -> None:
    """Write C{cert} as PEM."""
    with open(path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


def _loadCA(directory: str):
    with open(os.path.join(directory, CA_KEY), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    with open(os.path.join(directory, CA_CERT), "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    return key, cert


def _paths(directory: str, serverId: str) -> dict[str, str]:
    return {
        "tls_ca": os.path.join(directory, CA_CERT),
        "tls_cert": os.path.join(directory, serverId + ".pem"),
        "tls_key": os.path.join(directory, serverId + ".key"),
    }


def addNode(
    directory: str, serverId: str, hosts: Iterable[str] = DEFAULT_HOSTS, days: int = 825
) -> dict[str, str]:
    """
    Create (or replace) the key and certificate of C{serverId} in
    C{directory}, signed by the CA found there.

    @return: the settings for that node: C{{"tls_ca": ..., "tls_cert": ...,
        "tls_key": ...}} (absolute paths).
    @raise ValueError: C{serverId} cannot be used as a file name.
    """
    if not _fileSafe(serverId):
        raise ValueError(f"{serverId!r}: use letters, digits, '-', '_' and '.' only")
    directory = os.path.abspath(directory)
    caKey, caCert = _loadCA(directory)
    key, cert = makeNodeCertificate(caKey, caCert, serverId, hosts, days)
    paths = _paths(directory, serverId)
    writeKey(paths["tls_key"], key)
    writeCertificate(paths["tls_cert"], cert)
    return paths


def initCertDir(
    directory: str,
    serverIds: Iterable[str],
    hosts: dict[str, list[str]] | None = None,
    days: int = 825,
    force: bool = False,
) -> dict[str, dict[str, str]]:
    """
    Create a cluster CA in C{directory} (created if needed) and a key and
    certificate for each of C{serverIds}.

    @param hosts: serverId -> host names / addresses for its certificate
        (default L{DEFAULT_HOSTS}).
    @param force: replace an existing CA (otherwise refuse).
    @return: serverId -> its C{tls_*} settings.
    @raise FileExistsError: a CA exists and not C{force}.
    """
    directory = os.path.abspath(directory)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    caPath = os.path.join(directory, CA_KEY)
    if os.path.exists(caPath) and not force:
        raise FileExistsError(f"{caPath} exists (use --force to replace the CA)")
    for serverId in serverIds:
        if not _fileSafe(serverId):
            raise ValueError(f"{serverId!r}: use letters, digits, '-', '_' and '.' only")
    key, cert = makeCA()
    writeKey(caPath, key)
    writeCertificate(os.path.join(directory, CA_CERT), cert)
    hosts = hosts or {}
    return {
        sid: addNode(directory, sid, hosts.get(sid) or DEFAULT_HOSTS, days) for sid in serverIds
    }


def _usable(paths: dict[str, str], serverId: str, caCert: x509.Certificate) -> bool:
    """Whether the node files in C{paths} exist, match the CA and are valid for a day."""
    try:
        with open(paths["tls_cert"], "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(paths["tls_key"], "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
    except (OSError, ValueError):
        return False
    return (
        cert.issuer == caCert.subject
        and certificateIdentity(cert) == serverId
        and cert.not_valid_after_utc > _now() + datetime.timedelta(days=1)
        and key.public_key().public_numbers() == cert.public_key().public_numbers()
    )


def ensureDevCerts(directory: str, serverIds: Iterable[str]) -> dict[str, dict[str, str]]:
    """
    Make sure C{directory} holds a cluster CA and a usable key and
    certificate (for C{localhost}, C{127.0.0.1} and C{::1}) for each of
    C{serverIds}; create what is missing or stale, keep the rest.

    Meant for C{make cluster}: each node then runs with
    C{listen = "ssl:PORT:interface=127.0.0.1"} plus the returned settings,
    and dials its peers as C{127.0.0.1:PORT}.

    @return: serverId -> C{{"tls_ca": path, "tls_cert": path, "tls_key":
        path}} (TOML keys; the L{NodeConfig} attributes are C{tlsCa},
        C{tlsCert}, C{tlsKey}).
    """
    directory = os.path.abspath(directory)
    serverIds = list(serverIds)
    try:
        _, caCert = _loadCA(directory)
        if caCert.not_valid_after_utc <= _now() + datetime.timedelta(days=1):
            raise ValueError("CA expires")
    except (OSError, ValueError):
        return initCertDir(directory, serverIds, force=True)
    result = {}
    for serverId in serverIds:
        paths = _paths(directory, serverId)
        if not _usable(paths, serverId, caCert):
            paths = addNode(directory, serverId)
        result[serverId] = paths
    return result


def devClusterSettings(directory: str, nodes) -> dict[str, dict]:
    """
    The TLS settings of the local C{make cluster} nodes, certificates made
    by L{ensureDevCerts} in C{directory}.

    @param nodes: serverId -> a tuple whose first item is the node's peer
        port (L{clustersync.cli.devcluster.NODES}), or just an iterable of
        serverIds.
    @return: serverId -> TOML settings to add to that node: C{tls_ca},
        C{tls_cert}, C{tls_key} and, when its peer port is known,
        C{listen = "ssl:PORT:interface=127.0.0.1"}.  Peers stay
        C{127.0.0.1:PORT} (the certificates name 127.0.0.1 and localhost).
    """
    ports = dict(nodes) if isinstance(nodes, dict) else {name: None for name in nodes}
    result = {}
    for serverId, paths in ensureDevCerts(directory, ports).items():
        settings = dict(paths)
        port = ports[serverId]
        if isinstance(port, (tuple, list)):
            port = port[0]
        if port is not None:
            settings["listen"] = f"ssl:{int(port)}:interface=127.0.0.1"
        result[serverId] = settings
    return result
