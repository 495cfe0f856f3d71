"""
Liveness of an established peer link (see C{docs/reliability.md}): an idle
link re-sends this node's SYNC_STATE (a spec message every server
understands), so that a peer that shows it does the same (a second
SYNC_STATE on one link) and then falls silent is cut as a I{dead peer}.
"""

from __future__ import annotations

from clustersync.links.handshake import LinkState

__all__ = ["Liveness"]


class Liveness:
    """
    The periodic check of one link, every C{dead_peer_timeout / 6} from
    the end of its handshake until L{stop}.

    It reads the link's C{state}, C{_closeReason}, C{receipts},
    C{peerReceived}, C{syncsReceived}, C{lastReceived} and C{lastSent}, and
    calls its C{close} and C{_noReceipts}.
    """

    def __init__(self, link, node) -> None:
        self._link = link
        self._node = node
        self._call = None
        self._resynced = False

    def start(self) -> None:
        """Schedule the next check, if the link is established and open."""
        link = self._link
        if link.state is LinkState.ESTABLISHED and link._closeReason is None:
            self._call = self._node.clock.callLater(
                self._node.config.deadPeerTimeout / 6, self._check
            )

    def stop(self) -> None:
        """No more checks (the connection is lost)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _check(self) -> None:
        """
        Cut a peer known to re-sync when idle that has sent nothing for 5/6
        of the bound (so it is cut within the bound); re-send this node's
        SYNC_STATE on an active link on which nothing was written for a
        third of the bound, and once at the first check whatever the
        traffic, so that a peer learns early that this node re-syncs (a
        busy link would otherwise never show it).
        """
        self._call = None
        link, node = self._link, self._node
        if link.state is not LinkState.ESTABLISHED or link._closeReason is not None:
            return
        if link.receipts and not link.peerReceived and link.syncsReceived:
            link._noReceipts()
        bound = node.config.deadPeerTimeout
        now = node.clock.seconds()
        silent = now - link.lastReceived
        if link.syncsReceived >= 2 and silent >= bound * 5 / 6:
            link.close(
                f"dead peer: nothing received for {silent:.1f}s (bound {bound:g}s)",
                "dead_peer",
                abort=True,
            )
            return
        if (
            node.config.idleResync
            and (now - link.lastSent >= bound / 3 or not self._resynced)
            and node.isActive(link)
        ):
            self._resynced = True
            node.resync(link)
        self.start()
