"""
A TCP fault-injection proxy for tests (Twisted, 127.0.0.1 only).

One L{FaultProxy} listens on an ephemeral loopback port and forwards every
connection to one target port.  While it runs, a test can:

  - L{FaultProxy.cut}: close both sides of every connection (FIN);
  - L{FaultProxy.reset}: abort both sides (SO_LINGER 0, so an RST);
  - L{FaultProxy.blackhole}: stop forwarding and stop reading, keeping the
    sockets open (the kernel still ACKs, so TCP sees nothing wrong); new
    connections are accepted and held the same way;
  - L{FaultProxy.setDelay}: add latency to every chunk, both ways;
  - L{FaultProxy.setThrottle}: cap the bytes per second, both ways (reading
    stops while a direction's backlog is large, so the sender's kernel
    buffers fill as with a real slow link);
  - L{FaultProxy.strand}: black-hole the current connections for good
    (their ends stay half-open, as after a host vanished) while new ones
    are forwarded;
  - L{FaultProxy.heal}: undo black-hole, delay and throttle.
"""

from __future__ import annotations

import collections
import socket

from twisted.internet.protocol import ClientFactory, Factory, Protocol

__all__ = ["FaultProxy"]

#: Backlog (bytes) of one direction above which the proxy stops reading.
HIGH_WATER = 64 * 1024
#: Throttle granularity (seconds).
TICK = 0.02


class _Pipe:
    """
    One direction of one proxied connection: a FIFO of C{(due, bytes)}
    drained to the destination as delay and throttle allow.
    """

    def __init__(self, proxy: "FaultProxy", pair: "_Pair") -> None:
        self.proxy = proxy
        self.pair = pair
        self.source = None
        self.destination = None
        self.queue: collections.deque = collections.deque()
        self.queued = 0
        self._call = None
        self.backpressure = False

    def push(self, data: bytes) -> None:
        """Queue C{data} read from the source."""
        now = self.proxy.reactor.seconds()
        self.queue.append((now + self.proxy.delay, data))
        self.queued += len(data)
        if self.queued > HIGH_WATER and not self.backpressure:
            self.backpressure = True
            self.pair.updateReading()
        self.drain()

    def drain(self) -> None:
        """Write what is due (and allowed by the throttle) to the destination."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self.pair.silenced or self.destination is None or self.pair.closed:
            return
        now = self.proxy.reactor.seconds()
        rate = self.proxy.rate
        budget = None if rate is None else max(1, int(rate * TICK))
        while self.queue:
            due, chunk = self.queue[0]
            if due > now:
                self._schedule(due - now)
                break
            if budget is not None and budget <= 0:
                self._schedule(TICK)
                break
            if budget is not None and len(chunk) > budget:
                self.queue[0] = (due, chunk[budget:])
                chunk = chunk[:budget]
            else:
                self.queue.popleft()
            self.queued -= len(chunk)
            if budget is not None:
                budget -= len(chunk)
            self.destination.transport.write(chunk)
        if self.backpressure and self.queued <= HIGH_WATER // 2:
            self.backpressure = False
            self.pair.updateReading()

    def _schedule(self, delay: float) -> None:
        self._call = self.proxy.reactor.callLater(max(0.0, delay), self.drain)

    def stop(self) -> None:
        """Drop everything queued; no more draining."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self.queue.clear()
        self.queued = 0


class _Side(Protocol):
    """One socket of a proxied connection (downstream or upstream)."""

    def __init__(self, pair: "_Pair", outgoing: _Pipe) -> None:
        self.pair = pair
        self.outgoing = outgoing
        self.reading = True

    def connectionMade(self) -> None:
        """Apply the proxy's receive buffer size; tell the pair this side is up."""
        size = self.pair.proxy.receiveBuffer
        if size is not None:
            try:
                self.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            except (OSError, AttributeError):
                pass
        self.pair.sideConnected(self)

    def dataReceived(self, data: bytes) -> None:
        """Forward through this side's outgoing pipe."""
        self.outgoing.push(data)

    def connectionLost(self, reason) -> None:
        """Close the other side too."""
        self.pair.sideLost(self)

    def setReading(self, reading: bool) -> None:
        """Pause or resume reading from this socket."""
        if self.transport is None or reading == self.reading:
            return
        self.reading = reading
        if reading:
            self.transport.resumeProducing()
        else:
            self.transport.pauseProducing()


class _Pair:
    """A downstream (accepted) and an upstream (dialed) socket."""

    def __init__(self, proxy: "FaultProxy") -> None:
        self.proxy = proxy
        self.up = _Pipe(proxy, self)  # downstream -> upstream
        self.downPipe = _Pipe(proxy, self)  # upstream -> downstream
        self.downstream = _Side(self, self.up)
        self.upstream = _Side(self, self.downPipe)
        self.up.source, self.up.destination = self.downstream, None
        self.downPipe.source, self.downPipe.destination = self.upstream, self.downstream
        self.closed = False
        self.upConnected = False
        self.stranded = False

    @property
    def silenced(self) -> bool:
        """Whether this connection forwards nothing (black hole or stranded)."""
        return self.stranded or self.proxy.blackholed

    def sideConnected(self, side: _Side) -> None:
        """Wire the pipes once both ends exist."""
        if side is self.downstream:
            side.setReading(False)
            self.proxy.connectUpstream(self)
            return
        self.upConnected = True
        self.up.destination = self.upstream
        self.updateReading()
        self.up.drain()
        self.downPipe.drain()

    def updateReading(self) -> None:
        """Read from a side unless black-holed or its pipe is backed up."""
        if self.closed:
            return
        hole = self.silenced
        self.downstream.setReading(self.upConnected and not hole and not self.up.backpressure)
        if self.upConnected:
            self.upstream.setReading(not hole and not self.downPipe.backpressure)

    def upstreamFailed(self) -> None:
        """The target refused: close the client side."""
        self.close()

    def sideLost(self, side: _Side) -> None:
        """
        One side went away: flush what the other side still has to get
        (unless black-holed), then close it.
        """
        if not self.silenced:
            for pipe in (self.up, self.downPipe):
                if pipe.destination is not None and pipe.destination is not side:
                    transport = pipe.destination.transport
                    while pipe.queue:
                        transport.write(pipe.queue.popleft()[1])
                    pipe.queued = 0
        self.close()

    def close(self, abort: bool = False) -> None:
        """Close both sides (FIN, or RST when C{abort})."""
        if self.closed:
            return
        self.closed = True
        self.proxy.pairs.discard(self)
        self.up.stop()
        self.downPipe.stop()
        for side in (self.downstream, self.upstream):
            transport = side.transport
            if transport is None:
                continue
            if abort:
                transport.abortConnection()
            else:
                # A paused transport must read again to notice the close.
                transport.resumeProducing()
                transport.loseConnection()


class _DownFactory(Factory):
    noisy = False

    def __init__(self, proxy: "FaultProxy") -> None:
        self.proxy = proxy

    def buildProtocol(self, addr):
        pair = _Pair(self.proxy)
        self.proxy.pairs.add(pair)
        self.proxy.accepted += 1
        return pair.downstream


class _UpFactory(ClientFactory):
    noisy = False

    def __init__(self, pair: _Pair) -> None:
        self.pair = pair

    def buildProtocol(self, addr):
        return self.pair.upstream

    def clientConnectionFailed(self, connector, reason) -> None:
        self.pair.upstreamFailed()


class FaultProxy:
    """
    A loopback TCP proxy to C{127.0.0.1:targetPort} with injectable faults.

    @ivar port: the listening port number once L{start} has fired.
    @ivar blackholed: whether forwarding is stopped.
    @ivar delay: seconds added to each chunk.
    @ivar rate: bytes per second per direction, or C{None}.
    @ivar accepted: connections accepted so far.
    @ivar receiveBuffer: C{SO_RCVBUF} for the proxy's sockets, or C{None}
        for the system default.  A small one makes a black hole closer to a
        real one: the proxy's kernel then acknowledges only a few KB before
        its window closes, instead of megabytes on loopback.
    """

    def __init__(self, reactor, targetPort: int, name: str = "",
                 receiveBuffer: int | None = None) -> None:
        self.reactor = reactor
        self.targetPort = targetPort
        self.name = name
        self.pairs: set[_Pair] = set()
        self.blackholed = False
        self.delay = 0.0
        self.rate: float | None = None
        self.accepted = 0
        self.receiveBuffer = receiveBuffer
        self.port = None
        self._listening = None

    def start(self, port: int = 0) -> int:
        """Listen on C{127.0.0.1:port} (0: ephemeral); return the port number."""
        self._listening = self.reactor.listenTCP(port, _DownFactory(self), interface="127.0.0.1")
        if self.receiveBuffer is not None:  # inherited by accepted sockets
            self._listening.socket.setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, self.receiveBuffer)
        self.port = self._listening.getHost().port
        return self.port

    def stop(self):
        """Stop listening and reset every connection; returns a Deferred."""
        self.reset()
        listening, self._listening = self._listening, None
        if listening is not None:
            return listening.stopListening()
        return None

    def connectUpstream(self, pair: _Pair) -> None:
        """Dial the target for C{pair}."""
        self.reactor.connectTCP("127.0.0.1", self.targetPort, _UpFactory(pair), timeout=5)

    # Faults --------------------------------------------------------------

    def cut(self) -> int:
        """Close both sides of every connection (FIN); return how many."""
        pairs = list(self.pairs)
        for pair in pairs:
            pair.close(abort=False)
        return len(pairs)

    def reset(self) -> int:
        """Abort both sides of every connection (RST); return how many."""
        pairs = list(self.pairs)
        for pair in pairs:
            pair.close(abort=True)
        return len(pairs)

    def blackhole(self) -> None:
        """Stop forwarding and reading on every connection, old and new."""
        self.blackholed = True
        for pair in list(self.pairs):
            pair.updateReading()

    def setDelay(self, seconds: float) -> None:
        """Delay every chunk by C{seconds}, both ways."""
        self.delay = seconds

    def setThrottle(self, bytesPerSecond: float | None) -> None:
        """Cap each direction at C{bytesPerSecond} (C{None}: no cap)."""
        self.rate = bytesPerSecond
        for pair in list(self.pairs):
            pair.up.drain()
            pair.downPipe.drain()

    def strand(self) -> int:
        """
        Black-hole every current connection for good (never forwarded nor
        closed again: their ends stay half-open, as with a host that
        vanished) while new connections are forwarded normally; return how
        many were stranded.
        """
        pairs = list(self.pairs)
        for pair in pairs:
            pair.stranded = True
            pair.updateReading()
        self.blackholed = False
        return len(pairs)

    def heal(self) -> None:
        """Forward again without delay or throttle."""
        self.blackholed = False
        self.delay = 0.0
        self.rate = None
        for pair in list(self.pairs):
            pair.updateReading()
            pair.up.queue = collections.deque((0.0, c) for _, c in pair.up.queue)
            pair.downPipe.queue = collections.deque((0.0, c) for _, c in pair.downPipe.queue)
            pair.up.drain()
            pair.downPipe.drain()
