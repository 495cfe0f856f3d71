"""
C{clustersync-certs}: create the cluster CA and a key and certificate per
node for mutual TLS (the work is done by L{clustersync.app.certificates}).
"""

from __future__ import annotations

import argparse
import os
import sys

from cryptography import x509

from clustersync.app.certificates import DEFAULT_HOSTS, addNode, initCertDir
from clustersync.links.tls import certificateIdentity

__all__ = ["main"]


def _hostsArg(values: list[str]) -> dict[str, list[str]]:
    hosts: dict[str, list[str]] = {}
    for value in values or ():
        serverId, sep, names = value.partition("=")
        if not sep or not names:
            raise SystemExit(f"--host expects serverId=name[,name...], got {value!r}")
        hosts.setdefault(serverId, []).extend(n for n in names.split(",") if n)
    return hosts


def _describe(path: str) -> str:
    with open(path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n.value) for n in san]
    except x509.ExtensionNotFound:
        names = []
    return (
        f"{os.path.basename(path)}: CN={certificateIdentity(cert)} "
        f"names={','.join(names) or '-'} until {cert.not_valid_after_utc:%Y-%m-%d}"
    )


def main(argv: list[str] | None = None) -> int:
    """
    C{clustersync-certs}: create a cluster CA and node certificates.

        clustersync-certs init DIR --nodes srv-a srv-b [--host srv-a=a.lan,10.0.0.1]
        clustersync-certs add DIR srv-d [--host srv-d=d.lan]
        clustersync-certs show DIR
    """
    parser = argparse.ArgumentParser(
        prog="clustersync-certs",
        description="Create the cluster CA and a key+certificate per node for mutual TLS.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create a CA and node certificates in DIR")
    init.add_argument("directory")
    init.add_argument("--nodes", nargs="+", required=True, metavar="SERVER_ID")
    init.add_argument("--host", action="append", default=[], metavar="ID=NAME[,NAME]",
                      help="extra host names/addresses for a node's certificate (repeatable); "
                           "default localhost,127.0.0.1,::1")
    init.add_argument("--days", type=int, default=825)
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    add = sub.add_parser("add", help="add a node certificate signed by the CA in DIR")
    add.add_argument("directory")
    add.add_argument("node", metavar="SERVER_ID")
    add.add_argument("--host", action="append", default=[], metavar="ID=NAME[,NAME]")
    add.add_argument("--days", type=int, default=825)
    show = sub.add_parser("show", help="list the certificates in DIR")
    show.add_argument("directory")
    args = parser.parse_args(argv)
    out = sys.stdout
    try:
        if args.command == "init":
            hosts = _hostsArg(args.host)
            made = initCertDir(args.directory, args.nodes, hosts, args.days, args.force)
        elif args.command == "add":
            hosts = _hostsArg(args.host).get(args.node) or DEFAULT_HOSTS
            made = {args.node: addNode(args.directory, args.node, hosts, args.days)}
        else:
            for name in sorted(os.listdir(args.directory)):
                if name.endswith(".pem"):
                    out.write(_describe(os.path.join(args.directory, name)) + "\n")
            return 0
    except (OSError, ValueError) as e:
        sys.stderr.write(f"clustersync-certs: {e}\n")
        return 1
    for serverId, paths in made.items():
        out.write(f"# {serverId}\n")
        for key, path in paths.items():
            out.write(f'{key} = "{path}"\n')
    out.write(
        "# and listen = \"ssl:PORT\" on each node; keep *.key and ca.key private "
        "(ca.key is only needed to add nodes).\n"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
