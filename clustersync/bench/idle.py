"""
Section 5 of the report: what an idle link costs, in bytes per second,
when its node holds many local sessions: X_PING between clustersync nodes
against the SYNC_STATE heartbeat of the previous design, in the same run.

Two nodes run in this process on one L{Clock}, linked in memory
(L{twisted.test.iosim}); time is simulated, so the figures are bytes on the
wire, not timings, and do not move with the machine's load.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.test import iosim

from clustersync.bench.report import Row, Section

__all__ = ["idleBytesPerSecond", "idleSection", "SECONDS"]

#: Simulated seconds of idle link measured (after the handshake's SYNC_STATE).
SECONDS = 120.0


class _Clocks:
    """The one L{Clock} of both nodes, as iosim's pump advances it."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def advance(self, amount: float) -> None:
        self.clock.advance(amount)


def idleBytesPerSecond(sessions: int, **settings) -> float:
    """
    Bytes per second node A writes on its idle link to node B once linked,
    A holding C{sessions} local sessions, both nodes with C{settings}.
    """
    from clustersync.app.config import NodeConfig
    from clustersync.cluster.node import ClusterNode
    from clustersync.handlers.builtin import BUILTIN_HANDLERS
    from clustersync.links.factories import PeerClientFactory, PeerServerFactory

    clock = Clock()

    def node(serverId):
        config = NodeConfig(serverId=serverId, listen=None, clients=None, openLinks=True,
                            maxSessionsPerServer=None, **settings)
        return ClusterNode(config, clock, BUILTIN_HANDLERS)

    a, b = node("srv-a"), node("srv-b")
    for i in range(sessions):
        a.clientConnected(f"{i:08d}-4f89-11d3-9a0c-0305e82c3301", i, f"user{i}", "10.0.0.1",
                          [i % 50])
    factory = PeerClientFactory(a, "b:7001", clock)
    link, _, pump = iosim.connectedServerAndClient(  # (client: A, server: B, pump)
        lambda: PeerServerFactory(b).buildProtocol(None),
        lambda: factory.buildProtocol(None),
        clock=_Clocks(clock),
    )
    pump.flush()
    # Past the first check (which re-syncs or pings once whatever the traffic).
    step = a.config.deadPeerTimeout / 30
    for _ in range(10):
        clock.advance(step)
        pump.flush()
    assert b.state.countSessions("srv-a") == sessions
    start = link.bytesWritten
    for _ in range(round(SECONDS / step)):
        clock.advance(step)
        pump.flush()
    return (link.bytesWritten - start) / SECONDS


def idleSection(sizes) -> Section:
    """Section 5: idle bytes per second per link."""
    n = sizes.memorySessions
    previous = idleBytesPerSecond(n, extensions="none", receipts="none",
                                  legacyHeartbeatLimit=10**9)
    clustersync = idleBytesPerSecond(n, extensions="all")
    existing = idleBytesPerSecond(n, extensions="none", receipts="none")
    rows = [
        Row(f"idle link between clustersync nodes, {n:,} local sessions", clustersync, previous,
            "bytes/s", "previous design: SYNC_STATE heartbeat on every idle link",
            f"X_PING/X_PONG every dead_peer_timeout / 3, X_DIGEST every 30 s; "
            f"{SECONDS:g} s of simulated time; goal at most 1,000 bytes/s"),
        Row(f"idle link to an existing server, {n:,} local sessions", existing, previous,
            "bytes/s", "previous design: SYNC_STATE heartbeat on every idle link",
            "above legacy_heartbeat_limit (5,000): no heartbeat, TCP keepalive and "
            "TCP_USER_TIMEOUT only"),
    ]
    return Section(
        "5. Idle link cost",
        rows,
        method=f"""
Two nodes in this process on one `Clock`, linked in memory
(`twisted.test.iosim`), node A holding {n:,} local sessions (one channel
each). After the handshake and the first liveness check, {SECONDS:g} s of
simulated time pass with no change; the figure is what node A wrote on the
link per second (`PeerProtocol.bytesWritten`: every line, extension lines
included). The reference is the same run with the previous design's
heartbeat (every peer taken for an existing server, no session limit on
the SYNC_STATE heartbeat).""",
        notes=f"""
Between clustersync nodes an idle link now costs {clustersync:,.0f} bytes/s
whatever the number of sessions, {previous / max(clustersync, 1):,.0f}x less
than re-sending {n:,} sessions every {5:g} s.""",
    )
