"""
Tests for L{clustersync.links.protocol}: the handshake state machine, framing and
input rejection of L{PeerProtocol} (over L{StringTransport} and a
L{Clock}), two nodes linked in memory (L{twisted.test.iosim}), the
duplicate-link tie-break, link loss, and the backoff of
L{PeerClientFactory}.
"""

from __future__ import annotations

import json

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from clustersync.wire.codec import XReceived, XReceivedPayload
from clustersync.app.config import NodeConfig
from clustersync.links import protocol as linkModule
from clustersync.handlers.builtin import BUILTIN_HANDLERS
from clustersync.interfaces import IClusterListener, IMessageHandler, IPeerLink
from clustersync.links.protocol import (
    INBOUND,
    OUTBOUND,
    LinkState,
    PeerClientFactory,
    PeerProtocol,
    PeerServerFactory,
)
from clustersync.cluster.node import ClusterNode
from tests.support import ClockGroup


def makeNode(serverId: str = "srv-b", clock: Clock | None = None, **settings) -> ClusterNode:
    """A L{ClusterNode} with the built-in handlers, on a L{Clock}."""
    settings.setdefault("openLinks", True)
    config = NodeConfig(serverId=serverId, listen=None, clients=None, **settings)
    return ClusterNode(config, clock if clock is not None else Clock(), BUILTIN_HANDLERS)


def line(kind: str, origin: str, payload: dict, **extra) -> bytes:
    """One wire line built with the standard C{json} module."""
    return json.dumps({"type": kind, "origin": origin, "payload": payload, **extra}).encode() + b"\n"


def hello(serverId: str, origin: str | None = None) -> bytes:
    """A HELLO line."""
    return line("HELLO", origin or serverId, {"serverId": serverId})


def connected(origin: str, sessionId: str, clienteId: int = 7, canales=(), usuario="ana") -> bytes:
    """A CLIENT_CONNECTED line."""
    return line("CLIENT_CONNECTED", origin, {
        "serverId": origin, "sessionId": sessionId, "clienteId": clienteId,
        "usuario": usuario, "ip": None, "canales": list(canales)})


def sync(origin: str, *sessionIds: str) -> bytes:
    """A SYNC_STATE line with one session per id."""
    return line("SYNC_STATE", origin, {"sessions": [
        {"serverId": origin, "sessionId": s, "clienteId": 1, "usuario": "u", "ip": None,
         "canales": []} for s in sessionIds]})


def parseLines(data: bytes) -> list[dict]:
    """Every line written, parsed."""
    return [json.loads(x) for x in data.split(b"\n") if x]


def lost(proto: PeerProtocol) -> None:
    """Deliver C{connectionLost} (a L{StringTransport} never does)."""
    proto.connectionLost(Failure(ConnectionDone("closed")))


@implementer(IClusterListener)
class RecordingListener:
    """Records every listener call as a tuple."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def peerConnected(self, peer) -> None:
        """Record."""
        self.events.append(("peerConnected", peer))

    def peerDisconnected(self, peer, reason) -> None:
        """Record."""
        self.events.append(("peerDisconnected", peer.serverId, reason))

    def sessionAdded(self, session) -> None:
        """Record."""
        self.events.append(("sessionAdded", session.serverId, session.sessionId))

    def sessionRemoved(self, session) -> None:
        """Record."""
        self.events.append(("sessionRemoved", session.serverId, session.sessionId))

    def membershipChanged(self, session, canalId, joined) -> None:
        """Record."""
        self.events.append(("membershipChanged", session.sessionId, canalId, joined))


class FakeConnector:
    """A connector that counts C{connect} calls."""

    def __init__(self) -> None:
        self.connects = 0

    def connect(self) -> None:
        """Count one (re)connection attempt."""
        self.connects += 1

    def stopConnecting(self) -> None:
        """Nothing to stop."""

    def disconnect(self) -> None:
        """Nothing to disconnect."""


class LinkTestMixin:
    """Builds one node and links on L{StringTransport}s."""

    def setUp(self) -> None:
        """A node C{srv-b} on a L{Clock}, with a recording listener."""
        self.clock = Clock()
        self.node = makeNode("srv-b", self.clock)
        self.listener = RecordingListener()
        self.node.addListener(self.listener)

    def connect(self, direction: str = INBOUND, factory=None, node=None):
        """A connected L{PeerProtocol} and its L{StringTransport}."""
        node = node or self.node
        proto = PeerProtocol(node, direction, factory)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.9", 4000))
        proto.makeConnection(transport)
        return proto, transport

    def written(self, transport) -> bytes:
        """
        What C{transport} got once the reactor turn ended (a link hands
        the lines it gathered to its transport then).
        """
        self.clock.advance(0)
        return transport.value()

    def batchedLink(self):
        """An established link on a L{_CountingTransport}, its output cleared."""
        proto = PeerProtocol(self.node, INBOUND)
        transport = _CountingTransport()
        proto.makeConnection(transport)
        proto.dataReceived(hello("srv-a"))
        self.clock.advance(0)
        transport.clear()
        transport.writes = 0
        return proto, transport

    def established(self, peer: str = "srv-a"):
        """An inbound link that completed its HELLO exchange with C{peer}."""
        proto, transport = self.connect(INBOUND)
        proto.dataReceived(hello(peer))
        self.assertIs(proto.state, LinkState.ESTABLISHED)
        self.clock.advance(0)  # the end of the reactor turn: lines go out
        transport.clear()
        return proto, transport


class HandshakeTests(LinkTestMixin, unittest.TestCase):
    """The HELLO state machine of one link."""

    def test_dialerSendsHelloFirst(self) -> None:
        """
        An outbound link writes exactly one HELLO on connect and is
        HELLO_SENT; the peer's HELLO makes it ESTABLISHED without a second
        HELLO, and SYNC_STATE with the local sessions follows.
        """
        self.node.clientConnected("s1", 12, "carlos", "10.1.1.1", [3, 8])
        proto, transport = self.connect(OUTBOUND)
        self.assertEqual(parseLines(transport.value()), [
            {"type": "HELLO", "origin": "srv-b", "payload": {"serverId": "srv-b"}}])
        self.assertIs(proto.state, LinkState.HELLO_SENT)
        transport.clear()
        proto.dataReceived(hello("srv-a"))
        self.assertIs(proto.state, LinkState.ESTABLISHED)
        self.assertEqual(proto.serverId, "srv-a")
        self.clock.advance(0)  # the end of the reactor turn: lines go out
        self.assertEqual(parseLines(transport.value()), [
            {"type": "SYNC_STATE", "origin": "srv-b", "payload": {"sessions": [
                {"serverId": "srv-b", "sessionId": "s1", "clienteId": 12, "usuario": "carlos",
                 "ip": "10.1.1.1", "canales": [3, 8]}]}}])
        self.assertIs(self.node.linkFor("srv-a"), proto)

    def test_acceptorWaitsThenAnswers(self) -> None:
        """
        An inbound link writes nothing until the peer's HELLO, then answers
        HELLO followed by SYNC_STATE, and tells listeners.
        """
        proto, transport = self.connect(INBOUND)
        self.assertEqual(transport.value(), b"")
        self.assertIs(proto.state, LinkState.CONNECTING)
        self.clock.advance(3)
        proto.dataReceived(hello("srv-a"))
        self.clock.advance(0)
        written = parseLines(transport.value())
        self.assertEqual([m["type"] for m in written], ["HELLO", "SYNC_STATE"])
        self.assertEqual(written[0]["payload"], {"serverId": "srv-b"})
        self.assertEqual(written[1]["payload"], {"sessions": []})
        self.assertIs(proto.state, LinkState.ESTABLISHED)
        [(event, peer)] = self.listener.events
        self.assertEqual(event, "peerConnected")
        self.assertEqual(
            (peer.serverId, peer.direction, peer.address, peer.since, peer.tls),
            ("srv-a", "inbound", "10.0.0.9:4000", 3.0, False))

    def test_eagerHello(self) -> None:
        """
        With C{eagerHello}, an acceptor sends HELLO at once too; the peer's
        HELLO then establishes the link with no second HELLO.
        """
        self.node = makeNode("srv-b", self.clock, eagerHello=True)
        proto, transport = self.connect(INBOUND)
        self.assertEqual([m["type"] for m in parseLines(transport.value())], ["HELLO"])
        self.assertIs(proto.state, LinkState.HELLO_SENT)
        proto.dataReceived(hello("srv-a"))
        self.clock.advance(0)
        self.assertEqual([m["type"] for m in parseLines(transport.value())], ["HELLO", "SYNC_STATE"])
        self.assertIs(proto.state, LinkState.ESTABLISHED)

    def test_handshakeTimeout(self) -> None:
        """
        A link with no HELLO within C{handshakeTimeout} is closed and
        counted; it never becomes a peer.
        """
        proto, transport = self.connect(INBOUND)
        self.clock.advance(self.node.config.handshakeTimeout - 0.5)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.node.metrics.linksClosed["handshake_timeout"], 1)
        lost(proto)
        self.assertIs(proto.state, LinkState.CLOSED)
        self.assertEqual(self.node._openLinks, set())
        self.assertEqual(self.listener.events, [])

    def test_helloCancelsTimeout(self) -> None:
        """
        Once established, no handshake timer is left (only the link's
        liveness check) and the link stays open.
        """
        proto, transport = self.established()
        self.assertEqual(
            [c.func.__name__ for c in self.clock.getDelayedCalls()], ["_checkLiveness"])
        self.clock.advance(self.node.config.handshakeTimeout * 2)
        self.assertFalse(transport.disconnecting)

    def test_lossBeforeHelloCancelsTimeout(self) -> None:
        """A link lost during the handshake leaves no timer behind."""
        proto, transport = self.connect(INBOUND)
        lost(proto)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_messageBeforeHelloRejected(self) -> None:
        """
        Any message before HELLO (in CONNECTING or HELLO_SENT) is counted
        and dropped: no state change, no reply, the link stays up.
        """
        for direction, state in ((INBOUND, LinkState.CONNECTING), (OUTBOUND, LinkState.HELLO_SENT)):
            proto, transport = self.connect(direction)
            transport.clear()
            proto.dataReceived(connected("srv-a", "s1") + sync("srv-a", "s2"))
            self.assertIs(proto.state, state)
            self.assertEqual(self.written(transport), b"")
            self.assertFalse(transport.disconnecting)
        self.assertEqual(self.node.metrics.rejectedInputs["before_handshake"], 4)
        self.assertEqual(list(self.node.state.allSessions()), [])
        self.assertEqual(self.node.metrics.messagesIn, {})

    def test_duplicateHelloRejected(self) -> None:
        """
        A second HELLO on an established link is counted and ignored; the
        link stays up and active, nothing is written.
        """
        proto, transport = self.established()
        proto.dataReceived(hello("srv-a"))
        self.assertEqual(self.node.metrics.rejectedInputs["duplicate_hello"], 1)
        self.assertIs(proto.state, LinkState.ESTABLISHED)
        self.assertIs(self.node.linkFor("srv-a"), proto)
        self.assertEqual(self.written(transport), b"")
        self.assertFalse(transport.disconnecting)

    def test_helloWithOtherIdOnEstablishedLink(self) -> None:
        """A HELLO naming another server on an established link is refused."""
        proto, transport = self.established()
        proto.dataReceived(hello("srv-x"))
        self.assertEqual(self.node.metrics.rejectedInputs["origin_mismatch"], 1)
        self.assertEqual(proto.serverId, "srv-a")
        self.assertIsNone(self.node.linkFor("srv-x"))

    def test_selfLinkOutbound(self) -> None:
        """
        A HELLO carrying our own serverId on an outbound link closes it and
        the dialing factory stops trying: no retry is scheduled.
        """
        factory = PeerClientFactory(self.node, "127.0.0.1:7001", self.clock)
        connector = FakeConnector()
        proto, transport = self.connect(OUTBOUND, factory)
        proto.dataReceived(hello("srv-b"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.node.metrics.linksClosed["self_link"], 1)
        self.assertFalse(factory.continueTrying)
        lost(proto)
        factory.clientConnectionLost(connector, Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(3600)
        self.assertEqual(connector.connects, 0)
        self.assertEqual(self.listener.events, [])
        self.assertEqual(self.successResultOf(self.node.peers()), [])

    def test_selfLinkInbound(self) -> None:
        """
        An inbound HELLO with our own serverId closes the link, no peer; our
        HELLO is answered first so that the dialer (this node) stops.
        """
        proto, transport = self.connect(INBOUND)
        proto.dataReceived(hello("srv-b"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(parseLines(transport.value()), [
            {"type": "HELLO", "origin": "srv-b", "payload": {"serverId": "srv-b"}}])
        self.assertIsNone(self.node.linkFor("srv-b"))

    def test_emptyServerIdRefused(self) -> None:
        """A HELLO with an empty serverId is counted and the link closed."""
        proto, transport = self.connect(INBOUND)
        proto.dataReceived(hello(""))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.node.metrics.rejectedInputs["field"], 1)
        self.assertEqual(self.listener.events, [])

    def test_originMismatchRejected(self) -> None:
        """
        A message whose C{origin} is not the link's serverId is counted and
        dropped; the link stays up and the next good message is applied.
        """
        proto, transport = self.established()
        proto.dataReceived(connected("srv-x", "s1") + connected("srv-a", "s2"))
        self.assertEqual(self.node.metrics.rejectedInputs["origin_mismatch"], 1)
        self.assertEqual([(s.serverId, s.sessionId) for s in self.node.state.allSessions()],
                         [("srv-a", "s2")])
        self.assertFalse(transport.disconnecting)

    def test_sessionsAttributedToLinkServer(self) -> None:
        """
        The C{serverId} inside a session payload is ignored: the session
        belongs to the link's server.
        """
        proto, transport = self.established()
        proto.dataReceived(line("CLIENT_CONNECTED", "srv-a", {
            "serverId": "srv-z", "sessionId": "s1", "clienteId": 1, "usuario": "u",
            "ip": None, "canales": []}))
        self.assertIsNotNone(self.node.state.session("srv-a", "s1"))
        self.assertIsNone(self.node.state.session("srv-z", "s1"))

    def test_laterRevisionFieldsIgnored(self) -> None:
        """
        C{target}, C{route} and C{instanceId} of a later spec revision are
        accepted and ignored.
        """
        proto, transport = self.connect(INBOUND)
        proto.dataReceived(line("HELLO", "srv-a", {"serverId": "srv-a", "instanceId": "x1"},
                                target=None, route=["srv-a"]))
        proto.dataReceived(connected("srv-a", "s1")[:-2] + b', "route": ["srv-a"], "target": "srv-b"}\n')
        self.assertIs(proto.state, LinkState.ESTABLISHED)
        self.assertIsNotNone(self.node.state.session("srv-a", "s1"))
        self.assertEqual(self.node.metrics.rejectedInputs, {})


class FramingTests(LinkTestMixin, unittest.TestCase):
    """Line framing and bad input on one link."""

    def test_lineSplitAcrossManyReads(self) -> None:
        """A line fed one byte at a time is decoded once, when complete."""
        proto, transport = self.established()
        data = connected("srv-a", "s1", canales=[4])
        for i in range(len(data)):
            self.assertIsNone(self.node.state.session("srv-a", "s1"))
            proto.dataReceived(data[i:i + 1])
        self.assertEqual(self.node.state.session("srv-a", "s1").canales, {4})
        self.assertEqual(self.node.metrics.messagesIn["CLIENT_CONNECTED"], 1)

    def test_severalLinesInOneRead(self) -> None:
        """HELLO, SYNC_STATE and a CLIENT_CONNECTED in one read all apply."""
        proto, transport = self.connect(INBOUND)
        proto.dataReceived(hello("srv-a") + sync("srv-a", "s1", "s2") + connected("srv-a", "s3"))
        self.assertEqual({s.sessionId for s in self.node.state.sessionsOf("srv-a")},
                         {"s1", "s2", "s3"})

    def test_linesSplitAtOddPlaces(self) -> None:
        """Reads that end mid-line and start mid-line are reassembled."""
        proto, transport = self.established()
        data = connected("srv-a", "s1") + connected("srv-a", "s2") + connected("srv-a", "s3")
        for start in range(0, len(data), 37):
            proto.dataReceived(data[start:start + 37])
        self.assertEqual({s.sessionId for s in self.node.state.sessionsOf("srv-a")},
                         {"s1", "s2", "s3"})

    def test_crlfTolerated(self) -> None:
        """Lines ending in CRLF are read like lines ending in LF."""
        proto, transport = self.connect(INBOUND)
        proto.dataReceived(hello("srv-a")[:-1] + b"\r\n" + connected("srv-a", "s1")[:-1] + b"\r\n")
        self.assertIs(proto.state, LinkState.ESTABLISHED)
        self.assertIsNotNone(self.node.state.session("srv-a", "s1"))
        self.assertEqual(self.node.metrics.rejectedInputs, {})

    def test_blankLinesIgnored(self) -> None:
        """Empty and whitespace-only lines are neither errors nor messages."""
        proto, transport = self.connect(INBOUND)
        proto.dataReceived(b"\n\r\n   \n\t\r\n")
        self.assertEqual(self.node.metrics.rejectedInputs, {})
        self.assertEqual(self.node.metrics.messagesIn, {})
        self.assertIs(proto.state, LinkState.CONNECTING)
        self.assertFalse(transport.disconnecting)

    def test_partialLineOverMaxSyncClosesLink(self) -> None:
        """
        A partial line that grows past C{maxSyncLength} closes the link
        with a reason naming the limit, before the line is complete.
        """
        self.node = makeNode("srv-b", self.clock, maxSyncLength=1000)
        self.node.addListener(self.listener)
        proto, transport = self.established()
        proto.dataReceived(b"x" * 600)
        self.assertFalse(transport.disconnecting)
        proto.dataReceived(b"x" * 600)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.node.metrics.rejectedInputs["oversize_line"], 1)
        lost(proto)
        self.assertEqual(self.listener.events[-1][:2], ("peerDisconnected", "srv-a"))
        self.assertIn("exceeds 1000", self.listener.events[-1][2])

    def test_tailOverMaxSyncInReadWithNewline(self) -> None:
        """
        An over-long partial tail after a complete line also closes the link.
        """
        self.node = makeNode("srv-b", self.clock, maxSyncLength=1000)
        proto, transport = self.established()
        proto.dataReceived(b"\n" + b"y" * 1200)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.node.metrics.rejectedInputs["oversize_line"], 1)

    def test_completeLineOverMaxSyncClosesLink(self) -> None:
        """A complete line longer than C{maxSyncLength} closes the link."""
        self.node = makeNode("srv-b", self.clock, maxSyncLength=1000)
        proto, transport = self.established()
        proto.dataReceived(sync("srv-a", *[f"session-{i}" for i in range(40)]))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(list(self.node.state.sessionsOf("srv-a")), [])

    def test_messageOverMaxMessageLengthRejected(self) -> None:
        """
        A non-SYNC line longer than C{maxMessageLength} is counted and
        dropped; the link stays up, the next line is applied, and a
        SYNC_STATE of that size is accepted.
        """
        self.node = makeNode("srv-b", self.clock, maxMessageLength=300)
        proto, transport = self.established()
        big = connected("srv-a", "big", usuario="u" * 250)
        bigSync = sync("srv-a", *[f"session-{i}" for i in range(10)])
        self.assertGreater(len(bigSync), 300)
        proto.dataReceived(big + connected("srv-a", "small"))
        self.assertEqual(self.node.metrics.rejectedInputs["oversize_message"], 1)
        self.assertFalse(transport.disconnecting)
        self.assertEqual({s.sessionId for s in self.node.state.sessionsOf("srv-a")}, {"small"})
        proto.dataReceived(bigSync)
        self.assertEqual(len(self.node.state.sessionsOf("srv-a")), 10)
        self.assertEqual(self.node.metrics.rejectedInputs["oversize_message"], 1)

    def test_badJsonCountedLinkStaysUp(self) -> None:
        """
        A line that is not JSON is counted; the lines after it in the same
        read are still processed and the link stays up.
        """
        proto, transport = self.established()
        proto.dataReceived(b"{not json\n" + connected("srv-a", "s1"))
        self.assertEqual(self.node.metrics.rejectedInputs["json"], 1)
        self.assertIsNotNone(self.node.state.session("srv-a", "s1"))
        self.assertFalse(transport.disconnecting)
        self.assertIs(proto.state, LinkState.ESTABLISHED)

    def test_badUtf8CountedLinkStaysUp(self) -> None:
        """A line that is not UTF-8 is counted as such; the link stays up."""
        proto, transport = self.established()
        proto.dataReceived(b'{"type":"CLIENT_CONNECTED","origin":"\xff\xfe"}\n' + connected("srv-a", "s1"))
        self.assertEqual(self.node.metrics.rejectedInputs["utf8"], 1)
        self.assertIsNotNone(self.node.state.session("srv-a", "s1"))
        self.assertFalse(transport.disconnecting)

    def test_badMessagesChangeNothing(self) -> None:
        """
        Unknown types, non-objects and mistyped fields are counted under
        their reason and change no state.
        """
        proto, transport = self.established()
        proto.dataReceived(
            line("NOT_A_TYPE", "srv-a", {})
            + b"[1, 2]\n"
            + line("CLIENT_CONNECTED", "srv-a", {"sessionId": "s1", "clienteId": "doce",
                                                 "usuario": "u"})
            + line("CLIENT_CONNECTED", "srv-a", {"sessionId": "s1", "clienteId": 2 ** 64,
                                                 "usuario": "u"}))
        rejected = self.node.metrics.rejectedInputs
        self.assertEqual((rejected["type"], rejected["envelope"], rejected["field"]), (1, 1, 2))
        self.assertEqual(list(self.node.state.allSessions()), [])
        self.assertEqual(self.listener.events[1:], [])
        self.assertFalse(transport.disconnecting)


@implementer(IMessageHandler)
class _Closer:
    """A handler that closes the link when a session with id C{stop} arrives."""

    name = "test.closer"
    messageTypes = ("CLIENT_CONNECTED",)

    def handleMessage(self, node, link, message) -> None:
        """Close C{link} on the session C{stop}."""
        if message.payload.sessionId == "stop":
            link.loseConnection("test handler closed it")


class ReadAtOnceTests(LinkTestMixin, unittest.TestCase):
    """
    The lines of one read on an established link are decoded together
    (L{clustersync.wire.codec.decodeLines}); the outcome must be what handling
    them line by line gives.
    """

    def test_manyLinesOneRead(self) -> None:
        """Every line of a large read is applied and counted, in order."""
        proto, transport = self.established()
        proto.dataReceived(b"".join(connected("srv-a", f"s{i}", clienteId=i) for i in range(500)))
        self.assertEqual(len(self.node.state.sessionsOf("srv-a")), 500)
        self.assertEqual(self.node.metrics.messagesIn["CLIENT_CONNECTED"], 500)
        self.assertEqual(proto.linesReceived, 501)  # HELLO included
        added = [e[2] for e in self.listener.events if e[0] == "sessionAdded"]
        self.assertEqual(added, [f"s{i}" for i in range(500)])

    def test_wrongOriginInRead(self) -> None:
        """
        A line with another origin, amid good ones in one read, is counted
        and dropped; the lines around it apply.
        """
        proto, transport = self.established()
        proto.dataReceived(connected("srv-a", "s1") + connected("srv-x", "s2", clienteId=8)
                           + connected("srv-a", "s3", clienteId=9))
        self.assertEqual(self.node.metrics.rejectedInputs, {"origin_mismatch": 1})
        self.assertEqual({s.sessionId for s in self.node.state.sessionsOf("srv-a")}, {"s1", "s3"})
        self.assertIsNone(self.node.state.session("srv-x", "s2"))

    def test_closedHalfWay(self) -> None:
        """
        When a handler closes the link half-way through a read, the lines
        after that one are not applied.
        """
        self.node.registerHandler(_Closer())
        proto, transport = self.established()
        proto.dataReceived(connected("srv-a", "s1") + connected("srv-a", "stop", clienteId=8)
                           + connected("srv-a", "s3", clienteId=9))
        self.assertTrue(transport.disconnecting)
        self.assertEqual({s.sessionId for s in self.node.state.sessionsOf("srv-a")},
                         {"s1", "stop"})

    def test_sameAsLineByLine(self) -> None:
        """
        The same read gives the same state, counters and events whether
        its lines are decoded together or one by one: ordinary messages,
        a SYNC_STATE, a wrong origin, a HELLO again and an X_RECEIVED.
        """
        data = (sync("srv-a", "s1", "s2") + connected("srv-a", "s3", canales=[4])
                + line("CHANNEL_MEMBERSHIP", "srv-a", {"sessionId": "s1", "clienteId": 7,
                                                       "canalId": 4, "action": "JOIN"})
                + connected("srv-z", "s9") + hello("srv-a")
                + line("X_RECEIVED", "srv-a", {"lines": 0})
                + line("CLIENT_DISCONNECTED", "srv-a", {"sessionId": "s2", "clienteId": 7}))

        realDecodeLines = linkModule.decodeLines

        def outcome(batched: bool):
            self.node = makeNode("srv-b", self.clock)
            self.listener = RecordingListener()
            self.node.addListener(self.listener)
            proto, transport = self.established()
            decoded = []

            def decodeLines(lines):
                messages = realDecodeLines(lines) if batched else None
                decoded.append(messages is not None)
                return messages

            self.patch(linkModule, "decodeLines", decodeLines)
            proto.dataReceived(data)
            self.assertEqual(decoded, [batched])
            return (sorted((s.sessionId, sorted(s.canales))
                           for s in self.node.state.sessionsOf("srv-a")),
                    dict(self.node.metrics.messagesIn), dict(self.node.metrics.rejectedInputs),
                    self.listener.events, proto.linesReceived, proto.syncsReceived)

        together = outcome(True)
        self.assertEqual(together[2], {"origin_mismatch": 1, "duplicate_hello": 1,
                                       "unexpected_receipt": 1})
        self.assertEqual(together[4], 7)  # HELLO and 6 lines; the X_RECEIVED is not counted
        self.assertEqual(together[5], 1)
        self.assertEqual(together, outcome(False))


class TwoNodeTests(unittest.TestCase):
    """Two nodes linked in memory with L{iosim}."""

    def setUp(self) -> None:
        """Nodes C{srv-a} and C{srv-b}, each with one local session."""
        self.clockA, self.clockB = Clock(), Clock()
        self.a = makeNode("srv-a", self.clockA)
        self.b = makeNode("srv-b", self.clockB)
        self.a.clientConnected("sa", 1, "uno", None, [5])
        self.b.clientConnected("sb", 2, "dos", None, [5])
        self.listenerA = RecordingListener()
        self.listenerB = RecordingListener()
        self.a.addListener(self.listenerA)
        self.b.addListener(self.listenerB)
        self.factoryA = PeerClientFactory(self.a, "b:7001", self.clockA)
        self.factoryB = PeerClientFactory(self.b, "a:7001", self.clockB)
        self.a.outboundFactories.append(self.factoryA)
        self.b.outboundFactories.append(self.factoryB)

    def dial(self, dialer: ClusterNode, factory, acceptor: ClusterNode):
        """
        Connect C{dialer} (an outbound link built by C{factory}) to
        C{acceptor} (an inbound link from L{PeerServerFactory}).

        @return: C{(outboundLink, inboundLink, pump)}.
        """
        client, server, pump = iosim.connectedServerAndClient(
            lambda: PeerServerFactory(acceptor).buildProtocol(None),
            lambda: factory.buildProtocol(None),
            clock=ClockGroup(dialer.clock, acceptor.clock),
        )
        pump.flush()
        return client, server, pump

    def test_handshakeAndSync(self) -> None:
        """
        Both sides become established and learn each other's session,
        attributed to the other server.
        """
        out, inb, pump = self.dial(self.b, self.factoryB, self.a)
        self.assertIs(out.state, LinkState.ESTABLISHED)
        self.assertIs(inb.state, LinkState.ESTABLISHED)
        self.assertEqual(self.a.state.session("srv-b", "sb").clienteId, 2)
        self.assertEqual(self.b.state.session("srv-a", "sa").canales, {5})
        [peer] = self.successResultOf(self.a.peers())
        self.assertEqual((peer.serverId, peer.direction), ("srv-b", "inbound"))
        [peer] = self.successResultOf(self.b.peers())
        self.assertEqual((peer.serverId, peer.direction), ("srv-a", "outbound"))
        self.assertEqual(self.a.metrics.messagesOut["SYNC_STATE"], 1)
        self.assertEqual(self.b.metrics.messagesIn["SYNC_STATE"], 1)
        self.assertEqual(self.factoryB.peerServerId, "srv-a")

    def test_liveEventsFlow(self) -> None:
        """After the handshake, presence changes on one side reach the other."""
        out, inb, pump = self.dial(self.b, self.factoryB, self.a)
        self.a.clientConnected("sa2", 3, "tres", None, [])
        self.a.joinChannel("sa2", 9)
        self.b.clientDisconnected("sb")
        pump.flush()
        self.assertEqual(self.b.state.session("srv-a", "sa2").canales, {9})
        self.assertIsNone(self.a.state.session("srv-b", "sb"))

    def test_activeLinkLossDropsSessions(self) -> None:
        """
        Losing the active link removes the peer's sessions and tells
        listeners: sessionRemoved first, then peerDisconnected.
        """
        out, inb, pump = self.dial(self.b, self.factoryB, self.a)
        self.listenerA.events.clear()
        out.transport.loseConnection()
        pump.flush()
        self.assertIs(inb.state, LinkState.CLOSED)
        self.assertEqual(self.a.state.sessionsOf("srv-b"), [])
        self.assertEqual(self.listenerA.events[0], ("sessionRemoved", "srv-b", "sb"))
        self.assertEqual(self.listenerA.events[1][:2], ("peerDisconnected", "srv-b"))
        self.assertEqual(len(self.listenerA.events), 2)
        self.assertEqual(self.successResultOf(self.a.peers()), [])
        self.assertIsNone(self.b.state.session("srv-a", "sa"))

    def tieBreak(self):
        """
        B dials A and the link is established; then A dials B.  Both sides
        must keep the link dialed by srv-a (the smaller serverId).

        @return: C{(bToA, aFromB, aToB, bFromA, pump1, pump2)}.
        """
        bToA, aFromB, pump1 = self.dial(self.b, self.factoryB, self.a)
        self.listenerA.events.clear()
        self.listenerB.events.clear()
        aToB, bFromA, pump2 = self.dial(self.a, self.factoryA, self.b)
        pump1.flush()
        pump2.flush()
        return bToA, aFromB, aToB, bFromA, pump1, pump2

    def test_tieBreakKeepsLinkDialedBySmallerId(self) -> None:
        """
        Both nodes keep the srv-a-dialed connection, close the other with
        reason C{duplicate}, lose no session and tell listeners nothing.
        """
        bToA, aFromB, aToB, bFromA, pump1, pump2 = self.tieBreak()
        self.assertIs(self.a.linkFor("srv-b"), aToB)
        self.assertIs(self.b.linkFor("srv-a"), bFromA)
        self.assertIs(bToA.state, LinkState.CLOSED)
        self.assertIs(aFromB.state, LinkState.CLOSED)
        self.assertIs(aToB.state, LinkState.ESTABLISHED)
        self.assertEqual(self.a.metrics.linksClosed["duplicate"]
                         + self.b.metrics.linksClosed["duplicate"], 2)
        self.assertIsNotNone(self.a.state.session("srv-b", "sb"))
        self.assertIsNotNone(self.b.state.session("srv-a", "sa"))
        self.assertEqual(self.listenerA.events, [])
        self.assertEqual(self.listenerB.events, [])
        self.assertEqual(self.a._openLinks, {aToB})
        self.assertEqual(self.b._openLinks, {bFromA})
        # The kept link carries later events.
        self.b.clientConnected("sb2", 4, "cuatro")
        pump2.flush()
        self.assertIsNotNone(self.a.state.session("srv-b", "sb2"))

    def test_tieBreakLoserFactoryOnStandby(self) -> None:
        """
        B's outbound link lost the tie-break: its factory goes on standby
        and does not redial when that link closes; once the kept link is
        lost, the factory wakes and redials.
        """
        bToA, aFromB, aToB, bFromA, pump1, pump2 = self.tieBreak()
        self.assertTrue(self.factoryB.standby)
        self.assertFalse(self.factoryA.standby)
        connector = FakeConnector()
        self.factoryB.clientConnectionLost(connector, Failure(ConnectionDone()))
        self.assertEqual(
            [c for c in self.clockB.getDelayedCalls() if c.func.__name__ != "_checkLiveness"], [])
        self.clockB.advance(3600)
        self.assertEqual(connector.connects, 0)
        aToB.transport.loseConnection()
        pump2.flush()
        self.assertFalse(self.factoryB.standby)
        self.assertIsNone(self.b.state.session("srv-a", "sa"))
        self.clockB.advance(self.factoryB.maxDelay * 2)
        self.assertEqual(connector.connects, 1)

    def test_tieBreakNewLinkLoses(self) -> None:
        """
        When the new link is the loser (srv-b has an inbound link from
        srv-a, then dials srv-a), the new outbound link is closed and the
        existing one stays active, sessions intact.
        """
        aToB, bFromA, pump1 = self.dial(self.a, self.factoryA, self.b)
        bToA, aFromB, pump2 = self.dial(self.b, self.factoryB, self.a)
        pump1.flush()
        pump2.flush()
        self.assertIs(self.b.linkFor("srv-a"), bFromA)
        self.assertIs(self.a.linkFor("srv-b"), aToB)
        self.assertIs(bToA.state, LinkState.CLOSED)
        self.assertTrue(self.factoryB.standby)
        self.assertIsNotNone(self.b.state.session("srv-a", "sa"))
        self.assertIsNotNone(self.a.state.session("srv-b", "sb"))


class DuplicateInboundTests(LinkTestMixin, unittest.TestCase):
    """Two inbound links claiming one serverId."""

    def test_newerInboundRefused(self) -> None:
        """
        The second inbound link that says it is srv-a is closed as a
        duplicate; the first stays active and its sessions stay.
        """
        first, t1 = self.established("srv-a")
        first.dataReceived(sync("srv-a", "s1"))
        second, t2 = self.connect(INBOUND)
        second.dataReceived(hello("srv-a"))
        self.assertTrue(t2.disconnecting)
        self.assertFalse(t1.disconnecting)
        self.assertEqual(self.node.metrics.linksClosed["duplicate"], 1)
        self.assertIs(self.node.linkFor("srv-a"), first)
        lost(second)
        self.assertIsNotNone(self.node.state.session("srv-a", "s1"))
        self.assertIs(self.node.linkFor("srv-a"), first)
        self.assertNotIn("peerDisconnected", [e[0] for e in self.listener.events])

    def test_inactiveLinkStateIgnored(self) -> None:
        """
        State messages arriving on a duplicate link before it closes are
        not applied (counted as from an inactive link).
        """
        first, t1 = self.established("srv-a")
        second, t2 = self.connect(INBOUND)
        second.dataReceived(hello("srv-a") + connected("srv-a", "sneaky"))
        self.assertIsNone(self.node.state.session("srv-a", "sneaky"))


class ClientFactoryTests(unittest.TestCase):
    """Backoff, reset and standby of L{PeerClientFactory}."""

    def setUp(self) -> None:
        """A factory on a L{Clock} with a fake connector."""
        self.clock = Clock()
        self.node = makeNode("srv-b", self.clock)
        self.factory = PeerClientFactory(self.node, "127.0.0.1:7001", self.clock)
        self.connector = FakeConnector()

    def failAttempts(self, times: int = 1) -> list[float]:
        """
        Fail C{times} connection attempts, running each scheduled retry.

        @return: the delay of each scheduled retry.
        """
        delays = []
        for _ in range(times):
            self.factory.clientConnectionFailed(self.connector, Failure(ConnectionDone()))
            [call] = self.clock.getDelayedCalls()
            delays.append(call.getTime() - self.clock.seconds())
            self.clock.advance(call.getTime() - self.clock.seconds())
        return delays

    def test_resetDelayOnlyAfterHello(self) -> None:
        """
        A TCP connection alone does not reset the backoff; a completed HELLO
        exchange does.
        """
        self.failAttempts(4)
        grown = self.factory.delay
        self.assertGreater(grown, self.factory.initialDelay * 2)
        proto = self.factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        self.assertEqual(self.factory.delay, grown)
        proto.dataReceived(hello("srv-a"))
        self.assertEqual(self.factory.delay, self.factory.initialDelay)
        self.assertEqual(self.factory.retries, 0)

    def test_backoffGrowsAndIsCapped(self) -> None:
        """
        Retry delays grow and never exceed C{maxDelay}, even with the
        largest jitter.
        """
        self.patch(linkModule, "_random", lambda: 1.0)
        self.factory.maxDelay = 5.0
        delays = self.failAttempts(10)
        self.assertLess(delays[0], delays[1])
        self.assertLess(delays[1], delays[2])
        self.assertLessEqual(max(delays), 5.0)
        self.assertLessEqual(self.factory.delay, 5.0)
        self.assertEqual(self.connector.connects, 10)

    def test_jitterNeverNegative(self) -> None:
        """
        With the lowest jitter draw every delay stays at its lower bound,
        (1 - jitter) times the backoff: positive, never below zero.
        """
        self.patch(linkModule, "_random", lambda: 0.0)
        delays = self.failAttempts(3)
        expected = [self.factory.initialDelay * self.factory.factor ** n * (1 - self.factory.jitter)
                    for n in (1, 2, 3)]
        for got, want in zip(delays, expected):
            self.assertAlmostEqual(got, want)

    def test_standbyDoesNotRetry(self) -> None:
        """A factory on standby schedules no retry after a lost or failed link."""
        self.factory.standby = True
        self.factory.clientConnectionLost(self.connector, Failure(ConnectionDone()))
        self.factory.clientConnectionFailed(self.connector, Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_wakeRetries(self) -> None:
        """C{wake} leaves standby and redials after a short delay."""
        self.factory.standby = True
        self.factory.clientConnectionLost(self.connector, Failure(ConnectionDone()))
        self.factory.wake()
        self.assertFalse(self.factory.standby)
        [call] = self.clock.getDelayedCalls()
        self.assertLessEqual(call.getTime() - self.clock.seconds(), self.factory.maxDelay)
        self.clock.advance(call.getTime() - self.clock.seconds())
        self.assertEqual(self.connector.connects, 1)

    def test_wakeNotOnStandbyDoesNothing(self) -> None:
        """C{wake} on a factory that is not on standby schedules nothing."""
        self.factory.clientConnectionLost(self.connector, Failure(ConnectionDone()))
        [call] = self.clock.getDelayedCalls()
        self.factory.wake()
        self.assertEqual(self.clock.getDelayedCalls(), [call])

    def test_wakeAfterStopDoesNothing(self) -> None:
        """A stopped factory is not revived by C{wake}."""
        self.factory.standby = True
        self.factory.clientConnectionLost(self.connector, Failure(ConnectionDone()))
        self.factory.stopTrying()
        self.factory.wake()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class SelfDialTests(unittest.TestCase):
    """A node whose peer list names its own address."""

    def test_selfDialStopsTrying(self) -> None:
        """
        A node that dials itself (its acceptor does not send HELLO first)
        still learns it is talking to itself: both ends close and the
        dialing factory stops trying.
        """
        clock = Clock()
        node = makeNode("srv-a", clock)
        factory = PeerClientFactory(node, "127.0.0.1:7001", clock)
        client, server, pump = iosim.connectedServerAndClient(
            lambda: PeerServerFactory(node).buildProtocol(None),
            lambda: factory.buildProtocol(None),
            clock=clock,
        )
        pump.flush()
        self.assertIs(client.state, LinkState.CLOSED)
        self.assertIs(server.state, LinkState.CLOSED)
        self.assertFalse(factory.continueTrying)
        self.assertIsNone(node.linkFor("srv-a"))
        self.assertEqual(node._openLinks, set())


class StoppedFactoryTests(unittest.TestCase):
    """A factory stopped while its link is still in the handshake."""

    def test_helloDoesNotReviveStoppedFactory(self) -> None:
        """
        If the factory was told to stop trying (the dial service stopped)
        before its link's HELLO exchange completed, completing it does not
        make the factory redial once the link is lost.
        """
        clock = Clock()
        node = makeNode("srv-b", clock)
        factory = PeerClientFactory(node, "127.0.0.1:7001", clock)
        connector = FakeConnector()
        proto = factory.buildProtocol(None)
        proto.makeConnection(StringTransport())
        factory.stopTrying()
        proto.dataReceived(hello("srv-a"))
        self.assertFalse(factory.continueTrying)
        lost(proto)
        factory.clientConnectionLost(connector, Failure(ConnectionDone()))
        clock.advance(3600)
        self.assertEqual(connector.connects, 0)


class SilentPeerTests(unittest.TestCase):
    """A peer that accepts TCP but never answers HELLO."""

    def test_silentPeerBacksOff(self) -> None:
        """
        Each outbound link times out in the handshake, and the redial delay
        keeps growing (it is not reset by the TCP connection).
        """
        self.patch(linkModule, "_random", lambda: 0.5)
        clock = Clock()
        node = makeNode("srv-b", clock, handshakeTimeout=2.0)
        factory = PeerClientFactory(node, "127.0.0.1:7001", clock)
        connector = FakeConnector()
        delays = []
        for attempt in range(4):
            proto = factory.buildProtocol(None)
            transport = StringTransport()
            proto.makeConnection(transport)
            clock.advance(2.0)
            self.assertTrue(transport.disconnecting)
            lost(proto)
            factory.clientConnectionLost(connector, Failure(ConnectionDone()))
            [call] = [c for c in clock.getDelayedCalls() if c.func.__name__ == "reconnector"]
            delays.append(call.getTime() - clock.seconds())
            clock.advance(delays[-1])
            self.assertEqual(connector.connects, attempt + 1)
        self.assertEqual(node.metrics.linksClosed["handshake_timeout"], 4)
        self.assertLess(delays[0], delays[-1])
        self.assertGreater(factory.delay, factory.initialDelay * 4)


class _CountingTransport(StringTransport):
    """
    A L{StringTransport} that counts C{write} calls and, like Twisted's TCP
    transport, shows an empty write buffer (so that a link can count
    acknowledged bytes once a socket is set).
    """

    dataBuffer = b""
    offset = 0
    _tempDataLen = 0

    def __init__(self) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "10.0.0.9", 4000))
        self.writes = 0

    def write(self, data: bytes) -> None:
        """Count and record C{data}."""
        self.writes += 1
        super().write(data)


class WriteBatchTests(LinkTestMixin, unittest.TestCase):
    """
    Lines given to C{sendLine} in one reactor turn reach the transport in
    one write, in order, at the end of the turn.
    """

    def test_oneWritePerTurn(self) -> None:
        """
        Three lines: nothing on the transport until the turn ends, then one
        write with the three in order; C{lastSent} is the time they left.
        """
        proto, transport = self.batchedLink()
        self.clock.advance(2)
        for text in (b"uno", b"dos", b"tres"):
            self.assertTrue(proto.sendLine(text + b"\n"))
        self.assertEqual((transport.value(), transport.writes), (b"", 0))
        self.clock.advance(0)
        self.assertEqual((transport.value(), transport.writes), (b"uno\ndos\ntres\n", 1))
        self.assertEqual(proto.lastSent, 2.0)
        self.assertEqual(proto.linesWritten, 5)  # HELLO and SYNC_STATE, then these
        self.assertEqual([c.func.__name__ for c in self.clock.getDelayedCalls()],
                         ["_checkLiveness"])

    def test_flushedOnceLarge(self) -> None:
        """
        Once C{FLUSH_BYTES} are waiting they are written at once; what
        follows waits for the end of the turn.
        """
        proto, transport = self.batchedLink()
        chunk = b"x" * 1023 + b"\n"
        count = linkModule.FLUSH_BYTES // len(chunk)
        for _ in range(count):
            proto.sendLine(chunk)
        self.assertEqual((len(transport.value()), transport.writes), (count * len(chunk), 1))
        proto.sendLine(b"last\n")
        self.assertEqual(transport.writes, 1)
        self.clock.advance(0)
        self.assertEqual(transport.writes, 2)
        self.assertTrue(transport.value().endswith(chunk + b"last\n"))

    def test_gracefulCloseFlushes(self) -> None:
        """A graceful close writes the waiting lines before closing."""
        proto, transport = self.batchedLink()
        proto.sendLine(b"adios\n")
        proto.close("bye")
        self.assertEqual(transport.value(), b"adios\n")
        self.assertTrue(transport.disconnecting)

    def test_abortDropsAndLossCancels(self) -> None:
        """
        An abort (dead or slow peer) drops the waiting lines; once the
        connection is lost no flush is left scheduled and nothing is written.
        """
        proto, transport = self.batchedLink()
        proto.sendLine(b"never\n")
        proto.close("dead", abort=True)
        self.clock.advance(0)
        self.assertEqual((transport.value(), transport.writes), (b"", 0))
        proto.sendLine(b"again\n")
        lost(proto)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(0)
        self.assertEqual((transport.value(), transport.writes), (b"", 0))

    def test_waitingLinesAreNotAcknowledged(self) -> None:
        """
        On a TCP link (acknowledgements counted from the socket), lines
        still gathered in the batch are not acknowledged, however empty the
        kernel queue: the send confirms only after they were written.
        """
        self.patch(linkModule, "unacknowledgedBytes", lambda sock: 0)
        proto, transport = self.batchedLink()
        proto._socket = object()
        proto.sendLine(b"hola\n")
        d = proto.whenAcknowledged("ok")
        proto._checkAcknowledged()
        self.assertNoResult(d)
        self.clock.advance(0)
        self.assertEqual(transport.value(), b"hola\n")
        self.clock.advance(linkModule.ACK_POLL)
        self.assertEqual(self.successResultOf(d), "ok")


class SendConfirmedTests(LinkTestMixin, unittest.TestCase):
    """
    C{sendConfirmed(line, result, onLost, context)} is the hot path's
    C{sendLine(line)} then C{whenAcknowledged(result, onLost, context)}
    in one step: every scenario must end the same either way.
    """

    def scenario(self, oneStep: bool, receipts: bool, socket: bool, end: str):
        """
        Send three lines on a fresh link, confirmed, then end with C{end}
        (C{"ack"}: the peer acknowledged them all; C{"lose"}: the link was
        lost first; C{"closed"}: a fourth send after a close).

        @return: what can be observed: bytes written, counters, and how
            each send's L{Deferred} ended.
        """
        self.node = makeNode("srv-b", self.clock)
        unacked = [10 ** 6]
        self.patch(linkModule, "unacknowledgedBytes", lambda sock: unacked[0])
        proto, transport = self.batchedLink()
        proto.receipts = receipts
        if socket:
            proto._socket = object()

        def send(line: bytes, result):
            if oneStep:
                return proto.sendConfirmed(line, result, lambda c: ValueError(c), f"ctx-{result}")
            if not proto.sendLine(line):
                return None
            return proto.whenAcknowledged(result, lambda c: ValueError(c), f"ctx-{result}")

        ds = [send(b"linea %d\n" % i, i) for i in range(3)]
        self.clock.advance(0)
        pending = [d.called for d in ds]
        if end == "ack":
            unacked[0] = 0
            if receipts:
                proto._receiptReceived(XReceived("srv-a", XReceivedPayload(proto.linesWritten)))
            self.clock.advance(linkModule.ACK_POLL)
        elif end == "lose":
            lost(proto)
        else:
            proto.close("bye")
            ds.append(send(b"tarde\n", 3))
        outcomes = []
        for d in ds:
            if d is None:
                outcomes.append(None)
                continue
            box = []
            d.addBoth(box.append)
            if not box:
                outcomes.append("waiting")
            elif isinstance(box[0], Failure):
                outcomes.append((box[0].type, box[0].getErrorMessage()))
            else:
                outcomes.append(box[0])
        return (transport.value(), proto.linesWritten, proto.bytesWritten, pending, outcomes)

    def test_sameAsTwoCalls(self) -> None:
        """
        With receipts or TCP acknowledgements, with or without a socket,
        acknowledged, lost, or sent after a close: C{sendConfirmed} and the
        two calls it stands for write, count and fire alike.
        """
        seen = set()
        for receipts in (False, True):
            for socket in (False, True):
                for end in ("ack", "lose", "closed"):
                    one = self.scenario(True, receipts, socket, end)
                    self.assertEqual(one, self.scenario(False, receipts, socket, end),
                                     (receipts, socket, end))
                    seen.add(repr(one[3:]))
        # The scenarios do differ: waiting, fired, failed, refused.
        self.assertGreaterEqual(len(seen), 4)


class LinkInterfaceTests(LinkTestMixin, unittest.TestCase):
    """L{PeerProtocol} as handlers and the node see it."""

    def test_providesIPeerLink(self) -> None:
        """An established link provides L{IPeerLink}."""
        proto, transport = self.established()
        self.assertTrue(verifyObject(IPeerLink, proto))

    def test_sendLineAfterClose(self) -> None:
        """
        C{sendLine} writes while the link is up and refuses once it is
        closing or closed.
        """
        proto, transport = self.established()
        self.assertTrue(proto.sendLine(b"{}\n"))
        self.clock.advance(0)
        self.assertEqual(transport.value(), b"{}\n")
        proto.loseConnection("test")
        self.assertFalse(proto.sendLine(b"{}\n"))
        lost(proto)
        self.assertFalse(proto.sendLine(b"{}\n"))
        self.assertEqual(transport.value(), b"{}\n")

    def test_closeAllLinks(self) -> None:
        """
        C{closeAllLinks} closes every link, established or not, and fires
        only once each connection is lost.
        """
        established, t1 = self.established()
        pending, t2 = self.connect(INBOUND)
        d = self.node.closeAllLinks("shutting down")
        self.assertTrue(t1.disconnecting and t2.disconnecting)
        self.assertNoResult(d)
        lost(established)
        self.assertNoResult(d)
        lost(pending)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.listener.events[-1], ("peerDisconnected", "srv-a", "shutting down"))
        self.assertIsNone(self.successResultOf(self.node.closeAllLinks("again")))
