"""
Drop-in publishing the built-in handlers of the nine spec message types.
"""

from clustersync.handlers.builtin import BUILTIN_HANDLERS

(
    hello,
    syncState,
    clientConnected,
    clientDisconnected,
    channelMembership,
    directMessage,
    channelMessage,
    sessionMessage,
    broadcast,
) = BUILTIN_HANDLERS
