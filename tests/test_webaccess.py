"""
Access to the web port: the Host allow-list, the bearer token (and basic
authentication with it), TLS client certificates from the cluster CA, an
open C{/metrics}, and the refusal to start a web port reachable from other
hosts without authentication.  End to end on real loopback sockets, with
C{clustersync-admin} as a real process.
"""

from __future__ import annotations

import base64
import json
import os
import socket

from twisted.internet import reactor, ssl
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from zope.interface import implementer
from twisted.web.iweb import IPolicyForHTTPS

from clustersync.app.config import NodeConfig
from clustersync.errors import ConfigError
from clustersync.web.access import checkWebConfig, hostAllowed, isLoopbackEndpoint

from tests.support import startNode
from tests.test_adminops import admin

TOKEN = "0123456789abcdef0123456789abcdef"


@inlineCallbacks
def request(url: str, headers: dict | None = None, policy=None):
    """GET C{url} with C{headers}; fires with C{(code, headers, body)}."""
    pool = HTTPConnectionPool(reactor, persistent=False)
    agent = Agent(reactor, policy, pool=pool) if policy is not None else Agent(reactor, pool=pool)
    raw = Headers({k.encode(): [v.encode()] for k, v in (headers or {}).items()})
    response = yield agent.request(b"GET", url.encode(), raw)
    body = yield readBody(response)
    return response.code, response.headers, body


def rawGet(port: int, host: bytes | None) -> bytes:
    """A blocking GET / with C{Host: host} (none if C{None}); the status line."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        head = b"GET /api/health HTTP/1.1\r\n" + (b"Host: " + host + b"\r\n" if host else b"")
        s.sendall(head + b"Connection: close\r\n\r\n")
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n")[0]


class RulesTests(unittest.TestCase):
    """The pure rules."""

    def test_loopbackEndpoints(self):
        """Loopback TCP/TLS and unix sockets are local; everything else is not."""
        for d in ("tcp:7003:interface=127.0.0.1", "tcp:0:interface=\\:\\:1",
                  "ssl:7003:interface=localhost", "unix:/run/cs.sock", "tcp6:1:interface=\\:\\:1"):
            self.assertTrue(isLoopbackEndpoint(d), d)
        for d in ("tcp:7003", "tcp:7003:interface=0.0.0.0", "tcp:7003:interface=10.0.0.1",
                  "systemd:domain=INET:index=0", "tcp6:7003:interface=\\:\\:"):
            self.assertFalse(isLoopbackEndpoint(d), d)

    def test_hostAllowList(self):
        """IP literals, localhost and configured names pass; other names do not."""
        names = {"status.lan"}
        for h in (b"127.0.0.1:7003", b"10.0.0.1", b"[::1]:7003", b"localhost:7003",
                  b"a.localhost", b"Status.LAN:7003", b"status.lan."):
            self.assertTrue(hostAllowed(h, names), h)
        for h in (b"evil.example", b"evil.example:7003", b"127.0.0.1.evil.example", b"",
                  None, b"status.lan:x", b"[::1]x", b"\xff"):
            self.assertFalse(hostAllowed(h, names), h)

    def test_refusedWithoutAuthentication(self):
        """A web port on every address needs a token, client certificates or web_insecure."""
        e = self.assertRaises(ConfigError, checkWebConfig, NodeConfig(web="tcp:7003"))
        self.assertEqual(e.key, "web")
        checkWebConfig(NodeConfig(web="tcp:7003", webInsecure=True))
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("short\n")
        e = self.assertRaises(ConfigError, checkWebConfig,
                              NodeConfig(web="tcp:7003", webTokenFile=path))
        self.assertEqual(e.key, "web_token_file")
        with open(path, "w") as f:
            f.write(TOKEN + "\n")
        checkWebConfig(NodeConfig(web="tcp:7003", webTokenFile=path))
        e = self.assertRaises(ConfigError, checkWebConfig,
                              NodeConfig(web="tcp:7003", webClientCa=path))
        self.assertEqual(e.key, "web_client_ca")

    def test_nodeRefusesToStart(self):
        """Building a node with such a web port fails; with web_insecure it starts."""
        from clustersync.app.service import makeNodeService

        config = NodeConfig(serverId="srv-x", listen=None, clients=None, web="tcp:0")
        self.assertRaises(ConfigError, makeNodeService, config, reactor)
        config.webInsecure = True
        self.assertIsNotNone(makeNodeService(config, reactor).getServiceNamed("web"))


class TokenTests(unittest.TestCase):
    """A node whose web port listens on every address, with a token."""

    timeout = 30

    @inlineCallbacks
    def setUp(self):
        """Start srv-a with C{web = tcp:0} (all addresses) and a token file."""
        self.tokenFile = os.path.abspath(self.mktemp())
        with open(self.tokenFile, "w") as f:
            f.write(TOKEN + "\n")
        service, self.node, _, _ = yield startNode(
            self, reactor, "srv-a", web="tcp:0", webTokenFile=self.tokenFile,
            webOpenMetrics=True, webHosts=["status.lan"])
        self.port = (yield service.getServiceNamed("web").whenListening()).getHost().port
        self.base = f"http://127.0.0.1:{self.port}"

    @inlineCallbacks
    def test_unauthenticatedGets401(self):
        """No token or a wrong one: 401 with both challenges, counted; nothing leaks."""
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Token x"},
                        {"Authorization": "Basic !!"}):
            code, h, body = yield request(self.base + "/api/sessions", headers)
            self.assertEqual(code, 401, headers)
            self.assertEqual(json.loads(body), {"error": "authentication required"})
        self.assertEqual(h.getRawHeaders(b"www-authenticate"),
                         [b'Bearer realm="clustersync"', b'Basic realm="clustersync"'])
        for path in ("/", "/events", "/api/status"):
            code, _, _ = yield request(self.base + path)
            self.assertEqual(code, 401, path)
        self.assertEqual(self.node.metrics.rejectedInputs["web_unauthorized"], 7)

    @inlineCallbacks
    def test_tokenAccepted(self):
        """The bearer token, or basic authentication with it as the password, gets in."""
        code, _, body = yield request(self.base + "/api/health",
                                      {"Authorization": "Bearer " + TOKEN})
        self.assertEqual((code, json.loads(body)["serverId"]), (200, "srv-a"))
        basic = base64.b64encode(b"operator:" + TOKEN.encode()).decode()
        code, _, _ = yield request(self.base + "/", {"Authorization": "Basic " + basic})
        self.assertEqual(code, 200)

    @inlineCallbacks
    def test_metricsOpenedSeparately(self):
        """With web_open_metrics, /metrics needs no token (Prometheus may still send one)."""
        code, _, body = yield request(self.base + "/metrics")
        self.assertEqual(code, 200)
        self.assertIn(b"clustersync_node_info", body)
        code, _, _ = yield request(self.base + "/metrics", {"Authorization": "Bearer " + TOKEN})
        self.assertEqual(code, 200)

    @inlineCallbacks
    def test_foreignHostRefused(self):
        """
        A Host that is not an address, a loopback name or in web_hosts
        (a DNS-rebinding page) gets 421, even with the token; no Host, 400.
        """
        auth = {"Authorization": "Bearer " + TOKEN}
        code, _, body = yield request(self.base + "/api/health", {**auth, "Host": "evil.example"})
        self.assertEqual(code, 421)
        self.assertIn("evil.example", json.loads(body)["error"])
        for host in ("status.lan", f"localhost:{self.port}"):
            code, _, _ = yield request(self.base + "/api/health", {**auth, "Host": host})
            self.assertEqual(code, 200, host)
        line = yield deferToThread(rawGet, self.port, b"rebind.attacker.example")
        self.assertIn(b" 421 ", line)
        line = yield deferToThread(rawGet, self.port, None)
        self.assertIn(b" 400 ", line)
        self.assertEqual(self.node.metrics.rejectedInputs["web_bad_host"], 3)

    @inlineCallbacks
    def test_adminWithTokenFile(self):
        """clustersync-admin gets in with --token-file, and is refused without."""
        out, err, code = yield admin("peers", "--url", self.base, "--token-file", self.tokenFile)
        self.assertEqual((code, err), (0, ""))
        self.assertTrue(out.startswith("node srv-a: 0 of 0 peers up"))
        out, err, code = yield admin("peers", "--url", self.base)
        self.assertEqual(code, 1)
        self.assertIn("HTTP 401: authentication required", err)


@implementer(IPolicyForHTTPS)
class _ClientCertPolicy:
    """Verify the node against the cluster CA; present C{own} if given."""

    def __init__(self, ca, own=None) -> None:
        self.ca = ca
        self.own = own

    def creatorForNetloc(self, hostname, port):
        """TLS options for C{hostname}."""
        return ssl.optionsForClientTLS(hostname.decode(), trustRoot=self.ca,
                                       clientCertificate=self.own)


class ClientCertificateTests(unittest.TestCase):
    """A node whose web port speaks TLS and takes client certificates from the cluster CA."""

    timeout = 30

    @inlineCallbacks
    def setUp(self):
        """Certificates for srv-a and an operator, then srv-a with web_client_ca."""
        from clustersync.app.certificates import ensureDevCerts

        certs = ensureDevCerts(os.path.abspath(self.mktemp()), ["srv-a", "operator"])
        other = ensureDevCerts(self.mktemp(), ["stranger"])
        self.paths = certs["operator"]

        def load(paths):
            with open(paths["tls_cert"], "rb") as c, open(paths["tls_key"], "rb") as k:
                return ssl.PrivateCertificate.loadPEM(c.read() + b"\n" + k.read())

        with open(certs["srv-a"]["tls_ca"], "rb") as f:
            self.ca = ssl.Certificate.loadPEM(f.read())
        self.operator = load(certs["operator"])
        self.stranger = load(other["stranger"])
        a = certs["srv-a"]
        service, self.node, _, _ = yield startNode(
            self, reactor, "srv-a", web="ssl:0", webClientCa=a["tls_ca"], webOpenMetrics=True,
            tlsCa=a["tls_ca"], tlsCert=a["tls_cert"], tlsKey=a["tls_key"], openLinks=False)
        port = (yield service.getServiceNamed("web").whenListening()).getHost().port
        self.base = f"https://localhost:{port}"

    @inlineCallbacks
    def test_clientCertificateRequired(self):
        """
        A certificate from the cluster CA gets in; none gets 401 (but
        /metrics, opened); one from another CA fails the handshake.
        """
        code, _, body = yield request(self.base + "/api/health",
                                      policy=_ClientCertPolicy(self.ca, self.operator))
        self.assertEqual((code, json.loads(body)["status"]), (200, "ok"))
        code, _, _ = yield request(self.base + "/api/health", policy=_ClientCertPolicy(self.ca))
        self.assertEqual(code, 401)
        code, _, _ = yield request(self.base + "/metrics", policy=_ClientCertPolicy(self.ca))
        self.assertEqual(code, 200)
        failed = request(self.base + "/api/health",
                         policy=_ClientCertPolicy(self.ca, self.stranger))
        yield self.assertFailure(failed, Exception)

    @inlineCallbacks
    def test_adminWithClientCertificate(self):
        """clustersync-admin --ca --cert --key reads the API over TLS."""
        p = self.paths
        out, err, code = yield admin("peers", "--url", self.base, "--ca", p["tls_ca"],
                                     "--cert", p["tls_cert"], "--key", p["tls_key"])
        self.assertEqual((code, err), (0, ""))
        self.assertIn("node srv-a", out)
