"""
Live presence for chat clients: following users and the joined channels'
member events, driven by the node's L{IClusterListener} notifications; a
gateway on a L{Clock} for the rules, and the hub fed a large remote
population to show that a subscriber hears only what concerns it.
"""

from __future__ import annotations

import time

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest

from clustersync.gateway.presence import MAX_FOLLOWED
from clustersync.wire.codec import SessionInfo

from tests.support import Conditions, startGatewayMesh
from tests.test_gateway import USERS, GatewayTestMixin, writeUsers
from tests.test_gateway_cluster import ChatClient


def events(client, evento=None) -> list[dict]:
    """The EVENT payloads C{client} got since the last look (of kind C{evento})."""
    out = [line["payload"] for line in client.lines() if line["command"] == "EVENT"]
    return [e for e in out if evento is None or e.get("evento") == evento]


class PresenceTests(GatewayTestMixin, unittest.TestCase):
    """SUBSCRIBE_PRESENCE, UNSUBSCRIBE_PRESENCE and channel member events."""

    def test_followUserComesAndGoes(self):
        """
        A client following luis (by name) is told when a session of his
        appears and ends, with his session count; nobody else is told.
        """
        ana = self.client("ana")
        other = self.client("root")
        r = ana.call("SUBSCRIBE_PRESENCE", usuarios=["luis", "nadie"])
        self.assertTrue(r["payload"]["success"])
        self.assertEqual(r["payload"]["siguiendo"],
                         [{"clienteId": 2, "usuario": "luis", "servidores": []}])
        self.assertEqual(r["payload"]["desconocidos"], ["nadie"])
        luis = self.client("luis")
        luis2 = self.client("luis")
        online = events(ana, "USER_ONLINE")
        self.assertEqual([(e["usuario"], e["clienteId"], e["serverId"], e["sesiones"])
                          for e in online], [("luis", 2, "srv-t", 1), ("luis", 2, "srv-t", 2)])
        self.assertEqual(events(other), [])
        luis.call("LOGOUT")
        luis2.lose()
        self.assertEqual([e["sesiones"] for e in events(ana, "USER_OFFLINE")], [1, 0])
        r = ana.call("SUBSCRIBE_PRESENCE", clienteIds=[2])
        self.assertEqual(r["payload"]["siguiendo"][0]["servidores"], [])

    def test_subscribeReportsWhereUsersAre(self):
        """The answer names the servers a followed user is on now."""
        self.client("luis")
        r = self.client("ana").call("SUBSCRIBE_PRESENCE", clienteIds=[2])
        self.assertEqual(r["payload"]["siguiendo"],
                         [{"clienteId": 2, "usuario": "luis", "servidores": ["srv-t"]}])

    def test_unsubscribe(self):
        """UNSUBSCRIBE_PRESENCE stops the events (one user, or everyone)."""
        ana = self.client("ana")
        ana.call("SUBSCRIBE_PRESENCE", usuarios=["luis", "root"])
        r = ana.call("UNSUBSCRIBE_PRESENCE", usuarios=["luis"])
        self.assertEqual(r["payload"]["message"], "following 1 user(s)")
        self.client("luis")
        self.client("root")
        self.assertEqual([e["usuario"] for e in events(ana)], ["root"])
        ana.call("UNSUBSCRIBE_PRESENCE")
        self.client("root")
        self.assertEqual(events(ana), [])
        self.assertEqual(self.gateway.presence.followers, {})

    def test_channelMemberEvents(self):
        """
        By default a member of channel 3 hears the others join and leave
        it, and leave it by ending their session; not its own changes.
        """
        ana = self.client("ana")
        ana.call("JOIN", canalId=3)
        luis = self.client("luis")
        luis.call("JOIN", canalId=3)
        luis.call("JOIN", canalId=4)
        joined = events(ana)
        self.assertEqual([(e["evento"], e["usuario"], e["canalId"]) for e in joined],
                         [("MEMBER_JOINED", "luis", 3)])
        self.assertEqual(events(luis), [])
        luis.call("LEAVE", canalId=3)
        self.assertEqual([(e["evento"], e["canalId"]) for e in events(ana)], [("MEMBER_LEFT", 3)])
        luis.call("JOIN", canalId=3)
        events(ana)
        luis.lose()
        self.assertEqual([(e["evento"], e["canalId"]) for e in events(ana)], [("MEMBER_LEFT", 3)])
        ana.call("LEAVE", canalId=3)
        self.client("root").call("JOIN", canalId=3)
        self.assertEqual(events(ana), [])

    def test_channelEventsCanBeTurnedOff(self):
        """SUBSCRIBE_PRESENCE with canales false stops member events (true brings them back)."""
        ana = self.client("ana")
        ana.call("JOIN", canalId=3)
        ana.call("SUBSCRIBE_PRESENCE", canales=False)
        luis = self.client("luis")
        luis.call("JOIN", canalId=3)
        self.assertEqual(events(ana), [])
        ana.call("SUBSCRIBE_PRESENCE", canales=True)
        luis.call("LEAVE", canalId=3)
        self.assertEqual([e["evento"] for e in events(ana)], ["MEMBER_LEFT"])

    def test_logoutDropsSubscriptions(self):
        """A session that ends leaves nothing in the hub's indexes."""
        ana = self.client("ana")
        ana.call("JOIN", canalId=3)
        ana.call("SUBSCRIBE_PRESENCE", usuarios=["luis"])
        ana.call("LOGOUT")
        hub = self.gateway.presence
        self.assertEqual((hub.followers, hub.members), ({}, {}))
        self.client("luis").call("JOIN", canalId=3)
        self.assertEqual(events(ana), [])

    def test_badSubscriptions(self):
        """Mistyped fields and too many users are refused and counted."""
        self.gateway.maxLineLength = 100_000  # room for a thousand ids
        ana = self.client("ana")
        for payload in ({"clienteIds": "2"}, {"clienteIds": [True]}, {"usuarios": [3]},
                        {"usuarios": ["x" * 300]}, {"canales": 1}):
            r = ana.call("SUBSCRIBE_PRESENCE", **payload)
            self.assertFalse(r["payload"]["success"], payload)
        r = ana.call("SUBSCRIBE_PRESENCE", clienteIds=list(range(MAX_FOLLOWED + 1)))
        self.assertIn("more than 1000", r["payload"]["message"])
        ana.call("SUBSCRIBE_PRESENCE", clienteIds=list(range(100, 100 + MAX_FOLLOWED)))
        r = ana.call("SUBSCRIBE_PRESENCE", clienteIds=[5])
        self.assertIn("at most 1000", r["payload"]["message"])
        self.assertEqual(self.rejected(), {"client_field": 5, "client_limit": 2})
        r = self.client().call("SUBSCRIBE_PRESENCE", clienteIds=[2])
        self.assertIn("needs a LOGIN first", r["payload"]["message"])

    def test_noFirehose(self):
        """
        Two hundred thousand remote sessions coming and going (a large
        SYNC_STATE, then the peer's loss) reach a client only where they
        concern it: the one session of the user it follows and the one in
        its channel.  The time per event is printed.
        """
        ana = self.client("ana")
        ana.call("JOIN", canalId=3)
        ana.call("SUBSCRIBE_PRESENCE", usuarios=["luis"])
        hub = self.gateway.presence
        crowd = [SessionInfo(f"r{i}", 1000 + i, f"u{i}", "srv-x", None, {10_000 + i % 50})
                 for i in range(200_000)]
        crowd += [SessionInfo("luis-remote", 2, "luis", "srv-x", None, set()),
                  SessionInfo("carla-remote", 77, "carla", "srv-x", None, {3})]
        started = time.perf_counter()
        for session in crowd:
            hub.sessionAdded(session)
        for session in crowd:
            hub.sessionRemoved(session)
        perEvent = (time.perf_counter() - started) / (2 * len(crowd))
        got = [(e["evento"], e["usuario"]) for e in events(ana)]
        self.assertEqual(got, [("USER_ONLINE", "luis"), ("MEMBER_JOINED", "carla"),
                               ("USER_OFFLINE", "luis"), ("MEMBER_LEFT", "carla")])
        self.assertEqual(hub.pushed, 4)
        print(f"\npresence: {2 * len(crowd)} events, {perEvent * 1e6:.2f} us each, 4 pushed")


class PresenceClusterTests(unittest.TestCase):
    """Two real nodes on loopback, real client sockets."""

    timeout = 60

    @inlineCallbacks
    def setUp(self):
        """Start srv-a and srv-b with gateways, linked."""
        self.cond = Conditions(reactor)
        self.nodes, self.clientPorts = yield startGatewayMesh(
            self, reactor, ("srv-a", "srv-b"), writeUsers(self.mktemp()), self.cond)
        self.passwords = {u: pw for u, _, _, pw in USERS}

    @inlineCallbacks
    def connect(self, serverId: str, usuario: str):
        """A client logged in as C{usuario} on C{serverId}."""
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.clientPorts[serverId])
        client = yield connectProtocol(endpoint, ChatClient())
        self.addCleanup(lambda: None if client.isClosed else (
            client.transport.loseConnection(), client.closed)[1])
        yield client.ok("LOGIN", usuario=usuario, contrasenia=self.passwords[usuario])
        return client

    @inlineCallbacks
    def test_seeEachOtherComeAndGo(self):
        """
        ana on srv-a follows luis; luis logging in on srv-b, joining her
        channel, leaving and disconnecting reach her as pushed events,
        without any LIST_CONNECTED.
        """
        ana = yield self.connect("srv-a", "ana")
        yield ana.ok("JOIN", canalId=3)
        r = yield ana.ok("SUBSCRIBE_PRESENCE", usuarios=["luis"])
        self.assertEqual(r["siguiendo"][0]["servidores"], [])
        luis = yield self.connect("srv-b", "luis")
        yield ana.waitFor(lambda c: c.eventsOf(evento="USER_ONLINE"), what="luis online")
        self.assertEqual(ana.eventsOf(evento="USER_ONLINE")[0]["serverId"], "srv-b")
        yield luis.ok("JOIN", canalId=3)
        yield ana.waitFor(lambda c: c.eventsOf(evento="MEMBER_JOINED", usuario="luis"),
                          what="luis joined 3")
        luis.transport.loseConnection()
        yield ana.waitFor(lambda c: c.eventsOf(evento="USER_OFFLINE"), what="luis offline")
        yield ana.waitFor(lambda c: c.eventsOf(evento="MEMBER_LEFT", usuario="luis"))
        self.assertEqual([e["evento"] for e in ana.events],
                         ["USER_ONLINE", "MEMBER_JOINED", "USER_OFFLINE", "MEMBER_LEFT"])
        self.assertEqual(ana.eventsOf(evento="USER_OFFLINE")[0]["sesiones"], 0)
        self.assertFalse([l for l in ana.lines if l["command"] == "LIST_CONNECTED"])
