"""
What a peer link sets on and learns from its transport: TCP options tuned
from C{dead_peer_timeout} (keepalive, C{TCP_USER_TIMEOUT}, no Nagle delay),
the bytes the peer's TCP stack has not acknowledged yet, and whether the
transport (or a failure on it) is TLS.

See C{docs/reliability.md} for why the options are set as they are.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios

__all__ = [
    "keepaliveSettings", "tuneSocket", "unacknowledgedBytes",
    "setNoDelay", "countingSocket", "isTLS", "isTLSError",
]


def keepaliveSettings(bound: float) -> tuple[int, int, int]:
    """
    TCP keepalive C{(idle, interval, count)} in whole seconds such that an
    idle connection to a vanished host is reported dead after
    C{idle + interval * count} seconds, at most C{bound} when C{bound >= 4}
    (the kernel counts in whole seconds, so 4 s is the floor).
    """
    count = 3
    idle = max(1, int(bound / 3))
    interval = max(1, int((bound - idle) / count))
    return idle, interval, count


def _socketOf(transport):
    """The socket under C{transport} (through TLS wrappers), or C{None}."""
    for _ in range(4):
        if transport is None:
            return None
        getHandle = getattr(transport, "getHandle", None)
        handle = getHandle() if getHandle is not None else None
        if isinstance(handle, socket.socket):
            return handle
        transport = getattr(transport, "transport", None)
    return None


def tuneSocket(transport, bound: float) -> bool:
    """
    Enable TCP keepalive on C{transport}'s socket, tuned by
    L{keepaliveSettings}, and set C{TCP_USER_TIMEOUT} to C{bound} (data
    left unacknowledged, or a zero window, for that long kills the
    connection).

    @return: C{True} if the options were set, C{False} if C{transport} has
        no TCP socket (tests, UNIX sockets) or the system refused.
    """
    sock = _socketOf(transport)
    if sock is None:
        return False
    idle, interval, count = keepaliveSettings(bound)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (
            ("TCP_KEEPIDLE", idle),
            ("TCP_KEEPINTVL", interval),
            ("TCP_KEEPCNT", count),
            ("TCP_USER_TIMEOUT", int(bound * 1000)),
        ):
            option = getattr(socket, name, None)
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
    except OSError:
        return False
    return True


def setNoDelay(transport) -> None:
    """Turn Nagle's algorithm off on C{transport}, if it is TCP."""
    setTcpNoDelay = getattr(transport, "setTcpNoDelay", None)
    if setTcpNoDelay is not None:
        try:
            setTcpNoDelay(True)
        except Exception:  # not a TCP transport (tests, UNIX sockets)
            pass


def countingSocket(transport):
    """
    The socket of C{transport} if it is plain TCP (its own handle, not one
    under a TLS wrapper), whose acknowledged bytes L{unacknowledgedBytes}
    can count; else C{None}.
    """
    handle = getattr(transport, "getHandle", lambda: None)()
    return handle if isinstance(handle, socket.socket) else None


def unacknowledgedBytes(sock) -> int | None:
    """
    Bytes written to TCP socket C{sock} that its peer's TCP stack has not
    acknowledged yet (C{SIOCOUTQ}), or C{None} if the system cannot say.
    """
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError, AttributeError):
        return None
    return struct.unpack("i", raw)[0]


def isTLSError(reason) -> bool:
    """
    Whether C{reason} (a L{Failure}) is a TLS error: a refused handshake or
    a server certificate that does not match the dialed host name.
    """
    try:
        from OpenSSL.SSL import Error
        from service_identity import VerificationError
    except ImportError:
        return False
    return reason.check(Error, VerificationError) is not None


def isTLS(transport) -> bool:
    """Whether C{transport} is a TLS transport."""
    try:
        from twisted.internet.interfaces import ISSLTransport

        return ISSLTransport.providedBy(transport)
    except Exception:
        return False
