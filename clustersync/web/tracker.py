"""
What the status page shows that the node does not keep: every peer ever
seen (down ones too, with since when) and a ring buffer of recent events,
maintained from L{IClusterListener} notifications.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from twisted.logger import Logger
from zope.interface import implementer

from clustersync.interfaces import IClusterListener

__all__ = ["StatusTracker", "peerRecord", "sessionRecord"]


def sessionRecord(session) -> dict:
    """A JSON-friendly dict of one L{clustersync.wire.codec.SessionInfo}."""
    return {
        "sessionId": session.sessionId,
        "clienteId": session.clienteId,
        "usuario": session.usuario,
        "serverId": session.serverId,
        "ip": session.ip,
        "canales": sorted(session.canales),
    }


def peerRecord(peer, state: str, since: float, reason: str | None = None) -> dict:
    """A JSON-friendly dict of one peer as the status page lists it."""
    return {
        "serverId": peer.serverId,
        "state": state,
        "since": since,
        "direction": peer.direction,
        "address": peer.address,
        "tls": bool(peer.tls),
        "kind": getattr(peer, "kind", "existing"),
        "reason": reason,
    }


@implementer(IClusterListener)
class StatusTracker:
    """
    Listens to one node and remembers what an operator wants to see.

    @ivar peers: serverId -> the peer's record (see L{peerRecord}); a peer
        whose link was lost stays listed as C{"down"} (or C{"left"}, when
        it said it was leaving) since that moment.
    @ivar peerEvents: the most recent peer events (links up and down),
        oldest first: a bounded L{deque} of dicts with C{time}, C{seq} (an
        increasing number), C{kind} and details, kept apart so that a burst
        of session events (a large SYNC_STATE) does not push them out.
    @ivar events: the most recent other events (sessions, memberships),
        likewise.
    @ivar started: when this tracker started (seconds since the epoch).
    """

    _log = Logger()

    def __init__(self, node, clock, maxEvents: int = 200) -> None:
        self.node = node
        self.clock = clock
        self.peers: dict[str, dict] = {}
        self.peerEvents: deque = deque(maxlen=maxEvents)
        self.events: deque = deque(maxlen=maxEvents)
        self.started = clock.seconds()
        self._subscribers: list[Callable[[str, dict], None]] = []
        self._running = False
        self._seq = 0

    def start(self) -> None:
        """Listen to the node and learn the peers already linked."""
        if self._running:
            return
        self._running = True
        self.started = self.clock.seconds()
        self.node.addListener(self)
        self.node.peers().addCallback(self._seed)

    def _seed(self, peers) -> None:
        for peer in peers:
            if peer.serverId not in self.peers:
                self.peers[peer.serverId] = peerRecord(
                    peer, "up", peer.since or self.clock.seconds())

    def stop(self) -> None:
        """Stop listening."""
        if self._running:
            self._running = False
            self.node.removeListener(self)

    def subscribe(self, callback: Callable[[str, dict], None]) -> None:
        """
        Call C{callback(kind, event)} for every event from now on (C{kind}
        is C{"peer"} for a peer that came or went, C{"session"} or
        C{"membership"} otherwise).
        """
        self._subscribers.append(callback)

    def unsubscribe(self, callback) -> None:
        """Stop calling C{callback}."""
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    def peerList(self) -> list[dict]:
        """Every known peer's record, up ones first, then by serverId."""
        return sorted(
            (dict(r) for r in self.peers.values()),
            key=lambda r: (r["state"] != "up", r["serverId"]),
        )

    def recentEvents(self, limit: int | None = None) -> list[dict]:
        """The most recent events, newest first."""
        events = sorted([*self.peerEvents, *self.events], key=lambda e: e["seq"], reverse=True)
        return events[:limit] if limit is not None else events

    def _record(self, group: str, event: dict) -> None:
        event["time"] = self.clock.seconds()
        self._seq += 1
        event["seq"] = self._seq
        (self.peerEvents if group == "peer" else self.events).append(event)
        for callback in list(self._subscribers):
            try:
                callback(group, event)
            except Exception:
                self._log.failure("status subscriber {callback!r} failed", callback=callback)

    # IClusterListener --------------------------------------------------

    def peerConnected(self, peer) -> None:
        """A peer link was established: the peer is up since then."""
        self.peers[peer.serverId] = peerRecord(peer, "up", peer.since or self.clock.seconds())
        self._record("peer", {
            "kind": "peerConnected", "serverId": peer.serverId,
            "direction": peer.direction, "address": peer.address, "tls": bool(peer.tls),
        })

    def peerDisconnected(self, peer, reason) -> None:
        """A peer link was lost: the peer is down since now."""
        # A peer that said it was leaving (X_LEAVING) is "left", not failed.
        state = "left" if str(reason).startswith("left:") else "down"
        self.peers[peer.serverId] = peerRecord(peer, state, self.clock.seconds(), str(reason))
        self._record("peer", {
            "kind": "peerDisconnected", "serverId": peer.serverId, "reason": str(reason),
        })

    def sessionAdded(self, session) -> None:
        """Record a new session."""
        self._record("session", {
            "kind": "sessionAdded", "serverId": session.serverId,
            "sessionId": session.sessionId, "usuario": session.usuario,
        })

    def sessionRemoved(self, session) -> None:
        """Record a session that ended."""
        self._record("session", {
            "kind": "sessionRemoved", "serverId": session.serverId,
            "sessionId": session.sessionId, "usuario": session.usuario,
        })

    def membershipChanged(self, session, canalId, joined) -> None:
        """Record a JOIN or a LEAVE."""
        self._record("membership", {
            "kind": "channelJoined" if joined else "channelLeft",
            "serverId": session.serverId, "sessionId": session.sessionId,
            "usuario": session.usuario, "canalId": canalId,
        })
