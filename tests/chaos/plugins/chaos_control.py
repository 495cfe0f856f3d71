"""
Test-only drop-in for the chaos suite: a node extension that opens a tiny
JSON-lines control port on 127.0.0.1 so the suite's driver can log clients
in and out through the L{ICluster} API, send session messages, and read
the node's view of the cluster and the messages it delivered.

Enabled only when C{CLUSTERSYNC_CHAOS_PORTFILE} is set: the chosen port is
written there (atomically) once listening.

Requests and answers (one JSON object per line; every request carries a
C{"tag"} that its answer repeats, since answers come when each operation
completes, not in request order)::

    {"op": "login", "sid": "s1", "cid": 7, "user": "ana"}  -> {"ok": true}
    {"op": "logout", "sid": "s1"}                          -> {"ok": true}
    {"op": "send", "sid": "s1", "server": "srv-b", "id": 12}
                                       -> {"ok": true} | {"error": "PeerUnavailable"}
    {"op": "state"}  -> {"sessions": [[serverId, sessionId], ...],
                         "peers": [...], "delivered": [ids since last state],
                         "closed": {reason: count}}
"""

import json
import os

from twisted.application.service import Service
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory
from twisted.plugin import IPlugin
from twisted.protocols.basic import LineOnlyReceiver
from zope.interface import implementer

from clustersync.interfaces import ILocalDelivery, INodeExtension


@implementer(ILocalDelivery)
class _Recorder:
    """Records the C{id} of every delivered chaos message."""

    def __init__(self):
        self.delivered = []

    def deliver(self, sessions, message, kind, origin):
        """Record the message id once per delivery."""
        try:
            self.delivered.append(json.loads(message)["id"])
        except (ValueError, KeyError, TypeError):
            pass
        return len(sessions)


class _Control(LineOnlyReceiver):
    """One control connection."""

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20

    def lineReceived(self, line):
        """Run one request and answer it."""
        service = self.factory.service
        node = service.node
        tag = None
        try:
            request = json.loads(line)
            tag = request.get("tag")
            op = request["op"]
            if op == "state":
                delivered, service.recorder.delivered = service.recorder.delivered, []
                self._answer(tag, {
                    "sessions": sorted([s.serverId, s.sessionId] for s in node.state.allSessions()),
                    "peers": sorted(node._links),
                    "delivered": delivered,
                    "closed": dict(node.metrics.linksClosed),
                    "links": {peer: {"syncsReceived": link.syncsReceived,
                                     "pongsReceived": getattr(link, "pongsReceived", 0),
                                     "silent": node.clock.seconds() - link.lastReceived}
                              for peer, link in node._links.items()},
                })
                return
            if op == "login":
                d = node.clientConnected(request["sid"], request["cid"], request["user"],
                                         "127.0.0.1", request.get("canales", []))
            elif op == "logout":
                d = node.clientDisconnected(request["sid"])
            elif op == "send":
                d = node.sendToSession(request["sid"], {"id": request["id"]},
                                       serverId=request["server"])
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception as e:
            self._answer(tag, {"error": type(e).__name__, "detail": str(e)})
            return
        d.addCallbacks(lambda _: self._answer(tag, {"ok": True}),
                       lambda f: self._answer(tag, {"error": f.type.__name__}))

    def _answer(self, tag, obj):
        obj["tag"] = tag
        self.sendLine(json.dumps(obj).encode())


class _ControlService(Service):
    """Listens on an ephemeral loopback port and writes it to the port file."""

    def __init__(self, node, reactor, portFile):
        self.node = node
        self.reactor = reactor
        self.portFile = portFile
        self.recorder = _Recorder()
        self.port = None

    def startService(self):
        """Take over local delivery and start listening."""
        Service.startService(self)
        self.node.setLocalDelivery(self.recorder)
        factory = Factory.forProtocol(_Control)
        factory.service = self
        d = TCP4ServerEndpoint(self.reactor, 0, interface="127.0.0.1").listen(factory)
        d.addCallback(self._listening)

    def _listening(self, port):
        self.port = port
        temporary = self.portFile + ".tmp"
        with open(temporary, "w") as f:
            f.write(str(port.getHost().port))
        os.replace(temporary, self.portFile)

    def stopService(self):
        """Stop listening."""
        Service.stopService(self)
        if self.port is not None:
            return self.port.stopListening()


@implementer(IPlugin, INodeExtension)
class ChaosControl:
    """The extension: a control port when C{CLUSTERSYNC_CHAOS_PORTFILE} is set."""

    name = "test-chaos-control"

    def makeService(self, node, config, reactor):
        """A L{_ControlService}, or C{None} outside the chaos suite."""
        portFile = os.environ.get("CLUSTERSYNC_CHAOS_PORTFILE")
        return None if not portFile else _ControlService(node, reactor, portFile)


chaosControl = ChaosControl()
