"""
Tests for L{clustersync.cluster.registry.LinkRegistry}: which of two links
to a peer is kept, how the loser is closed, and the bookkeeping of open
connections.
"""

from __future__ import annotations

from twisted.trial import unittest

from clustersync.cluster.registry import LinkChoice, LinkRegistry

from tests.nodefakes import FakeLink


class ElectTests(unittest.TestCase):
    """L{LinkRegistry.elect} and L{LinkRegistry.retire}."""

    def setUp(self) -> None:
        """An empty registry."""
        self.registry = LinkRegistry()

    def test_inboundAndOutbound(self) -> None:
        """
        Between an inbound and an outbound link, the one dialed by the
        smaller serverId wins, whichever came first.
        """
        inbound, outbound = FakeLink("srv-m", "inbound"), FakeLink("srv-m", "outbound")
        for own, kept in (("srv-a", outbound), ("srv-z", inbound)):
            for current, new in ((inbound, outbound), (outbound, inbound)):
                choice = self.registry.elect(current, new, own, 100.0, 30.0)
                self.assertIs(choice.winner, kept)
                self.assertFalse(choice.stale)

    def test_sameDirection(self) -> None:
        """Between two links of the same direction, the current one stays."""
        current, new = FakeLink("srv-m"), FakeLink("srv-m")
        self.assertEqual(self.registry.elect(current, new, "srv-a", 100.0, 30.0),
                         LinkChoice(current, new, False))

    def test_suspectLoses(self) -> None:
        """
        A current link whose peer heartbeats but has been silent for 2/3 of
        the dead-peer timeout loses to the new one; the loser is aborted
        with a reason naming the silence.
        """
        current, new = FakeLink("srv-m", "outbound"), FakeLink("srv-m", "outbound")
        current.syncsReceived, current.lastReceived = 2, 70.0
        self.assertFalse(self.registry.elect(current, new, "srv-a", 89.0, 30.0).stale)
        choice = self.registry.elect(current, new, "srv-a", 90.0, 30.0)
        self.assertEqual(choice, LinkChoice(new, current, True, 20.0))
        aborted = []
        current.close = lambda reason, counter, abort=False: aborted.append((reason, counter, abort))
        self.registry.retire(choice)
        self.assertTrue(current.duplicate)
        self.assertEqual(aborted, [("replaced by a new outbound link to srv-m: the old one was "
                                    "silent for 20.0s", "dead_peer", True)])

    def test_retireDuplicate(self) -> None:
        """The loser of a tie-break is marked duplicate and closed, naming the kept one."""
        current, new = FakeLink("srv-m"), FakeLink("srv-m")
        self.registry.retire(self.registry.elect(current, new, "srv-a", 0.0, 30.0))
        self.assertEqual((current.duplicate, new.duplicate), (False, True))
        self.assertEqual(new.closed, "duplicate link to srv-m: keeping the inbound one")


class BookkeepingTests(unittest.TestCase):
    """L{LinkRegistry.closed} and L{LinkRegistry.closeAll}."""

    def test_closedSaysWhetherActive(self) -> None:
        """
        Only the peer's active link is forgotten as such; a connection that
        never became active is just no longer open.
        """
        registry = LinkRegistry()
        active, other = FakeLink("srv-m"), FakeLink("srv-m")
        for link in (active, other):
            registry.opened(link)
        registry.install(active)
        self.assertFalse(registry.closed(other))
        self.assertIs(registry.linkFor("srv-m"), active)
        self.assertTrue(registry.closed(active))
        self.assertIsNone(registry.linkFor("srv-m"))
        self.assertEqual(registry.open, set())

    def test_closeAllWaits(self) -> None:
        """
        L{LinkRegistry.closeAll} closes every connection and fires once the
        last one is lost (at once when none is open).
        """
        registry = LinkRegistry()
        self.assertIsNone(self.successResultOf(registry.closeAll("stop")))
        links = [FakeLink("srv-m"), FakeLink("srv-n")]
        for link in links:
            registry.opened(link)
        d = registry.closeAll("stop")
        self.assertEqual([link.closed for link in links], ["stop", "stop"])
        registry.closed(links[0])
        self.assertNoResult(d)
        registry.closed(links[1])
        self.assertIsNone(self.successResultOf(d))
