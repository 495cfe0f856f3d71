"""
Joining a cluster through one seed (see C{docs/operations.md}): clustersync
nodes tell each other, with X_PEERS, the address each node of the cluster
should be dialed at (its C{advertise} setting, by default its listening
address).  A node dials the nodes it learns of and is not linked to, where
it would accept them from (L{clustersync.links.security.LinkSecurity.mayDial}),
and forgets a learned node that stayed unreachable for
C{gossip_forget_after}.  Existing servers take no part: they get no
X_PEERS and are configured statically.

X_PEERS goes to a clustersync peer when its link comes up and to every
clustersync peer when the set of addresses this node knows changes, so the
exchange settles once every node knows every other.
"""

from __future__ import annotations

from twisted.logger import Logger

from clustersync.wire.codec import XPeerAddress, XPeers, XPeersPayload, encode

__all__ = ["Gossip"]


class Gossip:
    """
    The addresses this node knows of the cluster's nodes, and the dials it
    asked for because of them.

    @ivar advertise: the address this node tells others to dial it at, or
        C{None} (not known yet: the peer port is not listening).
    @ivar known: serverId -> the address that node advertises.
    @ivar learned: serverId -> address of the nodes this node dials
        because of gossip (not configured).
    @ivar dial: C{(address)}: start dialing (set by the service assembly).
    @ivar undial: C{(address)}: stop dialing.
    """

    _log = Logger()

    def __init__(self, node) -> None:
        self._node = node
        self.advertise: str | None = node.config.advertise
        self.known: dict[str, str] = {}
        self.learned: dict[str, str] = {}
        self._unlinkedSince: dict[str, float] = {}
        self._call = None
        self._stopped = False
        self.dial = None
        self.undial = None

    # What is sent ------------------------------------------------------------

    def _line(self) -> bytes:
        entries = [XPeerAddress(self._node.serverId, self.advertise)] if self.advertise else []
        for serverId, address in sorted(self.known.items()):
            if self._node.linkFor(serverId) is not None:
                entries.append(XPeerAddress(serverId, address))
        return encode(XPeers(self._node.serverId, XPeersPayload(entries)))

    def linkEstablished(self, link) -> None:
        """A link came up: a clustersync peer gets what this node knows."""
        if self._node.config.gossip and getattr(link, "clustersync", False):
            link.sendExtension(self._line())
        self._unlinkedSince.pop(link.serverId, None)

    def linkLost(self, serverId: str) -> None:
        """C{serverId}'s link closed: a learned node starts its forget clock."""
        if serverId in self.learned:
            self._unlinkedSince[serverId] = self._node.clock.seconds()
            self._scheduleForget()

    def _broadcast(self) -> None:
        line = self._line()
        for link in list(self._node.links.active.values()):
            if getattr(link, "clustersync", False):
                link.sendExtension(line)

    # What is received --------------------------------------------------------

    def peersReceived(self, link, message: XPeers) -> None:
        """
        A clustersync peer told the addresses it knows: note them, dial the
        nodes this node is not linked to, and tell the others if it learned
        anything.
        """
        node = self._node
        if not node.config.gossip:
            return
        changed = False
        for entry in message.payload.peers:
            serverId, address = entry.serverId, entry.address
            if serverId == node.serverId:
                continue
            if entry.serverId == message.origin or serverId not in self.known:
                changed = changed or self.known.get(serverId) != address
                self.known[serverId] = address
            if (
                node.linkFor(serverId) is None
                and serverId not in self.learned
                and self.dial is not None
            ):
                if not node.security.mayDial(serverId, address):
                    node.metrics.rejected("gossip_refused")
                    continue
                self._log.info("{origin} told of {peer} at {address}: dialing it",
                               origin=message.origin, peer=serverId, address=address)
                self.learned[serverId] = address
                self._unlinkedSince[serverId] = node.clock.seconds()
                self._scheduleForget()
                node.metrics.liveness["gossip_dialed"] += 1
                self.dial(address)
        if changed:
            self._broadcast()

    # Forgetting -------------------------------------------------------------

    def _scheduleForget(self) -> None:
        if self._call is None and not self._stopped:
            delay = self._node.config.gossipForgetAfter / 4
            self._call = self._node.clock.callLater(delay, self._forget)

    def _forget(self) -> None:
        self._call = None
        now = self._node.clock.seconds()
        bound = self._node.config.gossipForgetAfter
        for serverId, since in list(self._unlinkedSince.items()):
            if self._node.linkFor(serverId) is not None:
                del self._unlinkedSince[serverId]
            elif now - since >= bound:
                address = self.learned.pop(serverId, None)
                del self._unlinkedSince[serverId]
                self.known.pop(serverId, None)
                self._log.info("{peer} ({address}) unreachable for {bound:g}s: forgotten",
                               peer=serverId, address=address, bound=bound)
                if address is not None and self.undial is not None:
                    self.undial(address)
        if self._unlinkedSince:
            self._scheduleForget()

    def stop(self) -> None:
        """No more forgetting (the node stops)."""
        self._stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
