"""The whole lifecycle as users run it: people by handle in ``onboard_user``, ``offboard_user`` on all five
platforms, roster sync in ``scheduled_onboarding`` (e-mails by the thousand, authoritative mode, its
guard). Real DAG runs (``dag.test()``) against the sandbox over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_onboarding import load_dag, states, write_people, xcom

from airflow_invites.core.membership import invite_people
from airflow_invites.platforms import PLATFORMS

NAMES = list(PLATFORMS)
#: where the person is before offboarding: a member, or with a pending invitation (Rocket.Chat has none)
STARTS = {
    "bungie": "member",
    "vrchat": "invited",
    "playfab": "member",
    "bitrix24": "invited",
    "rocketchat": "member",
}


@pytest.fixture(autouse=True)
def people_folder_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__INVITES__PEOPLE_FOLDERS", str(tmp_path))


def removal_requests(sandbox: object) -> int:
    return sum(r["requests"] for r in sandbox.removals())  # type: ignore[attr-defined]


def test_offboard_user_removes_a_person_everywhere_then_finds_them_gone(sandbox, airflow_db):
    conf: dict[str, object] = {}
    for platform in NAMES:
        env = sandbox.env()[platform]
        if STARTS[platform] == "member":
            person = sandbox.people(platform, 1, group=env["group"])[0]
        else:
            person = env["users"][0]
            invite_people(PLATFORMS[platform].hook_for(), env["group"], [person])
        conf[f"{platform}_user"], conf[f"{platform}_group"] = person, env["group"]
    dag = load_dag("offboard_user").dag
    first = dag.test(run_conf=conf)
    assert first.state == "success", states(first)
    for platform in NAMES:
        listed = sandbox.members(platform, str(conf[f"{platform}_group"]))
        assert conf[f"{platform}_user"] not in listed["members"] + listed["invited"], platform
        assert [(r["user"], r["applied"]) for r in sandbox.removals(platform)] == [
            (conf[f"{platform}_user"], 1)
        ]
    report = {o["platform"]: o["status"] for o in xcom(first, "offboard.report")}
    assert report == {p: ("removed" if STARTS[p] == "member" else "invite_cancelled") for p in NAMES}
    sent = removal_requests(sandbox)
    second = dag.test(run_conf=conf)
    assert second.state == "success"
    assert {o["status"] for o in xcom(second, "offboard.report")} == {"already_absent"}
    assert removal_requests(sandbox) == sent  # no cancel or remove request the second time


def test_onboard_user_with_only_handles_invites_the_ids_they_name(sandbox, airflow_db):
    conf: dict[str, object] = {}
    for platform in NAMES:
        env = sandbox.env()[platform]
        conf[f"{platform}_user"], conf[f"{platform}_group"] = env["handles"][0], env["group"]
    dag = load_dag("onboard_user").dag
    first = dag.test(run_conf=conf)
    assert first.state == "success", states(first)
    for platform in NAMES:
        expected = sandbox.env()[platform]["users"][0]
        assert [(r["user"], r["applied"]) for r in sandbox.invites(platform)] == [(expected, 1)], platform
    outcomes = {o["platform"]: o for o in xcom(first, "onboard.report")}
    assert {p: o["handle"] for p, o in outcomes.items()} == {p: conf[f"{p}_user"] for p in NAMES}
    second = dag.test(run_conf=conf)
    assert second.state == "success"
    assert {o["status"] for o in xcom(second, "onboard.report")} <= {"already_member", "already_invited"}
    assert all(r["applied"] == 1 and r["requests"] == 1 for r in sandbox.invites())


def test_the_forms_email_reaches_the_platforms_that_find_people_by_email(sandbox, airflow_db):
    env = sandbox.env()["playfab"]
    address = env["handles"][0].removeprefix("email:")
    conf = {"platforms": ["playfab"], "email": address, "playfab_group": env["group"]}
    run = load_dag("onboard_user").dag.test(run_conf=conf)
    assert run.state == "success"
    assert [r["user"] for r in sandbox.invites("playfab")] == [env["users"][0]]


def test_a_thousand_emails_on_bitrix24_take_at_most_five_hundredths_of_a_request_each(
    sandbox, airflow_db, tmp_path
):
    env = sandbox.env()["bitrix24"]
    people = sandbox.people_with_handles("bitrix24", 1000)
    path = write_people(
        tmp_path / "roster.csv",
        [{"name": f"P{n}", "bitrix24": p["handles"]["email"]} for n, p in enumerate(people)],
    )
    run = load_dag("scheduled_onboarding").dag.test(
        run_conf={"people_file": str(path), "bitrix24_group": env["group"]}
    )
    assert run.state == "success", states(run)
    stats = xcom(run, "sync_bitrix24", "stats", map_index=0)
    assert stats["people"] == 1000 and stats["handles"] == 1000
    assert stats["requests_by_phase"]["resolve"] / 1000 <= 0.05
    assert {r["user"] for r in sandbox.invites("bitrix24")} == {p["id"] for p in people}


def test_authoritative_sync_with_a_truncated_roster_removes_nobody_and_names_who_would_go(
    sandbox, airflow_db, tmp_path, capsys
):
    env = sandbox.env()["rocketchat"]
    members = sandbox.people("rocketchat", 30, group=env["group"])
    hook = PLATFORMS["rocketchat"].hook_for()
    listed = [u for u, s in hook.list_group(env["group"]).items() if not s.protected]
    full = write_people(tmp_path / "full.csv", [{"rocketchat": u} for u in listed])
    truncated = write_people(
        tmp_path / "half.csv", [{"rocketchat": u} for u in listed if u not in members[:15]]
    )
    conf = {"rocketchat_group": env["group"], "mode": "authoritative"}

    def run(**extra: object) -> object:  # a fresh DAG object per run: dag.test renders templates in place
        return load_dag("scheduled_onboarding").dag.test(run_conf={**conf, **extra})

    refused = run(people_file=str(truncated))
    assert refused.state == "failed"
    out = capsys.readouterr().out
    assert "15 people would be removed, more than max_removals=10; nobody was removed" in out
    assert all(m in out for m in members[:15])
    assert sandbox.removals("rocketchat") == []
    dry = run(people_file=str(full), dry_run=True)
    assert dry.state == "success"
    assert sandbox.removals("rocketchat") == []
    gone, kept = members[25:], members[25]
    roster = write_people(tmp_path / "leavers-gone.csv", [{"rocketchat": u} for u in listed if u not in gone])
    synced = run(people_file=str(roster), keep={"rocketchat": [kept]})
    assert synced.state == "success", states(synced)
    assert sorted(r["user"] for r in sandbox.removals("rocketchat")) == sorted(gone[1:])
    drift = xcom(synced, "sync_rocketchat", "drift", map_index=0)
    assert sorted(drift["to_remove"]) == sorted(gone[1:])
    assert any(kept in entry for entry in drift["protected"])
