"""
What the relay benchmark moves and counts: the benchmark message and its
DIRECT_MESSAGE line, and the L{Sink} that both relays hand each message to.

Every message carries its send time (C{time.monotonic_ns()}, one clock for
every process of the machine); the sink computes latency and the rate from
the first send to the last receive, and its own process's CPU time per
message.
"""

from __future__ import annotations

import time
from array import array

from zope.interface import implementer

from clustersync.interfaces import ILocalDelivery

__all__ = ["USER", "SINK_ID", "SOURCE_ID", "Sink", "messageBody", "bareLine"]

#: The user every message goes to.
USER = 7
#: The server ids of node B (the sink) and node A (the source).
SINK_ID = "bench-b"
SOURCE_ID = "bench-a"
#: Where a message's send stamp starts.
_T = b'"t":'


def messageBody(size: int) -> int:
    """The padding length so that a DIRECT_MESSAGE line is about C{size} bytes."""
    # {"type":"DIRECT_MESSAGE","origin":"bench-a","payload":{"userId":7,
    # "message":{"t":<19 digits>,"p":"..."}}}\n  is 111 bytes + padding.
    return max(0, size - 111)


def bareLine(stamp: int, pad: bytes) -> bytes:
    """The exact line clustersync writes for one benchmark message."""
    return (
        b'{"type":"DIRECT_MESSAGE","origin":"bench-a","payload":{"userId":7,'
        b'"message":{"t":%d,"p":"%s"}}}\n' % (stamp, pad)
    )


@implementer(ILocalDelivery)
class Sink:
    """
    Counts messages and records each one's latency (receive time minus the
    C{"t"} it carries, in nanoseconds).

    It is both an L{ILocalDelivery} (clustersync) and a line consumer (bare
    relay); both read the stamp the same way.

    @ivar count: messages received.
    @ivar latencies: per-message latency in ns.
    @ivar firstSent: the stamp of the first message.
    @ivar lastReceived: the receive time of the last message.
    """

    def __init__(self, expected: int, done) -> None:
        self.expected = expected
        self.count = 0
        self.latencies = array("q")
        self.firstSent: int | None = None
        self.lastReceived = 0
        self.cpuStarted = 0.0
        self.cpuSeconds = 0.0
        self.bytes = 0
        self._done = done

    def _take(self, data: bytes) -> None:
        now = time.monotonic_ns()
        i = data.find(_T) + 4
        stamp = int(data[i : data.index(b",", i)])
        if self.firstSent is None:
            self.firstSent = stamp
            self.cpuStarted = time.process_time()
        self.latencies.append(now - stamp)
        self.lastReceived = now
        self.bytes += len(data)
        self.count += 1
        if self.count == self.expected:
            self.cpuSeconds = time.process_time() - self.cpuStarted
            self._done(self)

    def deliver(self, sessions, message, kind, origin) -> int:
        """Count one clustersync delivery."""
        self._take(message)
        return len(sessions)

    def lineReceived(self, line: bytes) -> None:
        """Count one bare-relay line."""
        self._take(line)

    def result(self) -> dict:
        """
        The figures of this run (rate in msgs/s, latencies in ms, this
        process's CPU time per message in µs).
        """
        lat = sorted(self.latencies)
        elapsed = (self.lastReceived - (self.firstSent or 0)) / 1e9
        return {
            "count": self.count,
            "seconds": elapsed,
            "rate": self.count / elapsed if elapsed > 0 else 0.0,
            "p50": lat[len(lat) // 2] / 1e6 if lat else 0.0,
            "p99": lat[min(len(lat) - 1, (len(lat) * 99) // 100)] / 1e6 if lat else 0.0,
            "meanBytes": self.bytes / self.count if self.count else 0.0,
            "sinkCpu": self.cpuSeconds / self.count * 1e6 if self.count else 0.0,
        }
