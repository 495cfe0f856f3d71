"""
Helpers for the tests of one peer link (L{clustersync.links}): wire lines
built with the standard C{json} module, a node on a L{Clock}, a listener
that records every call, a fake connector, and L{LinkTestMixin}, which
connects links on L{StringTransport}s.
"""

from __future__ import annotations

import json

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from clustersync.app.config import NodeConfig
from clustersync.cluster.node import ClusterNode
from clustersync.handlers.builtin import BUILTIN_HANDLERS
from clustersync.interfaces import IClusterListener
from clustersync.links.protocol import INBOUND, LinkState, PeerProtocol

__all__ = [
    "makeNode", "line", "hello", "connected", "sync", "parseLines", "lost",
    "RecordingListener", "FakeConnector", "LinkTestMixin", "CountingTransport",
]


def makeNode(serverId: str = "srv-b", clock: Clock | None = None, **settings) -> ClusterNode:
    """A L{ClusterNode} with the built-in handlers, on a L{Clock}."""
    settings.setdefault("openLinks", True)
    settings.setdefault("gossip", False)  # tests/test_gossip.py turns it on
    config = NodeConfig(serverId=serverId, listen=None, clients=None, **settings)
    return ClusterNode(config, clock if clock is not None else Clock(), BUILTIN_HANDLERS)


def line(kind: str, origin: str, payload: dict, **extra) -> bytes:
    """One wire line built with the standard C{json} module."""
    return json.dumps({"type": kind, "origin": origin, "payload": payload, **extra}).encode() + b"\n"


def hello(serverId: str, origin: str | None = None) -> bytes:
    """A HELLO line."""
    return line("HELLO", origin or serverId, {"serverId": serverId})


def connected(origin: str, sessionId: str, clienteId: int = 7, canales=(), usuario="ana") -> bytes:
    """A CLIENT_CONNECTED line."""
    return line("CLIENT_CONNECTED", origin, {
        "serverId": origin, "sessionId": sessionId, "clienteId": clienteId,
        "usuario": usuario, "ip": None, "canales": list(canales)})


def sync(origin: str, *sessionIds: str) -> bytes:
    """A SYNC_STATE line with one session per id."""
    return line("SYNC_STATE", origin, {"sessions": [
        {"serverId": origin, "sessionId": s, "clienteId": 1, "usuario": "u", "ip": None,
         "canales": []} for s in sessionIds]})


def parseLines(data: bytes) -> list[dict]:
    """Every line written, parsed."""
    return [json.loads(x) for x in data.split(b"\n") if x]


def lost(proto: PeerProtocol) -> None:
    """Deliver C{connectionLost} (a L{StringTransport} never does)."""
    proto.connectionLost(Failure(ConnectionDone("closed")))


@implementer(IClusterListener)
class RecordingListener:
    """Records every listener call as a tuple."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def peerConnected(self, peer) -> None:
        """Record."""
        self.events.append(("peerConnected", peer))

    def peerDisconnected(self, peer, reason) -> None:
        """Record."""
        self.events.append(("peerDisconnected", peer.serverId, reason))

    def sessionAdded(self, session) -> None:
        """Record."""
        self.events.append(("sessionAdded", session.serverId, session.sessionId))

    def sessionRemoved(self, session) -> None:
        """Record."""
        self.events.append(("sessionRemoved", session.serverId, session.sessionId))

    def membershipChanged(self, session, canalId, joined) -> None:
        """Record."""
        self.events.append(("membershipChanged", session.sessionId, canalId, joined))


class FakeConnector:
    """A connector that counts C{connect} calls."""

    def __init__(self) -> None:
        self.connects = 0

    def connect(self) -> None:
        """Count one (re)connection attempt."""
        self.connects += 1

    def stopConnecting(self) -> None:
        """Nothing to stop."""

    def disconnect(self) -> None:
        """Nothing to disconnect."""


class LinkTestMixin:
    """Builds one node and links on L{StringTransport}s."""

    def setUp(self) -> None:
        """A node C{srv-b} on a L{Clock}, with a recording listener."""
        self.clock = Clock()
        self.node = makeNode("srv-b", self.clock)
        self.listener = RecordingListener()
        self.node.addListener(self.listener)

    def connect(self, direction: str = INBOUND, factory=None, node=None):
        """A connected L{PeerProtocol} and its L{StringTransport}."""
        node = node or self.node
        proto = PeerProtocol(node, direction, factory)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.9", 4000))
        proto.makeConnection(transport)
        return proto, transport

    def written(self, transport) -> bytes:
        """
        What C{transport} got once the reactor turn ended (a link hands
        the lines it gathered to its transport then).
        """
        self.clock.advance(0)
        return transport.value()

    def batchedLink(self):
        """An established link on a L{CountingTransport}, its output cleared."""
        proto = PeerProtocol(self.node, INBOUND)
        transport = CountingTransport()
        proto.makeConnection(transport)
        proto.dataReceived(hello("srv-a"))
        self.clock.advance(0)
        transport.clear()
        transport.writes = 0
        return proto, transport

    def established(self, peer: str = "srv-a"):
        """An inbound link that completed its HELLO exchange with C{peer}."""
        proto, transport = self.connect(INBOUND)
        proto.dataReceived(hello(peer))
        self.assertIs(proto.state, LinkState.ESTABLISHED)
        self.clock.advance(0)  # the end of the reactor turn: lines go out
        transport.clear()
        return proto, transport


class CountingTransport(StringTransport):
    """
    A L{StringTransport} that counts C{write} calls and, like Twisted's TCP
    transport, shows an empty write buffer (so that a link can count
    acknowledged bytes once a socket is set).
    """

    dataBuffer = b""
    offset = 0
    _tempDataLen = 0

    def __init__(self) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "10.0.0.9", 4000))
        self.writes = 0

    def write(self, data: bytes) -> None:
        """Count and record C{data}."""
        self.writes += 1
        super().write(data)
