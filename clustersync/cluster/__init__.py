"""
The cluster API layer: L{clustersync.cluster.node.ClusterNode}, the one door
for application code (Deferreds and listeners), composed of the link
registry (C{registry}), the handler table (C{dispatch}), the listeners
(C{listeners}), local delivery (C{delivery}), the send paths (C{sending},
with the routes of C{routes}), this node's sessions (C{localsessions}), the
API's values (C{values}) and the metrics (C{metrics}).
"""
