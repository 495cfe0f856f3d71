"""
The full chaos suite (C{make chaos}): three real C{twistd -n clustersync}
processes on loopback, each link through a L{FaultProxy}, a driver that
logs clients in and out and sends session messages during every fault, and
a check of every node against the ground truth after each heal.

Faults (each repeated C{--reps} times, rotating over links and nodes):

  - C{cut}: FIN on both sides of one link;
  - C{reset}: RST on both sides of one link;
  - C{blackhole-short}: one link forwards nothing for 1.5 s (under the
    dead-peer bound: TCP holds the data, nothing is cut);
  - C{blackhole-long}: the same for 5 s (over the 3 s bound: the idle
    heartbeat cuts the link on both ends, then it must heal);
  - C{partition}: both links of one node black-holed for 5 s;
  - C{delay}: 200 ms added each way on one link for 3 s;
  - C{throttle}: one link capped at 4 KB/s each way for 3 s;
  - C{kill-9}: SIGKILL of one node process, restart on the same port;
  - C{silent host crash}: the same behind a black hole, so that its peers'
    old links stay half-open (no FIN, no RST) and must be found dead.

Convergence time is measured from the heal (for C{cut}/C{reset}, the
fault itself; for C{kill-9}, the restarted process accepting control
requests) until every node's sessions equal the truth.  Ghosts are
sessions a node shows that do not exist; missing ones exist and are not
shown; a message is lost if its send succeeded and it never reached its
target session; sends that failed with a named error (C{PeerUnavailable})
are counted apart.

Usage::

    python -m tests.chaos.run [--reps 3] [--write docs/reliability.md]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time

from twisted.internet import defer, task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ClientFactory, ProcessProtocol
from twisted.protocols.basic import LineOnlyReceiver

from clustersync.cli.devcluster import tomlText
from tests.chaos.proxy import FaultProxy

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGINS = os.path.join(HERE, "plugins")
NODES = ("srv-a", "srv-b", "srv-c")
#: (dialer, dialed): each link goes through one proxy.
LINKS = (("srv-b", "srv-a"), ("srv-c", "srv-a"), ("srv-c", "srv-b"))
DEAD_PEER_TIMEOUT = 3.0
NODE_SETTINGS = {
    "dead_peer_timeout": DEAD_PEER_TIMEOUT,
    "handshake_timeout": 2.0,
    "reconnect_max_delay": 1.0,
    "connect_timeout": 2.0,
    # Every peer is a clustersync node (open plain links): confirm sends
    # with application receipts.
    "receipts": "all",
    # Links go through the fault proxies only: no gossip dialing around them.
    "gossip": False,
    "clients": "",
    "web": "",
}
#: SO_RCVBUF of the proxies' sockets (see L{FaultProxy.receiveBuffer}).
PROXY_RECEIVE_BUFFER = 4096
MARK_START = "<!-- chaos-results:start -->"
MARK_END = "<!-- chaos-results:end -->"


def freePort() -> int:
    """A loopback TCP port that was free a moment ago (bind port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(reactor, predicate, timeout: float, interval: float = 0.05) -> Deferred:
    """
    Fire with C{True} once C{predicate()} (a function returning a
    Deferred of a bool, or a bool) holds, checked every C{interval}; with
    C{False} after C{timeout} seconds.
    """
    @inlineCallbacks
    def run():
        deadline = reactor.seconds() + timeout
        while True:
            ok = yield defer.maybeDeferred(predicate)
            if ok:
                return True
            if reactor.seconds() >= deadline:
                return False
            yield task.deferLater(reactor, interval, lambda: None)

    return run()


class Control(LineOnlyReceiver):
    """
    The driver's end of a node's control port.  Answers come when each
    operation completes (a confirmed send waits for the peer's TCP
    acknowledgement), so each request has a tag its answer repeats.
    """

    delimiter = b"\n"
    MAX_LENGTH = 1 << 24

    def __init__(self) -> None:
        self.waiting: dict[int, Deferred] = {}
        self.nextTag = 0
        self.lost = False

    def request(self, **obj) -> Deferred:
        """Send one request; fire with its answer (a dict)."""
        if self.lost:
            return defer.succeed({"error": "ControlLost"})
        self.nextTag += 1
        d = self.waiting[self.nextTag] = Deferred()
        self.sendLine(json.dumps({**obj, "tag": self.nextTag}).encode())
        return d

    def lineReceived(self, line: bytes) -> None:
        """Fire the request the answer is tagged with."""
        answer = json.loads(line)
        self.waiting.pop(answer["tag"]).callback(answer)

    def connectionLost(self, reason) -> None:
        """Answer everything still waiting with an error."""
        self.lost = True
        waiting, self.waiting = self.waiting, {}
        for d in waiting.values():
            d.callback({"error": "ControlLost"})


class _NodeOutput(ProcessProtocol):
    def __init__(self, log) -> None:
        self.log = log
        self.ended = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.log.write(data)
        self.log.flush()

    errReceived = outReceived

    def processEnded(self, reason) -> None:
        self.ended.callback(None)


class NodeProcess:
    """One C{twistd -n clustersync} process and its control connection."""

    def __init__(self, reactor, serverId: str, workDir: str) -> None:
        self.reactor = reactor
        self.serverId = serverId
        self.workDir = workDir
        self.port = freePort()
        self.peers: list[str] = []
        self.process = None
        self.output = None
        self.control: Control | None = None
        self.epoch = 0
        self.up = False

    @inlineCallbacks
    def start(self):
        """Start the process and connect to its control port (bounded)."""
        self.epoch += 1
        config = os.path.join(self.workDir, f"{self.serverId}.toml")
        portFile = os.path.join(self.workDir, f"{self.serverId}.control")
        if os.path.exists(portFile):
            os.remove(portFile)
        with open(config, "w") as f:
            f.write(tomlText({
                "server_id": self.serverId,
                "listen": f"tcp:{self.port}:interface=127.0.0.1",
                "open_links": True,
                "peers": self.peers,
                "plugin_dirs": [PLUGINS],
                **NODE_SETTINGS,
            }))
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        log = open(os.path.join(self.workDir, f"{self.serverId}.log"), "ab")
        self.output = _NodeOutput(log)
        env = dict(os.environ, CLUSTERSYNC_CHAOS_PORTFILE=portFile)
        self.process = self.reactor.spawnProcess(
            self.output, twistd,
            [twistd, "--nodaemon", "--pidfile=", "--logfile=-", "clustersync", "--config", config],
            env=env, path=os.getcwd())
        ok = yield poll(self.reactor, lambda: os.path.exists(portFile), timeout=20)
        if not ok:
            raise RuntimeError(f"{self.serverId} did not open its control port")
        with open(portFile) as f:
            controlPort = int(f.read())
        factory = ClientFactory.forProtocol(Control)
        done = Deferred()
        factory.clientConnectionFailed = lambda c, r: done.errback(r)
        factory.buildProtocol = lambda addr: _connected(done)
        self.reactor.connectTCP("127.0.0.1", controlPort, factory, timeout=5)
        self.control = yield done
        self.up = True

    @inlineCallbacks
    def kill(self):
        """SIGKILL the process and wait for it to end (bounded)."""
        self.up = False
        self.epoch += 1
        try:
            self.process.signalProcess(signal.SIGKILL)
        except Exception:
            pass
        yield self.output.ended

    def request(self, **obj) -> Deferred:
        """A control request (an error answer if the node is down)."""
        if not self.up or self.control is None:
            return defer.succeed({"error": "NodeDown"})
        return self.control.request(**obj)


def _connected(done: Deferred) -> Control:
    protocol = Control()
    protocol.connectionMade = lambda: done.callback(protocol)
    return protocol


class Cluster:
    """The three nodes, the proxies, the driver and the ground truth."""

    def __init__(self, reactor, workDir: str, seed: int) -> None:
        self.reactor = reactor
        self.random = random.Random(seed)
        self.nodes = {n: NodeProcess(reactor, n, workDir) for n in NODES}
        self.proxies: dict[tuple[str, str], FaultProxy] = {}
        self.truth: dict[str, set[str]] = {n: set() for n in NODES}
        self.stable: dict[str, list[str]] = {n: [] for n in NODES}
        self.counter = 0
        self.pending: set[Deferred] = set()
        self.expected: dict[int, tuple[str, str]] = {}  # message id -> (source, target)
        self.delivered: dict[str, set[int]] = {n: set() for n in NODES}
        self.sendsOk = 0
        self.sendsFailed = 0
        self.noTarget: str | None = None
        self.linksClosed: dict[str, dict] = {n: {} for n in NODES}
        self.closedTotals: dict[str, int] = {}
        self.carried = (0, 0)
        self.peersSeen: dict[str, list] = {}

    @inlineCallbacks
    def start(self):
        """Proxies first (they need the nodes' ports), then the nodes."""
        for dialer, dialed in LINKS:
            proxy = FaultProxy(self.reactor, self.nodes[dialed].port, f"{dialer}->{dialed}",
                               receiveBuffer=PROXY_RECEIVE_BUFFER)
            proxy.start()
            self.proxies[(dialer, dialed)] = proxy
            self.nodes[dialer].peers.append(f"127.0.0.1:{proxy.port}")
        yield defer.gatherResults([n.start() for n in self.nodes.values()])
        for n in NODES:
            yield self.addStable(n, 3)

    @inlineCallbacks
    def stop(self):
        """Kill every node and stop the proxies."""
        for node in self.nodes.values():
            if node.process is not None and node.up:
                yield node.kill()
        for proxy in self.proxies.values():
            proxy.stop()

    def newSid(self, serverId: str) -> str:
        self.counter += 1
        return f"{serverId[-1]}{self.counter}"

    @inlineCallbacks
    def addStable(self, serverId: str, count: int):
        """Log in C{count} long-lived sessions (message targets) on a node."""
        for _ in range(count):
            sid = self.newSid(serverId)
            node = self.nodes[serverId]
            epoch = node.epoch
            answer = yield node.request(op="login", sid=sid, cid=self.counter, user=f"u{sid}")
            if answer.get("ok") and node.epoch == epoch:
                self.truth[serverId].add(sid)
                self.stable[serverId].append(sid)

    # Churn ---------------------------------------------------------------

    def _track(self, d: Deferred) -> None:
        self.pending.add(d)
        d.addBoth(lambda r: (self.pending.discard(d), r)[1])

    def churnStep(self) -> None:
        """One login or logout on a random live node, and one message."""
        live = [n for n in NODES if self.nodes[n].up]
        if not live:
            return
        serverId = self.random.choice(live)
        node = self.nodes[serverId]
        epoch = node.epoch
        churnable = sorted(self.truth[serverId] - set(self.stable[serverId]))
        if churnable and self.random.random() < 0.45:
            sid = self.random.choice(churnable)
            d = node.request(op="logout", sid=sid)

            def loggedOut(answer, sid=sid):
                if answer.get("ok") and node.epoch == epoch:
                    self.truth[serverId].discard(sid)

            d.addCallback(loggedOut)
        else:
            sid = self.newSid(serverId)
            d = node.request(op="login", sid=sid, cid=self.counter % 50, user=f"u{sid}")

            def loggedIn(answer, sid=sid):
                if answer.get("ok") and node.epoch == epoch:
                    self.truth[serverId].add(sid)

            d.addCallback(loggedIn)
        self._track(d)
        self.sendOne(live)

    def sendOne(self, live) -> None:
        """A SESSION_MESSAGE from a live node to a stable session elsewhere."""
        source = self.random.choice(live)
        targets = [n for n in NODES if n != source and n != self.noTarget and self.stable[n]]
        if not targets:
            return
        target = self.random.choice(targets)
        sid = self.random.choice(self.stable[target])
        self.counter += 1
        messageId = self.counter
        d = self.nodes[source].request(op="send", sid=sid, server=target, id=messageId)

        def sent(answer):
            if answer.get("ok"):
                self.sendsOk += 1
                self.expected[messageId] = (source, target)
            elif answer.get("error") in ("PeerUnavailable", "UnknownSession"):
                self.sendsFailed += 1

        d.addCallback(sent)
        self._track(d)

    @inlineCallbacks
    def churn(self, seconds: float, interval: float = 0.05):
        """Run the churn for C{seconds}, then wait for every answer (bounded)."""
        loop = task.LoopingCall(self.churnStep)
        loop.start(interval)
        yield task.deferLater(self.reactor, seconds, lambda: None)
        loop.stop()

    @inlineCallbacks
    def settle(self, timeout: float = 10.0):
        """Wait (bounded) for every outstanding driver request."""
        yield poll(self.reactor, lambda: not self.pending, timeout=timeout, interval=0.02)

    # Observation ---------------------------------------------------------

    @inlineCallbacks
    def views(self):
        """Each live node's sessions (a set of (serverId, sessionId))."""
        result = {}
        for serverId, node in self.nodes.items():
            if not node.up:
                continue
            answer = yield node.request(op="state")
            if "sessions" not in answer:
                continue
            result[serverId] = {tuple(x) for x in answer["sessions"]}
            self.delivered[serverId].update(answer["delivered"])
            self.linksClosed[serverId] = answer["closed"]
            self.peersSeen[serverId] = answer["peers"]
        return result

    def truthSet(self) -> set[tuple[str, str]]:
        """Every session that exists, as (serverId, sessionId)."""
        return {(n, s) for n in NODES if self.nodes[n].up for s in self.truth[n]}

    @inlineCallbacks
    def measure(self, healedAt: float, timeout: float):
        """
        Poll every node until all equal the truth; return (seconds from
        C{healedAt} to convergence or C{None}, ghosts, missing).
        """
        yield self.settle()
        last = {}

        @inlineCallbacks
        def check():
            views = yield self.views()
            last["views"] = views
            truth = self.truthSet()
            return len(views) == sum(1 for n in self.nodes.values() if n.up) and all(
                v == truth for v in views.values())

        ok = yield poll(self.reactor, check, timeout=timeout, interval=0.05)
        elapsed = self.reactor.seconds() - healedAt
        truth = self.truthSet()
        views = last.get("views", {})
        ghosts = sum(len(v - truth) for v in views.values())
        missing = sum(len(truth - v) for v in views.values())
        if not ok:
            for serverId, view in sorted(views.items()):
                if view != truth:
                    print(f"    {serverId} (linked to {self.peersSeen.get(serverId)}): "
                          f"ghosts {sorted(view - truth)} missing {sorted(truth - view)}",
                          flush=True)
        return (elapsed if ok else None), ghosts, missing

    @inlineCallbacks
    def lostMessages(self, faulted=(), timeout: float = 5.0):
        """
        Messages whose send succeeded and that have not reached their
        target after up to C{timeout} seconds, as C{(onFaultedLink,
        other)}: the first between two servers in one of the C{faulted}
        pairs (frozensets), or from a server in it alone (a killed node);
        forgets the ones accounted.
        """
        def allIn():
            return all(i in self.delivered[t] for i, (_, t) in self.expected.items())

        @inlineCallbacks
        def check():
            yield self.views()
            return allIn()

        yield poll(self.reactor, check, timeout=timeout, interval=0.1)
        onFaulted = other = 0
        for i, (source, target) in self.expected.items():
            if i in self.delivered[target]:
                continue
            if frozenset((source, target)) in faulted or frozenset((source,)) in faulted:
                onFaulted += 1
            else:
                other += 1
        self.expected = {}
        return onFaulted, other

    def closedCounts(self) -> dict[str, int]:
        """linksClosed summed over the live nodes (cumulative per process)."""
        totals: dict[str, int] = {}
        for counts in self.linksClosed.values():
            for k, v in counts.items():
                totals[k] = totals.get(k, 0) + v
        return totals


# Faults --------------------------------------------------------------------


@inlineCallbacks
def faultCut(cluster: Cluster, rep: int, reset: bool = False):
    """Churn, then cut (or reset) one link; the heal is the fault itself."""
    link = LINKS[rep % len(LINKS)]
    yield cluster.churn(1.0)
    proxy = cluster.proxies[link]
    (proxy.reset if reset else proxy.cut)()
    return cluster.reactor.seconds(), {frozenset(link)}


@inlineCallbacks
def faultBlackhole(cluster: Cluster, rep: int, seconds: float):
    """Black-hole one link for C{seconds} while clients churn."""
    link = LINKS[rep % len(LINKS)]
    proxy = cluster.proxies[link]
    proxy.blackhole()
    yield cluster.churn(seconds)
    proxy.heal()
    return cluster.reactor.seconds(), {frozenset(link)}


@inlineCallbacks
def faultPartition(cluster: Cluster, rep: int, seconds: float = 5.0):
    """Black-hole both links of one node (a netsplit isolating it)."""
    victim = NODES[rep % len(NODES)]
    proxies = [p for link, p in cluster.proxies.items() if victim in link]
    for p in proxies:
        p.blackhole()
    yield cluster.churn(seconds)
    for p in proxies:
        p.heal()
    return cluster.reactor.seconds(), {frozenset(link) for link in LINKS if victim in link}


@inlineCallbacks
def faultDelay(cluster: Cluster, rep: int, seconds: float = 3.0):
    """Add 200 ms each way to one link while clients churn."""
    link = LINKS[rep % len(LINKS)]
    proxy = cluster.proxies[link]
    proxy.setDelay(0.2)
    yield cluster.churn(seconds)
    proxy.heal()
    return cluster.reactor.seconds(), {frozenset(link)}


@inlineCallbacks
def faultThrottle(cluster: Cluster, rep: int, seconds: float = 3.0):
    """Cap one link at 4 KB/s each way while clients churn."""
    link = LINKS[rep % len(LINKS)]
    proxy = cluster.proxies[link]
    proxy.setThrottle(4000)
    yield cluster.churn(seconds)
    proxy.heal()
    return cluster.reactor.seconds(), {frozenset(link)}


@inlineCallbacks
def faultKill(cluster: Cluster, rep: int):
    """
    SIGKILL one node while clients churn, keep churning on the others,
    restart it on the same port; the heal is the restarted process ready.
    """
    victim = NODES[rep % len(NODES)]
    node = cluster.nodes[victim]
    cluster.noTarget = victim  # its deliveries die with it
    yield cluster.churn(0.5)
    yield cluster.settle()
    early = yield cluster.lostMessages()  # account messages sent before the kill
    yield node.kill()
    cluster.truth[victim] = set()
    cluster.stable[victim] = []
    yield cluster.churn(1.0)
    yield node.start()
    healed = cluster.reactor.seconds()
    yield cluster.addStable(victim, 3)
    cluster.noTarget = None
    cluster.carried = early
    return healed, {frozenset((victim,))}


@inlineCallbacks
def faultCrash(cluster: Cluster, rep: int):
    """
    A silent host crash: the node's links go dark (no FIN or RST ever
    reaches its peers, their old links stay half-open), the process dies,
    and it restarts on the same port; the heal is the restarted process
    ready.  Its peers must find out by themselves (dead-peer cut, or the
    stale-link replacement when it dials them again).
    """
    victim = NODES[rep % len(NODES)]
    node = cluster.nodes[victim]
    proxies = [p for link, p in cluster.proxies.items() if victim in link]
    cluster.noTarget = victim
    yield cluster.churn(0.5)
    yield cluster.settle()
    early = yield cluster.lostMessages()
    for proxy in proxies:
        proxy.blackhole()
    yield node.kill()
    cluster.truth[victim] = set()
    cluster.stable[victim] = []
    for proxy in proxies:
        proxy.strand()
    yield cluster.churn(1.0)
    yield node.start()
    healed = cluster.reactor.seconds()
    yield cluster.addStable(victim, 3)
    cluster.noTarget = None
    cluster.carried = early
    return healed, {frozenset((victim,))}


FAULTS = [
    ("cut", lambda c, r: faultCut(c, r)),
    ("reset", lambda c, r: faultCut(c, r, reset=True)),
    ("blackhole-short (1.5 s)", lambda c, r: faultBlackhole(c, r, 1.5)),
    ("blackhole-long (5 s)", lambda c, r: faultBlackhole(c, r, 5.0)),
    ("partition (5 s)", faultPartition),
    ("delay (200 ms, 3 s)", faultDelay),
    ("throttle (4 KB/s, 3 s)", faultThrottle),
    ("kill -9 + restart", faultKill),
    ("silent host crash + restart", faultCrash),
]


@inlineCallbacks
def runSuite(cluster: Cluster, reps: int, only=None):
    """Run every fault C{reps} times on C{cluster}; return the result rows."""
    reactor = cluster.reactor
    rows = []
    try:
        yield cluster.start()
        # Warm up: every link up, then some traffic past the first liveness
        # check of every link (a sixth of the bound, when each side shows
        # the other it heartbeats), so the faults hit a steady cluster.
        @inlineCallbacks
        def meshed():
            yield cluster.views()
            return all(len(cluster.peersSeen.get(n, ())) == len(NODES) - 1 for n in NODES)

        if not (yield poll(reactor, meshed, timeout=20)):
            raise RuntimeError("the three nodes did not link up")
        yield cluster.churn(1.0)
        first, ghosts, missing = yield cluster.measure(reactor.seconds(), timeout=30)
        if first is None:
            raise RuntimeError(f"the cluster never converged at start ({ghosts} ghosts, "
                               f"{missing} missing)")
        for name, fault in FAULTS:
            if only and not any(o in name for o in only):
                continue
            times, ghostsTotal, missingTotal, lostFaulted, lostOther = [], 0, 0, 0, 0
            okBefore, failedBefore = cluster.sendsOk, cluster.sendsFailed
            before = cluster.closedCounts()
            for rep in range(reps):
                cluster.carried = (0, 0)
                healed, faulted = yield fault(cluster, rep)
                elapsed, ghosts, missing = yield cluster.measure(healed, timeout=30)
                onFaulted, other = yield cluster.lostMessages(faulted)
                onFaulted += cluster.carried[0]
                other += cluster.carried[1]
                times.append(elapsed)
                ghostsTotal += ghosts
                missingTotal += missing
                lostFaulted += onFaulted
                lostOther += other
                shown = "timeout" if elapsed is None else f"{elapsed:.2f}s"
                print(f"  {name} #{rep + 1}: converged {shown}, ghosts {ghosts}, "
                      f"missing {missing}, lost on the faulted link {onFaulted}, "
                      f"lost elsewhere {other}", flush=True)
            after = cluster.closedCounts()
            cuts = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            done = [t for t in times if t is not None]
            rows.append({
                "fault": name,
                "runs": reps,
                "median": statistics.median(done) if done else None,
                "max": max(done) if len(done) == len(times) else None,
                "timeouts": len(times) - len(done),
                "ghosts": ghostsTotal,
                "missing": missingTotal,
                "sent": cluster.sendsOk - okBefore,
                "lostFaulted": lostFaulted,
                "lostOther": lostOther,
                "failedFast": cluster.sendsFailed - failedBefore,
                "deadPeer": max(0, cuts.get("dead_peer", 0)),
            })
    finally:
        yield cluster.stop()
    return rows


def table(rows) -> str:
    """The results as a Markdown table."""
    head = ("| fault | runs | converge median | converge max | ghosts | missing "
            "| msgs confirmed | failed with a named error | confirmed then lost, on the faulted link "
            "| lost otherwise (silent) | dead-peer cuts |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n")

    def sec(v):
        return "timeout" if v is None else f"{v:.2f} s"

    return head + "".join(
        f"| {r['fault']} | {r['runs']} | {sec(r['median'])} | {sec(r['max'])} | {r['ghosts']} "
        f"| {r['missing']} | {r['sent']} | {r['failedFast']} | {r['lostFaulted']} "
        f"| {r['lostOther']} | {r['deadPeer']} |\n"
        for r in rows)


def writeResults(path: str, text: str) -> None:
    """Replace the marked results section of C{path} with C{text}."""
    with open(path) as f:
        doc = f.read()
    start, end = doc.index(MARK_START) + len(MARK_START), doc.index(MARK_END)
    with open(path, "w") as f:
        f.write(doc[:start] + "\n" + text + doc[end:])


def main(argv=None) -> int:
    """Run the suite; print (and optionally write) the table; 0 if all clean."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--write", metavar="MARKDOWN", default=None,
                        help="replace the results section of this file")
    parser.add_argument("--only", action="append", help="run only faults whose name contains this")
    parser.add_argument("--keep", action="store_true", help="keep the node logs")
    parser.add_argument("--budget", type=float, default=290.0, help="overall time limit (s)")
    args = parser.parse_args(argv)
    workDir = tempfile.mkdtemp(prefix="clustersync-chaos-")
    outcome = {}

    def go(reactor):
        cluster = Cluster(reactor, workDir, args.seed)

        def overBudget():
            for node in cluster.nodes.values():
                if node.process is not None and node.up:
                    node.process.signalProcess(signal.SIGKILL)
            reactor.stop()

        watchdog = reactor.callLater(args.budget, overBudget)
        d = runSuite(cluster, args.reps, args.only)

        def done(rows):
            outcome["rows"] = rows
            if watchdog.active():
                watchdog.cancel()

        def failed(f):
            outcome["error"] = f.getTraceback()
            if watchdog.active():
                watchdog.cancel()

        return d.addCallbacks(done, failed)

    started = time.time()
    _react(go)
    if "error" in outcome:
        print(outcome["error"], file=sys.stderr)
        print(f"node logs kept in {workDir}", file=sys.stderr)
        return 2
    if "rows" not in outcome:
        print(f"chaos suite over its {args.budget:g}s budget; node logs in {workDir}",
              file=sys.stderr)
        return 2
    rows = outcome["rows"]
    text = table(rows)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    footer = (f"\n_{stamp}; {args.reps} runs per fault; 3 nodes; dead_peer_timeout "
              f"{DEAD_PEER_TIMEOUT:g} s, reconnect_max_delay 1 s; whole suite "
              f"{time.time() - started:.0f} s._\n")
    print()
    print(text + footer)
    if args.write:
        writeResults(args.write, text + footer)
        print(f"written to {args.write}")
    if args.keep:
        print(f"node logs in {workDir}")
    else:
        shutil.rmtree(workDir, ignore_errors=True)
    clean = all(r["ghosts"] == 0 and r["missing"] == 0 and r["lostOther"] == 0
                and r["lostFaulted"] == 0 and not r["timeouts"] for r in rows)
    return 0 if clean else 1


def _react(go) -> None:
    """Run C{go(reactor)} to completion on the global reactor."""
    from twisted.internet import reactor

    def start():
        d = defer.maybeDeferred(go, reactor)
        d.addBoth(lambda _: reactor.stop() if reactor.running else None)

    reactor.callWhenRunning(start)
    reactor.run()


if __name__ == "__main__":
    sys.exit(main())
