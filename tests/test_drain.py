"""
Tests for a planned leave through C{clustersync-admin drain} (C{POST
/api/drain}): real nodes on loopback, the admin command in a thread.
"""

from __future__ import annotations

import argparse
import contextlib
import io

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool, readBody

from clustersync.cli.adminops import runDrain
from clustersync.errors import NodeDraining

from tests.support import Conditions, linkPorts, poll, startNode

WEB = "tcp:0:interface=127.0.0.1"


class AdminDrainTests(unittest.TestCase):
    """Node A serves its web port; node B dials A."""

    timeout = 30

    @inlineCallbacks
    def setUp(self):
        """A with a web port whose process stop is recorded, B linked to it."""
        self.cond = Conditions(reactor)
        self.serviceA, self.a, portA, _ = yield startNode(self, reactor, "srv-a",
                                                          conditions=self.cond, web=WEB)
        self.web = self.serviceA.getServiceNamed("web")
        self.stops = []
        self.web.stopProcess = lambda: self.stops.append(True)
        port = yield self.web.whenListening()
        self.base = f"http://127.0.0.1:{port.getHost().port}"
        _, self.b, _, _ = yield startNode(self, reactor, "srv-b", linkPorts(portA),
                                          conditions=self.cond)
        yield self.cond.waitUntil(lambda: self.a.linkFor("srv-b") and self.b.linkFor("srv-a"),
                                  what="linked")
        yield self.a.clientConnected("a1", 1, "uno")
        yield self.cond.waitUntil(lambda: self.b.state.session("srv-a", "a1"), what="a1 on B")

    @inlineCallbacks
    def test_adminDrain(self):
        """
        C{clustersync-admin drain} prints that the node drained, exits 0;
        the node stops its process, takes no new session, and its peer
        counts it as left, its sessions gone.
        """
        args = argparse.Namespace(url=self.base, json=False, token_file=None, ca=None,
                                  cert=None, key=None, command="drain")
        out = io.StringIO()

        def run():
            with contextlib.redirect_stdout(out):
                return runDrain(args)

        code = yield deferToThread(run)
        self.assertEqual(code, 0)
        self.assertIn("node srv-a: drained, 1 peers told", out.getvalue())
        yield self.cond.waitUntil(lambda: self.b.linkFor("srv-a") is None, what="A gone")
        yield poll(lambda: self.stops, 5, "the process stop")
        self.assertIsNone(self.b.state.session("srv-a", "a1"))
        self.assertEqual(self.b.metrics.liveness["peer_left"], 1)
        yield self.assertFailure(self.a.clientConnected("a2", 2, "dos"), NodeDraining)

    @inlineCallbacks
    def test_needsAdminHeader(self):
        """A POST without the admin header (a cross-site form) is refused: 403, no drain."""
        agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        response = yield agent.request(b"POST", (self.base + "/api/drain").encode())
        self.assertEqual(response.code, 403)
        yield readBody(response)
        self.assertFalse(self.a.draining)
        self.assertIsNotNone(self.b.linkFor("srv-a"))


class TrackerTests(unittest.TestCase):
    """The status page's view of a peer that left."""

    def test_leftIsNotDown(self):
        """A peer lost with a C{left:} reason is listed C{left}; another loss C{down}."""
        from twisted.internet.task import Clock

        from clustersync.cluster.node import PeerInfo
        from clustersync.web.tracker import StatusTracker

        tracker = StatusTracker(None, Clock())
        for serverId, reason in (("srv-b", "left: shutting down"), ("srv-c", "dead peer")):
            peer = PeerInfo(serverId, "inbound", "127.0.0.1:1", 1.0, False)
            tracker.peerConnected(peer)
            tracker.peerDisconnected(peer, reason)
        self.assertEqual({p["serverId"]: p["state"] for p in tracker.peerList()},
                         {"srv-b": "left", "srv-c": "down"})
