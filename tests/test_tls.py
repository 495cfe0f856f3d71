"""
Tests for L{clustersync.links.security}: certificate creation and the
C{clustersync-certs} command, configuration checks, and real nodes on
127.0.0.1 linking over mutual TLS; a wrong CA, an expired certificate, a
certificate for another serverId, no client certificate, plain TCP on the
TLS port, and a server failing the host-name check are each refused with
no link established and no state changed.  Also the plain-TCP allow-list
over real sockets and the loud startup warnings.
"""

from __future__ import annotations

import datetime
import io
import os
import stat
from contextlib import redirect_stdout

from cryptography import x509
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from clustersync.links import security as tls
from clustersync.wire.codec import Hello, SessionInfo, encode, encodeSync
from clustersync.app.config import ConfigError, NodeConfig, loadConfig

from tests.support import Conditions, startNode


def makeCerts(directory: str) -> dict:
    """
    A cluster CA with good certificates for srv-a and srv-b, plus hostile
    ones: srv-b from another CA, an expired srv-b, srv-x from the real CA,
    and srv-a valid only for the host C{a.example}.

    @return: name -> C{{"tlsCa", "tlsCert", "tlsKey"}} (NodeConfig settings).
    """
    good = tls.initCertDir(directory, ["srv-a", "srv-b", "srv-c", "srv-x"])
    out = {name: _settings(paths) for name, paths in good.items()}
    caKey, caCert = tls._loadCA(directory)

    def write(name, key, cert, ca=good["srv-a"]["tls_ca"]):
        certPath = os.path.join(directory, name + ".pem")
        keyPath = os.path.join(directory, name + ".key")
        tls.writeCertificate(certPath, cert)
        tls.writeKey(keyPath, key)
        out[name] = {"tlsCa": ca, "tlsCert": certPath, "tlsKey": keyPath}

    rogueKey, rogueCA = tls.makeCA("rogue CA")
    write("rogue-b", *tls.makeNodeCertificate(rogueKey, rogueCA, "srv-b"))
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=30)
    write(
        "expired-b",
        *tls.makeNodeCertificate(
            caKey, caCert, "srv-b", notBefore=past, notAfter=past + datetime.timedelta(days=1)
        ),
    )
    write("elsewhere-e", *tls.makeNodeCertificate(caKey, caCert, "srv-e", hosts=["e.example"]))
    return out


def _settings(paths: dict) -> dict:
    return {"tlsCa": paths["tls_ca"], "tlsCert": paths["tls_cert"], "tlsKey": paths["tls_key"]}


def loadMaterial(settings: dict) -> tls.TLSMaterial:
    """The L{tls.TLSMaterial} of NodeConfig-style C{settings}."""
    return tls.loadTLSMaterial(settings["tlsCa"], settings["tlsCert"], settings["tlsKey"])


def nextLinkLoss(node, timeout: float = 10.0) -> Deferred:
    """
    @return: a L{Deferred} firing with C{(link, reason, wasEstablished)} the
        next time C{node} loses a link (connection closed), failing after
        C{timeout} seconds.
    """
    d = Deferred()
    original = node.linkLost

    def linkLost(link, reason, wasEstablished):
        original(link, reason, wasEstablished)
        del node.linkLost
        if not d.called:
            d.callback((link, reason, wasEstablished))

    node.linkLost = linkLost
    d.addTimeout(timeout, reactor)
    return d


class RawPeer(Protocol):
    """
    A hand-made peer: writes C{lines} once connected; C{lost} fires with the
    reason when the connection closes.
    """

    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines
        self.lost = Deferred()
        self.received = b""

    def connectionMade(self) -> None:
        """Write the lines."""
        for line in self.lines:
            self.transport.write(line)

    def dataReceived(self, data: bytes) -> None:
        """Keep what the node sent."""
        self.received += data

    def connectionLost(self, reason) -> None:
        """Fire L{lost}."""
        self.lost.callback(reason.value)


def rogueLines(serverId: str = "srv-b") -> list[bytes]:
    """A HELLO and a SYNC_STATE carrying one session, from C{serverId}."""
    return [
        encode(Hello.make(serverId)),
        encodeSync(serverId, [SessionInfo("evil", 66, "mallory", serverId, None, {1})]),
    ]


class CertificateToolTests(unittest.TestCase):
    """
    L{tls.initCertDir}, L{tls.addNode}, L{tls.ensureDevCerts} and the
    C{clustersync-certs} command.
    """

    def test_initWritesCAAndNodes(self):
        """
        C{clustersync-certs init} writes a CA and a key and certificate per
        node: keys readable by their owner only, each certificate naming its
        serverId (CN and SAN) and the loopback host names, signed by the CA.
        """
        directory = self.mktemp()
        out = io.StringIO()
        with redirect_stdout(out):
            rc = tls.main(["init", directory, "--nodes", "srv-a", "srv-b",
                           "--host", "srv-a=a.lan,10.1.2.3"])
        self.assertEqual(rc, 0)
        self.assertEqual(
            sorted(os.listdir(directory)),
            ["ca.key", "ca.pem", "srv-a.key", "srv-a.pem", "srv-b.key", "srv-b.pem"],
        )
        for name in ("ca.key", "srv-a.key", "srv-b.key"):
            mode = stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode)
            self.assertEqual(mode, 0o600, name)
        self.assertIn('tls_cert = "' + os.path.abspath(os.path.join(directory, "srv-a.pem")), out.getvalue())
        with open(os.path.join(directory, "srv-a.pem"), "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        self.assertEqual(tls.certificateIdentity(cert), "srv-a")
        names = {str(n.value) for n in cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value}
        self.assertEqual(names, {"srv-a", "a.lan", "10.1.2.3"})
        with open(os.path.join(directory, "srv-b.pem"), "rb") as f:
            certB = x509.load_pem_x509_certificate(f.read())
        self.assertIn("127.0.0.1", {str(n.value) for n in certB.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value})
        material = tls.loadTLSMaterial(*(os.path.join(directory, n) for n in ("ca.pem", "srv-b.pem", "srv-b.key")))
        self.assertEqual(material.identity, "srv-b")

    def test_initRefusesToReplaceCA(self):
        """
        A second C{init} in the same directory fails (exit 1) without
        touching the CA, unless C{--force}.
        """
        directory = self.mktemp()
        with redirect_stdout(io.StringIO()):
            self.assertEqual(tls.main(["init", directory, "--nodes", "srv-a"]), 0)
        with open(os.path.join(directory, "ca.pem"), "rb") as f:
            before = f.read()
        err = io.StringIO()
        import sys
        self.patch(sys, "stderr", err)
        with redirect_stdout(io.StringIO()):
            self.assertEqual(tls.main(["init", directory, "--nodes", "srv-a"]), 1)
        self.assertIn("--force", err.getvalue())
        with open(os.path.join(directory, "ca.pem"), "rb") as f:
            self.assertEqual(f.read(), before)
        with redirect_stdout(io.StringIO()):
            self.assertEqual(tls.main(["init", directory, "--nodes", "srv-a", "--force"]), 0)
        with open(os.path.join(directory, "ca.pem"), "rb") as f:
            self.assertNotEqual(f.read(), before)

    def test_addAndShow(self):
        """
        C{add} signs one more node with the existing CA; C{show} lists every
        certificate with its CN.
        """
        directory = self.mktemp()
        with redirect_stdout(io.StringIO()):
            tls.main(["init", directory, "--nodes", "srv-a"])
            self.assertEqual(tls.main(["add", directory, "srv-d"]), 0)
        material = tls.loadTLSMaterial(*(os.path.join(directory, n) for n in ("ca.pem", "srv-d.pem", "srv-d.key")))
        self.assertEqual(material.identity, "srv-d")
        out = io.StringIO()
        with redirect_stdout(out):
            tls.main(["show", directory])
        self.assertIn("srv-d.pem: CN=srv-d", out.getvalue())
        self.assertIn("ca.pem: CN=clustersync cluster CA", out.getvalue())

    def test_badServerIdRefused(self):
        """A serverId that cannot be a file name is refused."""
        self.assertRaises(ValueError, tls.initCertDir, self.mktemp(), ["../etc/x"])

    def test_ensureDevCertsIdempotent(self):
        """
        L{tls.ensureDevCerts} creates what is missing, keeps usable files
        on a second call, and replaces a node certificate that no longer
        matches the CA.
        """
        directory = self.mktemp()
        first = tls.ensureDevCerts(directory, ["srv-a", "srv-b"])
        self.assertEqual(set(first), {"srv-a", "srv-b"})
        self.assertEqual(set(first["srv-a"]), {"tls_ca", "tls_cert", "tls_key"})
        with open(first["srv-a"]["tls_cert"], "rb") as f:
            certA = f.read()
        second = tls.ensureDevCerts(directory, ["srv-a", "srv-b", "srv-c"])
        self.assertEqual(second["srv-a"], first["srv-a"])
        with open(second["srv-a"]["tls_cert"], "rb") as f:
            self.assertEqual(f.read(), certA)
        self.assertTrue(os.path.exists(second["srv-c"]["tls_key"]))
        # A certificate for another identity in srv-b's files is replaced.
        os.replace(second["srv-c"]["tls_cert"], second["srv-b"]["tls_cert"])
        os.replace(second["srv-c"]["tls_key"], second["srv-b"]["tls_key"])
        third = tls.ensureDevCerts(directory, ["srv-b"])
        self.assertEqual(loadMaterial(_settings(third["srv-b"])).identity, "srv-b")


    def test_devClusterSettings(self):
        """
        L{tls.devClusterSettings} gives each C{make cluster} node an ssl:
        peer port and its TLS files, which load as a valid configuration.
        """
        directory = self.mktemp()
        settings = tls.devClusterSettings(directory, {"srv-a": (7101, 7201), "srv-b": (7102, 7202)})
        self.assertEqual(settings["srv-a"]["listen"], "ssl:7101:interface=127.0.0.1")
        config = loadConfig(None, {"server_id": "srv-b", **settings["srv-b"]})
        self.assertEqual(tls.LinkSecurity.fromConfig(config).mode, tls.TLS)
        self.assertNotIn("listen", tls.devClusterSettings(directory, ["srv-c"])["srv-c"])


class ConfigTests(unittest.TestCase):
    """
    The TLS and plain-TCP settings are validated together, naming the key.
    """

    def setUp(self):
        """Certificates for srv-a."""
        self.paths = tls.initCertDir(self.mktemp(), ["srv-a", "srv-b"])["srv-a"]

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
        security = tls.LinkSecurity.fromConfig(config)
        self.assertEqual(
            security.plainPeers,
            [tls.PlainPeer("old-1", "10.0.0.5", 7001), tls.PlainPeer("old-2", "::1"),
             tls.PlainPeer("old-3", "::1", 7002)],
        )
        self.assertEqual(security.plainDialAddresses(), ["10.0.0.5:7001", "[::1]:7002"])
        self.assertEqual(security.mode, tls.ALLOW_LIST)
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
        self.assertEqual(tls.LinkSecurity.fromConfig(NodeConfig()).mode, tls.CLOSED)
        self.assertEqual(tls.LinkSecurity.fromConfig(NodeConfig(openLinks=True)).mode, tls.OPEN)
        config = NodeConfig(serverId="srv-a", tlsCa=self.paths["tls_ca"], tlsCert=self.paths["tls_cert"],
                            tlsKey=self.paths["tls_key"])
        security = tls.LinkSecurity.fromConfig(config)
        self.assertEqual((security.mode, security.tls.identity), (tls.TLS, "srv-a"))
        self.assertFalse(security.dialsPlain("127.0.0.1:7001"))


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
        paths = tls.initCertDir(self.mktemp(), ["srv-a"])["srv-a"]
        config = NodeConfig(serverId="srv-a", clients=None, web=None, plainPeers=["old@10.0.0.9"],
                            **_settings(paths))
        text = " ".join(self.warningsOf(config))
        self.assertIn("PLAIN TCP peer links allowed for old@10.0.0.9", text)
        self.assertNotIn("NOT AUTHENTICATED", text)

    def test_tlsOnlyQuiet(self):
        """TLS and no plain peers: no security warning."""
        paths = tls.initCertDir(self.mktemp(), ["srv-a"])["srv-a"]
        config = NodeConfig(serverId="srv-a", clients=None, web=None, **_settings(paths))
        text = " ".join(self.warningsOf(config))
        self.assertNotIn("PLAIN TCP", text)
        self.assertNotIn("NOT AUTHENTICATED", text)


class MutualTLSTests(unittest.TestCase):
    """
    Real nodes on 127.0.0.1: srv-a listens on an ssl: peer port; dialers
    with good and bad credentials.
    """

    timeout = 30

    @inlineCallbacks
    def setUp(self):
        """Certificates, and srv-a listening over TLS with one local session."""
        self.certs = makeCerts(self.mktemp())
        self.cond = Conditions(reactor)
        _, self.a, self.portA, _ = yield startNode(
            self, reactor, "srv-a", conditions=self.cond,
            listen="ssl:0:interface=127.0.0.1", **self.certs["srv-a"])
        yield self.a.clientConnected("sa", 1, "ana")

    def assertUntouched(self, node=None):
        """srv-a has no peer link, no SYNC_STATE applied, only its own session."""
        node = node or self.a
        self.assertEqual(node._links, {})
        self.assertEqual(node.metrics.messagesIn.get("SYNC_STATE", 0), 0)
        self.assertEqual([(s.serverId, s.sessionId) for s in node.state.allSessions()],
                         [(node.serverId, "s" + node.serverId[-1])])

    @inlineCallbacks
    def dialA(self, serverId: str, certs: dict):
        """Start node C{serverId} (TLS with C{certs}) dialing srv-a."""
        _, b, _, _ = yield startNode(
            self, reactor, serverId, [f"127.0.0.1:{self.portA}"], self.cond,
            listen="ssl:0:interface=127.0.0.1", **certs)
        return b

    def tlsClient(self, name: str):
        """
        A TLS client endpoint to srv-a presenting the certificate C{name}
        of L{makeCerts} (not checked against the CA here) and trusting the
        cluster CA.
        """
        files = self.certs[name]
        with open(files["tlsCert"], "rb") as c, open(files["tlsKey"], "rb") as k:
            own = PrivateCertificate.loadPEM(c.read() + k.read())
        with open(files["tlsCa"], "rb") as f:
            ca = Certificate.loadPEM(f.read())
        return SSL4ClientEndpoint(
            reactor, "127.0.0.1", self.portA,
            optionsForClientTLS("127.0.0.1", trustRoot=ca, clientCertificate=own))

    @inlineCallbacks
    def test_goodCertificatesLink(self):
        """
        With certificates from the cluster CA the link comes up over TLS in
        both directions' view, and state flows.
        """
        b = yield self.dialA("srv-b", self.certs["srv-b"])
        yield b.clientConnected("sb", 2, "bea")
        yield self.cond.waitUntil(
            lambda: self.a.state.session("srv-b", "sb") is not None
            and b.state.session("srv-a", "sa") is not None, what="TLS link and sync")
        (peerA,) = yield self.a.peers()
        (peerB,) = yield b.peers()
        self.assertEqual((peerA.serverId, peerA.tls, peerA.direction), ("srv-b", True, "inbound"))
        self.assertEqual((peerB.serverId, peerB.tls, peerB.direction), ("srv-a", True, "outbound"))

    @inlineCallbacks
    def refusedDial(self, certs: dict, counter: str, serverId: str = "srv-b"):
        """
        A node dialing srv-a with C{certs} is refused: srv-a's inbound link
        closes unestablished, counted under C{counter}, state untouched.
        """
        lost = nextLinkLoss(self.a)
        b = yield self.dialA(serverId, certs)
        yield b.clientConnected("sb", 2, "bea")
        link, reason, wasEstablished = yield lost
        self.assertFalse(wasEstablished)
        self.assertEqual(link.direction, "inbound")
        self.assertGreaterEqual(self.a.metrics.linksClosed[counter], 1, dict(self.a.metrics.linksClosed))
        self.assertUntouched()
        self.assertEqual(b._links, {})
        return reason

    @inlineCallbacks
    def test_wrongCARefused(self):
        """
        A client certificate for srv-b from another CA fails the TLS
        handshake; the HELLO and SYNC_STATE behind it change nothing.
        """
        peer, _ = yield self.rawPeer(self.tlsClient("rogue-b"), rogueLines())
        self.assertEqual(self.a.metrics.linksClosed["tls_failed"], 1)
        self.assertNotIn(b"HELLO", peer.received)
        self.assertUntouched()

    @inlineCallbacks
    def test_expiredCertificateRefused(self):
        """
        A node whose certificate (from the cluster CA) has expired is
        refused in the TLS handshake.
        """
        yield self.refusedDial(self.certs["expired-b"], "tls_failed")


    @inlineCallbacks
    def rawPeer(self, endpoint, lines: list[bytes]):
        """Connect a L{RawPeer} writing C{lines}; wait for srv-a to drop it."""
        lost = nextLinkLoss(self.a)
        peer = RawPeer(lines)
        yield endpoint.connect(Factory.forProtocol(lambda: peer))
        link, reason, wasEstablished = yield lost
        yield peer.lost
        self.assertFalse(wasEstablished)
        return peer, reason

    @inlineCallbacks
    def test_noClientCertificateRefused(self):
        """
        A TLS client that trusts the cluster CA but presents no certificate
        is refused in the handshake; its HELLO and SYNC_STATE change nothing.
        """
        ca = Certificate.loadPEM(open(self.certs["srv-a"]["tlsCa"], "rb").read())
        endpoint = SSL4ClientEndpoint(
            reactor, "127.0.0.1", self.portA, optionsForClientTLS("127.0.0.1", trustRoot=ca))
        peer, _ = yield self.rawPeer(endpoint, rogueLines())
        self.assertEqual(self.a.metrics.linksClosed["tls_failed"], 1)
        self.assertNotIn(b"HELLO", peer.received)
        self.assertUntouched()

    @inlineCallbacks
    def test_plainTCPOnTLSPortRefused(self):
        """Plain-text HELLO and SYNC_STATE on the TLS port fail the handshake."""
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.portA)
        peer, _ = yield self.rawPeer(endpoint, rogueLines())
        self.assertEqual(self.a.metrics.linksClosed["tls_failed"], 1)
        self.assertNotIn(b"HELLO", peer.received)
        self.assertUntouched()

    @inlineCallbacks
    def test_garbageDoesNotStopTheNode(self):
        """
        A megabyte of garbage on the TLS port is refused, and the node then
        still links with a good peer.
        """
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.portA)
        yield self.rawPeer(endpoint, [bytes(range(256)) * 4096])
        self.assertUntouched()
        b = yield self.dialA("srv-b", self.certs["srv-b"])
        yield self.cond.waitUntil(lambda: b.state.session("srv-a", "sa") is not None)
        self.assertEqual(sorted(self.a._links), ["srv-b"])

    @inlineCallbacks
    def test_certificateForAnotherServerIdRefused(self):
        """
        A client with a valid certificate for srv-x that says HELLO as srv-b
        is refused at HELLO: its SYNC_STATE is not accepted.
        """
        peer, reason = yield self.rawPeer(self.tlsClient("srv-x"), rogueLines("srv-b"))
        self.assertEqual(self.a.metrics.linksClosed["identity_mismatch"], 1)
        self.assertIn("certificate is for 'srv-x'", reason)
        self.assertNotIn(b"HELLO", peer.received)
        self.assertUntouched()

    @inlineCallbacks
    def test_dialerChecksServerIdentity(self):
        """
        The dialing side checks the server too: a TLS server whose
        certificate names srv-x but whose HELLO says srv-c is refused by
        srv-a when srv-a dials it; its SYNC_STATE is not accepted.
        """
        x = loadMaterial(self.certs["srv-x"])
        port = reactor.listenSSL(
            0, Factory.forProtocol(lambda: RawPeer(rogueLines("srv-c"))),
            x.serverOptions(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        service, a2, _, _ = yield startNode(
            self, reactor, "srv-b", [f"127.0.0.1:{port.getHost().port}"], self.cond,
            listen="ssl:0:interface=127.0.0.1", **self.certs["srv-b"])
        link, reason, wasEstablished = yield nextLinkLoss(a2)
        self.assertFalse(wasEstablished)
        self.assertEqual(link.direction, "outbound")
        self.assertEqual(a2.metrics.linksClosed["identity_mismatch"], 1)
        self.assertIn("certificate is for 'srv-x'", reason)
        self.assertEqual(a2._links, {})
        self.assertEqual([s.sessionId for s in a2.state.allSessions()], [])

    @inlineCallbacks
    def test_hostNameChecked(self):
        """
        A server whose certificate is valid only for e.example fails the
        dialer's host-name check when dialed as 127.0.0.1.
        """
        _, c, portC, _ = yield startNode(
            self, reactor, "srv-e", conditions=self.cond,
            listen="ssl:0:interface=127.0.0.1", **self.certs["elsewhere-e"])
        _, b, _, _ = yield startNode(
            self, reactor, "srv-b", [f"127.0.0.1:{portC}"], self.cond,
            listen="ssl:0:interface=127.0.0.1", **self.certs["srv-b"])
        link, reason, wasEstablished = yield nextLinkLoss(b)
        self.assertFalse(wasEstablished)
        self.assertEqual(b.metrics.linksClosed["tls_failed"], 1)
        self.assertIn("IPAddressMismatch", reason)
        self.assertEqual(b._links, {})


class PlainInteropTests(unittest.TestCase):
    """
    A TLS node that allows one legacy server over plain TCP, on its plain
    port and by dialing it.
    """

    timeout = 30

    @inlineCallbacks
    def setUp(self):
        """srv-a: TLS peer port, plain port for legacy@127.0.0.1."""
        self.certs = makeCerts(self.mktemp())
        self.cond = Conditions(reactor)
        service, self.a, self.portA, _ = yield startNode(
            self, reactor, "srv-a", conditions=self.cond,
            listen="ssl:0:interface=127.0.0.1", plainListen="tcp:0:interface=127.0.0.1",
            plainPeers=["legacy@127.0.0.1"], **self.certs["srv-a"])
        port = yield service.getServiceNamed("peer-listen-plain").whenListening()
        self.plainPortA = port.getHost().port
        yield self.a.clientConnected("sa", 1, "ana")

    @inlineCallbacks
    def test_allowedLegacyLinks(self):
        """The allow-listed serverId from the allowed address links in plain."""
        _, legacy, _, _ = yield startNode(
            self, reactor, "legacy", [f"127.0.0.1:{self.plainPortA}"], self.cond)
        yield legacy.clientConnected("sl", 9, "old")
        yield self.cond.waitUntil(lambda: self.a.state.session("legacy", "sl") is not None)
        (peer,) = yield self.a.peers()
        self.assertEqual((peer.serverId, peer.tls), ("legacy", False))

    @inlineCallbacks
    def test_otherServerIdRefused(self):
        """Another serverId on the plain port is refused at HELLO, state untouched."""
        lost = nextLinkLoss(self.a)
        _, intruder, _, _ = yield startNode(
            self, reactor, "srv-b", [f"127.0.0.1:{self.plainPortA}"], self.cond)
        yield intruder.clientConnected("sb", 2, "bea")
        link, reason, wasEstablished = yield lost
        self.assertFalse(wasEstablished)
        self.assertEqual(self.a.metrics.linksClosed["plain_not_allowed"], 1)
        self.assertEqual(self.a._links, {})
        self.assertEqual([s.sessionId for s in self.a.state.allSessions()], ["sa"])

    @inlineCallbacks
    def test_dialLegacyPlain(self):
        """
        A plain_peers entry with a port is dialed over plain TCP (the
        legacy server has no TLS) and links.
        """
        _, legacy, portL, _ = yield startNode(self, reactor, "legacy", conditions=self.cond)
        yield legacy.clientConnected("sl", 9, "old")
        _, c, _, _ = yield startNode(
            self, reactor, "srv-c", conditions=self.cond, listen="ssl:0:interface=127.0.0.1",
            plainPeers=[f"legacy@127.0.0.1:{portL}"], **self.certs["srv-c"])
        yield self.cond.waitUntil(lambda: c.state.session("legacy", "sl") is not None)
        (peer,) = yield c.peers()
        self.assertEqual((peer.serverId, peer.tls, peer.direction), ("legacy", False, "outbound"))
