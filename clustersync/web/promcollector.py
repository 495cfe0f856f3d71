"""
Prometheus exposition of one node: a custom collector that reads
C{node.metrics} and asks the L{ICluster} API at scrape time, registered in a
per-node L{CollectorRegistry} (so several nodes in one process never
collide).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

__all__ = ["NodeCollector", "makeRegistry"]



def _now(d):
    """The result of an already-fired L{Deferred}, else C{None}."""
    box = []
    d.addBoth(box.append)
    if box and not hasattr(box[0], "raiseException"):
        return box[0]
    return None


class NodeCollector:
    """
    Collects one node's metrics.

    @ivar web: the L{clustersync.web.service.WebService} (for the node, its
        tracker and its event-stream clients).
    """

    def __init__(self, web) -> None:
        self.web = web

    def describe(self):
        """Nothing: the families are only known at collection time."""
        return []

    def collect(self):
        """Yield every metric family of the node."""
        node = self.web.node
        metrics = node.metrics

        def counter(name, doc, label, values):
            family = CounterMetricFamily(name, doc, labels=[label])
            for key, value in sorted(values.items()):
                family.add_metric([str(key)], value)
            return family

        info = GaugeMetricFamily("clustersync_node_info", "This node (always 1).",
                                 labels=["server_id"])
        info.add_metric([node.serverId], 1)
        yield info
        yield counter("clustersync_messages_in", "Peer messages received (decoded), by wire type.",
                      "type", metrics.messagesIn)
        yield counter("clustersync_messages_out", "Peer messages written, by wire type.",
                      "type", metrics.messagesOut)
        yield counter("clustersync_rejected_inputs", "Inputs refused (bad lines, limits, ...), by reason.",
                      "reason", metrics.rejectedInputs)
        yield counter("clustersync_links_closed", "Links this node closed, by reason.",
                      "reason", metrics.linksClosed)
        yield counter("clustersync_handler_errors", "Exceptions raised by message handlers, by handler.",
                      "handler", metrics.handlerErrors)
        yield counter("clustersync_undeliverable", "Forwarded messages that found no local session, by type.",
                      "type", metrics.undeliverable)
        yield counter("clustersync_liveness_events",
                      "Liveness and anti-entropy events (own_stall, no_pong, digest_sent, "
                      "digest_mismatch), by event.", "event", metrics.liveness)
        yield CounterMetricFamily("clustersync_sync_applied", "SYNC_STATE messages applied.",
                                  value=metrics.syncApplied)
        yield GaugeMetricFamily("clustersync_sync_last_sessions",
                                "Sessions carried by the last SYNC_STATE applied.",
                                value=metrics.syncSessions)
        yield GaugeMetricFamily("clustersync_sync_last_seconds",
                                "Seconds spent applying the last SYNC_STATE.",
                                value=metrics.syncSeconds)

        peers = _now(node.peers()) or []
        yield GaugeMetricFamily("clustersync_links_up", "Established peer links.", value=len(peers))
        known = GaugeMetricFamily("clustersync_peer_up",
                                  "1 if the link to this peer is up, 0 if it was seen and is down.",
                                  labels=["peer"])
        for record in self.web.tracker.peerList():
            known.add_metric([record["serverId"]], 1 if record["state"] == "up" else 0)
        yield known
        buffered = GaugeMetricFamily("clustersync_outbound_buffer_bytes",
                                     "Bytes waiting in the outbound buffer of a peer link.",
                                     labels=["peer"])
        for peer in peers:
            buffered.add_metric([peer.serverId], getattr(peer, "outboundBuffered", 0))
        yield buffered

        sessions = _now(node.sessions()) or []
        local = sum(1 for s in sessions if s.serverId == node.serverId)
        family = GaugeMetricFamily("clustersync_sessions", "Sessions known, local or remote.",
                                   labels=["where"])
        family.add_metric(["local"], local)
        family.add_metric(["remote"], len(sessions) - local)
        yield family
        channels = set()
        for s in sessions:
            channels.update(s.canales)
        yield GaugeMetricFamily("clustersync_channels", "Channels with at least one member.",
                                value=len(channels))
        yield GaugeMetricFamily("clustersync_status_stream_clients",
                                "Open server-sent event streams of the status page.",
                                value=len(self.web.streamClients))
        backplane = getattr(node, "backplane", None)
        if backplane is not None:
            yield from _backplaneFamilies(backplane.status())
        yield GaugeMetricFamily("clustersync_start_time_seconds",
                                "When the status service started (seconds since the epoch).",
                                value=self.web.tracker.started)


def _backplaneFamilies(status: dict):
    """The NATS backplane's families, from L{Backplane.status}."""
    yield GaugeMetricFamily("clustersync_backplane_up", "1 if the NATS backplane is connected.",
                            value=1 if status["state"] == "up" else 0)
    yield GaugeMetricFamily("clustersync_backplane_servers",
                            "Servers reached through the backplane.", value=len(status["servers"]))
    yield CounterMetricFamily("clustersync_backplane_outages", "NATS connection losses.",
                              value=status["outages"])
    events = CounterMetricFamily("clustersync_backplane_events",
                                 "Backplane events (gaps, snapshots, sync requests, dead servers, ...).",
                                 labels=["event"])
    for name, value in sorted(status["counters"].items()):
        events.add_metric([name], value)
    yield events


def makeRegistry(web) -> CollectorRegistry:
    """A fresh L{CollectorRegistry} holding only L{NodeCollector}C{(web)}."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(web))
    return registry
