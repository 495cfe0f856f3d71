"""
The node's operator interface over HTTP: a live status page, a JSON API,
server-sent events and Prometheus C{/metrics}.

It sits on L{clustersync.interfaces.ICluster} and
L{clustersync.interfaces.IClusterListener} only (plus C{node.metrics} for
counters), never on link internals.  It is added to the node by the
L{clustersync.plugins.clustersync_web} drop-in; see C{docs/operations.md}.
"""

from clustersync.web.service import WebService, makeWebService
from clustersync.web.tracker import StatusTracker

__all__ = ["StatusTracker", "WebService", "makeWebService"]
