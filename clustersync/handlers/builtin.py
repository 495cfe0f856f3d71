"""
The built-in L{IMessageHandler}s: one per spec message type.

They are published as plugins by L{clustersync.plugins.clustersync_builtin}
and found with L{twisted.plugin.getPlugins}, exactly like third-party
handlers.  State messages are applied only from a peer's active link
(L{ClusterNode.applyRemote}); forwarded messages are delivered from any
established link of that peer, so nothing in flight is lost while a
duplicate link is being closed.
"""

from __future__ import annotations

import time

import attrs
from twisted.plugin import IPlugin
from zope.interface import implementer

from clustersync.interfaces import IMessageHandler

__all__ = ["BUILTIN_HANDLERS"]


@implementer(IPlugin, IMessageHandler)
@attrs.frozen
class HelloHandler:
    """HELLO: completes the handshake of the link it arrived on."""

    name: str = "builtin.hello"
    messageTypes: tuple = ("HELLO",)

    def handleMessage(self, node, link, message) -> None:
        """Hand the HELLO to the link's state machine."""
        link.helloReceived(message)


@implementer(IPlugin, IMessageHandler)
@attrs.frozen
class SyncStateHandler:
    """SYNC_STATE: replaces everything known of the link's server."""

    name: str = "builtin.sync_state"
    messageTypes: tuple = ("SYNC_STATE",)

    def handleMessage(self, node, link, message) -> None:
        """Replace the peer's sessions, timing the apply."""
        sessions = message.payload.sessions
        started = time.perf_counter()
        node.applyRemote(
            link,
            lambda state: state.replaceServer(link.serverId, sessions),
            "SYNC_STATE",
        )
        node.metrics.syncApplied += 1
        node.metrics.syncSessions = len(sessions)
        node.metrics.syncSeconds = time.perf_counter() - started


@implementer(IPlugin, IMessageHandler)
@attrs.frozen
class ClientConnectedHandler:
    """CLIENT_CONNECTED: adds a session to the link's server."""

    name: str = "builtin.client_connected"
    messageTypes: tuple = ("CLIENT_CONNECTED",)

    def handleMessage(self, node, link, message) -> None:
        """Add the session, attributed to the link's serverId."""
        node.applyRemote(
            link,
            lambda state: state.addSession(link.serverId, message.payload),
            "CLIENT_CONNECTED",
        )


@implementer(IPlugin, IMessageHandler)
@attrs.frozen
class ClientDisconnectedHandler:
    """
    CLIENT_DISCONNECTED: removes a session, or every session of the client
    when C{sessionId} is null.
    """

    name: str = "builtin.client_disconnected"
    messageTypes: tuple = ("CLIENT_DISCONNECTED",)

    def handleMessage(self, node, link, message) -> None:
        """Remove by sessionId, or by clienteId."""
        p = message.payload
        if p.sessionId is None:
            apply = lambda state: state.removeClient(link.serverId, p.clienteId)  # noqa: E731
        else:
            apply = lambda state: state.removeSession(link.serverId, p.sessionId)  # noqa: E731
        node.applyRemote(link, apply, "CLIENT_DISCONNECTED")


@implementer(IPlugin, IMessageHandler)
@attrs.frozen
class ChannelMembershipHandler:
    """CHANNEL_MEMBERSHIP: JOIN (case-insensitive) adds, anything else removes."""

    name: str = "builtin.channel_membership"
    messageTypes: tuple = ("CHANNEL_MEMBERSHIP",)

    def handleMessage(self, node, link, message) -> None:
        """Record the membership change."""
        p = message.payload
        node.applyRemote(
            link,
            lambda state: state.setMembership(link.serverId, p.sessionId, p.canalId, message.joined),
            "CHANNEL_MEMBERSHIP",
        )


@implementer(IPlugin, IMessageHandler)
@attrs.frozen
class DirectMessageHandler:
    """DIRECT_MESSAGE: delivers to every local session of C{userId}."""

    name: str = "builtin.direct_message"
    messageTypes: tuple = ("DIRECT_MESSAGE",)

    def handleMessage(self, node, link, message) -> None:
        """Deliver the raw message locally."""
        node.deliverDirect(link, message)

    def bindFast(self, node):
        """
        The node's dispatch calls this C{(link, message)} callable instead
        of L{handleMessage} while this is the only DIRECT_MESSAGE handler.
        """
        return node.deliverDirect


@implementer(IPlugin, IMessageHandler)
@attrs.frozen
class ChannelMessageHandler:
    """CHANNEL_MESSAGE: delivers to local members of C{canalId}."""

    name: str = "builtin.channel_message"
    messageTypes: tuple = ("CHANNEL_MESSAGE",)

    def handleMessage(self, node, link, message) -> None:
        """Deliver the raw message locally."""
        p = message.payload
        node.deliverLocal(
            node.state.channelSessionsOn(node.serverId, p.canalId),
            p.message,
            "CHANNEL_MESSAGE",
            link.serverId,
        )


@implementer(IPlugin, IMessageHandler)
@attrs.frozen
class SessionMessageHandler:
    """SESSION_MESSAGE: delivers to one local session."""

    name: str = "builtin.session_message"
    messageTypes: tuple = ("SESSION_MESSAGE",)

    def handleMessage(self, node, link, message) -> None:
        """Deliver the raw message to that session, if it is here."""
        p = message.payload
        session = node.state.session(node.serverId, p.sessionId)
        node.deliverLocal(
            [] if session is None else [session], p.message, "SESSION_MESSAGE", link.serverId
        )


@implementer(IPlugin, IMessageHandler)
@attrs.frozen
class BroadcastHandler:
    """BROADCAST: delivers to every local session."""

    name: str = "builtin.broadcast"
    messageTypes: tuple = ("BROADCAST",)

    def handleMessage(self, node, link, message) -> None:
        """Deliver the raw message to all local sessions."""
        node.deliverLocal(
            node.state.sessionsOf(node.serverId), message.payload.message, "BROADCAST", link.serverId
        )


#: One instance of each built-in handler, in spec order.
BUILTIN_HANDLERS = (
    HelloHandler(),
    SyncStateHandler(),
    ClientConnectedHandler(),
    ClientDisconnectedHandler(),
    ChannelMembershipHandler(),
    DirectMessageHandler(),
    ChannelMessageHandler(),
    SessionMessageHandler(),
    BroadcastHandler(),
)
