"""
The package layout keeps its promises: dependencies point one way between
the layer packages, no module imports itself back in a cycle, modules stay
small enough to read, and the names documented for plugins keep working
from their old modules.

The import graph is read from the source with L{ast} (nothing is imported
to build it); imports under C{if TYPE_CHECKING:} are annotations only and
are left out.
"""

from __future__ import annotations

import ast
import shutil
import tempfile
import textwrap
from pathlib import Path

from twisted.trial import unittest

PACKAGE = Path(__file__).resolve().parent.parent / "clustersync"

#: Each layer's rank: a module may import from its own layer and from lower
#: ranks only (docs/architecture.md draws the same picture).
RANKS = {
    "errors": 0,
    "interfaces": 0,
    "waiters": 0,
    "pluginspace": 0,
    "wire": 1,
    "state": 2,
    "links": 3,
    "handlers": 4,
    "cluster": 5,
    "gateway": 6,
    "web": 6,
    "app": 7,
    "plugins": 8,
    "cli": 8,
    "bench": 8,
    "backplane": 6,
}

#: Compatibility modules (top-level names from before the layer packages):
#: old name -> home module.
COMPAT = {
    "codec": "wire.codec",
    "node": "cluster.node",
    "config": "app.config",
    "pluginload": "app.pluginload",
    "logs": "app.logs",
}

#: Longest a module may grow, in lines.
MAX_LINES = 450


def moduleName(path: Path) -> str:
    """The dotted name of the module in C{path} (under L{PACKAGE})."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sourceModules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    return {moduleName(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _typeCheckingBlocks(tree: ast.AST) -> set[int]:
    """The ids of the import nodes under C{if TYPE_CHECKING:}."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for inner in node.body:
                for n in ast.walk(inner):
                    skipped.add(id(n))
    return skipped


def importsOf(path: Path, modules: dict[str, Path]) -> set[str]:
    """
    The clustersync modules that the module in C{path} imports at run time.
    """
    tree = ast.parse(path.read_text())
    skipped = _typeCheckingBlocks(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith("clustersync"):
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("clustersync"):
                    found.add(alias.name)
    return {m for m in found if m in modules}


def layerOf(module: str) -> str:
    """
    The layer of a dotted module name (its first part under clustersync).
    The C{clustersync.plugins} package itself is only the namespace
    C{getPlugins} searches (it imports nothing), apart from the drop-in
    modules in it.
    """
    if module == "clustersync.plugins":
        return "pluginspace"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "interfaces"


class LayerTests(unittest.TestCase):
    """
    The import graph of the package follows the layers.
    """

    def setUp(self) -> None:
        self.modules = sourceModules()
        self.graph = {m: importsOf(p, self.modules) for m, p in self.modules.items()}

    def test_everyModuleHasALayer(self) -> None:
        """
        Every module belongs to a known layer (a new package gets a rank
        here and a place in docs/architecture.md).
        """
        unknown = sorted(
            m for m in self.modules
            if layerOf(m) not in RANKS and layerOf(m) not in COMPAT
        )
        self.assertEqual(unknown, [])

    def test_dependenciesPointDown(self) -> None:
        """
        No module imports from a higher layer than its own.
        """
        upward = []
        for module, imported in self.graph.items():
            if layerOf(module) in COMPAT:
                continue
            rank = RANKS[layerOf(module)]
            for target in imported:
                if layerOf(target) in COMPAT:
                    upward.append((module, target))
                elif RANKS[layerOf(target)] > rank:
                    upward.append((module, target))
        self.assertEqual(sorted(upward), [])

    def test_noImportCycle(self) -> None:
        """
        The module import graph has no cycle.
        """
        cycles = []
        state: dict[str, int] = {}

        def visit(module: str, stack: list[str]) -> None:
            state[module] = 1
            stack.append(module)
            for target in sorted(self.graph[module]):
                if state.get(target) == 1:
                    cycles.append(stack[stack.index(target):] + [target])
                elif target not in state:
                    visit(target, stack)
            stack.pop()
            state[module] = 2

        for module in sorted(self.graph):
            if module not in state:
                visit(module, [])
        self.assertEqual(cycles, [])

    def test_wireAndStateHaveNoTwisted(self) -> None:
        """
        The codec and the state import nothing of Twisted, so they are
        tested (and reusable) without a reactor.
        """
        offenders = []
        for module, path in self.modules.items():
            if layerOf(module) not in ("wire", "state"):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                offenders += [(module, n) for n in names if n.split(".")[0] == "twisted"]
        self.assertEqual(offenders, [])

    def test_modulesAreSmall(self) -> None:
        """
        No module is longer than L{MAX_LINES} lines.
        """
        big = sorted(
            (m, n) for m, p in self.modules.items()
            if (n := len(p.read_text().splitlines())) > MAX_LINES
        )
        self.assertEqual(big, [])


class CompatibilityTests(unittest.TestCase):
    """
    The module names documented before the layer packages still work, and
    give the very same objects as their home modules.
    """

    def test_sameObjects(self) -> None:
        """
        Every name a compatibility module exports is its home's object.
        """
        import importlib

        for old, home in COMPAT.items():
            oldModule = importlib.import_module(f"clustersync.{old}")
            homeModule = importlib.import_module(f"clustersync.{home}")
            self.assertEqual(oldModule.__all__, homeModule.__all__)
            for name in homeModule.__all__:
                self.assertIs(getattr(oldModule, name), getattr(homeModule, name), (old, name))

    def test_documentedNames(self) -> None:
        """
        The names docs/plugins.md lists import from where it says.
        """
        from clustersync.codec import Hello, SyncState, decode, encode  # noqa: F401
        from clustersync.config import ConfigError, NodeConfig, loadConfig  # noqa: F401
        from clustersync.errors import UnknownUser  # noqa: F401
        from clustersync.interfaces import ICluster, IMessageHandler  # noqa: F401
        from clustersync.logs import jsonObserver
        from clustersync.node import ClusterNode  # noqa: F401
        from clustersync.pluginload import loadExtensions, loadHandlers  # noqa: F401
        from clustersync.state import ClusterState, StateLimitError  # noqa: F401

        self.assertTrue(callable(jsonObserver))

    def test_pluginImportingOldNames(self) -> None:
        """
        A plugin written against the documented pre-layout names loads and
        handles a message: it encodes with C{clustersync.codec} and reads the
        node's config, a L{clustersync.config.NodeConfig}.
        """
        from clustersync.app.pluginload import loadHandlers
        from clustersync.wire.codec import Broadcast, BroadcastPayload, rawMessage

        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        source = textwrap.dedent('''
            from twisted.plugin import IPlugin
            from zope.interface import implementer

            from clustersync.codec import encode
            from clustersync.config import NodeConfig
            from clustersync.interfaces import IMessageHandler
            from clustersync.node import ClusterNode


            @implementer(IPlugin, IMessageHandler)
            class Echo:
                name = "compat.echo"
                messageTypes = ("BROADCAST",)

                def __init__(self):
                    self.seen = []

                def handleMessage(self, node, link, message):
                    self.seen.append((isinstance(node, ClusterNode),
                                      isinstance(node.config, NodeConfig),
                                      encode(message)))


            echo = Echo()
        ''')
        Path(directory, "compat_echo.py").write_text(source)
        handlers, failures = loadHandlers([directory])
        self.assertEqual(failures, [])
        (echo,) = [h for h in handlers if h.name == "compat.echo"]

        from twisted.internet.task import Clock

        from clustersync.app.config import NodeConfig
        from clustersync.cluster.node import ClusterNode

        node = ClusterNode(
            NodeConfig(serverId="srv-a", listen=None, clients=None, web=None), Clock(), handlers)
        message = Broadcast(origin="srv-b", payload=BroadcastPayload(message=rawMessage("hi")))
        echo.handleMessage(node, None, message)
        self.assertEqual(len(echo.seen), 1)
        isNode, isConfig, line = echo.seen[0]
        self.assertEqual((isNode, isConfig), (True, True))
        self.assertIn(b"BROADCAST", line)


class StandAloneTests(unittest.TestCase):
    """
    The repository stands alone in a fresh clone: no file points to a path
    outside it, and the documents' relative links resolve.
    """

    def trackedTexts(self):
        """Every tracked text file of the repository: (path, text)."""
        root = PACKAGE.parent
        for pattern in ("*.md", "docs/*.md", "clustersync/**/*.py", "tests/**/*.py",
                        "Makefile", "pyproject.toml", "contrib/**/*"):
            for path in root.glob(pattern):
                if path.is_file() and ".venv" not in path.parts:
                    yield path, path.read_text(errors="replace")

    def test_noPathOutside(self) -> None:
        """
        Nothing names C{../shared} or the spec files kept outside the
        repository; docs/protocol.md is the protocol document.
        """
        offenders = [
            str(path) for path, text in self.trackedTexts()
            if path.name != "test_layers.py"
            and ("../shared" in text or "peer-protocol.md" in text or "NOTES.md" in text)
        ]
        self.assertEqual(offenders, [])

    def test_markdownLinksResolve(self) -> None:
        """
        Every relative link in README.md, CONTRIBUTING.md and docs/*.md
        names a file of the repository.
        """
        import re

        root = PACKAGE.parent
        broken = []
        for path in [root / "README.md", root / "CONTRIBUTING.md", *root.glob("docs/*.md")]:
            for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
                if "://" in target or target.startswith("mailto:"):
                    continue
                resolved = (path.parent / target).resolve()
                if not resolved.exists() or root not in resolved.parents:
                    broken.append((path.name, target))
        self.assertEqual(broken, [])
