"""
The outbound side of one peer link: the lines of a reactor turn gathered
into one transport write, and the bytes written while the transport says
the peer is not keeping up (a I{slow peer} is cut at C{max_outbound_buffer};
see C{docs/reliability.md}).
"""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

__all__ = ["FLUSH_BYTES", "OutboundBuffer"]

#: Lines added to an L{OutboundBuffer} are gathered and handed to the
#: transport in one write at the end of the reactor turn, or as soon as this
#: many bytes are waiting (Twisted's own write path costs about as much per
#: call as encoding a message).
FLUSH_BYTES = 32 * 1024


@implementer(IPushProducer)
class OutboundBuffer:
    """
    The lines a link has accepted and not yet handed to its transport, and
    the push producer the link registers on that transport.

    The transport calls L{pauseProducing} when its buffer passes its own
    small threshold (the kernel stopped taking data) and L{resumeProducing}
    once it has drained, so L{queued} counts the bytes written while the
    peer is not keeping up.

    @ivar paused: whether the transport says it is full.
    @ivar queued: bytes written since it said so (0 when not paused).
    @ivar lines: lines added and not yet written, in order.
    @ivar size: their total length in bytes.
    @ivar traffic: whether L{lines} hold more than receipts (writing them
        then counts as the link's C{lastSent}).
    @ivar flushCall: the write of L{lines} scheduled for the end of this
        reactor turn, or C{None}.
    """

    def __init__(self, link, clock) -> None:
        """
        @param link: the link whose C{transport} this writes to and whose
            C{lastSent} it sets.
        @param clock: schedules the write at the end of the turn.
        """
        self._link = link
        self._clock = clock
        self.flushCall = None
        self._closed = False
        self.paused = False
        self.queued = 0
        self.lines: list[bytes] = []
        self.size = 0
        self.traffic = False

    # IPushProducer ----------------------------------------------------------

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

    # Gathering --------------------------------------------------------------

    def tooSlow(self, size: int, bound: int) -> bool:
        """
        The transport says it is full: count C{size} more bytes queued.

        @return: C{True} (and nothing counted) if that would take more than
            C{bound} bytes queued behind a full transport: the peer is too
            slow.  One line larger than the bound still goes out when
            nothing else is queued.
        """
        if self.queued and self.queued + size > bound:
            return True
        self.queued += size
        return False

    def add(self, line: bytes, size: int) -> None:
        """
        Add C{line} (C{size} bytes) to the lines of this turn; write them
        all now if L{FLUSH_BYTES} are waiting.
        """
        self.lines.append(line)
        self.size += size
        if self.size >= FLUSH_BYTES:
            self.flush()
        elif self.flushCall is None:
            self.scheduleFlush()

    def scheduleFlush(self) -> None:
        """Write the lines gathered when this reactor turn ends."""
        self.flushCall = self._clock.callLater(0, self._flushLater)

    def flush(self) -> None:
        """Hand every line gathered to the transport now, in one write."""
        lines = self.lines
        if not lines:
            return
        self.lines = []
        self.size = 0
        transport = self._link.transport
        if transport is None or self._closed:
            return
        transport.write(lines[0] if len(lines) == 1 else b"".join(lines))
        if self.traffic:
            self.traffic = False
            self._link.lastSent = self._clock.seconds()

    def _flushLater(self) -> None:
        self.flushCall = None
        self.flush()

    def drop(self) -> None:
        """Forget the lines not written yet (the link is being aborted)."""
        self.lines = []
        self.size = 0

    def close(self) -> None:
        """The connection is lost: drop what waits and never write again."""
        self._closed = True
        if self.flushCall is not None and self.flushCall.active():
            self.flushCall.cancel()
        self.flushCall = None
        self.drop()
