"""
Tests for the send hot path (L{clustersync.cluster.sending.Sending.sendToUser}):
a send to a user on one peer goes through the link's confirmed send, and
the routes kept for the next sends (L{clustersync.cluster.routes.Routes})
never point at a server or link the user is no longer on.
"""

from __future__ import annotations

import json

from twisted.trial import unittest

from clustersync.wire.codec import DirectMessage, DirectMessagePayload, decode, encode, rawMessage
from clustersync.errors import PeerUnavailable, UnknownUser
from clustersync.cluster import routes as routesModule
from clustersync.cluster.node import Delivery
from clustersync.cluster.routes import PeerRoute, UserRoute

from tests.nodefakes import FakeLink, NodeTestMixin


class _ConfirmingLink(FakeLink):
    """A L{FakeLink} with the confirmed send of a real link, firing at once."""

    def sendConfirmed(self, line: bytes, result=None, onLost=None, context=None):
        """Record C{line}; a Deferred that has fired with C{result}."""
        if not self.sendLine(line):
            return None
        from twisted.internet.defer import succeed

        return succeed(result)


class _PendingLink(FakeLink):
    """
    A L{FakeLink} whose confirmed sends wait for an acknowledgement that
    never comes (their L{Deferred}s stay unfired).
    """

    def sendConfirmed(self, line: bytes, result=None, onLost=None, context=None):
        """Record C{line}; a L{Deferred} that has not fired."""
        if not self.sendLine(line):
            return None
        from twisted.internet.defer import Deferred

        return Deferred()


def disconnectedLine(origin: str, sessionId: str, clienteId: int) -> bytes:
    """A CLIENT_DISCONNECTED line from C{origin}."""
    return json.dumps({"type": "CLIENT_DISCONNECTED", "origin": origin, "payload": {
        "sessionId": sessionId, "clienteId": clienteId}}).encode()


class RouteTests(NodeTestMixin, unittest.TestCase):
    """
    A send to a user on one peer goes through the link's confirmed send.
    After a first one, the node keeps the user's route
    (L{Routes.users}) and builds the next lines itself: the same
    bytes, results, failures and counters as the first way, and never a
    line to a server or link the user is no longer on.
    """

    def setUp(self) -> None:
        """A confirming link to srv-d hosting session ld1 of user 55."""
        NodeTestMixin.setUp(self)
        self.routes = self.node.sending.routes
        self.d = self.confirming("srv-d")
        self.remote(self.d, "ld1", 55)

    def confirming(self, serverId: str, direction: str = "inbound", cls=_ConfirmingLink):
        """Open and establish a link of class C{cls} to C{serverId}."""
        link = cls(serverId, direction)
        self.node.linkOpened(link)
        self.node.linkEstablished(link)
        link.lines.clear()
        return link

    def messages(self, link: FakeLink) -> list:
        """The messages of the DIRECT_MESSAGE lines C{link} got, then forget them."""
        found = [json.loads(x)["payload"]["message"] for x in link.lines]
        link.lines.clear()
        return found

    def test_sameLines(self) -> None:
        """
        The first send keeps the route; the next ones write the very bytes
        the typed encoder writes, fire with the peer as destination, and
        are counted like the first.
        """
        self.assertNotIn(55, self.routes.users)
        sent = []
        for i, message in enumerate([{"n": 0}, {"n": 1, "s": "\u00e9\n"}, {}]):
            result = self.successResultOf(self.node.sendToUser(55, message))
            self.assertEqual(result, Delivery(0, ("srv-d",)))
            self.assertIn(55, self.routes.users)
            sent.append(encode(DirectMessage("srv-a", DirectMessagePayload(55, rawMessage(message)))))
        self.assertEqual(self.d.lines, sent)
        self.assertEqual(self.node.metrics.messagesOut["DIRECT_MESSAGE"], 3)

    def test_routeNamesItsParts(self) -> None:
        """
        The kept route of user 55 is a L{UserRoute}: the start of every
        line to the user, and the L{PeerRoute} of srv-d's current link,
        which fires sends with srv-d as destination.
        """
        self.node.sendToUser(55, {"n": 1})
        route = self.routes.users[55]
        self.assertIsInstance(route, UserRoute)
        self.assertEqual(route.prefix,
                         b'{"type":"DIRECT_MESSAGE","origin":"srv-a","payload":{"userId":55,"message":')
        self.assertIsInstance(route.peer, PeerRoute)
        self.assertIs(route.peer, self.routes.peers["srv-d"])
        self.assertEqual((route.peer.serverId, route.peer.link, route.peer.delivery),
                         ("srv-d", self.d, Delivery(0, ("srv-d",))))

    def test_routeTaken(self) -> None:
        """
        Once the route is kept, a send to the user does not go through the
        general one-peer send (L{Sending._sendOne}) again.
        """
        self.node.sendToUser(55, {"n": 1})
        self.patch(self.node.sending, "_sendOne", lambda *a: self.fail("_sendOne called"))
        self.assertEqual(self.successResultOf(self.node.sendToUser(55, {"n": 2})),
                         Delivery(0, ("srv-d",)))
        self.assertEqual(self.messages(self.d), [{"n": 1}, {"n": 2}])

    def test_userMoves(self) -> None:
        """
        A user who moves from srv-d to srv-b while srv-d stays linked is
        sent to on srv-b only; while on both, on both.
        """
        self.node.sendToUser(55, {"n": 1})
        self.assertIn(55, self.routes.users)
        self.remote(self.b, "lb9", 55)
        result = self.successResultOf(self.node.sendToUser(55, {"n": 2}))
        self.assertEqual(sorted(result.servers), ["srv-b", "srv-d"])
        self.node.dispatch(self.d, decode(disconnectedLine("srv-d", "ld1", 55)))
        self.messages(self.d)
        self.messages(self.b)
        result = self.successResultOf(self.node.sendToUser(55, {"n": 3}))
        self.assertEqual(result.servers, ("srv-b",))
        self.assertEqual((self.messages(self.d), self.messages(self.b)), ([], [{"n": 3}]))

    def test_userMovesHere(self) -> None:
        """
        A user who leaves srv-d and logs in on this node is delivered to
        locally, and srv-d gets nothing.
        """
        self.node.sendToUser(55, {"n": 1})
        self.messages(self.d)
        self.node.dispatch(self.d, decode(disconnectedLine("srv-d", "ld1", 55)))
        self.node.clientConnected("la5", 55, "eva")
        self.d.lines.clear()
        result = self.successResultOf(self.node.sendToUser(55, {"n": 2}))
        self.assertEqual(result, Delivery(1, ()))
        self.assertEqual(self.messages(self.d), [])
        self.assertEqual(self.delivery.calls[-1][:2], (["la5"], b'{"n":2}'))

    def test_userGone(self) -> None:
        """
        Once the user's last session is gone, a send fails with
        L{UnknownUser}, route or not.
        """
        self.node.sendToUser(55, {"n": 1})
        self.node.dispatch(self.d, decode(disconnectedLine("srv-d", "ld1", 55)))
        self.d.lines.clear()
        self.failureResultOf(self.node.sendToUser(55, {"n": 2}), UnknownUser)
        self.assertEqual(self.d.lines, [])

    def checkLinkReplaced(self, message) -> None:
        """
        Send C{message(1)} to user 55 over srv-d's inbound link, let an
        outbound link to srv-d win the tie-break, and check that the next
        send goes to the winner only and fires with srv-d as destination.
        """
        self.successResultOf(self.node.sendToUser(55, message(1)))
        second = self.confirming("srv-d", "outbound")
        self.assertTrue(self.d.duplicate)
        self.assertEqual(self.routes.users, {})
        self.d.lines.clear()
        self.assertEqual(self.successResultOf(self.node.sendToUser(55, message(2))).servers,
                         ("srv-d",))
        self.assertEqual((self.messages(self.d), self.messages(second)), ([], [message(2)]))

    def test_linkReplaced(self) -> None:
        """
        When a second link to srv-d wins the tie-break, the routes go with
        the first one: sends go to the winner only.
        """
        self.checkLinkReplaced(lambda n: {"n": n})

    def test_linkReplacedOtherMessage(self) -> None:
        """
        The same for a message that keeps no route (the peer's confirmed
        route kept per link, L{Routes.peers}, goes with the link).
        """
        self.checkLinkReplaced(lambda n: f"m{n}")

    def checkLinkLost(self, message) -> None:
        """
        Send C{message(1)} to user 55, lose srv-d's link, and check that
        the user is unknown, then that once srv-d is back the send goes to
        its new link only and fires with srv-d as destination.
        """
        self.assertEqual(self.successResultOf(self.node.sendToUser(55, message(1))).servers,
                         ("srv-d",))
        self.node.linkLost(self.d, "gone", True)
        self.assertEqual(self.routes.users, {})
        self.assertNotIn("srv-d", self.routes.peers)  # the lost link is not kept
        self.failureResultOf(self.node.sendToUser(55, message(2)), UnknownUser)
        second = self.confirming("srv-d")
        self.remote(second, "ld1", 55)
        self.d.lines.clear()
        self.assertEqual(self.successResultOf(self.node.sendToUser(55, message(3))).servers,
                         ("srv-d",))
        self.assertEqual((self.messages(self.d), self.messages(second)), ([], [message(3)]))

    def test_linkLost(self) -> None:
        """
        A lost link takes its routes: with srv-d gone the user is unknown,
        and once srv-d is back sends go to its new link only.
        """
        self.checkLinkLost(lambda n: {"n": n})

    def test_linkLostOtherMessage(self) -> None:
        """The same for a message that keeps no route."""
        self.checkLinkLost(lambda n: f"m{n}")

    def test_linkRefuses(self) -> None:
        """
        A kept route whose link no longer takes lines fails the send with
        L{PeerUnavailable} naming the peer, and does not count it.
        """
        self.node.sendToUser(55, {"n": 1})
        self.d.accept = False
        f = self.failureResultOf(self.node.sendToUser(55, {"n": 2}), PeerUnavailable)
        self.assertEqual(f.value.servers, ("srv-d",))
        self.assertEqual(f.value.delivery, Delivery(0, ()))
        self.assertEqual(self.node.metrics.messagesOut["DIRECT_MESSAGE"], 1)

    def test_notJson(self) -> None:
        """
        With a route kept, a message the encoder refuses fails with the
        codec's C{TypeError}, and nothing is written.
        """
        self.node.sendToUser(55, {"n": 1})
        self.d.lines.clear()
        f = self.failureResultOf(self.node.sendToUser(55, {"n": object()}), TypeError)
        self.assertIn("not JSON-serialisable", str(f.value))
        f = self.failureResultOf(self.node.sendToUser(55, {(1, 2): 1}), TypeError)
        self.assertIn("not JSON-serialisable", str(f.value))
        cyclic: dict = {}
        cyclic["self"] = cyclic
        f = self.failureResultOf(self.node.sendToUser(55, cyclic), TypeError)
        self.assertIn("not JSON-serialisable", str(f.value))
        self.assertEqual(self.d.lines, [])

    def test_otherMessages(self) -> None:
        """
        Messages that are not a C{dict} keep no route, and take the first
        way with a route kept: an encoded L{msgspec.Raw} still has its
        newlines turned into spaces.
        """
        from msgspec import Raw

        self.node.sendToUser(55, "uno")
        self.assertNotIn(55, self.routes.users)  # kept for dict messages only
        self.node.sendToUser(55, {"n": 1})
        self.d.lines.clear()
        self.successResultOf(self.node.sendToUser(55, Raw(b'{"a":\n1}')))
        self.successResultOf(self.node.sendToUser(55, [1, "x"]))
        self.assertEqual(self.d.lines, [
            b'{"type":"DIRECT_MESSAGE","origin":"srv-a","payload":{"userId":55,'
            b'"message":{"a": 1}}}\n',
            b'{"type":"DIRECT_MESSAGE","origin":"srv-a","payload":{"userId":55,'
            b'"message":[1,"x"]}}\n',
        ])

    def test_boolIsNotAUser(self) -> None:
        """
        C{True} equals 1 but is not user 1 (nor channel 1): the send fails
        with C{TypeError}, the route of user 1 is not taken, and no line
        carries C{true} for an id.
        """
        self.remote(self.d, "ld2", 1, [1])
        self.node.sendToUser(1, {"n": 1})
        self.assertIn(1, self.routes.users)
        self.d.lines.clear()
        for d in (self.node.sendToUser(True, {"n": 2}), self.node.sendToUser(1.0, {"n": 2}),
                  self.node.sendToChannel(True, {"n": 2})):
            f = self.failureResultOf(d, TypeError)
            self.assertIn("must be an int", str(f.value))
        self.assertEqual(self.d.lines, [])

    def test_confirmSendsTurnedOff(self) -> None:
        """
        With C{confirm_sends} turned off after a route was kept, sends fire
        at once instead of waiting for the peer.
        """
        pending = self.confirming("srv-e", cls=_PendingLink)
        self.remote(pending, "le1", 66)
        self.assertNoResult(self.node.sendToUser(66, {"n": 1}))
        self.assertNoResult(self.node.sendToUser(66, {"n": 2}))
        self.assertIn(66, self.routes.users)
        self.node.config.confirmSends = False
        self.assertEqual(self.successResultOf(self.node.sendToUser(66, {"n": 3})).servers,
                         ("srv-e",))
        self.assertEqual(self.messages(pending), [{"n": 1}, {"n": 2}, {"n": 3}])

    def test_confirmSendsOff(self) -> None:
        """
        With C{confirm_sends} off, a kept route writes with the link's
        C{sendLine}: sends fire at once with the same lines, a refusing link fails them
        with L{PeerUnavailable}, and turning confirmation back on makes them
        wait for the peer again.
        """
        self.node.config.confirmSends = False
        pending = self.confirming("srv-e", cls=_PendingLink)
        self.remote(pending, "le1", 66)
        for n in range(3):
            self.assertEqual(self.successResultOf(self.node.sendToUser(66, {"n": n})),
                             Delivery(0, ("srv-e",)))
        self.assertIn(66, self.routes.users)
        self.assertEqual(pending.lines, [
            encode(DirectMessage("srv-a", DirectMessagePayload(66, rawMessage({"n": n}))))
            for n in range(3)])
        self.assertEqual(self.node.metrics.messagesOut["DIRECT_MESSAGE"], 3)
        pending.accept = False
        f = self.failureResultOf(self.node.sendToUser(66, {"n": 3}), PeerUnavailable)
        self.assertEqual(f.value.servers, ("srv-e",))
        pending.accept = True
        self.node.config.confirmSends = True
        self.assertNoResult(self.node.sendToUser(66, {"n": 4}))
        self.assertNoResult(self.node.sendToUser(66, {"n": 5}))
        self.assertEqual(self.messages(pending)[-2:], [{"n": 4}, {"n": 5}])
        self.assertEqual(self.node.metrics.messagesOut["DIRECT_MESSAGE"], 5)

    def test_linkWithoutConfirmedSend(self) -> None:
        """
        A route over a link that has no C{sendConfirmed} (nor
        C{whenAcknowledged}) writes with its C{sendLine} and fires at once,
        kept or not; a refused line fails the send with L{PeerUnavailable}.
        """
        self.remote(self.b, "lb7", 77)
        for n in range(3):
            self.assertEqual(self.successResultOf(self.node.sendToUser(77, {"n": n})),
                             Delivery(0, ("srv-b",)))
        self.assertIn(77, self.routes.users)
        self.assertEqual(self.messages(self.b), [{"n": 0}, {"n": 1}, {"n": 2}])
        self.b.accept = False
        f = self.failureResultOf(self.node.sendToUser(77, {"n": 3}), PeerUnavailable)
        self.assertEqual(f.value.servers, ("srv-b",))

    def test_peerRouteFollowsTheRegistry(self) -> None:
        """
        A one-peer send that is not on a kept user route writes to the
        peer's link in the registry, even one the routes were not told of.
        """
        self.node.sendToUser(55, "m1")
        replacement = _ConfirmingLink("srv-d")
        self.node.links.active["srv-d"] = replacement
        self.d.lines.clear()
        self.assertEqual(self.successResultOf(self.node.sendToUser(55, "m2")).servers,
                         ("srv-d",))
        self.assertEqual((self.messages(self.d), self.messages(replacement)), ([], ["m2"]))
        self.assertIs(self.routes.peers["srv-d"].link, replacement)

    def test_bounded(self) -> None:
        """
        At most L{ROUTES} routes are kept: one more empties them, and sends
        to every user still go where they should.
        """
        self.patch(routesModule, "ROUTES", 2)
        for user in (56, 57):
            self.remote(self.d, f"ld{user}", user)
        for round in range(2):
            for user in (55, 56, 57):
                self.successResultOf(self.node.sendToUser(user, {"u": user}))
                self.assertLessEqual(len(self.routes.users), 2)
        self.assertEqual([json.loads(x)["payload"]["userId"] for x in self.d.lines],
                         [55, 56, 57] * 2)
