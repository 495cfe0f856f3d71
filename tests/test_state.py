"""
Tests for L{clustersync.state.cluster.ClusterState}, without a reactor.

After every mutation, L{assertConsistent} recomputes every index by scanning
the sessions and compares it with what the state answers (and with its
private index dictionaries, so that a stale or empty index entry is caught
too).  A hypothesis state machine runs random operation sequences against a
plain model, checking after each step that the state matches the model,
that the returned L{Change}s replayed on a copy give the same sessions, that
a refused change changed nothing, and that the indexes are consistent.
"""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from twisted.trial import unittest

from clustersync.wire.codec import SessionInfo
from clustersync.state.cluster import (
    ADDED,
    JOINED,
    LEFT,
    REMOVED,
    Change,
    ClusterState,
    StateLimitError,
)

LOCAL = "srv-local"


def session(sessionId: str, clienteId: int, canales=(), usuario: str | None = None,
            ip: str | None = "10.0.0.1", serverId: str | None = None) -> SessionInfo:
    """A fresh L{SessionInfo}."""
    return SessionInfo(sessionId, clienteId, usuario or f"user{clienteId}", serverId, ip,
                       set(canales))


def snapshot(state: ClusterState) -> dict:
    """
    Every server view and its sessions as plain values:
    C{{serverId: {sessionId: (clienteId, usuario, ip, frozenset(canales))}}}.
    """
    return {
        server: {
            s.sessionId: (s.clienteId, s.usuario, s.ip, frozenset(s.canales))
            for s in state.sessionsOf(server)
        }
        for server in state.servers()
    }


def recomputed(state: ClusterState) -> dict:
    """
    Every index, recomputed by scanning every session of every server.
    """
    users: dict = {}
    channels: dict = {}
    sessionIds: dict = {}
    userOn: dict = {}
    channelOn: dict = {}
    for server in state.servers():
        for s in state.sessionsOf(server):
            users.setdefault(s.clienteId, set()).add(server)
            sessionIds.setdefault(s.sessionId, set()).add(server)
            userOn.setdefault((server, s.clienteId), set()).add(s.sessionId)
            for c in s.canales:
                channels.setdefault(c, set()).add(server)
                channelOn.setdefault((server, c), set()).add(s.sessionId)
    return {"users": users, "channels": channels, "sessions": sessionIds,
            "userOn": userOn, "channelOn": channelOn}


def assertConsistent(test: unittest.SynchronousTestCase, state: ClusterState,
                     probeUsers=(), probeChannels=(), probeSessions=()) -> None:
    """
    Check every index of C{state} against a full scan, for every key in
    use and for the given probe keys (which may be unused).
    """
    expected = recomputed(state)
    # No session is attributed to a server other than its own.
    for server in state.servers():
        for s in state.sessionsOf(server):
            test.assertEqual(s.serverId, server)
            test.assertIs(state.session(server, s.sessionId), s)
        test.assertEqual(state.countSessions(server), len(state.sessionsOf(server)))
    test.assertEqual(state.countSessions(),
                     sum(len(state.sessionsOf(v)) for v in state.servers()))
    test.assertEqual(len(list(state.allSessions())), state.countSessions())
    test.assertIn(state.localId, state.servers())
    # The hot paths' mappings are still the state's own.
    test.assertIs(state.localUserSessions, state._servers[state.localId].userSessions)
    test.assertIs(state.userServers, state._userServers)
    # Public queries.
    users = set(expected["users"]) | set(probeUsers)
    channels = set(expected["channels"]) | set(probeChannels)
    sessionIds = set(expected["sessions"]) | set(probeSessions)
    for u in users:
        test.assertEqual(set(state.serversOfUser(u)), expected["users"].get(u, set()), u)
        test.assertEqual(set(state.userServers.get(u, ())), expected["users"].get(u, set()), u)
        test.assertEqual(
            sorted((s.serverId, s.sessionId) for s in state.userSessions(u)),
            sorted((srv, sid) for (srv, uu), sids in expected["userOn"].items()
                   if uu == u for sid in sids))
        for server in state.servers():
            test.assertEqual({s.sessionId for s in state.userSessionsOn(server, u)},
                             expected["userOn"].get((server, u), set()))
        test.assertIs(state.localUserSessions.get(u, ()),
                      state.userSessionsOn(state.localId, u))
    for c in channels:
        test.assertEqual(set(state.serversOfChannel(c)), expected["channels"].get(c, set()), c)
        test.assertEqual(
            sorted((s.serverId, s.sessionId) for s in state.channelMembers(c)),
            sorted((srv, sid) for (srv, cc), sids in expected["channelOn"].items()
                   if cc == c for sid in sids))
        for server in state.servers():
            test.assertEqual({s.sessionId for s in state.channelSessionsOn(server, c)},
                             expected["channelOn"].get((server, c), set()))
    for sid in sessionIds:
        test.assertEqual(set(state.serversOfSession(sid)), expected["sessions"].get(sid, set()))
    test.assertEqual(
        {c: sorted((s.serverId, s.sessionId) for s in members)
         for c, members in state.channels().items()},
        {c: sorted((srv, sid) for (srv, cc), sids in expected["channelOn"].items()
                   if cc == c for sid in sids)
         for c in expected["channels"]})
    # Private indexes: exactly the live keys, no empty sets left behind.
    test.assertEqual(state._userServers, expected["users"])
    test.assertEqual(state._channelServers, expected["channels"])
    test.assertEqual(state._sessionServers, expected["sessions"])
    for server, view in state._servers.items():
        test.assertEqual(
            view.byUser,
            {u: sids for (srv, u), sids in expected["userOn"].items() if srv == server})
        test.assertEqual(
            view.byChannel,
            {c: sids for (srv, c), sids in expected["channelOn"].items() if srv == server})
        # The per-user tuples: exactly the users with sessions, the very
        # session objects of the view.
        test.assertEqual(set(view.userSessions), set(view.byUser))
        for u, sessions in view.userSessions.items():
            test.assertIsInstance(sessions, tuple)
            test.assertEqual({s.sessionId for s in sessions}, view.byUser[u])
            for session in sessions:
                test.assertIs(session, view.sessions[session.sessionId])


def replay(replica: dict, changes: list[Change]) -> None:
    """
    Apply C{changes} to C{replica} (a L{snapshot}-shaped dict), as a
    listener would.
    """
    for change in changes:
        s = change.session
        view = replica.setdefault(s.serverId, {})
        if change.kind == ADDED:
            view[s.sessionId] = (s.clienteId, s.usuario, s.ip, frozenset(s.canales))
        elif change.kind == REMOVED:
            del view[s.sessionId]
        else:
            cliente, usuario, ip, canales = view[s.sessionId]
            canales = canales | {change.canalId} if change.kind == JOINED \
                else canales - {change.canalId}
            view[s.sessionId] = (cliente, usuario, ip, canales)


def sessionsOnly(snap: dict) -> dict:
    """A snapshot without servers that have no session."""
    return {server: sessions for server, sessions in snap.items() if sessions}


class AddRemoveTests(unittest.SynchronousTestCase):
    """Adding, replacing and removing sessions."""

    def setUp(self):
        """A state for C{srv-local}."""
        self.state = ClusterState(LOCAL)

    def check(self):
        """Assert the indexes are consistent (probing unused keys too)."""
        assertConsistent(self, self.state, probeUsers=[1, 2, 3, 99],
                         probeChannels=[3, 5, 8, 99], probeSessions=["s1", "s2", "zz"])

    def test_emptyState(self):
        """A new state knows only the local server, with no session."""
        self.assertEqual(self.state.servers(), [LOCAL])
        self.assertEqual(self.state.countSessions(), 0)
        self.assertEqual(self.state.serversOfUser(1), set())
        self.assertEqual(self.state.channels(), {})
        self.check()

    def test_addSession(self):
        """
        Adding a session gives one ADDED change, makes its server known and
        sets its C{serverId} to that server whatever it claimed.
        """
        s = session("s1", 12, [3, 8], serverId="srv-liar")
        changes = self.state.addSession("srv-a", s)
        self.assertEqual(changes, [Change(ADDED, s)])
        self.assertEqual(s.serverId, "srv-a")
        self.assertTrue(self.state.hasServer("srv-a"))
        self.assertEqual(self.state.serversOfUser(12), {"srv-a"})
        self.assertEqual(self.state.serversOfChannel(3), {"srv-a"})
        self.assertEqual(self.state.serversOfSession("s1"), {"srv-a"})
        self.check()

    def test_addIdenticalIsNoChange(self):
        """Adding a session equal to the one held gives no change."""
        self.state.addSession("srv-a", session("s1", 12, [3]))
        self.assertEqual(self.state.addSession("srv-a", session("s1", 12, [3])), [])
        self.check()

    def test_replaceSession(self):
        """
        Adding a different session with a held C{sessionId} replaces it:
        REMOVED of the old, ADDED of the new, and indexes follow (user 12
        and channel 3 are gone from srv-a).
        """
        old = session("s1", 12, [3])
        self.state.addSession("srv-a", old)
        new = session("s1", 13, [8])
        self.assertEqual(self.state.addSession("srv-a", new),
                         [Change(REMOVED, old), Change(ADDED, new)])
        self.assertEqual(self.state.serversOfUser(12), set())
        self.assertEqual(self.state.serversOfChannel(3), set())
        self.assertEqual(self.state.serversOfUser(13), {"srv-a"})
        self.check()

    def test_removeSession(self):
        """
        Removing a session gives one REMOVED; removing it again, or from an
        unknown server, gives none.  The server stays known.
        """
        s = session("s1", 12, [3])
        self.state.addSession("srv-a", s)
        self.assertEqual(self.state.removeSession("srv-a", "s1"), [Change(REMOVED, s)])
        self.assertEqual(self.state.removeSession("srv-a", "s1"), [])
        self.assertEqual(self.state.removeSession("srv-zz", "s1"), [])
        self.assertTrue(self.state.hasServer("srv-a"))
        self.assertFalse(self.state.hasServer("srv-zz"))
        self.check()

    def test_indexesKeepOtherSessions(self):
        """
        Removing one of two sessions of a user (and of a channel) on a
        server keeps the server in both indexes.
        """
        self.state.addSession("srv-a", session("s1", 12, [3]))
        self.state.addSession("srv-a", session("s2", 12, [3]))
        self.state.removeSession("srv-a", "s1")
        self.assertEqual(self.state.serversOfUser(12), {"srv-a"})
        self.assertEqual(self.state.serversOfChannel(3), {"srv-a"})
        self.assertEqual([s.sessionId for s in self.state.userSessionsOn("srv-a", 12)], ["s2"])
        self.check()

    def test_removeClient(self):
        """
        C{removeClient} removes every session of one client on one server,
        not the client's sessions elsewhere nor other clients'.
        """
        for sid, cliente in [("s1", 12), ("s2", 12), ("s3", 13)]:
            self.state.addSession("srv-a", session(sid, cliente, [3]))
        self.state.addSession("srv-b", session("s4", 12, [3]))
        changes = self.state.removeClient("srv-a", 12)
        self.assertEqual(sorted((c.kind, c.session.sessionId) for c in changes),
                         [(REMOVED, "s1"), (REMOVED, "s2")])
        self.assertEqual(self.state.serversOfUser(12), {"srv-b"})
        self.assertEqual({s.sessionId for s in self.state.channelMembers(3)}, {"s3", "s4"})
        self.assertEqual(self.state.removeClient("srv-a", 12), [])
        self.assertEqual(self.state.removeClient("srv-zz", 12), [])
        self.check()

    def test_sameSessionIdOnTwoServers(self):
        """
        Two servers may use one C{sessionId}: both are held, indexed apart,
        and removing one leaves the other.
        """
        a = session("session-12", 1, [3])
        b = session("session-12", 2, [4])
        self.state.addSession("srv-a", a)
        self.state.addSession("srv-b", b)
        self.assertEqual(self.state.serversOfSession("session-12"), {"srv-a", "srv-b"})
        self.assertIs(self.state.session("srv-a", "session-12"), a)
        self.assertIs(self.state.session("srv-b", "session-12"), b)
        self.check()
        self.state.removeSession("srv-a", "session-12")
        self.assertEqual(self.state.serversOfSession("session-12"), {"srv-b"})
        self.assertEqual(self.state.serversOfChannel(3), set())
        self.assertEqual(self.state.serversOfChannel(4), {"srv-b"})
        self.check()

    def test_localSessions(self):
        """Local sessions are indexed like remote ones."""
        self.state.addSession(LOCAL, session("s1", 12, [3]))
        self.state.addSession("srv-a", session("s2", 12, [3]))
        self.assertEqual(self.state.serversOfUser(12), {LOCAL, "srv-a"})
        self.assertEqual(len(self.state.channelMembers(3)), 2)
        self.check()


class MembershipTests(unittest.SynchronousTestCase):
    """C{setMembership}: joins and leaves."""

    def setUp(self):
        """A state with session s1 (channel 3) on srv-a."""
        self.state = ClusterState(LOCAL)
        self.s = session("s1", 12, [3])
        self.state.addSession("srv-a", self.s)

    def test_join(self):
        """Joining a new channel gives one JOINED and indexes it."""
        self.assertEqual(self.state.setMembership("srv-a", "s1", 8, True),
                         [Change(JOINED, self.s, 8)])
        self.assertEqual(self.s.canales, {3, 8})
        self.assertEqual(self.state.serversOfChannel(8), {"srv-a"})
        assertConsistent(self, self.state)

    def test_joinIdempotent(self):
        """Joining a channel the session is in gives no change."""
        self.assertEqual(self.state.setMembership("srv-a", "s1", 3, True), [])
        self.state.setMembership("srv-a", "s1", 8, True)
        self.assertEqual(self.state.setMembership("srv-a", "s1", 8, True), [])
        self.assertEqual(self.s.canales, {3, 8})
        assertConsistent(self, self.state)

    def test_leave(self):
        """
        Leaving gives one LEFT and unindexes the channel; leaving again
        gives nothing.
        """
        self.assertEqual(self.state.setMembership("srv-a", "s1", 3, False),
                         [Change(LEFT, self.s, 3)])
        self.assertEqual(self.state.serversOfChannel(3), set())
        self.assertEqual(self.state.setMembership("srv-a", "s1", 3, False), [])
        self.assertEqual(self.state.setMembership("srv-a", "s1", 99, False), [])
        assertConsistent(self, self.state, probeChannels=[3, 99])

    def test_unknownSession(self):
        """
        A membership change for an unknown session or server gives no change
        and creates nothing.
        """
        before = snapshot(self.state)
        self.assertEqual(self.state.setMembership("srv-a", "nope", 3, True), [])
        self.assertEqual(self.state.setMembership("srv-zz", "s1", 3, True), [])
        self.assertEqual(snapshot(self.state), before)
        self.assertFalse(self.state.hasServer("srv-zz"))
        assertConsistent(self, self.state)

    def test_leaveKeepsOtherMember(self):
        """A member leaving keeps the server indexed while another stays."""
        self.state.addSession("srv-a", session("s2", 13, [3]))
        self.state.setMembership("srv-a", "s1", 3, False)
        self.assertEqual(self.state.serversOfChannel(3), {"srv-a"})
        self.assertEqual([s.sessionId for s in self.state.channelMembers(3)], ["s2"])
        assertConsistent(self, self.state)


class ReplaceAndDropTests(unittest.SynchronousTestCase):
    """C{replaceServer} (SYNC_STATE) and C{dropServer} (link lost)."""

    def setUp(self):
        """A state with s1 and s2 on srv-a and s3 on srv-b."""
        self.state = ClusterState(LOCAL)
        self.state.addSession("srv-a", session("s1", 1, [3]))
        self.state.addSession("srv-a", session("s2", 2, [3, 4]))
        self.state.addSession("srv-b", session("s3", 1, [3]))

    def test_userKeepsSomeSessions(self):
        """
        A SYNC_STATE in which a user loses some of its sessions, keeps
        others and gains one, and another user appears with two: each
        user's sessions are exactly what the SYNC_STATE says.
        """
        self.state.replaceServer("srv-c", [session("c1", 9), session("c2", 9), session("c3", 9)])
        self.state.replaceServer("srv-c", [session("c1", 9), session("c3", 9),
                                           session("c4", 8), session("c5", 8)])
        self.assertEqual(sorted(s.sessionId for s in self.state.userSessionsOn("srv-c", 9)),
                         ["c1", "c3"])
        self.state.replaceServer("srv-c", [session("c3", 9), session("c6", 9),
                                           session("c4", 8), session("c5", 8)])
        self.assertEqual(sorted(s.sessionId for s in self.state.userSessionsOn("srv-c", 9)),
                         ["c3", "c6"])
        self.assertEqual(sorted(s.sessionId for s in self.state.userSessionsOn("srv-c", 8)),
                         ["c4", "c5"])
        assertConsistent(self, self.state, probeUsers=(8, 9))

    def test_unchangedSessionsGiveNoChange(self):
        """
        A SYNC_STATE repeating what is known gives no change and keeps the
        held objects.
        """
        held = self.state.session("srv-a", "s1")
        changes = self.state.replaceServer(
            "srv-a", [session("s1", 1, [3]), session("s2", 2, [4, 3])])
        self.assertEqual(changes, [])
        self.assertIs(self.state.session("srv-a", "s1"), held)
        assertConsistent(self, self.state)

    def test_diff(self):
        """
        A SYNC_STATE gives REMOVED for sessions gone, REMOVED+ADDED for
        changed ones and ADDED for new ones; unchanged ones give nothing.
        """
        new2 = session("s2", 2, [4])
        new5 = session("s5", 5, [9])
        changes = self.state.replaceServer("srv-a", [new2, new5])
        self.assertEqual(sorted((c.kind, c.session.sessionId) for c in changes),
                         [(ADDED, "s2"), (ADDED, "s5"), (REMOVED, "s1"), (REMOVED, "s2")])
        self.assertEqual({s.sessionId for s in self.state.sessionsOf("srv-a")}, {"s2", "s5"})
        self.assertEqual(self.state.serversOfChannel(3), {"srv-b"})
        self.assertEqual(self.state.serversOfUser(1), {"srv-b"})
        self.assertEqual(new5.serverId, "srv-a")
        assertConsistent(self, self.state, probeUsers=[1, 2], probeChannels=[3, 4])

    def test_emptySyncEmptiesServer(self):
        """An empty SYNC_STATE removes every session but keeps the server."""
        changes = self.state.replaceServer("srv-a", [])
        self.assertEqual(sorted(c.session.sessionId for c in changes), ["s1", "s2"])
        self.assertTrue(self.state.hasServer("srv-a"))
        self.assertEqual(self.state.countSessions("srv-a"), 0)
        assertConsistent(self, self.state, probeUsers=[2], probeChannels=[4])

    def test_syncNewServer(self):
        """A SYNC_STATE from an unknown server adds it."""
        changes = self.state.replaceServer("srv-c", [session("s9", 9, [1], serverId="x")])
        self.assertEqual([(c.kind, c.session.serverId) for c in changes], [(ADDED, "srv-c")])
        assertConsistent(self, self.state)

    def test_syncDuplicateSessionIds(self):
        """Within one SYNC_STATE, the last session of one id wins."""
        self.state.replaceServer("srv-c", [session("d", 1, [1]), session("d", 2, [2])])
        self.assertEqual(self.state.session("srv-c", "d").clienteId, 2)
        assertConsistent(self, self.state, probeUsers=[1], probeChannels=[1])

    def test_dropServer(self):
        """
        Dropping a server removes it and its sessions, one REMOVED each,
        leaving other servers' sessions indexed.
        """
        changes = self.state.dropServer("srv-a")
        self.assertEqual(sorted((c.kind, c.session.sessionId) for c in changes),
                         [(REMOVED, "s1"), (REMOVED, "s2")])
        self.assertFalse(self.state.hasServer("srv-a"))
        self.assertEqual(self.state.serversOfUser(1), {"srv-b"})
        self.assertEqual(self.state.serversOfChannel(4), set())
        self.assertEqual(self.state.dropServer("srv-a"), [])
        assertConsistent(self, self.state, probeUsers=[1, 2], probeChannels=[3, 4])

    def test_localCannotBeDropped(self):
        """Dropping the local server raises and changes nothing."""
        self.state.addSession(LOCAL, session("l1", 1, [3]))
        before = snapshot(self.state)
        self.assertRaises(ValueError, self.state.dropServer, LOCAL)
        self.assertEqual(snapshot(self.state), before)
        assertConsistent(self, self.state)

    def test_addServer(self):
        """C{addServer} makes a server known without sessions, once."""
        self.state.addServer("srv-c")
        self.state.addServer("srv-c")
        self.assertEqual(self.state.servers().count("srv-c"), 1)
        self.assertEqual(self.state.sessionsOf("srv-c"), [])
        assertConsistent(self, self.state)


class LimitTests(unittest.SynchronousTestCase):
    """Limits refuse a change and leave everything as it was."""

    def setUp(self):
        """A state limited to 2 sessions per server and 2 channels each."""
        self.state = ClusterState(LOCAL, maxSessionsPerServer=2, maxChannelsPerSession=2)
        self.state.addSession("srv-a", session("s1", 1, [3]))
        self.state.addSession("srv-a", session("s2", 2, [3, 4]))

    def assertRefused(self, call, *args):
        """C{call(*args)} raises L{StateLimitError} and changes nothing."""
        before = snapshot(self.state)
        servers = sorted(self.state.servers())
        indexes = copy.deepcopy(recomputed(self.state))
        self.assertRaises(StateLimitError, call, *args)
        self.assertEqual(snapshot(self.state), before)
        self.assertEqual(sorted(self.state.servers()), servers)
        self.assertEqual(recomputed(self.state), indexes)
        assertConsistent(self, self.state)

    def test_tooManySessions(self):
        """A third session on a remote server is refused."""
        self.assertRefused(self.state.addSession, "srv-a", session("s3", 3))

    def test_replacingAtLimitAllowed(self):
        """Replacing a held session at the limit is allowed."""
        self.state.addSession("srv-a", session("s2", 2, [5]))
        self.assertEqual(self.state.session("srv-a", "s2").canales, {5})
        assertConsistent(self, self.state)

    def test_localNotLimitedBySessions(self):
        """The local server is not bound by C{maxSessionsPerServer}."""
        for i in range(4):
            self.state.addSession(LOCAL, session(f"l{i}", i))
        self.assertEqual(self.state.countSessions(LOCAL), 4)

    def test_tooManyChannels(self):
        """
        A session in too many channels is refused, also on a server not yet
        known (which stays unknown) and also on the local server.
        """
        self.assertRefused(self.state.addSession, "srv-a", session("s9", 9, [1, 2, 3]))
        self.assertRefused(self.state.addSession, "srv-new", session("s9", 9, [1, 2, 3]))
        self.assertFalse(self.state.hasServer("srv-new"))
        self.assertRefused(self.state.addSession, LOCAL, session("s9", 9, [1, 2, 3]))

    def test_joinOverLimit(self):
        """Joining a third channel is refused; the session keeps its two."""
        self.assertRefused(self.state.setMembership, "srv-a", "s2", 5, True)
        self.assertEqual(self.state.session("srv-a", "s2").canales, {3, 4})

    def test_joinHeldChannelAtLimit(self):
        """Re-joining a held channel at the limit is a no-op, not an error."""
        self.assertEqual(self.state.setMembership("srv-a", "s2", 4, True), [])

    def test_syncTooManySessions(self):
        """
        A SYNC_STATE with more sessions than the limit is refused whole: the
        old sessions stay, and the given sessions are not touched.
        """
        given = [session(f"n{i}", i, serverId="claimed") for i in range(3)]
        self.assertRefused(self.state.replaceServer, "srv-a", given)
        self.assertEqual({s.serverId for s in given}, {"claimed"})
        self.assertRefused(self.state.replaceServer, "srv-new", given)
        self.assertFalse(self.state.hasServer("srv-new"))

    def test_syncTooManyChannels(self):
        """A SYNC_STATE with a session in too many channels is refused whole."""
        self.assertRefused(self.state.replaceServer, "srv-a",
                           [session("s1", 1), session("x", 5, [1, 2, 3])])

    def test_unbounded(self):
        """With no limits, many sessions and channels are accepted."""
        state = ClusterState(LOCAL)
        for i in range(50):
            state.addSession("srv-a", session(f"s{i}", i, range(20)))
        self.assertEqual(state.countSessions("srv-a"), 50)
        assertConsistent(self, state)


# Random operation sequences --------------------------------------------------

SERVERS = st.sampled_from([LOCAL, "srv-a", "srv-b", "srv-c"])
REMOTES = st.sampled_from(["srv-a", "srv-b", "srv-c"])
SESSION_IDS = st.sampled_from(["s1", "s2", "s3", "s4", "session-12"])
CLIENTES = st.integers(min_value=1, max_value=4)
CHANNELS = st.integers(min_value=1, max_value=5)
CANALES = st.sets(CHANNELS, max_size=4)
MAX_SESSIONS = 3
MAX_CHANNELS = 3


@st.composite
def sessions(draw):
    """A fresh random L{SessionInfo} (small domains, so ids collide)."""
    return session(draw(SESSION_IDS), draw(CLIENTES), draw(CANALES),
                   usuario=draw(st.sampled_from(["ana", "bea"])),
                   ip=draw(st.sampled_from([None, "10.0.0.1"])))


class StateMachine(RuleBasedStateMachine):
    """
    Random sequences of every mutation against a plain model.  After each
    step: the state equals the model, the returned changes replayed on the
    previous snapshot give the new one, a refused step changed nothing, and
    every index is consistent.
    """

    def __init__(self):
        super().__init__()
        self.test = unittest.SynchronousTestCase()
        self.state = ClusterState(LOCAL, maxSessionsPerServer=MAX_SESSIONS,
                                  maxChannelsPerSession=MAX_CHANNELS)

    def apply(self, call, *args, expectRefused: bool = False, noChangeFor=()):
        """
        Run one mutation and check its changes against the snapshots.

        @param noChangeFor: C{(serverId, sessionId)} pairs whose session
            did not change and so must not appear in the changes.
        """
        before = snapshot(self.state)
        servers = set(self.state.servers())
        try:
            changes = call(*args)
        except StateLimitError:
            assert expectRefused, f"unexpected refusal of {call.__name__}{args}"
            assert snapshot(self.state) == before
            assert set(self.state.servers()) == servers
            return None
        assert not expectRefused, f"{call.__name__}{args} should have been refused"
        after = snapshot(self.state)
        replica = copy.deepcopy(before)
        replay(replica, changes)
        assert sessionsOnly(replica) == sessionsOnly(after), (changes, replica, after)
        touched = {(c.session.serverId, c.session.sessionId) for c in changes}
        assert not touched & set(noChangeFor), (touched, noChangeFor)
        return changes

    @rule(server=SERVERS, s=sessions())
    def addSession(self, server, s):
        """Add (or replace) a session, refused over a limit."""
        view = snapshot(self.state).get(server, {})
        refused = len(s.canales) > MAX_CHANNELS or (
            server != LOCAL and s.sessionId not in view and len(view) >= MAX_SESSIONS)
        same = view.get(s.sessionId) == (s.clienteId, s.usuario, s.ip, frozenset(s.canales))
        changes = self.apply(self.state.addSession, server, s, expectRefused=refused)
        if changes is not None and same:
            assert changes == []

    @rule(server=SERVERS, sid=SESSION_IDS)
    def removeSession(self, server, sid):
        """Remove one session (maybe unknown)."""
        self.apply(self.state.removeSession, server, sid)

    @rule(server=SERVERS, cliente=CLIENTES)
    def removeClient(self, server, cliente):
        """Remove every session of a client on a server."""
        self.apply(self.state.removeClient, server, cliente)

    @rule(server=SERVERS, sid=SESSION_IDS, canal=CHANNELS, joined=st.booleans())
    def setMembership(self, server, sid, canal, joined):
        """Join or leave a channel; joining over the limit is refused."""
        held = snapshot(self.state).get(server, {}).get(sid)
        refused = (joined and held is not None and canal not in held[3]
                   and len(held[3]) >= MAX_CHANNELS)
        changes = self.apply(self.state.setMembership, server, sid, canal, joined,
                             expectRefused=refused)
        if changes is not None and (held is None or (canal in held[3]) == joined):
            assert changes == []

    @rule(server=SERVERS, new=st.lists(sessions(), max_size=5))
    def replaceServer(self, server, new):
        """SYNC_STATE: unchanged sessions give no change."""
        incoming = {s.sessionId: s for s in new}
        refused = any(len(s.canales) > MAX_CHANNELS for s in new) or (
            server != LOCAL and len(incoming) > MAX_SESSIONS)
        view = snapshot(self.state).get(server, {})
        unchanged = [
            (server, sid) for sid, s in incoming.items()
            if view.get(sid) == (s.clienteId, s.usuario, s.ip, frozenset(s.canales))
        ]
        self.apply(self.state.replaceServer, server, new, expectRefused=refused,
                   noChangeFor=unchanged)

    @rule(server=SERVERS)
    def dropServer(self, server):
        """Drop a remote server; the local one cannot be dropped."""
        if server == LOCAL:
            before = snapshot(self.state)
            self.test.assertRaises(ValueError, self.state.dropServer, LOCAL)
            assert snapshot(self.state) == before
            return
        self.apply(self.state.dropServer, server)
        assert not self.state.hasServer(server)

    @invariant()
    def consistent(self):
        """Every index matches a full scan."""
        assertConsistent(self.test, self.state, probeUsers=range(1, 5),
                         probeChannels=range(1, 6),
                         probeSessions=["s1", "s2", "s3", "s4", "session-12"])


class RandomSequenceTests(unittest.SynchronousTestCase):
    """Random operation sequences keep the state and its indexes consistent."""

    def test_stateMachine(self):
        """
        150 derandomized sequences of up to 40 random mutations each (about
        a second): no inconsistency, wrong change list or partial refusal.
        """
        run_state_machine_as_test(StateMachine, settings=settings(
            max_examples=150, stateful_step_count=40, deadline=None, derandomize=True,
            suppress_health_check=list(HealthCheck), database=None))
