"""Bitrix24 hook, operator and sandbox over real HTTP against the sandbox."""

from __future__ import annotations

import dataclasses
import json
import logging
import traceback
from typing import Any

import pytest
import requests

from airflow_invites.core.adapter import Presence
from airflow_invites.core.errors import InviteInputError, PlatformAuthError
from airflow_invites.core.membership import RunStats, invite_people, remove_people
from airflow_invites.core.outcome import Status
from airflow_invites.core.runtime_store import RuntimeStore
from airflow_invites.hooks.bitrix24 import Bitrix24Hook

PLATFORM = "bitrix24"


@pytest.fixture(autouse=True)
def clean_store():
    """The RuntimeStore outlives a test in this process: start every test without rotated tokens."""
    for conn_id in ("bitrix24_default", "b24_oauth"):
        RuntimeStore(conn_id).delete("refresh_token")
        RuntimeStore(conn_id).delete("access_token")
    yield


def portal(sandbox) -> Any:
    """The sandbox's Bitrix24 state, in this process (to set up what the admin API cannot)."""
    return sandbox.server.config.app.state.sandbox.platforms[PLATFORM]


def base(sandbox) -> str:
    return f"{sandbox.base_url}/bitrix24"


def statuses(outcomes):
    return [o.status for o in outcomes]


def methods(sandbox, since: int = 0) -> list[str]:
    return [r["path"].rstrip("/").rsplit("/", 1)[1] for r in sandbox.requests(PLATFORM)[since:]]


def fast(hook: Bitrix24Hook, waits: list[float] | None = None, between=None) -> Bitrix24Hook:
    """No real sleeping in retries; record the waits; run ``between`` at each wait."""

    def sleep(seconds: float) -> None:
        if waits is not None:
            waits.append(seconds)
        if between is not None:
            between()

    hook.http.sleep = sleep  # type: ignore[method-assign]
    return hook


def use_connection(monkeypatch, conn_id: str, conn: dict[str, Any]) -> None:
    conn = {**conn, "extra": {**conn.get("extra", {}), "timeout": 2}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def oauth_hook(sandbox, monkeypatch) -> Bitrix24Hook:
    use_connection(monkeypatch, "b24_oauth", portal(sandbox).oauth_connection(base(sandbox)))
    return Bitrix24Hook(conn_id="b24_oauth")


def webhook_conn(sandbox, user_id: int, code: str) -> dict[str, Any]:
    return {
        "conn_type": "bitrix24",
        "host": base(sandbox),
        "extra": {"auth_type": "webhook", "webhook_user_id": str(user_id), "webhook_code": code},
    }


# -- auth ------------------------------------------------------------------------------------------


def test_webhook_test_connection(sandbox, monkeypatch):
    ok, message = Bitrix24Hook().test_connection()
    assert ok, message
    assert "Marina Orlova" in message
    p = portal(sandbox)
    use_connection(monkeypatch, "b24_narrow", webhook_conn(sandbox, p.admin, p.narrow_code))
    ok, message = Bitrix24Hook(conn_id="b24_narrow").test_connection()
    assert not ok and "sonet_group" in message and p.narrow_code not in message


def test_webhook_url_pasted_as_host(sandbox, monkeypatch):
    p = portal(sandbox)
    conn = {"conn_type": "bitrix24", "host": f"{base(sandbox)}/rest/{p.admin}/{p.admin_code}/"}
    use_connection(monkeypatch, "b24_url", conn)
    hook = Bitrix24Hook(conn_id="b24_url")
    ok, message = hook.test_connection()
    assert ok, message
    assert p.admin_code in hook.scrubber


def test_oauth_refreshes_once_and_keeps_the_rotated_token(sandbox, monkeypatch):
    env = sandbox.env()[PLATFORM]
    first_refresh = portal(sandbox).first_refresh_token
    hook = oauth_hook(sandbox, monkeypatch)
    outcomes = invite_people(hook, env["group"], env["users"][:3])
    assert statuses(outcomes) == [Status.INVITED] * 3
    assert methods(sandbox) == ["token", "batch.json", "sonet_group.user.invite.json"]
    rotated = RuntimeStore("b24_oauth").get("refresh_token")
    assert rotated and rotated != first_refresh
    # the next task reuses the stored access token: no refresh at all
    again = oauth_hook(sandbox, monkeypatch)
    assert statuses(invite_people(again, env["group"], env["users"][:3])) == [Status.ALREADY_INVITED] * 3
    assert methods(sandbox).count("token") == 1
    # the connection's first refresh token is spent; the rotated one works
    spent = requests.get(f"{base(sandbox)}/oauth/token/", params=_grant(sandbox, first_refresh), timeout=5)
    assert spent.status_code == 400 and spent.json()["error"] == "invalid_grant"


def _grant(sandbox, refresh_token: str) -> dict[str, str]:
    p = portal(sandbox)
    return {
        "grant_type": "refresh_token",
        "client_id": p.client_id,
        "client_secret": p.client_secret,
        "refresh_token": refresh_token,
    }


def test_expired_access_token_is_refreshed_once_and_rotated(sandbox, monkeypatch):
    env = sandbox.env()[PLATFORM]
    hook = oauth_hook(sandbox, monkeypatch)
    assert hook.test_connection()[0]
    stored_before = RuntimeStore("b24_oauth").get("refresh_token")
    portal(sandbox).expire_access_tokens()
    outcomes = invite_people(hook, env["group"], env["users"][:1])
    assert statuses(outcomes) == [Status.INVITED]
    statuses_seen = [
        (r["path"].rstrip("/").rsplit("/", 1)[1], r["status"]) for r in sandbox.requests(PLATFORM)
    ]
    assert statuses_seen[2:] == [
        ("batch.json", 401),  # expired_token
        ("token", 200),  # one refresh
        ("batch.json", 200),
        ("sonet_group.user.invite.json", 200),
    ]
    assert RuntimeStore("b24_oauth").get("refresh_token") not in (None, stored_before)


def test_concurrent_rotation_by_another_task_is_survived(sandbox, monkeypatch):
    """Another task spends our refresh token between our read and our refresh: we use the one it saved."""
    env = sandbox.env()[PLATFORM]
    hook = oauth_hook(sandbox, monkeypatch)
    grant = hook._grant
    raced = []

    def other_task_refreshes_first(token: str):
        if not raced:
            raced.append(True)
            other = oauth_hook(sandbox, monkeypatch)
            other.reauthenticate()  # the other task wins with the same token and stores the rotated one
        return grant(token)

    hook._grant = other_task_refreshes_first  # type: ignore[method-assign]
    outcomes = invite_people(hook, env["group"], env["users"][:1])
    assert statuses(outcomes) == [Status.INVITED]
    token_calls = [r["status"] for r in sandbox.requests(PLATFORM) if r["path"].endswith("token/")]
    assert token_calls == [200, 400, 200]  # theirs, ours refused (spent), ours with the token they saved
    assert RuntimeStore("b24_oauth").get("refresh_token")


def test_oauth_refused_refresh_token_is_a_clear_auth_error(sandbox, monkeypatch):
    conn = portal(sandbox).oauth_connection(base(sandbox))
    conn["extra"]["refresh_token"] = "x" * 64
    use_connection(monkeypatch, "b24_oauth", conn)
    env = sandbox.env()[PLATFORM]
    hook = Bitrix24Hook(conn_id="b24_oauth")
    hook.refresh_tokens.sleep = lambda seconds: None  # no other task is rotating: do not wait for one
    outcomes = invite_people(hook, env["group"], env["users"][:2])
    assert statuses(outcomes) == [Status.FAILED, Status.FAILED]
    assert outcomes[0].code.startswith("invalid_grant") and "Re-authorise" in outcomes[0].detail
    assert "Variable" not in outcomes[0].detail  # a new token in the connection wins: nothing to delete


def test_wrong_webhook_code_is_invalid_credentials(sandbox, monkeypatch):
    p = portal(sandbox)
    use_connection(monkeypatch, "b24_bad", webhook_conn(sandbox, p.admin, "wrongcode12345678"))
    env = sandbox.env()[PLATFORM]
    outcomes = invite_people(Bitrix24Hook(conn_id="b24_bad"), env["group"], env["users"][:1])
    assert outcomes[0].status is Status.FAILED and outcomes[0].code == "INVALID_CREDENTIALS"
    with pytest.raises(PlatformAuthError):
        Bitrix24Hook(conn_id="b24_bad").check_connection()
    assert len(sandbox.requests(PLATFORM)) == 2  # no retries of a refused credential


# -- the invite algorithm on Bitrix24 --------------------------------------------------------------


def test_100_people_in_two_requests(sandbox):
    env = sandbox.env()[PLATFORM]
    people = sandbox.people(PLATFORM, 100)
    hook = Bitrix24Hook()
    outcomes = invite_people(hook, env["group"], people, request=None)
    assert statuses(outcomes) == [Status.INVITED] * 100
    assert methods(sandbox) == ["batch.json", "sonet_group.user.invite.json"]  # one look-up, one invite
    assert len({i["user"] for i in sandbox.invites(PLATFORM) if i["applied"] == 1}) == 100


def test_mix_of_members_invited_new_fired_unknown_self(sandbox):
    env = sandbox.env()[PLATFORM]
    p = portal(sandbox)
    invite_people(Bitrix24Hook(), env["group"], env["users"][:1])
    moderator, member, fired_member = "2", "3", "4"
    people = [moderator, member, env["users"][0], env["users"][1], fired_member, str(p.fired_user), "99999"]
    before = len(sandbox.requests(PLATFORM))
    outcomes = invite_people(Bitrix24Hook(), env["group"], people)
    assert statuses(outcomes) == [
        Status.ALREADY_MEMBER,
        Status.ALREADY_MEMBER,
        Status.ALREADY_INVITED,
        Status.INVITED,
        Status.FAILED,
        Status.FAILED,
        Status.FAILED,
    ]
    assert [o.code for o in outcomes[4:]] == ["user-inactive", "user-inactive", "user-not-found"]
    assert "moderator" in outcomes[0].detail
    assert methods(sandbox, before) == ["batch.json", "sonet_group.user.invite.json"]
    # the connection's own user, outside a group it can see (the admin is the owner here, so use a new group)
    own = invite_people(Bitrix24Hook(), env["group"], [str(p.admin)])
    assert statuses(own) == [Status.ALREADY_MEMBER]


def test_invite_the_portal_silently_refused_is_reported_failed(sandbox):
    env = sandbox.env()[PLATFORM]
    private = str(portal(sandbox).private_user)
    outcomes = invite_people(Bitrix24Hook(), env["group"], [env["users"][0], private])
    assert statuses(outcomes) == [Status.INVITED, Status.FAILED]
    assert outcomes[1].code == "not_applied" and "privacy" in outcomes[1].detail
    assert methods(sandbox) == ["batch.json", "sonet_group.user.invite.json", "batch.json"]


def test_member_without_invite_right_gets_every_person_failed_with_the_reason(sandbox, monkeypatch):
    p = portal(sandbox)
    use_connection(monkeypatch, "b24_member", webhook_conn(sandbox, p.member_user, p.member_code))
    env = sandbox.env()[PLATFORM]
    outcomes = invite_people(Bitrix24Hook(conn_id="b24_member"), env["group"], env["users"][:2])
    assert statuses(outcomes) == [Status.FAILED, Status.FAILED]
    assert "owner and moderators" in outcomes[0].detail
    assert all(i["applied"] == 0 for i in sandbox.invites(PLATFORM))


def test_message_is_sent(sandbox):
    env = sandbox.env()[PLATFORM]
    from airflow_invites.core.adapter import InviteRequest

    outcomes = invite_people(
        Bitrix24Hook(), env["group"], env["users"][:1], request=InviteRequest("Welcome!")
    )
    assert statuses(outcomes) == [Status.INVITED]


# -- errors ----------------------------------------------------------------------------------------


def test_query_limit_exceeded_then_success(sandbox):
    env = sandbox.env()[PLATFORM]
    sandbox.faults(PLATFORM, rate=1.0, kinds=["throttle"])
    waits: list[float] = []
    hook = fast(Bitrix24Hook(), waits, between=sandbox.clear_faults)
    outcomes = invite_people(hook, env["group"], env["users"][:2])
    assert statuses(outcomes) == [Status.INVITED, Status.INVITED]
    assert [r["status"] for r in sandbox.requests(PLATFORM)][:2] == [503, 200]
    assert len(waits) == 1 and waits[0] < 1.0  # our own backoff: Bitrix24 gives no hint


def test_real_leaky_bucket_answers_503_and_the_hook_paces_itself(sandbox):
    p = portal(sandbox)
    url = f"{base(sandbox)}/rest/{p.admin}/{p.admin_code}/user.current"
    codes = [requests.post(url, timeout=5).status_code for _ in range(60)]
    assert codes[:50] == [200] * 50 and 503 in codes[50:]
    over = requests.post(url, timeout=5)
    assert over.status_code == 503
    assert over.json() == {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
    rate, burst = Bitrix24Hook.client_rate or (0, 0)
    assert 0 < rate <= 2.0 and 0 < burst <= 50  # the hook paces itself under the bucket


def test_the_hooks_own_pacing_never_meets_the_bucket(sandbox, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_BITRIX24_DEFAULT", sandbox.connection_env(PLATFORM))  # default pacing
    hook = Bitrix24Hook()
    for _ in range(55):  # the burst, then paced
        hook.call_method("user.current")
    assert {r["status"] for r in sandbox.requests(PLATFORM)} == {200}


def test_operation_time_limit_waits_for_the_reset(sandbox):
    env = sandbox.env()[PLATFORM]
    p = portal(sandbox)
    p.processing_override["sonet_group.user.invite"] = 500.0  # one call uses the 480 s budget up
    hook = Bitrix24Hook()
    assert statuses(invite_people(hook, env["group"], env["users"][:1])) == [Status.INVITED]
    waits: list[float] = []
    hook.http.retry = dataclasses.replace(hook.http.retry, max_call_wait=700)  # in-process, not deferred
    fast(hook, waits, between=lambda: p.operating.clear())
    assert statuses(invite_people(hook, env["group"], env["users"][1:2])) == [Status.INVITED]
    assert [r["status"] for r in sandbox.requests(PLATFORM)][-2:] == [429, 200]
    assert len(waits) == 1 and 590 <= waits[0] <= 660  # operating_reset_at of the last success, 10 min


def test_operation_time_limit_inside_the_lookup_batch_is_retried(sandbox):
    env = sandbox.env()[PLATFORM]
    p = portal(sandbox)
    p.processing_override["user.get"] = 500.0
    hook = Bitrix24Hook()
    invite_people(hook, env["group"], env["users"][:1], dry_run=True)
    waits: list[float] = []
    hook.http.retry = dataclasses.replace(hook.http.retry, max_call_wait=700)  # in-process, not deferred
    fast(hook, waits, between=lambda: p.operating.clear())
    outcomes = invite_people(hook, env["group"], env["users"][:1])
    assert statuses(outcomes) == [Status.INVITED]
    assert methods(sandbox) == ["batch.json", "batch.json", "batch.json", "sonet_group.user.invite.json"]
    assert len(waits) == 1 and waits[0] >= 590


def test_hidden_group_is_access_denied_for_everyone(sandbox):
    env = sandbox.env()[PLATFORM]
    hidden = str(portal(sandbox).hidden_group_id)
    outcomes = invite_people(Bitrix24Hook(), hidden, env["users"][:2])
    assert statuses(outcomes) == [Status.FAILED, Status.FAILED]
    assert outcomes[0].code == "Socialnetwork group not found"
    assert methods(sandbox) == [
        "batch.json",
        "sonet_group.user.invite.json",
    ]  # one refusal, not one per person


def test_access_denied_and_missing_scope_are_permanent(sandbox, monkeypatch):
    env = sandbox.env()[PLATFORM]
    p = portal(sandbox)
    use_connection(monkeypatch, "b24_narrow", webhook_conn(sandbox, p.admin, p.narrow_code))
    outcomes = invite_people(Bitrix24Hook(conn_id="b24_narrow"), env["group"], env["users"][:1])
    assert outcomes[0].status is Status.FAILED and outcomes[0].code == "insufficient_scope"
    p.rest_available = False
    outcomes = invite_people(Bitrix24Hook(), env["group"], env["users"][:1])
    assert outcomes[0].status is Status.FAILED and outcomes[0].code == "ACCESS_DENIED"
    assert len(sandbox.requests(PLATFORM)) == 2


@pytest.mark.parametrize(
    ("group", "users", "field"),
    [
        ("12abc", ["3"], "group"),
        ("0", ["3"], "group"),
        ("-5", ["3"], "group"),
        (5.0, ["3"], "group"),
        (True, ["3"], "group"),
        ("5", ["12abc"], "users"),
        ("5", ["1.9"], "users"),
        ("5", [0], "users"),
        ("5", [-3], "users"),
        ("5", [True], "users"),
        ("5", [""], "users"),
        ("5", ["007"], "users"),
        ("5", [], "users"),
        ("5", ["3", 3], "users"),
    ],
)
def test_bad_input_fails_before_any_request(sandbox, group, users, field):
    with pytest.raises(InviteInputError) as caught:
        invite_people(Bitrix24Hook(), group, users)
    assert str(caught.value).startswith(f"{field}: expected")
    assert sandbox.requests(PLATFORM) == []


@pytest.mark.parametrize(
    ("host", "extra", "field"),
    [
        ("http://portal.example.com", {}, "host"),
        ("", {}, "host"),
        (None, {"webhook_code": "has space"}, "extra webhook_code"),
        (None, {"webhook_user_id": "1x"}, "extra webhook_user_id"),
        (None, {"auth_type": "password"}, "extra auth_type"),
        (None, {"auth_type": "oauth"}, "extra client_id, client_secret, refresh_token"),
    ],
)
def test_bad_connection_fails_before_any_request(sandbox, monkeypatch, host, extra, field):
    p = portal(sandbox)
    conn = webhook_conn(sandbox, p.admin, p.admin_code)
    if host is not None:
        conn["host"] = host
    conn["extra"].update(extra)
    use_connection(monkeypatch, "b24_broken", conn)
    env = sandbox.env()[PLATFORM]
    with pytest.raises(InviteInputError) as caught:
        invite_people(Bitrix24Hook(conn_id="b24_broken"), env["group"], env["users"][:1])
    assert str(caught.value).startswith(f"connection b24_broken: {field}")
    assert p.admin_code not in str(caught.value)
    assert sandbox.requests(PLATFORM) == []


# -- no secret anywhere ----------------------------------------------------------------------------


def test_failing_runs_leak_no_code_or_token(sandbox, monkeypatch, caplog, capsys):
    """Every log line (DEBUG, urllib3 included) and exception of failing runs: no secret in them."""
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_invites.operators.bitrix24 import Bitrix24GroupInviteOperator

    caplog.set_level(logging.DEBUG)
    env = sandbox.env()[PLATFORM]
    texts: list[str] = []

    def run(make) -> None:
        try:
            texts.append(repr(make()))
        except Exception as exc:
            texts.append("".join(traceback.format_exception(exc)))

    # webhook: timeouts and dropped connections on every call until the task gives up
    sandbox.faults(PLATFORM, rate=1.0, kinds=["reset", "server_error", "throttle"])
    run(lambda: invite_people(fast(Bitrix24Hook()), env["group"], env["users"][:2]))
    sandbox.clear_faults()
    # the operator, with a group the webhook cannot see (fails the task); XCom captured
    pushed: dict[str, Any] = {}

    class TI:
        def xcom_push(self, key: str, value: Any) -> None:
            pushed[key] = value

    operator = Bitrix24GroupInviteOperator(task_id="invite", group="7", users=env["users"][:2])
    with pytest.raises(AirflowFailException) as failed:
        operator.execute({"ti": TI()})
    texts.append("".join(traceback.format_exception(failed.value)))
    texts.append(json.dumps(pushed))
    # OAuth: expired tokens, then a refused refresh, then a wrong client secret
    hook = oauth_hook(sandbox, monkeypatch)
    run(lambda: invite_people(hook, env["group"], env["users"][:1]))
    portal(sandbox).expire_access_tokens()
    portal(sandbox).refresh_tokens.clear()
    run(lambda: invite_people(hook, env["group"], env["users"][1:2]))
    conn = portal(sandbox).oauth_connection(base(sandbox))
    conn["extra"]["client_secret"] = "not-the-secret-but-still-secret"
    use_connection(monkeypatch, "b24_oauth", conn)
    RuntimeStore("b24_oauth").delete("access_token")
    run(lambda: Bitrix24Hook(conn_id="b24_oauth").test_connection())
    run(lambda: Bitrix24Hook(conn_id="b24_oauth").check_connection())

    captured = capsys.readouterr()
    everything = "\n".join([*texts, caplog.text, captured.out, captured.err])
    assert "/rest/1/***/batch.json" in caplog.text  # the HTTP layer's and urllib3's lines were captured
    secrets = [*sandbox.secrets(), "not-the-secret-but-still-secret"]
    leaked = [s for s in secrets if s in everything]
    assert leaked == []
    assert pushed["outcomes"][0]["status"] == "failed"


# -- the sandbox behaves as the portal -------------------------------------------------------------


def test_sandbox_parses_form_bodies_as_php_does(sandbox):
    p = portal(sandbox)
    people = sandbox.people(PLATFORM, 4)
    url = f"{base(sandbox)}/rest/{p.admin}/{p.admin_code}/sonet_group.user.invite.json"
    # requests' list encoding repeats the plain key: PHP keeps only the last value
    plain = requests.post(url, data={"GROUP_ID": "5", "USER_ID": people[:2]}, timeout=5)
    assert plain.json()["result"] == [people[1]]
    brackets = requests.post(
        url, data="GROUP_ID=5&USER_ID%5B%5D=" + people[2] + "&USER_ID[]=12abc", timeout=5
    )
    assert brackets.json()["result"] == [people[2], "12abc"]  # (int)"12abc" = 12 was invited, echoed raw
    as_json = requests.post(url, json={"GROUP_ID": 5, "USER_ID": [int(people[3])]}, timeout=5)
    assert as_json.json()["result"] == [int(people[3])]
    assert set(as_json.json()["time"]) >= {
        "start",
        "finish",
        "duration",
        "processing",
        "date_start",
        "date_finish",
    }
    assert as_json.headers["content-type"] == "application/json; charset=utf-8"
    wrong = requests.post(url, json={"GROUP_ID": "abc", "USER_ID": 3}, timeout=5)
    assert (wrong.status_code, wrong.json()) == (400, {"error": "", "error_description": "Wrong group ID"})


def test_sandbox_routes_auth_and_batch(sandbox):
    p = portal(sandbox)
    root = f"{base(sandbox)}/rest"
    unknown = requests.get(f"{root}/1/badcode/no.such.method", timeout=5)
    assert (unknown.status_code, unknown.json()["error"]) == (404, "ERROR_METHOD_NOT_FOUND")
    bad = requests.get(f"{root}/{p.admin}/badcode/user.current", timeout=5)
    assert (bad.status_code, bad.json()["error"]) == (401, "INVALID_CREDENTIALS")
    assert requests.get(f"{root}/user.current", timeout=5).json()["error"] == "NO_AUTH_FOUND"
    ok = requests.get(f"{root}/{p.admin}/{p.admin_code}/USER.Current/?bx24_request_id=1", timeout=5)
    assert ok.status_code == 200 and ok.json()["result"]["ID"] == str(p.admin)
    batch = requests.post(
        f"{root}/{p.admin}/{p.admin_code}/batch",
        json={
            "halt": 0,
            "cmd": {
                "m": "sonet_group.user.get?ID=5",
                "bad": "sonet_group.user.get?ID=0",
                "g": "sonet_group.get?FILTER[ID]=5",
            },
        },
        timeout=5,
    ).json()["result"]
    assert [r["ROLE"] for r in batch["result"]["m"]] == ["A", "E", "K", "K"]  # the fired member is hidden
    assert batch["result_error"] == {
        "bad": {"error": "", "error_description": "Wrong socialnetwork group ID"}
    }
    assert batch["result_total"] == {"g": 1} and batch["result_next"] == []
    assert set(batch["result_time"]) == {"m", "g"}
    halted = requests.post(
        f"{root}/{p.admin}/{p.admin_code}/batch",
        data="halt=1&cmd[0]=sonet_group.user.get%3FID%3D0&cmd[1]=user.current",
        timeout=5,
    ).json()["result"]
    assert halted["result"] == [] and halted["result_time"] == []  # halt: command 1 never ran
    assert halted["result_error"] == [{"error": "", "error_description": "Wrong socialnetwork group ID"}]
    many = {str(i): "user.current" for i in range(51)}
    over = requests.post(f"{root}/{p.admin}/{p.admin_code}/batch", json={"cmd": many}, timeout=5).json()[
        "result"
    ]
    assert len(over["result"]) == 50 and over["result_error"]["50"]["error"] == "ERROR_BATCH_LENGTH_EXCEEDED"


# -- removal ---------------------------------------------------------------------------------------


def test_200_members_go_in_one_delete(sandbox):
    """``sonet_group.user.delete`` takes every id at once: one look-up batch, one delete call."""
    env = sandbox.env()[PLATFORM]
    members = sandbox.people(PLATFORM, 200, group=env["group"])
    outcomes = remove_people(Bitrix24Hook(), env["group"], [*members, env["users"][0]])
    assert statuses(outcomes) == [Status.REMOVED] * 200 + [Status.ALREADY_ABSENT]
    assert methods(sandbox) == ["batch.json", "sonet_group.user.delete.json"]  # 0.01 requests per person
    assert {r["user"] for r in sandbox.removals(PLATFORM)} == set(members)  # never the absent one


def test_a_deactivated_member_is_removed_though_never_invited(sandbox):
    """A fired member still holds the relation: invite says so, removal ends it."""
    env = sandbox.env()[PLATFORM]
    fired_member = "4"
    assert statuses(invite_people(Bitrix24Hook(), env["group"], [fired_member])) == [Status.FAILED]
    outcomes = remove_people(Bitrix24Hook(), env["group"], [fired_member, str(portal(sandbox).fired_user)])
    assert statuses(outcomes) == [Status.REMOVED, Status.ALREADY_ABSENT]
    assert fired_member not in sandbox.members(PLATFORM, env["group"])["members"]


def test_a_banned_person_is_never_sent_a_delete(sandbox):
    """A delete would lift the ban: the look-up shows no relation, so nothing is sent."""
    env = sandbox.env()[PLATFORM]
    banned = str(portal(sandbox).banned_user)
    before = len(sandbox.requests(PLATFORM))
    outcomes = remove_people(Bitrix24Hook(), env["group"], [banned])
    assert statuses(outcomes) == [Status.ALREADY_ABSENT]
    assert methods(sandbox, before) == ["batch.json"] and sandbox.removals(PLATFORM) == []
    invited = invite_people(Bitrix24Hook(), env["group"], [banned])  # the portal skips it silently
    assert (invited[0].status, invited[0].code) == (Status.FAILED, "not_applied")
    assert "banned" in invited[0].detail


def test_owner_scrum_master_and_the_connection_itself_are_protected(sandbox):
    p = portal(sandbox)
    group, moderator = str(p.scrum_group_id), "2"  # the scrum group's scrum master is the moderator
    outcomes = remove_people(Bitrix24Hook(), group, [str(p.admin), moderator, "3"])
    assert [(o.status, o.code) for o in outcomes] == [
        (Status.FAILED, "protected"),
        (Status.FAILED, "protected"),
        (Status.REMOVED, None),
    ]
    assert "owner" in outcomes[0].detail and "scrum master" in outcomes[1].detail
    assert [r["user"] for r in sandbox.removals(PLATFORM)] == ["3"]


def test_removal_by_a_non_admin_fails_the_group_with_the_portals_reason(sandbox, monkeypatch):
    p = portal(sandbox)
    use_connection(monkeypatch, "b24_member", webhook_conn(sandbox, p.member_user, p.member_code))
    env = sandbox.env()[PLATFORM]
    outcomes = remove_people(Bitrix24Hook(conn_id="b24_member"), env["group"], ["2", "3"])
    assert statuses(outcomes) == [Status.FAILED, Status.FAILED]
    assert outcomes[0].code == "No permissions to update users role"
    assert "portal admins" in outcomes[0].detail
    assert all(r["applied"] == 0 for r in sandbox.removals(PLATFORM))
    assert methods(sandbox) == [
        "batch.json",
        "sonet_group.user.delete.json",
    ]  # one refusal, not one per person


def test_lost_reply_to_a_withdrawn_invitation_is_confirmed(sandbox):
    env = sandbox.env()[PLATFORM]
    invite_people(Bitrix24Hook(), env["group"], env["users"][:1])
    hook = Bitrix24Hook()
    sandbox.lose_next_write_reply(hook, PLATFORM, "cancel_invites")
    outcomes = remove_people(hook, env["group"], env["users"][:1])
    assert statuses(outcomes) == [Status.INVITE_CANCELLED] and "confirmed by a look-up" in outcomes[0].detail
    assert [(r["applied"], r["requests"]) for r in sandbox.removals(PLATFORM)] == [(1, 1)]


def test_list_group_is_every_relation_with_the_protected_marked(sandbox):
    env = sandbox.env()[PLATFORM]
    invite_people(Bitrix24Hook(), env["group"], env["users"][:1])
    listed = Bitrix24Hook().list_group(env["group"])
    assert {u: s.presence for u, s in listed.items()} == {
        "1": Presence.MEMBER,
        "2": Presence.MEMBER,
        "3": Presence.MEMBER,
        "4": Presence.MEMBER,  # deactivated, still related: a roster sync removes it
        "5": Presence.MEMBER,
        env["users"][0]: Presence.INVITED,
    }
    assert listed["1"].protected and not listed["2"].protected


# -- e-mail handles --------------------------------------------------------------------------------


def test_1000_emails_resolve_in_20_requests(sandbox):
    """One ``user.get`` per address, 50 to a batch: 0.02 requests per person to resolve them."""
    env = sandbox.env()[PLATFORM]
    people = sandbox.people_with_handles(PLATFORM, 1000)
    emails = [p["handles"]["email"] for p in people]
    stats = RunStats()
    hook = Bitrix24Hook()
    outcomes = invite_people(hook, env["group"], emails, dry_run=True, stats=stats)
    assert [o.user for o in outcomes] == [p["id"] for p in people]
    assert {o.status for o in outcomes} == {Status.WOULD_INVITE}
    assert hook.http.requests_by_phase["resolve"] == 20  # 0.02 per person
    assert hook.http.requests_by_phase["lookup"] == 1  # 20 user.get pages and the group in one batch


def test_two_accounts_with_one_email_are_ambiguous_and_nobody_is_invited(sandbox):
    env = sandbox.env()[PLATFORM]
    twins = sandbox.people_with_handles(PLATFORM, 2, handles={"email": "twin@example.test"})
    assert [t["handles"]["email"] for t in twins] == ["twin@example.test"] * 2  # the portal allows it
    outcomes = invite_people(Bitrix24Hook(), env["group"], ["email:twin@example.test", env["users"][0]])
    assert [(o.status, o.code) for o in outcomes] == [(Status.FAILED, "ambiguous"), (Status.INVITED, None)]
    assert "2 accounts" in outcomes[0].detail and twins[0]["id"] not in outcomes[0].detail
    assert {i["user"] for i in sandbox.invites(PLATFORM)} == {env["users"][0]}


def test_email_match_ignores_case_wildcards_and_mail_only_accounts(sandbox):
    """user.get filters with SQL LIKE: '_' matches any character there, so we check every row."""
    env = sandbox.env()[PLATFORM]
    exact = sandbox.people_with_handles(PLATFORM, 1, handles={"email": "ann_lee@example.test"})[0]
    sandbox.people_with_handles(PLATFORM, 1, handles={"email": "annxlee@example.test"})
    anna = env["handles"][0].split(":", 1)[1]  # an e-mail-only account (a mail contact) shares it
    outcomes = invite_people(
        Bitrix24Hook(), env["group"], ["Ann_Lee@Example.TEST", anna.upper()], dry_run=True
    )
    assert [o.user for o in outcomes] == [exact["id"], env["users"][0]]
    assert {o.status for o in outcomes} == {Status.WOULD_INVITE}


def test_removal_by_email(sandbox):
    env = sandbox.env()[PLATFORM]
    member = sandbox.people_with_handles(PLATFORM, 1, group=env["group"])[0]
    outcomes = remove_people(Bitrix24Hook(), env["group"], [member["handles"]["email"]])
    assert [(o.user, o.status) for o in outcomes] == [(member["id"], Status.REMOVED)]


@pytest.mark.parametrize(
    ("code_of", "why"),
    [("brief_code", "scope user (or user_basic)"), ("userless_code", "sonet_group, socialnetwork and user")],
)
def test_email_lookups_without_the_user_scope_say_which_scope(sandbox, monkeypatch, code_of, why):
    p = portal(sandbox)
    use_connection(monkeypatch, "b24_scopes", webhook_conn(sandbox, p.admin, getattr(p, code_of)))
    env = sandbox.env()[PLATFORM]
    outcomes = invite_people(Bitrix24Hook(conn_id="b24_scopes"), env["group"], env["handles"][:2])
    assert [(o.status, o.code) for o in outcomes] == [(Status.FAILED, "insufficient_scope")] * 2
    assert why in outcomes[0].detail
    assert sandbox.invites(PLATFORM) == []


def test_operation_time_limit_inside_the_resolve_batch_is_waited_out(sandbox):
    env = sandbox.env()[PLATFORM]
    p = portal(sandbox)
    p.processing_override["user.get"] = 500.0  # one look-up uses user.get's 480 s budget up
    hook = Bitrix24Hook()
    invite_people(hook, env["group"], env["users"][:1], dry_run=True)
    p.processing_override.clear()
    waits: list[float] = []
    hook.http.retry = dataclasses.replace(hook.http.retry, max_call_wait=700)  # in-process, not deferred
    fast(hook, waits, between=lambda: p.operating.clear())
    outcomes = invite_people(hook, env["group"], env["handles"][1:2])
    assert [(o.user, o.status) for o in outcomes] == [(env["users"][1], Status.INVITED)]
    assert len(waits) == 1 and waits[0] >= 590  # until the budget's reset, not a blind retry


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("email:", "email:<an e-mail address"),
        ("email:ann", "email:<an e-mail address"),
        ("email:ann@example", "email:<an e-mail address"),
        ("username:ann", "username: is not resolved on bitrix24"),
        ("name:Ann Lee", "name: is not resolved on bitrix24"),
        ("ann@", "Bitrix24 user ids"),
    ],
)
def test_bad_handles_fail_before_any_request(sandbox, given, expected):
    env = sandbox.env()[PLATFORM]
    with pytest.raises(InviteInputError, match=r"^users: expected ") as caught:
        invite_people(Bitrix24Hook(), env["group"], [given])
    assert expected in str(caught.value)
    assert sandbox.requests(PLATFORM) == []


def test_a_bare_address_is_an_email_handle(sandbox):
    env = sandbox.env()[PLATFORM]
    address = env["handles"][0].split(":", 1)[1]
    outcomes = invite_people(Bitrix24Hook(), env["group"], [address], dry_run=True)
    assert (outcomes[0].user, outcomes[0].handle) == (env["users"][0], address)


# -- the sandbox answers removal and e-mail look-ups as the portal does ----------------------------


def test_sandbox_delete_as_the_server_code_answers(sandbox):
    p = portal(sandbox)
    url = f"{base(sandbox)}/rest/{p.admin}/{p.admin_code}/sonet_group.user.delete"
    member = sandbox.people(PLATFORM, 1, group="5")[0]
    reply = requests.post(url, json={"GROUP_ID": 5, "USER_ID": [int(member), 1, 99999, 6]}, timeout=5)
    assert reply.status_code == 200 and reply.json()["result"] == [member]  # owner skipped, strangers ignored
    for body, text in [
        ({"GROUP_ID": 0, "USER_ID": [3]}, "Wrong group ID"),
        ({"GROUP_ID": 5, "USER_ID": []}, "Wrong user IDs"),
        ({"GROUP_ID": 5, "USER_ID": "0"}, "Wrong user IDs"),
        ({"GROUP_ID": 404, "USER_ID": [3]}, "Socialnetwork group not found"),
    ]:
        refused = requests.post(url, json=body, timeout=5)
        assert (refused.status_code, refused.json()) == (400, {"error": "", "error_description": text})
    hidden = requests.post(url, json={"GROUP_ID": p.hidden_group_id, "USER_ID": ["abc"]}, timeout=5)
    assert hidden.json()["result"] == []  # an array is not checked item by item; admins reach hidden groups
    as_member = f"{base(sandbox)}/rest/{p.member_user}/{p.member_code}/sonet_group.user.delete"
    refused = requests.post(as_member, json={"GROUP_ID": 5, "USER_ID": [3]}, timeout=5).json()
    assert refused == {"error": "", "error_description": "No permissions to update users role"}


def test_sandbox_user_get_filters_as_the_portal_does(sandbox):
    p = portal(sandbox)
    anna = p.users[p.newcomers[0]]["EMAIL"]

    def user_get(code: str, query: dict[str, Any]) -> dict[str, Any]:
        url = f"{base(sandbox)}/rest/{p.admin}/{code}/user.get"
        return dict(requests.post(url, json=query, timeout=5).json())

    exact = user_get(p.admin_code, {"FILTER": {"EMAIL": anna.upper()}})
    assert [r["ID"] for r in exact["result"]] == [str(p.newcomers[0])] and exact["total"] == 1
    bare = user_get(p.admin_code, {"EMAIL": anna})  # without FILTER the parameters filter
    assert [r["ID"] for r in bare["result"]] == [str(p.newcomers[0])]
    like = user_get(p.admin_code, {"FILTER": {"%EMAIL": "volkova"}})
    assert [r["ID"] for r in like["result"]] == [str(p.newcomers[0])]  # never the e-mail-only account
    brief = user_get(p.brief_code, {"FILTER": {"EMAIL": anna}})  # user_brief: filter dropped, no e-mails
    assert brief["total"] == len([u for u in p.users.values() if not u["_external"]])
    assert all("EMAIL" not in row for row in brief["result"])
    nobody = user_get(p.admin_code, {"FILTER": {"EMAIL": "nobody@example.test"}})
    assert (nobody["result"], nobody["total"]) == ([], 0)
