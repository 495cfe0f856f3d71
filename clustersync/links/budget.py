"""
The node-wide bound on what links that have not finished their HELLO
exchange may make this node hold.

Each such link may buffer at most C{max_hello_length} bytes of a partial
line (L{clustersync.links.protocol.PeerProtocol}); this bounds their sum,
so that many connections each sending a little less than that cannot add
up to a lot of memory before any of them has said who it is.
"""

from __future__ import annotations

__all__ = ["HandshakeBuffers"]


class HandshakeBuffers:
    """
    The bytes held by the partial lines of links still in their handshake.

    @ivar bound: the most bytes they may hold together.
    @ivar total: the bytes they hold now.
    """

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.total = 0
        self._held: dict[object, int] = {}

    def hold(self, link, size: int) -> bool:
        """
        C{link} now holds C{size} bytes (replacing what it held before).

        @return: C{False}, holding nothing for C{link}, if that would take
            the total over L{bound}; the caller then closes the link.
        """
        before = self._held.pop(link, 0)
        total = self.total - before
        if total + size > self.bound:
            self.total = total
            return False
        if size:
            self._held[link] = size
        self.total = total + size
        return True

    def release(self, link) -> None:
        """C{link} holds nothing any more (established, or closed)."""
        self.total -= self._held.pop(link, 0)

    def __len__(self) -> int:
        """The number of links holding bytes."""
        return len(self._held)
