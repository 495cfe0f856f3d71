"""
Helpers for tests that run real nodes on loopback: start a node on
ephemeral ports, record local deliveries, and wait for a condition on
cluster events (never on a fixed sleep).
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import LoopingCall
from zope.interface import implementer

from clustersync.app.config import NodeConfig
from clustersync.interfaces import IClusterListener, ILocalDelivery

__all__ = ["RecordingDelivery", "Conditions", "ClockGroup", "startNode", "linkPorts"]


class ClockGroup:
    """
    Several L{twisted.internet.task.Clock}s advanced together.  Given to
    L{twisted.test.iosim.connectedServerAndClient} as its C{clock}, it lets
    every pump run each node's end-of-turn calls (a link hands the lines it
    gathered to its transport in a C{callLater(0)}).
    """

    def __init__(self, *clocks) -> None:
        self.clocks = clocks

    def advance(self, amount: float) -> None:
        """Advance every clock by C{amount} seconds."""
        for clock in self.clocks:
            clock.advance(amount)


@implementer(ILocalDelivery)
class RecordingDelivery:
    """
    An L{ILocalDelivery} that records what it delivers.

    @ivar delivered: a list of C{(sessionIds, messageBytes, kind, origin)}.
    """

    def __init__(self, conditions: "Conditions | None" = None) -> None:
        self.delivered: list[tuple] = []
        self.conditions = conditions

    def deliver(self, sessions, message, kind, origin) -> int:
        """Record one delivery and re-check waiting conditions."""
        self.delivered.append((sorted(s.sessionId for s in sessions), message, kind, origin))
        if self.conditions is not None:
            self.conditions.check()
        return len(sessions)


@implementer(IClusterListener)
class Conditions:
    """
    Waits for predicates, re-checked after every cluster event of the nodes
    it listens to (and every recorded delivery).

    Each wait is bounded: it fails with L{defer.TimeoutError} after
    C{timeout} seconds of reactor time.
    """

    def __init__(self, reactor) -> None:
        self.reactor = reactor
        self._waits: list[tuple] = []
        self.events: list[tuple] = []

    def watch(self, node) -> None:
        """Listen to C{node}'s events."""
        node.addListener(self)

    def waitUntil(self, predicate, timeout: float = 10.0, what: str = "") -> Deferred:
        """
        @return: a L{Deferred} that fires with C{None} once C{predicate()}
            is true (checked now and after every event); fails with
            L{defer.TimeoutError} naming C{what} after C{timeout} seconds.
        """
        if predicate():
            return defer.succeed(None)
        d = Deferred()
        entry = [predicate, d, None]

        def expire():
            if entry in self._waits:
                self._waits.remove(entry)
                d.errback(defer.TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}"))

        entry[2] = self.reactor.callLater(timeout, expire)
        self._waits.append(entry)
        return d

    def check(self) -> None:
        """Re-check every waiting predicate."""
        for entry in list(self._waits):
            predicate, d, call = entry
            try:
                ok = predicate()
            except Exception:
                ok = False
            if ok and entry in self._waits:
                self._waits.remove(entry)
                if call.active():
                    call.cancel()
                d.callback(None)

    def _event(self, *args) -> None:
        self.events.append(args)
        # Let the node finish the change it is notifying before checking.
        self.reactor.callLater(0, self.check)

    def peerConnected(self, peer) -> None:
        """Re-check on every event."""
        self._event("peerConnected", peer.serverId)

    def peerDisconnected(self, peer, reason) -> None:
        """Re-check on every event."""
        self._event("peerDisconnected", peer.serverId)

    def sessionAdded(self, session) -> None:
        """Re-check on every event."""
        self._event("sessionAdded", session.sessionId)

    def sessionRemoved(self, session) -> None:
        """Re-check on every event."""
        self._event("sessionRemoved", session.sessionId)

    def membershipChanged(self, session, canalId, joined) -> None:
        """Re-check on every event."""
        self._event("membershipChanged", session.sessionId, canalId, joined)


@inlineCallbacks
def startNode(testCase, reactor, serverId: str, peers=(), conditions=None, **settings):
    """
    Start a node with its peer port on an ephemeral loopback port, and
    stop it when C{testCase} ends.

    @return: a L{Deferred} firing with C{(service, node, port, delivery)}:
        the node's L{MultiService}, its L{ClusterNode}, its peer port
        number, and a L{RecordingDelivery} set as its local delivery.
    """
    from clustersync.app.service import makeNodeService

    settings.setdefault("listen", "tcp:0:interface=127.0.0.1")
    settings.setdefault("clients", None)
    # Test nodes link over plain loopback TCP without certificates.
    settings.setdefault("openLinks", True)
    # ...and every peer is a clustersync node: application receipts on all
    # links (an interop test with an existing server passes receipts="tls").
    settings.setdefault("receipts", "all")
    # ...linked as the test says (gossip would dial around a test's proxy).
    settings.setdefault("gossip", False)
    settings.setdefault("web", None)
    config = NodeConfig(serverId=serverId, peers=list(peers), **settings)
    service = makeNodeService(config, reactor)
    node = service.node
    delivery = RecordingDelivery(conditions)
    node.setLocalDelivery(delivery)
    if conditions is not None:
        conditions.watch(node)
    service.startService()
    testCase.addCleanup(service.stopService)
    port = yield service.getServiceNamed("peer-listen").whenListening()
    return service, node, port.getHost().port, delivery


def linkPorts(*ports) -> list[str]:
    """C{host:port} peer addresses on loopback for C{ports}."""
    return [f"127.0.0.1:{p}" for p in ports]


@inlineCallbacks
def startGatewayMesh(testCase, reactor, names, usersFile: str, conditions):
    """
    Start one node per name, each with a chat gateway on an ephemeral
    loopback port and the shared C{usersFile}, each dialing the ones
    started before it; wait until every node links to every other.

    @return: a L{Deferred} firing with C{(nodes, clientPorts)}: name ->
        L{ClusterNode} and name -> gateway port number.
    """
    nodes, clientPorts, peerPorts = {}, {}, []
    for name in names:
        service, node, port, _ = yield startNode(
            testCase, reactor, name, linkPorts(*peerPorts), conditions=conditions,
            clients="tcp:0:interface=127.0.0.1", usersFile=usersFile)
        peerPorts.append(port)
        nodes[name] = node
        listening = yield service.getServiceNamed("gateway").whenListening()
        clientPorts[name] = listening.getHost().port
    yield conditions.waitUntil(
        lambda: all(len(n._links) == len(names) - 1 for n in nodes.values()), what="full mesh")
    return nodes, clientPorts


def poll(predicate, timeout: float, what: str, interval: float = 0.05) -> Deferred:
    """
    Fire once C{predicate()} is true, checked every C{interval} seconds;
    fail with L{TimeoutError} naming C{what} after C{timeout} seconds.
    (For conditions that no cluster event announces, e.g. a counter.)
    """
    d = Deferred()
    from twisted.internet import reactor

    started = reactor.seconds()

    def check():
        if predicate():
            loop.stop()
            d.callback(None)
        elif reactor.seconds() - started > timeout:
            loop.stop()
            d.errback(defer.TimeoutError(f"timed out after {timeout}s waiting for {what}"))

    loop = LoopingCall(check)
    loop.start(interval, now=True)
    return d
