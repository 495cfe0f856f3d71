"""
The values of the L{ICluster} API: what a send fires or fails with
(L{Delivery}, L{unconfirmedOne}), what a peer query returns (L{PeerInfo}),
and the checks of the ids and strings it is given (L{wireInt},
L{wireStr}).
"""

from __future__ import annotations

from typing import NamedTuple

import attrs

from clustersync.errors import PeerUnavailable

__all__ = ["Delivery", "PeerInfo", "peerInfo", "unconfirmedOne", "wireInt", "wireStr"]


class Delivery(NamedTuple):
    """
    Where a message went (an immutable tuple: cheap on the send path).

    @ivar local: how many local sessions it was handed to.
    @ivar servers: the peer serverIds it was written to, sorted.
    """

    local: int
    servers: tuple[str, ...]


@attrs.frozen
class PeerInfo:
    """
    A snapshot of one established peer link.

    @ivar serverId: the peer's id.
    @ivar direction: C{"inbound"} or C{"outbound"}.
    @ivar address: the peer's C{host:port}.
    @ivar since: when the link was established (seconds since the epoch).
    @ivar tls: whether the link is TLS.
    @ivar outboundBuffered: bytes queued for the peer beyond what its
        transport took (0 when it keeps up), when the snapshot was taken.
    @ivar kind: C{"clustersync"} (a clustersync node: it gets extension
        messages) or C{"existing"} (an existing server, or a peer not known
        to be clustersync: the spec's messages only); see C{docs/protocol.md}.
    """

    serverId: str
    direction: str
    address: str
    since: float
    tls: bool
    outboundBuffered: int = 0
    kind: str = "existing"


def peerInfo(link) -> PeerInfo:
    """The L{PeerInfo} of C{link}, now."""
    return PeerInfo(link.serverId, link.direction, link.peerAddress, link.since or 0.0, link.tls,
                    getattr(link, "outboundBuffered", 0), getattr(link, "kind", "existing"))


def unconfirmedOne(context) -> PeerUnavailable:
    """
    The error of a one-peer send whose link was lost before the ack;
    C{context} is C{(serverId, local)}: the peer and the local count.
    """
    serverId, local = context
    return PeerUnavailable([serverId], Delivery(local, ()))


def wireInt(name: str, value) -> int:
    """
    C{value} if the wire can carry it as a 64-bit integer.

    @raise TypeError: not an C{int} (a C{bool} is not one).
    @raise ValueError: outside the signed 64-bit range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"{name} {value} is not a 64-bit integer")
    return value


def wireStr(name: str, value, optional: bool = False):
    """C{value} if it is a C{str} (or C{None} when C{optional}); else C{TypeError}."""
    if not isinstance(value, str) and not (optional and value is None):
        raise TypeError(f"{name} must be a str, got {value!r}")
    return value
