"""
The status web service: JSON API, server-sent events, /metrics and the
status page, against real nodes on loopback; the tracker and registry on
their own.
"""

from __future__ import annotations

import json
import time

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool, readBody

from clustersync.wire.codec import SessionInfo
from clustersync.app.config import NodeConfig, loadConfig
from clustersync.cluster.node import ClusterNode, PeerInfo
from clustersync.web.service import WebService, isDisabled, makeWebService
from clustersync.web.tracker import StatusTracker

from tests.support import Conditions, linkPorts, startNode

WEB = "tcp:0:interface=127.0.0.1"


def webOf(service) -> WebService:
    """The L{WebService} of a node's L{MultiService}."""
    return service.getServiceNamed("web")


@inlineCallbacks
def get(url: str):
    """GET C{url}; fires with C{(code, headers, body)}."""
    agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
    response = yield agent.request(b"GET", url.encode())
    body = yield readBody(response)
    return response.code, response.headers, body


@inlineCallbacks
def getJSON(url: str):
    """GET C{url} and decode its JSON body; fires with C{(code, document)}."""
    code, headers, body = yield get(url)
    return code, json.loads(body)


class _Stream(Protocol):
    """Collects an event-stream body, re-checking C{conditions} on data."""

    def __init__(self, conditions) -> None:
        self.conditions = conditions
        self.data = b""
        self.arrivals: list[tuple[float, bytes]] = []
        self.lost = Deferred()

    def dataReceived(self, data: bytes) -> None:
        """Record the chunk and its arrival time."""
        self.data += data
        self.arrivals.append((time.monotonic(), data))
        self.conditions.check()

    def connectionLost(self, reason) -> None:
        """Fire L{lost}."""
        self.lost.callback(None)

    def events(self) -> list[tuple[str, dict]]:
        """Every complete C{(event, data)} received so far."""
        out = []
        for block in self.data.decode().split("\n\n"):
            kind, data = None, None
            for line in block.splitlines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
            if kind is not None and data is not None:
                out.append((kind, data))
        return out


class WebServiceTests(unittest.TestCase):
    """
    Node A serves the web interface; node B dials A, comes and goes.
    """

    timeout = 30

    @inlineCallbacks
    def setUp(self):
        """Start node A with its web service on an ephemeral port."""
        self.cond = Conditions(reactor)
        self.serviceA, self.a, self.portA, _ = yield startNode(
            self, reactor, "srv-a", conditions=self.cond, web=WEB)
        port = yield webOf(self.serviceA).whenListening()
        self.base = f"http://127.0.0.1:{port.getHost().port}"

    @inlineCallbacks
    def startB(self):
        """Start srv-b dialing A; fires once A lists it as linked."""
        self.serviceB, self.b, _, _ = yield startNode(
            self, reactor, "srv-b", linkPorts(self.portA), conditions=self.cond)
        yield self.cond.waitUntil(
            lambda: self.a.linkFor("srv-b") is not None and self.b.linkFor("srv-a") is not None,
            what="A and B linked")

    @inlineCallbacks
    def test_peersUpThenDown(self):
        """
        /api/peers lists B as up (inbound, no TLS, a clustersync node: the
        tests' nodes set receipts = "all") while linked, and still
        lists it, as down with the reason and a later since, once B stops.
        """
        yield self.startB()
        code, doc = yield getJSON(self.base + "/api/peers")
        self.assertEqual(code, 200)
        self.assertEqual(doc["serverId"], "srv-a")
        [peer] = doc["peers"]
        self.assertEqual((peer["serverId"], peer["state"], peer["direction"], peer["tls"],
                          peer["outboundBuffered"], peer["kind"]),
                         ("srv-b", "up", "inbound", False, 0, "clustersync"))
        upSince = peer["since"]
        yield self.serviceB.stopService()
        yield self.cond.waitUntil(lambda: self.a.linkFor("srv-b") is None, what="B gone")
        code, doc = yield getJSON(self.base + "/api/peers")
        [peer] = doc["peers"]
        self.assertEqual((peer["serverId"], peer["state"]), ("srv-b", "down"))
        self.assertTrue(peer["reason"])
        self.assertGreaterEqual(peer["since"], upSince)

    @inlineCallbacks
    def test_health(self):
        """/api/health is ok with B linked, degraded naming B once B is gone."""
        yield self.startB()
        yield self.a.clientConnected("s1", 1, "ana")
        code, doc = yield getJSON(self.base + "/api/health")
        self.assertEqual((code, doc["status"], doc["peersUp"], doc["peersDown"]),
                         (200, "ok", 1, []))
        self.assertEqual(doc["sessions"], {"local": 1, "remote": 0})
        yield self.serviceB.stopService()
        yield self.cond.waitUntil(lambda: self.a.linkFor("srv-b") is None, what="B gone")
        code, doc = yield getJSON(self.base + "/api/health")
        self.assertEqual((doc["status"], doc["peersDown"]), ("degraded", ["srv-b"]))

    @inlineCallbacks
    def test_sessionsAndChannels(self):
        """
        /api/sessions counts sessions per server and lists them (filtered
        by server, limited); /api/channels lists members across servers.
        """
        yield self.startB()
        yield self.a.clientConnected("sa", 1, "ana", None, [3])
        yield self.a.clientConnected("sa2", 2, "eva", None, [])
        yield self.b.clientConnected("sb", 7, "luis", None, [3, 9])
        yield self.cond.waitUntil(lambda: len(list(self.a.state.allSessions())) == 3,
                                  what="A knows 3 sessions")
        code, doc = yield getJSON(self.base + "/api/sessions")
        self.assertEqual((doc["count"], doc["local"], doc["remote"]), (3, 2, 1))
        self.assertEqual(doc["perServer"], {"srv-a": 2, "srv-b": 1})
        self.assertEqual([s["sessionId"] for s in doc["sessions"]], ["sa", "sa2", "sb"])
        self.assertFalse(doc["truncated"])
        code, doc = yield getJSON(self.base + "/api/sessions?server=srv-b")
        self.assertEqual(doc["sessions"], [{
            "sessionId": "sb", "clienteId": 7, "usuario": "luis", "serverId": "srv-b",
            "ip": None, "canales": [3, 9]}])
        code, doc = yield getJSON(self.base + "/api/sessions?limit=1")
        self.assertEqual((len(doc["sessions"]), doc["truncated"]), (1, True))
        code, doc = yield getJSON(self.base + "/api/channels")
        self.assertEqual(doc["count"], 2)
        members = {c["canalId"]: [(m["serverId"], m["sessionId"]) for m in c["members"]]
                   for c in doc["channels"]}
        self.assertEqual(members, {3: [("srv-a", "sa"), ("srv-b", "sb")], 9: [("srv-b", "sb")]})

    @inlineCallbacks
    def test_badParameter(self):
        """A malformed limit is answered with HTTP 400 and a JSON error."""
        code, doc = yield getJSON(self.base + "/api/sessions?limit=lots")
        self.assertEqual(code, 400)
        self.assertIn("limit", doc["error"])

    @inlineCallbacks
    def test_eventStreamPushesPeerChanges(self):
        """
        /events is a text/event-stream that pushes a peer event within a
        second of B linking and of B leaving, and a coalesced changed event
        for sessions.
        """
        agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        response = yield agent.request(b"GET", (self.base + "/events").encode())
        self.assertEqual(response.headers.getRawHeaders(b"content-type"),
                         [b"text/event-stream; charset=utf-8"])
        stream = _Stream(self.cond)
        response.deliverBody(stream)

        def closeStream():
            stream.transport.stopProducing()
            return stream.lost

        self.addCleanup(closeStream)
        yield self.cond.waitUntil(lambda: ("peers", {"peers": []}) in stream.events(),
                                  timeout=5, what="initial peers event")

        def peerEvent(kind):
            return [d for k, d in stream.events() if k == "peer" and d["event"]["kind"] == kind]

        yield self.startB()
        linked = time.monotonic()
        yield self.cond.waitUntil(lambda: peerEvent("peerConnected"), timeout=5, what="peer up")
        self.assertLess(time.monotonic() - linked, 1.0)
        [data] = peerEvent("peerConnected")
        self.assertEqual([(p["serverId"], p["state"]) for p in data["peers"]], [("srv-b", "up")])

        yield self.b.clientConnected("sb", 7, "luis")
        yield self.cond.waitUntil(
            lambda: ("changed", {"what": ["sessions"]}) in stream.events(), timeout=5,
            what="sessions changed")

        yield self.serviceB.stopService()
        gone = time.monotonic()
        yield self.cond.waitUntil(lambda: peerEvent("peerDisconnected"), timeout=5,
                                  what="peer down")
        self.assertLess(time.monotonic() - gone, 1.0)
        [data] = peerEvent("peerDisconnected")
        self.assertEqual([(p["serverId"], p["state"]) for p in data["peers"]],
                         [("srv-b", "down")])
        self.assertEqual(len(webOf(self.serviceA).streamClients), 1)

    @inlineCallbacks
    def test_metrics(self):
        """
        /metrics is Prometheus text: links up, messages in/out per type,
        sessions local/remote, the peer's up gauge, SYNC_STATE figures.
        """
        yield self.startB()
        yield self.b.clientConnected("sb", 7, "luis", None, [4])
        yield self.a.clientConnected("sa", 1, "ana")
        yield self.cond.waitUntil(lambda: len(list(self.a.state.allSessions())) == 2)
        self.a.metrics.rejected("json")
        code, headers, body = yield get(self.base + "/metrics")
        self.assertEqual(code, 200)
        self.assertTrue(headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain"))
        samples = {}
        for family in text_string_to_metric_families(body.decode()):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        self.assertEqual(samples[("clustersync_node_info", (("server_id", "srv-a"),))], 1)
        self.assertEqual(samples[("clustersync_links_up", ())], 1)
        self.assertEqual(samples[("clustersync_outbound_buffer_bytes", (("peer", "srv-b"),))], 0)
        self.assertEqual(samples[("clustersync_sessions", (("where", "local"),))], 1)
        self.assertEqual(samples[("clustersync_sessions", (("where", "remote"),))], 1)
        self.assertEqual(samples[("clustersync_channels", ())], 1)
        self.assertEqual(samples[("clustersync_messages_out_total", (("type", "SYNC_STATE"),))], 1)
        self.assertGreaterEqual(
            samples[("clustersync_messages_in_total", (("type", "CLIENT_CONNECTED"),))], 1)
        self.assertEqual(samples[("clustersync_rejected_inputs_total", (("reason", "json"),))], 1)
        self.assertEqual(samples[("clustersync_sync_applied_total", ())], 1)
        self.assertEqual(samples[("clustersync_peer_up", (("peer", "srv-b"),))], 1)

    @inlineCallbacks
    def test_outboundBufferOfSlowPeer(self):
        """
        A peer that stops reading shows a growing outbound buffer in
        /metrics and /api/peers while A keeps writing to it.
        """
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        from clustersync.wire.codec import Hello, encode

        class Silent(Protocol):
            """Says HELLO, then never reads again."""

            def connectionMade(self):
                """Handshake, then stop reading."""
                self.transport.write(encode(Hello.make("srv-slow")))
                self.transport.pauseProducing()

        self.a.config.maxOutboundBuffer = 256 * 1024 * 1024  # not cut as a slow peer here
        client = yield connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", self.portA), Silent())
        self.addCleanup(client.transport.abortConnection)
        yield self.cond.waitUntil(lambda: self.a.linkFor("srv-slow") is not None,
                                  what="slow peer linked")
        chunk = "x" * 65536
        for i in range(512):  # 32 MiB, far more than loopback socket buffers hold
            # The sends never complete (the peer reads nothing) and fail when
            # the link is torn down at the end; only the buffer matters here.
            self.a.broadcast({"n": i, "pad": chunk}).addErrback(lambda failure: None)
        code, headers, body = yield get(self.base + "/metrics")
        [family] = [f for f in text_string_to_metric_families(body.decode())
                    if f.name == "clustersync_outbound_buffer_bytes"]
        [sample] = family.samples
        self.assertEqual(sample.labels, {"peer": "srv-slow"})
        self.assertGreater(sample.value, 1024 * 1024)
        code, doc = yield getJSON(self.base + "/api/peers")
        self.assertGreater(doc["peers"][0]["outboundBuffered"], 1024 * 1024)

    @inlineCallbacks
    def test_registriesPerNode(self):
        """
        Two nodes serving /metrics in one process each report their own
        figures (no shared global registry, no duplicate registration).
        """
        serviceC, c, _, _ = yield startNode(self, reactor, "srv-c", web=WEB)
        yield c.clientConnected("c1", 1, "x")
        yield c.clientConnected("c2", 2, "y")
        port = yield webOf(serviceC).whenListening()
        _, _, bodyA = yield get(self.base + "/metrics")
        _, _, bodyC = yield get(f"http://127.0.0.1:{port.getHost().port}/metrics")
        self.assertIn(b'clustersync_sessions{where="local"} 0.0', bodyA)
        self.assertIn(b'clustersync_sessions{where="local"} 2.0', bodyC)

    @inlineCallbacks
    def test_statusPage(self):
        """
        / is a self-contained HTML page (no external script, style or
        font), which loads /api/status and listens to /events; /api/status
        serves what it draws.
        """
        code, headers, body = yield get(self.base + "/")
        self.assertEqual(code, 200)
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"text/html; charset=utf-8"])
        self.assertIn(b'new EventSource("events")', body)
        self.assertIn(b'fetch("api/status"', body)
        self.assertNotIn(b"http://", body)
        self.assertNotIn(b"https://", body)
        self.assertNotIn(b"<link", body)
        self.assertNotIn(b"src=", body)
        code, doc = yield getJSON(self.base + "/api/status")
        self.assertEqual(doc["serverId"], "srv-a")
        self.assertEqual(doc["web"], self.base[len("http://"):])
        self.assertEqual(set(doc), {"serverId", "time", "started", "web", "peers", "sessions",
                                    "channels", "events", "health", "liveness"})
        code, _, _ = yield get(self.base + "/nope")
        self.assertEqual(code, 404)

    @inlineCallbacks
    def test_recentEvents(self):
        """/api/events lists recent cluster events, newest first."""
        yield self.startB()
        yield self.a.clientConnected("sa", 1, "ana", None, [5])
        code, doc = yield getJSON(self.base + "/api/events?limit=2")
        self.assertEqual([e["kind"] for e in doc["events"]], ["sessionAdded", "peerConnected"])


class _FakeNode:
    """A node stand-in: listeners, peers() and sessions() only."""

    serverId = "srv-a"

    def __init__(self, peers=()) -> None:
        self.listeners = []
        self._peers = list(peers)

    def addListener(self, listener):
        """Remember C{listener}."""
        self.listeners.append(listener)

    def removeListener(self, listener):
        """Forget C{listener}."""
        self.listeners.remove(listener)

    def peers(self):
        """The configured peers, as a fired Deferred."""
        from twisted.internet.defer import succeed

        return succeed(self._peers)


class TrackerTests(unittest.TestCase):
    """L{StatusTracker} with a fake node and a L{Clock}."""

    def test_seedsAndKeepsDownPeers(self):
        """
        Peers linked before the tracker started are listed as up since
        their link time; a lost peer stays listed as down since the loss.
        """
        clock = Clock()
        clock.advance(1000)
        node = _FakeNode([PeerInfo("srv-b", "outbound", "10.0.0.2:7001", 900.0, True)])
        tracker = StatusTracker(node, clock)
        tracker.start()
        self.assertEqual(node.listeners, [tracker])
        self.assertEqual([(p["serverId"], p["state"], p["since"], p["tls"])
                          for p in tracker.peerList()], [("srv-b", "up", 900.0, True)])
        clock.advance(5)
        tracker.peerDisconnected(node._peers[0], "connection lost")
        self.assertEqual([(p["state"], p["since"], p["reason"]) for p in tracker.peerList()],
                         [("down", 1005.0, "connection lost")])
        tracker.stop()
        self.assertEqual(node.listeners, [])

    def test_ringBufferBounded(self):
        """Only the newest C{maxEvents} events are kept, newest first."""
        tracker = StatusTracker(_FakeNode(), Clock(), maxEvents=3)
        for i in range(5):
            tracker.sessionAdded(SessionInfo(f"s{i}", i, "u", "srv-a"))
        self.assertEqual([e["sessionId"] for e in tracker.recentEvents()], ["s4", "s3", "s2"])

    def test_peerEventsOutliveSessionBursts(self):
        """
        A burst of session events does not push peer events out of the
        recent events; they are listed together, newest first.
        """
        clock = Clock()
        tracker = StatusTracker(_FakeNode(), clock, maxEvents=3)
        tracker.peerConnected(PeerInfo("srv-b", "inbound", "10.0.0.2:5000", 1.0, False))
        for i in range(10):
            clock.advance(1)
            tracker.sessionAdded(SessionInfo(f"s{i}", i, "u", "srv-b"))
        self.assertEqual([e.get("sessionId", e["kind"]) for e in tracker.recentEvents()],
                         ["s9", "s8", "s7", "peerConnected"])

    def test_failingSubscriberIsContained(self):
        """A subscriber that raises is logged; other subscribers still run."""
        tracker = StatusTracker(_FakeNode(), Clock())
        seen = []
        tracker.subscribe(lambda group, event: 1 / 0)
        tracker.subscribe(lambda group, event: seen.append((group, event["kind"])))
        tracker.membershipChanged(SessionInfo("s", 1, "u", "srv-a"), 3, True)
        self.assertEqual(seen, [("membership", "channelJoined")])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class ConfigTests(unittest.TestCase):
    """The C{web} setting."""

    def test_defaultLoopback7003(self):
        """By default the web interface listens on loopback port 7003."""
        self.assertEqual(loadConfig().web, "tcp:7003:interface=127.0.0.1")

    def test_disabled(self):
        """An empty or C{none} endpoint means no web service."""
        node = ClusterNode(NodeConfig(serverId="srv-a"), Clock())
        for value in (None, "", "none", "NONE"):
            self.assertTrue(isDisabled(value))
            self.assertIsNone(makeWebService(node, NodeConfig(web=value), Clock()))
        self.assertIsInstance(makeWebService(node, NodeConfig(web=WEB), Clock()), WebService)

    def test_tapOption(self):
        """
        C{twistd clustersync --web none} disables it; --web sets it; a web
        port on every address without authentication is refused unless
        C{--web-insecure} is given.
        """
        from twisted.python.usage import UsageError

        from clustersync.app.tap import Options

        options = Options()
        options.parseOptions(["--web", "none"])
        self.assertIsNone(options.config.web)
        options = Options()
        options.parseOptions(["--web", "tcp:8080:interface=127.0.0.1"])
        self.assertEqual(options.config.web, "tcp:8080:interface=127.0.0.1")
        e = self.assertRaises(UsageError, Options().parseOptions, ["--web", "tcp:8080"])
        self.assertIn("no authentication", str(e))
        options = Options()
        options.parseOptions(["--web", "tcp:8080", "--web-insecure"])
        self.assertTrue(options.config.webInsecure)
