"""
SYNC_STATE figures: decode + apply time, encode time, and the memory a
remote session costs in L{ClusterState}, each next to a reference measured
in the same process right before or after it.
"""

from __future__ import annotations

import gc
import json
import random
import tracemalloc

from clustersync.wire.codec import SessionInfo, decode, encodeSync
from clustersync.state.cluster import ClusterState

from clustersync.bench.report import Row, timePair

__all__ = ["makeSessions", "syncLine", "syncRows", "memoryRows"]

PEER = "bench-peer"


def makeSessions(count: int, seed: int = 1) -> list[SessionInfo]:
    """
    C{count} realistic sessions: ids like the existing servers', one user
    in ten with two sessions, 0-3 channels out of 500, an IPv4 address.
    """
    rnd = random.Random(seed)
    out = []
    for i in range(count):
        clienteId = 100000 + (i if i % 10 else i - 1)
        out.append(
            SessionInfo(
                f"session-{i}",
                clienteId,
                f"user{clienteId}",
                PEER,
                f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}",
                {rnd.randrange(1, 501) for _ in range(rnd.randrange(4))},
            )
        )
    return out


def syncLine(count: int) -> bytes:
    """The SYNC_STATE line (without its C{\\n}) of C{count} sessions."""
    return encodeSync(PEER, makeSessions(count))[:-1]


def _apply(line: bytes) -> ClusterState:
    state = ClusterState("bench-local")
    state.replaceServer(PEER, decode(line).payload.sessions)
    return state


def _plainDicts(line: bytes) -> dict:
    return {s["sessionId"]: s for s in json.loads(line)["payload"]["sessions"]}


def syncRows(count: int, repeat: int = 3) -> list[Row]:
    """
    Decode + L{ClusterState.replaceServer} of a C{count}-session SYNC_STATE,
    the same with an unchanged re-sync, and L{encodeSync}.
    """
    sessions = makeSessions(count)
    line = encodeSync(PEER, sessions)[:-1]
    rows = []
    applyT, loadsT = timePair(lambda: _apply(line), lambda: json.loads(line), repeat)
    rows.append(Row(
        f"SYNC_STATE decode + replaceServer, {count:,} sessions", applyT * 1e3, loadsT * 1e3,
        "ms", "stdlib json.loads of the same line",
        f"{len(line) / 1e6:.1f} MB line; {count / applyT:,.0f} sessions/s",
    ))
    decodeT, _ = timePair(lambda: decode(line), lambda: None, repeat)
    dictT, loadsT2 = timePair(lambda: _plainDicts(line), lambda: json.loads(line), repeat)
    rows.append(Row(
        "  of which msgspec decode to typed SessionInfo", decodeT * 1e3, loadsT2 * 1e3, "ms",
        "stdlib json.loads of the same line", "validates every field, canales as sets",
    ))
    rows.append(Row(
        "  decode + apply, vs a plain dict of the records", applyT * 1e3, dictT * 1e3, "ms",
        "json.loads + dict sessionId -> record", "the reference has no validation and no index",
    ))
    state = _apply(line)
    again = decode(line).payload.sessions
    resyncT, _ = timePair(
        lambda: state.replaceServer(PEER, again), lambda: None, repeat
    )
    rows.append(Row(
        "re-sync with nothing changed (replaceServer only)", resyncT * 1e3, loadsT * 1e3, "ms",
        "stdlib json.loads of the same line", "no listener events",
    ))
    wire = {"type": "SYNC_STATE", "origin": PEER, "payload": {"sessions": [
        {"serverId": PEER, "sessionId": s.sessionId, "clienteId": s.clienteId,
         "usuario": s.usuario, "ip": s.ip, "canales": sorted(s.canales)} for s in sessions]}}
    encodeT, dumpsT = timePair(
        lambda: encodeSync(PEER, sessions),
        lambda: json.dumps(wire, separators=(",", ":")).encode(),
        repeat,
    )
    rows.append(Row(
        f"SYNC_STATE encode (encodeSync), {count:,} sessions", encodeT * 1e3, dumpsT * 1e3,
        "ms", "stdlib json.dumps of the same records, prebuilt dicts",
        "the reference does not build its dicts inside the timing",
    ))
    return rows


def _traced(build) -> tuple[int, object]:
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    gc.collect()
    return tracemalloc.get_traced_memory()[0] - before, kept


def memoryRows(count: int) -> list[Row]:
    """
    Bytes per remote session held by L{ClusterState} (records and every
    index) after a C{count}-session SYNC_STATE, measured with
    L{tracemalloc}, next to a plain dict per session with the same fields.
    """
    line = syncLine(count)
    tracemalloc.start()
    try:
        stateBytes, state = _traced(lambda: _apply(line))
        recordBytes, records = _traced(lambda: decode(line).payload.sessions)
        plainBytes, plain = _traced(lambda: _plainDicts(line))
    finally:
        tracemalloc.stop()
    assert state.countSessions(PEER) == count and len(records) == len(plain) == count
    return [
        Row(f"memory per remote session in ClusterState ({count:,})", stateBytes / count,
            plainBytes / count, "bytes", "dict sessionId -> plain dict of the same fields",
            "tracemalloc; records + by-user/by-channel/by-session indexes"),
        Row("  of which the SessionInfo records alone", recordBytes / count, plainBytes / count,
            "bytes", "dict sessionId -> plain dict of the same fields",
            "a list of decoded records, no index"),
    ]
