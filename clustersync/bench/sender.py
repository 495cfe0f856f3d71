"""
The load generator of both relays: L{Sender} calls a send function as fast
as the connection takes it, or at a fixed rate.
"""

from __future__ import annotations

import time

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

__all__ = ["Sender", "Watermark", "setNoDelay"]


@implementer(IPushProducer)
class Watermark:
    """
    A do-nothing streaming producer, registered on the bare source's
    transport so that the transport's C{producerPaused} flag works the same
    as on a clustersync link (which registers its own producer).
    """

    def pauseProducing(self) -> None:
        """Nothing to do: the sender polls C{producerPaused}."""

    def resumeProducing(self) -> None:
        """Nothing to do: the sender polls C{producerPaused}."""

    def stopProducing(self) -> None:
        """Nothing to do."""


class Sender:
    """
    The load generator.

    Saturated mode (C{rate} 0): call C{sendOne()} until the transport says
    its buffer is full (C{producerPaused}, set by Twisted when more than
    its C{bufferSize} is queued, cleared once it drained), yield to the
    reactor so that it writes, and go on; while the transport stays full,
    look again every 0.2 ms.  Paced mode: every millisecond, send as many
    messages as the target rate asks for by now.
    """

    def __init__(self, reactor, transport, sendOne, count: int, rate: float, finished) -> None:
        self.reactor = reactor
        self.transport = transport
        self.sendOne = sendOne
        self.count = count
        self.rate = rate
        self.sent = 0
        self.started = 0.0
        self._finished = finished
        self._loop = None

    def start(self) -> None:
        """Start sending."""
        if getattr(self.transport, "producer", None) is None:
            self.transport.registerProducer(Watermark(), True)
        self.started = time.perf_counter()
        if self.rate:
            from twisted.internet.task import LoopingCall

            self._loop = LoopingCall(self._tick)
            self._loop.clock = self.reactor
            self._loop.start(0.001)
        else:
            self._burst()

    def _full(self) -> bool:
        return bool(getattr(self.transport, "producerPaused", False))

    def _tick(self) -> None:
        due = min(self.count, int((time.perf_counter() - self.started) * self.rate) + 1)
        send = self.sendOne
        while self.sent < due and not self._full():
            send()
            self.sent += 1
        if self.sent >= self.count:
            self._loop.stop()
            self._done()

    def _burst(self) -> None:
        transport = self.transport
        if transport.disconnected:
            return
        if getattr(transport, "producerPaused", False):
            self.reactor.callLater(0.0002, self._burst)
            return
        send = self.sendOne
        count = self.count
        sent = self.sent
        while sent < count and not transport.producerPaused:
            send()
            sent += 1
        self.sent = sent
        if sent >= count:
            self._done()
        else:
            self.reactor.callLater(0, self._burst)

    def _done(self) -> None:
        if self._finished is None:
            return
        finished, self._finished = self._finished, None
        finished(self.sent, time.perf_counter() - self.started)


def setNoDelay(transport) -> None:
    """Turn Nagle's algorithm off on C{transport}, if it has a socket."""
    try:
        transport.setTcpNoDelay(True)
    except Exception:
        pass

