"""
Tests for L{clustersync.app.config.loadConfig} (defaults, TOML file, overrides,
validation naming the key) and the C{twistd clustersync} options of
L{clustersync.app.tap}.
"""

from __future__ import annotations

import os
import textwrap

from twisted.python import usage
from twisted.trial import unittest

from clustersync.app.config import (
    DEFAULT_CLIENTS,
    DEFAULT_GC_THRESHOLDS,
    DEFAULT_LISTEN,
    KEYS,
    ConfigError,
    NodeConfig,
    loadConfig,
)
from clustersync.app.tap import Options


class TomlMixin:
    """Writes TOML files in the test's temp dir."""

    def toml(self, text: str | bytes) -> str:
        """A new file holding C{text}; return its path."""
        path = os.path.abspath(self.mktemp())
        data = text if isinstance(text, bytes) else textwrap.dedent(text).encode("utf-8")
        with open(path, "wb") as f:
            f.write(data)
        return path


class DefaultTests(unittest.SynchronousTestCase):
    """Defaults run one node on loopback with no file."""

    def test_defaults(self):
        """
        With no file and no override, every setting is the L{NodeConfig}
        default: loopback listen and clients endpoints, no peer, no plugin
        directory, and the documented timeouts and limits.
        """
        config = loadConfig()
        self.assertEqual(config, NodeConfig())
        self.assertTrue(config.serverId.startswith("srv-"))
        self.assertEqual(config.listen, DEFAULT_LISTEN)
        self.assertEqual(config.clients, DEFAULT_CLIENTS)
        self.assertEqual(DEFAULT_LISTEN, "tcp:7001:interface=127.0.0.1")
        self.assertEqual(DEFAULT_CLIENTS, "tcp:7002:interface=127.0.0.1")
        self.assertEqual((config.peers, config.pluginDirs), ([], []))
        self.assertEqual(config.handshakeTimeout, 10.0)
        self.assertFalse(config.eagerHello)
        self.assertEqual(config.maxSyncLength, 256 * 1024 * 1024)
        self.assertEqual(config.maxMessageLength, 1024 * 1024)
        self.assertEqual(config.maxSessionsPerServer, 1_000_000)
        self.assertEqual(config.maxChannelsPerSession, 10_000)
        self.assertEqual(config.reconnectMaxDelay, 30.0)
        self.assertEqual(config.connectTimeout, 10.0)
        self.assertEqual(config.gcThresholds, (50_000, 10, 10))
        self.assertEqual(config.gcThresholds, DEFAULT_GC_THRESHOLDS)

    def test_noneOverridesIgnored(self):
        """An override of C{None} means "not given"."""
        self.assertEqual(loadConfig(None, {k: None for k in KEYS}), NodeConfig())

    def test_everyKeyHasAnAttribute(self):
        """Every TOML key maps to the camelCase attribute of L{NodeConfig}."""
        names = {f.name for f in NodeConfig.__attrs_attrs__}
        for key in KEYS:
            head, *rest = key.split("_")
            self.assertIn(head + "".join(p.capitalize() for p in rest), names, key)


class FileTests(TomlMixin, unittest.SynchronousTestCase):
    """Values from a TOML file, and command-line overrides on top."""

    def test_fileValues(self):
        """Every kind of value is read from the file."""
        path = self.toml("""
            server_id = "srv-a"
            listen = "tcp:7101:interface=127.0.0.1"
            clients = "tcp:7102"
            peers = ["127.0.0.1:7201", "[::1]:7301", "node-b.example:7001"]
            plugin_dirs = ["/opt/plugins"]
            handshake_timeout = 2.5
            eager_hello = true
            max_sync_length = 1000
            max_sessions_per_server = 50
            max_channels_per_session = 0
            reconnect_max_delay = 5
        """)
        config = loadConfig(path)
        self.assertEqual(config.serverId, "srv-a")
        self.assertEqual(config.listen, "tcp:7101:interface=127.0.0.1")
        self.assertEqual(config.clients, "tcp:7102")
        self.assertEqual(config.peers, ["127.0.0.1:7201", "[::1]:7301", "node-b.example:7001"])
        self.assertEqual(config.pluginDirs, ["/opt/plugins"])
        self.assertEqual(config.handshakeTimeout, 2.5)
        self.assertTrue(config.eagerHello)
        self.assertEqual(config.maxSyncLength, 1000)
        self.assertEqual(config.maxSessionsPerServer, 50)
        self.assertIsNone(config.maxChannelsPerSession)
        self.assertEqual(config.reconnectMaxDelay, 5.0)
        self.assertIsInstance(config.reconnectMaxDelay, float)

    def test_nodeTable(self):
        """
        Settings may sit in a C{[node]} table; a top-level key beats the
        same key in the table.
        """
        path = self.toml("""
            handshake_timeout = 3
            [node]
            server_id = "srv-t"
            handshake_timeout = 9
        """)
        config = loadConfig(path)
        self.assertEqual((config.serverId, config.handshakeTimeout), ("srv-t", 3.0))

    def test_overridesBeatFile(self):
        """An override replaces the file's value; other file values stay."""
        path = self.toml("""
            server_id = "srv-file"
            peers = ["127.0.0.1:1"]
            handshake_timeout = 4
        """)
        config = loadConfig(path, {"server_id": "srv-cli", "peers": ["127.0.0.1:2"],
                                   "handshake_timeout": None})
        self.assertEqual(config.serverId, "srv-cli")
        self.assertEqual(config.peers, ["127.0.0.1:2"])
        self.assertEqual(config.handshakeTimeout, 4.0)

    def test_disableWithEmptyOrNone(self):
        """C{""} or C{"none"} (any case) disables an endpoint."""
        path = self.toml("""
            listen = ""
            clients = "None"
            web = "none"
        """)
        config = loadConfig(path)
        self.assertEqual((config.listen, config.clients, config.web), (None, None, None))

    def test_stringsFromCommandLine(self):
        """Numbers and booleans given as strings are converted."""
        config = loadConfig(None, {"handshake_timeout": "0.5", "max_sync_length": "64",
                                   "eager_hello": "yes"})
        self.assertEqual((config.handshakeTimeout, config.maxSyncLength, config.eagerHello),
                         (0.5, 64, True))

    def test_singlePeerString(self):
        """A single peer may be given as a string instead of a list."""
        self.assertEqual(loadConfig(None, {"peers": "10.0.0.2:7001"}).peers, ["10.0.0.2:7001"])

    def test_pluginDirsExpandUser(self):
        """C{~} in a plugin directory is expanded."""
        config = loadConfig(None, {"plugin_dirs": ["~/plugins"]})
        self.assertEqual(config.pluginDirs, [os.path.expanduser("~/plugins")])
        self.assertFalse(config.pluginDirs[0].startswith("~"))

    def test_gcThresholds(self):
        """
        C{gc_thresholds} takes one to three positive whole numbers, as a
        TOML list or a comma-separated string; C{"none"} or an empty list
        leaves the process's thresholds alone (C{None}).
        """
        config = loadConfig(self.toml("gc_thresholds = [20000, 5, 7]\n"))
        self.assertEqual(config.gcThresholds, (20000, 5, 7))
        for value, expected in [([1000], (1000,)), ("30000,10", (30000, 10)),
                                ("none", None), ("", None), ([], None)]:
            self.assertEqual(loadConfig(None, {"gc_thresholds": value}).gcThresholds,
                             expected, value)

    def test_zeroMeansUnbounded(self):
        """0 for a session or channel limit means no limit."""
        config = loadConfig(None, {"max_sessions_per_server": 0,
                                   "max_channels_per_session": "0"})
        self.assertEqual((config.maxSessionsPerServer, config.maxChannelsPerSession),
                         (None, None))


class BadValueTests(TomlMixin, unittest.SynchronousTestCase):
    """Every bad value raises L{ConfigError} naming its key."""

    def assertBad(self, key: str, value) -> ConfigError:
        """
        Loading C{key = value} (as an override) raises L{ConfigError} whose
        C{key} and message name C{key}.
        """
        e = self.assertRaises(ConfigError, loadConfig, None, {key: value})
        self.assertEqual(e.key, key, f"{key}={value!r}: {e}")
        self.assertTrue(str(e).startswith(key + ": "), str(e))
        return e

    def test_unknownKey(self):
        """An unknown key is named, and the known ones are listed."""
        e = self.assertBad("server_name", "x")
        self.assertIn("unknown setting", str(e))
        self.assertIn("server_id", str(e))

    def test_unknownKeyInFile(self):
        """
        An unknown key in the file, in the C{[node]} table, or a table
        other than C{[node]}, is named.
        """
        for text, key in [('tls = 1\n', "tls"), ('[node]\nlistn = "tcp:1"\n', "listn"),
                          ('[peers_table]\na = 1\n', "peers_table"),
                          ('node = "x"\n', "node")]:
            e = self.assertRaises(ConfigError, loadConfig, self.toml(text))
            self.assertEqual(e.key, key)

    def test_badPeers(self):
        """Every peer must be C{host:port} with a port in 1..65535."""
        for value in ["localhost", "host:", ":7001", "host:0", "host:65536", "host:abc",
                      "host:-1", "host:70 ", ["127.0.0.1:1", "bad"], 5, [5], [""]]:
            e = self.assertBad("peers", value)
            if isinstance(value, str):
                self.assertIn(repr(value), str(e))

    def test_nonPositiveNumbers(self):
        """
        Timeouts, delays and sizes must be positive finite numbers; sizes
        whole numbers.
        """
        for key in ("handshake_timeout", "reconnect_max_delay", "connect_timeout",
                    "max_sync_length", "max_message_length"):
            for value in (0, -1, -0.5, "abc", "", True, False, float("nan"),
                          float("inf"), "nan", "-inf", [1], {}):
                self.assertBad(key, value)
        for key in ("max_sync_length", "max_message_length"):
            self.assertBad(key, 1.5)
            self.assertBad(key, "1.5")

    def test_badLimits(self):
        """Session and channel limits refuse negatives, fractions and booleans."""
        for key in ("max_sessions_per_server", "max_channels_per_session"):
            for value in (-1, 2.5, "x", True, False):
                self.assertBad(key, value)

    def test_badGcThresholds(self):
        """
        C{gc_thresholds} refuses zero (it would turn automatic collection
        off), negatives, fractions, booleans, more than three values and
        anything that is not a list of numbers.
        """
        for value in ([0], [700, 0, 10], [-1], [1.5], [True], [1, 2, 3, 4], "a,b", "1,,2",
                      5, {"a": 1}, [[1]], ["700"]):
            e = self.assertBad("gc_thresholds", value)
            self.assertIn("gc_thresholds", str(e))

    def test_badBool(self):
        """C{eager_hello} accepts only booleans (or yes/no strings)."""
        for value in ("maybe", 1, 0, "", [True]):
            self.assertBad("eager_hello", value)

    def test_badServerId(self):
        """A server id must be a non-empty string without spaces."""
        for value in ("", "   ", "a b", "a\tb", 5, [], "x" * 256):
            self.assertBad("server_id", value)

    def test_badEndpoint(self):
        """An endpoint that does not parse is named with its key."""
        for key in ("listen", "clients"):
            for value in ("bogus:7001", "tcp:abc", "tcp:7001:nosuchoption=1", 7001):
                self.assertBad(key, value)

    def test_badPluginDirs(self):
        """C{plugin_dirs} must be a list of non-empty strings."""
        for value in (5, [""], [1], {"a": "b"}):
            self.assertBad("plugin_dirs", value)

    def test_nonFiniteInFile(self):
        """TOML's C{nan} and C{inf} are refused (and never crash)."""
        for text, key in [("handshake_timeout = nan\n", "handshake_timeout"),
                          ("max_sync_length = inf\n", "max_sync_length"),
                          ("max_sessions_per_server = -inf\n", "max_sessions_per_server")]:
            e = self.assertRaises(ConfigError, loadConfig, self.toml(text))
            self.assertEqual(e.key, key)

    def test_missingFile(self):
        """A file that cannot be read is a C{config} error naming the path."""
        path = os.path.abspath(self.mktemp())
        e = self.assertRaises(ConfigError, loadConfig, path)
        self.assertEqual(e.key, "config")
        self.assertIn(path, str(e))
        os.makedirs(path)
        e = self.assertRaises(ConfigError, loadConfig, path)
        self.assertEqual(e.key, "config")

    def test_invalidToml(self):
        """Invalid TOML is a C{config} error naming the file and the line."""
        path = self.toml('server_id = "srv-a"\nlisten = \n')
        e = self.assertRaises(ConfigError, loadConfig, path)
        self.assertEqual(e.key, "config")
        self.assertIn("not valid TOML", str(e))
        self.assertIn("line 2", str(e))

    def test_notUtf8(self):
        """A file that is not UTF-8 is a C{config} error, not a crash."""
        e = self.assertRaises(ConfigError, loadConfig, self.toml(b'server_id = "\xff"\n'))
        self.assertEqual(e.key, "config")

    def test_configErrorIsValueError(self):
        """L{ConfigError} is a C{ValueError} carrying the key."""
        e = ConfigError("listen", "bad")
        self.assertIsInstance(e, ValueError)
        self.assertEqual((e.key, str(e)), ("listen", "listen: bad"))


class OptionsTests(TomlMixin, unittest.SynchronousTestCase):
    """The C{twistd clustersync} command line."""

    def parse(self, *args: str) -> NodeConfig:
        """Parse C{args}; return the resulting configuration."""
        options = Options()
        options.parseOptions(list(args))
        return options.config

    def test_noArguments(self):
        """No argument gives the defaults."""
        self.assertEqual(self.parse(), NodeConfig())

    def test_everyOption(self):
        """Each option sets its key."""
        config = self.parse(
            "--server-id", "srv-x", "--listen", "tcp:7101", "--clients", "tcp:7102",
            "--users-file", "/etc/users", "--handshake-timeout", "3", "--eager-hello",
            "--web", "tcp:7103", "--web-insecure", "--web-open-metrics",
            "--web-host", "status.lan", "--web-host", "b.lan", "--max-sessions-per-user", "3")
        self.assertEqual(
            (config.serverId, config.listen, config.clients, config.usersFile,
             config.handshakeTimeout, config.eagerHello, config.web),
            ("srv-x", "tcp:7101", "tcp:7102", "/etc/users", 3.0, True, "tcp:7103"))
        self.assertEqual(
            (config.webInsecure, config.webOpenMetrics, config.webHosts,
             config.maxSessionsPerUser),
            (True, True, ["status.lan", "b.lan"], 3))

    def test_shortOptions(self):
        """C{-i}, C{-l} and C{-c} are short for server id, listen and config."""
        path = self.toml('peers = ["127.0.0.1:9"]\n')
        config = self.parse("-i", "srv-s", "-l", "tcp:7111", "-c", path)
        self.assertEqual((config.serverId, config.listen, config.peers),
                         ("srv-s", "tcp:7111", ["127.0.0.1:9"]))

    def test_repeatable(self):
        """C{--peer} and C{--plugin-dir} may be given several times, in order."""
        config = self.parse("--peer", "127.0.0.1:7201", "--peer", "[::1]:7202",
                            "--plugin-dir", "/a", "--plugin-dir", "/b")
        self.assertEqual(config.peers, ["127.0.0.1:7201", "[::1]:7202"])
        self.assertEqual(config.pluginDirs, ["/a", "/b"])

    def test_configFileAndOverrides(self):
        """C{--config} reads the file; options beat it; the rest stays."""
        path = self.toml("""
            server_id = "srv-file"
            peers = ["127.0.0.1:1"]
            handshake_timeout = 4
        """)
        config = self.parse("--config", path, "--server-id", "srv-cli")
        self.assertEqual((config.serverId, config.peers, config.handshakeTimeout),
                         ("srv-cli", ["127.0.0.1:1"], 4.0))
        config = self.parse("--config", path, "--peer", "127.0.0.1:2")
        self.assertEqual(config.peers, ["127.0.0.1:2"])

    def test_noneDisables(self):
        """C{none} (any case) disables the peer listener and the client port."""
        config = self.parse("--listen", "none", "--clients", "NONE")
        self.assertEqual((config.listen, config.clients), (None, None))

    def test_badOptionNamesKey(self):
        """
        A bad value raises L{usage.UsageError} naming the option and the
        key.
        """
        for args, option, key in [
            (["--server-id", "a b"], "--server-id", "server_id"),
            (["--peer", "nohost"], "--peer", "peers"),
            (["--handshake-timeout", "-1"], "--handshake-timeout", "handshake_timeout"),
            (["--listen", "bogus:1"], "--listen", "listen"),
            (["--plugin-dir", ""], "--plugin-dir", "plugin_dirs"),
        ]:
            e = self.assertRaises(usage.UsageError, Options().parseOptions, args)
            self.assertIn(option, str(e))
            self.assertIn(key, str(e))

    def test_badFileNamesKey(self):
        """A bad value in the C{--config} file names its key."""
        path = self.toml('max_sync_length = "big"\n')
        e = self.assertRaises(usage.UsageError, Options().parseOptions, ["-c", path])
        self.assertIn("max_sync_length", str(e))
        e = self.assertRaises(usage.UsageError, Options().parseOptions,
                              ["-c", os.path.abspath(self.mktemp())])
        self.assertIn("config", str(e))

    def test_unknownOption(self):
        """An unknown option is a L{usage.UsageError}."""
        self.assertRaises(usage.UsageError, Options().parseOptions, ["--nope"])


class DocumentedExampleTests(unittest.SynchronousTestCase):
    """The example file of C{docs/configuration.md} loads as documented."""

    def test_exampleFile(self):
        """C{docs/examples/node-a.toml} loads, with the values it shows."""
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "docs", "examples", "node-a.toml")
        config = loadConfig(path)
        self.assertEqual(config.serverId, "srv-a")
        self.assertEqual(config.peers, ["127.0.0.1:7201", "127.0.0.1:7301"])
        self.assertEqual(config.pluginDirs, [os.path.expanduser("~/clustersync-plugins")])
        self.assertEqual((config.handshakeTimeout, config.reconnectMaxDelay,
                          config.maxSessionsPerServer), (5.0, 10.0, 100000))
        docs = os.path.join(os.path.dirname(os.path.dirname(path)), "configuration.md")
        with open(path, encoding="utf-8") as f, open(docs, encoding="utf-8") as d:
            self.assertIn(f.read().strip(), d.read())


class PeerKindAndLivenessSettingsTests(unittest.SynchronousTestCase):
    """The settings of peer kinds, liveness and the pre-HELLO bounds."""

    def test_defaults(self):
        """The documented defaults."""
        c = loadConfig()
        self.assertEqual(
            (c.extensions, c.clustersyncPeers, c.legacyHeartbeatLimit, c.digestInterval,
             c.maxHelloLength, c.maxHandshakeBuffers),
            ("tls", [], 5000, 30.0, 4096, 1024 * 1024))

    def test_keys(self):
        """Each TOML key sets its value; 0 turns digests and the legacy heartbeat off."""
        c = loadConfig(overrides={
            "extensions": "ALL", "clustersync_peers": ["srv-a"], "legacy_heartbeat_limit": 0,
            "digest_interval": 0, "max_hello_length": 1000, "max_handshake_buffers": 5000})
        self.assertEqual(
            (c.extensions, c.clustersyncPeers, c.legacyHeartbeatLimit, c.digestInterval,
             c.maxHelloLength, c.maxHandshakeBuffers),
            ("all", ["srv-a"], 0, 0.0, 1000, 5000))

    def test_badValues(self):
        """Bad values name their key."""
        for key, value in (("extensions", "some"), ("legacy_heartbeat_limit", -1),
                           ("max_hello_length", 0), ("clustersync_peers", [1]),
                           ("digest_interval", "soon")):
            e = self.assertRaises(ConfigError, loadConfig, None, {key: value})
            self.assertEqual(e.key, key)

    def test_options(self):
        """C{--extensions} and the repeatable C{--clustersync-peer}."""
        options = Options()
        options.parseOptions(["--extensions", "none", "--clustersync-peer", "srv-a",
                              "--clustersync-peer", "srv-c"])
        self.assertEqual((options.config.extensions, options.config.clustersyncPeers),
                         ("none", ["srv-a", "srv-c"]))
