"""
Interoperability with servers that already speak the peer protocol (C{docs/protocol.md}).

L{LegacyPeer} is an independent, minimal peer written here with plain
blocking sockets and the standard C{json} module (nothing of clustersync on
its wire side).  It behaves like the existing servers described in
C{docs/protocol.md}: the dialer speaks first, the acceptor answers, SYNC_STATE
follows HELLO, and its reader is strict: a line with a field the spec does
not name fails the test.  Its blocking code runs in a thread
(L{deferToThread}) against a real node on 127.0.0.1; every socket operation
is bounded by a timeout and every wait on the node by L{Conditions}.
"""

from __future__ import annotations

import json
import socket

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from tests.support import Conditions, startNode

#: Seconds any single socket operation of the legacy peer may block.
SOCKET_TIMEOUT = 5.0

#: The spec's field names, per message type (payload) and for a session.
SESSION_FIELDS = frozenset({"serverId", "sessionId", "clienteId", "usuario", "ip", "canales"})
ENVELOPE_FIELDS = frozenset({"type", "origin", "payload"})
PAYLOAD_FIELDS = {
    "HELLO": frozenset({"serverId"}),
    "SYNC_STATE": frozenset({"sessions"}),
    "CLIENT_CONNECTED": SESSION_FIELDS,
    "CLIENT_DISCONNECTED": frozenset({"sessionId", "clienteId"}),
    "CHANNEL_MEMBERSHIP": frozenset({"sessionId", "clienteId", "canalId", "action"}),
    "DIRECT_MESSAGE": frozenset({"userId", "message"}),
    "CHANNEL_MESSAGE": frozenset({"canalId", "message"}),
    "SESSION_MESSAGE": frozenset({"sessionId", "message"}),
    "BROADCAST": frozenset({"message"}),
}


class StrictReadError(AssertionError):
    """A line an existing server's strict JSON binder would drop."""


def _isInt64(value) -> bool:
    return type(value) is int and -(2**63) <= value < 2**63


def _checkSession(session, where: str) -> None:
    if not isinstance(session, dict) or set(session) != SESSION_FIELDS:
        raise StrictReadError(f"{where}: session fields {sorted(session)}")
    if not (isinstance(session["serverId"], str) and isinstance(session["sessionId"], str)
            and _isInt64(session["clienteId"]) and isinstance(session["usuario"], str)
            and (session["ip"] is None or isinstance(session["ip"], str))
            and isinstance(session["canales"], list)
            and all(_isInt64(c) for c in session["canales"])
            and len(set(session["canales"])) == len(session["canales"])):
        raise StrictReadError(f"{where}: bad session values {session!r}")


def strictParse(line: bytes) -> dict:
    """
    Parse one line as a strict existing server would: UTF-8 JSON object,
    exactly the envelope fields, a known C{type}, exactly its payload
    fields, values of the spec's types.

    @raise StrictReadError: anything else.
    """
    try:
        message = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise StrictReadError(f"not UTF-8 JSON: {e}: {line!r}") from None
    if not isinstance(message, dict) or set(message) != ENVELOPE_FIELDS:
        raise StrictReadError(f"envelope fields: {line!r}")
    kind = message["type"]
    if kind not in PAYLOAD_FIELDS or not isinstance(message["origin"], str):
        raise StrictReadError(f"type/origin: {line!r}")
    payload = message["payload"]
    if not isinstance(payload, dict) or set(payload) != PAYLOAD_FIELDS[kind]:
        raise StrictReadError(f"{kind} payload fields: {line!r}")
    if kind == "SYNC_STATE":
        if not isinstance(payload["sessions"], list):
            raise StrictReadError(f"sessions: {line!r}")
        for session in payload["sessions"]:
            _checkSession(session, kind)
    elif kind == "CLIENT_CONNECTED":
        _checkSession(payload, kind)
    elif kind == "HELLO":
        if not isinstance(payload["serverId"], str):
            raise StrictReadError(f"HELLO serverId: {line!r}")
    for key in ("clienteId", "userId", "canalId"):
        if key in payload and not _isInt64(payload[key]):
            raise StrictReadError(f"{kind}.{key}: {line!r}")
    if kind == "CLIENT_DISCONNECTED":
        if payload["sessionId"] is not None and not isinstance(payload["sessionId"], str):
            raise StrictReadError(f"sessionId: {line!r}")
    elif "sessionId" in payload and not isinstance(payload["sessionId"], str):
        raise StrictReadError(f"sessionId: {line!r}")
    if kind == "CHANNEL_MEMBERSHIP" and payload["action"] not in ("JOIN", "LEAVE"):
        raise StrictReadError(f"action: {line!r}")
    return message


class LegacyPeer:
    """
    A blocking, socket-level peer like the existing servers.  Call its
    methods from a thread (L{deferToThread}); each blocks at most
    L{SOCKET_TIMEOUT} per socket operation.

    @ivar received: every message read, parsed strictly, in order.
    @ivar rawLines: every line read, as bytes (without C{\\n}).
    """

    def __init__(self, serverId: str) -> None:
        self.serverId = serverId
        self.sock: socket.socket | None = None
        self.listener: socket.socket | None = None
        self._buffer = b""
        self.received: list[dict] = []
        self.rawLines: list[bytes] = []

    def listen(self) -> int:
        """Listen on an ephemeral loopback port; return it."""
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.settimeout(SOCKET_TIMEOUT)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        return self.listener.getsockname()[1]

    def accept(self) -> None:
        """Accept one connection (blocking, bounded); it replaces the current one."""
        self.sock, _ = self.listener.accept()
        self.sock.settimeout(SOCKET_TIMEOUT)
        self._buffer = b""

    def waitClosed(self) -> None:
        """Read (and strictly check) until the node closes the connection."""
        while True:
            try:
                self.readLine()
            except ConnectionError:
                return
            strictParse(self.rawLines[-1])

    def dial(self, port: int) -> None:
        """Connect to C{127.0.0.1:port}."""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)

    def sendRaw(self, data: bytes) -> None:
        """Write bytes as they are."""
        self.sock.sendall(data)

    def send(self, kind: str, payload: dict) -> None:
        """Write one message, flushed, like existing servers."""
        line = json.dumps({"type": kind, "origin": self.serverId, "payload": payload})
        self.sendRaw(line.encode("utf-8") + b"\n")

    def sendForward(self, kind: str, payloadPrefix: str, raw: bytes) -> None:
        """Write a forwarded message whose C{message} is exactly C{raw}."""
        self.sendRaw(
            b'{"type": "' + kind.encode() + b'", "origin": "' + self.serverId.encode()
            + b'", "payload": {' + payloadPrefix.encode() + b'"message": ' + raw + b"}}\n")

    def readLine(self) -> bytes:
        """Read one line (blocking, each recv bounded)."""
        while b"\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed by the node; partial {self._buffer!r}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        self.rawLines.append(line)
        return line

    def read(self, expected: str | None = None) -> dict:
        """
        Read the next message, strictly parsed.  With C{expected}, skip
        (after checking them) idle re-sent SYNC_STATEs until a message of
        that type comes, and fail on any other type.
        """
        while True:
            message = strictParse(self.readLine())
            self.received.append(message)
            if expected is None or message["type"] == expected:
                return message
            if message["type"] != "SYNC_STATE":
                raise AssertionError(f"expected {expected}, got {message!r}")

    def close(self) -> None:
        """Close every socket."""
        for s in (self.sock, self.listener):
            if s is not None:
                s.close()
        self.sock = self.listener = None


def session(sessionId: str, clienteId: int, canales=(), serverId: str = "srv-legacy",
            usuario: str = "ana", ip: str | None = "192.168.1.10") -> dict:
    """A session as the spec writes it."""
    return {"serverId": serverId, "sessionId": sessionId, "clienteId": clienteId,
            "usuario": usuario, "ip": ip, "canales": list(canales)}


class InteropTests(unittest.TestCase):
    """A real node against the socket-level legacy peer."""

    timeout = 30

    @inlineCallbacks
    def startNode(self, peers=(), **settings):
        """Start a node C{srv-node} with one local session C{n1} (user 5, channel 3)."""
        self.cond = Conditions(reactor)
        # The default policy: a plain peer may be an existing server.
        settings.setdefault("receipts", "tls")
        self.service, self.node, self.port, self.delivery = yield startNode(
            self, reactor, "srv-node", peers, conditions=self.cond, **settings)
        yield self.node.clientConnected("n1", 5, "nodo", "10.0.0.1", [3])
        self.legacy = LegacyPeer("srv-legacy")
        self.addCleanup(self.legacy.close)

    def legacySessions(self) -> dict:
        """sessionId -> (clienteId, canales) the node knows of srv-legacy."""
        return {s.sessionId: (s.clienteId, s.canales)
                for s in self.node.state.sessionsOf("srv-legacy")}

    def assertNodeHello(self, message: dict) -> None:
        """C{message} is exactly the node's HELLO."""
        self.assertEqual(message, {"type": "HELLO", "origin": "srv-node",
                                   "payload": {"serverId": "srv-node"}})

    def assertNodeSync(self, message: dict) -> None:
        """C{message} is the node's SYNC_STATE with exactly its session n1."""
        self.assertEqual(message, {"type": "SYNC_STATE", "origin": "srv-node", "payload": {
            "sessions": [session("n1", 5, [3], "srv-node", "nodo", "10.0.0.1")]}})

    @inlineCallbacks
    def legacyDialsIn(self):
        """The legacy peer dials the node and both exchange HELLO and SYNC_STATE."""
        legacy = self.legacy

        def handshake():
            """Legacy side of the handshake (runs in a thread)."""
            legacy.dial(self.port)
            legacy.send("HELLO", {"serverId": "srv-legacy"})
            hello = legacy.read()
            sync = legacy.read()
            legacy.send("SYNC_STATE", {"sessions": [
                session("session-1", 42, [3], serverId="whatever"),
                session("session-2", 43, []),
            ]})
            return hello, sync

        hello, sync = yield deferToThread(handshake)
        self.assertNodeHello(hello)
        self.assertNodeSync(sync)
        yield self.cond.waitUntil(
            lambda: set(self.legacySessions()) == {"session-1", "session-2"},
            what="legacy SYNC_STATE applied")

    @inlineCallbacks
    def test_legacyDialsNode(self):
        """
        (a) The legacy peer dials and speaks first; the node answers HELLO
        then SYNC_STATE.  The legacy's SYNC_STATE, CLIENT_CONNECTED,
        CHANNEL_MEMBERSHIP (JOIN in any case, LEAVE) and CLIENT_DISCONNECTED
        (by sessionId and with a null sessionId) are applied, attributed to
        the link's serverId; its closing drops everything.
        """
        yield self.startNode()
        yield self.legacyDialsIn()
        [peer] = yield self.node.peers()
        self.assertEqual((peer.serverId, peer.direction), ("srv-legacy", "inbound"))
        self.assertEqual(self.node.state.session("srv-legacy", "session-1").serverId, "srv-legacy")
        self.assertEqual(self.node.state.sessionsOf("whatever"), [])
        legacy = self.legacy

        def events():
            """Send presence events as the legacy server (in a thread)."""
            legacy.send("CLIENT_CONNECTED", session("session-3", 42, [8], serverId="srv-x"))
            legacy.send("CHANNEL_MEMBERSHIP", {"sessionId": "session-3", "clienteId": 42,
                                               "canalId": 9, "action": "join"})
            legacy.send("CHANNEL_MEMBERSHIP", {"sessionId": "session-1", "clienteId": 42,
                                               "canalId": 3, "action": "LEAVE"})
            legacy.send("CLIENT_DISCONNECTED", {"sessionId": "session-2", "clienteId": 43})

        yield deferToThread(events)
        yield self.cond.waitUntil(lambda: self.legacySessions() == {
            "session-1": (42, set()), "session-3": (42, {8, 9})}, what="legacy events applied")
        members = yield self.node.channelMembers(9)
        self.assertEqual([(s.serverId, s.sessionId) for s in members],
                         [("srv-legacy", "session-3")])

        yield deferToThread(legacy.send, "CLIENT_DISCONNECTED",
                            {"sessionId": None, "clienteId": 42})
        yield self.cond.waitUntil(lambda: self.legacySessions() == {},
                                  what="null sessionId removes every session of the client")
        self.assertEqual(self.node.metrics.rejectedInputs, {})
        legacy.close()
        yield self.cond.waitUntil(lambda: self.node.linkFor("srv-legacy") is None,
                                  what="link loss noticed")
        self.assertIn(("peerDisconnected", "srv-legacy"), self.cond.events)

    @inlineCallbacks
    def test_legacyOddInputKeepsLink(self):
        """
        Lines the node cannot use (unknown type, bad JSON) are dropped and
        counted; later-revision fields are ignored; the link stays up and
        the next message is applied.
        """
        yield self.startNode()
        yield self.legacyDialsIn()

        def odd():
            """Send lines the node cannot use, then a good one (in a thread)."""
            self.legacy.sendRaw(b'{"type": "PING", "origin": "srv-legacy", "payload": {}}\n')
            self.legacy.sendRaw(b"{oops\n")
            self.legacy.sendRaw(json.dumps({
                "type": "CLIENT_CONNECTED", "origin": "srv-legacy", "target": None,
                "route": ["srv-legacy"], "payload": session("session-9", 44)}).encode() + b"\r\n")

        yield deferToThread(odd)
        yield self.cond.waitUntil(lambda: "session-9" in self.legacySessions(),
                                  what="message after bad lines applied")
        self.assertEqual(self.node.metrics.rejectedInputs["type"], 1)
        self.assertEqual(self.node.metrics.rejectedInputs["json"], 1)
        self.assertIsNotNone(self.node.linkFor("srv-legacy"))

    @inlineCallbacks
    def nodeDialsLegacy(self, eager: bool):
        """
        The node dials a listening legacy peer.  If C{eager}, the legacy
        peer sends HELLO as soon as it accepts; otherwise it waits for the
        node's HELLO first.

        @return: C{(firstMessage, syncMessage)} the legacy peer read.
        """
        legacy = LegacyPeer("srv-legacy")
        self.addCleanup(legacy.close)
        legacyPort = legacy.listen()

        def accept():
            """Accept the node's dial and do the legacy handshake (in a thread)."""
            legacy.accept()
            if eager:
                legacy.send("HELLO", {"serverId": "srv-legacy"})
                first = legacy.read()
            else:
                first = legacy.read()
                legacy.send("HELLO", {"serverId": "srv-legacy"})
            sync = legacy.read()
            legacy.send("SYNC_STATE", {"sessions": [session("session-1", 42, [3])]})
            return first, sync

        d = deferToThread(accept)
        yield self.startNode([f"127.0.0.1:{legacyPort}"])
        first, sync = yield d
        self.legacy = legacy
        return first, sync

    @inlineCallbacks
    def test_nodeDialsLegacy(self):
        """
        (b) The node dials the legacy peer and speaks first; the legacy
        answers HELLO; both send SYNC_STATE; the node's link is outbound.
        """
        first, sync = yield self.nodeDialsLegacy(eager=False)
        self.assertNodeHello(first)
        self.assertEqual(sync["type"], "SYNC_STATE")
        self.assertEqual(sync["origin"], "srv-node")
        yield self.cond.waitUntil(lambda: set(self.legacySessions()) == {"session-1"},
                                  what="legacy sync applied")
        [peer] = yield self.node.peers()
        self.assertEqual((peer.serverId, peer.direction), ("srv-legacy", "outbound"))

    @inlineCallbacks
    def test_legacySendsHelloOnAccept(self):
        """
        (c) A legacy acceptor that sends HELLO immediately (both sides speak
        at once): the link is established, exactly one HELLO each way, then
        SYNC_STATE both ways.
        """
        first, sync = yield self.nodeDialsLegacy(eager=True)
        self.assertNodeHello(first)
        self.assertEqual(sync["type"], "SYNC_STATE")
        yield self.cond.waitUntil(lambda: set(self.legacySessions()) == {"session-1"},
                                  what="legacy sync applied")
        self.assertEqual([m["type"] for m in self.legacy.received], ["HELLO", "SYNC_STATE"])
        self.assertEqual(self.node.metrics.rejectedInputs, {})

    @inlineCallbacks
    def test_eagerNodeAndLegacyDialer(self):
        """
        (c) A node with C{eager_hello} accepting a legacy dialer: both send
        HELLO at once, and the link still completes.
        """
        yield self.startNode(eagerHello=True)
        legacy = self.legacy

        def handshake():
            """Legacy side of the handshake (runs in a thread)."""
            legacy.dial(self.port)
            legacy.send("HELLO", {"serverId": "srv-legacy"})
            return legacy.read(), legacy.read()

        hello, sync = yield deferToThread(handshake)
        self.assertNodeHello(hello)
        self.assertNodeSync(sync)
        yield self.cond.waitUntil(lambda: self.node.linkFor("srv-legacy") is not None,
                                  what="link established")

    @inlineCallbacks
    def test_forwardsBothWays(self):
        """
        (d) The node forwards the four message types to the legacy peer with
        exactly the spec's fields; the legacy's forwarded messages are
        delivered locally on the node as the exact bytes of C{message}.
        """
        yield self.startNode()
        yield self.legacyDialsIn()
        node, legacy = self.node, self.legacy
        message = {"command": "EVENT", "payload": {"evento": "NEW_MESSAGE", "contenido": "hola ñ"}}

        delivery = yield node.sendToUser(42, message)
        self.assertEqual((delivery.local, delivery.servers), (0, ("srv-legacy",)))
        delivery = yield node.sendToChannel(3, message, excludeSessionId="n1")
        self.assertEqual((delivery.local, delivery.servers), (0, ("srv-legacy",)))
        delivery = yield node.sendToSession("session-2", message)
        self.assertEqual(delivery.servers, ("srv-legacy",))
        delivery = yield node.broadcast(message)
        self.assertEqual((delivery.local, delivery.servers), (1, ("srv-legacy",)))

        def readForwards():
            """Read the four forwards (in a thread)."""
            return [legacy.read(kind) for kind in (
                "DIRECT_MESSAGE", "CHANNEL_MESSAGE", "SESSION_MESSAGE", "BROADCAST")]

        direct, channel, sessionMessage, broadcast = yield deferToThread(readForwards)
        self.assertEqual(direct, {"type": "DIRECT_MESSAGE", "origin": "srv-node",
                                  "payload": {"userId": 42, "message": message}})
        self.assertEqual(channel, {"type": "CHANNEL_MESSAGE", "origin": "srv-node",
                                   "payload": {"canalId": 3, "message": message}})
        self.assertEqual(sessionMessage, {"type": "SESSION_MESSAGE", "origin": "srv-node",
                                          "payload": {"sessionId": "session-2",
                                                      "message": message}})
        self.assertEqual(broadcast, {"type": "BROADCAST", "origin": "srv-node",
                                     "payload": {"message": message}})

        raw = '{"command" : "EVENT", "payload": {"contenido": "caf\\u00e9", "n": 1.50, "x": [ ]}}'
        rawBytes = raw.encode()

        def forwards():
            """Send the four forwards with a hand-spelled message (in a thread)."""
            legacy.sendForward("DIRECT_MESSAGE", '"userId": 5, ', rawBytes)
            legacy.sendForward("CHANNEL_MESSAGE", '"canalId": 3, ', rawBytes)
            legacy.sendForward("SESSION_MESSAGE", '"sessionId": "n1", ', rawBytes)
            legacy.sendForward("BROADCAST", "", rawBytes)

        before = len(self.delivery.delivered)
        yield deferToThread(forwards)
        yield self.cond.waitUntil(lambda: len(self.delivery.delivered) == before + 4,
                                  what="four forwards delivered")
        self.assertEqual(self.delivery.delivered[before:], [
            (["n1"], rawBytes, "DIRECT_MESSAGE", "srv-legacy"),
            (["n1"], rawBytes, "CHANNEL_MESSAGE", "srv-legacy"),
            (["n1"], rawBytes, "SESSION_MESSAGE", "srv-legacy"),
            (["n1"], rawBytes, "BROADCAST", "srv-legacy"),
        ])

    @inlineCallbacks
    def test_everyNodeLineIsStrict(self):
        """
        (e) Every line the node writes, for every message type it sends,
        passes a strict reader: UTF-8 JSON, only spec field names, spec
        value types, C{\\n}-terminated without C{\\r}.
        """
        yield self.startNode()
        yield self.legacyDialsIn()
        node, legacy = self.node, self.legacy
        yield node.clientConnected("n2", 6, "dos", None, [])
        yield node.joinChannel("n2", 4)
        yield node.leaveChannel("n2", 4)
        yield node.clientDisconnected("n2")
        yield node.sendToUser(42, [1, "dos", None])
        yield node.sendToChannel(3, "texto")
        yield node.sendToSession("session-1", 3.5)
        yield node.broadcast({"a": {"b": True}})

        def readAll():
            """Read every message the node sent (in a thread)."""
            return [legacy.read(kind) for kind in (
                "CLIENT_CONNECTED", "CHANNEL_MEMBERSHIP", "CHANNEL_MEMBERSHIP",
                "CLIENT_DISCONNECTED", "DIRECT_MESSAGE", "CHANNEL_MESSAGE",
                "SESSION_MESSAGE", "BROADCAST")]

        messages = yield deferToThread(readAll)
        self.assertEqual(messages[0]["payload"], session("n2", 6, [], "srv-node", "dos", None))
        self.assertEqual([m["payload"].get("action") for m in messages[1:3]], ["JOIN", "LEAVE"])
        self.assertEqual(messages[3]["payload"], {"sessionId": "n2", "clienteId": 6})
        self.assertEqual([m["payload"]["message"] for m in messages[4:]],
                         [[1, "dos", None], "texto", 3.5, {"a": {"b": True}}])
        self.assertGreaterEqual(len(legacy.rawLines), 10)
        for line in legacy.rawLines:
            self.assertFalse(line.endswith(b"\r"), line)
            self.assertEqual(strictParse(line)["origin"], "srv-node")


    @inlineCallbacks
    def test_noExtensionMessageEver(self):
        """
        An existing server never receives an extension message: with a
        0.6 s dead-peer bound and a 0.1 s digest interval the node's
        liveness check runs many times on the idle link, X_PING and X_DIGEST
        would be due, gossip is on (X_PEERS), yet what the legacy peer reads is the spec's
        SYNC_STATE heartbeat only (each line strictly parsed), and the
        link is an existing server's on the node's side.
        """
        yield self.startNode(deadPeerTimeout=0.6, digestInterval=0.1, gossip=True)
        yield self.legacyDialsIn()
        link = self.node.linkFor("srv-legacy")
        self.assertEqual((link.kind, link.receipts), ("existing", False))
        legacy = self.legacy

        def readHeartbeats():
            """Read four idle SYNC_STATE re-sends (in a thread)."""
            return [legacy.read()["type"] for _ in range(4)]

        types = yield deferToThread(readHeartbeats)
        self.assertEqual(types, ["SYNC_STATE"] * 4)
        self.assertEqual([line for line in legacy.rawLines if b'"X_' in line], [])
        self.assertEqual(self.node.metrics.liveness["digest_sent"], 0)
        self.assertEqual(link.pingsSent, 0)

    @inlineCallbacks
    def test_drainSaysGoodbye(self):
        """
        A draining node sends an existing server a CLIENT_DISCONNECTED for
        each of its sessions and no X_LEAVING, then closes the link; it
        takes no new session meanwhile (L{NodeDraining}).
        """
        from clustersync.errors import NodeDraining

        yield self.startNode()
        yield self.legacyDialsIn()
        legacy = self.legacy
        d = self.node.drain("maintenance", timeout=2.0)
        yield self.assertFailure(self.node.clientConnected("late", 9, "tarde"), NodeDraining)

        def readUntilClosed():
            """The node's last message, then the close (in a thread)."""
            goodbye = legacy.read("CLIENT_DISCONNECTED")
            legacy.waitClosed()
            return goodbye

        goodbye = yield deferToThread(readUntilClosed)
        yield d
        self.assertEqual(goodbye["payload"], {"sessionId": "n1", "clienteId": 5})
        self.assertEqual([line for line in legacy.rawLines if b'"X_' in line], [])
        self.assertIsNone(self.node.linkFor("srv-legacy"))

    @inlineCallbacks
    def test_legacyKeepsNewerLink(self):
        """
        An existing server keeps the newer of two links and closes the older
        (a defect of theirs, docs/protocol.md).  The legacy peer dials the node
        (link 1); the node then dials it (link 2).  The node keeps link 1
        (dialed by the smaller serverId) and closes link 2; the legacy closes
        link 1 too.  The node drops the legacy's sessions, its dialer wakes
        from standby and redials (link 3), and both sides re-sync on it.
        """
        yield self.startNode()
        yield self.legacyDialsIn()
        first = self.legacy
        acceptor = LegacyPeer("srv-legacy")
        self.addCleanup(acceptor.close)
        legacyPort = acceptor.listen()

        def secondLink():
            """Accept the node's dial, answer HELLO, wait for its close (in a thread)."""
            acceptor.accept()
            hello = acceptor.read()
            acceptor.send("HELLO", {"serverId": "srv-legacy"})
            acceptor.waitClosed()
            return hello

        d = deferToThread(secondLink)
        self.service.getServiceNamed("peer-dial").addPeer(f"127.0.0.1:{legacyPort}")
        hello = yield d
        self.assertNodeHello(hello)
        self.assertEqual(self.node.metrics.linksClosed["duplicate"], 1)
        [factory] = self.service.getServiceNamed("peer-dial").factories
        self.assertTrue(factory.standby)
        self.assertEqual(self.node.linkFor("srv-legacy").direction, "inbound")
        self.assertEqual(set(self.legacySessions()), {"session-1", "session-2"})

        def thirdLink():
            """Close link 1 like a legacy server, then accept the redial (in a thread)."""
            first.close()
            acceptor.accept()
            hello = acceptor.read()
            acceptor.send("HELLO", {"serverId": "srv-legacy"})
            sync = acceptor.read("SYNC_STATE")
            acceptor.send("SYNC_STATE", {"sessions": [session("session-7", 42, [3])]})
            return hello, sync

        hello, sync = yield deferToThread(thirdLink)
        self.assertNodeHello(hello)
        self.assertNodeSync(sync)
        yield self.cond.waitUntil(lambda: set(self.legacySessions()) == {"session-7"},
                                  what="re-synced over the redialed link")
        self.assertEqual(self.node.linkFor("srv-legacy").direction, "outbound")
        self.assertFalse(factory.standby)
        self.assertIn(("peerDisconnected", "srv-legacy"), self.cond.events)

    @inlineCallbacks
    def test_largeSyncState(self):
        """
        A SYNC_STATE of several megabytes (larger than C{max_message_length},
        arriving in many reads) is applied whole.
        """
        yield self.startNode()
        legacy = self.legacy
        sessions = [session(f"session-{i}", i, [i % 50, 1000 + i % 7]) for i in range(30000)]
        line = json.dumps({"type": "SYNC_STATE", "origin": "srv-legacy",
                           "payload": {"sessions": sessions}}).encode() + b"\n"
        self.assertGreater(len(line), 2 * self.node.config.maxMessageLength)

        def handshake():
            """Legacy side of the handshake (runs in a thread)."""
            legacy.dial(self.port)
            legacy.send("HELLO", {"serverId": "srv-legacy"})
            legacy.read("HELLO")
            legacy.read("SYNC_STATE")
            legacy.sendRaw(line)

        yield deferToThread(handshake)
        yield self.cond.waitUntil(lambda: len(self.legacySessions()) == 30000,
                                  what="large SYNC_STATE applied")
        members = yield self.node.channelMembers(1003)
        self.assertEqual(len(members), 30000 // 7 + (1 if 30000 % 7 > 3 else 0))
        self.assertEqual(self.node.metrics.rejectedInputs, {})

class StrictReaderTests(unittest.TestCase):
    """The test's strict reader refuses what existing servers refuse."""

    def test_acceptsSpecExamples(self) -> None:
        """Spec-shaped lines pass."""
        self.assertEqual(strictParse(
            b'{"type":"HELLO","origin":"srv-a","payload":{"serverId":"srv-a"}}')["type"], "HELLO")
        strictParse(json.dumps({"type": "CLIENT_DISCONNECTED", "origin": "srv-a",
                                "payload": {"sessionId": None, "clienteId": 12}}).encode())
        strictParse(json.dumps({"type": "SYNC_STATE", "origin": "srv-a",
                                "payload": {"sessions": [session("s", 1, [3, 8])]}}).encode())

    def test_refusesWhatStrictBindersRefuse(self) -> None:
        """
        Extra envelope, payload or session fields, missing fields, unknown
        types, mistyped or out-of-range ids, duplicate channels and bad
        UTF-8 are refused.
        """
        bad = [
            {"type": "HELLO", "origin": "a", "payload": {"serverId": "a"}, "target": None},
            {"type": "HELLO", "origin": "a", "payload": {"serverId": "a", "instanceId": "i"}},
            {"type": "HELLO", "origin": "a", "payload": {}},
            {"type": "PING", "origin": "a", "payload": {}},
            {"type": "SYNC_STATE", "origin": "a",
             "payload": {"sessions": [{**session("s", 1), "extra": 1}]}},
            {"type": "SYNC_STATE", "origin": "a", "payload": {"sessions": [session("s", 1, [3, 3])]}},
            {"type": "CLIENT_CONNECTED", "origin": "a", "payload": session("s", "1")},
            {"type": "CLIENT_CONNECTED", "origin": "a", "payload": session("s", 2 ** 63)},
            {"type": "CHANNEL_MEMBERSHIP", "origin": "a",
             "payload": {"sessionId": "s", "clienteId": 1, "canalId": True, "action": "JOIN"}},
            {"type": "DIRECT_MESSAGE", "origin": "a", "payload": {"userId": 1}},
        ]
        for message in bad:
            self.assertRaises(StrictReadError, strictParse, json.dumps(message).encode())
        self.assertRaises(StrictReadError, strictParse, b'{"type":"\xff"}')
        self.assertRaises(StrictReadError, strictParse, b"[1]")
