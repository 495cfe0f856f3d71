"""
The routes of the one-peer sends: per peer, how to write a line to its
current link and what the send fires with (L{PeerRoute}); per user whose
sessions all live on one peer, that peer and the start of every
DIRECT_MESSAGE line to the user (L{UserRoute}).  L{Routes} keeps both and
forgets them whenever a peer's link is replaced or lost, so a route never
points at a link that is gone.
"""

from __future__ import annotations

import attrs
from twisted.internet.defer import Deferred, succeed

from clustersync.cluster.values import Delivery, unconfirmedOne
from clustersync.wire.codec import DirectEncoder

__all__ = ["PeerRoute", "ROUTES", "Routes", "UserRoute"]

#: How many users' routes L{Routes} keeps at most (all are dropped when one
#: more is needed): 16,384 routes take about 4 MB.
ROUTES = 16384


@attrs.frozen
class PeerRoute:
    """
    How a one-peer send writes to the current link of peer C{serverId}.

    @ivar serverId: the peer.
    @ivar link: its active link when the route was made.
    @ivar delivery: what a send to it fires with, C{Delivery(0, (serverId,))}.
    @ivar context: what L{unconfirmedOne} is given if the link is lost
        before the peer confirmed the line, C{(serverId, 0)}.
    @ivar sendConfirmed: the link's C{sendConfirmed} (its C{sendLine},
        then C{whenAcknowledged}, in one call), or C{None} if it has none.
    """

    serverId: str
    link: object
    delivery: Delivery
    context: tuple
    sendConfirmed: object

    @classmethod
    def forLink(cls, link) -> PeerRoute:
        """The route to C{link}'s peer over C{link}."""
        serverId = link.serverId
        return cls(serverId, link, Delivery(0, (serverId,)), (serverId, 0),
                   getattr(link, "sendConfirmed", None))

    def send(self, line: bytes, confirm: bool) -> Deferred | None:
        """
        Write C{line} to the link.

        @param confirm: the node's C{confirm_sends}: wait for the peer to
            confirm the line (its receipt, or the TCP acknowledgement).
        @return: a L{Deferred} firing with L{delivery} (once confirmed, if
            C{confirm}), or failing with L{PeerUnavailable} if the link is
            lost first; C{None} if the link did not take the line.
        """
        if confirm:
            if self.sendConfirmed is not None:
                return self.sendConfirmed(line, self.delivery, unconfirmedOne, self.context)
            if not self.link.sendLine(line):
                return None
            whenAcknowledged = getattr(self.link, "whenAcknowledged", None)
            if whenAcknowledged is not None:
                return whenAcknowledged(self.delivery, unconfirmedOne, self.context)
            return succeed(self.delivery)
        return succeed(self.delivery) if self.link.sendLine(line) else None


@attrs.frozen
class UserRoute:
    """
    Where the DIRECT_MESSAGE lines to one user go while all of the user's
    sessions are on one peer.

    @ivar prefix: the start of each line, up to the message (see
        L{DirectEncoder.prefix}).
    @ivar peer: the L{PeerRoute} of the user's server.
    """

    prefix: bytes
    peer: PeerRoute


class Routes:
    """
    The kept routes.

    @ivar peers: serverId -> its L{PeerRoute}.
    @ivar users: clienteId -> its L{UserRoute}, at most L{ROUTES}.
    """

    def __init__(self, encoder: DirectEncoder) -> None:
        """
        @param encoder: the node's L{DirectEncoder}, which gives the prefixes.
        """
        self.peers: dict[str, PeerRoute] = {}
        self.users: dict[int, UserRoute] = {}
        self._encoder = encoder

    def peer(self, link) -> PeerRoute:
        """The route over C{link}, the active link of its peer."""
        route = self.peers.get(link.serverId)
        if route is None or route.link is not link:
            route = self.peers[link.serverId] = PeerRoute.forLink(link)
        return route

    def keepUser(self, clienteId: int, serverId: str) -> None:
        """
        Keep the route of user C{clienteId}, whose one server is the remote
        C{serverId}; nothing is kept if there is no route to that server.
        """
        peer = self.peers.get(serverId)
        if peer is None:
            return
        if len(self.users) >= ROUTES:
            self.users.clear()
        self.users[clienteId] = UserRoute(self._encoder.prefix(clienteId), peer)

    def forgetPeer(self, serverId: str) -> None:
        """
        C{serverId}'s link was replaced or lost: forget its route and every
        user's route (any of them may lead to it).
        """
        self.peers.pop(serverId, None)
        self.users.clear()
