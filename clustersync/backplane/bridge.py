"""
The bridge between a L{ClusterNode} and NATS.

Every server heard of on the backplane becomes a
L{clustersync.backplane.link.BackplaneLink} in the node's link registry, so
the node routes to it exactly as to a mesh peer: a DIRECT / CHANNEL /
SESSION line is published only to the subject of a server hosting its
target.  The node hands its state events and BROADCAST lines to the bridge
once (L{publishState}, L{publishBroadcast}) instead of to each of those
links.  What arrives is decoded and dispatched to the node's handlers with
the sender's link, so handlers and plugins see the very messages a mesh
link would give them.

State and liveness (see L{clustersync.backplane.streams}): presence events
are numbered; a joining (or reconnected) node asks every server for its
snapshot with one request on the cluster's sync subject; each server
heartbeats every quarter of C{dead_peer_timeout}, and a server not heard of
for three quarters of it is dropped, with its sessions.
"""

from __future__ import annotations

import collections

from msgspec.structs import replace
from twisted.internet.defer import gatherResults, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from clustersync.cluster.values import Delivery
from clustersync.errors import PeerUnavailable
from clustersync.backplane.legacy import LegacyBridge
from clustersync.backplane.link import BackplaneLink
from clustersync.backplane.presence import PresenceReceiver
from clustersync.backplane.streams import InboundStream, OutboundStream
from clustersync.backplane.subjects import EPOCH, KIND, SEQ, SERVER, VIA, Subjects
from clustersync.wire.codec import (
    Broadcast, ChannelMessage, DirectMessage, ProtocolError, SessionMessage, decode, encode,
    encodeSync,
)

__all__ = ["Backplane"]

_FORWARDED = (DirectMessage, ChannelMessage, SessionMessage)


class _Remote:
    """One server heard of on the backplane: its link and its stream."""

    __slots__ = ("link", "stream")

    def __init__(self, link: BackplaneLink, stream: InboundStream) -> None:
        self.link = link
        self.stream = stream


class Backplane:
    """
    One node's side of the backplane.

    @ivar node: the L{clustersync.cluster.node.ClusterNode}.
    @ivar bus: the L{clustersync.backplane.bus.NatsBus} (or a test double
        with the same methods).
    @ivar subjects: the cluster's L{Subjects}.
    @ivar counters: events of the backplane, by name (for metrics).
    """

    _log = Logger()

    def __init__(self, node, bus, cluster: str, clock) -> None:
        self.node = node
        self.bus = bus
        self.clock = clock
        self.serverId = node.serverId
        self.subjects = Subjects(cluster)
        self.counters: collections.Counter = collections.Counter()
        self.outages = 0
        self.downSince: float | None = None
        self.ready = False
        timeout = node.config.deadPeerTimeout
        #: Heartbeats go out every quarter of dead_peer_timeout; a server
        #: silent for three quarters of it is dropped.
        self.interval = timeout / 4
        self.silence = timeout * 3 / 4
        self.own = OutboundStream(self.serverId)
        self._remotes: dict[str, _Remote] = {}
        self._timer = LoopingCall(self._tick)
        self._timer.clock = clock
        self.inbox = ""
        self.legacy = LegacyBridge(self)
        self.presence = PresenceReceiver(self)
        bus.onState = self._busState

    # Lifecycle -------------------------------------------------------------

    def start(self):
        """
        Connect, subscribe, announce this node and ask for everyone's state.

        @return: a L{Deferred} firing once subscribed and announced.
        """
        self.node.attachBackplane(self)
        d = self.bus.start()
        d.addCallback(lambda _: self._subscribe())
        return d

    def _subscribe(self):
        s = self.subjects
        self.inbox = self.bus.newInbox()
        subs = [
            self.bus.subscribe(s.presenceAll, self.presence.onPresence),
            self.bus.subscribe(s.node(self.serverId), self._onForward),
            self.bus.subscribe(s.broadcast, self._onBroadcast),
            self.bus.subscribe(s.syncAll, self.presence.onSyncRequest),
            self.bus.subscribe(s.sync(self.serverId), self.presence.onSyncRequest),
            self.bus.subscribe(self.inbox, self.presence.onSyncReply),
        ]

        def subscribed(_):
            self.ready = True
            self._timer.start(self.interval, now=False)
            self._announce()

        return gatherResults(subs, consumeErrors=True).addCallback(subscribed)

    def stop(self):
        """Say good-bye for every stream of this node, then close the connection."""
        if self._timer.running:
            self._timer.stop()
        if self.bus.connected:
            for stream in self.streams():
                self.publishPresence(stream, b"", {KIND: "bye"})
        self.ready = False
        return self.bus.stop()

    def _busState(self, up: bool) -> None:
        if not up:
            self.outages += 1
            self.downSince = self.clock.seconds()
            self._log.warn("backplane down: sends to {n} servers fail until it is back",
                           n=len(self._remotes))
            return
        self.downSince = None
        if self.ready:
            self.counters["reconnected"] += 1
            self._announce()

    def _announce(self) -> None:
        """Publish this node's snapshots and ask every server for its own."""
        for stream in self.streams():
            self.publishSnapshot(stream)
        self.bus.publish(self.subjects.syncAll, b"", {SERVER: self.serverId}, self.inbox)
        self.counters["sync_requests"] += 1

    def streams(self):
        return [self.own, *self.legacy.streams.values()]

    # Publishing ------------------------------------------------------------

    def publishPresence(self, stream: OutboundStream, line: bytes, headers: dict) -> bool:
        headers[EPOCH] = stream.epoch
        headers[VIA] = self.serverId
        return self.bus.publish(self.subjects.presence(stream.serverId), line, headers)

    def publishEvent(self, stream: OutboundStream, line: bytes) -> bool:
        return self.publishPresence(stream, line, {SEQ: str(stream.next())})

    def publishSnapshot(self, stream: OutboundStream) -> bool:
        return self.publishEvent(stream, self.snapshotLine(stream.serverId))

    def snapshotLine(self, serverId: str) -> bytes:
        return encodeSync(serverId, self.node.state.sessionsOf(serverId))

    def publishState(self, line: bytes) -> int:
        """
        Publish one of this node's state events (the node's hook).

        @return: how many servers it was published for (0 when down).
        """
        if not self.publishEvent(self.own, line):
            return 0
        return len(self._remotes)

    def publishLegacyEvent(self, stream: OutboundStream, line: bytes) -> None:
        """Publish a state event of an existing server this node bridges."""
        self.publishEvent(stream, line)

    def publishBroadcast(self, line: bytes):
        """
        Publish one BROADCAST line to the cluster (the node's hook).

        @return: C{(servers, confirmed)}: the servers it is for and a
            L{Deferred} firing once NATS took it; or C{(servers, None)}
            when the backplane is down (nothing was sent).
        """
        servers = self.servers()
        if not servers:
            return servers, succeed(None)
        if not self.bus.publish(self.subjects.broadcast, line):
            return servers, None
        if self.node.config.confirmSends:
            return servers, self.bus.confirm()
        return servers, succeed(None)

    def joinBroadcast(self, sent, line: bytes):
        """
        Publish a BROADCAST line and join its outcome to C{sent} (the
        node's send to itself and its mesh links).

        @return: a L{Deferred} firing with the L{Delivery} naming every
            server, or failing with L{PeerUnavailable} naming those of the
            mesh or the backplane that were not reached.
        """
        servers, confirmed = self.publishBroadcast(line)
        if not servers:
            return sent
        if confirmed is not None:
            self.node.metrics.countOut("BROADCAST", len(servers))
        reached = []

        def backplaneDone(outcome):
            if not isinstance(outcome, Failure):
                reached.extend(servers)
            return sent

        def merge(outcome):
            if isinstance(outcome, Failure):
                if not outcome.check(PeerUnavailable):
                    return outcome
                lost, delivery = list(outcome.value.servers), outcome.value.delivery
            else:
                lost, delivery = [], outcome
            lost += [s for s in servers if s not in reached]
            delivery = Delivery(delivery.local, tuple(sorted((*delivery.servers, *reached))))
            if lost:
                raise PeerUnavailable(sorted(lost), delivery)
            return delivery

        if confirmed is None:
            return sent.addBoth(merge)
        return confirmed.addBoth(backplaneDone).addBoth(merge)

    # Receiving -------------------------------------------------------------

    def decodeLine(self, data: bytes, origin: str | None, what: str):
        try:
            message = decode(data)
        except ProtocolError as e:
            self.reject("bad_line", f"{what} from {origin or '?'}: {e}")
            return None
        if origin is not None and message.origin != origin:
            self.reject("origin", f"{what}: origin {message.origin!r} on the subject of {origin!r}")
            return None
        return message

    def reject(self, reason: str, detail: str) -> None:
        self.counters["rejected"] += 1
        self.node.metrics.rejected(reason)
        self._log.warn("backplane: refused {detail}", detail=detail)

    def remoteFor(self, serverId: str, via: str) -> _Remote | None:
        """The server's record, made (with its link) on first hearing of it."""
        remote = self._remotes.get(serverId)
        if remote is not None:
            return remote
        if self.legacy.bridges(serverId):
            return None
        now = self.clock.seconds()
        link = BackplaneLink(
            serverId, self.subjects.node(serverId), via, now, self.bus.publish,
            self.bus.confirm if self.node.config.confirmSends else None, self.linkReplaced)
        if not self.node.addVirtualPeer(link):
            return None  # linked directly: the backplane's copy is not used
        remote = self._remotes[serverId] = _Remote(link, InboundStream(now))
        self._log.info("backplane: {peer} joined ({address})", peer=serverId,
                       address=link.peerAddress)
        return remote

    def linkOf(self, origin: str) -> BackplaneLink:
        """The link of C{origin}, or a stand-in for a server not yet heard of."""
        remote = self._remotes.get(origin)
        if remote is not None:
            return remote.link
        return BackplaneLink(origin, self.subjects.node(origin), origin, self.clock.seconds(),
                             self.bus.publish, closed=True)

    def _onForward(self, msg) -> None:
        message = self.decodeLine(msg.data, None, "forwarded message")
        if message is None:
            return
        if not isinstance(message, _FORWARDED):
            self.reject("type", f"{message.__class__.__name__} on this node's subject")
            return
        self.node.dispatch(self.linkOf(message.origin), message)

    def _onBroadcast(self, msg) -> None:
        message = self.decodeLine(msg.data, None, "broadcast")
        if message is None or message.origin == self.serverId:
            return
        if not isinstance(message, Broadcast):
            self.reject("type", f"{message.__class__.__name__} on the broadcast subject")
            return
        direct = self.node.linkFor(message.origin)
        if direct is not None and not getattr(direct, "virtual", False):
            return  # its server is linked to this node: it came over that link
        self.node.dispatch(self.linkOf(message.origin), message)
        self.legacy.relayAll(message)

    def relayLine(self, message) -> bytes:
        """C{message} as this node sends it on to an existing server: its origin is this node."""
        return encode(replace(message, origin=self.serverId))

    # Liveness --------------------------------------------------------------

    def _tick(self) -> None:
        """Heartbeat this node's streams; drop servers silent for too long."""
        if self.bus.connected:
            for stream in self.streams():
                self.publishPresence(stream, b"", {KIND: "hb", SEQ: str(stream.seq)})
        now = self.clock.seconds()
        for serverId, remote in list(self._remotes.items()):
            if now - remote.stream.lastHeard > self.silence:
                self.counters["dead"] += 1
                self.forget(serverId, f"dead_peer: silent on the backplane for "
                                      f"{now - remote.stream.lastHeard:.1f}s")
            elif not remote.stream.synced:
                self.presence.requestSync(serverId, remote.stream)

    def forget(self, serverId: str, reason: str) -> None:
        """Drop C{serverId} and its sessions (it left, died, or was cut off)."""
        remote = self._remotes.pop(serverId, None)
        if remote is not None and not remote.link.closed:
            remote.link.closed = True
            self.node.linkLost(remote.link, reason, True)

    def isRemote(self, serverId: str) -> bool:
        """Whether C{serverId} is reached through the backplane now."""
        remote = self._remotes.get(serverId)
        return remote is not None and not remote.link.closed

    def servers(self) -> list[str]:
        """The servers reached through the backplane now, sorted."""
        return sorted(s for s, remote in self._remotes.items() if not remote.link.closed)

    def linkReplaced(self, link) -> None:
        """The node replaced C{link} by a direct link to its server."""
        remote = self._remotes.get(link.serverId)
        if remote is not None and remote.link is link:
            del self._remotes[link.serverId]

    # Status ----------------------------------------------------------------

    def status(self) -> dict:
        """The backplane's state, for health, the status page and metrics."""
        bus = self.bus.status()
        return {
            "state": "up" if bus["connected"] else "down",
            "downSince": self.downSince,
            "outages": self.outages,
            "servers": self.servers(),
            "bridged": sorted(self.legacy.streams),
            "nats": bus,
            "counters": dict(self.counters),
        }
