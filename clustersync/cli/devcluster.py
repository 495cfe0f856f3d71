"""
C{make cluster}: run three linked nodes on this machine, in the foreground.

Each node is a real C{twistd --nodaemon clustersync} process with its own
TOML file under C{run/} (written at every start) and pid file
C{run/<name>.pid); their output is shown prefixed with the node's name.
Ctrl-C (or SIGTERM) stops all of them; a node that dies alone leaves the
others running (see L{main}).

Peer links and chat clients use TLS with certificates made in
C{run/certs/} (C{clustersync-chat --ca run/certs/ca.pem 127.0.0.1:7201});
C{--plain} runs both without TLS.

With C{--backplane} the nodes do not link to each other: a local
C{nats-server} (port 7400) is their backplane, and each node runs on
Twisted's asyncio reactor (C{twistd --reactor=asyncio}).

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
import time

__all__ = ["NODES", "NATS_PORT", "nodeConfig", "tomlText", "main"]

#: The local nats-server's client port with C{--backplane}.
NATS_PORT = 7400

#: name -> (peer port, client port, web port)
NODES = {
    "srv-a": (7101, 7201, 7301),
    "srv-b": (7102, 7202, 7302),
    "srv-c": (7103, 7203, 7303),
}


def nodeConfig(name: str, runDir: str, extra: dict | None = None,
               backplane: bool = False) -> dict:
    """
    The settings (TOML keys) of node C{name} of the local cluster: it
    listens on its ports and dials the two others, or with C{backplane}
    dials none and joins the local NATS server instead.
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
    if backplane:
        config["peers"] = []
        config["backplane"] = [f"nats://127.0.0.1:{NATS_PORT}"]
        config["cluster_name"] = "dev"
    config.update(extra or {})
    return config


def tomlText(values: dict) -> str:
    """A flat TOML document for C{values} (strings, numbers, booleans, lists)."""

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


def _extraSettings(runDir: str, tls: bool = True) -> dict:
    """
    Settings of the local nodes beyond L{nodeConfig}: mutual TLS between
    them (certificates made in C{run/certs/} on first use) and TLS for
    their chat clients (with the same certificates, so C{clustersync-chat
    --ca run/certs/ca.pem} verifies them), or, with C{tls=False},
    unauthenticated plain links (C{open_links}) and plain client ports.
    """
    extra: dict = {name: {} for name in NODES}
    if tls:
        from clustersync.app.certificates import devClusterSettings

        for name, settings in devClusterSettings(
                os.path.join(runDir, "certs"), NODES).items():
            extra[name].update(settings)
            extra[name]["clients"] = (
                f"ssl:{NODES[name][1]}:interface=127.0.0.1"
                f":privateKey={_escape(settings['tls_key'])}:certKey={_escape(settings['tls_cert'])}")
    else:
        for name in NODES:
            extra[name]["open_links"] = True
    return extra


def _escape(path: str) -> str:
    """C{path} as a value in an endpoint description (colons escaped)."""
    return path.replace("\\", "\\\\").replace(":", "\\:")


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


def main(argv=None) -> int:
    """
    Run the local three-node cluster (or, with C{--only}, one of its nodes)
    until interrupted.

    A node that dies (say, C{kill -9 $(cat run/srv-c.pid)}) does not stop the
    others: they drop its sessions and keep redialing it.  Bring it back with
    C{make cluster-node NODE=srv-c} in another terminal, or let
    C{--restart-after SECONDS} restart it.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", default="run", help="where configs, users and logs go")
    parser.add_argument("--plain", action="store_true",
                        help="plain, unauthenticated TCP links (open_links) instead of mutual TLS")
    parser.add_argument("--only", choices=sorted(NODES), action="append",
                        help="run only this node (repeatable), e.g. to restart a killed one")
    parser.add_argument("--restart-after", type=float, default=None, metavar="SECONDS",
                        help="restart a node that died, after this many seconds")
    parser.add_argument("--backplane", action="store_true",
                        help=f"a local nats-server (port {NATS_PORT}) as the backplane "
                             "instead of links between the nodes")
    args = parser.parse_args(argv)
    runDir = os.path.abspath(args.run_dir)
    os.makedirs(runDir, exist_ok=True)
    extra = _extraSettings(runDir, tls=not args.plain)
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    names = args.only or list(NODES)
    procs: dict[str, subprocess.Popen] = {}
    deadAt: dict[str, float] = {}
    lock = threading.Lock()
    nats = None
    if args.backplane and not args.only:
        nats = _startNats(runDir, lock)
        if nats is None:
            return 1

    def start(name: str) -> None:
        path = os.path.join(runDir, f"{name}.toml")
        with open(path, "w") as f:
            f.write(tomlText(nodeConfig(name, runDir, extra[name], backplane=args.backplane)))
        reactor = ["--reactor=asyncio"] if args.backplane else []
        proc = subprocess.Popen(
            [twistd, "--nodaemon", "--pidfile=", "--logfile=-", *reactor, "clustersync",
             "--config", path],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=runDir,
            start_new_session=True,
        )
        with open(os.path.join(runDir, f"{name}.pid"), "w") as f:
            f.write(f"{proc.pid}\n")
        procs[name] = proc
        threading.Thread(target=_pump, args=(name, proc.stdout, lock), daemon=True).start()
        with lock:
            print(f"cluster: started {name} (pid {proc.pid}, pid file run/{name}.pid)")

    for name in names:
        start(name)
    with lock:
        print("cluster: " + ", ".join(
            f"{n} (peers {NODES[n][0]}, clients {NODES[n][1]}, web http://127.0.0.1:{NODES[n][2]}/)"
            for n in names))
        ca = "" if args.plain else f"--ca {os.path.relpath(os.path.join(runDir, 'certs', 'ca.pem'))} "
        print(f"chat with:  .venv/bin/clustersync-chat {ca}127.0.0.1:7201   "
              "(Ctrl-C stops every node)")

    stopping = threading.Event()

    def stop(signum=None, frame=None):
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping.is_set():
        now = time.monotonic()
        for name, proc in list(procs.items()):
            if proc.poll() is not None and name not in deadAt:
                deadAt[name] = now
                hint = (f"restarting in {args.restart_after:g}s" if args.restart_after is not None
                        else f"restart it with: make cluster-node NODE={name}")
                with lock:
                    print(f"cluster: {name} {_describe(proc.returncode)}; "
                          f"the others keep running and redial it; {hint}")
        for name, when in list(deadAt.items()):
            if args.restart_after is not None and now - when >= args.restart_after:
                del deadAt[name]
                start(name)
        if len(deadAt) == len(procs) and args.restart_after is None:
            with lock:
                print("cluster: every node has stopped")
            break
        stopping.wait(0.2)
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for name, proc in procs.items():
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        try:
            os.remove(os.path.join(runDir, f"{name}.pid"))
        except OSError:
            pass
    if nats is not None:
        nats.terminate()
        nats.wait(10)
    with lock:
        print("cluster: all nodes stopped")
    return 0


def _startNats(runDir: str, lock: threading.Lock):
    """
    Start the local nats-server and wait (at most 10 s) until it is ready.

    @return: its L{subprocess.Popen}, or C{None} (the reason printed).
    """
    from clustersync.backplane.natsprocess import findNatsServer

    executable = findNatsServer()
    if executable is None:
        print("cluster: --backplane needs nats-server (apt-get install nats-server)")
        return None
    proc = subprocess.Popen(
        [executable, "-a", "127.0.0.1", "-p", str(NATS_PORT), "-n", "dev-nats"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=runDir, start_new_session=True)
    ready = threading.Event()

    def pump():
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if "Server is ready" in line:
                ready.set()
            with lock:
                sys.stdout.write(f"{'nats':6} | {line}\n")
                sys.stdout.flush()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(10) or proc.poll() is not None:
        print("cluster: nats-server did not start (see its output above)")
        proc.kill()
        return None
    print(f"cluster: nats-server on nats://127.0.0.1:{NATS_PORT} (pid {proc.pid})")
    return proc


if __name__ == "__main__":
    sys.exit(main())
