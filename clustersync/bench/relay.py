"""
DM relay throughput and latency: clustersync node A -> node B -> a local
sink, next to a bare line relay with the same process layout.

Two processes per run, each with its own reactor, started as
C{python -m clustersync.bench relay-sink ...} and
C{python -m clustersync.bench relay-source ...}:

    - clustersync: the source process runs node A and the driver, which
      calls A's L{ICluster.sendToUser} for every message; the sink process
      runs node B, whose L{ILocalDelivery} sink holds user U's session and
      counts and timestamps what it is handed.
    - bare: the source process writes the very same DIRECT_MESSAGE lines
      straight to a TCP connection; the sink process is a
      L{LineOnlyReceiver} that hands every line to the same sink.

Both sources write as fast as the connection takes it (a streaming
producer registered on the transport: paused when Twisted's write buffer is
full, resumed when it drained), or at a fixed rate (paced mode).  Every
message carries its send time (C{time.monotonic_ns()}, one clock for every
process of the machine); the sink computes latency and the rate from the
first send to the last receive.

Each process also measures its own CPU time (C{time.process_time}, user
and system) per message: the sink from the first message to the last, the
source from its first send until the link closed (so that a confirmed
send's acknowledgement is counted).  Which side costs more per message is
the side that bounds the rate.

Processes print one JSON object per line on stdout; the orchestrator
(L{runRelay}) reads them.  The reactor is imported only inside the process
entry points.
"""

from __future__ import annotations

import json
import os
import select
import statistics
import subprocess
import sys
import time
from array import array

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from clustersync.interfaces import IClusterListener, ILocalDelivery

__all__ = ["Sink", "runRelay", "sinkMain", "sourceMain", "messageBody", "bareLine"]

#: The user every message goes to.
USER = 7
SINK_ID = "bench-b"
SOURCE_ID = "bench-a"
_T = b'"t":'


def messageBody(size: int) -> int:
    """The padding length so that a DIRECT_MESSAGE line is about C{size} bytes."""
    # {"type":"DIRECT_MESSAGE","origin":"bench-a","payload":{"userId":7,
    # "message":{"t":<19 digits>,"p":"..."}}}\n  is 111 bytes + padding.
    return max(0, size - 111)


def bareLine(stamp: int, pad: bytes) -> bytes:
    """The exact line clustersync writes for one benchmark message."""
    return (
        b'{"type":"DIRECT_MESSAGE","origin":"bench-a","payload":{"userId":7,'
        b'"message":{"t":%d,"p":"%s"}}}\n' % (stamp, pad)
    )


def _emit(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


@implementer(ILocalDelivery)
class Sink:
    """
    Counts messages and records each one's latency (receive time minus the
    C{"t"} it carries, in nanoseconds).

    It is both an L{ILocalDelivery} (clustersync) and a line consumer (bare
    relay); both read the stamp the same way.

    @ivar count: messages received.
    @ivar latencies: per-message latency in ns.
    @ivar firstSent: the stamp of the first message.
    @ivar lastReceived: the receive time of the last message.
    """

    def __init__(self, expected: int, done) -> None:
        self.expected = expected
        self.count = 0
        self.latencies = array("q")
        self.firstSent: int | None = None
        self.lastReceived = 0
        self.cpuStarted = 0.0
        self.cpuSeconds = 0.0
        self.bytes = 0
        self._done = done

    def _take(self, data: bytes) -> None:
        now = time.monotonic_ns()
        i = data.find(_T) + 4
        stamp = int(data[i : data.index(b",", i)])
        if self.firstSent is None:
            self.firstSent = stamp
            self.cpuStarted = time.process_time()
        self.latencies.append(now - stamp)
        self.lastReceived = now
        self.bytes += len(data)
        self.count += 1
        if self.count == self.expected:
            self.cpuSeconds = time.process_time() - self.cpuStarted
            self._done(self)

    def deliver(self, sessions, message, kind, origin) -> int:
        """Count one clustersync delivery."""
        self._take(message)
        return len(sessions)

    def lineReceived(self, line: bytes) -> None:
        """Count one bare-relay line."""
        self._take(line)

    def result(self) -> dict:
        """
        The figures of this run (rate in msgs/s, latencies in ms, this
        process's CPU time per message in µs).
        """
        lat = sorted(self.latencies)
        elapsed = (self.lastReceived - (self.firstSent or 0)) / 1e9
        return {
            "count": self.count,
            "seconds": elapsed,
            "rate": self.count / elapsed if elapsed > 0 else 0.0,
            "p50": lat[len(lat) // 2] / 1e6 if lat else 0.0,
            "p99": lat[min(len(lat) - 1, (len(lat) * 99) // 100)] / 1e6 if lat else 0.0,
            "meanBytes": self.bytes / self.count if self.count else 0.0,
            "sinkCpu": self.cpuSeconds / self.count * 1e6 if self.count else 0.0,
        }


@implementer(IPushProducer)
class _Watermark:
    """
    A do-nothing streaming producer, registered on the bare source's
    transport so that the transport's C{producerPaused} flag works the same
    as on a clustersync link (which registers its own producer).
    """

    def pauseProducing(self) -> None:
        """Nothing to do: the sender polls C{producerPaused}."""

    def resumeProducing(self) -> None:
        """Nothing to do: the sender polls C{producerPaused}."""

    def stopProducing(self) -> None:
        """Nothing to do."""


class _Sender:
    """
    The load generator.

    Saturated mode (C{rate} 0): call C{sendOne()} until the transport says
    its buffer is full (C{producerPaused}, set by Twisted when more than
    its C{bufferSize} is queued, cleared once it drained), yield to the
    reactor so that it writes, and go on; while the transport stays full,
    look again every 0.2 ms.  Paced mode: every millisecond, send as many
    messages as the target rate asks for by now.
    """

    def __init__(self, reactor, transport, sendOne, count: int, rate: float, finished) -> None:
        self.reactor = reactor
        self.transport = transport
        self.sendOne = sendOne
        self.count = count
        self.rate = rate
        self.sent = 0
        self.started = 0.0
        self._finished = finished
        self._loop = None

    def start(self) -> None:
        """Start sending."""
        if getattr(self.transport, "producer", None) is None:
            self.transport.registerProducer(_Watermark(), True)
        self.started = time.perf_counter()
        if self.rate:
            from twisted.internet.task import LoopingCall

            self._loop = LoopingCall(self._tick)
            self._loop.clock = self.reactor
            self._loop.start(0.001)
        else:
            self._burst()

    def _full(self) -> bool:
        return bool(getattr(self.transport, "producerPaused", False))

    def _tick(self) -> None:
        due = min(self.count, int((time.perf_counter() - self.started) * self.rate) + 1)
        send = self.sendOne
        while self.sent < due and not self._full():
            send()
            self.sent += 1
        if self.sent >= self.count:
            self._loop.stop()
            self._done()

    def _burst(self) -> None:
        transport = self.transport
        if transport.disconnected:
            return
        if getattr(transport, "producerPaused", False):
            self.reactor.callLater(0.0002, self._burst)
            return
        send = self.sendOne
        count = self.count
        sent = self.sent
        while sent < count and not transport.producerPaused:
            send()
            sent += 1
        self.sent = sent
        if sent >= count:
            self._done()
        else:
            self.reactor.callLater(0, self._burst)

    def _done(self) -> None:
        if self._finished is None:
            return
        finished, self._finished = self._finished, None
        finished(self.sent, time.perf_counter() - self.started)


def _setNoDelay(transport) -> None:
    try:
        transport.setTcpNoDelay(True)
    except Exception:
        pass


def _benchConfig(extra: dict | None = None, **settings):
    """
    A node config for the benchmark: no client gateway, no web page, plain
    loopback links (C{openLinks}), and a flood guard set so high that it
    never trips (its check still runs);
    then C{extra} (NodeConfig attribute -> value), each applied only if
    this version of L{NodeConfig} has that attribute.
    """
    from clustersync.app.config import NodeConfig

    config = NodeConfig(**settings)
    for name, value in (("clients", None), ("web", None), ("openLinks", True), ("peerRate", 1e12),
                        ("peerBurst", 10**12), *(extra or {}).items()):
        if hasattr(config, name):
            setattr(config, name, value)
    return config


def _watchdog(reactor, seconds: float, what: str) -> None:
    def expire():
        _emit({"error": f"{what}: timed out after {seconds}s"})
        os._exit(3)

    reactor.callLater(seconds, expire)


def sinkMain(
    kind: str, count: int, timeout: float, profile: str | None = None, extra: dict | None = None
) -> None:
    """
    Run the receiving process: node B with its sink (C{kind="cs"}) or a bare
    line receiver (C{"bare"}).  Prints C{{"port": p}}, then C{{"result":
    ...}} after C{count} messages, and exits.
    """
    from twisted.internet import reactor

    profiler = _startProfile(profile)

    def done(sink):
        _stopProfile(profiler, profile)
        _emit({"result": sink.result()})
        reactor.callLater(0, finish)

    def finish():
        d = stop() if stop is not None else None
        if d is not None:
            d.addBoth(lambda _: reactor.stop())
        else:
            reactor.stop()

    sink = Sink(count, done)
    stop = None
    _watchdog(reactor, timeout, "sink")
    if kind == "cs":
        from clustersync.app.service import makeNodeService

        config = _benchConfig(extra, serverId=SINK_ID, listen="tcp:0:interface=127.0.0.1")
        service = makeNodeService(config, reactor)
        node = service.node
        node.setLocalDelivery(sink)
        node.clientConnected("bench-session", USER, "bench")
        service.startService()
        stop = service.stopService
        d = service.getServiceNamed("peer-listen").whenListening()
    else:
        from twisted.internet.endpoints import TCP4ServerEndpoint
        from twisted.internet.protocol import Factory
        from twisted.protocols.basic import LineOnlyReceiver

        class BareRelay(LineOnlyReceiver):
            delimiter = b"\n"
            MAX_LENGTH = 1 << 24

            def connectionMade(self):
                _setNoDelay(self.transport)
                factory.connections.append(self)

            def lineReceived(self, line):
                sink.lineReceived(line)

        factory = Factory.forProtocol(BareRelay)
        factory.connections = []
        factory.noisy = False

        def stopBare():
            for c in factory.connections:
                c.transport.loseConnection()

        stop = stopBare
        d = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    d.addCallback(lambda port: _emit({"port": port.getHost().port}))
    reactor.run()


def sourceMain(
    kind: str, port: int, count: int, rate: float, size: int, timeout: float,
    profile: str | None = None, extra: dict | None = None,
) -> None:
    """
    Run the sending process: node A plus the driver calling
    C{sendToUser} (C{kind="cs"}), or a bare line writer (C{"bare"}), to
    the sink listening on C{port}.  Prints C{{"sent": n, "seconds": s}}
    and exits once the sink closed the connection.

    A C{port} of 0 means: read it from the first line of stdin, after the
    slow imports and the node's construction, so that the orchestrator can
    start this process while the sink is still starting.
    """
    from twisted.internet import reactor

    pad = b"x" * messageBody(size)
    padText = pad.decode()
    profiler = None
    _watchdog(reactor, timeout, "source")
    state = {}

    def finished(sent, seconds):
        _stopProfile(profiler, profile)
        state["sent"] = {"sent": sent, "seconds": seconds}

    def closed():
        result = state.get("sent", {"sent": 0, "seconds": 0.0})
        if result["sent"] and "cpuStarted" in state:
            result["cpu"] = (time.process_time() - state["cpuStarted"]) / result["sent"] * 1e6
        _emit(result)
        if reactor.running:
            reactor.stop()

    if kind == "cs":
        from clustersync.app.service import makeNodeService

        config = _benchConfig(extra, serverId=SOURCE_ID, listen=None)
        service = makeNodeService(config, reactor)
        node = service.node

        @implementer(IClusterListener)
        class Watch:
            started = False

            def peerConnected(self, peer):
                pass

            def peerDisconnected(self, peer, reason):
                reactor.callLater(0, closed)

            def sessionAdded(self, session):
                if not self.started and node.state.serversOfUser(USER):
                    self.started = True
                    reactor.callLater(0, go)

            def sessionRemoved(self, session):
                pass

            def membershipChanged(self, session, canalId, joined):
                pass

        node.addListener(Watch())
        sendToUser = node.sendToUser
        now = time.monotonic_ns

        def sendOne():
            sendToUser(USER, {"t": now(), "p": padText})

        def go():
            nonlocal profiler
            for factory in node.outboundFactories:
                factory.stopTrying()  # no redial once the sink closes the link
            profiler = _startProfile(profile)
            state["cpuStarted"] = time.process_time()
            _Sender(reactor, node.linkFor(SINK_ID).transport, sendOne, count, rate, finished).start()

        service.startService()
        port = port or _readPort()
        service.getServiceNamed("peer-dial").addPeer(f"127.0.0.1:{port}")
    else:
        from twisted.internet.endpoints import TCP4ClientEndpoint
        from twisted.internet.protocol import Factory, Protocol

        port = port or _readPort()

        now = time.monotonic_ns

        class BareSource(Protocol):
            def connectionMade(self):
                nonlocal profiler
                _setNoDelay(self.transport)
                write = self.transport.write

                def sendOne():
                    write(bareLine(now(), pad))

                profiler = _startProfile(profile)
                state["cpuStarted"] = time.process_time()
                _Sender(reactor, self.transport, sendOne, count, rate, finished).start()

            def connectionLost(self, reason):
                reactor.callLater(0, closed)

        d = TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(Factory.forProtocol(BareSource))
        d.addErrback(lambda f: (_emit({"error": f.getErrorMessage()}), reactor.stop()))
    reactor.run()


def _readPort() -> int:
    line = sys.stdin.readline()
    if not line.strip():
        sys.exit(2)  # the orchestrator gave up
    return int(line)


def _startProfile(path):
    if not path:
        return None
    import cProfile

    p = cProfile.Profile()
    p.enable()
    return p


def _stopProfile(profiler, path) -> None:
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(path)


# Orchestration ------------------------------------------------------------


def _spawn(args: list[str], stdin: bool = False) -> subprocess.Popen:
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    return subprocess.Popen(
        [sys.executable, "-m", "clustersync.bench", *args],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


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
