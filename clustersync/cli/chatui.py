"""
The two faces of C{clustersync-chat}: a raw-mode terminal with line
editing (L{makeTerminalUI}, built on L{twisted.conch.recvline}) and plain
lines for when stdin is not a terminal (L{PlainUI}).
"""

from __future__ import annotations

from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

__all__ = ["makeTerminalUI", "PlainUI"]


def makeTerminalUI():
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
