"""
Sections 1b to 4 of the report: per-message CPU cost of each relay side,
SYNC_STATE apply and encode, memory per remote session, codec choice.
"""

from __future__ import annotations

import sys

from clustersync.bench.report import Row, Section
from clustersync.bench.sizes import LINE_SIZE, Sizes

__all__ = ["perMessageSection", "syncSection", "memorySection", "codecSection", "codecVerdict"]


def perMessageSection(sizes: Sizes) -> Section:
    """Section 1b: per-message CPU cost of each side, in one process."""
    from clustersync.bench.percall import perMessageRows

    rows = perMessageRows(sizes.codecDirect, LINE_SIZE, sizes.repeat)
    send, receive = rows
    return Section(
        "1b. Per-message CPU cost of each relay side, in one process",
        rows,
        method="""
No kernel, no reactor: node A and node B are each driven through their wire
only (a `PeerProtocol` on a `StringTransport`, handed the peer's HELLO and
SYNC_STATE lines). Node A's figure is `sendToUser` (encode the message
once and build the DIRECT_MESSAGE line around it, `sendLine`, which gathers
lines and writes them 32 KiB at a time here since a `Clock` never ends the
reactor turn, and the returned Deferred); node B's is framing, decode,
dispatch, the built-in handler, the state lookup and the `ILocalDelivery`
call. The references do the bare relay's work on the same kind of
transport. A `StringTransport` has no socket, so a confirmed send confirms
at once: `confirm_sends` bookkeeping is not in these figures.""",
        notes=f"""
The relay runs at the pace of its slower side, and both real processes
also pay the reactor and the kernel per read and per write (the bare
sender one Twisted `write` per line, clustersync one per 32 KiB). Here
node A costs {send.ratio:.1f}x the bare sender and node B
{receive.ratio:.1f}x the bare receiver. The bare receiver is the slower side
of the bare relay; node B is about as slow as node A once A's confirmation
bookkeeping (not in this table: a Deferred per send, fired when the peer's
TCP stack or receipt acknowledges the line) is counted, so both sides of
clustersync set its pace. Sampling the real processes (py-spy) shows no
single hot spot: on B the time is spread over framing, decode (msgspec),
dispatch, the handler, the state lookup and the delivery call, each a few
percent.""",
    )


def syncSection(sizes: Sizes) -> Section:
    """Section 2: SYNC_STATE apply and encode time."""
    from clustersync.bench.sync import syncRows

    rows = syncRows(sizes.syncSessions, sizes.repeat)
    applyMs, decodeMs = rows[0].value, rows[1].value
    return Section(
        "2. SYNC_STATE apply and encode",
        rows,
        method="""
In this process: one SYNC_STATE line of realistic sessions (0-3 channels
each, one user in ten with two sessions) is decoded with `codec.decode` and
applied to a fresh `ClusterState` with `replaceServer`; the reference is
the same line through stdlib `json.loads`, timed alternately with it.
Garbage collection is off during each timing; the fastest of the repeats
is kept.""",
        notes=f"""
Decoding is {decodeMs / applyMs:.0%} of decode + apply: building the
state's indexes in `replaceServer` is where a full sync spends its time
({applyMs - decodeMs:,.0f} ms for {sizes.syncSessions:,} sessions).""",
    )


def memorySection(sizes: Sizes) -> Section:
    """Section 3: memory per remote session."""
    from clustersync.bench.sync import memoryRows

    rows = memoryRows(sizes.memorySessions)
    indexes = rows[0].value - rows[1].value
    oneSet = sys.getsizeof({"session-1"})
    return Section(
        "3. Memory per remote session",
        rows,
        method="""
`tracemalloc` counts the bytes still allocated after decoding a SYNC_STATE
and applying it to a fresh `ClusterState` (the line itself excluded),
divided by the number of sessions. The reference is a dict sessionId ->
plain dict with the same fields (from `json.loads` of the same line).""",
        notes=f"""
The records themselves (`SessionInfo`, a `gc=False` msgspec Struct) cost
{rows[1].value:,.0f} bytes, {rows[1].ratio:.2f}x a plain dict; the indexes
cost the other {indexes:,.0f} bytes per session. Most of that is one-member
sets: a one-member Python set is {oneSet} bytes, and `ClusterState` keeps one
per user in the server's by-user index, one per user in the cluster-wide
user -> servers index and one per session in the sessionId -> servers index,
nearly always with a single member. Storing a lone member without a set
(or sharing one frozenset per server) would be the way to cut memory.""",
    )


def codecSection(sizes: Sizes) -> Section:
    """Section 4: codec choice (msgspec vs orjson vs stdlib json)."""
    from clustersync.bench.codecs import codecRows

    rows = codecRows(sizes.codecDirect, sizes.codecSync, sizes.repeat)
    return Section(
        "4. Codec choice: msgspec vs orjson vs stdlib json",
        rows,
        method="""
Each codec does the relay's job: decode and validate a line and produce the
bytes of its `message` (what local delivery needs), then encode a line of
the same type. msgspec (the current codec) decodes to typed Structs with
the forwarded `message` kept as `msgspec.Raw`; orjson and stdlib json parse
to dicts, validate by hand (types, int64 range, channels to a set) and
must re-encode the `message` value. Ratio < 1 means msgspec is faster.""",
        notes=codecVerdict(rows),
    )


def codecVerdict(rows: list[Row]) -> str:
    """
    The conclusion the codec rows support, in words, from their ratios
    (msgspec time / other codec's time for the full decode + encode).
    """
    totals = {}
    slower = []
    parent = ""
    for row in rows:
        if not row.figure.startswith(" "):
            parent = row.figure.split(",")[0]
        if row.figure.startswith(("DIRECT_MESSAGE decode + encode", "SYNC_STATE decode + encode")):
            kind = row.figure.split()[0]
            other = "orjson" if row.referenceName.startswith("orjson") else "stdlib json"
            totals[(kind, other)] = row.ratio
        elif row.ratio is not None and row.ratio >= 1:
            other = "orjson" if row.referenceName.startswith("orjson") else "stdlib json"
            slower.append(f"{parent}, {row.figure.strip()} ({row.ratio:.2f}x {other})")
    if not totals:
        return ""
    parts = [
        f"{kind} decode + encode with msgspec takes {ratio:.2f}x the time of {other}"
        for (kind, other), ratio in totals.items()
    ]
    wins = all(r is not None and r < 1 for r in totals.values())
    verdict = (
        "msgspec is the fastest of the three for both message shapes, and it also "
        "gives typed, validated messages with field-named errors and forwards `message` "
        "bytes untouched: **keep msgspec**."
        if wins
        else "msgspec is not the fastest everywhere in this run; see the rows above "
        "before changing codecs (the typed validation and untouched `message` bytes "
        "are its other reasons)."
    )
    if slower:
        verdict += (" Where msgspec alone is not faster: " + "; ".join(slower)
                    + " (msgspec's path builds the typed message and goes through `codec.encode`;"
                    " the dict codecs serialise an already-built dict).")
    return "Conclusion: " + "; ".join(parts) + ". " + verdict
