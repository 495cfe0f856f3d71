"""
Tests for L{clustersync.links.handshake}: the HELLO state machine of one
L{PeerProtocol} (over L{StringTransport} and a L{Clock}), and two inbound
links claiming one serverId.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial import unittest

from clustersync.links.factories import PeerClientFactory
from clustersync.links.protocol import INBOUND, OUTBOUND, LinkState
from tests.linksupport import (
    FakeConnector, LinkTestMixin, connected, hello, line, lost, makeNode, parseLines, sync,
)


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
            [c.func.__name__ for c in self.clock.getDelayedCalls()], ["_check"])
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
