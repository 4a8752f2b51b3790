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
    """``airflow-invites sandbox`` in a subprocess; sets ``AIRFLOW_CONN_*_DEFAULT`` for this process."""

    def __init__(self) -> None:
        self.port = free_port()
        super().__init__(f"http://127.0.0.1:{self.port}", timeout=120)
        self.process: subprocess.Popen[bytes] | None = None

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
        for platform, env in self.env().items():
            conn = dict(env["connection"])
            conn["extra"] = {**conn.get("extra", {}), "timeout": 30}
            os.environ[f"AIRFLOW_CONN_{platform.upper()}_DEFAULT"] = json.dumps(conn)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
