"""
Local delivery: handing a message to this node's own sessions through the
L{ILocalDelivery} provider (the client gateway), counting what could not
be delivered.
"""

from __future__ import annotations

from twisted.logger import Logger

from clustersync.cluster.metrics import Metrics
from clustersync.wire.codec import DirectMessage, SessionInfo

__all__ = ["LocalDelivery"]


class LocalDelivery:
    """
    Delivers to local sessions; a raising provider is logged and counted,
    never passed on (a send must not stop half-way, peers not yet written).

    @ivar provider: the L{ILocalDelivery}, or C{None} (nothing is delivered).
    """

    _log = Logger()

    def __init__(self, metrics: Metrics, localUserSessions: dict, provider=None) -> None:
        """
        @param localUserSessions: the state's own mapping of this node's
            users to their sessions (L{ClusterState.localUserSessions}).
        """
        self.provider = provider
        self._metrics = metrics
        self._localUserSessions = localUserSessions

    def deliver(self, sessions: list[SessionInfo], message, kind: str, origin: str) -> int:
        """
        Hand C{message} (bytes, or a L{msgspec.Raw}) to C{sessions}.

        @return: how many sessions it was handed to.
        """
        provider = self.provider
        if not sessions or provider is None:
            return self._undeliverable(sessions, kind)
        try:
            # b"" + message: the bytes of a Raw (or the bytes themselves),
            # cheaper than bytes(message), which parses its arguments.
            return provider.deliver(sessions, b"" + message, kind, origin)
        except Exception:
            return self._failed(sessions, kind)

    def deliverDirect(self, link, message: DirectMessage) -> int:
        """
        What the built-in DIRECT_MESSAGE handler does: deliver the message
        to every local session of its C{userId}, as L{deliver} would.  The
        receive hot path: the user's sessions are read from the state's
        mapping, without a call.

        @return: how many sessions it was handed to.
        """
        p = message.payload
        sessions = self._localUserSessions.get(p.userId, ())
        provider = self.provider
        if not sessions or provider is None:
            return self._undeliverable(sessions, "DIRECT_MESSAGE")
        try:
            return provider.deliver(sessions, b"" + p.message, "DIRECT_MESSAGE", link.serverId)
        except Exception:
            return self._failed(sessions, "DIRECT_MESSAGE")

    def _undeliverable(self, sessions, kind: str) -> int:
        """No session, or no L{ILocalDelivery}: count (and log the latter)."""
        self._metrics.undeliverable[kind] += 1
        if sessions:
            self._log.warn("no local delivery configured: {kind} for {n} sessions dropped",
                           kind=kind, n=len(sessions))
        return 0

    def _failed(self, sessions, kind: str) -> int:
        """The L{ILocalDelivery} raised: count and log it."""
        self._metrics.undeliverable[kind] += 1
        self._log.failure("local delivery of {kind} to {n} sessions failed",
                          kind=kind, n=len(sessions))
        return 0
