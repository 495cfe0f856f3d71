"""
Discovery of L{IMessageHandler} plugins with L{twisted.plugin}.

Built-in handlers come from L{clustersync.plugins}; third-party ones from
each C{--plugin-dir} directory, which is mounted as a synthetic package so
that L{twisted.plugin.getPlugins} can scan it.  Every C{.py} file of such a
directory is imported first on its own, so that one that fails is reported
by name (and skipped) instead of being swallowed.
"""

from __future__ import annotations

import importlib
import os
import sys
import types

import attrs
from twisted.logger import Logger
from twisted.plugin import getPlugins

from clustersync.interfaces import IMessageHandler, INodeExtension

__all__ = ["PluginFailure", "loadHandlers", "loadExtensions"]

_log = Logger()


@attrs.frozen
class PluginFailure:
    """
    A plugin file that could not be imported.

    @ivar path: the file.
    @ivar error: the exception text.
    """

    path: str
    error: str


def _mountDirectory(index: int, directory: str) -> types.ModuleType:
    name = f"clustersync_plugindir_{index}"
    package = types.ModuleType(name)
    package.__path__ = [os.path.abspath(directory)]
    package.__file__ = None
    sys.modules[name] = package
    return package


def _sortKey(handler) -> tuple:
    return (type(handler).__module__, getattr(handler, "name", ""))


def loadExtensions(pluginDirs=()) -> list:
    """
    Find every L{INodeExtension} plugin, built-in ones first.  Directories
    must already have been mounted by L{loadHandlers} (their import
    failures are reported there).
    """
    import clustersync.plugins as builtin

    found = sorted(getPlugins(INodeExtension, builtin), key=_sortKey)
    for index, directory in enumerate(pluginDirs):
        package = sys.modules.get(f"clustersync_plugindir_{index}")
        if package is not None:
            found.extend(sorted(getPlugins(INodeExtension, package), key=_sortKey))
    return found


def loadHandlers(pluginDirs=()) -> tuple[list, list[PluginFailure]]:
    """
    Find every L{IMessageHandler} plugin.

    @param pluginDirs: directories holding extra plugin C{.py} files.
    @return: C{(handlers, failures)}: the built-in handlers first (in spec
        order), then each directory's handlers sorted by module and name;
        and one L{PluginFailure} per file that failed to import.
    """
    import clustersync.plugins as builtin
    from clustersync.handlers import BUILTIN_HANDLERS

    found = list(getPlugins(IMessageHandler, builtin))
    order = {id(h): i for i, h in enumerate(BUILTIN_HANDLERS)}
    handlers = sorted(found, key=lambda h: (order.get(id(h), len(order)), _sortKey(h)))
    failures: list[PluginFailure] = []
    for index, directory in enumerate(pluginDirs):
        if not os.path.isdir(directory):
            failures.append(PluginFailure(directory, "not a directory"))
            _log.error("plugin directory {path} does not exist", path=directory)
            continue
        package = _mountDirectory(index, directory)
        good = set()
        for entry in sorted(os.listdir(directory)):
            stem, ext = os.path.splitext(entry)
            if ext != ".py" or stem.startswith("_") or not stem.isidentifier():
                continue
            path = os.path.join(directory, entry)
            try:
                importlib.import_module(f"{package.__name__}.{stem}")
            except BaseException as e:  # a plugin must never stop the node
                if isinstance(e, (KeyboardInterrupt,)):
                    raise
                sys.modules.pop(f"{package.__name__}.{stem}", None)
                failures.append(PluginFailure(path, f"{type(e).__name__}: {e}"))
                _log.error(
                    "plugin {path} failed to import and is skipped: {error}",
                    path=path,
                    error=f"{type(e).__name__}: {e}",
                )
            else:
                good.add(f"{package.__name__}.{stem}")
        extra = [
            h
            for h in getPlugins(IMessageHandler, package)
            if type(h).__module__ in good or _definedIn(h, good)
        ]
        handlers.extend(sorted(extra, key=_sortKey))
    return handlers, failures


def _definedIn(handler, modules: set) -> bool:
    """
    Whether C{handler} is published by one of C{modules} (an instance of a
    class defined elsewhere, e.g. a library, published by a drop-in).
    """
    for name in modules:
        module = sys.modules.get(name)
        if module is not None and any(v is handler for v in vars(module).values()):
            return True
    return False
