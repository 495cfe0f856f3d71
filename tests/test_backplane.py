"""
The backplane's logic, on an in-memory NATS (L{tests.backplanesupport}):
exact routing, presence, joining, lost events, dead nodes, outages and
existing servers bridged by the node they link to.  Deterministic: one
L{Clock}, messages delivered by L{FakeNats.pump}.
"""

from __future__ import annotations

import json

from twisted.internet.task import Clock
from twisted.trial import unittest

from clustersync.backplane.subjects import Subjects, token, untoken
from clustersync.errors import PeerUnavailable
from clustersync.wire.codec import ClientConnected, SessionInfo, decode

from tests.backplanesupport import FakeNats, backplaneNode
from tests.nodefakes import FakeLink


def sessionIds(node, serverId=None):
    """The sessionIds a node knows (of C{serverId}, or all), sorted."""
    return sorted(s.sessionId for s in node.state.allSessions()
                  if serverId is None or s.serverId == serverId)


def result(d):
    """The result of a fired L{Deferred} (its L{Failure} if it failed)."""
    box = []
    d.addBoth(box.append)
    assert box, "not fired"
    return box[0]


class SubjectsTests(unittest.TestCase):
    """Server ids become subject tokens and back."""

    def test_roundTrip(self):
        """Any serverId gives one token without dots or wildcards, and comes back."""
        for name in ["srv-a", "a.b", "x*y>z", "under_score", "espa\u00f1a", "_", "a b"]:
            t = token(name)
            self.assertNotIn(".", t)
            self.assertFalse(set(t) & set("*> "), t)
            self.assertEqual(untoken(t), name)

    def test_subjects(self):
        """The cluster's subjects carry its name and the server's token."""
        s = Subjects("prod")
        self.assertEqual(s.presence("a.b"), "cs.prod.presence.a_2e_b")
        self.assertEqual(s.presenceServer(s.presence("a.b")), "a.b")
        self.assertEqual(s.node("n1"), "cs.prod.node.n1")
        self.assertIsNone(s.presenceServer("cs.other.presence.n1"))


class BackplaneTests(unittest.TestCase):
    """Three nodes on one in-memory NATS."""

    def setUp(self):
        self.clock = Clock()
        self.nats = FakeNats()
        self.nodes = {}
        for name in ("a", "b", "c"):
            self.add(name)

    def add(self, name, **settings):
        """Start node C{name} and let the backplane settle."""
        self.nodes[name] = backplaneNode(self.nats, self.clock, name, **settings)
        self.nats.pump()
        return self.nodes[name]

    def node(self, name):
        """The L{ClusterNode} called C{name}."""
        return self.nodes[name][0]

    def connect(self, name, sessionId, clienteId, canales=()):
        """A client session on node C{name}."""
        result(self.node(name).clientConnected(sessionId, clienteId, f"u{clienteId}",
                                               canales=canales))
        self.nats.pump()

    def published(self, subject):
        """How many messages were published on C{subject}."""
        return sum(1 for s, _ in self.nats.log if s == subject)

    def test_peers(self):
        """Every node sees the two others as backplane peers."""
        for name in "abc":
            peers = result(self.node(name).peers())
            self.assertEqual(sorted(p.serverId for p in peers), sorted(set("abc") - {name}))
            self.assertEqual({p.direction for p in peers}, {"backplane"})

    def test_presenceOnce(self):
        """A session is published once on its node's presence subject and known everywhere."""
        self.nats.log.clear()
        self.connect("a", "s1", 7)
        self.assertEqual(self.published("cs.test.presence.a"), 1)
        self.assertEqual(len(self.nats.log), 1)
        self.assertEqual(sessionIds(self.node("b")), ["s1"])
        self.assertEqual(sessionIds(self.node("c")), ["s1"])

    def test_directExact(self):
        """A DIRECT_MESSAGE goes only to the subject of the node hosting the user."""
        self.connect("a", "s1", 7)
        self.nats.log.clear()
        delivery = result(self.node("b").sendToUser(7, {"hi": 1}))
        self.nats.pump()
        self.assertEqual(delivery.servers, ("a",))
        self.assertEqual([s for s, _ in self.nats.log], ["cs.test.node.a"])
        self.assertEqual(self.nodes["a"][3].delivered, [(["s1"], b'{"hi":1}', "DIRECT_MESSAGE", "b")])
        self.assertEqual(self.nodes["c"][3].delivered, [])

    def test_channelExact(self):
        """A CHANNEL_MESSAGE reaches the members' nodes only, each once."""
        self.connect("a", "s1", 7, canales=[5])
        self.connect("b", "s2", 8, canales=[5])
        self.connect("c", "s3", 9)
        self.nats.log.clear()
        delivery = result(self.node("c").sendToChannel(5, "x"))
        self.nats.pump()
        self.assertEqual(delivery.servers, ("a", "b"))
        self.assertEqual(sorted(s for s, _ in self.nats.log), ["cs.test.node.a", "cs.test.node.b"])
        self.assertEqual(self.nodes["a"][3].delivered[-1][0], ["s1"])
        self.assertEqual(self.nodes["b"][3].delivered[-1][0], ["s2"])

    def test_sessionMessage(self):
        """A SESSION_MESSAGE goes to the session's node."""
        self.connect("b", "s2", 8)
        result(self.node("a").sendToSession("s2", [1, 2]))
        self.nats.pump()
        self.assertEqual(self.nodes["b"][3].delivered, [(["s2"], b"[1,2]", "SESSION_MESSAGE", "a")])

    def test_broadcastOneSubject(self):
        """A BROADCAST is one message on the cluster's subject; its Delivery names every server."""
        self.connect("a", "s1", 7)
        self.connect("b", "s2", 8)
        self.nats.log.clear()
        delivery = result(self.node("c").broadcast("all"))
        self.nats.pump()
        self.assertEqual([s for s, _ in self.nats.log], ["cs.test.broadcast"])
        self.assertEqual(delivery.servers, ("a", "b"))
        self.assertEqual(self.nodes["a"][3].delivered, [(["s1"], b'"all"', "BROADCAST", "c")])
        self.assertEqual(self.nodes["b"][3].delivered, [(["s2"], b'"all"', "BROADCAST", "c")])

    def test_joinLearnsEverything(self):
        """
        A joining node asks once on the sync subject and gets each node's
        own snapshot: one request, one reply per node, no other traffic.
        """
        for i in range(5):
            self.connect("a", f"a{i}", i)
            self.connect("b", f"b{i}", 100 + i, canales=[1])
        self.nats.log.clear()
        self.add("d")
        self.assertEqual(sessionIds(self.node("d")), sessionIds(self.node("a")))
        self.assertEqual(len(sessionIds(self.node("d"))), 10)
        subjects = [s for s, _ in self.nats.log]
        self.assertEqual(subjects.count("cs.test.sync"), 1)
        self.assertEqual(sum(1 for s in subjects if s.startswith("_INBOX.")), 3)
        self.assertEqual(self.node("d").state.channelMembers(1) and
                         sorted(s.sessionId for s in self.node("d").state.channelMembers(1)),
                         [f"b{i}" for i in range(5)])

    def test_lostEventHealed(self):
        """
        An event NATS lost is noticed at the node's next heartbeat (its
        sequence number is ahead) and a snapshot fills it in.
        """
        self.nats.losing = True
        self.connect("a", "lost", 1)
        self.nats.losing = False
        self.assertEqual(sessionIds(self.node("b")), [])
        self.clock.advance(self.node("a").config.deadPeerTimeout / 4)
        self.nats.pump()
        self.assertEqual(sessionIds(self.node("b")), ["lost"])
        self.assertEqual(sessionIds(self.node("c")), ["lost"])

    def test_gapKeepsLaterEvents(self):
        """Events after a lost one are kept and applied after the snapshot, none twice."""
        self.nats.losing = True
        self.connect("a", "s1", 1)
        self.nats.losing = False
        self.connect("a", "s2", 2)
        self.connect("a", "s3", 3)
        result(self.node("a").clientDisconnected("s2"))
        self.nats.pump()
        self.assertEqual(sessionIds(self.node("b")), ["s1", "s3"])
        self.assertGreaterEqual(self.nodes["b"][1].counters["gaps"], 1)

    def test_deadNodeRemoved(self):
        """A node that vanishes (no good-bye) loses its sessions everywhere within dead_peer_timeout."""
        self.connect("a", "s1", 7)
        self.nodes["a"][2].cut()
        self.nodes["a"][1]._timer.stop()  # a dead process heartbeats no more
        timeout = self.node("b").config.deadPeerTimeout
        for _ in range(8):
            self.clock.advance(timeout / 8)
            self.nats.pump()
        self.assertEqual(sessionIds(self.node("b")), [])
        self.assertEqual(sessionIds(self.node("c")), [])
        self.assertNotIn("a", [p.serverId for p in result(self.node("b").peers())])

    def test_byeRemovesAtOnce(self):
        """A node that stops says good-bye: its sessions go at once."""
        self.connect("a", "s1", 7)
        self.nodes["a"][1].stop()
        self.nats.pump()
        self.assertEqual(sessionIds(self.node("b")), [])

    def test_outage(self):
        """
        While a node's NATS connection is down its sends fail with
        PeerUnavailable and its status says so; when it is back, a re-sync
        leaves every node with the same sessions (no ghost, none missing).
        """
        a, bpA, busA, _ = self.nodes["a"]
        self.connect("b", "s2", 8)
        busA.cut()
        self.assertEqual(bpA.status()["state"], "down")
        failure = result(a.sendToUser(8, "x"))
        self.assertIsInstance(failure.value, PeerUnavailable)
        self.assertEqual(failure.value.servers, ("b",))
        failure = result(a.broadcast("x"))
        self.assertIsInstance(failure.value, PeerUnavailable)
        # During the outage: a's session is born, b's dies.
        result(a.clientConnected("s1", 7, "u7"))
        result(self.node("b").clientDisconnected("s2"))
        self.connect("c", "s3", 9)
        busA.heal()
        self.nats.pump()
        self.assertEqual(bpA.status()["state"], "up")
        for name in "abc":
            self.assertEqual(sessionIds(self.node(name)), ["s1", "s3"], name)
        self.assertEqual(bpA.outages, 1)

    def test_longOutage(self):
        """An outage past dead_peer_timeout drops the others, and they come back after it."""
        a, bpA, busA, _ = self.nodes["a"]
        self.connect("b", "s2", 8)
        busA.cut()
        self.clock.advance(a.config.deadPeerTimeout)
        self.nats.pump()
        self.assertEqual(sessionIds(a), [])
        busA.heal()
        self.nats.pump()
        self.assertEqual(sessionIds(a), ["s2"])
        self.assertEqual(sorted(p.serverId for p in result(a.peers())), ["b", "c"])

    def test_originChecked(self):
        """A presence line whose origin is not the subject's server is refused."""
        bus = self.nats.bus()
        bus.start()
        line = b'{"type":"CLIENT_DISCONNECTED","origin":"b","payload":{"clienteId":1,"sessionId":"s"}}'
        bus.publish("cs.test.presence.a", line, {"Cs-Epoch": "e", "Cs-Seq": "1"})
        self.nats.pump()
        self.assertGreaterEqual(self.node("c").metrics.rejectedInputs["origin"], 1)


class LegacyBridgeTests(unittest.TestCase):
    """An existing server linked to node a is reached through a's bridge."""

    def setUp(self):
        self.clock = Clock()
        self.nats = FakeNats()
        self.a = backplaneNode(self.nats, self.clock, "a")
        self.b = backplaneNode(self.nats, self.clock, "b")
        self.nats.pump()
        self.legacy = FakeLink("old")
        self.a[0].linkEstablished(self.legacy)
        session = SessionInfo("L1", 42, "u42", "old", None, {3})
        self.a[0].dispatch(self.legacy, ClientConnected("old", session))
        self.nats.pump()

    def test_sessionsBridged(self):
        """The existing server's session is known on b, as a session of that server."""
        sessions = [s for s in self.b[0].state.allSessions()]
        self.assertEqual([(s.sessionId, s.serverId) for s in sessions], [("L1", "old")])
        self.assertEqual(self.a[1].status()["bridged"], ["old"])

    def test_messagesReachIt(self):
        """A message from b for the existing server's user is written to its link by a, from a."""
        delivery = result(self.b[0].sendToUser(42, {"m": 1}))
        self.nats.pump()
        self.assertEqual(delivery.servers, ("old",))
        message = decode(self.legacy.lines[-1])
        self.assertEqual((type(message).__name__, message.origin), ("DirectMessage", "a"))
        self.assertEqual(json.loads(bytes(message.payload.message)), {"m": 1})

    def test_broadcastRelayed(self):
        """A BROADCAST from b reaches the existing server through a."""
        result(self.b[0].broadcast("hey"))
        self.nats.pump()
        self.assertEqual(type(decode(self.legacy.lines[-1])).__name__, "Broadcast")

    def test_linkLost(self):
        """When the existing server's link goes, its sessions go on b too."""
        self.a[0].linkLost(self.legacy, "gone", True)
        self.nats.pump()
        self.assertEqual(list(self.b[0].state.allSessions()), [])
        self.assertEqual(self.a[1].status()["bridged"], [])


class DirectLinkTests(unittest.TestCase):
    """A direct peer link to a server takes over from its backplane link."""

    def test_directWins(self):
        """
        The virtual link is closed and replaced; later backplane presence
        of that server is not applied over the link's state.
        """
        clock = Clock()
        nats = FakeNats()
        a, bpA, _, _ = backplaneNode(nats, clock, "a")
        b = backplaneNode(nats, clock, "b")[0]
        nats.pump()
        virtual = a.linkFor("b")
        self.assertTrue(virtual.virtual)
        direct = FakeLink("b", direction="outbound")
        a.linkEstablished(direct)
        self.assertIs(a.linkFor("b"), direct)
        self.assertTrue(virtual.closed)
        result(b.clientConnected("s", 1, "u"))
        nats.pump()
        self.assertEqual(sessionIds(a), [])  # b's own link has not said so
        self.assertFalse(bpA.isRemote("b"))
        self.assertEqual(bpA.legacy.streams, {})  # b is on the backplane: not bridged


class ConfigTests(unittest.TestCase):
    """The backplane's settings."""

    def test_urls(self):
        """NATS URLs are checked; a bad one names the key."""
        from clustersync.app.config import ConfigError, loadConfig

        config = loadConfig(None, {"backplane": ["nats://h1:4222", "tls://u:p@h2:4223"],
                                   "cluster_name": "prod"})
        self.assertEqual(config.backplane, ["nats://h1:4222", "tls://u:p@h2:4223"])
        self.assertEqual(config.clusterName, "prod")
        for bad in ["h1:4222", "http://h:1", "nats://h", "nats://:4222"]:
            e = self.assertRaises(ConfigError, loadConfig, None, {"backplane": [bad]})
            self.assertEqual(e.key, "backplane")

    def test_needsAsyncioReactor(self):
        """twistd clustersync --backplane on another reactor is a usage error naming the fix."""
        from twisted.internet.asyncioreactor import AsyncioSelectorReactor
        from twisted.internet import reactor
        from twisted.python.usage import UsageError

        from clustersync.app.tap import Options

        if isinstance(reactor, AsyncioSelectorReactor):
            raise unittest.SkipTest("runs under a reactor other than asyncio")
        e = self.assertRaises(UsageError, Options().parseOptions,
                              ["--backplane", "nats://127.0.0.1:4222"])
        self.assertIn("--reactor=asyncio", str(e))

    def test_busOptions(self):
        """The node's settings become the client's: servers, name, TLS, credentials, pings."""
        from clustersync.app.config import NodeConfig
        from clustersync.backplane.service import busOptions

        options = busOptions(NodeConfig(serverId="n1", backplane=["nats://h:1"],
                                        backplaneCredentials="/x.creds", deadPeerTimeout=6.0))
        self.assertEqual((options.servers, options.name, options.credentials, options.pingInterval),
                         (("nats://h:1",), "n1", "/x.creds", 1.0))
        self.assertIsNone(options.sslContext())
