"""
Tests for L{clustersync.cluster.gossip}: nodes that each know one seed form
a full mesh, on loopback with real sockets; a learned node that stays
unreachable is forgotten (on a L{Clock}).
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial import unittest

from clustersync.wire.codec import XPeerAddress, XPeers, XPeersPayload

from tests.linksupport import makeNode
from tests.support import Conditions, linkPorts, startNode


class SeedJoinTests(unittest.TestCase):
    """Five nodes, each started with only the first as its peer."""

    timeout = 60

    @inlineCallbacks
    def test_fullMeshFromOneSeed(self):
        """
        Every node links to the four others within a few seconds, through
        gossip only; a sixth node started later with the same seed is
        linked by all five; no pair has two links.
        """
        cond = Conditions(reactor)
        nodes = []
        _, seed, seedPort, _ = yield startNode(self, reactor, "srv-1", conditions=cond,
                                               gossip=True)
        nodes.append(seed)
        for i in range(2, 6):
            _, node, _, _ = yield startNode(self, reactor, f"srv-{i}", linkPorts(seedPort),
                                            conditions=cond, gossip=True)
            nodes.append(node)

        def meshed():
            return all(len(n._links) == len(nodes) - 1 for n in nodes)

        yield cond.waitUntil(meshed, timeout=20, what="a full mesh of five")
        _, late, _, _ = yield startNode(self, reactor, "srv-6", linkPorts(seedPort),
                                        conditions=cond, gossip=True)
        nodes.append(late)
        yield cond.waitUntil(meshed, timeout=20, what="the sixth node linked by all")
        for node in nodes:
            self.assertEqual(sorted(node._links), sorted(n.serverId for n in nodes
                                                         if n is not node))
        self.assertGreater(sum(n.metrics.liveness["gossip_dialed"] for n in nodes), 0)


class SeedLink:
    """The link of the clustersync peer that tells (what gossip reads of it)."""

    serverId = "srv-a"
    clustersync = True


class ForgetTests(unittest.TestCase):
    """A learned node that never links is forgotten after gossip_forget_after."""

    def test_unreachableForgotten(self):
        """
        Told of srv-x at an address, the node dials it; srv-x never links,
        so after the bound the node stops dialing it and forgets it.
        """
        clock = Clock()
        node = makeNode("srv-b", clock, gossip=True, gossipForgetAfter=40.0)
        dialed, undialed = [], []
        node.gossip.dial, node.gossip.undial = dialed.append, undialed.append

        told = XPeers("srv-a", XPeersPayload([XPeerAddress("srv-a", "127.0.0.1:7001"),
                                              XPeerAddress("srv-x", "127.0.0.1:7009")]))
        node.gossip.peersReceived(SeedLink(), told)
        self.assertEqual(dialed, ["127.0.0.1:7001", "127.0.0.1:7009"])
        clock.pump([10.0] * 3)
        self.assertEqual(undialed, [])
        clock.pump([10.0] * 2)
        self.assertEqual(sorted(undialed), ["127.0.0.1:7001", "127.0.0.1:7009"])
        self.assertEqual(node.gossip.learned, {})

    def test_refusedWhereNotAccepted(self):
        """
        A node on a plain allow-list dials a gossiped node only if the list
        names it at that host; others are refused (counted).
        """
        node = makeNode("srv-b", Clock(), gossip=True, openLinks=False,
                        plainPeers=["srv-a@127.0.0.1"])
        dialed = []
        node.gossip.dial = dialed.append

        told = XPeers("srv-a", XPeersPayload([XPeerAddress("srv-a", "127.0.0.1:7001"),
                                              XPeerAddress("srv-x", "127.0.0.1:7009")]))
        node.gossip.peersReceived(SeedLink(), told)
        self.assertEqual(dialed, ["127.0.0.1:7001"])
        self.assertEqual(node.metrics.rejectedInputs["gossip_refused"], 1)
