"""
C{clustersync-chat HOST:PORT}: a terminal chat client for the gateway.

It prompts for a login, then reads commands::

    /join 3              join channel 3 (it becomes the current channel)
    /leave 3             leave channel 3
    /msg luis hola       direct message to every session of user luis
    /say 3 hola          message to channel 3
    hola                 (no slash) message to the current channel
    /who                 everyone connected, on which server, in which channels
    /alert texto         BROADCAST to every client (admin users only)
    /quit                log out and exit

Incoming messages are printed as they arrive; on a terminal the line being
typed is redrawn below them, so typing is never broken (the terminal runs in
raw mode with L{twisted.conch.recvline} line editing and history).  When
stdin is not a terminal, lines are read plainly (handy for scripts).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

__all__ = ["ServerConnection", "ChatCore", "PlainUI", "formatEvent", "main"]

HELP = """commands:
  /join N            join channel N (it becomes the current channel)
  /leave N           leave channel N
  /msg USER TEXT     direct message to USER (a name, or a clienteId)
  /say N TEXT        message to channel N
  TEXT               message to the current channel
  /who               who is connected, where
  /alert TEXT        broadcast to everyone (admin only)
  /help              this text
  /quit              log out and exit"""


class ServerConnection(Protocol):
    """
    The JSON-lines connection to the gateway.  Responses come back in
    request order; C{EVENT} lines go to C{core.eventReceived}.

    @ivar core: the L{ChatCore}.
    """

    _log = Logger()

    def __init__(self, core) -> None:
        self.core = core
        self._buffer = b""
        self._pending: list[Deferred] = []

    def dataReceived(self, data: bytes) -> None:
        """Split lines; hand responses to their requests, events to the core."""
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        for raw in lines:
            try:
                line = json.loads(raw)
                command, payload = line["command"], line["payload"]
            except (ValueError, KeyError, TypeError):
                self.core.ui.show(f"?? unreadable line from the server: {raw[:200]!r}")
                continue
            if command == "EVENT":
                self.core.eventReceived(payload)
            elif command == "ERROR" and not self._pending:
                self.core.ui.show(f"server: {payload.get('message')}")
            elif self._pending:
                self._pending.pop(0).callback(payload)

    def request(self, command: str, **payload) -> Deferred:
        """
        Send one request.

        @return: a L{Deferred} firing with the response's payload.
        """
        d = Deferred()
        self._pending.append(d)
        self.transport.write(json.dumps({"command": command, "payload": payload}).encode() + b"\n")
        return d

    def connectionLost(self, reason) -> None:
        """Tell the core; fail pending requests."""
        pending, self._pending = self._pending, []
        for d in pending:
            d.errback(reason)
        self.core.serverLost(reason)


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
    return "event: " + json.dumps(payload, ensure_ascii=False)


class ChatCore:
    """
    The client's logic, independent of how the terminal is driven: login
    dialogue, slash commands, event display.

    @ivar ui: the user interface (L{TerminalUI} or L{PlainUI}): C{show},
        C{setPrompt}, C{setSecret}, C{quit}.
    @ivar connection: the L{ServerConnection} once connected.
    @ivar state: C{"connecting"}, C{"usuario"}, C{"contrasenia"},
        C{"chat"} or C{"closed"}.
    """

    def __init__(self, ui, address: str, usuario: str | None = None) -> None:
        self.ui = ui
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
            self.ui.show(f"connection to {self.address} closed")
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
    def _sessions(self):
        r = yield self.connection.request("LIST_CONNECTED")
        rows = r.get("sesiones", []) if r.get("success") else []
        for row in rows:
            self.names[row["clienteId"]] = row["usuario"]
        return rows

    @inlineCallbacks
    def cmd_who(self, rest: str):
        """/who: every user, with servers and channels."""
        rows = yield self._sessions()
        users: dict = {}
        for row in rows:
            servers, channels, clienteId = users.setdefault(row["usuario"], (set(), set(), row["clienteId"]))
            servers.add(row["serverId"])
            channels.update(row["canales"])
        lines = [f"{len(users)} user(s), {len(rows)} session(s):"]
        for usuario in sorted(users):
            servers, channels, clienteId = users[usuario]
            where = ", ".join(sorted(servers))
            chans = " ".join(f"#{c}" for c in sorted(channels))
            lines.append(f"  {usuario} ({clienteId}) on {where}" + (f"  in {chans}" if chans else ""))
        self.ui.show("\n".join(lines))

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
            rows = yield self._sessions()
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


def _makeTerminalUI():
    from twisted.conch.recvline import HistoricRecvLine

    class TerminalUI(HistoricRecvLine):
        """
        Line editing on a raw-mode terminal: output is printed above the
        input line, which is then redrawn with the cursor where it was.
        """

        ps = (b"", b"")
        core = None
        secret = False

        def initializeScreen(self):
            """Do not reset the screen: just draw the prompt."""
            self.terminal.write(self.ps[self.pn])
            self.setInsertMode()

        def connectionMade(self):
            """Start: the factory attached the core."""
            HistoricRecvLine.connectionMade(self)
            self.runner.uiReady(self)

        def show(self, text: str) -> None:
            """Print C{text} above the input line, then redraw it."""
            self.terminal.write(b"\r")
            self.terminal.eraseLine()
            for line in text.split("\n"):
                self.terminal.write(line.encode("utf-8", "replace") + b"\r\n")
            self._redraw()

        def _redraw(self) -> None:
            shown = b"" if self.secret else b"".join(self.lineBuffer)
            self.terminal.write(self.ps[self.pn] + shown)
            back = len(self.lineBuffer) - self.lineBufferIndex
            if back and not self.secret:
                self.terminal.cursorBackward(back)

        def setPrompt(self, prompt: str) -> None:
            """Change the prompt and redraw the input line."""
            self.ps = (prompt.encode("utf-8"), prompt.encode("utf-8"))
            self.terminal.write(b"\r")
            self.terminal.eraseLine()
            self._redraw()

        def setSecret(self, secret: bool) -> None:
            """Stop (or resume) echoing typed characters."""
            self.secret = secret

        def keystrokeReceived(self, keyID, modifier):
            """Ctrl-C and Ctrl-D (on an empty line) quit; secret input is not echoed."""
            if keyID in (b"\x03", b"\x04") and (keyID == b"\x03" or not self.lineBuffer):
                self.core.quit()
                return
            if self.secret:
                if keyID in (b"\r", b"\n"):
                    line = b"".join(self.lineBuffer)
                    self.lineBuffer, self.lineBufferIndex = [], 0
                    self.terminal.write(b"\r\n")
                    self.lineReceived(line)
                elif keyID in (b"\x7f", b"\x08", self.terminal.BACKSPACE):
                    if self.lineBuffer:
                        self.lineBuffer.pop()
                        self.lineBufferIndex = len(self.lineBuffer)
                elif isinstance(keyID, bytes) and keyID >= b" ":
                    self.lineBuffer.append(keyID)
                    self.lineBufferIndex = len(self.lineBuffer)
                return
            if isinstance(keyID, bytes) and keyID >= b"\x80":
                # UTF-8 bytes of non-ASCII text (recvline only takes ASCII).
                self.characterReceived(keyID, False)
                return
            HistoricRecvLine.keystrokeReceived(self, keyID, modifier)

        def lineReceived(self, line: bytes) -> None:
            """Hand the typed line to the core."""
            self.core.typed(line.decode("utf-8", "replace"))

        def quit(self) -> None:
            """Leave: stop the reactor once output is flushed."""
            self.terminal.write(b"\r\n")
            self.runner.stop()

        def connectionLost(self, reason):
            """Stdin closed: leave."""
            if self.core is not None:
                self.core.quit()

    return TerminalUI


@implementer(IHalfCloseableProtocol)
class PlainUI(LineReceiver):
    """
    Line-by-line stdin/stdout, for when stdin is not a terminal.  The end of
    stdin does not close stdout: the lines read are handled (and their
    answers printed) before leaving.
    """

    delimiter = b"\n"
    core = None

    def connectionMade(self) -> None:
        """Start: the factory attached the core."""
        self.runner.uiReady(self)

    def show(self, text: str) -> None:
        """Print C{text}."""
        self.transport.write(text.encode("utf-8", "replace") + b"\n")

    def setPrompt(self, prompt: str) -> None:
        """Print a prompt only for the login dialogue."""
        if prompt.endswith(": "):
            self.transport.write(prompt.encode("utf-8"))

    def setSecret(self, secret: bool) -> None:
        """Nothing to hide on a pipe."""

    def lineReceived(self, line: bytes) -> None:
        """Hand the line to the core."""
        self.core.typed(line.rstrip(b"\r").decode("utf-8", "replace"))

    def readConnectionLost(self) -> None:
        """End of input: leave once every line read has been handled."""
        if self.core is not None and self.core.state != "closed":
            self.core.whenIdle().addCallback(lambda _: self.core.quit())

    def writeConnectionLost(self) -> None:
        """Stdout closed: leave."""
        if self.core is not None:
            self.core.quit()

    def connectionLost(self, reason) -> None:
        """Both ends closed: leave."""
        if self.core is not None and self.core.state != "closed":
            self.core.quit()

    def quit(self) -> None:
        """Stop the reactor."""
        self.runner.stop()


class _Runner:
    """Wires the UI, the core and the server connection on one reactor."""

    def __init__(self, reactor, host: str, port: int, usuario: str | None) -> None:
        self.reactor = reactor
        self.host, self.port = host, port
        self.usuario = usuario
        self.core = None
        self.status = 0
        self._stopping = False

    def uiReady(self, ui) -> None:
        """The UI is up: build the core and connect to the gateway."""
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        self.core = ChatCore(ui, f"{self.host}:{self.port}", self.usuario)
        ui.core = self.core
        d = connectProtocol(TCP4ClientEndpoint(self.reactor, self.host, self.port, timeout=10),
                            ServerConnection(self.core))
        d.addCallbacks(self.core.connected, self._cannotConnect, errbackArgs=(ui,))

    def _cannotConnect(self, failure, ui) -> None:
        ui.show(f"cannot connect to {self.host}:{self.port}: {failure.getErrorMessage()}")
        self.status = 1
        self.core.state = "closed"
        self.stop()

    def stop(self) -> None:
        """Stop the reactor (once), shortly, so last writes get out."""
        if not self._stopping:
            self._stopping = True
            # Let the LOGOUT and the last output reach their sockets first.
            self.reactor.callLater(0.05, self.reactor.stop)


def _parseAddress(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, "7002"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def main(argv=None) -> int:
    """Entry point of C{clustersync-chat}."""
    parser = argparse.ArgumentParser(
        prog="clustersync-chat", description="Terminal chat client of a clustersync node.",
        epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("address", nargs="?", default="127.0.0.1:7002", type=_parseAddress,
                        help="the node's client endpoint, HOST:PORT (default 127.0.0.1:7002)")
    parser.add_argument("--user", "-u", help="log in as this usuario (the password is asked)")
    args = parser.parse_args(argv)
    host, port = args.address

    from twisted.internet import reactor, stdio

    runner = _Runner(reactor, host, port, args.user)
    fd = sys.stdin.fileno()
    if os.isatty(fd):
        import termios
        import tty

        from twisted.conch.insults.insults import ServerProtocol

        TerminalUI = _makeTerminalUI()

        def build():
            ui = TerminalUI()
            ui.runner = runner
            return ui

        old = termios.tcgetattr(fd)
        tty.setraw(fd)
        try:
            stdio.StandardIO(ServerProtocol(build))
            reactor.run()
        finally:
            termios.tcsetattr(fd, termios.TCSANOW, old)
    else:
        ui = PlainUI()
        ui.runner = runner
        stdio.StandardIO(ui)
        reactor.run()
    return runner.status


if __name__ == "__main__":
    sys.exit(main())
