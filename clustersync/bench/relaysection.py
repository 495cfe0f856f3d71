"""
Section 1 of the report: DM relay throughput, latency and CPU per message,
every clustersync configuration next to the bare relay.
"""

from __future__ import annotations

from clustersync.bench.report import Row, Section
from clustersync.bench.sizes import LINE_SIZE, Sizes

__all__ = ["relaySection", "relayVariants"]


def relayVariants() -> dict[str, dict]:
    """
    The clustersync configurations the relay runs: the defaults, and (when
    this version has the setting) the defaults with application receipts
    on plain links too (C{receipts = "all"}), with C{confirm_sends} off,
    and with CPython's own garbage-collector thresholds
    (C{gc_thresholds = "none"}).
    """
    from clustersync.app.config import NodeConfig

    defaults = NodeConfig()
    variants = {"cs": {}}
    if getattr(defaults, "receipts", "all") != "all":
        variants["cs-receipts"] = {"receipts": "all"}
    if getattr(defaults, "confirmSends", False):
        variants["cs-noconfirm"] = {"confirmSends": False}
    if getattr(defaults, "gcThresholds", None):
        variants["cs-gc-python"] = {"gcThresholds": None}
    return variants


def relaySection(sizes: Sizes) -> Section:
    """Section 1: DM relay throughput and latency, clustersync vs a bare relay."""
    from clustersync.bench.relay import relayRounds

    variants = relayVariants()
    sat = relayRounds(sizes.relayCount, sizes.relayRounds, LINE_SIZE, variants=variants)
    paced = relayRounds(sizes.pacedCount, sizes.pacedRounds, LINE_SIZE, sizes.pacedRate,
                        variants=variants)
    bare = sat["bare"]
    labels = {"cs": "default config", "cs-receipts": 'receipts = "all"',
              "cs-noconfirm": "confirm_sends = false",
              "cs-gc-python": "gc_thresholds = none (CPython's 700, 10, 10)"}
    rows = []
    for name in variants:
        cs = sat[name]
        ratios = ", ".join(f"{r:.2f}" for r in cs["ratios"])
        rows += [
            Row(f"DM relay throughput, saturated, {labels[name]}", cs["rate"], bare["rate"],
                "msgs/s", "bare line relay (same layout)",
                f"medians of {sizes.relayRounds} rounds of {sizes.relayCount:,} msgs; "
                f"ratio = median of per-round ratios ({ratios})", cs["ratio"]),
            Row("  latency p50, saturated", cs["p50"], bare["p50"], "ms", "bare line relay",
                "includes queueing in socket buffers"),
            Row("  latency p99, saturated", cs["p99"], bare["p99"], "ms", "bare line relay", ""),
            Row("  CPU per message, sending process (node A)", cs["sourceCpu"], bare["sourceCpu"],
                "µs", "bare sender", "process_time, first send to link closed; median of rounds"),
            Row("  CPU per message, receiving process (node B)", cs["sinkCpu"], bare["sinkCpu"],
                "µs", "bare receiver", "process_time, first to last message; incl. the sink"),
            Row("  CPU per message, slower side", cs["cpuBound"], bare["cpuBound"], "µs",
                "bare relay's slower side",
                "ratio = median over rounds of bare's slower side / this one's: the rate "
                "ratio the CPU costs allow, whatever the scheduling", cs["cpuRatio"]),
        ]
    for name in variants:
        rows += [
            Row(f"DM relay latency p50, paced at {sizes.pacedRate:,.0f} msgs/s, {labels[name]}",
                paced[name]["p50"], paced["bare"]["p50"], "ms", "bare line relay, same rate",
                f"medians of {sizes.pacedRounds} rounds of {sizes.pacedCount:,} msgs"),
            Row("  latency p99, paced", paced[name]["p99"], paced["bare"]["p99"], "ms",
                "bare line relay, same rate", ""),
        ]
    verdicts = []
    for name in variants:
        ratio, ratios = sat[name]["ratio"], sat[name]["ratios"]
        reached = sum(1 for r in ratios if r >= 0.5)
        verdicts.append(
            f"{labels[name]}: **{'met' if ratio >= 0.5 else 'NOT met'}** by the median "
            f"({ratio:.2f}; {reached} of {len(ratios)} rounds at 0.5 or above, rounds "
            f"{min(ratios):.2f}-{max(ratios):.2f}; CPU-bound ratio {sat[name]['cpuRatio']:.2f})")
    return Section(
        "1. DM relay: node A -> node B -> local sink",
        rows,
        method=f"""
Two OS processes per run, each with its own reactor, on 127.0.0.1 ephemeral
ports. clustersync: process 1 runs node A (`makeNodeService`) and the
driver, which calls A's `ICluster.sendToUser(U, {{"t": monotonic_ns, "p":
padding}})` for every message; process 2 runs node B, where user U has one
session and the `ILocalDelivery` sink counts each delivery and takes its
latency (receive `monotonic_ns` minus `t`, one clock for the machine). Bare
relay (the ceiling): process 1 writes the very same DIRECT_MESSAGE lines
({LINE_SIZE} bytes) straight to a TCP socket, process 2 is a
`LineOnlyReceiver` handing each line to the same sink. Both senders write
until Twisted's transport reports its buffer full (`producerPaused`), yield
to the reactor, and go on (polling every 0.2 ms while full), so "saturated"
means as fast as the slower process allows; rate = messages / (first send
-> last receive). Each round runs the bare relay then every clustersync
configuration; medians over rounds are reported. Paced runs send at a fixed
rate (a 1 ms `LoopingCall` catching up on schedule) to show latency without
queueing. The nodes run with the client gateway and web page off and the
peer flood guard raised out of reach (its check still runs). Each process
also measures its own CPU time (user and system, `time.process_time`) per
message: the side that costs more per message is the one that bounds the
rate, and the relay ratio is at best the bare relay's slower side's cost
over clustersync's slower side's: the "slower side" row gives that ratio,
round by round and then the median, which moves much less with the
machine's noise than the rates do (a sender whose link is full polls every
0.2 ms, so the faster side's figure includes a little waiting).""",
        notes="Target clustersync/bare >= 0.5: " + "; ".join(verdicts) + ". "
        "Saturated latency is set by how much queues up between the faster and "
        "the slower process (socket buffers), so it is not a fair comparison "
        "between relays whose bottleneck sits on different sides; the paced rows "
        "are the latency comparison.",
    )
