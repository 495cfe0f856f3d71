"""
What C{clustersync-chat} prints: the help text, one line per pushed event
(messages, ACKs, alerts, presence) and the C{/who} listing.
"""

from __future__ import annotations

import json

__all__ = ["HELP", "formatEvent", "formatWho"]

HELP = """commands:
  /join N            join channel N (it becomes the current channel)
  /leave N           leave channel N
  /msg USER TEXT     direct message to USER (a name, or a clienteId)
  /say N TEXT        message to channel N
  TEXT               message to the current channel
  /who [USER]        who is connected, where (or only USER's sessions)
  /follow USER...    be told when USER comes online or goes offline
  /unfollow [USER]   stop (everyone if no USER)
  /alert TEXT        broadcast to everyone (admin only)
  /help              this text
  /quit              log out and exit"""



def _sender(payload) -> str:
    r = payload.get("remitente")
    if isinstance(r, dict):
        return f"{r.get('usuario', '?')}@{r.get('serverId', '?')}"
    return "?"


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def formatEvent(payload, names=None, sent=None) -> str:
    """
    One human line for an event payload.

    @param names: clienteId -> usuario, for ACKs.
    @param sent: mensajeId -> recipient name, for ACKs.
    """
    names = names or {}
    sent = sent or {}
    evento = payload.get("evento")
    tipo = payload.get("tipo")
    if evento == "NEW_MESSAGE":
        return f"*{_sender(payload)}* {_text(payload.get('contenido'))}"
    if evento == "NEW_CHANNEL_MESSAGE":
        return f"#{payload.get('canalId')} <{_sender(payload)}> {_text(payload.get('contenido'))}"
    if tipo == "ACK":
        who = sent.get(payload.get("mensajeId")) or names.get(payload.get("clienteId")) or (
            f"user {payload.get('clienteId')}")
        return f"(delivered to {who} on {payload.get('serverId')})"
    if tipo == "SERVER_ALERT":
        return f"!! {_sender(payload)}: {_text(payload.get('mensaje'))}"
    who = f"{payload.get('usuario')}@{payload.get('serverId')}"
    if evento == "USER_ONLINE":
        return f"** {payload.get('usuario')} is online on {payload.get('serverId')}"
    if evento == "USER_OFFLINE":
        left = payload.get("sesiones")
        still = f" (still {left} session(s) elsewhere)" if left else " (offline)"
        return f"** {payload.get('usuario')} left {payload.get('serverId')}{still}"
    if evento == "MEMBER_JOINED":
        return f"#{payload.get('canalId')} -> {who} joined"
    if evento == "MEMBER_LEFT":
        return f"#{payload.get('canalId')} <- {who} left"
    return "event: " + json.dumps(payload, ensure_ascii=False)




def formatWho(rows, total: int) -> str:
    """The C{/who} text: users with their servers and channels."""
    users: dict = {}
    for row in rows:
        servers, channels, clienteId = users.setdefault(
            row["usuario"], (set(), set(), row["clienteId"]))
        servers.add(row["serverId"])
        channels.update(row["canales"])
    lines = [f"{len(users)} user(s), {len(rows)} session(s):"]
    for usuario in sorted(users):
        servers, channels, clienteId = users[usuario]
        where = ", ".join(sorted(servers))
        chans = " ".join(f"#{c}" for c in sorted(channels))
        lines.append(f"  {usuario} ({clienteId}) on {where}" + (f"  in {chans}" if chans else ""))
    if total > len(rows):
        lines.append(f"  ... and {total - len(rows)} more session(s); /who USER for one user")
    return "\n".join(lines)
