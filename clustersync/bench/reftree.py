"""
Another version of the code, next to this one: extract a commit's
C{clustersync/} from the repository into a directory (L{extractTree}) and
run one round of I{that tree's own} relay benchmark there (L{treeRound}).

A round runs in a separate interpreter whose C{sys.path} starts with the
tree, so the code measured and the harness measuring it both come from the
tree (its C{clustersync.bench.relay.relayRounds}, its relay processes).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

__all__ = ["REFERENCE_COMMIT", "ReferenceUnavailable", "currentTree", "extractTree", "treeRound"]

#: The last commit before the code moved into layer packages: the code the
#: relay ratio is compared against.
REFERENCE_COMMIT = "419d308"

#: The program of one round, run with C{python -c} inside a tree: one round
#: of that tree's relay benchmark (bare relay, then the default
#: configuration), printed as one JSON line with the package it imported.
#: It hands the relay processes a file for their stderr where the tree's
#: harness asks for a pipe: the reference harness reads that pipe only at
#: the end, and a process blocks once it is full (the sends still waiting
#: when the sink closes the link each log an error), which would hang the
#: round.  Nothing else of the tree's harness changes.
_ROUND = """
import json, subprocess, sys, tempfile

class ErrorFile:
    def __init__(self):
        self.file = tempfile.TemporaryFile()
        self.closed = False
    def fileno(self):
        return self.file.fileno()
    def read(self):
        self.file.seek(0)
        return self.file.read()
    def close(self):
        self.closed = True
        self.file.close()

pipePopen = subprocess.Popen

def fileStderrPopen(*args, **kwargs):
    errors = None
    if kwargs.get("stderr") == subprocess.PIPE:
        kwargs["stderr"] = errors = ErrorFile()
    proc = pipePopen(*args, **kwargs)
    if errors is not None:
        proc.stderr = errors
    return proc

subprocess.Popen = fileStderrPopen

import clustersync
from clustersync.bench.relay import relayRounds
figures = relayRounds(int(sys.argv[1]), 1, int(sys.argv[2]))
print(json.dumps({"package": clustersync.__file__, "bare": figures["bare"], "cs": figures["cs"]}))
"""


class ReferenceUnavailable(Exception):
    """
    The reference tree could not be extracted (no git, no repository, no
    such commit, or no relay benchmark in it); the message says which.
    """


def currentTree() -> str:
    """The directory holding the C{clustersync} package that runs now."""
    import clustersync

    return os.path.dirname(os.path.dirname(os.path.abspath(clustersync.__file__)))


def extractTree(rev: str, dest: str, repo: str | None = None, git: str = "git") -> str:
    """
    Write commit C{rev}'s C{clustersync/} into C{dest} (C{git archive rev
    clustersync}, unpacked).

    @param repo: a directory inside the repository; default: the tree of
        the running code.
    @param git: the git executable.
    @return: C{dest}.
    @raise ReferenceUnavailable: when git cannot run, C{rev} is not in the
        repository, or the tree has no relay benchmark.
    """
    repo = repo or currentTree()
    try:
        proc = subprocess.run(
            [git, "-C", repo, "archive", "--format=tar", rev, "clustersync"],
            capture_output=True, timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ReferenceUnavailable(f"cannot run {git}: {e}") from None
    if proc.returncode:
        lines = proc.stderr.decode(errors="replace").strip().splitlines() or ["no message"]
        raise ReferenceUnavailable(f"`git archive {rev}` failed in {repo}: {lines[-1]}")
    # The "data" filter refuses absolute paths and links out of dest (where
    # this Python has it).
    safety = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as archive:
        archive.extractall(dest, **safety)
    if not os.path.isfile(os.path.join(dest, "clustersync", "bench", "relay.py")):
        raise ReferenceUnavailable(f"{rev} has no relay benchmark (clustersync/bench/relay.py)")
    return dest


def treeRound(tree: str, count: int, size: int, timeout: float = 300.0) -> dict:
    """
    One round of the relay benchmark of the code in C{tree}, measured by
    that tree's harness: its bare relay, then its default configuration,
    C{count} messages of about C{size} bytes each.

    @return: C{{"bare": ..., "cs": ...}}, the tree's L{relayRounds} figures
        (C{rate}, C{ratio}, C{cpuRatio}, ...) of its bare relay and of
        clustersync.
    @raise RuntimeError: when the round fails, or imported a
        C{clustersync} from somewhere else than C{tree}.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([tree, *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run(
        [sys.executable, "-c", _ROUND, str(count), str(size)],
        cwd=tree, env=env, capture_output=True, timeout=timeout,
    )
    lines = proc.stdout.decode(errors="replace").strip().splitlines()
    if proc.returncode or not lines:
        err = proc.stderr.decode(errors="replace")[-2000:]
        raise RuntimeError(f"relay round in {tree} failed ({proc.returncode}): {err}")
    figures = json.loads(lines[-1])
    package = os.path.abspath(figures.pop("package"))
    if not package.startswith(os.path.join(os.path.abspath(tree), "")):
        raise RuntimeError(f"relay round in {tree} measured {package} instead")
    return figures
