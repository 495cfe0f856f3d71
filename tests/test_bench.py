"""
A trial run of the benchmark harness (L{clustersync.bench}) at a tiny size:
it proves the harness works, not how fast anything is.
"""

from __future__ import annotations

import os
import time

from twisted.trial import unittest

from clustersync.bench.main import parser
from clustersync.bench.relay import Sink, bareLine, messageBody
from clustersync.bench.report import Row, Section, renderMarkdown
from clustersync.bench.run import Sizes, runAll
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


class HarnessRunTests(unittest.TestCase):
    """
    The whole harness at a tiny size, real processes included.
    """

    timeout = 60

    def test_tinyRun(self):
        """
        Every part runs (relay processes, per-message costs, SYNC_STATE,
        memory, codecs) and the report is a Markdown table per section with
        positive rates.
        """
        output = os.path.abspath(self.mktemp()) + ".md"
        args = parser().parse_args(["--output", output])
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
