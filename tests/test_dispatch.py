"""
Tests for received messages: the dispatch table
(L{clustersync.cluster.dispatch}) and the local delivery of forwarded
messages (L{clustersync.cluster.delivery}).
"""

from __future__ import annotations

from twisted.trial import unittest
from zope.interface import implementer

from clustersync.wire.codec import DirectMessage, decode
from clustersync.app.config import NodeConfig
from clustersync.interfaces import ILocalDelivery
from clustersync.cluster.node import ClusterNode

from tests.nodefakes import ScriptedHandler, NodeTestMixin


class ForwardedTests(NodeTestMixin, unittest.TestCase):
    """Messages forwarded by a peer are delivered locally as they arrived."""

    def setUp(self) -> None:
        """Local sessions la1 (user 42, channel 3) and la2 (user 43)."""
        NodeTestMixin.setUp(self)
        self.node.clientConnected("la1", 42, "ana", None, [3])
        self.node.clientConnected("la2", 43, "eva")
        self.b.lines.clear()
        self.c.lines.clear()

    def forward(self, kind: str, payloadPrefix: bytes, message: bytes) -> None:
        """Dispatch a forwarded message from srv-b, its C{message} spelled as given."""
        self.node.dispatch(self.b, decode(
            b'{"type":"' + kind.encode() + b'","origin":"srv-b","payload":{'
            + payloadPrefix + b'"message": ' + message + b' }}'))

    def test_exactBytesDelivered(self) -> None:
        """
        Each of the four forward types delivers the C{message} bytes exactly
        as they arrived (spacing, escapes, number spelling kept), to the right
        sessions, and sends nothing further.
        """
        message = b'{ "z" : [1, 2.50, "\\u00e9"],"n":null }'
        self.forward("DIRECT_MESSAGE", b'"userId": 42, ', message)
        self.forward("CHANNEL_MESSAGE", b'"canalId": 3, ', message)
        self.forward("SESSION_MESSAGE", b'"sessionId": "la2", ', message)
        self.forward("BROADCAST", b"", message)
        self.assertEqual(self.delivery.calls, [
            (["la1"], message, "DIRECT_MESSAGE", "srv-b"),
            (["la1"], message, "CHANNEL_MESSAGE", "srv-b"),
            (["la2"], message, "SESSION_MESSAGE", "srv-b"),
            (["la1", "la2"], message, "BROADCAST", "srv-b"),
        ])
        for call in self.delivery.calls:
            self.assertIs(type(call[1]), bytes)
        self.noLines()

    def test_noLocalTarget(self) -> None:
        """A forward for no local session is counted as undeliverable."""
        self.forward("DIRECT_MESSAGE", b'"userId": 99, ', b"1")
        self.forward("SESSION_MESSAGE", b'"sessionId": "nope", ', b"1")
        self.assertEqual(self.delivery.calls, [])
        self.assertEqual(self.node.metrics.undeliverable["DIRECT_MESSAGE"], 1)
        self.assertEqual(self.node.metrics.undeliverable["SESSION_MESSAGE"], 1)


class DirectDispatchTests(NodeTestMixin, unittest.TestCase):
    """
    While the built-in handler is the only DIRECT_MESSAGE handler, the
    dispatch calls the quick callable it offers (C{bindFast}); it must do
    what the handler does, and a second handler must turn it off.
    """

    def setUp(self) -> None:
        """Local session la1 of user 42."""
        NodeTestMixin.setUp(self)
        self.node.clientConnected("la1", 42, "ana")

    def direct(self, userId: int) -> None:
        """Dispatch a DIRECT_MESSAGE for C{userId} from srv-b."""
        self.node.dispatch(self.b, decode(
            b'{"type":"DIRECT_MESSAGE","origin":"srv-b","payload":{"userId":%d,'
            b'"message":{"a":1}}}' % userId))

    def test_quickWhileAlone(self) -> None:
        """
        With the built-ins only, the dispatch entry is the node's
        C{deliverDirect}; it delivers, counts, and counts a user with no
        local session as undeliverable.
        """
        from clustersync.wire.codec import DirectMessage

        self.assertEqual(self.node.dispatcher.table[DirectMessage].fast, self.node.deliverDirect)
        self.direct(42)
        self.direct(99)
        self.assertEqual(self.delivery.calls, [(["la1"], b'{"a":1}', "DIRECT_MESSAGE", "srv-b")])
        self.assertEqual(self.node.metrics.messagesIn["DIRECT_MESSAGE"], 2)
        self.assertEqual(self.node.metrics.undeliverable["DIRECT_MESSAGE"], 1)

    def test_secondHandlerTurnsItOff(self) -> None:
        """
        Once a plugin also takes DIRECT_MESSAGE, both run for each message,
        the built-in first.
        """
        from clustersync.wire.codec import DirectMessage

        plugin = ScriptedHandler("test.dm", ("DIRECT_MESSAGE",))
        self.node.registerHandler(plugin)
        self.assertIsNone(self.node.dispatcher.table[DirectMessage].fast)
        self.direct(42)
        self.assertEqual(len(self.delivery.calls), 1)
        self.assertEqual([m.payload.userId for m in plugin.seen], [42])

    def test_deliveryProblems(self) -> None:
        """
        No local delivery configured, or one that raises: counted as
        undeliverable and logged, as for every other kind.
        """
        self.node.setLocalDelivery(None)
        self.direct(42)
        self.assertEqual(self.node.metrics.undeliverable["DIRECT_MESSAGE"], 1)

        @implementer(ILocalDelivery)
        class Broken:
            """A delivery that always raises."""

            def deliver(self, sessions, message, kind, origin):
                """Raise, like a buggy gateway."""
                raise ZeroDivisionError("gateway bug")

        self.node.setLocalDelivery(Broken())
        self.direct(42)
        self.assertEqual(self.node.metrics.undeliverable["DIRECT_MESSAGE"], 2)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(self.node.metrics.handlerErrors, {})

    def test_typeWithoutHandlerCounted(self) -> None:
        """
        A message of a type no handler takes (a node built without the
        built-ins) changes nothing and is counted under its own type only.
        """
        bare = ClusterNode(NodeConfig(serverId="srv-a", listen=None, clients=None), self.clock)
        bare.setLocalDelivery(self.delivery)
        bare.dispatch(self.b, decode(
            b'{"type":"DIRECT_MESSAGE","origin":"srv-b","payload":{"userId":42,'
            b'"message":{"a":1}}}'))
        self.assertEqual(bare.metrics.messagesIn, {"DIRECT_MESSAGE": 1})
        self.assertEqual(self.delivery.calls, [])
