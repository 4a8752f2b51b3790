"""Fixtures of the e2e checks (run by ``e2e/run.sh`` against the stack it started)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from e2e_api import DAG_ID, Airflow, Sandbox

#: figures the checks measured, printed at the end of the pytest run (``fact("...")``)
FACTS: list[str] = []


def fact(text: str) -> None:
    FACTS.append(text)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FACTS:
        terminalreporter.section("e2e figures")
        for line in FACTS:
            terminalreporter.write_line(line)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    setattr(item, f"rep_{report.when}", report)  # fixtures can see whether the check failed
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def airflow() -> Airflow:
    client = Airflow()
    client.unpause()
    return client


@pytest.fixture(scope="session")
def sandbox() -> Sandbox:
    return Sandbox()


@pytest.fixture(scope="session")
def sandbox_env(sandbox: Sandbox) -> dict[str, Any]:
    return sandbox.env()


@pytest.fixture(scope="session")
def dag_params(airflow: Airflow) -> dict[str, Any]:
    return airflow.get(f"/dags/{DAG_ID}/details")["params"]  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def platforms(dag_params: dict[str, Any], sandbox_env: dict[str, Any]) -> list[str]:
    """The platforms the onboarding DAG offers and the sandbox serves (``E2E_PLATFORMS`` narrows them)."""
    wanted = [p for p in os.environ.get("E2E_PLATFORMS", "").split(",") if p]
    offered = dag_params["platforms"]["schema"]["items"]["enum"]
    found = [p for p in offered if f"{p}_user" in dag_params and p in sandbox_env]
    found = [p for p in found if not wanted or p in wanted]
    assert "rocketchat" in found, f"the reference platform is missing: {found}"
    return found


def new_people(sandbox: Sandbox, platforms: list[str]) -> dict[str, str]:
    """A person on each platform whom nobody has invited yet (each check its own: its own ``applied``)."""
    return {name: sandbox.add_people(name, 1)[0] for name in platforms}


def conf_for(platforms: list[str], sandbox_env: dict[str, Any], people: dict[str, str]) -> dict[str, Any]:
    """An ``onboard_user`` conf: the sandbox group and the given person on each platform."""
    conf: dict[str, Any] = {"platforms": platforms, "message": "Welcome aboard!"}
    for name in platforms:
        conf[f"{name}_group"] = sandbox_env[name]["group"]
        conf[f"{name}_user"] = people[name]
    return conf


def sensor_available() -> bool:
    return find_spec("airflow_invites.sensors.membership") is not None


@pytest.fixture(scope="session")
def images() -> Path:
    path = Path(os.environ.get("E2E_IMAGES", Path(__file__).parent.parent / "docs" / "images"))
    path.mkdir(parents=True, exist_ok=True)
    return path
