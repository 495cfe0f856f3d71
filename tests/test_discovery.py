"""
Tests for L{clustersync.app.discovery}: peers found by DNS, against a real
L{twisted.names} DNS server on a loopback UDP port whose records the tests
change.
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.internet.defer import inlineCallbacks
from twisted.names import dns, server
from twisted.names.common import ResolverBase
from twisted.names.error import DomainError
from twisted.trial import unittest

from clustersync.app.config import ConfigError, loadConfig
from clustersync.app.discovery import makeResolver, parseDnsName, resolveAddresses

from tests.support import Conditions, poll, startNode


class Zone(ResolverBase):
    """
    An authority answering from C{records} (name -> list of record
    payloads), which a test changes at will; a name without records does not
    exist (NXDOMAIN).
    """

    def __init__(self) -> None:
        ResolverBase.__init__(self)
        self.records: dict[str, list] = {}

    def _lookup(self, name, cls, type, timeout):
        name = name.decode() if isinstance(name, bytes) else name
        payloads = self.records.get(name)
        if not payloads:
            return defer.fail(DomainError(name))
        answers = [dns.RRHeader(name, p.TYPE, dns.IN, 0, p, auth=True)
                   for p in payloads if p.TYPE == type]
        return defer.succeed((answers, [], []))


class DnsServerMixin:
    """A DNS server on an ephemeral loopback UDP port serving L{Zone}."""

    def startDns(self):
        """Start it; C{self.zone}, C{self.dnsServer} (C{host:port})."""
        self.zone = Zone()
        factory = server.DNSServerFactory(authorities=[self.zone])
        port = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.dnsServer = f"127.0.0.1:{port.getHost().port}"


class ParseTests(unittest.TestCase):
    """The C{peers_dns} entries."""

    def test_forms(self):
        """C{NAME:PORT} and C{srv:NAME}; anything else is a ConfigError naming the key."""
        self.assertEqual(parseDnsName("peers.example:7001"), ("a", "peers.example", 7001))
        self.assertEqual(parseDnsName("srv:_cs._tcp.example."), ("srv", "_cs._tcp.example", None))
        self.assertEqual(loadConfig(overrides={"peers_dns": ["a.example:1"]}).peersDns,
                         ["a.example:1"])
        for bad in ("noport", "x:0", "srv:", "x:port"):
            e = self.assertRaises(ConfigError, loadConfig, None, {"peers_dns": [bad]})
            self.assertEqual(e.key, "peers_dns")


class ResolveTests(DnsServerMixin, unittest.TestCase):
    """L{resolveAddresses} through a real resolver and server."""

    timeout = 20

    def setUp(self):
        """The server and a resolver that asks only it."""
        self.startDns()
        self.resolver = makeResolver(reactor, [self.dnsServer])

    @inlineCallbacks
    def test_addressRecords(self):
        """A and AAAA records of C{NAME:PORT}, each on the port; IPv6 in brackets."""
        self.zone.records["peers.test"] = [dns.Record_A("127.0.0.1"), dns.Record_AAAA("::1")]
        addresses = yield resolveAddresses(self.resolver, "peers.test:7001")
        self.assertEqual(addresses, {"127.0.0.1:7001", "[::1]:7001"})

    @inlineCallbacks
    def test_serviceRecords(self):
        """SRV records: each target's addresses on the record's port."""
        self.zone.records["_cs._tcp.test"] = [dns.Record_SRV(0, 0, 7101, "a.test"),
                                              dns.Record_SRV(0, 0, 7102, "b.test")]
        self.zone.records["a.test"] = [dns.Record_A("127.0.0.1")]
        self.zone.records["b.test"] = [dns.Record_A("127.0.0.1")]
        addresses = yield resolveAddresses(self.resolver, "srv:_cs._tcp.test")
        self.assertEqual(addresses, {"127.0.0.1:7101", "127.0.0.1:7102"})

    @inlineCallbacks
    def test_missingName(self):
        """A name that does not exist gives no address (not an error)."""
        addresses = yield resolveAddresses(self.resolver, "nobody.test:7001")
        self.assertEqual(addresses, set())


class DiscoveryTests(DnsServerMixin, unittest.TestCase):
    """A node that finds its peers by DNS, on loopback."""

    timeout = 30

    @inlineCallbacks
    def test_recordsAddAndRemovePeers(self):
        """
        Node D resolves C{srv:_cs._tcp.test} every 0.2 s: when B's record
        appears D links to B; when C's appears, to C too; when B's record
        vanishes D stops dialing B (its factory is gone, so when B stops,
        D does not redial it) while C stays linked.
        """
        self.startDns()
        cond = Conditions(reactor)
        serviceB, b, portB, _ = yield startNode(self, reactor, "srv-b", conditions=cond)
        _, c, portC, _ = yield startNode(self, reactor, "srv-c", conditions=cond)
        serviceD, d, _, _ = yield startNode(
            self, reactor, "srv-d", conditions=cond, peersDns=["srv:_cs._tcp.test"],
            peersDnsInterval=0.2, dnsServers=[self.dnsServer], reconnectMaxDelay=0.3)
        dialer = serviceD.getServiceNamed("peer-dial")
        zone = self.zone
        zone.records["node.test"] = [dns.Record_A("127.0.0.1")]
        zone.records["_cs._tcp.test"] = [dns.Record_SRV(0, 0, portB, "node.test")]
        yield cond.waitUntil(lambda: d.linkFor("srv-b") is not None, what="D links to B")
        zone.records["_cs._tcp.test"] = [dns.Record_SRV(0, 0, portB, "node.test"),
                                         dns.Record_SRV(0, 0, portC, "node.test")]
        yield cond.waitUntil(lambda: d.linkFor("srv-c") is not None, what="D links to C")
        zone.records["_cs._tcp.test"] = [dns.Record_SRV(0, 0, portC, "node.test")]
        yield poll(lambda: f"127.0.0.1:{portB}" not in dialer.peers, 5, "B no longer dialed")
        self.assertEqual([f.address for f in dialer.factories], [f"127.0.0.1:{portC}"])
        yield serviceB.stopService()
        yield cond.waitUntil(lambda: d.linkFor("srv-b") is None, what="B gone")
        self.assertEqual([f.address for f in dialer.factories], [f"127.0.0.1:{portC}"])
        self.assertIsNotNone(d.linkFor("srv-c"))
