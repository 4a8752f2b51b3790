"""The example DAGs: they import cleanly and run against the sandbox."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from airflow_invites.sandbox.client import SandboxClient

DAGS = Path(__file__).resolve().parents[1] / "dags"


def load_dag(name: str):
    spec = importlib.util.spec_from_file_location(f"dag_{name}", DAGS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.dag


def test_dagbag_imports_without_errors(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert "onboard_user" in bag.dag_ids


def outcomes_of(dag_run, task_id: str = "onboard.report"):
    ti = next(t for t in dag_run.get_task_instances() if t.task_id == task_id)
    return ti.xcom_pull(task_ids=task_id)


def run_conf(sandbox: SandboxClient, platform: str) -> dict[str, object]:
    env = sandbox.env()[platform]
    return {f"{platform}_user": env["users"][0], f"{platform}_group": env["group"]}


def test_onboard_user_invites_then_reports_already_member(sandbox, airflow_db):
    dag = load_dag("onboard_user")
    conf = run_conf(sandbox, "rocketchat")
    first = dag.test(run_conf=conf)
    assert first.state == "success"
    second = dag.test(run_conf=conf)
    assert second.state == "success"
    rows = sandbox.invites("rocketchat")
    assert [(r["user"], r["applied"]) for r in rows] == [(conf["rocketchat_user"], 1)]


def test_onboard_user_rejects_bad_input_in_the_form(sandbox, airflow_db):
    from airflow.sdk.exceptions import ParamValidationError

    dag = load_dag("onboard_user")
    with pytest.raises(ParamValidationError):
        dag.test(run_conf={"rocketchat_user": "../../etc/passwd"})
    assert sandbox.requests() == []


def test_onboard_user_dry_run_writes_nothing(sandbox, airflow_db):
    dag = load_dag("onboard_user")
    run = dag.test(run_conf={**run_conf(sandbox, "rocketchat"), "dry_run": True})
    assert run.state == "success"
    assert sandbox.invites() == []
