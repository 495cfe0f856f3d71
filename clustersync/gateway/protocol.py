"""
The client-facing protocol of the gateway: JSON lines, one request per
line, C{{"command": ..., "payload": {...}}}; see C{docs/clients.md}.

Requests of one connection are handled one at a time, in order, so
responses come back in request order.  Every response carries
C{payload.success} and a human-readable C{payload.message}; pushed events
are C{{"command": "EVENT", "payload": {...}}} lines written between
responses.

Bad input (invalid UTF-8, malformed JSON, not an object, unknown command,
missing or mistyped field, a command before LOGIN) gets an error response,
is logged and counted as C{client_<reason>} in the node's
C{metrics.rejectedInputs}, and changes nothing.  An oversized line or a
flood of lines closes the connection after an error line naming the reason.
"""

from __future__ import annotations

import collections
import uuid

import msgspec
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from clustersync.wire.codec import encodeRaw
from clustersync.errors import (
    ClusterError,
    PeerUnavailable,
    StateLimitError,
    UnknownChannel,
    UnknownSession,
    UnknownUser,
)
from clustersync.gateway.auth import IChatUser

__all__ = ["ClientProtocol", "ClientFactory", "BadRequest", "COMMANDS"]

_MAX_INT64 = 2**63 - 1
_decoder = msgspec.json.Decoder()


class BadRequest(Exception):
    """
    A request that cannot be served as given.

    @ivar reason: the counter suffix (C{field}, C{forbidden}, ...).
    @ivar message: the text for the client.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(message)


def _int64(payload: dict, name: str) -> int:
    value = payload.get(name)
    if value is None:
        raise BadRequest("field", f"payload.{name} is missing (expected an integer)")
    if isinstance(value, bool) or not isinstance(value, int) or not -_MAX_INT64 - 1 <= value <= _MAX_INT64:
        raise BadRequest("field", f"payload.{name}: expected a 64-bit integer, got {value!r:.40}")
    return value


def _text(payload: dict, name: str) -> str:
    value = payload.get(name)
    if value is None:
        raise BadRequest("field", f"payload.{name} is missing (expected a string)")
    if not isinstance(value, str):
        raise BadRequest("field", f"payload.{name}: expected a string, got {type(value).__name__}")
    return value


def _content(payload: dict) -> object:
    value = payload.get("contenido")
    if value is None:
        raise BadRequest("field", "payload.contenido is missing (expected a string or an object)")
    if isinstance(value, str):
        if not value.strip():
            raise BadRequest("field", "payload.contenido: must not be empty")
        return value
    if isinstance(value, dict) and value:
        return value
    raise BadRequest("field", f"payload.contenido: expected a string or an object, got {type(value).__name__}")


def _deliveryText(delivery) -> str:
    where = []
    if delivery.local:
        where.append(f"{delivery.local} local session(s)")
    if delivery.servers:
        where.append("server(s) " + ", ".join(delivery.servers))
    return " and ".join(where) or "nobody"


def _deliveryInfo(delivery) -> dict:
    return {"local": delivery.local, "servidores": list(delivery.servers)}


#: command -> (method name, needs a login)
COMMANDS = {
    "LOGIN": ("do_LOGIN", False),
    "LOGOUT": ("do_LOGOUT", True),
    "JOIN": ("do_JOIN", True),
    "LEAVE": ("do_LEAVE", True),
    "SEND_USER": ("do_SEND_USER", True),
    "SEND_CHANNEL": ("do_SEND_CHANNEL", True),
    "BROADCAST": ("do_BROADCAST", True),
    "LIST_CONNECTED": ("do_LIST_CONNECTED", True),
    "PING": ("do_PING", False),
}


class ClientProtocol(Protocol):
    """
    One chat client connection.

    @ivar gateway: the L{clustersync.gateway.service.Gateway}.
    @ivar user: the L{ChatUser} once logged in, else C{None}.
    @ivar sessionId: the cluster sessionId once logged in, else C{None}.
    @ivar canales: the channels this session joined.
    @ivar closed: whether the connection was lost.
    """

    _log = Logger()

    def __init__(self, gateway) -> None:
        self.gateway = gateway
        self.user = None
        self.sessionId: str | None = None
        self.canales: set[int] = set()
        self.closed = False
        self.peer = "?"
        self._buffer = b""
        self._queue: collections.deque = collections.deque()
        self._busy = False
        self._closing = False
        self._tokens = float(gateway.burst)
        self._refilled = gateway.clock.seconds()
        self.lost = Deferred()
        self._congested = False
        self._queuedBytes = 0

    # Connection ------------------------------------------------------------

    def connectionMade(self) -> None:
        """Register with the gateway."""
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        setNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            try:
                setNoDelay(True)
            except Exception:
                pass
        self.gateway.connections.add(self)
        # Told when the socket's send buffer is full (the client is not
        # reading), so the output queued meanwhile can be bounded.
        self.transport.registerProducer(self, True)

    # IPushProducer: the transport tells us when the client stops reading.

    def pauseProducing(self) -> None:
        """The client is not keeping up: start counting what queues up."""
        if not self._congested:
            self._congested = True
            self._queuedBytes = 0

    def resumeProducing(self) -> None:
        """The client caught up."""
        self._congested = False

    def stopProducing(self) -> None:
        """The connection is going away."""

    def connectionLost(self, reason) -> None:
        """End the session, if any, and forget this connection."""
        self.closed = True
        self._queue.clear()
        self.gateway.connections.discard(self)
        self._endSession("connection closed")
        self.lost.callback(None)

    def _endSession(self, why: str) -> None:
        if self.sessionId is None:
            return
        sessionId, self.sessionId = self.sessionId, None
        user, self.user = self.user, None
        self.canales = set()
        self.gateway.sessions.pop(sessionId, None)
        self._log.info("{usuario} ({sessionId}) logged out: {why}",
                       usuario=user.usuario, sessionId=sessionId, why=why)
        self.gateway.node.clientDisconnected(sessionId).addErrback(
            lambda f: f.trap(UnknownSession))

    # Output ----------------------------------------------------------------

    def sendObject(self, obj) -> None:
        """Write one JSON line (if still connected)."""
        self.sendRaw(encodeRaw(obj) + b"\n")

    def sendRaw(self, line: bytes) -> bool:
        """
        Write one already-encoded line ending in C{\\n}.  A client that
        stopped reading and has more than C{gateway.maxOutput} bytes queued
        is cut off (the line is not written).

        @return: whether it was written.
        """
        if self.closed or self._closing:
            return False
        if self._congested:
            self._queuedBytes += len(line)
            if self._queuedBytes > self.gateway.maxOutput:
                self.gateway.rejected(
                    self, "slow", f"not reading; over {self.gateway.maxOutput} bytes queued")
                self._closing = True
                self._queue.clear()
                self.transport.abortConnection()
                return False
        self.transport.write(line)
        return True

    def respond(self, command: str, success: bool, message: str, **extra) -> None:
        """Write a response to C{command}."""
        self.sendObject({"command": command,
                         "payload": {"success": success, "message": message, **extra}})

    def reject(self, command: str, reason: str, message: str) -> None:
        """Count, log and answer one refused request."""
        self.gateway.rejected(self, reason, message)
        self.respond(command, False, message)

    def closeWith(self, reason: str, message: str) -> None:
        """Refuse the connection: count, log, send an ERROR line, close."""
        if self._closing or self.closed:
            return
        self.gateway.rejected(self, reason, message)
        self.respond("ERROR", False, message + "; closing the connection")
        self.close()

    def close(self) -> None:
        """
        Close after flushing what is queued (the producer registration is
        dropped first, or the transport would wait for it forever).
        """
        self._closing = True
        self._queue.clear()
        if not self.closed:
            self.transport.unregisterProducer()
            self.transport.loseConnection()

    # Input -----------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """Split on newlines, police size and rate, queue the lines."""
        if self._closing or self.closed:
            return
        maxLine = self.gateway.maxLineLength
        buffer = self._buffer + data
        *lines, self._buffer = buffer.split(b"\n")
        for line in lines:
            if len(line) > maxLine:
                self.closeWith("oversize", f"line longer than {maxLine} bytes")
                return
            if not line.strip():
                continue
            if not self._takeToken():
                self.closeWith("flood", f"more than {self.gateway.rate:g} requests per second")
                return
            self._queue.append(line)
        if len(self._buffer) > maxLine:
            self.closeWith("oversize", f"line longer than {maxLine} bytes")
            return
        self._pump()

    def _takeToken(self) -> bool:
        now = self.gateway.clock.seconds()
        g = self.gateway
        self._tokens = min(float(g.burst), self._tokens + (now - self._refilled) * g.rate)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _pump(self) -> None:
        while self._queue and not self._busy and not self.closed and not self._closing:
            line = self._queue.popleft()
            d = maybeDeferred(self.lineReceived, line)
            if d.called:
                d.addErrback(self._internalError)
                continue
            self._busy = True

            def done(result):
                self._busy = False
                self._pump()
                return result

            d.addErrback(self._internalError)
            d.addBoth(done)

    def _internalError(self, failure) -> None:
        self._log.failure("client request failed ({peer})", failure, peer=self.peer)
        self.gateway.rejected(self, "internal", str(failure.value))
        self.respond("ERROR", False, "internal error; the request was not completed")

    def lineReceived(self, line: bytes):
        """Decode and dispatch one request line."""
        if line.endswith(b"\r"):
            line = line[:-1]
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as e:
            return self.reject("ERROR", "utf8", f"the line is not valid UTF-8 (byte {e.start})")
        try:
            request = _decoder.decode(line)
        except msgspec.DecodeError as e:
            return self.reject("ERROR", "json", f"malformed JSON: {e}")
        if not isinstance(request, dict):
            return self.reject("ERROR", "envelope",
                               'expected an object {"command": ..., "payload": {...}}')
        command = request.get("command")
        if not isinstance(command, str):
            return self.reject("ERROR", "envelope", "command is missing or not a string")
        payload = request.get("payload")
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            return self.reject(command, "envelope", "payload must be an object")
        entry = COMMANDS.get(command)
        if entry is None:
            return self.reject(
                command if len(command) <= 40 else "ERROR", "command",
                f"unknown command {command[:40]!r} (known: {', '.join(COMMANDS)})")
        method, needsLogin = entry
        if needsLogin and self.sessionId is None:
            return self.reject(command, "unauthenticated", f"{command} needs a LOGIN first")
        d = maybeDeferred(getattr(self, method), payload)

        def failed(f):
            f.trap(BadRequest)
            self.reject(command, f.value.reason, f.value.message)

        return d.addErrback(failed)

    # Commands --------------------------------------------------------------

    def _sender(self) -> dict:
        return {"clienteId": self.user.clienteId, "usuario": self.user.usuario,
                "sessionId": self.sessionId, "serverId": self.gateway.node.serverId}

    def do_PING(self, payload) -> None:
        """PING: answer with PONG and this server's id."""
        self.respond("PING", True, "PONG", serverId=self.gateway.node.serverId)

    @inlineCallbacks
    def do_LOGIN(self, payload):
        """LOGIN: check usuario/contrasenia with the portal, open a session."""
        usuario = _text(payload, "usuario")
        password = _text(payload, "contrasenia")
        if self.sessionId is not None:
            raise BadRequest("state", f"already logged in as {self.user.usuario}; LOGOUT first")
        try:
            _, user, _ = yield self.gateway.portal.login(
                UsernamePassword(usuario, password), None, IChatUser)
        except UnauthorizedLogin:
            self.gateway.rejected(self, "login_failed", f"failed login as {usuario[:60]!r}")
            self.respond("LOGIN", False, "wrong usuario or contrasenia")
            return
        if self.closed or self._closing:
            return
        sessionId = str(uuid.uuid4())
        ip = getattr(self.transport.getPeer(), "host", None)
        self.gateway.sessions[sessionId] = self
        try:
            yield self.gateway.node.clientConnected(sessionId, user.clienteId, user.usuario, ip)
        except (ClusterError, StateLimitError) as e:
            self.gateway.sessions.pop(sessionId, None)
            raise BadRequest("limit", f"cannot open a session: {e}") from None
        self.sessionId, self.user = sessionId, user
        self._log.info("{usuario} (clienteId {clienteId}) logged in from {peer} as {sessionId}",
                       usuario=user.usuario, clienteId=user.clienteId, peer=self.peer,
                       sessionId=sessionId)
        self.respond("LOGIN", True, f"welcome {user.usuario}", sessionId=sessionId,
                     clienteId=user.clienteId, usuario=user.usuario,
                     serverId=self.gateway.node.serverId, admin=user.admin)

    def do_LOGOUT(self, payload) -> None:
        """LOGOUT: end the session; the connection stays open."""
        usuario = self.user.usuario
        self._endSession("LOGOUT")
        self.respond("LOGOUT", True, f"goodbye {usuario}")

    @inlineCallbacks
    def _membership(self, command: str, payload, join: bool):
        canalId = _int64(payload, "canalId")
        call = self.gateway.node.joinChannel if join else self.gateway.node.leaveChannel
        try:
            changed = yield call(self.sessionId, canalId)
        except StateLimitError as e:
            raise BadRequest("limit", f"cannot join channel {canalId}: {e}") from None
        if join:
            self.canales.add(canalId)
            text = f"joined channel {canalId}" if changed else f"already in channel {canalId}"
        else:
            self.canales.discard(canalId)
            text = f"left channel {canalId}" if changed else f"not in channel {canalId}"
        self.respond(command, True, text, canalId=canalId, changed=changed)

    def do_JOIN(self, payload):
        """JOIN: become a member of C{canalId}."""
        return self._membership("JOIN", payload, True)

    def do_LEAVE(self, payload):
        """LEAVE: stop being a member of C{canalId}."""
        return self._membership("LEAVE", payload, False)

    @inlineCallbacks
    def _send(self, command: str, send, target: str, unknown: str):
        mensajeId = self.gateway.nextMessageId()
        try:
            delivery = yield send(mensajeId)
        except (UnknownUser, UnknownChannel):
            # Not bad input: the target just has nobody online.
            self.respond(command, False, f"{unknown}; nobody received it", mensajeId=mensajeId)
            return
        except PeerUnavailable as e:
            reached = _deliveryText(e.delivery) if e.delivery else "nobody"
            self.respond(command, False,
                         f"server(s) {', '.join(e.servers)} unreachable; reached {reached}",
                         mensajeId=mensajeId,
                         entregado=_deliveryInfo(e.delivery) if e.delivery else None)
            return
        self.respond(command, True, f"sent to {target} ({_deliveryText(delivery)})",
                     mensajeId=mensajeId, entregado=_deliveryInfo(delivery))

    def do_SEND_USER(self, payload):
        """SEND_USER: a direct message to every session of C{clienteId}."""
        clienteId = _int64(payload, "clienteId")
        contenido = _content(payload)

        def send(mensajeId):
            event = {"command": "EVENT", "payload": {
                "evento": "NEW_MESSAGE", "mensajeId": mensajeId, "contenido": contenido,
                "remitente": self._sender()}}
            return self.gateway.node.sendToUser(clienteId, event)

        return self._send("SEND_USER", send, f"user {clienteId}",
                          f"user {clienteId} is not connected")

    def do_SEND_CHANNEL(self, payload):
        """SEND_CHANNEL: a message to every other member of C{canalId}."""
        canalId = _int64(payload, "canalId")
        contenido = _content(payload)
        if canalId not in self.canales:
            raise BadRequest("not_member", f"JOIN channel {canalId} before sending to it")

        def send(mensajeId):
            event = {"command": "EVENT", "payload": {
                "evento": "NEW_CHANNEL_MESSAGE", "mensajeId": mensajeId, "canalId": canalId,
                "contenido": contenido, "remitente": self._sender()}}
            return self.gateway.node.sendToChannel(canalId, event, excludeSessionId=self.sessionId)

        return self._send("SEND_CHANNEL", send, f"channel {canalId}",
                          f"no other member in channel {canalId}")

    def do_BROADCAST(self, payload):
        """BROADCAST (admin only): an alert to every client of every node."""
        contenido = _content(payload)
        if not self.user.admin:
            raise BadRequest("forbidden", "BROADCAST is only for admin users")

        def send(mensajeId):
            event = {"command": "EVENT", "payload": {
                "tipo": "SERVER_ALERT", "mensajeId": mensajeId, "mensaje": contenido,
                "remitente": self._sender()}}
            return self.gateway.node.broadcast(event)

        return self._send("BROADCAST", send, "every client", "")

    @inlineCallbacks
    def do_LIST_CONNECTED(self, payload):
        """LIST_CONNECTED: every session of the cluster with its server."""
        sessions = yield self.gateway.node.sessions()
        rows = sorted(
            ({"usuario": s.usuario, "clienteId": s.clienteId, "serverId": s.serverId,
              "sessionId": s.sessionId, "canales": sorted(s.canales)} for s in sessions),
            key=lambda r: (r["usuario"], r["serverId"] or "", r["sessionId"]))
        self.respond("LIST_CONNECTED", True, f"{len(rows)} session(s) connected",
                     sesiones=rows)


class ClientFactory(Factory):
    """Builds a L{ClientProtocol} per connection, for one gateway."""

    noisy = False

    def __init__(self, gateway) -> None:
        self.gateway = gateway

    def buildProtocol(self, addr) -> ClientProtocol:
        """A new L{ClientProtocol}."""
        p = ClientProtocol(self.gateway)
        p.factory = self
        return p
