"""
C{clustersync-chat}'s JSON-lines connection to a gateway (plain TCP or
TLS, see L{clustersync.cli.chat}).
"""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.logger import Logger

__all__ = ["ServerConnection"]


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
