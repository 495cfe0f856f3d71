"""
The link-level extension messages of a link to a clustersync node
(X_PING, X_PONG, X_DIGEST, X_LEAVING, X_PEERS; X_RECEIVED is L{clustersync.links.receipts}'s):
sending them only when the peer is known to be one
(L{clustersync.links.kinds.peerKind}), and handing them on when they
arrive.
"""

from __future__ import annotations

from clustersync.links.handshake import LinkState
from clustersync.wire.codec import XDigest, XLeaving, XPeers, XPing, XPong

__all__ = ["ExtensionsMixin", "LINK_MESSAGES"]

#: The extension messages other than X_RECEIVED: link-level, handled by
#: L{ExtensionsMixin.extensionReceived}, never dispatched.
LINK_MESSAGES = frozenset({XPing, XPong, XDigest, XLeaving, XPeers})


class ExtensionsMixin:
    """
    The extension messages of L{clustersync.links.protocol.PeerProtocol}.

    It uses the link's C{clustersync}, C{state}, C{_closeReason},
    C{transport}, C{bytesWritten}, C{_outbound}, C{_liveness} and C{node}.

    @ivar peerLeaving: the reason of the peer's X_LEAVING, once it said it
        is stopping on purpose; else C{None}.
    """

    peerLeaving: str | None = None

    @property
    def kind(self) -> str:
        """
        C{"clustersync"} or C{"existing"} (an existing server, or a peer
        not known to be clustersync): see L{clustersync}.
        """
        return "clustersync" if self.clustersync else "existing"

    def sendExtension(self, line: bytes) -> bool:
        """
        Write one encoded link-level extension line (X_PING, X_PONG,
        X_DIGEST) with the lines of this reactor turn.  Not counted in
        L{linesWritten} nor L{lastSent}, like receipts.

        @return: C{False}, writing nothing, unless the peer is known to be a
            clustersync node (L{clustersync}) and the link is established
            and open: an existing server never gets an extension message.
        """
        transport = self.transport
        if (
            not self.clustersync
            or self.state is not LinkState.ESTABLISHED
            or self._closeReason is not None
            or transport is None
            or transport.disconnecting
        ):
            return False
        self.bytesWritten += len(line)
        self._outbound.add(line, len(line))
        return True

    def extensionReceived(self, message) -> None:
        """
        Handle a link-level extension message (X_PING, X_PONG, X_DIGEST).
        On a link whose peer is not known to be a clustersync node it is
        rejected (counter C{unexpected_extension}) and not answered.
        """
        if not self.clustersync:
            self.node.reject(
                self, "unexpected_extension",
                f"{message.__struct_config__.tag} from a peer not known to be clustersync "
                "(extensions, clustersync_peers)")
            return
        cls = message.__class__
        if cls is XPing:
            self._liveness.pingReceived(message)
        elif cls is XPong:
            if not self._liveness.pongReceived(message):
                self.node.reject(self, "bogus_pong",
                                 f"X_PONG {message.payload.n} answers no X_PING sent")
        elif cls is XPeers:
            self.node.gossip.peersReceived(self, message)
        elif cls is XLeaving:
            self.peerLeaving = message.payload.reason or "leaving"
            self.node.peerLeaving(self)
        else:
            self.node.digestReceived(self, message)

    @property
    def pingsSent(self) -> int:
        """X_PING lines sent on this link."""
        return self._liveness.pingsSent

    @property
    def pongsReceived(self) -> int:
        """X_PONG lines received on this link that answered a ping."""
        return self._liveness.pongsReceived
