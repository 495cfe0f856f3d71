"""
JSON lines logs: the C{log_json} file service, and C{twistd --logger
clustersync.logs.jsonObserver} in a real process.
"""

from __future__ import annotations

import io
import json
import os
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import LogPublisher, Logger, eventFromJSON, formatEvent
from twisted.trial import unittest

from clustersync.app.config import NodeConfig
from clustersync.app.logs import JSONLogService, jsonObserver, makeJSONLogService
from clustersync.app.tap import Options


class JSONObserverTests(unittest.TestCase):
    """L{jsonObserver} and L{JSONLogService}."""

    def test_oneObjectPerLine(self):
        """Each event is one JSON line with its structured fields."""
        out = io.StringIO()
        publisher = LogPublisher(jsonObserver(out))
        log = Logger(observer=publisher, namespace="clustersync.test")
        log.info("link to {peer} lost ({reason})", peer="srv-b", reason="timeout")
        log.warn("rejected {n}", n=3)
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 2)
        first = json.loads(lines[0])
        self.assertEqual((first["peer"], first["reason"], first["log_namespace"]),
                         ("srv-b", "timeout", "clustersync.test"))
        self.assertEqual(formatEvent(eventFromJSON(lines[0])), "link to srv-b lost (timeout)")
        self.assertEqual(json.loads(lines[1])["log_level"]["name"], "warn")

    def test_serviceWritesWhileRunning(self):
        """
        L{JSONLogService} appends events to its file only while running.
        """
        path = self.mktemp()
        publisher = LogPublisher()
        log = Logger(observer=publisher)
        service = JSONLogService(path, publisher)
        log.info("before")
        service.startService()
        log.info("during {x}", x=1)
        service.stopService()
        log.info("after")
        with open(path) as f:
            events = [json.loads(line) for line in f]
        self.assertEqual([(e["log_format"], e.get("x")) for e in events], [("during {x}", 1)])

    def test_setting(self):
        """C{log_json}/C{--log-json} make the service; unset, none."""
        self.assertIsNone(makeJSONLogService(NodeConfig()))
        self.assertEqual(makeJSONLogService(NodeConfig(logJson="/tmp/x.jsonl")).path,
                         "/tmp/x.jsonl")
        options = Options()
        options.parseOptions(["--log-json", "-"])
        self.assertEqual(options.config.logJson, "-")


class ExtensionTests(unittest.TestCase):
    """The drop-in adds the JSON log service to a node only when asked."""

    def test_nodeService(self):
        """A node built with C{log_json} has a C{json-log} service; without, none."""
        from twisted.internet.task import Clock

        from clustersync.app.service import makeNodeService

        path = os.path.abspath(self.mktemp())
        top = makeNodeService(NodeConfig(serverId="srv-a", listen=None, clients=None, web=None,
                                         logJson=path), Clock())
        self.assertEqual(top.getServiceNamed("json-log").path, path)
        top = makeNodeService(NodeConfig(serverId="srv-a", listen=None, clients=None, web=None),
                              Clock())
        self.assertNotIn("json-log", [s.name for s in top])


class _Lines(ProcessProtocol):
    """Collects output; fires L{found} on the first JSON event matching."""

    def __init__(self, predicate) -> None:
        self.predicate = predicate
        self.buffer = b""
        self.found = Deferred()
        self.ended = Deferred()

    def childDataReceived(self, fd, data) -> None:
        """Parse each complete stdout line as JSON."""
        self.buffer += data
        *lines, _ = self.buffer.split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not self.found.called and self.predicate(event):
                self.found.callback(event)

    def processEnded(self, reason) -> None:
        """Fire L{ended}."""
        self.ended.callback(None)


class TwistdLoggerTests(unittest.TestCase):
    """C{twistd --logger clustersync.logs.jsonObserver}."""

    timeout = 60

    @inlineCallbacks
    def test_twistdJSONLogs(self):
        """
        A real node's log output is JSON lines, with the structured fields
        of clustersync's events (here the status page address).
        """
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        proto = _Lines(lambda e: e.get("log_format", "").startswith("status page on"))
        args = [twistd, "--nodaemon", "--pidfile=", "--logger", "clustersync.logs.jsonObserver",
                "clustersync", "--server-id", "srv-json", "--listen", "tcp:0:interface=127.0.0.1",
                "--web", "tcp:0:interface=127.0.0.1", "--clients", "none"]
        process = reactor.spawnProcess(proto, twistd, args, env=dict(os.environ),
                                       path=os.getcwd())

        def stop():
            if process.pid is not None:
                process.signalProcess("KILL")
            return proto.ended

        self.addCleanup(stop)
        try:
            event = yield proto.found.addTimeout(30, reactor)
        except Exception:
            self.fail("no JSON status page event; output:\n" + proto.buffer.decode(errors="replace"))
        self.assertRegex(event["address"], r"^127\.0\.0\.1:\d+$")
        self.assertEqual(event["log_namespace"], "clustersync.web.service.WebService")
        for line in proto.buffer.split(b"\n")[:-1]:
            if line.strip():
                json.loads(line)
