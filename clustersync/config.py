"""
Compatibility name for L{clustersync.app.config}.

clustersync's modules live in layer packages (see docs/architecture.md);
C{clustersync.config} is the name documented before that layout and keeps
working for plugins and configurations that use it.  New code imports
L{clustersync.app.config}.
"""

from clustersync.app.config import *  # noqa: F401,F403
from clustersync.app.config import __all__  # noqa: F401
