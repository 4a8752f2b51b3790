"""Run the sandbox as its own process (as users do) for the benchmarks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from types import TracebackType

from airflow_invites.sandbox.client import SandboxClient


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SandboxProcess(SandboxClient):
    """``airflow-invites sandbox`` in a subprocess; sets ``AIRFLOW_CONN_*_DEFAULT`` for this process
    unless ``default_connections`` is False (several sandboxes side by side)."""

    def __init__(self, default_connections: bool = True) -> None:
        self.port = free_port()
        super().__init__(f"http://127.0.0.1:{self.port}", timeout=120)
        self.process: subprocess.Popen[bytes] | None = None
        self.default_connections = default_connections

    def __enter__(self) -> SandboxProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "airflow_invites.cli", "sandbox", "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.health()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError("the sandbox did not start") from None
                time.sleep(0.2)
        if self.default_connections:
            for platform in self.env():
                self.set_connection(platform, f"{platform}_default")
        return self

    def set_connection(self, platform: str, conn_id: str, **extra: object) -> None:
        """Point Airflow connection ``conn_id`` (an environment variable) at this sandbox's ``platform``."""
        conn = dict(self.env()[platform]["connection"])
        conn["extra"] = {**conn.get("extra", {}), "timeout": 30, **extra}
        os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
