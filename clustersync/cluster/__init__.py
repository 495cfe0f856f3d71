"""
The cluster API layer: L{clustersync.cluster.node.ClusterNode}, the one door
for application code (Deferreds and listeners), and its metrics.
"""
