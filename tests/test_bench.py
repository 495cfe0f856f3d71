"""
A trial run of the benchmark harness (L{clustersync.bench}) at a tiny size:
it proves the harness works, not how fast anything is.
"""

from __future__ import annotations

import os
import shutil
import time

from twisted.trial import unittest

from clustersync.bench import comparesection
from clustersync.bench.comparesection import (
    TreeFigures, compareRounds, comparisonSection, relayCompareSection, summarise,
    unavailableSection,
)
from clustersync.bench.main import parser
from clustersync.bench.reftree import REFERENCE_COMMIT, ReferenceUnavailable, extractTree
from clustersync.bench.relaysink import Sink, bareLine, messageBody
from clustersync.bench.report import Row, Section, renderMarkdown
from clustersync.bench.run import PARTS, preamble, runAll
from clustersync.bench.sizes import Sizes
from clustersync.wire.codec import DirectMessage, DirectMessagePayload, encode, rawMessage

TINY = Sizes(
    relayCount=200,
    relayRounds=1,
    pacedRate=5_000,
    pacedCount=100,
    syncSessions=1_000,
    memorySessions=1_000,
    codecDirect=200,
    codecSync=200,
    repeat=1,
)


class HarnessPiecesTests(unittest.TestCase):
    """
    The in-process pieces of the harness.
    """

    def test_bareLineIsWhatClustersyncWrites(self):
        """
        The bare relay writes exactly the DIRECT_MESSAGE line node A
        encodes for the same message, so both relays move the same bytes.
        """
        pad = b"x" * messageBody(200)
        stamp = 1_700_000_000_123_456_789
        message = rawMessage({"t": stamp, "p": pad.decode()})
        expected = encode(DirectMessage("bench-a", DirectMessagePayload(7, message)))
        self.assertEqual(bareLine(stamp, pad), expected)
        self.assertEqual(len(expected), 200)

    def test_sinkCountsAndTimesMessages(self):
        """
        The sink reads the stamp of every message, and calls back once the
        expected count arrived, with a positive rate and ordered
        percentiles.
        """
        done = []
        sink = Sink(3, done.append)
        now = time.monotonic_ns()
        sink.deliver([object()], b'{"t":%d,"p":"a"}' % (now - 2_000_000,), "DIRECT_MESSAGE", "a")
        sink.lineReceived(bareLine(now - 1_000_000, b"b")[:-1])
        self.assertEqual(done, [])
        sink.deliver([object()], b'{"t":%d,"p":"c"}' % (now,), "DIRECT_MESSAGE", "a")
        self.assertEqual(done, [sink])
        result = sink.result()
        self.assertEqual(result["count"], 3)
        self.assertGreater(result["rate"], 0)
        self.assertLessEqual(result["p50"], result["p99"])
        self.assertGreaterEqual(result["p99"], 1.0)  # the oldest stamp is 2 ms old

    def test_markdownTable(self):
        """
        A row renders its value, reference and ratio in a Markdown table.
        """
        text = renderMarkdown(
            [Section("Demo", [Row("speed", 50.0, 100.0, "msgs/s", "ceiling")], method="m")],
            {"cpu": "test"},
        )
        self.assertIn("| figure | value | reference | ratio |", text)
        self.assertIn("| speed | 50.0 | 100 | 0.50 | msgs/s | ceiling |", text)

    def test_sectionWithoutRowsHasNoTable(self):
        """
        A section without rows renders its title and notes, and no table.
        """
        text = renderMarkdown([Section("Empty", notes="nothing measured")], {"cpu": "test"})
        self.assertIn("## Empty\n\nnothing measured\n", text)
        self.assertNotIn("| figure |", text)

    def test_partsOnTheCommandLine(self):
        """
        C{--only relay-compare} selects the comparison with the reference
        code, whose commit defaults to L{REFERENCE_COMMIT}; the report's
        introduction names every part and how to run one.
        """
        args = parser().parse_args(["--only", "relay-compare"])
        self.assertEqual(args.only, ["relay-compare"])
        self.assertEqual(args.reference, REFERENCE_COMMIT)
        self.assertEqual(parser().parse_args(["--reference", "abc123"]).reference, "abc123")
        self.assertEqual(list(PARTS)[:3], ["relay", "percall", "relay-compare"])
        text = preamble(args)
        self.assertIn("`python -m clustersync.bench --only relay-compare`", text)
        self.assertIn('make bench ARGS="--only PART"', text)
        for name in PARTS:
            self.assertIn(f"`{name}`", text)
        self.assertIn("relay-compare", parser().format_help())


def _round(bareRate, rate, cpuRatio):
    """One tree's round as L{treeRound} returns it (the figures used)."""
    return {"bare": {"rate": bareRate}, "cs": {"rate": rate, "ratio": rate / bareRate,
                                                  "cpuRatio": cpuRatio}}


class RelayCompareTests(unittest.TestCase):
    """
    The comparison of the relay ratio with the reference code's, without
    running relays.
    """

    def test_summariseTakesMedians(self):
        """
        A tree's figures are the medians of its rounds, and its ratio the
        median of the per-round ratios.
        """
        figures = summarise([_round(100.0, 50.0, 0.4), _round(200.0, 120.0, 0.6),
                             _round(100.0, 70.0, 0.5)])
        self.assertEqual(figures.rate, 70.0)
        self.assertEqual(figures.bareRate, 100.0)
        self.assertEqual(figures.ratios, (0.5, 0.6, 0.7))
        self.assertAlmostEqual(figures.ratio, 0.6)
        self.assertEqual(figures.cpuRatio, 0.5)

    def test_passWithinTenPercent(self):
        """
        A current ratio 5% below the reference's passes: both ratios, their
        quotient and the verdict are in the report.
        """
        reference = TreeFigures(300.0, 500.0, (0.60, 0.60, 0.62), (0.5, 0.5, 0.5))
        current = TreeFigures(285.0, 500.0, (0.55, 0.57, 0.60), (0.45, 0.5, 0.5))
        section = comparisonSection("419d308", reference, current, 1000)
        text = renderMarkdown([section], {})
        self.assertIn("## 1c. DM relay ratio: current code against the reference code (419d308)",
                      text)
        self.assertIn("| DM relay throughput, saturated, default config, current code | 285 "
                      "| 500 | 0.57 |", text)
        self.assertIn("| DM relay throughput, saturated, default config, reference code "
                      "(419d308) | 300 | 500 | 0.60 |", text)
        self.assertIn("| relay ratio, current / reference | 0.57 | 0.60 | 0.95 |", text)
        self.assertIn("quotient 0.95 (limit 0.90): **pass**", text)
        self.assertIn("in 0 of 3 rounds", text)

    def test_failBeyondTenPercent(self):
        """
        A current ratio 20% below the reference's fails.
        """
        reference = TreeFigures(300.0, 500.0, (0.60,), (0.5,))
        current = TreeFigures(240.0, 500.0, (0.48,), (0.4,))
        text = renderMarkdown([comparisonSection("abc", reference, current, 1000)], {})
        self.assertIn("quotient 0.80 (limit 0.90): **FAIL**", text)

    def test_roundsAlternateBetweenTrees(self):
        """
        The two trees take turns going first, and each tree's rounds come
        back as its own list.
        """
        calls = []

        def fakeRound(tree, count, size):
            calls.append(tree)
            return {"tree": tree, "count": count}

        self.patch(comparesection, "treeRound", fakeRound)
        reference, current = compareRounds("old", "new", 3, 500)
        self.assertEqual(calls, ["old", "new", "new", "old", "old", "new"])
        self.assertEqual(reference, [{"tree": "old", "count": 500}] * 3)
        self.assertEqual(current, [{"tree": "new", "count": 500}] * 3)

    def test_noGit(self):
        """
        Without a git executable the extraction fails with a
        L{ReferenceUnavailable} that says so.
        """
        dest = self.mktemp()
        os.makedirs(dest)
        e = self.assertRaises(ReferenceUnavailable, extractTree, REFERENCE_COMMIT, dest,
                              git=os.path.abspath(self.mktemp()))
        self.assertIn("cannot run", str(e))

    def test_unknownCommit(self):
        """
        A commit the repository does not hold fails with a
        L{ReferenceUnavailable} naming it.
        """
        if shutil.which("git") is None:
            raise unittest.SkipTest("no git")
        dest = self.mktemp()
        os.makedirs(dest)
        missing = "0" * 40
        e = self.assertRaises(ReferenceUnavailable, extractTree, missing, dest)
        self.assertIn(f"git archive {missing}", str(e))
        self.assertEqual(os.listdir(dest), [])

    def test_unavailableReferenceIsReported(self):
        """
        When the reference cannot be extracted, the section says why
        instead of failing the run, and has no figures.
        """
        section = relayCompareSection(TINY, rev="0" * 40)
        self.assertEqual(section.rows, [])
        self.assertIn("Not measured: the reference code could not be extracted", section.notes)
        self.assertIn("0" * 40, section.title)
        self.assertIn("(why)", unavailableSection("r", "why").notes)


class HarnessRunTests(unittest.TestCase):
    """
    The whole harness at a tiny size, real processes included.
    """

    timeout = 60

    def test_tinyRun(self):
        """
        Every part but the comparison with the reference code runs (relay
        processes, per-message costs, SYNC_STATE, memory, codecs) and the
        report is a Markdown table per section with positive rates.
        """
        output = os.path.abspath(self.mktemp()) + ".md"
        args = parser().parse_args(["--output", output, "--only", "relay", "--only", "percall",
                                    "--only", "sync", "--only", "memory", "--only", "codec"])
        started = time.monotonic()
        text = runAll(args, TINY)
        self.assertLess(time.monotonic() - started, 45)
        with open(output) as f:
            self.assertEqual(f.read(), text)
        titles = ("1. DM relay", "1b. Per-message CPU cost", "2. SYNC_STATE", "3. Memory",
                  "4. Codec choice")
        for title in titles:
            self.assertIn(f"## {title}", text)
        self.assertEqual(text.count("| figure | value | reference | ratio |"), len(titles))
        rates = [
            line for line in text.splitlines()
            if line.startswith("| DM relay throughput, saturated")
        ]
        self.assertTrue(rates)
        for line in rates:
            cells = [c.strip() for c in line.split("|")]
            value, reference = (float(c.replace(",", "")) for c in cells[2:4])
            self.assertGreater(value, 0)
            self.assertGreater(reference, 0)
        cpu = [line for line in text.splitlines() if line.startswith("|   CPU per message")]
        self.assertEqual(len(cpu), 3 * len(rates))
        for line in cpu:
            cells = [c.strip() for c in line.split("|")]
            value, reference = (float(c.replace(",", "")) for c in cells[2:4])
            self.assertGreater(value, 0, line)
            self.assertGreater(reference, 0, line)


class IdleLinkTests(unittest.TestCase):
    """L{clustersync.bench.idle}: the idle cost of a link, in simulated time."""

    def test_pingCostDoesNotGrowWithSessions(self):
        """
        Between clustersync nodes an idle link costs the same bytes per
        second at 10 and at 2,000 local sessions, and far less than the
        previous design's SYNC_STATE heartbeat, which grows with them.
        """
        from clustersync.bench.idle import idleBytesPerSecond

        small = idleBytesPerSecond(10, extensions="all")
        large = idleBytesPerSecond(2000, extensions="all")
        previous = idleBytesPerSecond(2000, extensions="none", receipts="none",
                                      legacyHeartbeatLimit=10**9)
        self.assertAlmostEqual(small, large, delta=2)
        self.assertLess(large, 100)
        self.assertGreater(previous, 100 * large)
