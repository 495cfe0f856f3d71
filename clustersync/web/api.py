"""
The HTTP resources: the status page, the JSON API, the server-sent event
stream and C{/metrics}.

Every JSON document is built from L{ICluster} queries and the
L{StatusTracker}; see C{docs/operations.md} for their fields.
"""

from __future__ import annotations

import json
from collections import Counter

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from clustersync.web.page import PAGE_POLICY, STATUS_PAGE
from clustersync.web.tracker import sessionRecord

__all__ = [
    "WebRoot",
    "peersDocument",
    "sessionsDocument",
    "channelsDocument",
    "healthDocument",
    "statusDocument",
]

#: Default and maximum number of sessions listed by C{/api/sessions}.
DEFAULT_SESSION_LIMIT = 1000
#: Sessions, channels and members the status page's document lists at most.
PAGE_SESSIONS = 200
PAGE_CHANNELS = 200
PAGE_MEMBERS = 50
PAGE_EVENTS = 50


class BadRequest(ValueError):
    """A query parameter is invalid (answered with HTTP 400)."""


def _arg(request, name: str) -> str | None:
    values = request.args.get(name.encode())
    if not values:
        return None
    return values[0].decode("utf-8", "replace")


def _intArg(request, name: str, default: int) -> int:
    raw = _arg(request, name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise BadRequest(f"{name} must not be negative, got {value}")
    return value


def _sessionCounts(node, sessions) -> dict:
    perServer = Counter(s.serverId for s in sessions)
    local = perServer.get(node.serverId, 0)
    return {"local": local, "remote": len(sessions) - local, "perServer": dict(sorted(perServer.items()))}


def peersDocument(web, linked=()) -> dict:
    """
    C{/api/peers}: this node and every peer it has seen; linked ones
    (C{linked}, the L{PeerInfo}s of C{node.peers()}) with their current
    C{outboundBuffered} bytes.
    """
    buffered = {p.serverId: getattr(p, "outboundBuffered", 0) for p in linked}
    peers = web.tracker.peerList()
    for record in peers:
        record["outboundBuffered"] = buffered.get(record["serverId"]) if record["state"] == "up" else None
    return {"serverId": web.node.serverId, "peers": peers}


def sessionsDocument(web, sessions, server: str | None = None,
                     limit: int = DEFAULT_SESSION_LIMIT) -> dict:
    """C{/api/sessions}: session counts per server and the sessions."""
    counts = _sessionCounts(web.node, sessions)
    chosen = [s for s in sessions if server is None or s.serverId == server]
    chosen.sort(key=lambda s: (s.serverId or "", s.sessionId))
    listed = chosen[:limit] if limit else chosen
    return {
        "serverId": web.node.serverId,
        "count": len(sessions),
        "local": counts["local"],
        "remote": counts["remote"],
        "perServer": counts["perServer"],
        "sessions": [sessionRecord(s) for s in listed],
        "truncated": len(listed) < len(chosen),
    }


def _channels(sessions) -> dict[int, list]:
    channels: dict[int, list] = {}
    for s in sessions:
        for canalId in s.canales:
            channels.setdefault(canalId, []).append(s)
    return channels


def _member(s) -> dict:
    return {"sessionId": s.sessionId, "serverId": s.serverId,
            "clienteId": s.clienteId, "usuario": s.usuario}


def channelsDocument(web, sessions, maxMembers: int | None = None,
                     maxChannels: int | None = None) -> dict:
    """C{/api/channels}: every channel with a member, and its members."""
    channels = _channels(sessions)
    out = []
    for canalId in sorted(channels)[:maxChannels]:
        members = sorted(channels[canalId], key=lambda s: (s.serverId or "", s.sessionId))
        out.append({
            "canalId": canalId,
            "count": len(members),
            "members": [_member(s) for s in members[:maxMembers]],
        })
    return {"serverId": web.node.serverId, "count": len(channels), "channels": out}


def healthDocument(web, sessions) -> dict:
    """
    C{/api/health}: C{"ok"} when every peer this node has seen is linked,
    C{"degraded"} when some is down or the backplane is (the node itself
    still serves).  A peer that left on purpose (a drain) is listed in
    C{peersLeft} and does not make the node degraded.
    """
    peers = web.tracker.peerList()
    left = [p["serverId"] for p in peers if p["state"] == "left"]
    down = [p["serverId"] for p in peers if p["state"] not in ("up", "left")]
    counts = _sessionCounts(web.node, sessions)
    now = web.clock.seconds()
    document = {
        "status": "degraded" if down else "ok",
        "serverId": web.node.serverId,
        "time": now,
        "uptime": now - web.tracker.started,
        "peersUp": len(peers) - len(down) - len(left),
        "peersDown": down,
        "peersLeft": left,
        "sessions": {"local": counts["local"], "remote": counts["remote"]},
    }
    # A node on the NATS backplane: its connection's state; down is degraded.
    backplane = getattr(web.node, "backplane", None)
    if backplane is not None:
        document["backplane"] = backplane.status()
        if document["backplane"]["state"] != "up":
            document["status"] = "degraded"
    return document


def statusDocument(web, sessions) -> dict:
    """
    C{/api/status}: everything the status page draws, in one document
    (lists truncated to what a page can show).
    """
    now = web.clock.seconds()
    return {
        "serverId": web.node.serverId,
        "time": now,
        "started": web.tracker.started,
        "web": web.address,
        "peers": web.tracker.peerList(),
        "sessions": sessionsDocument(web, sessions, limit=PAGE_SESSIONS),
        "channels": channelsDocument(web, sessions, PAGE_MEMBERS, PAGE_CHANNELS),
        "events": web.tracker.recentEvents(PAGE_EVENTS),
        "health": healthDocument(web, sessions),
        "liveness": dict(web.node.metrics.liveness),
    }


def _jsonBytes(document) -> bytes:
    return json.dumps(document, indent=1, sort_keys=False).encode() + b"\n"


class _JSON(Resource):
    """A leaf answering GET with the JSON document C{build(request)} makes."""

    isLeaf = True
    _log = Logger()

    def __init__(self, web, build) -> None:
        super().__init__()
        self.web = web
        self.build = build

    def render_GET(self, request):
        """Answer with the document (HTTP 400 for a bad query parameter)."""
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        gone = []
        request.notifyFinish().addBoth(gone.append)

        def done(document):
            if not gone:
                request.write(_jsonBytes(document))
                request.finish()

        def failed(f):
            if gone:
                return
            if f.check(BadRequest):
                request.setResponseCode(400)
            else:
                self._log.failure("building {path} failed", f, path=request.path)
                request.setResponseCode(500)
            request.write(_jsonBytes({"error": f.getErrorMessage()}))
            request.finish()

        maybeDeferred(self.build, request).addCallbacks(done, failed)
        return NOT_DONE_YET


def _withSessions(web, make, parse=None):
    """
    A builder that passes C{node.sessions()}'s result, then what
    C{parse(request)} returns, to C{make}.
    """

    def build(request):
        args = parse(request) if parse is not None else ()
        return web.node.sessions().addCallback(lambda sessions: make(web, list(sessions), *args))

    return build


def _parseSessions(request) -> tuple:
    return (_arg(request, "server") or None, _intArg(request, "limit", DEFAULT_SESSION_LIMIT))


class EventStream(Resource):
    """
    C{/events}: a C{text/event-stream} of C{peer} events (sent at once,
    with the whole peer list) and C{changed} events (sessions, channels or
    events changed; coalesced to at most a few per second).
    """

    isLeaf = True

    def __init__(self, web) -> None:
        super().__init__()
        self.web = web

    def render_GET(self, request):
        """Keep the response open and register it as a subscriber."""
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-accel-buffering", b"no")
        request.write(b"retry: 1000\n\n")
        self.web.addStreamClient(request)
        request.notifyFinish().addBoth(lambda _: self.web.removeStreamClient(request))
        return NOT_DONE_YET


class _Page(Resource):
    isLeaf = True

    def render_GET(self, request):
        """The status page (static; it fetches C{/api/status} itself)."""
        if request.postpath not in ([], [b""]):
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not found\n"
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"content-security-policy", PAGE_POLICY)
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"referrer-policy", b"no-referrer")
        return STATUS_PAGE


class _Metrics(Resource):
    isLeaf = True

    def __init__(self, web) -> None:
        super().__init__()
        self.web = web

    def render_GET(self, request):
        """The Prometheus text exposition of this node's registry."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self.web.registry)


class _Drain(Resource):
    """
    C{POST /api/drain}: the node leaves the cluster (L{ICluster.drain}),
    answers C{{"serverId", "peers"}} once its links are closed, then stops
    the process.  It requires the C{X-Clustersync-Admin} header, which a
    cross-site form cannot send.
    """

    isLeaf = True

    def __init__(self, web) -> None:
        super().__init__()
        self.web = web

    def render_POST(self, request):
        """Drain, answer, stop."""
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        if not request.getHeader(b"x-clustersync-admin"):
            request.setResponseCode(403)
            return _jsonBytes({"error": "POST /api/drain needs the X-Clustersync-Admin header"})
        node = self.web.node
        told = sum(p["state"] == "up" for p in self.web.tracker.peerList())
        d = node.drain("clustersync-admin drain")

        def done(_):
            request.write(_jsonBytes({"serverId": node.serverId, "peers": told}))
            request.finish()
            self.web.reactor.callLater(0.1, self.web.stopProcess)

        d.addCallback(done)
        return NOT_DONE_YET


class WebRoot(Resource):
    """
    The resource tree::

        /               the status page
        /events         server-sent events
        /metrics        Prometheus text format
        /api/peers /api/sessions /api/channels /api/health /api/status
        /api/events     the recent events ring buffer
        /api/drain      POST: leave the cluster and stop
    """

    def __init__(self, web) -> None:
        super().__init__()
        page = _Page()
        self.putChild(b"", page)
        self.putChild(b"index.html", page)
        self.putChild(b"events", EventStream(web))
        self.putChild(b"metrics", _Metrics(web))
        api = Resource()
        self.putChild(b"api", api)
        api.putChild(b"peers", _JSON(web, lambda request: web.node.peers().addCallback(
            lambda linked: peersDocument(web, linked))))
        api.putChild(b"sessions", _JSON(web, _withSessions(web, sessionsDocument, _parseSessions)))
        api.putChild(b"channels", _JSON(web, _withSessions(web, channelsDocument)))
        api.putChild(b"health", _JSON(web, _withSessions(web, healthDocument)))
        api.putChild(b"status", _JSON(web, _withSessions(web, statusDocument)))
        api.putChild(b"drain", _Drain(web))
        api.putChild(b"events", _JSON(web, lambda request: {
            "serverId": web.node.serverId,
            "events": web.tracker.recentEvents(_intArg(request, "limit", 0) or None),
        }))
