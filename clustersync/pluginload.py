"""
Discovery of L{IMessageHandler} plugins with L{twisted.plugin}.

Built-in handlers come from L{clustersync.plugins}; each C{--plugin-dir}
directory is appended to that package's C{__path__} (as Twisted does for
C{twisted.plugins}), so L{twisted.plugin.getPlugins} scans it too.  Every
C{.py} file of such a directory is imported first on its own, so that one
that fails is reported by name (and skipped) instead of being swallowed by
C{getPlugins}.  Mounting is process-wide: a directory, once loaded, stays
part of the package.
"""

from __future__ import annotations

import importlib
import os
import sys

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


def _mountDirectory(directory: str):
    """
    Add C{directory} to the C{__path__} of L{clustersync.plugins}, the way
    Twisted's own C{twisted.plugins} takes in other directories: its files
    become drop-ins of that package for L{getPlugins}.
    """
    import clustersync.plugins as package

    path = os.path.abspath(directory)
    if path not in package.__path__:
        package.__path__.append(path)
    return package


def _sortKey(handler) -> tuple:
    return (type(handler).__module__, getattr(handler, "name", ""))


def loadExtensions(pluginDirs=()) -> list:
    """
    Find every L{INodeExtension} plugin: built-in ones and those of the
    directories mounted by L{loadHandlers} (their import failures are
    reported there), sorted by module and name.
    """
    import clustersync.plugins as package

    for directory in pluginDirs:
        if os.path.isdir(directory):
            _mountDirectory(directory)
    return sorted(getPlugins(INodeExtension, package), key=_sortKey)


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

    failures: list[PluginFailure] = []
    for directory in pluginDirs:
        if not os.path.isdir(directory):
            failures.append(PluginFailure(directory, "not a directory"))
            _log.error("plugin directory {path} does not exist", path=directory)
            continue
        _mountDirectory(directory)
        for entry in sorted(os.listdir(directory)):
            stem, ext = os.path.splitext(entry)
            if ext != ".py" or stem.startswith("_") or not stem.isidentifier():
                continue
            path = os.path.join(directory, entry)
            moduleName = f"{builtin.__name__}.{stem}"
            try:
                importlib.import_module(moduleName)
            except Exception as e:  # a plugin must never stop the node
                sys.modules.pop(moduleName, None)
                failures.append(PluginFailure(path, f"{type(e).__name__}: {e}"))
                _log.error(
                    "plugin {path} failed to import and is skipped: {error}",
                    path=path,
                    error=f"{type(e).__name__}: {e}",
                )
    order = {id(h): i for i, h in enumerate(BUILTIN_HANDLERS)}
    handlers = sorted(
        getPlugins(IMessageHandler, builtin),
        key=lambda h: (order.get(id(h), len(order)), _sortKey(h)),
    )
    return handlers, failures
