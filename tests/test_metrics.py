"""
Tests for L{clustersync.cluster.metrics}: the per-type counters kept as lists for
the hot paths, and the views the exporters read.
"""

from twisted.trial import unittest

from clustersync.wire.codec import EXTENSION_TYPES, MESSAGE_TYPES
from clustersync.cluster.metrics import TYPE_INDEX, WIRE_TYPES, Metrics


class TypeIndexTests(unittest.SynchronousTestCase):
    """L{TYPE_INDEX} gives every wire type its own counter."""

    def test_everyWireTypeOnce(self):
        """
        Every message type of the spec and every extension type has a
        position, each a different one, within the counter lists.
        """
        self.assertEqual(set(WIRE_TYPES), set(MESSAGE_TYPES) | set(EXTENSION_TYPES))
        self.assertEqual(len(WIRE_TYPES), len(set(WIRE_TYPES)))
        self.assertEqual(sorted(TYPE_INDEX.values()), list(range(len(WIRE_TYPES))))
        metrics = Metrics()
        self.assertEqual(len(metrics.inCounts), len(WIRE_TYPES))
        self.assertEqual(len(metrics.outCounts), len(WIRE_TYPES))


class CounterViewTests(unittest.SynchronousTestCase):
    """The dict views of the per-type counter lists."""

    def test_countOut(self):
        """
        L{Metrics.countOut} adds to its type's counter only; the views
        show it under the type's name.
        """
        metrics = Metrics()
        metrics.countOut("BROADCAST")
        metrics.countOut("BROADCAST", 2)
        metrics.countOut("SYNC_STATE", 0)
        self.assertEqual(metrics.outCounts[TYPE_INDEX["BROADCAST"]], 3)
        self.assertEqual(sum(metrics.outCounts), 3)
        self.assertEqual(metrics.messagesOut, {"BROADCAST": 3})
        self.assertEqual(metrics.outByType["BROADCAST"], 3)
        self.assertEqual(metrics.outByType["SYNC_STATE"], 0)
        self.assertEqual(set(metrics.outByType), set(WIRE_TYPES))

    def test_countOutUnknownType(self):
        """A type that is not a wire type is a C{KeyError}, and nothing is counted."""
        metrics = Metrics()
        self.assertRaises(KeyError, metrics.countOut, "NOT_A_TYPE")
        self.assertEqual(sum(metrics.outCounts), 0)

    def test_inCounts(self):
        """
        A hot-path increment of L{Metrics.inCounts} shows in
        L{Metrics.messagesIn} (types never seen left out) and
        L{Metrics.inByType} (every type).
        """
        metrics = Metrics()
        metrics.inCounts[TYPE_INDEX["DIRECT_MESSAGE"]] += 2
        metrics.inCounts[TYPE_INDEX["X_RECEIVED"]] += 1
        self.assertEqual(metrics.messagesIn, {"DIRECT_MESSAGE": 2, "X_RECEIVED": 1})
        self.assertEqual(metrics.inByType["DIRECT_MESSAGE"], 2)
        self.assertEqual(metrics.inByType["HELLO"], 0)

    def test_viewsAreCopies(self):
        """Changing a view does not change the counters."""
        metrics = Metrics()
        metrics.inByType["HELLO"] = 5
        metrics.outByType["HELLO"] = 5
        metrics.messagesIn["HELLO"] += 5
        self.assertEqual(sum(metrics.inCounts) + sum(metrics.outCounts), 0)

    def test_snapshot(self):
        """The snapshot names the counted types, with what was counted."""
        metrics = Metrics()
        metrics.countOut("CLIENT_CONNECTED", 4)
        metrics.inCounts[TYPE_INDEX["SYNC_STATE"]] += 1
        metrics.rejected("json")
        snapshot = metrics.snapshot()
        self.assertEqual(snapshot["messagesOut"], {"CLIENT_CONNECTED": 4})
        self.assertEqual(snapshot["messagesIn"], {"SYNC_STATE": 1})
        self.assertEqual(snapshot["rejectedInputs"], {"json": 1})
