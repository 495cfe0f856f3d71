"""
Client authentication for the gateway, with L{twisted.cred}.

The users file is JSON::

    {"version": 1,
     "users": [{"usuario": "ana", "clienteId": 1, "admin": false,
                "hash": "scrypt$16384$8$1$<salt, base64>$<key, base64>"}]}

Passwords are stored only as salted scrypt hashes (L{hashlib.scrypt}); the
cost parameters are part of each hash, so they can be raised later without
invalidating old entries.  The file is managed with C{clustersync-admin
adduser} and re-read by the checker whenever it changes on disk.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile

import attrs
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from clustersync.gateway.passwords import (
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    dummyHash,
    hashPassword,
    verifyPassword,
)

__all__ = [
    "IChatUser",
    "ChatUser",
    "UsersFileError",
    "UsersFile",
    "UsersFileChecker",
    "ChatRealm",
    "hashPassword",
    "verifyPassword",
    "dummyHash",
    "SCRYPT_N",
    "SCRYPT_R",
    "SCRYPT_P",
    "makePortal",
    "createDemoUsers",
    "DEFAULT_USERS_FILE",
    "DEMO_USERS",
]

#: The users file used when C{users_file} is not configured (current dir).
DEFAULT_USERS_FILE = "clustersync-users.json"

#: Demo accounts created on first start: (usuario, clienteId, admin).
DEMO_USERS = (("ana", 1, False), ("luis", 2, False), ("admin", 3, True))

_MAX_INT64 = 2**63 - 1

_log = Logger()


class IChatUser(Interface):
    """The avatar of an authenticated chat client."""

    usuario = Attribute("The login name (a C{str}).")
    clienteId = Attribute("The user's clienteId (an C{int}).")
    admin = Attribute("Whether the user may BROADCAST (a C{bool}).")


@implementer(IChatUser)
@attrs.frozen
class ChatUser:
    """
    One account of the users file (also the avatar of a logged-in client).

    @ivar usuario: the login name.
    @ivar clienteId: the user's clienteId.
    @ivar admin: whether the user may BROADCAST.
    @ivar hash: the stored password hash (C{scrypt$N$r$p$salt$key}).
    """

    usuario: str
    clienteId: int
    admin: bool = False
    hash: str = attrs.field(default="", repr=False)


class UsersFileError(ValueError):
    """The users file cannot be read, or an account in it is invalid."""


def _userFrom(entry, index: int) -> ChatUser:
    if not isinstance(entry, dict):
        raise UsersFileError(f"users[{index}]: expected an object")
    usuario = entry.get("usuario")
    clienteId = entry.get("clienteId")
    admin = entry.get("admin", False)
    hashed = entry.get("hash")
    if not isinstance(usuario, str) or not usuario or any(c.isspace() for c in usuario):
        raise UsersFileError(f"users[{index}].usuario: expected a name without spaces")
    if isinstance(clienteId, bool) or not isinstance(clienteId, int) or not 0 <= clienteId <= _MAX_INT64:
        raise UsersFileError(f"users[{index}].clienteId: expected a non-negative 64-bit integer")
    if not isinstance(admin, bool):
        raise UsersFileError(f"users[{index}].admin: expected true or false")
    if not isinstance(hashed, str) or not hashed.startswith("scrypt$"):
        raise UsersFileError(f"users[{index}].hash: expected an scrypt hash")
    return ChatUser(usuario, clienteId, admin, hashed)


class UsersFile:
    """
    The accounts of one users file, loaded in memory.

    @ivar path: the file.
    @ivar users: usuario -> L{ChatUser}.
    """

    def __init__(self, path: str, users=()) -> None:
        self.path = path
        self.users: dict[str, ChatUser] = {u.usuario: u for u in users}

    @classmethod
    def load(cls, path: str) -> "UsersFile":
        """
        Read C{path}.

        @raise FileNotFoundError: it does not exist.
        @raise UsersFileError: it is unreadable or invalid (the message says
            which entry and field).
        """
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read())
        except FileNotFoundError:
            raise
        except OSError as e:
            raise UsersFileError(f"{path}: cannot read: {e.strerror}") from None
        except ValueError as e:
            raise UsersFileError(f"{path}: not valid JSON: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("users"), list):
            raise UsersFileError(f"{path}: expected an object with a 'users' list")
        users = [_userFrom(e, i) for i, e in enumerate(data["users"])]
        seenNames, seenIds = set(), {}
        for u in users:
            if u.usuario in seenNames:
                raise UsersFileError(f"{path}: usuario {u.usuario!r} appears twice")
            if u.clienteId in seenIds:
                raise UsersFileError(
                    f"{path}: clienteId {u.clienteId} used by both "
                    f"{seenIds[u.clienteId]!r} and {u.usuario!r}")
            seenNames.add(u.usuario)
            seenIds[u.clienteId] = u.usuario
        return cls(path, users)

    def add(self, usuario: str, clienteId: int, password: str, admin: bool = False,
            replace: bool = False, **costs) -> ChatUser:
        """
        Add (or, with C{replace}, update) an account.

        @raise UsersFileError: the name or clienteId is invalid or taken.
        """
        candidate = {"usuario": usuario, "clienteId": clienteId, "admin": admin,
                     "hash": "scrypt$"}
        _userFrom(candidate, len(self.users))
        if not password:
            raise UsersFileError("the password must not be empty")
        if usuario in self.users and not replace:
            raise UsersFileError(f"usuario {usuario!r} already exists")
        for other in self.users.values():
            if other.clienteId == clienteId and other.usuario != usuario:
                raise UsersFileError(f"clienteId {clienteId} is already used by {other.usuario!r}")
        user = ChatUser(usuario, clienteId, admin, hashPassword(password, **costs))
        self.users[usuario] = user
        return user

    def remove(self, usuario: str) -> None:
        """
        Remove an account.

        @raise UsersFileError: no such account.
        """
        if self.users.pop(usuario, None) is None:
            raise UsersFileError(f"no usuario {usuario!r}")

    def toJSON(self) -> bytes:
        """The file's content."""
        return json.dumps(
            {"version": 1, "users": [attrs.asdict(u) for u in self.users.values()]},
            indent=2,
        ).encode("utf-8") + b"\n"

    def save(self, exclusive: bool = False) -> bool:
        """
        Write the file atomically (mode 0600), through a temporary file.

        @param exclusive: only create it; do nothing if it already exists.
        @return: C{False} if C{exclusive} and the file existed, else C{True}.
        """
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=".users-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self.toJSON())
            if exclusive:
                try:
                    os.link(tmp, self.path)
                except FileExistsError:
                    return False
            else:
                os.replace(tmp, self.path)
                tmp = None
            return True
        finally:
            if tmp is not None:
                os.unlink(tmp)


def createDemoUsers(path: str, **costs) -> dict[str, str] | None:
    """
    Create a users file at C{path} with the L{DEMO_USERS}, each with a random
    password, unless it already exists (several nodes starting at once from
    one directory create it once).  The passwords are also written to
    C{<path>.demo-logins.txt} (mode 0600), for the quick start.

    @return: usuario -> password if this call created the file, else
        C{None}.
    """
    users = UsersFile(path)
    passwords = {}
    for usuario, clienteId, admin in DEMO_USERS:
        passwords[usuario] = secrets.token_urlsafe(6)
        users.add(usuario, clienteId, passwords[usuario], admin, **costs)
    if not users.save(exclusive=True):
        return None
    lines = [f"{u} {passwords[u]}" for u, _, _ in DEMO_USERS]
    fd = os.open(path + ".demo-logins.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# demo logins created with " + path + " (usuario password)\n")
        f.write("\n".join(lines) + "\n")
    return passwords


@implementer(ICredentialsChecker)
class UsersFileChecker:
    """
    Checks L{IUsernamePassword} credentials against a users file, re-read
    whenever its modification time or size changes.

    The slow hash runs in the reactor's thread pool when a C{reactor} is
    given (so a login never stalls peer links), inline otherwise (tests).
    An unknown name costs one hash of the same cost as the accounts' (a
    dummy hash with the most common cost parameters of the file, random
    salt and key, that nothing matches), so timing does not tell names
    apart.

    @ivar verify: C{verify(password, stored) -> bool}, the hash check
        (L{verifyPassword}; a test may count its calls).
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, path: str, reactor=None, verify=verifyPassword) -> None:
        self.path = path
        self.reactor = reactor
        self.verify = verify
        self._stamp = None
        self._users = UsersFile(path)
        self._dummy = dummyHash(())
        self.reload()

    def reload(self) -> None:
        """
        Re-read the file if it changed.  A file that became invalid is
        logged and the last good accounts are kept.

        @raise UsersFileError: on the first load only.
        """
        try:
            st = os.stat(self.path)
        except OSError as e:
            if self._stamp is None:
                raise UsersFileError(f"{self.path}: {e.strerror}") from None
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            users = UsersFile.load(self.path)
        except (UsersFileError, FileNotFoundError) as e:
            if self._stamp is None:
                raise UsersFileError(str(e)) from None
            _log.error("users file {path} is invalid, keeping the previous accounts: {error}",
                       path=self.path, error=str(e))
            return
        self._users, self._stamp = users, stamp
        self._dummy = dummyHash(u.hash for u in users.users.values())

    def lookup(self, usuario: str) -> ChatUser | None:
        """The account named C{usuario}, or C{None}."""
        self.reload()
        return self._users.users.get(usuario)

    def requestAvatarId(self, credentials):
        """
        @return: a L{Deferred} firing with the L{ChatUser} whose password
            matches; failing with L{UnauthorizedLogin} otherwise.
        """
        usuario = credentials.username
        if isinstance(usuario, bytes):
            usuario = usuario.decode("utf-8", "replace")
        password = credentials.password
        if isinstance(password, bytes):
            password = password.decode("utf-8", "replace")
        user = self.lookup(usuario)
        stored = user.hash if user is not None else self._dummy

        def check(ok):
            if ok and user is not None:
                return user
            raise UnauthorizedLogin("wrong usuario or contrasenia")

        if self.reactor is None:
            return maybeDeferred(self.verify, password, stored).addCallback(check)
        d = deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                              self.verify, password, stored)
        return d.addCallback(check)


@implementer(IRealm)
class ChatRealm:
    """The realm of chat users: the avatar is the L{ChatUser} itself."""

    def requestAvatar(self, avatarId, mind, *interfaces):
        """
        @return: C{(IChatUser, avatarId, logout)} for an L{IChatUser}
            request.
        """
        if IChatUser in interfaces:
            return IChatUser, avatarId, lambda: None
        raise NotImplementedError("only IChatUser avatars are provided")


def makePortal(checker) -> Portal:
    """A L{Portal} of the L{ChatRealm} with C{checker}."""
    return Portal(ChatRealm(), [checker])

