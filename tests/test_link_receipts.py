"""
Tests for L{clustersync.links.receipts} as the hot path uses it:
C{sendConfirmed} ends like C{sendLine} then C{whenAcknowledged}.
"""

from __future__ import annotations

from twisted.python.failure import Failure
from twisted.trial import unittest

from clustersync.links import receipts as receiptsModule
from clustersync.wire.codec import XReceived, XReceivedPayload
from tests.linksupport import LinkTestMixin, lost, makeNode


class SendConfirmedTests(LinkTestMixin, unittest.TestCase):
    """
    C{sendConfirmed(line, result, onLost, context)} is the hot path's
    C{sendLine(line)} then C{whenAcknowledged(result, onLost, context)}
    in one step: every scenario must end the same either way.
    """

    def scenario(self, oneStep: bool, receipts: bool, socket: bool, end: str):
        """
        Send three lines on a fresh link, confirmed, then end with C{end}
        (C{"ack"}: the peer acknowledged them all; C{"lose"}: the link was
        lost first; C{"closed"}: a fourth send after a close).

        @return: what can be observed: bytes written, counters, and how
            each send's L{Deferred} ended.
        """
        self.node = makeNode("srv-b", self.clock)
        unacked = [10 ** 6]
        self.patch(receiptsModule, "unacknowledgedBytes", lambda sock: unacked[0])
        proto, transport = self.batchedLink()
        proto.receipts = receipts
        if socket:
            proto._socket = object()

        def send(line: bytes, result):
            if oneStep:
                return proto.sendConfirmed(line, result, lambda c: ValueError(c), f"ctx-{result}")
            if not proto.sendLine(line):
                return None
            return proto.whenAcknowledged(result, lambda c: ValueError(c), f"ctx-{result}")

        ds = [send(b"linea %d\n" % i, i) for i in range(3)]
        self.clock.advance(0)
        pending = [d.called for d in ds]
        if end == "ack":
            unacked[0] = 0
            if receipts:
                proto._receiptReceived(XReceived("srv-a", XReceivedPayload(proto.linesWritten)))
            self.clock.advance(receiptsModule.ACK_POLL)
        elif end == "lose":
            lost(proto)
        else:
            proto.close("bye")
            ds.append(send(b"tarde\n", 3))
        outcomes = []
        for d in ds:
            if d is None:
                outcomes.append(None)
                continue
            box = []
            d.addBoth(box.append)
            if not box:
                outcomes.append("waiting")
            elif isinstance(box[0], Failure):
                outcomes.append((box[0].type, box[0].getErrorMessage()))
            else:
                outcomes.append(box[0])
        return (transport.value(), proto.linesWritten, proto.bytesWritten, pending, outcomes)

    def test_sameAsTwoCalls(self) -> None:
        """
        With receipts or TCP acknowledgements, with or without a socket,
        acknowledged, lost, or sent after a close: C{sendConfirmed} and the
        two calls it stands for write, count and fire alike.
        """
        seen = set()
        for receipts in (False, True):
            for socket in (False, True):
                for end in ("ack", "lose", "closed"):
                    one = self.scenario(True, receipts, socket, end)
                    self.assertEqual(one, self.scenario(False, receipts, socket, end),
                                     (receipts, socket, end))
                    seen.add(repr(one[3:]))
        # The scenarios do differ: waiting, fired, failed, refused.
        self.assertGreaterEqual(len(seen), 4)
