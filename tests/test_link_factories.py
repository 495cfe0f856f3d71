"""
Tests for L{clustersync.links.factories}: two nodes linked in memory
(L{twisted.test.iosim}) through L{PeerServerFactory} and
L{PeerClientFactory}, the duplicate-link tie-break and link loss, and the
backoff, standby and stop of L{PeerClientFactory}.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial import unittest

from clustersync.cluster.node import ClusterNode
from clustersync.links import factories as factoriesModule
from clustersync.links.factories import PeerClientFactory, PeerServerFactory
from clustersync.links.protocol import LinkState
from tests.linksupport import FakeConnector, RecordingListener, hello, lost, makeNode
from tests.support import ClockGroup


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
            [c for c in self.clockB.getDelayedCalls() if c.func.__name__ != "_check"], [])
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
        self.patch(factoriesModule, "_random", lambda: 1.0)
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
        self.patch(factoriesModule, "_random", lambda: 0.0)
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
        self.patch(factoriesModule, "_random", lambda: 0.5)
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
