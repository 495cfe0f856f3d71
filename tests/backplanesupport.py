"""
An in-memory NATS for deterministic backplane tests: a broker matching
subjects as NATS does (C{*} for one token), and one bus per node with the
methods of L{clustersync.backplane.bus.NatsBus}.  Messages are delivered
when the test calls L{FakeNats.pump}; a bus can be cut off and healed, and
the broker can lose the messages of a stretch of time.
"""

from __future__ import annotations

from twisted.internet.defer import fail, succeed

from clustersync.app.config import NodeConfig
from clustersync.backplane.bridge import Backplane
from clustersync.backplane.bus import BusMessage
from clustersync.cluster.node import ClusterNode
from clustersync.handlers.builtin import BUILTIN_HANDLERS

from tests.support import RecordingDelivery

__all__ = ["FakeNats", "FakeBus", "backplaneNode"]


def matches(pattern: str, subject: str) -> bool:
    """Whether NATS would deliver C{subject} to a subscription on C{pattern}."""
    p, s = pattern.split("."), subject.split(".")
    if len(p) != len(s):
        return False
    return all(a == "*" or a == b for a, b in zip(p, s))


class FakeNats:
    """
    The broker.

    @ivar queue: C{(bus, BusMessage)} waiting to be delivered.
    @ivar losing: while set, published messages are dropped (a NATS server
        killed with messages in flight).
    @ivar log: every C{(subject, payload)} published, in order.
    """

    def __init__(self) -> None:
        self.buses: list[FakeBus] = []
        self.queue: list[tuple] = []
        self.losing = False
        self.log: list[tuple] = []
        self._inboxes = 0

    def bus(self) -> "FakeBus":
        """A new connection."""
        bus = FakeBus(self)
        self.buses.append(bus)
        return bus

    def publish(self, sender, subject, payload, headers, reply) -> None:
        """Route one message to every matching subscription (but the sender's: no echo)."""
        self.log.append((subject, payload))
        if self.losing:
            return
        for bus in self.buses:
            if bus is sender or not bus.connected:
                continue
            for pattern, callback in list(bus.subscriptions.values()):
                if matches(pattern, subject):
                    self.queue.append((bus, callback, BusMessage(subject, payload, dict(headers or {}), reply)))

    def pump(self) -> int:
        """Deliver until nothing is left; return how many were delivered."""
        n = 0
        while self.queue:
            bus, callback, message = self.queue.pop(0)
            if bus.connected:
                callback(message)
                n += 1
        return n

    def newInbox(self) -> str:
        """A unique inbox subject."""
        self._inboxes += 1
        return f"_INBOX.{self._inboxes}"


class FakeBus:
    """One node's connection to L{FakeNats}."""

    def __init__(self, broker: FakeNats) -> None:
        self.broker = broker
        self.connected = False
        self.onState = lambda up: None
        self.subscriptions: dict[int, tuple] = {}
        self.confirms = 0
        self._next = 0

    def start(self):
        """Connect at once."""
        self.connected = True
        self.onState(True)
        return succeed(None)

    def stop(self):
        """Disconnect."""
        self.connected = False
        return succeed(None)

    def cut(self) -> None:
        """The connection drops (what was queued for it is lost)."""
        self.connected = False
        self.broker.queue = [q for q in self.broker.queue if q[0] is not self]
        self.onState(False)

    def heal(self) -> None:
        """The connection is back (subscriptions too, as nats-py renews them)."""
        self.connected = True
        self.onState(True)

    def publish(self, subject, payload, headers=None, reply="") -> bool:
        """Publish now, or C{False} when cut off."""
        if not self.connected:
            return False
        self.broker.publish(self, subject, payload, headers, reply)
        return True

    def confirm(self):
        """Confirmed at once while connected."""
        self.confirms += 1
        if not self.connected:
            return fail(ConnectionError("not connected"))
        return succeed(None)

    def subscribe(self, subject, callback):
        """Subscribe; fires with a handle for L{unsubscribe}."""
        self._next += 1
        self.subscriptions[self._next] = (subject, callback)
        return succeed(self._next)

    def unsubscribe(self, handle) -> None:
        """Drop a subscription."""
        self.subscriptions.pop(handle, None)

    def newInbox(self) -> str:
        """A unique inbox."""
        return self.broker.newInbox()

    def status(self) -> dict:
        """What L{NatsBus.status} gives, in short."""
        return {"connected": self.connected}


def backplaneNode(broker: FakeNats, clock, serverId: str, **settings):
    """
    A L{ClusterNode} with a L{Backplane} on C{broker}, started.

    @return: C{(node, backplane, bus, delivery)}.
    """
    config = NodeConfig(serverId=serverId, listen=None, clients=None, web=None,
                        openLinks=True, **settings)
    node = ClusterNode(config, clock, BUILTIN_HANDLERS)
    delivery = RecordingDelivery()
    node.setLocalDelivery(delivery)
    bus = broker.bus()
    backplane = Backplane(node, bus, "test", clock)
    backplane.start()
    return node, backplane, bus, delivery
