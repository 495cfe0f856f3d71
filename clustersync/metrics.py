"""
In-process counters of one node.

Plain dictionaries, cheap on the hot path; exporters (the status page,
C{/metrics}) read them through L{Metrics.snapshot}.
"""

from __future__ import annotations

from collections import Counter

__all__ = ["Metrics"]


class Metrics:
    """
    Counters of one node.

    @ivar messagesIn: wire type -> messages received (decoded) from peers.
    @ivar messagesOut: wire type -> lines written to peers.
    @ivar rejectedInputs: reason -> inputs refused (bad lines, limits, ...).
    @ivar linksClosed: reason -> links closed by this node.
    @ivar handlerErrors: handler name -> exceptions raised by it.
    @ivar undeliverable: wire type -> forwarded messages that found no
        local session.
    """

    def __init__(self) -> None:
        self.messagesIn: Counter[str] = Counter()
        self.messagesOut: Counter[str] = Counter()
        self.rejectedInputs: Counter[str] = Counter()
        self.linksClosed: Counter[str] = Counter()
        self.handlerErrors: Counter[str] = Counter()
        self.undeliverable: Counter[str] = Counter()
        self.syncApplied = 0
        self.syncSessions = 0
        self.syncSeconds = 0.0

    def rejected(self, reason: str) -> None:
        """Count one refused input."""
        self.rejectedInputs[reason] += 1

    def linkClosed(self, reason: str) -> None:
        """Count one link this node closed."""
        self.linksClosed[reason] += 1

    def snapshot(self) -> dict:
        """A JSON-friendly copy of every counter."""
        return {
            "messagesIn": dict(self.messagesIn),
            "messagesOut": dict(self.messagesOut),
            "rejectedInputs": dict(self.rejectedInputs),
            "linksClosed": dict(self.linksClosed),
            "handlerErrors": dict(self.handlerErrors),
            "undeliverable": dict(self.undeliverable),
            "syncApplied": self.syncApplied,
            "syncSessions": self.syncSessions,
            "syncSeconds": self.syncSeconds,
        }
