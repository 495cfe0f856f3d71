"""
C{make cluster ARGS=--backplane} end to end: a local nats-server and three
real nodes on it (no links between them), two chat clients on different
nodes exchanging a direct and a channel message.
"""

from __future__ import annotations

import json
import os
import socket

from twisted.internet import threads
from twisted.trial import unittest

from clustersync.backplane.natsprocess import findNatsServer
from clustersync.cli.devcluster import NATS_PORT, NODES

from tests import test_devcluster as mesh
from tests.test_devcluster import Client, getJSON, holdClusterPorts, portsFree, sessions, until


def natsPortFree() -> bool:
    """Whether the local cluster's NATS port can be bound."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", NATS_PORT))
        except OSError:
            return False
    return True


def readEvent(client: Client, kind: str) -> dict:
    """The next pushed EVENT whose C{evento} is C{kind} (responses skipped)."""
    while True:
        line = client.file.readline()
        if not line:
            raise AssertionError(f"connection closed before {kind}")
        message = json.loads(line)
        if message.get("command") == "EVENT" and message["payload"].get("evento") == kind:
            return message["payload"]


def request(client: Client, command: str, **payload) -> None:
    """Send one request line."""
    client.file.write(json.dumps({"command": command, "payload": payload}).encode() + b"\n")
    client.file.flush()


class BackplaneClusterTests(unittest.TestCase):
    """The issue's "done when" for the backplane."""

    timeout = 150
    #: Started and stopped as the mesh's test does.
    launch = mesh.MakeClusterTests.launch
    tearDown = mesh.MakeClusterTests.tearDown

    def setUp(self):
        """
        Skip without nats-server (unless CI); take turns with the other
        tests of the fixed ports, then skip if one is taken anyway.
        """
        if findNatsServer() is None and os.environ.get("CI") != "true":
            raise unittest.SkipTest("nats-server is not installed (apt-get install nats-server)")
        self.procs = []
        return holdClusterPorts(self).addCallback(lambda _: threads.deferToThread(self.checkPorts))

    def checkPorts(self) -> None:
        """Skip unless every fixed port is free; make the run directory."""
        try:
            # The previous holder's processes may take a moment to exit.
            until(lambda: portsFree() and natsPortFree(), "the fixed ports to be free", 20)
        except AssertionError:
            raise unittest.SkipTest("a port of the local cluster (71xx-73xx, 7400) is in use") from None
        self.runDir = os.path.abspath(self.mktemp())

    def scenarioBackplane(self) -> None:
        """The whole scenario, in a thread (blocking sockets, bounded waits)."""
        self.launch("--backplane")
        until(lambda: all(
            sorted((p["serverId"], p["state"]) for p in getJSON(NODES[n][2], "/api/peers")["peers"])
            == sorted((m, "up") for m in NODES if m != n) for n in NODES), "three nodes on NATS", 60)
        until(lambda: getJSON(NODES["srv-b"][2], "/api/health").get("backplane", {}).get("state")
              == "up", "the backplane reported up in /api/health", 30)
        logins = os.path.join(self.runDir, "users.json.demo-logins.txt")
        passwords = dict(l.split() for l in open(logins) if l.strip() and not l.startswith("#"))
        ca = os.path.join(self.runDir, "certs", "ca.pem")
        ana = Client("srv-a", "ana", passwords["ana"], ca)
        luis = Client("srv-c", "luis", passwords["luis"], ca)
        self.addCleanup(ana.close)
        self.addCleanup(luis.close)
        both = [("srv-a", "ana"), ("srv-c", "luis")]
        until(lambda: all(sessions(n) == both for n in NODES), "sessions everywhere")
        luisId = luis.login["payload"]["clienteId"]
        request(ana, "SEND_USER", clienteId=luisId, contenido="hola luis")
        self.assertEqual(readEvent(luis, "NEW_MESSAGE")["contenido"], "hola luis")
        request(luis, "JOIN", canalId=3)
        request(ana, "JOIN", canalId=3)
        until(lambda: len(getJSON(NODES["srv-a"][2], "/api/channels")["channels"]) == 1
              and getJSON(NODES["srv-a"][2], "/api/channels")["channels"][0]["count"] == 2,
              "both in channel 3")
        request(ana, "SEND_CHANNEL", canalId=3, contenido="a todos")
        self.assertEqual(readEvent(luis, "NEW_CHANNEL_MESSAGE")["contenido"], "a todos")

    def test_directAndChannel(self):
        """
        Three nodes and a nats-server; ana on srv-a and luis on srv-c
        exchange a direct and a channel message through NATS.
        """
        return threads.deferToThread(self.scenarioBackplane)
