"""
Node configuration: defaults, an optional TOML file, command-line overrides,
and validation that names the bad key.

The embedded defaults run a single node on loopback with no editing::

    server_id = "srv-<hostname>"
    listen    = "tcp:7001:interface=127.0.0.1"
    clients   = "tcp:7002:interface=127.0.0.1"
    peers     = []
"""

from __future__ import annotations

import math
import os
import socket
import tomllib

import attrs

from clustersync.errors import ConfigError

__all__ = [
    "NodeConfig", "ConfigError", "loadConfig", "DEFAULT_LISTEN", "DEFAULT_CLIENTS", "DEFAULT_WEB",
    "DEFAULT_GC_THRESHOLDS",
]

DEFAULT_LISTEN = "tcp:7001:interface=127.0.0.1"
DEFAULT_CLIENTS = "tcp:7002:interface=127.0.0.1"
DEFAULT_WEB = "tcp:7003:interface=127.0.0.1"
#: The default C{gc_thresholds}: CPython collects its youngest generation
#: every 50,000 net container allocations instead of 700; the other two
#: thresholds keep CPython's defaults (see L{clustersync.app.gctuning}).
DEFAULT_GC_THRESHOLDS = (50_000, 10, 10)


def _defaultServerId() -> str:
    return "srv-" + (socket.gethostname().split(".")[0] or "node")


@attrs.define
class NodeConfig:
    """
    Every setting of a node.  Attribute names are the camelCase form of the
    TOML keys (C{server_id} -> C{serverId}).
    """

    serverId: str = attrs.field(factory=_defaultServerId)
    listen: str | None = DEFAULT_LISTEN
    peers: list[str] = attrs.field(factory=list)
    pluginDirs: list[str] = attrs.field(factory=list)
    clients: str | None = DEFAULT_CLIENTS
    usersFile: str | None = None
    handshakeTimeout: float = 10.0
    eagerHello: bool = False
    maxSyncLength: int = 256 * 1024 * 1024
    maxMessageLength: int = 1024 * 1024
    #: Longest line a peer may send before the HELLO exchange is done.
    maxHelloLength: int = 4096
    #: Bytes all links still in their handshake may buffer (L{clustersync.links.budget}).
    maxHandshakeBuffers: int = 1024 * 1024
    maxSessionsPerServer: int | None = 1_000_000
    maxChannelsPerSession: int | None = 10_000
    reconnectMaxDelay: float = 30.0
    connectTimeout: float = 10.0
    #: Seconds within which a vanished peer is detected (TCP keepalive and
    #: TCP_USER_TIMEOUT; idle cut of peers that re-sync when idle).
    deadPeerTimeout: float = 15.0
    #: Re-send SYNC_STATE on a link idle for a third of deadPeerTimeout.
    idleResync: bool = True
    #: Bytes a link may queue while its peer does not read before it is cut.
    maxOutboundBuffer: int = 16 * 1024 * 1024
    #: API sends fire only once the peer's TCP stack acknowledged the line
    #: (plain TCP links); a link lost before that fails them.
    confirmSends: bool = True
    #: Application receipts (X_RECEIVED) on links to clustersync nodes:
    #: C{"tls"}, C{"all"} (also: every peer is one) or C{"none"}.
    receipts: str = "tls"
    #: Which peers are clustersync nodes (extension messages): C{"tls"},
    #: C{"all"} or C{"none"}, plus the serverIds of L{clustersyncPeers}.
    extensions: str = "tls"
    clustersyncPeers: list[str] = attrs.field(factory=list)
    #: The SYNC_STATE heartbeat to existing servers only up to this many local sessions.
    legacyHeartbeatLimit: int = 5000
    #: Seconds a drain waits for peers to acknowledge before closing links.
    drainTimeout: float = 5.0
    #: Seconds between anti-entropy digests with clustersync peers; 0: none.
    digestInterval: float = 30.0
    #: Peers found by DNS: C{NAME:PORT} or C{srv:NAME} (L{clustersync.app.discovery}).
    peersDns: list[str] = attrs.field(factory=list)
    peersDnsInterval: float = 10.0
    #: Gossip (X_PEERS): join through one seed; C{advertise}: the address to
    #: dial this node at (C{None}: its listening address).
    gossip: bool = True
    advertise: str | None = None
    gossipForgetAfter: float = 300.0
    dnsServers: list[str] = attrs.field(factory=list)
    #: Longest chat-client request line (bytes); longer closes the client.
    clientMaxLine: int = 65536
    #: Chat-client requests per second (sustained) and burst before closing.
    clientRate: float = 20.0
    clientBurst: int = 100
    #: Bytes that may queue for a chat client that stopped reading before
    #: it is disconnected.
    clientMaxOutput: int = 4 * 1024 * 1024
    #: Most sessions one user may have (in the cluster, as this node knows
    #: it) to log in here; C{None}: no limit.
    maxSessionsPerUser: int | None = 16
    #: Failed logins are slowed per user name and per source address: the
    #: first delay (after a few free failures) and the longest.
    loginDelay: float = 0.5
    loginMaxDelay: float = 30.0
    web: str | None = DEFAULT_WEB
    #: A file whose first line is the bearer token the web port requires
    #: (also as the password of HTTP basic authentication).
    webTokenFile: str | None = None
    #: The cluster CA: the web port speaks TLS (this node's tls_cert and
    #: tls_key) and requires a client certificate signed by it.
    webClientCa: str | None = None
    #: Serve /metrics without authentication (the rest stays protected).
    webOpenMetrics: bool = False
    #: Allow a web port on a non-loopback address without authentication.
    webInsecure: bool = False
    #: Host header names the web port answers besides loopback names and
    #: IP addresses (DNS rebinding protection).
    webHosts: list[str] = attrs.field(factory=list)
    logJson: str | None = None
    #: Mutual TLS for peer links (see docs/security.md): the cluster CA
    #: certificate, this node's certificate and its key (PEM paths).
    tlsCa: str | None = None
    tlsCert: str | None = None
    tlsKey: str | None = None
    #: Plain-TCP allow-list: C{serverId@host[:port]} entries, and an
    #: optional plain peer port for them when the main one is TLS.
    plainPeers: list[str] = attrs.field(factory=list)
    plainListen: str | None = None
    #: Lines per second (sustained) and burst a peer link may send before it
    #: is closed as a flood; 0 disables.
    #: Accept unauthenticated plain-TCP links from anyone when neither TLS
    #: nor plain_peers is configured (development only); otherwise such a
    #: node refuses every link.
    openLinks: bool = False
    peerRate: float = 50_000.0
    peerBurst: int = 100_000
    #: The garbage collector's thresholds while the node runs (one to
    #: three positive integers, as for C{gc.set_threshold}); C{None} leaves
    #: the process's own.
    gcThresholds: tuple[int, ...] | None = DEFAULT_GC_THRESHOLDS
    #: The NATS backplane (see docs/backplane.md): C{nats://host:port} (or
    #: C{tls://}) URLs of the NATS servers; empty: no backplane, a mesh.
    backplane: list[str] = attrs.field(factory=list)
    #: Nodes with the same cluster name share the backplane's subjects.
    clusterName: str = "clustersync"
    #: TLS to the NATS servers (CA, client certificate and key, PEM) and a
    #: NATS credentials file (C{.creds}: JWT and nkey seed).
    backplaneTlsCa: str | None = None
    backplaneTlsCert: str | None = None
    backplaneTlsKey: str | None = None
    backplaneCredentials: str | None = None


#: TOML key -> (attribute, validator).
def _str(key, v):
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(key, f"expected a non-empty string, got {v!r}")
    return v


def _optStr(key, v):
    if v is None or v == "" or (isinstance(v, str) and v.strip().lower() == "none"):
        return None
    return _str(key, v)


def _optEndpoint(key, v):
    """
    An endpoint description (C{tcp:7001:interface=127.0.0.1}, C{ssl:...},
    C{unix:...}), or C{None} ('' or 'none') to disable.  It is parsed now so
    that a typo names its key; endpoints that can only be built at startup
    (C{systemd:} without inherited sockets) are checked then.
    """
    v = _optStr(key, v)
    if v is None:
        return None
    from twisted.internet.endpoints import serverFromString

    try:
        serverFromString(None, v)
    except (ValueError, TypeError, KeyError, OSError) as e:
        raise ConfigError(key, f"bad endpoint {v!r}: {e}") from None
    except Exception:
        pass
    return v


def _peerEndpoint(key, v):
    """
    The peer port: an endpoint description as for L{_optEndpoint}, where
    C{ssl:PORT[:interface=...]} means mutual TLS with the C{tls_*} files
    (checked with them, see L{clustersync.links.security.checkConfig}).
    """
    if isinstance(v, str) and v.startswith("ssl:"):
        _optEndpoint(key, "tcp:" + v[4:])
        return v
    return _optEndpoint(key, v)


def _strList(key, v):
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise ConfigError(key, f"expected a list of strings, got {v!r}")
    return list(v)


def _dnsNames(key, v):
    from clustersync.app.discovery import parseDnsName

    try:
        return [e for e in _strList(key, v) if parseDnsName(e)]
    except ValueError as e:
        raise ConfigError(key, str(e)) from None


def _peers(key, v):
    out = []
    for p in _strList(key, v):
        host, sep, port = p.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(key, f"expected host:port, got {p!r}")
        out.append(p)
    return out


def _positive(kind):
    def check(key, v):
        if isinstance(v, str):
            try:
                v = kind(v)
            except ValueError:
                raise ConfigError(key, f"expected a number, got {v!r}") from None
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, float))
            or not math.isfinite(v)
            or v <= 0
        ):
            raise ConfigError(key, f"expected a positive number, got {v!r}")
        if kind is int and int(v) != v:
            raise ConfigError(key, f"expected a whole number, got {v!r}")
        return kind(v)

    return check


def _optPositiveInt(key, v):
    if v is None or (v == 0 and not isinstance(v, bool)) or v == "0":
        return None
    return _positive(int)(key, v)


def _bool(key, v):
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "yes", "1", "false", "no", "0"):
        return v.lower() in ("true", "yes", "1")
    raise ConfigError(key, f"expected true or false, got {v!r}")


def _nonNegative(key, v):
    if v == 0 or v == "0":
        return 0.0
    return _positive(float)(key, v)


def _nonNegativeInt(key, v):
    if v == 0 or v == "0":
        return 0
    return _positive(int)(key, v)


#: Values of C{receipts} and C{extensions}.
RECEIPTS = ("tls", "all", "none")


def _receipts(key, v):
    if not isinstance(v, str) or v.strip().lower() not in RECEIPTS:
        raise ConfigError(key, f"expected one of {', '.join(RECEIPTS)}, got {v!r}")
    return v.strip().lower()


def _gcThresholds(key, v):
    """
    One to three positive whole numbers (a list in TOML, or a string
    C{"50000,10,10"}); C{"none"} or an empty list leaves the process's
    thresholds alone.
    """
    if isinstance(v, str):
        if v.strip().lower() in ("", "none"):
            return None
        try:
            v = [int(x) for x in v.split(",")]
        except ValueError:
            raise ConfigError(key, f"expected one to three whole numbers, got {v!r}") from None
    if isinstance(v, (list, tuple)) and not v:
        return None
    if (
        not isinstance(v, (list, tuple))
        or not 1 <= len(v) <= 3
        or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v)
    ):
        raise ConfigError(
            key, f"expected one to three positive whole numbers (e.g. [50000, 10, 10]), got {v!r}")
    return tuple(v)


def _natsUrls(key, v):
    """C{nats://[user:password@]host:port} or C{tls://...} URLs (one, or a list)."""
    from urllib.parse import urlsplit

    out = []
    for url in _strList(key, v):
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise ConfigError(key, f"bad NATS URL {url!r}: {e}") from None
        if parts.scheme not in ("nats", "tls") or not parts.hostname or port is None:
            raise ConfigError(key, f"expected nats://host:port or tls://host:port, got {url!r}")
        out.append(url)
    return out


def _serverId(key, v):
    v = _str(key, v)
    if any(c.isspace() for c in v) or len(v) > 255:
        raise ConfigError(key, f"expected an id without spaces, got {v!r}")
    return v


_KEYS = {
    "server_id": ("serverId", _serverId),
    "listen": ("listen", _peerEndpoint),
    "peers": ("peers", _peers),
    "plugin_dirs": ("pluginDirs", _strList),
    "clients": ("clients", _optEndpoint),
    "users_file": ("usersFile", _optStr),
    "handshake_timeout": ("handshakeTimeout", _positive(float)),
    "eager_hello": ("eagerHello", _bool),
    "max_sync_length": ("maxSyncLength", _positive(int)),
    "max_message_length": ("maxMessageLength", _positive(int)),
    "max_hello_length": ("maxHelloLength", _positive(int)),
    "max_handshake_buffers": ("maxHandshakeBuffers", _positive(int)),
    "max_sessions_per_server": ("maxSessionsPerServer", _optPositiveInt),
    "max_channels_per_session": ("maxChannelsPerSession", _optPositiveInt),
    "reconnect_max_delay": ("reconnectMaxDelay", _positive(float)),
    "connect_timeout": ("connectTimeout", _positive(float)),
    "dead_peer_timeout": ("deadPeerTimeout", _positive(float)),
    "idle_resync": ("idleResync", _bool),
    "max_outbound_buffer": ("maxOutboundBuffer", _positive(int)),
    "confirm_sends": ("confirmSends", _bool),
    "receipts": ("receipts", _receipts),
    "extensions": ("extensions", _receipts),
    "clustersync_peers": ("clustersyncPeers", _strList),
    "legacy_heartbeat_limit": ("legacyHeartbeatLimit", _nonNegativeInt),
    "digest_interval": ("digestInterval", _nonNegative),
    "drain_timeout": ("drainTimeout", _positive(float)),
    "peers_dns": ("peersDns", _dnsNames),
    "peers_dns_interval": ("peersDnsInterval", _positive(float)),
    "dns_servers": ("dnsServers", _peers),
    "gossip": ("gossip", _bool),
    "advertise": ("advertise", lambda key, v: _peers(key, v)[0] if v else None),
    "gossip_forget_after": ("gossipForgetAfter", _positive(float)),
    "client_max_line": ("clientMaxLine", _positive(int)),
    "client_rate": ("clientRate", _positive(float)),
    "client_burst": ("clientBurst", _positive(int)),
    "client_max_output": ("clientMaxOutput", _positive(int)),
    "max_sessions_per_user": ("maxSessionsPerUser", _optPositiveInt),
    "login_delay": ("loginDelay", _positive(float)),
    "login_max_delay": ("loginMaxDelay", _positive(float)),
    "web": ("web", _optEndpoint),
    "web_token_file": ("webTokenFile", _optStr),
    "web_client_ca": ("webClientCa", _optStr),
    "web_open_metrics": ("webOpenMetrics", _bool),
    "web_insecure": ("webInsecure", _bool),
    "web_hosts": ("webHosts", _strList),
    "log_json": ("logJson", _optStr),
    "tls_ca": ("tlsCa", _optStr),
    "tls_cert": ("tlsCert", _optStr),
    "tls_key": ("tlsKey", _optStr),
    "plain_peers": ("plainPeers", _strList),
    "plain_listen": ("plainListen", _peerEndpoint),
    "open_links": ("openLinks", _bool),
    "peer_rate": ("peerRate", _nonNegative),
    "peer_burst": ("peerBurst", _positive(int)),
    "gc_thresholds": ("gcThresholds", _gcThresholds),
    "backplane": ("backplane", _natsUrls),
    "cluster_name": ("clusterName", lambda key, v: _serverId(key, v)),
    "backplane_tls_ca": ("backplaneTlsCa", _optStr),
    "backplane_tls_cert": ("backplaneTlsCert", _optStr),
    "backplane_tls_key": ("backplaneTlsKey", _optStr),
    "backplane_credentials": ("backplaneCredentials", _optStr),
}

#: Every TOML key a config file may hold.
KEYS = tuple(_KEYS)


def loadConfig(path: str | None = None, overrides: dict | None = None) -> NodeConfig:
    """
    Build a L{NodeConfig}: defaults, then the TOML file at C{path} (if any),
    then C{overrides} (TOML key -> value, e.g. from the command line; a
    C{None} value means "not given").

    @raise ConfigError: a file that cannot be read or parsed, an unknown key,
        or a bad value; the message names the key.
    """
    values: dict = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                values.update(tomllib.load(f))
        except OSError as e:
            raise ConfigError("config", f"cannot read {path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError("config", f"{path} is not valid TOML: {e}") from None
        except UnicodeDecodeError as e:
            raise ConfigError("config", f"{path} is not UTF-8: {e}") from None
        # Accept an optional [node] table.
        if isinstance(values.get("node"), dict):
            values = {**values.pop("node"), **values}
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    config = NodeConfig()
    for key, value in values.items():
        if key not in _KEYS:
            raise ConfigError(key, f"unknown setting (known: {', '.join(KEYS)})")
        attr, check = _KEYS[key]
        setattr(config, attr, check(key, value))
    config.pluginDirs = [os.path.expanduser(d) for d in config.pluginDirs]
    from clustersync.links.security import LinkSecurity

    LinkSecurity.fromConfig(config)  # TLS files and plain_peers, checked now
    from clustersync.web.access import checkWebConfig

    checkWebConfig(config)  # authentication of a non-loopback web port
    return config
