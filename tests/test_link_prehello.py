"""
Tests for what a link holds before its HELLO exchange is done: a few-KB
line bound (C{max_hello_length}) and the node-wide bound on the partial
lines of all links still in their handshake (C{max_handshake_buffers},
L{clustersync.links.budget.HandshakeBuffers}).
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial import unittest

from clustersync.links.budget import HandshakeBuffers
from clustersync.links.protocol import OUTBOUND, LinkState

from tests.linksupport import LinkTestMixin, connected, hello, lost, makeNode, sync


class HandshakeBuffersTests(unittest.TestCase):
    """L{HandshakeBuffers} on its own."""

    def test_holdWithinBound(self):
        """Holds add up per link; a new hold for a link replaces its old one."""
        buffers = HandshakeBuffers(100)
        a, b = object(), object()
        self.assertTrue(buffers.hold(a, 40))
        self.assertTrue(buffers.hold(b, 50))
        self.assertTrue(buffers.hold(a, 10))
        self.assertEqual((buffers.total, len(buffers)), (60, 2))

    def test_overBoundRefusedAndReleased(self):
        """A hold past the bound is refused and the link then holds nothing."""
        buffers = HandshakeBuffers(100)
        a, b = object(), object()
        buffers.hold(a, 60)
        buffers.hold(b, 30)
        self.assertFalse(buffers.hold(b, 50))
        self.assertEqual((buffers.total, len(buffers)), (60, 1))
        buffers.release(a)
        buffers.release(a)
        self.assertEqual((buffers.total, len(buffers)), (0, 0))


class PreHelloLineBoundTests(LinkTestMixin, unittest.TestCase):
    """The line bound before HELLO, and how it is lifted after."""

    def setUp(self):
        """A node with a 200-byte pre-HELLO bound and 4 KB handshake buffers."""
        self.clock = Clock()
        self.node = makeNode("srv-b", self.clock, maxHelloLength=200, maxHandshakeBuffers=4096)

    def test_partialLineBeforeHello(self):
        """
        Bytes without a newline past C{max_hello_length} before HELLO close
        the link, counted C{oversize_line}, nothing of it kept.
        """
        proto, transport = self.connect()
        proto.dataReceived(b"x" * 150)
        self.assertFalse(transport.disconnecting)
        proto.dataReceived(b"x" * 100)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.node.metrics.rejectedInputs["oversize_line"], 1)
        self.assertEqual(proto._pending, [])
        self.assertEqual(self.node.handshakeBuffers.total, 0)

    def test_completeLineBeforeHello(self):
        """A complete line longer than the bound before HELLO closes the link too."""
        proto, transport = self.connect()
        proto.dataReceived(b"y" * 300 + b"\n")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.node.metrics.rejectedInputs["oversize_line"], 1)

    def test_boundLiftedByHello(self):
        """
        Once HELLO is in, a SYNC_STATE longer than the pre-HELLO bound, even
        in the same read as the HELLO, is applied.
        """
        proto, transport = self.connect()
        sessions = [f"s{i}" for i in range(20)]
        big = sync("srv-a", *sessions)
        self.assertGreater(len(big), 1000)
        proto.dataReceived(hello("srv-a") + big[:700])
        self.assertIs(proto.state, LinkState.ESTABLISHED)
        self.assertFalse(transport.disconnecting)
        proto.dataReceived(big[700:])
        self.assertEqual(self.node.state.countSessions("srv-a"), 20)

    def test_dialerReadsAnswerAndSyncTogether(self):
        """
        A dialer (HELLO sent) whose read holds the peer's HELLO and the start
        of a long SYNC_STATE keeps the link.
        """
        proto, transport = self.connect(OUTBOUND)
        big = sync("srv-a", *(f"s{i}" for i in range(20)))
        proto.dataReceived(hello("srv-a") + big[:900])
        self.assertFalse(transport.disconnecting)
        proto.dataReceived(big[900:])
        self.assertEqual(self.node.state.countSessions("srv-a"), 20)


class NodeWideBoundTests(LinkTestMixin, unittest.TestCase):
    """The node-wide bound on handshake buffers."""

    def setUp(self):
        """A node allowing 1,000 bytes per link and 2,500 for all of them."""
        self.clock = Clock()
        self.node = makeNode("srv-b", self.clock, maxHelloLength=1000, maxHandshakeBuffers=2500)

    def test_manyLinksCannotAddUp(self):
        """
        Three links each holding 900 bytes: the third goes over the
        node-wide bound and is closed (C{handshake_buffers}); the first two
        stay open, and the bytes held stay within the bound.
        """
        links = [self.connect() for _ in range(3)]
        for proto, _ in links:
            proto.dataReceived(b"z" * 900)
        self.assertEqual([t.disconnecting for _, t in links], [False, False, True])
        self.assertEqual(self.node.metrics.rejectedInputs["handshake_buffers"], 1)
        self.assertEqual(self.node.handshakeBuffers.total, 1800)

    def test_releasedOnCloseAndOnHello(self):
        """
        A closed link and an established one hold nothing against the bound,
        so later handshakes get the room back.
        """
        (a, _), (b, _) = self.connect(), self.connect()
        a.dataReceived(b"z" * 900)
        b.dataReceived(b"z" * 900)
        lost(a)
        b.dataReceived(b"\n" + hello("srv-a"))
        self.assertIs(b.state, LinkState.ESTABLISHED)
        self.assertEqual(self.node.handshakeBuffers.total, 0)
        c, transport = self.connect()
        c.dataReceived(b"z" * 999)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.node.handshakeBuffers.total, 999)

    def test_establishedLinkNotCharged(self):
        """Partial lines on an established link are not charged to the bound."""
        proto, transport = self.established("srv-a")
        proto.dataReceived(connected("srv-a", "s1")[:-1] + b" " * 5000)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.node.handshakeBuffers.total, 0)
