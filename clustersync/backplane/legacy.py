"""
Existing servers on the backplane: a server linked to this node over the
peer protocol is published on the backplane by this node (its presence
stream, as if it were on NATS itself), and what the other servers send it
on its subject is written to its link by this node.
"""

from __future__ import annotations

from twisted.logger import Logger
from zope.interface import implementer

from clustersync.backplane.streams import OutboundStream
from clustersync.backplane.subjects import KIND
from clustersync.interfaces import IClusterListener
from clustersync.wire.codec import (
    ChannelMembership, ChannelMembershipPayload, ChannelMessage, ClientDisconnected,
    ClientDisconnectedPayload, DirectMessage, ProtocolError, SessionMessage, decode, encode,
    encodeConnected,
)

__all__ = ["LegacyBridge"]

_FORWARDED = (DirectMessage, ChannelMessage, SessionMessage)


@implementer(IClusterListener)
class LegacyBridge:
    """
    The servers this node bridges: those linked to it directly (by TCP)
    that are not on the backplane themselves.  Of two nodes linked to the
    same existing server, the one with the smaller serverId bridges it.

    @ivar streams: serverId -> its L{OutboundStream}, for each bridged server.
    """

    _log = Logger()

    def __init__(self, backplane) -> None:
        self.backplane = backplane
        self.streams: dict[str, OutboundStream] = {}
        self._subscriptions: dict[str, list] = {}

    def _direct(self, serverId: str):
        link = self.backplane.node.linkFor(serverId)
        if link is None or getattr(link, "virtual", False):
            return None
        return link

    def bridges(self, serverId: str) -> bool:
        """Whether this node publishes for C{serverId}."""
        return serverId in self.streams

    def streamFor(self, syncSubject: str) -> OutboundStream | None:
        """The bridged stream whose sync subject is C{syncSubject}."""
        subjects = self.backplane.subjects
        for serverId, stream in self.streams.items():
            if subjects.sync(serverId) == syncSubject:
                return stream
        return None

    def heard(self, serverId: str, via: str, kind: str | None) -> bool:
        """
        Presence of C{serverId}, published by C{via}, arrived: C{True} if
        this node links to that server directly (the message is then not
        used).  Bridging moves to the node with the smaller serverId, stops
        when the server turns out to be on the backplane itself, and
        resumes when the other bridge says good-bye.
        """
        if self._direct(serverId) is None:
            return False
        mine = self.backplane.serverId
        if kind == "bye":
            if serverId not in self.streams and via != serverId:
                self._start(serverId)
        elif serverId in self.streams and (via == serverId or via < mine):
            self._stop(serverId, f"{via} publishes it")
        return True

    def _start(self, serverId: str) -> None:
        backplane = self.backplane
        stream = self.streams[serverId] = OutboundStream(serverId)
        bus, subjects = backplane.bus, backplane.subjects
        self._subscriptions[serverId] = [
            bus.subscribe(subjects.node(serverId), lambda msg: self._onForward(serverId, msg)),
            bus.subscribe(subjects.sync(serverId), backplane.presence.onSyncRequest),
        ]
        self._log.info("backplane: bridging {peer}", peer=serverId)
        if backplane.ready:
            backplane.publishSnapshot(stream)

    def _stop(self, serverId: str, why: str) -> None:
        self.streams.pop(serverId, None)
        for d in self._subscriptions.pop(serverId, ()):
            d.addCallback(self.backplane.bus.unsubscribe)
        self._log.info("backplane: no longer bridging {peer} ({why})", peer=serverId, why=why)

    def _onForward(self, serverId: str, msg) -> None:
        """A message for a bridged server: write it to its link, from this node."""
        link = self._direct(serverId)
        try:
            message = decode(msg.data)
        except ProtocolError as e:
            self.backplane.reject("bad_line", f"message for {serverId}: {e}")
            return
        if not isinstance(message, _FORWARDED):
            self.backplane.reject("type", f"{message.__class__.__name__} for {serverId}")
            return
        if link is None or not link.sendLine(self.backplane.relayLine(message)):
            self.backplane.counters["relay_failed"] += 1
            return
        self.backplane.counters["relayed"] += 1

    def relayAll(self, message) -> None:
        """Write a BROADCAST from the backplane to every bridged server."""
        if not self.streams:
            return
        line = self.backplane.relayLine(message)
        for serverId in self.streams:
            link = self._direct(serverId)
            if link is not None and link.sendLine(line):
                self.backplane.counters["relayed"] += 1

    # IClusterListener: what a bridged server's link changes ---------------

    def peerConnected(self, peer) -> None:
        """A direct link came up: bridge its server."""
        if peer.direction != "backplane" and peer.serverId not in self.streams:
            if not self.backplane.isRemote(peer.serverId):
                self._start(peer.serverId)

    def peerDisconnected(self, peer, reason) -> None:
        """A bridged server's link was lost (its sessions already went): good-bye."""
        stream = self.streams.get(peer.serverId)
        if stream is None or peer.direction == "backplane":
            return
        backplane = self.backplane
        if backplane.bus.connected:
            backplane.publishPresence(stream, b"", {KIND: "bye"})
        self._stop(peer.serverId, f"link lost: {reason}")

    def sessionAdded(self, session) -> None:
        """Publish a bridged server's new session."""
        stream = self.streams.get(session.serverId)
        if stream is not None:
            self.backplane.publishLegacyEvent(stream, encodeConnected(stream.serverId, session))

    def sessionRemoved(self, session) -> None:
        """Publish the end of a bridged server's session."""
        stream = self.streams.get(session.serverId)
        if stream is not None:
            self.backplane.publishLegacyEvent(stream, encode(ClientDisconnected(
                stream.serverId, ClientDisconnectedPayload(session.clienteId, session.sessionId))))

    def membershipChanged(self, session, canalId, joined) -> None:
        """Publish a bridged server's channel change."""
        stream = self.streams.get(session.serverId)
        if stream is not None:
            self.backplane.publishLegacyEvent(stream, encode(ChannelMembership(
                stream.serverId, ChannelMembershipPayload(
                    session.sessionId, session.clienteId, canalId, "JOIN" if joined else "LEAVE"))))
