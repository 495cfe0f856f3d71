"""
Compatibility name for L{clustersync.app.pluginload}.

clustersync's modules live in layer packages (see docs/architecture.md);
C{clustersync.pluginload} is the name documented before that layout and keeps
working for plugins and configurations that use it.  New code imports
L{clustersync.app.pluginload}.
"""

from clustersync.app.pluginload import *  # noqa: F401,F403
from clustersync.app.pluginload import __all__  # noqa: F401
