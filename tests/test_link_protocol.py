"""
Tests for L{clustersync.links.protocol}: framing and input rejection of
L{PeerProtocol}, the lines of one read decoded together, and the link as
handlers and the node see it (L{IPeerLink}).
"""

from __future__ import annotations

from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from clustersync.interfaces import IMessageHandler, IPeerLink
from clustersync.links import protocol as protocolModule
from clustersync.links.protocol import INBOUND, LinkState
from tests.linksupport import (
    LinkTestMixin, RecordingListener, connected, hello, line, lost, makeNode, sync,
)


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

        realDecodeLines = protocolModule.decodeLines

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

            self.patch(protocolModule, "decodeLines", decodeLines)
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
