"""
A one-shot outcome that any number of callers can wait for (the
C{whenListening()} of every listening service of the node), and
L{fire}, the cheap way to fire a L{Deferred} nobody waits on yet (a
confirmed send).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed

__all__ = ["OneShot", "fire", "fireUpTo", "FAST_FIRE"]

#: Whether this Twisted keeps a L{Deferred}'s callbacks in a C{_callbacks}
#: list (Twisted 25.5 and later), which L{fire} needs to take its fast path.
FAST_FIRE = type(getattr(Deferred(), "_callbacks", None)) is list


def fire(d: Deferred, result) -> None:
    """
    C{d.callback(result)}, for a L{Deferred} created by this package and
    not a L{Failure} or L{Deferred} C{result}.

    Most sends are never waited on (the caller drops the L{Deferred}), and
    Twisted's callback loop costs about 4,600 machine instructions even
    with no callback to run: almost a fifth of a whole confirmed send.
    When C{d} has no callback yet and is not paused, it gets its result
    exactly as L{twisted.internet.defer.succeed} gives one (which is what
    the loop would leave behind); otherwise, or on a Twisted laid out
    differently (L{FAST_FIRE}), this is C{d.callback(result)}.

    A L{Deferred} that will be fired this way is best given C{d.called =
    False} (an instance attribute, same value as the class's) as soon as it
    is made: on CPython 3.11, setting C{called} on a L{Deferred} made a
    while ago (a queue of sends waiting for their acknowledgement) costs
    about 1,300 instructions more than setting it on a fresh one
    (callgrind, in a queue of 300).

    @raise twisted.internet.defer.AlreadyCalledError: C{d} already fired.
    """
    if FAST_FIRE and not d._callbacks and not d.called and not d.paused:
        d.called = True
        d._canceller = None
        d.result = result
        return
    d.callback(result)


def fireUpTo(waiters, limit) -> None:
    """
    Take the waiters at the head of C{waiters} whose position is at most
    C{limit} (every waiter if C{limit} is C{None}) and L{fire} each one's
    L{Deferred} with its result: what a link does when its peer
    acknowledged its lines up to C{limit}.

    The L{fire} is written out in the loop (a call per waiter cost about
    250 machine instructions, a little over 1% of a confirmed send): one
    turn of this loop does what C{fire(waiter[1], waiter[2])} does.

    @param waiters: a C{collections.deque} of C{(position, deferred,
        result, ...)} tuples, in position order.
    @param limit: the highest position acknowledged, or C{None}.
    """
    popleft = waiters.popleft
    while waiters and (limit is None or waiters[0][0] <= limit):
        waiter = popleft()
        d = waiter[1]
        if FAST_FIRE and not d._callbacks and not d.called and not d.paused:
            d.called = True
            d._canceller = None
            d.result = waiter[2]
        else:
            d.callback(waiter[2])


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
