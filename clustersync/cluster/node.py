"""
The cluster node: L{ClusterNode} composes the parts of the cluster layer
and is the L{ICluster} API over them, and the door the links use.

The parts, one module each under L{clustersync.cluster}:

  - C{registry}: the links, one active link per peer;
  - C{dispatch}: the handler table that runs on each received message;
  - C{listeners}: the L{IClusterListener}s;
  - C{delivery}: delivery to this node's own sessions;
  - C{sending}: the send paths (with the routes of C{routes});
  - C{localsessions}: this node's sessions connecting, leaving, joining;
  - C{values}: what the API returns (L{Delivery}, L{PeerInfo}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from clustersync.cluster.antientropy import AntiEntropy
from clustersync.cluster.delivery import LocalDelivery
from clustersync.cluster.dispatch import Dispatcher
from clustersync.cluster.gossip import Gossip
from clustersync.cluster.listeners import Listeners
from clustersync.cluster.localsessions import LocalSessions
from clustersync.cluster.metrics import Metrics
from clustersync.cluster.registry import LinkRegistry
from clustersync.cluster.sending import Sending
from clustersync.cluster.values import Delivery, PeerInfo, peerInfo
from clustersync.interfaces import ICluster
from clustersync.links.budget import HandshakeBuffers
from clustersync.links.security import LinkSecurity
from clustersync.state.cluster import ClusterState, StateLimitError
from clustersync.wire.codec import SessionInfo

if TYPE_CHECKING:
    from clustersync.app.config import NodeConfig

__all__ = ["ClusterNode", "Delivery", "PeerInfo"]


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
    @ivar security: who may link: mutual TLS, the plain allow-list, or open
        (see L{clustersync.links.security.LinkSecurity}).
    @ivar links: the L{LinkRegistry}.
    @ivar listeners: the L{Listeners}.
    @ivar localDelivery: the L{LocalDelivery} to this node's sessions.
    @ivar sending: the send paths, L{Sending}.
    @ivar localSessions: the lifecycle of this node's sessions, L{LocalSessions}.
    @ivar dispatcher: the handler table, L{Dispatcher}.
    @ivar handlers: every registered L{IMessageHandler}, in order.
    @ivar outboundFactories: the factories dialing peers (set by the service).
    @ivar dispatch: C{(link, message)}: run every handler of C{message}'s
        type (L{Dispatcher.dispatch}); a raising handler is logged and
        counted, never reaches the link.
    @ivar deliverDirect: C{(link, message)}: what the built-in
        DIRECT_MESSAGE handler does (L{LocalDelivery.deliverDirect}).
    @ivar sendToUser: L{ICluster.sendToUser} (L{Sending.sendToUser}).
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
        self.security = LinkSecurity.fromConfig(config)
        self.links = LinkRegistry()
        #: What links still in their handshake hold, bounded node-wide.
        self.handshakeBuffers = HandshakeBuffers(config.maxHandshakeBuffers)
        self.listeners = Listeners()
        self.localDelivery = LocalDelivery(self.metrics, self.state.localUserSessions, delivery)
        self.sending = Sending(config, self.state, self.metrics, self.links.active,
                               self.localDelivery)
        self.localSessions = LocalSessions(self.serverId, self.state, self.sending, self.listeners)
        self.antiEntropy = AntiEntropy(self.serverId, clock, config, self.metrics,
                                       self.sending.sendSync)
        self.listeners.digests = self.antiEntropy.digests
        #: The addresses of the cluster's nodes, told by X_PEERS.
        self.gossip = Gossip(self)
        #: C{(link, message)}: an X_DIGEST from a clustersync peer.
        self.digestReceived = self.antiEntropy.digestReceived
        self.dispatcher = Dispatcher(self, self.metrics)
        self.handlers = self.dispatcher.handlers
        self.outboundFactories: list = []
        # The three hot entries are the parts' own methods, so the link's
        # receive loop, the DIRECT_MESSAGE handler and senders pay no
        # forwarding call.
        self.dispatch = self.dispatcher.dispatch
        self.deliverDirect = self.localDelivery.deliverDirect
        self.sendToUser = self.sending.sendToUser
        # The registry's mappings under their former names (tests and the
        # chaos plugin read them).
        self._links = self.links.active
        self._openLinks = self.links.open
        #: The NATS backplane, once attached (L{attachBackplane}).
        self.backplane = None
        for h in handlers:
            self.registerHandler(h)

    # Handlers and input ----------------------------------------------------

    def registerHandler(self, handler) -> None:
        """
        Add an L{IMessageHandler} to the dispatch table.

        @raise TypeError: it does not provide L{IMessageHandler}.
        @raise ValueError: it names a message type the codec does not know.
        """
        self.dispatcher.register(handler)

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

    def applyRemote(self, link, apply, what: str) -> None:
        """
        Apply a state change learned over C{link}, if it is the active link
        of its peer, and tell listeners.  C{apply} is a callable taking the
        L{ClusterState} and returning its changes.
        """
        if not self.links.isActive(link):
            self.metrics.rejected("inactive_link")
            return
        try:
            changes = apply(self.state)
        except StateLimitError as e:
            self.reject(link, "limit", f"{what}: {e}")
            return
        self.listeners.notifyChanges(changes)

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
        return self.links.isActive(link)

    def linkFor(self, serverId: str):
        """The active link to C{serverId}, or C{None}."""
        return self.links.linkFor(serverId)

    def attachBackplane(self, backplane) -> None:
        """
        Send this node's events and BROADCAST lines through C{backplane}
        (a L{clustersync.backplane.bridge.Backplane}) once, instead of to
        each of its virtual links (L{addVirtualPeer}).
        """
        self.backplane = self.sending.backplane = backplane
        self.addListener(backplane.legacy)

    def addVirtualPeer(self, link) -> bool:
        """
        Make C{link}, a server reached through the backplane (a link with
        C{virtual} set), that server's link, unless it has a link already
        (a direct link is kept instead; one that comes later replaces it,
        see L{LinkRegistry.elect}).

        @return: whether C{link} is now the server's link.
        """
        if self.links.linkFor(link.serverId) is not None:
            return False
        self.links.install(link)
        self.state.addServer(link.serverId)
        self.listeners.notify("peerConnected", peerInfo(link))
        return True

    def linkOpened(self, link) -> None:
        """A TCP connection (not yet a link) opened."""
        self.links.opened(link)

    def linkEstablished(self, link) -> None:
        """
        C{link} completed its HELLO exchange.

        A first link to its peer adds the peer's server, gets this node's
        SYNC_STATE, and listeners are told C{peerConnected}.  If another
        link to the same peer exists, exactly one is kept
        (L{LinkRegistry.elect}); when the new one wins it gets the
        SYNC_STATE and the routes to the old one are forgotten.  The loser
        is closed without touching state.
        """
        peer = link.serverId
        self.links.noteDialed(link)
        current = self.links.linkFor(peer)
        if current is None:
            self.links.install(link)
            self.state.addServer(peer)
            self.sending.sendSync(link)
            self._log.info(
                "linked to {peer} ({direction}, {address})",
                peer=peer,
                direction=link.direction,
                address=link.peerAddress,
            )
            self.listeners.notify("peerConnected", peerInfo(link))
            self.gossip.linkEstablished(link)
            return
        choice = self.links.elect(current, link, self.serverId, self.clock.seconds(),
                                  self.config.deadPeerTimeout)
        if choice.winner is link:
            self.links.install(link)
            self.sending.routes.forgetPeer(peer)
            self.sending.sendSync(link)
            self.gossip.linkEstablished(link)
        self.links.retire(choice)

    def linkLost(self, link, reason: str, wasEstablished: bool) -> None:
        """
        C{link} closed.  If it was the active link of its peer, forget that
        server and its sessions, tell listeners, and wake the factory that
        dials the peer.
        """
        if not self.links.closed(link):
            return
        peer = link.serverId
        self.sending.routes.forgetPeer(peer)
        self.antiEntropy.linkLost(link)
        self.gossip.linkLost(peer)
        self.antiEntropy.digests.drop(peer)
        changes = self.state.dropServer(peer)
        self._log.info(
            "link to {peer} lost ({reason}); dropped {count} sessions",
            peer=peer,
            reason=reason,
            count=len(changes),
        )
        leaving = getattr(link, "peerLeaving", None)
        if leaving is not None:
            reason = f"left: {leaving}"
        self.listeners.notifyChanges(changes)
        self.listeners.notify("peerDisconnected", peerInfo(link), reason)
        for factory in self.outboundFactories:
            if factory.peerServerId == peer:
                if leaving is not None:
                    factory.peerLeft()
                else:
                    factory.wake()

    @property
    def draining(self) -> bool:
        """Whether this node is leaving the cluster (L{drain}): no new local sessions."""
        return self.localSessions.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self.localSessions.draining = value

    def peerLeaving(self, link) -> None:
        """C{link}'s peer said it is stopping on purpose (X_LEAVING)."""
        self.metrics.liveness["peer_left"] += 1
        self._log.info("{peer} is leaving ({reason})", peer=link.serverId,
                       reason=link.peerLeaving)

    def drain(self, reason: str = "shutting down", timeout: float | None = None) -> Deferred:
        """
        Leave the cluster on purpose (L{clustersync.cluster.drain}): no new
        local sessions from now on (L{ICluster.clientConnected} fails with
        L{NodeDraining}), peers told, links closed.

        @param timeout: seconds to wait for peers to acknowledge; default
            C{drain_timeout}.
        @return: a L{Deferred} firing with C{None} once every link is
            closed; never fails.
        """
        from clustersync.cluster.drain import drainNode

        if timeout is None:
            timeout = self.config.drainTimeout
        return drainNode(self, reason, timeout)

    def closeAllLinks(self, reason: str) -> Deferred:
        """
        Close every link (shutdown).

        @return: a L{Deferred} firing with C{None} once every link's
            connection is lost.
        """
        return self.links.closeAll(reason)

    def outboundBuffers(self) -> dict[str, int]:
        """
        The outbound buffer of each active link, for metrics: C{{serverId:
        bytes}} queued while the peer is not reading (see
        L{clustersync.links.protocol.PeerProtocol.outboundBuffered}); each is cut at
        C{config.maxOutboundBuffer}.
        """
        return self.links.outboundBuffers()

    def localSessionCount(self) -> int:
        """How many sessions this node has (its clients), without walking them."""
        return self.state.countSessions(self.serverId)

    def resync(self, link) -> None:
        """
        Re-send this node's SYNC_STATE on C{link} (the idle heartbeat: a spec
        message every server understands, which changes nothing there).
        """
        self.sending.sendSync(link)

    # Listeners and local delivery ------------------------------------------

    def addListener(self, listener) -> None:
        """Register an L{IClusterListener}."""
        self.listeners.add(listener)

    def removeListener(self, listener) -> None:
        """Unregister an L{IClusterListener}."""
        self.listeners.remove(listener)

    def setLocalDelivery(self, delivery) -> None:
        """Set the L{ILocalDelivery} provider of this node."""
        self.localDelivery.provider = delivery

    def deliverLocal(self, sessions: list[SessionInfo], message, kind: str, origin: str) -> int:
        """
        Hand C{message} (bytes, or a L{msgspec.Raw}) to local C{sessions}
        through the L{ILocalDelivery} provider.

        @return: how many sessions it was handed to.
        """
        return self.localDelivery.deliver(sessions, message, kind, origin)

    # ICluster: sends (sendToUser is bound in __init__) ---------------------

    def sendToChannel(self, canalId: int, message, excludeSessionId: str | None = None) -> Deferred:
        """See L{ICluster.sendToChannel}."""
        return self.sending.sendToChannel(canalId, message, excludeSessionId)

    def sendToSession(self, sessionId: str, message, serverId: str | None = None) -> Deferred:
        """See L{ICluster.sendToSession}."""
        return self.sending.sendToSession(sessionId, message, serverId)

    def broadcast(self, message) -> Deferred:
        """See L{ICluster.broadcast}."""
        return self.sending.broadcast(message)

    # ICluster: queries -----------------------------------------------------

    def lookupUser(self, clienteId: int) -> Deferred:
        """See L{ICluster.lookupUser}."""
        return succeed(self.state.userSessions(clienteId))

    def channelMembers(self, canalId: int) -> Deferred:
        """See L{ICluster.channelMembers}."""
        return succeed(self.state.channelMembers(canalId))

    def peers(self) -> Deferred:
        """See L{ICluster.peers}."""
        return succeed(self.links.peerInfos())

    def sessions(self) -> Deferred:
        """See L{ICluster.sessions}."""
        return succeed(list(self.state.allSessions()))

    # ICluster: local lifecycle ---------------------------------------------

    def clientConnected(self, sessionId: str, clienteId: int, usuario: str,
                        ip: str | None = None, canales=()) -> Deferred:
        """See L{ICluster.clientConnected}."""
        return self.localSessions.clientConnected(sessionId, clienteId, usuario, ip, canales)

    def clientDisconnected(self, sessionId: str) -> Deferred:
        """See L{ICluster.clientDisconnected}."""
        return self.localSessions.clientDisconnected(sessionId)

    def joinChannel(self, sessionId: str, canalId: int) -> Deferred:
        """See L{ICluster.joinChannel}."""
        return self.localSessions.setMembership(sessionId, canalId, True)

    def leaveChannel(self, sessionId: str, canalId: int) -> Deferred:
        """See L{ICluster.leaveChannel}."""
        return self.localSessions.setMembership(sessionId, canalId, False)
