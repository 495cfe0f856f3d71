"""
In-process counters of one node.

Plain lists and dictionaries, cheap on the hot path; exporters (the
status page, C{/metrics}) read them through L{Metrics.snapshot}.
"""

from __future__ import annotations

from collections import Counter

from clustersync.wire.codec import EXTENSION_TYPES, MESSAGE_TYPES

__all__ = ["Metrics", "WIRE_TYPES", "TYPE_INDEX"]

#: The wire types counted per type, in the order of L{Metrics.inCounts}
#: and L{Metrics.outCounts}.
WIRE_TYPES: tuple[str, ...] = (*MESSAGE_TYPES, *EXTENSION_TYPES)

#: Wire type -> its position in L{Metrics.inCounts} and L{Metrics.outCounts}.
TYPE_INDEX: dict[str, int] = {name: i for i, name in enumerate(WIRE_TYPES)}


class Metrics:
    """
    Counters of one node.

    @ivar inCounts: messages received (decoded) from peers, per wire type:
        a list indexed by L{TYPE_INDEX}, for the hot paths to increment (a
        list item is cheaper to increment than a C{dict} entry, and much
        cheaper than a L{Counter}'s).
    @ivar outCounts: lines written to peers, per wire type, likewise.
    @ivar rejectedInputs: reason -> inputs refused (bad lines, limits, ...).
    @ivar linksClosed: reason -> links closed by this node.
    @ivar handlerErrors: handler name -> exceptions raised by it.
    @ivar undeliverable: wire type -> forwarded messages that found no
        local session.
    @ivar liveness: event -> how often: C{own_stall} (a peer's silence
        turned out to be this node's own stall, and the peer was not
        cut), C{no_pong} (a peer taken for clustersync answered no X_PING),
        C{digest_mismatch} (a peer's digest of this node's sessions
        differed: a SYNC_STATE repaired it), C{digest_sent}.
    """

    def __init__(self) -> None:
        self.inCounts: list[int] = [0] * len(WIRE_TYPES)
        self.outCounts: list[int] = [0] * len(WIRE_TYPES)
        self.rejectedInputs: Counter[str] = Counter()
        self.linksClosed: Counter[str] = Counter()
        self.handlerErrors: Counter[str] = Counter()
        self.undeliverable: Counter[str] = Counter()
        self.liveness: Counter[str] = Counter()
        self.syncApplied = 0
        self.syncSessions = 0
        self.syncSeconds = 0.0

    @property
    def inByType(self) -> dict[str, int]:
        """Wire type -> messages received, every type (a copy of L{inCounts})."""
        return dict(zip(WIRE_TYPES, self.inCounts))

    @property
    def outByType(self) -> dict[str, int]:
        """Wire type -> lines written, every type (a copy of L{outCounts})."""
        return dict(zip(WIRE_TYPES, self.outCounts))

    @property
    def messagesIn(self) -> Counter[str]:
        """Wire type -> messages received, without the types never seen."""
        return Counter({k: v for k, v in zip(WIRE_TYPES, self.inCounts) if v})

    @property
    def messagesOut(self) -> Counter[str]:
        """Wire type -> lines written, without the types never sent."""
        return Counter({k: v for k, v in zip(WIRE_TYPES, self.outCounts) if v})

    def countOut(self, kind: str, n: int = 1) -> None:
        """Count C{n} lines of wire type C{kind} written to peers."""
        self.outCounts[TYPE_INDEX[kind]] += n

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
            "liveness": dict(self.liveness),
            "syncApplied": self.syncApplied,
            "syncSessions": self.syncSessions,
            "syncSeconds": self.syncSeconds,
        }
