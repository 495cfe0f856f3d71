"""
Who may use the web port: the Host header allow-list (against DNS
rebinding), then authentication, a bearer token from a file (also accepted
as the password of HTTP basic authentication, so a browser can log in) or
a TLS client certificate signed by the cluster CA.  C{/metrics} can be left
open on its own (C{web_open_metrics}).

A node refuses to start with a web port on a non-loopback address and no
authentication, unless C{web_insecure} is set (L{checkWebConfig}).
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site

from clustersync.errors import ConfigError

__all__ = ["endpointInterface", "isLoopbackEndpoint", "readToken", "checkWebConfig",
           "hostAllowed", "WebAccess", "GuardedSite", "MIN_TOKEN_LENGTH"]

#: Shortest token accepted in C{web_token_file}.
MIN_TOKEN_LENGTH = 16


def _splitEndpoint(description: str) -> list[str]:
    """Split an endpoint description on unescaped colons (C{\\:} is a colon)."""
    parts, current, escaped = [], [], False
    for c in description:
        if escaped:
            current.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
    parts.append("".join(current))
    return parts


def endpointInterface(description: str) -> tuple[str, str | None]:
    """
    C{(kind, interface)} of a server endpoint description: C{("tcp",
    "127.0.0.1")} for C{tcp:7003:interface=127.0.0.1}, C{("tcp", None)}
    when it listens on every address.
    """
    parts = _splitEndpoint(description)
    kind = parts[0].strip().lower()
    interface = None
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if sep and key.strip() == "interface":
            interface = value.strip()
    return kind, interface


def _isLoopbackHost(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def isLoopbackEndpoint(description: str) -> bool:
    """
    Whether only this machine can reach the endpoint: TCP or TLS bound to
    a loopback address, or a unix socket.  Every other endpoint (all
    addresses, C{systemd:} sockets) counts as reachable from outside.
    """
    kind, interface = endpointInterface(description)
    if kind == "unix":
        return True
    return kind in ("tcp", "tcp6", "ssl") and _isLoopbackHost(interface)


def readToken(path: str) -> bytes:
    """
    The token in C{path}: its first line, without surrounding whitespace.

    @raise ConfigError: (key C{web_token_file}) unreadable, or shorter than
        L{MIN_TOKEN_LENGTH}.
    """
    try:
        with open(path, "rb") as f:
            line = f.readline(4096)
    except OSError as e:
        raise ConfigError("web_token_file", f"cannot read {path}: {e.strerror}") from None
    token = line.strip()
    if len(token) < MIN_TOKEN_LENGTH or any(c < 0x21 or c > 0x7E for c in token):
        raise ConfigError("web_token_file",
                          f"{path}: the first line must be a token of at least "
                          f"{MIN_TOKEN_LENGTH} printable characters without spaces "
                          "(e.g. from 'openssl rand -hex 32')")
    return token


def checkWebConfig(config) -> None:
    """
    Check the web port's access settings.

    @raise ConfigError: the token file is unusable; C{web_client_ca} is set
        without this node's C{tls_cert} and C{tls_key}; or the web port is
        not on loopback, has no authentication and C{web_insecure} is not
        set.
    """
    description = getattr(config, "web", None)
    if description is None or description.strip().lower() in ("", "none"):
        return
    tokenFile = getattr(config, "webTokenFile", None)
    clientCa = getattr(config, "webClientCa", None)
    if tokenFile is not None:
        readToken(tokenFile)
    if clientCa is not None:
        if getattr(config, "tlsCert", None) is None or getattr(config, "tlsKey", None) is None:
            raise ConfigError("web_client_ca",
                              "needs tls_cert and tls_key (the web port presents them)")
        from clustersync.web.tlsport import webTLSOptions

        webTLSOptions(clientCa, config.tlsCert, config.tlsKey)
    authenticated = tokenFile is not None or clientCa is not None
    if (not authenticated and not isLoopbackEndpoint(description)
            and not getattr(config, "webInsecure", False)):
        raise ConfigError(
            "web", f"{description!r} can be reached from other hosts and the web port has no "
            "authentication: set web_token_file or web_client_ca (see docs/security.md), "
            "bind it to loopback, or set web_insecure = true to serve it to anyone")


def hostAllowed(host: bytes | None, names) -> bool:
    """
    Whether a request's C{Host} header is one this node answers: an IP
    address, C{localhost} (or a name under it), or one of C{names}.  A
    DNS-rebinding page sends its own domain name, which is none of these.
    """
    if not host:
        return False
    try:
        text = host.decode("ascii").strip().lower()
    except UnicodeDecodeError:
        return False
    if text.startswith("["):
        name, _, rest = text[1:].partition("]")
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return False
    else:
        name, sep, port = text.rpartition(":")
        if not sep:
            name = text
        elif not port.isdigit():
            return False
    name = name.rstrip(".")
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    return name == "localhost" or name.endswith(".localhost") or name in names


class WebAccess:
    """
    The access rules of one web port.

    @ivar token: the bearer token (C{bytes}), or C{None}.
    @ivar clientCertificates: whether a verified TLS client certificate
        authenticates (the port speaks TLS with the cluster CA).
    @ivar openMetrics: whether C{/metrics} needs no authentication.
    @ivar hosts: lower-case host names allowed besides IP addresses and
        loopback names.
    """

    def __init__(self, token: bytes | None = None, clientCertificates: bool = False,
                 openMetrics: bool = False, hosts=()) -> None:
        self.token = token
        self.clientCertificates = clientCertificates
        self.openMetrics = openMetrics
        self.hosts = {h.lower().rstrip(".") for h in hosts}

    @classmethod
    def fromConfig(cls, config) -> "WebAccess":
        """The rules of C{config} (reading the token file)."""
        token = readToken(config.webTokenFile) if getattr(config, "webTokenFile", None) else None
        return cls(token, getattr(config, "webClientCa", None) is not None,
                   getattr(config, "webOpenMetrics", False), getattr(config, "webHosts", ()))

    @property
    def required(self) -> bool:
        """Whether requests must authenticate."""
        return self.token is not None or self.clientCertificates

    def _tokenMatches(self, request) -> bool:
        header = request.getHeader(b"authorization") or b""
        scheme, _, value = header.strip().partition(b" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == b"basic":
            try:
                value = base64.b64decode(value, validate=True).partition(b":")[2]
            except ValueError:
                return False
        elif scheme != b"bearer":
            return False
        return hmac.compare_digest(value, self.token)

    def _certificateVerified(self, request) -> bool:
        getPeerCertificate = getattr(request.channel.transport, "getPeerCertificate", None)
        try:
            return getPeerCertificate is not None and getPeerCertificate() is not None
        except Exception:
            return False

    def refusal(self, request) -> tuple[int, str, str] | None:
        """
        Why C{request} is refused: C{(HTTP code, counter reason, message)},
        or C{None} if it may be served.
        """
        if not hostAllowed(request.getHeader(b"host"), self.hosts):
            host = request.getHeader(b"host")
            return (421 if host else 400, "web_bad_host",
                    f"this server does not answer for Host {host!r}; "
                    "add the name to web_hosts" if host else "a Host header is required")
        if not self.required or (self.openMetrics and request.path == b"/metrics"):
            return None
        if self.token is not None and self._tokenMatches(request):
            return None
        if self.clientCertificates and self._certificateVerified(request):
            return None
        return 401, "web_unauthorized", "authentication required"


class _Refused(Resource):
    """Answers every request with one error."""

    isLeaf = True

    def __init__(self, code: int, message: str, challenge: bool) -> None:
        super().__init__()
        self.code = code
        self.message = message
        self.challenge = challenge

    def render(self, request):
        """The error as JSON (with the authentication challenges for a 401)."""
        request.setResponseCode(self.code)
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        if self.challenge:
            request.responseHeaders.addRawHeader(b"www-authenticate", b'Bearer realm="clustersync"')
            request.responseHeaders.addRawHeader(b"www-authenticate", b'Basic realm="clustersync"')
        return json.dumps({"error": self.message}).encode() + b"\n"


class GuardedSite(Site):
    """
    A L{Site} that checks L{WebAccess} before serving anything; refusals
    are counted in C{metrics.rejectedInputs} (C{web_bad_host},
    C{web_unauthorized}) and logged.  Requests are logged at debug level.
    """

    noisy = False
    _log = Logger()

    def __init__(self, resource, access: WebAccess, metrics=None, **kwargs) -> None:
        super().__init__(resource, **kwargs)
        self.access = access
        self.metrics = metrics

    def getResourceFor(self, request):
        """The requested resource, or a refusal."""
        refused = self.access.refusal(request)
        if refused is None:
            return super().getResourceFor(request)
        code, reason, message = refused
        if self.metrics is not None:
            self.metrics.rejected(reason)
        peer = request.getClientAddress()
        self._log.warn("web request {method} {path} from {peer} refused: {why}",
                       method=request.method, path=request.path,
                       peer=getattr(peer, "host", peer), why=message)
        return _Refused(code, message, code == 401)

    def log(self, request) -> None:
        """One debug event per request (not the access log)."""
        self._log.debug("{method} {uri} -> {code}", method=request.method,
                        uri=request.uri, code=request.code)
