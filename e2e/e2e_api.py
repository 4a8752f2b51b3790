"""A small client for the e2e checks: Airflow's REST API (JWT from /auth/token) and the sandbox admin API.

Everything comes from the environment that ``e2e/run.sh`` exports (``E2E_API``, ``E2E_SANDBOX``, ...).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

import requests

API = os.environ.get("E2E_API", "http://127.0.0.1:8080")
SANDBOX = os.environ.get("E2E_SANDBOX", "http://127.0.0.1:8765")
USER = os.environ.get("E2E_ADMIN_USER", "admin")
PASSWORD = os.environ.get("E2E_ADMIN_PASSWORD", "admin")
DAG_ID = "onboard_user"
TERMINAL = {"success", "failed"}


class Airflow:
    """``/api/v2`` with a bearer token."""

    def __init__(self, base: str = API) -> None:
        self.base = base
        self.session = requests.Session()
        self._token: str | None = None

    def token(self) -> str:
        if self._token is None:
            reply = requests.post(
                f"{self.base}/auth/token", json={"username": USER, "password": PASSWORD}, timeout=30
            )
            assert reply.status_code in (200, 201), f"/auth/token: {reply.status_code} {reply.text[:200]}"
            self._token = reply.json()["access_token"]
        return self._token

    def request(self, method: str, path: str, expect: Iterable[int] = (200,), **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", 30)
        headers = {"Authorization": f"Bearer {self.token()}"}
        reply = self.session.request(method, f"{self.base}/api/v2{path}", headers=headers, **kwargs)
        assert reply.status_code in tuple(expect), f"{method} {path}: {reply.status_code} {reply.text[:500]}"
        return reply.json() if reply.content else None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    # -- DAG runs
    def unpause(self, dag_id: str = DAG_ID) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, conf: dict[str, Any], dag_id: str = DAG_ID) -> str:
        run = self.request(
            "POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf}, expect=(200, 201)
        )
        return str(run["dag_run_id"])

    def run(self, run_id: str, dag_id: str = DAG_ID) -> dict[str, Any]:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}")  # type: ignore[no-any-return]

    def wait_runs(self, run_ids: list[str], timeout: float = 240, dag_id: str = DAG_ID) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = {r: self.run(r, dag_id)["state"] for r in run_ids}
            if all(s in TERMINAL for s in states.values()):
                return states
            time.sleep(1.5)
        raise AssertionError(f"runs not finished after {timeout} s: {states}")

    def task_instances(self, run_id: str, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")[  # type: ignore[no-any-return]
            "task_instances"
        ]

    def xcom(self, run_id: str, task_id: str, key: str = "return_value", dag_id: str = DAG_ID) -> Any:
        entry = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")
        return entry["value"]


class Sandbox:
    """The sandbox's admin API (``/_sandbox``)."""

    def __init__(self, base: str = SANDBOX) -> None:
        self.base = base

    def get(self, path: str, **params: Any) -> Any:
        reply = requests.get(f"{self.base}/_sandbox/{path}", params=params, timeout=30)
        reply.raise_for_status()
        return reply.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        reply = requests.post(f"{self.base}/_sandbox/{path}", json=body, timeout=30)
        reply.raise_for_status()
        return reply.json()

    def env(self) -> dict[str, Any]:
        return self.get("env")  # type: ignore[no-any-return]

    def invites(self, platform: str | None = None) -> list[dict[str, Any]]:
        return self.get("invites", **({"platform": platform} if platform else {}))["invites"]  # type: ignore[no-any-return]

    def applied(self, platform: str, user: str) -> int:
        return sum(row["applied"] for row in self.invites(platform) if row["user"] == user)

    def add_people(self, platform: str, count: int) -> list[str]:
        return self.post("people", {"platform": platform, "count": count})["users"]  # type: ignore[no-any-return]

    def secrets(self) -> list[str]:
        return self.get("secrets")["secrets"]  # type: ignore[no-any-return]
