"""VRChat hook, operator and sandbox over real HTTP against the sandbox."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
import requests

from airflow_invites.core.errors import InviteInputError, PermanentPlatformError, PlatformAuthError
from airflow_invites.core.membership import RunStats, invite_people, remove_people
from airflow_invites.core.outcome import Status
from airflow_invites.core.runtime_store import RuntimeStore
from airflow_invites.hooks.vrchat import SESSION_TOKEN, VRChatHook, error_message, normalise_message
from airflow_invites.operators.vrchat import VRChatGroupInviteOperator

UA = {"User-Agent": "vrchat-tests/1.0 tests@sandbox.test"}
UNKNOWN_GROUP = "grp_00000000-0000-4000-8000-000000000000"


@pytest.fixture
def vr(sandbox, monkeypatch):
    """The seeded VRChat sandbox: env plus the named people; no pacing; no session kept from before."""
    from airflow_invites.sandbox.app import Sandbox

    monkeypatch.setenv(
        "AIRFLOW_CONN_VRCHAT_DEFAULT", sandbox.connection_env("vrchat", max_requests_per_second=0)
    )
    store = RuntimeStore("vrchat_default")
    store.delete(SESSION_TOKEN)
    seeded = Sandbox().platforms["vrchat"]
    env = sandbox.env()["vrchat"]
    yield {
        "group": env["group"],
        "users": env["users"],
        "conn": env["connection"],
        "named": seeded.named,  # type: ignore[attr-defined]
        "foreign": seeded.foreign_group_id,  # type: ignore[attr-defined]
        "limited": seeded.limited_group_id,  # type: ignore[attr-defined]
        "mail_only": seeded.mail_only,  # type: ignore[attr-defined]
        "api": f"{sandbox.base_url}/vrchat/api/1",
    }
    store.delete(SESSION_TOKEN)


def calls(sandbox, suffix: str, method: str | None = None) -> list[dict[str, Any]]:
    return [
        r
        for r in sandbox.requests("vrchat")
        if r["path"].endswith(suffix) and (method is None or r["method"] == method)
    ]


def invite_posts(sandbox) -> list[dict[str, Any]]:
    return [r for r in calls(sandbox, "/invites", "POST")]


def deletes(sandbox) -> list[str]:
    """``invites`` or ``members`` for each DELETE sent (a cancel or a removal)."""
    return [r["path"].split("/")[-2] for r in sandbox.requests("vrchat") if r["method"] == "DELETE"]


def searches(sandbox) -> list[dict[str, Any]]:
    return calls(sandbox, "/api/1/users", "GET")


def cookie(hook: VRChatHook) -> dict[str, str]:
    """Headers for a raw call with the hook's session (logging in first if needed)."""
    return {**UA, "Cookie": hook.auth_headers()["Cookie"]}


def after_lookup(hook: VRChatHook, action: Any) -> None:
    """``action()`` once, right after the hook's first look-up returns (someone acts meanwhile)."""
    lookup, done = hook.lookup, []

    def lookup_then_act(group: str, users: Any) -> Any:
        found = lookup(group, users)
        if not done:
            done.append(action())
        return found

    hook.lookup = lookup_then_act  # type: ignore[method-assign]


def logins(sandbox) -> list[dict[str, Any]]:
    return calls(sandbox, "/auth/user", "GET")


def statuses(outcomes):
    return [o.status for o in outcomes]


def fast(hook: VRChatHook, waits: list[float] | None = None, then=None) -> VRChatHook:
    def sleep(seconds: float) -> None:
        if waits is not None:
            waits.append(seconds)
        if then is not None:
            then()

    hook.http.sleep = sleep  # type: ignore[method-assign]
    return hook


# -- login, sessions ---------------------------------------------------------------------------


def test_login_with_totp_then_invite(sandbox, vr):
    hook = VRChatHook()
    outcomes = invite_people(hook, vr["group"], vr["users"][:2])
    assert statuses(outcomes) == [Status.INVITED, Status.INVITED]
    assert hook.logins == 1
    assert [r["status"] for r in logins(sandbox)] == [200]
    assert [r["status"] for r in calls(sandbox, "/auth/twofactorauth/totp/verify")] == [200]
    assert [(i["applied"], i["requests"]) for i in sandbox.invites("vrchat")] == [(1, 1), (1, 1)]
    stored = json.loads(RuntimeStore("vrchat_default").get(SESSION_TOKEN) or "{}")
    assert stored["auth"].startswith("authcookie_") and stored["twoFactorAuth"].count(".") == 2


def test_cookies_reused_across_two_task_runs(sandbox, vr):
    first = VRChatHook()
    invite_people(first, vr["group"], vr["users"][:1])
    second = VRChatHook()  # a later task: a new hook, the session comes from the Variable
    outcomes = invite_people(second, vr["group"], vr["users"][1:2])
    assert statuses(outcomes) == [Status.INVITED]
    assert (first.logins, second.logins) == (1, 0)
    assert len(logins(sandbox)) == 1
    assert len(calls(sandbox, "/verify")) == 1


def test_session_expiry_logs_in_again_once_without_a_new_code(sandbox, vr):
    invite_people(VRChatHook(), vr["group"], vr["users"][:1])
    stored = json.loads(RuntimeStore("vrchat_default").get(SESSION_TOKEN) or "{}")
    cookie = f"auth={stored['auth']}"
    assert requests.put(f"{vr['api']}/logout", headers={**UA, "Cookie": cookie}, timeout=5).ok
    hook = VRChatHook()
    outcomes = invite_people(hook, vr["group"], vr["users"][1:2])
    assert statuses(outcomes) == [Status.INVITED]
    assert hook.logins == 1
    assert [r["status"] for r in logins(sandbox)] == [200, 200]  # the first and the one re-login
    assert len(calls(sandbox, "/verify")) == 1  # the remembered device (twoFactorAuth) skipped TOTP
    refused = [r for r in sandbox.requests("vrchat") if r["status"] == 401]
    assert len(refused) == 1


def test_ready_auth_cookie_from_the_connection_is_used_without_login(sandbox, vr, monkeypatch):
    hook = VRChatHook()
    hook.check_connection()
    cookie = json.loads(RuntimeStore("vrchat_default").get(SESSION_TOKEN) or "{}")["auth"]
    RuntimeStore("vrchat_default").delete(SESSION_TOKEN)
    conn = {**vr["conn"], "login": None, "password": None, "extra": {"auth_cookie": cookie, "timeout": 2}}
    monkeypatch.setenv("AIRFLOW_CONN_VRCHAT_DEFAULT", json.dumps(conn))
    cookie_hook = VRChatHook()
    assert statuses(invite_people(cookie_hook, vr["group"], vr["users"][:1])) == [Status.INVITED]
    assert cookie_hook.logins == 0 and len(logins(sandbox)) == 2  # check_connection's login + its GET


def test_cookie_only_connection_says_reauthorise_when_the_cookie_dies(sandbox, vr, monkeypatch):
    conn = {**vr["conn"], "login": None, "password": None, "extra": {"auth_cookie": "authcookie_x" * 3}}
    monkeypatch.setenv("AIRFLOW_CONN_VRCHAT_DEFAULT", json.dumps(conn))
    outcomes = invite_people(VRChatHook(), vr["group"], vr["users"][:1])
    assert outcomes[0].status is Status.FAILED
    assert "re-authorise this connection" in outcomes[0].detail
    assert invite_posts(sandbox) == []


def test_email_otp_only_account_fails_clearly_without_looping(sandbox, vr, monkeypatch):
    user = vr["mail_only"]
    conn = {**vr["conn"], "login": user["username"], "password": user["password"], "extra": {}}
    monkeypatch.setenv("AIRFLOW_CONN_VRCHAT_DEFAULT", json.dumps(conn))
    ok, message = VRChatHook().test_connection()
    assert not ok and "e-mail codes cannot be automated" in message
    assert len(logins(sandbox)) == 1 and calls(sandbox, "/verify") == []


def test_missing_totp_secret_and_wrong_password_are_clear(sandbox, vr, monkeypatch):
    conn = {**vr["conn"], "extra": {}}
    monkeypatch.setenv("AIRFLOW_CONN_VRCHAT_DEFAULT", json.dumps(conn))
    ok, message = VRChatHook().test_connection()
    assert not ok and "totp_secret" in message
    conn = {**vr["conn"], "password": "wrong-password"}
    monkeypatch.setenv("AIRFLOW_CONN_VRCHAT_DEFAULT", json.dumps(conn))
    with pytest.raises(PlatformAuthError, match="invalid username/e-mail or password"):
        VRChatHook().check_connection()


def test_session_limit_is_a_clear_error_and_no_retry(sandbox, vr):
    password = vr["conn"]["password"]
    basic = base64.b64encode(f"{vr['conn']['login']}:{password}".encode()).decode()
    for _ in range(10):  # other clients open sessions with the same account
        reply = requests.get(f"{vr['api']}/auth/user", headers={**UA, "Authorization": f"Basic {basic}"})
        assert reply.status_code == 200
    hook = VRChatHook()
    outcomes = invite_people(hook, vr["group"], vr["users"][:1])
    assert outcomes[0].status is Status.FAILED and "too many" in outcomes[0].detail
    assert [r["status"] for r in logins(sandbox)][-1] == 429 and len(logins(sandbox)) == 11
    assert invite_posts(sandbox) == []


# -- the invite and its outcomes ---------------------------------------------------------------


def test_already_member_and_already_invited_send_no_invite(sandbox, vr):
    named = vr["named"]
    outcomes = invite_people(VRChatHook(), vr["group"], [named["member"], named["invited"]])
    assert statuses(outcomes) == [Status.ALREADY_MEMBER, Status.ALREADY_INVITED]
    assert invite_posts(sandbox) == []


def test_invite_accept_then_member_and_idempotent_rerun(sandbox, vr):
    user = vr["users"][0]
    assert statuses(invite_people(VRChatHook(), vr["group"], [user])) == [Status.INVITED]
    assert statuses(invite_people(VRChatHook(), vr["group"], [user])) == [Status.ALREADY_INVITED]
    sandbox.accept("vrchat", vr["group"], user)
    assert statuses(invite_people(VRChatHook(), vr["group"], [user])) == [Status.ALREADY_MEMBER]
    assert len(invite_posts(sandbox)) == 1


def test_banned_person_is_reported_and_never_invited(sandbox, vr):
    banned = vr["named"]["banned"]
    hook = VRChatHook()
    outcomes = invite_people(hook, vr["group"], [banned, vr["users"][0]])
    assert statuses(outcomes) == [Status.FAILED, Status.INVITED]
    assert outcomes[0].code == "banned" and "would lift the ban" in outcomes[0].detail
    assert [i["user"] for i in sandbox.invites("vrchat")] == [vr["users"][0]]
    assert hook.lookup(vr["group"], [banned])[banned].code == "banned"  # still banned


def test_lookalike_error_texts_are_classified(sandbox, vr):
    blocker = vr["named"]["userblocked"]
    # three people: the group is small, but listing it (members, invites, bans) is no dearer than
    # asking per person, so the blocker is only found out by the invite's look-alike error text
    outcomes = invite_people(VRChatHook(), vr["group"], [blocker, *vr["users"][:2]])
    assert outcomes[0].status is Status.FAILED and outcomes[0].code == "cannot-invite"
    # asked per person, the relation "userblocked" is seen before any invite
    assert VRChatHook().lookup(vr["group"], [blocker])[blocker].code == "userblocked"
    envelope = {"error": {"message": "User Ivy is already invited\u2024", "status_code": 400}}
    assert "already invited" in normalise_message(error_message(envelope))
    quoted = {"error": {"message": '"Missing Credentials"', "status_code": 401}}
    assert normalise_message(error_message(quoted)) == "missing credentials"


def test_unknown_user_is_one_failure_not_the_batch(sandbox, vr):
    ghost = "usr_11111111-2222-4333-8444-555555555555"
    outcomes = invite_people(VRChatHook(), vr["group"], [ghost, vr["users"][0]])
    assert statuses(outcomes) == [Status.FAILED, Status.INVITED]
    assert outcomes[0].code == "user-not-found"


def test_group_not_found(sandbox, vr):
    outcomes = invite_people(VRChatHook(), UNKNOWN_GROUP, vr["users"][:2])
    assert statuses(outcomes) == [Status.FAILED, Status.FAILED]
    assert outcomes[0].code == "group-not-found"
    assert invite_posts(sandbox) == []


@pytest.mark.parametrize(("group_key", "code"), [("foreign", "not-a-member"), ("limited", "no-permission")])
def test_group_the_bot_may_not_invite_into_is_permanent(sandbox, vr, group_key, code):
    outcomes = invite_people(VRChatHook(), vr[group_key], vr["users"][:2])
    assert [o.code for o in outcomes] == [code, code]
    assert invite_posts(sandbox) == []


def test_bulk_pages_with_offset_one_lookup_per_batch(sandbox, vr):
    people = sandbox.people("vrchat", 150)
    sandbox.limits("vrchat", scale=0)  # the sandbox's per-session budget is not under test here
    invite_people(VRChatHook(), vr["group"], people[:120])  # 120 pending invites: two pages
    before = len(sandbox.requests("vrchat"))
    hook = VRChatHook()
    outcomes = invite_people(hook, vr["group"], people[100:])
    sent = sandbox.requests("vrchat")[before:]
    assert statuses(outcomes) == [Status.ALREADY_INVITED] * 20 + [Status.INVITED] * 30
    reads = [r["path"].rsplit("/", 1)[1] for r in sent if r["method"] == "GET"]
    assert reads == [vr["group"], "members", "invites", "invites", "bans"], reads
    assert len(sent) == 5 + 30  # 35 requests for 30 new invites, no login (the session is kept)
    assert all(i["applied"] == 1 and i["requests"] == 1 for i in sandbox.invites("vrchat"))


# -- throttling and faults ---------------------------------------------------------------------


def test_429_backs_off_with_the_hint_then_succeeds_without_a_new_login(sandbox, vr):
    invite_people(VRChatHook(), vr["group"], vr["users"][1:2])  # a session exists
    sandbox.faults("vrchat", rate=1.0, kinds=["throttle"], throttle_seconds=3)
    waits: list[float] = []
    hook = fast(VRChatHook(), waits, then=sandbox.clear_faults)
    outcomes = invite_people(hook, vr["group"], vr["users"][:1])
    assert statuses(outcomes) == [Status.INVITED]
    assert hook.logins == 0 and len(logins(sandbox)) == 1
    assert len(waits) == 1 and 3 <= waits[0] <= 3.5  # the Retry-After hint, not our own backoff
    assert [r["status"] for r in sandbox.requests("vrchat") if r["status"] == 429] == [429]


def test_429_without_a_hint_waits_a_minute(sandbox, vr):
    from airflow_invites.sandbox.platforms.vrchat import CALL_BURST

    hook = VRChatHook()
    hook.check_connection()
    sandbox.limits("vrchat", scale=0.001)  # the per-session bucket drains very slowly
    cookie = hook.auth_headers()["Cookie"]
    for _ in range(CALL_BURST):
        requests.get(f"{vr['api']}/auth", headers={**UA, "Cookie": cookie}, timeout=5)
    waits: list[float] = []
    fast(hook, waits, then=lambda: sandbox.limits("vrchat", scale=0))
    assert statuses(invite_people(hook, vr["group"], vr["users"][:1])) == [Status.INVITED]
    assert len(waits) == 1 and waits[0] >= 60
    assert hook.logins == 1


# -- input, user agent, secrets ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "users", "field"),
    [
        ("", ["gJ1H3eYZlL"], "group"),
        ("grp_97F75ECD-F58D-4DB3-82DD-867C67C3579E", ["gJ1H3eYZlL"], "group"),
        ("97f75ecd-f58d-4db3-82dd-867c67c3579e", ["gJ1H3eYZlL"], "group"),
        ("grp_97f75ecd-f58d-4db3-82dd-867c67c3579e/../x", ["gJ1H3eYZlL"], "group"),
        (UNKNOWN_GROUP, [], "users"),
        (UNKNOWN_GROUP, ["usr_CCB9897B-7663-4FF2-855E-48EABCA5246F"], "users"),
        (UNKNOWN_GROUP, ["usr_ccb9897b7663-4ff2-855e-48eabca5246f"], "users"),
        (UNKNOWN_GROUP, ["gJ1H3eYZl"], "users"),
        (UNKNOWN_GROUP, ["grp_ccb9897b-7663-4ff2-855e-48eabca5246f"], "users"),
        (UNKNOWN_GROUP, ["gJ1H3eYZlL", "gJ1H3eYZlL"], "users"),
        (UNKNOWN_GROUP, [12345678901], "users"),
    ],
)
def test_bad_ids_rejected_before_any_request(sandbox, vr, group, users, field):
    with pytest.raises(InviteInputError) as caught:
        invite_people(VRChatHook(), group, users)
    assert str(caught.value).startswith(f"{field}: expected")
    assert sandbox.requests("vrchat") == []


@pytest.mark.parametrize(
    "agent",
    ["curl/8.5.0", "vrchatapi-py", "MyApp/1.0", "ExampleProgram/0.0.1 my@email.com", "a/1 x@example.com"],
)
def test_user_agent_is_validated_before_any_request(sandbox, vr, monkeypatch, agent):
    monkeypatch.setenv("AIRFLOW_CONN_VRCHAT_DEFAULT", sandbox.connection_env("vrchat", user_agent=agent))
    with pytest.raises(InviteInputError, match="user_agent"):
        invite_people(VRChatHook(), vr["group"], vr["users"][:1])
    assert sandbox.requests("vrchat") == []


def test_sandbox_firewall_and_envelopes(sandbox, vr):
    refused = requests.get(f"{vr['api']}/config", headers={"User-Agent": "curl/8.5.0"}, timeout=5)
    assert refused.status_code == 403 and refused.json()["error"]["waf_code"] == 13799
    basic = base64.b64encode(f"{vr['conn']['login']}:{vr['conn']['password']}".encode()).decode()
    challenge = requests.get(f"{vr['api']}/auth/user", headers={**UA, "Authorization": f"Basic {basic}"})
    assert challenge.content == b'{"requiresTwoFactorAuth":["totp","otp"]}'
    set_cookie = challenge.headers["set-cookie"]
    assert "Path=/" in set_cookie and "Secure" not in set_cookie and "Domain" not in set_cookie
    half_open = requests.get(f"{vr['api']}/groups/{vr['group']}", cookies=challenge.cookies, headers=UA)
    assert half_open.status_code == 401
    assert requests.get(f"{vr['api']}/auth/user", headers=UA).json() == {
        "error": {"message": '"Missing Credentials"', "status_code": 401}
    }
    unknown = requests.get(f"{vr['api']}/nothing/here", headers=UA)
    assert unknown.status_code == 404 and isinstance(unknown.json()["error"], str)


def test_non_ascii_credentials_are_url_encoded_before_base64(sandbox, vr):
    hook = VRChatHook()
    conn = hook.connection
    conn.password = "pä:ss wörd"
    with pytest.raises(PlatformAuthError):
        hook.check_connection()  # refused (wrong password) rather than a malformed header
    assert [r["status"] for r in logins(sandbox)] == [401]


def test_no_secret_in_logs_or_outcomes(sandbox, vr, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    invite_people(VRChatHook(), vr["group"], vr["users"][:1])
    stored = json.loads(RuntimeStore("vrchat_default").get(SESSION_TOKEN) or "{}")
    requests.put(f"{vr['api']}/logout", headers={**UA, "Cookie": f"auth={stored['auth']}"}, timeout=5)
    hook = VRChatHook()  # expired session: a re-login
    outcomes = invite_people(hook, vr["group"], [*vr["users"][1:3], vr["named"]["banned"]])
    outcomes += invite_people(VRChatHook(), UNKNOWN_GROUP, vr["users"][:1])
    ok, message = VRChatHook().test_connection()
    assert ok
    secrets = sandbox.secrets()
    assert vr["conn"]["password"] in secrets and vr["conn"]["extra"]["totp_secret"] in secrets
    assert any(s.startswith("authcookie_") for s in secrets)
    captured = capsys.readouterr()
    text = caplog.text + captured.out + captured.err + message + json.dumps([o.to_dict() for o in outcomes])
    for secret in secrets:
        assert secret not in text
    assert hook.logins == 1


def test_operator_reports_outcomes(sandbox, vr):
    class TI:
        def __init__(self) -> None:
            self.pushed: dict[str, Any] = {}

        def xcom_push(self, key: str, value: Any) -> None:
            self.pushed[key] = value

    ti = TI()
    operator = VRChatGroupInviteOperator(
        task_id="invite", group=vr["group"], users=",".join(vr["users"][:2]), message="ignored"
    )
    result = operator.execute({"ti": ti})
    assert [r["status"] for r in result] == ["invited", "invited"]
    assert ti.pushed["outcomes"] == result
    assert operator.group_url == f"https://vrchat.com/home/group/{vr['group']}"


def test_big_group_few_people_is_looked_up_per_person(sandbox, vr):
    sandbox.people("vrchat", 450, group=vr["group"])  # 5 pages of members
    banned, member = vr["named"]["banned"], vr["named"]["member"]
    before = len(sandbox.requests("vrchat"))
    outcomes = invite_people(VRChatHook(), vr["group"], [banned, member, vr["users"][0]])
    assert statuses(outcomes) == [Status.FAILED, Status.ALREADY_MEMBER, Status.INVITED]
    gets = [r["path"] for r in sandbox.requests("vrchat")[before:] if r["method"] == "GET"]
    assert sum("/members/" in path for path in gets) == 3
    assert not any(path.endswith(("/members", "/invites", "/bans")) for path in gets)  # no listing


# -- removal -----------------------------------------------------------------------------------


def test_banned_and_blocking_people_are_already_absent_and_keep_their_relation(sandbox, vr):
    named = vr["named"]
    outcomes = remove_people(VRChatHook(), vr["group"], [named["banned"], named["userblocked"]])
    assert [(o.status, o.code) for o in outcomes] == [
        (Status.ALREADY_ABSENT, "banned"),
        (Status.ALREADY_ABSENT, "userblocked"),
    ]
    assert deletes(sandbox) == [] and sandbox.removals("vrchat") == []
    assert VRChatHook().lookup(vr["group"], [named["banned"]])[named["banned"]].code == "banned"  # ban kept


def test_owner_and_bot_are_protected_each_with_its_reason(sandbox, vr):
    named = vr["named"]
    outcomes = remove_people(VRChatHook(), vr["group"], [named["owner"], named["bot"], named["member"]])
    assert [(o.status, o.code) for o in outcomes] == [
        (Status.FAILED, "protected"),
        (Status.FAILED, "protected"),
        (Status.REMOVED, None),
    ]
    assert "the group's owner" in outcomes[0].detail and "own account" in outcomes[1].detail
    assert deletes(sandbox) == ["members"]  # the member's only
    assert sorted(sandbox.members("vrchat", vr["group"])["protected"]) == sorted(
        [named["owner"], named["bot"]]
    )


def test_kicking_the_owner_directly_is_refused_by_vrchat_and_reported_protected(sandbox, vr):
    hook = VRChatHook()
    hook.lookup(vr["group"], [vr["users"][0]])  # the group's facts, as the algorithm's look-up gets them
    refused = hook.remove_members  # bypassing the look-up's protection: VRChat itself refuses
    with pytest.raises(PermanentPlatformError) as caught:
        refused(vr["group"], [vr["named"]["owner"]])
    assert getattr(caught.value, "status", None) is Status.FAILED and caught.value.code == "protected"
    assert vr["named"]["owner"] in sandbox.members("vrchat", vr["group"])["members"]


def test_invitation_accepted_between_lookup_and_cancel_is_removed_after_a_recheck(sandbox, vr):
    user = vr["users"][0]
    invite_people(VRChatHook(), vr["group"], [user])
    hook = VRChatHook()
    after_lookup(hook, lambda: sandbox.accept("vrchat", vr["group"], user))
    stats = RunStats()
    outcomes = remove_people(hook, vr["group"], [user], stats=stats)
    assert [o.status for o in outcomes] == [Status.REMOVED]
    assert deletes(sandbox) == ["invites", "members"]  # 400 "wasn't invited", look again, remove
    assert stats.rechecks == 1
    assert user not in sandbox.members("vrchat", vr["group"])["members"]


def test_member_gone_between_lookup_and_kick_is_already_absent_not_resent(sandbox, vr):
    member = sandbox.people("vrchat", 1, group=vr["group"])[0]
    hook = VRChatHook()
    kick = f"{vr['api']}/groups/{vr['group']}/members/{member}"
    after_lookup(hook, lambda: requests.delete(kick, headers=cookie(VRChatHook()), timeout=5))
    outcomes = remove_people(hook, vr["group"], [member])
    assert [(o.status, o.code) for o in outcomes] == [(Status.ALREADY_ABSENT, None)]
    assert [r["status"] for r in calls(sandbox, f"/members/{member}", "DELETE")] == [200, 403]
    assert sandbox.removals("vrchat") == [
        {"platform": "vrchat", "group": vr["group"], "user": member, "applied": 1, "requests": 2}
    ]


def test_removal_without_the_permission_names_it_and_sends_nothing(sandbox, vr):
    group = vr["limited"]  # the bot's role there: announcements only
    member = sandbox.people("vrchat", 1, group=group)[0]
    outcomes = remove_people(VRChatHook(), group, [member])
    assert [(o.status, o.code) for o in outcomes] == [(Status.FAILED, "no-permission")]
    assert "'group-members-remove'" in outcomes[0].detail
    hook = VRChatHook()
    hook.lookup(group, [member])
    with pytest.raises(PermanentPlatformError, match="'group-invites-manage'"):
        hook.cancel_invites(group, [vr["users"][0]])  # as the algorithm would for someone invited there
    assert deletes(sandbox) == []


def test_a_role_without_member_viewall_is_looked_up_per_person_and_cannot_list(sandbox, vr):
    group = vr["limited"]
    people = sandbox.people("vrchat", 5, group=group)
    outcomes = invite_people(VRChatHook(), group, people)
    assert {o.status for o in outcomes} == {Status.ALREADY_MEMBER}  # 5 > the 3 listing pages, yet per person
    gets = [r["path"] for r in sandbox.requests("vrchat") if r["method"] == "GET"]
    assert sum("/members/" in path for path in gets) == 5
    assert not any(path.endswith(("/members", "/invites", "/bans")) for path in gets)
    with pytest.raises(PermanentPlatformError, match="group-members-viewall"):
        VRChatHook().list_group(group)


def test_list_group_shows_members_and_invitations_with_the_protected(sandbox, vr):
    named = vr["named"]
    listed = VRChatHook().list_group(vr["group"])
    assert listed[named["member"]].presence.value == "member" and not listed[named["member"]].protected
    assert listed[named["invited"]].presence.value == "invited"
    assert listed[named["owner"]].protected and listed[named["bot"]].protected
    assert named["banned"] not in listed and named["requested"] not in listed


def test_removing_200_members_costs_one_lookup_and_one_delete_each(sandbox, vr):
    members = sandbox.people("vrchat", 200, group=vr["group"])
    sandbox.limits("vrchat", scale=0)
    hook = VRChatHook()
    hook.auth_headers()
    before = sandbox.request_count("vrchat")
    outcomes = remove_people(hook, vr["group"], members)
    assert {o.status for o in outcomes} == {Status.REMOVED}
    sent = sandbox.requests("vrchat", since=before)
    reads = [r["path"].rsplit("/", 1)[1] for r in sent if r["method"] == "GET"]
    assert reads == [vr["group"], "members", "members", "members"]  # 203 members: 3 pages, all found
    assert len(sent) == 4 + 200


# -- display names -----------------------------------------------------------------------------


def test_display_name_resolves_ignoring_case_through_one_search(sandbox, vr):
    hook = VRChatHook()
    stats = RunStats()
    outcomes = invite_people(hook, vr["group"], ["name:ada LOVELACE"], stats=stats)
    assert [(o.user, o.handle, o.status) for o in outcomes] == [
        (vr["users"][0], "name:ada LOVELACE", Status.INVITED)
    ]
    assert [r["status"] for r in searches(sandbox)] == [200] and stats.handles == 1


def test_shared_display_name_is_ambiguous_with_the_count_and_nobody_else_fails(sandbox, vr):
    twins = sandbox.people_with_handles("vrchat", 2, handles={"display_name": "Same Name"})
    assert [p["handles"] for p in twins] == [{"display_name": "Same Name"}] * 2  # VRChat allows it: no 409
    outcomes = invite_people(VRChatHook(), vr["group"], ["name:Same Name", vr["users"][1]])
    assert [(o.status, o.code) for o in outcomes] == [(Status.FAILED, "ambiguous"), (Status.INVITED, None)]
    assert outcomes[0].detail.startswith("2 VRChat account(s) have this display name")
    assert not any(p["id"] in outcomes[0].detail for p in twins)  # no other people's data
    assert [i["user"] for i in sandbox.invites("vrchat")] == [vr["users"][1]]


def test_fuzzy_search_pages_until_the_exact_name_is_sure(sandbox, vr):
    people = sandbox.people("vrchat", 120)  # Person 1 .. Person 120: "Person 1" matches 32 of them
    sandbox.people_with_handles("vrchat", 100, handles={"display_name": "Person 1x"})
    outcomes = invite_people(VRChatHook(), vr["group"], ["name:Person 1"], dry_run=True)
    assert [(o.user, o.status) for o in outcomes] == [(people[0], Status.WOULD_INVITE)]
    assert [r["status"] for r in searches(sandbox)] == [200, 200]  # 132 fuzzy matches: two pages


def test_a_name_too_common_to_be_sure_of_is_not_acted_on(sandbox, vr):
    sandbox.people_with_handles("vrchat", 1, handles={"display_name": "Zed"})
    sandbox.people_with_handles("vrchat", 1000, handles={"display_name": "Zed Twin"})
    outcomes = invite_people(VRChatHook(), vr["group"], ["name:Zed"])
    assert [(o.status, o.code) for o in outcomes] == [(Status.FAILED, "ambiguous")]
    assert "among the first 1,000 accounts" in outcomes[0].detail
    assert len(searches(sandbox)) == 10 and sandbox.invites("vrchat") == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("email:ada@example.org", "email: is not resolved on vrchat"),
        ("ada@example.org", "vrchat cannot find people by e-mail"),
        ("Ada Lovelace", "name:<"),  # a bare display name is not taken: VRChat ids are never names
        ("name:", "name:<text of 1-256 characters on one line>"),
        ("name:Ada\nLovelace", "name:<text of 1-256 characters on one line>"),
    ],
)
def test_bad_handles_are_input_errors_before_any_request(sandbox, vr, given, expected):
    with pytest.raises(InviteInputError, match=r"^users: expected") as caught:
        invite_people(VRChatHook(), vr["group"], [given])
    assert expected in str(caught.value)
    assert sandbox.requests("vrchat") == []


def test_throttled_search_waits_a_minute_then_resolves(sandbox, vr):
    hook = VRChatHook()
    hook.auth_headers()
    sandbox.limits("vrchat", scale=0.001)
    for _ in range(130):  # the session's budget spent by another client of the same session
        requests.get(f"{vr['api']}/auth", headers=cookie(hook), timeout=5)
    waits: list[float] = []
    fast(hook, waits, then=lambda: sandbox.limits("vrchat", scale=0))
    outcomes = invite_people(hook, vr["group"], ["name:Alan Turing"], dry_run=True)
    assert [(o.user, o.status) for o in outcomes] == [(vr["users"][1], Status.WOULD_INVITE)]
    assert waits and waits[0] >= 60


# -- the sandbox answers as VRChat does ----------------------------------------------------------


def test_sandbox_search_answers_limited_users_and_refuses_big_pages(sandbox, vr):
    headers = cookie(VRChatHook())
    found = requests.get(f"{vr['api']}/users", params={"search": "lovelace"}, headers=headers, timeout=5)
    assert found.status_code == 200 and [u["displayName"] for u in found.json()] == ["Ada Lovelace"]
    assert {"id", "displayName", "developerType", "isFriend", "last_platform", "status", "tags"} <= set(
        found.json()[0]
    )
    assert not {"username", "email", "obfuscatedEmail"} & set(found.json()[0])
    assert requests.get(f"{vr['api']}/users", headers=headers, timeout=5).json() == []  # no search: nothing
    big = requests.get(f"{vr['api']}/users", params={"search": "a", "n": 101}, headers=headers, timeout=5)
    assert big.status_code == 400 and "is much too high" in big.json()["error"]["message"]


def test_sandbox_uninvite_and_kick_replies(sandbox, vr):
    headers = cookie(VRChatHook())
    base = f"{vr['api']}/groups/{vr['group']}"
    stranger = vr["users"][0]
    not_invited = requests.delete(f"{base}/invites/{stranger}", headers=headers, timeout=5)
    assert not_invited.status_code == 400
    assert not_invited.json()["error"]["message"] == "You can't uninvite a user who wasn't invited\u2024"
    assert requests.delete(f"{base}/members/{stranger}", headers=headers, timeout=5).status_code == 403
    kicked = requests.delete(f"{base}/members/{vr['named']['member']}", headers=headers, timeout=5)
    assert kicked.json() == {"success": {"message": "Group member deleted!", "status_code": 200}}
    owner = requests.delete(f"{base}/members/{vr['named']['owner']}", headers=headers, timeout=5)
    assert owner.status_code == 403
    uninvited = requests.delete(f"{base}/invites/{vr['named']['invited']}", headers=headers, timeout=5)
    assert uninvited.status_code == 200
    assert [(r["user"], r["applied"], r["requests"]) for r in sandbox.removals("vrchat")] == [
        (stranger, 0, 2),
        (vr["named"]["member"], 1, 1),
        (vr["named"]["owner"], 0, 1),
        (vr["named"]["invited"], 1, 1),
    ]


def test_sandbox_env_gives_each_newcomer_by_display_name(sandbox, vr):
    env = sandbox.env()["vrchat"]
    assert len(env["handles"]) == len(env["users"]) and env["handles"][0] == "name:Ada Lovelace"
