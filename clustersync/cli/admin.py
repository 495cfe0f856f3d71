"""
C{clustersync-admin}: management commands, as argparse subcommands.

Built in: C{adduser}, C{deluser}, C{users} (the chat gateway's users file).

Other modules add subcommands with L{registerCommand}: a provider is
C{(name, help, setup, run)} where C{setup(parser)} adds the subcommand's
arguments to its C{argparse} parser and C{run(args)} does the work and
returns the exit status.  A module listed in L{PROVIDER_MODULES} is imported
(if it exists) before the command line is parsed, so it can register itself
at import time::

    # clustersync/admincluster.py
    from clustersync.cli.admin import registerCommand

    def setupPeers(parser):
        parser.add_argument("--web", default="http://127.0.0.1:7080")

    def runPeers(args):
        ...
        return 0

    registerCommand("peers", "list the node's peer links", setupPeers, runPeers)
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import sys
from typing import Callable

from clustersync.gateway.auth import DEFAULT_USERS_FILE, UsersFile, UsersFileError

__all__ = ["PROVIDERS", "PROVIDER_MODULES", "registerCommand", "buildParser", "main"]

#: Every subcommand: C{(name, help, setup, run)}, in registration order.
PROVIDERS: list[tuple[str, str, Callable, Callable]] = []

#: Modules imported before parsing, so they can call L{registerCommand}
#: (a missing one is skipped).
PROVIDER_MODULES: list[str] = ["clustersync.admincluster", "clustersync.cli.adminops"]


def registerCommand(name: str, help: str, setup: Callable, run: Callable) -> None:
    """
    Add (or replace) subcommand C{name}.

    @param setup: called with the subcommand's C{ArgumentParser}.
    @param run: called with the parsed C{Namespace}; returns the exit status.
    """
    PROVIDERS[:] = [p for p in PROVIDERS if p[0] != name]
    PROVIDERS.append((name, help, setup, run))


def _loadProviderModules() -> None:
    for module in PROVIDER_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise


# Users ----------------------------------------------------------------------


def _usersFileArgument(parser) -> None:
    parser.add_argument("--users-file", default=DEFAULT_USERS_FILE,
                        help=f"the users file (default ./{DEFAULT_USERS_FILE}, as the node's)")


def _loadOrNew(path: str) -> UsersFile:
    try:
        return UsersFile.load(path)
    except FileNotFoundError:
        return UsersFile(path)


def _readPassword(args) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    first = getpass.getpass(f"contrasenia for {args.name}: ")
    second = getpass.getpass("again: ")
    if first != second:
        raise UsersFileError("the two passwords differ")
    return first


def setupAddUser(parser) -> None:
    """Arguments of C{adduser}."""
    parser.add_argument("name", help="the login name (usuario)")
    parser.add_argument("--cliente-id", type=int, required=True,
                        help="the user's clienteId (a unique non-negative integer)")
    parser.add_argument("--admin", action="store_true", help="allow BROADCAST")
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of stdin (no prompt)")
    parser.add_argument("--replace", action="store_true",
                        help="update an existing user (new password, id, admin flag)")
    _usersFileArgument(parser)


def runAddUser(args) -> int:
    """Add a user to the users file."""
    users = _loadOrNew(args.users_file)
    users.add(args.name, args.cliente_id, _readPassword(args), admin=args.admin,
              replace=args.replace)
    users.save()
    print(f"{'updated' if args.replace else 'added'} {args.name} (clienteId "
          f"{args.cliente_id}{', admin' if args.admin else ''}) in {args.users_file}")
    return 0


def setupDelUser(parser) -> None:
    """Arguments of C{deluser}."""
    parser.add_argument("name", help="the login name (usuario)")
    _usersFileArgument(parser)


def runDelUser(args) -> int:
    """Remove a user from the users file."""
    users = UsersFile.load(args.users_file)
    users.remove(args.name)
    users.save()
    print(f"removed {args.name} from {args.users_file}")
    return 0


def setupUsers(parser) -> None:
    """Arguments of C{users}."""
    _usersFileArgument(parser)


def runUsers(args) -> int:
    """List the users file's accounts (never the hashes)."""
    users = UsersFile.load(args.users_file)
    for u in sorted(users.users.values(), key=lambda u: u.clienteId):
        print(f"{u.clienteId:>6}  {u.usuario}{'  (admin)' if u.admin else ''}")
    return 0


registerCommand("adduser", "add a chat user to the users file", setupAddUser, runAddUser)
registerCommand("deluser", "remove a chat user from the users file", setupDelUser, runDelUser)
registerCommand("users", "list the chat users of the users file", setupUsers, runUsers)


def buildParser() -> argparse.ArgumentParser:
    """The C{clustersync-admin} parser, one subparser per provider."""
    parser = argparse.ArgumentParser(prog="clustersync-admin",
                                     description="Manage a clustersync node.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help, setup, run in PROVIDERS:
        p = sub.add_parser(name, help=help, description=help)
        setup(p)
        p.set_defaults(run=run)
    return parser


def main(argv=None) -> int:
    """Entry point of C{clustersync-admin}."""
    _loadProviderModules()
    args = buildParser().parse_args(argv)
    try:
        return args.run(args)
    except (UsersFileError, FileNotFoundError) as e:
        print(f"clustersync-admin {args.command}: {e}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):
        print(file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
