"""
Tests for the lifecycle of a node's own sessions
(L{clustersync.cluster.localsessions}): connect, disconnect, join and
leave change the state, write one event to every peer and tell listeners.
"""

from __future__ import annotations

import json

from twisted.trial import unittest

from clustersync.wire.codec import SessionInfo
from clustersync.app.config import NodeConfig
from clustersync.errors import DuplicateSession, UnknownSession
from clustersync.handlers.builtin import BUILTIN_HANDLERS
from clustersync.cluster.node import ClusterNode

from tests.nodefakes import NodeTestMixin


#: Field names of a session as the spec writes it.
SESSION_FIELDS = {"serverId", "sessionId", "clienteId", "usuario", "ip", "canales"}


class LifecycleTests(NodeTestMixin, unittest.TestCase):
    """clientConnected, clientDisconnected, joinChannel, leaveChannel."""

    def assertOneLineEach(self) -> dict:
        """
        Both peers got exactly one line, the same bytes; return it parsed.
        """
        self.assertEqual((len(self.b.lines), len(self.c.lines)), (1, 1))
        self.assertEqual(self.b.lines[0], self.c.lines[0])
        self.assertTrue(self.b.lines[0].endswith(b"\n"))
        self.assertEqual(self.b.lines[0].count(b"\n"), 1)
        msg = json.loads(self.b.lines[0])
        self.b.lines.clear()
        self.c.lines.clear()
        return msg

    def test_clientConnected(self) -> None:
        """
        The session is recorded, fires as a L{SessionInfo}, and every peer
        gets one CLIENT_CONNECTED with exactly the spec's fields.
        """
        session = self.successResultOf(
            self.node.clientConnected("s1", 12, "carlos", "192.168.1.10", [8, 3]))
        self.assertIsInstance(session, SessionInfo)
        self.assertEqual((session.serverId, session.sessionId, session.clienteId,
                          session.usuario, session.ip, session.canales),
                         ("srv-a", "s1", 12, "carlos", "192.168.1.10", {3, 8}))
        msg = self.assertOneLineEach()
        self.assertEqual(set(msg), {"type", "origin", "payload"})
        self.assertEqual(set(msg["payload"]), SESSION_FIELDS)
        msg["payload"]["canales"].sort()
        self.assertEqual(msg, {"type": "CLIENT_CONNECTED", "origin": "srv-a", "payload": {
            "serverId": "srv-a", "sessionId": "s1", "clienteId": 12, "usuario": "carlos",
            "ip": "192.168.1.10", "canales": [3, 8]}})
        self.assertEqual(self.recorder.events, [("sessionAdded", "srv-a", "s1")])
        self.assertEqual(self.node.metrics.messagesOut["CLIENT_CONNECTED"], 2)

    def test_clientConnectedWithoutIp(self) -> None:
        """A missing ip is written as null, the field is still there."""
        self.node.clientConnected("s1", 12, "carlos")
        msg = self.assertOneLineEach()
        self.assertEqual(set(msg["payload"]), SESSION_FIELDS)
        self.assertEqual((msg["payload"]["ip"], msg["payload"]["canales"]), (None, []))

    def test_duplicateSession(self) -> None:
        """
        A second local session with the same id fails with
        L{DuplicateSession}; nothing is sent, the first is unchanged.
        """
        self.node.clientConnected("s1", 12, "carlos")
        self.assertOneLineEach()
        self.failureResultOf(self.node.clientConnected("s1", 13, "otro"), DuplicateSession)
        self.noLines()
        self.assertEqual(self.node.state.session("srv-a", "s1").clienteId, 12)

    def test_valuesTheWireCannotCarry(self) -> None:
        """
        Values peers would refuse (a non-integer or over-64-bit id, a
        non-string sessionId/usuario/ip, a non-integer channel) fail the
        Deferred with C{TypeError} or C{ValueError}; no state, no line, no
        event.
        """
        bad = [
            ("s1", "doce", "carlos", None, ()),
            ("s1", 2 ** 63, "carlos", None, ()),
            ("s1", True, "carlos", None, ()),
            ("s1", 12.5, "carlos", None, ()),
            ("s1", 12, 5, None, ()),
            (5, 12, "carlos", None, ()),
            ("s1", 12, "carlos", 10, ()),
            ("s1", 12, "carlos", None, ["x"]),
            ("s1", 12, "carlos", None, [-(2 ** 63) - 1]),
        ]
        for args in bad:
            f = self.failureResultOf(self.node.clientConnected(*args))
            self.assertTrue(f.check(TypeError, ValueError), (args, f))
        self.assertEqual(list(self.node.state.allSessions()), [])
        self.noLines()
        self.assertEqual(self.recorder.events, [])
        self.successResultOf(self.node.clientConnected("s1", 2 ** 63 - 1, "carlos", None, [0]))
        self.assertOneLineEach()
        for canalId in ("tres", 2 ** 63, None):
            f = self.failureResultOf(self.node.joinChannel("s1", canalId))
            self.assertTrue(f.check(TypeError, ValueError), (canalId, f))
            f = self.failureResultOf(self.node.leaveChannel("s1", canalId))
            self.assertTrue(f.check(TypeError, ValueError), (canalId, f))
        self.noLines()
        self.assertEqual(self.node.state.session("srv-a", "s1").canales, {0})

    def test_sameIdAsRemoteSessionIsFine(self) -> None:
        """A local session may reuse a sessionId a peer uses."""
        self.remote(self.b, "session-1", 5)
        self.successResultOf(self.node.clientConnected("session-1", 6, "seis"))
        self.assertEqual(self.node.state.serversOfSession("session-1"), {"srv-a", "srv-b"})

    def test_clientDisconnected(self) -> None:
        """
        Removes the session, fires with it, and every peer gets one
        CLIENT_DISCONNECTED with exactly sessionId and clienteId.
        """
        self.node.clientConnected("s1", 12, "carlos", None, [3])
        self.assertOneLineEach()
        self.recorder.events.clear()
        session = self.successResultOf(self.node.clientDisconnected("s1"))
        self.assertEqual((session.sessionId, session.clienteId), ("s1", 12))
        msg = self.assertOneLineEach()
        self.assertEqual(msg, {"type": "CLIENT_DISCONNECTED", "origin": "srv-a",
                               "payload": {"sessionId": "s1", "clienteId": 12}})
        self.assertIsNone(self.node.state.session("srv-a", "s1"))
        self.assertEqual(self.recorder.events, [("sessionRemoved", "srv-a", "s1")])

    def test_unknownSession(self) -> None:
        """
        Disconnecting, joining or leaving with an id that is not a local
        session (even one a peer uses) fails with L{UnknownSession} and
        sends nothing.
        """
        self.remote(self.b, "sb", 5)
        for sessionId in ("nope", "sb"):
            self.failureResultOf(self.node.clientDisconnected(sessionId), UnknownSession)
            self.failureResultOf(self.node.joinChannel(sessionId, 3), UnknownSession)
            self.failureResultOf(self.node.leaveChannel(sessionId, 3), UnknownSession)
        self.noLines()
        self.assertIsNotNone(self.node.state.session("srv-b", "sb"))

    def test_joinAndLeave(self) -> None:
        """
        Join fires C{True} and sends JOIN once; joining again fires C{False}
        and sends nothing; leave sends LEAVE, then C{False} again.
        """
        self.node.clientConnected("s1", 12, "carlos")
        self.assertOneLineEach()
        self.recorder.events.clear()
        self.assertIs(self.successResultOf(self.node.joinChannel("s1", 3)), True)
        msg = self.assertOneLineEach()
        self.assertEqual(msg, {"type": "CHANNEL_MEMBERSHIP", "origin": "srv-a", "payload": {
            "sessionId": "s1", "clienteId": 12, "canalId": 3, "action": "JOIN"}})
        self.assertIs(self.successResultOf(self.node.joinChannel("s1", 3)), False)
        self.noLines()
        self.assertIs(self.successResultOf(self.node.leaveChannel("s1", 3)), True)
        msg = self.assertOneLineEach()
        self.assertEqual(msg["payload"], {
            "sessionId": "s1", "clienteId": 12, "canalId": 3, "action": "LEAVE"})
        self.assertIs(self.successResultOf(self.node.leaveChannel("s1", 3)), False)
        self.noLines()
        self.assertEqual(self.recorder.events, [
            ("membershipChanged", "s1", 3, True), ("membershipChanged", "s1", 3, False)])

    def test_noPeersStillWorks(self) -> None:
        """With no link at all, the lifecycle calls succeed locally."""
        node = ClusterNode(NodeConfig(serverId="solo", listen=None, clients=None), self.clock,
                           BUILTIN_HANDLERS)
        self.successResultOf(node.clientConnected("s1", 1, "uno"))
        self.assertIs(self.successResultOf(node.joinChannel("s1", 2)), True)
        self.successResultOf(node.clientDisconnected("s1"))
        self.assertEqual(list(node.state.allSessions()), [])
