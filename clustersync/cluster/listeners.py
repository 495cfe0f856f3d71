"""
The node's L{IClusterListener}s, and how they are told about peers and
state changes: each one in turn, a raising listener logged and skipped.
"""

from __future__ import annotations

from twisted.logger import Logger

from clustersync.state.cluster import ADDED, JOINED, REMOVED, Change

__all__ = ["Listeners"]


class Listeners:
    """The registered L{IClusterListener}s, in registration order."""

    _log = Logger()

    def __init__(self, digests=None) -> None:
        """
        @param digests: the node's L{clustersync.state.digest.Digests}, fed
            every change before the listeners hear of it (or C{None}).
        """
        self._listeners: list = []
        self.digests = digests

    def add(self, listener) -> None:
        """Register an L{IClusterListener}."""
        self._listeners.append(listener)

    def remove(self, listener) -> None:
        """Unregister an L{IClusterListener} (nothing if it is not registered)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def notify(self, method: str, *args) -> None:
        """Call C{method(*args)} of every listener; log what one raises."""
        for listener in list(self._listeners):
            try:
                getattr(listener, method)(*args)
            except Exception:
                self._log.failure("listener {listener!r} failed in {method}",
                                  listener=listener, method=method)

    def notifyChanges(self, changes: list[Change]) -> None:
        """
        Tell every listener about each of the state's C{changes}, in order
        (and the node's digests first).
        """
        if self.digests is not None:
            self.digests.update(changes)
        if not self._listeners:
            return
        for change in changes:
            if change.kind == ADDED:
                self.notify("sessionAdded", change.session)
            elif change.kind == REMOVED:
                self.notify("sessionRemoved", change.session)
            else:
                self.notify(
                    "membershipChanged", change.session, change.canalId, change.kind == JOINED
                )
