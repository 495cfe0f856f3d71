"""
Tests for the anti-entropy exchange: L{clustersync.state.digest} (pure, no
reactor) and L{clustersync.cluster.antientropy} between two nodes linked
in memory.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.test import iosim
from twisted.trial import unittest

from clustersync.cluster.antientropy import AntiEntropy
from clustersync.cluster.metrics import Metrics
from clustersync.app.config import NodeConfig
from clustersync.links.factories import PeerClientFactory, PeerServerFactory
from clustersync.state.cluster import ClusterState
from clustersync.state.digest import Digests
from clustersync.wire.codec import SessionInfo, XDigest, XDigestPayload

from tests.linksupport import makeNode
from tests.support import ClockGroup


def info(sessionId: str, clienteId: int = 1, canales=()) -> SessionInfo:
    """A session record."""
    return SessionInfo(sessionId, clienteId, "ana", None, "10.0.0.1", set(canales))


class DigestsTests(unittest.TestCase):
    """L{Digests} kept change by change equals the digest computed afresh."""

    def setUp(self):
        """A state whose every change feeds a L{Digests}."""
        self.state = ClusterState("srv-local")
        self.digests = Digests()

    def apply(self, changes):
        """Feed C{changes} to the digests, as the node does."""
        self.digests.update(changes)

    def assertFresh(self, serverId: str):
        """The kept digest of C{serverId} is the one computed from its sessions."""
        self.assertEqual(self.digests.of(serverId),
                         Digests.compute(self.state.sessionsOf(serverId)))

    def test_incrementalEqualsFresh(self):
        """
        After adds, a replacement, joins, leaves, removals and a SYNC_STATE
        replacing some sessions, the kept digest is the fresh one.
        """
        s = self.state
        self.apply(s.addSession("srv-a", info("a1", 1, [3])))
        self.apply(s.addSession("srv-a", info("a2", 2)))
        self.apply(s.addSession("srv-a", info("a2", 2, [4])))
        self.apply(s.setMembership("srv-a", "a1", 5, True))
        self.apply(s.setMembership("srv-a", "a1", 3, False))
        self.apply(s.addSession("srv-a", info("a3", 3)))
        self.apply(s.removeSession("srv-a", "a3"))
        self.assertFresh("srv-a")
        self.apply(s.replaceServer("srv-a", [info("a1", 1, [5]), info("a9", 9, [1, 2])]))
        self.assertFresh("srv-a")
        self.assertEqual(self.digests.of("srv-a")[0], 2)

    def test_orderFree(self):
        """Two nodes that learned the same sessions in another order agree."""
        other = Digests()
        a, b = info("x", 1, [1, 2]), info("y", 2)
        self.digests.update(ClusterState("l").addSession("srv-a", a))
        self.digests.update(ClusterState("l").addSession("srv-a", b))
        other.update(ClusterState("l").addSession("srv-a", info("y", 2)))
        other.update(ClusterState("l").addSession("srv-a", info("x", 1, [2, 1])))
        self.assertEqual(self.digests.of("srv-a"), other.of("srv-a"))

    def test_anyFieldChangesIt(self):
        """A different user name, address or channel gives another digest."""
        base = Digests.compute([info("x", 1, [1])])
        for variant in (info("x", 1, [2]), info("x", 2, [1]),
                        SessionInfo("x", 1, "eva", None, "10.0.0.1", {1}),
                        SessionInfo("x", 1, "ana", None, "10.0.0.2", {1})):
            self.assertNotEqual(Digests.compute([variant]), base)

    def test_dropForgets(self):
        """A dropped server's digest is gone; its removals then cost nothing."""
        self.apply(self.state.addSession("srv-a", info("a1")))
        self.digests.drop("srv-a")
        self.apply(self.state.dropServer("srv-a"))
        self.assertEqual(self.digests.of("srv-a"), (0, 0))


class FakeLink:
    """What L{AntiEntropy} reads of a link."""

    serverId = "srv-a"
    linesWritten = 10
    linesReceived = 4
    stateLine = 8

    def __init__(self):
        self.extensions = []

    def sendExtension(self, line):
        self.extensions.append(line)
        return True


class AntiEntropyTests(unittest.TestCase):
    """L{AntiEntropy} on its own, with a fake link."""

    def setUp(self):
        """An L{AntiEntropy} of C{srv-b} recording the SYNC_STATEs it pushes."""
        self.clock = Clock()
        self.metrics = Metrics()
        self.synced = []
        self.ae = AntiEntropy("srv-b", self.clock, NodeConfig(serverId="srv-b"), self.metrics,
                              self.synced.append)
        self.ae.digests.update(ClusterState("srv-b").addSession("srv-b", info("b1")))
        self.link = FakeLink()

    def digest(self, sesiones: int, hash: int, lines: int) -> XDigest:
        """An X_DIGEST from srv-a."""
        return XDigest("srv-a", XDigestPayload(sesiones, hash, lines))

    def test_match(self):
        """The peer holds what this node has: counted, nothing sent."""
        count, total = self.ae.digests.of("srv-b")
        self.ae.digestReceived(self.link, self.digest(count, total, 9))
        self.assertEqual((self.synced, self.metrics.liveness["digest_match"]), ([], 1))

    def test_inFlight(self):
        """A digest older than this node's last session line is not compared."""
        self.ae.digestReceived(self.link, self.digest(0, 0, 7))
        self.assertEqual((self.synced, self.metrics.liveness["digest_in_flight"]), ([], 1))

    def test_bogus(self):
        """A digest claiming more lines than were written is rejected."""
        self.ae.digestReceived(self.link, self.digest(0, 0, 11))
        self.assertEqual((self.synced, self.metrics.rejectedInputs["bogus_digest"]), ([], 1))

    def test_mismatchRepairedWithBackOff(self):
        """
        A mismatch pushes a SYNC_STATE; while it persists, the next push
        waits a digest interval, then two, doubling.
        """
        for _ in range(3):
            self.ae.digestReceived(self.link, self.digest(0, 0, 9))
        self.assertEqual(len(self.synced), 1)
        self.clock.advance(30)
        self.ae.digestReceived(self.link, self.digest(0, 0, 9))
        self.clock.advance(30)
        self.ae.digestReceived(self.link, self.digest(0, 0, 9))
        self.assertEqual(len(self.synced), 2)
        self.clock.advance(30)
        self.ae.digestReceived(self.link, self.digest(0, 0, 9))
        self.assertEqual(len(self.synced), 3)
        self.assertEqual(self.metrics.liveness["digest_mismatch"], 6)
        self.assertEqual(self.metrics.liveness["digest_repaired"], 3)

    def test_sendDigest(self):
        """The digest sent is of what this node holds of the peer, with the line count."""
        self.ae.digests.update(ClusterState("srv-b").addSession("srv-a", info("a1")))
        self.assertTrue(self.ae.sendDigest(self.link))
        self.assertIn(b'"X_DIGEST"', self.link.extensions[0])
        self.assertIn(b'"sesiones":1', self.link.extensions[0])
        self.assertIn(b'"lines":4', self.link.extensions[0])


class TwoNodeRepairTests(unittest.TestCase):
    """Two clustersync nodes linked in memory repair a divergence."""

    def setUp(self):
        """Nodes C{srv-a} (dialer, session a1) and C{srv-b}, linked."""
        self.a = makeNode("srv-a", Clock(), receipts="all", digestInterval=20.0)
        self.b = makeNode("srv-b", Clock(), receipts="all", digestInterval=20.0)
        self.a.clientConnected("a1", 1, "uno", None, [5])
        factory = PeerClientFactory(self.a, "b:7001", self.a.clock)
        self.clocks = ClockGroup(self.a.clock, self.b.clock)
        _, _, self.pump = iosim.connectedServerAndClient(
            lambda: PeerServerFactory(self.b).buildProtocol(None),
            lambda: factory.buildProtocol(None),
            clock=self.clocks,
        )
        self.pump.flush()

    def passTime(self, seconds: float):
        """Let C{seconds} pass in steps, pumping the link."""
        for _ in range(int(seconds)):
            self.clocks.advance(1.0)
            self.pump.flush()

    def test_ghostRemoved(self):
        """
        B holds a ghost session of A (a lost CLIENT_DISCONNECTED, say): B's
        next digest differs from A's own, A pushes a SYNC_STATE, the ghost
        is gone, and the digest after that matches.
        """
        b = self.b
        b.listeners.notifyChanges(b.state.addSession("srv-a", info("ghost", 9)))
        self.assertEqual({s.sessionId for s in b.state.sessionsOf("srv-a")}, {"a1", "ghost"})
        self.passTime(25)
        self.assertEqual({s.sessionId for s in b.state.sessionsOf("srv-a")}, {"a1"})
        self.assertEqual(self.a.metrics.liveness["digest_mismatch"], 1)
        self.assertEqual(self.a.metrics.liveness["digest_repaired"], 1)
        self.passTime(20)
        self.assertGreaterEqual(self.a.metrics.liveness["digest_match"], 1)
        self.assertEqual(self.a.metrics.liveness["digest_mismatch"], 1)
        self.assertEqual(self.b.metrics.liveness["digest_mismatch"], 0)

    def test_churnIsNotDivergence(self):
        """
        Sessions coming and going between digests (half a second away from
        the checks, delivered before the next one) never count as
        divergence.
        """
        for i in range(45):
            self.clocks.advance(0.5)
            self.pump.flush()
            self.a.clientConnected(f"n{i}", 100 + i, "otro")
            if i % 3 == 0:
                self.b.clientConnected(f"m{i}", 200 + i, "mas", None, [i])
            if i % 4 == 0:
                self.a.clientDisconnected(f"n{i}")
            self.clocks.advance(0.5)
            self.pump.flush()
        self.assertGreaterEqual(self.a.metrics.liveness["digest_match"], 1)
        self.assertGreaterEqual(self.b.metrics.liveness["digest_match"], 1)
        self.assertEqual(self.a.metrics.liveness["digest_mismatch"], 0)
        self.assertEqual(self.b.metrics.liveness["digest_mismatch"], 0)
