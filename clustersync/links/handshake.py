"""
The states of a peer link and the HELLO handshake that takes it from
L{LinkState.CONNECTING} to L{LinkState.ESTABLISHED}.

Link states::

    CONNECTING --(dialer sends HELLO)--> HELLO_SENT --(HELLO in)--> ESTABLISHED
    CONNECTING --(HELLO in; acceptor answers HELLO)--------------> ESTABLISHED
    any --(connection lost)--> CLOSED
"""

from __future__ import annotations

import enum

from twisted.logger import Logger

from clustersync.links.kinds import CLUSTERSYNC, peerKind
from clustersync.wire.codec import Hello, encode

__all__ = ["LinkState", "INBOUND", "OUTBOUND", "HandshakeMixin"]

INBOUND = "inbound"
OUTBOUND = "outbound"


class LinkState(enum.Enum):
    """The states of one peer link."""

    CONNECTING = "connecting"
    HELLO_SENT = "hello-sent"
    ESTABLISHED = "established"
    CLOSED = "closed"


class HandshakeMixin:
    """
    The HELLO handshake of L{clustersync.links.protocol.PeerProtocol}: who
    speaks first, the handshake timeout, and what an arriving HELLO does.

    It uses the link's C{node}, C{direction}, C{factory}, C{state},
    C{serverId}, C{since}, C{transport}, C{close}, C{flush} and its
    liveness check (C{_liveness}).
    """

    _log = Logger()
    _timeout = None

    def _startHandshake(self) -> None:
        """
        The connection is open: give the peer C{handshake_timeout} to send
        its HELLO; the dialer speaks first, an acceptor waits for the
        peer's HELLO unless configured to send it eagerly.
        """
        self._timeout = self.node.clock.callLater(
            self.node.config.handshakeTimeout, self._handshakeTimedOut
        )

    def _speakFirst(self) -> None:
        """Send HELLO now if this side speaks first."""
        if self.direction == OUTBOUND or self.node.config.eagerHello:
            self._sendHello()

    def _sendHello(self) -> None:
        hello = encode(Hello.make(self.node.serverId))
        self.flush()
        self.transport.write(hello)
        self.bytesWritten += len(hello)
        self.linesWritten += 1
        self.lastSent = self.node.clock.seconds()
        self.state = LinkState.HELLO_SENT

    def _handshakeTimedOut(self) -> None:
        self._timeout = None
        self.close(
            f"no HELLO within {self.node.config.handshakeTimeout:g}s", "handshake_timeout",
            abort=True,
        )

    def _stopHandshakeTimer(self) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None

    def helloReceived(self, hello: Hello) -> None:
        """
        The peer's HELLO arrived (called by the HELLO handler): answer it if
        we have not spoken yet, and become established.
        """
        serverId = hello.payload.serverId
        if self.state is LinkState.ESTABLISHED:
            self.node.reject(self, "duplicate_hello", f"second HELLO ({serverId!r})")
            return
        if serverId == self.node.serverId:
            self._log.warn(
                "{address} is this node itself ({serverId}): not linking",
                address=self.peerAddress,
                serverId=serverId,
            )
            if self.factory is not None and self.direction == OUTBOUND:
                self.factory.stopTrying()
            if self.state is LinkState.CONNECTING:
                # Answer before closing: the dialer is this node too, and
                # only our HELLO tells its factory to stop redialing.
                self._sendHello()
            self.close("self-link", "self_link")
            return
        if not serverId:
            self.node.reject(self, "field", "HELLO with an empty serverId")
            self.close("empty serverId in HELLO", None)
            return
        refusal = self.node.checkIdentity(self, hello)
        if refusal is not None:
            self.close(f"identity refused: {refusal[1]}", refusal[0], abort=True)
            return
        self.serverId = serverId
        config = self.node.config
        self.clustersync = peerKind(config, serverId, self.tls) == CLUSTERSYNC
        self.receipts = self.clustersync and config.receipts != "none"
        if self.state is LinkState.CONNECTING:
            self._sendHello()
        self._stopHandshakeTimer()
        self.state = LinkState.ESTABLISHED
        # Established: a SYNC_STATE may come, and nothing is held against
        # the node-wide handshake bound any more.
        self.maxLineLength = self.node.config.maxSyncLength
        self.node.handshakeBuffers.release(self)
        self.since = self.node.clock.seconds()
        self._liveness.start()
        self.node.linkEstablished(self)
