"""
L{clustersync.waiters.OneShot}: the C{whenListening()} of every listening
service; L{clustersync.waiters.fire} and L{clustersync.waiters.fireUpTo}:
firing confirmed sends.
"""

from collections import deque

from twisted.internet.defer import AlreadyCalledError, Deferred
from twisted.python.failure import Failure
from twisted.trial import unittest

from clustersync import waiters
from clustersync.waiters import FAST_FIRE, OneShot, fire, fireUpTo


class OneShotTests(unittest.TestCase):
    """Waiting before and after the outcome, for success and failure."""

    def test_succeedBeforeAndAfter(self):
        """A waiter from before and one from after both get the value."""
        shot = OneShot()
        early = shot.wait()
        self.assertNoResult(early)
        shot.succeed("port")
        self.assertEqual(self.successResultOf(early), "port")
        self.assertEqual(self.successResultOf(shot.wait()), "port")

    def test_failBeforeAndAfter(self):
        """A waiter from before and one from after both get the failure."""
        shot = OneShot()
        early = shot.wait()
        shot.fail(Failure(OSError("address in use")))
        self.failureResultOf(early, OSError)
        self.failureResultOf(shot.wait(), OSError)


class FireTests(unittest.TestCase):
    """
    L{fire} gives a L{Deferred} its result exactly as C{callback} would,
    taking a shortcut only when nothing waits on it yet.
    """

    def test_fastPathAvailable(self):
        """
        The installed Twisted keeps callbacks where L{fire} looks for them,
        so the fast path is taken (if Twisted changes that, this fails and
        L{fire} quietly falls back to C{callback}).
        """
        self.assertTrue(FAST_FIRE)

    def test_sameAsCallback(self):
        """
        Fired with nothing attached, a L{Deferred} then behaves as one fired
        with C{callback}: its result, callbacks added later running at once
        in order, an errback chain and chaining into another L{Deferred}.
        """
        for how in (fire, lambda d, r: d.callback(r)):
            d = Deferred()
            how(d, 5)
            self.assertTrue(d.called)
            seen = []
            d.addCallback(lambda r: seen.append(r) or r * 2)
            d.addCallback(lambda r: 1 / 0)
            d.addErrback(lambda f: seen.append(f.type) or "recovered")
            outer = Deferred()
            outer.addCallback(lambda _: d)
            outer.callback(None)
            self.assertEqual(seen, [5, ZeroDivisionError])
            self.assertEqual(self.successResultOf(outer), "recovered")

    def test_waitingCallbacksRun(self):
        """With a callback already attached, it runs with the result."""
        d = Deferred()
        seen = []
        d.addCallback(seen.append)
        fire(d, "ok")
        self.assertEqual(seen, ["ok"])

    def test_pausedStaysPaused(self):
        """A paused L{Deferred} gets its result only once unpaused."""
        d = Deferred()
        d.pause()
        fire(d, "later")
        seen = []
        d.addCallback(seen.append)
        self.assertEqual(seen, [])
        d.unpause()
        self.assertEqual(seen, ["later"])

    def test_twiceIsAnError(self):
        """Firing twice raises L{AlreadyCalledError}, as C{callback} does."""
        d = Deferred()
        fire(d, 1)
        self.assertRaises(AlreadyCalledError, fire, d, 2)

    def test_fallback(self):
        """Without the fast path, L{fire} is C{callback}."""
        self.patch(waiters, "FAST_FIRE", False)
        d = Deferred()
        seen = []
        waiters.fire(d, 3)
        d.addCallback(seen.append)
        self.assertEqual(seen, [3])


class FireUpToTests(unittest.TestCase):
    """
    L{fireUpTo} fires, in order, the waiters at the head of a queue up to a
    position, each as L{fire} would.
    """

    def queue(self, *positions: int) -> tuple[deque, list[Deferred]]:
        """Waiters at C{positions}, each with its position as result."""
        ds = [Deferred() for _ in positions]
        return deque((p, d, p, None, None) for p, d in zip(positions, ds)), ds

    def test_upToLimit(self):
        """
        Waiters at or below the limit fire with their results; the others
        stay queued and unfired.
        """
        waiting, ds = self.queue(1, 2, 2, 5)
        fireUpTo(waiting, 2)
        self.assertEqual([self.successResultOf(d) for d in ds[:3]], [1, 2, 2])
        self.assertNoResult(ds[3])
        self.assertEqual([w[0] for w in waiting], [5])

    def test_noneFiresAll(self):
        """A limit of C{None} fires every waiter."""
        waiting, ds = self.queue(3, 9)
        fireUpTo(waiting, None)
        self.assertEqual([self.successResultOf(d) for d in ds], [3, 9])
        self.assertEqual(len(waiting), 0)

    def test_callbacksRunInOrder(self):
        """
        Callbacks already attached run, in queue order, with the results
        (the slow path, as in L{fire}); a paused one waits for unpause.
        """
        waiting, ds = self.queue(1, 2, 3)
        seen = []
        ds[0].addCallback(seen.append)
        ds[1].pause()
        ds[1].addCallback(seen.append)
        ds[2].addCallback(seen.append)
        fireUpTo(waiting, 3)
        self.assertEqual(seen, [1, 3])
        ds[1].unpause()
        self.assertEqual(seen, [1, 3, 2])

    def test_callbackQueuesMore(self):
        """
        A callback that queues a new waiter (a send from a callback) sees
        it fired in the same call if it is within the limit, not otherwise.
        """
        waiting, ds = self.queue(1)
        later = Deferred()
        beyond = Deferred()
        ds[0].addCallback(lambda _: waiting.extend([(1, later, "l", None, None),
                                                    (4, beyond, "b", None, None)]))
        fireUpTo(waiting, 2)
        self.assertEqual(self.successResultOf(later), "l")
        self.assertNoResult(beyond)

    def test_alreadyFired(self):
        """A waiter whose L{Deferred} already fired raises, as C{callback} does."""
        waiting, ds = self.queue(1)
        ds[0].callback("early")
        self.assertRaises(AlreadyCalledError, fireUpTo, waiting, 1)

    def test_fallback(self):
        """Without the fast path every waiter is fired with C{callback}."""
        self.patch(waiters, "FAST_FIRE", False)
        waiting, ds = self.queue(1, 2)
        fireUpTo(waiting, None)
        self.assertEqual([self.successResultOf(d) for d in ds], [1, 2])
