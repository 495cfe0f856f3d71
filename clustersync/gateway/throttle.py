"""
Login throttling: failed logins are slowed per user name and per source
address, with an exponential delay that is capped.

Every attempt that is let through counts as a failure at once (and is
forgiven if it succeeds), so attempts made in parallel on many connections
are throttled as if they came one after another.  Names are counted
whether or not such an account exists, so the throttle does not tell
names apart either.  Both tables are bounded: entries quiet for longer than
ten times the longest delay are forgotten, and past C{maxEntries} the oldest goes.
"""

from __future__ import annotations

from collections import OrderedDict

import attrs

__all__ = ["LoginThrottle", "Penalty"]


@attrs.define
class Penalty:
    """
    The failures counted for one user name or one address.

    @ivar failures: consecutive failed (or still unfinished) attempts.
    @ivar until: when the next attempt may start (clock seconds).
    """

    failures: int = 0
    until: float = 0.0


class _Table:
    """One bounded key -> L{Penalty} table, oldest change first."""

    def __init__(self, free: int, maxEntries: int) -> None:
        self.free = free
        self.maxEntries = maxEntries
        self.entries: OrderedDict = OrderedDict()

    def prune(self, now: float, forget: float) -> None:
        """Drop the entries quiet for C{forget} seconds after their window."""
        entries = self.entries
        while entries:
            key, penalty = next(iter(entries.items()))
            if penalty.until + forget > now and len(entries) <= self.maxEntries:
                break
            del entries[key]


class LoginThrottle:
    """
    Decides whether a login attempt may be checked now.

    @ivar clock: an L{IReactorTime}.
    @ivar baseDelay: seconds of the first delay (after the free failures).
    @ivar maxDelay: the longest delay between two attempts.
    """

    def __init__(self, clock, baseDelay: float = 0.5, maxDelay: float = 30.0,
                 freePerUser: int = 3, freePerAddress: int = 10,
                 maxEntries: int = 100_000) -> None:
        self.clock = clock
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self._forget = 10 * maxDelay
        self._users = _Table(freePerUser, maxEntries)
        self._addresses = _Table(freePerAddress, maxEntries)

    def delayAfter(self, failures: int, free: int) -> float:
        """Seconds to wait after C{failures} consecutive failures."""
        if failures <= free:
            return 0.0
        return min(self.maxDelay, self.baseDelay * 2 ** min(failures - free - 1, 64))

    def admit(self, usuario: str, address: str | None) -> float:
        """
        Ask to check one attempt for C{usuario} from C{address}.

        @return: C{0.0} if it may be checked now (it is counted as a
            failure until L{succeeded}); otherwise the seconds to wait, and
            nothing is counted.
        """
        now = self.clock.seconds()
        pairs = [(self._users, usuario)]
        if address is not None:
            pairs.append((self._addresses, address))
        wait = 0.0
        for table, key in pairs:
            table.prune(now, self._forget)
            penalty = table.entries.get(key)
            if penalty is not None:
                wait = max(wait, penalty.until - now)
        if wait > 0:
            return wait
        for table, key in pairs:
            penalty = table.entries.pop(key, None) or Penalty()
            penalty.failures += 1
            penalty.until = now + self.delayAfter(penalty.failures, table.free)
            table.entries[key] = penalty
            table.prune(now, self._forget)
        return 0.0

    def succeeded(self, usuario: str) -> None:
        """
        A login of C{usuario} succeeded: forgive that name.  The address
        is not forgiven (one valid account must not reset the count of
        guesses at others from the same address); it is forgotten once
        quiet.
        """
        self._users.entries.pop(usuario, None)

    def tracked(self) -> tuple[int, int]:
        """How many user names and addresses are being counted."""
        return len(self._users.entries), len(self._addresses.entries)
