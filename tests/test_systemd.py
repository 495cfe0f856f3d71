"""
systemd integration: the units in C{contrib/systemd} pass C{systemd-analyze
verify}; readiness (C{READY=1}) is sent once every listener listens; a real
C{twistd clustersync} process serves peer links on a listening socket
handed over through C{LISTEN_FDS}/C{LISTEN_PID}, as C{clustersync.socket}
does.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile

from twisted.application.service import MultiService, Service
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import DatagramProtocol, ProcessProtocol, Protocol
from twisted.internet.task import Clock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.failure import Failure
from twisted.trial import unittest

from clustersync.wire.codec import Hello, decode, encode
from clustersync.app.sdnotify import NotifyService, makeNotifyService, notify

HERE = os.path.dirname(os.path.abspath(__file__))
UNITS = os.path.join(os.path.dirname(HERE), "contrib", "systemd")
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
INSTALLED_TWISTD = "/opt/clustersync/venv/bin/twistd"


def unitText(name: str) -> str:
    """The text of unit C{name} of C{contrib/systemd}."""
    with open(os.path.join(UNITS, name)) as f:
        return f.read()


def settings(text: str) -> dict[str, list[str]]:
    """C{key -> [values]} of a unit file (comments and sections ignored)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


class _Datagrams(DatagramProtocol):
    """Collects notification datagrams; fires waiters on a matching one."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self._waits: list[tuple[str, Deferred]] = []

    def datagramReceived(self, data, addr) -> None:
        """Record one datagram."""
        text = data.decode()
        self.received.append(text)
        for entry in list(self._waits):
            if entry[0] in text.splitlines():
                self._waits.remove(entry)
                entry[1].callback(text)

    def waitFor(self, line: str, timeout: float) -> Deferred:
        """Fires with the first datagram holding C{line}, within C{timeout}."""
        for text in self.received:
            if line in text.splitlines():
                return _fired(text)
        d = Deferred()
        self._waits.append((line, d))
        return d.addTimeout(timeout, reactor)


def _fired(value) -> Deferred:
    d = Deferred()
    d.callback(value)
    return d


def shortTempDir(testCase) -> str:
    """A temporary directory with a short path (unix socket names are short)."""
    path = tempfile.mkdtemp(prefix="cs-")
    testCase.addCleanup(shutil.rmtree, path, True)
    return path


class UnitFileTests(unittest.TestCase):
    """The unit files say what docs/operations.md promises."""

    def test_serviceSettings(self):
        """
        Type=notify, twistd in the foreground without a pid file, a
        dedicated user, restart on failure, and the hardening options.
        """
        s = settings(unitText("clustersync.service"))
        self.assertEqual(s["Type"], ["notify"])
        self.assertEqual(s["Restart"], ["on-failure"])
        [execStart] = s["ExecStart"]
        self.assertTrue(execStart.startswith(
            INSTALLED_TWISTD + " --nodaemon --pidfile= clustersync "), execStart)
        self.assertEqual((s["DynamicUser"], s["User"]), (["yes"], ["clustersync"]))
        for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                           ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                           ("PrivateDevices", "yes"), ("CapabilityBoundingSet", "")]:
            self.assertEqual(s[key], [value], key)

    def test_socketSettings(self):
        """The socket unit listens on the peer port and activates the service."""
        s = settings(unitText("clustersync.socket"))
        self.assertEqual(s["ListenStream"], ["0.0.0.0:7001"])
        self.assertEqual(s["Service"], ["clustersync.service"])
        self.assertEqual(s["Accept"], ["no"])


class VerifyTests(unittest.TestCase):
    """C{systemd-analyze verify} on the units."""

    timeout = 60

    def setUp(self):
        """Find systemd-analyze, or skip saying how to get it."""
        self.analyze = shutil.which("systemd-analyze")
        if self.analyze is None:
            raise unittest.SkipTest(
                "systemd-analyze not installed (Debian package systemd; .ci/run installs it)")

    @inlineCallbacks
    def verify(self, units: dict[str, str]):
        """
        Write C{units} (name -> text) to a directory and verify them; fires
        with C{(exit status, output lines naming one of them)}.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        paths = []
        for name, text in units.items():
            path = os.path.join(directory, name)
            with open(path, "w") as f:
                f.write(text)
            paths.append(path)
        out, err, code = yield getProcessOutputAndValue(
            self.analyze, ["verify", *paths], env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                                   "SYSTEMD_LOG_COLOR": "0"})
        lines = (out + err).decode("utf-8", "replace").splitlines()
        return code, [line for line in lines if any(n in line for n in units)]

    def installed(self, name: str) -> str:
        """Unit C{name} with the installed twistd path pointing at this venv."""
        return unitText(name).replace(INSTALLED_TWISTD, TWISTD)

    @inlineCallbacks
    def test_unitsVerify(self):
        """Both units verify with no error and no warning."""
        code, complaints = yield self.verify({
            "clustersync.service": self.installed("clustersync.service"),
            "clustersync.socket": self.installed("clustersync.socket"),
        })
        self.assertEqual((code, complaints), (0, []))

    @inlineCallbacks
    def test_exposure(self):
        """
        C{systemd-analyze security --offline} rates the service's exposure
        at most 2.0 of 10 ("OK"): the hardening options take effect.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "clustersync.service")
        with open(path, "w") as f:
            f.write(self.installed("clustersync.service"))
        out, err, code = yield getProcessOutputAndValue(
            self.analyze, ["security", "--offline=true", "--threshold=20", path],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SYSTEMD_COLORS": "0"})
        text = (out + err).decode("utf-8", "replace")
        [line] = [x for x in text.splitlines() if "Overall exposure level" in x]
        level = float(line.split(":")[1].split()[0])
        self.assertLessEqual(level, 2.0, line)
        self.assertEqual(code, 0, text[-2000:])

    @inlineCallbacks
    def test_verifyCatchesMistakes(self):
        """
        The same check flags a misspelt key and a bad value (so the test
        above would fail on such a mistake).
        """
        text = self.installed("clustersync.service")
        bad = text.replace("ProtectSystem=", "ProtectSytem=").replace("Type=notify", "Type=bogus")
        code, complaints = yield self.verify({"clustersync.service": bad})
        self.assertEqual(len(complaints), 2, complaints)


class _Waiting(Service):
    """A service whose C{whenListening} fires when the test says."""

    def __init__(self, name: str) -> None:
        self.setName(name)
        self.listening = Deferred()

    def whenListening(self) -> Deferred:
        """The test's Deferred."""
        return self.listening


class NotifyTests(unittest.TestCase):
    """L{NotifyService} and L{notify} against a real datagram socket."""

    def setUp(self):
        """Bind a datagram socket to receive the notifications."""
        directory = shortTempDir(self)
        self.path = os.path.join(directory, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(self.sock.close)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.environ = {"NOTIFY_SOCKET": self.path}

    def received(self) -> list[str]:
        """Every datagram sent so far."""
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return out

    def test_readyOnlyOnceAllListen(self):
        """
        READY=1 is sent only after every sibling with C{whenListening}
        listens; STOPPING=1 when the node stops.
        """
        clock = Clock()
        top = MultiService()
        peer, web = _Waiting("peer-listen"), _Waiting("web")
        peer.setServiceParent(top)
        web.setServiceParent(top)
        service = makeNotifyService(clock, self.environ)
        service.setServiceParent(top)
        top.startService()
        clock.advance(0)
        peer.listening.callback(None)
        self.assertEqual(self.received(), [])
        web.listening.callback(None)
        self.assertEqual(self.received(), ["READY=1\nSTATUS=listening: peer-listen, web"])
        self.assertTrue(service.ready)
        top.stopService()
        self.assertEqual(self.received(), ["STOPPING=1"])

    def test_listenFailure(self):
        """A listener that fails: a STATUS line naming it, never READY=1."""
        clock = Clock()
        top = MultiService()
        peer = _Waiting("peer-listen")
        peer.setServiceParent(top)
        NotifyService(clock, self.environ).setServiceParent(top)
        top.startService()
        clock.advance(0)
        peer.listening.errback(Failure(OSError("address in use")))
        self.assertEqual(self.received(), ["STATUS=cannot listen: peer-listen"])

    def test_noNotifySocket(self):
        """Without C{NOTIFY_SOCKET}: no service, and L{notify} sends nothing."""
        self.assertIsNone(makeNotifyService(Clock(), {}))
        self.assertFalse(notify("READY=1", {}))

    def test_abstractAddress(self):
        """An C{@name} address is the abstract socket C{\\0name}."""
        name = f"clustersync-test-{os.getpid()}-{id(self)}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind("\0" + name)
        self.assertTrue(notify("READY=1", {"NOTIFY_SOCKET": "@" + name}))
        self.assertEqual(sock.recv(100), b"READY=1")


class _Output(ProcessProtocol):
    """Keeps a process's output; L{ended} fires when it exits."""

    def __init__(self) -> None:
        self.output = b""
        self.ended = Deferred()

    def childDataReceived(self, fd, data) -> None:
        """Keep it for failure messages."""
        self.output += data

    def processEnded(self, reason) -> None:
        """Fire L{ended} with the exit reason."""
        self.ended.callback(reason.value)


class _HelloClient(Protocol):
    """Sends a HELLO and fires L{hello} with the first HELLO answered."""

    def __init__(self) -> None:
        self.hello = Deferred()
        self.buffer = b""

    def connectionMade(self) -> None:
        """Speak first, as a dialing peer does."""
        self.transport.write(encode(Hello.make("srv-probe")))

    def dataReceived(self, data) -> None:
        """Look for the HELLO line."""
        self.buffer += data
        while b"\n" in self.buffer and not self.hello.called:
            line, self.buffer = self.buffer.split(b"\n", 1)
            message = decode(line)
            if isinstance(message, Hello):
                self.hello.callback(message)
                self.transport.loseConnection()


class SocketActivationTests(unittest.TestCase):
    """A real twistd node started the way systemd starts it."""

    timeout = 90

    @inlineCallbacks
    def test_activatedNode(self):
        """
        Given a listening socket as fd 3 with C{LISTEN_FDS=1}, its name in
        C{LISTEN_FDNAMES} (as systemd 227+ sets them) and its own pid
        in C{LISTEN_PID}, C{twistd clustersync --listen
        systemd:domain=INET:index=0} sends READY=1 to C{NOTIFY_SOCKET}, then
        answers a peer's HELLO on that socket; on SIGTERM it says
        STOPPING=1 and exits cleanly.
        """
        directory = shortTempDir(self)
        notifications = _Datagrams()
        notifyPort = reactor.listenUNIXDatagram(os.path.join(directory, "notify"), notifications)
        self.addCleanup(notifyPort.stopListening)

        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]

        env = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "NOTIFY_"))}
        env.update(LISTEN_FDS="1", LISTEN_FDNAMES="clustersync.socket", NOTIFY_SOCKET=os.path.join(directory, "notify"))
        args = ["/bin/sh", "-c", 'LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"',
                TWISTD, "--nodaemon", "--pidfile=", "--logfile=-", "clustersync",
                "--server-id", "srv-activated", "--listen", "systemd:domain=INET:index=0", "--open-links",
                "--web", "tcp:0:interface=127.0.0.1", "--clients", "none"]
        proto = _Output()
        process = reactor.spawnProcess(proto, "/bin/sh", args, env=env, path=directory,
                                       childFDs={0: "w", 1: "r", 2: "r", 3: listener.fileno()})
        listener.close()

        def stop():
            if process.pid is not None:
                process.signalProcess("KILL")
                return proto.ended

        self.addCleanup(stop)
        try:
            ready = yield notifications.waitFor("READY=1", timeout=30)
        except Exception:
            self.fail(f"no READY=1; node output:\n{proto.output.decode(errors='replace')}")
        self.assertIn("STATUS=listening: peer-listen, web", ready)

        client = _HelloClient()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        hello = yield client.hello.addTimeout(10, reactor)
        self.assertEqual(hello.payload.serverId, "srv-activated")

        process.signalProcess("TERM")
        yield notifications.waitFor("STOPPING=1", timeout=20)
        reason = yield proto.ended.addTimeout(20, reactor)
        # twistd ends by re-raising the signal that stopped it, which
        # systemd counts as a clean stop of a service.
        self.assertIn((getattr(reason, "exitCode", None), getattr(reason, "signal", None)),
                      [(0, None), (None, signal.SIGTERM)], repr(reason))
