"""
The recorded history of the hot-path work, appended to the report as it
was measured (it is not re-measured by a run).
"""

from __future__ import annotations

__all__ = ["HISTORY", "historyText"]

#: Hot-path work done while this harness was written.  These are recorded
#: figures (the code they measured no longer exists), so they are printed
#: as they were measured, not re-measured.
HISTORY = """
## Hot-path work (recorded 2026-11-28, not re-measured by this run)

Measured with this harness's relay (section 1, 60,000 messages per run),
A/B style: copies of two versions of `clustersync/` run alternately in the
same session, medians of 4-8 rounds, the bare relay at about 370,000
msgs/s in those sessions (2 cores shared with other jobs).

| code | clustersync msgs/s | ratio to bare |
|---|---:|---:|
| first `confirm_sends` version (per send: a Deferred from `whenAcknowledged`, a second one plus a closure in `_confirmed`) | 37,000-52,000 | 0.10-0.11 |
| same, with a single-peer fast path chained on the ack Deferred (experiment) | 52,000-58,000 | 0.13-0.16 |
| single-peer fast path as committed by the owner of `confirm_sends` (d9dff8c: `whenAcknowledged(result, onLost, context)`, one Deferred per send) | 88,000 | 0.19 |
| `confirm_sends = false` | 113,000 | 0.25 |
| `confirm_sends = false`, `_forward` with hoisted lookups and no sort for one peer (experiment) | 114,000 | 0.26 |

The last experiment gained nothing measurable (in-process, node A's send
cost was 6.5 vs 6.8 µs per message, inside the noise), so it was not
applied: no change to `node.py` or `link.py` came out of this work. The
hot-path items one would check first are already in place: framing splits
each read once (`PeerProtocol.dataReceived`), each line is decoded once,
a forwarded `message` stays `msgspec.Raw` (delivery only copies it to
`bytes`, it is never re-encoded), a send is encoded once for all peers
(`ClusterNode._forward`), links set `TCP_NODELAY`, and the metrics are
`Counter` increments.

Garbage collection in the sending process, timed with `gc.callbacks`
during 60,000-message runs: 0.09-0.10 s of 0.9-1.4 s of sending (7-10%);
`gc.freeze()` after start-up, or higher thresholds, changed the rate by
less than the run-to-run noise, so the node's GC settings were left alone.

### Second pass (recorded 2026-11-28, later session)

Wall-clock figures on these 2-core virtual machines move by up to 2x from
one minute to the next (the same bare relay ran at 340,000-660,000
msgs/s within an hour), so each change was first measured in machine
instructions per message (callgrind, the difference of a 1,000- and a
6,000-message run, in one process on a `StringTransport` and a `Clock`;
the sender with a fake TCP socket so that confirmations wait and fire as
on a real link), then in the relay.

| instructions per message | before | after | bare |
|---|---:|---:|---:|
| node A: `sendToUser` + confirmation, one peer | 47,477 | 20,525 | 6,014 (format + write) |
| node B: framing to `ILocalDelivery`, incl. the benchmark sink (8,600) | 29,236 | 24,536 | 11,135 |

What made the difference, in order of effect: gathering a reactor turn's
lines into one `transport.write` (Twisted's write path cost about as much
per call as encoding a message); building the one-peer DIRECT_MESSAGE line
by concatenation around the encoded message (byte-identical, tested)
instead of two `Struct`s and a second encode, with its `Delivery` cached;
firing confirmations without Twisted's callback loop when nothing is
attached (`waiters.fire`: the loop alone was 4,600 instructions); plain-dict
per-type counters (a `Counter` increment is 4x a dict's); comparing link
states against module-level aliases (an `Enum` member looked up on its
class costs 200 ns); skipping the UTF-8 pass of ASCII lines. Tried and
dropped: sharing one queue entry among the sends of one turn (more
instructions, not fewer); a 128 KiB flush threshold (no measurable
change); inlining the one-peer send into `sendToUser` (no change in
instructions); checking TCP acknowledgements at every flush instead of
every 5 ms (slower in an A/B of 4 rounds: 0.37 against 0.41).

In the relay, the first two steps took the default configuration from
0.17-0.22 to 0.29-0.49 of the bare relay in one session; the later ones
are inside the run-to-run noise there. Three full runs of this harness
within an hour on the final code gave default-config medians of 0.62
(rounds 0.33-0.73), 0.43 (0.38-0.45) and 0.36 (0.34-0.43);
`confirm_sends = false` 0.66, 0.54 and 0.47. Sampling the real processes
(py-spy) and tracing their idle time shows both near 100% busy; when the
sender is the slower side, a quarter of its time goes to the
confirmation a send waits on (creating its Deferred and queue entry: one
Deferred per API send is the contract). Per message, both real processes
cost 1.4-1.7x their figure in section 1b, like the bare relay's, so the
relay ratio follows section 1b's ratios: the receiver at 2.2-2.5x the bare
receiver's work bounds it near 0.4-0.45.

### Third pass (recorded 2026-11-29)

Same method (callgrind at `PYTHONHASHSEED=0`, then the relay in A/B).

| instructions per message | start of pass | end of pass | bare |
|---|---:|---:|---:|
| node A: `sendToUser` + confirmation, one peer | 22,185 | 19,038 | 6,046 |
| node B: framing to `ILocalDelivery`, incl. the benchmark sink (8,550) | 24,625 | 20,749 | 11,076 |

Changes: the complete lines of a read decode in one msgspec
`decode_lines` call when they are all plain (`codec.decodeLines`; exact,
with a per-line fallback; 24,625 -> 22,581); acknowledgement Deferreds get
`called` set when made (setting it on a Deferred made long before cost
1,300 instructions more; 22,185 -> 20,854); the one-peer send calls the
link's `sendConfirmed` (sendLine + whenAcknowledged without two calls;
-> 19,560), looked up once per link rather than per send (-> 19,023); the dispatch entry of a type with one handler calls the
handler's quicker entry, `ClusterNode.deliverDirect` for DIRECT_MESSAGE
(-> 21,754); the state keeps each user's sessions as a tuple it rebuilds
when they change, which `userSessionsOn` returns as is (-> 20,257). A
user new on a server gets its one-session tuple directly and a SYNC_STATE
rebuilds a user's tuple once, whatever its number of sessions, so applying
100,000 new users costs what it did (0.40-0.44 s against 0.42 s, in one
process); memory per remote session grows from 1,394 to 1,490 bytes.
A last review put the handling of a decoded message on an established
link back in one place, shared by the per-line and the per-read paths
(20,257 -> 20,749); `sendConfirmed` stays written out (calling
`whenAcknowledged` from it costs 650 more, calling both `sendLine` and
`whenAcknowledged` 2,080 more), and so does `deliverDirect` (calling
`deliverLocal` costs 390 more). In the relay, the first two gave 0.39 -> 0.43 (medians of 6
rounds, the new code ahead in 6 of 6). The last two, measured as the
clustersync rate alone in 10 alternating pairs, were inside the noise
(pair ratios 0.84-1.23, median 0.99). A fully inlined version of them (not
kept: it copied the handler's and sendLine's logic) had looked better in 6
rounds (0.38 -> 0.44), but the receiver or the sender alone never did: the
two processes are about equally loaded, so both must get cheaper together.

Tried and dropped: a per-user session map in the state (90 instructions
saved); sharing queue entries among a turn's sends again (no gain in 5
relay rounds, and a receipt could no longer fire the first of two sends
on its own); pinning the two relay processes to separate cores (the bare
relay still moved by 15%); `PYTHONMALLOC=malloc` (slower); a longer
`decodeLines` boundary pattern (200 instructions, not worth tying the fast
path to one field order). Garbage collection and page faults are not where
the time goes (42 young collections per 150,000 sends; wrong, see the
fourth pass: those were the orchestrating process's). py-spy on the
receiving process: the benchmark sink takes a third of its time, decoding a
sixth, and the delivery path from dispatch to the sink another third.
On the sending process, a confirmed send's bookkeeping (its Deferred, its
queue entry, the acknowledgement check that fires it) takes about 30% of
the time: the difference between the default configuration and
`confirm_sends = false` below. Earlier full runs of this harness during
this pass (code of the last steps): default 0.47, 0.41, 0.40, 0.46;
`receipts = "all"` 0.46, 0.41, 0.43, 0.46; `confirm_sends = false` 0.51,
0.57, 0.54, 0.55 (4, 6, 6 and 4 of 7 rounds at 0.5 or above).

### Fourth pass (recorded 2026-11-29, later session)

The third pass's "garbage collection is not where the time goes" was a
measuring mistake: the 42 collections it counted were the orchestrating
process's (its `atexit` report overwrote the sending node's). Counted in
the sending node itself (`gc.callbacks`), a 150,000-message run had
260-430 young, 24-39 middle and 2-3 full collections: 0.10-0.17 s of its
0.7-0.9 s, 0.05-0.09 s of it in the full ones. Every confirmed send waits
for its acknowledgement as three container objects (its Deferred, the
Deferred's callback list, its queue entry); with CPython's threshold of
700 the collector walks them, promotes them, and walks the whole heap when
enough have been promoted. Hence `gc_thresholds` (default `[50000, 10,
10]`, `GCThresholdsService`): with it, the sending node runs no collection
at all during the run (the only ones are those of start-up, 108 young and
10 middle, as in the receiving node).

| instructions per message | start of pass | end of pass |
|---|---:|---:|
| node A, acknowledgements every 300 sends (as in the earlier passes) | 19,036 | 18,057 |
| node A, 3,000 sends waiting for their acknowledgement, CPython's thresholds | 26,341 | - |
| same, `gc_thresholds` default | - | 21,767 |
| node B, framing to `ILocalDelivery`, incl. the benchmark sink | 20,691 | 19,270 |

The smaller changes: `waiters.fireUpTo` fires a link's acknowledged sends
in one call (the receipt and TCP-acknowledgement loops each called `fire`
per send); `encodeDirect` encodes a message that is not a `Raw` itself
instead of calling `messageBytes` (together 450 instructions per send);
`sendToUser` reads the state's mapping of users to their servers
(`ClusterState.userServers`) instead of calling `serversOfUser` (409);
local delivery takes a `Raw`'s bytes with `b"" + raw` rather than
`bytes(raw)` (516 per received message; `bytes()` parses its arguments);
`deliverDirect` reads the state's mapping of this node's users to their
sessions (`ClusterState.localUserSessions`) instead of calling
`userSessionsOn` (896 per received message).

In the relay: the clustersync rate alone, 10 alternating pairs, this pass's
`gc_thresholds` against the code before it: ratio 1.105 (pairs
0.90-1.31). On the final code, 10 alternating pairs of the default
against `gc_thresholds = "none"`: rate 1.14x (pairs 0.86-1.45), node A's
CPU time per message 0.81x (0.68-1.15), node B's 0.91x (0.65-1.13); a
single run of this harness can still show them level (one did: 0.45
against 0.46), which is why the pairs are the measure of this change. With the changes up to `b"" + raw`, 7 rounds side by side:
default configuration 0.53 of the bare relay (5 of 7 rounds at 0.5 or
above), `confirm_sends = false` 0.50; in 5 rounds, the default
configuration 0.50 against 0.435 with CPython's thresholds; a full run of
this harness then gave 0.49 (rounds 0.36-0.66), with node A at 1.76x the
bare sender's CPU time per message and node B at 2.24x the bare
receiver's. After `localUserSessions`, 7 rounds: 0.46 (rounds 0.36-0.63),
node A 3.83 µs against the bare sender's 1.74, node B 3.75 µs against the
bare receiver's 1.84. Both sides now cost about twice the bare relay's
per message, so the relay ratio sits around 0.5 and moves with the noise
of the machine from one run to the next (the rounds of one run spread
from 0.37 to 0.84). Hence the "slower side" row added to section 1 in this
pass: the ratio of the two relays' costlier side's CPU time per message,
which says what rate the code allows independently of scheduling. The line-level profile of node B
(py-spy) puts a fifth of its time in msgspec's `decode_lines` and a third
in the benchmark sink; node A's time is spread over encoding (16%), the
confirmed send's bookkeeping (24%) and firing it (10%), with no single
step left that is large.

### Fifth pass (recorded 2026-11-29, third session of the day)

Two changes: the node's `codec.DirectEncoder` keeps each user's
DIRECT_MESSAGE prefix (envelope, origin, `userId`; up to 16,384 users,
about 3 MB) so that a send concatenates instead of formatting the id,
and the per-type counters are lists indexed by wire type
(`Metrics.inCounts`/`outCounts`), which cost about 280 instructions
fewer per increment than dict entries.

| instructions per message (this pass's harness: a fixed hash seed, 2,000 against 12,000 messages; not comparable with the rows above) | start of pass | end of pass |
|---|---:|---:|
| node A, acknowledgements every 300 sends | 19,454 | 19,035 |
| node A, 3,000 sends waiting, `gc_thresholds` default | 21,012 | 20,475 |
| node B, framing to `ILocalDelivery`, incl. the benchmark sink | 19,396 | 18,936 |

Where node A's time goes in the real process (each burst of sends timed
with `process_time`): the sends themselves take 3.1-3.4 µs per message
against the bare sender's 2.2 µs (which is mostly Twisted's
`transport.write`, called once per line); the rest (reactor turns,
writes, acknowledgement checks, firing the sends) 0.7 µs per message
against the bare sender's 0.3. With `confirm_sends = false` node A
cost 3.3-3.5 µs per message in four runs, against 3.4-6.6 with
confirmation in the same series; the number of sends waiting for their
acknowledgement (559 to 11,610 on average over a run) did not go with the
cost, so this is not the cache footprint of the waiting sends.

Noise: with the two processes pinned to one CPU each, 8 rounds gave
node A 3.1-5.5 µs per message for the same code. 10 alternating pairs of
this pass's code against the code before it: rate 1.09x (pairs
0.79-1.63), node A's CPU per message 1.00x (0.59-1.32), node B's 0.94x
(0.57-1.13), all well inside the noise. Tried and dropped: framing a
read without splitting it into lines (92 instructions per line fewer
on node B, not worth the change), and checking acknowledgements every
0.5 ms instead of 5 (rate 1.01x, node A 1.03x over 8 pairs).

### Sixth pass (recorded 2026-11-29, fourth session of the day)

Fewer Python layers per message, one on each side. On the sending side,
the first send to a user on one peer keeps the user's *route*: the
server, the user's DIRECT_MESSAGE prefix, and the link's `sendConfirmed`
(its `sendLine` with `confirm_sends` off). The next sends to that user
check that the route's server is still the user's only one, encode the
message and call the link. This skips `DirectEncoder.encode` and
`_sendOne`, which was three Python calls and their lookups per send.
Replacing or losing a link drops the routes, and at most 16,384 are
kept. On the receiving side, the loop over a read's decoded messages
dispatches an ordinary message itself instead of calling
`_receiveMessage` for each one.

| instructions per message (the fifth pass's harness) | start of pass | end of pass |
|---|---:|---:|
| node A, acknowledgements every 300 sends | 18,788 | 16,490 |
| node A, 3,000 sends waiting | 20,225 | 17,911 |
| node A, `confirm_sends = false` | 17,378 | 14,820 |
| node B, framing to `ILocalDelivery`, incl. the benchmark sink | 18,992 | 18,457 |

The start figures are the code at the start of this pass, measured again
on the day. They differ from the fifth pass's end figures by up to 250
instructions: that pass's last review took about 130 off each send, and
the rest is the harness.

In the real relay, with bare, old code and new code in every round and
the order alternated:
- 16 rounds: node A's CPU per message was 0.82x the old code's
  (median of pairs, 0.53-1.34) and the rate 1.11x.
- 12 more rounds: node A 0.94x, node B 0.93x, rate 1.10x. In that run
  the relay ratio (clustersync / bare, median of rounds) was 0.63 for the
  new code (every round 0.57 or above) and 0.59 for the old code (0.51-0.92).
"""


def historyText() -> str:
    """The history section of the report, as Markdown ending in a newline."""
    return "\n" + HISTORY.strip() + "\n"
