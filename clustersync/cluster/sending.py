"""
The send paths of the L{ICluster} API: C{sendToUser}, C{sendToChannel},
C{sendToSession} and C{broadcast} deliver to this node's sessions and write
one line, encoded once, to each other server concerned; plus the lines
every peer gets (the node's own events and its SYNC_STATE).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from clustersync.cluster.delivery import LocalDelivery
from clustersync.cluster.metrics import TYPE_INDEX, Metrics
from clustersync.cluster.routes import Routes
from clustersync.cluster.values import Delivery, unconfirmedOne, wireInt
from clustersync.errors import AmbiguousSession, PeerUnavailable, UnknownChannel, UnknownSession, UnknownUser
from clustersync.state.cluster import ClusterState
from clustersync.wire.codec import (
    DIRECT_SUFFIX,
    Broadcast,
    BroadcastPayload,
    ChannelMessage,
    ChannelMessagePayload,
    DirectEncoder,
    DirectMessage,
    DirectMessagePayload,
    SessionMessage,
    SessionMessagePayload,
    encode,
    encodeSync,
    encodeValue,
    rawMessage,
)

if TYPE_CHECKING:
    from clustersync.app.config import NodeConfig

__all__ = ["Sending"]

#: Where DIRECT_MESSAGE lines are counted in L{Metrics.outCounts}.
_DIRECT = TYPE_INDEX["DIRECT_MESSAGE"]


class Sending:
    """
    Sends from this node to its sessions and its peers.

    @ivar routes: the L{Routes} of the one-peer sends.
    """

    def __init__(self, config: NodeConfig, state: ClusterState, metrics: Metrics,
                 links: dict, delivery: LocalDelivery) -> None:
        """
        @param config: the node's config; C{confirmSends} is read on every
            send (it may change while the node runs).
        @param links: the registry's serverId -> active link mapping.
        @param delivery: where this node's own sessions are delivered to.
        """
        self.serverId = config.serverId
        self._config = config
        self._state = state
        self._metrics = metrics
        self._links = links
        self._delivery = delivery
        # The state's own mapping user -> servers, read without a call.
        self._userServers = state.userServers
        encoder = DirectEncoder(self.serverId)
        self._encodeDirect = encoder.encode
        self.routes = Routes(encoder)
        self._userRoutes = self.routes.users
        #: The NATS backplane when one is attached
        #: (L{clustersync.backplane.bridge.Backplane}): it gets the node's
        #: events and BROADCAST lines once, for every server it reaches.
        self.backplane = None

    # The lines every peer gets -------------------------------------------

    def toAllPeers(self, line: bytes, kind: str) -> None:
        """
        Write C{line}, of wire type C{kind}, to every active link; with a
        backplane, once to it instead of to each of its (virtual) links.
        """
        n = 0
        for link in self._links.values():
            if not getattr(link, "virtual", False) and link.sendLine(line):
                # The anti-entropy digest compares only once the peer read this.
                link.stateLine = getattr(link, "linesWritten", 0)
                n += 1
        if self.backplane is not None:
            n += self.backplane.publishState(line)
        self._metrics.countOut(kind, n)

    def sendSync(self, link) -> None:
        """Write this node's SYNC_STATE (its own sessions) to C{link}."""
        line = encodeSync(self.serverId, self._state.sessionsOf(self.serverId))
        if link.sendLine(line):
            link.stateLine = getattr(link, "linesWritten", 0)
            self._metrics.countOut("SYNC_STATE")

    # ICluster sends -------------------------------------------------------

    def sendToUser(self, clienteId: int, message) -> Deferred:
        """
        See L{ICluster.sendToUser}.

        The hot path is a user whose sessions all live on one remote
        server.  The first send to the user encodes the line with the
        L{DirectEncoder} and goes through L{_sendOne}, which keeps the
        peer's L{PeerRoute}; a C{dict} message then also keeps the user's
        L{UserRoute}.  The next sends, while the user's only server is
        still the route's, build the line from the route's prefix and the
        encoded message and hand it to the route's peer: the same line,
        L{Deferred} and counter as the first way, without its lookups.
        Replacing or losing a link forgets the routes (L{Routes.forgetPeer}).
        """
        servers = self._userServers.get(clienteId, ())
        if len(servers) == 1 and type(clienteId) is int:
            route = self._userRoutes.get(clienteId)
            if route is not None and route.peer.serverId in servers and message.__class__ is dict:
                try:
                    data = encodeValue(message)
                except Exception:
                    pass  # the general way below fails the send with the codec's error
                else:
                    peer = route.peer
                    d = peer.send(route.prefix + data + DIRECT_SUFFIX, self._config.confirmSends)
                    if d is None:  # the link took nothing
                        return fail(PeerUnavailable([peer.serverId], Delivery(0, ())))
                    self._metrics.outCounts[_DIRECT] += 1
                    return d
            for serverId in servers:
                if serverId != self.serverId:
                    try:
                        line = self._encodeDirect(clienteId, message)
                    except TypeError as e:
                        return fail(e)
                    d = self._sendOne(serverId, line, _DIRECT)
                    if message.__class__ is dict:  # the only messages routes take
                        self.routes.keepUser(clienteId, serverId)
                    return d
        try:
            if type(clienteId) is not int:  # True would find user 1
                wireInt("clienteId", clienteId)
            raw = rawMessage(message)
        except TypeError as e:
            return fail(e)
        if not servers:
            return fail(UnknownUser(f"no session of user {clienteId}"))
        make = _Maker(raw, lambda: DirectMessage(self.serverId, DirectMessagePayload(clienteId, raw)))
        return self._forward(
            servers,
            lambda: self._state.userSessionsOn(self.serverId, clienteId),
            make,
            "DIRECT_MESSAGE",
        )

    def sendToChannel(self, canalId: int, message, excludeSessionId: str | None = None) -> Deferred:
        """See L{ICluster.sendToChannel}."""
        try:
            if type(canalId) is not int:  # True would find channel 1
                wireInt("canalId", canalId)
            raw = rawMessage(message)
        except TypeError as e:
            return fail(e)
        state = self._state
        servers = set(state.serversOfChannel(canalId))
        localMembers = None
        if self.serverId in servers and excludeSessionId is not None:
            localMembers = [
                s
                for s in state.channelSessionsOn(self.serverId, canalId)
                if s.sessionId != excludeSessionId
            ]
            if not localMembers:
                servers.discard(self.serverId)
        if not servers:
            return fail(UnknownChannel(f"no member in channel {canalId}"))
        make = _Maker(raw, lambda: ChannelMessage(self.serverId, ChannelMessagePayload(canalId, raw)))
        return self._forward(
            servers,
            (lambda: localMembers)
            if localMembers is not None
            else (lambda: state.channelSessionsOn(self.serverId, canalId)),
            make,
            "CHANNEL_MESSAGE",
        )

    def sendToSession(self, sessionId: str, message, serverId: str | None = None) -> Deferred:
        """See L{ICluster.sendToSession}."""
        try:
            raw = rawMessage(message)
        except TypeError as e:
            return fail(e)
        servers = self._state.serversOfSession(sessionId)
        if serverId is not None:
            if serverId not in servers:
                return fail(UnknownSession(f"no session {sessionId!r} on {serverId!r}"))
            target = serverId
        elif not servers:
            return fail(UnknownSession(f"no session {sessionId!r}"))
        elif len(servers) > 1:
            return fail(AmbiguousSession(
                f"session {sessionId!r} exists on {', '.join(sorted(servers))}"))
        else:
            (target,) = servers
        make = _Maker(raw, lambda: SessionMessage(self.serverId, SessionMessagePayload(sessionId, raw)))
        return self._forward(
            (target,),
            lambda: [self._state.session(self.serverId, sessionId)],
            make,
            "SESSION_MESSAGE",
        )

    def broadcast(self, message) -> Deferred:
        """See L{ICluster.broadcast}."""
        try:
            raw = rawMessage(message)
        except TypeError as e:
            return fail(e)
        servers = [self.serverId, *(
            peer for peer, link in self._links.items() if not getattr(link, "virtual", False))]
        make = _Maker(raw, lambda: Broadcast(self.serverId, BroadcastPayload(raw)))
        d = self._forward(
            servers, lambda: self._state.sessionsOf(self.serverId), make, "BROADCAST"
        )
        if self.backplane is not None:  # one line on the cluster's subject
            d = self.backplane.joinBroadcast(d, encode(make()))
        return d

    # The two ways a line leaves ------------------------------------------

    def _sendOne(self, serverId: str, line: bytes, counter: int) -> Deferred:
        """
        Write C{line} to the one remote server C{serverId}, through its
        L{PeerRoute} (which holds the L{Delivery} the send fires with: no
        new objects per send).

        @param counter: the position of the line's wire type in
            L{Metrics.outCounts} (L{TYPE_INDEX}).
        """
        link = self._links.get(serverId)
        if link is not None:
            d = self.routes.peer(link).send(line, self._config.confirmSends)
            if d is not None:
                self._metrics.outCounts[counter] += 1
                return d
        return fail(PeerUnavailable([serverId], Delivery(0, ())))

    def _forward(self, servers, localSessions, makeMessage, kind: str) -> Deferred:
        """
        Deliver to the local sessions given by C{localSessions()} if this
        node is in C{servers}, and write one line, encoded once, to each
        other server in C{servers}.
        """
        if len(servers) == 1:
            for serverId in servers:
                if serverId != self.serverId:
                    return self._sendOne(serverId, encode(makeMessage()), TYPE_INDEX[kind])
        local = 0
        sent = []
        acks = []
        unreachable = []
        line = None
        confirm = self._config.confirmSends
        for serverId in servers:
            if serverId == self.serverId:
                local = self._delivery.deliver(localSessions(), makeMessage.raw, kind, self.serverId)
                continue
            link = self._links.get(serverId)
            if line is None:
                line = encode(makeMessage())
            if link is not None and link.sendLine(line):
                sent.append(serverId)
                if confirm and hasattr(link, "whenAcknowledged"):
                    acks.append((serverId, link))
            else:
                unreachable.append(serverId)
        if sent:
            self._metrics.countOut(kind, len(sent))
        delivery = Delivery(local, tuple(sorted(sent)))
        if unreachable:
            return fail(PeerUnavailable(sorted(unreachable), delivery))
        if len(acks) == 1:  # one peer to wait for: its link fires the Delivery itself
            serverId, link = acks[0]
            return link.whenAcknowledged(delivery, unconfirmedOne, (serverId, local))
        if acks:
            return _confirmed(
                local, [(serverId, link.whenAcknowledged()) for serverId, link in acks])
        return succeed(delivery)


def _confirmed(local: int, acks) -> Deferred:
    """
    Wait until every link in C{acks} (C{(serverId, Deferred)} pairs from
    L{clustersync.links.protocol.PeerProtocol.whenAcknowledged}) confirmed the
    line (the peer's receipt, or its TCP acknowledgement on a link
    without receipts); fire with the L{Delivery}, or fail
    with L{PeerUnavailable} naming the servers whose link was lost
    first.
    """
    result = Deferred()
    reached: list[str] = []
    lost: list[str] = []

    def settled(outcome, serverId):
        (lost if isinstance(outcome, Failure) else reached).append(serverId)
        if len(reached) + len(lost) == len(acks):
            delivery = Delivery(local, tuple(sorted(reached)))
            if lost:
                result.errback(PeerUnavailable(sorted(lost), delivery))
            else:
                result.callback(delivery)

    for serverId, d in acks:
        d.addBoth(settled, serverId)
    return result


class _Maker:
    """
    Builds a forward message lazily (only if some peer needs it), carrying
    the raw C{message} for local delivery.
    """

    __slots__ = ("raw", "_make")

    def __init__(self, raw, make) -> None:
        self.raw = raw
        self._make = make

    def __call__(self):
        return self._make()
