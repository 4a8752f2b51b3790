"""REST: trigger ``onboard_user`` through /api/v2 with conf; two runs at once for one person."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import conf_for, new_people
from e2e_api import DAG_ID, Airflow, Sandbox

CHANGED = {"invited", "joined"}
UNCHANGED = {"already_member", "already_invited"}


def report_rows(airflow: Airflow, run_id: str) -> dict[str, dict[str, Any]]:
    """The report task's output (its XCom), by platform."""
    rows = airflow.xcom(run_id, "onboard.report")
    return {row["platform"]: row for row in rows}


def test_trigger_with_conf(
    airflow: Airflow, sandbox: Sandbox, sandbox_env: dict, platforms: list[str]
) -> None:
    conf = conf_for(platforms, sandbox_env, new_people(sandbox, platforms))
    run_id = airflow.trigger(conf)
    assert airflow.wait_runs([run_id]) == {run_id: "success"}
    rows = report_rows(airflow, run_id)
    for name in platforms:
        assert rows[name]["status"] in CHANGED, rows[name]
        assert rows[name]["user"], rows[name]
        assert sandbox.applied(name, conf[f"{name}_user"]) == 1, name
    states = {ti["task_id"]: ti["state"] for ti in airflow.task_instances(run_id)}
    assert states["onboard.report"] == "success"
    assert all(states[f"onboard.invite_{n}"] == "success" for n in platforms), states


@pytest.fixture(scope="module")
def concurrent_runs(
    airflow: Airflow, sandbox: Sandbox, sandbox_env: dict, platforms: list[str]
) -> tuple[dict, dict[str, str]]:
    """Two runs for the same person, triggered together; waits for both."""
    conf = conf_for(platforms, sandbox_env, new_people(sandbox, platforms))
    run_ids = [airflow.trigger(conf), airflow.trigger(conf)]
    return conf, airflow.wait_runs(run_ids)


def test_two_runs_at_once_apply_once(
    airflow: Airflow, sandbox: Sandbox, platforms: list[str], concurrent_runs: tuple[dict, dict[str, str]]
) -> None:
    conf, _ = concurrent_runs
    for name in platforms:
        assert sandbox.applied(name, conf[f"{name}_user"]) == 1, name


def test_two_runs_at_once_both_succeed(
    airflow: Airflow, platforms: list[str], concurrent_runs: tuple[dict, dict[str, str]]
) -> None:
    _, states = concurrent_runs
    failed = {
        f"{run_id} {ti['task_id']}": ti["state"]
        for run_id, state in states.items()
        if state != "success"
        for ti in airflow.task_instances(run_id)
        if ti["state"] not in ("success", "skipped")
    }
    assert not failed, f"runs not successful: {failed} (see the task logs)"
    for name in platforms:
        statuses = [report_rows(airflow, r)[name]["status"] for r in states]
        # one run changed the platform; the other found the person already there (when the two
        # look-ups raced, both may report the pending state: still one state change)
        assert sum(s in CHANGED for s in statuses) <= 1 and set(statuses) <= CHANGED | UNCHANGED, statuses


def test_bad_conf_is_refused_before_any_run(airflow: Airflow) -> None:
    reply = airflow.request(
        "POST",
        f"/dags/{DAG_ID}/dagRuns",
        json={
            "logical_date": None,
            "conf": {"platforms": ["rocketchat"], "rocketchat_user": "no spaces allowed"},
        },
        expect=(400,),
    )
    assert "rocketchat_user" in str(reply), reply


def test_logical_date_is_a_required_key(airflow: Airflow) -> None:
    airflow.request("POST", f"/dags/{DAG_ID}/dagRuns", json={"conf": {}}, expect=(422,))
