"""
The NATS backplane: clustersync nodes of one C{cluster_name} exchange
presence and forwarded messages through NATS instead of a full mesh of
links (see C{docs/backplane.md}).
"""
