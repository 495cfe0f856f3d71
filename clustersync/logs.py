"""
Compatibility name for L{clustersync.app.logs}.

clustersync's modules live in layer packages (see docs/architecture.md);
C{clustersync.logs} is the name documented before that layout and keeps
working for plugins and configurations that use it.  New code imports
L{clustersync.app.logs}.
"""

from clustersync.app.logs import *  # noqa: F401,F403
from clustersync.app.logs import __all__  # noqa: F401
