"""
Tests for L{clustersync.cluster.node.ClusterNode}: the L{ICluster} API over fake
peer links, local delivery, queries, listener and handler isolation.
"""

from __future__ import annotations

import json

import attrs
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from clustersync.wire.codec import (
    DirectMessage, DirectMessagePayload, SessionInfo, decode, encode, rawMessage,
)
from clustersync.app.config import NodeConfig
from clustersync.errors import (
    AmbiguousSession,
    DuplicateSession,
    PeerUnavailable,
    UnknownChannel,
    UnknownSession,
    UnknownUser,
)
from clustersync.handlers.builtin import BUILTIN_HANDLERS
from clustersync.interfaces import (
    ICluster,
    IClusterListener,
    ILocalDelivery,
    IMessageHandler,
    IPeerLink,
)
from clustersync.cluster.node import ClusterNode, Delivery

#: Field names of a session as the spec writes it.
SESSION_FIELDS = {"serverId", "sessionId", "clienteId", "usuario", "ip", "canales"}


@implementer(IPeerLink)
class FakeLink:
    """
    A peer link that records the lines written to it.

    @ivar lines: every line handed to L{sendLine}.
    @ivar accept: whether L{sendLine} takes lines (C{False}: closing).
    """

    def __init__(self, serverId: str, direction: str = "inbound", accept: bool = True) -> None:
        self.serverId = serverId
        self.direction = direction
        self.peerAddress = f"10.0.0.{len(serverId)}:7001"
        self.since = None
        self.tls = False
        self.factory = None
        self.duplicate = False
        self.accept = accept
        self.lines: list[bytes] = []
        self.closed: str | None = None

    def sendLine(self, line: bytes) -> bool:
        """Record C{line} if accepting."""
        if not self.accept:
            return False
        self.lines.append(line)
        return True

    def close(self, reason: str, counter: str | None = None) -> None:
        """Record the close reason."""
        self.closed = reason

    loseConnection = close

    def parsed(self) -> list[dict]:
        """Every recorded line, parsed with the standard C{json} module."""
        return [json.loads(x) for x in self.lines]


@implementer(ILocalDelivery)
class FakeDelivery:
    """Records local deliveries."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def deliver(self, sessions, message, kind, origin) -> int:
        """Record one delivery."""
        self.calls.append((sorted(s.sessionId for s in sessions), message, kind, origin))
        return len(sessions)


@implementer(IClusterListener)
class Recorder:
    """A listener recording every call."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def peerConnected(self, peer) -> None:
        """Record."""
        self.events.append(("peerConnected", peer.serverId))

    def peerDisconnected(self, peer, reason) -> None:
        """Record."""
        self.events.append(("peerDisconnected", peer.serverId))

    def sessionAdded(self, session) -> None:
        """Record."""
        self.events.append(("sessionAdded", session.serverId, session.sessionId))

    def sessionRemoved(self, session) -> None:
        """Record."""
        self.events.append(("sessionRemoved", session.serverId, session.sessionId))

    def membershipChanged(self, session, canalId, joined) -> None:
        """Record."""
        self.events.append(("membershipChanged", session.sessionId, canalId, joined))


@implementer(IClusterListener)
class BrokenListener:
    """A listener whose every method raises."""

    def peerConnected(self, peer) -> None:
        """Raise."""
        raise ZeroDivisionError("peerConnected")

    def peerDisconnected(self, peer, reason) -> None:
        """Raise."""
        raise ZeroDivisionError("peerDisconnected")

    def sessionAdded(self, session) -> None:
        """Raise."""
        raise ZeroDivisionError("sessionAdded")

    def sessionRemoved(self, session) -> None:
        """Raise."""
        raise ZeroDivisionError("sessionRemoved")

    def membershipChanged(self, session, canalId, joined) -> None:
        """Raise."""
        raise ZeroDivisionError("membershipChanged")


@implementer(IMessageHandler)
@attrs.define
class ScriptedHandler:
    """A handler that records the messages it sees, or raises."""

    name: str
    messageTypes: tuple
    raises: bool = False
    seen: list = attrs.field(factory=list)

    def handleMessage(self, node, link, message) -> None:
        """Record C{message}, then raise if told to."""
        self.seen.append(message)
        if self.raises:
            raise RuntimeError(f"{self.name} fails")


def connectedLine(origin: str, sessionId: str, clienteId: int, canales=()) -> bytes:
    """A CLIENT_CONNECTED line from C{origin}."""
    return json.dumps({"type": "CLIENT_CONNECTED", "origin": origin, "payload": {
        "serverId": origin, "sessionId": sessionId, "clienteId": clienteId, "usuario": "u",
        "ip": None, "canales": list(canales)}}).encode()


class NodeTestMixin:
    """A node C{srv-a} with fake links to C{srv-b} and C{srv-c}."""

    def setUp(self) -> None:
        """Build the node, its delivery, a listener, and two linked peers."""
        self.clock = Clock()
        self.clock.advance(1000)
        self.node = ClusterNode(NodeConfig(serverId="srv-a", listen=None, clients=None),
                                self.clock, BUILTIN_HANDLERS)
        self.delivery = FakeDelivery()
        self.node.setLocalDelivery(self.delivery)
        self.recorder = Recorder()
        self.node.addListener(self.recorder)
        self.b = self.addLink("srv-b")
        self.c = self.addLink("srv-c", "outbound")
        self.recorder.events.clear()

    def addLink(self, serverId: str, direction: str = "inbound", accept: bool = True) -> FakeLink:
        """Open and establish a fake link; forget the SYNC_STATE it got."""
        link = FakeLink(serverId, direction, accept)
        self.node.linkOpened(link)
        link.since = self.clock.seconds()
        self.node.linkEstablished(link)
        link.lines.clear()
        return link

    def remote(self, link: FakeLink, sessionId: str, clienteId: int, canales=()) -> None:
        """A session of C{link}'s server, learned over C{link}."""
        self.node.dispatch(link, decode(connectedLine(link.serverId, sessionId, clienteId, canales)))

    def noLines(self) -> None:
        """Assert no peer got any line."""
        self.assertEqual((self.b.lines, self.c.lines), ([], []))


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


class SendTests(NodeTestMixin, unittest.TestCase):
    """sendToUser, sendToChannel, sendToSession, broadcast."""

    def setUp(self) -> None:
        """
        User 42 on srv-a (la1) and srv-b (lb1); user 7 on srv-c only.
        Channel 3: la1, lb1, lc1.  Channel 4: la1 only.
        """
        NodeTestMixin.setUp(self)
        self.node.clientConnected("la1", 42, "ana", None, [3, 4])
        self.remote(self.b, "lb1", 42, [3])
        self.remote(self.c, "lc1", 7, [3])
        self.b.lines.clear()
        self.c.lines.clear()

    def test_sendToUser(self) -> None:
        """
        One DIRECT_MESSAGE to srv-b only (srv-c hosts no session of user
        42), the local session gets the encoded bytes.
        """
        delivery = self.successResultOf(self.node.sendToUser(42, {"contenido": "hola"}))
        self.assertEqual(delivery, Delivery(1, ("srv-b",)))
        self.assertEqual(self.c.lines, [])
        self.assertEqual(self.b.parsed(), [{"type": "DIRECT_MESSAGE", "origin": "srv-a",
                                            "payload": {"userId": 42,
                                                        "message": {"contenido": "hola"}}}])
        self.assertEqual(self.delivery.calls,
                         [(["la1"], b'{"contenido":"hola"}', "DIRECT_MESSAGE", "srv-a")])
        self.assertIs(type(self.delivery.calls[0][1]), bytes)

    def test_sendToRemoteOnlyUser(self) -> None:
        """A user with no local session: no local delivery at all."""
        delivery = self.successResultOf(self.node.sendToUser(7, "x"))
        self.assertEqual(delivery, Delivery(0, ("srv-c",)))
        self.assertEqual(self.delivery.calls, [])
        self.assertEqual(self.b.lines, [])

    def test_oneRemoteServerPath(self) -> None:
        """
        A user hosted by one remote server only takes the send hot path:
        its line is byte for byte the typed encoder's; a message JSON cannot
        hold fails with C{TypeError} and a link that refuses the line with
        L{PeerUnavailable}, nothing written either way; the Delivery is the
        same for every send.
        """
        first = self.successResultOf(self.node.sendToUser(7, {"k": "v\n"}))
        self.assertEqual(self.c.lines, [encode(DirectMessage(
            "srv-a", DirectMessagePayload(7, rawMessage({"k": "v\n"}))))])
        self.assertEqual(self.successResultOf(self.node.sendToUser(7, 1)), first)
        self.assertEqual(self.node.metrics.messagesOut["DIRECT_MESSAGE"], 2)
        self.c.lines.clear()
        self.failureResultOf(self.node.sendToUser(7, object()), TypeError)
        self.c.accept = False
        f = self.failureResultOf(self.node.sendToUser(7, "x"), PeerUnavailable)
        self.assertEqual((f.value.servers, f.value.delivery), (("srv-c",), Delivery(0, ())))
        self.noLines()
        self.assertEqual(self.node.metrics.messagesOut["DIRECT_MESSAGE"], 2)

    def test_unknownUser(self) -> None:
        """No session of that user anywhere: L{UnknownUser}, nothing sent."""
        self.failureResultOf(self.node.sendToUser(999, "x"), UnknownUser)
        self.noLines()
        self.assertEqual(self.delivery.calls, [])

    def test_sendToChannel(self) -> None:
        """One CHANNEL_MESSAGE to each server hosting a member, local delivery too."""
        delivery = self.successResultOf(self.node.sendToChannel(3, [1, 2]))
        self.assertEqual(delivery, Delivery(1, ("srv-b", "srv-c")))
        self.assertIs(self.b.lines[0], self.c.lines[0])
        self.assertEqual(self.b.parsed(), [{"type": "CHANNEL_MESSAGE", "origin": "srv-a",
                                            "payload": {"canalId": 3, "message": [1, 2]}}])
        self.assertEqual(self.delivery.calls, [(["la1"], b"[1,2]", "CHANNEL_MESSAGE", "srv-a")])

    def test_sendToChannelExcludesSender(self) -> None:
        """
        The excluded session gets nothing; remote members still do.
        """
        self.node.clientConnected("la2", 43, "otra", None, [3])
        self.b.lines.clear()
        self.c.lines.clear()
        delivery = self.successResultOf(self.node.sendToChannel(3, "m", excludeSessionId="la1"))
        self.assertEqual(delivery, Delivery(1, ("srv-b", "srv-c")))
        self.assertEqual(self.delivery.calls, [(["la2"], b'"m"', "CHANNEL_MESSAGE", "srv-a")])

    def test_sendToChannelOnlyLocalSenderExcluded(self) -> None:
        """
        When the excluded sender is the only local member, nothing is
        delivered locally but the remote members are reached.
        """
        delivery = self.successResultOf(self.node.sendToChannel(3, "m", excludeSessionId="la1"))
        self.assertEqual(delivery, Delivery(0, ("srv-b", "srv-c")))
        self.assertEqual(self.delivery.calls, [])

    def test_unknownChannel(self) -> None:
        """
        A channel without members, or whose only member is the excluded
        sender, fails with L{UnknownChannel}.
        """
        self.failureResultOf(self.node.sendToChannel(99, "m"), UnknownChannel)
        self.failureResultOf(self.node.sendToChannel(4, "m", excludeSessionId="la1"), UnknownChannel)
        self.noLines()
        self.assertEqual(self.delivery.calls, [])

    def test_sendToSession(self) -> None:
        """
        A remote session: one SESSION_MESSAGE to its server only; a local
        one: delivered here only.
        """
        delivery = self.successResultOf(self.node.sendToSession("lc1", {"tipo": "ACK"}))
        self.assertEqual(delivery, Delivery(0, ("srv-c",)))
        self.assertEqual(self.c.parsed(), [{"type": "SESSION_MESSAGE", "origin": "srv-a",
                                            "payload": {"sessionId": "lc1",
                                                        "message": {"tipo": "ACK"}}}])
        self.assertEqual(self.b.lines, [])
        self.c.lines.clear()
        delivery = self.successResultOf(self.node.sendToSession("la1", {"tipo": "ACK"}))
        self.assertEqual(delivery, Delivery(1, ()))
        self.noLines()
        self.assertEqual(self.delivery.calls,
                         [(["la1"], b'{"tipo":"ACK"}', "SESSION_MESSAGE", "srv-a")])

    def test_sendToSessionErrors(self) -> None:
        """
        Unknown id: L{UnknownSession}; an id two servers use:
        L{AmbiguousSession} unless C{serverId} names one; a C{serverId}
        that does not host it: L{UnknownSession}.
        """
        self.failureResultOf(self.node.sendToSession("nope", "x"), UnknownSession)
        self.remote(self.c, "lb1", 8)
        self.c.lines.clear()
        f = self.failureResultOf(self.node.sendToSession("lb1", "x"), AmbiguousSession)
        self.assertIn("srv-b", str(f.value))
        self.assertIn("srv-c", str(f.value))
        self.failureResultOf(self.node.sendToSession("lb1", "x", serverId="srv-a"), UnknownSession)
        self.noLines()
        delivery = self.successResultOf(self.node.sendToSession("lb1", "x", serverId="srv-c"))
        self.assertEqual(delivery.servers, ("srv-c",))
        self.assertEqual(self.b.lines, [])

    def test_broadcast(self) -> None:
        """
        Every peer gets the same bytes object (encoded once); every local
        session gets the message.
        """
        self.node.clientConnected("la2", 43, "otra")
        self.b.lines.clear()
        self.c.lines.clear()
        delivery = self.successResultOf(self.node.broadcast({"tipo": "SERVER_ALERT"}))
        self.assertEqual(delivery, Delivery(2, ("srv-b", "srv-c")))
        self.assertIs(self.b.lines[0], self.c.lines[0])
        self.assertEqual(self.b.parsed(), [{"type": "BROADCAST", "origin": "srv-a",
                                            "payload": {"message": {"tipo": "SERVER_ALERT"}}}])
        self.assertEqual(self.delivery.calls,
                         [(["la1", "la2"], b'{"tipo":"SERVER_ALERT"}', "BROADCAST", "srv-a")])
        self.assertEqual(self.node.metrics.messagesOut["BROADCAST"], 2)

    def test_peerUnavailable(self) -> None:
        """
        A hosting server whose link refuses the line: L{PeerUnavailable}
        naming it, with the L{Delivery} of what did go out.
        """
        self.c.accept = False
        f = self.failureResultOf(self.node.sendToChannel(3, "m"), PeerUnavailable)
        self.assertEqual(f.value.servers, ("srv-c",))
        self.assertEqual(f.value.delivery, Delivery(1, ("srv-b",)))
        self.assertEqual(len(self.b.lines), 1)
        f = self.failureResultOf(self.node.broadcast("m"), PeerUnavailable)
        self.assertEqual(f.value.servers, ("srv-c",))
        self.assertEqual(f.value.delivery.servers, ("srv-b",))

    def test_notJson(self) -> None:
        """
        A message that is not JSON-serialisable (an unknown type, or a value
        that contains itself) fails with C{TypeError}; nothing sent.
        """
        cyclic: dict = {}
        cyclic["self"] = cyclic
        for bad in (object(), {1j}, cyclic):
            for d in (self.node.sendToUser(42, bad),
                      self.node.sendToChannel(3, bad),
                      self.node.sendToSession("lb1", bad),
                      self.node.broadcast(bad)):
                self.failureResultOf(d, TypeError)
        self.noLines()
        self.assertEqual(self.delivery.calls, [])


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

        self.assertEqual(self.node._dispatch[DirectMessage].fast, self.node.deliverDirect)
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
        self.assertIsNone(self.node._dispatch[DirectMessage].fast)
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
