"""
Tests for L{clustersync.app.pluginload}: the built-in handler set found with
L{twisted.plugin}, C{--plugin-dir} directories with good, broken, invalid
and no plugins, and the example plugin of C{docs/examples}, loaded into a
node built directly and into real nodes on loopback.
"""

from __future__ import annotations

import os
import shutil
import textwrap

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.plugin import getPlugins
from twisted.trial import unittest

import clustersync.plugins
from clustersync.wire.codec import decode
from clustersync.app.config import NodeConfig
from clustersync.handlers.builtin import BUILTIN_HANDLERS
from clustersync.interfaces import IMessageHandler
from clustersync.cluster.node import ClusterNode
from clustersync.app.pluginload import PluginFailure, loadExtensions, loadHandlers
from clustersync.app.service import makeNodeService

from tests.support import Conditions, RecordingDelivery, linkPorts, startNode

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "docs", "examples")

BUILTIN_NAMES = [
    "builtin.hello",
    "builtin.sync_state",
    "builtin.client_connected",
    "builtin.client_disconnected",
    "builtin.channel_membership",
    "builtin.direct_message",
    "builtin.channel_message",
    "builtin.session_message",
    "builtin.broadcast",
]

SPEC_ORDER = [
    "HELLO", "SYNC_STATE", "CLIENT_CONNECTED", "CLIENT_DISCONNECTED",
    "CHANNEL_MEMBERSHIP", "DIRECT_MESSAGE", "CHANNEL_MESSAGE",
    "SESSION_MESSAGE", "BROADCAST",
]

GOOD_PLUGIN = '''
"""A test handler plugin that records what it handles."""
from twisted.plugin import IPlugin
from zope.interface import implementer
from clustersync.interfaces import IMessageHandler

@implementer(IPlugin, IMessageHandler)
class Recorder:
    """Records (peer, type) of every message it is given."""
    messageTypes = ("BROADCAST", "DIRECT_MESSAGE")
    def __init__(self, name):
        self.name = name
        self.seen = []
    def handleMessage(self, node, link, message):
        """Record one message."""
        self.seen.append((node.serverId, link.serverId, type(message).__name__))

recorder = Recorder("test.recorder")
notAPlugin = object()
'''

BROKEN_PLUGIN = '''
"""A plugin that fails when imported."""
raise RuntimeError("this plugin is broken on purpose")
'''

SYNTAX_ERROR_PLUGIN = "def oops(:\n"

BAD_TYPE_PLUGIN = '''
"""A handler for a message type the codec does not know."""
from twisted.plugin import IPlugin
from zope.interface import implementer
from clustersync.interfaces import IMessageHandler

@implementer(IPlugin, IMessageHandler)
class Ping:
    """Handles a type that does not exist."""
    name = "test.ping"
    messageTypes = ("PING",)
    def handleMessage(self, node, link, message):
        """Never called."""

ping = Ping()
'''

EXTENSION_PLUGIN = '''
"""A node extension that adds a named service."""
from twisted.application.service import Service
from twisted.plugin import IPlugin
from zope.interface import implementer
from clustersync.interfaces import INodeExtension

@implementer(IPlugin, INodeExtension)
class Ext:
    """Adds one service."""
    name = "test-extension"
    def makeService(self, node, config, reactor):
        """A plain service that remembers the node."""
        s = Service()
        s.node = node
        return s

ext = Ext()
'''


class FakeLink:
    """The attributes of an L{IPeerLink} that dispatch and handlers read."""

    direction = "inbound"
    peerAddress = "127.0.0.1:1"

    def __init__(self, serverId: str) -> None:
        self.serverId = serverId


def broadcastLine(origin: str, body: bytes = b'{"tipo": "SERVER_ALERT"}') -> bytes:
    """One BROADCAST line from C{origin} carrying C{body}."""
    return (b'{"type":"BROADCAST","origin":"' + origin.encode()
            + b'","payload":{"message":' + body + b"}}")


class PluginDirMixin:
    """Makes temporary plugin directories with given files."""

    def pluginDir(self, **files: str) -> str:
        """
        A new directory (under the test's temp dir) holding C{name.py} for
        every C{name=source} given.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        for name, source in files.items():
            with open(os.path.join(directory, name + ".py"), "w") as f:
                f.write(textwrap.dedent(source))
        return directory

    def node(self, handlers, serverId: str = "srv-b") -> ClusterNode:
        """A L{ClusterNode} on a fake clock, recording local deliveries."""
        node = ClusterNode(
            NodeConfig(serverId=serverId, listen=None, clients=None, web=None), Clock(), handlers)
        self.delivery = RecordingDelivery()
        node.setLocalDelivery(self.delivery)
        return node


class BuiltinHandlerTests(unittest.SynchronousTestCase):
    """
    The built-in handlers are found with L{twisted.plugin.getPlugins}.
    """

    def test_exactBuiltinSet(self):
        """
        With no plugin directory, L{loadHandlers} gives exactly the nine
        built-in handlers, in spec order, and no failure.
        """
        handlers, failures = loadHandlers()
        self.assertEqual([h.name for h in handlers], BUILTIN_NAMES)
        self.assertEqual([h.messageTypes for h in handlers], [(t,) for t in SPEC_ORDER])
        self.assertEqual(failures, [])
        for found, builtin in zip(handlers, BUILTIN_HANDLERS):
            self.assertIs(found, builtin)

    def test_getPluginsFindsThem(self):
        """
        L{getPlugins} on L{clustersync.plugins} finds the nine built-in
        handlers (an import error there would be swallowed, so the names
        are checked one by one).
        """
        names = sorted(h.name for h in getPlugins(IMessageHandler, clustersync.plugins))
        self.assertEqual(names, sorted(BUILTIN_NAMES))

    def test_everyBuiltinProvidesInterface(self):
        """Each built-in handler provides L{IMessageHandler}."""
        for handler in loadHandlers()[0]:
            self.assertTrue(IMessageHandler.providedBy(handler), handler)


class PluginDirectoryTests(PluginDirMixin, unittest.SynchronousTestCase):
    """
    Handlers from C{--plugin-dir} directories.
    """

    def test_goodPlugin(self):
        """
        A good plugin comes after the built-ins; a module-level object that
        is not a plugin is ignored.
        """
        handlers, failures = loadHandlers([self.pluginDir(good=GOOD_PLUGIN)])
        self.assertEqual(failures, [])
        self.assertEqual([h.name for h in handlers], BUILTIN_NAMES + ["test.recorder"])

    def test_goodPluginInvoked(self):
        """
        Registered on a node, the plugin runs for its message types, after
        the built-in handler (which still delivers), and not for others.
        """
        handlers, _ = loadHandlers([self.pluginDir(good=GOOD_PLUGIN)])
        recorder = handlers[-1]
        node = self.node(handlers)
        node.clientConnected("s1", 1, "ana")
        link = FakeLink("srv-a")
        node.dispatch(link, decode(broadcastLine("srv-a")))
        self.assertEqual(recorder.seen, [("srv-b", "srv-a", "Broadcast")])
        self.assertEqual(self.delivery.delivered,
                         [(["s1"], b'{"tipo": "SERVER_ALERT"}', "BROADCAST", "srv-a")])
        node.dispatch(link, decode(
            b'{"type":"DIRECT_MESSAGE","origin":"srv-a","payload":{"userId":1,"message":1}}'))
        self.assertEqual(recorder.seen[-1], ("srv-b", "srv-a", "DirectMessage"))
        node.dispatch(link, decode(
            b'{"type":"CLIENT_DISCONNECTED","origin":"srv-a","payload":{"clienteId":1}}'))
        self.assertEqual(len(recorder.seen), 2)

    def test_brokenPluginReported(self):
        """
        A file that raises on import and one with a syntax error are each
        reported by path with the error; the good file still loads.
        """
        directory = self.pluginDir(good=GOOD_PLUGIN, broken=BROKEN_PLUGIN,
                                   syntax=SYNTAX_ERROR_PLUGIN)
        handlers, failures = loadHandlers([directory])
        self.assertEqual([h.name for h in handlers], BUILTIN_NAMES + ["test.recorder"])
        self.assertEqual([f.path for f in failures],
                         [os.path.join(directory, "broken.py"),
                          os.path.join(directory, "syntax.py")])
        self.assertIn("RuntimeError: this plugin is broken on purpose", failures[0].error)
        self.assertIn("SyntaxError", failures[1].error)

    def test_brokenPluginReportedAgain(self):
        """
        A broken file is reported on every load, not only the first (it is
        not left half-imported in L{sys.modules}).
        """
        directory = self.pluginDir(broken=BROKEN_PLUGIN)
        first = loadHandlers([directory])[1]
        second = loadHandlers([directory])[1]
        self.assertEqual(first, second)
        self.assertEqual(len(second), 1)

    def test_nodeBuildsWithBrokenPlugin(self):
        """
        L{makeNodeService} builds a node despite broken and invalid
        plugins; the node service lists the failures and the node has the
        built-ins and the good plugin.
        """
        directory = self.pluginDir(good=GOOD_PLUGIN, broken=BROKEN_PLUGIN, ping=BAD_TYPE_PLUGIN)
        config = NodeConfig(serverId="srv-x", listen=None, clients=None, web=None,
                            pluginDirs=[directory])
        top = makeNodeService(config, MemoryReactor())
        failures = top.getServiceNamed("node").pluginFailures
        self.assertEqual(sorted(os.path.basename(f.path) for f in failures),
                         ["broken.py", "ping.py"])
        self.assertEqual([h.name for h in top.node.handlers], BUILTIN_NAMES + ["test.recorder"])

    def test_unknownMessageTypeRefused(self):
        """
        A handler naming a type the codec does not know is a failure that
        names it, not a node that cannot start.
        """
        directory = self.pluginDir(ping=BAD_TYPE_PLUGIN)
        handlers, failures = loadHandlers([directory])
        self.assertEqual([h.name for h in handlers], BUILTIN_NAMES)
        self.assertEqual(failures, [PluginFailure(
            os.path.join(directory, "ping.py"),
            "handler 'test.ping': unknown message type(s) 'PING'")])

    def test_emptyDirectory(self):
        """An empty directory adds nothing and fails nothing."""
        self.assertEqual(loadHandlers([self.pluginDir()]), (list(BUILTIN_HANDLERS), []))

    def test_missingDirectory(self):
        """A directory that does not exist is one failure; built-ins load."""
        missing = os.path.abspath(self.mktemp())
        handlers, failures = loadHandlers([missing])
        self.assertEqual([h.name for h in handlers], BUILTIN_NAMES)
        self.assertEqual(failures, [PluginFailure(missing, "not a directory")])

    def test_ignoredFiles(self):
        """
        Files starting with C{_}, non-C{.py} files and names that are not
        identifiers are not imported (a broken one would be reported).
        """
        directory = self.pluginDir(_private=BROKEN_PLUGIN, **{"not-ident": BROKEN_PLUGIN})
        with open(os.path.join(directory, "notes.txt"), "w") as f:
            f.write("raise RuntimeError")
        self.assertEqual(loadHandlers([directory]), (list(BUILTIN_HANDLERS), []))

    def test_sameFileNameInTwoDirectories(self):
        """
        Two directories with a file of the same name load both, as distinct
        modules.
        """
        one = self.pluginDir(good=GOOD_PLUGIN)
        two = self.pluginDir(good=GOOD_PLUGIN.replace("test.recorder", "test.other"))
        handlers, failures = loadHandlers([one, two])
        self.assertEqual(failures, [])
        self.assertEqual([h.name for h in handlers][9:], ["test.recorder", "test.other"])
        self.assertIsNot(handlers[9], handlers[10])

    def test_noLeakAcrossLoads(self):
        """
        Loading a directory once does not add its handlers to later loads
        without it (another node in the same process).
        """
        loadHandlers([self.pluginDir(good=GOOD_PLUGIN)])
        self.assertEqual(loadHandlers(), (list(BUILTIN_HANDLERS), []))

    def test_sameDirectoryTwice(self):
        """Loading one directory twice gives the same handler objects."""
        directory = self.pluginDir(good=GOOD_PLUGIN)
        self.assertIs(loadHandlers([directory])[0][-1], loadHandlers([directory])[0][-1])

    def test_noDropinCacheWritten(self):
        """Loading a plugin directory writes nothing into it."""
        directory = self.pluginDir(good=GOOD_PLUGIN)
        loadHandlers([directory])
        loadExtensions([directory])
        self.assertEqual(sorted(f for f in os.listdir(directory) if f != "__pycache__"),
                         ["good.py"])

    def test_extensionFromDirectory(self):
        """
        An L{INodeExtension} in a plugin directory is found by
        L{loadExtensions} and its service is added to the node.
        """
        directory = self.pluginDir(ext=EXTENSION_PLUGIN, broken=BROKEN_PLUGIN)
        self.assertIn("test-extension", [e.name for e in loadExtensions([directory])])
        self.assertNotIn("test-extension", [e.name for e in loadExtensions()])
        config = NodeConfig(serverId="srv-x", listen=None, clients=None, web=None,
                            pluginDirs=[directory])
        top = makeNodeService(config, MemoryReactor())
        self.assertIs(top.getServiceNamed("test-extension").node, top.node)


class ExamplePluginTests(PluginDirMixin, unittest.SynchronousTestCase):
    """
    The example plugin of C{docs/examples}, loaded as a plugin directory.
    """

    def exampleDir(self) -> str:
        """A temporary copy of C{docs/examples} (its C{.py} files)."""
        directory = self.pluginDir()
        for name in os.listdir(EXAMPLES):
            if name.endswith(".py"):
                shutil.copy(os.path.join(EXAMPLES, name), directory)
        return directory

    def test_loads(self):
        """Every example file loads without failure."""
        handlers, failures = loadHandlers([self.exampleDir()])
        self.assertEqual(failures, [])
        self.assertIn("example.broadcast_audit", [h.name for h in handlers])

    def test_countsBroadcasts(self):
        """
        The audit handler counts BROADCASTs per origin and keeps the last
        raw message, while the built-in handler still delivers it.
        """
        handlers, _ = loadHandlers([self.exampleDir()])
        audit = handlers[-1]
        self.assertEqual((audit.name, audit.total), ("example.broadcast_audit", 0))
        node = self.node(handlers)
        node.clientConnected("s1", 1, "ana")
        node.dispatch(FakeLink("srv-a"), decode(broadcastLine("srv-a", b'{"n": 1}')))
        node.dispatch(FakeLink("srv-a"), decode(broadcastLine("srv-a", b'{"n": 2}')))
        node.dispatch(FakeLink("srv-c"), decode(broadcastLine("srv-c", b'{"n": 3}')))
        self.assertEqual(dict(audit.counts), {"srv-a": 2, "srv-c": 1})
        self.assertEqual(audit.total, 3)
        self.assertEqual(audit.lastMessage, b'{"n": 3}')
        self.assertEqual(len(self.delivery.delivered), 3)


class CheckLaterDelivery(RecordingDelivery):
    """
    Records deliveries and re-checks the conditions once the whole
    dispatch (every handler of the message) has run.
    """

    def __init__(self, conditions: Conditions) -> None:
        super().__init__(None)
        self.waiting = conditions

    def deliver(self, sessions, message, kind, origin) -> int:
        """Record, then schedule a re-check on the next reactor turn."""
        n = super().deliver(sessions, message, kind, origin)
        reactor.callLater(0, self.waiting.check)
        return n


class ExamplePluginClusterTests(PluginDirMixin, unittest.TestCase):
    """
    The example plugin on real nodes linked on loopback.
    """

    timeout = 30

    exampleDir = ExamplePluginTests.exampleDir

    @inlineCallbacks
    def test_realNodes(self):
        """
        Node B runs with the example directory as its plugin dir; a
        BROADCAST from node A is delivered on B and counted by the audit
        handler as coming from srv-a.
        """
        cond = Conditions(reactor)
        _, a, portA, _ = yield startNode(self, reactor, "srv-a", conditions=cond)
        _, b, _, _ = yield startNode(self, reactor, "srv-b", linkPorts(portA),
                                     conditions=cond, pluginDirs=[self.exampleDir()])
        delivery = CheckLaterDelivery(cond)
        b.setLocalDelivery(delivery)
        (audit,) = [h for h in b.handlers if h.name == "example.broadcast_audit"]
        self.assertNotIn("example.broadcast_audit", [h.name for h in a.handlers])
        yield b.clientConnected("s-b", 7, "bea")
        yield cond.waitUntil(
            lambda: b.linkFor("srv-a") is not None and a.state.session("srv-b", "s-b") is not None,
            what="B linked to A and its session known on A")
        result = yield a.broadcast({"tipo": "SERVER_ALERT"})
        self.assertEqual(result.servers, ("srv-b",))
        yield cond.waitUntil(lambda: audit.total == 1, what="audit counted the BROADCAST")
        self.assertEqual(dict(audit.counts), {"srv-a": 1})
        self.assertEqual(audit.lastMessage, b'{"tipo":"SERVER_ALERT"}')
        self.assertEqual(delivery.delivered,
                         [(["s-b"], b'{"tipo":"SERVER_ALERT"}', "BROADCAST", "srv-a")])
