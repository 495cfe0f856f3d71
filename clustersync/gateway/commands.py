"""
The commands of a logged-in client (and C{PING}): channels, messages,
C{LIST_CONNECTED} pages and presence subscriptions.  A mixin of
L{clustersync.gateway.protocol.ClientProtocol}; see C{docs/clients.md}.
"""

from __future__ import annotations

from twisted.internet.defer import gatherResults, inlineCallbacks

from clustersync.errors import PeerUnavailable, StateLimitError, UnknownChannel, UnknownUser
from clustersync.gateway.listing import listPage, parsePage
from clustersync.gateway.presence import MAX_FOLLOWED
from clustersync.gateway.requests import (
    MAX_NAME_LENGTH,
    BadRequest,
    content,
    deliveryInfo,
    deliveryText,
    flag,
    int64,
    intList,
    textList,
)

__all__ = ["ChatCommands"]


class ChatCommands:
    """Every command but C{LOGIN}, as C{do_<COMMAND>(payload)} methods."""

    def _sender(self) -> dict:
        return {"clienteId": self.user.clienteId, "usuario": self.user.usuario,
                "sessionId": self.sessionId, "serverId": self.gateway.node.serverId}

    def do_PING(self, payload) -> None:
        """PING: answer with PONG and this server's id."""
        self.respond("PING", True, "PONG", serverId=self.gateway.node.serverId)

    def do_LOGOUT(self, payload) -> None:
        """LOGOUT: end the session; the connection stays open."""
        usuario = self.user.usuario
        self._endSession("LOGOUT")
        self.respond("LOGOUT", True, f"goodbye {usuario}")

    # Channels -------------------------------------------------------------

    @inlineCallbacks
    def _membership(self, command: str, payload, join: bool):
        canalId = int64(payload, "canalId")
        call = self.gateway.node.joinChannel if join else self.gateway.node.leaveChannel
        try:
            changed = yield call(self.sessionId, canalId)
        except StateLimitError as e:
            raise BadRequest("limit", f"cannot join channel {canalId}: {e}") from None
        presence = self.gateway.presence
        if join:
            self.canales.add(canalId)
            if self.channelEvents:
                presence.watchChannel(self, canalId)
            text = f"joined channel {canalId}" if changed else f"already in channel {canalId}"
        else:
            self.canales.discard(canalId)
            presence.unwatchChannel(self, canalId)
            text = f"left channel {canalId}" if changed else f"not in channel {canalId}"
        self.respond(command, True, text, canalId=canalId, changed=changed)

    def do_JOIN(self, payload):
        """JOIN: become a member of C{canalId}."""
        return self._membership("JOIN", payload, True)

    def do_LEAVE(self, payload):
        """LEAVE: stop being a member of C{canalId}."""
        return self._membership("LEAVE", payload, False)

    # Messages -------------------------------------------------------------

    @inlineCallbacks
    def _send(self, command: str, send, target: str, unknown: str):
        mensajeId = self.gateway.nextMessageId()
        try:
            delivery = yield send(mensajeId)
        except (UnknownUser, UnknownChannel):
            # Not bad input: the target just has nobody online.
            self.respond(command, False, f"{unknown}; nobody received it", mensajeId=mensajeId)
            return
        except PeerUnavailable as e:
            reached = deliveryText(e.delivery) if e.delivery else "nobody"
            self.respond(command, False,
                         f"server(s) {', '.join(e.servers)} unreachable; reached {reached}",
                         mensajeId=mensajeId,
                         entregado=deliveryInfo(e.delivery) if e.delivery else None)
            return
        self.respond(command, True, f"sent to {target} ({deliveryText(delivery)})",
                     mensajeId=mensajeId, entregado=deliveryInfo(delivery))

    def do_SEND_USER(self, payload):
        """SEND_USER: a direct message to every session of C{clienteId}."""
        clienteId = int64(payload, "clienteId")
        contenido = content(payload)

        def send(mensajeId):
            event = {"command": "EVENT", "payload": {
                "evento": "NEW_MESSAGE", "mensajeId": mensajeId, "contenido": contenido,
                "remitente": self._sender()}}
            return self.gateway.node.sendToUser(clienteId, event)

        return self._send("SEND_USER", send, f"user {clienteId}",
                          f"user {clienteId} is not connected")

    def do_SEND_CHANNEL(self, payload):
        """SEND_CHANNEL: a message to every other member of C{canalId}."""
        canalId = int64(payload, "canalId")
        contenido = content(payload)
        if canalId not in self.canales:
            raise BadRequest("not_member", f"JOIN channel {canalId} before sending to it")

        def send(mensajeId):
            event = {"command": "EVENT", "payload": {
                "evento": "NEW_CHANNEL_MESSAGE", "mensajeId": mensajeId, "canalId": canalId,
                "contenido": contenido, "remitente": self._sender()}}
            return self.gateway.node.sendToChannel(canalId, event, excludeSessionId=self.sessionId)

        return self._send("SEND_CHANNEL", send, f"channel {canalId}",
                          f"no other member in channel {canalId}")

    def do_BROADCAST(self, payload):
        """BROADCAST (admin only): an alert to every client of every node."""
        contenido = content(payload)
        if not self.user.admin:
            raise BadRequest("forbidden", "BROADCAST is only for admin users")

        def send(mensajeId):
            event = {"command": "EVENT", "payload": {
                "tipo": "SERVER_ALERT", "mensajeId": mensajeId, "mensaje": contenido,
                "remitente": self._sender()}}
            return self.gateway.node.broadcast(event)

        return self._send("BROADCAST", send, "every client", "")

    # Who is there -----------------------------------------------------------

    @inlineCallbacks
    def do_LIST_CONNECTED(self, payload):
        """
        LIST_CONNECTED: one page of the cluster's sessions with their
        servers (C{limite}, C{desde}, C{usuario} select it).
        """
        limit, after, usuario = parsePage(payload)
        sessions = yield self.gateway.node.sessions()
        page = listPage(sessions, limit, after, usuario)
        shown = len(page["sesiones"])
        more = " (more: pass 'siguiente' as 'desde')" if page["siguiente"] else ""
        self.respond("LIST_CONNECTED", True,
                     f"{page['total']} session(s) connected, {shown} listed{more}", **page)

    def _resolve(self, payload):
        ids = list(intList(payload, "clienteIds", MAX_FOLLOWED))
        names = textList(payload, "usuarios", MAX_FOLLOWED, MAX_NAME_LENGTH)
        unknown = []
        for name in names:
            user = self.gateway.users(name) if self.gateway.users is not None else None
            if user is None:
                unknown.append(name)
            else:
                ids.append(user.clienteId)
                self.followedNames[user.clienteId] = user.usuario
        return ids, unknown

    @inlineCallbacks
    def do_SUBSCRIBE_PRESENCE(self, payload):
        """
        SUBSCRIBE_PRESENCE: follow users (C{clienteIds}, C{usuarios}) and
        choose whether the joined channels' member events come
        (C{canales}, default true).  Answers with where each followed user
        is now.
        """
        ids, unknown = self._resolve(payload)
        self.channelEvents = flag(payload, "canales", self.channelEvents)
        presence = self.gateway.presence
        for canalId in self.canales:
            if self.channelEvents:
                presence.watchChannel(self, canalId)
            else:
                presence.unwatchChannel(self, canalId)
        try:
            followed = sorted(presence.follow(self, ids))
        except ValueError as e:
            raise BadRequest("limit", str(e)) from None
        found = yield gatherResults([self.gateway.node.lookupUser(c) for c in followed])
        rows = []
        for clienteId, sessions in zip(followed, found):
            rows.append({"clienteId": clienteId,
                         "usuario": sessions[0].usuario if sessions
                         else self.followedNames.get(clienteId),
                         "servidores": sorted({s.serverId for s in sessions})})
        self.respond("SUBSCRIBE_PRESENCE", True,
                     f"following {len(rows)} user(s)" + (
                         f"; no such usuario: {', '.join(unknown)}" if unknown else ""),
                     siguiendo=rows, desconocidos=unknown, canales=self.channelEvents)

    def do_UNSUBSCRIBE_PRESENCE(self, payload) -> None:
        """UNSUBSCRIBE_PRESENCE: stop following the given users (all if none given)."""
        ids, unknown = self._resolve(payload)
        everyone = "clienteIds" not in payload and "usuarios" not in payload
        self.gateway.presence.unfollow(self, None if everyone else ids)
        left = len(self.gateway.presence.following(self))
        self.respond("UNSUBSCRIBE_PRESENCE", True, f"following {left} user(s)",
                     desconocidos=unknown)
