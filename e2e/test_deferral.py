"""The acceptance sensor really defers: task state ``deferred``, the triggerer runs it, and it resumes
after ``POST /_sandbox/accept``."""

from __future__ import annotations

import time
from typing import Any

import pytest
from conftest import conf_for, new_people, sensor_available
from e2e_api import Airflow, Sandbox

#: platforms where an invitation stays pending until the person accepts (Rocket.Chat adds at once)
PENDING_PLATFORMS = ("playfab", "vrchat", "bitrix24", "bungie")
POLL_SECONDS = 2


def wait_for(what: str, check: Any, timeout: float = 120, every: float = 1.0) -> Any:
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        ok, last = check()
        if ok:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not after {timeout} s; last seen {last}")


def test_acceptance_sensor_defers_and_resumes(
    airflow: Airflow, sandbox: Sandbox, sandbox_env: dict, platforms: list[str], dag_params: dict
) -> None:
    if not sensor_available() or "wait_for_acceptance" not in dag_params:
        pytest.skip("airflow_invites.sensors.membership / the wait_for_acceptance param has not landed")
    platform = next((p for p in PENDING_PLATFORMS if p in platforms), None)
    if platform is None:
        pytest.skip(f"no platform with pending invitations among {platforms}")
    conf = conf_for([platform], sandbox_env, new_people(sandbox, [platform]))
    conf.update(wait_for_acceptance=True, acceptance_poll_seconds=POLL_SECONDS)
    group, user = conf[f"{platform}_group"], conf[f"{platform}_user"]
    run_id = airflow.trigger(conf)
    path = f"/dags/onboard_user/dagRuns/{run_id}/taskInstances/onboard.wait_{platform}"

    def picked_up() -> tuple[bool, Any]:
        ti = airflow.get(path)
        if ti["state"] in ("failed", "upstream_failed", "success", "skipped"):
            raise AssertionError(f"the sensor ended {ti['state']} before the person accepted")
        job = ti.get("triggerer_job") or {}
        return ti["state"] == "deferred" and bool(job.get("id")), (ti["state"], ti.get("trigger"), job)

    _state, trigger, job = wait_for("sensor deferred and picked up by the triggerer", picked_up)
    assert trigger["classpath"].startswith("airflow_invites.triggers."), trigger
    assert job.get("job_type") in (None, "TriggererJob"), job
    time.sleep(3 * POLL_SECONDS)  # several look-ups in the triggerer: still waiting
    assert airflow.get(path)["state"] == "deferred"
    assert sandbox.applied(platform, user) == 1

    sandbox.post("accept", {"platform": platform, "group": group, "user": user})
    assert airflow.wait_runs([run_id], timeout=120) == {run_id: "success"}
    ti = airflow.get(path)
    assert ti["state"] == "success" and ti["try_number"] == 1, ti
    result = airflow.xcom(run_id, f"onboard.wait_{platform}")
    assert result["status"] == "member", result
