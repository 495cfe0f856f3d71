"""
The logic of C{clustersync-chat}, independent of how the terminal is
driven: the login dialogue, the slash commands, showing pushed events.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred

from clustersync.cli.chatformat import HELP, formatEvent, formatWho

__all__ = ["ChatCore"]


class ChatCore:
    """
    The client's logic, independent of how the terminal is driven: login
    dialogue, slash commands, event display.

    @ivar ui: the user interface (L{TerminalUI} or L{PlainUI}): C{show},
        C{setPrompt}, C{setSecret}, C{quit}.
    @ivar connection: the L{ServerConnection} once connected.
    @ivar state: C{"connecting"}, C{"usuario"}, C{"contrasenia"},
        C{"chat"} or C{"closed"}.
    @ivar follow: user names to follow once logged in (C{--follow}).
    @ivar failed: whether the server closed the connection on us (the
        exit status is then 1).
    """

    def __init__(self, ui, address: str, usuario: str | None = None, follow=()) -> None:
        self.ui = ui
        self.follow = list(follow)
        self.failed = False
        self.address = address
        self.connection = None
        self.state = "connecting"
        self.usuario = usuario
        self.login = None
        self.channel = None
        self.names: dict[int, str] = {}
        self.sent: dict[str, str] = {}
        self._typed: list[str] = []
        self._busy = False
        self._idle: list[Deferred] = []

    # Lifecycle ------------------------------------------------------------

    def connected(self, connection) -> None:
        """The TCP connection is up: start the login dialogue."""
        self.connection = connection
        self.ui.show(f"connected to {self.address}; log in (Ctrl-D or /quit to leave)")
        if self.usuario:
            self._askPassword()
        else:
            self._askUser()
        self._pump()

    def serverLost(self, reason) -> None:
        """The gateway closed the connection."""
        if self.state != "closed":
            self.state = "closed"
            self.failed = True
            why = reason.getErrorMessage() if reason is not None else ""
            clean = not why or "closed cleanly" in why
            self.ui.show(f"connection to {self.address} closed" + ("" if clean else f": {why}"))
            self.ui.quit()

    def _askUser(self) -> None:
        self.state = "usuario"
        self.ui.setSecret(False)
        self.ui.setPrompt("usuario: ")

    def _askPassword(self) -> None:
        self.state = "contrasenia"
        self.ui.setSecret(True)
        self.ui.setPrompt("contrasenia: ")

    # Input ------------------------------------------------------------------

    def typed(self, line: str) -> None:
        """
        Queue one typed line; lines are handled one at a time, in order
        (C{/join 3} then C{hola} sends to channel 3 even when pasted at once).
        """
        self._typed.append(line)
        self._pump()

    def _pump(self) -> None:
        if self.state == "connecting":
            return
        while self._typed and not self._busy:
            d = maybeDeferred(self.lineTyped, self._typed.pop(0))
            if not d.called:
                self._busy = True

                def done(result):
                    self._busy = False
                    self._pump()

                d.addErrback(lambda f: self.ui.show(f"error: {f.getErrorMessage()}"))
                d.addBoth(done)
            else:
                d.addErrback(lambda f: self.ui.show(f"error: {f.getErrorMessage()}"))
        if not self._typed and not self._busy:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    def whenIdle(self) -> Deferred:
        """A L{Deferred} firing once every typed line has been handled."""
        d = Deferred()
        self._idle.append(d)
        self._pump()
        return d

    def lineTyped(self, line: str):
        """Handle one line the user typed (see L{typed})."""
        line = line.strip()
        if self.state == "usuario":
            if line == "/quit":
                return self.quit()
            if line:
                self.usuario = line
                self._askPassword()
            return None
        if self.state == "contrasenia":
            self.ui.setSecret(False)
            self.ui.setPrompt("")
            return self._login(line)
        if self.state != "chat" or not line:
            return None
        if not line.startswith("/"):
            if self.channel is None:
                self.ui.show("no current channel: /join N first, or /msg USER TEXT")
                return None
            return self._say(self.channel, line)
        name, _, rest = line[1:].partition(" ")
        handler = getattr(self, "cmd_" + name.lower(), None)
        if handler is None:
            self.ui.show(f"unknown command /{name}; /help lists them")
            return None
        return handler(rest.strip())

    def eventReceived(self, payload) -> None:
        """Show one pushed event."""
        self.ui.show(formatEvent(payload, self.names, self.sent))

    @inlineCallbacks
    def _login(self, password: str):
        r = yield self.connection.request("LOGIN", usuario=self.usuario, contrasenia=password)
        if not r.get("success"):
            self.ui.show(f"login failed: {r.get('message')}")
            self.usuario = None
            self._askUser()
            return
        self.login = r
        self.state = "chat"
        self.names[r["clienteId"]] = r["usuario"]
        self.ui.show(f"logged in as {r['usuario']} (clienteId {r['clienteId']}) on "
                     f"{r['serverId']}; /help lists the commands")
        self.ui.setPrompt(f"{r['usuario']}@{r['serverId']}> ")
        if self.follow:
            yield self._follow(self.follow)

    def _report(self, r, okText=None) -> bool:
        if r.get("success"):
            self.ui.show(okText or r.get("message", "ok"))
            return True
        self.ui.show(f"error: {r.get('message')}")
        return False

    @staticmethod
    def _channelId(text: str):
        try:
            return int(text)
        except ValueError:
            return None

    # Commands ---------------------------------------------------------------

    def cmd_help(self, rest: str) -> None:
        """/help."""
        self.ui.show(HELP)

    @inlineCallbacks
    def cmd_join(self, rest: str):
        """/join N."""
        canalId = self._channelId(rest)
        if canalId is None:
            self.ui.show("usage: /join N (a channel number)")
            return
        r = yield self.connection.request("JOIN", canalId=canalId)
        if self._report(r):
            self.channel = canalId

    @inlineCallbacks
    def cmd_leave(self, rest: str):
        """/leave N."""
        canalId = self._channelId(rest)
        if canalId is None:
            self.ui.show("usage: /leave N (a channel number)")
            return
        r = yield self.connection.request("LEAVE", canalId=canalId)
        if self._report(r) and self.channel == canalId:
            self.channel = None

    @inlineCallbacks
    def _sessions(self, usuario: str | None = None, limit: int = 500):
        query = {"limite": limit}
        if usuario is not None:
            query["usuario"] = usuario
        r = yield self.connection.request("LIST_CONNECTED", **query)
        rows = r.get("sesiones", []) if r.get("success") else []
        for row in rows:
            self.names[row["clienteId"]] = row["usuario"]
        return rows, r.get("total", len(rows))

    @inlineCallbacks
    def cmd_who(self, rest: str):
        """/who [USER]: every user (the first 500 sessions), or one user's sessions."""
        rows, total = yield self._sessions(rest or None)
        self.ui.show(formatWho(rows, total))

    @inlineCallbacks
    def _follow(self, names):
        r = yield self.connection.request("SUBSCRIBE_PRESENCE", usuarios=list(names))
        if not r.get("success"):
            self.ui.show(f"error: {r.get('message')}")
            return
        where = []
        for row in r.get("siguiendo", []):
            name = row.get("usuario") or self.names.get(row["clienteId"]) or f"user {row['clienteId']}"
            servers = row.get("servidores") or []
            where.append(f"{name} ({'on ' + ', '.join(servers) if servers else 'offline'})")
        unknown = r.get("desconocidos") or []
        self.ui.show("following " + (", ".join(where) or "nobody")
                     + (f"; no such user: {', '.join(unknown)}" if unknown else ""))

    def cmd_follow(self, rest: str):
        """/follow USER...: be told when they come online or go offline."""
        names = rest.split()
        if not names:
            self.ui.show("usage: /follow USER [USER...]")
            return None
        return self._follow(names)

    @inlineCallbacks
    def cmd_unfollow(self, rest: str):
        """/unfollow [USER...]: stop following them (everyone without a name)."""
        names = rest.split()
        r = yield self.connection.request(
            "UNSUBSCRIBE_PRESENCE", **({"usuarios": names} if names else {}))
        self._report(r)

    @inlineCallbacks
    def cmd_msg(self, rest: str):
        """/msg USER TEXT."""
        target, _, text = rest.partition(" ")
        if not target or not text.strip():
            self.ui.show("usage: /msg USER TEXT")
            return
        if target.isdigit():
            clienteId, name = int(target), self.names.get(int(target), f"user {target}")
        else:
            rows, _ = yield self._sessions(target)
            ids = {row["clienteId"] for row in rows if row["usuario"] == target}
            if not ids:
                self.ui.show(f"{target} is not connected (see /who)")
                return
            (clienteId,) = ids
            name = target
        r = yield self.connection.request("SEND_USER", clienteId=clienteId, contenido=text.strip())
        if r.get("mensajeId"):
            self.sent[r["mensajeId"]] = name
        self._report(r, f"-> *{name}* {text.strip()}")

    @inlineCallbacks
    def _say(self, canalId: int, text: str):
        r = yield self.connection.request("SEND_CHANNEL", canalId=canalId, contenido=text)
        self._report(r, f"#{canalId} <{self.login['usuario']}> {text}")

    def cmd_say(self, rest: str):
        """/say N TEXT."""
        channel, _, text = rest.partition(" ")
        canalId = self._channelId(channel)
        if canalId is None or not text.strip():
            self.ui.show("usage: /say N TEXT")
            return None
        return self._say(canalId, text.strip())

    @inlineCallbacks
    def cmd_alert(self, rest: str):
        """/alert TEXT (admin only)."""
        if not rest:
            self.ui.show("usage: /alert TEXT")
            return
        r = yield self.connection.request("BROADCAST", contenido=rest)
        if not r.get("success"):
            self.ui.show(f"error: {r.get('message')}")

    def cmd_quit(self, rest: str = "") -> None:
        """/quit."""
        self.quit()

    def quit(self) -> None:
        """Log out (if logged in) and leave."""
        if self.state == "closed":
            return
        self.state = "closed"
        if self.connection is not None and self.connection.transport is not None:
            if self.login is not None:
                self.connection.request("LOGOUT").addErrback(lambda f: None)
            self.connection.transport.loseConnection()
        self.ui.quit()
