"""
The factories of peer links: L{PeerServerFactory} builds the inbound links
of a listening endpoint; L{PeerClientFactory} dials one configured peer and
redials it with jittered, capped exponential backoff.
"""

from __future__ import annotations

from random import random as _random

from twisted.internet.protocol import Factory, ReconnectingClientFactory
from twisted.logger import Logger

from clustersync.links.handshake import INBOUND, OUTBOUND
from clustersync.links.protocol import PeerProtocol

__all__ = ["PeerServerFactory", "PeerClientFactory"]


class PeerServerFactory(Factory):
    """
    Builds inbound L{PeerProtocol}s for the listening endpoint.
    """

    noisy = False

    def __init__(self, node) -> None:
        self.node = node

    def buildProtocol(self, addr) -> PeerProtocol:
        """A new inbound link."""
        return PeerProtocol(self.node, INBOUND, self)


class PeerClientFactory(ReconnectingClientFactory):
    """
    Dials one configured peer and keeps dialing with jittered, capped
    exponential backoff.

    The delay is reset only once a HELLO exchange completes, so a peer that
    accepts TCP but never answers does not get hammered.  When our outbound
    link loses the tie-break to the peer's inbound one, the factory goes on
    I{standby}: it does not redial until that inbound link is lost.

    @ivar address: C{"host:port"} as configured.
    @ivar peerServerId: the serverId seen in the last HELLO from there.
    """

    initialDelay = 0.5
    factor = 2.0
    jitter = 0.25
    maxDelay = 30.0
    _log = Logger()

    noisy = False

    def __init__(self, node, address: str, clock) -> None:
        self.node = node
        self.address = address
        self.clock = clock
        self.peerServerId: str | None = None
        self.standby = False
        self.delay = self.initialDelay

    def buildProtocol(self, addr) -> PeerProtocol:
        """A new outbound link to L{address}."""
        return PeerProtocol(self.node, OUTBOUND, self)

    def clientConnectionFailed(self, connector, reason) -> None:
        """Log and schedule a retry."""
        self._log.debug(
            "dialing {address} failed: {reason}",
            address=self.address,
            reason=reason.getErrorMessage(),
        )
        self.connector = connector
        if self.standby:
            return
        ReconnectingClientFactory.clientConnectionFailed(self, connector, reason)

    def clientConnectionLost(self, connector, reason) -> None:
        """Schedule a retry, unless on standby or stopped."""
        self.connector = connector
        if self.standby:
            return
        ReconnectingClientFactory.clientConnectionLost(self, connector, reason)

    def retry(self, connector=None) -> None:
        """
        Schedule a redial: the delay grows by L{factor} up to L{maxDelay},
        then gets a uniform jitter of +/- L{jitter} that never takes it
        below zero nor above L{maxDelay}.  (Twisted's own C{retry} applies a
        normal jitter after the cap: it can exceed the cap and, rarely, go
        negative, which C{callLater} refuses, leaving the peer undialed.)
        """
        if not self.continueTrying:
            return
        if connector is None:
            connector = self.connector
            if connector is None:
                return
        self.retries += 1
        if self.maxRetries is not None and self.retries > self.maxRetries:
            return
        self.delay = min(self.delay * self.factor, self.maxDelay)
        delay = self.delay
        if self.jitter:
            delay *= 1 + self.jitter * (2 * _random() - 1)
        delay = min(max(delay, 0.0), self.maxDelay)

        def reconnector():
            self._callID = None
            connector.connect()

        self._callID = self.clock.callLater(delay, reconnector)

    def peerLeft(self) -> None:
        """
        The peer left on purpose (X_LEAVING): redial it only every
        C{maxDelay} until it comes back, not at the fast pace of a failure.
        """
        self.standby = False
        self.delay = self.maxDelay

    def wake(self) -> None:
        """
        Leave standby and redial soon (the link that made us stand by is
        gone).
        """
        if not self.standby or not self.continueTrying:
            return
        self.standby = False
        self.resetDelay()
        if self.connector is not None and self._callID is None:
            self.retry()
