"""
C{clustersync-admin peers|sessions|channels}, run as a real process
against a node's JSON API on loopback.
"""

from __future__ import annotations

import json
import os
import sys

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest

from clustersync.cli.adminops import formatTable

from tests.support import Conditions, linkPorts, startNode


def admin(*args):
    """
    Run the installed C{clustersync-admin ARGS}; fires with C{(stdout,
    stderr, exit status)} as text.
    """
    script = os.path.join(os.path.dirname(sys.executable), "clustersync-admin")
    d = getProcessOutputAndValue(
        script, list(args), env=dict(os.environ),
        path=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return d.addCallback(lambda r: (r[0].decode(), r[1].decode(), r[2]))


class AdminCommandTests(unittest.TestCase):
    """Node A (serving the API) linked to B; sessions on both."""

    timeout = 60

    @inlineCallbacks
    def setUp(self):
        """Link A and B, add a session on each, find A's web port."""
        cond = Conditions(reactor)
        service, self.a, portA, _ = yield startNode(
            self, reactor, "srv-a", conditions=cond, web="tcp:0:interface=127.0.0.1")
        _, self.b, _, _ = yield startNode(self, reactor, "srv-b", linkPorts(portA),
                                          conditions=cond)
        yield cond.waitUntil(lambda: self.a.linkFor("srv-b") and self.b.linkFor("srv-a"))
        yield self.a.clientConnected("sa", 1, "ana", "10.0.0.9", [3])
        yield self.b.clientConnected("sb", 7, "luis", None, [3, 9])
        yield cond.waitUntil(lambda: len(list(self.a.state.allSessions())) == 2)
        port = yield service.getServiceNamed("web").whenListening()
        self.url = f"http://127.0.0.1:{port.getHost().port}"

    @inlineCallbacks
    def test_peersTable(self):
        """C{peers} prints a table with B up, inbound, without TLS."""
        out, err, code = yield admin("peers", "--url", self.url)
        self.assertEqual((code, err), (0, ""))
        lines = out.splitlines()
        self.assertEqual(lines[0], "node srv-a: 1 of 1 peers up")
        self.assertEqual(lines[1].split(), ["PEER", "STATE", "SINCE", "LINK", "ADDRESS", "TLS",
                                            "REASON"])
        fields = lines[3].split()
        self.assertEqual((fields[0], fields[1], fields[3], fields[4], fields[6]),
                         ("srv-b", "up", "ago", "inbound", "no"))

    @inlineCallbacks
    def test_peersJSON(self):
        """C{peers --json} prints the API document itself."""
        out, err, code = yield admin("peers", "--url", self.url, "--json")
        self.assertEqual(code, 0)
        doc = json.loads(out)
        self.assertEqual(doc["serverId"], "srv-a")
        self.assertEqual([(p["serverId"], p["state"]) for p in doc["peers"]], [("srv-b", "up")])

    @inlineCallbacks
    def test_sessions(self):
        """C{sessions} lists both servers' sessions; C{--server} filters."""
        out, err, code = yield admin("sessions", "--url", self.url)
        self.assertEqual(code, 0)
        lines = out.splitlines()
        self.assertEqual(lines[0],
                         "node srv-a: 2 sessions (1 local, 1 remote; srv-a: 1, srv-b: 1)")
        self.assertEqual([line.split() for line in lines[3:]],
                         [["srv-a", "sa", "1", "ana", "10.0.0.9", "3"],
                          ["srv-b", "sb", "7", "luis", "3,9"]])
        out, err, code = yield admin("sessions", "--url", self.url, "--server", "srv-b", "--json")
        self.assertEqual([s["sessionId"] for s in json.loads(out)["sessions"]], ["sb"])

    @inlineCallbacks
    def test_channels(self):
        """C{channels} lists each channel with its members across servers."""
        out, err, code = yield admin("channels", "--url", self.url)
        self.assertEqual(code, 0)
        lines = out.splitlines()
        self.assertEqual(lines[0], "node srv-a: 2 channels with members")
        self.assertEqual(lines[3].split(None, 2), ["3", "2", "ana@srv-a, luis@srv-b"])
        self.assertEqual(lines[4].split(None, 2), ["9", "1", "luis@srv-b"])


class AdminErrorTests(unittest.TestCase):
    """Failures are reported on stderr with exit status 1."""

    timeout = 30

    @inlineCallbacks
    def test_unreachable(self):
        """A node that does not answer: one line naming the URL, status 1."""
        from twisted.internet.endpoints import TCP4ServerEndpoint
        from twisted.internet.protocol import Factory

        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Factory())
        number = port.getHost().port
        yield port.stopListening()
        out, err, code = yield admin("peers", "--url", f"http://127.0.0.1:{number}")
        self.assertEqual((code, out), (1, ""))
        self.assertIn(f"cannot reach http://127.0.0.1:{number}/api/peers", err)

    def test_formatTable(self):
        """Columns are as wide as their widest cell, with a rule under the header."""
        self.assertEqual(formatTable(["A", "LONG"], [["xyz", 1], [None, "v"]]),
                         "A    LONG\n---  ----\nxyz  1\n     v")
