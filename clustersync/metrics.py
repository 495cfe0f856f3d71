"""
In-process counters of one node.

Plain dictionaries, cheap on the hot path; exporters (the status page,
C{/metrics}) read them through L{Metrics.snapshot}.
"""

from __future__ import annotations

from collections import Counter

from clustersync.codec import EXTENSION_TYPES, MESSAGE_TYPES

__all__ = ["Metrics"]


class Metrics:
    """
    Counters of one node.

    @ivar inByType: wire type -> messages received (decoded) from peers;
        a plain C{dict} holding every wire type, for the hot path to
        increment (a L{Counter}, a C{dict} subclass, costs about four times
        as much per increment).
    @ivar outByType: wire type -> lines written to peers, likewise.
    @ivar rejectedInputs: reason -> inputs refused (bad lines, limits, ...).
    @ivar linksClosed: reason -> links closed by this node.
    @ivar handlerErrors: handler name -> exceptions raised by it.
    @ivar undeliverable: wire type -> forwarded messages that found no
        local session.
    """

    def __init__(self) -> None:
        self.inByType: dict[str, int] = dict.fromkeys((*MESSAGE_TYPES, *EXTENSION_TYPES), 0)
        self.outByType: dict[str, int] = dict.fromkeys((*MESSAGE_TYPES, *EXTENSION_TYPES), 0)
        self.rejectedInputs: Counter[str] = Counter()
        self.linksClosed: Counter[str] = Counter()
        self.handlerErrors: Counter[str] = Counter()
        self.undeliverable: Counter[str] = Counter()
        self.syncApplied = 0
        self.syncSessions = 0
        self.syncSeconds = 0.0

    @property
    def messagesIn(self) -> Counter[str]:
        """A copy of L{inByType} without the types never seen."""
        return Counter({k: v for k, v in self.inByType.items() if v})

    @property
    def messagesOut(self) -> Counter[str]:
        """A copy of L{outByType} without the types never sent."""
        return Counter({k: v for k, v in self.outByType.items() if v})

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
