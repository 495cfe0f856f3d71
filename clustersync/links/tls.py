"""
The TLS side of peer links: the loaded certificate files of a node, the
identity a certificate names, and the listening endpoint of a peer port
that speaks mutual TLS.

The policy that decides which links are accepted is
L{clustersync.links.security}; the tools that create certificates are
L{clustersync.app.certificates}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from twisted.internet import ssl
from twisted.internet.interfaces import IStreamServerEndpoint
from zope.interface import implementer

from clustersync.errors import ConfigError

if TYPE_CHECKING:
    from clustersync.links.security import LinkSecurity

__all__ = [
    "TLSMaterial",
    "TLSServerEndpoint",
    "loadTLSMaterial",
    "certificateIdentity",
    "peerIdentity",
    "peerServerEndpoint",
]


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

