"""
Discovery of L{IMessageHandler} and L{INodeExtension} plugins.

Built-in plugins are L{twisted.plugin} drop-ins of L{clustersync.plugins},
found with L{twisted.plugin.getPlugins}.

Each C{--plugin-dir} holds drop-in files written exactly the same way (a
module whose module-level objects provide L{IPlugin} and the interface).
clustersync imports each C{.py} file of such a directory itself, as a
module of a package private to that directory, and collects its providers
as L{getPlugins} would.  Doing the import itself, rather than through
L{getPlugins}, is what lets a file that fails to import be reported by name
and skipped (L{getPlugins} only logs and swallows the error), keeps two
directories with a file of the same name apart, keeps one node's
directories from leaking into another node built in the same process, and
writes no C{dropin.cache} into the plugin directory.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import types

import attrs
from twisted.logger import Logger
from twisted.plugin import IPlugin, getPlugins

from clustersync.wire.codec import MESSAGE_TYPES
from clustersync.interfaces import IMessageHandler, INodeExtension

__all__ = ["PluginFailure", "loadHandlers", "loadExtensions"]

_log = Logger()


@attrs.frozen
class PluginFailure:
    """
    A plugin file (or directory) that could not be used.

    @ivar path: the file or directory.
    @ivar error: why, as text (the exception for a failed import).
    """

    path: str
    error: str


def _package(directory: str) -> types.ModuleType:
    """
    The package whose C{__path__} is C{directory}, created once per
    directory (its name is derived from the absolute path).
    """
    path = os.path.realpath(directory)
    digest = hashlib.sha1(path.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    name = f"clustersync_plugindir_{digest}"
    package = sys.modules.get(name)
    if package is None:
        package = types.ModuleType(name, f"clustersync plugin directory {path}")
        package.__path__ = [path]
        package.__package__ = name
        sys.modules[name] = package
    return package


def _importDirectory(directory: str) -> tuple[list[types.ModuleType], list[PluginFailure]]:
    """
    Import every plugin file of C{directory} (C{*.py}, not starting with
    C{_}), in file-name order.

    @return: the modules that imported, and one L{PluginFailure} per file
        that did not (or for the directory itself if it is not one).
    """
    if not os.path.isdir(directory):
        return [], [PluginFailure(directory, "not a directory")]
    package = _package(directory)
    modules: list[types.ModuleType] = []
    failures: list[PluginFailure] = []
    for entry in sorted(os.listdir(directory)):
        stem, ext = os.path.splitext(entry)
        if ext != ".py" or stem.startswith("_") or not stem.isidentifier():
            continue
        name = f"{package.__name__}.{stem}"
        try:
            modules.append(importlib.import_module(name))
        except Exception as e:  # a plugin must never stop the node
            sys.modules.pop(name, None)
            failures.append(
                PluginFailure(os.path.join(directory, entry), f"{type(e).__name__}: {e}")
            )
    return modules, failures


def _providers(module: types.ModuleType, interface) -> list:
    """
    The module-level objects of C{module} that provide L{IPlugin} and
    adapt to C{interface}, sorted by attribute name (the drop-in
    convention of L{twisted.plugin}).
    """
    found = []
    for attribute, value in sorted(vars(module).items()):
        if attribute.startswith("__") or not IPlugin.providedBy(value):
            continue
        adapted = interface(value, None)
        if adapted is not None:
            found.append(adapted)
    return found


def _checkHandler(handler) -> str | None:
    """
    Why C{handler} cannot be registered on a node, or C{None} if it can.
    """
    name = getattr(handler, "name", None)
    if not isinstance(name, str) or not name:
        return f"handler {handler!r} has no name"
    types_ = getattr(handler, "messageTypes", None)
    if isinstance(types_, str) or not isinstance(types_, (tuple, list)) or not types_:
        return f"handler {name!r}: messageTypes must be a non-empty tuple of type names"
    unknown = [t for t in types_ if t not in MESSAGE_TYPES]
    if unknown:
        return f"handler {name!r}: unknown message type(s) {', '.join(map(repr, unknown))}"
    if not callable(getattr(handler, "handleMessage", None)):
        return f"handler {name!r} has no handleMessage method"
    return None


def _builtinHandlers() -> list:
    """The built-in handlers, found with L{getPlugins}, in spec order."""
    import clustersync.plugins as builtin
    from clustersync.handlers.builtin import BUILTIN_HANDLERS

    order = {id(h): i for i, h in enumerate(BUILTIN_HANDLERS)}
    return sorted(
        getPlugins(IMessageHandler, builtin),
        key=lambda h: (order.get(id(h), len(order)), getattr(h, "name", "")),
    )


def loadHandlers(pluginDirs=()) -> tuple[list, list[PluginFailure]]:
    """
    Find every L{IMessageHandler} plugin.

    @param pluginDirs: directories holding extra drop-in C{.py} files.
    @return: C{(handlers, failures)}: the built-in handlers first (in spec
        order), then each directory's handlers in file-name order (within a
        file, by attribute name), each object once; and one
        L{PluginFailure} per directory that does not exist, per file that
        failed to import, and per handler that cannot be registered (no
        name, no C{handleMessage}, or a message type the codec does not
        know).  Every failure is also logged.
    """
    handlers = _builtinHandlers()
    seen = {id(h) for h in handlers}
    failures: list[PluginFailure] = []
    for directory in pluginDirs:
        modules, dirFailures = _importDirectory(directory)
        failures.extend(dirFailures)
        for module in modules:
            for handler in _providers(module, IMessageHandler):
                if id(handler) in seen:
                    continue
                problem = _checkHandler(handler)
                if problem is not None:
                    failures.append(PluginFailure(module.__file__, problem))
                    continue
                seen.add(id(handler))
                handlers.append(handler)
    for failure in failures:
        _log.error(
            "plugin {path} is skipped: {error}", path=failure.path, error=failure.error
        )
    return handlers, failures


def loadExtensions(pluginDirs=()) -> list:
    """
    Find every L{INodeExtension} plugin: the built-in ones (found with
    L{getPlugins}, sorted by module and name), then each directory's in file-name
    order.  Files that fail to import are skipped here; L{loadHandlers},
    called first by L{clustersync.app.service.makeNodeService}, reports them.
    """
    import clustersync.plugins as builtin

    extensions = sorted(
        getPlugins(INodeExtension, builtin),
        key=lambda e: (type(e).__module__, getattr(e, "name", "")),
    )
    seen = {id(e) for e in extensions}
    for directory in pluginDirs:
        modules, _ = _importDirectory(directory)
        for module in modules:
            for extension in _providers(module, INodeExtension):
                if id(extension) not in seen:
                    seen.add(id(extension))
                    extensions.append(extension)
    return extensions
