"""
The status page: one self-contained HTML document (inline CSS and
JavaScript, no external resources).  It draws C{/api/status} and keeps
itself current from the C{/events} stream.

Everything taken from the node (user names, session ids, reasons) is put
into the page as text nodes (C{el()} appends strings, never HTML), and the
page is served with a Content-Security-Policy that allows only its own
inline script (by hash) and style, so even markup that slipped through
could not run a script or load anything.
"""

import base64
import hashlib
import re

__all__ = ["STATUS_PAGE", "PAGE_POLICY"]

STATUS_PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>clustersync status</title>
<style>
  :root { --bg:#f6f7f9; --card:#fff; --ink:#1d2330; --muted:#667085; --line:#e3e6eb;
          --up:#12805c; --down:#c2361f; --accent:#2f5bd3; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         background:var(--bg); color:var(--ink); }
  header { display:flex; align-items:baseline; gap:1rem; flex-wrap:wrap;
           padding:1rem 1.5rem; background:var(--ink); color:#fff; }
  header h1 { margin:0; font-size:1.25rem; font-weight:600; }
  header .meta { color:#c8cdd8; }
  #live { margin-left:auto; font-size:.85rem; padding:.15rem .6rem; border-radius:1rem;
          background:#39404f; }
  #live.on { background:var(--up); }
  main { display:grid; grid-template-columns:repeat(auto-fit, minmax(28rem, 1fr));
         gap:1rem; padding:1rem 1.5rem; }
  section { background:var(--card); border:1px solid var(--line); border-radius:.5rem;
            padding:.75rem 1rem; min-width:0; }
  section.wide { grid-column:1 / -1; }
  h2 { font-size:1rem; margin:.25rem 0 .75rem; }
  h2 small { color:var(--muted); font-weight:normal; }
  table { width:100%; border-collapse:collapse; }
  th, td { text-align:left; padding:.3rem .5rem; border-bottom:1px solid var(--line);
           vertical-align:top; }
  th { color:var(--muted); font-weight:500; font-size:.85rem; }
  .state { font-weight:600; }
  .state.up { color:var(--up); } .state.down { color:var(--down); } .state.left { color:var(--muted); } .state.self { color:var(--accent); }
  .muted { color:var(--muted); }
  .empty { color:var(--muted); font-style:italic; padding:.5rem 0; }
  ol.events { list-style:none; margin:0; padding:0; max-height:24rem; overflow:auto; }
  ol.events li { padding:.25rem 0; border-bottom:1px solid var(--line); }
  ol.events time { color:var(--muted); font-variant-numeric:tabular-nums; margin-right:.5rem; }
  code { font-size:.9em; }
</style>
</head>
<body>
<header>
  <h1>clustersync &middot; <span id="self">&hellip;</span></h1>
  <span class="meta" id="health"></span>
  <span id="live" title="live updates from /events">connecting&hellip;</span>
</header>
<main>
  <section class="wide">
    <h2>Cluster nodes <small id="nodes-summary"></small></h2>
    <table id="nodes">
      <thead><tr><th>Node</th><th>State</th><th>Since</th><th>Link</th><th>Address</th>
        <th>TLS</th><th>Kind</th><th>Sessions</th><th>Last reason</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section>
    <h2>Sessions <small id="sessions-summary"></small></h2>
    <table id="sessions">
      <thead><tr><th>Node</th><th>Session</th><th>User</th><th>Channels</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section>
    <h2>Channels <small id="channels-summary"></small></h2>
    <table id="channels">
      <thead><tr><th>Channel</th><th>Members</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section class="wide">
    <h2>Recent events</h2>
    <ol class="events" id="events"></ol>
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let status = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c));
  return node;
}
function ago(t) {
  if (!t) return "";
  const s = Math.max(0, Math.round(Date.now() / 1000 - t));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor(s % 3600 / 60) + " min ago";
  return Math.floor(s / 86400) + " d ago";
}
function clock(t) { return new Date(t * 1000).toLocaleTimeString(); }
function since(t) {
  return el("span", {"class": "since", "data-t": t, title: new Date(t * 1000).toLocaleString()}, ago(t));
}
function fill(tbody, rows, cols, emptyText) {
  tbody.replaceChildren(...(rows.length ? rows :
    [el("tr", {}, el("td", {colspan: cols, "class": "empty"}, emptyText))]));
}

function renderPeers(peers) {
  const perServer = status ? status.sessions.perServer : {};
  const rows = [el("tr", {"data-peer": status ? status.serverId : "", "data-state": "self"},
    el("td", {}, el("strong", {}, status ? status.serverId : "")),
    el("td", {"class": "state self"}, "this node"),
    el("td", {}, status ? since(status.started) : ""),
    el("td", {}, "\\u2014"), el("td", {}, el("code", {}, status && status.web ? status.web : "")),
    el("td", {}, "\\u2014"), el("td", {}, "clustersync"),
    el("td", {}, status ? (perServer[status.serverId] || 0) : ""), el("td", {}, ""))];
  for (const p of peers) {
    rows.push(el("tr", {"data-peer": p.serverId, "data-state": p.state},
      el("td", {}, el("strong", {}, p.serverId)),
      el("td", {"class": "state " + p.state}, p.state),
      el("td", {}, since(p.since)),
      el("td", {}, p.direction),
      el("td", {}, el("code", {}, p.address || "")),
      el("td", {}, p.tls ? "yes" : "no"),
      el("td", {"class": "kind"}, p.kind === "clustersync" ? "clustersync" : "existing server"),
      el("td", {}, p.state === "up" ? (perServer[p.serverId] || 0) : "\\u2014"),
      el("td", {"class": "muted"}, p.reason || "")));
  }
  fill($("nodes").tBodies[0], rows, 9, "");
  const up = peers.filter((p) => p.state === "up").length;
  $("nodes-summary").textContent = up + " of " + peers.length + " peers up";
}

function describe(e) {
  switch (e.kind) {
    case "peerConnected": return e.serverId + " linked (" + e.direction + (e.tls ? ", TLS" : "") + ")";
    case "peerDisconnected": return e.serverId + " lost: " + e.reason;
    case "sessionAdded": return "session " + e.sessionId + " (" + e.usuario + ") on " + e.serverId;
    case "sessionRemoved": return "session " + e.sessionId + " (" + e.usuario + ") ended on " + e.serverId;
    case "channelJoined": return e.usuario + " joined channel " + e.canalId + " (" + e.serverId + ")";
    case "channelLeft": return e.usuario + " left channel " + e.canalId + " (" + e.serverId + ")";
    default: return JSON.stringify(e);
  }
}

function renderEvents(events) {
  $("events").replaceChildren(...(events.length ? events.map((e) =>
    el("li", {"data-kind": e.kind}, el("time", {}, clock(e.time)), describe(e)))
    : [el("li", {"class": "empty"}, "nothing yet")]));
}

function renderHealth() {
  const l = status.liveness || {};
  $("health").textContent = status.health.status + " \\u00b7 up "
    + ago(status.started).replace(" ago", "")
    + " \\u00b7 digests " + (l.digest_sent || 0) + " sent, "
    + (l.digest_mismatch || 0) + " differed, " + (l.digest_repaired || 0) + " repaired";
}

function render() {
  $("self").textContent = status.serverId;
  document.title = "clustersync \\u00b7 " + status.serverId;
  renderHealth();
  renderPeers(status.peers);
  const s = status.sessions;
  $("sessions-summary").textContent = s.count + " (" + s.local + " local, " + s.remote + " remote)"
    + (s.truncated ? ", first " + s.sessions.length + " shown" : "");
  fill($("sessions").tBodies[0], s.sessions.map((x) => el("tr", {"data-session": x.sessionId},
    el("td", {}, x.serverId), el("td", {}, el("code", {}, x.sessionId)),
    el("td", {}, x.usuario + " ", el("span", {"class": "muted"}, "#" + x.clienteId)),
    el("td", {}, x.canales.join(", ")))), 4, "no sessions");
  const c = status.channels;
  $("channels-summary").textContent = c.count + " with members";
  fill($("channels").tBodies[0], c.channels.map((ch) => el("tr", {"data-channel": ch.canalId},
    el("td", {}, el("strong", {}, ch.canalId)),
    el("td", {}, ch.members.map((m) => m.usuario + "@" + m.serverId).join(", ")
      + (ch.count > ch.members.length ? " \\u2026 (" + ch.count + ")" : "")))), 2, "no channels");
  renderEvents(status.events);
}

let pending = null, inflight = false, again = false, lastFetch = 0;
// At most one /api/status fetch per second for "changed" hints (a busy node
// changes sessions all the time); peer changes are drawn from the event
// itself at once.
function refresh(delay) {
  if (pending) return;
  delay = Math.max(delay, 1000 - (Date.now() - lastFetch));
  pending = setTimeout(async () => {
    pending = null;
    lastFetch = Date.now();
    if (inflight) { again = true; return; }
    inflight = true;
    try {
      const r = await fetch("api/status", {cache: "no-store"});
      if (r.ok) { status = await r.json(); render(); }
    } catch (err) { /* the stream's reconnect will bring us back */ }
    inflight = false;
    if (again) { again = false; refresh(0); }
  }, delay);
}

function connect() {
  const live = $("live");
  const source = new EventSource("events");
  source.onopen = () => { live.textContent = "live"; live.className = "on"; refresh(0); };
  source.onerror = () => { live.textContent = "reconnecting\\u2026"; live.className = ""; };
  source.addEventListener("peers", (m) => {
    if (status) { status.peers = JSON.parse(m.data).peers; renderPeers(status.peers); }
  });
  source.addEventListener("peer", (m) => {
    const data = JSON.parse(m.data);
    if (status) {
      status.peers = data.peers;
      status.events.unshift(data.event);
      renderPeers(status.peers);
      renderEvents(status.events);
    }
    refresh(100);
  });
  source.addEventListener("changed", () => refresh(100));
}

setInterval(() => {
  for (const s of document.querySelectorAll(".since")) s.textContent = ago(Number(s.dataset.t));
  if (status) renderHealth();
}, 1000);
refresh(0);
connect();
</script>
</body>
</html>
"""


def _policy(page: bytes) -> bytes:
    script = re.search(rb"<script>(.*?)</script>", page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script).digest())
    return (b"default-src 'none'; script-src 'sha256-" + digest + b"'; "
            b"style-src 'unsafe-inline'; connect-src 'self'; img-src 'none'; "
            b"base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


#: The Content-Security-Policy header of the page.
PAGE_POLICY = _policy(STATUS_PAGE)
