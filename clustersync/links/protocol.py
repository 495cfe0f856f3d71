"""
One peer link: framing, and the decoded messages handed on.

A L{PeerProtocol} frames lines, decodes each once with L{clustersync.wire.codec},
runs the HELLO handshake and hands every decoded message to the node's
dispatch table (L{clustersync.cluster.node.ClusterNode.dispatch}).  It knows nothing
about sessions or routing.  The parts of its work that stand on their own
live next to it:

  - L{clustersync.links.handshake}: the link states and the HELLO exchange;
  - L{clustersync.links.outbound}: one write per reactor turn, and the
    I{slow peer} bound on bytes the peer does not read;
  - L{clustersync.links.receipts}: when sent lines count as received
    (X_RECEIVED receipts, TCP acknowledgements);
  - L{clustersync.links.liveness}: pings, the idle re-sync and the I{dead peer} cut;
  - L{clustersync.links.extensions}: the extension messages of a link to a
    clustersync node (L{clustersync.links.kinds});
  - L{clustersync.links.budget}: the node-wide bound on handshake buffers;
  - L{clustersync.links.flood}: the per-link flood guard;
  - L{clustersync.links.sockets}: TCP options and what the socket can tell;
  - L{clustersync.links.factories}: the listening and dialing factories.
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from zope.interface import implementer

from clustersync.interfaces import IPeerLink
from clustersync.links.extensions import LINK_MESSAGES, ExtensionsMixin
from clustersync.links.flood import FloodGuard
from clustersync.links.handshake import INBOUND, OUTBOUND, HandshakeMixin, LinkState
from clustersync.links.liveness import Liveness
from clustersync.links.outbound import FLUSH_BYTES, OutboundBuffer
from clustersync.links.receipts import ReceiptsMixin
from clustersync.links.sockets import countingSocket, isTLS, isTLSError, setNoDelay, tuneSocket
from clustersync.wire.codec import (
    Hello,
    ProtocolError,
    SyncState,
    XReceived,
    decode,
    decodeLines,
)

__all__ = ["LinkState", "INBOUND", "OUTBOUND", "PeerProtocol"]

# Plain names for the states the hot paths compare per line (faster than LinkState.X).
_ESTABLISHED = LinkState.ESTABLISHED
_CLOSED = LinkState.CLOSED



@implementer(IPeerLink)
class PeerProtocol(HandshakeMixin, ReceiptsMixin, ExtensionsMixin, LineOnlyReceiver):
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
    @ivar clustersync: whether the peer is known to be a clustersync node,
        decided when its HELLO arrives (L{clustersync.links.liveness.peerKind}):
        only then does this link carry extension messages (L{sendExtension}).
    """

    delimiter = b"\n"
    _log = Logger()

    def __init__(self, node, direction: str, factory=None) -> None:
        self.node = node
        self.direction = direction
        self.factory = factory
        self.state = LinkState.CONNECTING
        self.serverId: str | None = None
        self.since: float | None = None
        self.duplicate = False
        self._pending: list[bytes] = []
        self._pendingLength = 0
        self._closeReason: str | None = None
        self.peerAddress = ""
        self.tls = False
        # A few KB until the HELLO exchange is done, then max_sync_length
        # (L{HandshakeMixin.helloReceived} switches it).
        self.maxLineLength = node.config.maxHelloLength
        self.maxMessageLength = node.config.maxMessageLength
        # A read no longer than this holds no line too long for either bound.
        self._batchLimit = min(node.config.maxSyncLength, self.maxMessageLength)
        rate = node.config.peerRate
        self._flood = FloodGuard(rate, node.config.peerBurst, node.clock) if rate else None
        self.lastReceived = 0.0
        self.lastSent = 0.0
        self.syncsReceived = 0
        self.clustersync = False
        #: L{linesWritten} when this node's last session line (SYNC_STATE,
        #: CLIENT_CONNECTED, ...) was written (L{clustersync.cluster.antientropy}).
        self.stateLine = 0
        self.bytesWritten = 0
        self.linesWritten = 0
        self.linesReceived = 0
        self._socket = None
        self._outbound = OutboundBuffer(self, node.clock)
        self._liveness = Liveness(self, node)
        self._initReceipts()

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
        Tune the socket, then start the handshake: the dialer speaks first;
        an acceptor waits for the peer's HELLO unless configured to send it
        eagerly.
        """
        transport = self.transport
        setNoDelay(transport)
        tuneSocket(transport, self.node.config.deadPeerTimeout)
        self._socket = countingSocket(transport)
        try:
            transport.registerProducer(self._outbound, True)
        except RuntimeError:  # a wrapper already registered one
            pass
        self.lastReceived = self.lastSent = self.node.clock.seconds()
        peer = transport.getPeer()
        self.peerAddress = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
        self.tls = isTLS(transport)
        self._startHandshake()
        self.node.linkOpened(self)
        refusal = self.node.checkConnection(self)
        if refusal is not None:
            self.close(refusal[1], refusal[0], abort=True)
            return
        self._speakFirst()

    def connectionLost(self, reason) -> None:
        """Tell the node; the link is now L{LinkState.CLOSED}."""
        self._stopHandshakeTimer()
        self.node.handshakeBuffers.release(self)
        self._liveness.stop()
        self._outbound.close()
        self._stopAcknowledgements(reason)
        wasEstablished = self.state is _ESTABLISHED
        self.state = _CLOSED
        why = self._closeReason or reason.getErrorMessage()
        if not wasEstablished and self._closeReason is None and isTLSError(reason):
            why = f"TLS handshake failed: {why}"
            self.node.metrics.linkClosed("tls_failed")
            self._log.warn(
                "{direction} link {address}: {reason}",
                direction=self.direction,
                address=self.peerAddress,
                reason=why,
            )
        self.node.linkLost(self, why, wasEstablished)

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
            self._outbound.drop()
            abortConnection()
        else:
            self.flush()
            self.transport.loseConnection()

    loseConnection = close

    # Sending (IPeerLink) ----------------------------------------------------

    def sendLine(self, line: bytes) -> bool:
        """
        Write one encoded line (ending in C{\\n}).

        Lines are gathered and handed to the transport in one write at the
        end of the reactor turn (or once
        L{clustersync.links.outbound.FLUSH_BYTES} are waiting), in the
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
        outbound = self._outbound
        if outbound.paused and self._cutIfTooSlow(size):
            return False
        outbound.traffic = True
        self.linesWritten += 1
        self.bytesWritten += size
        # OutboundBuffer.add done in place: every message sent comes through here.
        outbound.lines.append(line)
        outbound.size += size
        if outbound.size >= FLUSH_BYTES:
            outbound.flush()
        elif outbound.flushCall is None:
            outbound.scheduleFlush()
        return True

    def _cutIfTooSlow(self, size: int) -> bool:
        """
        The transport says it is full: count C{size} more bytes queued, or,
        past C{max_outbound_buffer}, cut the link (the peer is too slow).

        @return: whether the link was cut.
        """
        bound = self.node.config.maxOutboundBuffer
        if not self._outbound.tooSlow(size, bound):
            return False
        self.close(
            f"slow peer: {self._outbound.queued} bytes queued and not read, bound {bound}",
            "slow_peer",
            abort=True,
        )
        return True

    def flush(self) -> None:
        """
        Hand every line gathered by L{sendLine} to the transport now (one
        write).
        """
        self._outbound.flush()

    # Framing ----------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """
        Split C{data} on C{\\n} and handle each complete line; on an
        established link, decode the lines of the read all at once.
        """
        self.lastReceived = self.node.clock.seconds()
        if b"\n" not in data:
            self._pending.append(data)
            self._pendingLength += len(data)
            self._checkPending()
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
            # Before HELLO the tail is bounded once the lines before it ran
            # (a HELLO among them raises the bound for a SYNC_STATE behind it).
            if self._pendingLength > self.node.config.maxSyncLength:
                self._lineTooLong(self._pendingLength)
                return
        if self._flood is not None and not self._flood.admit(len(lines)):
            self._flooded()
            return
        # X_RECEIVED lines are taken back out of the count in _receiveMessages.
        self.linesReceived += len(lines)
        messages = None
        if self.state is _ESTABLISHED and len(data) <= self._batchLimit:
            messages = decodeLines(lines)
        if messages is None:
            self._receiveLines(lines)
            if self.state is not _ESTABLISHED and self._closeReason is None:
                self._checkPending()
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
        Handle C{messages}, decoded from C{lines} on an established link:
        the messages of a whole read (decoded at once by L{decodeLines}),
        or the one message L{lineReceived} decoded.  The origin of each must
        be the peer's; X_RECEIVED is the link's own, everything else goes
        to the node's dispatch.  Should the link stop being established
        half-way, the lines left go through L{lineReceived}.
        """
        serverId = self.serverId
        dispatch = self.node.dispatch
        for i, message in enumerate(messages):
            if self.state is not _ESTABLISHED or self._closeReason is not None:
                self._receiveLines(lines[i:])
                return
            if message.origin != serverId:
                self.node.reject(
                    self,
                    "origin_mismatch",
                    f"origin {message.origin!r} on the link of {serverId!r}",
                )
                continue
            cls = message.__class__
            if cls is XReceived:
                # Link-level: never dispatched, and not counted as a line read.
                self.linesReceived -= 1
                self._receiptReceived(message)
                continue
            if cls in LINK_MESSAGES:
                self.linesReceived -= 1
                self.extensionReceived(message)
                continue
            if cls is SyncState:
                self.syncsReceived += 1
            dispatch(self, message)

    def _flooded(self) -> None:
        """The flood guard refused a read: close the link (counter C{rate_limit})."""
        self._pending = []
        self.close(
            f"flood: more than {self._flood.burst} lines at once or {self._flood.rate:g}/s "
            "sustained",
            "rate_limit",
            abort=True,
        )

    def _checkPending(self) -> None:
        """
        The partial line is now C{_pendingLength} bytes: close the link if
        that is over the line bound, or, before the HELLO exchange is done,
        if it takes the node-wide bound on handshake buffers over.
        """
        if self._pendingLength > self.maxLineLength:
            self._lineTooLong(self._pendingLength)
        elif self.state is not _ESTABLISHED and not self.node.handshakeBuffers.hold(
            self, self._pendingLength
        ):
            buffers = self.node.handshakeBuffers
            self._pending = []
            self._pendingLength = 0
            self.node.metrics.rejected("handshake_buffers")
            self.close(
                f"links in their handshake hold {buffers.total} bytes, bound "
                f"{buffers.bound} (max_handshake_buffers)",
                None,
                abort=True,
            )

    def _lineTooLong(self, length: int) -> None:
        self._pending = []
        self._pendingLength = 0
        self.node.handshakeBuffers.release(self)
        self.node.metrics.rejected("oversize_line")
        before = "" if self.state is _ESTABLISHED else " before HELLO"
        self.close(f"line of {length} bytes exceeds {self.maxLineLength}{before}", None, abort=True)

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
        self._receiveMessages([message], [line])
