"""
Reliability of peer links: dead-peer detection (TCP keepalive tuning and
the idle re-sync heartbeat), the bounded outbound buffer of slow peers,
ordering and the duplicate-link / reconnect races, and fail-fast sends.

Everything here is deterministic (L{StringTransport} and L{Clock}); the
fault-injection tests over real loopback sockets are in
L{tests.chaos.test_fast}.
"""

from __future__ import annotations

import socket

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from clustersync.wire.codec import SessionInfo
from clustersync.app.config import ConfigError, loadConfig
from clustersync.errors import PeerUnavailable
from clustersync.links.protocol import INBOUND, OUTBOUND, LinkState
from clustersync.links.sockets import keepaliveSettings, tuneSocket
from clustersync.state.cluster import ClusterState

from tests.linksupport import (
    LinkTestMixin,
    RecordingListener,
    connected,
    hello,
    line,
    lost,
    makeNode,
    parseLines,
    sync,
)


def disconnected(origin: str, sessionId: str, clienteId: int = 7) -> bytes:
    """A CLIENT_DISCONNECTED line."""
    return line("CLIENT_DISCONNECTED", origin, {"sessionId": sessionId, "clienteId": clienteId})


def membership(origin: str, sessionId: str, canalId: int, action: str, clienteId: int = 7) -> bytes:
    """A CHANNEL_MEMBERSHIP line."""
    return line("CHANNEL_MEMBERSHIP", origin, {
        "sessionId": sessionId, "clienteId": clienteId, "canalId": canalId, "action": action})


class _SocketTransport:
    """A transport whose handle is a real socket (for L{tuneSocket})."""

    def __init__(self, sock) -> None:
        self.sock = sock

    def getHandle(self):
        """The socket."""
        return self.sock


class KeepaliveTests(unittest.TestCase):
    """TCP keepalive and TCP_USER_TIMEOUT derived from C{dead_peer_timeout}."""

    def test_settingsWithinBound(self) -> None:
        """
        For every bound from 4 s up, idle + interval * count never exceeds
        the bound, and each value is a whole second of at least 1.
        """
        for bound in (4, 4.5, 6, 10, 15, 30, 120):
            idle, interval, count = keepaliveSettings(bound)
            self.assertLessEqual(idle + interval * count, bound, bound)
            self.assertGreaterEqual(min(idle, interval, count), 1)
        self.assertEqual(keepaliveSettings(15), (5, 3, 3))

    def test_tuneRealSocket(self) -> None:
        """
        On a real TCP socket, keepalive is on and the kernel reports the
        tuned idle, interval, count and user timeout.
        """
        sock = socket.socket()
        self.addCleanup(sock.close)
        self.assertTrue(tuneSocket(_SocketTransport(sock), 15))
        self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), 1)
        self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE), 5)
        self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL), 3)
        self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT), 3)
        self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT), 15000)

    def test_tuneWithoutSocket(self) -> None:
        """A transport without a TCP socket is left alone (C{False})."""
        self.assertFalse(tuneSocket(StringTransport(), 15))
        self.assertFalse(tuneSocket(_SocketTransport(None), 15))

    def test_configKeys(self) -> None:
        """
        C{dead_peer_timeout}, C{idle_resync} and C{max_outbound_buffer} are
        configuration keys with sane defaults and validated values.
        """
        config = loadConfig(None, {})
        self.assertLessEqual(config.deadPeerTimeout, 15)
        self.assertTrue(config.idleResync)
        self.assertEqual(config.maxOutboundBuffer, 16 * 1024 * 1024)
        config = loadConfig(None, {"dead_peer_timeout": "6", "idle_resync": "false",
                                   "max_outbound_buffer": 1000})
        self.assertEqual((config.deadPeerTimeout, config.idleResync, config.maxOutboundBuffer),
                         (6.0, False, 1000))
        e = self.assertRaises(ConfigError, loadConfig, None, {"max_outbound_buffer": -1})
        self.assertEqual(e.key, "max_outbound_buffer")


class DeadPeerTests(LinkTestMixin, unittest.TestCase):
    """
    The idle heartbeat (re-sent SYNC_STATE) and the cut of a peer that
    heartbeats and then falls silent, on a L{Clock}.
    """

    def setUp(self) -> None:
        """A node with a 6 s dead-peer bound."""
        LinkTestMixin.setUp(self)
        self.node.config.deadPeerTimeout = 6.0

    def heartbeatingPeer(self):
        """An inbound link from srv-a that has sent two SYNC_STATEs."""
        proto, transport = self.established("srv-a")
        proto.dataReceived(sync("srv-a", "a1") + sync("srv-a", "a1"))
        self.assertIsNotNone(self.node.state.session("srv-a", "a1"))
        return proto, transport

    def test_silentPeerCutWithinBound(self) -> None:
        """
        A peer known to heartbeat that sends nothing more is cut within
        the bound (not before 5/6 of it), with reason C{dead peer}, an
        abort (no graceful flush to a dead host) and the C{dead_peer}
        counter; once the connection is lost its sessions are gone and
        listeners are told.
        """
        proto, transport = self.heartbeatingPeer()
        # Time passes check by check (one jump of 4 s would be this node's
        # own stall, which liveness does not blame on the peer).
        self.clock.pump([1.0] * 4)
        self.assertFalse(transport.disconnecting)
        self.clock.pump([1.0] * 2)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(transport.disconnected)  # aborted, not lost gracefully
        self.assertEqual(self.node.metrics.linksClosed["dead_peer"], 1)
        lost(proto)
        self.assertIsNone(self.node.state.session("srv-a", "a1"))
        self.assertIsNone(self.node.linkFor("srv-a"))
        events = [e for e in self.listener.events if e[0] != "peerConnected"]
        self.assertEqual(events[0], ("sessionAdded", "srv-a", "a1"))
        self.assertEqual(events[1], ("sessionRemoved", "srv-a", "a1"))
        self.assertEqual(events[2][:2], ("peerDisconnected", "srv-a"))
        self.assertIn("dead peer", events[2][2])

    def test_heartbeatingPeerStaysUp(self) -> None:
        """A peer that keeps sending something every bound/3 is never cut."""
        proto, transport = self.heartbeatingPeer()
        for _ in range(30):
            self.clock.advance(2.0)
            proto.dataReceived(sync("srv-a", "a1"))
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.node.metrics.linksClosed["dead_peer"], 0)

    def test_legacyPeerNeverCutForSilence(self) -> None:
        """
        A peer that sent SYNC_STATE only once (an existing server without
        idle re-sync) is not cut however long it is silent: only TCP
        keepalive watches it.
        """
        proto, transport = self.established("srv-a")
        proto.dataReceived(sync("srv-a", "a1"))
        self.clock.pump([1.0] * 120)
        self.assertFalse(transport.disconnecting)
        self.assertIsNotNone(self.node.state.session("srv-a", "a1"))

    def test_idleLinkResyncs(self) -> None:
        """
        An active link on which nothing was written for a third of the
        bound gets this node's SYNC_STATE again (with its local sessions);
        a link that carried traffic recently does not.
        """
        proto, transport = self.established("srv-a")
        self.node.clientConnected("b1", 5, "eva")
        self.clock.advance(0)
        transport.clear()
        self.clock.advance(1.0)
        self.node.clientConnected("b2", 6, "rui")  # traffic: resets idleness
        self.clock.advance(0)
        transport.clear()
        self.clock.advance(1.0)
        self.assertEqual(transport.value(), b"")
        self.clock.advance(2.0)
        [message] = parseLines(transport.value())
        self.assertEqual(message["type"], "SYNC_STATE")
        self.assertEqual({s["sessionId"] for s in message["payload"]["sessions"]}, {"b1", "b2"})
        self.assertFalse(transport.disconnecting)

    def test_firstCheckResyncsEvenWhenBusy(self) -> None:
        """
        At the first liveness check (a sixth of the bound after the
        HELLO exchange) the SYNC_STATE is re-sent even if the link is busy,
        so the peer learns early that this node heartbeats; after that,
        a link written to more often than every third of the bound gets
        no re-sync.
        """
        proto, transport = self.established("srv-a")
        self.node.clientConnected("b1", 5, "eva")
        self.clock.advance(0)
        for _ in range(20):
            transport.clear()
            self.clock.advance(0.5)
            self.node.clientConnected(f"x{self.clock.seconds()}", 6, "rui")
            kinds = [m["type"] for m in parseLines(self.written(transport))]
            if self.clock.seconds() == 1.0:
                self.assertEqual(kinds, ["SYNC_STATE", "CLIENT_CONNECTED"])
            else:
                self.assertEqual(kinds, ["CLIENT_CONNECTED"])

    def test_idleResyncDisabled(self) -> None:
        """With C{idle_resync = false} an idle link gets nothing."""
        self.node.config.idleResync = False
        proto, transport = self.established("srv-a")
        transport.clear()
        self.clock.pump([1.0] * 30)
        self.assertEqual(transport.value(), b"")

    def test_resyncChangesNothingOnPeer(self) -> None:
        """
        The heartbeat SYNC_STATE, received by a clustersync peer, gives
        its listeners no event (replaceServer with unchanged sessions).
        """
        proto, transport = self.established("srv-a")
        proto.dataReceived(sync("srv-a", "a1", "a2"))
        before = list(self.listener.events)
        for _ in range(5):
            proto.dataReceived(sync("srv-a", "a1", "a2"))
        self.assertEqual(self.listener.events, before)

    def test_timerGoneWithLink(self) -> None:
        """A lost link leaves no liveness timer behind."""
        proto, transport = self.established("srv-a")
        lost(proto)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class SlowPeerTests(LinkTestMixin, unittest.TestCase):
    """
    The bounded outbound buffer: a push producer registered on the
    transport tracks what is written while the kernel does not take it.
    """

    def setUp(self) -> None:
        """A node with a 1000-byte outbound bound, linked to srv-a."""
        LinkTestMixin.setUp(self)
        self.node.config.maxOutboundBuffer = 1000
        self.proto, self.transport = self.established("srv-a")
        self.proto.dataReceived(connected("srv-a", "a1", clienteId=9))

    def test_producerRegistered(self) -> None:
        """The link registers a streaming producer on its transport."""
        self.assertIs(self.transport.producer, self.proto._outbound)
        self.assertTrue(self.transport.streaming)

    def test_queuedCountedWhilePaused(self) -> None:
        """
        Lines written while the transport says it is full are counted in
        C{outboundBuffered} and C{ClusterNode.outboundBuffers}; the count
        drops to 0 when the transport drains.
        """
        self.assertEqual(self.node.outboundBuffers(), {"srv-a": 0})
        self.transport.producer.pauseProducing()
        self.assertTrue(self.proto.sendLine(b"x" * 99 + b"\n"))
        self.assertTrue(self.proto.sendLine(b"y" * 199 + b"\n"))
        self.assertEqual(self.proto.outboundBuffered, 300)
        self.assertEqual(self.node.outboundBuffers(), {"srv-a": 300})
        self.transport.producer.resumeProducing()
        self.assertEqual(self.node.outboundBuffers(), {"srv-a": 0})
        self.assertFalse(self.transport.disconnecting)

    def test_cutAtBound(self) -> None:
        """
        Past C{max_outbound_buffer} the link is cut (aborted), counted as
        C{slow_peer}, and the line that would exceed it is refused, so the
        API send fails with L{PeerUnavailable} instead of being lost.
        """
        self.transport.producer.pauseProducing()
        for _ in range(9):
            self.assertTrue(self.proto.sendLine(b"z" * 99 + b"\n"))
        self.assertEqual(self.proto.outboundBuffered, 900)
        written = len(self.transport.value())
        failure = self.failureResultOf(self.node.sendToUser(9, "x" * 200), PeerUnavailable)
        self.assertEqual(failure.value.servers, ("srv-a",))
        self.assertTrue(self.transport.disconnected)
        self.assertEqual(self.node.metrics.linksClosed["slow_peer"], 1)
        self.assertEqual(len(self.transport.value()), written)
        self.assertFalse(self.proto.sendLine(b"late\n"))
        lost(self.proto)
        self.assertEqual(self.node.outboundBuffers(), {})

    def test_oneBigLineWhenNothingQueued(self) -> None:
        """
        One line larger than the bound (a big SYNC_STATE) still goes out
        when nothing is queued; the next line then cuts the link.
        """
        self.transport.producer.pauseProducing()
        self.assertTrue(self.proto.sendLine(b"s" * 5000 + b"\n"))
        self.assertFalse(self.proto.sendLine(b"t\n"))
        self.assertEqual(self.node.metrics.linksClosed["slow_peer"], 1)


class OrderingTests(LinkTestMixin, unittest.TestCase):
    """Events of one server are applied in the order they were sent."""

    def test_burstAppliedInOrder(self) -> None:
        """
        A burst of connect / join / leave / disconnect / reconnect lines in
        one read ends in the state of the last event, and listeners see
        the events in wire order.
        """
        proto, transport = self.established("srv-a")
        proto.dataReceived(
            connected("srv-a", "s1", canales=[1])
            + membership("srv-a", "s1", 2, "JOIN")
            + membership("srv-a", "s1", 1, "LEAVE")
            + disconnected("srv-a", "s1")
            + connected("srv-a", "s1", canales=[3])
            + membership("srv-a", "s1", 4, "JOIN")
        )
        self.assertEqual(self.node.state.session("srv-a", "s1").canales, {3, 4})
        events = [e for e in self.listener.events if e[0] != "peerConnected"]
        self.assertEqual(events, [
            ("sessionAdded", "srv-a", "s1"),
            ("membershipChanged", "s1", 2, True),
            ("membershipChanged", "s1", 1, False),
            ("sessionRemoved", "srv-a", "s1"),
            ("sessionAdded", "srv-a", "s1"),
            ("membershipChanged", "s1", 4, True),
        ])

    def test_eventsAroundSyncState(self) -> None:
        """
        A SYNC_STATE replaces what events before it said (a session that
        ended is not resurrected, one that exists is kept), and events
        after it apply on top.
        """
        proto, transport = self.established("srv-a")
        proto.dataReceived(connected("srv-a", "gone") + connected("srv-a", "kept"))
        proto.dataReceived(sync("srv-a", "kept", "new") + disconnected("srv-a", "new")
                           + connected("srv-a", "later"))
        self.assertEqual({s.sessionId for s in self.node.state.sessionsOf("srv-a")},
                         {"kept", "later"})


class RaceTests(LinkTestMixin, unittest.TestCase):
    """
    Duplicate links and a disconnect racing a reconnect never resurrect a
    session that ended nor drop one that exists: state messages are only
    applied from the peer's active link.
    """

    def setUp(self) -> None:
        """Node srv-a (so its outbound link to srv-b wins tie-breaks)."""
        self.clock = Clock()
        self.node = makeNode("srv-a", self.clock)
        self.listener = RecordingListener()
        self.node.addListener(self.listener)

    def establish(self, direction: str, peer: str = "srv-b"):
        """A link of C{direction} to C{peer}, HELLO exchanged."""
        proto, transport = self.connect(direction)
        proto.dataReceived(hello(peer))
        self.assertIs(proto.state, LinkState.ESTABLISHED)
        return proto, transport

    def test_staleEventsOnLoserIgnored(self) -> None:
        """
        A second inbound link from srv-b loses (the older one is kept);
        a CLIENT_CONNECTED for an ended session and a CLIENT_DISCONNECTED
        for a live one arriving on the loser before it closes change
        nothing; when the loser's connection is lost nothing is dropped.
        """
        old, oldTransport = self.establish(INBOUND)
        old.dataReceived(sync("srv-b", "live"))
        new, newTransport = self.establish(INBOUND)
        self.assertTrue(newTransport.disconnecting)
        self.assertFalse(oldTransport.disconnecting)
        new.dataReceived(connected("srv-b", "ended") + disconnected("srv-b", "live"))
        self.assertEqual({s.sessionId for s in self.node.state.sessionsOf("srv-b")}, {"live"})
        before = list(self.listener.events)
        lost(new)
        self.assertEqual(self.listener.events, before)
        self.assertIs(self.node.linkFor("srv-b"), old)

    def test_reconnectBeforeOldLinkLost(self) -> None:
        """
        srv-b's inbound link is still open when our outbound link to srv-b
        is established (a reconnect racing the disconnect): the new link
        wins, our SYNC_STATE goes out on it; srv-b's SYNC_STATE on the new
        link replaces its sessions; a late event on the old link does not
        resurrect a session that ended; and the old link's loss drops
        nothing and tells no listener.
        """
        old, oldTransport = self.establish(INBOUND)
        old.dataReceived(sync("srv-b", "s1", "s2"))
        self.node.clientConnected("mine", 1, "uno")
        new, newTransport = self.establish(OUTBOUND)
        self.assertIs(self.node.linkFor("srv-b"), new)
        self.assertTrue(oldTransport.disconnecting)
        sent = parseLines(self.written(newTransport))
        self.assertEqual([m["type"] for m in sent], ["HELLO", "SYNC_STATE"])
        self.assertEqual(sent[1]["payload"]["sessions"][0]["sessionId"], "mine")
        new.dataReceived(sync("srv-b", "s2", "s3"))
        old.dataReceived(connected("srv-b", "s1"))  # stale: s1 ended meanwhile
        lost(old)
        self.assertEqual({s.sessionId for s in self.node.state.sessionsOf("srv-b")}, {"s2", "s3"})
        self.assertNotIn("peerDisconnected", [e[0] for e in self.listener.events])
        # s2 never flickered: added once, never removed.
        self.assertEqual([e for e in self.listener.events if e[1:] == ("srv-b", "s2")],
                         [("sessionAdded", "srv-b", "s2")])

    def test_lossThenReconnectResyncs(self) -> None:
        """
        The link really goes down: srv-b's sessions go (the real downtime)
        and come back with the next link's SYNC_STATE, once each.
        """
        old, _ = self.establish(INBOUND)
        old.dataReceived(sync("srv-b", "s1"))
        lost(old)
        self.assertEqual(self.node.state.sessionsOf("srv-b"), [])
        new, _ = self.establish(INBOUND)
        new.dataReceived(sync("srv-b", "s1"))
        self.assertEqual([e for e in self.listener.events if e[0].startswith("session")], [
            ("sessionAdded", "srv-b", "s1"),
            ("sessionRemoved", "srv-b", "s1"),
            ("sessionAdded", "srv-b", "s1"),
        ])


class FailFastTests(LinkTestMixin, unittest.TestCase):
    """Every API send reaches a socket or fails with a named error."""

    def test_closingLinkFailsSends(self) -> None:
        """
        Once a link is closing, a send to its server fails at once with
        L{PeerUnavailable} naming it (no queue, no silent drop).
        """
        proto, transport = self.established("srv-a")
        proto.dataReceived(connected("srv-a", "a1", clienteId=3))
        proto.close("test")
        failure = self.failureResultOf(self.node.sendToUser(3, "x"), PeerUnavailable)
        self.assertEqual(failure.value.servers, ("srv-a",))

    def test_abortedLinkFailsSends(self) -> None:
        """
        After an abort (dead or slow peer) the transport is not
        C{disconnecting}, yet sends fail: the link checks its own close.
        """
        proto, transport = self.established("srv-a")
        proto.dataReceived(connected("srv-a", "a1", clienteId=3))
        proto.close("test", abort=True)
        self.assertFalse(proto.sendLine(b"x\n"))
        self.failureResultOf(self.node.sendToSession("a1", "x"), PeerUnavailable)


class ReplaceServerTests(unittest.TestCase):
    """C{ClusterState.replaceServer} gives no change for unchanged sessions."""

    def test_unchangedGiveNoChange(self) -> None:
        """
        Re-syncing the same sessions gives no change; a changed one gives
        exactly its removal and addition.
        """
        state = ClusterState("srv-a")

        def sessions(canal):
            return [SessionInfo("s1", 1, "u", "srv-b", None, {1}),
                    SessionInfo("s2", 2, "v", "srv-b", None, {canal})]

        self.assertEqual(len(state.replaceServer("srv-b", sessions(5))), 2)
        self.assertEqual(state.replaceServer("srv-b", sessions(5)), [])
        changes = state.replaceServer("srv-b", sessions(6))
        self.assertEqual([(c.kind, c.session.sessionId) for c in changes],
                         [("removed", "s2"), ("added", "s2")])


class _AckLink:
    """A link whose acknowledgements the test controls."""

    def __init__(self, serverId: str) -> None:
        self.serverId = serverId
        self.direction = "outbound"
        self.lines: list[bytes] = []
        self.waiting: list = []

    def sendLine(self, line: bytes) -> bool:
        """Accept every line."""
        self.lines.append(line)
        return True

    def whenAcknowledged(self, result=None, onLost=None, context=None):
        """A Deferred the test settles with L{ack} or L{lose}."""
        from twisted.internet.defer import Deferred

        d = Deferred()
        self.waiting.append((d, result, onLost, context))
        return d

    def ack(self) -> None:
        """The peer acknowledged everything so far."""
        for d, result, _, _ in self.waiting:
            d.callback(result)
        self.waiting = []

    def lose(self) -> None:
        """The link was lost first."""
        from twisted.internet.error import ConnectionLost

        for d, _, onLost, context in self.waiting:
            d.errback(onLost(context) if onLost is not None else ConnectionLost("gone"))
        self.waiting = []


class ConfirmedSendTests(unittest.TestCase):
    """
    With C{confirm_sends} (the default), an API send fires once the line
    reached each peer's socket (its TCP stack acknowledged it) and fails
    with L{PeerUnavailable} naming the servers whose link was lost first.
    """

    def setUp(self) -> None:
        """A node with two fake links, one session on each peer."""
        self.node = makeNode("srv-a", Clock())
        self.links = {}
        for peer in ("srv-b", "srv-c"):
            link = self.links[peer] = _AckLink(peer)
            self.node._links[peer] = link
            self.node.state.addSession(peer, SessionInfo(f"s-{peer}", 7, "u", peer, None, {1}))

    def test_firesOnceAcknowledged(self) -> None:
        """The Deferred waits for every link's acknowledgement."""
        d = self.node.sendToChannel(1, "hola")
        self.assertNoResult(d)
        self.links["srv-b"].ack()
        self.assertNoResult(d)
        self.links["srv-c"].ack()
        delivery = self.successResultOf(d)
        self.assertEqual(delivery.servers, ("srv-b", "srv-c"))

    def test_lostBeforeAcknowledged(self) -> None:
        """
        A link lost before acknowledging fails the send with
        L{PeerUnavailable} naming it; the delivery lists the server the
        line did reach.
        """
        d = self.node.sendToChannel(1, "hola")
        self.links["srv-b"].ack()
        self.links["srv-c"].lose()
        failure = self.failureResultOf(d, PeerUnavailable)
        self.assertEqual(failure.value.servers, ("srv-c",))
        self.assertEqual(failure.value.delivery.servers, ("srv-b",))

    def test_onePeer(self) -> None:
        """
        A send to one peer fires with its L{Delivery} once acknowledged,
        or fails with L{PeerUnavailable} naming the peer.
        """
        d = self.node.sendToSession("s-srv-b", "uno")
        self.assertNoResult(d)
        self.links["srv-b"].ack()
        self.assertEqual(self.successResultOf(d).servers, ("srv-b",))
        d = self.node.sendToSession("s-srv-c", "dos")
        self.links["srv-c"].lose()
        failure = self.failureResultOf(d, PeerUnavailable)
        self.assertEqual(failure.value.servers, ("srv-c",))
        self.assertEqual(failure.value.delivery.servers, ())

    def test_downLinkFailsFastWithoutWaiting(self) -> None:
        """
        When one target server has no link, the send fails at once and no
        acknowledgement is awaited on the others.
        """
        del self.node._links["srv-c"]
        self.failureResultOf(self.node.sendToChannel(1, "hola"), PeerUnavailable)
        self.assertEqual(self.links["srv-b"].waiting, [])

    def test_disabled(self) -> None:
        """With C{confirm_sends = false} a send fires once written."""
        self.node.config.confirmSends = False
        self.successResultOf(self.node.sendToChannel(1, "hola"))
        self.assertEqual(self.links["srv-b"].waiting, [])

    def test_linkWithoutSocketFiresAtOnce(self) -> None:
        """
        A L{PeerProtocol} on a transport with no TCP socket (tests, TLS)
        cannot count acknowledgements: it confirms at once; a closed one
        fails.
        """
        clock = Clock()
        node = makeNode("srv-a", clock)
        from clustersync.links.protocol import PeerProtocol

        proto = PeerProtocol(node, INBOUND)
        proto.makeConnection(StringTransport())
        self.successResultOf(proto.whenAcknowledged())
        proto.state = LinkState.CLOSED
        self.failureResultOf(proto.whenAcknowledged())

    def test_realSocketAcknowledged(self) -> None:
        """
        L{unacknowledgedBytes} reads the kernel's send queue of a TCP
        socket (0 for a fresh one), and C{None} for something else.
        """
        from clustersync.links.sockets import unacknowledgedBytes

        sock = socket.socket()
        self.addCleanup(sock.close)
        self.assertEqual(unacknowledgedBytes(sock), 0)
        self.assertIsNone(unacknowledgedBytes(object()))


class StaleLinkTests(LinkTestMixin, unittest.TestCase):
    """
    A peer that crashed without closing its socket and came back before
    our dead-peer cut: its new link replaces the silent old one at once
    instead of being refused as a duplicate until the cut.
    """

    def setUp(self) -> None:
        """A node with a 6 s bound and a heartbeating inbound link from srv-a."""
        LinkTestMixin.setUp(self)
        self.node.config.deadPeerTimeout = 6.0
        self.old, self.oldTransport = self.established("srv-a")
        self.old.dataReceived(sync("srv-a", "a1") + sync("srv-a", "a1"))

    def test_silentOldLinkReplaced(self) -> None:
        """
        After 2/3 of the bound without a byte, a new inbound link from
        srv-a wins: the old one is aborted (counted as C{dead_peer}), our
        SYNC_STATE goes out on the new one, srv-a's re-sync replaces its
        sessions, and listeners see no disconnect.
        """
        self.clock.advance(4.0)
        self.assertFalse(self.oldTransport.disconnecting)  # not cut yet (5 s)
        new, newTransport = self.connect(INBOUND)
        new.dataReceived(hello("srv-a"))
        self.assertIs(self.node.linkFor("srv-a"), new)
        self.assertTrue(self.oldTransport.disconnected)  # aborted
        self.assertFalse(newTransport.disconnecting)
        self.assertEqual(self.node.metrics.linksClosed["dead_peer"], 1)
        self.assertIn("SYNC_STATE", [m["type"] for m in parseLines(self.written(newTransport))])
        new.dataReceived(sync("srv-a", "a2"))
        lost(self.old)
        self.assertEqual({s.sessionId for s in self.node.state.sessionsOf("srv-a")}, {"a2"})
        self.assertNotIn("peerDisconnected", [e[0] for e in self.listener.events])

    def test_liveOldLinkKept(self) -> None:
        """
        A duplicate while the old link is lively (the peer sent something
        recently) still loses: no hijack of a healthy link.
        """
        self.clock.advance(3.0)
        self.old.dataReceived(sync("srv-a", "a1"))
        self.clock.advance(1.0)
        new, newTransport = self.connect(INBOUND)
        new.dataReceived(hello("srv-a"))
        self.assertIs(self.node.linkFor("srv-a"), self.old)
        self.assertTrue(newTransport.disconnecting)
        self.assertEqual(self.node.metrics.linksClosed["duplicate"], 1)
