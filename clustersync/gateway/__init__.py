"""
The built-in chat gateway: a client-facing JSON-lines service that makes a
clustersync node a working chat server (see C{docs/clients.md}).

It is an L{clustersync.interfaces.INodeExtension} plugin (published by
C{clustersync/plugins/clustersync_gateway.py}) and the node's
L{clustersync.interfaces.ILocalDelivery}; it talks to the cluster only
through L{clustersync.interfaces.ICluster}.
"""

from clustersync.gateway.service import (
    Gateway,
    GatewayExtension,
    GatewayService,
    resolveUsersFile,
)

__all__ = ["Gateway", "GatewayService", "GatewayExtension", "resolveUsersFile"]
