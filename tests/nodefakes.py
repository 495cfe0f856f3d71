"""
Fakes and a test fixture for the tests of L{clustersync.cluster.node.ClusterNode}:
peer links that record their lines, a recording L{ILocalDelivery},
listeners and handlers, and L{NodeTestMixin} (a node with two linked peers).
"""

from __future__ import annotations

import json

import attrs
from twisted.internet.task import Clock
from zope.interface import implementer

from clustersync.wire.codec import decode
from clustersync.app.config import NodeConfig
from clustersync.handlers.builtin import BUILTIN_HANDLERS
from clustersync.interfaces import IClusterListener, ILocalDelivery, IMessageHandler, IPeerLink
from clustersync.cluster.node import ClusterNode


@implementer(IPeerLink)
class FakeLink:
    """
    A peer link that records the lines written to it.

    @ivar lines: every line handed to L{sendLine}.
    @ivar accept: whether L{sendLine} takes lines (C{False}: closing).
    """

    def __init__(self, serverId: str, direction: str = "inbound", accept: bool = True) -> None:
        self.serverId = serverId
        self.direction = direction
        self.peerAddress = f"10.0.0.{len(serverId)}:7001"
        self.since = None
        self.tls = False
        self.factory = None
        self.duplicate = False
        self.accept = accept
        self.lines: list[bytes] = []
        self.closed: str | None = None

    def sendLine(self, line: bytes) -> bool:
        """Record C{line} if accepting."""
        if not self.accept:
            return False
        self.lines.append(line)
        return True

    def close(self, reason: str, counter: str | None = None) -> None:
        """Record the close reason."""
        self.closed = reason

    loseConnection = close

    def parsed(self) -> list[dict]:
        """Every recorded line, parsed with the standard C{json} module."""
        return [json.loads(x) for x in self.lines]


@implementer(ILocalDelivery)
class FakeDelivery:
    """Records local deliveries."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def deliver(self, sessions, message, kind, origin) -> int:
        """Record one delivery."""
        self.calls.append((sorted(s.sessionId for s in sessions), message, kind, origin))
        return len(sessions)


@implementer(IClusterListener)
class Recorder:
    """A listener recording every call."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def peerConnected(self, peer) -> None:
        """Record."""
        self.events.append(("peerConnected", peer.serverId))

    def peerDisconnected(self, peer, reason) -> None:
        """Record."""
        self.events.append(("peerDisconnected", peer.serverId))

    def sessionAdded(self, session) -> None:
        """Record."""
        self.events.append(("sessionAdded", session.serverId, session.sessionId))

    def sessionRemoved(self, session) -> None:
        """Record."""
        self.events.append(("sessionRemoved", session.serverId, session.sessionId))

    def membershipChanged(self, session, canalId, joined) -> None:
        """Record."""
        self.events.append(("membershipChanged", session.sessionId, canalId, joined))


@implementer(IClusterListener)
class BrokenListener:
    """A listener whose every method raises."""

    def peerConnected(self, peer) -> None:
        """Raise."""
        raise ZeroDivisionError("peerConnected")

    def peerDisconnected(self, peer, reason) -> None:
        """Raise."""
        raise ZeroDivisionError("peerDisconnected")

    def sessionAdded(self, session) -> None:
        """Raise."""
        raise ZeroDivisionError("sessionAdded")

    def sessionRemoved(self, session) -> None:
        """Raise."""
        raise ZeroDivisionError("sessionRemoved")

    def membershipChanged(self, session, canalId, joined) -> None:
        """Raise."""
        raise ZeroDivisionError("membershipChanged")


@implementer(IMessageHandler)
@attrs.define
class ScriptedHandler:
    """A handler that records the messages it sees, or raises."""

    name: str
    messageTypes: tuple
    raises: bool = False
    seen: list = attrs.field(factory=list)

    def handleMessage(self, node, link, message) -> None:
        """Record C{message}, then raise if told to."""
        self.seen.append(message)
        if self.raises:
            raise RuntimeError(f"{self.name} fails")


def connectedLine(origin: str, sessionId: str, clienteId: int, canales=()) -> bytes:
    """A CLIENT_CONNECTED line from C{origin}."""
    return json.dumps({"type": "CLIENT_CONNECTED", "origin": origin, "payload": {
        "serverId": origin, "sessionId": sessionId, "clienteId": clienteId, "usuario": "u",
        "ip": None, "canales": list(canales)}}).encode()


class NodeTestMixin:
    """A node C{srv-a} with fake links to C{srv-b} and C{srv-c}."""

    def setUp(self) -> None:
        """Build the node, its delivery, a listener, and two linked peers."""
        self.clock = Clock()
        self.clock.advance(1000)
        self.node = ClusterNode(NodeConfig(serverId="srv-a", listen=None, clients=None),
                                self.clock, BUILTIN_HANDLERS)
        self.delivery = FakeDelivery()
        self.node.setLocalDelivery(self.delivery)
        self.recorder = Recorder()
        self.node.addListener(self.recorder)
        self.b = self.addLink("srv-b")
        self.c = self.addLink("srv-c", "outbound")
        self.recorder.events.clear()

    def addLink(self, serverId: str, direction: str = "inbound", accept: bool = True) -> FakeLink:
        """Open and establish a fake link; forget the SYNC_STATE it got."""
        link = FakeLink(serverId, direction, accept)
        self.node.linkOpened(link)
        link.since = self.clock.seconds()
        self.node.linkEstablished(link)
        link.lines.clear()
        return link

    def remote(self, link: FakeLink, sessionId: str, clienteId: int, canales=()) -> None:
        """A session of C{link}'s server, learned over C{link}."""
        self.node.dispatch(link, decode(connectedLine(link.serverId, sessionId, clienteId, canales)))

    def noLines(self) -> None:
        """Assert no peer got any line."""
        self.assertEqual((self.b.lines, self.c.lines), ([], []))
