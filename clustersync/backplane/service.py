"""
The backplane as a child service of the node's L{MultiService}.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.logger import Logger

from clustersync.backplane.bridge import Backplane
from clustersync.backplane.bus import BusOptions, NatsBus, requireAsyncioReactor
from clustersync.waiters import OneShot

__all__ = ["BackplaneService", "busOptions"]


def busOptions(config) -> BusOptions:
    """The L{BusOptions} of a L{NodeConfig} with a backplane."""
    return BusOptions(
        servers=tuple(config.backplane), name=config.serverId,
        tlsCa=config.backplaneTlsCa, tlsCert=config.backplaneTlsCert,
        tlsKey=config.backplaneTlsKey, credentials=config.backplaneCredentials,
        # Two unanswered PINGs mean the NATS server is gone: within half of
        # dead_peer_timeout for a cut that sends no reset.
        pingInterval=max(0.5, config.deadPeerTimeout / 6),
    )


class BackplaneService(Service):
    """
    Connects the node to NATS when started (once the reactor runs), says
    good-bye and closes the connection when stopped.

    @ivar backplane: the L{Backplane}.
    """

    name = "backplane"
    _log = Logger()

    def __init__(self, node, config, reactor, bus=None) -> None:
        if bus is None:
            requireAsyncioReactor(reactor)
            bus = NatsBus(busOptions(config), reactor)
        self.reactor = reactor
        self.backplane = Backplane(node, bus, config.clusterName, reactor)
        self._ready = OneShot()

    def whenReady(self):
        """
        @return: a L{Deferred} firing once connected, subscribed and
            announced (it waits for as long as NATS is unreachable).
        """
        return self._ready.wait()

    def startService(self) -> None:
        """Connect when the reactor runs (nats-py needs the running loop)."""
        Service.startService(self)
        self.reactor.callWhenRunning(self._start)

    def _start(self) -> None:
        d = self.backplane.start()

        def failed(f):
            self._log.failure("backplane failed to start", f)
            self._ready.fail(f)

        d.addCallbacks(lambda _: self._ready.succeed(self.backplane), failed)

    def stopService(self):
        """Good-bye on the backplane, then close the NATS connection."""
        Service.stopService(self)
        return self.backplane.stop()
