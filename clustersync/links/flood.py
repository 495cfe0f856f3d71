"""
The flood guard of a peer link: a token bucket of lines (see
C{docs/security.md}).
"""

from __future__ import annotations

__all__ = ["FloodGuard"]


class FloodGuard:
    """
    A token bucket of C{burst} lines refilled at C{rate} lines per second
    of C{clock} time.
    """

    def __init__(self, rate: float, burst: int, clock) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._refilled: float | None = None

    def admit(self, count: int) -> bool:
        """
        Take C{count} lines from the bucket.

        @return: C{False} if that took it below empty (the link should be
            closed).
        """
        now = self._clock.seconds()
        if self._refilled is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
        self._tokens -= count
        return self._tokens >= 0
