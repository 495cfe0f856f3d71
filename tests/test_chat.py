"""
Tests of C{clustersync-chat}: its logic against a fake UI and a
L{StringTransport}, and the real program driven through a pty against two
real nodes (login, /join, /who, /msg with ACK, /say, a channel message
arriving while a line is half typed, /leave, /quit).
"""

from __future__ import annotations

import json
import os
import re
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred, TimeoutError, inlineCallbacks, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from clustersync.cli.chat import ChatCore, ServerConnection, _parseAddress, formatEvent
from tests.support import Conditions, startGatewayMesh, startNode
from tests.test_gateway import USERS, writeUsers
from tests.test_gateway_cluster import ChatClient, nodeSessions

_ESCAPES = re.compile(rb"\x1b(\[[0-9;?]*[A-Za-z]|[()][0-9A-Za-z]|[=>c78DEHM])")


class FakeUI:
    """Records what the core shows and prompts."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.prompt = ""
        self.secret = False
        self.quitted = False

    def show(self, text):
        """Record C{text}."""
        self.shown.append(text)

    def setPrompt(self, prompt):
        """Record the prompt."""
        self.prompt = prompt

    def setSecret(self, secret):
        """Record echo state."""
        self.secret = secret

    def quit(self):
        """Record the quit."""
        self.quitted = True


class CoreTests(unittest.TestCase):
    """L{ChatCore} with a fake UI and a L{ServerConnection} on a StringTransport."""

    def setUp(self):
        """A core on a fake UI, connected to a StringTransport."""
        self.ui = FakeUI()
        self.core = ChatCore(self.ui, "h:1")
        self.conn = ServerConnection(self.core)
        self.transport = StringTransport()
        self.conn.makeConnection(self.transport)
        self.core.connected(self.conn)

    def sent(self) -> list[dict]:
        """The requests written since the last call."""
        data = self.transport.value()
        self.transport.clear()
        return [json.loads(line) for line in data.split(b"\n") if line]

    def reply(self, command, **payload):
        """Feed one response line."""
        self.conn.dataReceived(json.dumps({"command": command, "payload": payload}).encode() + b"\n")

    def login(self):
        """Go through the login dialogue as ana."""
        self.core.typed("ana")
        self.assertEqual((self.ui.prompt, self.ui.secret), ("contrasenia: ", True))
        self.core.typed("pw")
        self.assertEqual(self.sent(), [{"command": "LOGIN", "payload": {
            "usuario": "ana", "contrasenia": "pw"}}])
        self.reply("LOGIN", success=True, message="welcome", clienteId=1, usuario="ana",
                   serverId="srv-a", sessionId="s", admin=False)
        self.assertEqual((self.ui.prompt, self.ui.secret), ("ana@srv-a> ", False))

    def test_loginFailureAsksAgain(self):
        """A refused login shows the reason and asks for the name again."""
        self.assertEqual(self.ui.prompt, "usuario: ")
        self.core.typed("ana")
        self.core.typed("bad")
        self.sent()
        self.reply("LOGIN", success=False, message="wrong usuario or contrasenia")
        self.assertIn("login failed: wrong usuario or contrasenia", self.ui.shown)
        self.assertEqual((self.ui.prompt, self.ui.secret), ("usuario: ", False))

    def test_linesHandledInOrder(self):
        """A line typed while a request is pending waits for it (join, then say)."""
        self.login()
        self.core.typed("/join 3")
        self.core.typed("hola")
        self.assertEqual(self.sent(), [{"command": "JOIN", "payload": {"canalId": 3}}])
        self.reply("JOIN", success=True, message="joined channel 3")
        self.assertEqual(self.sent(), [{"command": "SEND_CHANNEL", "payload": {
            "canalId": 3, "contenido": "hola"}}])

    def test_msgResolvesName(self):
        """
        /msg NAME looks the name up with LIST_CONNECTED (only that user's
        sessions); the ACK names the user.
        """
        self.login()
        self.core.typed("/msg luis hola que tal")
        self.assertEqual(self.sent(), [{"command": "LIST_CONNECTED",
                                        "payload": {"limite": 500, "usuario": "luis"}}])
        self.reply("LIST_CONNECTED", success=True, message="", sesiones=[
            {"usuario": "luis", "clienteId": 2, "serverId": "srv-b", "sessionId": "x", "canales": []}])
        self.assertEqual(self.sent(), [{"command": "SEND_USER", "payload": {
            "clienteId": 2, "contenido": "hola que tal"}}])
        self.reply("SEND_USER", success=True, message="sent", mensajeId="m1")
        self.conn.dataReceived(b'{"command":"EVENT","payload":{"tipo":"ACK","mensajeId":"m1",'
                               b'"clienteId":2,"serverId":"srv-b"}}\n')
        self.assertEqual(self.ui.shown[-2:], ["-> *luis* hola que tal", "(delivered to luis on srv-b)"])

    def test_usageErrors(self):
        """Bad slash commands explain themselves and send nothing."""
        self.login()
        for line, text in (("/join x", "usage: /join N"), ("/say 3", "usage: /say N TEXT"),
                           ("/msg luis", "usage: /msg USER TEXT"), ("/nope", "unknown command /nope"),
                           ("hola", "no current channel")):
            self.core.typed(line)
            self.assertIn(text, self.ui.shown[-1])
        self.assertEqual(self.sent(), [])

    def test_quitLogsOut(self):
        """/quit sends LOGOUT, closes the connection and quits the UI."""
        self.login()
        self.core.typed("/quit")
        self.assertEqual(self.sent(), [{"command": "LOGOUT", "payload": {}}])
        self.assertTrue(self.transport.disconnecting)
        self.assertTrue(self.ui.quitted)

    def test_formatEvent(self):
        """Every event kind has a readable line; unknown ones show as JSON."""
        r = {"usuario": "ana", "serverId": "srv-a"}
        self.assertEqual(formatEvent({"evento": "NEW_MESSAGE", "contenido": "hola", "remitente": r}),
                         "*ana@srv-a* hola")
        self.assertEqual(formatEvent({"evento": "NEW_CHANNEL_MESSAGE", "canalId": 3,
                                      "contenido": {"rutaArchivo": "x"}, "remitente": r}),
                         '#3 <ana@srv-a> {"rutaArchivo": "x"}')
        self.assertEqual(formatEvent({"tipo": "SERVER_ALERT", "mensaje": "m", "remitente": r}),
                         "!! ana@srv-a: m")
        self.assertEqual(formatEvent({"tipo": "ACK", "clienteId": 2, "serverId": "b"}, {2: "luis"}),
                         "(delivered to luis on b)")
        self.assertEqual(formatEvent({"x": 1}), 'event: {"x": 1}')
        who = {"usuario": "luis", "serverId": "srv-b", "clienteId": 2}
        self.assertEqual(formatEvent({"evento": "USER_ONLINE", **who, "sesiones": 1}),
                         "** luis is online on srv-b")
        self.assertEqual(formatEvent({"evento": "USER_OFFLINE", **who, "sesiones": 0}),
                         "** luis left srv-b (offline)")
        self.assertEqual(formatEvent({"evento": "USER_OFFLINE", **who, "sesiones": 2}),
                         "** luis left srv-b (still 2 session(s) elsewhere)")
        self.assertEqual(formatEvent({"evento": "MEMBER_JOINED", "canalId": 3, **who}),
                         "#3 -> luis@srv-b joined")
        self.assertEqual(formatEvent({"evento": "MEMBER_LEFT", "canalId": 3, **who}),
                         "#3 <- luis@srv-b left")

    def test_followAfterLogin(self):
        """With --follow names, the core subscribes right after LOGIN and says where they are."""
        self.core.follow = ["luis", "zoe"]
        self.login()
        self.assertEqual(self.sent(), [{"command": "SUBSCRIBE_PRESENCE",
                                        "payload": {"usuarios": ["luis", "zoe"]}}])
        self.reply("SUBSCRIBE_PRESENCE", success=True, message="", desconocidos=["zoe"],
                   siguiendo=[{"clienteId": 2, "usuario": "luis", "servidores": ["srv-b"]}])
        self.assertEqual(self.ui.shown[-1], "following luis (on srv-b); no such user: zoe")
        self.core.typed("/unfollow")
        self.assertEqual(self.sent(), [{"command": "UNSUBSCRIBE_PRESENCE", "payload": {}}])

    def test_parseAddress(self):
        """HOST:PORT, a bare host, and a bad port."""
        self.assertEqual(_parseAddress("10.0.0.1:7202"), ("10.0.0.1", 7202))
        self.assertEqual(_parseAddress("[::1]:7"), ("::1", 7))
        self.assertEqual(_parseAddress("example"), ("example", 7002))
        import argparse
        self.assertRaises(argparse.ArgumentTypeError, _parseAddress, "h:x")


class PtyChat(ProcessProtocol):
    """
    C{clustersync-chat} on a pty: collects its output (escape sequences
    stripped) and waits for text in it.
    """

    def __init__(self) -> None:
        self.raw = b""
        self.ended = Deferred()
        self.status = None
        self._waits: list = []

    @property
    def text(self) -> str:
        """The output so far, without escape sequences and carriage returns."""
        return _ESCAPES.sub(b"", self.raw).replace(b"\r", b"").decode("utf-8", "replace")

    def childDataReceived(self, fd, data) -> None:
        """Collect output and re-check waits."""
        self.raw += data
        for entry in list(self._waits):
            if entry[0] in self.text[entry[2]:]:
                self._waits.remove(entry)
                entry[1].callback(None)

    def processEnded(self, reason) -> None:
        """Record the exit status."""
        self.status = reason.value.exitCode
        for entry in self._waits:
            entry[1].errback(AssertionError(f"process ended while waiting for {entry[0]!r}:\n{self.text}"))
        self._waits = []
        self.ended.callback(self.status)

    def waitFor(self, needle: str, since: int = 0, timeout: float = 15.0) -> Deferred:
        """Fire once C{needle} appears in the output after offset C{since}."""
        if needle in self.text[since:]:
            return succeed(None)
        d = Deferred()
        entry = (needle, d, since)
        self._waits.append(entry)

        def expire():
            if entry in self._waits:
                self._waits.remove(entry)
                d.errback(TimeoutError(f"no {needle!r} in output:\n{self.text}"))

        call = reactor.callLater(timeout, expire)
        d.addBoth(lambda r: (call.cancel() if call.active() else None, r)[1])
        return d

    def type(self, keys: str) -> int:
        """Type C{keys}; return the output offset before them."""
        mark = len(self.text)
        self.transport.write(keys.encode("utf-8"))
        return mark


class TerminalChatTests(unittest.TestCase):
    """The real C{clustersync-chat} program on a pty, against two nodes."""

    timeout = 60

    @inlineCallbacks
    def setUp(self):
        """Start two linked nodes with gateways."""
        self.cond = Conditions(reactor)
        self.nodes, self.clientPorts = yield startGatewayMesh(
            self, reactor, ("srv-a", "srv-b"), writeUsers(self.mktemp()), self.cond)
        self.passwords = {u: pw for u, _, _, pw in USERS}

    def spawnChat(self, serverId: str) -> PtyChat:
        """Start C{python -m clustersync.cli.chat} on a pty, killed at cleanup."""
        proto = PtyChat()
        env = dict(os.environ, TERM="xterm", COLUMNS="200", LINES="50")
        reactor.spawnProcess(
            proto, sys.executable,
            [sys.executable, "-m", "clustersync.cli.chat", f"127.0.0.1:{self.clientPorts[serverId]}"],
            env=env, usePTY=True)

        def cleanup():
            if proto.status is None:
                proto.transport.signalProcess("KILL")
                return proto.ended
            return None

        self.addCleanup(cleanup)
        return proto

    @inlineCallbacks
    def connect(self, serverId: str, usuario: str):
        """A socket client logged in on C{serverId}."""
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        client = yield connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", self.clientPorts[serverId]), ChatClient())
        self.addCleanup(lambda: None if client.isClosed else (
            client.transport.loseConnection(), client.closed)[1])
        yield client.ok("LOGIN", usuario=usuario, contrasenia=self.passwords[usuario])
        return client

    @inlineCallbacks
    def test_terminalSession(self):
        """
        Log in on A through the terminal, chat with luis on B, see events
        arrive without losing the half-typed line, and quit cleanly.
        """
        chat = self.spawnChat("srv-a")
        luis = yield self.connect("srv-b", "luis")
        yield chat.waitFor("usuario: ")
        chat.type("ana\r")
        yield chat.waitFor("contrasenia: ")
        mark = chat.type("ana-pw\r")
        yield chat.waitFor("logged in as ana (clienteId 1) on srv-a", mark)
        yield chat.waitFor("ana@srv-a> ", mark)
        self.assertNotIn("ana-pw", chat.text)  # the password is not echoed

        mark = chat.type("/join 3\r")
        yield chat.waitFor("joined channel 3", mark)
        yield luis.ok("JOIN", canalId=3)
        yield self.cond.waitUntil(
            lambda: len(self.nodes["srv-a"].state.channelMembers(3)) == 2, what="both in 3")

        mark = chat.type("/who\r")
        yield chat.waitFor("luis (2) on srv-b  in #3", mark)
        yield chat.waitFor("ana (1) on srv-a  in #3", mark)

        mark = chat.type("/msg luis hola luis\r")
        yield luis.waitFor(lambda c: c.eventsOf(evento="NEW_MESSAGE"), what="DM to luis")
        self.assertEqual(luis.eventsOf(evento="NEW_MESSAGE")[0]["contenido"], "hola luis")
        yield chat.waitFor("(delivered to luis on srv-b)", mark)

        # Half a line typed, then a channel message arrives: it is printed
        # above, and the prompt and the half line are drawn again below.
        mark = chat.type("hel")
        yield chat.waitFor("hel", mark)
        self.assertTrue(chat.text.endswith("ana@srv-a> hel"), chat.text[-200:])
        mark = len(chat.text)
        yield luis.ok("SEND_CHANNEL", canalId=3, contenido="que tal")
        yield chat.waitFor("#3 <luis@srv-b> que tal\nana@srv-a> hel", mark)
        chat.type("lo\r")  # the line completes: plain text goes to the current channel
        yield luis.waitFor(lambda c: c.eventsOf(contenido="hello"), what="hello on #3")
        self.assertEqual(luis.eventsOf(contenido="hello")[0]["canalId"], 3)

        chat.type("/say 3 adios\r")
        yield luis.waitFor(lambda c: c.eventsOf(contenido="adios"), what="adios on #3")
        mark = chat.type("/leave 3\r")
        yield chat.waitFor("left channel 3", mark)
        yield self.cond.waitUntil(
            lambda: [s.usuario for s in self.nodes["srv-b"].state.channelMembers(3)] == ["luis"],
            what="ana left 3 on srv-b")

        chat.type("/quit\r")
        status = yield chat.ended
        self.assertEqual(status, 0)
        yield self.cond.waitUntil(
            lambda: nodeSessions(self.nodes["srv-b"]) == {("luis", "srv-b")}, what="ana gone")

    @inlineCallbacks
    def test_wrongPasswordThenCtrlD(self):
        """A wrong password asks again; Ctrl-D on an empty line exits."""
        chat = self.spawnChat("srv-b")
        yield chat.waitFor("usuario: ")
        chat.type("luis\r")
        yield chat.waitFor("contrasenia: ")
        mark = chat.type("nope\r")
        yield chat.waitFor("login failed: wrong usuario or contrasenia", mark)
        yield chat.waitFor("usuario: ", mark)
        chat.type("\x04")
        self.assertEqual((yield chat.ended), 0)
        self.assertEqual(nodeSessions(self.nodes["srv-a"]), set())

    @inlineCallbacks
    def test_pipedScript(self):
        """
        With stdin not a terminal, lines are read plainly and every answer
        is printed before the program exits at the end of input.
        """
        proto = PtyChat()
        reactor.spawnProcess(
            proto, sys.executable,
            [sys.executable, "-m", "clustersync.cli.chat", f"127.0.0.1:{self.clientPorts['srv-a']}"],
            env=dict(os.environ), childFDs={0: "w", 1: "r", 2: "r"})
        self.addCleanup(lambda: None if proto.status is not None else (
            proto.transport.signalProcess("KILL"), proto.ended)[1])
        proto.transport.write(b"ana\nana-pw\n/join 5\nhola\n/who\n")
        proto.transport.closeStdin()
        self.assertEqual((yield proto.ended), 0)
        self.assertIn("joined channel 5", proto.text)
        self.assertIn("no other member in channel 5", proto.text)
        self.assertIn("1 user(s), 1 session(s):\n  ana (1) on srv-a  in #5", proto.text)
        yield self.cond.waitUntil(lambda: nodeSessions(self.nodes["srv-a"]) == set(),
                                  what="ana logged out")


def spawnPiped(testCase, port: int, *args: str) -> PtyChat:
    """C{clustersync-chat} with piped stdin/stdout (plain lines), killed at cleanup."""
    proto = PtyChat()
    reactor.spawnProcess(
        proto, sys.executable,
        [sys.executable, "-m", "clustersync.cli.chat", *args, f"127.0.0.1:{port}"],
        env=dict(os.environ), childFDs={0: "w", 1: "r", 2: "r"})
    testCase.addCleanup(lambda: None if proto.status is not None else (
        proto.transport.signalProcess("KILL"), proto.ended)[1])
    return proto


class PresenceChatTests(unittest.TestCase):
    """Two C{clustersync-chat} processes on two nodes see each other come and go."""

    timeout = 60

    @inlineCallbacks
    def setUp(self):
        """Start two linked nodes with gateways."""
        self.cond = Conditions(reactor)
        self.nodes, self.clientPorts = yield startGatewayMesh(
            self, reactor, ("srv-a", "srv-b"), writeUsers(self.mktemp()), self.cond)

    @inlineCallbacks
    def test_seeEachOtherWithoutWho(self):
        """
        ana on srv-a follows luis, luis on srv-b follows ana: ana sees luis
        come online and go offline as it happens, luis sees ana where she
        is; nobody types /who.
        """
        ana = spawnPiped(self, self.clientPorts["srv-a"], "--follow", "luis")
        ana.transport.write(b"ana\nana-pw\n")
        yield ana.waitFor("following luis (offline)")
        mark = len(ana.text)
        luis = spawnPiped(self, self.clientPorts["srv-b"], "-f", "ana")
        luis.transport.write(b"luis\nluis-pw\n")
        yield luis.waitFor("following ana (on srv-a)")
        yield ana.waitFor("** luis is online on srv-b", mark)
        luis.transport.write(b"/quit\n")
        self.assertEqual((yield luis.ended), 0)
        yield ana.waitFor("** luis left srv-b (offline)", mark)
        ana.transport.closeStdin()
        self.assertEqual((yield ana.ended), 0)
        self.assertNotIn("user(s),", ana.text + luis.text)  # no /who listing


class TLSChatTests(unittest.TestCase):
    """A gateway serving clients over TLS; C{clustersync-chat --ca} checks its certificate."""

    timeout = 60

    @inlineCallbacks
    def setUp(self):
        """Certificates (as make cluster makes them) and a node with an ssl: client port."""
        from clustersync.app.certificates import ensureDevCerts

        self.certs = ensureDevCerts(os.path.abspath(self.mktemp()), ["srv-a"])["srv-a"]
        self.otherCA = ensureDevCerts(os.path.abspath(self.mktemp()), ["srv-z"])["srv-z"]["tls_ca"]
        c = self.certs
        service, _, _, _ = yield startNode(
            self, reactor, "srv-a", usersFile=writeUsers(self.mktemp()),
            clients=f"ssl:0:interface=127.0.0.1:privateKey={c['tls_key']}:certKey={c['tls_cert']}")
        self.port = (yield service.getServiceNamed("gateway").whenListening()).getHost().port

    @inlineCallbacks
    def test_verifiedAgainstTheClusterCA(self):
        """With the cluster CA the login works over TLS."""
        chat = spawnPiped(self, self.port, "--ca", self.certs["tls_ca"])
        chat.transport.write(b"ana\nana-pw\n/join 4\n")
        chat.transport.closeStdin()
        self.assertEqual((yield chat.ended), 0)
        self.assertIn("TLS: the certificate of 127.0.0.1 is verified", chat.text)
        self.assertIn("logged in as ana", chat.text)
        self.assertIn("joined channel 4", chat.text)

    @inlineCallbacks
    def test_otherCARefused(self):
        """With another CA the certificate does not verify: nothing is sent, exit status 1."""
        chat = spawnPiped(self, self.port, "--ca", self.otherCA)
        chat.transport.write(b"ana\nana-pw\n")
        chat.transport.closeStdin()
        self.assertEqual((yield chat.ended), 1)
        self.assertIn("certificate verify failed", chat.text)
        self.assertNotIn("logged in", chat.text)
