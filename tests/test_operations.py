"""Airflow-native operations: long waits deferred, the quick Test button, approval, asset events,
the notifier, the acceptance sensor's mode and the pool watch.

Real HTTP against the sandbox; DAGs run with ``dag.test()``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests
from test_onboarding import load_dag, onboard_conf, xcom

from airflow_invites.platforms import PLATFORMS
from airflow_invites.sandbox.client import SandboxClient


@pytest.mark.parametrize("platform", list(PLATFORMS))
@pytest.mark.parametrize("hint", [10, 120])
def test_the_test_button_answers_at_once_with_the_platforms_reason_when_throttled(sandbox, platform, hint):
    hook = PLATFORMS[platform].hook_for()
    sandbox.faults(platform, rate=1.0, kinds=["throttle"], throttle_seconds=hint)
    started = time.monotonic()
    ok, message = hook.test_connection()
    took = time.monotonic() - started
    assert not ok and took < 3, (took, message)
    assert "gave up" not in message, message
    sent = sandbox.requests(platform)
    assert 1 <= len(sent) <= 2, sent  # one attempt (a log-in may come first), no retries
    print(f"{platform}: {took:.2f} s: {message}")


@pytest.mark.parametrize(
    ("fault", "answer"),
    [
        ({"kinds": ["timeout"], "timeout_ms": 30_000}, "ReadTimeout"),  # one reply never comes
        ({"rate": 0.0, "latency_ms": 3_900}, "no answer within"),  # each reply slow, together too slow
    ],
)
def test_the_test_button_answers_within_its_deadline_when_the_platform_hangs(
    sandbox, monkeypatch, fault, answer
):
    from airflow_invites.hooks.base import TEST_DEADLINE

    monkeypatch.setenv("AIRFLOW_CONN_VRCHAT_DEFAULT", sandbox.connection_env("vrchat", timeout=60))
    sandbox.faults("vrchat", **{"rate": 1.0, **fault})
    started = time.monotonic()
    ok, message = PLATFORMS["vrchat"].hook_for().test_connection()
    took = time.monotonic() - started
    assert not ok and answer in message, message
    assert took < TEST_DEADLINE + 1, took


# -- long waits deferred -----------------------------------------------------------------------------


def _clear_faults_after_first_throttle(sandbox, platform: str) -> threading.Thread:
    """Clear the sandbox's faults right after the first throttled reply (the platform stops throttling)."""

    def watch() -> None:
        client = SandboxClient(sandbox.base_url)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(r["status"] == 429 for r in client.requests(platform)):
                client.clear_faults()
                return
            time.sleep(0.05)

    helper = threading.Thread(target=watch, daemon=True)
    helper.start()
    return helper


def test_a_long_throttle_defers_the_task_and_it_resumes(sandbox, airflow_db, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_ROCKETCHAT_DEFAULT", sandbox.connection_env("rocketchat", defer_after=1))
    conf = onboard_conf(sandbox, "rocketchat")
    sandbox.faults("rocketchat", rate=1.0, kinds=["throttle"], throttle_seconds=3)
    helper = _clear_faults_after_first_throttle(sandbox, "rocketchat")
    started = time.monotonic()
    run = load_dag("onboard_user").dag.test(run_conf=conf)
    helper.join(timeout=5)
    assert run.state == "success"
    assert [(r["user"], r["applied"]) for r in sandbox.invites("rocketchat")] == [
        (conf["rocketchat_user"], 1)
    ]
    figures = xcom(run, "onboard.invite_rocketchat", "stats")
    assert figures["deferrals"] == 1 and 3 <= figures["deferred_s"] < 10, figures
    assert figures["retries"] == 0  # the throttle was not slept in the worker
    assert time.monotonic() - started >= 3
    assert xcom(run, "onboard.invite_rocketchat")[0]["status"] == "invited"


def test_a_short_throttle_keeps_the_in_process_backoff(sandbox, airflow_db, monkeypatch):
    conf = onboard_conf(sandbox, "rocketchat")
    sandbox.faults("rocketchat", rate=1.0, kinds=["throttle"], throttle_seconds=1)
    helper = _clear_faults_after_first_throttle(sandbox, "rocketchat")
    run = load_dag("onboard_user").dag.test(run_conf=conf)
    helper.join(timeout=5)
    assert run.state == "success"
    figures = xcom(run, "onboard.invite_rocketchat", "stats")
    assert figures["deferrals"] == 0 and figures["retries"] >= 1, figures


def test_a_wait_past_the_deferral_bound_fails_at_once_touching_nobody(sandbox, airflow_db):
    conf = onboard_conf(sandbox, "rocketchat")
    sandbox.faults("rocketchat", rate=1.0, kinds=["throttle"], throttle_seconds=4000)
    started = time.monotonic()
    run = load_dag("onboard_user").dag.test(run_conf=conf)
    assert run.state == "failed" and time.monotonic() - started < 60
    outcome = xcom(run, "onboard.invite_rocketchat", "outcomes")[0]
    assert outcome["status"] == "failed" and outcome["user"] == ""
    assert (
        "gave up: another" in outcome["detail"] and "3600 s one try may spend deferred" in outcome["detail"]
    )
    assert sandbox.invites("rocketchat") == []


def test_defer_after_of_the_connection_is_checked(sandbox, airflow_db, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_ROCKETCHAT_DEFAULT", sandbox.connection_env("rocketchat", defer_after="soon")
    )
    run = load_dag("onboard_user").dag.test(run_conf=onboard_conf(sandbox, "rocketchat"))
    assert run.state == "failed"
    outcome = xcom(run, "onboard.invite_rocketchat", "outcomes")[0]
    assert (
        "extra defer_after: expected seconds (a number >= 0; 0: never defer), got 'soon'" in outcome["detail"]
    )
    assert sandbox.requests("rocketchat") == []


# -- asset events ------------------------------------------------------------------------------------


def asset_events(run) -> list[tuple[str, dict, str, int]]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent).where(
                AssetEvent.source_run_id == run.run_id, AssetEvent.source_dag_id == run.dag_id
            )
        ).all()
        return sorted((e.asset.uri, dict(e.extra), e.source_task_id, e.source_map_index) for e in rows)


def test_the_invite_task_emits_an_asset_event_with_counts(sandbox, airflow_db):
    conf = onboard_conf(sandbox, "rocketchat")
    group = conf["rocketchat_group"]
    run = load_dag("onboard_user").dag.test(run_conf=conf)
    assert run.state == "success"
    assert asset_events(run) == [
        (
            f"invites://rocketchat/{group}",
            {"platform": "rocketchat", "group": group, "people": 1, "changed": 1, "invited": 1},
            "onboard.invite_rocketchat",
            -1,
        )
    ]
    again = load_dag("onboard_user").dag.test(run_conf=conf)
    assert [e[1]["changed"] for e in asset_events(again)] == [0]  # a run that changed nothing says so
    dry = load_dag("onboard_user").dag.test(run_conf={**conf, "dry_run": True})
    assert dry.state == "success" and asset_events(dry) == []  # a dry run changes nothing: no event


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("invites://RocketChat/ByehQjC44FwMeiLbX", "invites://rocketchat/ByehQjC44FwMeiLbX"),
        (
            "invites://vrchat/grp_7d1b3a8e-62a1-4d2c-9f0e-2b5a1c3d4e5f/",
            "invites://vrchat/grp_7d1b3a8e-62a1-4d2c-9f0e-2b5a1c3d4e5f",
        ),
        ("invites://rocketchat/team%20room", "invites://rocketchat/team%20room"),
    ],
)
def test_the_invites_uri_scheme_is_normalized(uri, expected):
    from airflow.sdk import Asset

    assert Asset(uri).uri == expected


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("invites://slack/general", "with a platform of"),
        ("invites://rocketchat", "one group id"),
        ("invites://rocketchat/a/b", "one group id"),
        ("invites://rocketchat/g?x=1", "no query or fragment"),
    ],
)
def test_a_bad_invites_uri_is_refused_naming_the_shape(uri, why):
    from airflow.sdk import Asset

    with pytest.raises(ValueError, match=why):
        Asset(uri)


# -- the acceptance sensor follows [operators] default_deferrable ---------------------------------------


def reschedules(run, task_id: str) -> int:
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    ti = next(t for t in run.get_task_instances() if t.task_id == task_id)
    with create_session() as session:
        return int(session.scalar(select(func.count()).where(TaskReschedule.ti_id == ti.id)) or 0)


@pytest.mark.parametrize("deferrable", ["false", "true"])
def test_the_sensor_follows_default_deferrable(sandbox, airflow_db, monkeypatch, deferrable):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", deferrable)
    module = load_dag("onboard_user")
    sensor = module.dag.get_task("onboard.wait_playfab")
    assert sensor.deferrable is (deferrable == "true")
    assert sensor.mode == ("poke" if deferrable == "true" else "reschedule")
    conf = onboard_conf(sandbox, "playfab", wait_for_acceptance=True, acceptance_poll_seconds=1)
    user, group = conf["playfab_user"], conf["playfab_group"]

    def accept_when_invited() -> None:
        client = SandboxClient(sandbox.base_url)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(row["applied"] for row in client.invites("playfab")):
                time.sleep(2.5)  # a few look-ups first
                client.accept("playfab", str(group), str(user))
                return
            time.sleep(0.2)

    helper = threading.Thread(target=accept_when_invited, daemon=True)
    helper.start()
    run = module.dag.test(run_conf=conf)
    helper.join(timeout=5)
    assert run.state == "success"
    result = xcom(run, "onboard.wait_playfab")
    assert result["status"] == "member" and result["polls"] >= 2, result
    if deferrable == "true":
        assert "detail" in result and reschedules(run, "onboard.wait_playfab") == 0  # the trigger's event
    else:
        assert reschedules(run, "onboard.wait_playfab") == result["polls"] - 1  # one short run per look-up


# -- approval before acting ------------------------------------------------------------------------------


def when_waiting_for_input(dag_id: str, task_id: str, act: Any) -> threading.Thread:
    """In a thread: once the task waits for input, ``act(ti, session)`` in a metadata-DB session.

    It waits a second first, and acts again if the task is parked again: acting right after the task
    parks can race the in-process executor, which then parks it once more and leaves ``dag.test``
    waiting for ever. It stops when that run is no longer running.
    """

    def watch() -> None:
        from airflow.models.dagrun import DagRun
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        deadline = time.monotonic() + 120
        run_id: str | None = None
        while time.monotonic() < deadline:
            with create_session() as session:
                waiting = select(TaskInstance).where(
                    TaskInstance.dag_id == dag_id,
                    TaskInstance.task_id == task_id,
                    TaskInstance.state == "awaiting_input",
                )
                if run_id is not None:
                    waiting = waiting.where(TaskInstance.run_id == run_id)
                ti = session.scalar(waiting)
                if ti is not None:
                    time.sleep(1)
                    run_id = ti.run_id
                    act(ti, session)
                elif run_id is not None:
                    state = session.scalar(
                        select(DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
                    )
                    if state != "running":
                        return
            time.sleep(0.3)

    helper = threading.Thread(target=watch, daemon=True)
    helper.start()
    return helper


def answer_when_asked(dag_id: str, task_id: str, option: str, user: str = "alice") -> threading.Thread:
    """Answer the run's approval request as the UI's Required Actions page does (the API route's own
    code, in this process: a PATCH needs an api-server), once the task waits for input."""

    def answer(ti: Any, session: Any) -> None:
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
        from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
        from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail

        update_hitl_detail(
            dag_id=dag_id,
            dag_run_id=ti.run_id,
            task_id=task_id,
            update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[option]),
            user=SimpleAuthManagerUser(username=user, role="admin"),
            session=session,
        )

    return when_waiting_for_input(dag_id, task_id, answer)


def test_approved_onboarding_invites_after_a_preview(sandbox, airflow_db, capsys):
    conf = onboard_conf(sandbox, "rocketchat", require_approval=True)
    helper = answer_when_asked("onboard_user", "onboard.approve", "Approve")
    run = load_dag("onboard_user").dag.test(run_conf=conf)
    helper.join(timeout=5)
    assert run.state == "success"
    assert [(r["user"], r["applied"]) for r in sandbox.invites("rocketchat")] == [
        (conf["rocketchat_user"], 1)
    ]
    assert xcom(run, "onboard.preview_rocketchat")[0]["status"] == "would_invite"
    assert xcom(run, "onboard.approve", "decision") == {
        "required": True,
        "approved": True,
        "by": "alice",
        "at": xcom(run, "onboard.approve", "decision")["at"],
    }
    out = capsys.readouterr().out
    assert "**1 would be invited**. Nobody is touched unless you approve" in out  # the body the approver saw
    assert f"| rocketchat | {conf['rocketchat_group']} | {conf['rocketchat_user']} | invite |  |" in out
    assert "Approved by alice at" in out  # the report


def test_rejected_onboarding_touches_nobody_and_says_who(sandbox, airflow_db, capsys):
    conf = onboard_conf(sandbox, "rocketchat", require_approval=True)
    helper = answer_when_asked("onboard_user", "onboard.approve", "Reject", user="bob")
    run = load_dag("onboard_user").dag.test(run_conf=conf)
    helper.join(timeout=5)
    assert run.state == "success"
    assert sandbox.invites("rocketchat") == []
    writes = [r for r in sandbox.requests("rocketchat") if r["path"].endswith("groups.invite")]
    assert writes == []  # the preview only looked
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["onboard.invite_rocketchat"] == "skipped" and states["onboard.report"] == "success"
    assert xcom(run, "onboard.approve", "decision")["approved"] is False
    assert "Rejected by bob at" in capsys.readouterr().out


def test_without_approval_nothing_is_previewed_or_asked(sandbox, airflow_db):
    conf = onboard_conf(sandbox, "rocketchat")
    run = load_dag("onboard_user").dag.test(run_conf=conf)
    assert run.state == "success"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["onboard.preview_rocketchat"] == "skipped" and states["onboard.approve"] == "success"
    assert xcom(run, "onboard.approve", "decision") == {
        "required": False,
        "approved": True,
        "by": None,
        "at": None,
    }
    assert sandbox.invites("rocketchat")[0]["applied"] == 1


def roster_conf(sandbox, tmp_path, monkeypatch, **extra) -> tuple[dict, dict[str, str]]:
    """A roster of one new person on Rocket.Chat and one on PlayFab, in their sandbox groups."""
    monkeypatch.setenv("AIRFLOW__INVITES__PEOPLE_FOLDERS", str(tmp_path))
    people = {p: sandbox.people(p, 1)[0] for p in ("rocketchat", "playfab")}
    path = tmp_path / "people.csv"
    path.write_text(f"name,rocketchat,playfab\nAnn,{people['rocketchat']},\nBob,,{people['playfab']}\n")
    env = sandbox.env()
    conf = {"people_file": str(path), **{f"{p}_group": env[p]["group"] for p in people}, **extra}
    return conf, people


def test_roster_sync_asks_approval_and_emits_an_event_per_group(
    sandbox, airflow_db, tmp_path, monkeypatch, capsys
):
    conf, people = roster_conf(sandbox, tmp_path, monkeypatch, require_approval=True)
    helper = answer_when_asked("scheduled_onboarding", "approve", "Approve")
    run = load_dag("scheduled_onboarding").dag.test(run_conf=conf)
    helper.join(timeout=5)
    assert run.state == "success"
    for platform, user in people.items():
        assert [(r["user"], r["applied"]) for r in sandbox.invites(platform)] == [(user, 1)]
    out = capsys.readouterr().out
    assert (
        "**2 would be invited**" in out
        and f"| playfab | {conf['playfab_group']} | {people['playfab']} | invite |" in out
    )
    assert "Approved by alice at" in out
    assert [(uri, extra["invited"], task, index) for uri, extra, task, index in asset_events(run)] == sorted(
        [
            (f"invites://playfab/{conf['playfab_group']}", 1, "sync_playfab", 0),
            (f"invites://rocketchat/{conf['rocketchat_group']}", 1, "sync_rocketchat", 0),
        ]
    )


def test_a_rejected_roster_sync_touches_nobody(sandbox, airflow_db, tmp_path, monkeypatch, capsys):
    conf, _ = roster_conf(sandbox, tmp_path, monkeypatch, require_approval=True)
    helper = answer_when_asked("scheduled_onboarding", "approve", "Reject", user="bob")
    run = load_dag("scheduled_onboarding").dag.test(run_conf=conf)
    helper.join(timeout=5)
    assert run.state == "success"
    assert sandbox.invites() == []
    assert xcom(run, "report")["rejected_by"] == "bob"
    assert "Rejected by bob at" in capsys.readouterr().out
    assert asset_events(run) == []


# -- the pool watch ------------------------------------------------------------------------------------------


WATCHED = {
    "onboard.invite_vrchat": "invites_vrchat",
    "onboard.invite_bungie": "invites_bungie",
    "sync_vrchat": "invites_vrchat",
}


def test_a_task_waiting_for_its_pool_past_the_limit_is_named():
    from airflow_invites.pools import judge_pools

    states = {"onboard.invite_vrchat": "success", "onboard.invite_bungie": "scheduled"}
    first = judge_pools(states, WATCHED, {}, now=1000.0, pool_wait=600)
    assert first.since == {"onboard.invite_bungie": 1000.0} and not first.stuck and not first.done
    later = judge_pools(states, WATCHED, first.since, now=1599.0, pool_wait=600)
    assert not later.stuck
    stuck = judge_pools(states, WATCHED, later.since, now=1600.0, pool_wait=600)
    assert stuck.stuck == {"onboard.invite_bungie": 600.0} and not stuck.done


def test_the_pool_watch_ends_once_every_pool_let_a_task_through():
    from airflow_invites.pools import judge_pools

    chain = {"onboard.invite_vrchat": "deferred", "onboard.invite_bungie": None}
    assert not judge_pools(chain, WATCHED, {}, 0.0, 600).done  # bungie's pool not proven yet
    moved = {
        "onboard.invite_vrchat": "success",
        "onboard.invite_bungie": "running",
        "sync_vrchat_0": "queued",
    }
    assert judge_pools(moved, WATCHED, {"onboard.invite_bungie": 0.0}, 10.0, 600).done
    mapped = {"sync_vrchat_0": "scheduled", "sync_vrchat_1": "running"}
    verdict = judge_pools(mapped, {"sync_vrchat": "invites_vrchat"}, {}, 5.0, 600)
    assert verdict.done and verdict.since == {"sync_vrchat_0": 5.0}  # the pool exists: a slot will come
    skipped = {"onboard.invite_vrchat": "skipped", "onboard.invite_bungie": "upstream_failed"}
    assert judge_pools(skipped, WATCHED, {}, 0.0, 600).done  # nothing left that needs a slot


def test_the_task_groups_watch_their_pools(airflow_db):
    dag = load_dag("onboard_user").dag
    watch = dag.get_task("onboard.watch_pools")
    assert watch.mode == "reschedule" and watch.pool == "default_pool"
    assert watch.watched == {
        **{f"onboard.preview_{p}": f"invites_{p}" for p in PLATFORMS},
        **{f"onboard.invite_{p}": f"invites_{p}" for p in PLATFORMS},
    }
    roster = load_dag("scheduled_onboarding").dag.get_task("watch_pools")
    assert set(roster.watched) == {f"{kind}_{p}" for kind in ("preview", "sync") for p in PLATFORMS}


# -- the Rocket.Chat notifier ----------------------------------------------------------------------------


def room_history(sandbox, room: str) -> list[str]:
    """The room's chat messages (not system messages such as "user added"), newest first, read through
    Rocket.Chat's own API as the bot."""
    connection = sandbox.env()["rocketchat"]["connection"]
    reply = requests.get(
        f"{sandbox.base_url}/rocketchat/api/v1/groups.history",
        params={"roomId": room},
        headers={"X-User-Id": connection["login"], "X-Auth-Token": connection["password"]},
        timeout=5,
    )
    assert reply.status_code == 200, reply.text
    return [m["msg"] for m in reply.json()["messages"] if not m.get("t")]


def test_approval_needed_is_posted_to_the_room(sandbox, airflow_db):
    room = sandbox.env()["rocketchat"]["group"]
    conf = onboard_conf(sandbox, "rocketchat", require_approval=True, notify_room=room)
    helper = answer_when_asked("onboard_user", "onboard.approve", "Approve")
    run = load_dag("onboard_user").dag.test(run_conf=conf)
    helper.join(timeout=5)
    assert run.state == "success"
    assert room_history(sandbox, room) == [
        f"Approval needed: onboarding (onboard_user, run {run.run_id}): Approve onboarding."
    ]


def test_a_failed_onboarding_is_posted_to_the_room_without_personal_data(sandbox, airflow_db, monkeypatch):
    from airflow.models.variable import Variable

    room = sandbox.env()["rocketchat"]["group"]
    Variable.set("invites_notify_room", room)
    try:
        conf = {**onboard_conf(sandbox, "playfab"), "playfab_group": "FFFFFFFFFFFFFFF0"}  # no such group
        run = load_dag("onboard_user").dag.test(run_conf=conf)
    finally:
        Variable.delete("invites_notify_room")
    assert run.state == "failed"
    assert room_history(sandbox, room) == [f"Onboarding failed on playfab (onboard_user, run {run.run_id})."]


def test_without_a_room_nothing_is_posted_and_the_log_says_so(sandbox, airflow_db, capsys, caplog):
    conf = {**onboard_conf(sandbox, "playfab"), "playfab_group": "FFFFFFFFFFFFFFF0"}
    run = load_dag("onboard_user").dag.test(run_conf=conf)
    assert run.state == "failed"
    assert not [r for r in sandbox.requests("rocketchat") if r["path"].endswith("chat.postMessage")]
    captured = capsys.readouterr()
    assert "no Rocket.Chat room configured (param notify_room or Variable invites_notify_room)" in (
        captured.out + captured.err + caplog.text
    )


def test_a_chat_outage_does_not_fail_the_notifying_task(sandbox, airflow_db):
    room = sandbox.env()["rocketchat"]["group"]
    conf = onboard_conf(sandbox, "playfab", require_approval=True, notify_room=room)
    sandbox.faults("rocketchat", rate=1.0, kinds=["server_error"])
    helper = answer_when_asked("onboard_user", "onboard.approve", "Approve")
    run = load_dag("onboard_user").dag.test(run_conf=conf)
    helper.join(timeout=5)
    assert run.state == "success"  # asked, approved and invited, although the message could not go out
    assert sandbox.invites("playfab")[0]["applied"] == 1


def test_a_mapped_roster_sync_defers_on_a_long_throttle(sandbox, airflow_db, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AIRFLOW_CONN_ROCKETCHAT_DEFAULT", sandbox.connection_env("rocketchat", defer_after=1))
    conf, people = roster_conf(sandbox, tmp_path, monkeypatch)
    sandbox.faults("rocketchat", rate=1.0, kinds=["throttle"], throttle_seconds=3)
    helper = _clear_faults_after_first_throttle(sandbox, "rocketchat")
    run = load_dag("scheduled_onboarding").dag.test(run_conf=conf)
    helper.join(timeout=5)
    assert run.state == "success"
    assert [(r["user"], r["applied"]) for r in sandbox.invites("rocketchat")] == [(people["rocketchat"], 1)]
    figures = xcom(run, "sync_rocketchat", "stats", map_index=0)
    assert figures["deferrals"] == 1 and figures["deferred_s"] >= 3, figures
    summary = xcom(run, "report")
    assert [(d["platform"], d["deferrals"]) for d in summary["deferred"]] == [("rocketchat", 1)]
    assert "| platform | group | deferred (times) | deferred (s) |" in capsys.readouterr().out


def test_approved_offboarding_shows_the_removal_then_removes(sandbox, airflow_db, capsys, caplog):
    env = sandbox.env()["rocketchat"]
    member = sandbox.people("rocketchat", 1, group=env["group"])[0]
    conf = {"platforms": ["rocketchat"], "rocketchat_user": member, "rocketchat_group": env["group"]}
    helper = answer_when_asked("offboard_user", "offboard.approve", "Approve")
    run = load_dag("offboard_user").dag.test(run_conf={**conf, "require_approval": True})
    helper.join(timeout=5)
    assert run.state == "success"
    out = capsys.readouterr().out + caplog.text
    assert "**1 would be removed**" in out and f"| rocketchat | {env['group']} | {member} | remove |" in out
    assert xcom(run, "offboard.remove_rocketchat")[0]["status"] == "removed"
    assert member not in sandbox.members("rocketchat", env["group"]).get("members", [])


def test_an_approval_task_marked_failed_lets_nobody_through(sandbox, airflow_db):
    """Someone marks the waiting approval task failed instead of answering: no decision, nobody touched."""
    helper = when_waiting_for_input(
        "onboard_user", "onboard.approve", lambda ti, session: ti.set_state("failed", session=session)
    )
    conf = onboard_conf(sandbox, "rocketchat", require_approval=True)
    run = load_dag("onboard_user").dag.test(run_conf=conf)
    helper.join(timeout=5)
    assert run.state == "failed"
    assert sandbox.invites("rocketchat") == []
    outcome = xcom(run, "onboard.invite_rocketchat", "outcomes")[0]
    assert outcome["status"] == "failed" and outcome["code"] == "not_approved", outcome
    assert "no approval decision" in outcome["detail"]
