"""
A planned leave (a I{drain}, see C{docs/operations.md}): on SIGTERM
(C{systemctl stop}) or C{clustersync-admin drain} the node stops taking
new client sessions, tells its clustersync peers it is leaving (X_LEAVING:
they mark it I{left}, not I{failed}, and redial it only slowly), sends
existing servers a CLIENT_DISCONNECTED for each of its sessions, waits for
its peers to acknowledge what it wrote (bounded by C{drain_timeout}), then
closes every link.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.logger import Logger

from clustersync.wire.codec import (
    ClientDisconnected,
    ClientDisconnectedPayload,
    XLeaving,
    XLeavingPayload,
    encode,
)

__all__ = ["drainNode"]

_log = Logger()


def _settled(waits: list[Deferred], clock, timeout: float) -> Deferred:
    """Fire with whether every one of C{waits} fired within C{timeout}."""
    done = Deferred()
    call = clock.callLater(timeout, lambda: done.called or done.callback(False))

    def allIn(_):
        if not done.called:
            call.cancel()
            done.callback(True)

    DeferredList(waits, consumeErrors=True).addCallback(allIn)
    return done


@inlineCallbacks
def drainNode(node, reason: str, timeout: float):
    """
    Drain C{node} (a L{clustersync.cluster.node.ClusterNode}).

    @return: a L{Deferred} firing with C{None} once every link is closed,
        at most about C{timeout} seconds after the call plus the time to
        close; never fails.
    """
    node.draining = True
    own = node.state.sessionsOf(node.serverId)
    leaving = encode(XLeaving(node.serverId, XLeavingPayload(reason[:200])))
    goodbyes = [encode(ClientDisconnected(node.serverId,
                                          ClientDisconnectedPayload(s.clienteId, s.sessionId)))
                for s in own]
    waits = []
    for link in list(node.links.active.values()):
        if getattr(link, "virtual", False):
            continue
        if link.clustersync:
            link.sendExtension(leaving)
        else:
            for line in goodbyes:
                link.sendLine(line)
            node.metrics.countOut("CLIENT_DISCONNECTED", len(goodbyes))
        link.flush()
        waits.append(link.whenAcknowledged())
    _log.info("draining: told {count} peers, {sessions} sessions; waiting up to "
              "{timeout:g}s for them to acknowledge", count=len(waits), sessions=len(own),
              timeout=timeout)
    flushed = yield _settled(waits, node.clock, timeout)
    if not flushed:
        _log.warn("draining: not every peer acknowledged within {timeout:g}s; closing anyway",
                  timeout=timeout)
    yield node.closeAllLinks(f"left: {reason}")
