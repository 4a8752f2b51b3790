"""``airflow-invites``: the command line (today: the sandbox)."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import shlex
import socket
import sys

#: the sandbox's port when neither ``--port`` nor ``INVITES_SANDBOX_PORT`` names one
DEFAULT_PORT = 8765
#: exit status when the sandbox cannot listen (port taken, address not on this machine, ...)
EXIT_CANNOT_LISTEN = 3


class _QuietDrops(logging.Filter):
    """The sandbox drops connections on purpose (faults); don't print a traceback for each."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return type(exc).__name__ != "ConnectionDropped"


def env_lines(host: str, port: int) -> list[str]:
    """``export`` lines for a sandbox on host:port (deterministic: a fresh seed each time)."""
    from airflow_invites.sandbox.app import Sandbox

    lines = []
    for name, env in Sandbox().env(f"http://{host}:{port}").items():
        upper = name.upper()
        lines.append(f"export AIRFLOW_CONN_{upper}_DEFAULT={shlex.quote(json.dumps(env.connection))}")
        lines.append(f"export INVITES_SANDBOX_{upper}_GROUP={shlex.quote(env.group)}")
        lines.append(f"export INVITES_SANDBOX_{upper}_USERS={shlex.quote(','.join(env.users))}")
        if env.handles:
            lines.append(f"export INVITES_SANDBOX_{upper}_HANDLES={shlex.quote(','.join(env.handles))}")
    return lines


class CannotListen(Exception):
    """The sandbox's address cannot be bound; the message says why and what to do."""


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or :class:`CannotListen` naming the port and the way out."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not "in use" for TIME_WAIT leftovers
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CannotListen(
                f"port {port} on {host} is already in use (another sandbox, or another program): "
                f"stop it, or choose a free port with --port N or INVITES_SANDBOX_PORT=N"
            ) from None
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def sandbox_main(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from airflow_invites.sandbox.app import create_app
    except ImportError as exc:  # uvicorn is the extra "sandbox"
        print(
            f"airflow-invites sandbox: {exc.name} is not installed: pip install 'airflow-invites[sandbox]'",
            file=sys.stderr,
        )
        return 1
    if args.print_env:
        print("\n".join(env_lines(args.host, args.port)))
        return 0
    try:
        sock = listen(args.host, args.port)
    except CannotListen as exc:
        print(f"airflow-invites sandbox: {exc}", file=sys.stderr)
        return EXIT_CANNOT_LISTEN
    logging.getLogger("uvicorn.error").addFilter(_QuietDrops())
    print(
        f"airflow-invites sandbox on http://{args.host}:{args.port} (admin API under /_sandbox)", flush=True
    )
    config = uvicorn.Config(
        create_app(), host=args.host, port=args.port, log_level=args.log_level, access_log=False
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _default_port() -> int:
    value = os.environ.get("INVITES_SANDBOX_PORT", "")
    try:
        return int(value) if value else DEFAULT_PORT
    except ValueError:
        raise SystemExit(
            f"airflow-invites: INVITES_SANDBOX_PORT: expected a port number, got {value!r}"
        ) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="airflow-invites")
    commands = parser.add_subparsers(dest="command", required=True)
    sandbox = commands.add_parser("sandbox", help="run the local emulator of the five platforms' APIs")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument(
        "--port",
        type=int,
        default=_default_port(),
        help=f"default: $INVITES_SANDBOX_PORT, else {DEFAULT_PORT}",
    )
    sandbox.add_argument("--print-env", action="store_true", help="print the export lines and exit")
    sandbox.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    return sandbox_main(args)


if __name__ == "__main__":
    sys.exit(main())
