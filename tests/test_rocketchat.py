"""Rocket.Chat hook and operator over real HTTP against the sandbox."""

from __future__ import annotations

import pytest

from airflow_invites.core.errors import InviteInputError, PlatformAuthError
from airflow_invites.core.membership import invite_people
from airflow_invites.core.outcome import Status
from airflow_invites.hooks.rocketchat import RocketChatHook


def statuses(outcomes):
    return [o.status for o in outcomes]


def invite_posts(sandbox):
    return [r for r in sandbox.requests("rocketchat") if r["path"].endswith("groups.invite")]


def test_invite_then_already_member(sandbox):
    env = sandbox.env()["rocketchat"]
    users = env["users"][:2]
    first = invite_people(RocketChatHook(), env["group"], users)
    assert statuses(first) == [Status.INVITED, Status.INVITED]
    second = invite_people(RocketChatHook(), env["group"], users)
    assert statuses(second) == [Status.ALREADY_MEMBER, Status.ALREADY_MEMBER]
    assert [(i["user"], i["applied"]) for i in sandbox.invites("rocketchat")] == [(u, 1) for u in users]
    assert len(invite_posts(sandbox)) == 1


def test_bulk_of_50_with_members_uses_one_lookup_and_one_invite(sandbox):
    env = sandbox.env()["rocketchat"]
    people = sandbox.people("rocketchat", 50)
    invite_people(RocketChatHook(), env["group"], people[:10])
    before = len(sandbox.requests("rocketchat"))
    hook = RocketChatHook()
    outcomes = invite_people(hook, env["group"], people)
    calls = sandbox.requests("rocketchat")[before:]
    assert statuses(outcomes) == [Status.ALREADY_MEMBER] * 10 + [Status.INVITED] * 40
    # the invite's reply names nobody (usersCount cannot say who: an unknown id dropped while someone
    # else joins adds up the same), so the invited are confirmed by one more member listing
    assert [c["path"].rsplit("/", 1)[1] for c in calls] == [
        "groups.info",
        "groups.members",
        "groups.invite",
        "groups.members",
    ]
    assert all(i["applied"] == 1 for i in sandbox.invites("rocketchat"))


def test_dry_run_sends_no_write(sandbox):
    env = sandbox.env()["rocketchat"]
    outcomes = invite_people(RocketChatHook(), env["group"], env["users"], dry_run=True)
    assert set(statuses(outcomes)) == {Status.WOULD_INVITE}
    assert invite_posts(sandbox) == []
    assert sandbox.invites("rocketchat") == []


def test_unknown_user_reported_failed(sandbox):
    env = sandbox.env()["rocketchat"]
    outcomes = invite_people(RocketChatHook(), env["group"], [env["users"][0], "zzzzzzzzzzzzzzzzz"])
    assert statuses(outcomes) == [Status.INVITED, Status.FAILED]
    assert outcomes[1].code == "user-not-added"


def test_throttle_with_hint_then_success(sandbox):
    env = sandbox.env()["rocketchat"]
    sandbox.faults("rocketchat", rate=1.0, kinds=["throttle"], throttle_seconds=1)
    hook = RocketChatHook()
    hook.http.sleep = lambda s: (sandbox.clear_faults(), waits.append(s))  # type: ignore[method-assign]
    waits: list[float] = []
    outcomes = invite_people(hook, env["group"], env["users"][:1])
    assert statuses(outcomes) == [Status.INVITED]
    assert waits and 0.5 <= waits[0] <= 2.0  # the X-RateLimit-Reset hint, not our own backoff


@pytest.mark.parametrize("kind", ["server_error", "reset", "truncated", "timeout"])
def test_transient_fault_then_success(sandbox, kind):
    env = sandbox.env()["rocketchat"]
    sandbox.faults("rocketchat", rate=1.0, kinds=[kind], timeout_ms=2500)
    hook = RocketChatHook()
    hook.http.sleep = lambda s: sandbox.clear_faults()  # type: ignore[method-assign]
    outcomes = invite_people(hook, env["group"], env["users"][:2])
    assert statuses(outcomes) == [Status.INVITED, Status.INVITED]
    assert [i["applied"] for i in sandbox.invites("rocketchat")] == [1, 1]


def test_lost_response_after_invite_is_applied_once(sandbox):
    env = sandbox.env()["rocketchat"]
    hook = RocketChatHook()
    sandbox.lose_next_invite_reply(hook, "rocketchat")
    result = invite_people(hook, env["group"], env["users"][:1])
    assert statuses(result) == [Status.INVITED]
    assert "lost reply" in result[0].detail
    rows = sandbox.invites("rocketchat")
    assert [(r["applied"], r["requests"]) for r in rows] == [(1, 1)]


@pytest.mark.parametrize(
    ("group", "users", "field"),
    [
        ("", ["abc"], "group"),
        ("../etc/passwd", ["abc"], "group"),
        ("onboarding", [], "users"),
        ("onboarding", ["ok", "ok"], "users"),
        ("onboarding", ["has space"], "users"),
        ("onboarding", [123], "users"),
        ("onboarding", ["x" * 65], "users"),
        ("onboarding", ["a\nb"], "users"),
    ],
)
def test_bad_input_fails_before_any_request(sandbox, group, users, field):
    with pytest.raises(InviteInputError) as caught:
        invite_people(RocketChatHook(), group, users)
    assert str(caught.value).startswith(f"{field}: expected")
    assert sandbox.requests("rocketchat") == []


def test_wrong_token_is_a_clear_auth_error(sandbox, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_ROCKETCHAT_DEFAULT",
        sandbox.connection_env("rocketchat").replace('"password": "', '"password": "x'),
    )
    env = sandbox.env()["rocketchat"]
    outcomes = invite_people(RocketChatHook(), env["group"], env["users"][:1])
    assert outcomes[0].status is Status.FAILED
    assert "credentials refused" in outcomes[0].detail
    hook = RocketChatHook()
    ok, message = hook.test_connection()
    assert not ok and "credentials refused" in message
    with pytest.raises(PlatformAuthError):
        hook.check_connection()


def test_password_login_with_totp(sandbox, monkeypatch):
    from airflow_invites.sandbox.app import Sandbox

    seeded = Sandbox().platforms["rocketchat"]
    user = seeded.totp_user  # type: ignore[attr-defined]
    conn = {
        "conn_type": "rocketchat",
        "host": f"{sandbox.base_url}/rocketchat",
        "login": user["username"],
        "password": user["password"],
        "extra": {"auth_type": "password", "totp_secret": user["totp_secret"], "timeout": 5},
    }
    import json

    monkeypatch.setenv("AIRFLOW_CONN_RC_TOTP", json.dumps(conn))
    ok, message = RocketChatHook(conn_id="rc_totp").test_connection()
    assert ok, message
    conn["extra"] = {"auth_type": "password"}
    monkeypatch.setenv("AIRFLOW_CONN_RC_TOTP", json.dumps(conn))
    ok, message = RocketChatHook(conn_id="rc_totp").test_connection()
    assert not ok and "TOTP secret" in message


def test_group_the_bot_is_not_in_is_permanent(sandbox):
    env = sandbox.env()["rocketchat"]
    outcomes = invite_people(RocketChatHook(), "secret-club", env["users"][:2])
    assert statuses(outcomes) == [Status.FAILED, Status.FAILED]
    assert outcomes[0].code == "error-room-not-found"


def test_big_group_few_people_looks_up_each_person(sandbox):
    env = sandbox.env()["rocketchat"]
    # over 5,000 members: no longer listed in one reply (count=0) but in pages of 100 (53 pages)
    crowd = sandbox.people("rocketchat", 5200, group=env["group"])
    before = len(sandbox.requests("rocketchat"))
    outcomes = invite_people(RocketChatHook(), env["group"], [crowd[7], env["users"][0], "zzzzzzzzzzzzzzzzz"])
    assert statuses(outcomes) == [Status.ALREADY_MEMBER, Status.INVITED, Status.FAILED]
    assert outcomes[2].code == "user-not-found"
    paths = [r["path"].rsplit("/", 1)[1] for r in sandbox.requests("rocketchat")[before:]]
    assert paths.count("users.info") == 4  # three, then the invited one again to confirm the invite
    assert paths.count("groups.members") == 3  # filtered, one per known person (+1): no full listing
    assert paths.count("groups.invite") == 1


def test_a_yes_no_extra_that_is_neither_fails_naming_it(sandbox, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_ROCKETCHAT_DEFAULT", sandbox.connection_env("rocketchat", verify_ssl="maybe")
    )
    env = sandbox.env()["rocketchat"]
    with pytest.raises(InviteInputError, match="extra verify_ssl: expected true or false"):
        invite_people(RocketChatHook(), env["group"], env["users"][:1])
    assert sandbox.requests("rocketchat") == []
