"""
A local C{nats-server} process (Debian's C{nats-server} package) on
ephemeral loopback ports, for the development cluster, the tests and the
benchmarks.  Its ports are read from its log as it starts: nothing waits
on a fixed delay.
"""

from __future__ import annotations

import os
import re
import shutil
import signal

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger

__all__ = ["NatsServer", "findNatsServer"]

_CLIENTS = re.compile(rb"Listening for client connections on ([\d.]+):(\d+)")
_ROUTES = re.compile(rb"Listening for route connections on ([\d.]+):(\d+)")
_ROUTE_UP = re.compile(rb"Route connection created")


def findNatsServer() -> str | None:
    """The C{nats-server} program (Debian puts it in /usr/sbin), or C{None}."""
    found = shutil.which("nats-server")
    if found:
        return found
    for candidate in ("/usr/sbin/nats-server", "/usr/local/bin/nats-server"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


class NatsServer(ProcessProtocol):
    """
    One C{nats-server}.

    @ivar clientUrl: C{nats://127.0.0.1:PORT} once started.
    @ivar routeUrl: its route URL (when it is part of a NATS cluster).
    @ivar routesUp: route connections it reported so far.
    """

    _log = Logger()

    def __init__(self, reactor, cluster: str | None = None, routes=(), name: str = "nats",
                 executable: str | None = None, echo: bool = False, port: int = -1) -> None:
        self.reactor = reactor
        self.cluster = cluster
        self.routes = list(routes)
        self.name = name
        self.executable = executable or findNatsServer()
        self.echo = echo
        #: The client port (-1: an ephemeral one).
        self.port = port
        self.clientUrl: str | None = None
        self.routeUrl: str | None = None
        self.routesUp = 0
        self.ended = False
        self._buffer = b""
        self._started: Deferred | None = None
        self._routeWaits: list[tuple[int, Deferred]] = []
        self._endWaits: list[Deferred] = []
        self.output: list[bytes] = []

    def start(self) -> Deferred:
        """
        Start the process.

        @return: a L{Deferred} firing with this L{NatsServer} once it
            listens (and, in a cluster, knows its route port); failing if
            the process ends first.
        """
        if self.executable is None:
            raise FileNotFoundError("nats-server is not installed (apt-get install nats-server)")
        args = [self.executable, "-a", "127.0.0.1", "-p", str(self.port), "-n", self.name]
        if self.cluster is not None:
            args += ["--cluster", "nats://127.0.0.1:-1", "--cluster_name", self.cluster]
            if self.routes:
                args += ["--routes", ",".join(self.routes)]
        self._started = Deferred()
        self.reactor.spawnProcess(self, self.executable, args, env=None)
        return self._started

    def whenRoutes(self, count: int) -> Deferred:
        """@return: a L{Deferred} firing once C{count} routes were created."""
        d = Deferred()
        if self.routesUp >= count:
            d.callback(self)
        else:
            self._routeWaits.append((count, d))
        return d

    def outReceived(self, data: bytes) -> None:
        """Its log (it writes to stderr; stdout is read the same)."""
        self.errReceived(data)

    def errReceived(self, data: bytes) -> None:
        """Read the ports and route events from the log."""
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self.output.append(line)
            if self.echo:
                self._log.info("{name}: {line}", name=self.name, line=line.decode(errors="replace"))
            m = _CLIENTS.search(line)
            if m:
                self.clientUrl = f"nats://{m.group(1).decode()}:{int(m.group(2))}"
            m = _ROUTES.search(line)
            if m:
                self.routeUrl = f"nats://{m.group(1).decode()}:{int(m.group(2))}"
            if _ROUTE_UP.search(line):
                self.routesUp += 1
                for entry in list(self._routeWaits):
                    if self.routesUp >= entry[0]:
                        self._routeWaits.remove(entry)
                        entry[1].callback(self)
        ready = self.clientUrl is not None and (self.cluster is None or self.routeUrl is not None)
        if ready and self._started is not None:
            d, self._started = self._started, None
            d.callback(self)

    def processEnded(self, reason) -> None:
        """Fire what waits on the process."""
        self.ended = True
        if self._started is not None:
            d, self._started = self._started, None
            d.errback(RuntimeError(f"{self.name} ended before it listened: "
                                   + b"\n".join(self.output[-5:]).decode(errors="replace")))
        for _, d in self._routeWaits:
            d.errback(RuntimeError(f"{self.name} ended"))
        self._routeWaits = []
        waits, self._endWaits = self._endWaits, []
        for d in waits:
            d.callback(None)

    def _signal(self, signum: int) -> Deferred:
        d = Deferred()
        if self.ended:
            d.callback(None)
            return d
        self._endWaits.append(d)
        try:
            self.transport.signalProcess(signum)
        except Exception:
            pass
        return d

    def kill(self) -> Deferred:
        """SIGKILL (a crash). @return: a L{Deferred} firing once it ended."""
        return self._signal(signal.SIGKILL)

    def stop(self) -> Deferred:
        """SIGTERM. @return: a L{Deferred} firing once it ended."""
        return self._signal(signal.SIGTERM)
