"""
Drop-in publishing the operator extensions of a node: the status web
service (status page, JSON API, C{/events}, C{/metrics}), the optional JSON
lines log file, and the systemd readiness notification.
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from clustersync.interfaces import INodeExtension


@implementer(IPlugin, INodeExtension)
class _WebExtension:
    """The status web service, unless C{web} is empty or C{none}."""

    name = "web"

    def makeService(self, node, config, reactor):
        """See L{INodeExtension.makeService}."""
        from clustersync.web.service import makeWebService

        return makeWebService(node, config, reactor)


@implementer(IPlugin, INodeExtension)
class _JSONLogExtension:
    """Every log event as a JSON line to C{log_json}, when set."""

    name = "json-log"

    def makeService(self, node, config, reactor):
        """See L{INodeExtension.makeService}."""
        from clustersync.app.logs import makeJSONLogService

        return makeJSONLogService(config)


@implementer(IPlugin, INodeExtension)
class _NotifyExtension:
    """C{READY=1} to systemd once every listener listens (Type=notify)."""

    name = "systemd-notify"

    def makeService(self, node, config, reactor):
        """See L{INodeExtension.makeService}."""
        from clustersync.app.sdnotify import makeNotifyService

        return makeNotifyService(reactor)


web = _WebExtension()
jsonLog = _JSONLogExtension()
systemdNotify = _NotifyExtension()
