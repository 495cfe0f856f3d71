"""
Tests for L{clustersync.links.tls} with real nodes on 127.0.0.1 linking
over mutual TLS: a wrong CA, an expired certificate, a certificate for
another serverId, no client certificate, plain TCP on the TLS port, and a
server failing the host-name check are each refused with no link
established and no state changed.  Also the plain-TCP allow-list over real
sockets.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.trial import unittest

from clustersync.wire.codec import Hello, SessionInfo, encode, encodeSync

from tests.certsupport import loadMaterial, makeCerts
from tests.support import Conditions, startNode


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
