"""
How big each benchmark is: the full sizes of C{make bench}, the small ones
of C{--quick}, and the message size of the relay runs.
"""

from __future__ import annotations

import attrs

__all__ = ["Sizes", "FULL", "QUICK", "LINE_SIZE"]


@attrs.frozen
class Sizes:
    """
    How big each benchmark is.

    @ivar relayCount: messages per saturated relay run (also the size of
        each run of the comparison with the reference code).
    @ivar relayRounds: alternating bare/clustersync rounds (medians reported).
    @ivar pacedRate: the fixed rate of the latency runs (msgs/s).
    @ivar pacedCount: messages per paced run.
    @ivar syncSessions: sessions in the SYNC_STATE apply/encode figures.
    @ivar memorySessions: remote sessions in the memory figure.
    @ivar codecDirect: DIRECT_MESSAGE lines in the codec comparison.
    @ivar codecSync: sessions in the codec comparison's SYNC_STATE.
    @ivar repeat: repetitions of each in-process timing (fastest kept).
    @ivar pacedRounds: rounds of the paced runs (medians reported).
    @ivar compareRounds: rounds of the comparison with the reference code
        (each round runs both trees' relay benchmark); 0 means
        C{relayRounds}.
    """

    relayCount: int
    relayRounds: int
    pacedRate: float
    pacedCount: int
    syncSessions: int
    memorySessions: int
    codecDirect: int
    codecSync: int
    repeat: int
    pacedRounds: int = 1
    compareRounds: int = 0


FULL = Sizes(150_000, 7, 20_000, 20_000, 100_000, 100_000, 20_000, 10_000, 7, 3)
QUICK = Sizes(20_000, 1, 10_000, 5_000, 10_000, 10_000, 2_000, 1_000, 3, compareRounds=2)

#: Message size (bytes per DIRECT_MESSAGE line) of the relay runs.
LINE_SIZE = 200
