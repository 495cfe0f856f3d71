"""
Compatibility name for L{clustersync.cluster.node}.

clustersync's modules live in layer packages (see docs/architecture.md);
C{clustersync.node} is the name documented before that layout and keeps
working for plugins and configurations that use it.  New code imports
L{clustersync.cluster.node}.
"""

from clustersync.cluster.node import *  # noqa: F401,F403
from clustersync.cluster.node import __all__  # noqa: F401
