"""
Live presence for chat clients, driven by L{IClusterListener}.

A logged-in client follows users (C{SUBSCRIBE_PRESENCE}) and, by default,
the channels it joined.  The hub indexes the subscribers by what they
follow (clienteId -> clients, canalId -> clients), so each cluster event
costs one dictionary lookup per key it carries and reaches only the
clients it concerns: a node holding a million remote sessions sends
nothing to a client that follows none of them.  Each event is encoded
once and the same bytes are written to every client it concerns.

Events (C{"command": "EVENT"}):

- C{USER_ONLINE} / C{USER_OFFLINE}: a session of a followed user appeared
  or ended somewhere in the cluster (C{sesiones}: how many that user has
  now);
- C{MEMBER_JOINED} / C{MEMBER_LEFT}: another session joined or left one
  of the client's channels (a session that ends leaves its channels).
"""

from __future__ import annotations

from twisted.logger import Logger
from zope.interface import implementer

from clustersync.interfaces import IClusterListener
from clustersync.wire.codec import encodeRaw

__all__ = ["PresenceHub", "MAX_FOLLOWED"]

#: Most users one session may follow.
MAX_FOLLOWED = 1000


def _who(session) -> dict:
    return {"clienteId": session.clienteId, "usuario": session.usuario,
            "serverId": session.serverId, "sessionId": session.sessionId}


@implementer(IClusterListener)
class PresenceHub:
    """
    The presence subscriptions of one gateway's clients.

    @ivar node: the L{ICluster} provider (asked for a user's session count).
    @ivar followers: clienteId -> the clients following that user.
    @ivar members: canalId -> the local clients getting that channel's
        member events.
    @ivar pushed: how many event lines were written (for tests and
        measurements).
    """

    _log = Logger()

    def __init__(self, node) -> None:
        self.node = node
        self.followers: dict[int, set] = {}
        self.members: dict[int, set] = {}
        self._following: dict = {}  # client -> set of clienteIds
        self._channels: dict = {}  # client -> set of canalIds
        self.pushed = 0

    # Subscriptions --------------------------------------------------------

    def following(self, client) -> set[int]:
        """The clienteIds C{client} follows."""
        return self._following.get(client, set())

    def follow(self, client, clienteIds) -> set[int]:
        """
        Make C{client} follow C{clienteIds}.

        @return: every clienteId it now follows.
        @raise ValueError: it would follow more than L{MAX_FOLLOWED}.
        """
        mine = self._following.setdefault(client, set())
        if len(mine | set(clienteIds)) > MAX_FOLLOWED:
            raise ValueError(f"a session may follow at most {MAX_FOLLOWED} users")
        for clienteId in clienteIds:
            mine.add(clienteId)
            self.followers.setdefault(clienteId, set()).add(client)
        return mine

    def unfollow(self, client, clienteIds=None) -> None:
        """Stop C{client} following C{clienteIds} (every user if C{None})."""
        mine = self._following.get(client)
        if not mine:
            return
        for clienteId in list(mine if clienteIds is None else clienteIds):
            mine.discard(clienteId)
            self._drop(self.followers, clienteId, client)
        if not mine:
            del self._following[client]

    def watchChannel(self, client, canalId: int) -> None:
        """Send C{client} the member events of C{canalId}."""
        self._channels.setdefault(client, set()).add(canalId)
        self.members.setdefault(canalId, set()).add(client)

    def unwatchChannel(self, client, canalId: int) -> None:
        """Stop sending C{client} the member events of C{canalId}."""
        mine = self._channels.get(client)
        if mine is not None:
            mine.discard(canalId)
            if not mine:
                del self._channels[client]
        self._drop(self.members, canalId, client)

    def forget(self, client) -> None:
        """C{client}'s session ended: drop every subscription of it."""
        self.unfollow(client)
        for canalId in self._channels.pop(client, ()):
            self._drop(self.members, canalId, client)

    @staticmethod
    def _drop(index: dict, key, client) -> None:
        clients = index.get(key)
        if clients is not None:
            clients.discard(client)
            if not clients:
                del index[key]

    # Pushing --------------------------------------------------------------

    def _push(self, clients, payload: dict, exclude: str) -> None:
        line = None
        for client in list(clients):
            if client.sessionId == exclude:
                continue
            if line is None:
                line = encodeRaw({"command": "EVENT", "payload": payload}) + b"\n"
            if client.sendRaw(line):
                self.pushed += 1

    def _presence(self, session, evento: str) -> None:
        followers = self.followers.get(session.clienteId)
        if not followers:
            return

        def counted(sessions):
            self._push(followers, {"evento": evento, **_who(session), "sesiones": len(sessions)},
                       session.sessionId)

        self.node.lookupUser(session.clienteId).addCallback(counted).addErrback(
            lambda f: self._log.failure("presence event failed", f))

    def _membership(self, session, canalId: int, evento: str) -> None:
        clients = self.members.get(canalId)
        if clients:
            self._push(clients, {"evento": evento, "canalId": canalId, **_who(session)},
                       session.sessionId)

    def _watchedOf(self, session):
        # Walk the smaller of the session's channels and the watched ones.
        canales = session.canales
        if len(canales) <= len(self.members):
            return [c for c in canales if c in self.members]
        return [c for c in self.members if c in canales]

    # IClusterListener -------------------------------------------------------

    def peerConnected(self, peer) -> None:
        """Nothing: a peer's sessions arrive as L{sessionAdded}."""

    def peerDisconnected(self, peer, reason) -> None:
        """Nothing: its sessions were already removed one by one."""

    def sessionAdded(self, session) -> None:
        """A session appeared: tell its user's followers and its channels."""
        self._presence(session, "USER_ONLINE")
        for canalId in self._watchedOf(session):
            self._membership(session, canalId, "MEMBER_JOINED")

    def sessionRemoved(self, session) -> None:
        """A session ended: tell its user's followers and its channels."""
        self._presence(session, "USER_OFFLINE")
        for canalId in self._watchedOf(session):
            self._membership(session, canalId, "MEMBER_LEFT")

    def membershipChanged(self, session, canalId, joined) -> None:
        """A session joined or left C{canalId}: tell that channel's watchers."""
        self._membership(session, canalId, "MEMBER_JOINED" if joined else "MEMBER_LEFT")
