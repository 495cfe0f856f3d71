"""
The NATS subjects of one cluster, and the headers the backplane adds to
peer-protocol lines (the lines themselves are never changed).

Every server of the cluster (a clustersync node, or an existing server
bridged by the node it links to) has::

    cs.<cluster>.presence.<server>  its state events, heartbeats and good-bye
    cs.<cluster>.node.<server>      DIRECT / CHANNEL / SESSION messages for it
    cs.<cluster>.sync.<server>      requests for its SYNC_STATE

and the cluster has C{cs.<cluster>.broadcast} (BROADCAST lines) and
C{cs.<cluster>.sync} (a request every server answers: a joining node's).
"""

from __future__ import annotations

import string

__all__ = ["Subjects", "token", "untoken", "EPOCH", "SEQ", "KIND", "SERVER", "VIA"]

#: Header: the stream's epoch (a new one each time a server's stream starts).
EPOCH = "Cs-Epoch"
#: Header: the stream's sequence number (1, 2, ...; a heartbeat carries the last).
SEQ = "Cs-Seq"
#: Header: C{hb} (heartbeat) or C{bye}; absent on a peer-protocol line.
KIND = "Cs-Kind"
#: Header: the server a sync reply is about.
SERVER = "Cs-Server"
#: Header: the node that publishes for the server (itself, or its bridge).
VIA = "Cs-Via"

_PLAIN = frozenset(string.ascii_letters + string.digits + "-")


def token(name: str) -> str:
    """
    C{name} as one subject token: letters, digits and C{-} as they are,
    every other character (C{.}, C{*}, C{>}, C{_}, spaces, non-ASCII) as
    C{_} and its code point in hex and C{_}, so that distinct names give
    distinct tokens.
    """
    if all(c in _PLAIN for c in name):
        return name
    return "".join(c if c in _PLAIN else f"_{ord(c):x}_" for c in name)


def untoken(text: str) -> str:
    """The name L{token} made C{text} from (C{ValueError} if it made none)."""
    if "_" not in text:
        return text
    out = []
    parts = text.split("_")
    if len(parts) % 2 == 0:
        raise ValueError(f"not a subject token: {text!r}")
    for i, part in enumerate(parts):
        out.append(chr(int(part, 16)) if i % 2 else part)
    return "".join(out)


class Subjects:
    """
    The subjects of cluster C{cluster} (see the module docstring).

    @ivar prefix: C{cs.<cluster>}.
    """

    def __init__(self, cluster: str) -> None:
        self.prefix = f"cs.{token(cluster)}"
        self.broadcast = f"{self.prefix}.broadcast"
        self.syncAll = f"{self.prefix}.sync"
        #: The wildcard that takes every server's presence.
        self.presenceAll = f"{self.prefix}.presence.*"
        self._presence = f"{self.prefix}.presence."
        self._node = f"{self.prefix}.node."
        self._sync = f"{self.prefix}.sync."

    def presence(self, serverId: str) -> str:
        """The presence subject of C{serverId}."""
        return self._presence + token(serverId)

    def node(self, serverId: str) -> str:
        """The subject of forwarded messages for C{serverId}."""
        return self._node + token(serverId)

    def sync(self, serverId: str) -> str:
        """The subject of sync requests to C{serverId}."""
        return self._sync + token(serverId)

    def presenceServer(self, subject: str) -> str | None:
        """The serverId of a presence subject, or C{None} if it is not one."""
        if not subject.startswith(self._presence):
            return None
        try:
            return untoken(subject[len(self._presence):])
        except ValueError:
            return None
