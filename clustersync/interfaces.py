"""
Every extension point of clustersync, in one module.

Application code talks to the cluster only through L{ICluster}; it learns
about changes through L{IClusterListener}; it delivers messages to its own
clients by providing L{ILocalDelivery}; it extends the peer protocol with
L{IMessageHandler} plugins (found with L{twisted.plugin}).
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

__all__ = [
    "ICluster",
    "IClusterListener",
    "ILocalDelivery",
    "IMessageHandler",
    "INodeExtension",
    "IPeerLink",
]


class IPeerLink(Interface):
    """
    One established link to a peer server, as handlers see it.
    """

    serverId = Attribute("The peer's serverId, as its HELLO said (a C{str}).")
    direction = Attribute('C{"inbound"} (it dialed us) or C{"outbound"}.')

    def sendLine(line):
        """
        Write one encoded line (C{bytes} ending in C{\\n}) to the peer.
        Lines are written in the order given; a link may gather the lines
        of one reactor turn and hand them to its transport in one write
        when the turn ends.

        @return: C{True} if the link took it, C{False} if the link is
            closing or closed (the line will never be written).
        """

    def loseConnection(reason):
        """Close the link, logging C{reason} (a C{str})."""


class IMessageHandler(Interface):
    """
    Handles decoded peer messages of some types.

    The built-in handlers for the nine spec types are providers of this
    interface too, found the same way as third-party ones (see
    C{docs/plugins.md}).  Handlers of one type run in discovery order,
    built-ins first.  A handler runs only for messages arriving over the
    I{active} link of a peer, after the handshake (HELLO aside).
    """

    name = Attribute("A short unique name (C{str}), used in logs and metrics.")
    messageTypes = Attribute(
        "The wire C{type} names this handler handles, e.g. C{('BROADCAST',)}."
    )

    def handleMessage(node, link, message):
        """
        Handle one message.

        @param node: the L{clustersync.cluster.node.ClusterNode}: its C{state}, its
            L{ICluster} API and its local delivery.
        @param link: the L{IPeerLink} it arrived on.
        @param message: the typed message (a class of L{clustersync.wire.codec}).
        @return: ignored.  An exception is logged and counted, the link and
            the node stay up.

        A provider may also have an optional C{bindFast(node)} method (not
        part of this interface): while it is the only handler of its type,
        the node calls the C{(link, message)} callable it returns instead
        of C{handleMessage}, and that callable must do exactly the same.
        """


class IClusterListener(Interface):
    """
    Told about changes in the cluster.  Every method returns nothing and must
    not raise (an exception is logged and ignored); every argument is a
    snapshot the listener must not mutate.
    """

    def peerConnected(peer):
        """
        A peer server's link was established.

        @param peer: a L{clustersync.cluster.node.PeerInfo}.
        """

    def peerDisconnected(peer, reason):
        """
        A peer server's link was lost; its sessions were already removed.

        @param peer: a L{clustersync.cluster.node.PeerInfo}.
        @param reason: why (a C{str}).
        """

    def sessionAdded(session):
        """
        A session appeared (local or remote).

        @param session: a L{clustersync.wire.codec.SessionInfo}; its C{serverId} is
            the server hosting it.
        """

    def sessionRemoved(session):
        """A session ended (or its server went away)."""

    def membershipChanged(session, canalId, joined):
        """
        A session joined (C{joined=True}) or left channel C{canalId}.
        """


class ILocalDelivery(Interface):
    """
    How a message reaches this node's own clients (the client gateway
    provides it).
    """

    def deliver(sessions, message, kind, origin):
        """
        Deliver C{message} to local C{sessions}.

        @param sessions: the local L{clustersync.wire.codec.SessionInfo}s, a
            sequence (a list, or for a direct message the tuple the state
            keeps for that user) to read, not to keep or mutate.
        @param message: the JSON value to deliver, as encoded C{bytes}
            (exactly the bytes that arrived from the peer, if it came from
            one).
        @param kind: the wire type it came as: C{"DIRECT_MESSAGE"},
            C{"CHANNEL_MESSAGE"}, C{"SESSION_MESSAGE"} or C{"BROADCAST"}.
        @param origin: the serverId of the node that sent it (this node's own
            id for a message sent from here).
        @return: the number of sessions it was handed to (an C{int}).
        """


class ICluster(Interface):
    """
    The one door from application code into the cluster.

    Every method returns a L{Deferred}.  Sends fire with a
    L{clustersync.cluster.node.Delivery} naming where the message went; they fail
    with a L{clustersync.errors.ClusterError} subclass, never silently.
    With C{confirm_sends} (the default) a send to peers fires only once its
    line reached each peer's socket (acknowledged by its TCP stack, plain
    TCP links); a link lost before that fails it with L{PeerUnavailable}.
    Sends to a server whose link is down fail at once (there is no queue).
    See C{docs/reliability.md}.
    """

    serverId = Attribute("This node's serverId (a C{str}).")

    def sendToUser(clienteId, message):
        """
        Deliver C{message} (any JSON-serialisable value) to every session of
        user C{clienteId}: local ones directly, remote ones by one
        DIRECT_MESSAGE to each server that hosts one.

        @return: a L{Deferred} firing with a L{Delivery}; failing with
            L{UnknownUser} if no session of that user exists anywhere, with
            L{PeerUnavailable} if a hosting server's link could not take it
            (the servers it did reach are on the error), with C{TypeError}
            if C{message} is not JSON-serialisable or C{clienteId} is not an
            C{int} (a C{bool} is not one).
        """

    def sendToChannel(canalId, message, excludeSessionId=None):
        """
        Deliver C{message} to every member of C{canalId}: local members
        (but C{excludeSessionId}, usually the sender) directly, remote ones by
        one CHANNEL_MESSAGE to each server hosting a member.

        @return: a L{Deferred} firing with a L{Delivery}; failing with
            L{UnknownChannel} if the channel has no member anywhere (the
            excluded sender aside), with L{PeerUnavailable} as above, with
            C{TypeError} as above (C{canalId} for C{clienteId}).
        """

    def sendToSession(sessionId, message, serverId=None):
        """
        Deliver C{message} to one session (local, or by SESSION_MESSAGE to
        its server).  C{serverId} disambiguates a C{sessionId} that more
        than one server uses.

        @return: a L{Deferred} firing with a L{Delivery}; failing with
            L{UnknownSession} if no such session is known, with
            L{AmbiguousSession} if several servers use that id and no
            C{serverId} was given, with L{PeerUnavailable} as above.
        """

    def broadcast(message):
        """
        Deliver C{message} to every local session and, by BROADCAST, to
        every connected server.

        @return: a L{Deferred} firing with a L{Delivery}; failing with
            L{PeerUnavailable} if a connected server's link could not take it.
        """

    def lookupUser(clienteId):
        """
        @return: a L{Deferred} firing with the list of
            L{clustersync.wire.codec.SessionInfo} of C{clienteId} on every server
            (empty if none); never fails.
        """

    def channelMembers(canalId):
        """
        @return: a L{Deferred} firing with the list of sessions in
            C{canalId} on every server (empty if none); never fails.
        """

    def peers():
        """
        @return: a L{Deferred} firing with the list of
            L{clustersync.cluster.node.PeerInfo} of established links; never fails.
        """

    def sessions():
        """
        @return: a L{Deferred} firing with the list of every session of
            the cluster, local ones included; never fails.
        """

    def drain(reason="shutting down", timeout=None):
        """
        Leave the cluster on purpose: take no new local sessions, tell
        clustersync peers this node is leaving (they show it as I{left},
        not I{failed}), send existing servers CLIENT_DISCONNECTED for each
        local session, wait up to C{timeout} seconds (default
        C{drain_timeout}) for peers to acknowledge, then close every link.

        @return: a L{Deferred} firing with C{None} once every link is
            closed; never fails.
        """

    def clientConnected(sessionId, clienteId, usuario, ip=None, canales=()):
        """
        A client authenticated here: record the session and send
        CLIENT_CONNECTED to every peer.

        @return: a L{Deferred} firing with the new
            L{clustersync.wire.codec.SessionInfo}; failing with
            L{DuplicateSession} if C{sessionId} is already a local session,
            with L{clustersync.errors.NodeDraining} once the node is leaving
            the cluster (L{drain}), with
            L{clustersync.state.cluster.StateLimitError} over a limit, with
            C{TypeError}/C{ValueError} for a value the wire cannot carry
            (ids must be 64-bit C{int}s; C{sessionId}, C{usuario} C{str}s;
            C{ip} a C{str} or C{None}).
        """

    def clientDisconnected(sessionId):
        """
        A local session ended: remove it and send CLIENT_DISCONNECTED to
        every peer.

        @return: a L{Deferred} firing with the removed session; failing
            with L{UnknownSession} if it is not a local session.
        """

    def joinChannel(sessionId, canalId):
        """
        A local session joined C{canalId}: record it and send
        CHANNEL_MEMBERSHIP (JOIN) to every peer.

        @return: a L{Deferred} firing with C{True} if membership changed,
            C{False} if the session was already a member; failing with
            L{UnknownSession} if it is not a local session.
        """

    def leaveChannel(sessionId, canalId):
        """
        A local session left C{canalId}: record it and send
        CHANNEL_MEMBERSHIP (LEAVE) to every peer.

        @return: like L{joinChannel}.
        """

    def addListener(listener):
        """Register an L{IClusterListener}; returns nothing."""

    def removeListener(listener):
        """Unregister an L{IClusterListener}; returns nothing."""

    def setLocalDelivery(delivery):
        """Set the L{ILocalDelivery} provider of this node."""


class INodeExtension(Interface):
    """
    A plugin that adds a service to the node (the client gateway, the status
    web server, ...).  Found with L{twisted.plugin.getPlugins} in
    L{clustersync.plugins} and in every C{--plugin-dir}, like handlers.

    An extension sits on L{ICluster} and L{IClusterListener} only, never on
    link internals.
    """

    name = Attribute("A short unique name (C{str}), also the service name.")

    def makeService(node, config, reactor):
        """
        Build this extension's service for C{node}.

        @param node: the L{ICluster} provider (a
            L{clustersync.cluster.node.ClusterNode}).
        @param config: the L{clustersync.app.config.NodeConfig}.
        @param reactor: the reactor to use.
        @return: an L{twisted.application.service.IService} to add under the
            node's L{MultiService}, or C{None} if disabled by C{config}.
        """
