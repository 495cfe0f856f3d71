"""
The two processes of one relay run, started as
C{python -m clustersync.bench relay-sink ...} and
C{python -m clustersync.bench relay-source ...}:

    - clustersync: the source process runs node A and the driver, which
      calls A's L{ICluster.sendToUser} for every message; the sink process
      runs node B, whose L{ILocalDelivery} sink holds user U's session and
      counts and timestamps what it is handed.
    - bare: the source process writes the very same DIRECT_MESSAGE lines
      straight to a TCP connection; the sink process is a
      L{LineOnlyReceiver} that hands every line to the same sink.

Each process measures its own CPU time (C{time.process_time}, user and
system) per message: the sink from the first message to the last, the
source from its first send until the link closed (so that a confirmed
send's acknowledgement is counted).

Processes print one JSON object per line on stdout for the orchestrator
(L{clustersync.bench.relay.runRelay}).  The reactor is imported only inside
the process entry points.
"""

from __future__ import annotations

import json
import os
import sys
import time

from zope.interface import implementer

from clustersync.bench.relaysink import SINK_ID, SOURCE_ID, USER, Sink, bareLine, messageBody
from clustersync.bench.sender import Sender, setNoDelay
from clustersync.interfaces import IClusterListener

__all__ = ["benchConfig", "sinkMain", "sourceMain"]


def _emit(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def benchConfig(extra: dict | None = None, **settings):
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

        config = benchConfig(extra, serverId=SINK_ID, listen="tcp:0:interface=127.0.0.1")
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
                setNoDelay(self.transport)
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

        config = benchConfig(extra, serverId=SOURCE_ID, listen=None)
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
            Sender(reactor, node.linkFor(SINK_ID).transport, sendOne, count, rate, finished).start()

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
                setNoDelay(self.transport)
                write = self.transport.write

                def sendOne():
                    write(bareLine(now(), pad))

                profiler = _startProfile(profile)
                state["cpuStarted"] = time.process_time()
                Sender(reactor, self.transport, sendOne, count, rate, finished).start()

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
