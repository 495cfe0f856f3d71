"""
Tests for L{clustersync.links.liveness} and L{clustersync.links.kinds}:
X_PING/X_PONG between clustersync nodes, the bounded SYNC_STATE heartbeat
to existing servers, the fall-back of a peer that answers no ping, and
liveness that does not blame a peer for this node's own stall.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial import unittest

from clustersync.app.config import NodeConfig
from clustersync.links.kinds import CLUSTERSYNC, EXISTING, peerKind
from clustersync.links.protocol import LinkState

from tests.linksupport import LinkTestMixin, connected, line, makeNode, parseLines

BOUND = 15.0
STEP = BOUND / 6


def ping(origin: str, n: int) -> bytes:
    """An X_PING line."""
    return line("X_PING", origin, {"n": n})


def pong(origin: str, n: int) -> bytes:
    """An X_PONG line."""
    return line("X_PONG", origin, {"n": n})


class PeerKindTests(unittest.TestCase):
    """L{peerKind}: who is known to be a clustersync node."""

    def kind(self, tls: bool, serverId: str = "srv-a", **settings) -> str:
        """The kind of C{serverId} under C{settings}."""
        return peerKind(NodeConfig(**settings), serverId, tls)

    def test_tlsPolicy(self):
        """By default a TLS peer is clustersync and a plain one an existing server."""
        self.assertEqual((self.kind(True), self.kind(False)), (CLUSTERSYNC, EXISTING))

    def test_configuredPlainPeer(self):
        """C{clustersync_peers} names plain peers that are clustersync nodes."""
        self.assertEqual(self.kind(False, clustersyncPeers=["srv-a"]), CLUSTERSYNC)
        self.assertEqual(self.kind(False, "srv-z", clustersyncPeers=["srv-a"]), EXISTING)

    def test_policies(self):
        """C{all} and C{receipts = "all"} make every peer clustersync; C{none} none."""
        self.assertEqual(self.kind(False, extensions="all"), CLUSTERSYNC)
        self.assertEqual(self.kind(False, receipts="all"), CLUSTERSYNC)
        self.assertEqual(self.kind(True, extensions="none", clustersyncPeers=["srv-a"]), EXISTING)


class _Liveness(LinkTestMixin):
    """A node C{srv-b} whose peer C{srv-a} is a clustersync node on a plain link."""

    settings: dict = {"clustersyncPeers": ["srv-a"]}

    def setUp(self):
        """The node, with a local session so that its SYNC_STATE is not empty."""
        self.clock = Clock()
        self.node = makeNode("srv-b", self.clock, **self.settings)
        self.node.clientConnected("b1", 1, "uno")

    def types(self, transport) -> list[str]:
        """The types of the lines C{transport} got, then clear it."""
        types = [m["type"] for m in parseLines(self.written(transport))]
        transport.clear()
        return types

    def idle(self, proto, transport, seconds: float, answer: bool = True) -> list[str]:
        """
        Let C{seconds} pass check by check, the peer answering each X_PING
        (if C{answer}); return the types written meanwhile.
        """
        types = []
        for _ in range(round(seconds / STEP)):
            self.clock.advance(STEP)
            out = self.written(transport)
            transport.clear()
            for m in parseLines(out):
                types.append(m["type"])
                if answer and m["type"] == "X_PING":
                    proto.dataReceived(pong("srv-a", m["payload"]["n"]))
        return types


class PingTests(_Liveness, unittest.TestCase):
    """X_PING and X_PONG on a link to a clustersync node."""

    def test_pingReplacesResync(self):
        """
        On an idle link to a clustersync node only X_PINGs are written, about
        one per third of the bound, and an X_DIGEST every 30 s; no
        SYNC_STATE after the handshake's.
        """
        proto, transport = self.established("srv-a")
        self.assertEqual(proto.kind, "clustersync")
        types = self.idle(proto, transport, 60)
        self.assertEqual(set(types), {"X_PING", "X_DIGEST"})
        pings = types.count("X_PING")
        self.assertTrue(10 <= pings <= 13, pings)
        self.assertEqual(types.count("X_DIGEST"), 1)
        self.assertEqual(proto.pongsReceived, pings)
        self.assertEqual(proto.state, LinkState.ESTABLISHED)

    def test_pongAnswersPing(self):
        """A peer's X_PING gets an X_PONG with the same number, at once."""
        proto, transport = self.established("srv-a")
        proto.dataReceived(ping("srv-a", 7))
        [m] = parseLines(self.written(transport))
        self.assertEqual((m["type"], m["payload"]), ("X_PONG", {"n": 7}))

    def test_bogusPongRejected(self):
        """An X_PONG for a ping never sent is rejected and proves nothing."""
        proto, transport = self.established("srv-a")
        proto.dataReceived(pong("srv-a", 99))
        self.assertEqual(self.node.metrics.rejectedInputs["bogus_pong"], 1)
        self.assertEqual(proto.pongsReceived, 0)

    def test_extensionLinesNotCounted(self):
        """Pings and pongs are outside the receipts' line count, like X_RECEIVED."""
        proto, transport = self.established("srv-a")
        before = proto.linesReceived
        proto.dataReceived(ping("srv-a", 1) + ping("srv-a", 2))
        self.assertEqual(proto.linesReceived, before)

    def test_deadPeerAfterPong(self):
        """
        A peer that answered and then falls silent is cut as a dead peer
        within the bound, counted C{dead_peer}.
        """
        proto, transport = self.established("srv-a")
        self.idle(proto, transport, 10)
        self.assertGreater(proto.pongsReceived, 0)
        silentFrom = self.clock.seconds()
        self.idle(proto, transport, BOUND, answer=False)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.node.metrics.linksClosed["dead_peer"], 1)
        self.assertLessEqual(self.clock.seconds() - silentFrom, BOUND)

    def test_ownStallForgiven(self):
        """
        This node stalls for twice the bound (time passes, nothing runs, not
        even its pings): the check that runs late after the stall does not
        cut the peer (counted C{own_stall}); it pings, and the peer's answer
        keeps the link.
        """
        proto, transport = self.established("srv-a")
        self.idle(proto, transport, 10)
        self.clock.rightNow += 2 * BOUND
        types = self.idle(proto, transport, 30)
        self.assertFalse(transport.disconnecting)
        self.assertIn("X_PING", types)
        self.assertEqual(self.node.metrics.liveness["own_stall"], 1)
        self.assertEqual(self.node.metrics.linksClosed["dead_peer"], 0)

    def test_stallThenSilenceStillCut(self):
        """
        After the same stall, a peer that stays silent is cut within the
        bound counted from the end of the stall.
        """
        proto, transport = self.established("srv-a")
        self.idle(proto, transport, 10)
        self.clock.rightNow += 2 * BOUND
        stallEnd = self.clock.seconds()
        self.clock.advance(0)
        self.assertFalse(transport.disconnecting)
        self.idle(proto, transport, BOUND, answer=False)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.node.metrics.linksClosed["dead_peer"], 1)
        self.assertLessEqual(self.clock.seconds() - stallEnd, BOUND)

    def test_readWaitingBeforeJudging(self):
        """
        A check on time that finds the peer silent looks again after one
        more reactor turn: a line read in that turn keeps the link.
        """
        proto, transport = self.established("srv-a")
        self.idle(proto, transport, 10)
        n = proto.pingsSent
        while self.clock.seconds() + STEP - proto.lastReceived < BOUND * 5 / 6:
            self.clock.advance(STEP)
        self.assertFalse(transport.disconnecting)
        # The next check finds 5/6 of the bound of silence; the read comes first.
        self.clock.rightNow += STEP
        self.clock.callLater(0, proto.dataReceived, pong("srv-a", n))
        self.clock.advance(0)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.node.metrics.linksClosed["dead_peer"], 0)

    def test_fallBackWhenNoPong(self):
        """
        A peer taken for clustersync that sends traffic but answers no ping
        for the bound (an older clustersync, say) is taken for an existing
        server: C{no_pong} counted, then SYNC_STATE heartbeats, no more pings.
        """
        proto, transport = self.established("srv-a")
        for i in range(8):
            self.clock.advance(STEP)
            proto.dataReceived(connected("srv-a", f"a{i}"))
        self.assertEqual(self.node.metrics.liveness["no_pong"], 1)
        self.assertEqual(proto.kind, "existing")
        transport.clear()
        types = self.idle(proto, transport, 30)
        self.assertIn("SYNC_STATE", types)
        self.assertNotIn("X_PING", types)

    def test_extensionFromExistingServerRejected(self):
        """
        A peer not known to be clustersync that sends X_PING gets no answer
        (nothing but spec messages ever goes to it); the line is rejected.
        """
        self.node = makeNode("srv-b", self.clock)
        proto, transport = self.established("srv-a")
        self.assertEqual(proto.kind, "existing")
        proto.dataReceived(ping("srv-a", 1))
        self.assertEqual(self.written(transport), b"")
        self.assertEqual(self.node.metrics.rejectedInputs["unexpected_extension"], 1)
        self.assertFalse(proto.sendExtension(ping("srv-b", 1)))


class LegacyHeartbeatTests(_Liveness, unittest.TestCase):
    """The SYNC_STATE heartbeat to existing servers, bounded by size."""

    settings = {"legacyHeartbeatLimit": 2}

    def test_smallNodeResyncs(self):
        """At most C{legacy_heartbeat_limit} local sessions: idle re-sends."""
        proto, transport = self.established("srv-a")
        types = self.idle(proto, transport, 30)
        self.assertGreaterEqual(types.count("SYNC_STATE"), 5)
        self.assertNotIn("X_PING", types)

    def test_largeNodeDoesNot(self):
        """
        Above the limit, no SYNC_STATE heartbeat: keepalive and
        TCP_USER_TIMEOUT watch the link.
        """
        self.node.clientConnected("b2", 2, "dos")
        self.node.clientConnected("b3", 3, "tres")
        proto, transport = self.established("srv-a")
        self.assertEqual(self.idle(proto, transport, 30), [])
        self.assertEqual(proto.state, LinkState.ESTABLISHED)
