"""
The fast part of the chaos suite (runs in C{make test}): in-process nodes
on loopback linked through a L{FaultProxy} that cuts, resets and
black-holes the link; dead-peer detection with a short bound; the slow-peer
cut of a link whose peer stops reading.  Every wait is bounded.
"""

from __future__ import annotations

from twisted.internet import reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest
from zope.interface import implementer

from clustersync.errors import PeerUnavailable
from clustersync.interfaces import IClusterListener

from tests.chaos.proxy import FaultProxy
from tests.support import Conditions, linkPorts, poll, startNode

#: Settings that keep reconnects and handshakes quick in these tests.
QUICK = dict(reconnectMaxDelay=0.5, handshakeTimeout=1.0, connectTimeout=2.0)




def sessionKeys(node) -> set[tuple[str, str]]:
    """Every C{(serverId, sessionId)} C{node} knows."""
    return {(s.serverId, s.sessionId) for s in node.state.allSessions()}


@implementer(IClusterListener)
class SessionEvents:
    """Records session events about some servers' sessions."""

    def __init__(self, servers) -> None:
        self.servers = set(servers)
        self.events: list[tuple] = []

    def peerConnected(self, peer) -> None:
        """Ignored."""

    def peerDisconnected(self, peer, reason) -> None:
        """Record the reason."""
        self.events.append(("peerDisconnected", peer.serverId, reason))

    def sessionAdded(self, session) -> None:
        """Record if it is about a watched server."""
        if session.serverId in self.servers:
            self.events.append(("added", session.serverId, session.sessionId))

    def sessionRemoved(self, session) -> None:
        """Record if it is about a watched server."""
        if session.serverId in self.servers:
            self.events.append(("removed", session.serverId, session.sessionId))

    def membershipChanged(self, session, canalId, joined) -> None:
        """Ignored."""


class _ProxiedPair:
    """
    A and B linked through a proxy (B dials the proxy, which forwards to
    A); C linked to both directly, watching for flicker.
    """

    timeout = 60
    settings: dict = {}

    @inlineCallbacks
    def setUp(self):
        """Start A, the proxy, B and C; wait for the mesh and one session each."""
        self.cond = Conditions(reactor)
        settings = {**QUICK, **self.settings}
        _, self.a, portA, self.dA = yield startNode(
            self, reactor, "srv-a", conditions=self.cond, **settings)
        self.proxy = FaultProxy(reactor, portA, "a-b")
        self.proxy.start()
        self.addCleanup(self.proxy.stop)
        _, self.b, portB, self.dB = yield startNode(
            self, reactor, "srv-b", linkPorts(self.proxy.port), conditions=self.cond, **settings)
        _, self.c, _, _ = yield startNode(
            self, reactor, "srv-c", linkPorts(portA, portB), conditions=self.cond, **settings)
        yield self.a.clientConnected("a1", 1, "ana")
        yield self.b.clientConnected("b1", 2, "bea")
        yield self.c.clientConnected("c1", 3, "cid")
        self.truth = {("srv-a", "a1"), ("srv-b", "b1"), ("srv-c", "c1")}
        yield self.cond.waitUntil(self.converged, what="initial mesh")
        self.watchC = SessionEvents({"srv-a", "srv-b"})
        self.c.addListener(self.watchC)

    def converged(self) -> bool:
        """Whether every node knows exactly the true sessions."""
        return all(sessionKeys(n) == self.truth for n in (self.a, self.b, self.c))

    @inlineCallbacks
    def breakAndHeal(self, fault):
        """
        Apply C{fault} to the A-B link; wait until A and B dropped each
        other; then change sessions on both while apart; wait for the
        reconnect and for every node to equal the truth.
        """
        fault()
        yield self.cond.waitUntil(
            lambda: self.a.linkFor("srv-b") is None and self.b.linkFor("srv-a") is None
            and ("srv-b", "b1") not in sessionKeys(self.a)
            and ("srv-a", "a1") not in sessionKeys(self.b),
            timeout=10, what="A and B dropped each other")
        yield self.a.clientDisconnected("a1")
        yield self.a.clientConnected("a2", 1, "ana")
        yield self.b.clientConnected("b2", 5, "eva")
        self.truth = {("srv-a", "a2"), ("srv-b", "b1"), ("srv-b", "b2"), ("srv-c", "c1")}
        yield self.cond.waitUntil(self.converged, timeout=10, what="convergence after the fault")

    def assertNoFlickerOnC(self) -> None:
        """
        C (not on the broken link) saw only the real changes of A's and
        B's sessions: never a removal and re-addition of an unchanged one.
        """
        self.assertEqual(sorted(self.watchC.events), [
            ("added", "srv-a", "a2"), ("added", "srv-b", "b2"), ("removed", "srv-a", "a1")])



class ProxiedPairTests(_ProxiedPair, unittest.TestCase):
    """Cut, reset and a short black hole of the A-B link."""

    @inlineCallbacks
    def test_cut(self):
        """
        A cut (FIN on both sides) drops the link on both ends; B redials,
        both re-sync in both directions (sessions changed while apart
        included), and C sees no flicker.
        """
        accepted = self.proxy.accepted
        yield self.breakAndHeal(self.proxy.cut)
        self.assertGreater(self.proxy.accepted, accepted)
        self.assertNoFlickerOnC()

    @inlineCallbacks
    def test_reset(self):
        """An RST on both sides heals the same way."""
        yield self.breakAndHeal(self.proxy.reset)
        self.assertNoFlickerOnC()

    @inlineCallbacks
    def test_shortBlackholeHealsWithoutCut(self):
        """
        A black hole shorter than the dead-peer bound is not detected: the
        link stays up, changes made meanwhile are held in the buffers and
        arrive in order after the heal; no session flickered anywhere.
        """
        watchB = SessionEvents({"srv-a"})
        self.b.addListener(watchB)
        linkB = self.b.linkFor("srv-a")
        self.proxy.blackhole()
        yield self.a.clientDisconnected("a1")
        yield self.a.clientConnected("a2", 1, "ana")
        yield self.a.joinChannel("a2", 4)
        yield task.deferLater(reactor, 0.5, lambda: None)  # the fault's duration
        self.assertIn(("srv-a", "a1"), sessionKeys(self.b))  # nothing went through
        self.proxy.heal()
        self.truth = {("srv-a", "a2"), ("srv-b", "b1"), ("srv-c", "c1")}
        yield self.cond.waitUntil(
            lambda: self.converged() and self.b.state.session("srv-a", "a2").canales == {4},
            timeout=10, what="convergence after the black hole")
        self.assertIs(self.b.linkFor("srv-a"), linkB)
        self.assertEqual(watchB.events, [("removed", "srv-a", "a1"), ("added", "srv-a", "a2")])


class DeadPeerTests(_ProxiedPair, unittest.TestCase):
    """
    With a 1.2 s dead-peer bound: a black hole (sockets open, the kernel
    still ACKing, nothing read or forwarded) is detected by the idle
    heartbeat on both ends within the bound, and heals after.
    """

    settings = dict(deadPeerTimeout=1.2)

    @inlineCallbacks
    def test_blackholeDetectedWithinBound(self):
        """
        Both ends cut the link as C{dead peer} within ~the bound after
        the black hole began (once both know the other heartbeats), drop
        each other's sessions and tell listeners; after the heal they
        reconnect and converge.
        """
        def keepsAlive(link):
            # A clustersync peer answered a ping, or a peer re-sent its SYNC_STATE.
            return link is not None and (link.pongsReceived or link.syncsReceived >= 2)

        yield poll(lambda: keepsAlive(self.a.linkFor("srv-b"))
                   and keepsAlive(self.b.linkFor("srv-a")),
                   timeout=5, what="heartbeats seen on both ends")
        watchA = SessionEvents({"srv-b"})
        self.a.addListener(watchA)
        started = reactor.seconds()
        self.proxy.blackhole()
        yield self.cond.waitUntil(
            lambda: self.a.linkFor("srv-b") is None and self.b.linkFor("srv-a") is None,
            timeout=5, what="dead peer detected on both ends")
        detected = reactor.seconds() - started
        self.assertLess(detected, 1.2 + 1.0)  # the bound, plus slack for a loaded CI machine
        self.assertGreaterEqual(self.a.metrics.linksClosed["dead_peer"], 1)
        self.assertGreaterEqual(self.b.metrics.linksClosed["dead_peer"], 1)
        self.assertNotIn(("srv-b", "b1"), sessionKeys(self.a))
        self.assertEqual(watchA.events[0], ("removed", "srv-b", "b1"))
        self.assertEqual(watchA.events[1][:2], ("peerDisconnected", "srv-b"))
        self.assertIn("dead peer", watchA.events[1][2])
        self.proxy.heal()
        yield self.cond.waitUntil(self.converged, timeout=10, what="convergence after the heal")
        self.assertNoFlickerOnCExceptReal()

    def assertNoFlickerOnCExceptReal(self) -> None:
        """C saw no event at all about A's and B's (unchanged) sessions."""
        self.assertEqual(self.watchC.events, [])


class SlowPeerTests(unittest.TestCase):
    """
    B stops reading (the proxy black-holes A's link to it) while A keeps
    writing: A's link is cut at its 256 KiB outbound bound, not grown
    without limit; sends written but never acknowledged and sends after
    the cut fail with L{PeerUnavailable}.
    """

    timeout = 60

    @inlineCallbacks
    def test_cutAtOutboundBound(self):
        """
        A's outbound buffer for B is reported while it grows, the link is
        cut as C{slow_peer} once it passes the bound, and after the heal
        B reconnects and re-syncs.
        """
        cond = Conditions(reactor)
        bound = 256 * 1024
        _, a, portA, _ = yield startNode(self, reactor, "srv-a", conditions=cond,
                                         maxOutboundBuffer=bound, **QUICK)
        proxy = FaultProxy(reactor, portA, "a-b")
        proxy.start()
        self.addCleanup(proxy.stop)
        _, b, _, _ = yield startNode(self, reactor, "srv-b", linkPorts(proxy.port),
                                     conditions=cond, **QUICK)
        yield b.clientConnected("b1", 2, "bea")
        yield cond.waitUntil(lambda: a.state.session("srv-b", "b1") is not None,
                             what="B's session on A")
        proxy.blackhole()
        chunk = "x" * (200 * 1024)
        seen = []
        failures = []
        confirmed = []
        sends = []

        def send():
            seen.append(a.outboundBuffers().get("srv-b", 0))
            d = a.broadcast(chunk)
            d.addCallbacks(confirmed.append,
                           lambda f: failures.append(f.trap(PeerUnavailable)))
            sends.append(d)

        loop = task.LoopingCall(send)
        loop.start(0.005)
        try:
            yield poll(lambda: a.metrics.linksClosed["slow_peer"] >= 1, timeout=30,
                       what="slow-peer cut")
        finally:
            loop.stop()
        self.assertLessEqual(max(seen), bound)
        self.assertGreater(max(seen), 0)
        yield cond.waitUntil(lambda: a.linkFor("srv-b") is None, what="link gone on A")
        # Nothing silent: every send either reached B's side (acknowledged
        # by its TCP stack, here the proxy's) or failed with PeerUnavailable,
        # including lines that were written but never acknowledged.
        self.assertTrue(all(d.called for d in sends))
        self.assertEqual(len(confirmed) + len(failures), len(sends))
        self.assertTrue(confirmed)
        self.assertLess(len(confirmed), a.metrics.messagesOut["BROADCAST"])
        proxy.heal()
        yield cond.waitUntil(lambda: a.state.session("srv-b", "b1") is not None,
                             timeout=15, what="B re-synced after the heal")
