"""
The cluster node: the link registry (one active link per peer), the
message dispatch table, listener notification, and the L{ICluster} API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, NamedTuple

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from clustersync.wire.codec import (
    MESSAGE_TYPES,
    Broadcast,
    BroadcastPayload,
    ChannelMembership,
    ChannelMembershipPayload,
    ChannelMessage,
    ChannelMessagePayload,
    ClientDisconnected,
    ClientDisconnectedPayload,
    DIRECT_SUFFIX,
    DirectEncoder,
    DirectMessage,
    DirectMessagePayload,
    SessionInfo,
    SessionMessage,
    SessionMessagePayload,
    encode,
    encodeConnected,
    encodeSync,
    encodeValue,
    rawMessage,
)
from clustersync.errors import (
    AmbiguousSession,
    DuplicateSession,
    PeerUnavailable,
    UnknownChannel,
    UnknownSession,
    UnknownUser,
)
from clustersync.interfaces import ICluster, IMessageHandler
from clustersync.cluster.metrics import TYPE_INDEX, Metrics
from clustersync.state.cluster import ADDED, JOINED, REMOVED, Change, ClusterState, StateLimitError
from clustersync.links.security import LinkSecurity

if TYPE_CHECKING:
    from clustersync.app.config import NodeConfig

__all__ = ["ClusterNode", "Delivery", "PeerInfo"]

#: Where DIRECT_MESSAGE lines are counted in L{Metrics.outCounts}.
_DIRECT = TYPE_INDEX["DIRECT_MESSAGE"]

#: How many users' routes L{ClusterNode.sendToUser} keeps at most (all are
#: dropped when one more is needed): 16,384 routes take about 4 MB.
ROUTES = 16384


class Delivery(NamedTuple):
    """
    Where a message went (an immutable tuple: cheap on the send path).

    @ivar local: how many local sessions it was handed to.
    @ivar servers: the peer serverIds it was written to, sorted.
    """

    local: int
    servers: tuple[str, ...]


@attrs.frozen
class PeerInfo:
    """
    A snapshot of one established peer link.

    @ivar serverId: the peer's id.
    @ivar direction: C{"inbound"} or C{"outbound"}.
    @ivar address: the peer's C{host:port}.
    @ivar since: when the link was established (seconds since the epoch).
    @ivar tls: whether the link is TLS.
    @ivar outboundBuffered: bytes queued for the peer beyond what its
        transport took (0 when it keeps up), when the snapshot was taken.
    """

    serverId: str
    direction: str
    address: str
    since: float
    tls: bool
    outboundBuffered: int = 0


def _peerInfo(link) -> PeerInfo:
    return PeerInfo(link.serverId, link.direction, link.peerAddress, link.since or 0.0, link.tls,
                    getattr(link, "outboundBuffered", 0))


def _wireInt(name: str, value) -> int:
    """
    C{value} if the wire can carry it as a 64-bit integer.

    @raise TypeError: not an C{int} (a C{bool} is not one).
    @raise ValueError: outside the signed 64-bit range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"{name} {value} is not a 64-bit integer")
    return value


def _wireStr(name: str, value, optional: bool = False):
    """C{value} if it is a C{str} (or C{None} when C{optional}); else C{TypeError}."""
    if not isinstance(value, str) and not (optional and value is None):
        raise TypeError(f"{name} must be a str, got {value!r}")
    return value


@implementer(ICluster)
class ClusterNode:
    """
    One clustersync node.

    @ivar serverId: this node's id.
    @ivar state: the L{ClusterState}.
    @ivar clock: the reactor (or a L{twisted.internet.task.Clock}) used for
        time.
    @ivar config: the L{NodeConfig}.
    @ivar metrics: the node's L{Metrics}.
    """

    _log = Logger()

    def __init__(
        self,
        config: NodeConfig,
        clock,
        handlers: Iterable = (),
        delivery=None,
    ) -> None:
        self.config = config
        self.serverId = config.serverId
        self.clock = clock
        self.state = ClusterState(
            config.serverId,
            maxSessionsPerServer=config.maxSessionsPerServer,
            maxChannelsPerSession=config.maxChannelsPerSession,
        )
        self.metrics = Metrics()
        # The state's own mappings (see ClusterState.localUserSessions and
        # userServers), read by the hot paths.
        self._localUserSessions = self.state.localUserSessions
        self._userServers = self.state.userServers
        #: Who may link: mutual TLS, the plain allow-list, or open (see
        #: L{clustersync.links.security.LinkSecurity}).
        self.security = LinkSecurity.fromConfig(config)
        self._links: dict[str, object] = {}
        self._openLinks: set = set()
        self._allClosed: list[Deferred] = []
        self._listeners: list = []
        self._delivery = delivery
        self.outboundFactories: list = []
        self.handlers: list = []
        #: message class -> its handlers, in registration order.
        self._dispatch: dict[type, _Handlers] = {}
        self._directEncoder = DirectEncoder(self.serverId)
        self._encodeDirect = self._directEncoder.encode
        #: serverId -> (Delivery(0, (serverId,)), (serverId, 0),
        #: link.sendConfirmed or None): what a one-peer send fires with, the
        #: context of its error, and the confirmed send of the peer's current
        #: link (dropped when that link is replaced or lost).
        self._oneServer: dict[str, tuple] = {}
        #: clienteId -> the route of a user on one remote server (see
        #: L{_keepRoute}), kept by a first send so that the next ones skip
        #: the layers between L{sendToUser} and the link.  Emptied when a
        #: link is replaced or lost, and when it holds L{ROUTES} users.
        self._routes: dict[int, tuple] = {}
        for h in handlers:
            self.registerHandler(h)

    # Handlers ---------------------------------------------------------------

    def registerHandler(self, handler) -> None:
        """
        Add an L{IMessageHandler} to the dispatch table.

        @raise TypeError: it does not provide L{IMessageHandler}.
        @raise ValueError: it names a message type the codec does not know.
        """
        if not IMessageHandler.providedBy(handler):
            raise TypeError(f"{handler!r} does not provide IMessageHandler")
        for typeName in handler.messageTypes:
            cls = MESSAGE_TYPES.get(typeName)
            if cls is None:
                raise ValueError(f"handler {handler.name!r}: unknown message type {typeName!r}")
            handlers = self._dispatch.get(cls)
            if handlers is None:
                handlers = self._dispatch[cls] = _Handlers()
                handlers.tag = typeName
                handlers.index = TYPE_INDEX[typeName]
            handlers.append(handler)
            # The one handler of a type may offer a quicker callable doing
            # the same (see _Handlers.fast); a second handler turns it off.
            bindFast = getattr(handler, "bindFast", None)
            handlers.fast = bindFast(self) if len(handlers) == 1 and bindFast is not None else None
        self.handlers.append(handler)

    def dispatch(self, link, message) -> None:
        """
        Run every handler of C{message}'s type.  An exception in a handler
        is logged and counted; it never reaches the link.
        """
        cls = message.__class__
        handlers = self._dispatch.get(cls)
        if handlers is None:  # a type no handler takes: counted all the same
            self.metrics.inCounts[TYPE_INDEX[cls.__struct_config__.tag]] += 1
            return
        self.metrics.inCounts[handlers.index] += 1
        fast = handlers.fast
        if fast is not None:
            try:
                fast(link, message)
            except Exception:
                self._handlerFailed(handlers[0], handlers.tag, link)
            return
        for handler in handlers:
            try:
                handler.handleMessage(self, link, message)
            except Exception:
                self._handlerFailed(handler, handlers.tag, link)

    def _handlerFailed(self, handler, typeName: str, link) -> None:
        """Count and log the exception C{handler} just raised."""
        self.metrics.handlerErrors[handler.name] += 1
        self._log.failure(
            "handler {handler} failed on {type} from {peer}",
            handler=handler.name,
            type=typeName,
            peer=link.serverId,
        )

    def reject(self, link, reason: str, detail: str) -> None:
        """
        Count and log one refused input from C{link}; the state is not
        touched and the link stays up.
        """
        self.metrics.rejected(reason)
        self._log.warn(
            "rejected input from {peer} ({address}): {reason}: {detail}",
            peer=link.serverId or "?",
            address=link.peerAddress,
            reason=reason,
            detail=detail,
        )

    # Links -----------------------------------------------------------------

    def checkConnection(self, link) -> tuple[str, str] | None:
        """
        A connection opened: C{None} if it may proceed to HELLO, else
        C{(counter, reason)} to close it with (a plain connection from a
        host not on the allow-list).
        """
        return self.security.checkConnection(link)

    def checkIdentity(self, link, hello) -> tuple[str, str] | None:
        """
        C{link}'s peer sent C{hello}: C{None} if it may become that server,
        else C{(counter, reason)} to close the link with, before any state
        is accepted (see L{clustersync.links.security.LinkSecurity.checkIdentity}).
        """
        return self.security.checkIdentity(self, link, hello)

    def isActive(self, link) -> bool:
        """Whether C{link} is the one link this node uses for its peer."""
        return self._links.get(link.serverId) is link

    def linkFor(self, serverId: str):
        """The active link to C{serverId}, or C{None}."""
        return self._links.get(serverId)

    def linkOpened(self, link) -> None:
        """A TCP connection (not yet a link) opened."""
        self._openLinks.add(link)

    def linkEstablished(self, link) -> None:
        """
        C{link} completed its HELLO exchange.

        If another link to the same peer exists, keep exactly one: between
        an inbound and an outbound link, the one dialed by the smaller
        serverId (both sides compute the same answer); between two links of
        the same direction, the older one (no hijack).  The loser is closed
        without touching state.  Either way, a current link that is
        I{suspect} (its peer heartbeats but has been silent for 2/3 of
        C{dead_peer_timeout}: a half-open link to a peer that crashed and
        came back) loses to the new one, which is then the only link the
        peer knows of.
        """
        peer = link.serverId
        if link.direction == "outbound" and link.factory is not None:
            link.factory.peerServerId = peer
            if link.factory.continueTrying:  # resetDelay would revive a stopped factory
                link.factory.resetDelay()
        current = self._links.get(peer)
        if current is None:
            self._links[peer] = link
            self.state.addServer(peer)
            self._sendSync(link)
            self._log.info(
                "linked to {peer} ({direction}, {address})",
                peer=peer,
                direction=link.direction,
                address=link.peerAddress,
            )
            self._notify("peerConnected", _peerInfo(link))
            return
        stale = _suspect(current, self.clock.seconds(), self.config.deadPeerTimeout)
        if stale:
            winner = link
        elif current.direction != link.direction:
            keep = "outbound" if self.serverId < peer else "inbound"
            winner = link if link.direction == keep else current
        else:
            winner = current
        loser = current if winner is link else link
        if winner is link:
            self._links[peer] = link
            self._oneServer.pop(peer, None)  # it holds the replaced link
            self._routes.clear()  # so do the routes to it
            self._sendSync(link)
        loser.duplicate = True
        if loser.direction == "outbound" and loser.factory is not None:
            loser.factory.standby = True
        if stale:
            loser.close(f"replaced by a new {link.direction} link to {peer}: the old one was "
                        f"silent for {self.clock.seconds() - current.lastReceived:.1f}s",
                        "dead_peer", abort=True)
            return
        loser.close(
            f"duplicate link to {peer}: keeping the {winner.direction} one", "duplicate"
        )

    def linkLost(self, link, reason: str, wasEstablished: bool) -> None:
        """
        C{link} closed.  If it was the active link of its peer, forget that
        server and its sessions and tell listeners.
        """
        self._openLinks.discard(link)
        if not self._openLinks and self._allClosed:
            waiting, self._allClosed = self._allClosed, []
            for d in waiting:
                d.callback(None)
        peer = link.serverId
        if peer is None or self._links.get(peer) is not link:
            return
        del self._links[peer]
        self._oneServer.pop(peer, None)  # it holds the link
        self._routes.clear()  # so do the routes to it
        changes = self.state.dropServer(peer)
        self._log.info(
            "link to {peer} lost ({reason}); dropped {count} sessions",
            peer=peer,
            reason=reason,
            count=len(changes),
        )
        self._notifyChanges(changes)
        self._notify("peerDisconnected", _peerInfo(link), reason)
        for factory in self.outboundFactories:
            if factory.peerServerId == peer:
                factory.wake()

    def closeAllLinks(self, reason: str) -> Deferred:
        """
        Close every link (shutdown).

        @return: a L{Deferred} firing with C{None} once every link's
            connection is lost.
        """
        for link in list(self._openLinks):
            link.close(reason)
        if not self._openLinks:
            return succeed(None)
        d = Deferred()
        self._allClosed.append(d)
        return d

    def outboundBuffers(self) -> dict[str, int]:
        """
        The outbound buffer of each active link, for metrics: C{{serverId:
        bytes}} queued while the peer is not reading (see
        L{clustersync.links.protocol.PeerProtocol.outboundBuffered}); each is cut at
        C{config.maxOutboundBuffer}.
        """
        return {peer: link.outboundBuffered for peer, link in self._links.items()}

    def resync(self, link) -> None:
        """
        Re-send this node's SYNC_STATE on C{link} (the idle heartbeat: a spec
        message every server understands, which changes nothing there).
        """
        self._sendSync(link)

    def _sendSync(self, link) -> None:
        line = encodeSync(self.serverId, self.state.sessionsOf(self.serverId))
        if link.sendLine(line):
            self.metrics.countOut("SYNC_STATE")

    # Applying peer state (called by the built-in handlers) ------------------

    def applyRemote(self, link, apply, what: str) -> None:
        """
        Apply a state change learned over C{link}, if it is the active link
        of its peer, and tell listeners.  C{apply} is a callable taking the
        L{ClusterState} and returning its changes.
        """
        if not self.isActive(link):
            self.metrics.rejected("inactive_link")
            return
        try:
            changes = apply(self.state)
        except StateLimitError as e:
            self.reject(link, "limit", f"{what}: {e}")
            return
        self._notifyChanges(changes)

    # Listeners -------------------------------------------------------------

    def addListener(self, listener) -> None:
        """Register an L{IClusterListener}."""
        self._listeners.append(listener)

    def removeListener(self, listener) -> None:
        """Unregister an L{IClusterListener}."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _notify(self, method: str, *args) -> None:
        for listener in list(self._listeners):
            try:
                getattr(listener, method)(*args)
            except Exception:
                self._log.failure("listener {listener!r} failed in {method}",
                                  listener=listener, method=method)

    def _notifyChanges(self, changes: list[Change]) -> None:
        if not self._listeners:
            return
        for change in changes:
            if change.kind == ADDED:
                self._notify("sessionAdded", change.session)
            elif change.kind == REMOVED:
                self._notify("sessionRemoved", change.session)
            else:
                self._notify(
                    "membershipChanged", change.session, change.canalId, change.kind == JOINED
                )

    # Local delivery --------------------------------------------------------

    def setLocalDelivery(self, delivery) -> None:
        """Set the L{ILocalDelivery} provider of this node."""
        self._delivery = delivery

    def deliverLocal(self, sessions: list[SessionInfo], message, kind: str, origin: str) -> int:
        """
        Hand C{message} (bytes, or a L{msgspec.Raw}) to local C{sessions}
        through the L{ILocalDelivery} provider.

        @return: how many sessions it was handed to.
        """
        delivery = self._delivery
        if not sessions or delivery is None:
            return self._undeliverable(sessions, kind)
        try:
            # b"" + message: the bytes of a Raw (or the bytes themselves), at
            # half the instructions of bytes(message) (no argument parsing).
            return delivery.deliver(sessions, b"" + message, kind, origin)
        except Exception:
            # Never let the gateway stop a send half-way (peers not yet written).
            return self._deliveryFailed(sessions, kind)

    def deliverDirect(self, link, message: DirectMessage) -> int:
        """
        What the built-in DIRECT_MESSAGE handler does: deliver the
        message to every local session of its C{userId}, as
        L{deliverLocal} would (the receive hot path, with its steps
        written out).

        @return: how many sessions it was handed to.
        """
        p = message.payload
        sessions = self._localUserSessions.get(p.userId, ())
        delivery = self._delivery
        if not sessions or delivery is None:
            return self._undeliverable(sessions, "DIRECT_MESSAGE")
        try:
            return delivery.deliver(sessions, b"" + p.message, "DIRECT_MESSAGE", link.serverId)
        except Exception:
            return self._deliveryFailed(sessions, "DIRECT_MESSAGE")

    def _undeliverable(self, sessions, kind: str) -> int:
        """No session, or no L{ILocalDelivery}: count (and log the latter)."""
        self.metrics.undeliverable[kind] += 1
        if sessions:
            self._log.warn("no local delivery configured: {kind} for {n} sessions dropped",
                           kind=kind, n=len(sessions))
        return 0

    def _deliveryFailed(self, sessions, kind: str) -> int:
        """The L{ILocalDelivery} raised: count and log it."""
        self.metrics.undeliverable[kind] += 1
        self._log.failure("local delivery of {kind} to {n} sessions failed",
                          kind=kind, n=len(sessions))
        return 0

    # ICluster: sends -------------------------------------------------------

    def _sendOne(self, serverId: str, line: bytes, counter: int) -> Deferred:
        """
        Write C{line} to the one remote server C{serverId} (the common case
        of L{_forward}, kept to a few objects per send).

        @param counter: the position of the line's wire type in
            L{Metrics.outCounts} (L{TYPE_INDEX}).
        """
        link = self._links.get(serverId)
        if link is not None:
            one = self._oneServer.get(serverId)
            if one is None:
                one = self._oneServer[serverId] = (
                    Delivery(0, (serverId,)), (serverId, 0),
                    getattr(link, "sendConfirmed", None))
            confirm = self.config.confirmSends
            sendConfirmed = one[2] if confirm else None
            if sendConfirmed is not None:
                d = sendConfirmed(line, one[0], _unconfirmedOne, one[1])
                if d is not None:
                    self.metrics.outCounts[counter] += 1
                    return d
            elif link.sendLine(line):
                self.metrics.outCounts[counter] += 1
                whenAcknowledged = getattr(link, "whenAcknowledged", None) if confirm else None
                if whenAcknowledged is not None:
                    return whenAcknowledged(one[0], _unconfirmedOne, one[1])
                return succeed(one[0])
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
        for serverId in servers:
            if serverId == self.serverId:
                local = self.deliverLocal(localSessions(), makeMessage.raw, kind, self.serverId)
                continue
            link = self._links.get(serverId)
            if line is None:
                line = encode(makeMessage())
            if link is not None and link.sendLine(line):
                sent.append(serverId)
                if self.config.confirmSends and hasattr(link, "whenAcknowledged"):
                    acks.append((serverId, link))
            else:
                unreachable.append(serverId)
        if sent:
            self.metrics.countOut(kind, len(sent))
        delivery = Delivery(local, tuple(sorted(sent)))
        if unreachable:
            return fail(PeerUnavailable(sorted(unreachable), delivery))
        if len(acks) == 1:  # the common case, kept to a few objects per send
            serverId, link = acks[0]
            return link.whenAcknowledged(delivery, _unconfirmedOne, (serverId, local))
        if acks:
            return self._confirmed(
                local, [(serverId, link.whenAcknowledged()) for serverId, link in acks])
        return succeed(delivery)

    def _confirmed(self, local: int, acks) -> Deferred:
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

    def sendToUser(self, clienteId: int, message) -> Deferred:
        """
        See L{ICluster.sendToUser}.

        The hot path, a user on one remote server, takes two steps.  The
        first send to the user goes through L{DirectEncoder.encode} and
        L{_sendOne}, and keeps the user's route in L{_routes}.  The next
        ones, while the user's only server is still the route's and the
        peer's link the same (L{linkEstablished} and L{linkLost} empty the
        routes), build the line from the kept prefix and call the link's
        C{sendConfirmed} (its C{sendLine} with C{confirm_sends} off)
        directly: the same line, the same L{Deferred} and the same counter,
        at about 2,500 machine instructions fewer per send.  A message that
        is not a C{dict}, one the encoder refuses, and a route kept under
        another C{confirm_sends} take the first way.
        """
        servers = self._userServers.get(clienteId, ())  # state.serversOfUser, without a call
        if len(servers) == 1 and type(clienteId) is int:
            route = self._routes.get(clienteId)
            if (
                route is not None
                and route[0] in servers
                and message.__class__ is dict
                and route[5] is self.config.confirmSends
            ):
                try:
                    data = encodeValue(message)
                except Exception:
                    pass  # the way below fails the send with the codec's error
                else:
                    # What _sendOne does, with the link's send kept in the route.
                    line = route[1] + data + DIRECT_SUFFIX
                    if route[5]:
                        d = route[4](line, route[2], _unconfirmedOne, route[3])
                    else:
                        d = succeed(route[2]) if route[4](line) else None
                    if d is None:  # nothing was written
                        return fail(PeerUnavailable([route[0]], Delivery(0, ())))
                    self.metrics.outCounts[_DIRECT] += 1
                    return d
            for serverId in servers:
                if serverId != self.serverId:
                    try:
                        line = self._encodeDirect(clienteId, message)
                    except TypeError as e:
                        return fail(e)
                    d = self._sendOne(serverId, line, _DIRECT)
                    if message.__class__ is dict:  # the only messages routes take
                        self._keepRoute(clienteId, serverId)
                    return d
        try:
            if type(clienteId) is not int:  # True would find user 1
                _wireInt("clienteId", clienteId)
            raw = rawMessage(message)
        except TypeError as e:
            return fail(e)
        if not servers:
            return fail(UnknownUser(f"no session of user {clienteId}"))
        make = _Maker(raw, lambda: DirectMessage(self.serverId, DirectMessagePayload(clienteId, raw)))
        return self._forward(
            servers,
            lambda: self.state.userSessionsOn(self.serverId, clienteId),
            make,
            "DIRECT_MESSAGE",
        )

    def _keepRoute(self, clienteId: int, serverId: str) -> None:
        """
        Keep the route of user C{clienteId}, whose one server is the
        remote C{serverId}, for L{sendToUser}: C{(serverId, prefix,
        delivery, context, send, confirm)}, where C{send} is the link's
        C{sendConfirmed} when C{confirm} (the C{confirm_sends} it was kept
        under) is set, its C{sendLine} otherwise.  Nothing is kept without
        a link, or when confirmed sends are asked of a link that has no
        C{sendConfirmed}.
        """
        one = self._oneServer.get(serverId)
        if one is None:
            return
        confirm = self.config.confirmSends
        send = one[2] if confirm else self._links[serverId].sendLine
        if send is None:
            return
        routes = self._routes
        if len(routes) >= ROUTES:
            routes.clear()
        routes[clienteId] = (
            serverId, self._directEncoder.prefix(clienteId), one[0], one[1], send, confirm)

    def sendToChannel(self, canalId: int, message, excludeSessionId: str | None = None) -> Deferred:
        """See L{ICluster.sendToChannel}."""
        try:
            if type(canalId) is not int:  # True would find channel 1
                _wireInt("canalId", canalId)
            raw = rawMessage(message)
        except TypeError as e:
            return fail(e)
        servers = set(self.state.serversOfChannel(canalId))
        localMembers = None
        if self.serverId in servers and excludeSessionId is not None:
            localMembers = [
                s
                for s in self.state.channelSessionsOn(self.serverId, canalId)
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
            else (lambda: self.state.channelSessionsOn(self.serverId, canalId)),
            make,
            "CHANNEL_MESSAGE",
        )

    def sendToSession(self, sessionId: str, message, serverId: str | None = None) -> Deferred:
        """See L{ICluster.sendToSession}."""
        try:
            raw = rawMessage(message)
        except TypeError as e:
            return fail(e)
        servers = self.state.serversOfSession(sessionId)
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
            lambda: [self.state.session(self.serverId, sessionId)],
            make,
            "SESSION_MESSAGE",
        )

    def broadcast(self, message) -> Deferred:
        """See L{ICluster.broadcast}."""
        try:
            raw = rawMessage(message)
        except TypeError as e:
            return fail(e)
        servers = [self.serverId, *self._links]
        make = _Maker(raw, lambda: Broadcast(self.serverId, BroadcastPayload(raw)))
        return self._forward(
            servers, lambda: self.state.sessionsOf(self.serverId), make, "BROADCAST"
        )

    # ICluster: queries -----------------------------------------------------

    def lookupUser(self, clienteId: int) -> Deferred:
        """See L{ICluster.lookupUser}."""
        return succeed(self.state.userSessions(clienteId))

    def channelMembers(self, canalId: int) -> Deferred:
        """See L{ICluster.channelMembers}."""
        return succeed(self.state.channelMembers(canalId))

    def peers(self) -> Deferred:
        """See L{ICluster.peers}."""
        return succeed([_peerInfo(link) for link in self._links.values()])

    def sessions(self) -> Deferred:
        """See L{ICluster.sessions}."""
        return succeed(list(self.state.allSessions()))

    # ICluster: local lifecycle ---------------------------------------------

    def _toAllPeers(self, line: bytes, kind: str) -> None:
        n = 0
        for link in self._links.values():
            if link.sendLine(line):
                n += 1
        self.metrics.countOut(kind, n)

    def clientConnected(self, sessionId: str, clienteId: int, usuario: str,
                        ip: str | None = None, canales=()) -> Deferred:
        """See L{ICluster.clientConnected}."""
        try:
            session = SessionInfo(
                _wireStr("sessionId", sessionId), _wireInt("clienteId", clienteId),
                _wireStr("usuario", usuario), self.serverId, _wireStr("ip", ip, True),
                set(_wireInt("canalId", c) for c in canales))
        except (TypeError, ValueError) as e:
            return fail(e)
        if self.state.session(self.serverId, sessionId) is not None:
            return fail(DuplicateSession(f"session {sessionId!r} already exists"))
        try:
            changes = self.state.addSession(self.serverId, session)
        except StateLimitError as e:
            return fail(e)
        self._toAllPeers(encodeConnected(self.serverId, session), "CLIENT_CONNECTED")
        self._notifyChanges(changes)
        return succeed(session)

    def clientDisconnected(self, sessionId: str) -> Deferred:
        """See L{ICluster.clientDisconnected}."""
        session = self.state.session(self.serverId, sessionId)
        if session is None:
            return fail(UnknownSession(f"no local session {sessionId!r}"))
        changes = self.state.removeSession(self.serverId, sessionId)
        self._toAllPeers(
            encode(ClientDisconnected(
                self.serverId, ClientDisconnectedPayload(session.clienteId, sessionId))),
            "CLIENT_DISCONNECTED",
        )
        self._notifyChanges(changes)
        return succeed(session)

    def _membership(self, sessionId: str, canalId: int, joined: bool) -> Deferred:
        session = self.state.session(self.serverId, sessionId)
        if session is None:
            return fail(UnknownSession(f"no local session {sessionId!r}"))
        try:
            canalId = _wireInt("canalId", canalId)
            changes = self.state.setMembership(self.serverId, sessionId, canalId, joined)
        except (StateLimitError, TypeError, ValueError) as e:
            return fail(e)
        if changes:
            self._toAllPeers(
                encode(ChannelMembership(self.serverId, ChannelMembershipPayload(
                    sessionId, session.clienteId, int(canalId), "JOIN" if joined else "LEAVE"))),
                "CHANNEL_MEMBERSHIP",
            )
            self._notifyChanges(changes)
        return succeed(bool(changes))

    def joinChannel(self, sessionId: str, canalId: int) -> Deferred:
        """See L{ICluster.joinChannel}."""
        return self._membership(sessionId, canalId, True)

    def leaveChannel(self, sessionId: str, canalId: int) -> Deferred:
        """See L{ICluster.leaveChannel}."""
        return self._membership(sessionId, canalId, False)


def _suspect(link, now: float, bound: float) -> bool:
    """
    Whether C{link}'s peer is known to heartbeat (it re-sent SYNC_STATE)
    and has sent nothing for 2/3 of the dead-peer bound (a live one sends
    something at least every half of it; the link would be cut at 5/6).
    """
    return (
        getattr(link, "syncsReceived", 0) >= 2
        and now - getattr(link, "lastReceived", now) >= bound * 2 / 3
    )


def _unconfirmedOne(context) -> PeerUnavailable:
    """The error of a one-peer send whose link was lost before the ack."""
    serverId, local = context
    return PeerUnavailable([serverId], Delivery(local, ()))


class _Handlers(list):
    """
    The handlers of one message type, its wire name (C{tag}) and the
    position of its counters (C{index}, see L{TYPE_INDEX}).

    @ivar fast: when the type has one handler and it has a C{bindFast(node)}
        method (built-in handlers on the hot path), the C{(link, message)}
        callable that method returned, which does what C{handleMessage}
        does; otherwise C{None}.
    """

    __slots__ = ("tag", "index", "fast")

    def __init__(self) -> None:
        super().__init__()
        self.tag = ""
        self.index = 0
        self.fast = None


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
