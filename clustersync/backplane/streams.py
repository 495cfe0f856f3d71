"""
Presence streams: what a server publishes about its sessions, numbered so
that a receiver knows when it missed something (pure: no I/O).

Each server's state events go out on its presence subject, in order, with
an epoch (new each time the stream starts) and a sequence number.  A
receiver applies event C{n+1} after event C{n}; anything else (a gap, a new
epoch, a first event from a server it has no snapshot of) makes it ask that
server for a snapshot (its SYNC_STATE, carrying the number of the last
event it includes) and keep the events that arrive meanwhile, to apply the
newer ones after the snapshot.  Core NATS may drop messages (a NATS server
killed with messages in flight, a slow consumer): this is what turns a
dropped event into a re-sync instead of a ghost or a missing session.
"""

from __future__ import annotations

import secrets

__all__ = ["OutboundStream", "InboundStream", "APPLY", "SKIP", "RESYNC", "MAX_WAITING"]

#: What L{InboundStream.offer} says to do with an event.
APPLY = "apply"
SKIP = "skip"
RESYNC = "resync"

#: Events kept per server while its snapshot is awaited; past that they are
#: dropped (the snapshot is asked for again, and covers them).
MAX_WAITING = 10_000


class OutboundStream:
    """
    The numbering of one server's presence stream (this node's own, or an
    existing server's it bridges).

    @ivar serverId: the server it is about.
    @ivar epoch: this stream's epoch.
    @ivar seq: the number of the last event published (0: none yet).
    """

    def __init__(self, serverId: str) -> None:
        self.serverId = serverId
        self.epoch = secrets.token_hex(8)
        self.seq = 0

    def next(self) -> int:
        """The number of the next event (now the last)."""
        self.seq += 1
        return self.seq


class InboundStream:
    """
    What a receiver knows of one server's presence stream.

    @ivar epoch: the epoch of the snapshot applied last (C{None}: none yet).
    @ivar seq: the number of the last event applied.
    @ivar synced: whether events can be applied as they come.
    @ivar waiting: C{(epoch, seq, message)} of events kept until a snapshot.
    @ivar requested: when a snapshot was last asked for (C{None}: not asked).
    @ivar lastHeard: when anything last came from the server.
    """

    def __init__(self, now: float) -> None:
        self.epoch: str | None = None
        self.seq = 0
        self.synced = False
        self.waiting: list[tuple] = []
        self.requested: float | None = None
        self.lastHeard = now

    def offer(self, epoch: str, seq: int, message) -> str:
        """
        An event arrived: L{APPLY} it now (it is the next one), L{SKIP} it
        (the state already has it), or L{RESYNC}: it was kept, a snapshot
        is needed.
        """
        if self.synced and epoch == self.epoch:
            if seq <= self.seq:
                return SKIP
            if seq == self.seq + 1:
                self.seq = seq
                return APPLY
        self.synced = False
        self._keep(epoch, seq, message)
        return RESYNC

    def heartbeat(self, epoch: str, seq: int) -> bool:
        """A heartbeat saying the stream is at C{seq}: C{True} if a snapshot is needed."""
        if self.synced and epoch == self.epoch and seq <= self.seq:
            return False
        self.synced = False
        return True

    def snapshot(self, epoch: str, seq: int) -> list | None:
        """
        A snapshot including events up to C{seq} arrived.

        @return: C{None} if it is older than what is applied (ignore it);
            otherwise the kept events to apply after it, in order (the
            stream is synced unless they leave a gap, in which case it is
            not and the rest stay kept).
        """
        if epoch == self.epoch and seq < self.seq:
            return None
        self.epoch, self.seq, self.synced = epoch, seq, True
        self.requested = None
        ready = []
        waiting = sorted((w for w in self.waiting if w[0] == epoch and w[1] > seq),
                         key=lambda w: w[1])
        self.waiting = []
        for index, (e, s, message) in enumerate(waiting):
            if s == self.seq + 1:
                self.seq = s
                ready.append(message)
            elif s > self.seq + 1:
                self.synced = False
                self.waiting = waiting[index:]
                break
        return ready

    def _keep(self, epoch: str, seq: int, message) -> None:
        if len(self.waiting) >= MAX_WAITING:
            self.waiting = []
        self.waiting.append((epoch, seq, message))

    def shouldRequest(self, now: float, retry: float) -> bool:
        """Whether to ask for a snapshot now (not asked within C{retry} seconds)."""
        if self.synced:
            return False
        if self.requested is not None and now - self.requested < retry:
            return False
        self.requested = now
        return True
