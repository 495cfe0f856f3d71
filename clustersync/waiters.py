"""
A one-shot outcome that any number of callers can wait for: the
C{whenListening()} of every listening service of the node.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed

__all__ = ["OneShot"]


class OneShot:
    """
    Waiters for an outcome known once: L{wait} returns a L{Deferred} that
    fires with the value given to L{succeed} (or fails with the failure
    given to L{fail}), whether it is called before or after that.
    """

    def __init__(self) -> None:
        self._waiting: list[Deferred] = []
        self._outcome: tuple[bool, object] | None = None

    def wait(self) -> Deferred:
        """
        @return: a L{Deferred} firing with the value, or failing with the
            failure, of the outcome (at once if it is already known).
        """
        if self._outcome is not None:
            ok, value = self._outcome
            return succeed(value) if ok else fail(value)
        d = Deferred()
        self._waiting.append(d)
        return d

    def _settle(self, ok: bool, value) -> None:
        self._outcome = (ok, value)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            (d.callback if ok else d.errback)(value)

    def succeed(self, value) -> None:
        """The outcome is C{value}: fire every waiter with it."""
        self._settle(True, value)

    def fail(self, failure) -> None:
        """The outcome is C{failure}: fail every waiter with it."""
        self._settle(False, failure)
