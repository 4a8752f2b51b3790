"""CeleryExecutor (Redis broker, two workers): the same onboarding, invite tasks on both workers,
the per-platform pools holding, ``applied: 1`` per person.

Run by ``e2e/run.sh`` after it restarted the scheduler with ``CeleryExecutor``; each worker reports
its own hostname (``e2e_hostname.worker_hostname``), which the task instances carry.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
from conftest import conf_for, fact, new_people
from e2e_api import Airflow, Sandbox

PEOPLE = 3  # people onboarded at once, each by two concurrent runs
WORKERS = {"celery-w1", "celery-w2"}


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    """The most intervals running at one instant (an end and a start at the same instant: not both)."""
    events = sorted(
        [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1])
    )
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


@pytest.fixture(scope="module")
def celery_runs(
    airflow: Airflow, sandbox: Sandbox, sandbox_env: dict, platforms: list[str]
) -> tuple[list[dict[str, Any]], dict[str, str], list[dict[str, Any]]]:
    confs = [conf_for(platforms, sandbox_env, new_people(sandbox, platforms)) for _ in range(PEOPLE)]
    run_ids = [airflow.trigger(conf) for conf in confs for _ in range(2)]
    started = time.monotonic()
    states = airflow.wait_runs(run_ids, timeout=420)
    fact(
        f"celery: {len(run_ids)} runs x {len(platforms)} platforms finished in {time.monotonic() - started:.0f} s"
    )
    tis = [ti for run_id in run_ids for ti in airflow.task_instances(run_id)]
    return confs, states, tis


def test_tasks_ran_on_celery_workers(celery_runs: tuple) -> None:
    _, _, tis = celery_runs
    ran = [ti for ti in tis if ti["state"] in ("success", "failed")]
    assert ran and all(ti["hostname"] in WORKERS for ti in ran), {ti["hostname"] for ti in ran}


def test_invite_tasks_spread_across_both_workers(celery_runs: tuple) -> None:
    _, _, tis = celery_runs
    invites = [ti for ti in tis if ".invite_" in ti["task_id"] and ti["state"] == "success"]
    per_worker = {w: sum(ti["hostname"] == w for ti in invites) for w in sorted(WORKERS)}
    fact(f"celery: invite tasks per worker {per_worker}")
    assert all(per_worker.values()), per_worker


def test_pools_hold_the_rate_limits(celery_runs: tuple, airflow: Airflow, platforms: list[str]) -> None:
    _, _, tis = celery_runs
    for name in platforms:
        pool = airflow.get(f"/pools/invites_{name}")
        invites = [ti for ti in tis if ti["task_id"] == f"onboard.invite_{name}" and ti["start_date"]]
        assert all(ti["pool"] == pool["name"] for ti in invites), {ti["pool"] for ti in invites}
        peak = max_overlap([(parse(ti["start_date"]), parse(ti["end_date"])) for ti in invites])
        fact(f"celery: {name}: {len(invites)} invite tasks, at most {peak} at once, pool of {pool['slots']}")
        assert 1 <= peak <= pool["slots"], f"{name}: {peak} invite tasks at once in a pool of {pool['slots']}"


def test_applied_once_per_person(celery_runs: tuple, sandbox: Sandbox, platforms: list[str]) -> None:
    confs, _, _ = celery_runs
    applied = {
        (name, conf[f"{name}_user"]): sandbox.applied(name, conf[f"{name}_user"])
        for conf in confs
        for name in platforms
    }
    assert set(applied.values()) == {1}, applied


def test_all_runs_succeeded(celery_runs: tuple) -> None:
    _, states, tis = celery_runs
    bad = {
        f"{ti['dag_run_id']} {ti['task_id']}": ti["state"]
        for ti in tis
        if ti["state"] not in ("success", "skipped")
    }
    assert set(states.values()) == {"success"}, bad
