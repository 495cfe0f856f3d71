"""
C{make cluster}: run three linked nodes on this machine, in the foreground.

Each node is a real C{twistd --nodaemon clustersync} process with its own
TOML file under C{run/} (created on first start); their output is shown
prefixed with the node's name.  Ctrl-C (or SIGTERM) stops all three.

Ports (all on 127.0.0.1)::

    node    peers  clients  web
    srv-a   7101   7201     7301
    srv-b   7102   7202     7302
    srv-c   7103   7203     7303
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading

__all__ = ["NODES", "nodeConfig", "main"]

#: name -> (peer port, client port, web port)
NODES = {
    "srv-a": (7101, 7201, 7301),
    "srv-b": (7102, 7202, 7302),
    "srv-c": (7103, 7203, 7303),
}


def nodeConfig(name: str, runDir: str, extra: dict | None = None) -> dict:
    """
    The settings (TOML keys) of node C{name} of the local cluster: it
    listens on its ports and dials the two others.
    """
    peerPort, clientPort, webPort = NODES[name]
    config = {
        "server_id": name,
        "listen": f"tcp:{peerPort}:interface=127.0.0.1",
        "clients": f"tcp:{clientPort}:interface=127.0.0.1",
        "web": f"tcp:{webPort}:interface=127.0.0.1",
        "peers": [f"127.0.0.1:{p}" for n, (p, _, _) in NODES.items() if n != name],
        "users_file": os.path.join(runDir, "users.json"),
    }
    config.update(extra or {})
    return config


def _toml(values: dict) -> str:
    def fmt(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "".join(f"{k} = {fmt(v)}\n" for k, v in values.items())


def _pump(name: str, stream, lock: threading.Lock) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        with lock:
            sys.stdout.write(f"{name:6} | {line}\n")
            sys.stdout.flush()


def _extraSettings(runDir: str) -> dict:
    """
    Settings added by optional features (TLS between the local nodes, the
    status web server) when this installation has them.
    """
    extra: dict = {name: {} for name in NODES}
    try:
        from clustersync import tls  # noqa: F401
    except ImportError:
        tls = None
    if tls is not None and hasattr(tls, "devClusterSettings"):
        for name, settings in tls.devClusterSettings(os.path.join(runDir, "certs"), NODES).items():
            extra[name].update(settings)
    from clustersync.config import KEYS

    if "web" in KEYS:
        for name, (_, _, webPort) in NODES.items():
            extra[name]["web"] = f"tcp:{webPort}:interface=127.0.0.1"
    return extra


def main(argv=None) -> int:
    """Run the local three-node cluster until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", default="run", help="where configs, users and logs go")
    parser.add_argument("--plain", action="store_true", help="plain TCP links (no TLS)")
    args = parser.parse_args(argv)
    runDir = os.path.abspath(args.run_dir)
    os.makedirs(runDir, exist_ok=True)
    extra = {name: {} for name in NODES} if args.plain else _extraSettings(runDir)
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    procs = {}
    lock = threading.Lock()
    for name in NODES:
        path = os.path.join(runDir, f"{name}.toml")
        with open(path, "w") as f:
            f.write(_toml(nodeConfig(name, runDir, extra[name])))
        proc = subprocess.Popen(
            [twistd, "--nodaemon", "--pidfile=", "--logfile=-", "clustersync", "--config", path],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=runDir,
            start_new_session=True,
        )
        procs[name] = proc
        threading.Thread(target=_pump, args=(name, proc.stdout, lock), daemon=True).start()
    with lock:
        print("cluster: " + ", ".join(
            f"{n} (peers {p}, clients {c}, web {w})" for n, (p, c, w) in NODES.items()))
        print("chat with:  .venv/bin/clustersync-chat 127.0.0.1:7201   (Ctrl-C stops all nodes)")

    stopping = threading.Event()

    def stop(signum=None, frame=None):
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    status = 0
    while not stopping.is_set():
        for name, proc in procs.items():
            if proc.poll() is not None:
                with lock:
                    print(f"cluster: {name} exited with {proc.returncode}; stopping the others")
                status = 1
                stopping.set()
        stopping.wait(0.5)
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for name, proc in procs.items():
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with lock:
        print("cluster: all nodes stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
