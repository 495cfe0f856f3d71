"""
Mutual TLS for peer links, the plain-TCP allow-list, and the certificates
that make both easy.

Four modes, chosen by the configuration (see C{docs/security.md}):

  - B{tls}: C{tls_ca}, C{tls_cert} and C{tls_key} are set.  The peer port
    (C{listen}, normally an C{ssl:} endpoint string) speaks TLS and requires
    a client certificate signed by the cluster CA; peers are dialed over
    TLS with L{optionsForClientTLS} (the configured host is checked against
    the server certificate) and this node's own certificate.  On every TLS
    link the C{serverId} of the peer's HELLO must equal the identity (the
    subject common name) of its certificate.
  - B{allow-list}: C{plain_peers} lists C{serverId@host[:port]} entries.  A
    link that is not TLS is accepted only from one of those hosts and only
    for the serverId listed with that host.  Entries with a port are dialed
    over plain TCP.  With TLS, plain inbound links use their own port,
    C{plain_listen}.
  - B{closed} (the default): neither is set: every link, inbound or
    dialed, is refused (a loud warning at startup says how to configure).
  - B{open}: neither is set and C{open_links} is: every link is plain and
    unauthenticated (a loud warning at startup).  Only for a throw-away
    development cluster on a trusted network.

The certificate tools (L{makeCA}, L{makeNodeCertificate}, L{initCertDir},
L{ensureDevCerts}, and the C{clustersync-certs} command, L{main}) use
C{cryptography} with EC P-256 keys.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from typing import Iterable

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet import ssl
from twisted.logger import Logger
from zope.interface import implementer
from twisted.internet.interfaces import IStreamServerEndpoint

from clustersync.errors import ConfigError

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "PlainPeer",
    "TLSMaterial",
    "LinkSecurity",
    "TLSServerEndpoint",
    "makeCA",
    "makeNodeCertificate",
    "initCertDir",
    "addNode",
    "ensureDevCerts",
    "devClusterSettings",
    "loadTLSMaterial",
    "certificateIdentity",
    "peerIdentity",
    "parsePlainPeer",
    "checkConfig",
    "peerServerEndpoint",
    "validServerId",
    "main",
]

_log = Logger()

#: File names inside a certificate directory.
CA_CERT = "ca.pem"
CA_KEY = "ca.key"

#: Host names and addresses every node certificate carries by default, so
#: that dialing a peer on loopback passes the host-name check.
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")

_ID_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
)


def validServerId(serverId) -> bool:
    """
    Whether C{serverId} may name a peer: a non-empty string of at most 255
    characters without whitespace or control characters (the rule of the
    C{server_id} setting).
    """
    return (
        isinstance(serverId, str)
        and 0 < len(serverId) <= 255
        and serverId.isprintable()
        and not any(c.isspace() for c in serverId)
    )


def _fileSafe(serverId: str) -> bool:
    return bool(serverId) and set(serverId) <= _ID_CHARS and not serverId.startswith(".")


# Certificate material ----------------------------------------------------


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


# Loading and identities ----------------------------------------------------


def certificateIdentity(cert: x509.Certificate) -> str | None:
    """The serverId a certificate names: its subject common name, or C{None}."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        return None
    value = names[0].value
    return value if isinstance(value, str) else None


def peerIdentity(transport) -> str | None:
    """
    The serverId named by the certificate the peer presented on
    C{transport} (a TLS transport), or C{None} if it presented none.
    """
    getPeerCertificate = getattr(transport, "getPeerCertificate", None)
    if getPeerCertificate is None:
        return None
    try:
        peer = getPeerCertificate()
    except Exception:
        return None
    if peer is None:
        return None
    return certificateIdentity(peer.to_cryptography())


@attrs.frozen
class TLSMaterial:
    """
    The loaded TLS files of a node.

    @ivar ca: the cluster CA (L{ssl.Certificate}), the only trust root.
    @ivar own: this node's L{ssl.PrivateCertificate}.
    @ivar identity: the serverId this node's certificate names.
    """

    ca: ssl.Certificate
    own: ssl.PrivateCertificate
    identity: str | None

    def serverOptions(self) -> ssl.CertificateOptions:
        """
        Context options of the peer port: present our certificate, require
        one from the peer, signed by the cluster CA.
        """
        return ssl.CertificateOptions(
            privateKey=self.own.privateKey.original,
            certificate=self.own.original,
            trustRoot=self.ca,  # implies verify and requireCertificate
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        )

    def clientOptions(self, host: str):
        """
        Connection creator for dialing C{host}: its certificate must be
        signed by the cluster CA and valid for C{host}; ours is presented.
        """
        return ssl.optionsForClientTLS(
            host,
            trustRoot=self.ca,
            clientCertificate=self.own,
            extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_2},
        )


def loadTLSMaterial(caPath: str, certPath: str, keyPath: str) -> TLSMaterial:
    """
    Read the CA certificate, this node's certificate and its key.

    @raise ConfigError: a file cannot be read or parsed (naming the key), or
        the key does not match the certificate, or the certificate was not
        issued by the CA.
    """
    def read(key, path):
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise ConfigError(key, f"cannot read {path}: {e.strerror}") from None

    caData, certData, keyData = read("tls_ca", caPath), read("tls_cert", certPath), read("tls_key", keyPath)
    try:
        caCrypto = x509.load_pem_x509_certificate(caData)
        ca = ssl.Certificate.loadPEM(caData)
    except Exception as e:
        raise ConfigError("tls_ca", f"{caPath} is not a PEM certificate: {e}") from None
    try:
        certCrypto = x509.load_pem_x509_certificate(certData)
    except Exception as e:
        raise ConfigError("tls_cert", f"{certPath} is not a PEM certificate: {e}") from None
    try:
        keyCrypto = serialization.load_pem_private_key(keyData, None)
    except Exception as e:
        raise ConfigError("tls_key", f"{keyPath} is not an unencrypted PEM key: {e}") from None
    if keyCrypto.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != certCrypto.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise ConfigError("tls_key", f"{keyPath} does not match the certificate {certPath}")
    if certCrypto.issuer != caCrypto.subject:
        raise ConfigError("tls_cert", f"{certPath} was not issued by the CA in {caPath}")
    own = ssl.PrivateCertificate.loadPEM(certData + b"\n" + keyData)
    return TLSMaterial(ca, own, certificateIdentity(certCrypto))


# Plain-TCP allow-list ------------------------------------------------------


def _normalHost(host) -> str | None:
    """An IP address in its canonical text form (IPv4-mapped IPv6 unwrapped)."""
    try:
        ip = ipaddress.ip_address(str(host).strip("[]"))
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


@attrs.frozen
class PlainPeer:
    """
    One C{plain_peers} entry: C{serverId} may link over plain TCP from
    C{host}; if C{port} is set, this node also dials C{host:port} in plain.
    """

    serverId: str
    host: str
    port: int | None = None

    @property
    def address(self) -> str | None:
        """C{host:port} to dial, or C{None} for an accept-only entry."""
        if self.port is None:
            return None
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parsePlainPeer(key: str, text) -> PlainPeer:
    """
    Parse one C{serverId@host[:port]} entry (host an IP address; an IPv6
    host with a port is written in brackets: C{legacy@[::1]:7001}).

    @raise ConfigError: naming C{key}.
    """
    if not isinstance(text, str) or "@" not in text:
        raise ConfigError(key, f"expected serverId@host[:port], got {text!r}")
    serverId, _, rest = text.partition("@")
    if not validServerId(serverId):
        raise ConfigError(key, f"bad serverId in {text!r}")
    port = None
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        if tail:
            if not tail.startswith(":"):
                raise ConfigError(key, f"expected serverId@[host]:port, got {text!r}")
            port = tail[1:]
    elif rest.count(":") == 1:
        host, _, port = rest.partition(":")
    else:
        host = rest
    normal = _normalHost(host)
    if normal is None:
        raise ConfigError(key, f"host in {text!r} must be an IP address (it is matched against the source address)")
    if port is not None:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(key, f"bad port in {text!r}")
        port = int(port)
    return PlainPeer(serverId, normal, port)


# The policy ----------------------------------------------------------------

TLS = "tls"
ALLOW_LIST = "allow-list"
OPEN = "open"
CLOSED = "closed"


def _hostOf(link) -> str | None:
    transport = getattr(link, "transport", None)
    if transport is None:
        return None
    try:
        peer = transport.getPeer()
    except Exception:
        return None
    return _normalHost(getattr(peer, "host", ""))


class LinkSecurity:
    """
    Who may link, decided per link: at connection (the source address of a
    plain link) and at HELLO (the claimed serverId against the certificate,
    or against the allow-list).

    @ivar mode: L{TLS}, L{ALLOW_LIST}, L{OPEN} (only with C{open_links}) or
        L{CLOSED} (nothing configured: every link is refused).
    @ivar tls: the L{TLSMaterial}, or C{None}.
    @ivar plainPeers: the L{PlainPeer} entries.
    """

    def __init__(
        self,
        tls: TLSMaterial | None = None,
        plainPeers: Iterable[PlainPeer] = (),
        openLinks: bool = False,
    ) -> None:
        self.tls = tls
        self.plainPeers = list(plainPeers)
        self._plainHosts = {p.host for p in self.plainPeers}
        self._plainIds: dict[str, set[str]] = {}
        for p in self.plainPeers:
            self._plainIds.setdefault(p.serverId, set()).add(p.host)
        self._plainAddresses = {p.address for p in self.plainPeers if p.address}
        if tls is not None:
            self.mode = TLS
        elif self.plainPeers:
            self.mode = ALLOW_LIST
        elif openLinks:
            self.mode = OPEN
        else:
            self.mode = CLOSED

    @classmethod
    def fromConfig(cls, config) -> "LinkSecurity":
        """
        Build the policy of a L{NodeConfig}.

        @raise ConfigError: see L{checkConfig}.
        """
        checkConfig(config)
        tls = None
        if getattr(config, "tlsCa", None):
            tls = loadTLSMaterial(config.tlsCa, config.tlsCert, config.tlsKey)
            if tls.identity != config.serverId:
                raise ConfigError(
                    "tls_cert",
                    f"{config.tlsCert} is for {tls.identity!r}, not for this node "
                    f"({config.serverId!r}); peers would refuse it",
                )
        peers = [parsePlainPeer("plain_peers", p) for p in getattr(config, "plainPeers", ())]
        return cls(tls, peers, getattr(config, "openLinks", False))

    # Dialing ---------------------------------------------------------------

    def plainDialAddresses(self) -> list[str]:
        """The C{host:port} of every plain peer to dial."""
        return [p.address for p in self.plainPeers if p.address]

    def dialsPlain(self, address: str) -> bool:
        """Whether C{address} is dialed over plain TCP."""
        return self.tls is None or address in self._plainAddresses

    def clientOptions(self, host: str):
        """The TLS connection creator for dialing C{host} (TLS mode only)."""
        return self.tls.clientOptions(host)

    # Checks ----------------------------------------------------------------

    def checkConnection(self, link) -> tuple[str, str] | None:
        """
        A connection opened: refuse a plain one from a host that is not on
        the allow-list (unless the node is open).

        @return: C{None}, or C{(counter, reason)} to close the link with.
        """
        if link.tls or self.mode == OPEN:
            return None
        if self.mode == CLOSED:
            return (
                "links_disabled",
                "peer links need TLS (tls_ca, tls_cert, tls_key) or a plain_peers "
                "allow-list (open_links accepts anyone, for development only)",
            )
        host = _hostOf(link)
        if host not in self._plainHosts:
            return ("plain_source_refused", f"plain TCP from {host} is not allowed (plain_peers)")
        return None

    def checkIdentity(self, node, link, hello) -> tuple[str, str] | None:
        """
        The peer on C{link} sent C{hello}: may it be who it says it is?

          - the serverId must be a valid id, and equal the HELLO C{origin};
          - on a TLS link it must equal the identity in the peer's
            certificate;
          - on a plain link (unless the node is open) it must be listed in
            C{plain_peers} with the link's source address;
          - in open mode, a link claiming a serverId already linked in the
            other direction from another host is refused (no hijack by
            tie-break); links of the same direction are settled by
            L{ClusterNode.linkEstablished} (the older link wins).

        @return: C{None}, or C{(counter, reason)} to close the link with.
        """
        serverId = hello.payload.serverId
        if not validServerId(serverId):
            return ("bad_server_id", f"HELLO serverId {serverId[:80]!r} is not a valid id")
        if hello.origin != serverId:
            return (
                "hello_origin_mismatch",
                f"HELLO origin {hello.origin[:80]!r} differs from its serverId {serverId!r}",
            )
        host = _hostOf(link)
        if link.tls:
            identity = peerIdentity(link.transport)
            if identity is None:
                return ("no_certificate", f"{serverId!r} presented no usable certificate")
            if identity != serverId:
                return (
                    "identity_mismatch",
                    f"HELLO says {serverId!r} but the certificate is for {identity!r}",
                )
        elif self.mode != OPEN:
            hosts = self._plainIds.get(serverId)
            if not hosts:
                return ("plain_not_allowed", f"{serverId!r} may not link over plain TCP")
            if host not in hosts:
                return ("plain_not_allowed", f"{serverId!r} may not link over plain TCP from {host}")
        else:
            current = node.linkFor(serverId)
            if (
                current is not None
                and current is not link
                and current.direction != link.direction
                and _hostOf(current) != host
            ):
                return (
                    "identity_conflict",
                    f"{serverId!r} is already linked from {current.peerAddress}",
                )
        return None

    def startupWarnings(self, config) -> list[str]:
        """The loud warnings to log when the node starts with this policy."""
        warnings = []
        if self.mode == CLOSED:
            warnings.append(
                "PEER LINKS ARE DISABLED: no tls_ca/tls_cert/tls_key and no plain_peers, so "
                "every peer link (inbound or dialed) is refused. Set up TLS "
                "(clustersync-certs init), list plain-TCP peers in plain_peers, or, for a "
                "throw-away development cluster only, set open_links. See docs/security.md."
            )
        elif self.mode == OPEN:
            warnings.append(
                "PEER LINKS ARE NOT AUTHENTICATED: no tls_ca/tls_cert/tls_key and no "
                f"plain_peers; anyone who can reach {config.listen} can join the cluster, "
                "read every message and change its state. See docs/security.md."
            )
        elif self.plainPeers:
            warnings.append(
                "PLAIN TCP peer links allowed for "
                + ", ".join(f"{p.serverId}@{p.host}" for p in self.plainPeers)
                + ": unencrypted, authenticated only by source address. See docs/security.md."
            )
        return warnings


def checkConfig(config) -> None:
    """
    Check the TLS and plain-TCP settings of a L{NodeConfig} together.

    @raise ConfigError: C{tls_ca}, C{tls_cert}, C{tls_key} not all set or
        all unset; an C{ssl:} C{listen} without them, or carrying its own
        key options; a bad C{plain_peers} entry; C{plain_listen} that is an
        C{ssl:} string; a peer both in C{peers} and C{plain_peers}.
    """
    tlsKeys = {
        "tls_ca": getattr(config, "tlsCa", None),
        "tls_cert": getattr(config, "tlsCert", None),
        "tls_key": getattr(config, "tlsKey", None),
    }
    given = [k for k, v in tlsKeys.items() if v]
    if given and len(given) != 3:
        missing = [k for k in tlsKeys if k not in given]
        raise ConfigError(missing[0], f"required with {', '.join(given)}")
    listen = config.listen or ""
    if listen.startswith("ssl:"):
        if not given:
            raise ConfigError("listen", "an ssl: peer port needs tls_ca, tls_cert and tls_key")
        for option in ("privateKey=", "certKey=", "extraCertChain=", "caCertsDir="):
            if option in listen:
                raise ConfigError("listen", f"{option[:-1]} is not used: set tls_cert/tls_key/tls_ca")
    plainListen = getattr(config, "plainListen", None) or ""
    if plainListen.startswith("ssl:"):
        raise ConfigError("plain_listen", "the plain peer port cannot be ssl:")
    plain = [parsePlainPeer("plain_peers", p) for p in getattr(config, "plainPeers", ())]
    if plainListen and not plain:
        raise ConfigError("plain_listen", "needs plain_peers (the allow-list)")
    for p in plain:
        if p.address and p.address in config.peers:
            raise ConfigError("plain_peers", f"{p.address} is also in peers (dialed over TLS)")


# Listening -----------------------------------------------------------------


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint:
    """
    Listens on another endpoint and speaks TLS (server side) on each
    accepted connection.
    """

    def __init__(self, wrapped, options) -> None:
        self._wrapped = wrapped
        self._options = options

    def listen(self, factory):
        """Listen with C{factory} wrapped in a L{TLSMemoryBIOFactory}."""
        from twisted.protocols.tls import TLSMemoryBIOFactory

        return self._wrapped.listen(TLSMemoryBIOFactory(self._options, False, factory))


def peerServerEndpoint(reactor, description: str, security: LinkSecurity | None):
    """
    The listening endpoint of the peer port C{description}.

    With TLS configured the port always speaks mutual TLS: C{ssl:PORT:...}
    is read as C{tcp:PORT:...}, and any other endpoint type is wrapped.
    """
    from twisted.internet.endpoints import serverFromString

    if security is None or security.tls is None:
        return serverFromString(reactor, description)
    if description.startswith("ssl:"):
        description = "tcp:" + description[4:]
    return TLSServerEndpoint(serverFromString(reactor, description), security.tls.serverOptions())


# The clustersync-certs command ---------------------------------------------


def _hostsArg(values: list[str]) -> dict[str, list[str]]:
    hosts: dict[str, list[str]] = {}
    for value in values or ():
        serverId, sep, names = value.partition("=")
        if not sep or not names:
            raise SystemExit(f"--host expects serverId=name[,name...], got {value!r}")
        hosts.setdefault(serverId, []).extend(n for n in names.split(",") if n)
    return hosts


def _describe(path: str) -> str:
    with open(path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n.value) for n in san]
    except x509.ExtensionNotFound:
        names = []
    return (
        f"{os.path.basename(path)}: CN={certificateIdentity(cert)} "
        f"names={','.join(names) or '-'} until {cert.not_valid_after_utc:%Y-%m-%d}"
    )


def main(argv: list[str] | None = None) -> int:
    """
    C{clustersync-certs}: create a cluster CA and node certificates.

        clustersync-certs init DIR --nodes srv-a srv-b [--host srv-a=a.lan,10.0.0.1]
        clustersync-certs add DIR srv-d [--host srv-d=d.lan]
        clustersync-certs show DIR
    """
    parser = argparse.ArgumentParser(
        prog="clustersync-certs",
        description="Create the cluster CA and a key+certificate per node for mutual TLS.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create a CA and node certificates in DIR")
    init.add_argument("directory")
    init.add_argument("--nodes", nargs="+", required=True, metavar="SERVER_ID")
    init.add_argument("--host", action="append", default=[], metavar="ID=NAME[,NAME]",
                      help="extra host names/addresses for a node's certificate (repeatable); "
                           "default localhost,127.0.0.1,::1")
    init.add_argument("--days", type=int, default=825)
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    add = sub.add_parser("add", help="add a node certificate signed by the CA in DIR")
    add.add_argument("directory")
    add.add_argument("node", metavar="SERVER_ID")
    add.add_argument("--host", action="append", default=[], metavar="ID=NAME[,NAME]")
    add.add_argument("--days", type=int, default=825)
    show = sub.add_parser("show", help="list the certificates in DIR")
    show.add_argument("directory")
    args = parser.parse_args(argv)
    out = sys.stdout
    try:
        if args.command == "init":
            hosts = _hostsArg(args.host)
            made = initCertDir(args.directory, args.nodes, hosts, args.days, args.force)
        elif args.command == "add":
            hosts = _hostsArg(args.host).get(args.node) or DEFAULT_HOSTS
            made = {args.node: addNode(args.directory, args.node, hosts, args.days)}
        else:
            for name in sorted(os.listdir(args.directory)):
                if name.endswith(".pem"):
                    out.write(_describe(os.path.join(args.directory, name)) + "\n")
            return 0
    except (OSError, ValueError) as e:
        sys.stderr.write(f"clustersync-certs: {e}\n")
        return 1
    for serverId, paths in made.items():
        out.write(f"# {serverId}\n")
        for key, path in paths.items():
            out.write(f'{key} = "{path}"\n')
    out.write(
        "# and listen = \"ssl:PORT\" on each node; keep *.key and ca.key private "
        "(ca.key is only needed to add nodes).\n"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
