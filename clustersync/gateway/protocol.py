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

import msgspec
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from clustersync.errors import UnknownSession
from clustersync.gateway.commands import ChatCommands
from clustersync.gateway.login import LoginCommand
from clustersync.gateway.requests import BadRequest
from clustersync.wire.codec import encodeRaw

__all__ = ["ClientProtocol", "ClientFactory", "BadRequest", "COMMANDS"]

_decoder = msgspec.json.Decoder()


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
    "SUBSCRIBE_PRESENCE": ("do_SUBSCRIBE_PRESENCE", True),
    "UNSUBSCRIBE_PRESENCE": ("do_UNSUBSCRIBE_PRESENCE", True),
    "PING": ("do_PING", False),
}


class ClientProtocol(LoginCommand, ChatCommands, Protocol):
    """
    One chat client connection: framing, size and rate limits, output
    bounds and dispatch; the commands come from L{LoginCommand} and
    L{ChatCommands}.

    @ivar gateway: the L{clustersync.gateway.service.Gateway}.
    @ivar user: the L{ChatUser} once logged in, else C{None}.
    @ivar sessionId: the cluster sessionId once logged in, else C{None}.
    @ivar canales: the channels this session joined.
    @ivar channelEvents: whether member events of those channels are sent.
    @ivar followedNames: clienteId -> usuario of the users followed by name.
    @ivar closed: whether the connection was lost.
    """

    _log = Logger()

    def __init__(self, gateway) -> None:
        self.gateway = gateway
        self.user = None
        self.sessionId: str | None = None
        self.canales: set[int] = set()
        self.channelEvents = True
        self.followedNames: dict[int, str] = {}
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
        self.channelEvents = True
        self.followedNames = {}
        self.gateway.presence.forget(self)
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
