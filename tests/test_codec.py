"""
Tests for L{clustersync.wire.codec}: the nine spec message types decoded from the
spec's own examples and re-encoded with exactly the spec's fields; unknown
fields; forwarded C{message} bytes kept verbatim; and one L{ProtocolError},
naming type and field, for every kind of bad input.
"""

from __future__ import annotations

import json
import random

import msgspec
from twisted.trial import unittest

from clustersync.wire import codec
from clustersync.wire.codec import (
    MESSAGE_TYPES,
    Broadcast,
    ChannelMembership,
    ChannelMessage,
    ClientConnected,
    ClientDisconnected,
    ClientDisconnectedPayload,
    DirectEncoder,
    DirectMessage,
    Hello,
    ProtocolError,
    SessionInfo,
    SessionMessage,
    SyncState,
    SyncStatePayload,
    decode,
    decodeLines,
    encode,
    encodeConnected,
    encodeRaw,
    encodeSync,
    messageBytes,
    rawMessage,
)

# The examples of ../shared/spec/peer-protocol.md, copied literally.
SPEC_EXAMPLES = {
    "HELLO": """{
  "type": "HELLO",
  "origin": "srv-a",
  "payload": {
    "serverId": "srv-a"
  }
}""",
    "SYNC_STATE": """{
  "type": "SYNC_STATE",
  "origin": "srv-a",
  "payload": {
    "sessions": [
      {
        "serverId": "srv-a",
        "sessionId": "0c6f4e25-5e3a-4d1e-8cb7-1ce5bbf6093f",
        "clienteId": 12,
        "usuario": "carlos",
        "ip": "192.168.1.10",
        "canales": [3, 8]
      }
    ]
  }
}""",
    "CLIENT_CONNECTED": """{
  "type": "CLIENT_CONNECTED",
  "origin": "srv-a",
  "payload": {
    "serverId": "srv-a",
    "sessionId": "ce9fb813-3d66-450e-8d20-85f7da7338a0",
    "clienteId": 12,
    "usuario": "carlos",
    "ip": "192.168.1.10",
    "canales": [3, 8]
  }
}""",
    "CLIENT_DISCONNECTED": """{
  "type": "CLIENT_DISCONNECTED",
  "origin": "srv-a",
  "payload": {
    "sessionId": "ce9fb813-3d66-450e-8d20-85f7da7338a0",
    "clienteId": 12
  }
}""",
    "CHANNEL_MEMBERSHIP": """{
  "type": "CHANNEL_MEMBERSHIP",
  "origin": "srv-a",
  "payload": {
    "sessionId": "ce9fb813-3d66-450e-8d20-85f7da7338a0",
    "clienteId": 12,
    "canalId": 3,
    "action": "JOIN"
  }
}""",
    "DIRECT_MESSAGE": """{
  "type": "DIRECT_MESSAGE",
  "origin": "srv-a",
  "payload": {
    "userId": 42,
    "message": {
      "command": "EVENT",
      "payload": {
        "evento": "NEW_MESSAGE",
        "mensajeId": 981,
        "contenido": "hola"
      }
    }
  }
}""",
    "CHANNEL_MESSAGE": """{
  "type": "CHANNEL_MESSAGE",
  "origin": "srv-a",
  "payload": {
    "canalId": 3,
    "message": {
      "command": "EVENT",
      "payload": {
        "evento": "NEW_CHANNEL_MESSAGE",
        "mensajeId": 982,
        "contenido": {
          "rutaArchivo": "media/audio/usuarios/3/rec_456.wav"
        }
      }
    }
  }
}""",
    "SESSION_MESSAGE": """{
  "type": "SESSION_MESSAGE",
  "origin": "srv-a",
  "payload": {
    "sessionId": "ce9fb813-3d66-450e-8d20-85f7da7338a0",
    "message": {
      "command": "EVENT",
      "payload": {
        "tipo": "ACK"
      }
    }
  }
}""",
    "BROADCAST": """{
  "type": "BROADCAST",
  "origin": "srv-a",
  "payload": {
    "message": {
      "command": "EVENT",
      "payload": {
        "tipo": "SERVER_ALERT",
        "mensaje": "El servidor srv-a entrará en mantenimiento"
      }
    }
  }
}""",
}

EXPECTED_CLASSES = {
    "HELLO": Hello,
    "SYNC_STATE": SyncState,
    "CLIENT_CONNECTED": ClientConnected,
    "CLIENT_DISCONNECTED": ClientDisconnected,
    "CHANNEL_MEMBERSHIP": ChannelMembership,
    "DIRECT_MESSAGE": DirectMessage,
    "CHANNEL_MESSAGE": ChannelMessage,
    "SESSION_MESSAGE": SessionMessage,
    "BROADCAST": Broadcast,
}

FORWARD_TYPES = ("DIRECT_MESSAGE", "CHANNEL_MESSAGE", "SESSION_MESSAGE", "BROADCAST")


def example(typeName: str) -> bytes:
    """The spec's example of C{typeName}, as UTF-8 bytes (multi-line)."""
    return SPEC_EXAMPLES[typeName].encode("utf-8")


def compact(typeName: str) -> bytes:
    """The spec's example of C{typeName} as one compact line."""
    return json.dumps(
        json.loads(SPEC_EXAMPLES[typeName]), ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")


def line(value: dict) -> bytes:
    """C{value} as one JSON line (no delimiter)."""
    return json.dumps(value).encode("utf-8")


def specDict(typeName: str) -> dict:
    """A fresh parsed copy of the spec's example of C{typeName}."""
    return json.loads(SPEC_EXAMPLES[typeName])


def encodedDict(message) -> dict:
    """Encode C{message}, check the framing, and parse the line back."""
    data = encode(message)
    assert data.endswith(b"\n") and data.count(b"\n") == 1, data
    return json.loads(data)


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


#: For each type: every field the spec requires, as a path in the example.
REQUIRED = {
    "HELLO": [("origin",), ("payload",), ("payload", "serverId")],
    "SYNC_STATE": [
        ("origin",), ("payload",), ("payload", "sessions"),
        ("payload", "sessions", 0, "sessionId"),
        ("payload", "sessions", 0, "clienteId"),
        ("payload", "sessions", 0, "usuario"),
    ],
    "CLIENT_CONNECTED": [
        ("origin",), ("payload",), ("payload", "sessionId"),
        ("payload", "clienteId"), ("payload", "usuario"),
    ],
    "CLIENT_DISCONNECTED": [("origin",), ("payload",), ("payload", "clienteId")],
    "CHANNEL_MEMBERSHIP": [
        ("origin",), ("payload",), ("payload", "sessionId"),
        ("payload", "clienteId"), ("payload", "canalId"), ("payload", "action"),
    ],
    "DIRECT_MESSAGE": [("origin",), ("payload",), ("payload", "userId"),
                       ("payload", "message")],
    "CHANNEL_MESSAGE": [("origin",), ("payload",), ("payload", "canalId"),
                        ("payload", "message")],
    "SESSION_MESSAGE": [("origin",), ("payload",), ("payload", "sessionId"),
                        ("payload", "message")],
    "BROADCAST": [("origin",), ("payload",), ("payload", "message")],
}

STRING_FIELDS = {"origin", "serverId", "sessionId", "usuario", "action"}
INT_FIELDS = {"clienteId", "canalId", "userId"}


def jsonPath(path: tuple) -> str:
    """C{("payload", "sessions", 0, "x")} -> C{"$.payload.sessions[0].x"}."""
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def mutate(typeName: str, path: tuple, value=None, delete=False) -> bytes:
    """The spec example of C{typeName} with the field at C{path} changed."""
    d = specDict(typeName)
    parent = d
    for part in path[:-1]:
        parent = parent[part]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return line(d)


class ProtocolErrorTests(unittest.SynchronousTestCase):
    """
    Every bad input raises L{ProtocolError} with a C{reason}, the
    C{messageType} when it could be read, and the C{field} at fault.
    """

    def assertError(self, data: bytes, reason: str, messageType=None, field=None):
        """
        Decoding C{data} raises a L{ProtocolError} with these attributes,
        whose text names the type and field.
        """
        e = self.assertRaises(ProtocolError, decode, data)
        self.assertEqual((e.reason, e.messageType, e.field),
                         (reason, messageType, field), f"{data!r}: {e}")
        self.assertIsInstance(e, ValueError)
        if messageType is not None:
            self.assertIn(messageType, str(e))
        if field is not None:
            self.assertIn(field, str(e))
        return e

    def test_invalidUtf8(self):
        """
        Invalid UTF-8 anywhere is refused with reason C{utf8}: at the start,
        in a known string, in an unknown field, and inside a forwarded
        C{message} (kept raw, so not otherwise checked).
        """
        self.assertError(b"\xff\xfe{}", "utf8")
        self.assertError(
            b'{"type":"HELLO","origin":"\xc3","payload":{"serverId":"a"}}', "utf8", "HELLO")
        self.assertError(
            b'{"type":"HELLO","origin":"a","x\xff":1,"payload":{"serverId":"a"}}',
            "utf8", "HELLO")
        self.assertError(
            b'{"type":"BROADCAST","origin":"a","payload":{"message":"\xed\xa0\x80"}}',
            "utf8", "BROADCAST")

    def test_invalidJson(self):
        """Malformed, truncated, empty or trailing-garbage input is C{json}."""
        for data in (b"", b"{", b"nope", b'{"type":"HELLO",}', compact("HELLO") + b" x",
                     b"{'type': 'HELLO'}"):
            self.assertError(data, "json")

    def test_notAnObject(self):
        """A JSON value that is not an object is C{envelope}."""
        for data in (b"[]", b"[1, 2]", b'"HELLO"', b"12", b"null", b"true"):
            self.assertError(data, "envelope")

    def test_missingType(self):
        """An object without C{type} is C{type}, field C{$.type}."""
        d = specDict("HELLO")
        del d["type"]
        self.assertError(line(d), "type", None, "$.type")
        self.assertError(b"{}", "type", None, "$.type")

    def test_unknownType(self):
        """
        An unknown C{type} value (including a wrong-case one) is C{type},
        naming that type.
        """
        for name in ("PING", "hello", "ROUTE", ""):
            d = specDict("HELLO")
            d["type"] = name
            e = self.assertError(line(d), "type", name, "$.type")
            self.assertIn("unknown message type", str(e))

    def test_typeNotString(self):
        """A non-string C{type} is C{type}."""
        for value in (5, None, ["HELLO"], {"a": 1}):
            d = specDict("HELLO")
            d["type"] = value
            self.assertError(line(d), "type", None, "$.type")

    def test_everyMissingRequiredField(self):
        """
        Removing any required field of any type is C{field}, naming the type
        and the field's JSON path.
        """
        for typeName, paths in REQUIRED.items():
            for path in paths:
                self.assertError(
                    mutate(typeName, path, delete=True), "field", typeName, jsonPath(path))

    def test_everyWrongType(self):
        """
        A value of the wrong JSON type in any required field of any type is
        C{field}, naming the type and the field.
        """
        for typeName, paths in REQUIRED.items():
            for path in paths:
                last = path[-1]
                if last in STRING_FIELDS:
                    bad = [12, None, ["x"], {"a": "b"}, True]
                elif last in INT_FIELDS:
                    bad = ["12", None, 1.5, 12.0, [12], True, False]
                elif last in ("payload", "sessions"):
                    bad = ["x", 12, None] + ([{}] if last == "sessions" else [[]])
                elif last == "message":
                    continue  # any JSON value is valid
                else:
                    self.fail(f"no bad values for {path}")
                for value in bad:
                    self.assertError(
                        mutate(typeName, path, value), "field", typeName, jsonPath(path))

    def test_optionalFieldsWrongType(self):
        """
        Optional fields are still type-checked when present: a session's
        C{ip}, C{serverId} and C{canales}, and CLIENT_DISCONNECTED's
        C{sessionId}.
        """
        for name, value in [("ip", 5), ("serverId", 7), ("canales", "3"),
                            ("canales", 3), ("canales", {"3": 1})]:
            self.assertError(mutate("CLIENT_CONNECTED", ("payload", name), value),
                             "field", "CLIENT_CONNECTED", f"$.payload.{name}")
        self.assertError(
            mutate("SYNC_STATE", ("payload", "sessions", 0, "canales"), [3, "8"]),
            "field", "SYNC_STATE", "$.payload.sessions[0].canales[1]")
        self.assertError(
            mutate("SYNC_STATE", ("payload", "sessions", 0, "canales"), [3, True]),
            "field", "SYNC_STATE", "$.payload.sessions[0].canales[1]")
        self.assertError(mutate("CLIENT_DISCONNECTED", ("payload", "sessionId"), 5),
                         "field", "CLIENT_DISCONNECTED", "$.payload.sessionId")

    def test_secondSessionNamed(self):
        """An error in the second session of a SYNC_STATE names index 1."""
        d = specDict("SYNC_STATE")
        d["payload"]["sessions"].append({"sessionId": "s2", "usuario": "u"})
        self.assertError(line(d), "field", "SYNC_STATE", "$.payload.sessions[1].clienteId")

    def test_int64Bounds(self):
        """
        Ids accept the whole signed 64-bit range and refuse one past either
        end (and far past it).
        """
        low, high = -(2**63), 2**63 - 1
        for typeName, path in [("DIRECT_MESSAGE", ("payload", "userId")),
                               ("CHANNEL_MESSAGE", ("payload", "canalId")),
                               ("CLIENT_DISCONNECTED", ("payload", "clienteId")),
                               ("CHANNEL_MEMBERSHIP", ("payload", "canalId")),
                               ("CLIENT_CONNECTED", ("payload", "clienteId")),
                               ("SYNC_STATE", ("payload", "sessions", 0, "clienteId"))]:
            for ok in (low, high, 0, -1):
                data = mutate(typeName, path, ok)
                self.assertEqual(encodedDict(decode(data)), json.loads(data))
            for bad in (high + 1, low - 1, 2**64, 10**30, -(10**30)):
                self.assertError(mutate(typeName, path, bad), "field", typeName, jsonPath(path))
        self.assertEqual(
            decode(mutate("CLIENT_CONNECTED", ("payload", "canales"), [low, high])).payload.canales,
            {low, high})
        self.assertError(mutate("CLIENT_CONNECTED", ("payload", "canales"), [high + 1]),
                         "field", "CLIENT_CONNECTED", "$.payload.canales[0]")

    def test_boolIsNotInt(self):
        """C{true}/C{false} are refused where an integer is required."""
        for value in (True, False):
            self.assertError(mutate("DIRECT_MESSAGE", ("payload", "userId"), value),
                             "field", "DIRECT_MESSAGE", "$.payload.userId")

    def test_errorNeverOtherException(self):
        """
        Arbitrary truncations and byte flips of every example raise nothing
        but L{ProtocolError} (or decode).
        """
        for typeName in EXPECTED_CLASSES:
            data = compact(typeName)
            for i in range(len(data)):
                for candidate in (data[:i], data[:i] + b"\xff" + data[i + 1:],
                                  data[:i] + b'"' + data[i + 1:]):
                    try:
                        decode(candidate)
                    except ProtocolError:
                        pass


class DirectEncoderTests(unittest.SynchronousTestCase):
    """
    The send hot path builds a DIRECT_MESSAGE line by concatenation
    (L{DirectEncoder}); it must be the very bytes the typed encoder writes.
    """

    def test_sameBytesAsEncode(self):
        """
        For origins needing escapes, ids at the Int64 bounds and messages of
        every JSON kind (a L{msgspec.Raw} with a newline included),
        L{DirectEncoder.encode} equals L{encode} of the L{DirectMessage},
        the first time and again from its kept prefix, and so does its
        C{prefix} + L{codec.encodeValue} + L{codec.DIRECT_SUFFIX} for a
        value that is not a L{msgspec.Raw}; the line decodes back to the
        same routing and message.
        """
        origins = ["srv-a", 'sr"v\\é', "\u2603 \t"]
        ids = [0, 7, -1, 2**63 - 1, -(2**63)]
        values = [{"t": 1, "p": "x\ny"}, "hola", 42, None, [1, {"a": []}], 1.5, True,
                  msgspec.Raw(b'{"a":\n1}')]
        for origin in origins:
            encoder = DirectEncoder(origin)
            for userId in ids:
                for value in values:
                    expected = encode(DirectMessage(origin, codec.DirectMessagePayload(
                        userId, rawMessage(value))))
                    for attempt in ("first", "kept"):
                        line = encoder.encode(userId, value)
                        self.assertEqual(line, expected, (origin, userId, value, attempt))
                    if not isinstance(value, msgspec.Raw):
                        # The way a caller that keeps the prefix builds the line.
                        self.assertEqual(encoder.prefix(userId) + codec.encodeValue(value)
                                         + codec.DIRECT_SUFFIX, expected)
                    back = decode(line[:-1])
                    self.assertEqual((back.origin, back.payload.userId), (origin, userId))
                    self.assertEqual(bytes(back.payload.message), bytes(rawMessage(value)))

    def test_prefixesKeptUpToCacheSize(self):
        """
        L{DirectEncoder} keeps at most C{cacheSize} users' prefixes: the one
        after that starts the cache afresh, and every line stays right.
        """
        encoder = DirectEncoder("a", cacheSize=3)
        for userId in (1, 2, 3):
            encoder.encode(userId, 0)
        self.assertEqual(sorted(encoder._prefixes), [1, 2, 3])
        self.assertIs(encoder.prefix(2), encoder.prefix(2))
        line = encoder.encode(4, 0)
        self.assertEqual(sorted(encoder._prefixes), [4])
        self.assertEqual(line, encode(DirectMessage(
            "a", codec.DirectMessagePayload(4, rawMessage(0)))))
        self.assertEqual(encoder.encode(1, 0), encode(DirectMessage(
            "a", codec.DirectMessagePayload(1, rawMessage(0)))))
        self.assertEqual(sorted(encoder._prefixes), [1, 4])

    def test_messageBytesRefusesWhatRawMessageRefuses(self):
        """
        A value JSON cannot hold is a C{TypeError} from all three, and the
        encoder writes the right line for the next value.
        """
        encoder = DirectEncoder("a")
        for value in (object(), {1j: 2}, {"a": {1, 2}.__iter__()}):
            self.assertRaises(TypeError, messageBytes, value)
            self.assertRaises(TypeError, rawMessage, value)
            e = self.assertRaises(TypeError, encoder.encode, 1, value)
            self.assertIn("not JSON-serialisable", str(e))
        self.assertEqual(encoder.encode(1, "ok"), encode(DirectMessage(
            "a", codec.DirectMessagePayload(1, rawMessage("ok")))))


def perLine(lines: list[bytes]) -> list | None:
    """What L{decode} gives for each line, or C{None} if one fails."""
    try:
        return [decode(one) for one in lines]
    except ProtocolError:
        return None


class DecodeLinesTests(unittest.SynchronousTestCase):
    """
    L{decodeLines} decodes the lines of a read in one call; it must give
    what L{decode} gives line by line, or C{None} (decode them one by one).
    """

    def validLines(self) -> list[bytes]:
        """Every spec example, compact, plus a non-ASCII and a spaced one."""
        lines = [compact(name) for name in MESSAGE_TYPES]
        lines.append(encode(DirectMessage("srv-\u00e9", codec.DirectMessagePayload(
            7, rawMessage({"texto": "canci\u00f3n \u2603"}))))[:-1])
        lines.append(json.dumps(specDict("HELLO")).encode())  # ", " and ": "
        return lines

    def test_sameAsDecode(self) -> None:
        """Valid lines, in any number, decode to what L{decode} gives."""
        lines = self.validLines()
        for count in (1, 2, len(lines)):
            got = decodeLines(lines[:count])
            self.assertIsNotNone(got)
            self.assertEqual(got, perLine(lines[:count]))
        self.assertEqual(decodeLines(lines * 50), perLine(lines * 50))

    def test_notPlainIsNone(self) -> None:
        """
        Lines that are not all plain (CR, blank, outer whitespace, not an
        object) are left to L{decode}, even when each would decode.
        """
        hello = compact("HELLO")
        for lines in ([hello + b"\r"], [hello, b"", hello], [b" " + hello], [hello + b" "],
                      [b"[1]"], [hello, b"[1]"], []):
            self.assertIsNone(decodeLines(lines), lines)

    def test_oneBadLineIsNone(self) -> None:
        """One line that does not decode, or not as UTF-8, makes it C{None}."""
        hello = compact("HELLO")
        bad = [
            b'{"type":"HELLO","origin":"a"}',
            b'{"type":"NOPE","origin":"a","payload":{}}',
            b'{"type":"HELLO","origin":"\xff","payload":{"serverId":"a"}}',
            b'{"type":"HELLO","origin":"a","payload":{"serverId":"a"}',
            b"{" * 5000 + b"}" * 5000,
        ]
        for one in bad:
            self.assertIsNone(perLine([one]), one)
            self.assertIsNone(decodeLines([hello, one, hello]), one)

    def test_valuesAcrossLinesNeverPass(self) -> None:
        """
        Lines that are each invalid, but whose JSON values could pair up
        to as many values as lines (one value over two lines, two values
        on one), are refused: one value per line is all that passes.
        """
        hello = compact("HELLO")
        opened = hello[: hello.index(b'"payload":') + len(b'"payload":')]
        rest = hello[len(opened):]
        paired = [
            [opened, rest, hello + b" " + hello],
            [hello[:-1], b"}", hello + b" " + hello],
            [opened, rest + b" " + hello, hello[:-1], b"} " + hello],
        ]
        for lines in paired:
            # Decoded as a whole, they make one value per line...
            self.assertEqual(len(codec._decoder.decode_lines(b"\n".join(lines))), len(lines))
            # ...but no line is a message of its own.
            for one in lines:
                self.assertIsNone(perLine([one]), one)
            self.assertIsNone(decodeLines(lines), lines)
        for lines in ([hello + b"," + hello], [hello + hello], [hello + b" " + hello]):
            self.assertIsNone(decodeLines(lines), lines)

    def test_fuzzAgreesWithDecode(self) -> None:
        """
        Random edits of valid reads (the bytes JSON structure is made of)
        never make L{decodeLines} disagree with L{decode}: it gives their
        results when every line decodes, else C{None}.
        """
        rng = random.Random(20261129)
        pieces = [b"{", b"}", b"[", b"]", b'"', b",", b":", b" ", b"\n", b"\r", b"1", b"\xc3\xa9"]
        valid = b"\n".join(self.validLines())
        decoded = refused = 0
        for _ in range(3000):
            data = bytearray(valid)
            for _ in range(rng.randint(1, 4)):
                at = rng.randrange(len(data))
                if rng.random() < 0.5:
                    del data[at]
                else:
                    data[at:at] = rng.choice(pieces)
            lines = bytes(data).split(b"\n")
            got = decodeLines(lines)
            if got is None:
                refused += 1
            else:
                decoded += 1
                self.assertEqual(got, perLine(lines), lines)
        self.assertGreater(refused, 0)
        self.assertGreater(decoded, 0)


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
