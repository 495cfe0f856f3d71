"""
C{make cluster} end to end: three real nodes over mutual TLS on their fixed
loopback ports (outside the kernel's ephemeral range, so no test collides
with them), a chat client on two of them, C{kill -9} of srv-c, and srv-c's
return with C{make cluster-node NODE=srv-c}.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

from twisted.internet import threads
from twisted.trial import unittest

from clustersync.cli.devcluster import NODES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def portsFree() -> bool:
    """Whether every fixed port of the local cluster can be bound."""
    for ports in NODES.values():
        for port in ports:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    return False
    return True


def until(predicate, what: str, timeout: float = 30.0) -> float:
    """
    Re-check C{predicate} (an observation of the real processes) until it
    holds; raise C{AssertionError} naming C{what} after C{timeout} seconds.

    @return: the seconds it took.
    """
    started = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - started
        except OSError:
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def getJSON(port: int, path: str):
    """GET C{path} of the status server on C{port}, parsed."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return json.load(r)


def sessions(node: str) -> list:
    """Sorted C{(serverId, usuario)} of every session C{node} knows."""
    return sorted((s["serverId"], s["usuario"]) for s in getJSON(NODES[node][2], "/api/sessions")["sessions"])


def peerStates(node: str) -> dict:
    """serverId -> "up"/"down" as C{node}'s status server reports."""
    return {p["serverId"]: p["state"] for p in getJSON(NODES[node][2], "/api/peers")["peers"]}


class Client:
    """A chat client socket (TLS, verified against C{ca}) logged in as C{user} on C{node}."""

    def __init__(self, node: str, user: str, password: str, ca: str) -> None:
        context = ssl.create_default_context(cafile=ca)
        raw = socket.create_connection(("127.0.0.1", NODES[node][1]), timeout=10)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        self.file = self.sock.makefile("rwb")
        request = {"command": "LOGIN", "payload": {"usuario": user, "contrasenia": password}}
        self.file.write(json.dumps(request).encode() + b"\n")
        self.file.flush()
        self.login = json.loads(self.file.readline())

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def holdClusterPorts(test: unittest.TestCase):
    """
    Wait for the machine-wide lock on the local cluster's fixed ports, so
    that two tests running it (C{trial --jobs}) take turns; the lock is
    released when C{test}'s cleanups close it (after its tearDown stopped
    the nodes).

    @return: a Deferred firing once the lock is held (a blocking C{flock}
        in a thread, bounded by the test's timeout).
    """
    path = os.path.join(tempfile.gettempdir(), "clustersync-devcluster-ports.lock")
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    test.addCleanup(os.close, fd)
    return threads.deferToThread(fcntl.flock, fd, fcntl.LOCK_EX)


class MakeClusterTests(unittest.TestCase):
    """The issue's "done when", run against C{python -m clustersync.cli.devcluster}."""

    timeout = 150

    def setUp(self):
        """
        Take turns with the other tests of the fixed ports; skip when a
        port is taken by something else (say, a developer's own cluster).
        """
        self.procs = []
        return holdClusterPorts(self).addCallback(lambda _: threads.deferToThread(self.checkPorts))

    def checkPorts(self) -> None:
        """Skip unless every fixed port is free; make the run directory."""
        try:
            # The previous holder's processes may take a moment to exit.
            until(lambda: portsFree(), "the fixed ports to be free", 20)
        except AssertionError:
            raise unittest.SkipTest("a port of the local cluster (71xx-73xx) is in use") from None
        self.runDir = os.path.abspath(self.mktemp())

    def tearDown(self):
        """Stop every launcher (each stops its nodes)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def launch(self, *args) -> subprocess.Popen:
        """Start the launcher with C{args}, logging into the run dir."""
        log = open(os.path.join(self.runDir + f".{len(self.procs)}.log"), "wb")
        self.addCleanup(log.close)
        proc = subprocess.Popen(
            [sys.executable, "-m", "clustersync.cli.devcluster", "--run-dir", self.runDir, *args],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def scenario(self) -> dict:
        """The whole scenario, in a thread (blocking sockets, bounded waits)."""
        times = {}
        self.launch()
        until(lambda: all(set(peerStates(n).values()) == {"up"} and len(peerStates(n)) == 2
                          for n in NODES), "three linked nodes", 60)
        self.assertTrue(all(p["tls"] for p in getJSON(7301, "/api/peers")["peers"]))
        logins = os.path.join(self.runDir, "users.json.demo-logins.txt")
        passwords = dict(l.split() for l in open(logins) if l.strip() and not l.startswith("#"))
        ca = os.path.join(self.runDir, "certs", "ca.pem")
        ana = Client("srv-a", "ana", passwords["ana"], ca)
        luis = Client("srv-c", "luis", passwords["luis"], ca)
        self.addCleanup(ana.close)
        self.addCleanup(luis.close)
        self.assertTrue(ana.login["payload"]["success"] and luis.login["payload"]["success"])
        both = [("srv-a", "ana"), ("srv-c", "luis")]
        times["sync"] = until(lambda: all(sessions(n) == both for n in NODES), "sessions everywhere")

        with open(os.path.join(self.runDir, "srv-c.pid")) as f:
            os.kill(int(f.read()), signal.SIGKILL)
        times["drop"] = until(
            lambda: sessions("srv-a") == sessions("srv-b") == [("srv-a", "ana")]
            and peerStates("srv-a")["srv-c"] == peerStates("srv-b")["srv-c"] == "down",
            "A and B drop srv-c")

        self.launch("--only", "srv-c")
        until(lambda: peerStates("srv-c") == {"srv-a": "up", "srv-b": "up"}, "srv-c relinked", 60)
        luis2 = Client("srv-c", "luis", passwords["luis"], ca)
        self.addCleanup(luis2.close)
        times["resync"] = until(
            lambda: sessions("srv-a") == sessions("srv-b") == both
            and peerStates("srv-a")["srv-c"] == peerStates("srv-b")["srv-c"] == "up",
            "srv-c back and re-synced", 60)
        return times

    def test_killNineAndBack(self):
        """
        A session on srv-a and one on srv-c are seen on all three nodes;
        after C{kill -9} of srv-c, srv-a and srv-b drop its session and show
        it down; once srv-c is started again they relink by themselves and
        see its new session.
        """
        d = threads.deferToThread(self.scenario)
        d.addCallback(lambda times: self.assertEqual(set(times), {"sync", "drop", "resync"}))
        return d
