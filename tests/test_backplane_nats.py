"""
The backplane on real C{nats-server} processes (loopback, ephemeral
ports), with nodes in this process on Twisted's asyncio reactor.

C{make test} runs this module a second time as
C{trial --reactor=asyncio tests.test_backplane_nats}; under another reactor
it skips.  Without C{nats-server} it skips, except under C{CI=true}, where
it fails (C{.ci/run} installs it).  Every wait is on an event, bounded.
"""

from __future__ import annotations

import os

from twisted.internet import defer, reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.trial import unittest

from clustersync.backplane.natsprocess import NatsServer, findNatsServer
from clustersync.errors import PeerUnavailable

from tests.support import Conditions, startNode


def _skipReason() -> str | None:
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        return "needs Twisted's asyncio reactor: make test runs trial --reactor=asyncio on it"
    if findNatsServer() is None and os.environ.get("CI") != "true":
        return "nats-server is not installed (apt-get install nats-server)"
    return None


SKIP = _skipReason()


def sessionIds(node):
    """The sessionIds C{node} knows, sorted."""
    return sorted(s.sessionId for s in node.state.allSessions())


class NatsTestCase(unittest.TestCase):
    """Starts NATS servers and backplane nodes, and stops them after the test."""

    skip = SKIP
    timeout = 60

    def setUp(self):
        self.conditions = Conditions(reactor)

    @inlineCallbacks
    def natsServer(self, cluster=None, routes=(), name="nats"):
        """Start one nats-server; it is killed when the test ends."""
        server = NatsServer(reactor, cluster=cluster, routes=routes, name=name)
        yield server.start()
        self.addCleanup(server.kill)
        return server

    @inlineCallbacks
    def natsCluster(self, size=3):
        """Start a NATS cluster of C{size} servers, fully routed."""
        first = yield self.natsServer("t", name="nats-1")
        servers = [first]
        for i in range(2, size + 1):
            servers.append((yield self.natsServer("t", [first.routeUrl], name=f"nats-{i}")))
        # Every server has a route to each other one.
        yield defer.gatherResults([s.whenRoutes(size - 1) for s in servers])
        return servers

    @inlineCallbacks
    def backplaneNode(self, name, urls, **settings):
        """Start a node on the backplane; fires with C{(node, backplane, delivery)}."""
        settings.setdefault("deadPeerTimeout", 3.0)
        service, node, _, delivery = yield startNode(
            self, reactor, name, conditions=self.conditions, backplane=list(urls),
            clusterName="t", **settings)
        bpService = service.getServiceNamed("backplane")
        yield bpService.whenReady()
        return node, bpService.backplane, delivery

    def waitUntil(self, predicate, what, timeout=15.0):
        """Wait (bounded) until C{predicate()}, re-checked on events and every 50 ms."""
        poll = LoopingCall(self.conditions.check)
        poll.start(0.05, now=False)
        d = self.conditions.waitUntil(predicate, timeout, what)
        return d.addBoth(lambda r: (poll.stop(), r)[1])


class SingleNatsTests(NatsTestCase):
    """Three nodes on one nats-server."""

    @inlineCallbacks
    def test_messagesAndPresence(self):
        """
        Sessions on one node are known on the others; direct and channel
        messages reach exactly the nodes hosting their targets.
        """
        nats = yield self.natsServer()
        a, bpA, da = yield self.backplaneNode("a", [nats.clientUrl])
        b, bpB, db = yield self.backplaneNode("b", [nats.clientUrl])
        c, bpC, dc = yield self.backplaneNode("c", [nats.clientUrl])
        yield self.waitUntil(lambda: all(len(n._links) == 2 for n in (a, b, c)), "peers")
        yield a.clientConnected("s-a", 1, "ana", canales=[9])
        yield b.clientConnected("s-b", 2, "bo", canales=[9])
        yield self.waitUntil(lambda: sessionIds(c) == ["s-a", "s-b"], "presence on c")
        delivery = yield c.sendToUser(1, {"text": "hi"})
        self.assertEqual(delivery.servers, ("a",))
        yield self.waitUntil(lambda: da.delivered, "direct message on a")
        self.assertEqual(da.delivered, [(["s-a"], b'{"text":"hi"}', "DIRECT_MESSAGE", "c")])
        delivery = yield c.sendToChannel(9, "all")
        self.assertEqual(delivery.servers, ("a", "b"))
        yield self.waitUntil(lambda: len(da.delivered) == 2 and db.delivered, "channel message")
        self.assertEqual(dc.delivered, [])
        self.assertEqual(bpA.status()["state"], "up")

    @inlineCallbacks
    def test_outageAndRecovery(self):
        """
        When the NATS server dies, sends fail with PeerUnavailable and the
        status says down; when it is back (on the same port), the nodes
        reconnect and re-sync what changed meanwhile: no ghost, none missing.
        """
        nats = yield self.natsServer()
        a, bpA, da = yield self.backplaneNode("a", [nats.clientUrl])
        b, bpB, db = yield self.backplaneNode("b", [nats.clientUrl])
        yield self.waitUntil(lambda: len(a._links) == 1 and len(b._links) == 1, "peers")
        yield b.clientConnected("s-b", 2, "bo")
        yield self.waitUntil(lambda: sessionIds(a) == ["s-b"], "presence on a")
        yield nats.kill()
        yield self.waitUntil(lambda: not bpA.bus.connected and not bpB.bus.connected, "the outage")
        self.assertEqual(bpA.status()["state"], "down")
        failure = yield self.assertFailure(a.sendToUser(2, "x"), PeerUnavailable)
        self.assertEqual(failure.servers, ("b",))
        # Meanwhile b's client leaves and another arrives; a gets one too.
        yield b.clientDisconnected("s-b")
        yield b.clientConnected("s-b2", 3, "cy")
        yield a.clientConnected("s-a", 1, "ana")
        port = int(nats.clientUrl.rpartition(":")[2])
        again = NatsServer(reactor, name="nats-again", port=port)
        yield again.start()
        self.addCleanup(again.kill)
        yield self.waitUntil(lambda: sessionIds(a) == sessionIds(b) == ["s-a", "s-b2"],
                             "both re-synced", timeout=20)
        self.assertEqual(bpA.status()["state"], "up")
        self.assertEqual(bpA.outages, 1)
        yield a.sendToUser(3, "back")
        yield self.waitUntil(lambda: db.delivered, "delivery after recovery")


class NatsClusterTests(NatsTestCase):
    """Three nodes on a three-server NATS cluster, one server killed during traffic."""

    @inlineCallbacks
    def test_serverKilledDuringTraffic(self):
        """
        Nodes on different NATS servers exchange messages while the server
        one of them uses is killed: it moves to another server, every node
        ends with the same sessions (no ghost, none missing), each send
        either succeeded or failed with PeerUnavailable, and messages flow
        again afterwards.
        """
        servers = yield self.natsCluster(3)
        urls = [s.clientUrl for s in servers]
        a, bpA, da = yield self.backplaneNode("a", urls[0:1] + urls)
        b, bpB, db = yield self.backplaneNode("b", urls[1:2] + urls)
        c, bpC, dc = yield self.backplaneNode("c", urls[2:3] + urls)
        nodes = (a, b, c)
        yield self.waitUntil(lambda: all(len(n._links) == 2 for n in nodes), "peers")
        yield a.clientConnected("s-a", 1, "ana")
        yield c.clientConnected("s-c", 3, "cy")
        yield self.waitUntil(lambda: sessionIds(b) == ["s-a", "s-c"], "presence on b")
        outcomes = {"ok": 0, "unavailable": 0, "other": []}

        def send():
            def ok(_):
                outcomes["ok"] += 1

            def failed(f):
                if f.check(PeerUnavailable):
                    outcomes["unavailable"] += 1
                else:
                    outcomes["other"].append(f)

            b.sendToUser(1, {"n": outcomes["ok"]}).addCallbacks(ok, failed)
            b.sendToUser(3, "c").addCallbacks(ok, failed)

        traffic = LoopingCall(send)
        traffic.start(0.01)
        self.addCleanup(lambda: traffic.running and traffic.stop())
        yield self.waitUntil(lambda: len(da.delivered) >= 20, "traffic before the kill")
        killed = bpA.bus.status()["server"]
        victim = next(s for s in servers if s.clientUrl == killed)
        yield victim.kill()
        # Sessions change while a is moving to another server.
        yield c.clientConnected("s-c2", 4, "di")
        yield self.waitUntil(
            lambda: bpA.bus.connected and bpA.bus.status()["server"] != killed, "a moved")
        before = len(da.delivered)
        yield self.waitUntil(lambda: len(da.delivered) >= before + 20, "traffic after the kill")
        traffic.stop()
        truth = ["s-a", "s-c", "s-c2"]
        yield self.waitUntil(lambda: all(sessionIds(n) == truth for n in nodes), "convergence")
        self.assertEqual(outcomes["other"], [])
        self.assertGreater(outcomes["ok"], 40)


class ReactorCheckTests(unittest.TestCase):
    """The asyncio reactor is required, and its absence said clearly."""

    def test_requireAsyncio(self):
        """Under another reactor, requireAsyncioReactor names the fix."""
        from clustersync.backplane.bus import requireAsyncioReactor

        class OtherReactor:
            pass

        e = self.assertRaises(RuntimeError, requireAsyncioReactor, OtherReactor())
        self.assertIn("--reactor=asyncio", str(e))
