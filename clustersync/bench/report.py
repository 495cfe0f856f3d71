"""
Result rows, timing helpers and the Markdown report of the benchmarks.

Every figure is a L{Row}: a value measured next to a reference measured in
the same run, and their ratio.  Nothing here imports the reactor.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import time
from typing import Callable

import attrs

__all__ = ["Row", "Section", "timeIt", "timePair", "machineInfo", "renderMarkdown"]


@attrs.define
class Row:
    """
    One figure of the report.

    @ivar figure: what was measured.
    @ivar value: the measured value (a number).
    @ivar reference: the reference measured in the same run (a number), or
        C{None} when the figure has no reference.
    @ivar unit: the unit of C{value} and C{reference}.
    @ivar referenceName: what the reference is.
    @ivar note: anything a reader needs to interpret the row.
    @ivar fixedRatio: the ratio to show instead of C{value / reference}
        (the median of per-round ratios, for figures measured in rounds).
    """

    figure: str
    value: float
    reference: float | None
    unit: str
    referenceName: str = ""
    note: str = ""
    fixedRatio: float | None = None

    @property
    def ratio(self) -> float | None:
        """C{value / reference}, or C{None} without a usable reference."""
        if self.fixedRatio is not None:
            return self.fixedRatio
        if self.reference is None or self.reference == 0:
            return None
        return self.value / self.reference


@attrs.define
class Section:
    """
    A titled group of rows with a paragraph of method and conclusions.

    @ivar title: the heading.
    @ivar rows: the L{Row}s.
    @ivar method: how it was measured (Markdown).
    @ivar notes: conclusions and extra lines (Markdown), may be empty.
    """

    title: str
    rows: list[Row] = attrs.field(factory=list)
    method: str = ""
    notes: str = ""


def timeIt(function: Callable[[], object], repeat: int = 5) -> float:
    """
    Run C{function} C{repeat} times, the garbage collector off during each
    call, and return the median duration in seconds.
    """
    times = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            started = time.perf_counter()
            function()
            times.append(time.perf_counter() - started)
        finally:
            gc.enable()
    return statistics.median(times)


def timePair(
    value: Callable[[], object], reference: Callable[[], object], repeat: int = 5
) -> tuple[float, float]:
    """
    Time C{value} and C{reference} alternately, C{repeat} times each, and
    return the fastest of each in seconds.

    Alternating makes machine noise hit both alike; the minimum is the
    estimate least disturbed by other processes (noise only ever adds).
    """
    values, references = [], []
    for _ in range(repeat):
        values.append(timeIt(value, 1))
        references.append(timeIt(reference, 1))
    return min(values), min(references)


def machineInfo() -> dict[str, str]:
    """The facts about this machine and interpreter that a reader needs."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import msgspec
    import twisted

    try:
        import orjson

        orjsonVersion = orjson.__version__
    except ImportError:
        orjsonVersion = "not installed"
    return {
        "date (UTC)": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores available": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()),
        "python": sys.version.split()[0] + " (" + platform.python_implementation() + ")",
        "twisted": twisted.__version__,
        "msgspec": msgspec.__version__,
        "orjson": orjsonVersion,
    }


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 100:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 0.1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _table(rows: list[Row]) -> list[str]:
    lines = [
        "| figure | value | reference | ratio | unit | reference is | note |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        ratio = r.ratio
        lines.append(
            f"| {r.figure} | {_fmt(r.value)} | {_fmt(r.reference)} | "
            f"{'-' if ratio is None else f'{ratio:.2f}'} | {r.unit} | "
            f"{r.referenceName} | {r.note} |"
        )
    return lines


def renderMarkdown(
    sections: list[Section], info: dict[str, str], preamble: str = "", elapsed: float | None = None
) -> str:
    """
    The whole report: a preamble, the machine, then one table per section
    (figure, value, reference, ratio; none for a section without rows)
    with its method and notes.
    """
    out = ["# Benchmarks", ""]
    if preamble:
        out += [preamble.strip(), ""]
    out += ["## Machine", ""]
    for key, val in info.items():
        out.append(f"- {key}: {val}")
    if elapsed is not None:
        out.append(f"- harness wall time: {elapsed:.0f} s")
    out.append("")
    for section in sections:
        out += [f"## {section.title}", ""]
        if section.rows:
            out += [*_table(section.rows), ""]
        if section.method:
            out += ["Method: " + section.method.strip(), ""]
        if section.notes:
            out += [section.notes.strip(), ""]
    return "\n".join(out).rstrip() + "\n"
