"""
L{clustersync.waiters.OneShot}: the C{whenListening()} of every listening
service.
"""

from twisted.python.failure import Failure
from twisted.trial import unittest

from clustersync.waiters import OneShot


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
