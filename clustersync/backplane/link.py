"""
A server reached through the backplane, as the node sees it: a virtual peer
link in the node's link registry, so that routing, state handlers and the
L{ICluster} API treat it like any other peer.
"""

from __future__ import annotations

import attrs
from twisted.internet.defer import succeed

__all__ = ["BackplaneLink"]


@attrs.define(eq=False)
class BackplaneLink:
    """
    The node's link to one server of the backplane.

    L{sendLine} publishes to the server's own subject, so DIRECT, CHANNEL
    and SESSION lines reach only the servers hosting their target, exactly
    as on the mesh.  The node sends state events and BROADCAST once to the
    cluster's subjects instead (it skips L{virtual} links there).

    @ivar serverId: the server.
    @ivar via: the node publishing for it (itself, or the clustersync node an
        existing server links to).
    @ivar since: when it was first heard of (seconds since the epoch).
    @ivar confirm: C{None}, or a callable returning a L{Deferred} that fires
        once the NATS server has taken what was published (see
        L{clustersync.backplane.bus.NatsBus.confirm}).
    """

    serverId: str
    subject: str
    via: str
    since: float
    publish: object = attrs.field(repr=False)
    confirm: object = attrs.field(default=None, repr=False)
    #: Called with this link when the node gives it up for a direct link.
    onClose: object = attrs.field(default=None, repr=False)
    #: It is a link of the backplane, not a TCP connection.
    virtual: bool = True
    direction: str = "backplane"
    tls: bool = False
    outboundBuffered: int = 0
    factory: object = None
    duplicate: bool = False
    closed: bool = False
    closeReason: str | None = None

    @property
    def peerAddress(self) -> str:
        """Where the server is reached: C{nats} (or C{nats via <node>})."""
        return "nats" if self.via == self.serverId else f"nats via {self.via}"

    def sendLine(self, line: bytes) -> bool:
        """
        Publish one peer-protocol line to the server's subject.

        @return: C{False} when the backplane is down (nothing was sent).
        """
        if self.closed:
            return False
        return self.publish(self.subject, line)

    def whenAcknowledged(self, result=None, onLost=None, context=None):
        """
        @return: a L{Deferred} firing with C{result} once the NATS server
            took every line published so far, failing with
            C{onLost(context)} when the connection drops first (at once with
            C{result} when this link has no C{confirm}).
        """
        if self.confirm is None:
            return succeed(result)
        d = self.confirm()

        def lost(failure):
            if onLost is not None:
                raise onLost(context)
            return failure

        return d.addCallbacks(lambda _: result, lost)

    def close(self, reason: str, counter: str | None = None, abort: bool = False) -> None:
        """The node gave it up (a direct link to the same server won)."""
        self.closed = True
        self.closeReason = reason
        if self.onClose is not None:
            self.onClose(self)
