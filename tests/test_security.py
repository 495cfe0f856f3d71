"""
Tests for L{clustersync.links.security}: the TLS and plain-TCP settings are
checked together, the policy's mode follows from them, and a node says
loudly at startup when its peer links are not protected by TLS.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from clustersync.app import certificates
from clustersync.app.config import ConfigError, NodeConfig, loadConfig
from clustersync.links import security

from tests.certsupport import settingsOf


class ConfigTests(unittest.TestCase):
    """
    The TLS and plain-TCP settings are validated together, naming the key.
    """

    def setUp(self):
        """Certificates for srv-a."""
        self.paths = certificates.initCertDir(self.mktemp(), ["srv-a", "srv-b"])["srv-a"]

    def assertConfigError(self, key: str, **overrides):
        """loadConfig(overrides) fails naming C{key}."""
        overrides.setdefault("server_id", "srv-a")
        e = self.assertRaises(ConfigError, loadConfig, None, overrides)
        self.assertEqual(e.key, key, str(e))
        return e

    def test_tlsKeysTogether(self):
        """tls_ca, tls_cert and tls_key are all given or none."""
        self.assertConfigError("tls_key", tls_ca=self.paths["tls_ca"], tls_cert=self.paths["tls_cert"])
        config = loadConfig(None, {**self.paths, "listen": "ssl:7001", "server_id": "srv-a"})
        self.assertEqual(config.tlsCert, self.paths["tls_cert"])

    def test_sslListenNeedsTLS(self):
        """An ssl: peer port without the tls_* keys, or with its own key options, is refused."""
        self.assertConfigError("listen", listen="ssl:7001")
        self.assertConfigError("listen", listen="ssl:7001:privateKey=k.pem", **self.paths)

    def test_unreadableAndMismatchedFiles(self):
        """A missing file names its key; a key not matching the certificate names tls_key."""
        e = self.assertConfigError("tls_cert", **{**self.paths, "tls_cert": "/nonexistent.pem"})
        self.assertIn("/nonexistent.pem", str(e))
        other = self.paths["tls_key"].replace("srv-a", "srv-b")
        self.assertConfigError("tls_key", **{**self.paths, "tls_key": other})

    def test_plainPeers(self):
        """
        plain_peers entries are serverId@ip[:port]; a host name, a bad port
        or a missing serverId is refused; plain_listen needs plain_peers; an
        address both in peers and plain_peers is refused.
        """
        config = loadConfig(None, {"plain_peers": ["old-1@10.0.0.5:7001", "old-2@::1", "old-3@[::1]:7002"]})
        policy = security.LinkSecurity.fromConfig(config)
        self.assertEqual(
            policy.plainPeers,
            [security.PlainPeer("old-1", "10.0.0.5", 7001), security.PlainPeer("old-2", "::1"),
             security.PlainPeer("old-3", "::1", 7002)],
        )
        self.assertEqual(policy.plainDialAddresses(), ["10.0.0.5:7001", "[::1]:7002"])
        self.assertEqual(policy.mode, security.ALLOW_LIST)
        for bad in ("10.0.0.5:7001", "old@legacy.lan", "old@10.0.0.5:99999", "@10.0.0.5", "o ld@10.0.0.5"):
            self.assertConfigError("plain_peers", plain_peers=[bad])
        self.assertConfigError("plain_listen", plain_listen="tcp:7003")
        self.assertConfigError(
            "plain_peers", plain_peers=["old@10.0.0.5:7001"], peers=["10.0.0.5:7001"])

    def test_peerRate(self):
        """peer_rate 0 disables the flood guard; a negative one is refused."""
        self.assertEqual(loadConfig(None, {"peer_rate": 0}).peerRate, 0)
        self.assertEqual(loadConfig(None, {"peer_rate": "250"}).peerRate, 250.0)
        self.assertConfigError("peer_rate", peer_rate=-1)
        self.assertConfigError("peer_burst", peer_burst=0)

    def test_certificateMustNameThisNode(self):
        """A tls_cert for another serverId than server_id is refused."""
        e = self.assertConfigError("tls_cert", server_id="srv-b", **self.paths)
        self.assertIn("'srv-a'", str(e))

    def test_modes(self):
        """
        No TLS and no allow-list is closed mode (open only with
        C{open_links}); the tls_* keys make TLS mode.
        """
        self.assertEqual(security.LinkSecurity.fromConfig(NodeConfig()).mode, security.CLOSED)
        self.assertEqual(security.LinkSecurity.fromConfig(NodeConfig(openLinks=True)).mode, security.OPEN)
        config = NodeConfig(serverId="srv-a", tlsCa=self.paths["tls_ca"], tlsCert=self.paths["tls_cert"],
                            tlsKey=self.paths["tls_key"])
        policy = security.LinkSecurity.fromConfig(config)
        self.assertEqual((policy.mode, policy.tls.identity), (security.TLS, "srv-a"))
        self.assertFalse(policy.dialsPlain("127.0.0.1:7001"))


class StartupWarningTests(unittest.TestCase):
    """
    A node without TLS, or with plain peers, says so loudly when it is
    built; a TLS-only node does not.
    """

    def warningsOf(self, config) -> list[str]:
        """The warning-level messages logged while building a node service."""
        from twisted.logger import LogLevel, formatEvent

        from clustersync.app.service import makeNodeService

        events = []
        globalLogPublisher.addObserver(events.append)
        try:
            makeNodeService(config, reactor)
        finally:
            globalLogPublisher.removeObserver(events.append)
        return [formatEvent(e) for e in events if e.get("log_level") == LogLevel.warn]

    def test_closedModeWarns(self):
        """No tls_*, no plain_peers, no open_links: a warning that links are refused."""
        text = " ".join(self.warningsOf(NodeConfig(serverId="srv-a", clients=None, web=None)))
        self.assertIn("PEER LINKS ARE DISABLED", text)

    def test_openModeWarns(self):
        """C{open_links} alone: a warning that links are not authenticated."""
        text = " ".join(self.warningsOf(
            NodeConfig(serverId="srv-a", clients=None, web=None, openLinks=True)))
        self.assertIn("PEER LINKS ARE NOT AUTHENTICATED", text)

    def test_plainPeersWarn(self):
        """Plain peers with TLS: a warning naming them."""
        paths = certificates.initCertDir(self.mktemp(), ["srv-a"])["srv-a"]
        config = NodeConfig(serverId="srv-a", clients=None, web=None, plainPeers=["old@10.0.0.9"],
                            **settingsOf(paths))
        text = " ".join(self.warningsOf(config))
        self.assertIn("PLAIN TCP peer links allowed for old@10.0.0.9", text)
        self.assertNotIn("NOT AUTHENTICATED", text)

    def test_tlsOnlyQuiet(self):
        """TLS and no plain peers: no security warning."""
        paths = certificates.initCertDir(self.mktemp(), ["srv-a"])["srv-a"]
        config = NodeConfig(serverId="srv-a", clients=None, web=None, **settingsOf(paths))
        text = " ".join(self.warningsOf(config))
        self.assertNotIn("PLAIN TCP", text)
        self.assertNotIn("NOT AUTHENTICATED", text)
