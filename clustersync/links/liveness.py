"""
Liveness of an established peer link (see C{docs/reliability.md}).

Two kinds of peer, two kinds of heartbeat:

  - to a peer known to be a clustersync node (the link's C{clustersync},
    L{clustersync.links.kinds.peerKind}), an idle link sends X_PING, a few dozen bytes the peer
    answers with X_PONG at once: the cost of an idle link does not grow
    with the number of sessions.  A peer that answered once and then
    falls silent is cut as a I{dead peer}.  A peer that never answers
    (an older clustersync, or one configured otherwise) is taken for an
    existing server: the link falls back to the heartbeat below;
  - to an existing server, an idle link re-sends this node's SYNC_STATE
    (a spec message every server understands), only while this node has at
    most C{legacy_heartbeat_limit} local sessions; above it, TCP keepalive
    and C{TCP_USER_TIMEOUT} alone watch those links.  A peer that shows it
    re-syncs the same way (a second SYNC_STATE on one link) and then falls
    silent is cut as a I{dead peer}.

Silence is never blamed on the peer for this node's own stall (a long
burst on another link, say): a check that runs late counts silence from
the end of the stall, and a check that finds the peer silent for too long
looks again after one more reactor turn, in which the reads the stall held
back are handled first.
"""

from __future__ import annotations

from twisted.logger import Logger

from clustersync.links.handshake import LinkState
from clustersync.wire.codec import XPing, XPingPayload, XPong, encode

__all__ = ["Liveness"]

class Liveness:
    """
    The periodic check of one link, every C{dead_peer_timeout / 6} from
    the end of its handshake until L{stop}.

    It reads the link's C{state}, C{_closeReason}, C{clustersync},
    C{receipts}, C{peerReceived}, C{syncsReceived}, C{lastReceived} and
    C{lastSent}, and calls its C{close}, C{_noReceipts} and
    C{sendExtension}.

    @ivar pingsSent: X_PING lines sent on this link.
    @ivar pongsReceived: X_PONG lines received that answered one.
    """

    _log = Logger()

    def __init__(self, link, node) -> None:
        self._link = link
        self._node = node
        self._call = None
        self._resynced = False
        self._tooLarge = False
        self._lookedAgain = False
        self._due: float | None = None
        self._stalledUntil = 0.0
        self._lastPing: float | None = None
        self._firstPing: float | None = None
        self._lastDigest: float | None = None
        self.pingsSent = 0
        self.pongsReceived = 0

    def start(self) -> None:
        """Schedule the next check, if the link is established and open."""
        self._schedule(self._node.config.deadPeerTimeout / 6)

    def _schedule(self, delay: float) -> None:
        link = self._link
        if link.state is LinkState.ESTABLISHED and link._closeReason is None:
            self._due = self._node.clock.seconds() + delay
            self._call = self._node.clock.callLater(delay, self._check)

    def stop(self) -> None:
        """No more checks (the connection is lost)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    # Pings -------------------------------------------------------------------

    def pingReceived(self, ping: XPing) -> None:
        """Answer the peer's X_PING with an X_PONG of the same C{n}."""
        self._link.sendExtension(encode(XPong(self._node.serverId, XPingPayload(ping.payload.n))))

    def pongReceived(self, pong: XPong) -> bool:
        """
        The peer answered: it is a clustersync node that is alive.

        @return: whether C{pong} answers a ping sent on this link (a pong
            for a number never sent is the caller's to reject).
        """
        if not 0 < pong.payload.n <= self.pingsSent:
            return False
        self.pongsReceived += 1
        return True

    def _ping(self, now: float) -> None:
        self.pingsSent += 1
        self._lastPing = now
        if self._firstPing is None:
            self._firstPing = now
        self._link.sendExtension(encode(XPing(self._node.serverId, XPingPayload(self.pingsSent))))

    # The check ------------------------------------------------------------

    def _check(self) -> None:
        """
        Cut a peer known to keep the link alive (it answered a ping, or
        re-sent its SYNC_STATE when idle) that has sent nothing for 5/6 of
        the bound, so it is cut within the bound.  Then keep the link alive
        from this side: L{_pingOrResync}.

        The peer is not blamed for this node's own stall: a check that runs
        more than two intervals late (this node was busy: nothing ran, not
        even its pings) counts silence only from now (C{own_stall}); and a
        silent peer is cut only once one more reactor turn has shown that
        nothing from it is waiting to be read.
        """
        self._call = None
        link, node = self._link, self._node
        if link.state is not LinkState.ESTABLISHED or link._closeReason is not None:
            return
        if link.receipts and not link.peerReceived and link.syncsReceived:
            link._noReceipts()
        bound = node.config.deadPeerTimeout
        now = node.clock.seconds()
        if self._due is not None and now - self._due > bound / 3:
            self._stalledUntil = now
            node.metrics.liveness["own_stall"] += 1
            self._log.info(
                "{peer}: this node was stalled for {late:.1f}s; not blaming the peer for it",
                peer=link.serverId, late=now - self._due)
        silent = now - max(link.lastReceived, self._stalledUntil)
        keepsAlive = self.pongsReceived or link.syncsReceived >= 2
        if keepsAlive and silent >= bound * 5 / 6:
            if not self._lookedAgain:
                # Read what may be waiting first, then judge.
                self._lookedAgain = True
                self._schedule(0)
                return
            link.close(
                f"dead peer: nothing received for {silent:.1f}s (bound {bound:g}s)",
                "dead_peer",
                abort=True,
            )
            return
        self._lookedAgain = False
        self._pingOrResync(now, bound)
        self.start()

    def _pingOrResync(self, now: float, bound: float) -> None:
        """
        On a link on which nothing was written for a third of the bound
        (and once at the first check, whatever the traffic, so that the peer
        learns early how this node keeps links alive): X_PING a clustersync
        peer; re-send this node's SYNC_STATE to an existing server while
        this node is small enough (C{legacy_heartbeat_limit}).
        """
        link, node = self._link, self._node
        if link.clustersync:
            if self._unanswered(now, bound):
                self._fallBack()
            else:
                self._digestIfDue(now)
                last = link.lastSent if self._lastPing is None else max(link.lastSent, self._lastPing)
                if self._lastPing is None or now - last >= bound / 3:
                    self._ping(now)
                return
        if not node.config.idleResync or not (now - link.lastSent >= bound / 3
                                              or not self._resynced):
            return
        if node.localSessionCount() > node.config.legacyHeartbeatLimit:
            if not self._tooLarge:
                self._tooLarge = True
                self._log.info(
                    "{peer}: no SYNC_STATE heartbeat above {limit} local sessions; TCP "
                    "keepalive and TCP_USER_TIMEOUT watch this link",
                    peer=link.serverId, limit=node.config.legacyHeartbeatLimit)
            return
        self._tooLarge = False
        if node.isActive(link):
            self._resynced = True
            node.resync(link)

    def _digestIfDue(self, now: float) -> None:
        """Every C{digest_interval}, send the peer an X_DIGEST (anti-entropy)."""
        interval = self._node.config.digestInterval
        if not interval:
            return
        if self._lastDigest is None:
            self._lastDigest = now  # the SYNC_STATE of the handshake is fresh
        elif now - self._lastDigest >= interval and self._node.isActive(self._link):
            self._lastDigest = now
            self._node.antiEntropy.sendDigest(self._link)

    def _unanswered(self, now: float, bound: float) -> bool:
        """
        No pong ever, a bound after the first ping, though the peer sent
        something since (so it is not just slow to start).
        """
        return (
            not self.pongsReceived
            and self._firstPing is not None
            and now - self._firstPing >= bound
            and self._link.lastReceived > self._firstPing
        )

    def _fallBack(self) -> None:
        """The peer never answered a ping: take it for an existing server."""
        link = self._link
        self._log.warn(
            "{peer} ({address}) answers no X_PING: taking it for an existing server "
            "(SYNC_STATE heartbeat; set extensions/clustersync_peers alike on every node)",
            peer=link.serverId,
            address=link.peerAddress,
        )
        self._node.metrics.liveness["no_pong"] += 1
        link.clustersync = False

