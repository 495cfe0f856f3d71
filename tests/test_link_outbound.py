"""
Tests for L{clustersync.links.outbound}: the lines of one reactor turn
reach the transport in one write, in order.
"""

from __future__ import annotations

from twisted.trial import unittest

from clustersync.links import outbound as outboundModule
from clustersync.links import receipts as receiptsModule
from tests.linksupport import LinkTestMixin, lost


class WriteBatchTests(LinkTestMixin, unittest.TestCase):
    """
    Lines given to C{sendLine} in one reactor turn reach the transport in
    one write, in order, at the end of the turn.
    """

    def test_oneWritePerTurn(self) -> None:
        """
        Three lines: nothing on the transport until the turn ends, then one
        write with the three in order; C{lastSent} is the time they left.
        """
        proto, transport = self.batchedLink()
        self.clock.advance(2)
        for text in (b"uno", b"dos", b"tres"):
            self.assertTrue(proto.sendLine(text + b"\n"))
        self.assertEqual((transport.value(), transport.writes), (b"", 0))
        self.clock.advance(0)
        self.assertEqual((transport.value(), transport.writes), (b"uno\ndos\ntres\n", 1))
        self.assertEqual(proto.lastSent, 2.0)
        self.assertEqual(proto.linesWritten, 5)  # HELLO and SYNC_STATE, then these
        self.assertEqual([c.func.__name__ for c in self.clock.getDelayedCalls()],
                         ["_check"])

    def test_flushedOnceLarge(self) -> None:
        """
        Once C{FLUSH_BYTES} are waiting they are written at once; what
        follows waits for the end of the turn.
        """
        proto, transport = self.batchedLink()
        chunk = b"x" * 1023 + b"\n"
        count = outboundModule.FLUSH_BYTES // len(chunk)
        for _ in range(count):
            proto.sendLine(chunk)
        self.assertEqual((len(transport.value()), transport.writes), (count * len(chunk), 1))
        proto.sendLine(b"last\n")
        self.assertEqual(transport.writes, 1)
        self.clock.advance(0)
        self.assertEqual(transport.writes, 2)
        self.assertTrue(transport.value().endswith(chunk + b"last\n"))

    def test_gracefulCloseFlushes(self) -> None:
        """A graceful close writes the waiting lines before closing."""
        proto, transport = self.batchedLink()
        proto.sendLine(b"adios\n")
        proto.close("bye")
        self.assertEqual(transport.value(), b"adios\n")
        self.assertTrue(transport.disconnecting)

    def test_abortDropsAndLossCancels(self) -> None:
        """
        An abort (dead or slow peer) drops the waiting lines; once the
        connection is lost no flush is left scheduled and nothing is written.
        """
        proto, transport = self.batchedLink()
        proto.sendLine(b"never\n")
        proto.close("dead", abort=True)
        self.clock.advance(0)
        self.assertEqual((transport.value(), transport.writes), (b"", 0))
        proto.sendLine(b"again\n")
        lost(proto)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(0)
        self.assertEqual((transport.value(), transport.writes), (b"", 0))

    def test_waitingLinesAreNotAcknowledged(self) -> None:
        """
        On a TCP link (acknowledgements counted from the socket), lines
        still gathered in the batch are not acknowledged, however empty the
        kernel queue: the send confirms only after they were written.
        """
        self.patch(receiptsModule, "unacknowledgedBytes", lambda sock: 0)
        proto, transport = self.batchedLink()
        proto._socket = object()
        proto.sendLine(b"hola\n")
        d = proto.whenAcknowledged("ok")
        proto._checkAcknowledged()
        self.assertNoResult(d)
        self.clock.advance(0)
        self.assertEqual(transport.value(), b"hola\n")
        self.clock.advance(receiptsModule.ACK_POLL)
        self.assertEqual(self.successResultOf(d), "ok")
