"""
The C{twistd clustersync} command line: options and L{makeService}.
"""

from __future__ import annotations

import sys

from twisted.python import usage

from clustersync.app.config import ConfigError, loadConfig

__all__ = ["Options", "makeService"]


class Options(usage.Options):
    """
    Options of C{twistd clustersync}.  Every option overrides the same key
    of the C{--config} TOML file; see C{docs/configuration.md}.
    """

    synopsis = "[options]"
    longdesc = "Link this chat server into a clustersync cluster."

    optParameters = [
        ["config", "c", None, "TOML configuration file."],
        ["server-id", "i", None, "This node's serverId (default: srv-<hostname>)."],
        ["listen", "l", None, "Endpoint for peer links (default tcp:7001:interface=127.0.0.1); 'none' disables."],
        ["clients", None, None, "Endpoint for chat clients (default tcp:7002:interface=127.0.0.1); 'none' disables."],
        ["users-file", None, None, "Users file for client logins."],
        ["handshake-timeout", None, None, "Seconds a link may take to complete HELLO (default 10)."],
        ["web", None, None, "Endpoint for the status page, JSON API and /metrics (default tcp:7003:interface=127.0.0.1); 'none' disables."],
        ["log-json", None, None, "Also write every log event as one JSON line to this file ('-' for stdout)."],
        ["tls-ca", None, None, "Cluster CA certificate (PEM): peer links use mutual TLS (see docs/security.md)."],
        ["tls-cert", None, None, "This node's certificate (PEM), from clustersync-certs."],
        ["tls-key", None, None, "This node's private key (PEM)."],
        ["plain-listen", None, None, "Extra plain-TCP peer port for the plain peers ('none' disables)."],
        ["receipts", None, None, "Application receipts with peers: tls (default), all or none (see docs/reliability.md)."],
        ["extensions", None, None, "Peers known to be clustersync nodes: tls (default), all or none (see docs/protocol.md)."],
        ["web-token-file", None, None, "File whose first line is the bearer token the web port requires."],
        ["web-client-ca", None, None, "Cluster CA (PEM): the web port speaks TLS and requires a client certificate signed by it."],
        ["max-sessions-per-user", None, None, "Most sessions one user may have to log in here (default 16; 0: no limit)."],
        ["cluster-name", None, None, "Cluster name: nodes with the same one share the backplane (default clustersync)."],
        ["backplane-tls-ca", None, None, "CA certificate (PEM) of the NATS servers."],
        ["backplane-tls-cert", None, None, "Client certificate (PEM) for NATS servers that verify clients."],
        ["backplane-tls-key", None, None, "Its private key (PEM)."],
        ["backplane-credentials", None, None, "NATS credentials file (.creds) for the backplane."],
    ]
    optFlags = [
        ["eager-hello", None, "Send HELLO on inbound links without waiting for the peer's."],
        ["open-links", None, "With no TLS and no plain peers, accept unauthenticated links from anyone (development only)."],
        ["web-insecure", None, "Allow a web port reachable from other hosts without authentication."],
        ["web-open-metrics", None, "Serve /metrics without authentication."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["peer"] = []
        self["plugin-dir"] = []
        self["plain-peer"] = []
        self["web-host"] = []
        self["backplane"] = []
        self["clustersync-peer"] = []
        self["peers-dns"] = []

    def opt_peers_dns(self, entry: str) -> None:
        """
        Peers found by DNS, re-resolved every peers_dns_interval: NAME:PORT
        (A and AAAA records) or srv:NAME (SRV records); repeatable.
        """
        self["peers-dns"].append(entry)

    def opt_clustersync_peer(self, serverId: str) -> None:
        """
        The serverId of a peer known to be a clustersync node even on a
        plain TCP link (repeatable; see docs/protocol.md).
        """
        self["clustersync-peer"].append(serverId)

    def opt_web_host(self, name: str) -> None:
        """A Host header name the web port answers (repeatable; see docs/security.md)."""
        self["web-host"].append(name)

    def opt_backplane(self, url: str) -> None:
        """
        A NATS server of the backplane, nats://host:port (repeatable, one
        per server of a NATS cluster); needs --reactor=asyncio.
        """
        self["backplane"].append(url)

    def opt_peer(self, address: str) -> None:
        """A peer to dial, as host:port (repeatable)."""
        self["peer"].append(address)

    def opt_plugin_dir(self, directory: str) -> None:
        """A directory of handler plugins (repeatable)."""
        self["plugin-dir"].append(directory)

    def opt_plain_peer(self, entry: str) -> None:
        """
        A server allowed over plain TCP, serverId@ip[:port] (dialed if a
        port is given; repeatable).  Unencrypted: see docs/security.md.
        """
        self["plain-peer"].append(entry)

    def postOptions(self) -> None:
        """Build and validate the configuration; a bad value names its key."""
        def none(v):
            return "" if v is not None and v.lower() == "none" else v

        overrides = {
            "server_id": self["server-id"],
            "listen": none(self["listen"]),
            "clients": none(self["clients"]),
            "users_file": self["users-file"],
            "handshake_timeout": self["handshake-timeout"],
            "web": none(self["web"]),
            "log_json": self["log-json"],
            "eager_hello": True if self["eager-hello"] else None,
            "open_links": True if self["open-links"] else None,
            "peers": self["peer"] or None,
            "plugin_dirs": self["plugin-dir"] or None,
            "tls_ca": self["tls-ca"],
            "tls_cert": self["tls-cert"],
            "tls_key": self["tls-key"],
            "plain_listen": none(self["plain-listen"]),
            "plain_peers": self["plain-peer"] or None,
            "receipts": self["receipts"],
            "extensions": self["extensions"],
            "clustersync_peers": self["clustersync-peer"] or None,
            "peers_dns": self["peers-dns"] or None,
            "web_token_file": self["web-token-file"],
            "web_client_ca": self["web-client-ca"],
            "web_insecure": True if self["web-insecure"] else None,
            "web_open_metrics": True if self["web-open-metrics"] else None,
            "web_hosts": self["web-host"] or None,
            "max_sessions_per_user": self["max-sessions-per-user"],
            "backplane": self["backplane"] or None,
            "cluster_name": self["cluster-name"],
            "backplane_tls_ca": self["backplane-tls-ca"],
            "backplane_tls_cert": self["backplane-tls-cert"],
            "backplane_tls_key": self["backplane-tls-key"],
            "backplane_credentials": self["backplane-credentials"],
        }
        try:
            self.config = loadConfig(self["config"], overrides)
        except ConfigError as e:
            # Name the option too when the bad value came from the command line.
            if overrides.get(e.key) is not None:
                option = {"peers": "peer", "plugin_dirs": "plugin-dir",
                          "web_hosts": "web-host",
                          "clustersync_peers": "clustersync-peer",
                          "peers_dns": "peers-dns"}.get(
                    e.key, e.key.replace("_", "-"))
                raise usage.UsageError(f"--{option}: {e}") from None
            raise usage.UsageError(str(e)) from None
        if self.config.backplane:
            self._checkReactor()

    def _checkReactor(self) -> None:
        """
        The backplane runs on Twisted's asyncio reactor, which twistd's
        C{--reactor=asyncio} installs before these options are read.
        """
        from clustersync.backplane.bus import requireAsyncioReactor

        installed = sys.modules.get("twisted.internet.reactor")
        try:
            if installed is None:
                raise RuntimeError("the NATS backplane needs Twisted's asyncio reactor: run "
                                   "'twistd --reactor=asyncio clustersync ...'")
            requireAsyncioReactor(installed)
        except RuntimeError as e:
            raise usage.UsageError(f"--backplane: {e}") from None


def makeService(options: Options):
    """Build the node's L{MultiService} from parsed L{Options}."""
    from twisted.internet import reactor

    from clustersync.app.service import makeNodeService

    return makeNodeService(options.config, reactor)
