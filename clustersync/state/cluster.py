"""
Cluster state: which sessions live on which server, and the indexes that make
routing a dictionary lookup.

Pure code: no Twisted, no I/O.  Every mutating method returns the list of
L{Change}s it made so that the caller (L{clustersync.cluster.node}) can tell
listeners; a method that raises has changed nothing.

Sessions are keyed by C{(serverId, sessionId)}: existing servers use ids such
as C{session-12}, so two servers may well reuse one C{sessionId}.
"""

from __future__ import annotations

from typing import Iterable, Iterator, NamedTuple

from clustersync.errors import StateLimitError
from clustersync.wire.codec import SessionInfo

__all__ = ["ClusterState", "Change", "StateLimitError", "ADDED", "REMOVED", "JOINED", "LEFT"]

ADDED = "added"
REMOVED = "removed"
JOINED = "joined"
LEFT = "left"


class Change(NamedTuple):
    """
    One change to the state.

    @ivar kind: L{ADDED}, L{REMOVED}, L{JOINED} or L{LEFT}.
    @ivar session: the session concerned (its C{serverId} is its server).
    @ivar canalId: the channel for L{JOINED}/L{LEFT}, else C{None}.
    """

    kind: str
    session: SessionInfo
    canalId: int | None = None



class _ServerView:
    """
    The sessions of one server and its per-server indexes.
    """

    __slots__ = ("sessions", "byUser", "byChannel", "userSessions")

    def __init__(self) -> None:
        self.sessions: dict[str, SessionInfo] = {}
        self.byUser: dict[int, set[str]] = {}
        self.byChannel: dict[int, set[str]] = {}
        #: clienteId -> the user's sessions as a tuple, rebuilt when they
        #: change: what delivery reads for every direct message.
        self.userSessions: dict[int, tuple[SessionInfo, ...]] = {}

    def indexUser(self, clienteId: int) -> None:
        """Rebuild L{userSessions} of C{clienteId} from L{byUser}."""
        ids = self.byUser.get(clienteId)
        if not ids:
            self.userSessions.pop(clienteId, None)
        elif len(ids) == 1:
            for i in ids:
                self.userSessions[clienteId] = (self.sessions[i],)
        else:
            self.userSessions[clienteId] = tuple(map(self.sessions.__getitem__, ids))


def _link(index: dict, key, member) -> bool:
    """Add C{member} to C{index[key]}; return C{True} if the key is new."""
    members = index.get(key)
    if members is None:
        index[key] = {member}
        return True
    members.add(member)
    return False


def _unlink(index: dict, key, member) -> bool:
    """Remove C{member} from C{index[key]}; return C{True} if the key is gone."""
    members = index.get(key)
    if members is None:
        return False
    members.discard(member)
    if not members:
        del index[key]
        return True
    return False


class ClusterState:
    """
    Local and remote sessions, indexed by server, clienteId, canalId and
    sessionId.

    @ivar localId: this node's serverId; its sessions are the local ones.
    @ivar maxSessionsPerServer: refuse to hold more sessions for one remote
        server (C{None}: unbounded).
    @ivar maxChannelsPerSession: refuse a session in more channels.
    """

    def __init__(
        self,
        localId: str,
        maxSessionsPerServer: int | None = None,
        maxChannelsPerSession: int | None = None,
    ) -> None:
        self.localId = localId
        self.maxSessionsPerServer = maxSessionsPerServer
        self.maxChannelsPerSession = maxChannelsPerSession
        self._servers: dict[str, _ServerView] = {localId: _ServerView()}
        #: clienteId -> the tuple of this node's own sessions of that user
        #: (what C{userSessionsOn(localId, clienteId)} gives), for the
        #: receive hot path to read without a call.  The same mapping for
        #: the whole life of the state (the local view is never dropped);
        #: read it, never mutate it.
        self.localUserSessions: dict[int, tuple[SessionInfo, ...]] = (
            self._servers[localId].userSessions)
        # clienteId / canalId / sessionId -> servers holding at least one.
        self._userServers: dict[int, set[str]] = {}
        #: clienteId -> the servers hosting a session of that user (what
        #: L{serversOfUser} gives), for the send hot path to read without a
        #: call.  The same mapping for the whole life of the state; read it,
        #: never mutate it or the sets it holds.
        self.userServers: dict[int, set[str]] = self._userServers
        self._channelServers: dict[int, set[str]] = {}
        self._sessionServers: dict[str, set[str]] = {}

    # Queries ---------------------------------------------------------------

    def servers(self) -> list[str]:
        """Every server with a view (this node included)."""
        return list(self._servers)

    def hasServer(self, serverId: str) -> bool:
        """Whether C{serverId} has a view (known, even with no session)."""
        return serverId in self._servers

    def session(self, serverId: str, sessionId: str) -> SessionInfo | None:
        """The session C{sessionId} of C{serverId}, or C{None}."""
        view = self._servers.get(serverId)
        return None if view is None else view.sessions.get(sessionId)

    def sessionsOf(self, serverId: str) -> list[SessionInfo]:
        """Every session of C{serverId} (empty when unknown)."""
        view = self._servers.get(serverId)
        return [] if view is None else list(view.sessions.values())

    def allSessions(self) -> Iterator[SessionInfo]:
        """Every session of every server."""
        for view in self._servers.values():
            yield from view.sessions.values()

    def countSessions(self, serverId: str | None = None) -> int:
        """How many sessions C{serverId} has, or the whole cluster has."""
        if serverId is None:
            return sum(len(v.sessions) for v in self._servers.values())
        view = self._servers.get(serverId)
        return 0 if view is None else len(view.sessions)

    def serversOfUser(self, clienteId: int) -> set[str]:
        """Servers that host a session of C{clienteId} (do not mutate)."""
        return self._userServers.get(clienteId, _EMPTY)

    def serversOfChannel(self, canalId: int) -> set[str]:
        """Servers that host a member of C{canalId} (do not mutate)."""
        return self._channelServers.get(canalId, _EMPTY)

    def serversOfSession(self, sessionId: str) -> set[str]:
        """Servers that host a session with id C{sessionId} (do not mutate)."""
        return self._sessionServers.get(sessionId, _EMPTY)

    def userSessionsOn(self, serverId: str, clienteId: int) -> tuple[SessionInfo, ...]:
        """
        Sessions of C{clienteId} on C{serverId}: a tuple the state keeps
        (and replaces when they change), so that a direct message's
        delivery builds nothing.
        """
        view = self._servers.get(serverId)
        if view is None:
            return ()
        return view.userSessions.get(clienteId, ())

    def channelSessionsOn(self, serverId: str, canalId: int) -> list[SessionInfo]:
        """Sessions in C{canalId} on C{serverId}."""
        view = self._servers.get(serverId)
        if view is None:
            return []
        ids = view.byChannel.get(canalId, ())
        return [view.sessions[i] for i in ids]

    def userSessions(self, clienteId: int) -> list[SessionInfo]:
        """Every session of C{clienteId} in the cluster."""
        return [
            s
            for serverId in self.serversOfUser(clienteId)
            for s in self.userSessionsOn(serverId, clienteId)
        ]

    def channelMembers(self, canalId: int) -> list[SessionInfo]:
        """Every session in C{canalId} in the cluster."""
        return [
            s
            for serverId in self.serversOfChannel(canalId)
            for s in self.channelSessionsOn(serverId, canalId)
        ]

    def channels(self) -> dict[int, list[SessionInfo]]:
        """Every channel with at least one member, with its members."""
        return {c: self.channelMembers(c) for c in list(self._channelServers)}

    # Mutations -------------------------------------------------------------

    def addServer(self, serverId: str) -> None:
        """Make C{serverId} known with no session (a peer that just linked)."""
        self._servers.setdefault(serverId, _ServerView())

    def _checkChannels(self, count: int) -> None:
        if self.maxChannelsPerSession is not None and count > self.maxChannelsPerSession:
            raise StateLimitError(
                f"{count} channels for one session exceeds the limit of "
                f"{self.maxChannelsPerSession}"
            )

    def _insert(
        self, serverId: str, view: _ServerView, session: SessionInfo, touched: set | None = None
    ) -> None:
        """
        Index C{session}.  A user's sessions tuple is rebuilt at once, or
        only noted in C{touched} when given (the caller rebuilds those).
        """
        sid = session.sessionId
        view.sessions[sid] = session
        if _link(view.byUser, session.clienteId, sid):
            _link(self._userServers, session.clienteId, serverId)
            view.userSessions[session.clienteId] = (session,)
        elif touched is None:
            view.indexUser(session.clienteId)
        else:
            touched.add(session.clienteId)
        for canal in session.canales:
            if _link(view.byChannel, canal, sid):
                _link(self._channelServers, canal, serverId)
        _link(self._sessionServers, sid, serverId)

    def _delete(
        self, serverId: str, view: _ServerView, session: SessionInfo, touched: set | None = None
    ) -> None:
        """Unindex C{session}; C{touched} as for L{_insert}."""
        sid = session.sessionId
        del view.sessions[sid]
        if _unlink(view.byUser, session.clienteId, sid):
            _unlink(self._userServers, session.clienteId, serverId)
            view.userSessions.pop(session.clienteId, None)
        elif touched is None:
            view.indexUser(session.clienteId)
        else:
            touched.add(session.clienteId)
        for canal in session.canales:
            if _unlink(view.byChannel, canal, sid):
                _unlink(self._channelServers, canal, serverId)
        _unlink(self._sessionServers, sid, serverId)

    def addSession(self, serverId: str, session: SessionInfo) -> list[Change]:
        """
        Add (or replace) C{session} on C{serverId}; C{session.serverId} is set
        to C{serverId} whatever it said.

        @raise StateLimitError: a configured limit would be exceeded.
        """
        self._checkChannels(len(session.canales))
        view = self._servers.get(serverId)
        old = None if view is None else view.sessions.get(session.sessionId)
        count = 0 if view is None else len(view.sessions)
        if (
            old is None
            and serverId != self.localId
            and self.maxSessionsPerServer is not None
            and count >= self.maxSessionsPerServer
        ):
            raise StateLimitError(
                f"server {serverId!r} already has {count} sessions "
                f"(limit {self.maxSessionsPerServer})"
            )
        if view is None:
            view = self._servers[serverId] = _ServerView()
        session.serverId = serverId
        changes = []
        if old is not None:
            if old == session:
                return []
            self._delete(serverId, view, old)
            changes.append(Change(REMOVED, old))
        self._insert(serverId, view, session)
        changes.append(Change(ADDED, session))
        return changes

    def removeSession(self, serverId: str, sessionId: str) -> list[Change]:
        """Remove one session; nothing happens if it is unknown."""
        view = self._servers.get(serverId)
        if view is None:
            return []
        session = view.sessions.get(sessionId)
        if session is None:
            return []
        self._delete(serverId, view, session)
        return [Change(REMOVED, session)]

    def removeClient(self, serverId: str, clienteId: int) -> list[Change]:
        """Remove every session of C{clienteId} on C{serverId}."""
        changes: list[Change] = []
        for session in self.userSessionsOn(serverId, clienteId):
            changes.extend(self.removeSession(serverId, session.sessionId))
        return changes

    def setMembership(
        self, serverId: str, sessionId: str, canalId: int, joined: bool
    ) -> list[Change]:
        """
        Record that a session joined (or left) a channel.  Unknown sessions
        and no-op changes give no change.

        @raise StateLimitError: joining would exceed the channel limit.
        """
        view = self._servers.get(serverId)
        session = None if view is None else view.sessions.get(sessionId)
        if session is None:
            return []
        if joined:
            if canalId in session.canales:
                return []
            self._checkChannels(len(session.canales) + 1)
            session.canales.add(canalId)
            if _link(view.byChannel, canalId, sessionId):
                _link(self._channelServers, canalId, serverId)
            return [Change(JOINED, session, canalId)]
        if canalId not in session.canales:
            return []
        session.canales.discard(canalId)
        if _unlink(view.byChannel, canalId, sessionId):
            _unlink(self._channelServers, canalId, serverId)
        return [Change(LEFT, session, canalId)]

    def replaceServer(
        self, serverId: str, sessions: Iterable[SessionInfo]
    ) -> list[Change]:
        """
        Replace everything known of C{serverId} by C{sessions} (SYNC_STATE).

        Sessions that did not change give no change, so a re-sync after a
        reconnect does not make sessions flicker for listeners.

        @raise StateLimitError: C{sessions} breaks a limit; nothing changed.
        """
        incoming: dict[str, SessionInfo] = {}
        for s in sessions:
            self._checkChannels(len(s.canales))
            incoming[s.sessionId] = s
        if (
            serverId != self.localId
            and self.maxSessionsPerServer is not None
            and len(incoming) > self.maxSessionsPerServer
        ):
            raise StateLimitError(
                f"SYNC_STATE of {serverId!r} has {len(incoming)} sessions "
                f"(limit {self.maxSessionsPerServer})"
            )
        for s in incoming.values():
            s.serverId = serverId
        view = self._servers.get(serverId)
        if view is None:
            view = self._servers[serverId] = _ServerView()
        changes: list[Change] = []
        # A user with several sessions here has its tuple rebuilt once, at
        # the end (not once per session, which would cost their square).
        touched: set[int] = set()
        for sid, old in list(view.sessions.items()):
            new = incoming.get(sid)
            if new is not None and new == old:
                del incoming[sid]
                continue
            self._delete(serverId, view, old, touched)
            changes.append(Change(REMOVED, old))
        for s in incoming.values():
            self._insert(serverId, view, s, touched)
            changes.append(Change(ADDED, s))
        for clienteId in touched:
            view.indexUser(clienteId)
        return changes

    def dropServer(self, serverId: str) -> list[Change]:
        """
        Forget C{serverId} and every session it had (its link is gone).
        This node's own view cannot be dropped.
        """
        if serverId == self.localId:
            raise ValueError("cannot drop the local server")
        view = self._servers.pop(serverId, None)
        if view is None:
            return []
        changes = []
        for session in view.sessions.values():
            _unlink(self._sessionServers, session.sessionId, serverId)
            changes.append(Change(REMOVED, session))
        for clienteId in view.byUser:
            _unlink(self._userServers, clienteId, serverId)
        for canalId in view.byChannel:
            _unlink(self._channelServers, canalId, serverId)
        return changes


_EMPTY: frozenset[str] = frozenset()
