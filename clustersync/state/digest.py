"""
Digests of the sessions of each server, kept up to date change by change,
for the anti-entropy exchange between clustersync nodes (X_DIGEST, see
C{docs/protocol.md}).

A server's digest is its number of sessions and the sum, modulo 2**63, of
a 63-bit hash of each session (its C{sessionId}, C{clienteId}, C{usuario}
and C{ip}) and of each of its channel memberships.  A sum does not depend
on the order sessions were learned in, and each change adds or subtracts
one term: keeping it costs one hash per change, nothing per session at
rest.  The hash is CRC-32 twice with two seeds (63 bits of it, so that
it fits the wire's 64-bit signed integers), the same on every node
and every run (Python's C{hash} of a string is not).

Pure: no Twisted, no I/O.
"""

from __future__ import annotations

import zlib
from typing import Iterable

from clustersync.state.cluster import ADDED, JOINED, LEFT, REMOVED, Change

__all__ = ["sessionHash", "membershipHash", "Digests"]

_MASK = (1 << 63) - 1
_SEED = 0x9E3779B9


def _hash63(data: bytes) -> int:
    return ((zlib.crc32(data) << 32) | zlib.crc32(data, _SEED)) & _MASK


def sessionHash(session) -> int:
    """The 63-bit hash of a session's own fields (not its channels)."""
    return _hash63(
        f"{session.sessionId}\x1f{session.clienteId}\x1f{session.usuario}\x1f"
        f"{session.ip or ''}".encode()
    )


def membershipHash(sessionId: str, canalId: int) -> int:
    """The 63-bit hash of one session's membership of one channel."""
    return _hash63(f"{sessionId}\x1e{canalId}".encode())


def _fullHash(session) -> int:
    total = sessionHash(session)
    for canalId in session.canales:
        total += membershipHash(session.sessionId, canalId)
    return total


class Digests:
    """
    The digest of every server's sessions, fed with the state's changes
    (L{update}) right after the mutation that produced them, so that a
    session's channels are those it had then.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._hashes: dict[str, int] = {}

    def of(self, serverId: str) -> tuple[int, int]:
        """C{(sessions, hash)} of C{serverId}; C{(0, 0)} for an unknown server."""
        return self._counts.get(serverId, 0), self._hashes.get(serverId, 0)

    def update(self, changes: Iterable[Change]) -> None:
        """
        Apply the state's C{changes}.  Removals from a server dropped with
        L{drop} are ignored (its digest is gone already).
        """
        counts, hashes = self._counts, self._hashes
        for change in changes:
            session = change.session
            serverId = session.serverId
            kind = change.kind
            if kind == ADDED:
                counts[serverId] = counts.get(serverId, 0) + 1
                hashes[serverId] = (hashes.get(serverId, 0) + _fullHash(session)) & _MASK
            elif serverId not in counts:
                continue
            elif kind == REMOVED:
                counts[serverId] -= 1
                hashes[serverId] = (hashes[serverId] - _fullHash(session)) & _MASK
            elif kind == JOINED:
                term = membershipHash(session.sessionId, change.canalId)
                hashes[serverId] = (hashes[serverId] + term) & _MASK
            elif kind == LEFT:
                term = membershipHash(session.sessionId, change.canalId)
                hashes[serverId] = (hashes[serverId] - term) & _MASK

    def drop(self, serverId: str) -> None:
        """Forget C{serverId}'s digest (the server and its sessions are gone)."""
        self._counts.pop(serverId, None)
        self._hashes.pop(serverId, None)

    @staticmethod
    def compute(sessions: Iterable) -> tuple[int, int]:
        """C{(sessions, hash)} of C{sessions} from scratch (tests, checks)."""
        count = total = 0
        for session in sessions:
            count += 1
            total += _fullHash(session)
        return count, total & _MASK
