"""
DM relay throughput and latency: clustersync node A -> node B -> a local
sink, next to a bare line relay with the same process layout.

L{runRelay} starts the two processes of one run (L{clustersync.bench.relayprocs})
and reads their figures; L{relayRounds} alternates the bare relay and
clustersync configurations over rounds and takes medians.

Both sources write as fast as the connection takes it (a streaming
producer registered on the transport: paused when Twisted's write buffer is
full, resumed when it drained), or at a fixed rate (paced mode); see
L{clustersync.bench.sender}.  Which side costs more CPU per message is the
side that bounds the rate.
"""

from __future__ import annotations

import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time

__all__ = ["runRelay", "relayRounds"]


def _spawn(args: list[str], stdin: bool = False) -> subprocess.Popen:
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    # stderr goes to a file, not a pipe: it is read only if the process
    # fails, and a pipe nobody reads blocks the process once full (the
    # sends still waiting when the sink closes the link each log an error).
    errors = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "clustersync.bench", *args],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=errors,
        env=env,
    )
    proc.stderr = errors
    return proc


def _readJson(proc: subprocess.Popen, deadline: float) -> dict:
    """Read the next JSON line of C{proc} before C{deadline} (monotonic)."""
    line = b""
    fd = proc.stdout.fileno()
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no answer from benchmark process")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 1)
        if not chunk:
            proc.stderr.seek(0)
            err = proc.stderr.read().decode(errors="replace")
            raise RuntimeError(f"benchmark process ended without a result: {err[-2000:]}")
        line += chunk
    obj = json.loads(line)
    if "error" in obj:
        raise RuntimeError(obj["error"])
    return obj


def runRelay(
    kind: str, count: int, rate: float = 0.0, size: int = 200, timeout: float = 60.0,
    profile: str | None = None, extra: dict | None = None,
) -> dict:
    """
    One relay run of C{count} messages of about C{size} bytes, C{kind}
    C{"cs"} (clustersync) or C{"bare"}; C{rate} 0 means as fast as
    possible.  C{profile}: a path prefix; both processes then write cProfile
    stats to C{<prefix>-sink.prof} and C{<prefix>-source.prof}.  C{extra}:
    L{NodeConfig} attributes for both nodes (ignored by the bare relay).

    @return: the sink's figures (C{rate}, C{p50}, C{p99}, C{sinkCpu}, ...)
        and the source's (C{sent}, C{sendSeconds}, C{sourceCpu}); the CPU
        figures are µs of the process's CPU time per message.
    """
    common = ["--kind", kind, "--count", str(count), "--timeout", str(timeout),
              "--extra", json.dumps(extra or {})]
    sinkArgs = ["relay-sink", *common]
    if profile:
        sinkArgs += ["--profile", profile + "-sink.prof"]
    sourceArgs = ["relay-source", *common, "--port", "0", "--rate", str(rate), "--size", str(size)]
    if profile:
        sourceArgs += ["--profile", profile + "-source.prof"]
    deadline = time.monotonic() + timeout + 10
    sink = _spawn(sinkArgs)
    source = _spawn(sourceArgs, stdin=True)
    try:
        port = _readJson(sink, deadline)["port"]
        source.stdin.write(b"%d\n" % port)
        source.stdin.close()
        result = _readJson(sink, deadline)["result"]
        sent = _readJson(source, deadline)
        result["sent"] = sent["sent"]
        result["sendSeconds"] = sent["seconds"]
        result["sourceCpu"] = sent.get("cpu", 0.0)
        return result
    finally:
        for proc in (source, sink):
            if proc is None:
                continue
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None and not pipe.closed:
                    pipe.close()


def relayRounds(
    count: int, rounds: int, size: int = 200, rate: float = 0.0,
    variants: dict[str, dict] | None = None,
) -> dict:
    """
    C{rounds} rounds, each running the bare relay then every clustersync
    variant (name -> L{NodeConfig} attributes; default: C{{"cs": {}}}).

    @return: name -> the medians over rounds of C{rate}, C{p50}, C{p99},
        C{sourceCpu} and C{sinkCpu}, plus C{cpuBound} (the median of the
        slower side's CPU µs per message), C{cpuRatio} (the median over
        rounds of the bare relay's slower side over this one's), C{ratio} (the median of the per-round ratios to the bare
        relay's rate) and C{ratios}; C{"bare"} holds the bare relay's.
    """
    variants = variants or {"cs": {}}
    runs: dict[str, list[dict]] = {"bare": [], **{name: [] for name in variants}}
    for _ in range(rounds):
        runs["bare"].append(runRelay("bare", count, rate, size))
        for name, extra in variants.items():
            runs[name].append(runRelay("cs", count, rate, size, extra=extra))
    out = {}
    for name, results in runs.items():
        figures = {k: statistics.median(r[k] for r in results)
                   for k in ("rate", "p50", "p99", "sourceCpu", "sinkCpu")}
        ratios = [r["rate"] / b["rate"] if b["rate"] else 0.0
                  for r, b in zip(results, runs["bare"])]
        figures["ratios"] = ratios
        figures["ratio"] = statistics.median(ratios)
        # The rate each relay's slower side allows, from its CPU time per
        # message: a ratio that does not depend on how the two processes
        # happened to be scheduled in that round.
        bound = [max(r["sourceCpu"], r["sinkCpu"]) for r in results]
        figures["cpuBound"] = statistics.median(bound)
        figures["cpuRatio"] = statistics.median(
            max(b["sourceCpu"], b["sinkCpu"]) / c if c else 0.0
            for c, b in zip(bound, runs["bare"]))
        out[name] = figures
    return out
