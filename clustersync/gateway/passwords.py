"""
Password hashes of the users file: salted scrypt (L{hashlib.scrypt}) with
the cost stored in each hash, checked in constant time, and the dummy hash
an unknown name is checked against so that it costs as much as a known
one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections import Counter

__all__ = ["SCRYPT_N", "SCRYPT_R", "SCRYPT_P", "hashPassword", "verifyPassword", "dummyHash"]

#: Default scrypt cost: 16 MiB of memory, tens of milliseconds per check.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hashPassword(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P,
                 salt: bytes | None = None) -> str:
    """
    Hash C{password} with a fresh random salt.

    @return: C{"scrypt$N$r$p$<salt>$<key>"} (base64 salt and key).
    """
    salt = os.urandom(16) if salt is None else salt
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                         maxmem=128 * n * r * p + 1024 * 1024, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def verifyPassword(password: str, stored: str) -> bool:
    """
    Whether C{password} matches C{stored} (a L{hashPassword} result).
    A malformed C{stored} never matches.
    """
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        n, r, p = int(n), int(r), int(p)
        salt, key = base64.b64decode(salt, validate=True), base64.b64decode(key, validate=True)
        if not (2 <= n <= 2**20 and 1 <= r <= 32 and 1 <= p <= 16):
            return False
        got = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                             maxmem=128 * n * r * p + 1024 * 1024, dklen=len(key))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, key)


def dummyHash(hashes) -> str:
    """
    A stored-hash string that costs as much to check as the most common
    cost parameters among C{hashes} (the default cost if none) and that
    no password matches (random salt and key).
    """
    costs = Counter()
    for stored in hashes:
        parts = stored.split("$")
        if len(parts) == 6 and parts[0] == "scrypt":
            costs[tuple(parts[1:4])] += 1
    n, r, p = costs.most_common(1)[0][0] if costs else (SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${n}${r}${p}${_b64(os.urandom(16))}${_b64(os.urandom(32))}"
