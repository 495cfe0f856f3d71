"""
Tests for the send paths of the L{ICluster} API
(L{clustersync.cluster.sending}): C{sendToUser}, C{sendToChannel},
C{sendToSession} and C{broadcast} over fake peer links.
"""

from __future__ import annotations

from twisted.trial import unittest

from clustersync.wire.codec import DirectMessage, DirectMessagePayload, encode, rawMessage
from clustersync.errors import (
    AmbiguousSession,
    PeerUnavailable,
    UnknownChannel,
    UnknownSession,
    UnknownUser,
)
from clustersync.cluster.node import Delivery

from tests.nodefakes import NodeTestMixin


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
