"""
The handler layer: zope providers of
L{clustersync.interfaces.IMessageHandler} that apply received messages to the
cluster state or deliver them.
"""

from clustersync.handlers.builtin import BUILTIN_HANDLERS

__all__ = ["BUILTIN_HANDLERS"]
