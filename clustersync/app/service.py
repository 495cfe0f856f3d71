"""
Service assembly: the node, its listening and dialing link services, under
one L{MultiService}.
"""

from __future__ import annotations

import signal
import socket

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from clustersync.app.config import NodeConfig
from clustersync.app.gctuning import GCThresholdsService
from clustersync.links.factories import PeerClientFactory, PeerServerFactory
from clustersync.cluster.node import ClusterNode
from clustersync.app.pluginload import loadExtensions, loadHandlers
from clustersync.links.tls import peerServerEndpoint
from clustersync.waiters import OneShot

__all__ = ["NodeService", "PeerListenService", "PeerDialService", "makeNodeService"]

_log = Logger()


class NodeService(Service):
    """
    Owns the L{ClusterNode}; on stop, closes every link.

    @ivar node: the L{ClusterNode}.
    @ivar pluginFailures: the L{PluginFailure}s found at startup.
    """

    name = "node"

    def __init__(self, node: ClusterNode, pluginFailures=()) -> None:
        self.node = node
        self.pluginFailures = list(pluginFailures)

    def stopService(self) -> Deferred:
        """
        Leave the cluster on purpose (L{ClusterNode.drain}: peers told,
        outbound flushed within C{drain_timeout}), closing every peer link.

        @return: a L{Deferred} firing once every link is closed.
        """
        Service.stopService(self)
        self.node.gossip.stop()
        d = self.node.drain("shutting down")
        d.addCallback(self._drained)
        return d

    def _drained(self, _) -> None:
        """
        A SIGTERM stop that drained is a clean exit: twistd would otherwise
        re-raise the signal once the reactor stops (its exit-signal
        capture, C{reactor._exitSignal}), and the process would end by
        SIGTERM rather than with status 0.
        """
        reactor = self.node.clock
        if getattr(reactor, "_exitSignal", None) == signal.SIGTERM:
            reactor._exitSignal = None


class PeerListenService(Service):
    """
    Accepts inbound peer links on an endpoint string (C{tcp:7001},
    C{ssl:...}, C{systemd:domain=INET:index=0}).
    """

    name = "peer-listen"
    _log = Logger()

    def __init__(self, reactor, description: str, factory, security=None,
                 node=None) -> None:
        """
        @param node: the L{ClusterNode} whose gossip advertises this port
            (unless C{advertise} is set), or C{None}.
        """
        self.node = node
        self.reactor = reactor
        self.description = description
        self.factory = factory
        #: A L{clustersync.links.security.LinkSecurity} with TLS material makes the port
        #: speak mutual TLS; C{None} listens as described.
        self.security = security
        self.port = None
        self._listening = OneShot()

    def whenListening(self) -> Deferred:
        """
        @return: a L{Deferred} firing with the listening port (an
            L{IListeningPort}) once it listens; failing with the listen
            error.
        """
        return self._listening.wait()

    def startService(self) -> None:
        """Start listening."""
        Service.startService(self)
        endpoint = peerServerEndpoint(self.reactor, self.description, self.security)
        d = endpoint.listen(self.factory)

        def listening(port):
            self.port = port
            self._log.info("peer links on {address}", address=port.getHost())
            if self.node is not None and self.node.gossip.advertise is None:
                self.node.gossip.advertise = advertiseAddress(port.getHost())
            self._listening.succeed(port)

        def failed(f):
            self._log.failure("cannot listen on {description}", f, description=self.description)
            self._listening.fail(f)

        d.addCallbacks(listening, failed)

    def stopService(self):
        """Stop listening."""
        Service.stopService(self)
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()


def advertiseAddress(host) -> str:
    """
    The C{host:port} other nodes should dial for a listening address: the
    address itself, or this host's name when it listens on every interface.
    """
    address = host.host
    if address in ("0.0.0.0", "::", ""):
        address = socket.getfqdn()
    return f"[{address}]:{host.port}" if ":" in address else f"{address}:{host.port}"


class PeerDialService(Service):
    """
    Dials every configured peer (C{host:port}) with a L{PeerClientFactory}.
    """

    name = "peer-dial"

    def __init__(self, reactor, node: ClusterNode, peers) -> None:
        self.reactor = reactor
        self.node = node
        self.peers = list(peers)
        self.factories: list[PeerClientFactory] = []
        self._connectors = []

    def startService(self) -> None:
        """Start dialing."""
        Service.startService(self)
        for address in self.peers:
            self._dial(address)

    def addPeer(self, address: str) -> None:
        """Dial one more peer (C{host:port}), now if running (once per address)."""
        if address in self.peers:
            return
        self.peers.append(address)
        if self.running:
            self._dial(address)

    def removePeer(self, address: str) -> None:
        """
        Stop dialing C{address} (a peer that vanished from DNS): its factory
        no longer retries; a link to it stays up until it closes.
        """
        if address in self.peers:
            self.peers.remove(address)
        for factory in [f for f in self.factories if f.address == address]:
            factory.stopTrying()
            self.factories.remove(factory)
            if factory in self.node.outboundFactories:
                self.node.outboundFactories.remove(factory)

    def _dial(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        factory = PeerClientFactory(self.node, address, self.reactor)
        factory.maxDelay = self.node.config.reconnectMaxDelay
        self.factories.append(factory)
        self.node.outboundFactories.append(factory)
        security = getattr(self.node, "security", None)
        if security is None or security.dialsPlain(address):
            connector = self.reactor.connectTCP(
                host, int(port), factory, timeout=self.node.config.connectTimeout
            )
        else:
            connector = self.reactor.connectSSL(
                host, int(port), factory, security.clientOptions(host),
                timeout=self.node.config.connectTimeout,
            )
        self._connectors.append(connector)

    def stopService(self):
        """Stop dialing and retrying."""
        Service.stopService(self)
        for factory in self.factories:
            factory.stopTrying()
            if factory in self.node.outboundFactories:
                self.node.outboundFactories.remove(factory)
        for connector in self._connectors:
            connector.disconnect()
        self.factories = []
        self._connectors = []


def makeNodeService(config: NodeConfig, reactor) -> MultiService:
    """
    Build the whole node as a L{MultiService}: C{gc} (if
    C{config.gcThresholds}), C{node}, C{peer-listen} (if C{config.listen}),
    C{peer-dial}, then the service of every L{INodeExtension} plugin that
    wants one (the client gateway, ...).

    Handler plugins are loaded here, so a plugin that fails to import is
    reported at startup; it does not stop the node.
    """
    handlers, failures = loadHandlers(config.pluginDirs)
    node = ClusterNode(config, reactor, handlers)
    top = MultiService()
    top.node = node
    if config.gcThresholds:
        GCThresholdsService(config.gcThresholds).setServiceParent(top)
    NodeService(node, failures).setServiceParent(top)
    if config.backplane:
        from clustersync.backplane.service import BackplaneService

        BackplaneService(node, config, reactor).setServiceParent(top)
    if config.listen:
        PeerListenService(
            reactor, config.listen, PeerServerFactory(node), node.security, node
        ).setServiceParent(top)
    if config.plainListen:
        plain = PeerListenService(reactor, config.plainListen, PeerServerFactory(node))
        plain.setName("peer-listen-plain")
        plain.setServiceParent(top)
    for warning in node.security.startupWarnings(config):
        _log.warn("{banner} {text} {banner}", banner="*" * 8, text=warning)
    _log.info(
        "liveness: X_PING to clustersync peers (extensions = {extensions!r}); the SYNC_STATE "
        "heartbeat to existing servers only while this node has at most {limit} local "
        "sessions, above that TCP keepalive and TCP_USER_TIMEOUT ({bound:g}s) alone",
        extensions=config.extensions, limit=config.legacyHeartbeatLimit,
        bound=config.deadPeerTimeout)
    dialer = PeerDialService(reactor, node, list(config.peers) + node.security.plainDialAddresses())
    dialer.setServiceParent(top)
    node.gossip.dial, node.gossip.undial = dialer.addPeer, dialer.removePeer
    if config.peersDns:
        from clustersync.app.discovery import DnsDiscoveryService, makeResolver

        DnsDiscoveryService(reactor, dialer, config.peersDns, config.peersDnsInterval,
                            makeResolver(reactor, config.dnsServers)).setServiceParent(top)
    for extension in loadExtensions(config.pluginDirs):
        service = extension.makeService(node, config, reactor)
        if service is not None:
            if not getattr(service, "name", None):
                service.setName(extension.name)
            service.setServiceParent(top)
    return top
