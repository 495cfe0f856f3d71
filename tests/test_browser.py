"""
The status page in a real headless Chromium (Debian's C{chromium}),
driven over the DevTools protocol through C{--remote-debugging-pipe}
(NUL-separated JSON on the browser's fds 3 and 4; no websocket, no
driver download): a peer joins and leaves and the page shows it without
reload.  A screenshot is saved as C{browser-status-page.png} in the test's
working directory (C{_trial_temp}) and its path printed.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import time

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ProcessProtocol
from twisted.trial import unittest

from tests.support import Conditions, linkPorts, startNode

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,900", "--remote-debugging-pipe",
]

#: Resolves once C{selector} matches (or, with C{present} false, once it
#: no longer does), checked on every DOM mutation; rejects after C{ms}
#: milliseconds.
WAIT_FOR = """(selector, present, ms) => new Promise((resolve, reject) => {
  const found = () => Boolean(document.querySelector(selector)) === present;
  if (found()) { resolve(true); return; }
  const observer = new MutationObserver(() => {
    if (found()) { observer.disconnect(); clearTimeout(timer); resolve(true); }
  });
  observer.observe(document.documentElement,
                   {subtree: true, childList: true, attributes: true, characterData: true});
  const timer = setTimeout(() => {
    observer.disconnect();
    reject(new Error("timed out waiting for " + selector));
  }, ms);
})"""


class DevToolsError(Exception):
    """The browser answered a command with an error, or died."""


class Chromium(ProcessProtocol):
    """
    A Chromium process and its DevTools pipe: L{send} writes one command,
    the Deferred it returns fires with the command's result.
    """

    def __init__(self) -> None:
        self.buffer = b""
        self.stderr = b""
        self.nextId = 0
        self.pending: dict[int, Deferred] = {}
        self.eventWaiters: list[tuple[str, Deferred]] = []
        self.seenEvents: list[str] = []
        self.ended = Deferred()

    def waitEvent(self, method: str, timeout: float = 20.0) -> Deferred:
        """Fires with the params of the next DevTools event C{method}."""
        d = Deferred()
        self.eventWaiters.append((method, d))
        return d.addTimeout(timeout, reactor)

    def send(self, method: str, params: dict | None = None, sessionId: str | None = None,
             timeout: float = 20.0) -> Deferred:
        """Send one DevTools command; bounded by C{timeout} seconds."""
        self.nextId += 1
        message = {"id": self.nextId, "method": method, "params": params or {}}
        if sessionId is not None:
            message["sessionId"] = sessionId
        d = Deferred()
        self.pending[self.nextId] = d
        self.transport.writeToChild(3, json.dumps(message).encode() + b"\0")
        return d.addTimeout(timeout, reactor)

    def childDataReceived(self, fd, data) -> None:
        """DevTools answers on fd 4; keep the tail of stderr for failures."""
        if fd != 4:
            self.stderr = (self.stderr + data)[-20000:]
            return
        self.buffer += data
        *messages, self.buffer = self.buffer.split(b"\0")
        for raw in messages:
            message = json.loads(raw)
            if "id" not in message:
                self.seenEvents.append(message.get("method"))
                for entry in list(self.eventWaiters):
                    if entry[0] == message.get("method") and not entry[1].called:
                        self.eventWaiters.remove(entry)
                        entry[1].callback(message.get("params", {}))
                continue
            d = self.pending.pop(message.get("id"), None)
            if d is None:
                continue
            if "error" in message:
                d.errback(DevToolsError(f"{message['error']}"))
            else:
                d.callback(message.get("result", {}))

    def processEnded(self, reason) -> None:
        """Fail whatever still waits; fire L{ended}."""
        pending, self.pending = self.pending, {}
        for d in pending.values():
            d.errback(DevToolsError(f"chromium exited: {reason.getErrorMessage()}"))
        self.ended.callback(None)


class StatusPageBrowserTests(unittest.TestCase):
    """Node A serves the page; node B joins and leaves while Chromium watches."""

    timeout = 120

    def setUp(self):
        """Skip when Chromium is not installed (fail instead under CI=true)."""
        if not os.access(CHROMIUM, os.X_OK):
            if os.environ.get("CI") == "true":
                self.fail(f"{CHROMIUM} not installed under CI (.ci/run must install chromium)")
            raise unittest.SkipTest(
                f"{CHROMIUM} not installed (Debian package chromium; .ci/run installs it)")

    @inlineCallbacks
    def startBrowser(self):
        """Start Chromium; fires with the L{Chromium} once it answers."""
        profile = tempfile.mkdtemp(prefix="cs-chromium-")
        self.addCleanup(shutil.rmtree, profile, True)
        browser = Chromium()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISPLAY")}
        env["HOME"] = profile
        process = reactor.spawnProcess(
            browser, CHROMIUM, [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            env=env, childFDs={0: "w", 1: "r", 2: "r", 3: "w", 4: "r"})

        @inlineCallbacks
        def stop():
            if browser.ended.called:
                return
            try:
                yield browser.send("Browser.close", timeout=5)
                yield browser.ended.addTimeout(10, reactor)
            except Exception:
                if not browser.ended.called:
                    process.signalProcess("KILL")
                    yield browser.ended

        self.addCleanup(stop)
        try:
            yield browser.send("Browser.getVersion", timeout=30)
        except Exception as e:
            self.fail(f"chromium did not answer ({e}); stderr:\n"
                      + browser.stderr.decode(errors="replace"))
        return browser

    @inlineCallbacks
    def evaluate(self, browser, session, expression: str, timeout: float = 15.0):
        """Evaluate C{expression} in the page (awaiting a promise); fires with its value."""
        result = yield browser.send("Runtime.evaluate", {
            "expression": expression, "awaitPromise": True, "returnByValue": True,
        }, session, timeout=timeout)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise DevToolsError(details.get("exception", {}).get("description")
                                or details.get("text"))
        return result["result"].get("value")

    def waitFor(self, browser, session, selector: str, present: bool = True, ms: int = 10000):
        """
        Fires once the page has an element matching C{selector} (or, if not
        C{present}, has none).
        """
        return self.evaluate(
            browser, session,
            f"({WAIT_FOR})({json.dumps(selector)}, {json.dumps(present)}, {ms})",
            timeout=ms / 1000 + 5)

    @inlineCallbacks
    def openPage(self, browser, url: str):
        """Open C{url} in the browser's page; fires with the DevTools session id."""
        targets = yield browser.send("Target.getTargets")
        pages = [t for t in targets["targetInfos"] if t["type"] == "page"]
        if pages:
            targetId = pages[0]["targetId"]
        else:
            targetId = (yield browser.send("Target.createTarget", {"url": "about:blank"}))["targetId"]
        attached = yield browser.send("Target.attachToTarget",
                                      {"targetId": targetId, "flatten": True})
        session = attached["sessionId"]
        yield browser.send("Page.enable", {}, session)
        loaded = browser.waitEvent("Page.loadEventFired")
        yield browser.send("Page.navigate", {"url": url}, session)
        yield loaded
        return session

    @inlineCallbacks
    def test_hostileNameRendersAsText(self):
        """
        A session whose user name is C{<img src=x onerror=alert(1)>} (in a
        channel, so it is drawn in the sessions, channels and events lists)
        shows as that text: the page has no img element and no dialog
        opened.
        """
        hostile = "<img src=x onerror=alert(1)>"
        serviceA, a, _, _ = yield startNode(self, reactor, "srv-a", web="tcp:0:interface=127.0.0.1")
        port = yield serviceA.getServiceNamed("web").whenListening()
        yield a.clientConnected("sx", 66, hostile, "10.0.0.66", [5])
        browser = yield self.startBrowser()
        session = yield self.openPage(browser, f"http://127.0.0.1:{port.getHost().port}/")
        yield self.waitFor(browser, session, '#sessions tr[data-session="sx"]')
        yield self.waitFor(browser, session, '#channels tr[data-channel="5"]')
        texts = yield self.evaluate(browser, session, """[
            document.querySelector('#sessions tr[data-session="sx"]').textContent,
            document.querySelector('#channels tr[data-channel="5"]').textContent,
            document.getElementById('events').textContent,
            document.querySelectorAll('img').length]""")
        self.assertIn(hostile, texts[0])
        self.assertIn(hostile + "@srv-a", texts[1])
        self.assertIn(hostile, texts[2])
        self.assertEqual(texts[3], 0)
        self.assertNotIn("Page.javascriptDialogOpening", browser.seenEvents)

    @inlineCallbacks
    def test_peerJoinsAndLeaves(self):
        """
        With the page open, srv-b linking shows a row srv-b "up" and srv-b
        stopping turns it "down", each within a second, in the same document
        (a marker set after load survives), and a screenshot is saved.
        """
        cond = Conditions(reactor)
        serviceA, a, portA, _ = yield startNode(
            self, reactor, "srv-a", conditions=cond, web="tcp:0:interface=127.0.0.1")
        port = yield serviceA.getServiceNamed("web").whenListening()
        url = f"http://127.0.0.1:{port.getHost().port}/"
        browser = yield self.startBrowser()
        session = yield self.openPage(browser, url)
        yield self.waitFor(browser, session, '#live.on')
        yield self.waitFor(browser, session, '#nodes tr[data-state="self"][data-peer="srv-a"]')
        yield self.evaluate(browser, session, "window.__sameDocument = 'yes'")
        self.assertEqual(
            (yield self.evaluate(browser, session, "document.querySelectorAll('#nodes tbody tr').length")),
            1)

        serviceB, b, _, _ = yield startNode(self, reactor, "srv-b", linkPorts(portA),
                                            conditions=cond)
        yield b.clientConnected("sb", 7, "luis", None, [4])
        yield cond.waitUntil(lambda: a.linkFor("srv-b") is not None, what="B linked to A")
        linked = time.monotonic()
        yield self.waitFor(browser, session, '#nodes tr[data-peer="srv-b"][data-state="up"]')
        upDelay = time.monotonic() - linked
        yield self.waitFor(browser, session, '#sessions tr[data-session="sb"]')
        yield self.waitFor(browser, session, '#channels tr[data-channel="4"]')

        yield serviceB.stopService()
        yield cond.waitUntil(lambda: a.linkFor("srv-b") is None, what="B gone from A")
        gone = time.monotonic()
        yield self.waitFor(browser, session, '#nodes tr[data-peer="srv-b"][data-state="down"]')
        downDelay = time.monotonic() - gone
        yield self.waitFor(browser, session, '#events li[data-kind="peerDisconnected"]')
        yield self.waitFor(browser, session, '#sessions tr[data-session="sb"]', present=False)
        yield self.waitFor(browser, session, '#channels tr[data-channel="4"]', present=False)
        self.assertEqual((yield self.evaluate(browser, session,
                                              "document.getElementById('health').textContent")
                          ).split(" ")[0], "degraded")

        self.assertEqual((yield self.evaluate(browser, session, "window.__sameDocument")), "yes")
        self.assertEqual(
            (yield self.evaluate(browser, session,
                                 "document.querySelector('#nodes tr[data-peer=\"srv-b\"] .state').textContent")),
            "down")
        shot = yield browser.send("Page.captureScreenshot", {"format": "png"}, session)
        png = base64.b64decode(shot["data"])
        self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
        path = os.path.abspath("browser-status-page.png")
        with open(path, "wb") as f:
            f.write(png)
        print(f"\nstatus page screenshot: {path} "
              f"(peer up shown {upDelay * 1000:.0f} ms, down {downDelay * 1000:.0f} ms after the link changed)")
        self.assertLess(upDelay, 1.0)
        self.assertLess(downDelay, 1.0)
