"""
C{clustersync-chat HOST:PORT}: a terminal chat client for the gateway.

It prompts for a login, then reads commands::

    /join 3              join channel 3 (it becomes the current channel)
    /leave 3             leave channel 3
    /msg luis hola       direct message to every session of user luis
    /say 3 hola          message to channel 3
    hola                 (no slash) message to the current channel
    /who                 everyone connected, on which server, in which channels
    /follow luis         be told when luis comes online or goes offline
    /alert texto         BROADCAST to every client (admin users only)
    /quit                log out and exit

Incoming messages and presence events are printed as they arrive; on a
terminal the line being typed is redrawn below them, so typing is never
broken (the terminal runs in raw mode with L{twisted.conch.recvline} line
editing and history).  When stdin is not a terminal, lines are read plainly
(handy for scripts).  With C{--ca} the connection is TLS and the server's
certificate is checked against that CA.

This module wires the pieces: L{clustersync.cli.chatcore} (the logic),
L{clustersync.cli.chatconn} (the connection), L{clustersync.cli.chatui}
(the terminal) and L{clustersync.cli.chatformat} (what is printed).
"""

from __future__ import annotations

import argparse
import os
import sys

from clustersync.cli.chatconn import ServerConnection
from clustersync.cli.chatcore import ChatCore
from clustersync.cli.chatformat import HELP, formatEvent
from clustersync.cli.chatui import PlainUI, makeTerminalUI

__all__ = ["ServerConnection", "ChatCore", "PlainUI", "formatEvent", "tlsOptions", "main"]


class _Runner:
    """Wires the UI, the core and the server connection on one reactor."""

    def __init__(self, reactor, host: str, port: int, usuario: str | None,
                 tls=None, follow=()) -> None:
        self.reactor = reactor
        self.host, self.port = host, port
        self.usuario = usuario
        self.tls = tls
        self.follow = follow
        self.core = None
        self.status = 0
        self._stopping = False

    def uiReady(self, ui) -> None:
        """The UI is up: build the core and connect to the gateway."""
        from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS

        self.core = ChatCore(ui, f"{self.host}:{self.port}", self.usuario, self.follow)
        ui.core = self.core
        endpoint = HostnameEndpoint(self.reactor, self.host, self.port, timeout=10)
        if self.tls is not None:
            endpoint = wrapClientTLS(self.tls, endpoint)
        d = connectProtocol(endpoint, ServerConnection(self.core))
        d.addCallbacks(self._connected, self._cannotConnect, errbackArgs=(ui,))

    def _connected(self, connection) -> None:
        if self.tls is None:
            self.core.connected(connection)
            return
        # Start the login only once the TLS handshake (and the server's
        # certificate) has been checked: a PING goes through it first.
        def verified(_):
            connection.core.ui.show(f"TLS: the certificate of {self.host} is verified")
            self.core.connected(connection)

        connection.request("PING").addCallbacks(verified, lambda f: None)

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


def tlsOptions(host: str, caPath: str | None):
    """
    The client TLS options for C{host}: its certificate must be valid for
    C{host} and signed by the CA in C{caPath} (the system's CAs if
    C{None}).

    @raise OSError: C{caPath} cannot be read.
    @raise ValueError: it is not a PEM certificate.
    """
    from twisted.internet import ssl

    if caPath is None:
        return ssl.optionsForClientTLS(host)
    with open(caPath, "rb") as f:
        data = f.read()
    try:
        ca = ssl.Certificate.loadPEM(data)
    except Exception as e:
        raise ValueError(f"not a PEM certificate ({e})") from None
    return ssl.optionsForClientTLS(host, trustRoot=ca)


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
    parser.add_argument("--ca", metavar="PEM",
                        help="connect over TLS and verify the server's certificate against "
                             "this CA (the cluster CA, e.g. run/certs/ca.pem for make cluster)")
    parser.add_argument("--tls", action="store_true",
                        help="connect over TLS, verifying the server with the system's CAs")
    parser.add_argument("--follow", "-f", action="append", default=[], metavar="USER",
                        help="be told when USER comes online or goes offline (repeatable)")
    args = parser.parse_args(argv)
    host, port = args.address
    try:
        tls = tlsOptions(host, args.ca) if args.ca or args.tls else None
    except (OSError, ValueError) as e:
        parser.error(f"--ca {args.ca}: {e}")

    from twisted.internet import reactor, stdio

    runner = _Runner(reactor, host, port, args.user, tls, args.follow)
    fd = sys.stdin.fileno()
    if os.isatty(fd):
        import termios
        import tty

        from twisted.conch.insults.insults import ServerProtocol

        TerminalUI = makeTerminalUI()

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
    return runner.status or (1 if runner.core is not None and runner.core.failed else 0)


if __name__ == "__main__":
    sys.exit(main())
