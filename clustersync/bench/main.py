"""
Command line of the harness: run every part (the default) or the parts
named with --only, and write the report; or (internal) one process role of
the relay benchmark.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    """The argument parser of C{python -m clustersync.bench}."""
    from clustersync.bench.reftree import REFERENCE_COMMIT
    from clustersync.bench.run import PARTS

    parts = "\n".join(f"  {name:14} {what}" for name, what in PARTS.items())
    p = argparse.ArgumentParser(
        prog="python -m clustersync.bench", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"parts (make bench ARGS=\"--only PART\"):\n{parts}")
    p.add_argument("--quick", action="store_true", help="small sizes (about 20 s)")
    p.add_argument("--output", default="docs/benchmarks.md", help="report path ('-' for stdout)")
    p.add_argument("--only", action="append", default=[],
                   choices=list(PARTS), metavar="PART", help="run only this part (repeatable)")
    p.add_argument("--reference", default=REFERENCE_COMMIT, metavar="REV",
                   help="the commit relay-compare measures against "
                        f"(default {REFERENCE_COMMIT}, the code before the restructure)")
    p.add_argument("--profile", metavar="PREFIX",
                   help="also profile one clustersync relay run (cProfile) into PREFIX-*.prof")
    sub = p.add_subparsers(dest="role")
    for role in ("relay-sink", "relay-source"):
        r = sub.add_parser(role, help=f"(internal) one {role} process")
        r.add_argument("--kind", choices=["cs", "bare"], required=True)
        r.add_argument("--count", type=int, required=True)
        r.add_argument("--timeout", type=float, default=60.0)
        r.add_argument("--profile")
        r.add_argument("--extra", type=json.loads, default={},
                       help="JSON object of NodeConfig attributes")
        if role == "relay-source":
            r.add_argument("--port", type=int, required=True)
            r.add_argument("--rate", type=float, default=0.0)
            r.add_argument("--size", type=int, default=200)
    return p


def main(argv: list[str] | None = None) -> None:
    """Parse C{argv} and run."""
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.role == "relay-sink":
        from clustersync.bench.relayprocs import sinkMain

        sinkMain(args.kind, args.count, args.timeout, args.profile, args.extra)
    elif args.role == "relay-source":
        from clustersync.bench.relayprocs import sourceMain

        sourceMain(args.kind, args.port, args.count, args.rate, args.size, args.timeout,
                   args.profile, args.extra)
    else:
        from clustersync.bench.run import runAll

        runAll(args)
