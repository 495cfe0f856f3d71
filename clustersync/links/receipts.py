"""
When a peer link's lines count as received, for the confirmed sends (see
C{docs/reliability.md}): on a link with application receipts, once the
peer's X_RECEIVED says it read and handled them; otherwise once the peer's
TCP stack acknowledged their bytes (counted with C{SIOCOUTQ}); at once when
neither can be known.
"""

from __future__ import annotations

import collections

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionLost
from twisted.logger import Logger

from clustersync.links.handshake import LinkState
from clustersync.links.sockets import unacknowledgedBytes
from clustersync.waiters import fire, fireUpTo
from clustersync.wire.codec import XReceived, XReceivedPayload, encode

__all__ = ["ACK_POLL", "ReceiptsMixin"]

#: Seconds between two checks of a link's acknowledged bytes while sends wait.
ACK_POLL = 0.005

# A plain name for the state every confirmed send compares (faster than LinkState.CLOSED).
_CLOSED = LinkState.CLOSED


class ReceiptsMixin:
    """
    The acknowledgements of L{clustersync.links.protocol.PeerProtocol}:
    the confirmed sends and the sends waiting for them, the receipts it
    writes and reads.

    Each waiting send is a C{(position, deferred, result, onLost, context)}
    tuple in C{_ackWaiters}, in position order: the C{linesWritten} (with
    receipts) or C{bytesWritten} (without) its line ended at.

    It uses the link's C{node}, C{transport}, C{state}, C{sendLine}, C{serverId},
    C{peerAddress}, C{linesWritten}, C{linesReceived}, C{bytesWritten},
    C{_socket} (the TCP socket whose acknowledgements can be counted, or
    C{None}) and C{_outbound}.

    @ivar receipts: whether this link uses application receipts
        (X_RECEIVED), decided when the peer's HELLO arrives: on a link to a
        clustersync node (L{clustersync.links.kinds.peerKind}) unless the
        node's C{receipts} policy is C{"none"}.
    @ivar peerReceived: the lines the peer's last X_RECEIVED acknowledged.
    """

    _log = Logger()

    def _initReceipts(self) -> None:
        self.receipts = False
        self.peerReceived = 0
        self._receiptSent = 0
        self._unexpectedReceipt = False
        self._ackWaiters: collections.deque = collections.deque()
        self._ackCall = None

    def whenAcknowledged(self, result=None, onLost=None, context=None) -> Deferred:
        """
        @param result: what the L{Deferred} fires with.
        @param onLost: if given, called with C{context} to build the
            exception the L{Deferred} fails with when the link is lost
            first (this keeps a waiting send down to a few objects).
        @return: a L{Deferred} firing with C{result} once every line
            written so far on this link has been acknowledged: on a link
            with L{receipts}, by the peer's X_RECEIVED (it read and handled
            them); otherwise by the peer's TCP stack (it reached the peer's
            socket).  It fails with C{onLost(context)} or
            L{ConnectionLost} if the link closes first.  Without receipts,
            on a transport whose acknowledgements cannot be counted (TLS,
            tests) it fires at once.
        """
        if self.state is _CLOSED:
            return fail(onLost(context) if onLost is not None else ConnectionLost("link closed"))
        return self.sendConfirmed(None, result, onLost, context)

    def sendConfirmed(self, line: bytes | None, result=None, onLost=None,
                      context=None) -> Deferred | None:
        """
        C{sendLine(line)}, then L{whenAcknowledged}C{(result, onLost,
        context)}: the confirmed send of the hot path
        (L{clustersync.cluster.node.ClusterNode.sendToUser} to a user on one
        peer).

        @param line: the encoded line, or C{None} to write nothing (what
            L{whenAcknowledged} does on a link not closed).
        @return: the L{Deferred} L{whenAcknowledged} would give, or C{None}
            when C{sendLine} returned C{False} (nothing written).
        """
        if line is not None and not self.sendLine(line):
            return None
        d = Deferred()
        d.called = False  # see waiters.fire: makes firing it later cheap
        if self.receipts:
            if self.peerReceived >= self.linesWritten:
                fire(d, result)
            else:
                self._ackWaiters.append((self.linesWritten, d, result, onLost, context))
        elif self._socket is None:
            fire(d, result)
        else:
            self._ackWaiters.append((self.bytesWritten, d, result, onLost, context))
            if self._ackCall is None:
                self._ackCall = self.node.clock.callLater(0, self._checkAcknowledged)
        return d

    def _acknowledged(self) -> int | None:
        """Bytes of L{bytesWritten} the peer acknowledged, or C{None}."""
        transport = self.transport
        try:
            buffered = (len(transport.dataBuffer) - transport.offset + transport._tempDataLen
                        + self._outbound.size)
        except (AttributeError, TypeError):
            return None
        kernel = unacknowledgedBytes(self._socket)
        if kernel is None:
            return None
        return self.bytesWritten - buffered - kernel

    def _checkAcknowledged(self) -> None:
        self._ackCall = None
        waiters = self._ackWaiters
        fireUpTo(waiters, self._acknowledged())
        # A callback above may have sent again and scheduled a check.
        if waiters and self._ackCall is None and self.state is not _CLOSED:
            self._ackCall = self.node.clock.callLater(ACK_POLL, self._checkAcknowledged)

    def _stopAcknowledgements(self, reason) -> None:
        """The connection is lost (C{reason}): fail every waiting send."""
        if self._ackCall is not None and self._ackCall.active():
            self._ackCall.cancel()
        self._ackCall = None
        waiters, self._ackWaiters = self._ackWaiters, collections.deque()
        for _, d, _, onLost, context in waiters:
            d.errback(onLost(context) if onLost is not None else ConnectionLost(
                f"link closed before the peer acknowledged: {reason.getErrorMessage()}"))

    def _sendReceipt(self) -> None:
        """
        Tell the peer how many lines of this link were read and handled
        (X_RECEIVED; only on a link whose peer is known to understand it).
        Not counted in L{linesWritten}, and not L{lastSent}: a receipt is
        not traffic the heartbeat needs to replace.  It goes out with the
        lines gathered in this reactor turn (replies included).
        """
        transport = self.transport
        if transport is None or transport.disconnecting:
            return
        count = self._receiptSent = self.linesReceived
        line = encode(XReceived(self.node.serverId, XReceivedPayload(count)))
        self.bytesWritten += len(line)
        self._outbound.add(line, len(line))

    def _noReceipts(self) -> None:
        """
        The peer's SYNC_STATE arrived but no receipt (a receipt-sending
        peer writes one right after its SYNC_STATE): it does not send
        receipts (an older clustersync, or C{receipts} set differently
        there).  Stop receipts on this link and confirm its waiting and
        future sends by TCP acknowledgement, rather than never.
        """
        self._log.warn(
            "{peer} ({address}) sends no receipts: confirming sends to it by TCP "
            "acknowledgement (set the same receipts policy on every node)",
            peer=self.serverId, address=self.peerAddress)
        self.node.metrics.rejected("no_receipts")
        self.receipts = False
        waiters, self._ackWaiters = self._ackWaiters, collections.deque()
        if self._socket is None:
            for _, d, result, _, _ in waiters:
                fire(d, result)
            return
        self._ackWaiters.extend(
            (self.bytesWritten, d, result, onLost, context)
            for _, d, result, onLost, context in waiters
        )
        if self._ackWaiters and self._ackCall is None:
            self._ackCall = self.node.clock.callLater(0, self._checkAcknowledged)

    def _receiptReceived(self, message: XReceived) -> None:
        """
        The peer read C{message.payload.lines} of our lines: fire the sends
        it covers.  A count that goes back or beyond what was written is
        rejected (counter C{bogus_receipt}) and changes nothing.
        """
        count = message.payload.lines
        if not self.receipts:
            # The peer thinks we understand receipts; we do not wait on them.
            if not self._unexpectedReceipt:
                self._unexpectedReceipt = True
                self.node.reject(self, "unexpected_receipt",
                                 "X_RECEIVED on a link without receipts (receipts policy)")
            else:
                self.node.metrics.rejected("unexpected_receipt")
            return
        if count < self.peerReceived or count > self.linesWritten:
            self.node.reject(
                self, "bogus_receipt",
                f"X_RECEIVED of {count} lines: {self.peerReceived} already acknowledged, "
                f"{self.linesWritten} written")
            return
        self.peerReceived = count
        fireUpTo(self._ackWaiters, count)
