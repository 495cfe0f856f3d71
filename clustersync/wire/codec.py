"""
The line codec of the peer protocol (C{docs/protocol.md}): L{decode} turns
one line (without its C{\\n}) into one of the message classes of
L{clustersync.wire.messages}, L{encode} turns one of them into one line
(with its C{\\n}).

Pure code: no Twisted, no I/O.

Decoding validates types and required fields and raises exactly one exception
type, L{ProtocolError}, which names the message type and the offending field.
Unknown envelope and payload fields (C{target}, C{route}, C{instanceId}, ...)
are ignored when reading and never written.

The C{message} of a forwarded payload is kept as L{msgspec.Raw}: the exact
bytes it arrived as.  Forwarding and local delivery use those bytes; they are
never decoded or re-encoded.

The message classes are importable from here too (C{from
clustersync.wire.codec import Hello, encode}), as they always were.
"""

from __future__ import annotations

from typing import Union

import msgspec
from msgspec import Raw, Struct

from clustersync.wire.messages import (
    EXTENSION_TYPES,
    MESSAGE_TYPES,
    Broadcast,
    ChannelMembership,
    ChannelMessage,
    ClientConnected,
    ClientDisconnected,
    DirectMessage,
    Hello,
    Message,
    SessionInfo,
    SessionMessage,
    SyncState,
    XDigest,
    XLeaving,
    XPeers,
    XPing,
    XPong,
    XReceived,
)

# The payload classes stay importable from here, as before the split.
from clustersync.wire.messages import (  # noqa: F401
    BroadcastPayload,
    ChannelMembershipPayload,
    ChannelMessagePayload,
    ClientDisconnectedPayload,
    DirectMessagePayload,
    HelloPayload,
    SessionMessagePayload,
    SyncStatePayload,
    XDigestPayload,
    XLeavingPayload,
    XPeerAddress,
    XPeersPayload,
    XPingPayload,
    XReceivedPayload,
)

__all__ = [
    "ProtocolError",
    "SessionInfo",
    "Hello",
    "SyncState",
    "ClientConnected",
    "ClientDisconnected",
    "ChannelMembership",
    "DirectMessage",
    "ChannelMessage",
    "SessionMessage",
    "Broadcast",
    "MESSAGE_TYPES",
    "XReceived",
    "XPing",
    "XPong",
    "XDigest",
    "XLeaving",
    "XPeers",
    "EXTENSION_TYPES",
    "decode",
    "decodeLines",
    "encode",
    "encodeRaw",
    "encodeValue",
    "DIRECT_SUFFIX",
    "rawMessage",
    "messageBytes",
    "DirectEncoder",
]


class ProtocolError(ValueError):
    """
    A line could not be decoded into a valid peer message.

    @ivar messageType: the envelope C{type} when it could be read, else
        C{None}.
    @ivar field: a JSON path to the offending field (C{"$.payload.clienteId"})
        or C{None} when the problem is the line as a whole.
    @ivar reason: a short machine-friendly reason: one of C{"utf8"},
        C{"json"}, C{"envelope"} (not a JSON object), C{"type"} (missing or
        unknown C{type}), C{"field"} (missing or mistyped field).
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        messageType: str | None = None,
        field: str | None = None,
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.messageType = messageType
        self.field = field
        where = f"{messageType or '?'}"
        if field:
            where += f" field {field}"
        super().__init__(f"{where}: {detail}")


class _WireSession(Struct, gc=False):
    """
    A session as written on the wire: exactly the spec's fields, in its order.
    """

    serverId: str | None
    sessionId: str
    clienteId: int
    usuario: str
    ip: str | None
    canales: list[int]


def _wireSession(s: SessionInfo, serverId: str) -> _WireSession:
    return _WireSession(
        serverId, s.sessionId, s.clienteId, s.usuario, s.ip, sorted(s.canales)
    )


class _WireSyncPayload(Struct):
    sessions: list[_WireSession]


# An outgoing SYNC_STATE, its sessions written with exactly the spec's fields.
class _WireSync(Struct, tag_field="type", tag="SYNC_STATE"):
    origin: str
    payload: _WireSyncPayload


class _WireConnected(Struct, tag_field="type", tag="CLIENT_CONNECTED"):
    origin: str
    payload: _WireSession


class _TypeOnly(Struct):
    type: str


_decoder = msgspec.json.Decoder(Union[(*Message.__args__, *EXTENSION_TYPES.values())])  # type: ignore[attr-defined]
_typeDecoder = msgspec.json.Decoder(_TypeOnly)
_encoder = msgspec.json.Encoder()
_encode = _encoder.encode

#: What the encoder raises for an application value it cannot encode: an
#: unsupported type, an integer out of range, or a value that contains
#: itself (C{RecursionError}).
_REFUSED = (TypeError, msgspec.EncodeError, RecursionError)

#: The bytes a DIRECT_MESSAGE line ends with, after its C{message} (see
#: L{DirectEncoder}).
DIRECT_SUFFIX = b"}}\n"

#: Encode an application value that is not a L{msgspec.Raw}: the bytes
#: L{messageBytes} gives for it, for a caller that keeps a
#: L{DirectEncoder.prefix} and builds the line itself.  It raises
#: C{TypeError}, L{msgspec.EncodeError} or C{RecursionError} for a value it
#: cannot encode, where L{messageBytes} raises C{TypeError} with a clearer
#: message.
encodeValue = _encode


def _typeOf(line: bytes) -> str | None:
    """
    Best-effort read of the envelope C{type}, only used to name it in errors.
    """
    try:
        return _typeDecoder.decode(line).type
    except Exception:
        return None


def decode(line: bytes) -> Message:
    """
    Decode one line (without its delimiter) into a typed message.

    @raise ProtocolError: the line is not UTF-8, not JSON, not an object, has
        an unknown C{type}, or misses or mistypes a field.
    """
    # msgspec does not validate the bytes it keeps as Raw (a forwarded
    # message) nor those it skips (unknown fields): check the whole line
    # first (an ASCII line, the common case, is valid UTF-8).
    if not line.isascii():
        try:
            str(line, "utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError(
                "utf8", f"invalid UTF-8: {e.reason} at byte {e.start}", _typeOf(line)
            ) from None
    try:
        return _decoder.decode(line)
    except msgspec.ValidationError as e:
        text = str(e)
        field = None
        if " - at `" in text:
            text, _, path = text.partition(" - at `")
            field = path.rstrip("`")
        if "missing required field `" in text:
            field = (field or "$") + "." + text.split("`")[1]
        messageType = _typeOf(line)
        if field is None:
            reason = "envelope"
        elif field == "$.type":
            reason = "type"
        else:
            reason = "field"
        if (reason == "type" and messageType is not None and messageType not in MESSAGE_TYPES
                and messageType not in EXTENSION_TYPES):
            text = f"unknown message type {messageType!r}"
        return _raise(ProtocolError(reason, text, messageType, field))
    except msgspec.DecodeError as e:
        raise ProtocolError("json", f"invalid JSON: {e}") from None
    except UnicodeDecodeError as e:
        raise ProtocolError("utf8", f"invalid UTF-8: {e.reason} at byte {e.start}") from None
    except RecursionError:
        # msgspec recurses once per nesting level ([[[[...]]]] in a message).
        raise ProtocolError("json", "invalid JSON: nested too deeply") from None


def decodeLines(lines: list[bytes]) -> list[Message] | None:
    """
    Decode several lines at once (the lines of one read, the receive hot
    path): one msgspec call instead of one per line, giving exactly what
    L{decode} gives line by line, or C{None}.

    It is only tried when every line is plain: it starts with C{{} and ends
    with C{}} (no C{\\r}, no blank line, no outer whitespace), and the
    bytes are valid UTF-8.  Joined with C{\\n}, such lines cannot hold a
    JSON value that runs across a line boundary (a string cannot contain a
    raw newline, and C{{} cannot follow a closing C{}} without a comma), so
    every line yields at least one value, and getting C{len(lines)} values
    back means one per line.

    @param lines: lines without their delimiter, none containing C{\\n}
        (as C{data.split(b"\\n")} gives them).
    @return: the messages, one per line in order; or C{None} when the lines
        are not all plain or one of them does not decode: then L{decode}
        each line, which names what is wrong with it.
    """
    data = b"\n".join(lines)
    if (
        not data.startswith(b"{")
        or not data.endswith(b"}")
        or data.count(b"}\n{") != len(lines) - 1
        or b"\r" in data
    ):
        return None
    if not data.isascii():
        try:
            str(data, "utf-8")
        except UnicodeDecodeError:
            return None
    try:
        messages = _decoder.decode_lines(data)
    except Exception:  # whatever it is, decode() names it line by line
        return None
    return messages if len(messages) == len(lines) else None


def _raise(error: ProtocolError) -> Message:
    raise error


def encode(message: Message) -> bytes:
    """
    Encode one message as one line, C{\\n} included, with exactly the spec's
    fields.
    """
    if isinstance(message, SyncState):
        return encodeSync(message.origin, message.payload.sessions)
    if isinstance(message, ClientConnected):
        return encodeConnected(message.origin, message.payload)
    return _encoder.encode(message) + b"\n"


def encodeSync(origin: str, sessions: "list[SessionInfo]") -> bytes:
    """
    Encode a SYNC_STATE of C{origin}'s C{sessions}; each session's
    C{serverId} is written as C{origin}.
    """
    wire = _WireSync(
        origin, _WireSyncPayload([_wireSession(s, origin) for s in sessions])
    )
    return _encoder.encode(wire) + b"\n"


def encodeConnected(origin: str, session: SessionInfo) -> bytes:
    """Encode the CLIENT_CONNECTED of C{origin}'s C{session}."""
    return _encoder.encode(_WireConnected(origin, _wireSession(session, origin))) + b"\n"


def messageBytes(value: object) -> bytes:
    """
    Encode an application value once, as the C{message} of a forwarded
    payload: the bytes of L{rawMessage}.

    @raise TypeError: C{value} is not JSON-serialisable.
    """
    if isinstance(value, Raw):
        data = bytes(value)
        return data.replace(b"\n", b" ") if b"\n" in data else data
    try:
        return _encode(value)
    except _REFUSED as e:
        raise _notSerialisable(e) from None


def _notSerialisable(e: Exception) -> TypeError:
    """The error of an application value the encoder refused."""
    return TypeError(f"message is not JSON-serialisable: {e}")


def rawMessage(value: object) -> Raw:
    """
    Encode an application value once, as the C{message} of a forwarded payload.

    A L{msgspec.Raw} is taken as already-encoded JSON; a newline in it (only
    ever whitespace in valid JSON) is written as a space, so that it cannot
    break the line framing.

    @raise TypeError: C{value} is not JSON-serialisable.
    """
    if isinstance(value, Raw):
        data = bytes(value)
        return Raw(data.replace(b"\n", b" ")) if b"\n" in data else value
    return Raw(messageBytes(value))


class DirectEncoder:
    """
    Encode the DIRECT_MESSAGE lines of one origin by concatenation: the
    very bytes C{encode(DirectMessage(origin, DirectMessagePayload(userId,
    rawMessage(value))))} writes, at a fraction of the cost (the send hot
    path).

    Everything before the message (the envelope, the origin and the
    C{userId}) is built once per user and kept, for at most L{cacheSize}
    users at a time (the kept prefixes are dropped all at once when one
    more is needed; 16,384 prefixes take about 3 MB): a send to a user
    seen recently costs a dict lookup and two concatenations instead of
    formatting the envelope and the id again.

    A line is always C{prefix(userId) + messageBytes(value) +}
    L{DIRECT_SUFFIX}: a caller that keeps the prefix may build it itself,
    with L{encodeValue} for a value that is not a L{msgspec.Raw}.

    @ivar cacheSize: how many users' prefixes are kept.
    """

    def __init__(self, origin: str, cacheSize: int = 16384) -> None:
        self.cacheSize = cacheSize
        self._head = (b'{"type":"DIRECT_MESSAGE","origin":' + _encoder.encode(origin)
                      + b',"payload":{"userId":')
        self._prefixes: dict[int, bytes] = {}

    def prefix(self, userId: int) -> bytes:
        """
        @param userId: an C{int} (not a C{bool}).
        @return: the bytes a DIRECT_MESSAGE line to C{userId} starts with,
            up to its C{message}.
        """
        prefix = self._prefixes.get(userId)
        if prefix is None:
            if len(self._prefixes) >= self.cacheSize:
                self._prefixes.clear()
            prefix = self._prefixes[userId] = b'%b%d,"message":' % (self._head, userId)
        return prefix

    def encode(self, userId: int, value: object) -> bytes:
        """
        @param userId: an C{int} (not a C{bool}).
        @param value: the application message, as for L{messageBytes}.
        @return: the line, C{\\n} included.
        @raise TypeError: C{value} is not JSON-serialisable.
        """
        return self.prefix(userId) + messageBytes(value) + DIRECT_SUFFIX


def encodeRaw(value: object) -> bytes:
    """Encode any JSON value (used for local delivery and client lines)."""
    return _encoder.encode(value)
