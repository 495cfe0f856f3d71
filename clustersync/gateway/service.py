"""
The gateway: the node's L{ILocalDelivery}, its client sessions, and the
service that listens for chat clients.
"""

from __future__ import annotations

import os

import msgspec
from twisted.application.service import Service
from twisted.internet.defer import DeferredList, succeed
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from clustersync.errors import ClusterError
from clustersync.gateway.auth import (
    DEFAULT_USERS_FILE,
    UsersFileChecker,
    createDemoUsers,
    makePortal,
)
from clustersync.gateway.presence import PresenceHub
from clustersync.gateway.protocol import ClientFactory
from clustersync.gateway.throttle import LoginThrottle
from clustersync.interfaces import ILocalDelivery, INodeExtension
from clustersync.waiters import OneShot

__all__ = ["Gateway", "GatewayService", "GatewayExtension", "resolveUsersFile"]

_decoder = msgspec.json.Decoder()


@implementer(ILocalDelivery)
class Gateway:
    """
    The client side of one node: its logged-in sessions, and how cluster
    messages reach them.

    @ivar node: the L{clustersync.interfaces.ICluster} provider.
    @ivar portal: the L{twisted.cred.portal.Portal} logins go through.
    @ivar clock: an L{IReactorTime} (scheduling ACKs, rate limits).
    @ivar sessions: sessionId -> L{ClientProtocol} of logged-in clients.
    @ivar connections: every open L{ClientProtocol}.
    @ivar maxLineLength: the longest request line accepted (bytes).
    @ivar rate: requests per second allowed per connection (sustained).
    @ivar burst: requests allowed in a burst per connection.
    @ivar maxOutput: bytes that may queue for a client that stopped reading
        before it is disconnected.
    @ivar throttle: the L{LoginThrottle} (C{None}: logins are not slowed).
    @ivar maxSessionsPerUser: most sessions one user may have in the
        cluster (as this node knows it) to log in here; C{None}: no limit.
    @ivar presence: the L{PresenceHub}, listening to the node.
    @ivar users: C{usuario -> ChatUser or None} (names to follow), or
        C{None}.
    """

    _log = Logger()

    def __init__(self, node, portal, clock, maxLineLength: int = 65536,
                 rate: float = 20.0, burst: int = 100,
                 maxOutput: int = 4 * 1024 * 1024, throttle=None,
                 maxSessionsPerUser: int | None = None, users=None) -> None:
        self.node = node
        self.throttle = throttle
        self.maxSessionsPerUser = maxSessionsPerUser
        self.users = users
        self.presence = PresenceHub(node)
        node.addListener(self.presence)
        self.maxOutput = maxOutput
        self.portal = portal
        self.clock = clock
        self.maxLineLength = maxLineLength
        self.rate = rate
        self.burst = burst
        self.sessions: dict = {}
        self.connections: set = set()
        self._bootId = os.urandom(4).hex()
        self._counter = 0
        self.factory = ClientFactory(self)

    def nextMessageId(self) -> str:
        """
        A mensajeId unique across the cluster:
        C{"<serverId>:<random boot id>:<counter>"}.
        """
        self._counter += 1
        return f"{self.node.serverId}:{self._bootId}:{self._counter}"

    def rejected(self, client, reason: str, detail: str) -> None:
        """Count and log one refused client input."""
        self.node.metrics.rejected("client_" + reason)
        self._log.warn("client {peer} ({usuario}): {reason}: {detail}",
                       peer=client.peer,
                       usuario=client.user.usuario if client.user else "-",
                       reason=reason, detail=detail)

    # ILocalDelivery ----------------------------------------------------------

    def deliver(self, sessions, message, kind, origin) -> int:
        """
        Write C{message} as one line to each of C{sessions} that is still
        connected here.  A delivered direct message is acknowledged to its
        sender's session (see L{_acknowledge}).
        """
        line = bytes(message) + b"\n"
        delivered = []
        for session in sessions:
            client = self.sessions.get(session.sessionId)
            if client is not None and client.sendRaw(line):
                delivered.append(session)
        if kind == "DIRECT_MESSAGE" and delivered:
            self._acknowledge(message, delivered)
        return len(delivered)

    def _acknowledge(self, message, delivered) -> None:
        """
        Send C{{"tipo": "ACK", "mensajeId": ...}} to the session named by
        the direct message's C{remitente}, one per recipient session it
        reached here.  Messages without a C{remitente} (e.g. from servers
        that do not send one) are not acknowledged.
        """
        try:
            body = _decoder.decode(message)
            payload = body["payload"]
            mensajeId = payload["mensajeId"]
            sender = payload["remitente"]
            senderSession, senderServer = sender["sessionId"], sender["serverId"]
            if not isinstance(senderSession, str) or not isinstance(senderServer, str):
                return
        except (msgspec.DecodeError, KeyError, TypeError):
            return
        for session in delivered:
            ack = {"command": "EVENT", "payload": {
                "tipo": "ACK", "mensajeId": mensajeId, "clienteId": session.clienteId,
                "serverId": self.node.serverId}}
            # After the current send has been answered, so a local sender
            # sees its SEND_USER response before the ACK.
            self.clock.callLater(0, self._sendAck, senderSession, senderServer, ack)

    def _sendAck(self, sessionId: str, serverId: str, ack) -> None:
        def failed(f):
            f.trap(ClusterError)
            self.node.metrics.undeliverable["ACK"] += 1
            self._log.info("ACK {mensajeId} not delivered: {error}",
                           mensajeId=ack["payload"]["mensajeId"], error=str(f.value))

        self.node.sendToSession(sessionId, ack, serverId=serverId).addErrback(failed)

    # Shutdown ------------------------------------------------------------------

    def closeAll(self, why: str):
        """
        End every session (CLIENT_DISCONNECTED goes out now) and close every
        client connection.

        @return: a L{Deferred} firing once every connection is closed.
        """
        self.node.removeListener(self.presence)
        waits = []
        for client in list(self.connections):
            client._endSession(why)
            waits.append(client.lost)
            client.close()
        return DeferredList(waits) if waits else succeed(None)


def resolveUsersFile(config) -> str:
    """
    The users file of C{config}: C{users_file}, or L{DEFAULT_USERS_FILE} in
    the current directory.  (A missing file is created with demo accounts
    when the service starts.)
    """
    return config.usersFile if config.usersFile is not None else DEFAULT_USERS_FILE


class GatewayService(Service):
    """
    Listens for chat clients on an endpoint string and serves them with a
    L{Gateway}; it is the node's local delivery.

    If the users file does not exist when it starts (and C{createDemo}), it
    is created with the demo accounts, whose passwords are logged and
    written next to it (several nodes sharing one file create it once).

    @ivar gateway: the L{Gateway} (C{None} until started).
    @ivar port: the listening port (C{None} until listening).
    """

    name = "gateway"
    _log = Logger()

    def __init__(self, node, config, reactor, usersFile: str, createDemo: bool = True) -> None:
        self.node = node
        self.config = config
        self.reactor = reactor
        self.usersFile = usersFile
        self.createDemo = createDemo
        self.gateway = None
        self.port = None
        self._listening = OneShot()

    def whenListening(self):
        """
        @return: a L{Deferred} firing with the listening port once it
            listens (failing with the listen error).
        """
        return self._listening.wait()

    def startService(self) -> None:
        """Open the users file (creating the demo one), then listen."""
        Service.startService(self)
        if self.createDemo and not os.path.exists(self.usersFile):
            passwords = createDemoUsers(self.usersFile)
            if passwords:
                logins = ", ".join(f"{u} / {p}" for u, p in passwords.items())
                self._log.warn(
                    "No users file: created {path} with demo accounts ({logins}; admin may "
                    "BROADCAST). The logins are also in {path}.demo-logins.txt. Add users with "
                    "'clustersync-admin adduser NAME --cliente-id N'.",
                    path=os.path.abspath(self.usersFile), logins=logins)
        checker = UsersFileChecker(self.usersFile, self.reactor)
        c = self.config
        throttle = LoginThrottle(self.reactor, c.loginDelay, c.loginMaxDelay)
        self.gateway = Gateway(self.node, makePortal(checker), self.reactor,
                               maxLineLength=c.clientMaxLine, rate=c.clientRate,
                               burst=c.clientBurst, maxOutput=c.clientMaxOutput,
                               throttle=throttle, maxSessionsPerUser=c.maxSessionsPerUser,
                               users=checker.lookup)
        self.node.setLocalDelivery(self.gateway)
        d = serverFromString(self.reactor, self.config.clients).listen(self.gateway.factory)

        def listening(port):
            self.port = port
            self._log.info(
                "chat clients on {address} (users file {path}); try: clustersync-chat "
                "{host}:{port}", address=port.getHost(), path=os.path.abspath(self.usersFile),
                host=getattr(port.getHost(), "host", "127.0.0.1"),
                port=getattr(port.getHost(), "port", "?"))
            self._listening.succeed(port)

        def failed(f):
            self._log.failure("cannot listen for clients on {description}", f,
                              description=self.config.clients)
            self._listening.fail(f)

        d.addCallbacks(listening, failed)

    def stopService(self):
        """Stop listening, end every session, close every client."""
        Service.stopService(self)
        waits = []
        if self.port is not None:
            port, self.port = self.port, None
            waits.append(port.stopListening())
        if self.gateway is not None:
            waits.append(self.gateway.closeAll("server shutting down"))
        return DeferredList([w for w in waits if w is not None])


@implementer(IPlugin, INodeExtension)
class GatewayExtension:
    """
    The L{INodeExtension} that adds the chat gateway to a node: a
    L{GatewayService} on C{config.clients}, or nothing when that is
    C{None}.
    """

    name = "gateway"

    def makeService(self, node, config, reactor):
        """
        @return: a L{GatewayService}, or C{None} if C{config.clients} is
            C{None}.
        """
        if config.clients is None:
            return None
        return GatewayService(node, config, reactor, resolveUsersFile(config))
