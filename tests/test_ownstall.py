"""
Liveness on a real reactor: a node whose reactor is held for longer than
the dead-peer bound (as a huge SYNC_STATE once held it) does not cut its
healthy peers as dead when it comes back (issue: "liveness that never
blames a peer for this node's own stall").
"""

from __future__ import annotations

import time

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from tests.support import Conditions, linkPorts, poll, startNode


class OwnStallTests(unittest.TestCase):
    """Two clustersync nodes on loopback with a 1.2 s dead-peer bound."""

    timeout = 30

    @inlineCallbacks
    def test_stallDoesNotCutPeer(self):
        """
        Both nodes are linked and pinging; the reactor is then held for 3 s
        (2.5x the bound: this is the stall under test, not a wait).  After
        it, the link between them is the same one, no node counted a dead
        peer, each counted its own stall, and pongs flow again.
        """
        cond = Conditions(reactor)
        _, a, portA, _ = yield startNode(self, reactor, "srv-a", conditions=cond,
                                         deadPeerTimeout=1.2)
        _, b, _, _ = yield startNode(self, reactor, "srv-b", linkPorts(portA), conditions=cond,
                                     deadPeerTimeout=1.2)
        yield cond.waitUntil(lambda: a.linkFor("srv-b") and b.linkFor("srv-a"), what="linked")
        linkA, linkB = a.linkFor("srv-b"), b.linkFor("srv-a")
        yield poll(lambda: linkA.pongsReceived and linkB.pongsReceived, 5, "pongs both ways")
        stalled = []

        def stall():
            time.sleep(3.0)
            stalled.append((linkA.pongsReceived, linkB.pongsReceived))

        reactor.callLater(0, stall)
        yield poll(lambda: stalled, 10, "the stall")
        before = stalled[0]
        yield poll(lambda: linkA.pongsReceived > before[0] + 2
                   and linkB.pongsReceived > before[1] + 2, 5, "pongs after the stall")
        self.assertIs(a.linkFor("srv-b"), linkA)
        self.assertIs(b.linkFor("srv-a"), linkB)
        self.assertEqual(a.metrics.linksClosed["dead_peer"] + b.metrics.linksClosed["dead_peer"], 0)
        self.assertGreaterEqual(a.metrics.liveness["own_stall"], 1)
        self.assertGreaterEqual(b.metrics.liveness["own_stall"], 1)
