"""
Section 1c of the report: the relay ratio of the current code against the
reference code's (L{REFERENCE_COMMIT}), both measured in the same run.

Rounds alternate between the two trees (reference first in even rounds,
current first in odd ones) so that the machine's noise hits both; each
tree's relay ratio is taken against its own bare relay, measured in the
same round by the same harness.
"""

from __future__ import annotations

import statistics
import sys
import tempfile

import attrs

from clustersync.bench.reftree import (
    REFERENCE_COMMIT, ReferenceUnavailable, currentTree, extractTree, treeRound,
)
from clustersync.bench.report import Row, Section
from clustersync.bench.sizes import LINE_SIZE, Sizes

__all__ = ["MAX_FALL", "TreeFigures", "summarise", "compareRounds", "comparisonSection",
           "unavailableSection", "relayCompareSection"]

#: How far the current code's relay ratio may fall below the reference's.
MAX_FALL = 0.10

#: The heading of section 1c.
TITLE = "1c. DM relay ratio: current code against the reference code ({rev})"


@attrs.frozen
class TreeFigures:
    """
    One tree's relay figures over the rounds of a comparison.

    @ivar rate: median clustersync rate (msgs/s), default configuration.
    @ivar bareRate: median rate of the tree's bare relay.
    @ivar ratios: per-round clustersync / bare rate.
    @ivar cpuRatios: per-round bare slower side's CPU per message over
        clustersync's.
    """

    rate: float
    bareRate: float
    ratios: tuple[float, ...]
    cpuRatios: tuple[float, ...]

    @property
    def ratio(self) -> float:
        """The relay ratio: the median of the per-round ratios."""
        return statistics.median(self.ratios)

    @property
    def cpuRatio(self) -> float:
        """The CPU-bound ratio: the median of the per-round ones."""
        return statistics.median(self.cpuRatios)


def summarise(rounds: list[dict]) -> TreeFigures:
    """
    Medians of one tree's rounds, each as L{treeRound} returns it
    (C{{"bare": {"rate": ...}, "cs": {"rate", "ratio", "cpuRatio", ...}}}).
    """
    return TreeFigures(
        rate=statistics.median(r["cs"]["rate"] for r in rounds),
        bareRate=statistics.median(r["bare"]["rate"] for r in rounds),
        ratios=tuple(r["cs"]["ratio"] for r in rounds),
        cpuRatios=tuple(r["cs"]["cpuRatio"] for r in rounds),
    )


def compareRounds(reference: str, current: str, rounds: int, count: int,
                  size: int = LINE_SIZE) -> tuple[list[dict], list[dict]]:
    """
    C{rounds} rounds of both trees' relay benchmark, alternating which tree
    goes first.

    @return: the reference tree's rounds and the current tree's.
    """
    runs: dict[str, list[dict]] = {"reference": [], "current": []}
    trees = [("reference", reference), ("current", current)]
    for i in range(rounds):
        for which, tree in trees if i % 2 == 0 else trees[::-1]:
            print(f"bench: relay-compare round {i + 1}/{rounds}, {which} code",
                  file=sys.stderr, flush=True)
            runs[which].append(treeRound(tree, count, size))
    return runs["reference"], runs["current"]


def _listed(values) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def comparisonSection(rev: str, reference: TreeFigures, current: TreeFigures,
                      count: int) -> Section:
    """The section from both trees' figures, with the pass/fail verdict."""
    rounds = len(current.ratios)
    quotient = current.ratio / reference.ratio if reference.ratio else 0.0
    pairs = [c / r if r else 0.0 for c, r in zip(current.ratios, reference.ratios)]
    passed = quotient >= 1 - MAX_FALL
    measured = f"medians of {rounds} rounds of {count:,} msgs; ratio = median of per-round ratios"
    rows = [
        Row("DM relay throughput, saturated, default config, current code", current.rate,
            current.bareRate, "msgs/s", "its bare relay, same rounds",
            f"{measured} ({_listed(current.ratios)})", current.ratio),
        Row(f"DM relay throughput, saturated, default config, reference code ({rev})",
            reference.rate, reference.bareRate, "msgs/s", "its bare relay, same rounds",
            f"{measured} ({_listed(reference.ratios)})", reference.ratio),
        Row("relay ratio, current / reference", current.ratio, reference.ratio, "ratio",
            "reference code's relay ratio",
            f"per-round quotients ({_listed(pairs)}); limit {1 - MAX_FALL:.2f}", quotient),
        Row("CPU-bound ratio, current / reference", current.cpuRatio, reference.cpuRatio,
            "ratio", "reference code's CPU-bound ratio",
            "bare slower side's CPU per message / clustersync's, median of rounds"),
    ]
    ahead = sum(1 for p in pairs if p >= 1)
    verdict = "**pass**" if passed else "**FAIL**"
    return Section(
        TITLE.format(rev=rev),
        rows,
        method=f"""
`git archive {rev} clustersync` from this repository, unpacked into a
temporary directory, is the reference code. Each round runs, in a fresh
interpreter with that tree first on `sys.path`, the tree's own relay
benchmark (its `clustersync.bench.relay.relayRounds`, one round: its bare
relay, then its default configuration; the relay processes it starts
inherit the path), then the same for the current code, with the order of
the two trees swapped every round so that the machine's noise hits both.
Each tree's relay ratio is clustersync / its own bare relay, per round,
then the median over rounds, as in section 1. One thing differs from
running the reference harness by hand: its relay processes write stderr
to a file rather than to a pipe read only at the end, which filled up and
hung rounds (the current harness does the same).""",
        notes=(
            f"Rule: the current code's relay ratio may fall by at most {MAX_FALL:.0%} "
            f"against the reference code's in the same run: {current.ratio:.2f} against "
            f"{reference.ratio:.2f}, quotient {quotient:.2f} (limit {1 - MAX_FALL:.2f}): "
            f"{verdict}. The current code's round was at or above the reference's in "
            f"{ahead} of {rounds} rounds."
        ),
    )


def unavailableSection(rev: str, reason: str) -> Section:
    """The section when the reference code cannot be had: why, no figures."""
    return Section(
        TITLE.format(rev=rev),
        notes=f"Not measured: the reference code could not be extracted ({reason}). "
        "This needs git and a repository that holds the commit (not a shallow "
        "clone without it, not an unpacked release).",
    )


def relayCompareSection(sizes: Sizes, rev: str = REFERENCE_COMMIT,
                        repo: str | None = None) -> Section:
    """
    Section 1c: extract C{rev} into a temporary directory and compare the
    relay ratios, C{sizes.compareRounds} rounds (or C{sizes.relayRounds})
    of C{sizes.relayCount} messages.
    """
    rounds = sizes.compareRounds or sizes.relayRounds
    with tempfile.TemporaryDirectory(prefix="clustersync-ref-") as tmp:
        try:
            extractTree(rev, tmp, repo)
        except ReferenceUnavailable as e:
            print(f"bench: relay-compare: {e}", file=sys.stderr, flush=True)
            return unavailableSection(rev, str(e))
        reference, current = compareRounds(tmp, currentTree(), rounds, sizes.relayCount)
    return comparisonSection(rev, summarise(reference), summarise(current), sizes.relayCount)
