"""
Anti-entropy between clustersync nodes (see C{docs/reliability.md}): instead
of re-sending whole SYNC_STATEs blindly, each node tells each clustersync
peer, every C{digest_interval}, what it holds of that peer's own sessions
(X_DIGEST: a count and a hash, L{clustersync.state.digest}).  A peer whose
own sessions digest differently pushes a fresh SYNC_STATE, which repairs
the view; divergence found and repaired is counted (C{/metrics}
C{clustersync_liveness_events}, the status page).

A digest is only compared once the sender had read every session line the
receiver wrote on that link before it (the digest carries the sender's line
count; the receiver notes the count of its last session line, the link's
C{stateLine}): a change still on the way is not a divergence.
"""

from __future__ import annotations

from twisted.logger import Logger

from clustersync.state.digest import Digests
from clustersync.wire.codec import XDigest, XDigestPayload, encode

__all__ = ["AntiEntropy", "MAX_REPAIR_DELAY"]

#: The longest wait between two repairs of a divergence that persists (a
#: peer that refuses this node's SYNC_STATE, say, over a limit).
MAX_REPAIR_DELAY = 3600.0


class AntiEntropy:
    """
    The digests of one node and the X_DIGEST exchange.

    @ivar digests: the L{Digests} of every server's sessions, this node's own
        included, kept up to date by the node's change notifications.
    """

    _log = Logger()

    def __init__(self, serverId: str, clock, config, metrics, sendSync) -> None:
        """
        @param sendSync: C{(link)}: write this node's SYNC_STATE to C{link}.
        """
        self._serverId = serverId
        self._clock = clock
        self._config = config
        self._metrics = metrics
        self._sendSync = sendSync
        self.digests = Digests()
        # link -> (the earliest time of its next repair, the delay after it)
        self._repairs: dict[object, tuple[float, float]] = {}

    def sendDigest(self, link) -> bool:
        """
        Tell C{link}'s peer (a clustersync node) what this node holds of its
        sessions.

        @return: whether the X_DIGEST was written.
        """
        count, total = self.digests.of(link.serverId)
        line = encode(XDigest(self._serverId, XDigestPayload(count, total, link.linesReceived)))
        if not link.sendExtension(line):
            return False
        self._metrics.liveness["digest_sent"] += 1
        return True

    def digestReceived(self, link, message: XDigest) -> None:
        """
        The peer said what it holds of this node's sessions: if it had read
        every session line sent to it and it differs from this node's own
        digest, push a fresh SYNC_STATE (at most once per back-off delay,
        which doubles while the divergence persists).
        """
        payload = message.payload
        if payload.lines > link.linesWritten:
            self._metrics.rejected("bogus_digest")
            return
        if payload.lines < getattr(link, "stateLine", 0):
            self._metrics.liveness["digest_in_flight"] += 1
            return
        mine = self.digests.of(self._serverId)
        if (payload.sesiones, payload.hash) == mine:
            self._repairs.pop(link, None)
            self._metrics.liveness["digest_match"] += 1
            return
        self._metrics.liveness["digest_mismatch"] += 1
        now = self._clock.seconds()
        notBefore, delay = self._repairs.get(link, (0.0, self._config.digestInterval))
        if now < notBefore:
            return
        self._log.warn(
            "{peer} holds {theirs} sessions of this node, digest {theirHash:x}; this node has "
            "{ours}, digest {ourHash:x}: sending a fresh SYNC_STATE",
            peer=link.serverId, theirs=payload.sesiones, theirHash=payload.hash,
            ours=mine[0], ourHash=mine[1])
        self._repairs[link] = (now + delay, min(delay * 2, MAX_REPAIR_DELAY))
        self._metrics.liveness["digest_repaired"] += 1
        self._sendSync(link)

    def linkLost(self, link) -> None:
        """Forget C{link}'s repair back-off."""
        self._repairs.pop(link, None)
