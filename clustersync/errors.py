"""
Errors of clustersync: those the L{clustersync.interfaces.ICluster}
Deferreds fail with, a state limit, and a bad configuration value.

A leaf module: every layer may import it and it imports nothing of
clustersync.
"""

from __future__ import annotations

__all__ = [
    "ClusterError",
    "UnknownTarget",
    "UnknownUser",
    "UnknownChannel",
    "UnknownSession",
    "AmbiguousSession",
    "DuplicateSession",
    "NodeDraining",
    "PeerUnavailable",
    "StateLimitError",
    "ConfigError",
]


class ClusterError(Exception):
    """Base class of every error of the cluster API."""


class UnknownTarget(ClusterError):
    """The target of a send is not known anywhere in the cluster."""


class UnknownUser(UnknownTarget):
    """No session of that clienteId exists on any server."""


class UnknownChannel(UnknownTarget):
    """No session is a member of that canalId on any server."""


class UnknownSession(UnknownTarget):
    """No session with that sessionId (on that server) exists."""


class AmbiguousSession(ClusterError):
    """Several servers use that sessionId; name the server."""


class DuplicateSession(ClusterError):
    """A local session with that sessionId already exists."""


class NodeDraining(ClusterError):
    """This node is leaving the cluster (a drain): it takes no new sessions."""


class PeerUnavailable(ClusterError):
    """
    A server that should receive the message has no usable link.

    @ivar servers: the serverIds that could not be reached.
    @ivar delivery: the L{clustersync.cluster.node.Delivery} of what did go out.
    """

    def __init__(self, servers, delivery=None):
        self.servers = tuple(servers)
        self.delivery = delivery
        super().__init__(f"unreachable: {', '.join(self.servers)}")


class StateLimitError(ValueError):
    """
    Applying a change would exceed a configured limit; nothing was changed.
    """


class ConfigError(ValueError):
    """
    A configuration value is invalid.

    @ivar key: the configuration key (TOML name) at fault.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")
