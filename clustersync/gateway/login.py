"""
C{LOGIN}: the throttle, the password check through the portal, the
sessions-per-user limit, then the session itself.

A name that has no account costs the same as one that has: the checker
hashes a dummy of the same cost, and the throttle counts both alike.  The
password is never logged.
"""

from __future__ import annotations

import math
import uuid

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from clustersync.errors import ClusterError, StateLimitError
from clustersync.gateway.auth import IChatUser
from clustersync.gateway.requests import MAX_NAME_LENGTH, BadRequest, text

__all__ = ["LoginCommand"]

_log = Logger()


class LoginCommand:
    """The C{LOGIN} command of L{clustersync.gateway.protocol.ClientProtocol}."""

    @inlineCallbacks
    def do_LOGIN(self, payload):
        """LOGIN: check usuario/contrasenia with the portal, open a session."""
        usuario = text(payload, "usuario", MAX_NAME_LENGTH)
        password = text(payload, "contrasenia")
        if self.sessionId is not None:
            raise BadRequest("state", f"already logged in as {self.user.usuario}; LOGOUT first")
        gateway = self.gateway
        ip = getattr(self.transport.getPeer(), "host", None)
        wait = gateway.throttle.admit(usuario, ip) if gateway.throttle is not None else 0.0
        if wait > 0:
            seconds = math.ceil(wait)
            gateway.rejected(self, "login_throttled",
                             f"login as {usuario[:60]!r} refused for {wait:.1f} s more")
            self.respond("LOGIN", False,
                         f"too many failed logins; try again in {seconds} s",
                         reintentarEn=seconds)
            return
        try:
            _, user, _ = yield gateway.portal.login(
                UsernamePassword(usuario, password), None, IChatUser)
        except UnauthorizedLogin:
            gateway.rejected(self, "login_failed", f"failed login as {usuario[:60]!r}")
            self.respond("LOGIN", False, "wrong usuario or contrasenia")
            return
        if gateway.throttle is not None:
            gateway.throttle.succeeded(usuario)
        if self.closed or self._closing:
            return
        limit = gateway.maxSessionsPerUser
        if limit:
            existing = yield gateway.node.lookupUser(user.clienteId)
            if len(existing) >= limit:
                raise BadRequest("session_limit",
                                 f"{user.usuario} already has {len(existing)} session(s); "
                                 f"the limit is {limit}")
        sessionId = str(uuid.uuid4())
        gateway.sessions[sessionId] = self
        try:
            yield gateway.node.clientConnected(sessionId, user.clienteId, user.usuario, ip)
        except (ClusterError, StateLimitError) as e:
            gateway.sessions.pop(sessionId, None)
            raise BadRequest("limit", f"cannot open a session: {e}") from None
        self.sessionId, self.user = sessionId, user
        _log.info("{usuario} (clienteId {clienteId}) logged in from {peer} as {sessionId}",
                  usuario=user.usuario, clienteId=user.clienteId, peer=self.peer,
                  sessionId=sessionId)
        self.respond("LOGIN", True, f"welcome {user.usuario}", sessionId=sessionId,
                     clienteId=user.clienteId, usuario=user.usuario,
                     serverId=gateway.node.serverId, admin=user.admin)
