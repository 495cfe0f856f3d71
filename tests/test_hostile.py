"""
The hostile-input policy of C{docs/security.md}, row by row: each hostile
input is dropped or closes its link with a logged reason and a counter, it
never raises, never changes the cluster state, and never touches another
link.  Then property-based tests (hypothesis) feed random and mutated lines
to the codec and to live links.

Everything runs on L{StringTransport}s and a L{Clock}: a node C{srv-b} with
two established inbound links, C{srv-a} from 10.0.0.1 (the bystander) and
C{srv-c} from 10.0.0.3 (the one that turns hostile), each with one session.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from clustersync.wire.codec import ProtocolError, decode
from clustersync.app.config import NodeConfig
from clustersync.handlers.builtin import BUILTIN_HANDLERS
from clustersync.links.protocol import INBOUND, OUTBOUND, LinkState, PeerProtocol
from clustersync.cluster.node import ClusterNode

HYPOTHESIS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def line(kind: str, origin: str, payload, **extra) -> bytes:
    """One wire line (with its newline), built with the standard C{json}."""
    return json.dumps({"type": kind, "origin": origin, "payload": payload, **extra}).encode() + b"\n"


def hello(serverId: str, origin: str | None = None) -> bytes:
    """A HELLO line."""
    return line("HELLO", serverId if origin is None else origin, {"serverId": serverId})


def session(origin: str, sessionId: str, clienteId: int = 7, canales=()) -> dict:
    """A session as the spec writes it."""
    return {"serverId": origin, "sessionId": sessionId, "clienteId": clienteId,
            "usuario": "u" + sessionId, "ip": None, "canales": list(canales)}


def connected(origin: str, sessionId: str, clienteId: int = 7, canales=()) -> bytes:
    """A CLIENT_CONNECTED line."""
    return line("CLIENT_CONNECTED", origin, session(origin, sessionId, clienteId, canales))


def sync(origin: str, *sessions: dict) -> bytes:
    """A SYNC_STATE line."""
    return line("SYNC_STATE", origin, {"sessions": list(sessions)})


def membership(origin: str, sessionId: str, canalId: int, action: str = "JOIN") -> bytes:
    """A CHANNEL_MEMBERSHIP line."""
    return line("CHANNEL_MEMBERSHIP", origin, {
        "sessionId": sessionId, "clienteId": 7, "canalId": canalId, "action": action})


#: One valid line of every spec type, from srv-c (seeds for mutation).
SPEC_LINES = [
    hello("srv-c"),
    sync("srv-c", session("srv-c", "s1", 12, [3, 8])),
    connected("srv-c", "s2", 12, [3]),
    line("CLIENT_DISCONNECTED", "srv-c", {"sessionId": "c1", "clienteId": 30}),
    membership("srv-c", "c1", 3),
    line("DIRECT_MESSAGE", "srv-c", {"userId": 42, "message": {"command": "EVENT", "payload": {"x": 1}}}),
    line("CHANNEL_MESSAGE", "srv-c", {"canalId": 3, "message": {"command": "EVENT"}}),
    line("SESSION_MESSAGE", "srv-c", {"sessionId": "c1", "message": {"tipo": "ACK"}}),
    line("BROADCAST", "srv-c", {"message": "hola"}),
]


def lost(link: PeerProtocol) -> None:
    """Deliver C{connectionLost} (a L{StringTransport} never does)."""
    link.connectionLost(Failure(ConnectionDone("closed")))


class Cluster:
    """
    A node C{srv-b} on a L{Clock} with two established inbound links.

    @ivar a: the bystander link from srv-a (10.0.0.1), session C{a1}.
    @ivar c: the link from srv-c (10.0.0.3), session C{c1} in channel 3.
    """

    def __init__(self, **settings) -> None:
        self.clock = Clock()
        self.probes = 0
        settings.setdefault("openLinks", True)
        config = NodeConfig(serverId="srv-b", listen=None, clients=None, **settings)
        self.node = ClusterNode(config, self.clock, BUILTIN_HANDLERS)
        self.a, self.aT = self.establish("srv-a", "10.0.0.1")
        self.c, self.cT = self.establish("srv-c", "10.0.0.3")
        self.a.dataReceived(connected("srv-a", "a1", 5))
        self.c.dataReceived(connected("srv-c", "c1", 7, [3]))
        assert {s.sessionId for s in self.node.state.allSessions()} == {"a1", "c1"}

    def connect(self, host: str, direction: str = INBOUND):
        """A new connected link from C{host}, not yet established."""
        link = PeerProtocol(self.node, direction, None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
        link.makeConnection(transport)
        return link, transport

    def establish(self, serverId: str, host: str):
        """A link from C{host} that completed HELLO as C{serverId}."""
        link, transport = self.connect(host)
        link.dataReceived(hello(serverId))
        assert link.state is LinkState.ESTABLISHED, serverId
        self.clock.advance(0)  # the end of the reactor turn: HELLO, SYNC_STATE out
        transport.clear()
        return link, transport

    def snapshot(self):
        """Everything the node knows: sessions with their channels, and active links."""
        return (
            sorted((s.serverId, s.sessionId, s.clienteId, s.usuario, tuple(sorted(s.canales)))
                   for s in self.node.state.allSessions()),
            sorted(self.node._links),
        )

    def rejected(self) -> int:
        """Total inputs refused so far."""
        return sum(self.node.metrics.rejectedInputs.values())


class HostileMixin:
    """Assertions shared by the table tests."""

    settings: dict = {}

    def setUp(self):
        """The two-link cluster, and its state before any hostile input."""
        self.cluster = Cluster(**self.settings)
        self.node = self.cluster.node
        self.before = self.cluster.snapshot()

    def assertBystanderUnaffected(self):
        """
        srv-a's link is still open and active and still works: a new session
        it announces is applied.
        """
        c = self.cluster
        self.assertIs(c.a.state, LinkState.ESTABLISHED)
        self.assertFalse(c.aT.disconnecting)
        self.assertTrue(self.node.isActive(c.a))
        c.probes += 1
        sessionId = f"probe{c.probes}"
        c.a.dataReceived(connected("srv-a", sessionId, 6))
        self.assertIsNotNone(self.node.state.session("srv-a", sessionId))

    def assertDropped(self, data: bytes, counter: str, link=None, transport=None):
        """
        C{data} on the srv-c link (or C{link}) is dropped: counted once under
        C{rejectedInputs[counter]}, nothing changed, the link stays open.
        """
        link = link or self.cluster.c
        transport = transport or self.cluster.cT
        link.dataReceived(data)
        self.assertEqual(dict(self.node.metrics.rejectedInputs), {counter: 1})
        self.assertEqual(self.cluster.snapshot(), self.before)
        self.assertFalse(transport.disconnecting)
        self.assertIsNot(link.state, LinkState.CLOSED)
        self.cluster.clock.advance(0)  # anything written in that turn is out
        self.assertEqual(transport.value(), b"")
        self.assertBystanderUnaffected()

    def assertClosed(self, data: bytes, counter: str, link=None, transport=None,
                     rejected: str | None = None):
        """
        C{data} on the srv-c link (or C{link}) closes it, counted under
        C{linksClosed[counter]} (or C{rejectedInputs[rejected]}); nothing
        changed before the close, and once the connection is gone only
        that link's own server (if it had one) is forgotten.
        """
        link = link or self.cluster.c
        transport = transport or self.cluster.cT
        link.dataReceived(data)
        self.assertTrue(transport.disconnecting)
        if rejected is not None:
            self.assertEqual(self.node.metrics.rejectedInputs[rejected], 1)
        else:
            self.assertEqual(dict(self.node.metrics.linksClosed), {counter: 1})
        self.assertEqual(self.cluster.snapshot(), self.before)
        lost(link)
        sessions, links = self.cluster.snapshot()
        gone = link.serverId if self.node.linkFor(link.serverId) is None else None
        self.assertEqual(
            (sessions, links),
            ([s for s in self.before[0] if s[0] != gone], [p for p in self.before[1] if p != gone]),
        )
        self.assertBystanderUnaffected()


class DroppedInputTests(HostileMixin, unittest.TestCase):
    """
    Rows of the table whose action is I{drop}: on an established link the
    line is refused, the link stays up.
    """

    settings = {"maxMessageLength": 300, "maxSessionsPerServer": 2, "maxChannelsPerSession": 2}

    def test_invalidUTF8(self):
        """Invalid UTF-8 (here inside a string) -> drop, C{utf8}."""
        self.assertDropped(b'{"type":"BROADCAST","origin":"srv-c","payload":{"message":"\xff\xfe"}}\n', "utf8")

    def test_invalidJSON(self):
        """A line that is not JSON -> drop, C{json}."""
        self.assertDropped(b'{"type":"CLIENT_CONNECTED","origin":"srv-c",\n', "json")

    def test_deeplyNestedJSON(self):
        """JSON nested far too deep for the decoder -> drop, C{json} (no RecursionError)."""
        self.assertDropped(
            b'{"type":"BROADCAST","origin":"srv-c","payload":{"message":'
            + b"[" * 100 + b"[" * 50000 + b"]" * 50100 + b"}}\n",
            "json",
        )

    def test_notAnObject(self):
        """JSON that is not an object -> drop, C{envelope}."""
        self.assertDropped(b'["HELLO","srv-c"]\n', "envelope")

    def test_wrongFieldType(self):
        """A field of the wrong type (clienteId as a string) -> drop, C{field}."""
        data = line("CLIENT_CONNECTED", "srv-c", {**session("srv-c", "x"), "clienteId": "7"})
        self.assertDropped(data, "field")

    def test_outOfRangeInteger(self):
        """An id beyond 64 bits -> drop, C{field}."""
        self.assertDropped(membership("srv-c", "c1", 2**64), "field")

    def test_missingField(self):
        """A missing required field (payload.sessionId) -> drop, C{field}."""
        payload = session("srv-c", "x")
        del payload["sessionId"]
        self.assertDropped(line("CLIENT_CONNECTED", "srv-c", payload), "field")

    def test_unknownType(self):
        """An unknown message type -> drop, C{type}."""
        self.assertDropped(line("DROP_TABLES", "srv-c", {}), "type")

    def test_oversizeMessage(self):
        """
        A non-SYNC_STATE message longer than max_message_length (but under
        max_sync_length) -> drop, C{oversize_message}.
        """
        self.assertDropped(line("BROADCAST", "srv-c", {"message": "x" * 400}), "oversize_message")

    def test_syncStateHasItsOwnBound(self):
        """
        A SYNC_STATE longer than max_message_length is accepted: its bound
        is max_sync_length (the positive control of the row above).
        """
        c = self.cluster
        c.c.dataReceived(sync("srv-c", session("srv-c", "c9", 7, [1]), {**session("srv-c", "c8"), "usuario": "y" * 250}))
        self.assertEqual(dict(self.node.metrics.rejectedInputs), {})
        self.assertEqual({s.sessionId for s in self.node.state.sessionsOf("srv-c")}, {"c9", "c8"})

    def test_originMismatch(self):
        """
        A message on srv-c's link claiming to come from srv-a -> drop,
        C{origin_mismatch}; srv-a's sessions are untouched.
        """
        self.assertDropped(line("CLIENT_DISCONNECTED", "srv-a", {"clienteId": 5, "sessionId": None}),
                           "origin_mismatch")

    def test_duplicateHello(self):
        """A second HELLO on an established link -> drop, C{duplicate_hello}."""
        self.assertDropped(hello("srv-c"), "duplicate_hello")
        self.assertEqual(self.cluster.c.serverId, "srv-c")

    def test_tooManySessionsInSync(self):
        """A SYNC_STATE with more sessions than max_sessions_per_server -> drop, C{limit}."""
        self.assertDropped(sync("srv-c", *(session("srv-c", f"x{i}") for i in range(3))), "limit")

    def test_tooManySessionsConnected(self):
        """A CLIENT_CONNECTED beyond max_sessions_per_server -> drop, C{limit}."""
        c = self.cluster
        c.c.dataReceived(connected("srv-c", "c2"))
        self.before = c.snapshot()
        self.assertDropped(connected("srv-c", "c3"), "limit")

    def test_tooManyChannelsInSession(self):
        """A session announced in more channels than max_channels_per_session -> drop, C{limit}."""
        self.assertDropped(connected("srv-c", "c5", 7, [1, 2, 3]), "limit")

    def test_tooManyChannelsByJoin(self):
        """A JOIN beyond max_channels_per_session -> drop, C{limit}."""
        c = self.cluster
        c.c.dataReceived(membership("srv-c", "c1", 4))
        self.before = c.snapshot()
        self.assertDropped(membership("srv-c", "c1", 5), "limit")

    def test_beforeHandshake(self):
        """
        A state message from a new connection before its HELLO -> drop,
        C{before_handshake}; the connection stays (it may still say HELLO).
        """
        link, transport = self.cluster.connect("10.0.0.7")
        self.assertDropped(connected("srv-x", "x1"), "before_handshake", link, transport)
        self.assertIsNone(link.serverId)


class ClosedLinkTests(HostileMixin, unittest.TestCase):
    """
    Rows of the table whose action is I{close the link}.
    """

    settings = {"maxSyncLength": 2000, "maxMessageLength": 1000, "peerRate": 10.0, "peerBurst": 20}

    def test_oversizeLine(self):
        """A complete line longer than max_sync_length -> close, C{oversize_line}."""
        data = sync("srv-c", *(session("srv-c", f"x{i}") for i in range(40)))
        self.assertGreater(len(data), 2000)
        self.assertClosed(data, None, rejected="oversize_line")

    def test_oversizePartialLine(self):
        """
        Bytes without a newline piling up past max_sync_length -> close,
        C{oversize_line}, before the line is ever complete.
        """
        c = self.cluster
        c.c.dataReceived(b'{"type":"SYNC_STATE","origin":"srv-c","payload":{"sessions":[')
        self.assertClosed(b" " * 2000, None, rejected="oversize_line")

    def test_floodInOneRead(self):
        """More lines at once than peer_burst -> close, C{rate_limit}, none applied."""
        data = b"".join(connected("srv-c", f"f{i}") for i in range(21))
        self.assertClosed(data, "rate_limit")

    def test_floodSustained(self):
        """
        The bucket refills at peer_rate per second of node clock: a sender
        within it stays up; one above it is closed, C{rate_limit}.
        """
        c = self.cluster
        # Two lines were taken by the session and the HELLO; 18 left.
        c.c.dataReceived(b"\n" * 18)
        c.clock.advance(1.0)  # +10
        c.c.dataReceived(b"\n" * 10)
        self.assertFalse(c.cT.disconnecting)
        c.clock.advance(0.5)  # +5
        self.assertClosed(b"\n" * 6, "rate_limit")

    def test_blankLinesCount(self):
        """Empty lines are not free: a burst of them -> close, C{rate_limit}."""
        self.assertClosed(b"\r\n" * 21, "rate_limit")

    def test_ownServerId(self):
        """A HELLO with this node's own serverId -> close, C{self_link}."""
        link, transport = self.cluster.connect("10.0.0.7")
        self.assertClosed(hello("srv-b"), "self_link", link, transport)

    def test_badServerId(self):
        """A HELLO serverId with whitespace or control characters -> close, C{bad_server_id}."""
        for i, bad in enumerate(["srv x", "srv-\nx"]):
            link, transport = self.cluster.connect(f"10.0.0.{20 + i}")
            self.node.metrics.linksClosed.clear()
            self.before = self.cluster.snapshot()
            self.assertClosed(hello(bad), "bad_server_id", link, transport)

    def test_emptyServerId(self):
        """A HELLO with an empty serverId -> close, counted as a C{field} rejection."""
        link, transport = self.cluster.connect("10.0.0.7")
        self.assertClosed(hello(""), None, link, transport, rejected="field")

    def test_longServerId(self):
        """
        A HELLO serverId over the codec's bound (255 characters) is
        refused as a C{field} rejection: the link is not established (the
        handshake timeout closes it) and nothing changed.
        """
        link, transport = self.cluster.connect("10.0.0.8")
        link.dataReceived(hello("x" * 256))
        self.assertEqual(self.node.metrics.rejectedInputs["field"], 1)
        self.assertIsNone(link.serverId)
        self.assertEqual(self.cluster.snapshot(), self.before)

    def test_helloOriginMismatch(self):
        """A HELLO whose origin is not its serverId -> close, C{hello_origin_mismatch}."""
        link, transport = self.cluster.connect("10.0.0.7")
        self.assertClosed(hello("srv-x", origin="srv-y"), "hello_origin_mismatch", link, transport)

    def test_handshakeTimeout(self):
        """No HELLO within handshake_timeout -> close, C{handshake_timeout}."""
        link, transport = self.cluster.connect("10.0.0.7")
        self.cluster.clock.advance(self.node.config.handshakeTimeout)
        self.assertClosed(b"", "handshake_timeout", link, transport)

    def test_sameDirectionDuplicate(self):
        """
        A second inbound link claiming srv-a while srv-a is linked -> the new
        one is closed, C{duplicate}; srv-a's link and sessions stay (no
        hijack).
        """
        link, transport = self.cluster.connect("10.0.0.66")
        self.assertClosed(hello("srv-a"), "duplicate", link, transport)
        self.assertTrue(self.node.isActive(self.cluster.a))

    def test_crossDirectionFromElsewhere(self):
        """
        In open mode, an outbound-direction link answering as srv-a from
        another host than srv-a's inbound link -> close,
        C{identity_conflict}: a tie-break cannot be used to take srv-a's
        place.
        """
        link, transport = self.cluster.connect("10.0.0.66", OUTBOUND)
        transport.clear()
        self.assertClosed(hello("srv-a"), "identity_conflict", link, transport)
        self.assertTrue(self.node.isActive(self.cluster.a))

    def test_crossDirectionSameHostTieBreak(self):
        """
        The same from srv-a's own address is the simultaneous-dial case: the
        tie-break keeps one link (the one dialed by the smaller serverId,
        srv-a: the inbound one), closes the other as C{duplicate}, and
        srv-a's sessions stay.
        """
        link, transport = self.cluster.connect("10.0.0.1", OUTBOUND)
        self.assertClosed(hello("srv-a"), "duplicate", link, transport)
        self.assertTrue(self.node.isActive(self.cluster.a))


class AllowListTests(HostileMixin, unittest.TestCase):
    """
    With C{plain_peers}, plain links are refused unless the serverId and
    its source address are both on the list.
    """

    settings = {"plainPeers": ["srv-a@10.0.0.1", "srv-c@10.0.0.3", "srv-d@10.0.0.4"]}

    def test_sourceRefusedAtConnection(self):
        """
        A connection from an unlisted address -> closed at once (before any
        byte is read or written), C{plain_source_refused}.
        """
        link, transport = self.cluster.connect("10.0.0.99")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")
        self.assertClosed(b"", "plain_source_refused", link, transport)

    def test_serverIdNotListed(self):
        """A listed address saying HELLO as an unlisted serverId -> close, C{plain_not_allowed}."""
        link, transport = self.cluster.connect("10.0.0.4")
        self.assertClosed(hello("srv-x"), "plain_not_allowed", link, transport)

    def test_serverIdFromAnotherListedHost(self):
        """
        srv-d's address saying HELLO as srv-a (listed, but for 10.0.0.1) ->
        close, C{plain_not_allowed}.
        """
        link, transport = self.cluster.connect("10.0.0.4")
        self.assertClosed(hello("srv-a"), "plain_not_allowed", link, transport)

    def test_listedPeerLinks(self):
        """The listed serverId from its listed address links (positive control)."""
        link, transport = self.cluster.connect("10.0.0.4")
        link.dataReceived(hello("srv-d") + connected("srv-d", "d1"))
        self.assertIs(link.state, LinkState.ESTABLISHED)
        self.assertIsNotNone(self.node.state.session("srv-d", "d1"))
        self.assertEqual(dict(self.node.metrics.linksClosed), {})


# Property-based tests --------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


def _paths(value, prefix=()):
    """Every path (tuple of keys/indexes) into a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutatedLines(draw, seeds=SPEC_LINES) -> bytes:
    """A valid spec line mutated by bytes or by JSON fields (no newline inside)."""
    data = bytearray(draw(st.sampled_from(seeds)).rstrip(b"\n"))
    how = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "replace", "drop", "add"]))
    if how in ("flip", "delete", "insert", "truncate"):
        i = draw(st.integers(0, len(data) - 1))
        if how == "flip":
            data[i] = draw(st.integers(0, 255))
        elif how == "delete":
            del data[i:i + draw(st.integers(1, 8))]
        elif how == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[i:]
        out = bytes(data)
    else:
        doc = json.loads(bytes(data))
        paths = [p for p in _paths(doc) if p]
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if how == "replace":
            parent[path[-1]] = draw(_json)
        elif how == "drop":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=6))] = draw(_json)
        else:
            parent.append(draw(_json))
        out = json.dumps(doc).encode()
    return out.replace(b"\n", b" ")


def _fails(data: bytes) -> bool:
    try:
        decode(data)
    except ProtocolError:
        return True
    return False


class CodecPropertyTests(unittest.TestCase):
    """L{decode} raises nothing but L{ProtocolError}, whatever it is given."""

    @HYPOTHESIS
    @given(st.binary(max_size=300))
    def test_randomBytes(self, data):
        """Random bytes decode or raise L{ProtocolError} with a known reason."""
        try:
            decode(data)
        except ProtocolError as e:
            self.assertIn(e.reason, {"utf8", "json", "envelope", "type", "field"})

    @HYPOTHESIS
    @given(mutatedLines())
    def test_mutatedSpecLines(self, data):
        """Mutated spec lines decode or raise L{ProtocolError} with a known reason."""
        try:
            decode(data)
        except ProtocolError as e:
            self.assertIn(e.reason, {"utf8", "json", "envelope", "type", "field"})


class LinkPropertyTests(unittest.TestCase):
    """
    Live links (a fresh two-link node per example) fed hostile lines: the
    node never raises, its state does not change, the bystander link is
    untouched.
    """

    def check(self, cluster, before):
        """State unchanged, and srv-a's link open and working."""
        self.assertEqual(cluster.snapshot(), before)
        self.assertFalse(cluster.aT.disconnecting)
        cluster.a.dataReceived(connected("srv-a", "a2"))
        self.assertIsNotNone(cluster.node.state.session("srv-a", "a2"))
        self.assertEqual(cluster.node.metrics.handlerErrors, {})

    @HYPOTHESIS
    @given(st.lists(mutatedLines(), min_size=1, max_size=8))
    def test_undecodableLinesChangeNothing(self, lines):
        """
        Mutated lines that fail to decode, on an established link: each is
        counted, none changes state, the link stays open.
        """
        lines = [x for x in lines if x.strip() and _fails(x)]
        cluster = Cluster()
        before = cluster.snapshot()
        cluster.c.dataReceived(b"".join(x + b"\n" for x in lines))
        self.assertEqual(cluster.rejected(), len(lines))
        self.assertFalse(cluster.cT.disconnecting)
        self.check(cluster, before)

    @HYPOTHESIS
    @given(st.lists(mutatedLines(), min_size=1, max_size=8), st.sampled_from(["srv-a", "srv-x", ""]))
    def test_foreignOriginChangesNothing(self, lines, origin):
        """
        Mutated lines that do decode, re-sent with an origin other than the
        link's serverId, change nothing (dropped as C{origin_mismatch}, or
        not decodable after the change).
        """
        rewritten = []
        for x in lines:
            try:
                message = decode(x)
            except ProtocolError:
                continue
            doc = json.loads(x)
            doc["origin"] = origin
            if message.__class__.__name__ == "Hello":
                continue  # a HELLO on an established link is its own row
            rewritten.append(json.dumps(doc).encode())
        cluster = Cluster()
        before = cluster.snapshot()
        cluster.c.dataReceived(b"".join(x + b"\n" for x in rewritten))
        self.assertEqual(cluster.rejected(), len(rewritten))
        self.check(cluster, before)

    @HYPOTHESIS
    @given(st.lists(mutatedLines(SPEC_LINES[1:]) | st.binary(max_size=200), max_size=8),
           st.integers(1, 64))
    def test_strangerChangesNothing(self, lines, chunk):
        """
        A new connection that never completes a HELLO, sending any bytes
        (mutated non-HELLO lines, random bytes with newlines) in chunks of
        any size, changes nothing, however it ends.
        """
        cluster = Cluster()
        before = cluster.snapshot()
        link, transport = cluster.connect("10.0.0.77")
        data = b"\n".join(lines) + b"\n"
        for i in range(0, len(data), chunk):
            link.dataReceived(data[i:i + chunk])
        self.assertIsNot(link.state, LinkState.ESTABLISHED)
        self.assertEqual(cluster.snapshot(), before)
        lost(link)
        self.check(cluster, before)


class ClosedModeTests(unittest.TestCase):
    """
    A node with no TLS, no C{plain_peers} and no C{open_links} (the
    default) refuses every link, inbound or dialed, before any byte.
    """

    def test_everyLinkRefused(self):
        """
        An inbound and an outbound connection are aborted at once, nothing
        is written (not even our HELLO), what the peer sends is not read,
        and both are counted under C{links_disabled}.
        """
        node = ClusterNode(NodeConfig(serverId="srv-b", listen=None, clients=None),
                           Clock(), BUILTIN_HANDLERS)
        self.assertFalse(node.config.openLinks)
        for direction in (INBOUND, OUTBOUND):
            link = PeerProtocol(node, direction, None)
            transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 40000))
            link.makeConnection(transport)
            self.assertTrue(transport.disconnecting)
            self.assertEqual(transport.value(), b"")
            link.dataReceived(hello("srv-a") + connected("srv-a", "a1", 5))
            self.assertIsNot(link.state, LinkState.ESTABLISHED)
        self.assertEqual(node.metrics.linksClosed["links_disabled"], 2)
        self.assertEqual(list(node.state.allSessions()), [])
        self.assertIsNone(node.linkFor("srv-a"))
