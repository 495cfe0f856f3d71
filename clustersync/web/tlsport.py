"""
The web port over TLS with client certificates from the cluster CA
(C{web_client_ca}): it presents this node's certificate and asks every
client for one; a certificate must verify against the CA to be accepted,
and L{clustersync.web.access.WebAccess} lets only verified clients past
(or anyone to C{/metrics} with C{web_open_metrics}).
"""

from __future__ import annotations

from twisted.internet import ssl
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint
from zope.interface import implementer

from clustersync.errors import ConfigError

__all__ = ["webTLSOptions", "webServerEndpoint"]


def _read(key: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(key, f"cannot read {path}: {e.strerror}") from None


def webTLSOptions(caPath: str, certPath: str, keyPath: str) -> ssl.CertificateOptions:
    """
    Server TLS options: present C{certPath}/C{keyPath}, request a client
    certificate and verify any presented against C{caPath} (a client
    without one still connects; the HTTP layer refuses it).

    @raise ConfigError: a file is unreadable or not PEM (naming its key).
    """
    try:
        ca = ssl.Certificate.loadPEM(_read("web_client_ca", caPath))
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError("web_client_ca", f"{caPath} is not a PEM certificate: {e}") from None
    try:
        own = ssl.PrivateCertificate.loadPEM(
            _read("tls_cert", certPath) + b"\n" + _read("tls_key", keyPath))
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError("tls_cert", f"{certPath} with {keyPath}: not a usable PEM "
                                      f"certificate and key: {e}") from None
    return ssl.CertificateOptions(
        privateKey=own.privateKey.original, certificate=own.original,
        verify=True, requireCertificate=False, caCerts=[ca.original],
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2)


@implementer(IStreamServerEndpoint)
class _TLSEndpoint:
    def __init__(self, wrapped, options) -> None:
        self._wrapped = wrapped
        self._options = options

    def listen(self, factory):
        from twisted.protocols.tls import TLSMemoryBIOFactory

        return self._wrapped.listen(TLSMemoryBIOFactory(self._options, False, factory))


def webServerEndpoint(reactor, description: str, config):
    """
    The listening endpoint of the web port: as described, or, with
    C{web_client_ca}, TLS over it (C{ssl:PORT:...} read as C{tcp:PORT:...}).
    """
    caPath = getattr(config, "webClientCa", None) if config is not None else None
    if caPath is None:
        return serverFromString(reactor, description)
    if description.startswith("ssl:"):
        description = "tcp:" + description[4:]
    options = webTLSOptions(caPath, config.tlsCert, config.tlsKey)
    return _TLSEndpoint(serverFromString(reactor, description), options)
