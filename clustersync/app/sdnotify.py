"""
systemd readiness (C{Type=notify}) without libsystemd: one datagram,
C{READY=1}, to the unix socket named by C{$NOTIFY_SOCKET}, sent once every
listening service of the node listens.
"""

from __future__ import annotations

import os
import socket

from twisted.application.service import Service
from twisted.internet.defer import DeferredList
from twisted.logger import Logger

__all__ = ["notify", "NotifyService", "makeNotifyService"]

_log = Logger()


def notify(state: str, environ=None) -> bool:
    """
    Send C{state} (e.g. C{"READY=1"}) to systemd's notification socket.

    @param environ: the environment to read C{NOTIFY_SOCKET} from
        (default L{os.environ}).
    @return: C{True} if sent, C{False} if not running under a service
        manager that asked for notifications or if sending failed.
    """
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(address)
        sock.sendall(state.encode())
    except OSError as e:
        _log.warn("cannot notify systemd at {address}: {error}", address=address, error=e)
        return False
    finally:
        sock.close()
    return True


class NotifyService(Service):
    """
    Once started, waits for every sibling service that has a
    C{whenListening()} (C{peer-listen}, C{web}, the client gateway, ...)
    and then sends C{READY=1}.  If one fails to listen it sends a
    C{STATUS=} line instead, so C{systemctl status} tells why the start
    never completes.

    @ivar ready: C{True} once C{READY=1} was sent.
    """

    name = "systemd-notify"

    def __init__(self, reactor, environ=None) -> None:
        self.reactor = reactor
        self.environ = environ
        self.ready = False
        self._call = None

    def startService(self) -> None:
        """Look at the siblings once all have started."""
        Service.startService(self)
        self._call = self.reactor.callLater(0, self._waitForListeners)

    def stopService(self) -> None:
        """Tell systemd we are stopping."""
        Service.stopService(self)
        if self._call is not None and self._call.active():
            self._call.cancel()
        if self.ready:
            notify("STOPPING=1", self.environ)

    def _waitForListeners(self):
        self._call = None
        waits = []
        names = []
        for service in self.parent or ():
            when = getattr(service, "whenListening", None)
            if service is not self and when is not None:
                waits.append(when())
                names.append(service.name)
        d = DeferredList(waits, consumeErrors=True)

        def done(results):
            failed = [n for n, (ok, _) in zip(names, results) if not ok]
            if failed:
                notify(f"STATUS=cannot listen: {', '.join(failed)}", self.environ)
                return
            if self.running:
                self.ready = notify(f"READY=1\nSTATUS=listening: {', '.join(names)}", self.environ)
                _log.info("ready ({services} listening); notified systemd: {sent}",
                          services=", ".join(names), sent=self.ready)

        return d.addCallback(done)


def makeNotifyService(reactor, environ=None) -> NotifyService | None:
    """
    A L{NotifyService} if systemd asked for notifications
    (C{$NOTIFY_SOCKET} set), else C{None}.
    """
    if not (os.environ if environ is None else environ).get("NOTIFY_SOCKET"):
        return None
    return NotifyService(reactor, environ)
