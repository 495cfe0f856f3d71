"""
C{clustersync-admin peers|sessions|channels|drain}: read a node's JSON API (see
C{docs/operations.md}) and print human-readable tables, or the JSON itself
with C{--json}.

Registered into L{clustersync.cli.admin} through its C{registerCommand} hook.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

__all__ = ["DEFAULT_URL", "fetch", "formatTable", "runPeers", "runSessions", "runChannels",
           "register"]

#: Where a node's web interface listens by default.
DEFAULT_URL = "http://127.0.0.1:7003"


class AdminError(Exception):
    """The node could not be asked (printed, exit status 1)."""


def _auth(args) -> tuple[dict, ssl.SSLContext | None]:
    """
    The request headers and TLS context of C{args}: C{--token-file} (or
    C{$CLUSTERSYNC_TOKEN_FILE}) adds the bearer token; C{--ca} verifies an
    C{https} node against the cluster CA, presenting C{--cert}/C{--key}.
    """
    headers = {}
    tokenFile = getattr(args, "token_file", None) or os.environ.get("CLUSTERSYNC_TOKEN_FILE")
    if tokenFile:
        try:
            with open(tokenFile, "rb") as f:
                token = f.readline(4096).strip().decode("ascii")
        except (OSError, UnicodeDecodeError) as e:
            raise AdminError(f"cannot read the token file {tokenFile}: {e}") from None
        headers["Authorization"] = "Bearer " + token
    context = None
    ca = getattr(args, "ca", None)
    if ca or getattr(args, "cert", None):
        try:
            context = ssl.create_default_context(cafile=ca)
            if getattr(args, "cert", None):
                context.load_cert_chain(args.cert, getattr(args, "key", None))
        except (OSError, ssl.SSLError) as e:
            raise AdminError(f"cannot load the TLS files: {e}") from None
    return headers, context


def fetch(url: str, path: str, query: dict | None = None, timeout: float = 10.0,
          args=None, post: bool = False) -> dict:
    """
    GET (or, with C{post}, POST) C{path} of the node's web interface at
    C{url} and decode its JSON (authenticating as C{args} says, see
    L{_auth}).

    @raise AdminError: the node is unreachable or answered an error.
    """
    target = url.rstrip("/") + path
    if query:
        target += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
    headers, context = _auth(args)
    if post:
        # A header a cross-site form cannot send (see docs/security.md).
        headers["X-Clustersync-Admin"] = "1"
    try:
        request = urllib.request.Request(target, headers=headers, data=b"" if post else None,
                                         method="POST" if post else "GET")
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read()).get("error", e.reason)
        except Exception:
            detail = e.reason
        raise AdminError(f"{target}: HTTP {e.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise AdminError(f"cannot reach {target}: {reason}") from None
    except ValueError as e:
        raise AdminError(f"{target}: not JSON: {e}") from None


def formatTable(headers: list[str], rows: list[list]) -> str:
    """Left-aligned columns separated by two spaces, under a header line."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _ago(t: float, now: float) -> str:
    s = max(0, int(now - t))
    if s < 60:
        return f"{s}s ago"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s ago"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m ago"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h ago"


def _common(parser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL,
                        help=f"the node's web interface (default {DEFAULT_URL})")
    parser.add_argument("--json", action="store_true", help="print the API's JSON as is")
    parser.add_argument("--token-file", help="file whose first line is the web port's bearer "
                        "token (default: $CLUSTERSYNC_TOKEN_FILE)")
    parser.add_argument("--ca", help="cluster CA (PEM) to verify an https node with")
    parser.add_argument("--cert", help="client certificate (PEM) for a node with web_client_ca")
    parser.add_argument("--key", help="the client certificate's key (PEM)")


def _emit(args, document, table: str) -> int:
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print(table)
    return 0


def _guard(run):
    def guarded(args) -> int:
        try:
            return run(args)
        except AdminError as e:
            print(f"clustersync-admin {args.command}: {e}", file=sys.stderr)
            return 1

    guarded.__doc__ = run.__doc__
    return guarded


def setupPeers(parser) -> None:
    """Arguments of C{peers}."""
    _common(parser)


def runPeers(args, now=None) -> int:
    """Print every peer the node has seen: up or down, since when, link, TLS."""
    doc = fetch(args.url, "/api/peers", args=args)
    now = time.time() if now is None else now
    rows = [[p["serverId"], p["state"], _ago(p["since"], now), p["direction"], p["address"],
             "yes" if p["tls"] else "no", p.get("reason") or ""] for p in doc["peers"]]
    table = (f"node {doc['serverId']}: {sum(p['state'] == 'up' for p in doc['peers'])} of "
             f"{len(doc['peers'])} peers up\n"
             + formatTable(["PEER", "STATE", "SINCE", "LINK", "ADDRESS", "TLS", "REASON"], rows))
    return _emit(args, doc, table)


def setupSessions(parser) -> None:
    """Arguments of C{sessions}."""
    _common(parser)
    parser.add_argument("--server", help="only the sessions hosted by this serverId")
    parser.add_argument("--limit", type=int, default=1000, help="list at most this many (0: all)")


def runSessions(args) -> int:
    """Print the cluster's sessions (counts per server, then one per line)."""
    doc = fetch(args.url, "/api/sessions", {"server": args.server, "limit": args.limit},
                args=args)
    per = ", ".join(f"{k}: {v}" for k, v in doc["perServer"].items()) or "none"
    rows = [[s["serverId"], s["sessionId"], s["clienteId"], s["usuario"], s["ip"] or "",
             ",".join(str(c) for c in s["canales"])] for s in doc["sessions"]]
    table = (f"node {doc['serverId']}: {doc['count']} sessions ({doc['local']} local, "
             f"{doc['remote']} remote; {per})\n"
             + formatTable(["SERVER", "SESSION", "CLIENTE", "USUARIO", "IP", "CANALES"], rows))
    if doc.get("truncated"):
        table += f"\n(first {len(rows)} shown; use --limit 0 for all)"
    return _emit(args, doc, table)


def setupChannels(parser) -> None:
    """Arguments of C{channels}."""
    _common(parser)


def runChannels(args) -> int:
    """Print every channel with members, and who they are."""
    doc = fetch(args.url, "/api/channels", args=args)
    rows = [[c["canalId"], c["count"],
             ", ".join(f"{m['usuario']}@{m['serverId']}" for m in c["members"])]
            for c in doc["channels"]]
    table = (f"node {doc['serverId']}: {doc['count']} channels with members\n"
             + formatTable(["CANAL", "MEMBERS", "WHO"], rows))
    return _emit(args, doc, table)


def setupDrain(parser) -> None:
    """Arguments of C{drain}."""
    _common(parser)


def runDrain(args) -> int:
    """
    Make the node leave the cluster on purpose and stop (exit 0): no new
    logins, peers told, outbound flushed within drain_timeout.
    """
    doc = fetch(args.url, "/api/drain", args=args, post=True, timeout=60.0)
    return _emit(args, doc, f"node {doc['serverId']}: drained, {doc['peers']} peers told; "
                            "stopping")


def register(registerCommand) -> None:
    """Register C{peers}, C{sessions}, C{channels} and C{drain} with C{registerCommand}."""
    registerCommand("peers", "list the node's peers (up and down) from its JSON API",
                    setupPeers, _guard(runPeers))
    registerCommand("sessions", "list the cluster's sessions from the node's JSON API",
                    setupSessions, _guard(runSessions))
    registerCommand("channels", "list the channels and their members from the node's JSON API",
                    setupChannels, _guard(runChannels))
    registerCommand("drain", "make the node leave the cluster gracefully and stop",
                    setupDrain, _guard(runDrain))


def _registerWithAdmin() -> None:
    try:
        from clustersync.cli.admin import registerCommand
    except ImportError:  # the admin entry point is not installed
        return
    register(registerCommand)


_registerWithAdmin()
