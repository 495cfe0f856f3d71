"""
This node's own sessions (the L{ICluster} lifecycle calls): a client
connects or disconnects, a session joins or leaves a channel.  Each
change goes into the state, then as one event line to every peer, then to
the listeners.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed

from clustersync.cluster.listeners import Listeners
from clustersync.cluster.sending import Sending
from clustersync.cluster.values import wireInt, wireStr
from clustersync.errors import DuplicateSession, NodeDraining, UnknownSession
from clustersync.state.cluster import ClusterState, StateLimitError
from clustersync.wire.codec import (
    ChannelMembership,
    ChannelMembershipPayload,
    ClientDisconnected,
    ClientDisconnectedPayload,
    SessionInfo,
    encode,
    encodeConnected,
)

__all__ = ["LocalSessions"]


class LocalSessions:
    """
    The lifecycle of the sessions of server C{serverId} (this node).

    @ivar draining: the node is leaving the cluster: no new sessions.
    """

    draining = False

    def __init__(self, serverId: str, state: ClusterState, sending: Sending,
                 listeners: Listeners) -> None:
        self.serverId = serverId
        self._state = state
        self._sending = sending
        self._listeners = listeners

    def clientConnected(self, sessionId: str, clienteId: int, usuario: str,
                        ip: str | None = None, canales=()) -> Deferred:
        """See L{ICluster.clientConnected}."""
        if self.draining:
            return fail(NodeDraining("this node is leaving the cluster: connect to another"))
        try:
            session = SessionInfo(
                wireStr("sessionId", sessionId), wireInt("clienteId", clienteId),
                wireStr("usuario", usuario), self.serverId, wireStr("ip", ip, True),
                set(wireInt("canalId", c) for c in canales))
        except (TypeError, ValueError) as e:
            return fail(e)
        if self._state.session(self.serverId, sessionId) is not None:
            return fail(DuplicateSession(f"session {sessionId!r} already exists"))
        try:
            changes = self._state.addSession(self.serverId, session)
        except StateLimitError as e:
            return fail(e)
        self._sending.toAllPeers(encodeConnected(self.serverId, session), "CLIENT_CONNECTED")
        self._listeners.notifyChanges(changes)
        return succeed(session)

    def clientDisconnected(self, sessionId: str) -> Deferred:
        """See L{ICluster.clientDisconnected}."""
        session = self._state.session(self.serverId, sessionId)
        if session is None:
            return fail(UnknownSession(f"no local session {sessionId!r}"))
        changes = self._state.removeSession(self.serverId, sessionId)
        self._sending.toAllPeers(
            encode(ClientDisconnected(
                self.serverId, ClientDisconnectedPayload(session.clienteId, sessionId))),
            "CLIENT_DISCONNECTED",
        )
        self._listeners.notifyChanges(changes)
        return succeed(session)

    def setMembership(self, sessionId: str, canalId: int, joined: bool) -> Deferred:
        """
        See L{ICluster.joinChannel} (C{joined}) and L{ICluster.leaveChannel}:
        fires with whether the membership changed.
        """
        session = self._state.session(self.serverId, sessionId)
        if session is None:
            return fail(UnknownSession(f"no local session {sessionId!r}"))
        try:
            canalId = wireInt("canalId", canalId)
            changes = self._state.setMembership(self.serverId, sessionId, canalId, joined)
        except (StateLimitError, TypeError, ValueError) as e:
            return fail(e)
        if changes:
            self._sending.toAllPeers(
                encode(ChannelMembership(self.serverId, ChannelMembershipPayload(
                    sessionId, session.clienteId, int(canalId), "JOIN" if joined else "LEAVE"))),
                "CHANNEL_MEMBERSHIP",
            )
            self._listeners.notifyChanges(changes)
        return succeed(bool(changes))
