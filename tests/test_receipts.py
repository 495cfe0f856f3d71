"""
Application receipts (X_RECEIVED, an extension message): a node tells a
peer known to understand it how many lines of the link it has read and
handled, and a confirmed send fires only once such a receipt covers its
line.  Who gets receipts is the C{receipts} policy (C{tls}, C{all},
C{none}); an existing server never sees one.

Deterministic: L{StringTransport}, L{Clock} and L{iosim}.
"""

from __future__ import annotations


from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.test import iosim
from twisted.trial import unittest
from zope.interface import directlyProvides

from clustersync.wire.codec import EXTENSION_TYPES, MESSAGE_TYPES, XReceived, decode
from clustersync.app.config import ConfigError, loadConfig
from clustersync.errors import PeerUnavailable
from clustersync.links.factories import PeerClientFactory, PeerServerFactory
from clustersync.links.protocol import INBOUND, OUTBOUND, LinkState, PeerProtocol

from tests.support import ClockGroup
from tests.linksupport import RecordingListener, hello, line, lost, makeNode, parseLines, sync


def receipt(origin: str, lines) -> bytes:
    """An X_RECEIVED line."""
    return line("X_RECEIVED", origin, {"lines": lines})


def session(origin: str, sessionId: str) -> bytes:
    """A SESSION_MESSAGE line."""
    return line("SESSION_MESSAGE", origin, {"sessionId": sessionId, "message": "hola"})


def receiptsIn(data: bytes) -> list[int]:
    """The counts of every X_RECEIVED in C{data}."""
    return [m["payload"]["lines"] for m in parseLines(data) if m["type"] == "X_RECEIVED"]


class _Links:
    """Builds a node C{srv-b} with a given policy and links on L{StringTransport}s."""

    def makeNode(self, receipts: str = "all"):
        """A node C{srv-b} on a L{Clock} with the C{receipts} policy."""
        self.clock = Clock()
        self.node = makeNode("srv-b", self.clock, receipts=receipts)
        self.listener = RecordingListener()
        self.node.addListener(self.listener)
        return self.node

    def connect(self, direction: str = INBOUND, tls: bool = False):
        """A connected L{PeerProtocol} of C{self.node} and its transport."""
        transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.9", 4000))
        if tls:
            directlyProvides(transport, ISSLTransport)
        proto = PeerProtocol(self.node, direction)
        proto.makeConnection(transport)
        return proto, transport

    def established(self, peer: str = "srv-a"):
        """An inbound link that completed HELLO with C{peer}; output cleared."""
        proto, transport = self.connect()
        proto.dataReceived(hello(peer))
        self.assertIs(proto.state, LinkState.ESTABLISHED)
        self.clock.advance(0)
        transport.clear()
        return proto, transport

    def written(self, transport) -> bytes:
        """
        What C{transport} got once the reactor turn ended (a link hands its
        gathered lines to the transport then).
        """
        self.clock.advance(0)
        return transport.value()


class PolicyTests(_Links, unittest.TestCase):
    """Receipts are sent only to peers the policy says understand them."""

    def test_configValues(self) -> None:
        """
        C{receipts} defaults to C{tls}, accepts C{all}/C{none} in any case,
        and anything else is a L{ConfigError} naming the key.
        """
        self.assertEqual(loadConfig().receipts, "tls")
        self.assertEqual(loadConfig(overrides={"receipts": "ALL"}).receipts, "all")
        self.assertEqual(loadConfig(overrides={"receipts": "none"}).receipts, "none")
        for bad in ("yes", "", 1, True):
            e = self.assertRaises(ConfigError, loadConfig, None, {"receipts": bad})
            self.assertEqual(e.key, "receipts")

    def test_codecKeepsSpecTypes(self) -> None:
        """X_RECEIVED is an extension: the nine spec types are unchanged."""
        self.assertNotIn("X_RECEIVED", MESSAGE_TYPES)
        self.assertEqual(len(MESSAGE_TYPES), 9)
        self.assertIs(EXTENSION_TYPES["X_RECEIVED"], XReceived)
        self.assertEqual(decode(receipt("srv-a", 4)[:-1]).payload.lines, 4)

    def test_plainLinkUnderTlsPolicyGetsNone(self) -> None:
        """
        Under C{tls} (the default) a plain link may be an existing server:
        it never gets an X_RECEIVED, whatever it sends.
        """
        self.makeNode("tls")
        proto, transport = self.connect()
        proto.dataReceived(hello("srv-a") + sync("srv-a", "x") + session("srv-a", "nobody"))
        self.assertFalse(proto.receipts)
        self.assertEqual(receiptsIn(self.written(transport)), [])
        self.assertEqual([m["type"] for m in parseLines(self.written(transport))],
                         ["HELLO", "SYNC_STATE"])

    def test_tlsLinkUnderTlsPolicy(self) -> None:
        """
        Under C{tls} a TLS link (a clustersync node) has receipts, from its
        HELLO exchange on (the peer kind is decided then).
        """
        self.makeNode("tls")
        proto, _ = self.connect(tls=True)
        self.assertFalse(proto.receipts)
        # The certificate check is L{LinkSecurity}'s (tests/test_tls.py).
        self.node.checkIdentity = lambda link, hello: None
        proto.dataReceived(hello("srv-a"))
        self.assertTrue(proto.receipts)
        self.assertEqual(proto.kind, "clustersync")

    def test_none(self) -> None:
        """Under C{none} no link has receipts, TLS or not."""
        self.makeNode("none")
        proto, transport = self.connect(tls=True)
        self.assertFalse(proto.receipts)
        proto, transport = self.connect()
        proto.dataReceived(hello("srv-a") + sync("srv-a", "x"))
        self.assertEqual(receiptsIn(self.written(transport)), [])

    def test_allAfterHello(self) -> None:
        """
        Under C{all} the acceptor answers HELLO, sends its SYNC_STATE, then
        one X_RECEIVED counting the HELLO.
        """
        self.makeNode("all")
        proto, transport = self.connect()
        proto.dataReceived(hello("srv-a"))
        self.assertEqual([m["type"] for m in parseLines(self.written(transport))],
                         ["HELLO", "SYNC_STATE", "X_RECEIVED"])
        self.assertEqual(receiptsIn(self.written(transport)), [1])

    def test_neverBeforeHello(self) -> None:
        """
        Lines read before the link is established (refused) get no
        receipt, on either side of the handshake.
        """
        self.makeNode("all")
        proto, transport = self.connect(INBOUND)
        proto.dataReceived(sync("srv-a", "x") + session("srv-a", "s"))
        self.assertEqual(self.written(transport), b"")
        proto, transport = self.connect(OUTBOUND)
        transport.clear()
        proto.dataReceived(sync("srv-a", "x"))
        self.assertEqual(self.written(transport), b"")
        self.assertEqual(self.node.metrics.rejectedInputs["before_handshake"], 3)

    def test_onePerReadCumulative(self) -> None:
        """
        One X_RECEIVED per read, with the cumulative count of lines read on
        the link (HELLO included); a partial line waits for its end.
        """
        self.makeNode("all")
        proto, transport = self.established()
        data = sync("srv-a", "x") + session("srv-a", "x") + session("srv-a", "x")
        proto.dataReceived(data)
        self.assertEqual(receiptsIn(self.written(transport)), [4])
        transport.clear()
        chunk = session("srv-a", "x")
        proto.dataReceived(chunk[:10])
        self.assertEqual(self.written(transport), b"")
        proto.dataReceived(chunk[10:])
        self.assertEqual(receiptsIn(self.written(transport)), [5])

    def test_noReceiptForReceipts(self) -> None:
        """
        A read holding only X_RECEIVED lines changes no count and is not
        answered (no ping-pong between two nodes).
        """
        self.makeNode("all")
        proto, transport = self.established()
        proto.dataReceived(receipt("srv-a", 1))
        self.assertEqual(self.written(transport), b"")
        self.assertEqual(proto.linesReceived, 1)


class SenderTests(_Links, unittest.TestCase):
    """A confirmed send waits for the receipt that covers its line."""

    def setUp(self) -> None:
        """A node under C{all}, linked to C{srv-a} which hosts session C{sa}."""
        self.makeNode("all")
        self.proto, self.transport = self.established()
        self.proto.dataReceived(sync("srv-a", "sa"))
        self.transport.clear()

    def test_firesWhenCovered(self) -> None:
        """
        The Deferred fires only once the peer's count reaches the send's
        line; an earlier receipt fires only the sends it covers.
        """
        first = self.node.sendToSession("sa", "uno")
        mark = self.proto.linesWritten
        second = self.node.sendToSession("sa", "dos")
        self.assertNoResult(first)
        self.proto.dataReceived(receipt("srv-a", mark - 1))
        self.assertNoResult(first)
        self.proto.dataReceived(receipt("srv-a", mark))
        self.assertEqual(self.successResultOf(first).servers, ("srv-a",))
        self.assertNoResult(second)
        self.proto.dataReceived(receipt("srv-a", self.proto.linesWritten))
        self.assertEqual(self.successResultOf(second).servers, ("srv-a",))
        self.assertEqual(self.node.metrics.rejectedInputs, {})

    def test_lostBeforeReceipt(self) -> None:
        """A link lost before the receipt fails the send with L{PeerUnavailable}."""
        d = self.node.sendToSession("sa", "uno")
        lost(self.proto)
        failure = self.failureResultOf(d, PeerUnavailable)
        self.assertEqual(failure.value.servers, ("srv-a",))

    def test_newLinkRestartsCounts(self) -> None:
        """A new link to the same peer counts from zero again."""
        self.node.sendToSession("sa", "uno").addErrback(lambda f: None)
        lost(self.proto)
        proto, transport = self.established()
        self.assertEqual((proto.linesWritten, proto.peerReceived), (2, 0))
        proto.dataReceived(sync("srv-a", "sa"))
        d = self.node.sendToSession("sa", "dos")
        self.assertNoResult(d)
        proto.dataReceived(receipt("srv-a", 3))
        self.successResultOf(d)

    def test_notStateNotDispatched(self) -> None:
        """
        An X_RECEIVED is consumed by the link: not counted as a received
        message, no listener event, no state change, not in the line count.
        """
        before = sorted(s.sessionId for s in self.node.state.allSessions())
        self.listener.events.clear()
        self.proto.dataReceived(receipt("srv-a", 1))
        self.assertNotIn("X_RECEIVED", self.node.metrics.messagesIn)
        self.assertEqual(self.listener.events, [])
        self.assertEqual(sorted(s.sessionId for s in self.node.state.allSessions()), before)
        self.assertEqual(self.proto.linesReceived, 2)
        self.assertEqual(self.proto.peerReceived, 1)

    def test_bogusCounts(self) -> None:
        """
        A negative, non-integer, backwards or beyond-written count is
        rejected and counted; nothing fires, the link stays up.
        """
        d = self.node.sendToSession("sa", "uno")
        self.proto.dataReceived(receipt("srv-a", 2))
        self.proto.dataReceived(
            receipt("srv-a", -1) + receipt("srv-a", "3") + receipt("srv-a", 1.5)
            + receipt("srv-a", 1) + receipt("srv-a", self.proto.linesWritten + 1)
            + receipt("srv-a", None))
        rejected = self.node.metrics.rejectedInputs
        self.assertEqual(rejected["field"], 4)
        self.assertEqual(rejected["bogus_receipt"], 2)
        self.assertEqual(self.proto.peerReceived, 2)
        self.assertNoResult(d)
        self.assertIs(self.proto.state, LinkState.ESTABLISHED)
        self.assertIsNone(self.proto._closeReason)

    def test_originMismatch(self) -> None:
        """An X_RECEIVED naming another origin is refused."""
        d = self.node.sendToSession("sa", "uno")
        self.proto.dataReceived(receipt("srv-x", self.proto.linesWritten))
        self.assertEqual(self.node.metrics.rejectedInputs["origin_mismatch"], 1)
        self.assertNoResult(d)

    def test_beforeHelloRejected(self) -> None:
        """An X_RECEIVED before HELLO is refused like any message."""
        proto, transport = self.connect(OUTBOUND)
        proto.dataReceived(receipt("srv-a", 1))
        self.assertEqual(self.node.metrics.rejectedInputs["before_handshake"], 1)
        self.assertEqual(proto.peerReceived, 0)


class LegacyBehaviourTests(_Links, unittest.TestCase):
    """Without receipts on a link, sends confirm as before."""

    def test_noneConfirmsWithoutReceipts(self) -> None:
        """
        Under C{none}, a send on a link with no countable socket fires at
        once (the old behaviour): nothing waits for an X_RECEIVED.
        """
        self.makeNode("none")
        proto, transport = self.established()
        proto.dataReceived(sync("srv-a", "sa"))
        self.successResultOf(self.node.sendToSession("sa", "uno"))
        self.assertEqual(len(proto._ackWaiters), 0)

    def test_plainPeerUnderTls(self) -> None:
        """
        Under C{tls}, a plain (possibly legacy) peer's sends do not wait
        for receipts; an X_RECEIVED it sends anyway is counted, not used.
        """
        self.makeNode("tls")
        proto, transport = self.established()
        proto.dataReceived(sync("srv-a", "sa"))
        self.successResultOf(self.node.sendToSession("sa", "uno"))
        proto.dataReceived(receipt("srv-a", 1) + receipt("srv-a", 2))
        self.assertEqual(self.node.metrics.rejectedInputs["unexpected_receipt"], 2)
        self.assertEqual(proto.peerReceived, 0)
        self.assertEqual(receiptsIn(self.written(transport)), [])

    def test_peerThatSendsNoReceipts(self) -> None:
        """
        A peer whose SYNC_STATE arrived without any receipt by the first
        liveness check does not send receipts: waiting sends are confirmed
        the old way (here at once: no socket to ask), and later sends too.
        """
        self.makeNode("all")
        proto, transport = self.established()
        proto.dataReceived(sync("srv-a", "sa"))
        d = self.node.sendToSession("sa", "uno")
        self.assertNoResult(d)
        self.clock.advance(self.node.config.deadPeerTimeout / 6)
        self.successResultOf(d)
        self.assertFalse(proto.receipts)
        self.assertEqual(self.node.metrics.rejectedInputs["no_receipts"], 1)
        self.successResultOf(self.node.sendToSession("sa", "dos"))

    def test_receiptsKeptWhenPeerSendsThem(self) -> None:
        """A peer that sent a receipt keeps receipts after the liveness check."""
        self.makeNode("all")
        proto, transport = self.established()
        proto.dataReceived(sync("srv-a", "sa") + receipt("srv-a", 1))
        d = self.node.sendToSession("sa", "uno")
        self.clock.advance(self.node.config.deadPeerTimeout / 6)
        self.assertNoResult(d)
        self.assertTrue(proto.receipts)


class TwoNodeTests(unittest.TestCase):
    """Two nodes under C{all} linked in memory with L{iosim}."""

    def setUp(self) -> None:
        """Nodes C{srv-a} (dialer) and C{srv-b}, session C{sb} on C{srv-b}."""
        self.a = makeNode("srv-a", Clock(), receipts="all")
        self.b = makeNode("srv-b", Clock(), receipts="all")
        self.b.clientConnected("sb", 2, "dos", None, [5])
        factory = PeerClientFactory(self.a, "b:7001", self.a.clock)
        self.inbound, self.outbound, self.pump = iosim.connectedServerAndClient(
            lambda: PeerServerFactory(self.b).buildProtocol(None),
            lambda: factory.buildProtocol(None),
            clock=ClockGroup(self.a.clock, self.b.clock),
        )
        self.pump.flush()

    def test_sendConfirmedByReceipt(self) -> None:
        """
        A send fires once the peer read it, and the receipts settle: after
        the exchange each side has acknowledged every line of the other.
        """
        self.assertEqual(self.a.state.session("srv-b", "sb").clienteId, 2)
        d = self.a.sendToSession("sb", "hola")
        self.assertNoResult(d)
        self.pump.flush()
        self.assertEqual(self.successResultOf(d).servers, ("srv-b",))
        for proto, other in ((self.outbound, self.inbound), (self.inbound, self.outbound)):
            self.assertEqual(proto.peerReceived, proto.linesWritten)
            self.assertEqual(other.linesReceived, proto.linesWritten)
        self.assertEqual(self.a.metrics.rejectedInputs, {})
        self.assertEqual(self.b.metrics.rejectedInputs, {})
