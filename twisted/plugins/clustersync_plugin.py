"""
The C{twistd clustersync} plugin.  Kept tiny: nothing of clustersync is
imported until the plugin is used.
"""

from twisted.application.service import ServiceMaker

clustersync = ServiceMaker(
    "clustersync",
    "clustersync.app.tap",
    "Link chat servers into one cluster (peer protocol node).",
    "clustersync",
)
