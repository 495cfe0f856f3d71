"""
A real C{twistd clustersync} process in a cluster with two in-process nodes:
after C{kill -9} of the process, the others drop its sessions, keep
redialing, and re-sync its sessions when it is back.
"""

from __future__ import annotations

import os
import signal
import socket
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ProcessProtocol
from twisted.trial import unittest

from tests.support import Conditions, startNode

SEEDS = os.path.join(os.path.dirname(__file__), "fixtures", "seedplugins")


def freePort() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _NodeProcess(ProcessProtocol):
    """Collects a node process's output and tells when it ended."""

    def __init__(self) -> None:
        self.output = []
        self.ended = Deferred()

    def outReceived(self, data: bytes) -> None:
        """Keep the log for failure messages."""
        self.output.append(data)

    errReceived = outReceived

    def processEnded(self, reason) -> None:
        """Fire L{ended}."""
        self.ended.callback(reason.value.exitCode)


def spawnNode(testCase, serverId: str, port: int, peers, seed: str, extra=()) -> _NodeProcess:
    """Start C{twistd -n clustersync} with the seed plugin dir (and C{extra} options)."""
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    proto = _NodeProcess()
    env = dict(os.environ, CLUSTERSYNC_SEED=seed)
    args = [twistd, "--nodaemon", "--pidfile=", "--logfile=-", "clustersync",
            "--server-id", serverId, "--listen", f"tcp:{port}:interface=127.0.0.1", "--open-links",
            "--clients", "none", "--web", "none", "--plugin-dir", SEEDS]
    for p in peers:
        args += ["--peer", p]
    args += list(extra)
    transport = reactor.spawnProcess(proto, twistd, args, env=env, path=os.getcwd())
    proto.transport = transport

    def cleanup():
        if proto.ended.called:
            return None
        try:
            transport.signalProcess("KILL")
        except Exception:
            pass
        return proto.ended

    testCase.addCleanup(cleanup)
    return proto


class KillNineTests(unittest.TestCase):
    """C{kill -9} of a real node process and its return."""

    timeout = 90

    @inlineCallbacks
    def test_killAndRestart(self):
        """
        A and B (in-process) dial C (a twistd process).  C's seeded sessions
        reach both; after SIGKILL both drop them and C; when C restarts
        with other sessions, A and B reconnect by themselves and re-sync.
        """
        cond = Conditions(reactor)
        sa, a, portA, _ = yield startNode(self, reactor, "srv-a", conditions=cond)
        sb, b, portB, _ = yield startNode(self, reactor, "srv-b", conditions=cond)
        portC = freePort()
        for service in (sa, sb):
            service.getServiceNamed("peer-dial").addPeer(f"127.0.0.1:{portC}")
        c = spawnNode(self, "srv-c", portC, [f"127.0.0.1:{portA}", f"127.0.0.1:{portB}"],
                      "c1:7:luis:5+6;c2:8:eva:")

        def cSessions(node):
            return {s.sessionId for s in node.state.sessionsOf("srv-c")}

        yield cond.waitUntil(
            lambda: cSessions(a) == {"c1", "c2"} and cSessions(b) == {"c1", "c2"},
            timeout=30, what="C's sessions on A and B")
        self.assertEqual({s.sessionId for s in (yield a.channelMembers(5))}, {"c1"})

        c.transport.signalProcess(signal.SIGKILL)
        yield c.ended
        yield cond.waitUntil(
            lambda: a.linkFor("srv-c") is None and b.linkFor("srv-c") is None
            and not cSessions(a) and not cSessions(b),
            timeout=15, what="C dropped")
        self.assertFalse(a.state.hasServer("srv-c"))

        spawnNode(self, "srv-c", portC, [f"127.0.0.1:{portA}", f"127.0.0.1:{portB}"],
                  "c3:9:ines:7")
        yield cond.waitUntil(
            lambda: cSessions(a) == {"c3"} and cSessions(b) == {"c3"},
            timeout=40, what="C re-synced after restart")
        self.assertEqual(a.state.session("srv-c", "c3").canales, {7})


class _Reasons:
    """An L{IClusterListener} keeping the reason of every peer lost."""

    def __init__(self) -> None:
        self.lost: list[tuple[str, str]] = []

    def peerConnected(self, peer) -> None:
        """Nothing to keep."""

    def peerDisconnected(self, peer, reason) -> None:
        """Keep C{(serverId, reason)}."""
        self.lost.append((peer.serverId, str(reason)))

    def sessionAdded(self, session) -> None:
        """Nothing to keep."""

    sessionRemoved = sessionAdded

    def membershipChanged(self, session, canalId, joined) -> None:
        """Nothing to keep."""


class DrainTests(unittest.TestCase):
    """C{kill -TERM} of a real node process: a planned leave."""

    timeout = 60

    @inlineCallbacks
    def test_sigtermLeaves(self):
        """
        A (in-process) dials C (a twistd process, clustersync peers on plain
        links).  On SIGTERM C tells A it is leaving and exits 0; A records
        the loss as "left", counts it, drops C's sessions, and redials C
        only at the slow pace (its factory's delay is the maximum).
        """
        cond = Conditions(reactor)
        sa, a, portA, _ = yield startNode(self, reactor, "srv-a", conditions=cond,
                                          reconnectMaxDelay=20.0)
        reasons = _Reasons()
        a.addListener(reasons)
        a.clientConnected("a1", 1, "uno")
        portC = freePort()
        sa.getServiceNamed("peer-dial").addPeer(f"127.0.0.1:{portC}")
        c = spawnNode(self, "srv-c", portC, [], "c1:7:luis:5", ["--extensions", "all"])
        yield cond.waitUntil(lambda: a.state.session("srv-c", "c1") is not None,
                             timeout=30, what="C's session on A")
        c.transport.signalProcess(signal.SIGTERM)
        code = yield c.ended
        self.assertEqual(code, 0, b"".join(c.output).decode(errors="replace")[-2000:])
        yield cond.waitUntil(lambda: a.linkFor("srv-c") is None, what="C gone")
        self.assertEqual(reasons.lost[0][0], "srv-c")
        self.assertTrue(reasons.lost[0][1].startswith("left:"), reasons.lost)
        self.assertEqual(a.metrics.liveness["peer_left"], 1)
        self.assertEqual(a.metrics.linksClosed["dead_peer"], 0)
        self.assertIsNone(a.state.session("srv-c", "c1"))
        self.assertIsNotNone(a.state.session("srv-a", "a1"))
        [factory] = [f for f in a.outboundFactories if f.address == f"127.0.0.1:{portC}"]
        self.assertEqual(factory.delay, factory.maxDelay)
        self.assertIn(b"draining", b"".join(c.output))
