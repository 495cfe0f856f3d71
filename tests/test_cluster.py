"""
A real three-node cluster on loopback (ephemeral ports, one reactor):
state sync, the four forward types, link loss cleanup, reconnect and
re-sync, and the simultaneous-dial tie-break.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from clustersync.errors import UnknownUser

from tests.support import Conditions, linkPorts, startNode


def peerIds(node) -> set[str]:
    """The serverIds of C{node}'s active links."""
    return {p for p in node._links}


class ThreeNodeClusterTests(unittest.TestCase):
    """
    Three nodes A, B, C; B dials A, C dials A and B (a full mesh).
    """

    timeout = 60

    @inlineCallbacks
    def setUp(self):
        self.cond = Conditions(reactor)
        _, self.a, self.portA, self.dA = yield startNode(self, reactor, "srv-a", conditions=self.cond)
        _, self.b, self.portB, self.dB = yield startNode(
            self, reactor, "srv-b", linkPorts(self.portA), conditions=self.cond)
        self.serviceC, self.c, self.portC, self.dC = yield startNode(
            self, reactor, "srv-c", linkPorts(self.portA, self.portB), conditions=self.cond)
        yield self.cond.waitUntil(self.meshed, what="full mesh")

    def meshed(self) -> bool:
        """Whether every node has an active link to both others."""
        return (
            peerIds(self.a) == {"srv-b", "srv-c"}
            and peerIds(self.b) == {"srv-a", "srv-c"}
            and peerIds(self.c) == {"srv-a", "srv-b"}
        )

    def sessionIds(self, node) -> set[tuple[str, str]]:
        """Every (serverId, sessionId) C{node} knows."""
        return {(s.serverId, s.sessionId) for s in node.state.allSessions()}

    @inlineCallbacks
    def test_sessionVisibleEverywhere(self):
        """
        A session added on A, with its channels, is known on B and C,
        attributed to srv-a; a JOIN, a LEAVE and the disconnect follow it.
        """
        yield self.a.clientConnected("s1", 12, "carlos", "10.0.0.1", [3, 8])
        expected = {("srv-a", "s1")}
        yield self.cond.waitUntil(
            lambda: self.sessionIds(self.b) == expected and self.sessionIds(self.c) == expected)
        self.assertEqual(self.c.state.session("srv-a", "s1").canales, {3, 8})
        yield self.a.joinChannel("s1", 9)
        yield self.a.leaveChannel("s1", 3)
        yield self.cond.waitUntil(
            lambda: self.b.state.session("srv-a", "s1").canales == {8, 9}
            and self.c.state.session("srv-a", "s1").canales == {8, 9})
        self.assertEqual({s.sessionId for s in (yield self.c.channelMembers(9))}, {"s1"})
        yield self.a.clientDisconnected("s1")
        yield self.cond.waitUntil(
            lambda: not self.sessionIds(self.b) and not self.sessionIds(self.c))

    @inlineCallbacks
    def test_forwardsReachOnlyTheRightServers(self):
        """
        DIRECT, CHANNEL, SESSION and BROADCAST messages go to exactly the
        servers hosting their target, and are delivered as the raw bytes sent.
        """
        yield self.b.clientConnected("sb", 42, "ana", None, [3])
        yield self.c.clientConnected("sc", 7, "luis", None, [])
        yield self.cond.waitUntil(
            lambda: len(list(self.a.state.allSessions())) == 2, what="A sees both")

        d = yield self.a.sendToUser(42, {"command": "EVENT", "payload": {"contenido": "hola"}})
        self.assertEqual((d.local, d.servers), (0, ("srv-b",)))
        yield self.cond.waitUntil(lambda: self.dB.delivered)
        self.assertEqual(
            self.dB.delivered,
            [(["sb"], b'{"command":"EVENT","payload":{"contenido":"hola"}}', "DIRECT_MESSAGE", "srv-a")])

        d = yield self.a.sendToChannel(3, "canal")
        self.assertEqual(d.servers, ("srv-b",))
        d = yield self.a.sendToSession("sc", "sesion")
        self.assertEqual(d.servers, ("srv-c",))
        d = yield self.a.broadcast("todos")
        self.assertEqual(d.servers, ("srv-b", "srv-c"))
        yield self.cond.waitUntil(lambda: len(self.dB.delivered) == 3 and len(self.dC.delivered) == 2)
        self.assertEqual([x[2] for x in self.dB.delivered],
                         ["DIRECT_MESSAGE", "CHANNEL_MESSAGE", "BROADCAST"])
        self.assertEqual([x[2] for x in self.dC.delivered], ["SESSION_MESSAGE", "BROADCAST"])
        self.assertEqual(self.dA.delivered, [])
        yield self.assertFailure(self.a.sendToUser(999, "x"), UnknownUser)

    @inlineCallbacks
    def test_linkLossAndResync(self):
        """
        When C stops, A and B drop its sessions; when C comes back on the
        same port, its sessions are re-synced everywhere.
        """
        yield self.c.clientConnected("sc", 7, "luis", None, [5])
        yield self.cond.waitUntil(
            lambda: ("srv-c", "sc") in self.sessionIds(self.a) and ("srv-c", "sc") in self.sessionIds(self.b))
        yield self.serviceC.stopService()
        yield self.cond.waitUntil(
            lambda: not self.sessionIds(self.a) and not self.sessionIds(self.b)
            and "srv-c" not in peerIds(self.a) and "srv-c" not in peerIds(self.b),
            what="C's sessions dropped")
        yield self.assertFailure(self.a.sendToUser(7, "x"), UnknownUser)
        # C restarts on the same port; A and B never dialed C (C dialed
        # them), so C's own reconnect brings the links back.
        _, c2, _, _ = yield startNode(
            self, reactor, "srv-c", linkPorts(self.portA, self.portB), conditions=self.cond,
            listen=f"tcp:{self.portC}:interface=127.0.0.1")
        yield c2.clientConnected("sc2", 7, "luis", None, [])
        yield self.cond.waitUntil(
            lambda: ("srv-c", "sc2") in self.sessionIds(self.a)
            and ("srv-c", "sc2") in self.sessionIds(self.b), what="C re-synced")


class TieBreakTests(unittest.TestCase):
    """
    Two nodes that dial each other at once keep exactly one link, the same
    TCP connection on both sides, and lose no state.
    """

    timeout = 30

    @inlineCallbacks
    def test_simultaneousDial(self):
        """
        A and B each dial the other; both end with one link, to each other,
        over the same connection (the one srv-a dialed), and a session of
        each is known on the other.
        """
        cond = Conditions(reactor)
        sa, a, portA, _ = yield startNode(self, reactor, "srv-a", conditions=cond)
        sb, b, portB, _ = yield startNode(self, reactor, "srv-b", conditions=cond)
        yield a.clientConnected("sa", 1, "uno")
        yield b.clientConnected("sb", 2, "dos")
        sa.getServiceNamed("peer-dial").addPeer(f"127.0.0.1:{portB}")
        sb.getServiceNamed("peer-dial").addPeer(f"127.0.0.1:{portA}")
        yield cond.waitUntil(
            lambda: b.state.session("srv-a", "sa") is not None
            and a.state.session("srv-b", "sb") is not None
            and len(a._openLinks) == 1 and len(b._openLinks) == 1,
            what="one link each, state exchanged")
        (linkA,) = a._openLinks
        (linkB,) = b._openLinks
        self.assertEqual((linkA.direction, linkB.direction), ("outbound", "inbound"))
        self.assertEqual(linkA.transport.getHost().port, linkB.transport.getPeer().port)
        self.assertTrue(a.isActive(linkA) and b.isActive(linkB))
