"""
The message dispatch table: message class -> its L{IMessageHandler}s, in
registration order (built-ins first, then plugins), and the loop that runs
them on each message a link received.
"""

from __future__ import annotations

from twisted.logger import Logger

from clustersync.cluster.metrics import TYPE_INDEX, Metrics
from clustersync.interfaces import IMessageHandler
from clustersync.wire.codec import MESSAGE_TYPES

__all__ = ["Dispatcher", "HandlerList"]


class HandlerList(list):
    """
    The handlers of one message type, its wire name (C{tag}) and the
    position of its counters (C{index}, see L{TYPE_INDEX}).

    @ivar fast: when the type has one handler and it has a C{bindFast(node)}
        method (built-in handlers on the hot path), the C{(link, message)}
        callable that method returned, which does what C{handleMessage}
        does; otherwise C{None}.
    """

    __slots__ = ("tag", "index", "fast")

    def __init__(self) -> None:
        super().__init__()
        self.tag = ""
        self.index = 0
        self.fast = None


class Dispatcher:
    """
    Runs the handlers of each received message; an exception in a handler
    is logged and counted, and never reaches the link.

    @ivar table: message class -> its L{HandlerList}.
    @ivar handlers: every registered handler, in registration order.
    """

    _log = Logger()

    def __init__(self, node, metrics: Metrics) -> None:
        """
        @param node: the L{clustersync.cluster.node.ClusterNode} handlers
            are called with.
        @param metrics: where messages and handler errors are counted.
        """
        self.table: dict[type, HandlerList] = {}
        self.handlers: list = []
        self._node = node
        self._metrics = metrics

    def register(self, handler) -> None:
        """
        Add an L{IMessageHandler}.

        @raise TypeError: it does not provide L{IMessageHandler}.
        @raise ValueError: it names a message type the codec does not know.
        """
        if not IMessageHandler.providedBy(handler):
            raise TypeError(f"{handler!r} does not provide IMessageHandler")
        for typeName in handler.messageTypes:
            cls = MESSAGE_TYPES.get(typeName)
            if cls is None:
                raise ValueError(f"handler {handler.name!r}: unknown message type {typeName!r}")
            handlers = self.table.get(cls)
            if handlers is None:
                handlers = self.table[cls] = HandlerList()
                handlers.tag = typeName
                handlers.index = TYPE_INDEX[typeName]
            handlers.append(handler)
            # The one handler of a type may offer a quicker callable doing
            # the same (see HandlerList.fast); a second handler turns it off.
            bindFast = getattr(handler, "bindFast", None)
            handlers.fast = bindFast(self._node) if len(handlers) == 1 and bindFast is not None else None
        self.handlers.append(handler)

    def dispatch(self, link, message) -> None:
        """Count C{message} and run every handler of its type."""
        cls = message.__class__
        handlers = self.table.get(cls)
        if handlers is None:  # a type no handler takes: counted all the same
            self._metrics.inCounts[TYPE_INDEX[cls.__struct_config__.tag]] += 1
            return
        self._metrics.inCounts[handlers.index] += 1
        fast = handlers.fast
        if fast is not None:
            try:
                fast(link, message)
            except Exception:
                self._failed(handlers[0], handlers.tag, link)
            return
        node = self._node
        for handler in handlers:
            try:
                handler.handleMessage(node, link, message)
            except Exception:
                self._failed(handler, handlers.tag, link)

    def _failed(self, handler, typeName: str, link) -> None:
        """Count and log the exception C{handler} just raised."""
        self._metrics.handlerErrors[handler.name] += 1
        self._log.failure(
            "handler {handler} failed on {type} from {peer}",
            handler=handler.name,
            type=typeName,
            peer=link.serverId,
        )
