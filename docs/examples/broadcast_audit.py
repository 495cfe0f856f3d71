"""
Example handler plugin: an audit trail of BROADCASTs.

Drop this file into a plugin directory and start the node with
C{twistd clustersync --plugin-dir DIR} (or C{plugin_dirs = ["DIR"]} in the
TOML file).  Every BROADCAST a peer sends is then logged, with its origin
and size, and counted per origin server, on top of the built-in handler that
delivers it to local clients (handlers of one type all run, built-ins
first).

The counts are exposed as C{broadcastAudit.counts} (origin serverId ->
number received) and C{broadcastAudit.total}, e.g. for an extension or a
manhole session.
"""

from collections import Counter

from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from clustersync.interfaces import IMessageHandler


@implementer(IPlugin, IMessageHandler)
class BroadcastAudit:
    """
    Logs and counts every BROADCAST received from a peer.

    @ivar counts: origin serverId -> BROADCASTs received from it.
    @ivar lastMessage: the raw bytes of the last one (C{None} before any).
    """

    name = "example.broadcast_audit"
    messageTypes = ("BROADCAST",)
    _log = Logger()

    def __init__(self):
        self.counts = Counter()
        self.lastMessage = None

    @property
    def total(self):
        """How many BROADCASTs were received, from every peer."""
        return sum(self.counts.values())

    def handleMessage(self, node, link, message):
        """
        Count and log one BROADCAST.  C{message.payload.message} holds the
        exact bytes the peer sent (a L{msgspec.Raw}); they are not decoded.
        """
        raw = bytes(message.payload.message)
        self.counts[link.serverId] += 1
        self.lastMessage = raw
        self._log.info(
            "audit: BROADCAST #{count} from {peer} to {local} local sessions "
            "({size} bytes)",
            count=self.counts[link.serverId],
            peer=link.serverId,
            local=node.state.countSessions(node.serverId),
            size=len(raw),
        )


#: The drop-in: one module-level object providing IPlugin and IMessageHandler.
broadcastAudit = BroadcastAudit()
