"""
Tests for L{clustersync.app.gctuning}: the node's garbage-collector thresholds
are set while it runs and given back when it stops.
"""

from __future__ import annotations

import gc

from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from clustersync.app.config import DEFAULT_GC_THRESHOLDS, NodeConfig
from clustersync.app.gctuning import GCThresholdsService, _Holders
from clustersync.app.service import makeNodeService


class FakeGC:
    """
    Records C{set_threshold} calls, with C{gc}'s semantics: values not given
    keep their current value.
    """

    def __init__(self, thresholds=(700, 10, 10)) -> None:
        self.thresholds = tuple(thresholds)
        self.calls: list[tuple[int, ...]] = []

    def get_threshold(self) -> tuple[int, ...]:
        """The current thresholds."""
        return self.thresholds

    def set_threshold(self, *values: int) -> None:
        """Set the first C{len(values)} thresholds."""
        self.calls.append(values)
        self.thresholds = tuple(values) + self.thresholds[len(values):]


class GCThresholdsServiceTests(unittest.SynchronousTestCase):
    """Set on start, given back on stop, shared by every node of a process."""

    def setUp(self) -> None:
        self.gc = FakeGC()
        self.holders = _Holders()

    def service(self, thresholds) -> GCThresholdsService:
        """A service setting C{thresholds} on L{FakeGC}."""
        return GCThresholdsService(thresholds, self.gc, self.holders)

    def test_setWhileRunning(self):
        """Starting sets the thresholds; stopping restores the previous ones."""
        service = self.service((50_000, 10, 10))
        self.gc.thresholds = (900, 11, 12)
        service.startService()
        self.assertEqual(self.gc.thresholds, (50_000, 10, 10))
        self.assertTrue(service.running)
        service.stopService()
        self.assertEqual(self.gc.thresholds, (900, 11, 12))
        self.assertFalse(service.running)

    def test_partialThresholds(self):
        """One value sets only the first threshold, as L{gc.set_threshold} does."""
        service = self.service((20_000,))
        service.startService()
        self.assertEqual(self.gc.thresholds, (20_000, 10, 10))
        service.stopService()
        self.assertEqual(self.gc.thresholds, (700, 10, 10))

    def test_twoNodesStopInStartOrder(self):
        """
        The last node started sets the thresholds; when the first one stops
        the second one's stay; when both stopped, the process's come back.
        """
        first, second = self.service((10_000, 10, 10)), self.service((30_000, 5, 5))
        first.startService()
        second.startService()
        self.assertEqual(self.gc.thresholds, (30_000, 5, 5))
        first.stopService()
        self.assertEqual(self.gc.thresholds, (30_000, 5, 5))
        second.stopService()
        self.assertEqual(self.gc.thresholds, (700, 10, 10))
        self.assertEqual(self.holders.running, [])

    def test_twoNodesStopInReverseOrder(self):
        """Stopping the last node started gives the thresholds to the other."""
        first, second = self.service((10_000, 10, 10)), self.service((30_000, 5, 5))
        first.startService()
        second.startService()
        second.stopService()
        self.assertEqual(self.gc.thresholds, (10_000, 10, 10))
        first.stopService()
        self.assertEqual(self.gc.thresholds, (700, 10, 10))

    def test_startIsLogged(self):
        """Starting logs the thresholds set and those they replace."""
        from twisted.logger import globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.gc.thresholds = (900, 11, 12)
        service = self.service((50_000,))
        service.startService()
        self.addCleanup(service.stopService)
        [event] = [e for e in events if e.get("log_namespace", "").endswith("GCThresholdsService")]
        self.assertEqual((event["thresholds"], event["before"]), ((50_000, 11, 12), (900, 11, 12)))

    def test_stopWithoutStart(self):
        """Stopping a service that never started changes nothing."""
        self.gc.thresholds = (900, 11, 12)
        self.service((50_000, 10, 10)).stopService()
        self.assertEqual(self.gc.calls, [])
        self.assertEqual(self.gc.thresholds, (900, 11, 12))

    def test_restartTakesTheProcessValuesAgain(self):
        """
        After every node stopped, the next start remembers the thresholds
        the process has then (changed in between by someone else).
        """
        service = self.service((50_000, 10, 10))
        service.startService()
        service.stopService()
        self.gc.thresholds = (1234, 5, 6)
        service.startService()
        service.stopService()
        self.assertEqual(self.gc.thresholds, (1234, 5, 6))

    def test_realCollector(self):
        """On the real L{gc} module the thresholds are set, then restored."""
        before = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *before)
        service = GCThresholdsService((before[0] + 4321, 13, 14), holders=_Holders())
        service.startService()
        self.assertEqual(gc.get_threshold(), (before[0] + 4321, 13, 14))
        service.stopService()
        self.assertEqual(gc.get_threshold(), before)


class NodeServiceAssemblyTests(unittest.SynchronousTestCase):
    """L{makeNodeService} holds the C{gc} service as its configuration says."""

    def config(self, **settings) -> NodeConfig:
        """A node config without gateway, web page or listener."""
        return NodeConfig(serverId="gc-test", listen=None, clients=None, web=None, **settings)

    def test_defaultThresholds(self):
        """
        By default the node's first service is C{gc}, with the default
        thresholds (so that they are set before any link starts).
        """
        top = makeNodeService(self.config(), MemoryReactorClock())
        service = top.getServiceNamed("gc")
        self.assertEqual(service.thresholds, DEFAULT_GC_THRESHOLDS)
        self.assertIs(list(top)[0], service)

    def test_configuredThresholds(self):
        """The configured thresholds are the service's."""
        top = makeNodeService(self.config(gcThresholds=(20_000, 5)), MemoryReactorClock())
        self.assertEqual(top.getServiceNamed("gc").thresholds, (20_000, 5))

    def test_noneLeavesTheProcessAlone(self):
        """With C{gc_thresholds = "none"} the node has no C{gc} service."""
        top = makeNodeService(self.config(gcThresholds=None), MemoryReactorClock())
        self.assertNotIn("gc", [s.name for s in top])
