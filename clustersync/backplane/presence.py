"""
What arrives on the presence and sync subjects: numbered state events,
heartbeats, good-byes, snapshot requests and replies (see
L{clustersync.backplane.streams} for the numbering).
"""

from __future__ import annotations

from clustersync.backplane.streams import APPLY, RESYNC, InboundStream
from clustersync.backplane.subjects import EPOCH, KIND, SEQ, SERVER, VIA
from clustersync.wire.codec import ChannelMembership, ClientConnected, ClientDisconnected, SyncState

__all__ = ["PresenceReceiver"]

_STATE = (ClientConnected, ClientDisconnected, ChannelMembership)


class PresenceReceiver:
    """
    Applies other servers' presence to the node, through their backplane
    links (made on first hearing of a server).

    @ivar backplane: the L{clustersync.backplane.bridge.Backplane}.
    """

    def __init__(self, backplane) -> None:
        self.backplane = backplane

    def onPresence(self, msg) -> None:
        """A message on a server's presence subject: an event, a heartbeat or a good-bye."""
        bp = self.backplane
        serverId = bp.subjects.presenceServer(msg.subject)
        if serverId is None or serverId == bp.serverId:
            return
        headers = msg.headers
        kind = headers.get(KIND)
        via = headers.get(VIA, serverId)
        if bp.legacy.heard(serverId, via, kind):
            return
        if kind == "bye":
            bp.forget(serverId, "left the backplane")
            return
        remote = bp.remoteFor(serverId, via)
        if remote is None:
            return
        stream = remote.stream
        stream.lastHeard = bp.clock.seconds()
        epoch = headers.get(EPOCH, "")
        seq = _number(headers)
        if kind == "hb":
            if stream.heartbeat(epoch, seq):
                self.requestSync(serverId, stream)
            return
        message = bp.decodeLine(msg.data, serverId, "presence")
        if message is None:
            return
        if isinstance(message, SyncState):
            self.applySnapshot(remote, epoch, seq, message)
        elif isinstance(message, _STATE):
            outcome = stream.offer(epoch, seq, message)
            if outcome is APPLY:
                bp.node.dispatch(remote.link, message)
            elif outcome is RESYNC:
                bp.counters["gaps"] += 1
                self.requestSync(serverId, stream)
        else:
            bp.reject("type", f"{message.__class__.__name__} on the presence subject of {serverId}")

    def applySnapshot(self, remote, epoch: str, seq: int, message) -> None:
        """
        Apply a server's snapshot (unless older than what is applied), then
        the events kept while it was awaited.
        """
        ready = remote.stream.snapshot(epoch, seq)
        if ready is None:
            return
        self.backplane.counters["snapshots"] += 1
        dispatch = self.backplane.node.dispatch
        link = remote.link
        dispatch(link, message)
        for event in ready:
            dispatch(link, event)
        if not remote.stream.synced:
            self.requestSync(link.serverId, remote.stream)

    def requestSync(self, serverId: str, stream: InboundStream) -> None:
        """Ask C{serverId} for its snapshot (at most once per heartbeat interval)."""
        bp = self.backplane
        if stream.shouldRequest(bp.clock.seconds(), bp.interval):
            bp.counters["sync_requests"] += 1
            bp.bus.publish(bp.subjects.sync(serverId), b"", {SERVER: bp.serverId}, bp.inbox)

    def onSyncRequest(self, msg) -> None:
        """Answer a snapshot request: for every stream of this node, or the one asked for."""
        bp = self.backplane
        if not msg.reply:
            return
        if msg.subject == bp.subjects.syncAll:
            streams = bp.streams()
        elif msg.subject == bp.subjects.sync(bp.serverId):
            streams = [bp.own]
        else:
            streams = [bp.legacy.streamFor(msg.subject)]
        for stream in streams:
            if stream is not None:
                bp.bus.publish(msg.reply, bp.snapshotLine(stream.serverId), {
                    SERVER: stream.serverId, EPOCH: stream.epoch, SEQ: str(stream.seq),
                    VIA: bp.serverId})

    def onSyncReply(self, msg) -> None:
        """A server's snapshot, answering this node's request."""
        bp = self.backplane
        headers = msg.headers
        serverId = headers.get(SERVER)
        if serverId is None or serverId == bp.serverId:
            return
        via = headers.get(VIA, serverId)
        if bp.legacy.heard(serverId, via, None):
            return
        message = bp.decodeLine(msg.data, serverId, "sync reply")
        if not isinstance(message, SyncState):
            return
        remote = bp.remoteFor(serverId, via)
        if remote is None:
            return
        remote.stream.lastHeard = bp.clock.seconds()
        self.applySnapshot(remote, headers.get(EPOCH, ""), _number(headers), message)


def _number(headers: dict) -> int:
    """The C{Cs-Seq} header as a number (0 when missing or not one)."""
    try:
        return int(headers.get(SEQ, "0"))
    except ValueError:
        return 0
