"""
Unit tests of the chat gateway: the client protocol driven through
L{StringTransport} against a real L{ClusterNode} with a L{Clock} (no
peers), the users file and its checker, the extension and
C{clustersync-admin}.
"""

from __future__ import annotations

import io
import json
import os
import sys

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from zope.interface import implementer

from clustersync.cli import admin
from clustersync.app.config import NodeConfig
from clustersync.gateway import Gateway, GatewayExtension, GatewayService
from clustersync.gateway.auth import (
    ChatUser,
    IChatUser,
    UsersFile,
    UsersFileChecker,
    UsersFileError,
    createDemoUsers,
    hashPassword,
    makePortal,
    verifyPassword,
)
from clustersync.cluster.node import ClusterNode

#: Cheap scrypt cost for tests (the default is 2**14).
CHEAP = {"n": 2**4}

#: (usuario, clienteId, admin, password) of the test users file.
USERS = (
    ("ana", 1, False, "ana-pw"),
    ("luis", 2, False, "luis-pw"),
    ("root", 3, True, "root-pw"),
)


def writeUsers(path: str, users=USERS) -> str:
    """Write a users file with cheap hashes; return C{path}."""
    f = UsersFile(path)
    for usuario, clienteId, isAdmin, password in users:
        f.add(usuario, clienteId, password, isAdmin, **CHEAP)
    f.save()
    return path


class FakeClient:
    """
    One client connection to a L{Gateway} over a L{StringTransport}.
    """

    def __init__(self, gateway: Gateway, port: int = 40000, host: str = "127.0.0.1") -> None:
        self.protocol = gateway.factory.buildProtocol(None)
        self.transport = StringTransport(
            peerAddress=IPv4Address("TCP", host, port))
        self.protocol.makeConnection(self.transport)
        self.seen: list[dict] = []

    def sendLine(self, line: bytes) -> None:
        """Feed one raw line (the newline is added)."""
        self.protocol.dataReceived(line + b"\n")

    def request(self, command: str, **payload) -> None:
        """Send one request."""
        self.sendLine(json.dumps({"command": command, "payload": payload}).encode())

    def lines(self) -> list[dict]:
        """Every JSON line written since the last call."""
        data = self.transport.value()
        self.transport.clear()
        out = [json.loads(line) for line in data.split(b"\n") if line]
        self.seen.extend(out)
        return out

    def call(self, command: str, **payload) -> dict:
        """Send one request and return the single line it produced."""
        self.lines()
        self.request(command, **payload)
        out = self.lines()
        assert len(out) == 1, out
        return out[0]

    def lose(self) -> None:
        """Drop the connection."""
        self.transport.loseConnection()
        self.protocol.connectionLost(None)


@implementer(ICredentialsChecker)
class SlowChecker:
    """A checker whose answer is a L{Deferred} the test fires."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, pending: Deferred) -> None:
        self.pending = pending

    def requestAvatarId(self, credentials):
        """@return: the pending L{Deferred}."""
        return self.pending


class GatewayTestMixin:
    """A node on a L{Clock} with a L{Gateway} as its local delivery."""

    def setUp(self):
        """A node C{srv-t} on a clock, its gateway, and the test users."""
        self.clock = Clock()
        self.clock.advance(1000)
        self.node = ClusterNode(NodeConfig(serverId="srv-t"), self.clock)
        self.usersPath = writeUsers(self.mktemp())
        self.checker = UsersFileChecker(self.usersPath)
        self.gateway = Gateway(self.node, makePortal(self.checker), self.clock,
                               maxLineLength=1000, rate=10.0, burst=20,
                               users=self.checker.lookup, **self.gatewayOptions())
        self.node.setLocalDelivery(self.gateway)

    def gatewayOptions(self) -> dict:
        """Extra keyword arguments of the L{Gateway} (none here)."""
        return {}

    def client(self, usuario=None, password=None, port: int = 40000,
               host: str = "127.0.0.1") -> FakeClient:
        """A new client (from C{host}:C{port}), logged in as C{usuario} if given."""
        c = FakeClient(self.gateway, port, host)
        if usuario is not None:
            r = c.call("LOGIN", usuario=usuario, contrasenia=password or usuario + "-pw")
            assert r["payload"]["success"], r
        return c

    def rejected(self) -> dict:
        """The node's client_* rejection counters."""
        return {k: v for k, v in self.node.metrics.rejectedInputs.items() if k.startswith("client_")}


class LoginTests(GatewayTestMixin, unittest.TestCase):
    """LOGIN, LOGOUT, PING and the session lifecycle."""

    def test_pingBeforeLogin(self):
        """PING works without a login and names the server."""
        r = FakeClient(self.gateway).call("PING")
        self.assertEqual(r, {"command": "PING", "payload": {
            "success": True, "message": "PONG", "serverId": "srv-t"}})

    def test_loginOpensSession(self):
        """A good LOGIN opens one cluster session with the user's ids and ip."""
        c = FakeClient(self.gateway)
        r = c.call("LOGIN", usuario="ana", contrasenia="ana-pw")
        p = r["payload"]
        self.assertEqual((r["command"], p["success"], p["clienteId"], p["usuario"], p["admin"],
                          p["serverId"]), ("LOGIN", True, 1, "ana", False, "srv-t"))
        (session,) = self.node.state.sessionsOf("srv-t")
        self.assertEqual((session.sessionId, session.clienteId, session.usuario, session.ip),
                         (p["sessionId"], 1, "ana", "127.0.0.1"))

    def test_badPasswordAndUnknownUser(self):
        """A wrong password or name is refused, counted, and opens nothing."""
        c = FakeClient(self.gateway)
        for usuario, pw in (("ana", "nope"), ("nobody", "ana-pw"), ("ana", "")):
            r = c.call("LOGIN", usuario=usuario, contrasenia=pw)
            self.assertEqual(r["payload"], {"success": False,
                                            "message": "wrong usuario or contrasenia"})
        self.assertEqual(self.rejected(), {"client_login_failed": 3})
        self.assertEqual(list(self.node.state.sessionsOf("srv-t")), [])

    def test_loginTwiceRefused(self):
        """A second LOGIN on a logged-in connection is refused."""
        c = self.client("ana")
        r = c.call("LOGIN", usuario="luis", contrasenia="luis-pw")
        self.assertFalse(r["payload"]["success"])
        self.assertIn("already logged in as ana", r["payload"]["message"])
        self.assertEqual(len(list(self.node.state.sessionsOf("srv-t"))), 1)

    def test_logoutThenLoginAgain(self):
        """LOGOUT ends the session but not the connection; LOGIN works again."""
        c = self.client("ana")
        r = c.call("LOGOUT")
        self.assertEqual(r["payload"], {"success": True, "message": "goodbye ana"})
        self.assertEqual(list(self.node.state.sessionsOf("srv-t")), [])
        self.assertFalse(c.transport.disconnecting)
        self.assertFalse(c.call("JOIN", canalId=1)["payload"]["success"])
        self.assertTrue(c.call("LOGIN", usuario="luis", contrasenia="luis-pw")["payload"]["success"])
        self.assertEqual([s.usuario for s in self.node.state.sessionsOf("srv-t")], ["luis"])

    def test_socketDropEndsSession(self):
        """Losing the connection removes the session from the cluster."""
        c = self.client("ana")
        c.call("JOIN", canalId=4)
        c.lose()
        self.assertEqual(list(self.node.state.sessionsOf("srv-t")), [])
        self.assertEqual(self.node.state.channelMembers(4), [])
        self.assertEqual(self.gateway.sessions, {})
        self.assertEqual(self.gateway.connections, set())

    def test_sameUserTwice(self):
        """One user may hold several sessions at once."""
        self.client("ana")
        self.client("ana")
        self.assertEqual(len(self.node.state.userSessions(1)), 2)

    def test_connectionLostDuringLogin(self):
        """
        A connection that closes while its password is being checked opens
        no session.
        """
        pending = Deferred()
        slow = SlowChecker(pending)
        self.gateway.portal = makePortal(slow)
        c = FakeClient(self.gateway)
        c.request("LOGIN", usuario="ana", contrasenia="ana-pw")
        c.request("PING")
        self.assertEqual(c.lines(), [])  # PING waits behind LOGIN: in-order replies
        c.lose()
        pending.callback(ChatUser("ana", 1, False))
        self.assertEqual(list(self.node.state.sessionsOf("srv-t")), [])
        self.assertEqual(c.lines(), [])


class CommandTests(GatewayTestMixin, unittest.TestCase):
    """JOIN, LEAVE, the sends and LIST_CONNECTED on one node."""

    def test_joinLeave(self):
        """JOIN and LEAVE change the session's channels and say if they changed."""
        c = self.client("ana")
        r = c.call("JOIN", canalId=3)
        self.assertEqual(r["payload"], {"success": True, "message": "joined channel 3",
                                        "canalId": 3, "changed": True})
        self.assertFalse(c.call("JOIN", canalId=3)["payload"]["changed"])
        (s,) = self.node.state.sessionsOf("srv-t")
        self.assertEqual(s.canales, {3})
        self.assertTrue(c.call("LEAVE", canalId=3)["payload"]["changed"])
        self.assertEqual(c.call("LEAVE", canalId=3)["payload"]["message"], "not in channel 3")
        self.assertEqual(self.node.state.channelMembers(3), [])

    def test_sendUserAndAck(self):
        """
        SEND_USER reaches every session of the user (the sender's other
        sessions untouched) and each delivery is ACKed to the sender's
        session, after the response.
        """
        ana = self.client("ana")
        luis1, luis2 = self.client("luis"), self.client("luis")
        r = ana.call("SEND_USER", clienteId=2, contenido="hola")
        p = r["payload"]
        self.assertEqual((p["success"], p["entregado"]), (True, {"local": 2, "servidores": []}))
        mensajeId = p["mensajeId"]
        self.assertTrue(mensajeId.startswith("srv-t:"))
        for luis in (luis1, luis2):
            (event,) = luis.lines()
            self.assertEqual(event["command"], "EVENT")
            self.assertEqual(event["payload"]["evento"], "NEW_MESSAGE")
            self.assertEqual(event["payload"]["contenido"], "hola")
            self.assertEqual(event["payload"]["mensajeId"], mensajeId)
            self.assertEqual(event["payload"]["remitente"]["usuario"], "ana")
        self.assertEqual(ana.lines(), [])
        self.clock.advance(0)
        acks = ana.lines()
        self.assertEqual(acks, 2 * [{"command": "EVENT", "payload": {
            "tipo": "ACK", "mensajeId": mensajeId, "clienteId": 2, "serverId": "srv-t"}}])

    def test_sendUserNotConnected(self):
        """SEND_USER to a user with no session fails and says so."""
        ana = self.client("ana")
        r = ana.call("SEND_USER", clienteId=99, contenido="hola")
        self.assertFalse(r["payload"]["success"])
        self.assertIn("user 99 is not connected", r["payload"]["message"])
        self.assertEqual(self.rejected(), {})  # not bad input: nobody is online

    def test_messageIdsUnique(self):
        """Every send gets a new mensajeId of the form server:boot:counter."""
        ana = self.client("ana")
        self.client("luis")
        ids = {ana.call("SEND_USER", clienteId=2, contenido=f"m{i}")["payload"]["mensajeId"]
               for i in range(5)}
        self.assertEqual(len(ids), 5)
        for i in ids:
            server, boot, counter = i.split(":")
            self.assertEqual((server, len(boot)), ("srv-t", 8))
            self.assertTrue(counter.isdigit())

    def test_sendChannel(self):
        """SEND_CHANNEL reaches every other member, once, not the sender."""
        ana, luis, root = self.client("ana"), self.client("luis"), self.client("root")
        for c in (ana, luis):
            c.call("JOIN", canalId=5)
        r = ana.call("SEND_CHANNEL", canalId=5, contenido={"rutaArchivo": "a.wav"})
        self.assertTrue(r["payload"]["success"], r)
        (event,) = luis.lines()
        self.assertEqual(event["payload"]["evento"], "NEW_CHANNEL_MESSAGE")
        self.assertEqual(event["payload"]["canalId"], 5)
        self.assertEqual(event["payload"]["contenido"], {"rutaArchivo": "a.wav"})
        self.assertEqual(ana.lines(), [])
        self.assertEqual(root.lines(), [])

    def test_sendChannelNeedsMembershipAndAudience(self):
        """
        Sending to a channel one has not joined, or where nobody else is,
        fails with a reason.
        """
        ana = self.client("ana")
        r = ana.call("SEND_CHANNEL", canalId=5, contenido="x")
        self.assertEqual(r["payload"], {"success": False,
                                        "message": "JOIN channel 5 before sending to it"})
        ana.call("JOIN", canalId=5)
        r = ana.call("SEND_CHANNEL", canalId=5, contenido="x")
        self.assertFalse(r["payload"]["success"])
        self.assertIn("no other member in channel 5", r["payload"]["message"])

    def test_broadcastAdminOnly(self):
        """BROADCAST is refused to non-admins and reaches everyone for admins."""
        ana, root = self.client("ana"), self.client("root")
        r = ana.call("BROADCAST", contenido="hi all")
        self.assertEqual(r["payload"], {"success": False,
                                        "message": "BROADCAST is only for admin users"})
        self.assertEqual(root.lines(), [])
        root.request("BROADCAST", contenido="mantenimiento")
        out = root.lines()
        self.assertEqual([o["command"] for o in out], ["EVENT", "BROADCAST"])
        (event,) = ana.lines()
        self.assertEqual((event["payload"]["tipo"], event["payload"]["mensaje"]),
                         ("SERVER_ALERT", "mantenimiento"))
        self.assertEqual(self.rejected(), {"client_forbidden": 1})

    def test_listConnected(self):
        """LIST_CONNECTED lists every session with its server and channels."""
        ana = self.client("ana")
        self.client("luis").call("JOIN", canalId=8)
        r = ana.call("LIST_CONNECTED")
        rows = r["payload"]["sesiones"]
        self.assertEqual([(x["usuario"], x["clienteId"], x["serverId"], x["canales"]) for x in rows],
                         [("ana", 1, "srv-t", []), ("luis", 2, "srv-t", [8])])
        self.assertEqual(r["payload"]["message"], "2 session(s) connected, 2 listed")


class BadInputTests(GatewayTestMixin, unittest.TestCase):
    """Every kind of bad client input: answered, counted, harmless."""

    def assertRefused(self, client, line: bytes, reason: str, text: str, command="ERROR"):
        """C{line} gets one error response naming C{text}, counted as C{reason}."""
        before = self.node.metrics.rejectedInputs["client_" + reason]
        client.lines()
        client.sendLine(line)
        (r,) = client.lines()
        self.assertEqual((r["command"], r["payload"]["success"]), (command, False))
        self.assertIn(text, r["payload"]["message"])
        self.assertEqual(self.node.metrics.rejectedInputs["client_" + reason], before + 1)

    def test_malformedLines(self):
        """Invalid UTF-8, bad JSON and non-object envelopes are refused."""
        c = self.client("ana")
        self.assertRefused(c, b'{"command": "PING", "payload": {"x": "\xff\xfe"}}',
                           "utf8", "not valid UTF-8")
        self.assertRefused(c, b'{"command": "PING"', "json", "malformed JSON")
        self.assertRefused(c, b"[1, 2]", "envelope", "expected an object")
        self.assertRefused(c, b'{"payload": {}}', "envelope", "command is missing")
        self.assertRefused(c, b'{"command": 5}', "envelope", "command is missing")
        self.assertRefused(c, b'{"command": "JOIN", "payload": [3]}', "envelope",
                           "payload must be an object", command="JOIN")
        self.assertRefused(c, b'{"command": "DANCE"}', "command", "unknown command 'DANCE'",
                           command="DANCE")

    def test_mistypedFields(self):
        """Missing and mistyped fields are refused with the field's name."""
        c = self.client("ana")
        cases = [
            (b'{"command": "JOIN", "payload": {}}', "payload.canalId is missing"),
            (b'{"command": "JOIN", "payload": {"canalId": "3"}}', "payload.canalId: expected"),
            (b'{"command": "JOIN", "payload": {"canalId": true}}', "payload.canalId: expected"),
            (b'{"command": "JOIN", "payload": {"canalId": 3.5}}', "payload.canalId: expected"),
            (b'{"command": "LEAVE", "payload": {"canalId": 18446744073709551616}}',
             "payload.canalId: expected"),
            (b'{"command": "SEND_USER", "payload": {"clienteId": 2}}', "payload.contenido is missing"),
            (b'{"command": "SEND_USER", "payload": {"clienteId": 2, "contenido": "  "}}',
             "must not be empty"),
            (b'{"command": "SEND_USER", "payload": {"clienteId": 2, "contenido": [1]}}',
             "expected a string or an object"),
            (b'{"command": "SEND_USER", "payload": {"contenido": "x"}}', "payload.clienteId is missing"),
            (b'{"command": "SEND_CHANNEL", "payload": {"canalId": null, "contenido": "x"}}',
             "payload.canalId is missing"),
            (b'{"command": "BROADCAST", "payload": {"contenido": 7}}', "expected a string"),
        ]
        for line, text in cases:
            command = json.loads(line)["command"]
            self.assertRefused(c, line, "field", text, command=command)
        c2 = FakeClient(self.gateway)
        self.assertRefused(c2, b'{"command": "LOGIN", "payload": {"usuario": "ana"}}', "field",
                           "payload.contrasenia is missing", command="LOGIN")
        self.assertRefused(c2, b'{"command": "LOGIN", "payload": {"usuario": 1, "contrasenia": "x"}}',
                           "field", "payload.usuario: expected a string", command="LOGIN")
        (s,) = self.node.state.sessionsOf("srv-t")
        self.assertEqual(s.canales, set())

    def test_commandsBeforeLogin(self):
        """Every command but LOGIN and PING needs a login."""
        c = FakeClient(self.gateway)
        for command in ("LOGOUT", "JOIN", "LEAVE", "SEND_USER", "SEND_CHANNEL", "BROADCAST",
                        "LIST_CONNECTED"):
            self.assertRefused(c, json.dumps({"command": command, "payload": {"canalId": 1}}).encode(),
                               "unauthenticated", f"{command} needs a LOGIN first", command=command)
        self.assertEqual(list(self.node.state.allSessions()), [])

    def test_oversizeLineCloses(self):
        """A line over the limit closes the connection with a reason."""
        c = self.client("ana")
        other = self.client("luis")
        c.lines()
        c.sendLine(b'{"command": "PING", "payload": {"x": "' + b"a" * 1000 + b'"}}')
        (r,) = c.lines()
        self.assertEqual(r["command"], "ERROR")
        self.assertIn("line longer than 1000 bytes; closing", r["payload"]["message"])
        self.assertTrue(c.transport.disconnecting)
        self.assertEqual(self.rejected()["client_oversize"], 1)
        c.protocol.connectionLost(None)
        self.assertEqual([s.usuario for s in self.node.state.sessionsOf("srv-t")], ["luis"])
        self.assertTrue(other.call("PING")["payload"]["success"])

    def test_oversizeUnterminatedCloses(self):
        """An unterminated buffer over the limit closes too (no newline needed)."""
        c = FakeClient(self.gateway)
        c.protocol.dataReceived(b"x" * 600)
        self.assertFalse(c.transport.disconnecting)
        c.protocol.dataReceived(b"x" * 600)
        self.assertTrue(c.transport.disconnecting)
        self.assertEqual(self.rejected(), {"client_oversize": 1})

    def test_floodCloses(self):
        """More lines than the burst at once closes the connection."""
        c = self.client("ana")
        c.lines()
        c.protocol.dataReceived(b'{"command": "PING"}\n' * 25)
        # The read is policed before any of it runs: one ERROR, then close.
        (r,) = c.lines()
        self.assertEqual(r["command"], "ERROR")
        self.assertIn("more than 10 requests per second", r["payload"]["message"])
        self.assertTrue(c.transport.disconnecting)
        self.assertEqual(self.rejected()["client_flood"], 1)

    def test_steadyRateAllowed(self):
        """Requests at the allowed rate are never cut."""
        c = self.client("ana")
        for _ in range(100):
            self.clock.advance(0.1)
            self.assertTrue(c.call("PING")["payload"]["success"])
        self.assertFalse(c.transport.disconnecting)

    def test_slowReaderCutOff(self):
        """
        A client that stops reading is disconnected once more than
        C{maxOutput} bytes queue for it; one that resumes in time is not.
        """
        self.gateway.maxOutput = 1000
        ana, luis, root = self.client("ana"), self.client("luis"), self.client("root")
        self.assertIs(luis.transport.producer, luis.protocol)
        luis.protocol.pauseProducing()  # what the transport does when luis stops reading
        root.protocol.pauseProducing()
        for i in range(2):  # about 700 bytes queue for root: under the bound
            self.clock.advance(1)  # (within ana's request rate)
            ana.call("SEND_USER", clienteId=3, contenido="x" * 150)
        root.protocol.resumeProducing()  # root's socket drained in time
        for i in range(10):
            self.clock.advance(1)
            ana.call("SEND_USER", clienteId=2, contenido="x" * 150)
            ana.call("SEND_USER", clienteId=3, contenido="x" * 150)
        self.assertTrue(luis.transport.disconnected)
        self.assertFalse(root.transport.disconnecting)
        self.assertEqual(len(root.lines()), 12)
        self.assertEqual(self.rejected(), {"client_slow": 1})
        luis.protocol.connectionLost(None)
        self.assertEqual([s.usuario for s in self.node.state.allSessions()], ["ana", "root"])

    def test_crlfAndSplitReads(self):
        """CRLF line ends and lines split across reads work; blank lines are ignored."""
        c = FakeClient(self.gateway)
        for piece in (b'{"comm', b'and": "PI', b'NG"}\r\n\r\n', b"\n"):
            c.protocol.dataReceived(piece)
        (r,) = c.lines()
        self.assertEqual(r["payload"]["message"], "PONG")

    def test_badInputLeavesOthersAlone(self):
        """After bad input, the client and others keep working and nothing changed."""
        ana, luis = self.client("ana"), self.client("luis")
        ana.call("JOIN", canalId=1)
        luis.call("JOIN", canalId=1)
        before = [(s.sessionId, set(s.canales)) for s in self.node.state.allSessions()]
        for line in (b"\xff", b"{", b"null", b'{"command": "JOIN", "payload": {"canalId": "x"}}'):
            ana.sendLine(line)
        self.assertEqual([(s.sessionId, set(s.canales)) for s in self.node.state.allSessions()],
                         before)
        ana.lines()
        self.assertTrue(ana.call("SEND_CHANNEL", canalId=1, contenido="ok")["payload"]["success"])
        (event,) = luis.lines()
        self.assertEqual(event["payload"]["contenido"], "ok")


class UsersFileTests(unittest.TestCase):
    """The users file, password hashing and the cred checker."""

    def test_hashRoundTrip(self):
        """A hash verifies its password only, and is salted."""
        h = hashPassword("s3cret", **CHEAP)
        self.assertTrue(verifyPassword("s3cret", h))
        self.assertFalse(verifyPassword("s3cret!", h))
        self.assertNotEqual(h, hashPassword("s3cret", **CHEAP))
        self.assertTrue(h.startswith("scrypt$16$8$1$"))
        for bad in ("", "md5$x", "scrypt$a$b$c$d$e", "scrypt$16$8$1$!!$!!", "scrypt$99999999$8$1$AA==$AA=="):
            self.assertFalse(verifyPassword("s3cret", bad))

    def test_invalidFiles(self):
        """Invalid files fail to load with the entry and field named."""
        cases = [
            (b"{", "not valid JSON"),
            (b"[]", "'users' list"),
            (b'{"users": [{"usuario": "a b", "clienteId": 1, "hash": "scrypt$"}]}', "users[0].usuario"),
            (b'{"users": [{"usuario": "a", "clienteId": -1, "hash": "scrypt$"}]}', "users[0].clienteId"),
            (b'{"users": [{"usuario": "a", "clienteId": 1, "admin": 1, "hash": "scrypt$"}]}',
             "users[0].admin"),
            (b'{"users": [{"usuario": "a", "clienteId": 1}]}', "users[0].hash"),
            (b'{"users": [{"usuario": "a", "clienteId": 1, "hash": "scrypt$"},'
             b' {"usuario": "a", "clienteId": 2, "hash": "scrypt$"}]}', "appears twice"),
            (b'{"users": [{"usuario": "a", "clienteId": 1, "hash": "scrypt$"},'
             b' {"usuario": "b", "clienteId": 1, "hash": "scrypt$"}]}', "used by both"),
        ]
        for content, text in cases:
            path = self.mktemp()
            with open(path, "wb") as f:
                f.write(content)
            e = self.assertRaises(UsersFileError, UsersFile.load, path)
            self.assertIn(text, str(e))

    def test_checkerReloadsChangedFile(self):
        """Accounts added to the file on disk are seen without a restart."""
        path = writeUsers(self.mktemp(), USERS[:1])
        checker = UsersFileChecker(path)
        self.assertIsNone(checker.lookup("luis"))
        f = UsersFile.load(path)
        f.add("luis", 2, "luis-pw", **CHEAP)
        f.save()
        os.utime(path, ns=(1, 1))  # a different stamp even within one clock tick
        user = self.successResultOf(checker.requestAvatarId(UsernamePassword(b"luis", b"luis-pw")))
        self.assertEqual(user, ChatUser("luis", 2, False, user.hash))
        self.failureResultOf(checker.requestAvatarId(UsernamePassword("luis", "x")),
                             UnauthorizedLogin)

    def test_checkerKeepsLastGoodAccounts(self):
        """A file that becomes invalid is logged; the last good accounts stay."""
        path = writeUsers(self.mktemp())
        checker = UsersFileChecker(path)
        with open(path, "w") as f:
            f.write("{broken")
        self.assertEqual(checker.lookup("ana").clienteId, 1)
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_portalGivesChatUser(self):
        """The portal logs in to an L{IChatUser} avatar."""
        portal = makePortal(UsersFileChecker(writeUsers(self.mktemp())))
        iface, avatar, logout = self.successResultOf(
            portal.login(UsernamePassword("root", "root-pw"), None, IChatUser))
        self.assertEqual((iface, avatar.usuario, avatar.admin), (IChatUser, "root", True))

    def test_demoUsersCreatedOnce(self):
        """Demo users are created with printed passwords, only if no file exists."""
        path = self.mktemp()
        passwords = createDemoUsers(path, **CHEAP)
        self.assertEqual(set(passwords), {"ana", "luis", "admin"})
        users = UsersFile.load(path).users
        self.assertTrue(users["admin"].admin)
        self.assertTrue(verifyPassword(passwords["ana"], users["ana"].hash))
        with open(path + ".demo-logins.txt") as f:
            self.assertIn(f"ana {passwords['ana']}", f.read())
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.assertIsNone(createDemoUsers(path, **CHEAP))
        self.assertEqual(UsersFile.load(path).users["ana"].hash, users["ana"].hash)


class ExtensionTests(unittest.TestCase):
    """The INodeExtension plugin and its service."""

    def test_disabledWithoutClients(self):
        """No service when C{clients} is C{None}."""
        node = ClusterNode(NodeConfig(serverId="x", clients=None), Clock())
        self.assertIsNone(GatewayExtension().makeService(node, node.config, Clock()))

    def test_configuredUsersFile(self):
        """The service uses C{users_file}, or ./clustersync-users.json by default."""
        path = self.mktemp()
        config = NodeConfig(serverId="x", usersFile=path)
        node = ClusterNode(config, Clock())
        self.assertEqual(GatewayExtension().makeService(node, config, Clock()).usersFile, path)
        config.usersFile = None
        self.assertEqual(GatewayExtension().makeService(node, config, Clock()).usersFile,
                         "clustersync-users.json")

    def test_pluginFound(self):
        """The gateway is found as an INodeExtension plugin."""
        from clustersync.app.pluginload import loadExtensions

        self.assertIn("gateway", [e.name for e in loadExtensions()])

    def test_serviceCreatesDemoUsersAndDelivers(self):
        """
        Started with no users file configured, the service creates the demo
        file, listens, and becomes the node's local delivery.
        """
        from twisted.internet.testing import MemoryReactorClock

        reactor = MemoryReactorClock()
        config = NodeConfig(serverId="x", clients="tcp:7999:interface=127.0.0.1")
        node = ClusterNode(config, reactor)
        path = self.mktemp()
        service = GatewayService(node, config, reactor, path)
        service.startService()
        self.assertTrue(os.path.exists(path))
        self.assertIs(node.localDelivery.provider, service.gateway)
        (port,) = reactor.tcpServers
        self.assertEqual((port[0], port[3]), (7999, "127.0.0.1"))
        self.successResultOf(service.stopService())


class AdminTests(unittest.TestCase):
    """C{clustersync-admin adduser/deluser/users}."""

    def run_admin(self, argv, stdin=""):
        """Run C{main(argv)} with C{stdin}; return (status, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdin", io.StringIO(stdin))
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        return admin.main(argv), out.getvalue(), err.getvalue()

    def test_addListDelete(self):
        """Users are added (password from stdin), listed and removed."""
        path = self.mktemp()
        status, out, _ = self.run_admin(
            ["adduser", "bob", "--cliente-id", "7", "--admin", "--password-stdin",
             "--users-file", path], "pw-bob\n")
        self.assertEqual(status, 0)
        self.assertIn("added bob (clienteId 7, admin)", out)
        self.assertTrue(verifyPassword("pw-bob", UsersFile.load(path).users["bob"].hash))
        status, out, _ = self.run_admin(["users", "--users-file", path])
        self.assertIn("bob  (admin)", out)
        self.assertNotIn("scrypt", out)
        status, _, err = self.run_admin(
            ["adduser", "eve", "--cliente-id", "7", "--password-stdin", "--users-file", path], "x\n")
        self.assertEqual((status, "clienteId 7 is already used by 'bob'" in err), (1, True))
        status, _, _ = self.run_admin(["deluser", "bob", "--users-file", path])
        self.assertEqual((status, UsersFile.load(path).users), (0, {}))

    def test_promptedPassword(self):
        """Without --password-stdin the password is prompted twice and must match."""
        path = self.mktemp()
        answers = iter(["a", "b"])
        self.patch(admin.getpass, "getpass", lambda prompt: next(answers))
        status, _, err = self.run_admin(["adduser", "x", "--cliente-id", "1", "--users-file", path])
        self.assertEqual(status, 1)
        self.assertIn("differ", err)
        self.assertFalse(os.path.exists(path))

    def test_registerCommand(self):
        """Another module adds a subcommand through the registration hook."""
        self.addCleanup(lambda: admin.PROVIDERS.pop() if admin.PROVIDERS[-1][0] == "hello" else None)
        seen = []
        admin.registerCommand("hello", "say hello",
                              lambda p: p.add_argument("--who", default="world"),
                              lambda args: seen.append(args.who) or 3)
        status, _, _ = self.run_admin(["hello", "--who", "node"])
        self.assertEqual((status, seen), (3, ["node"]))
