"""
The cluster state layer: sessions, channels and their indexes, with no I/O.

Depends only on L{clustersync.wire}.  The names a handler needs are
re-exported here.
"""

from clustersync.state.cluster import (
    ADDED,
    JOINED,
    LEFT,
    REMOVED,
    Change,
    ClusterState,
    StateLimitError,
)

__all__ = [
    "ADDED",
    "JOINED",
    "LEFT",
    "REMOVED",
    "Change",
    "ClusterState",
    "StateLimitError",
]
