"""What a hostile review found, each reproduced then fixed: dead tasks that looked green, the trigger
form as a back door, the CSV source's traps, unbounded retries, forged report rows, typos that
succeeded, errors that did not teach. Real DAG runs and real HTTP against the sandbox."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException
from test_onboarding import load_dag, states, write_people

from airflow_invites.bulk import (
    BulkReportOperator,
    PeopleSourceError,
    read_people,
    rows_from_csv,
    rows_from_sql,
)
from airflow_invites.core.errors import InviteInputError
from airflow_invites.core.http import RetryPolicy
from airflow_invites.core.membership import invite_people
from airflow_invites.report import cell

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def allowed_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "rosters"
    folder.mkdir()
    monkeypatch.setenv("AIRFLOW__INVITES__PEOPLE_FOLDERS", str(folder))
    return folder


# -- 1. a dead task never looks green -----------------------------------------------------------------


def test_an_invite_task_killed_by_its_timeout_fails_the_run(sandbox, airflow_db, tmp_path):
    """``AirflowTaskTimeout`` is a BaseException: the report must still fail the run, naming the platform."""
    env = sandbox.env()["rocketchat"]
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "company_onboarding.py").write_text(
        textwrap.dedent(
            f"""
            from datetime import timedelta
            from airflow.sdk import DAG
            from airflow_invites.onboarding import onboarding_task_group

            with DAG("company_onboarding", schedule=None) as dag:
                onboarding_task_group(
                    users={{"rocketchat": "{env["users"][0]}"}},
                    groups={{"rocketchat": "{env["group"]}"}},
                    platforms=["rocketchat"],
                    use_pools=False,
                    operator_kwargs={{"rocketchat": {{"execution_timeout": timedelta(seconds=3)}}}},
                )
            """
        )
    )
    sandbox.faults("rocketchat", rate=0.0, latency_ms=6000)
    run = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "dags", "test", "company_onboarding"],
        env={**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(dags)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    sandbox.clear_faults()
    time.sleep(6)  # the request the task gave up on lands now: not in the next test's log
    out = run.stdout + run.stderr
    assert run.returncode != 0, out[-3000:]
    assert "AirflowTaskTimeout" in out
    assert "failed on: rocketchat" in out


class FakeTI:
    def __init__(self, xcoms: dict[tuple[str, str], Any], states: dict[str, str | None]) -> None:
        self.xcoms, self.states, self.dag_id = xcoms, states, "scheduled_onboarding"

    def xcom_pull(self, task_ids: str, key: str = "return_value", map_indexes: Any = None) -> Any:
        value = self.xcoms.get((task_ids, key))
        return [value] * len(map_indexes) if map_indexes is not None and value is not None else value

    def get_task_states(self, dag_id: str, task_ids: list[str], run_ids: list[str]) -> dict[str, Any]:
        return {run_ids[0]: {t: self.states.get(t) for t in task_ids}}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[("report", key)] = value


def test_a_dead_plan_task_fails_the_bulk_report():
    """A killed ``plan_<platform>`` left no batches: its platform's people are failures, not nothing."""
    source = {"people": [{"rocketchat": "abc", "_source": "f:2"}], "sources": ["f (1 rows)"]}
    ti = FakeTI({}, {"plan_rocketchat": "failed"})
    report = BulkReportOperator(task_id="report", source=source, platforms=["rocketchat"])
    with pytest.raises(AirflowFailException, match="1 on rocketchat"):
        report.execute({"ti": ti, "run_id": "r1"})


def test_a_run_where_nobody_was_given_fails(sandbox, airflow_db, capsys):
    run = load_dag("onboard_user").dag.test(run_conf={})
    assert run.state == "failed"
    assert "no person was given for any platform" in capsys.readouterr().out
    assert sandbox.requests() == []


# -- 6. the trigger form is not a back door -------------------------------------------------------------


def test_a_people_file_outside_the_allowed_folders_is_refused_unread(allowed_folder, tmp_path):
    secret = tmp_path / ".pgpass"
    secret.write_text("db.example:5432:*:admin:s3cr3t-pw\n")
    with pytest.raises(PeopleSourceError, match="not in a folder this deployment allows") as caught:
        read_people({"people_file": str(secret)})
    assert "s3cr3t" not in str(caught.value)
    sneaky = allowed_folder / ".." / ".pgpass"
    with pytest.raises(PeopleSourceError, match="not in a folder"):
        read_people({"people_file": str(sneaky)})
    (allowed_folder / "link.csv").symlink_to(secret)
    with pytest.raises(PeopleSourceError, match="not in a folder"):
        read_people({"people_file": str(allowed_folder / "link.csv")})


def test_no_error_quotes_a_files_content(allowed_folder):
    roster = allowed_folder / "roster.csv"
    roster.write_text("db.example:5432:*:admin:s3cr3t-pw\n1\n")
    with pytest.raises(PeopleSourceError) as caught:
        read_people({"people_file": str(roster)})
    assert "s3cr3t" not in str(caught.value) and "none of the platform columns" in str(caught.value)


def test_a_sql_connection_the_deployment_did_not_allow_is_refused(monkeypatch):
    monkeypatch.setenv("AIRFLOW__INVITES__SQL_CONN_IDS", "hr_db")
    with pytest.raises(
        PeopleSourceError, match="sql_conn_id: airflow_db is not a connection this deployment"
    ):
        read_people({"sql_conn_id": "airflow_db", "sql": "select * from connection"})


def test_form_sql_runs_read_only(tmp_path):
    database = tmp_path / "hr.db"
    with sqlite3.connect(database) as conn:
        conn.execute("create table staff (name text, rocketchat text)")
        conn.execute("insert into staff values ('Ann', 'abc')")

    from airflow.providers.common.sql.hooks.sql import DbApiHook

    class SqliteHook(DbApiHook):
        conn_name_attr = "sqlite_conn_id"

        def get_conn(self) -> sqlite3.Connection:
            return sqlite3.connect(database)

    assert rows_from_sql(SqliteHook(), "select * from staff") == [{"name": "Ann", "rocketchat": "abc"}]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        rows_from_sql(SqliteHook(), "delete from staff returning *")
    with sqlite3.connect(database) as conn:
        assert conn.execute("select count(*) from staff").fetchone() == (1,)


# -- 7. the CSV source ---------------------------------------------------------------------------------------


def test_columns_differing_only_in_case_are_refused(tmp_path):
    path = write_people(tmp_path / "p.csv", [{"RocketChat": "a", "rocketchat": "b"}])
    with pytest.raises(PeopleSourceError, match="columns 'RocketChat' and 'rocketchat' differ only in case"):
        rows_from_csv(str(path))


def test_a_latin1_file_names_the_file_and_line_and_is_not_retried(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes("name,rocketchat\nAnn,abc\nJos\xe9,def\n".encode("latin-1"))
    with pytest.raises(PeopleSourceError, match=r"p.csv: not UTF-8 text \(byte 0xe9 on line 3\)") as caught:
        rows_from_csv(str(path))
    assert isinstance(caught.value, AirflowFailException)  # Airflow does not retry it


def test_line_numbers_count_quoted_newlines(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('name,rocketchat\n"Ann\nof two lines",abc\nBob,def\n')
    assert [line for line, _ in rows_from_csv(str(path))] == [2, 4]


# -- 8 and 9. bad extras and hostile replies are clear ------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"timeout": 0}, "timeout"), ({"timeout": -5}, "timeout"), ({"max_attempts": "three"}, "max_attempts")],
)
def test_bad_extras_are_input_errors_naming_the_extra(sandbox, monkeypatch, extra, field):
    env = sandbox.env()["rocketchat"]
    monkeypatch.setenv("AIRFLOW_CONN_ROCKETCHAT_DEFAULT", sandbox.connection_env("rocketchat", **extra))
    from airflow_invites.hooks.rocketchat import RocketChatHook

    with pytest.raises(InviteInputError, match=rf"extra {field}: expected"):
        invite_people(RocketChatHook(), env["group"], env["users"][:1])
    assert sandbox.requests("rocketchat") == []


def test_a_token_with_a_non_latin1_character_is_an_input_error(sandbox, monkeypatch):
    env = sandbox.env()["rocketchat"]
    conn = json.loads(sandbox.connection_env("rocketchat"))
    conn["password"] = conn["password"] + "\u2603"
    monkeypatch.setenv("AIRFLOW_CONN_ROCKETCHAT_DEFAULT", json.dumps(conn))
    from airflow_invites.hooks.rocketchat import RocketChatHook

    with pytest.raises(InviteInputError, match="header X-Auth-Token: expected Latin-1") as caught:
        invite_people(RocketChatHook(), env["group"], env["users"][:1])
    assert "\u2603" not in str(caught.value)


def test_a_password_in_the_host_never_reaches_a_link(sandbox, monkeypatch):
    env = sandbox.env()["rocketchat"]
    conn = json.loads(sandbox.connection_env("rocketchat"))
    conn["host"] = conn["host"].replace("http://", "http://proxyuser:proxy-s3cret@")
    monkeypatch.setenv("AIRFLOW_CONN_ROCKETCHAT_DEFAULT", json.dumps(conn))
    from airflow_invites.hooks.rocketchat import RocketChatHook

    with pytest.raises(InviteInputError, match="host: expected a URL without user:password@") as caught:
        invite_people(RocketChatHook(), env["group"], env["users"][:1])
    assert "proxy-s3cret" not in str(caught.value)


def test_a_throttle_asking_for_minutes_holds_the_worker_at_most_the_budget(sandbox):
    env = sandbox.env()["rocketchat"]
    from airflow_invites.hooks.rocketchat import RocketChatHook

    hook = RocketChatHook()
    hook.auth_headers()
    waits: list[float] = []
    hook.http.sleep = waits.append
    sandbox.faults("rocketchat", rate=1.0, kinds=["throttle"], throttle_seconds=590)
    with pytest.raises(Exception, match="gave up"):
        invite_people(hook, env["group"], env["users"][:1])
    sandbox.clear_faults()
    assert sum(waits) <= RetryPolicy.max_call_wait


# -- 11. report cells cannot forge rows --------------------------------------------------------------------


def test_report_cells_are_escaped():
    assert cell("Ann | invited |\n| bob | x") == "Ann \\| invited \\| \\| bob \\| x"


def test_a_name_with_pipes_and_newlines_forges_no_report_row(
    sandbox, airflow_db, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("AIRFLOW__INVITES__PEOPLE_FOLDERS", str(tmp_path))
    env = sandbox.env()["rocketchat"]
    path = write_people(
        tmp_path / "p.csv", [{"name": "Eve |\n| rocketchat | forged", "rocketchat": "no such user!"}]
    )
    run = load_dag("scheduled_onboarding").dag.test(
        run_conf={"people_file": str(path), "rocketchat_group": env["group"]}
    )
    assert run.state == "failed"
    log = capsys.readouterr().out
    assert "| rocketchat | forged" not in log
    assert "Eve \\| \\| rocketchat \\| forged" in log


# -- newcomers: typos fail by name, errors teach -----------------------------------------------------------


def test_a_misspelled_conf_key_fails_before_any_request_naming_the_nearest(sandbox, airflow_db, capsys):
    env = sandbox.env()["rocketchat"]
    run = load_dag("onboard_user").dag.test(run_conf={"rocketchat_usr": env["users"][0]})
    assert run.state == "failed"
    assert "unknown key 'rocketchat_usr' (did you mean 'rocketchat_user'?)" in capsys.readouterr().out
    assert sandbox.requests() == []


def test_a_misspelled_platform_key_fails_when_the_dag_is_parsed():
    from airflow.sdk import DAG

    from airflow_invites.onboarding import onboarding_task_group

    expected = r"users: unknown platform 'vrchta' \(did you mean 'vrchat'\?\)"
    with pytest.raises(ValueError, match=expected), DAG("typo", schedule=None):
        onboarding_task_group(users={"vrchta": "usr_x"})


def test_a_missing_group_names_the_param_and_the_variable(sandbox, airflow_db, capsys):
    env = sandbox.env()["rocketchat"]
    run = load_dag("onboard_user").dag.test(
        run_conf={"platforms": ["rocketchat"], "rocketchat_user": env["users"][0]}
    )
    assert run.state == "failed"
    out = capsys.readouterr().out
    assert "set the DAG param rocketchat_group or the Variable invites_rocketchat_group" in out


def test_a_failed_invite_is_reported_as_the_invites_failure_without_an_acceptance_table(
    sandbox, airflow_db, capsys
):
    env = sandbox.env()["rocketchat"]
    conf = {
        "platforms": ["rocketchat"],
        "rocketchat_user": "zzzzzzzzzzzzzzzzz",
        "rocketchat_group": env["group"],
    }
    run = load_dag("onboard_user").dag.test(run_conf=conf)
    assert run.state == "failed"
    by_task = states(run)
    assert by_task[("onboard.invite_rocketchat", -1)] == "failed"
    out = capsys.readouterr().out
    assert "| accepted |" not in out and "not waited for" not in out
    assert "failed on: rocketchat" in out
