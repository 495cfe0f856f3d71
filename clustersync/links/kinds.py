"""
The two kinds of peer: clustersync nodes, which may be sent extension
messages (C{X_...}, see C{docs/protocol.md}), and existing servers, which
get the spec's messages only.
"""

from __future__ import annotations

__all__ = ["peerKind", "CLUSTERSYNC", "EXISTING"]

#: The kinds of peer (L{peerKind}).
CLUSTERSYNC = "clustersync"
EXISTING = "existing"


def peerKind(config, serverId: str, tls: bool) -> str:
    """
    Whether the peer C{serverId} (on a TLS link or not) is known to be a
    clustersync node, which may be sent extension messages, or is taken for
    an existing server, which gets the spec's messages only.

    @param config: the node's configuration: its C{extensions} policy
        (C{"tls"}: peers on TLS links; C{"all"}; C{"none"}), its
        C{clustersync_peers} serverIds, and C{receipts = "all"}, which
        means every peer too (it did before C{extensions} existed).
    @return: L{CLUSTERSYNC} or L{EXISTING}.
    """
    policy = config.extensions
    if policy == "none":
        return EXISTING
    if (
        policy == "all"
        or (policy == "tls" and tls)
        or config.receipts == "all"
        or serverId in config.clustersyncPeers
    ):
        return CLUSTERSYNC
    return EXISTING
