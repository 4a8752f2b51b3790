"""Test set-up: Airflow on a throwaway SQLite home, and a real sandbox server on loopback.

The environment is set before anything imports Airflow.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
HOME = Path(tempfile.mkdtemp(prefix="invites-airflow-"))
os.environ.update(
    AIRFLOW_HOME=str(HOME),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{HOME}/airflow.db",
    AIRFLOW__CORE__UNIT_TEST_MODE="False",
)

from airflow_invites.sandbox.client import SandboxClient  # noqa: E402

#: per-request timeout the tests' connections use (the sandbox's "timeout" fault waits longer)
TEST_TIMEOUT_S = 2.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SandboxServer(SandboxClient):
    """A sandbox running in a thread of the test process, spoken to over real HTTP."""

    def __init__(self) -> None:
        import uvicorn

        from airflow_invites.sandbox.app import create_app

        self.port = _free_port()
        super().__init__(f"http://127.0.0.1:{self.port}")
        config = uvicorn.Config(create_app(), host="127.0.0.1", port=self.port, log_level="critical")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("sandbox did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def lose_next_invite_reply(self, hook: Any, platform: str) -> None:
        """The hook's next ``send_invites`` is applied by the sandbox, but its reply is lost."""
        self.lose_next_write_reply(hook, platform, "send_invites")

    def lose_next_write_reply(self, hook: Any, platform: str, method: str) -> None:
        """The hook's next ``method`` call (a write) is applied by the sandbox, but its reply is lost."""
        write = getattr(hook, method)
        done: list[bool] = []

        def write_and_lose_reply(*args: Any) -> Any:
            if done:
                return write(*args)
            done.append(True)
            self.faults(platform, rate=1.0, kinds=["lost_response"])
            try:
                return write(*args)
            finally:
                self.clear_faults()

        setattr(hook, method, write_and_lose_reply)

    @staticmethod
    def after_first_invite(hook: Any, action: Any) -> None:
        """Call ``action()`` once, right after the hook's first invite request returns."""
        send = hook.send_invites
        done: list[bool] = []
        lock = threading.Lock()  # invite threads may return together

        def send_then_act(group: str, users: Any, request: Any) -> Any:
            result = send(group, users, request)
            with lock:
                if not done:
                    done.append(True)
                    action()
            return result

        hook.send_invites = send_then_act

    def connection_env(self, platform: str, **extra: object) -> str:
        """The ``AIRFLOW_CONN_*`` JSON of ``platform``, with extras merged in (timeout by default)."""
        conn = dict(self.env()[platform]["connection"])
        conn["extra"] = {**conn.get("extra", {}), "timeout": TEST_TIMEOUT_S, **extra}
        return json.dumps(conn)


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    server = SandboxServer()
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> SandboxServer:
    """A freshly reset sandbox, with every platform's default connection pointing at it."""
    sandbox_server.reset()
    for platform in sandbox_server.env():
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{platform.upper()}_DEFAULT", sandbox_server.connection_env(platform)
        )
    return sandbox_server


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Initialise the metadata DB once (needed by DAG runs and Variables)."""
    from airflow.utils import db

    db.initdb()


@pytest.fixture
def long_run(request: pytest.FixtureRequest) -> None:
    """Skip unless the run asked for the long fault suite (``pytest -m faults``, ``make test-faults``)."""
    if "faults" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the long variant runs with -m faults (make test-faults)")
