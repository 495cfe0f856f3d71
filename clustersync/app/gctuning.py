"""
The garbage collector's thresholds while a node runs (the C{gc_thresholds}
setting, see C{docs/configuration.md}).

CPython runs a collection of its youngest generation every 700 net
allocations of container objects, by default.  A node under load keeps many
young objects alive for a short while (every send waiting for its peer's
acknowledgement holds a L{Deferred}, its callback list and its queue entry),
so with that default the collector keeps walking them, promoting them, and
now and then walks the whole heap: 0.10-0.17 s of the sending node's
0.7-0.9 s in the relay benchmark (C{docs/benchmarks.md}).  A larger first threshold
lets most of them die young, before any collection sees them.

The thresholds are a property of the process, not of one node; several nodes
in one process (tests) share them: the last node started sets them, and the
values that were there before the first node started come back when the last
one stops.
"""

from __future__ import annotations

import gc

from twisted.application.service import Service
from twisted.logger import Logger

__all__ = ["GCThresholdsService"]


class _Holders:
    """
    The running L{GCThresholdsService}s of one process, in start order, and
    the thresholds found before the first of them started.
    """

    def __init__(self) -> None:
        self.running: list[GCThresholdsService] = []
        self.saved: tuple[int, ...] | None = None


_HOLDERS = _Holders()


class GCThresholdsService(Service):
    """
    Sets the collector's thresholds (L{gc.set_threshold}) while it runs.

    @ivar thresholds: the thresholds set at start (one to three positive
        integers, as L{gc.set_threshold} takes them).
    """

    name = "gc"
    _log = Logger()

    def __init__(self, thresholds, gcModule=gc, holders: _Holders | None = None) -> None:
        """
        @param thresholds: one to three positive integers.
        @param gcModule: the object whose C{get_threshold}/C{set_threshold}
            are used (L{gc}; tests pass a fake).
        @param holders: who else holds the thresholds (the process-wide
            record by default; tests pass their own).
        """
        self.thresholds = tuple(thresholds)
        self._gc = gcModule
        self._holders = _HOLDERS if holders is None else holders

    def startService(self) -> None:
        """Set the thresholds, remembering the process's if it is the first."""
        Service.startService(self)
        holders = self._holders
        before = tuple(self._gc.get_threshold())
        if not holders.running:
            holders.saved = before
        holders.running.append(self)
        self._gc.set_threshold(*self.thresholds)
        self._log.info(
            "garbage collector thresholds {thresholds} (were {before}; gc_thresholds)",
            thresholds=tuple(self._gc.get_threshold()), before=before)

    def stopService(self) -> None:
        """
        Give the thresholds back: to the most recently started node still
        running, or to what the process had before the first one started.
        """
        Service.stopService(self)
        holders = self._holders
        if self not in holders.running:
            return
        holders.running.remove(self)
        if holders.running:
            self._gc.set_threshold(*holders.running[-1].thresholds)
        elif holders.saved is not None:
            self._gc.set_threshold(*holders.saved)
            holders.saved = None
