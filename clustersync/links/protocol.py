"""
Peer links: framing, the handshake state machine, and the outbound factory.

A L{PeerProtocol} frames lines, decodes each once with L{clustersync.wire.codec},
runs the HELLO handshake and hands every decoded message to the node's
dispatch table (L{clustersync.cluster.node.ClusterNode.dispatch}).  It knows nothing
about sessions or routing.

Link states::

    CONNECTING --(dialer sends HELLO)--> HELLO_SENT --(HELLO in)--> ESTABLISHED
    CONNECTING --(HELLO in; acceptor answers HELLO)--------------> ESTABLISHED
    any --(connection lost)--> CLOSED

Reliability (see C{docs/reliability.md}): every peer socket gets TCP
keepalive and C{TCP_USER_TIMEOUT} tuned from C{dead_peer_timeout}; an idle
established link re-sends this node's SYNC_STATE (a spec message every
server understands) so that a peer that shows it does the same (a second
SYNC_STATE on one link) and then falls silent is cut as a I{dead peer};
and each link registers a push producer on its transport so that the bytes
queued while the kernel buffer is full are bounded by
C{max_outbound_buffer} (a I{slow peer} is cut at the bound).
"""

from __future__ import annotations

import collections
import enum
import fcntl
import socket
import struct
import termios
from random import random as _random

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, ReconnectingClientFactory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from zope.interface import implementer

from clustersync.wire.codec import (
    Hello, ProtocolError, SyncState, XReceived, XReceivedPayload, decode, decodeLines, encode,
)
from clustersync.interfaces import IPeerLink
from clustersync.waiters import fire, fireUpTo

__all__ = [
    "LinkState", "PeerProtocol", "PeerServerFactory", "PeerClientFactory",
    "keepaliveSettings", "tuneSocket", "unacknowledgedBytes",
]

INBOUND = "inbound"
OUTBOUND = "outbound"


class LinkState(enum.Enum):
    """The states of one peer link."""

    CONNECTING = "connecting"
    HELLO_SENT = "hello-sent"
    ESTABLISHED = "established"
    CLOSED = "closed"


# Module-level aliases: looking an Enum member up on its class costs about
# as much as decoding a small line, and the hot paths compare states per line.
_CONNECTING = LinkState.CONNECTING
_HELLO_SENT = LinkState.HELLO_SENT
_ESTABLISHED = LinkState.ESTABLISHED
_CLOSED = LinkState.CLOSED


def keepaliveSettings(bound: float) -> tuple[int, int, int]:
    """
    TCP keepalive C{(idle, interval, count)} in whole seconds such that an
    idle connection to a vanished host is reported dead after
    C{idle + interval * count} seconds, at most C{bound} when C{bound >= 4}
    (the kernel counts in whole seconds, so 4 s is the floor).
    """
    count = 3
    idle = max(1, int(bound / 3))
    interval = max(1, int((bound - idle) / count))
    return idle, interval, count


def _socketOf(transport):
    """The socket under C{transport} (through TLS wrappers), or C{None}."""
    for _ in range(4):
        if transport is None:
            return None
        getHandle = getattr(transport, "getHandle", None)
        handle = getHandle() if getHandle is not None else None
        if isinstance(handle, socket.socket):
            return handle
        transport = getattr(transport, "transport", None)
    return None


def tuneSocket(transport, bound: float) -> bool:
    """
    Enable TCP keepalive on C{transport}'s socket, tuned by
    L{keepaliveSettings}, and set C{TCP_USER_TIMEOUT} to C{bound} (data
    left unacknowledged, or a zero window, for that long kills the
    connection).

    @return: C{True} if the options were set, C{False} if C{transport} has
        no TCP socket (tests, UNIX sockets) or the system refused.
    """
    sock = _socketOf(transport)
    if sock is None:
        return False
    idle, interval, count = keepaliveSettings(bound)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (
            ("TCP_KEEPIDLE", idle),
            ("TCP_KEEPINTVL", interval),
            ("TCP_KEEPCNT", count),
            ("TCP_USER_TIMEOUT", int(bound * 1000)),
        ):
            option = getattr(socket, name, None)
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
    except OSError:
        return False
    return True


def unacknowledgedBytes(sock) -> int | None:
    """
    Bytes written to TCP socket C{sock} that its peer's TCP stack has not
    acknowledged yet (C{SIOCOUTQ}), or C{None} if the system cannot say.
    """
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError, AttributeError):
        return None
    return struct.unpack("i", raw)[0]


#: Seconds between two checks of a link's acknowledged bytes while sends wait.
ACK_POLL = 0.005

#: Lines written by L{PeerProtocol.sendLine} are gathered and handed to the
#: transport in one write at the end of the reactor turn, or as soon as this
#: many bytes are waiting (Twisted's own write path costs about as much per
#: call as encoding a message).
FLUSH_BYTES = 32 * 1024


@implementer(IPushProducer)
class _OutboundBuffer:
    """
    The push producer a link registers on its transport.  The transport
    calls L{pauseProducing} when its buffer passes its own small threshold
    (the kernel stopped taking data) and L{resumeProducing} once it has
    drained, so L{queued} counts the bytes written while the peer is not
    keeping up.

    @ivar paused: whether the transport says it is full.
    @ivar queued: bytes written since it said so (0 when not paused).
    """

    def __init__(self) -> None:
        self.paused = False
        self.queued = 0

    def pauseProducing(self) -> None:
        """The transport's buffer is full."""
        self.paused = True

    def resumeProducing(self) -> None:
        """The transport's buffer drained."""
        self.paused = False
        self.queued = 0

    def stopProducing(self) -> None:
        """The connection is gone."""
        self.paused = False
        self.queued = 0


@implementer(IPeerLink)
class PeerProtocol(LineOnlyReceiver):
    """
    One peer link.

    Framing splits every read on C{\\n} once (a trailing C{\\r} is
    tolerated) and keeps a partial line as a list of chunks, so a large
    SYNC_STATE arriving in many reads costs one join, not one copy per read.

    @ivar state: the L{LinkState}.
    @ivar serverId: the peer's serverId once its HELLO arrived, else C{None}.
    @ivar direction: L{INBOUND} or L{OUTBOUND}.
    @ivar lastReceived: clock time of the last bytes received.
    @ivar lastSent: clock time of the last line written.
    @ivar syncsReceived: SYNC_STATE messages received on this link; from the
        second one on the peer is known to re-sync when idle, and silence
        longer than C{dead_peer_timeout} cuts the link.
    """

    delimiter = b"\n"
    _log = Logger()

    def __init__(self, node, direction: str, factory=None) -> None:
        self.node = node
        self.direction = direction
        self.factory = factory
        self.state = _CONNECTING
        self.serverId: str | None = None
        self.since: float | None = None
        self.duplicate = False
        self._pending: list[bytes] = []
        self._pendingLength = 0
        self._timeout = None
        self._closeReason: str | None = None
        self.peerAddress = ""
        self.tls = False
        self.maxLineLength = node.config.maxSyncLength
        self.maxMessageLength = node.config.maxMessageLength
        # A read no longer than this holds no line too long for either bound.
        self._batchLimit = min(self.maxLineLength, self.maxMessageLength)
        self._rate = node.config.peerRate
        self._burst = node.config.peerBurst
        self._tokens = float(self._burst)
        self._refilled: float | None = None
        self.lastReceived = 0.0
        self.lastSent = 0.0
        self.syncsReceived = 0
        self._resynced = False
        self._liveness = None
        self._outbound = _OutboundBuffer()
        self.bytesWritten = 0
        self._socket = None
        self._ackWaiters: collections.deque = collections.deque()
        self._ackCall = None
        #: Lines accepted by L{sendLine} and not yet handed to the transport.
        self._batch: list[bytes] = []
        self._batchBytes = 0
        self._batchTraffic = False
        self._flushCall = None
        #: Application receipts (X_RECEIVED) on this link: decided when the
        #: connection opens from the node's C{receipts} policy.
        self.receipts = False
        self.linesWritten = 0
        self.linesReceived = 0
        self._receiptSent = 0
        self.peerReceived = 0
        self._unexpectedReceipt = False

    @property
    def outboundBuffered(self) -> int:
        """
        Bytes written to this link while its transport reported its buffer
        full (the part the kernel has not taken yet beyond the transport's
        own threshold); 0 when the peer keeps up.  Bounded by
        C{max_outbound_buffer}.
        """
        return self._outbound.queued

    # Connection lifecycle ---------------------------------------------------

    def connectionMade(self) -> None:
        """
        Start the handshake: the dialer speaks first; an acceptor waits for
        the peer's HELLO unless configured to send it eagerly.
        """
        transport = self.transport
        setNoDelay = getattr(transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            try:
                setNoDelay(True)
            except Exception:  # not a TCP transport (tests, UNIX sockets)
                pass
        tuneSocket(transport, self.node.config.deadPeerTimeout)
        handle = getattr(transport, "getHandle", lambda: None)()
        if isinstance(handle, socket.socket):  # plain TCP: acks can be counted
            self._socket = handle
        try:
            transport.registerProducer(self._outbound, True)
        except RuntimeError:  # a wrapper already registered one
            pass
        self.lastReceived = self.lastSent = self.node.clock.seconds()
        peer = transport.getPeer()
        self.peerAddress = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
        self.tls = _isTLS(transport)
        policy = getattr(self.node.config, "receipts", "tls")
        self.receipts = policy == "all" or (policy == "tls" and self.tls)
        self._timeout = self.node.clock.callLater(
            self.node.config.handshakeTimeout, self._handshakeTimedOut
        )
        self.node.linkOpened(self)
        refusal = self.node.checkConnection(self)
        if refusal is not None:
            self.close(refusal[1], refusal[0], abort=True)
            return
        if self.direction == OUTBOUND or self.node.config.eagerHello:
            self._sendHello()

    def _sendHello(self) -> None:
        hello = encode(Hello.make(self.node.serverId))
        self.flush()
        self.transport.write(hello)
        self.bytesWritten += len(hello)
        self.linesWritten += 1
        self.lastSent = self.node.clock.seconds()
        self.state = _HELLO_SENT

    def _handshakeTimedOut(self) -> None:
        self._timeout = None
        self.close(
            f"no HELLO within {self.node.config.handshakeTimeout:g}s", "handshake_timeout",
            abort=True,
        )

    def connectionLost(self, reason) -> None:
        """Tell the node; the link is now L{LinkState.CLOSED}."""
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None
        if self._liveness is not None and self._liveness.active():
            self._liveness.cancel()
        self._liveness = None
        if self._ackCall is not None and self._ackCall.active():
            self._ackCall.cancel()
        self._ackCall = None
        if self._flushCall is not None and self._flushCall.active():
            self._flushCall.cancel()
        self._flushCall = None
        self._batch = []
        self._batchBytes = 0
        waiters, self._ackWaiters = self._ackWaiters, collections.deque()
        for _, d, _, onLost, context in waiters:
            d.errback(onLost(context) if onLost is not None else ConnectionLost(
                f"link closed before the peer acknowledged: {reason.getErrorMessage()}"))
        wasEstablished = self.state is _ESTABLISHED
        self.state = _CLOSED
        why = self._closeReason or reason.getErrorMessage()
        if not wasEstablished and self._closeReason is None and _isTLSError(reason):
            why = f"TLS handshake failed: {why}"
            self.node.metrics.linkClosed("tls_failed")
            self._log.warn(
                "{direction} link {address}: {reason}",
                direction=self.direction,
                address=self.peerAddress,
                reason=why,
            )
        self.node.linkLost(self, why, wasEstablished)

    # IPeerLink --------------------------------------------------------------

    def sendLine(self, line: bytes) -> bool:
        """
        Write one encoded line (ending in C{\\n}).

        Lines are gathered and handed to the transport in one write at the
        end of the reactor turn (or once L{FLUSH_BYTES} are waiting), in the
        order they were given.

        If the transport has been full since more than
        C{max_outbound_buffer} bytes were written, the peer is too slow: the
        link is cut (reason C{slow peer}, counter C{slow_peer}) and this
        line is not written.  (One line larger than the bound, such as a
        big SYNC_STATE, still goes out when nothing else is queued.)

        @return: C{False} if the link is closing or closed (or was just cut).
        """
        if self._closeReason is not None or self.state is _CLOSED:
            return False
        transport = self.transport
        if transport is None or transport.disconnecting:
            return False
        size = len(line)
        if self._outbound.paused and self._cutIfTooSlow(size):
            return False
        self._batchTraffic = True
        self.linesWritten += 1
        self._enqueue(line, size)
        return True

    def sendConfirmed(self, line: bytes, result=None, onLost=None, context=None) -> Deferred | None:
        """
        L{sendLine}C{(line)}, then L{whenAcknowledged}C{(result, onLost,
        context)}, in one step: the confirmed send of the hot path
        (L{clustersync.cluster.node.ClusterNode.sendToUser} to a user on one peer).
        It does exactly what those two calls do, written out rather than
        called (calling them cost about 2,000 machine instructions more
        per send, measured with callgrind).

        @return: the L{Deferred} L{whenAcknowledged} would give, or C{None}
            when L{sendLine} would have returned C{False} (nothing written).
        """
        if self._closeReason is not None or self.state is _CLOSED:
            return None
        transport = self.transport
        if transport is None or transport.disconnecting:
            return None
        size = len(line)
        if self._outbound.paused and self._cutIfTooSlow(size):
            return None
        self._batchTraffic = True
        self.linesWritten += 1
        self._batch.append(line)
        self._batchBytes += size
        self.bytesWritten += size
        d = Deferred()
        d.called = False  # see waiters.fire: makes firing it later cheap
        if self.receipts:
            self._ackWaiters.append((self.linesWritten, d, result, onLost, context))
        elif self._socket is None:
            fire(d, result)
        else:
            self._ackWaiters.append((self.bytesWritten, d, result, onLost, context))
            if self._ackCall is None:
                self._ackCall = self.node.clock.callLater(0, self._checkAcknowledged)
        if self._batchBytes >= FLUSH_BYTES:
            self.flush()
        elif self._flushCall is None:
            self._flushCall = self.node.clock.callLater(0, self._flushLater)
        return d

    def _cutIfTooSlow(self, size: int) -> bool:
        """
        The transport says it is full: count C{size} more bytes queued, or,
        past C{max_outbound_buffer}, cut the link (the peer is too slow).

        @return: whether the link was cut.
        """
        outbound = self._outbound
        bound = self.node.config.maxOutboundBuffer
        if outbound.queued and outbound.queued + size > bound:
            self.close(
                f"slow peer: {outbound.queued} bytes queued and not read, bound {bound}",
                "slow_peer",
                abort=True,
            )
            return True
        outbound.queued += size
        return False

    def _enqueue(self, line: bytes, size: int) -> None:
        """Add C{line} to the lines of this turn; flush if enough wait."""
        self._batch.append(line)
        self._batchBytes += size
        self.bytesWritten += size
        if self._batchBytes >= FLUSH_BYTES:
            self.flush()
        elif self._flushCall is None:
            self._flushCall = self.node.clock.callLater(0, self._flushLater)

    def flush(self) -> None:
        """
        Hand every line gathered by L{sendLine} to the transport now (one
        write).
        """
        batch = self._batch
        if not batch:
            return
        self._batch = []
        self._batchBytes = 0
        transport = self.transport
        if transport is None or self.state is _CLOSED:
            return
        transport.write(batch[0] if len(batch) == 1 else b"".join(batch))
        if self._batchTraffic:  # not only receipts
            self._batchTraffic = False
            self.lastSent = self.node.clock.seconds()

    def _flushLater(self) -> None:
        self._flushCall = None
        self.flush()

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
        self._enqueue(line, len(line))

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
            for waiter in waiters:
                fire(waiter[1], waiter[2])
            return
        self._ackWaiters.extend((self.bytesWritten, *waiter[1:]) for waiter in waiters)
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
        if self.receipts:
            target = self.linesWritten
            if self.peerReceived >= target:
                return succeed(result)
            d = Deferred()
            d.called = False  # see waiters.fire: makes firing it later cheap
            self._ackWaiters.append((target, d, result, onLost, context))
            return d
        if self._socket is None:
            return succeed(result)
        d = Deferred()
        d.called = False  # see waiters.fire: makes firing it later cheap
        self._ackWaiters.append((self.bytesWritten, d, result, onLost, context))
        if self._ackCall is None:
            self._ackCall = self.node.clock.callLater(0, self._checkAcknowledged)
        return d

    def _acknowledged(self) -> int | None:
        """Bytes of L{bytesWritten} the peer acknowledged, or C{None}."""
        transport = self.transport
        try:
            buffered = (len(transport.dataBuffer) - transport.offset + transport._tempDataLen
                        + self._batchBytes)
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

    def close(self, reason: str, counter: str | None = None, abort: bool = False) -> None:
        """
        Close the link, logging C{reason} and counting it under C{counter}.

        @param abort: drop unsent data and close now (a dead or slow peer
            would never let a graceful close flush).
        """
        if self.state is _CLOSED or self._closeReason is not None:
            return
        self._closeReason = reason
        if counter:
            self.node.metrics.linkClosed(counter)
        self._log.info(
            "closing {direction} link {peer} ({address}): {reason}",
            direction=self.direction,
            peer=self.serverId or "?",
            address=self.peerAddress,
            reason=reason,
        )
        abortConnection = getattr(self.transport, "abortConnection", None)
        if abort and abortConnection is not None:
            self._batch = []
            self._batchBytes = 0
            abortConnection()
        else:
            self.flush()
            self.transport.loseConnection()

    loseConnection = close

    # Framing ----------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """Split C{data} on C{\\n} and handle each complete line."""
        self.lastReceived = self.node.clock.seconds()
        if b"\n" not in data:
            self._pending.append(data)
            self._pendingLength += len(data)
            if self._pendingLength > self.maxLineLength:
                self._lineTooLong(self._pendingLength)
            return
        if self._pending:
            self._pending.append(data)
            data = b"".join(self._pending)
            self._pending = []
        lines = data.split(b"\n")
        tail = lines.pop()
        self._pendingLength = len(tail)
        if tail:
            self._pending.append(tail)
            if self._pendingLength > self.maxLineLength:
                self._lineTooLong(self._pendingLength)
                return
        if self._rate and not self._admit(len(lines)):
            return
        # X_RECEIVED lines are taken back out of the count in lineReceived.
        self.linesReceived += len(lines)
        messages = None
        if self.state is _ESTABLISHED and len(data) <= self._batchLimit:
            messages = decodeLines(lines)
        if messages is None:
            self._receiveLines(lines)
        else:
            self._receiveMessages(messages, lines)
        # One receipt per read, once HELLO is done, if something new was read.
        if (
            self.receipts
            and self.linesReceived != self._receiptSent
            and self.state is _ESTABLISHED
            and self._closeReason is None
        ):
            self._sendReceipt()

    def _receiveLines(self, lines: list[bytes]) -> None:
        """Handle C{lines} one by one (L{lineReceived})."""
        for line in lines:
            if self._closeReason is not None:
                return
            if len(line) > self.maxLineLength:
                self._lineTooLong(len(line))
                return
            self.lineReceived(line)

    def _receiveMessages(self, messages: list, lines: list[bytes]) -> None:
        """
        Handle C{messages}, decoded from C{lines} all at once by
        L{decodeLines} on an established link: what L{lineReceived} does
        for each line after decoding it, without its per-line checks that
        the read as a whole already passed (length, blank, C{\\r}, state).
        Should the link stop being established half-way, the lines left
        go through L{lineReceived}.
        """
        # _receiveMessage written out for the common message (from the
        # peer, neither X_RECEIVED nor SYNC_STATE): a call less per message.
        serverId = self.serverId
        dispatch = self.node.dispatch
        i = 0
        for message in messages:
            if self.state is not _ESTABLISHED or self._closeReason is not None:
                self._receiveLines(lines[i:])
                return
            i += 1
            cls = message.__class__
            if cls is XReceived or cls is SyncState or message.origin != serverId:
                self._receiveMessage(message)
            else:
                dispatch(self, message)

    def _receiveMessage(self, message) -> None:
        """
        Handle one decoded message on an established link: its origin must
        be the peer's; X_RECEIVED is the link's own, everything else goes
        to the node's dispatch.
        """
        if message.origin != self.serverId:
            self.node.reject(
                self,
                "origin_mismatch",
                f"origin {message.origin!r} on the link of {self.serverId!r}",
            )
            return
        cls = message.__class__
        if cls is XReceived:
            # Link-level: never dispatched, applied as state or forwarded.
            self.linesReceived -= 1
            self._receiptReceived(message)
            return
        if cls is SyncState:
            self.syncsReceived += 1
        self.node.dispatch(self, message)

    def _admit(self, count: int) -> bool:
        """
        Per-link flood guard: a token bucket of C{peer_burst} lines refilled
        at C{peer_rate} lines per second of node-clock time.  Taking
        C{count} more lines beyond it closes the link (counter
        C{rate_limit}).
        """
        now = self.node.clock.seconds()
        if self._refilled is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        self._tokens -= count
        if self._tokens >= 0:
            return True
        self._pending = []
        self.close(
            f"flood: more than {self._burst} lines at once or {self._rate:g}/s sustained",
            "rate_limit",
            abort=True,
        )
        return False

    def _lineTooLong(self, length: int) -> None:
        self._pending = []
        self._pendingLength = 0
        self.node.metrics.rejected("oversize_line")
        self.close(f"line of {length} bytes exceeds {self.maxLineLength}", None, abort=True)

    def lineReceived(self, line: bytes) -> None:
        """Decode one line and hand it to the node, or reject it."""
        if line[-1:] == b"\r":
            line = line[:-1]
        if not line or line.isspace():  # blank (no copy of a large line)
            return
        try:
            message = decode(line)
        except ProtocolError as e:
            self.node.reject(self, e.reason, str(e))
            return
        if len(line) > self.maxMessageLength and message.__class__ is not SyncState:
            self.node.reject(
                self,
                "oversize_message",
                f"{len(line)}-byte {message.__struct_config__.tag} exceeds "
                f"{self.maxMessageLength}",
            )
            return
        if self.state is not _ESTABLISHED:
            if message.__class__ is not Hello:
                self.node.reject(
                    self,
                    "before_handshake",
                    f"{message.__struct_config__.tag} before HELLO",
                )
                return
            self.node.dispatch(self, message)
            return
        self._receiveMessage(message)

    # Handshake (called by the HELLO handler) -------------------------------

    def helloReceived(self, hello: Hello) -> None:
        """
        The peer's HELLO arrived: answer it if we have not spoken yet, and
        become established.
        """
        serverId = hello.payload.serverId
        if self.state is _ESTABLISHED:
            self.node.reject(self, "duplicate_hello", f"second HELLO ({serverId!r})")
            return
        if serverId == self.node.serverId:
            self._log.warn(
                "{address} is this node itself ({serverId}): not linking",
                address=self.peerAddress,
                serverId=serverId,
            )
            if self.factory is not None and self.direction == OUTBOUND:
                self.factory.stopTrying()
            if self.state is _CONNECTING:
                # Answer before closing: the dialer is this node too, and
                # only our HELLO tells its factory to stop redialing.
                self._sendHello()
            self.close("self-link", "self_link")
            return
        if not serverId:
            self.node.reject(self, "field", "HELLO with an empty serverId")
            self.close("empty serverId in HELLO", None)
            return
        refusal = self.node.checkIdentity(self, hello)
        if refusal is not None:
            self.close(f"identity refused: {refusal[1]}", refusal[0], abort=True)
            return
        self.serverId = serverId
        if self.state is _CONNECTING:
            self._sendHello()
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None
        self.state = _ESTABLISHED
        self.since = self.node.clock.seconds()
        self._scheduleLiveness()
        self.node.linkEstablished(self)

    # Liveness --------------------------------------------------------------

    def _scheduleLiveness(self) -> None:
        if self.state is _ESTABLISHED and self._closeReason is None:
            self._liveness = self.node.clock.callLater(
                self.node.config.deadPeerTimeout / 6, self._checkLiveness
            )

    def _checkLiveness(self) -> None:
        """
        Every C{dead_peer_timeout / 6}: cut a peer known to re-sync when idle
        that has sent nothing for 5/6 of the bound (so it is cut within the
        bound); re-send this node's SYNC_STATE on an active link on which
        nothing was written for a third of the bound, and once at the first
        check whatever the traffic, so that a peer learns early that this
        node re-syncs (a busy link would otherwise never show it).
        """
        self._liveness = None
        if self.state is not _ESTABLISHED or self._closeReason is not None:
            return
        if self.receipts and not self.peerReceived and self.syncsReceived:
            self._noReceipts()
        bound = self.node.config.deadPeerTimeout
        now = self.node.clock.seconds()
        silent = now - self.lastReceived
        if self.syncsReceived >= 2 and silent >= bound * 5 / 6:
            self.close(
                f"dead peer: nothing received for {silent:.1f}s (bound {bound:g}s)",
                "dead_peer",
                abort=True,
            )
            return
        if (
            self.node.config.idleResync
            and (now - self.lastSent >= bound / 3 or not self._resynced)
            and self.node.isActive(self)
        ):
            self._resynced = True
            self.node.resync(self)
        self._scheduleLiveness()


def _isTLSError(reason) -> bool:
    """
    Whether C{reason} (a L{Failure}) is a TLS error: a refused handshake or
    a server certificate that does not match the dialed host name.
    """
    try:
        from OpenSSL.SSL import Error
        from service_identity import VerificationError
    except ImportError:
        return False
    return reason.check(Error, VerificationError) is not None


def _isTLS(transport) -> bool:
    try:
        from twisted.internet.interfaces import ISSLTransport

        return ISSLTransport.providedBy(transport)
    except Exception:
        return False


class PeerServerFactory(Factory):
    """
    Builds inbound L{PeerProtocol}s for the listening endpoint.
    """

    noisy = False

    def __init__(self, node) -> None:
        self.node = node

    def buildProtocol(self, addr) -> PeerProtocol:
        """A new inbound link."""
        return PeerProtocol(self.node, INBOUND, self)


class PeerClientFactory(ReconnectingClientFactory):
    """
    Dials one configured peer and keeps dialing with jittered, capped
    exponential backoff.

    The delay is reset only once a HELLO exchange completes, so a peer that
    accepts TCP but never answers does not get hammered.  When our outbound
    link loses the tie-break to the peer's inbound one, the factory goes on
    I{standby}: it does not redial until that inbound link is lost.

    @ivar address: C{"host:port"} as configured.
    @ivar peerServerId: the serverId seen in the last HELLO from there.
    """

    initialDelay = 0.5
    factor = 2.0
    jitter = 0.25
    maxDelay = 30.0
    _log = Logger()

    noisy = False

    def __init__(self, node, address: str, clock) -> None:
        self.node = node
        self.address = address
        self.clock = clock
        self.peerServerId: str | None = None
        self.standby = False
        self.delay = self.initialDelay

    def buildProtocol(self, addr) -> PeerProtocol:
        """A new outbound link to L{address}."""
        return PeerProtocol(self.node, OUTBOUND, self)

    def clientConnectionFailed(self, connector, reason) -> None:
        """Log and schedule a retry."""
        self._log.debug(
            "dialing {address} failed: {reason}",
            address=self.address,
            reason=reason.getErrorMessage(),
        )
        self.connector = connector
        if self.standby:
            return
        ReconnectingClientFactory.clientConnectionFailed(self, connector, reason)

    def clientConnectionLost(self, connector, reason) -> None:
        """Schedule a retry, unless on standby or stopped."""
        self.connector = connector
        if self.standby:
            return
        ReconnectingClientFactory.clientConnectionLost(self, connector, reason)

    def retry(self, connector=None) -> None:
        """
        Schedule a redial: the delay grows by L{factor} up to L{maxDelay},
        then gets a uniform jitter of +/- L{jitter} that never takes it
        below zero nor above L{maxDelay}.  (Twisted's own C{retry} applies a
        normal jitter after the cap: it can exceed the cap and, rarely, go
        negative, which C{callLater} refuses, leaving the peer undialed.)
        """
        if not self.continueTrying:
            return
        if connector is None:
            connector = self.connector
            if connector is None:
                return
        self.retries += 1
        if self.maxRetries is not None and self.retries > self.maxRetries:
            return
        self.delay = min(self.delay * self.factor, self.maxDelay)
        delay = self.delay
        if self.jitter:
            delay *= 1 + self.jitter * (2 * _random() - 1)
        delay = min(max(delay, 0.0), self.maxDelay)

        def reconnector():
            self._callID = None
            connector.connect()

        self._callID = self.clock.callLater(delay, reconnector)

    def wake(self) -> None:
        """
        Leave standby and redial soon (the link that made us stand by is
        gone).
        """
        if not self.standby or not self.continueTrying:
            return
        self.standby = False
        self.resetDelay()
        if self.connector is not None and self._callID is None:
            self.retry()
