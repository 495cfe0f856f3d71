"""
Reading request fields and describing deliveries: the small helpers every
gateway command uses.  A field that is missing or mistyped raises
L{BadRequest}, which the protocol answers, logs and counts.
"""

from __future__ import annotations

__all__ = ["BadRequest", "int64", "text", "content", "intList", "textList", "flag",
           "deliveryText", "deliveryInfo", "MAX_NAME_LENGTH"]

_MAX_INT64 = 2**63 - 1

#: Longest C{usuario} a LOGIN or a presence subscription may name.
MAX_NAME_LENGTH = 255


class BadRequest(Exception):
    """
    A request that cannot be served as given.

    @ivar reason: the counter suffix (C{field}, C{forbidden}, ...).
    @ivar message: the text for the client.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(message)


def _isInt64(value) -> bool:
    return (not isinstance(value, bool) and isinstance(value, int)
            and -_MAX_INT64 - 1 <= value <= _MAX_INT64)


def int64(payload: dict, name: str) -> int:
    """C{payload[name]}, a 64-bit integer."""
    value = payload.get(name)
    if value is None:
        raise BadRequest("field", f"payload.{name} is missing (expected an integer)")
    if not _isInt64(value):
        raise BadRequest("field", f"payload.{name}: expected a 64-bit integer, got {value!r:.40}")
    return value


def text(payload: dict, name: str, maxLength: int | None = None) -> str:
    """C{payload[name]}, a string of at most C{maxLength} characters."""
    value = payload.get(name)
    if value is None:
        raise BadRequest("field", f"payload.{name} is missing (expected a string)")
    if not isinstance(value, str):
        raise BadRequest("field", f"payload.{name}: expected a string, got {type(value).__name__}")
    if maxLength is not None and len(value) > maxLength:
        raise BadRequest("field", f"payload.{name}: longer than {maxLength} characters")
    return value


def content(payload: dict) -> object:
    """C{payload["contenido"]}: a non-empty string or a non-empty object."""
    value = payload.get("contenido")
    if value is None:
        raise BadRequest("field", "payload.contenido is missing (expected a string or an object)")
    if isinstance(value, str):
        if not value.strip():
            raise BadRequest("field", "payload.contenido: must not be empty")
        return value
    if isinstance(value, dict) and value:
        return value
    raise BadRequest("field", f"payload.contenido: expected a string or an object, got {type(value).__name__}")


def intList(payload: dict, name: str, maxItems: int) -> list[int]:
    """C{payload[name]}: a list of at most C{maxItems} 64-bit integers (default empty)."""
    value = payload.get(name, [])
    if not isinstance(value, list) or not all(_isInt64(v) for v in value):
        raise BadRequest("field", f"payload.{name}: expected a list of 64-bit integers")
    if len(value) > maxItems:
        raise BadRequest("limit", f"payload.{name}: more than {maxItems} items")
    return value


def textList(payload: dict, name: str, maxItems: int, maxLength: int) -> list[str]:
    """C{payload[name]}: a list of at most C{maxItems} short strings (default empty)."""
    value = payload.get(name, [])
    if not isinstance(value, list) or not all(
            isinstance(v, str) and len(v) <= maxLength for v in value):
        raise BadRequest("field", f"payload.{name}: expected a list of names "
                                  f"(at most {maxLength} characters each)")
    if len(value) > maxItems:
        raise BadRequest("limit", f"payload.{name}: more than {maxItems} items")
    return value


def flag(payload: dict, name: str, default: bool) -> bool:
    """C{payload[name]}, a boolean (C{default} when absent)."""
    value = payload.get(name, default)
    if not isinstance(value, bool):
        raise BadRequest("field", f"payload.{name}: expected true or false")
    return value


def deliveryText(delivery) -> str:
    """Where a message went, in words (for a response's C{message})."""
    where = []
    if delivery.local:
        where.append(f"{delivery.local} local session(s)")
    if delivery.servers:
        where.append("server(s) " + ", ".join(delivery.servers))
    return " and ".join(where) or "nobody"


def deliveryInfo(delivery) -> dict:
    """C{entregado}: local sessions reached and peers forwarded to."""
    return {"local": delivery.local, "servidores": list(delivery.servers)}
