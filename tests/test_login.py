"""
Login protection: the throttle per user name and per source address (on a
L{Clock}), the sessions-per-user limit, the constant cost of an unknown
name (counted hash calls, not timing) and the password kept out of logs.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from clustersync.gateway.auth import UsersFileChecker, hashPassword, verifyPassword
from clustersync.gateway.throttle import LoginThrottle

from tests.support import startNode
from tests.test_gateway import GatewayTestMixin, SlowChecker, writeUsers
from tests.test_gateway_cluster import ChatClient
from tests.test_web import get


class ThrottledGatewayMixin(GatewayTestMixin):
    """A gateway whose logins go through a L{LoginThrottle} on the test clock."""

    def gatewayOptions(self) -> dict:
        """The throttle (defaults: 0.5 s doubling up to 30 s) and a limit of 2 sessions."""
        self.throttle = LoginThrottle(self.clock)
        return {"throttle": self.throttle, "maxSessionsPerUser": 2}

    def attempt(self, usuario: str, password: str, host: str = "127.0.0.1") -> dict:
        """One LOGIN from a fresh connection from C{host}; its response payload."""
        return self.client(host=host).call("LOGIN", usuario=usuario, contrasenia=password)["payload"]


class ThrottleTests(ThrottledGatewayMixin, unittest.TestCase):
    """Failed logins are slowed per user and per address, capped, counted."""

    def test_hundredWrongPasswordsTakeAMinute(self):
        """
        Guessing luis's password as fast as the gateway allows, each guess
        from another address, 100 wrong passwords take well over a minute
        of clock time; refused attempts are counted apart, and even the
        right password waits its turn.
        """
        started = self.clock.seconds()
        checked = refused = 0
        i = 0
        while checked < 100:
            i += 1
            r = self.attempt("luis", f"guess-{i}", host=f"10.0.{i // 250}.{i % 250 + 1}")
            if "reintentarEn" in r:
                refused += 1
                self.assertEqual(r["message"],
                                 f"too many failed logins; try again in {r['reintentarEn']} s")
                self.clock.advance(r["reintentarEn"])
            else:
                self.assertEqual(r["message"], "wrong usuario or contrasenia")
                checked += 1
        elapsed = self.clock.seconds() - started
        print(f"\n100 wrong passwords for one user took {elapsed:.0f} s of clock time")
        self.assertGreaterEqual(elapsed, 60)
        self.assertEqual(self.rejected(), {"client_login_failed": 100,
                                           "client_login_throttled": refused})
        r = self.attempt("luis", "luis-pw", host="10.9.9.9")
        self.assertIn("try again", r["message"])
        self.clock.advance(r["reintentarEn"])
        self.assertTrue(self.attempt("luis", "luis-pw", host="10.9.9.9")["success"])
        # A success forgives the name: the next mistake is free again.
        self.assertEqual(self.attempt("luis", "bad", host="10.9.9.9")["message"],
                         "wrong usuario or contrasenia")

    def test_delayCapped(self):
        """
        No delay after the first three failures; the fourth makes the next
        attempt wait 0.5 s, each further one doubles it, up to 30 s.
        """
        delays = [self.throttle.delayAfter(n, 3) for n in range(1, 12)]
        self.assertEqual(delays, [0, 0, 0, 0.5, 1, 2, 4, 8, 16, 30, 30])

    def test_perAddress(self):
        """
        One address guessing many names is slowed after eleven failures,
        whichever names it tries (unknown ones too); others are not.
        """
        for i in range(11):
            self.assertEqual(self.attempt(f"name{i}", "x", host="10.1.1.1")["message"],
                             "wrong usuario or contrasenia")
        r = self.attempt("ana", "ana-pw", host="10.1.1.1")
        self.assertIn("try again in 1 s", r["message"])
        self.assertTrue(self.attempt("ana", "ana-pw", host="10.2.2.2")["success"])

    def test_parallelAttemptsThrottledToo(self):
        """
        Attempts started at once on many connections (before any answer)
        are counted as they start: past the free ones they are refused.
        """
        pending = Deferred()
        self.gateway.portal.checkers = {}
        self.gateway.portal.registerChecker(SlowChecker(pending))
        clients = [self.client(host=f"10.3.0.{i}") for i in range(6)]
        for c in clients:
            c.request("LOGIN", usuario="ana", contrasenia="guess")
        answered = [c.lines() for c in clients]
        self.assertEqual([len(a) for a in answered], [0, 0, 0, 0, 1, 1])
        self.assertIn("try again", answered[4][0]["payload"]["message"])

    def test_passwordNeverLogged(self):
        """Neither a wrong nor a right password appears in any log event."""
        seen = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        self.attempt("ana", "wrong-secret-1")
        self.attempt("nobody", "wrong-secret-2")
        self.client("ana")
        self.assertTrue(any("failed login as 'ana'" in formatEvent(e) for e in seen))
        for event in seen:
            text = formatEvent(event) + repr(sorted(event.items(), key=lambda kv: kv[0]))
            for secret in ("wrong-secret-1", "wrong-secret-2", "ana-pw"):
                self.assertNotIn(secret, text)

    def test_tablesBounded(self):
        """A spray of names never grows the tables past their bound."""
        throttle = LoginThrottle(self.clock, maxEntries=100)
        for i in range(1000):
            throttle.admit(f"n{i}", f"10.4.{i // 250}.{i % 250}")
        self.assertEqual(throttle.tracked(), (100, 100))
        self.clock.advance(301)
        throttle.admit("fresh", "10.9.9.9")
        self.assertEqual(throttle.tracked(), (1, 1))

    def test_longNameRefused(self):
        """A usuario longer than 255 characters is a field error, not a hash."""
        r = self.attempt("x" * 256, "pw")
        self.assertIn("longer than 255", r["message"])
        self.assertEqual(self.rejected(), {"client_field": 1})


class SessionLimitTests(ThrottledGatewayMixin, unittest.TestCase):
    """max_sessions_per_user."""

    def test_limit(self):
        """A third session of ana is refused; after a logout she may log in again."""
        first = self.client("ana")
        self.client("ana")
        r = self.attempt("ana", "ana-pw")
        self.assertEqual(r["message"], "ana already has 2 session(s); the limit is 2")
        self.assertEqual(self.rejected(), {"client_session_limit": 1})
        first.call("LOGOUT")
        self.assertTrue(self.attempt("ana", "ana-pw")["success"])
        self.assertTrue(self.attempt("luis", "luis-pw")["success"])


class ConstantCostTests(unittest.TestCase):
    """An unknown name costs one hash of the accounts' cost, like a known one."""

    def countingChecker(self, users=None):
        """A checker on a fresh users file whose hash calls are recorded."""
        calls = []

        def verify(password, stored):
            calls.append(stored)
            return verifyPassword(password, stored)

        path = writeUsers(self.mktemp()) if users is None else writeUsers(self.mktemp(), users)
        return UsersFileChecker(path, verify=verify), calls

    def costOf(self, stored: str) -> list[str]:
        """The scheme and cost fields of a stored hash."""
        return stored.split("$")[:4]

    def test_unknownNameHashesLikeAKnownOne(self):
        """
        A wrong password for ana and any password for an unknown name each
        make exactly one hash call, with the same scrypt parameters.
        """
        from twisted.cred.credentials import UsernamePassword

        checker, calls = self.countingChecker()
        known = checker.lookup("ana").hash
        self.failureResultOf(checker.requestAvatarId(UsernamePassword("ana", "bad")))
        self.failureResultOf(checker.requestAvatarId(UsernamePassword("zz-unknown", "bad")))
        self.assertEqual(len(calls), 2)
        self.assertEqual(self.costOf(calls[0]), self.costOf(known))
        self.assertEqual(self.costOf(calls[1]), self.costOf(known))
        self.assertNotEqual(calls[1], known)

    def test_dummyFollowsTheFile(self):
        """With accounts at the default cost, the dummy uses the default cost too."""
        from twisted.cred.credentials import UsernamePassword

        checker, calls = self.countingChecker()
        with open(checker.path, "w") as f:
            f.write('{"version": 1, "users": [{"usuario": "eve", "clienteId": 9, '
                    f'"hash": "{hashPassword("pw", n=2**14)}"}}]}}')
        import os

        os.utime(checker.path, ns=(1, 1))
        self.failureResultOf(checker.requestAvatarId(UsernamePassword("nobody", "pw")))
        self.assertEqual(self.costOf(calls[-1]), ["scrypt", "16384", "8", "1"])


class ThrottleOverSocketsTests(unittest.TestCase):
    """A real node: the gateway and the web port on loopback."""

    timeout = 30

    @inlineCallbacks
    def test_throttledAndCountedInMetrics(self):
        """
        Four wrong passwords from one client are answered; the fifth is
        refused at once with the wait; /metrics counts both kinds.
        """
        service, node, _, _ = yield startNode(
            self, reactor, "srv-a", clients="tcp:0:interface=127.0.0.1",
            usersFile=writeUsers(self.mktemp()), web="tcp:0:interface=127.0.0.1")
        clientPort = (yield service.getServiceNamed("gateway").whenListening()).getHost().port
        webPort = (yield service.getServiceNamed("web").whenListening()).getHost().port
        client = yield connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", clientPort), ChatClient())
        self.addCleanup(lambda: None if client.isClosed else (
            client.transport.loseConnection(), client.closed)[1])
        for i in range(4):
            r = yield client.send("LOGIN", usuario="ana", contrasenia=f"bad{i}")
            self.assertEqual(r["payload"]["message"], "wrong usuario or contrasenia")
        r = yield client.send("LOGIN", usuario="ana", contrasenia="ana-pw")
        self.assertEqual(r["payload"]["reintentarEn"], 1)
        code, _, body = yield get(f"http://127.0.0.1:{webPort}/metrics")
        values = {(s.name, s.labels.get("reason")): s.value
                  for f in text_string_to_metric_families(body.decode()) for s in f.samples}
        self.assertEqual(values[("clustersync_rejected_inputs_total", "client_login_failed")], 4)
        self.assertEqual(values[("clustersync_rejected_inputs_total", "client_login_throttled")], 1)
