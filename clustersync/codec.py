"""
Compatibility name for L{clustersync.wire.codec}.

clustersync's modules live in layer packages (see docs/architecture.md);
C{clustersync.codec} is the name documented before that layout and keeps
working for plugins and configurations that use it.  New code imports
L{clustersync.wire.codec}.
"""

from clustersync.wire.codec import *  # noqa: F401,F403
from clustersync.wire.codec import __all__  # noqa: F401
