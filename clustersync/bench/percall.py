"""
Per-message CPU cost of each side of the relay, in one process, with no
kernel and no reactor in the way: where the relay ratio comes from.

Each node is driven only through its wire: a L{PeerProtocol} on a
L{StringTransport}, handed the peer's HELLO (and SYNC_STATE) lines, so the
figures cover framing, decode, dispatch, handler, state lookup and local
delivery (receiving side), or C{sendToUser}, encode and C{sendLine}
(sending side).  The references do the bare relay's work on the same
transports.  On a L{StringTransport} a confirmed send confirms at once
(no socket to ask), so C{confirm_sends} bookkeeping is not in these
figures.
"""

from __future__ import annotations

import time

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineOnlyReceiver

from clustersync.bench.relayprocs import benchConfig
from clustersync.bench.relaysink import SINK_ID, SOURCE_ID, USER, Sink, bareLine, messageBody
from clustersync.bench.report import Row, timePair
from clustersync.wire.codec import Hello, SessionInfo, encode, encodeSync

__all__ = ["perMessageRows"]


def _linkedNode(serverId: str, peerId: str, direction: str, peerLines: list[bytes]):
    """
    A node with one established link to C{peerId}, over a
    L{StringTransport}, after the peer's C{peerLines} (its HELLO first).
    """
    from clustersync.handlers.builtin import BUILTIN_HANDLERS
    from clustersync.links.protocol import PeerProtocol
    from clustersync.cluster.node import ClusterNode

    node = ClusterNode(benchConfig(serverId=serverId, listen=None), Clock(), BUILTIN_HANDLERS)
    link = PeerProtocol(node, direction)
    transport = StringTransport()
    link.makeConnection(transport)
    link.dataReceived(b"".join(peerLines))
    if node.linkFor(peerId) is not link:
        raise RuntimeError(f"benchmark link to {peerId} did not establish")
    transport.clear()
    return node, link, transport


class _BareReceiver(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 1 << 24

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def lineReceived(self, line: bytes) -> None:
        self.sink.lineReceived(line)


def perMessageRows(count: int, size: int, repeat: int) -> list[Row]:
    """
    Microseconds per message for node A's send path and node B's receive
    path, each next to the bare relay's work on the same transport.
    """
    pad = b"x" * messageBody(size)
    padText = pad.decode()
    now = time.monotonic_ns

    # Sending side: A, linked to B, knows user U's session on B.
    peerSession = SessionInfo("bench-session", USER, "bench")
    a, _, aTransport = _linkedNode(SOURCE_ID, SINK_ID, "outbound", [
        encode(Hello.make(SINK_ID)), encodeSync(SINK_ID, [peerSession])])
    sendToUser = a.sendToUser
    bareTransport = StringTransport()

    def csSend():
        for _ in range(count):
            sendToUser(USER, {"t": now(), "p": padText})
        aTransport.clear()

    def bareSend():
        write = bareTransport.write
        for _ in range(count):
            write(bareLine(now(), pad))
        bareTransport.clear()

    # Receiving side: B, linked from A, with user U's local session.
    b, bLink, _ = _linkedNode(SINK_ID, SOURCE_ID, "inbound", [encode(Hello.make(SOURCE_ID))])
    bSink = Sink(1 << 62, lambda s: None)
    b.setLocalDelivery(bSink)
    b.clientConnected("bench-session", USER, "bench")
    data = b"".join(bareLine(now(), pad) for _ in range(count))
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    bare = _BareReceiver(Sink(1 << 62, lambda s: None))
    bare.makeConnection(StringTransport())

    def csReceive():
        for chunk in chunks:
            bLink.dataReceived(chunk)

    def bareReceive():
        for chunk in chunks:
            bare.dataReceived(chunk)

    sendT, bareSendT = timePair(csSend, bareSend, repeat)
    receiveT, bareReceiveT = timePair(csReceive, bareReceive, repeat)
    if bSink.count != count * repeat or b.metrics.rejectedInputs:
        raise RuntimeError(f"node B did not deliver every line: {b.metrics.rejectedInputs}")
    us = 1e6 / count
    return [
        Row("node A: sendToUser, per message", sendT * us, bareSendT * us, "µs",
            "bare: format the same line + write", "dict message, encode, sendLine, Deferred"),
        Row("node B: receive + deliver, per line", receiveT * us, bareReceiveT * us, "µs",
            "bare: LineOnlyReceiver + the same sink",
            "framing, decode, dispatch, handler, state lookup, ILocalDelivery"),
    ]
