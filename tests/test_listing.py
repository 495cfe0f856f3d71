"""
LIST_CONNECTED pages: bounded replies (rows and bytes), a cursor that
walks every session exactly once, a filter by user, and the time one page
of a large cluster takes (printed).
"""

from __future__ import annotations

import time

from twisted.trial import unittest

from clustersync.gateway.listing import MAX_PAGE, MAX_PAGE_BYTES, listPage
from clustersync.wire.codec import SessionInfo, encodeRaw

from tests.test_gateway import GatewayTestMixin


def crowd(n: int, name=lambda i: f"user{i % 97:02d}") -> list[SessionInfo]:
    """C{n} sessions on three servers."""
    return [SessionInfo(f"s{i:07d}", i, name(i), f"srv-{i % 3}", "10.0.0.1", {i % 5})
            for i in range(n)]


class ListPageTests(unittest.TestCase):
    """L{listPage} on its own."""

    def test_cursorWalksEverySessionOnce(self):
        """Pages of 100 through 1,050 sessions give each once, in sorted order."""
        sessions = crowd(1050)
        seen, cursor, pages = [], None, 0
        while True:
            page = listPage(sessions, 100, cursor)
            pages += 1
            self.assertLessEqual(len(page["sesiones"]), 100)
            self.assertEqual(page["total"], 1050)
            seen += [(r["usuario"], r["serverId"], r["sessionId"]) for r in page["sesiones"]]
            cursor = page["siguiente"]
            if cursor is None:
                break
            cursor = tuple(cursor)
        self.assertEqual(pages, 11)
        self.assertEqual(seen, sorted((s.usuario, s.serverId, s.sessionId) for s in sessions))

    def test_byteBound(self):
        """Rows with long names end a page near MAX_PAGE_BYTES, with a cursor."""
        sessions = crowd(MAX_PAGE, name=lambda i: f"{i:04d}" + "x" * 2000)
        page = listPage(sessions, MAX_PAGE)
        size = len(encodeRaw(page["sesiones"]))
        self.assertLess(size, MAX_PAGE_BYTES + 4096)
        self.assertLess(len(page["sesiones"]), MAX_PAGE)
        self.assertIsNotNone(page["siguiente"])

    def test_filterByUser(self):
        """C{usuario} lists only that user's sessions; C{total} counts them."""
        page = listPage(crowd(970), 500, usuario="user05")
        self.assertEqual(page["total"], 10)
        self.assertEqual({r["usuario"] for r in page["sesiones"]}, {"user05"})

    def test_largeClusterPage(self):
        """One page of 100 out of 300,000 sessions: 100 rows, the time printed."""
        sessions = crowd(300_000)
        started = time.perf_counter()
        page = listPage(sessions, 100)
        took = time.perf_counter() - started
        self.assertEqual(len(page["sesiones"]), 100)
        print(f"\nLIST_CONNECTED page of 100 of 300,000 sessions: {took * 1000:.0f} ms, "
              f"{len(encodeRaw(page))} bytes")


class ListCommandTests(GatewayTestMixin, unittest.TestCase):
    """LIST_CONNECTED through the protocol."""

    def test_pagesAndFields(self):
        """C{limite} and C{desde} page through the sessions; bad values are refused."""
        ana = self.client("ana")
        for _ in range(3):
            self.client("luis")
        first = ana.call("LIST_CONNECTED", limite=2)["payload"]
        self.assertEqual((first["total"], len(first["sesiones"])), (4, 2))
        self.assertIn("more: pass 'siguiente' as 'desde'", first["message"])
        rest = ana.call("LIST_CONNECTED", limite=2, desde=first["siguiente"])["payload"]
        self.assertEqual([r["usuario"] for r in first["sesiones"] + rest["sesiones"]],
                         ["ana", "luis", "luis", "luis"])
        self.assertIsNone(rest["siguiente"])
        only = ana.call("LIST_CONNECTED", usuario="ana")["payload"]
        self.assertEqual([r["usuario"] for r in only["sesiones"]], ["ana"])
        for payload in ({"limite": 0}, {"limite": MAX_PAGE + 1}, {"limite": "5"},
                        {"desde": "x"}, {"desde": [1, 2, 3]}, {"usuario": 5}):
            self.assertFalse(ana.call("LIST_CONNECTED", **payload)["payload"]["success"], payload)
        self.assertEqual(self.rejected(), {"client_field": 6})
