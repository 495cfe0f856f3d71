"""
The peer protocol's messages (C{docs/protocol.md}): one msgspec L{Struct}
per message type, its payload, and the session record they carry.

Pure data: no Twisted, no I/O.  The line codec that reads and writes them
is L{clustersync.wire.codec}.  The C{message} of a forwarded payload is a
L{msgspec.Raw}: the exact bytes it arrived as, never decoded here.
"""

from __future__ import annotations

from typing import Annotated, Final, Union

import msgspec
from msgspec import Meta, Raw, Struct

__all__ = [
    "Int64",
    "SessionInfo",
    "HelloPayload",
    "SyncStatePayload",
    "ClientDisconnectedPayload",
    "ChannelMembershipPayload",
    "DirectMessagePayload",
    "ChannelMessagePayload",
    "SessionMessagePayload",
    "BroadcastPayload",
    "Hello",
    "SyncState",
    "ClientConnected",
    "ClientDisconnected",
    "ChannelMembership",
    "DirectMessage",
    "ChannelMessage",
    "SessionMessage",
    "Broadcast",
    "Message",
    "MESSAGE_TYPES",
    "XReceivedPayload",
    "XReceived",
    "XPingPayload",
    "XPing",
    "XPong",
    "XDigestPayload",
    "XDigest",
    "XLeavingPayload",
    "XLeaving",
    "XPeerAddress",
    "XPeersPayload",
    "XPeers",
    "EXTENSION_TYPES",
]

#: A 64-bit signed integer, as the spec's ids are.
Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]

#: The longest identifier a peer may send: C{serverId}, C{origin},
#: C{sessionId} (the spec uses 36-character UUIDs; the link policy allows a
#: serverId of up to 255 characters).  A longer one makes the line a
#: L{clustersync.wire.codec.ProtocolError}, so one peer cannot make every
#: status page, log line and API reply carry megabytes.
MAX_ID_LENGTH: Final = 255

#: The longest C{usuario} (user name) a peer may send.
MAX_NAME_LENGTH: Final = 256

#: The longest C{ip} a peer may send (an IPv6 address with a zone fits).
MAX_IP_LENGTH: Final = 64

#: An identifier string of bounded length.
Ident = Annotated[str, Meta(max_length=MAX_ID_LENGTH)]

#: A user name of bounded length.
Name = Annotated[str, Meta(max_length=MAX_NAME_LENGTH)]

#: An address string of bounded length.
Address = Annotated[str, Meta(max_length=MAX_IP_LENGTH)]


class SessionInfo(Struct, gc=False, omit_defaults=False):
    """
    One client session as carried by SYNC_STATE and CLIENT_CONNECTED.

    Also the compact record that L{clustersync.state.cluster} keeps per session.
    C{canales} is a set (the wire's array is "used as a set").  C{serverId}
    on the wire is informational: the receiver attributes sessions to the
    link's server, so it may be absent when reading.
    """

    sessionId: Ident
    clienteId: Int64
    usuario: Name
    serverId: Ident | None = None
    ip: Address | None = None
    canales: set[Int64] = msgspec.field(default_factory=set)


# Payloads ------------------------------------------------------------------


class HelloPayload(Struct, gc=False):
    """Payload of HELLO."""

    serverId: Ident


class SyncStatePayload(Struct):
    """Payload of SYNC_STATE."""

    sessions: list[SessionInfo]


class ClientDisconnectedPayload(Struct, gc=False, omit_defaults=False):
    """
    Payload of CLIENT_DISCONNECTED; a null (or absent) C{sessionId} means
    every session of C{clienteId} on the sending server.
    """

    clienteId: Int64
    sessionId: Ident | None = None


class ChannelMembershipPayload(Struct, gc=False):
    """Payload of CHANNEL_MEMBERSHIP; C{action} is JOIN or anything else (leave)."""

    sessionId: Ident
    clienteId: Int64
    canalId: Int64
    action: str


class DirectMessagePayload(Struct, gc=False):
    """Payload of DIRECT_MESSAGE."""

    userId: Int64
    message: Raw


class ChannelMessagePayload(Struct, gc=False):
    """Payload of CHANNEL_MESSAGE."""

    canalId: Int64
    message: Raw


class SessionMessagePayload(Struct, gc=False):
    """Payload of SESSION_MESSAGE."""

    sessionId: Ident
    message: Raw


class BroadcastPayload(Struct, gc=False):
    """Payload of BROADCAST."""

    message: Raw


# Envelopes: one class per wire type ----------------------------------------


class Hello(Struct, tag_field="type", tag="HELLO", gc=False):
    """HELLO: opens a link and names the sender's C{serverId}."""

    origin: Ident
    payload: HelloPayload

    @classmethod
    def make(cls, serverId: str) -> "Hello":
        """Build the HELLO a node with id C{serverId} sends."""
        return cls(serverId, HelloPayload(serverId))


class SyncState(Struct, tag_field="type", tag="SYNC_STATE"):
    """SYNC_STATE: every local session of the sender; replaces what was known."""

    origin: Ident
    payload: SyncStatePayload


class ClientConnected(Struct, tag_field="type", tag="CLIENT_CONNECTED", gc=False):
    """CLIENT_CONNECTED: a client authenticated on the sender."""

    origin: Ident
    payload: SessionInfo


class ClientDisconnected(
    Struct, tag_field="type", tag="CLIENT_DISCONNECTED", gc=False
):
    """CLIENT_DISCONNECTED: a session (or all of a client's) ended."""

    origin: Ident
    payload: ClientDisconnectedPayload


class ChannelMembership(
    Struct, tag_field="type", tag="CHANNEL_MEMBERSHIP", gc=False
):
    """CHANNEL_MEMBERSHIP: a session joined or left a channel."""

    origin: Ident
    payload: ChannelMembershipPayload

    @property
    def joined(self) -> bool:
        """C{True} for JOIN (compared case-insensitively), else a leave."""
        return self.payload.action.upper() == "JOIN"


class DirectMessage(Struct, tag_field="type", tag="DIRECT_MESSAGE", gc=False):
    """DIRECT_MESSAGE: deliver C{message} to every local session of C{userId}."""

    origin: Ident
    payload: DirectMessagePayload


class ChannelMessage(Struct, tag_field="type", tag="CHANNEL_MESSAGE", gc=False):
    """CHANNEL_MESSAGE: deliver C{message} to local members of C{canalId}."""

    origin: Ident
    payload: ChannelMessagePayload


class SessionMessage(Struct, tag_field="type", tag="SESSION_MESSAGE", gc=False):
    """SESSION_MESSAGE: deliver C{message} to one session."""

    origin: Ident
    payload: SessionMessagePayload


class Broadcast(Struct, tag_field="type", tag="BROADCAST", gc=False):
    """BROADCAST: deliver C{message} to every local session."""

    origin: Ident
    payload: BroadcastPayload


#: Any message type of the spec (the extensions are not in it).
Message = Union[
    Hello,
    SyncState,
    ClientConnected,
    ClientDisconnected,
    ChannelMembership,
    DirectMessage,
    ChannelMessage,
    SessionMessage,
    Broadcast,
]

#: wire type name -> message class, for every message of the spec.
MESSAGE_TYPES: Final[dict[str, type]] = {
    cls.__struct_config__.tag: cls  # type: ignore[attr-defined]
    for cls in Message.__args__  # type: ignore[attr-defined]
}


# Extensions: clustersync-only message types, never sent to a peer that is
# not known to understand them (existing servers drop unknown types), and
# never added to the spec's messages.


class XReceivedPayload(Struct, gc=False):
    """
    Payload of X_RECEIVED: C{lines} is how many lines the sender has read
    and handled on this link so far (its HELLO included, X_RECEIVED lines
    excluded).
    """

    lines: Annotated[int, Meta(ge=0, le=2**63 - 1)]


class XReceived(Struct, tag_field="type", tag="X_RECEIVED", gc=False):
    """
    X_RECEIVED (extension, link-level): an application receipt.  Consumed
    by the link (L{clustersync.links.protocol.PeerProtocol}); never dispatched,
    applied as state or forwarded.
    """

    origin: Ident
    payload: XReceivedPayload


class XPingPayload(Struct, gc=False):
    """Payload of X_PING and X_PONG: C{n}, a number the pong echoes."""

    n: Annotated[int, Meta(ge=0, le=2**63 - 1)]


class XPing(Struct, tag_field="type", tag="X_PING", gc=False):
    """
    X_PING (extension, link-level): the liveness probe between clustersync
    nodes, sent on a link idle for a third of C{dead_peer_timeout}; the
    peer answers with an L{XPong} at once.  Replaces the idle SYNC_STATE
    re-send on those links.
    """

    origin: Ident
    payload: XPingPayload


class XPong(Struct, tag_field="type", tag="X_PONG", gc=False):
    """X_PONG (extension, link-level): the answer to an L{XPing}, same C{n}."""

    origin: Ident
    payload: XPingPayload


class XDigestPayload(Struct, gc=False):
    """
    Payload of X_DIGEST: what the sender holds of the receiver's own
    sessions: C{sesiones}, how many, and C{hash}, the sum modulo 2**64 of
    a 64-bit hash of each session and of each of its channel memberships
    (L{clustersync.state.digest}).
    """

    sesiones: Annotated[int, Meta(ge=0, le=2**63 - 1)]
    hash: Annotated[int, Meta(ge=0, le=2**63 - 1)]
    lines: Annotated[int, Meta(ge=0, le=2**63 - 1)]


class XDigest(Struct, tag_field="type", tag="X_DIGEST", gc=False):
    """
    X_DIGEST (extension, link-level): anti-entropy.  A receiver whose own
    sessions digest differently answers with a fresh SYNC_STATE.
    """

    origin: Ident
    payload: XDigestPayload


class XLeavingPayload(Struct, gc=False):
    """Payload of X_LEAVING: why the sender leaves (for the peer's logs)."""

    reason: Name


class XLeaving(Struct, tag_field="type", tag="X_LEAVING", gc=False):
    """
    X_LEAVING (extension, link-level): the sender is stopping on purpose
    (a drain); its peers mark it I{left}, not I{failed}, and redial it only
    slowly until it comes back.
    """

    origin: Ident
    payload: XLeavingPayload


class XPeerAddress(Struct, gc=False):
    """One node and the address others should dial it at (its C{advertise})."""

    serverId: Ident
    address: Annotated[str, Meta(max_length=MAX_ID_LENGTH)]


class XPeersPayload(Struct, gc=False):
    """Payload of X_PEERS: the sender and the nodes it is linked to."""

    peers: Annotated[list[XPeerAddress], Meta(max_length=4096)]


class XPeers(Struct, tag_field="type", tag="X_PEERS", gc=False):
    """
    X_PEERS (extension, link-level): gossip for joining through one seed.
    The receiver dials the nodes it is not linked to (where it would accept
    them from).
    """

    origin: Ident
    payload: XPeersPayload


#: wire type name -> class, for every extension message type.
EXTENSION_TYPES: Final[dict[str, type]] = {
    "X_RECEIVED": XReceived,
    "X_PING": XPing,
    "X_PONG": XPong,
    "X_DIGEST": XDigest,
    "X_LEAVING": XLeaving,
    "X_PEERS": XPeers,
}
