"""
Tests for L{clustersync.wire.codec.decode} on bad input: one
L{ProtocolError}, naming type and field, for every kind of bad line.
"""

from __future__ import annotations

import json

from twisted.trial import unittest

from clustersync.wire.codec import ProtocolError, decode
from clustersync.wire.messages import MAX_ID_LENGTH, MAX_IP_LENGTH, MAX_NAME_LENGTH

from tests.codecsupport import EXPECTED_CLASSES, compact, encodedDict, line, specDict


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


class StringBoundTests(unittest.TestCase):
    """
    Every string field a peer sends has a length bound: a longer value makes
    the line a L{ProtocolError} naming the field, so the node logs, counts
    and drops it and its state never holds the value.
    """

    def connected(self, **fields) -> bytes:
        """A CLIENT_CONNECTED line with C{fields} overriding a valid session."""
        session = {"serverId": "srv-a", "sessionId": "s-1", "clienteId": 1,
                   "usuario": "ana", "ip": "10.0.0.1", "canales": [3]}
        session.update(fields)
        return json.dumps({"type": "CLIENT_CONNECTED", "origin": "srv-a",
                           "payload": session}).encode()

    def test_atTheBoundAccepted(self) -> None:
        """Values exactly at each bound decode."""
        message = decode(self.connected(
            sessionId="s" * MAX_ID_LENGTH, serverId="v" * MAX_ID_LENGTH,
            usuario="u" * MAX_NAME_LENGTH, ip="1" * MAX_IP_LENGTH))
        self.assertEqual(len(message.payload.usuario), MAX_NAME_LENGTH)

    def test_overTheBoundRefused(self) -> None:
        """One character over any bound is refused, naming the field."""
        for field, bound in (("sessionId", MAX_ID_LENGTH), ("serverId", MAX_ID_LENGTH),
                             ("usuario", MAX_NAME_LENGTH), ("ip", MAX_IP_LENGTH)):
            with self.assertRaises(ProtocolError) as caught:
                decode(self.connected(**{field: "x" * (bound + 1)}))
            self.assertIn(field, str(caught.exception))

    def test_huge(self) -> None:
        """A 10 MB user name is refused like a slightly long one."""
        with self.assertRaises(ProtocolError):
            decode(self.connected(usuario="x" * 10_000_000))

    def test_otherMessages(self) -> None:
        """origin, HELLO's serverId and every payload sessionId are bounded too."""
        long = "x" * (MAX_ID_LENGTH + 1)
        lines = [
            {"type": "HELLO", "origin": "srv-a", "payload": {"serverId": long}},
            {"type": "HELLO", "origin": long, "payload": {"serverId": "srv-a"}},
            {"type": "CLIENT_DISCONNECTED", "origin": "srv-a",
             "payload": {"sessionId": long, "clienteId": 1}},
            {"type": "CHANNEL_MEMBERSHIP", "origin": "srv-a",
             "payload": {"sessionId": long, "clienteId": 1, "canalId": 3, "action": "JOIN"}},
            {"type": "SESSION_MESSAGE", "origin": "srv-a",
             "payload": {"sessionId": long, "message": 1}},
            {"type": "SYNC_STATE", "origin": "srv-a", "payload": {"sessions": [
                {"serverId": "srv-a", "sessionId": long, "clienteId": 1,
                 "usuario": "ana", "ip": "1", "canales": []}]}},
        ]
        for value in lines:
            with self.assertRaises(ProtocolError):
                decode(json.dumps(value).encode())
