"""
The link registry: every open connection, and the one active link per
peer, with the rule that picks it when a peer has two.
"""

from __future__ import annotations

import attrs
from twisted.internet.defer import Deferred, succeed

from clustersync.cluster.values import PeerInfo, peerInfo

__all__ = ["LinkChoice", "LinkRegistry"]


@attrs.frozen
class LinkChoice:
    """
    Which of two links to the same peer is kept (see L{LinkRegistry.elect}).

    @ivar winner: the link kept.
    @ivar loser: the link closed.
    @ivar stale: whether the current link lost because it was suspect.
    @ivar silentFor: how long the current link's peer has been silent
        (seconds), when C{stale}.
    """

    winner: object
    loser: object
    stale: bool
    silentFor: float = 0.0


class LinkRegistry:
    """
    The node's links.

    @ivar active: serverId -> the one link this node uses for that peer.
    @ivar open: every TCP connection that opened and has not closed yet,
        established or not.
    """

    def __init__(self) -> None:
        self.active: dict[str, object] = {}
        self.open: set = set()
        self._allClosed: list[Deferred] = []

    def isActive(self, link) -> bool:
        """Whether C{link} is the one link used for its peer."""
        return self.active.get(link.serverId) is link

    def linkFor(self, serverId: str):
        """The active link to C{serverId}, or C{None}."""
        return self.active.get(serverId)

    def opened(self, link) -> None:
        """A TCP connection (not yet a link) opened."""
        self.open.add(link)

    def noteDialed(self, link) -> None:
        """
        C{link} completed its HELLO: if this node dialed it, its factory
        now knows the peer's serverId and starts its next retries afresh.
        """
        if link.direction == "outbound" and link.factory is not None:
            link.factory.peerServerId = link.serverId
            if link.factory.continueTrying:  # resetDelay would revive a stopped factory
                link.factory.resetDelay()

    def install(self, link) -> None:
        """Make C{link} the active link of its peer."""
        self.active[link.serverId] = link

    def elect(self, current, link, ownServerId: str, now: float, deadPeerTimeout: float) -> LinkChoice:
        """
        Between the C{current} link to a peer and a new C{link} to it, the
        one to keep: a C{current} link that is I{suspect} (its peer
        heartbeats but has been silent for 2/3 of C{deadPeerTimeout}: a
        half-open link to a peer that crashed and came back) loses to the
        new one; else, between an inbound and an outbound link, the one
        dialed by the smaller serverId (both sides compute the same
        answer); between two links of the same direction, the older one
        (no hijack).
        """
        if getattr(current, "virtual", False):  # a direct link beats the backplane's
            return LinkChoice(link, current, False)
        if _suspect(current, now, deadPeerTimeout):
            return LinkChoice(link, current, True, now - getattr(current, "lastReceived", now))
        if current.direction != link.direction:
            keep = "outbound" if ownServerId < link.serverId else "inbound"
            winner = link if link.direction == keep else current
        else:
            winner = current
        return LinkChoice(winner, current if winner is link else link, False)

    def retire(self, choice: LinkChoice) -> None:
        """
        Close the loser of C{choice} without touching state; if this node
        dialed it, its factory stands by instead of dialing again.
        """
        loser, winner = choice.loser, choice.winner
        peer = winner.serverId
        loser.duplicate = True
        if loser.direction == "outbound" and loser.factory is not None:
            loser.factory.standby = True
        if choice.stale:
            loser.close(f"replaced by a new {winner.direction} link to {peer}: the old one was "
                        f"silent for {choice.silentFor:.1f}s",
                        "dead_peer", abort=True)
            return
        loser.close(
            f"duplicate link to {peer}: keeping the {winner.direction} one", "duplicate"
        )

    def closed(self, link) -> bool:
        """
        C{link}'s connection closed: forget it, fire the L{closeAll} waiters
        once no connection is left, and say whether it was its peer's
        active link (which is then forgotten too).
        """
        self.open.discard(link)
        if not self.open and self._allClosed:
            waiting, self._allClosed = self._allClosed, []
            for d in waiting:
                d.callback(None)
        peer = link.serverId
        if peer is None or self.active.get(peer) is not link:
            return False
        del self.active[peer]
        return True

    def closeAll(self, reason: str) -> Deferred:
        """
        Close every connection.

        @return: a L{Deferred} firing with C{None} once every one is lost.
        """
        for link in list(self.open):
            link.close(reason)
        if not self.open:
            return succeed(None)
        d = Deferred()
        self._allClosed.append(d)
        return d

    def outboundBuffers(self) -> dict[str, int]:
        """C{{serverId: bytes}} queued on each active link while its peer is not reading."""
        return {peer: link.outboundBuffered for peer, link in self.active.items()}

    def peerInfos(self) -> list[PeerInfo]:
        """A L{PeerInfo} of each active link."""
        return [peerInfo(link) for link in self.active.values()]


def _suspect(link, now: float, bound: float) -> bool:
    """
    Whether C{link}'s peer is known to heartbeat (it answered an X_PING, or
    re-sent SYNC_STATE) and has sent nothing for 2/3 of the dead-peer bound (a live one sends
    something at least every half of it; the link would be cut at 5/6).
    """
    return (
        (getattr(link, "pongsReceived", 0) or getattr(link, "syncsReceived", 0) >= 2)
        and now - getattr(link, "lastReceived", now) >= bound * 2 / 3
    )
