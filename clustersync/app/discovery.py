"""
DNS discovery of peers (C{peers_dns}, C{--peers-dns}): the Kubernetes
headless-service pattern.  Every C{peers_dns_interval} seconds each name is
resolved with L{twisted.names}; addresses that appear are dialed, addresses
that vanish are no longer redialed (a link to one stays up until it closes
on its own).

A name is either C{NAME:PORT} (its A and AAAA records, each dialed on
PORT) or C{srv:NAME} (its SRV records, each target's A and AAAA records
dialed on the record's port).
"""

from __future__ import annotations

import socket

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.names import dns
from twisted.names.error import DNSNameError

__all__ = ["DnsDiscoveryService", "parseDnsName", "resolveAddresses", "makeResolver"]


def parseDnsName(entry: str) -> tuple[str, str, int | None]:
    """
    C{("srv", name, None)} for C{srv:NAME}, C{("a", name, port)} for
    C{NAME:PORT}.

    @raise ValueError: neither form.
    """
    if entry.startswith("srv:"):
        name = entry[4:].strip(".")
        if not name:
            raise ValueError(f"expected srv:NAME, got {entry!r}")
        return "srv", name, None
    name, _, port = entry.rpartition(":")
    if not name or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected NAME:PORT or srv:NAME, got {entry!r}")
    return "a", name.strip("."), int(port)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@defer.inlineCallbacks
def _hostAddresses(resolver, name: str):
    """The A and AAAA addresses of C{name} (none if it has none)."""
    hosts = []
    for lookup in (resolver.lookupAddress, resolver.lookupIPV6Address):
        try:
            answers, _, _ = yield lookup(name)
        except DNSNameError:
            continue
        for record in answers:
            if record.type == dns.A:
                hosts.append(record.payload.dottedQuad())
            elif record.type == dns.AAAA:
                hosts.append(socket.inet_ntop(socket.AF_INET6, record.payload.address))
    return hosts


@defer.inlineCallbacks
def resolveAddresses(resolver, entry: str):
    """
    Resolve one C{peers_dns} entry with C{resolver} (an
    L{twisted.internet.interfaces.IResolver}).

    @return: a L{Deferred} firing with the set of C{host:port} dial
        addresses (empty when the name does not exist); it fails with the
        resolver's error for anything else (a timeout, a refused query).
    """
    kind, name, port = parseDnsName(entry)
    addresses = set()
    if kind == "a":
        for host in (yield _hostAddresses(resolver, name)):
            addresses.add(_address(host, port))
        return addresses
    try:
        answers, _, _ = yield resolver.lookupService(name)
    except DNSNameError:
        return addresses
    for record in answers:
        if record.type != dns.SRV:
            continue
        target = record.payload.target.name.decode()
        for host in (yield _hostAddresses(resolver, target)):
            addresses.add(_address(host, record.payload.port))
    return addresses


def makeResolver(reactor, servers):
    """
    The resolver of C{peers_dns}: the system's (C{/etc/resolv.conf},
    C{/etc/hosts}) or, with C{dns_servers}, those servers only.

    @param servers: C{host:port} strings, or empty.
    """
    from twisted.names import client

    if not servers:
        return client.createResolver(reactor=reactor)
    pairs = []
    for server in servers:
        host, _, port = server.rpartition(":")
        pairs.append((host.strip("[]"), int(port)))
    return client.Resolver(servers=pairs, reactor=reactor)


class DnsDiscoveryService(Service):
    """
    Resolves C{entries} every C{interval} seconds and keeps the dial
    service's discovered peers in step.

    @ivar discovered: entry -> the set of addresses it gave last.
    """

    name = "peers-dns"
    _log = Logger()

    def __init__(self, reactor, dialer, entries, interval: float, resolver) -> None:
        """
        @param dialer: the L{clustersync.app.service.PeerDialService}
            (C{addPeer}, C{removePeer}).
        @param resolver: an L{twisted.internet.interfaces.IResolver}.
        """
        self.reactor = reactor
        self.dialer = dialer
        self.entries = list(entries)
        self.interval = interval
        self.resolver = resolver
        self.discovered: dict[str, set[str]] = {entry: set() for entry in self.entries}
        self._call = None
        self._running = None

    def startService(self) -> None:
        """Resolve now, then every C{interval}."""
        Service.startService(self)
        self._tick()

    def stopService(self):
        """Stop resolving (the dial service stops dialing on its own)."""
        Service.stopService(self)
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        return self._running

    def _tick(self) -> None:
        self._call = None
        self._running = self.refresh()
        self._running.addBoth(self._scheduleNext)

    def _scheduleNext(self, _) -> None:
        self._running = None
        if self.running:
            self._call = self.reactor.callLater(self.interval, self._tick)

    @defer.inlineCallbacks
    def refresh(self):
        """
        Resolve every entry once and apply the differences.

        @return: a L{Deferred} firing with C{None} when done; an entry that
            fails to resolve (timeout) is logged and keeps its last
            addresses.
        """
        for entry in self.entries:
            try:
                addresses = yield resolveAddresses(self.resolver, entry)
            except Exception as e:
                self._log.warn("peers_dns {entry}: lookup failed ({error}); keeping {count} "
                               "addresses", entry=entry, error=e,
                               count=len(self.discovered[entry]))
                continue
            if not self.running:
                return
            old = self.discovered[entry]
            for address in sorted(addresses - old):
                self._log.info("peers_dns {entry}: new peer {address}", entry=entry,
                               address=address)
                self.dialer.addPeer(address)
            for address in sorted(old - addresses):
                self._log.info("peers_dns {entry}: {address} vanished, no longer dialed",
                               entry=entry, address=address)
                self.dialer.removePeer(address)
            self.discovered[entry] = addresses
