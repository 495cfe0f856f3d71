"""
Codec choice by measurement: the work a relay does per message with
msgspec (the current codec: typed Structs, the forwarded C{message} kept
as L{msgspec.Raw}), with orjson (parse into dicts, validate by hand,
re-encode the message) and with the stdlib C{json} module.

Each variant does the same job: decode and validate a line, produce the
bytes of the forwarded C{message} (what local delivery needs), and encode
a line of the same type.
"""

from __future__ import annotations

import json

from clustersync.wire.codec import DirectMessage, DirectMessagePayload, decode, encode, encodeSync

from clustersync.bench.report import Row, timePair
from clustersync.bench.sync import PEER, makeSessions

__all__ = ["codecRows", "validateDirect", "validateSync"]

_INT64 = (-(2**63), 2**63 - 1)


def _int(v) -> int:
    if type(v) is not int or not _INT64[0] <= v <= _INT64[1]:
        raise ValueError("not an int64")
    return v


def _str(v) -> str:
    if type(v) is not str:
        raise ValueError("not a string")
    return v


def _optStr(v):
    if v is not None and type(v) is not str:
        raise ValueError("not a string or null")
    return v


def validateDirect(d) -> tuple[str, int, object]:
    """
    Hand validation of a parsed DIRECT_MESSAGE (what the dict-based codecs
    need): C{(origin, userId, message)}.
    """
    if type(d) is not dict or d.get("type") != "DIRECT_MESSAGE":
        raise ValueError("envelope")
    p = d.get("payload")
    if type(p) is not dict or "message" not in p:
        raise ValueError("payload")
    return _str(d.get("origin")), _int(p.get("userId")), p["message"]


def validateSync(d) -> list[dict]:
    """
    Hand validation of a parsed SYNC_STATE: every session's fields checked,
    its C{canales} made a set (as the state keeps them).
    """
    if type(d) is not dict or d.get("type") != "SYNC_STATE":
        raise ValueError("envelope")
    _str(d.get("origin"))
    p = d.get("payload")
    if type(p) is not dict or type(p.get("sessions")) is not list:
        raise ValueError("payload")
    out = []
    for s in p["sessions"]:
        if type(s) is not dict:
            raise ValueError("session")
        canales = s.get("canales", [])
        if type(canales) is not list:
            raise ValueError("canales")
        out.append({
            "sessionId": _str(s.get("sessionId")),
            "clienteId": _int(s.get("clienteId")),
            "usuario": _str(s.get("usuario")),
            "serverId": _optStr(s.get("serverId")),
            "ip": _optStr(s.get("ip")),
            "canales": {_int(c) for c in canales},
        })
    return out


def _variants(orjson):
    """name -> (decodeDirect, encodeDirect, decodeSync, encodeSync) callables."""
    dumps = json.dumps

    def jsonLine(obj) -> bytes:
        return dumps(obj, separators=(",", ":")).encode() + b"\n"

    def syncDict(origin, sessions):
        return {"type": "SYNC_STATE", "origin": origin, "payload": {"sessions": [
            {"serverId": origin, "sessionId": s["sessionId"], "clienteId": s["clienteId"],
             "usuario": s["usuario"], "ip": s["ip"], "canales": sorted(s["canales"])}
            for s in sessions]}}

    def msgspecDecodeDirect(line):
        m = decode(line)
        return m, bytes(m.payload.message)

    def msgspecEncodeDirect(decoded):
        m = decoded[0]
        return encode(DirectMessage("bench-b", DirectMessagePayload(m.payload.userId, m.payload.message)))

    variants = {
        "msgspec": (
            msgspecDecodeDirect,
            msgspecEncodeDirect,
            lambda line: decode(line).payload.sessions,
            lambda sessions: encodeSync("bench-b", sessions),
        ),
        "json": (
            lambda line: (lambda v: (v, dumps(v[2], separators=(",", ":")).encode()))(
                validateDirect(json.loads(line))),
            lambda decoded: jsonLine({"type": "DIRECT_MESSAGE", "origin": "bench-b", "payload": {
                "userId": decoded[0][1], "message": decoded[0][2]}}),
            lambda line: validateSync(json.loads(line)),
            lambda sessions: jsonLine(syncDict("bench-b", sessions)),
        ),
    }
    if orjson is not None:
        odumps = orjson.dumps
        variants["orjson"] = (
            lambda line: (lambda v: (v, odumps(v[2])))(validateDirect(orjson.loads(line))),
            lambda decoded: odumps({"type": "DIRECT_MESSAGE", "origin": "bench-b", "payload": {
                "userId": decoded[0][1], "message": decoded[0][2]}}) + b"\n",
            lambda line: validateSync(orjson.loads(line)),
            lambda sessions: odumps(syncDict("bench-b", sessions)) + b"\n",
        )
    return variants


def codecRows(directCount: int, syncSessions: int, repeat: int = 5) -> list[Row]:
    """
    Per-message decode+encode time of a DIRECT_MESSAGE (over C{directCount}
    messages) and of a C{syncSessions}-session SYNC_STATE, msgspec next to
    orjson and to stdlib json.
    """
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is a test dependency
        orjson = None
    variants = _variants(orjson)
    from clustersync.bench.relaysink import bareLine

    direct = [bareLine(1_700_000_000_000_000_000 + i, b"x" * 93)[:-1] for i in range(directCount)]
    sync = encodeSync(PEER, makeSessions(syncSessions))[:-1]
    # The encoders take what the matching decoder produced.
    decodedDirect = {name: [v[0](line) for line in direct] for name, v in variants.items()}
    decodedSync = {name: v[2](sync) for name, v in variants.items()}

    def directRound(name):
        dec, enc = variants[name][0], variants[name][1]
        for line in direct:
            enc(dec(line))

    def syncRound(name):
        variants[name][3](variants[name][2](sync))

    def directDecode(name):
        dec = variants[name][0]
        for line in direct:
            dec(line)

    def directEncode(name):
        enc = variants[name][1]
        for d in decodedDirect[name]:
            enc(d)

    rows = []
    for ref in [n for n in ("orjson", "json") if n in variants]:
        label = "orjson (loads + hand validation)" if ref == "orjson" else "stdlib json (loads + hand validation)"
        value, reference = timePair(lambda: directRound("msgspec"), lambda: directRound(ref), repeat)
        rows.append(Row("DIRECT_MESSAGE decode + encode, per message", value / directCount * 1e6,
                        reference / directCount * 1e6, "µs", label,
                        f"{len(direct[0]) + 1}-byte line, message bytes for delivery"))
        value, reference = timePair(lambda: directDecode("msgspec"), lambda: directDecode(ref), repeat)
        rows.append(Row("  decode only", value / directCount * 1e6,
                        reference / directCount * 1e6, "µs", label,
                        "msgspec keeps message as Raw; dicts re-encode it"))
        value, reference = timePair(lambda: directEncode("msgspec"), lambda: directEncode(ref), repeat)
        rows.append(Row("  encode only", value / directCount * 1e6,
                        reference / directCount * 1e6, "µs", label, ""))
        value, reference = timePair(lambda: syncRound("msgspec"), lambda: syncRound(ref), repeat)
        rows.append(Row(f"SYNC_STATE decode + encode, {syncSessions:,} sessions", value * 1e3,
                        reference * 1e3, "ms", label, f"{len(sync) / 1e6:.2f} MB line"))
        value, reference = timePair(
            lambda: variants["msgspec"][2](sync), lambda: variants[ref][2](sync), repeat)
        rows.append(Row("  decode only", value * 1e3, reference * 1e3, "ms", label,
                        "typed records vs validated dicts"))
        value, reference = timePair(
            lambda: variants["msgspec"][3](decodedSync["msgspec"]),
            lambda: variants[ref][3](decodedSync[ref]), repeat)
        rows.append(Row("  encode only", value * 1e3, reference * 1e3, "ms", label, ""))
    return rows
