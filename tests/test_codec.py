"""
Tests for L{clustersync.wire.codec} and L{clustersync.wire.messages}: the
nine spec message types decoded from the spec's own examples and re-encoded
with exactly the spec's fields; unknown fields; forwarded C{message} bytes
kept verbatim.  Bad input is in L{tests.test_codec_errors}, the send and
receive fast paths (L{DirectEncoder}, L{decodeLines}) in
L{tests.test_codec_fastpaths}.
"""

from __future__ import annotations

import json

import msgspec
from twisted.trial import unittest

from clustersync.wire import codec, messages
from clustersync.wire.codec import (
    MESSAGE_TYPES,
    ClientConnected,
    ClientDisconnected,
    ClientDisconnectedPayload,
    Hello,
    SessionInfo,
    SyncState,
    SyncStatePayload,
    decode,
    encode,
    encodeConnected,
    encodeRaw,
    encodeSync,
    rawMessage,
)

from tests.codecsupport import (
    EXPECTED_CLASSES,
    FORWARD_TYPES,
    compact,
    encodedDict,
    example,
    line,
    specDict,
)


class SpecExampleTests(unittest.SynchronousTestCase):
    """
    Every spec example decodes to its class and re-encodes to exactly the
    spec's fields and values.
    """

    def test_allNineTypesKnown(self):
        """
        L{MESSAGE_TYPES} maps exactly the nine spec type names to their
        classes.
        """
        self.assertEqual(MESSAGE_TYPES, EXPECTED_CLASSES)

    def test_decodeEveryExample(self):
        """
        Each spec example, multi-line as printed and as one compact line,
        decodes to the class of its type with C{origin} read.
        """
        for typeName, cls in EXPECTED_CLASSES.items():
            for data in (example(typeName), compact(typeName)):
                message = decode(data)
                self.assertIsInstance(message, cls, typeName)
                self.assertEqual(message.origin, "srv-a")

    def test_roundTripEveryExample(self):
        """
        Re-encoding a decoded spec example gives exactly the spec's JSON
        object: same keys at every level, same values.
        """
        for typeName in EXPECTED_CLASSES:
            message = decode(compact(typeName))
            self.assertEqual(encodedDict(message), specDict(typeName), typeName)
            if typeName not in FORWARD_TYPES:
                message = decode(example(typeName))
                self.assertEqual(encodedDict(message), specDict(typeName), typeName)

    def test_helloFields(self):
        """HELLO: C{payload.serverId} is read; L{Hello.make} builds the spec's HELLO."""
        message = decode(example("HELLO"))
        self.assertEqual(message.payload.serverId, "srv-a")
        self.assertEqual(encodedDict(Hello.make("srv-a")), specDict("HELLO"))

    def test_syncStateFields(self):
        """SYNC_STATE: every session field is read; C{canales} is a set."""
        message = decode(example("SYNC_STATE"))
        (s,) = message.payload.sessions
        self.assertEqual(
            (s.serverId, s.sessionId, s.clienteId, s.usuario, s.ip, s.canales),
            ("srv-a", "0c6f4e25-5e3a-4d1e-8cb7-1ce5bbf6093f", 12, "carlos",
             "192.168.1.10", {3, 8}),
        )

    def test_clientConnectedFields(self):
        """CLIENT_CONNECTED: the payload is a L{SessionInfo}."""
        p = decode(example("CLIENT_CONNECTED")).payload
        self.assertIsInstance(p, SessionInfo)
        self.assertEqual(
            (p.serverId, p.sessionId, p.clienteId, p.usuario, p.ip, p.canales),
            ("srv-a", "ce9fb813-3d66-450e-8d20-85f7da7338a0", 12, "carlos",
             "192.168.1.10", {3, 8}),
        )

    def test_clientDisconnectedFields(self):
        """CLIENT_DISCONNECTED: C{sessionId} and C{clienteId} are read."""
        p = decode(example("CLIENT_DISCONNECTED")).payload
        self.assertEqual((p.sessionId, p.clienteId),
                         ("ce9fb813-3d66-450e-8d20-85f7da7338a0", 12))

    def test_channelMembershipFields(self):
        """CHANNEL_MEMBERSHIP: every field is read; JOIN means joined."""
        message = decode(example("CHANNEL_MEMBERSHIP"))
        p = message.payload
        self.assertEqual(
            (p.sessionId, p.clienteId, p.canalId, p.action),
            ("ce9fb813-3d66-450e-8d20-85f7da7338a0", 12, 3, "JOIN"),
        )
        self.assertTrue(message.joined)

    def test_forwardFields(self):
        """
        The four forwarded types read their routing field, and C{message}
        is a L{msgspec.Raw} holding the spec's JSON value.
        """
        dm = decode(example("DIRECT_MESSAGE")).payload
        self.assertEqual(dm.userId, 42)
        cm = decode(example("CHANNEL_MESSAGE")).payload
        self.assertEqual(cm.canalId, 3)
        sm = decode(example("SESSION_MESSAGE")).payload
        self.assertEqual(sm.sessionId, "ce9fb813-3d66-450e-8d20-85f7da7338a0")
        for typeName in FORWARD_TYPES:
            p = decode(example(typeName)).payload
            self.assertIsInstance(p.message, msgspec.Raw)
            self.assertEqual(
                json.loads(bytes(p.message)), specDict(typeName)["payload"]["message"]
            )

    def test_nonAsciiKept(self):
        """
        The BROADCAST example's non-ASCII text survives decode and encode.
        """
        out = encode(decode(example("BROADCAST")))
        self.assertIn("entrará".encode("utf-8"), out)


class SessionEncodingTests(unittest.SynchronousTestCase):
    """
    SYNC_STATE and CLIENT_CONNECTED write each session with exactly the
    spec's six fields, its C{serverId} being the message's C{origin}.
    """

    sessionKeys = {"serverId", "sessionId", "clienteId", "usuario", "ip", "canales"}

    def test_syncWritesOriginAsServerId(self):
        """
        A session that claims another server (or none) is written with
        C{serverId} equal to C{origin}.
        """
        sessions = [
            SessionInfo("s1", 1, "ana", "srv-x", "10.0.0.1", {9, 2}),
            SessionInfo("s2", 2, "bea", None, None, set()),
        ]
        out = encodedDict(SyncState("srv-a", SyncStatePayload(sessions)))
        self.assertEqual(set(out), {"type", "origin", "payload"})
        self.assertEqual(set(out["payload"]), {"sessions"})
        self.assertEqual(
            out["payload"]["sessions"],
            [
                {"serverId": "srv-a", "sessionId": "s1", "clienteId": 1,
                 "usuario": "ana", "ip": "10.0.0.1", "canales": [2, 9]},
                {"serverId": "srv-a", "sessionId": "s2", "clienteId": 2,
                 "usuario": "bea", "ip": None, "canales": []},
            ],
        )
        self.assertEqual(json.loads(encodeSync("srv-a", sessions)), out)

    def test_connectedWritesOriginAsServerId(self):
        """
        CLIENT_CONNECTED's payload is the session with the spec's fields,
        C{serverId} being C{origin}.
        """
        session = SessionInfo("s1", 1, "ana", "srv-x", "10.0.0.1", {5})
        out = encodedDict(ClientConnected("srv-b", session))
        self.assertEqual(
            out,
            {"type": "CLIENT_CONNECTED", "origin": "srv-b",
             "payload": {"serverId": "srv-b", "sessionId": "s1", "clienteId": 1,
                         "usuario": "ana", "ip": "10.0.0.1", "canales": [5]}},
        )
        self.assertEqual(json.loads(encodeConnected("srv-b", session)), out)

    def test_emptySync(self):
        """A SYNC_STATE of no session is written with an empty list."""
        self.assertEqual(
            json.loads(encodeSync("srv-a", [])),
            {"type": "SYNC_STATE", "origin": "srv-a", "payload": {"sessions": []}},
        )

    def test_sessionWithoutServerIdOrIpDecodes(self):
        """
        A session without C{serverId} or C{ip} still decodes (the receiver
        attributes it to the link's server).
        """
        data = line({"type": "CLIENT_CONNECTED", "origin": "srv-a",
                     "payload": {"sessionId": "s", "clienteId": 1, "usuario": "u"}})
        p = decode(data).payload
        self.assertEqual((p.serverId, p.ip, p.canales), (None, None, set()))

    def test_canalesDuplicatesCollapse(self):
        """
        C{canales} is a set: duplicates collapse on read and are written
        once, sorted.
        """
        d = specDict("CLIENT_CONNECTED")
        d["payload"]["canales"] = [8, 3, 8, 3, 3]
        message = decode(line(d))
        self.assertEqual(message.payload.canales, {3, 8})
        self.assertEqual(encodedDict(message)["payload"]["canales"], [3, 8])
        s = specDict("SYNC_STATE")
        s["payload"]["sessions"][0]["canales"] = [1, 1, 1]
        self.assertEqual(decode(line(s)).payload.sessions[0].canales, {1})


class UnknownFieldTests(unittest.SynchronousTestCase):
    """
    Fields the spec does not name (the later revision's C{target},
    C{route}, C{instanceId}, or anything) are ignored on read and never
    written.
    """

    def test_envelopeFieldsIgnored(self):
        """
        C{target}, C{route} and an invented field on the envelope of every
        type are ignored; re-encoding gives the spec's object.
        """
        for typeName in EXPECTED_CLASSES:
            d = specDict(typeName)
            d["target"] = "srv-b"
            d["route"] = ["srv-a", "srv-c"]
            d["zzz"] = {"nested": [1, 2]}
            message = decode(line(d))
            self.assertEqual(encodedDict(message), specDict(typeName), typeName)

    def test_nullTargetIgnored(self):
        """A null C{target} is accepted too."""
        d = specDict("BROADCAST")
        d["target"] = None
        self.assertEqual(encodedDict(decode(line(d))), specDict("BROADCAST"))

    def test_payloadFieldsIgnored(self):
        """
        C{instanceId} in HELLO and unknown fields in every payload (and in
        sessions) are ignored and not written.
        """
        for typeName in EXPECTED_CLASSES:
            d = specDict(typeName)
            d["payload"]["instanceId"] = "8d3c"
            d["payload"]["extra"] = [1, {"a": None}]
            if typeName == "SYNC_STATE":
                d["payload"]["sessions"][0]["estado"] = "ONLINE"
            message = decode(line(d))
            self.assertEqual(encodedDict(message), specDict(typeName), typeName)

    def test_unknownFieldNotValidated(self):
        """
        An unknown field is skipped whatever its value (even a value whose
        type would be wrong for a known field).
        """
        d = specDict("HELLO")
        d["route"] = 5
        d["payload"]["instanceId"] = {"deep": [True, None, 1.5]}
        self.assertIsInstance(decode(line(d)), Hello)


class RawMessageTests(unittest.SynchronousTestCase):
    """
    A forwarded C{message} is kept as the exact bytes received and written
    back verbatim.
    """

    odd = b'{ "z" :1,\t"a":  [ 1 , 2 ] ,"m":{"k":"v\\u00e9"} , "n" : null }'

    def forwardLine(self, typeName: str, message: bytes) -> bytes:
        """A line of C{typeName} carrying C{message} bytes as its message."""
        routing = {
            "DIRECT_MESSAGE": b'"userId": 42, ',
            "CHANNEL_MESSAGE": b'"canalId": 3, ',
            "SESSION_MESSAGE": b'"sessionId": "s-1", ',
            "BROADCAST": b"",
        }[typeName]
        return (
            b'{"type": "' + typeName.encode() + b'", "origin": "srv-a", '
            b'"payload": {' + routing + b'"message": ' + message + b"}}"
        )

    def test_bytesKeptExactly(self):
        """
        Whitespace, key order and escapes inside C{message} are kept: the
        Raw holds exactly the received bytes.
        """
        for typeName in FORWARD_TYPES:
            message = decode(self.forwardLine(typeName, self.odd))
            self.assertEqual(bytes(message.payload.message), self.odd, typeName)

    def test_reEmittedVerbatim(self):
        """
        Encoding a decoded forwarded message writes the received bytes
        verbatim inside a spec envelope.
        """
        for typeName in FORWARD_TYPES:
            out = encode(decode(self.forwardLine(typeName, self.odd)))
            self.assertIn(b'"message":' + self.odd + b"}}\n", out)
            parsed = json.loads(out)
            self.assertEqual(parsed["payload"]["message"], json.loads(self.odd))
            self.assertEqual(list(parsed["payload"]["message"]), ["z", "a", "m", "n"])

    def test_anyJsonValue(self):
        """
        C{message} may be any JSON value: a string, a number, an array,
        null.
        """
        for value in (b'"text"', b"12.5", b"[1, [2]]", b"null", b"true"):
            message = decode(self.forwardLine("BROADCAST", value))
            self.assertEqual(bytes(message.payload.message), value)
            self.assertIn(b'"message":' + value, encode(message))

    def test_rawMessage(self):
        """
        L{rawMessage} encodes an application value once; a L{msgspec.Raw}
        passes through; a non-serialisable value raises C{TypeError}.
        """
        raw = rawMessage({"command": "EVENT", "n": [1, 2]})
        self.assertEqual(json.loads(bytes(raw)), {"command": "EVENT", "n": [1, 2]})
        self.assertIs(rawMessage(raw), raw)
        multi = rawMessage(msgspec.Raw(b'{\n  "a": [1,\n 2]\n}'))
        self.assertEqual(bytes(multi), b'{   "a": [1,  2] }')
        self.assertRaises(TypeError, rawMessage, object())
        self.assertEqual(encodeRaw({"a": 1}), b'{"a":1}')


class DisconnectAndMembershipTests(unittest.SynchronousTestCase):
    """
    CLIENT_DISCONNECTED with no sessionId, and CHANNEL_MEMBERSHIP actions.
    """

    def test_disconnectNullSessionId(self):
        """A null C{sessionId} decodes as C{None} and is written as null."""
        d = specDict("CLIENT_DISCONNECTED")
        d["payload"]["sessionId"] = None
        message = decode(line(d))
        self.assertIsNone(message.payload.sessionId)
        self.assertEqual(encodedDict(message), d)

    def test_disconnectAbsentSessionId(self):
        """
        An absent C{sessionId} decodes as C{None}; the spec's field is still
        written (as null).
        """
        d = specDict("CLIENT_DISCONNECTED")
        del d["payload"]["sessionId"]
        message = decode(line(d))
        self.assertIsNone(message.payload.sessionId)
        self.assertEqual(message.payload.clienteId, 12)
        out = encodedDict(message)
        self.assertEqual(out["payload"], {"sessionId": None, "clienteId": 12})

    def test_disconnectBuilt(self):
        """A built CLIENT_DISCONNECTED has exactly the spec's fields."""
        out = encodedDict(ClientDisconnected(
            "srv-a", ClientDisconnectedPayload(12, "ce9fb813-3d66-450e-8d20-85f7da7338a0")))
        self.assertEqual(out, specDict("CLIENT_DISCONNECTED"))

    def test_actionCaseInsensitive(self):
        """
        C{joined} is true for JOIN in any case; any other action (LEAVE,
        PART, empty) is a leave.  The action is written back as received.
        """
        for action, joined in [("JOIN", True), ("join", True), ("Join", True),
                               ("jOiN", True), ("LEAVE", False), ("leave", False),
                               ("PART", False), ("", False), ("JOINED", False)]:
            d = specDict("CHANNEL_MEMBERSHIP")
            d["payload"]["action"] = action
            message = decode(line(d))
            self.assertEqual(message.joined, joined, action)
            self.assertEqual(encodedDict(message)["payload"]["action"], action)




class EncodeTests(unittest.SynchronousTestCase):
    """
    Encoded lines are one compact line ending in C{\\n}, with C{type}
    first.
    """

    def test_oneLine(self):
        """
        Every type, decoded from a compact line (as the link receives it),
        encodes to exactly one line ending in C{\\n}, C{type} first.
        """
        for typeName in EXPECTED_CLASSES:
            out = encode(decode(compact(typeName)))
            self.assertEqual(out.count(b"\n"), 1)
            self.assertTrue(out.endswith(b"\n"))
            self.assertTrue(out.startswith(b'{"type":"' + typeName.encode() + b'"'), out)

    def test_moduleExports(self):
        """Every name in C{__all__} exists."""
        for name in codec.__all__:
            self.assertTrue(hasattr(codec, name), name)

    def test_messagesReExported(self):
        """
        Every name of L{clustersync.wire.messages} is the same object from
        L{clustersync.wire.codec}, where plugins import them from.
        """
        for name in messages.__all__:
            if name != "Int64":
                self.assertIs(getattr(codec, name), getattr(messages, name), name)
