"""``airflow-invites``: the command line (today: the sandbox)."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys


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


def sandbox_main(args: argparse.Namespace) -> int:
    if args.print_env:
        print("\n".join(env_lines(args.host, args.port)))
        return 0
    import uvicorn

    from airflow_invites.sandbox.app import create_app

    logging.getLogger("uvicorn.error").addFilter(_QuietDrops())
    print(
        f"airflow-invites sandbox on http://{args.host}:{args.port} (admin API under /_sandbox)", flush=True
    )
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="airflow-invites")
    commands = parser.add_subparsers(dest="command", required=True)
    sandbox = commands.add_parser("sandbox", help="run the local emulator of the five platforms' APIs")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8765)
    sandbox.add_argument("--print-env", action="store_true", help="print the export lines and exit")
    sandbox.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    return sandbox_main(args)


if __name__ == "__main__":
    sys.exit(main())
