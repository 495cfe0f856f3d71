"""
Who may link: the link security policy (mutual TLS, the plain-TCP
allow-list), and the check of its settings.

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

The TLS material and endpoints are in L{clustersync.links.tls}; the
certificate tools (L{clustersync.app.certificates} and the
C{clustersync-certs} command, L{clustersync.cli.certs}) use
C{cryptography} with EC P-256 keys.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

import attrs

from clustersync.errors import ConfigError
from clustersync.links.tls import TLSMaterial, loadTLSMaterial, peerIdentity

__all__ = [
    "TLS",
    "ALLOW_LIST",
    "OPEN",
    "CLOSED",
    "PlainPeer",
    "LinkSecurity",
    "parsePlainPeer",
    "checkConfig",
    "validServerId",
]


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

    def mayDial(self, serverId: str, address: str) -> bool:
        """
        Whether this node may dial C{serverId} at C{address} on another
        node's word (gossip): only where it would accept that server from
        (TLS checks the certificate; plain needs the allow-list entry; a
        closed node dials nobody).
        """
        if self.mode in (TLS, OPEN):
            return True
        if self.mode == ALLOW_LIST:
            host = _normalHost(address.rpartition(":")[0].strip("[]"))
            return host in self._plainIds.get(serverId, ())
        return False

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
