"""
End-to-end tests of the chat gateway: three real nodes on loopback, each
with its gateway on an ephemeral port, and real client sockets speaking
the JSON-lines protocol.  Every wait is on received lines or cluster
events, bounded by a timeout.
"""

from __future__ import annotations

import json

from twisted.internet import reactor
from twisted.internet.defer import Deferred, TimeoutError, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial import unittest

from tests.support import Conditions, startGatewayMesh, startNode
from tests.test_gateway import USERS, writeUsers


class ChatClient(Protocol):
    """
    A minimal test client: sends requests, collects every line, and lets a
    test wait for responses and events.

    @ivar events: every C{EVENT} payload received, in order.
    @ivar lines: every line received (decoded).
    """

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.lines: list[dict] = []
        self._buffer = b""
        self._responses: list[Deferred] = []
        self._waits: list = []
        self.closed = Deferred()
        self.isClosed = False

    def dataReceived(self, data: bytes) -> None:
        """Parse lines; route responses to waiters, events to the log."""
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        for raw in lines:
            line = json.loads(raw)
            self.lines.append(line)
            if line["command"] == "EVENT":
                self.events.append(line["payload"])
            elif self._responses:
                self._responses.pop(0).callback(line)
        self._check()

    def connectionLost(self, reason) -> None:
        """Note the close."""
        self.isClosed = True
        self._check()
        self.closed.callback(None)

    def send(self, command: str, **payload) -> Deferred:
        """
        Send one request.

        @return: a L{Deferred} firing with its response line (responses
            come in request order).
        """
        d = Deferred()
        self._responses.append(d)
        self.transport.write(json.dumps({"command": command, "payload": payload}).encode() + b"\n")
        return d.addTimeout(10, reactor)

    @inlineCallbacks
    def ok(self, command: str, **payload):
        """Send a request that must succeed; return its payload."""
        r = yield self.send(command, **payload)
        if r["command"] != command or not r["payload"]["success"]:
            raise AssertionError(f"{command} {payload} failed: {r}")
        return r["payload"]

    def waitFor(self, predicate, timeout: float = 10.0, what: str = "") -> Deferred:
        """Fire once C{predicate(self)} is true; fail after C{timeout} seconds."""
        if predicate(self):
            return succeed(None)
        d = Deferred()
        entry = [predicate, d]

        def expire():
            if entry in self._waits:
                self._waits.remove(entry)
                d.errback(TimeoutError(f"timed out waiting for {what or predicate}"))

        call = reactor.callLater(timeout, expire)
        d.addBoth(lambda r: (call.cancel() if call.active() else None, r)[1])
        self._waits.append(entry)
        return d

    def _check(self) -> None:
        for entry in list(self._waits):
            if entry[0](self) and entry in self._waits:
                self._waits.remove(entry)
                entry[1].callback(None)

    def eventsOf(self, **match) -> list[dict]:
        """The events whose payload has every C{match} item."""
        return [e for e in self.events if all(e.get(k) == v for k, v in match.items())]


def nodeSessions(node) -> set[tuple[str, str]]:
    """(usuario, serverId) of every session C{node} knows."""
    return {(s.usuario, s.serverId) for s in node.state.allSessions()}


class GatewayClusterTests(unittest.TestCase):
    """
    Nodes A, B and C in a full mesh, each with a gateway; users from one
    shared users file (ana 1, luis 2, root 3 admin).
    """

    timeout = 60

    @inlineCallbacks
    def setUp(self):
        """Start A, B and C with gateways and wait for the full mesh."""
        self.cond = Conditions(reactor)
        self.nodes, self.clientPorts = yield startGatewayMesh(
            self, reactor, ("srv-a", "srv-b", "srv-c"), writeUsers(self.mktemp()), self.cond)
        self.passwords = {u: pw for u, _, _, pw in USERS}

    @inlineCallbacks
    def connect(self, serverId: str, usuario: str | None = None):
        """A client connected to C{serverId}'s gateway, logged in if C{usuario}."""
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.clientPorts[serverId])
        client = yield connectProtocol(endpoint, ChatClient())
        self.addCleanup(self._close, client)
        if usuario is not None:
            client.login = yield client.ok("LOGIN", usuario=usuario,
                                           contrasenia=self.passwords[usuario])
        return client

    def _close(self, client):
        if client.isClosed:
            return None
        client.transport.loseConnection()
        return client.closed

    def waitSessions(self, expected: set, what: str = "") -> Deferred:
        """Wait until every node knows exactly C{expected} (usuario, serverId)."""
        return self.cond.waitUntil(
            lambda: all(nodeSessions(n) == expected for n in self.nodes.values()),
            what=what or f"sessions {expected}")

    def waitMembers(self, canalId: int, count: int) -> Deferred:
        """Wait until every node sees C{count} members in C{canalId}."""
        return self.cond.waitUntil(
            lambda: all(len(n.state.channelMembers(canalId)) == count for n in self.nodes.values()),
            what=f"{count} members in channel {canalId}")

    @inlineCallbacks
    def test_listConnectedAgreesEverywhere(self):
        """
        Logins on three nodes (one user on two) are visible on every node,
        and LIST_CONNECTED gives the same answer on each, with servers.
        """
        ana = yield self.connect("srv-a", "ana")
        luis = yield self.connect("srv-b", "luis")
        root = yield self.connect("srv-c", "root")
        ana2 = yield self.connect("srv-c", "ana")
        yield self.waitSessions({("ana", "srv-a"), ("luis", "srv-b"), ("root", "srv-c"),
                                 ("ana", "srv-c")})
        answers = []
        for c in (ana, luis, root, ana2):
            p = yield c.ok("LIST_CONNECTED")
            answers.append(p["sesiones"])
        self.assertEqual(answers[1:], answers[:1] * 3)
        self.assertEqual(
            [(r["usuario"], r["serverId"]) for r in answers[0]],
            sorted([("ana", "srv-a"), ("ana", "srv-c"), ("luis", "srv-b"), ("root", "srv-c")]))
        self.assertEqual({r["sessionId"] for r in answers[0]},
                         {c.login["sessionId"] for c in (ana, luis, root, ana2)})

    @inlineCallbacks
    def test_directMessageAcrossNodesWithAck(self):
        """
        SEND_USER from A reaches both of luis's sessions (on B and C) once
        each, and ana gets one ACK per delivery, from each recipient node.
        """
        ana = yield self.connect("srv-a", "ana")
        luisB = yield self.connect("srv-b", "luis")
        luisC = yield self.connect("srv-c", "luis")
        root = yield self.connect("srv-b", "root")
        yield self.waitSessions({("ana", "srv-a"), ("luis", "srv-b"), ("luis", "srv-c"),
                                 ("root", "srv-b")})
        p = yield ana.ok("SEND_USER", clienteId=2, contenido="hola luis")
        mensajeId = p["mensajeId"]
        self.assertEqual(p["entregado"], {"local": 0, "servidores": ["srv-b", "srv-c"]})
        for luis in (luisB, luisC):
            yield luis.waitFor(lambda c: c.eventsOf(mensajeId=mensajeId), what="DM")
            (event,) = luis.eventsOf(mensajeId=mensajeId)
            self.assertEqual((event["evento"], event["contenido"], event["remitente"]["usuario"],
                              event["remitente"]["serverId"]),
                             ("NEW_MESSAGE", "hola luis", "ana", "srv-a"))
        yield ana.waitFor(lambda c: len(c.eventsOf(tipo="ACK")) == 2, what="two ACKs")
        self.assertEqual(
            sorted((e["mensajeId"], e["clienteId"], e["serverId"]) for e in ana.eventsOf(tipo="ACK")),
            [(mensajeId, 2, "srv-b"), (mensajeId, 2, "srv-c")])
        # A reply from C reaches ana on A, and is ACKed to luis's C session only.
        p = yield luisC.ok("SEND_USER", clienteId=1, contenido="hola ana")
        yield luisC.waitFor(lambda c: c.eventsOf(tipo="ACK", mensajeId=p["mensajeId"]))
        self.assertEqual(ana.eventsOf(evento="NEW_MESSAGE")[0]["contenido"], "hola ana")
        self.assertEqual(luisB.eventsOf(tipo="ACK"), [])
        self.assertEqual(root.events, [])
        r = yield ana.send("SEND_USER", clienteId=42, contenido="x")
        self.assertIn("user 42 is not connected", r["payload"]["message"])

    @inlineCallbacks
    def test_channelFanOut(self):
        """
        A channel message reaches every other member on all three nodes
        exactly once, not the sender, not non-members; LEAVE stops it.
        """
        ana = yield self.connect("srv-a", "ana")
        anaA2 = yield self.connect("srv-a", "ana")
        luis = yield self.connect("srv-b", "luis")
        root = yield self.connect("srv-c", "root")
        outsider = yield self.connect("srv-b", "root")
        members = (ana, anaA2, luis, root)
        for c in members:
            yield c.ok("JOIN", canalId=7)
        yield self.waitMembers(7, 4)
        first = yield ana.ok("SEND_CHANNEL", canalId=7, contenido="uno")
        self.assertEqual(first["entregado"], {"local": 1, "servidores": ["srv-b", "srv-c"]})
        second = yield ana.ok("SEND_CHANNEL", canalId=7, contenido={"rutaArchivo": "a.wav"})
        for c in (anaA2, luis, root):
            # Lines of one link arrive in order: once the second is in, any
            # duplicate of the first would be too.
            yield c.waitFor(lambda c: c.eventsOf(mensajeId=second["mensajeId"]), what="2nd")
            self.assertEqual([(e["contenido"], e["canalId"]) for e in c.eventsOf(evento="NEW_CHANNEL_MESSAGE")],
                             [("uno", 7), ({"rutaArchivo": "a.wav"}, 7)])
        # Members hear only the others' JOINs (presence events), no message.
        self.assertEqual(ana.eventsOf(evento="NEW_CHANNEL_MESSAGE"), [])
        self.assertEqual({e["evento"] for e in ana.events}, {"MEMBER_JOINED"})
        self.assertEqual(outsider.events, [])
        yield root.ok("LEAVE", canalId=7)
        yield self.waitMembers(7, 3)
        third = yield luis.ok("SEND_CHANNEL", canalId=7, contenido="tres")
        self.assertEqual(third["entregado"]["servidores"], ["srv-a"])
        yield ana.waitFor(lambda c: c.eventsOf(mensajeId=third["mensajeId"]))
        yield anaA2.waitFor(lambda c: c.eventsOf(mensajeId=third["mensajeId"]))
        self.assertEqual(root.eventsOf(mensajeId=third["mensajeId"]), [])

    @inlineCallbacks
    def test_broadcastAdminOnly(self):
        """An admin's BROADCAST reaches every client of every node; others are refused."""
        clients = []
        for server, usuario in (("srv-a", "ana"), ("srv-b", "luis"), ("srv-c", "ana"),
                                ("srv-c", "root")):
            clients.append((yield self.connect(server, usuario)))
        yield self.waitSessions({("ana", "srv-a"), ("luis", "srv-b"), ("ana", "srv-c"),
                                 ("root", "srv-c")})
        r = yield clients[0].send("BROADCAST", contenido="no")
        self.assertEqual(r["payload"]["message"], "BROADCAST is only for admin users")
        p = yield clients[3].ok("BROADCAST", contenido="mantenimiento a las 22h")
        self.assertEqual(p["entregado"], {"local": 2, "servidores": ["srv-a", "srv-b"]})
        for c in clients:
            yield c.waitFor(lambda c: c.eventsOf(tipo="SERVER_ALERT"), what="alert")
            (alert,) = c.eventsOf(tipo="SERVER_ALERT")
            self.assertEqual((alert["mensaje"], alert["remitente"]["usuario"]),
                             ("mantenimiento a las 22h", "root"))
        self.assertEqual(self.nodes["srv-a"].metrics.rejectedInputs["client_forbidden"], 1)

    @inlineCallbacks
    def test_logoutAndDropPropagate(self):
        """
        LOGOUT and a dropped socket remove the session (and its channels)
        on every node; a DM to the gone user then fails.
        """
        ana = yield self.connect("srv-a", "ana")
        luis = yield self.connect("srv-b", "luis")
        root = yield self.connect("srv-c", "root")
        yield luis.ok("JOIN", canalId=9)
        yield root.ok("JOIN", canalId=9)
        yield self.waitMembers(9, 2)
        yield luis.ok("LOGOUT")
        yield self.waitSessions({("ana", "srv-a"), ("root", "srv-c")}, "luis gone")
        yield self.waitMembers(9, 1)
        r = yield ana.send("SEND_USER", clienteId=2, contenido="x")
        self.assertFalse(r["payload"]["success"])
        root.transport.loseConnection()
        yield self.waitSessions({("ana", "srv-a")}, "root gone")
        yield self.waitMembers(9, 0)
        # luis's connection is still open and can log in again.
        yield luis.ok("LOGIN", usuario="luis", contrasenia="luis-pw")
        yield self.waitSessions({("ana", "srv-a"), ("luis", "srv-b")}, "luis back")

    @inlineCallbacks
    def test_badInputIsolated(self):
        """
        Garbage, a command before LOGIN and an oversized line from one client
        are answered and counted on its node; the cluster and the other
        clients carry on.
        """
        ana = yield self.connect("srv-a", "ana")
        luis = yield self.connect("srv-b", "luis")
        yield self.waitSessions({("ana", "srv-a"), ("luis", "srv-b")})
        bad = yield self.connect("srv-a")
        r = yield bad.send("JOIN", canalId=1)
        self.assertIn("needs a LOGIN first", r["payload"]["message"])
        d = Deferred()
        bad._responses.append(d)
        bad.transport.write(b"\xff\xfe not json\n")
        r = yield d
        self.assertIn("not valid UTF-8", r["payload"]["message"])
        d = Deferred()
        bad._responses.append(d)
        bad.transport.write(b"{" + b" " * 70000 + b"\n")
        r = yield d
        self.assertIn("line longer than 65536 bytes", r["payload"]["message"])
        yield bad.closed
        metrics = self.nodes["srv-a"].metrics.rejectedInputs
        self.assertEqual((metrics["client_unauthenticated"], metrics["client_utf8"],
                          metrics["client_oversize"]), (1, 1, 1))
        p = yield ana.ok("SEND_USER", clienteId=2, contenido="still here")
        yield luis.waitFor(lambda c: c.eventsOf(mensajeId=p["mensajeId"]))
        self.assertEqual(nodeSessions(self.nodes["srv-c"]), {("ana", "srv-a"), ("luis", "srv-b")})

    @inlineCallbacks
    def test_pingAndWrongPassword(self):
        """PING answers with the node's id; a wrong password opens no session anywhere."""
        c = yield self.connect("srv-b")
        p = yield c.ok("PING")
        self.assertEqual(p["serverId"], "srv-b")
        r = yield c.send("LOGIN", usuario="ana", contrasenia="wrong")
        self.assertEqual(r["payload"], {"success": False, "message": "wrong usuario or contrasenia"})
        self.assertEqual([n.state.sessionsOf("srv-b") for n in self.nodes.values()], [[], [], []])


class SlowReaderTests(unittest.TestCase):
    """A real client socket that stops reading, on a node with a small output bound."""

    timeout = 30

    @inlineCallbacks
    def test_slowReaderDisconnected(self):
        """
        Messages for a client that does not read pile up only to
        C{client_max_output}; then it is cut off, its session ends, and the
        other client still gets everything.
        """
        cond = Conditions(reactor)
        service, node, _, _ = yield startNode(
            self, reactor, "srv-s", conditions=cond, clients="tcp:0:interface=127.0.0.1",
            usersFile=writeUsers(self.mktemp()), clientMaxOutput=200_000)
        port = (yield service.getServiceNamed("gateway").whenListening()).getHost().port
        clients = []
        for usuario, pw in (("ana", "ana-pw"), ("luis", "luis-pw")):
            c = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), ChatClient())
            self.addCleanup(lambda c=c: None if c.isClosed else (c.transport.loseConnection(), c.closed)[1])
            yield c.ok("LOGIN", usuario=usuario, contrasenia=pw)
            clients.append(c)
        ana, luis = clients
        ana.transport.pauseProducing()  # ana's client stops reading its socket
        for i in range(100):
            node.sendToUser(1, {"command": "EVENT", "payload": {"n": i, "pad": "x" * 10_000}})
        node.sendToUser(2, {"command": "EVENT", "payload": {"fin": True}})
        yield cond.waitUntil(lambda: [s.usuario for s in node.state.allSessions()] == ["luis"],
                             what="ana's session ended")
        self.assertEqual(node.metrics.rejectedInputs["client_slow"], 1)
        yield luis.waitFor(lambda c: c.eventsOf(fin=True), what="luis still served")
        ana.transport.resumeProducing()
        yield ana.closed
        self.assertLess(sum(1 for e in ana.events if "n" in e), 100)
