"""
Command line of the harness: run everything (the default) or one process
role of the relay benchmark.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    """The argument parser of C{python -m clustersync.bench}."""
    p = argparse.ArgumentParser(prog="python -m clustersync.bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes (about 20 s)")
    p.add_argument("--output", default="docs/benchmarks.md", help="report path ('-' for stdout)")
    p.add_argument("--only", action="append", default=[],
                   choices=["relay", "percall", "sync", "memory", "codec"], help="run only these parts")
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
        from clustersync.bench.relay import sinkMain

        sinkMain(args.kind, args.count, args.timeout, args.profile, args.extra)
    elif args.role == "relay-source":
        from clustersync.bench.relay import sourceMain

        sourceMain(args.kind, args.port, args.count, args.rate, args.size, args.timeout,
                   args.profile, args.extra)
    else:
        from clustersync.bench.run import runAll

        runAll(args)
