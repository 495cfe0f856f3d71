"""
The status web service: listens on its own endpoint string, serves
L{clustersync.web.api.WebRoot}, pushes server-sent events.
"""

from __future__ import annotations

import json

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.policies import WrappingFactory

from clustersync.waiters import OneShot
from clustersync.web.access import GuardedSite, WebAccess, checkWebConfig
from clustersync.web.api import WebRoot
from clustersync.web.tlsport import webServerEndpoint
from clustersync.web.tracker import StatusTracker

__all__ = ["WebService", "makeWebService", "isDisabled"]

#: Seconds between keep-alive comments on idle event streams.
KEEPALIVE = 15.0
#: Seconds over which session/membership changes are coalesced into one
#: C{changed} event.
COALESCE = 0.2


def isDisabled(description: str | None) -> bool:
    """Whether an endpoint setting means "do not serve" (empty or C{none})."""
    return description is None or description.strip().lower() in ("", "none")


class _Connections(WrappingFactory):
    """
    Wraps the L{Site} to know its open connections, so that stopping the
    service can close them (event streams never end by themselves).
    """

    noisy = False

    def __init__(self, wrappedFactory) -> None:
        super().__init__(wrappedFactory)
        self._waiters: dict = {}

    def unregisterProtocol(self, p) -> None:
        """A connection was lost: fire whoever waits for it."""
        super().unregisterProtocol(p)
        for d in self._waiters.pop(p, ()):
            d.callback(None)

    def closeAll(self) -> Deferred:
        """Abort every open connection; fires once all are lost."""
        waiting = []
        for p in list(self.protocols):
            d = Deferred()
            self._waiters.setdefault(p, []).append(d)
            waiting.append(d)
            p.transport.abortConnection()
        return DeferredList(waiting)


class WebService(Service):
    """
    Serves the status page, the JSON API, C{/events} and C{/metrics} of one
    node.

    @ivar node: the L{ICluster} provider.
    @ivar tracker: the L{StatusTracker}.
    @ivar registry: the node's own Prometheus C{CollectorRegistry}.
    @ivar port: the listening port once listening.
    @ivar address: C{"host:port"} it listens on, once listening.
    @ivar streamClients: the open event-stream requests.
    @ivar access: the L{WebAccess} rules (Host names, authentication).
    """

    name = "web"
    _log = Logger()

    def __init__(self, node, reactor, description: str, config=None) -> None:
        from clustersync.web.promcollector import makeRegistry

        self.node = node
        self.clock = reactor
        self.reactor = reactor
        self.description = description
        self.config = config
        self.access = WebAccess.fromConfig(config) if config is not None else WebAccess()
        self.tracker = StatusTracker(node, reactor)
        self.registry = makeRegistry(self)
        self.site = GuardedSite(WebRoot(self), self.access, getattr(node, "metrics", None),
                                reactor=reactor)
        self._connections = _Connections(self.site)
        self.port = None
        self.address = None
        self.streamClients: list = []
        self._listening = OneShot()
        self._changed: set = set()
        self._flush = None
        self._keepalive = None
        #: Called once C{POST /api/drain} drained the node: stops the
        #: process (the reactor) by default.
        self.stopProcess = getattr(reactor, "stop", lambda: None)

    def whenListening(self) -> Deferred:
        """
        @return: a L{Deferred} firing with the listening port once it
            listens, failing with the listen error.
        """
        return self._listening.wait()

    def startService(self) -> None:
        """Start tracking the node and listen."""
        Service.startService(self)
        self.tracker.start()
        self.tracker.subscribe(self._event)
        self._keepalive = LoopingCall(self._ping)
        self._keepalive.clock = self.reactor
        self._keepalive.start(KEEPALIVE, now=False)
        try:
            endpoint = webServerEndpoint(self.reactor, self.description, self.config)
            d = endpoint.listen(self._connections)
        except Exception as e:
            from twisted.internet.defer import fail

            d = fail(e)

        def listening(port):
            self.port = port
            host = port.getHost()
            self.address = f"{getattr(host, 'host', host)}:{getattr(host, 'port', '')}"
            scheme = "https" if getattr(self.config, "webClientCa", None) else "http"
            self._log.info("status page on {scheme}://{address}/ ({auth})", scheme=scheme,
                           address=self.address,
                           auth="authentication required" if self.access.required
                           else "no authentication")
            self._listening.succeed(port)

        def failed(f):
            self._log.failure("cannot serve the status page on {description}", f,
                              description=self.description)
            self._listening.fail(f)

        d.addCallbacks(listening, failed)

    def stopService(self) -> Deferred:
        """Stop listening, close every connection (event streams included)."""
        Service.stopService(self)
        self.tracker.unsubscribe(self._event)
        self.tracker.stop()
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()
        if self._flush is not None and self._flush.active():
            self._flush.cancel()
        self._flush = None
        steps = []
        if self.port is not None:
            port, self.port = self.port, None
            steps.append(port.stopListening())
        steps.append(self._connections.closeAll())
        return DeferredList(steps)

    # Event streams ----------------------------------------------------

    def addStreamClient(self, request) -> None:
        """Start pushing events to C{request} (an open event stream)."""
        self.streamClients.append(request)
        self._send(request, "peers", {"peers": self.tracker.peerList()})

    def removeStreamClient(self, request) -> None:
        """Stop pushing to C{request}."""
        if request in self.streamClients:
            self.streamClients.remove(request)

    def _send(self, request, kind: str, data: dict) -> None:
        try:
            request.write(b"event: " + kind.encode() + b"\ndata: "
                          + json.dumps(data).encode() + b"\n\n")
        except Exception:
            self._log.failure("event stream write failed")
            self.removeStreamClient(request)

    def _broadcast(self, kind: str, data: dict) -> None:
        for request in list(self.streamClients):
            self._send(request, kind, data)

    def _event(self, group: str, event: dict) -> None:
        if group == "peer":
            self._broadcast("peer", {"event": event, "peers": self.tracker.peerList()})
            return
        self._changed.add("sessions" if group == "session" else "channels")
        if self._flush is None or not self._flush.active():
            self._flush = self.reactor.callLater(COALESCE, self._flushChanged)

    def _flushChanged(self) -> None:
        self._flush = None
        what, self._changed = sorted(self._changed), set()
        self._broadcast("changed", {"what": what})

    def _ping(self) -> None:
        for request in list(self.streamClients):
            try:
                request.write(b": keepalive\n\n")
            except Exception:
                self.removeStreamClient(request)


def makeWebService(node, config, reactor) -> WebService | None:
    """
    The status web service for C{node}, or C{None} when C{config.web} is
    empty or C{none}.

    @raise ConfigError: the web port would be reachable from other hosts
        without authentication (see L{checkWebConfig}), or its token or
        TLS files are unusable.
    """
    description = getattr(config, "web", None)
    if isDisabled(description):
        return None
    checkWebConfig(config)
    return WebService(node, reactor, description, config)
