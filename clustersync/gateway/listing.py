"""
C{LIST_CONNECTED} pages: the cluster's sessions sorted by user, server and
sessionId, at most C{limite} rows (and about L{MAX_PAGE_BYTES} of JSON) per
reply, continued from a cursor.  The smallest rows after the cursor are
picked with a heap, without sorting every session.
"""

from __future__ import annotations

import heapq

from clustersync.gateway.requests import BadRequest
from clustersync.wire.codec import encodeRaw

__all__ = ["DEFAULT_PAGE", "MAX_PAGE", "MAX_PAGE_BYTES", "parsePage", "listPage"]

#: Rows per reply when C{limite} is not given, and the most allowed.
DEFAULT_PAGE = 100
MAX_PAGE = 500
#: A page ends early once its rows take this many bytes of JSON.
MAX_PAGE_BYTES = 256 * 1024


def _key(session) -> tuple[str, str, str]:
    return (session.usuario, session.serverId or "", session.sessionId)


def parsePage(payload: dict) -> tuple[int, tuple | None, str | None]:
    """
    C{(limite, desde, usuario)} from a LIST_CONNECTED payload.

    @raise BadRequest: a field of the wrong type or out of range.
    """
    limit = payload.get("limite", DEFAULT_PAGE)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise BadRequest("field", f"payload.limite: expected a whole number from 1 to {MAX_PAGE}")
    after = payload.get("desde")
    if after is not None:
        if not (isinstance(after, list) and len(after) == 3
                and all(isinstance(x, str) and len(x) <= 1024 for x in after)):
            raise BadRequest("field", "payload.desde: expected the 'siguiente' of the last page")
        after = tuple(after)
    usuario = payload.get("usuario")
    if usuario is not None and not isinstance(usuario, str):
        raise BadRequest("field", "payload.usuario: expected a string")
    return limit, after, usuario


def _row(session) -> dict:
    return {"usuario": session.usuario, "clienteId": session.clienteId,
            "serverId": session.serverId, "sessionId": session.sessionId,
            "canales": sorted(session.canales)}


def listPage(sessions, limit: int, after: tuple | None = None,
             usuario: str | None = None) -> dict:
    """
    One page of C{sessions} (optionally only those of C{usuario}).

    @return: the response fields: C{sesiones} (the rows), C{total} (every
        matching session), C{siguiente} (the cursor of the next page, or
        C{None} after the last one).
    """
    if usuario is not None:
        sessions = [s for s in sessions if s.usuario == usuario]
    total = len(sessions)
    if after is not None:
        sessions = [s for s in sessions if _key(s) > after]
    chosen = heapq.nsmallest(limit + 1, sessions, key=_key)
    rows, size, more = [], 0, len(chosen) > limit
    for session in chosen[:limit]:
        row = _row(session)
        size += len(encodeRaw(row)) + 1
        if rows and size > MAX_PAGE_BYTES:
            more = True
            break
        rows.append(row)
    last = rows[-1] if rows else None
    cursor = [last["usuario"], last["serverId"] or "", last["sessionId"]] if more and last else None
    return {"sesiones": rows, "total": total, "siguiente": cursor}
