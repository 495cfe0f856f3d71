"""
Tests for L{clustersync.cluster.node.ClusterNode} as a whole: its interfaces,
the queries, and the isolation of listener, handler and local delivery
failures.  The send paths are tested in C{test_sending} and
C{test_sendpath}, this node's sessions in C{test_localsessions}, received
messages in C{test_dispatch}.
"""

from __future__ import annotations

from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from clustersync.wire.codec import decode
from clustersync.handlers.builtin import BUILTIN_HANDLERS
from clustersync.interfaces import ICluster, ILocalDelivery, IMessageHandler
from clustersync.cluster.node import Delivery

from tests.nodefakes import FakeLink, BrokenListener, ScriptedHandler, connectedLine, NodeTestMixin


class InterfaceTests(NodeTestMixin, unittest.TestCase):
    """The node and the built-in handlers provide their interfaces."""

    def test_nodeProvidesICluster(self) -> None:
        """The node fully provides L{ICluster}."""
        self.assertTrue(verifyObject(ICluster, self.node))

    def test_builtinHandlers(self) -> None:
        """Each built-in handler provides L{IMessageHandler}; together they cover the spec."""
        types = []
        for handler in BUILTIN_HANDLERS:
            self.assertTrue(verifyObject(IMessageHandler, handler))
            types.extend(handler.messageTypes)
        self.assertEqual(sorted(types), sorted([
            "HELLO", "SYNC_STATE", "CLIENT_CONNECTED", "CLIENT_DISCONNECTED",
            "CHANNEL_MEMBERSHIP", "DIRECT_MESSAGE", "CHANNEL_MESSAGE", "SESSION_MESSAGE",
            "BROADCAST"]))
        self.assertEqual(len({h.name for h in BUILTIN_HANDLERS}), len(BUILTIN_HANDLERS))

    def test_registerHandlerChecks(self) -> None:
        """
        A non-handler and a handler for an unknown type are refused.
        """
        self.assertRaises(TypeError, self.node.registerHandler, object())
        self.assertRaises(ValueError, self.node.registerHandler,
                          ScriptedHandler("x", ("NOPE",)))

    def test_syncSentOnEstablish(self) -> None:
        """A newly established link gets one SYNC_STATE of the local sessions."""
        self.node.clientConnected("s1", 1, "uno")
        d = FakeLink("srv-d")
        self.node.linkOpened(d)
        self.node.linkEstablished(d)
        [msg] = d.parsed()
        self.assertEqual(msg["type"], "SYNC_STATE")
        self.assertEqual([s["sessionId"] for s in msg["payload"]["sessions"]], ["s1"])
        self.assertEqual(self.recorder.events[-1], ("peerConnected", "srv-d"))


class QueryTests(NodeTestMixin, unittest.TestCase):
    """lookupUser, channelMembers, peers, sessions."""

    def test_queries(self) -> None:
        """Each query reflects local and remote state and never fails."""
        self.node.clientConnected("la1", 42, "ana", None, [3])
        self.remote(self.b, "lb1", 42, [3])
        self.remote(self.c, "lc1", 7, [])
        users = self.successResultOf(self.node.lookupUser(42))
        self.assertEqual({(s.serverId, s.sessionId) for s in users},
                         {("srv-a", "la1"), ("srv-b", "lb1")})
        self.assertEqual(self.successResultOf(self.node.lookupUser(1)), [])
        members = self.successResultOf(self.node.channelMembers(3))
        self.assertEqual({s.sessionId for s in members}, {"la1", "lb1"})
        self.assertEqual(self.successResultOf(self.node.channelMembers(77)), [])
        everyone = self.successResultOf(self.node.sessions())
        self.assertEqual({(s.serverId, s.sessionId) for s in everyone},
                         {("srv-a", "la1"), ("srv-b", "lb1"), ("srv-c", "lc1")})
        peers = sorted(self.successResultOf(self.node.peers()), key=lambda p: p.serverId)
        self.assertEqual([(p.serverId, p.direction, p.address, p.since, p.tls) for p in peers], [
            ("srv-b", "inbound", self.b.peerAddress, 1000.0, False),
            ("srv-c", "outbound", self.c.peerAddress, 1000.0, False)])

    def test_linkLostForgetsPeer(self) -> None:
        """Losing srv-b's link removes it from peers and its sessions."""
        self.remote(self.b, "lb1", 42, [3])
        self.node.linkLost(self.b, "gone", True)
        self.assertEqual([p.serverId for p in self.successResultOf(self.node.peers())], ["srv-c"])
        self.assertEqual(self.successResultOf(self.node.lookupUser(42)), [])
        self.assertEqual(self.recorder.events[-2:], [
            ("sessionRemoved", "srv-b", "lb1"), ("peerDisconnected", "srv-b")])


class IsolationTests(NodeTestMixin, unittest.TestCase):
    """Listener and handler failures stay contained."""

    def test_listenerExceptions(self) -> None:
        """
        A listener that raises everywhere does not stop the node nor the
        listeners after it; every failure is logged.
        """
        self.node.removeListener(self.recorder)
        self.node.addListener(BrokenListener())
        self.node.addListener(self.recorder)
        self.successResultOf(self.node.clientConnected("s1", 1, "uno"))
        self.successResultOf(self.node.joinChannel("s1", 2))
        self.successResultOf(self.node.clientDisconnected("s1"))
        self.addLink("srv-d")
        self.remote(self.b, "lb1", 5)
        self.node.linkLost(self.b, "gone", True)
        self.assertEqual(self.recorder.events, [
            ("sessionAdded", "srv-a", "s1"),
            ("membershipChanged", "s1", 2, True),
            ("sessionRemoved", "srv-a", "s1"),
            ("peerConnected", "srv-d"),
            ("sessionAdded", "srv-b", "lb1"),
            ("sessionRemoved", "srv-b", "lb1"),
            ("peerDisconnected", "srv-b"),
        ])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 7)
        self.assertEqual(len(self.c.lines), 3)

    def test_handlerException(self) -> None:
        """
        A handler that raises is counted under its name; the handlers after
        it still run and the built-in one has applied the message.
        """
        boom = ScriptedHandler("test.boom", ("CLIENT_CONNECTED",), raises=True)
        after = ScriptedHandler("test.after", ("CLIENT_CONNECTED",))
        self.node.registerHandler(boom)
        self.node.registerHandler(after)
        self.remote(self.b, "lb1", 5)
        self.remote(self.b, "lb2", 6)
        self.assertEqual(self.node.metrics.handlerErrors, {"test.boom": 2})
        self.assertEqual([m.payload.sessionId for m in after.seen], ["lb1", "lb2"])
        self.assertIsNotNone(self.node.state.session("srv-b", "lb2"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_localDeliveryException(self) -> None:
        """
        An L{ILocalDelivery} that raises does not stop the send: every
        hosting peer still gets its line, the Deferred fires (nothing was
        delivered locally), and the failure is logged and counted.
        """
        @implementer(ILocalDelivery)
        class Broken:
            """A delivery that always raises."""
            def deliver(self, sessions, message, kind, origin):
                """Raise, like a buggy gateway."""
                raise ZeroDivisionError("gateway bug")

        self.node.setLocalDelivery(Broken())
        self.node.clientConnected("la1", 42, "ana", None, [3])
        self.remote(self.b, "lb1", 42, [3])
        self.remote(self.c, "lc1", 42, [3])
        self.b.lines.clear()
        self.c.lines.clear()
        for d in (self.node.sendToUser(42, "x"), self.node.sendToChannel(3, "x"),
                  self.node.broadcast("x")):
            self.assertEqual(self.successResultOf(d), Delivery(0, ("srv-b", "srv-c")))
        self.assertEqual((len(self.b.lines), len(self.c.lines)), (3, 3))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 3)
        self.assertEqual(sum(self.node.metrics.undeliverable.values()), 3)
        self.node.dispatch(self.b, decode(
            b'{"type":"BROADCAST","origin":"srv-b","payload":{"message":1}}'))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_stateFromInactiveLinkIgnored(self) -> None:
        """
        State messages over a link that is not its peer's active one are
        counted and not applied.
        """
        stale = FakeLink("srv-b")
        self.node.dispatch(stale, decode(connectedLine("srv-b", "ghost", 1)))
        self.assertIsNone(self.node.state.session("srv-b", "ghost"))
        self.assertEqual(self.node.metrics.rejectedInputs["inactive_link"], 1)
