"""
The node's connection to NATS (the official C{nats-py} client, on Twisted's
asyncio reactor).

L{NatsBus} is the only module that speaks to C{nats-py}.  The rest of the
backplane sees a small synchronous face: L{NatsBus.publish} returns at once
(lines of one reactor turn are handed to the client together by one task),
subscriptions call a plain function, and connection changes reach one
C{onState} callable.
"""

from __future__ import annotations

import asyncio
import ssl

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

__all__ = ["NatsBus", "BusOptions", "BusMessage", "requireAsyncioReactor"]


def requireAsyncioReactor(reactor) -> None:
    """
    @raise RuntimeError: C{reactor} is not Twisted's asyncio reactor, which
        C{nats-py} needs (start the node with C{twistd --reactor=asyncio}).
    """
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        raise RuntimeError(
            "the NATS backplane needs Twisted's asyncio reactor: run "
            "'twistd --reactor=asyncio clustersync ...' (the reactor installed is "
            f"{type(reactor).__module__}.{type(reactor).__name__})")


@attrs.frozen
class BusOptions:
    """
    How to reach NATS.

    @ivar servers: C{nats://host:port} URLs (C{tls://} for TLS; user and
        password or a token may be given in the URL, as NATS takes them).
    @ivar name: the connection name NATS shows (the node's serverId).
    @ivar tlsCa: CA certificate (PEM) to verify the NATS servers with.
    @ivar tlsCert: client certificate (PEM), for NATS servers that verify clients.
    @ivar tlsKey: its key (PEM).
    @ivar credentials: a NATS C{.creds} file (JWT and nkey seed).
    @ivar nkeySeed: a file holding an nkey seed.
    @ivar pingInterval: seconds between the client's PINGs; two unanswered
        ones mean the server is gone.
    @ivar reconnectWait: seconds between reconnect attempts to one server.
    """

    servers: tuple[str, ...]
    name: str = "clustersync"
    tlsCa: str | None = None
    tlsCert: str | None = None
    tlsKey: str | None = None
    credentials: str | None = None
    nkeySeed: str | None = None
    pingInterval: float = 5.0
    reconnectWait: float = 0.5

    def sslContext(self) -> ssl.SSLContext | None:
        """The client TLS context, or C{None} when no TLS option is set."""
        if not (self.tlsCa or self.tlsCert or any(s.startswith("tls://") for s in self.servers)):
            return None
        context = ssl.create_default_context(cafile=self.tlsCa)
        if self.tlsCert:
            context.load_cert_chain(self.tlsCert, self.tlsKey)
        return context


@attrs.frozen
class BusMessage:
    """One message received: its subject, payload, headers and reply subject."""

    subject: str
    data: bytes
    headers: dict
    reply: str


class NatsBus:
    """
    One NATS connection (reconnecting to any server of C{options.servers}).

    @ivar connected: whether the client is connected now.
    @ivar onState: called with C{True} when the connection (re)opens and
        C{False} when it drops.
    @ivar published: lines handed to the client.
    @ivar refused: lines refused because the client was not connected.
    """

    _log = Logger()

    def __init__(self, options: BusOptions, clock, client=None) -> None:
        self.options = options
        self.clock = clock
        if client is None:
            import nats.aio.client

            client = nats.aio.client.Client()
        self._nc = client
        self.connected = False
        self.onState = lambda up: None
        self.published = 0
        self.refused = 0
        self._out: list = []
        self._confirms: list[Deferred] = []
        self._draining = False
        self._stopped = False

    # Connection ------------------------------------------------------------

    def start(self) -> Deferred:
        """
        Connect, trying again every C{reconnectWait} seconds until a server
        answers (the client then reconnects by itself).

        @return: a L{Deferred} firing once connected the first time.
        """
        return Deferred.fromFuture(asyncio.ensure_future(self._connectUntilUp()))

    async def _connectUntilUp(self) -> None:
        options = self.options
        kwargs = dict(
            servers=list(options.servers), name=options.name, no_echo=True,
            allow_reconnect=True, max_reconnect_attempts=-1,
            reconnect_time_wait=options.reconnectWait, ping_interval=options.pingInterval,
            max_outstanding_pings=2, connect_timeout=2, pending_size=0,
            disconnected_cb=self._disconnected, reconnected_cb=self._reconnected,
            error_cb=self._error, closed_cb=self._closed,
        )
        context = options.sslContext()
        if context is not None:
            kwargs["tls"] = context
        if options.credentials:
            kwargs["user_credentials"] = options.credentials
        if options.nkeySeed:
            kwargs["nkeys_seed"] = options.nkeySeed
        while not self._stopped:
            try:
                await self._nc.connect(**kwargs)
            except Exception as e:
                self._log.warn("NATS: cannot connect to {servers}: {error}; retrying",
                               servers=", ".join(options.servers), error=str(e) or repr(e))
                await asyncio.sleep(options.reconnectWait)
                continue
            self._setState(True)
            return

    def _setState(self, up: bool) -> None:
        if up == self.connected:
            return
        self.connected = up
        if up:
            self._log.info("NATS: connected to {url}", url=self._urlNow())
        elif not self._stopped:
            self._log.warn("NATS: connection lost; reconnecting")
            self._failConfirms()
        self.onState(up)

    def _urlNow(self) -> str:
        url = self._nc.connected_url
        return url.geturl() if url is not None else "?"

    async def _disconnected(self) -> None:
        self._setState(False)

    async def _reconnected(self) -> None:
        self._setState(True)

    async def _closed(self) -> None:
        self._setState(False)

    async def _error(self, e) -> None:
        self._log.warn("NATS: {error}", error=str(e) or repr(e))

    def stop(self) -> Deferred:
        """Close the connection (what is queued is written first)."""
        self._stopped = True

        async def close():
            if self._out:
                await self._drain()
            if self._nc.is_connected:
                await self._nc.flush(2)
            if not self._nc.is_closed:
                await self._nc.close()

        return Deferred.fromFuture(asyncio.ensure_future(close()))

    # Sending ---------------------------------------------------------------

    def publish(self, subject: str, payload: bytes, headers: dict | None = None,
                reply: str = "") -> bool:
        """
        Queue one message; the messages of a reactor turn go to the client
        in one task, in order.

        @return: C{False} (nothing queued) when the client is not connected.
        """
        if not self.connected:
            self.refused += 1
            return False
        self._out.append((subject, payload, headers, reply))
        if not self._draining:
            self._draining = True
            asyncio.ensure_future(self._drain())
        return True

    def confirm(self) -> Deferred:
        """
        @return: a L{Deferred} firing with C{None} once the NATS server
            answered a PING sent after everything published so far (it has
            taken those messages), or failing when the connection drops first.
        """
        d = Deferred()
        if not self.connected:
            d.errback(ConnectionError("not connected to NATS"))
            return d
        self._confirms.append(d)
        if not self._draining:
            self._draining = True
            asyncio.ensure_future(self._drain())
        return d

    async def _drain(self) -> None:
        """Hand every queued message to the client; then answer confirms."""
        try:
            while self._out or self._confirms:
                out, self._out = self._out, []
                publish = self._nc.publish
                try:
                    for subject, payload, headers, reply in out:
                        await publish(subject, payload, reply=reply, headers=headers)
                        self.published += 1
                except Exception as e:
                    self._log.warn("NATS: publish failed: {error}", error=str(e) or repr(e))
                    self._failConfirms()
                    continue
                if self._confirms:
                    confirms, self._confirms = self._confirms, []
                    try:
                        await self._nc.flush(max(1, int(self.options.pingInterval)))
                    except Exception as e:
                        for d in confirms:
                            d.errback(ConnectionError(f"NATS did not confirm: {e!r}"))
                    else:
                        for d in confirms:
                            d.callback(None)
        finally:
            self._draining = False

    def _failConfirms(self) -> None:
        confirms, self._confirms = self._confirms, []
        for d in confirms:
            d.errback(ConnectionError("NATS connection lost"))

    # Receiving -------------------------------------------------------------

    def subscribe(self, subject: str, callback) -> Deferred:
        """
        Call C{callback(BusMessage)} for every message on C{subject} (the
        client subscribes again by itself after a reconnect).  An exception
        in C{callback} is logged.

        @return: a L{Deferred} firing once the subscription is made.
        """
        log = self._log

        async def cb(msg):
            try:
                callback(BusMessage(msg.subject, msg.data, msg.headers or {}, msg.reply))
            except Exception:
                log.failure("NATS: handling a message on {subject} failed", subject=msg.subject)

        return Deferred.fromFuture(asyncio.ensure_future(self._nc.subscribe(subject, cb=cb)))

    def unsubscribe(self, subscription) -> None:
        """Stop a subscription (what L{subscribe}'s L{Deferred} gave)."""
        asyncio.ensure_future(subscription.unsubscribe())

    def newInbox(self) -> str:
        """A fresh reply subject."""
        return self._nc.new_inbox()

    def status(self) -> dict:
        """The connection's state, for health and metrics."""
        stats = getattr(self._nc, "stats", {})
        return {
            "connected": self.connected,
            "server": self._urlNow() if self.connected else None,
            "reconnects": stats.get("reconnects", 0),
            "published": self.published,
            "refused": self.refused,
            "received": stats.get("in_msgs", 0),
        }
