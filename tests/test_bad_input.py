"""Bad input on every platform: a clear error naming the field and the shape, no request, no retry.

The operators run through ``operator.execute(context)`` with a minimal context whose ``ti`` records
``xcom_push``; the last test runs a real ``airflow dags test`` with ``retries=2`` on every task and
checks that the failing tasks ran once.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_invites.core.errors import InviteInputError
from airflow_invites.platforms import PLATFORMS

REPO = Path(__file__).resolve().parents[1]
GROUP = "<the sandbox's group>"
USER = "<a person of the sandbox>"
HUGE = "7" * 100_000
VRC_USER = "usr_ccb9897b-7663-4ff2-855e-48eabca5246f"
BUNGIE_USER = "3:4611686018404936007"
PLAYFAB_USER = "4B2BD4F6C30225E3"

# (platform, group, users, operator options, field named, words of the expected shape)
CASES: list[tuple[str, Any, Any, dict[str, Any], str, str]] = [
    # Rocket.Chat
    ("rocketchat", "", [USER], {}, "group", "id or name"),
    ("rocketchat", "../etc/passwd", [USER], {}, "group", "[A-Za-z0-9._-]"),
    ("rocketchat", GROUP, ["has space"], {}, "users", "user ids"),
    ("rocketchat", GROUP, ["a\nb"], {}, "users", "user ids"),
    ("rocketchat", GROUP, [HUGE], {}, "users", "1-64"),
    ("rocketchat", GROUP, [USER, USER], {}, "users", "each person once"),
    ("rocketchat", GROUP, "   ", {}, "users", "user ids"),
    ("rocketchat", GROUP, [None], {}, "users", "user ids"),
    ("rocketchat", GROUP, [USER], {"dry_run": "maybe"}, "dry_run", "true or false"),
    # Bitrix24
    ("bitrix24", "abc", [USER], {}, "group", "workgroup id"),
    ("bitrix24", "-5", [USER], {}, "group", "workgroup id"),
    ("bitrix24", GROUP, ["07"], {}, "users", "positive integers"),
    ("bitrix24", GROUP, [7.5], {}, "users", "positive integers"),
    ("bitrix24", GROUP, ["7", 7], {}, "users", "each person once"),
    ("bitrix24", GROUP, ["1e3"], {}, "users", "positive integers"),
    ("bitrix24", GROUP, ["7\x00"], {}, "users", "positive integers"),
    ("bitrix24", GROUP, [USER], {"message": "x" * 10_001}, "message", "at most 10000 characters"),
    # Bungie.net
    ("bungie", "4107840/../1", [USER], {}, "group", "digits only"),
    ("bungie", "9999999999999999999", [USER], {}, "group", "2^63-1"),
    ("bungie", GROUP, ["TigerFoo:4611686018404936007"], {}, "users", "type by number or name"),
    ("bungie", GROUP, ["9:4611686018404936007"], {}, "users", "type by number or name"),
    ("bungie", GROUP, [BUNGIE_USER, "TigerSteam:4611686018404936007"], {}, "users", "each person once"),
    ("bungie", GROUP, ["4611686018404936007"], {}, "users", "<membershipType>:<membershipId>"),
    ("bungie", GROUP, [USER], {"message": "x" * 501}, "message", "at most 500 characters"),
    # VRChat
    ("vrchat", "grp_../../etc", [USER], {}, "group", "grp_<lower-case uuid>"),
    ("vrchat", "GRP_97F75ECD-F58D-4DB3-82DD-867C67C3579E", [USER], {}, "group", "grp_<lower-case uuid>"),
    ("vrchat", GROUP, [VRC_USER + "\u202e"], {}, "users", "usr_"),
    ("vrchat", GROUP, ["usr_xyz"], {}, "users", "usr_"),
    ("vrchat", GROUP, {"a": 1}, {}, "users", "a person's id or a list of ids"),
    ("vrchat", GROUP, [USER], {"confirm_override_block": "maybe"}, "confirm_override_block", "true or false"),
    # PlayFab
    ("playfab", GROUP, [USER], {"role_id": "r" * 65}, "role_id", "1-64 characters"),
    ("playfab", GROUP, [USER], {"role_id": "admins!"}, "role_id", "1-64 characters"),
    ("playfab", GROUP, [PLAYFAB_USER.lower()], {}, "users", "16 upper-case hex"),
    (
        "playfab",
        GROUP,
        [{"Id": PLAYFAB_USER, "Type": "master_player_account"}],
        {},
        "users",
        "master_player_account",
    ),
    ("playfab", GROUP, [f"group:{PLAYFAB_USER}"], {}, "users", "entity type must be one of"),
    ("playfab", GROUP, [USER], {"custom_tags": {f"k{i}": "v" for i in range(11)}}, "custom_tags", "10"),
    (
        "playfab",
        GROUP,
        [USER],
        {"auto_accept_outstanding_application": "perhaps"},
        "auto_accept_outstanding_application",
        "true or false",
    ),
    ("playfab", "", [USER], {}, "group", "16 upper-case hex"),
    ("playfab", GROUP, [], {}, "users", "at least one person"),
]


class FakeTI:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def resolve(value: Any, env: dict[str, Any]) -> Any:
    if value == GROUP:
        return env["group"]
    if isinstance(value, list):
        return [env["users"][0] if item == USER else item for item in value]
    return value


def test_the_table_covers_every_platform_and_kind():
    assert len(CASES) >= 30
    assert {case[0] for case in CASES} == set(PLATFORMS)


@pytest.mark.parametrize(
    ("platform", "group", "users", "options", "field", "shape"),
    CASES,
    ids=[f"{c[0]}-{c[4]}-{i}" for i, c in enumerate(CASES)],
)
def test_bad_input_names_the_field_and_sends_nothing(sandbox, platform, group, users, options, field, shape):
    env = sandbox.env()[platform]
    ti = FakeTI()
    operator = PLATFORMS[platform].operator_class(
        task_id="invite", group=resolve(group, env), users=resolve(users, env), retries=2, **options
    )
    with pytest.raises(InviteInputError) as caught:
        operator.execute({"ti": ti})
    error = caught.value
    assert isinstance(error, AirflowFailException)  # Airflow fails the task without retries
    assert error.field == field
    assert str(error).startswith(f"{field}: expected ")
    assert shape in error.expected, str(error)
    assert len(str(error)) < 1000  # a huge value is cut, not echoed
    assert sandbox.requests() == []  # not one request, to any platform
    failure = ti.pushed["outcomes"][0]  # the report task still learns why
    assert failure["status"] == "failed" and failure["detail"].startswith(f"{field}: expected ")


DAG_FILE = """
from airflow.sdk import DAG, task
from airflow.sdk.exceptions import AirflowException

from airflow_invites.operators.bungie import BungieClanInviteOperator
from airflow_invites.operators.playfab import PlayFabGroupInviteOperator
from airflow_invites.operators.rocketchat import RocketChatGroupInviteOperator

with DAG("bad_input", schedule=None, default_args={"retries": 2, "retry_delay": 0}):
    BungieClanInviteOperator(task_id="bungie", group=GROUPS["bungie"], users="TigerFoo:4611686018404936007")
    PlayFabGroupInviteOperator(task_id="playfab", group=GROUPS["playfab"], users=USERS["playfab"], role_id="r" * 65)
    RocketChatGroupInviteOperator(task_id="rocketchat", group="../etc/passwd", users=USERS["rocketchat"])

    @task
    def control():  # a transient failure: this one Airflow retries
        raise AirflowException("transient")

    control()
"""


def test_failing_tasks_are_not_retried_in_a_real_dag_run(sandbox, tmp_path):
    """``airflow dags test`` of a DAG whose tasks all have ``retries=2``: bad input fails at try 1.

    Its own Airflow home and DAG folder (the project's DAG folder is not ours to write into); a
    control task raising an ordinary error shows that retries really happen in this set-up.
    """
    env = sandbox.env()
    dags = tmp_path / "dags"
    dags.mkdir()
    groups = {p: env[p]["group"] for p in env}
    users = {p: env[p]["users"][0] for p in env}
    (dags / "bad_input.py").write_text(f"GROUPS = {groups!r}\nUSERS = {users!r}\n" + DAG_FILE)
    run_env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/airflow.db",
    }
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=run_env, check=True, capture_output=True, timeout=180)
    done = subprocess.run(
        [airflow, "dags", "test", "bad_input"],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    with sqlite3.connect(tmp_path / "airflow.db") as db:
        rows = db.execute("SELECT task_id, state, try_number, max_tries FROM task_instance").fetchall()
    tries = {task_id: (state, try_number, max_tries) for task_id, state, try_number, max_tries in rows}
    assert tries == {
        "bungie": ("failed", 1, 2),
        "playfab": ("failed", 1, 2),
        "rocketchat": ("failed", 1, 2),
        "control": ("failed", 3, 2),  # tried three times: retries work here
    }, tries
    assert "users: expected <membershipType>:<membershipId>" in output
    assert "role_id: expected 1-64 characters" in output
    assert "group: expected a private group's id or name" in output
    assert sandbox.requests() == []
