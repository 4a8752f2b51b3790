"""PlayFab hook, operator and sandbox over real HTTP against the sandbox."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import requests

from airflow_invites.core.adapter import InviteRequest
from airflow_invites.core.errors import InviteInputError, PlatformAuthError
from airflow_invites.core.membership import invite_people
from airflow_invites.core.outcome import Status
from airflow_invites.hooks.playfab import PlayFabHook
from airflow_invites.operators.playfab import PlayFabGroupInviteOperator
from airflow_invites.sandbox.platforms.playfab import PlayFabSandbox

DAY = 86_400


@pytest.fixture
def world(sandbox: Any) -> PlayFabSandbox:
    """The sandbox's PlayFab state, in this process (for ids and the clock/token knobs)."""
    platform = sandbox.server.config.app.state.sandbox.platforms["playfab"]
    assert isinstance(platform, PlayFabSandbox)
    return platform


@pytest.fixture
def env(sandbox: Any) -> dict[str, Any]:
    return dict(sandbox.env()["playfab"])


def statuses(outcomes: list[Any]) -> list[Status]:
    return [o.status for o in outcomes]


def calls(sandbox: Any, name: str | None = None) -> list[dict[str, Any]]:
    rows = sandbox.requests("playfab")
    return [r for r in rows if name is None or r["path"].endswith(f"/{name}")]


def fast_hook(**kwargs: Any) -> PlayFabHook:
    hook = PlayFabHook(**kwargs)
    hook.http.sleep = lambda seconds: None  # type: ignore[method-assign]
    return hook


def api(
    sandbox: Any, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> requests.Response:
    """A raw PlayFab call, as an SDK would send it."""
    return requests.post(
        f"{sandbox.base_url}/playfab/{path}?sdk=PythonSdk-0.0.201014",
        json=body,
        headers={"X-PlayFabSDK": "PythonSdk-0.0.201014", **(headers or {})},
        timeout=5,
    )


def title_token(sandbox: Any, world: PlayFabSandbox) -> dict[str, str]:
    reply = api(sandbox, "Authentication/GetEntityToken", {}, {"X-SecretKey": world.secret_key})
    return {"X-EntityToken": reply.json()["data"]["EntityToken"]}


def group_key(group: str) -> dict[str, str]:
    return {"Id": group, "Type": "group"}


def player_key(player: str) -> dict[str, str]:
    return {"Id": player, "Type": "title_player_account"}


# -- invite, look-up, idempotency ------------------------------------------------------------------


def test_invite_then_already_invited_sends_no_second_invite(sandbox, env):
    users = env["users"][:2]
    first = invite_people(PlayFabHook(), env["group"], users)
    assert statuses(first) == [Status.INVITED, Status.INVITED]
    before = len(calls(sandbox, "InviteToGroup"))
    second = invite_people(PlayFabHook(), env["group"], users)
    assert statuses(second) == [Status.ALREADY_INVITED, Status.ALREADY_INVITED]
    assert "invitation pending (role members" in second[0].detail
    assert len(calls(sandbox, "InviteToGroup")) == before == 2  # zero invite requests the second time
    rows = sorted((i["user"], i["applied"], i["requests"]) for i in sandbox.invites("playfab"))
    assert rows == sorted((u, 1, 1) for u in users)


def test_accepted_invitation_is_already_member(sandbox, env, world):
    user = env["users"][0]
    invite_people(PlayFabHook(), env["group"], [user], request=InviteRequest(extra={"role_id": "admins"}))
    sandbox.accept("playfab", env["group"], user)
    again = invite_people(PlayFabHook(), env["group"], [user, world.member])
    assert statuses(again) == [Status.ALREADY_MEMBER, Status.ALREADY_MEMBER]
    assert again[0].detail == "member in role admins"
    assert len(calls(sandbox, "InviteToGroup")) == 1


def test_bulk_with_one_lookup_per_group(sandbox, env, world):
    people = sandbox.people("playfab", 40)
    invite_people(PlayFabHook(), env["group"], people[:10])
    before = len(calls(sandbox))
    hook = PlayFabHook()
    outcomes = {group: invite_people(hook, group, people) for group in (env["group"], world.second_group_id)}
    run = calls(sandbox)[before:]
    names = [r["path"].rsplit("/", 1)[1] for r in run]
    assert statuses(outcomes[env["group"]]) == [Status.ALREADY_INVITED] * 10 + [Status.INVITED] * 30
    assert statuses(outcomes[world.second_group_id]) == [Status.INVITED] * 40
    assert names.count("GetEntityToken") == 1
    assert names.count("ListGroupMembers") == names.count("ListGroupInvitations") == 2  # one per group
    assert names.count("InviteToGroup") == 70
    assert all(i["applied"] == 1 for i in sandbox.invites("playfab"))
    assert len(run) / 70 == pytest.approx(75 / 70)  # requests per invited person


def test_dry_run_sends_no_write(sandbox, env):
    outcomes = invite_people(PlayFabHook(), env["group"], env["users"], dry_run=True)
    assert set(statuses(outcomes)) == {Status.WOULD_INVITE}
    assert calls(sandbox, "InviteToGroup") == []


def test_character_and_entity_key_forms(sandbox, env, world):
    users = [f"character:{world.character}", {"Id": env["users"][1], "Type": "title_player_account"}]
    outcomes = invite_people(PlayFabHook(), env["group"], users)
    assert [(o.user, o.status) for o in outcomes] == [
        (f"character:{world.character}", Status.INVITED),
        (env["users"][1], Status.INVITED),
    ]
    again = invite_people(PlayFabHook(), env["group"], users)
    assert statuses(again) == [Status.ALREADY_INVITED] * 2


# -- the documented error codes -------------------------------------------------------------------


@pytest.mark.parametrize("report_errors_as_success", [False, True])
def test_blocked_and_application_codes_through_the_algorithm(sandbox, env, world, report_errors_as_success):
    hook = PlayFabHook()
    if report_errors_as_success:
        hook.http.session.headers["X-ReportErrorAsSuccess"] = "true"
    users = [world.blocked_player, world.applicant, env["users"][0]]
    outcomes = invite_people(hook, env["group"], users)
    assert statuses(outcomes) == [Status.FAILED, Status.JOINED, Status.INVITED]
    assert outcomes[0].code == "EntityBlockedByGroup" and "1357" in outcomes[0].detail
    assert outcomes[1].code == "OutstandingApplicationAcceptedInstead"
    is_member = api(
        sandbox,
        "Group/IsMember",
        {"Group": group_key(env["group"]), "Entity": player_key(world.applicant)},
        title_token(sandbox, world),
    )
    assert is_member.json()["data"] == {"IsMember": True}
    statuses_seen = {r["status"] for r in calls(sandbox, "InviteToGroup")}
    assert statuses_seen == ({200} if report_errors_as_success else {200, 400})


def test_already_member_race_is_1359(sandbox, env, world):
    """Someone adds the player between our look-up and our invite: PlayFab answers 1359."""
    hook, user = PlayFabHook(), env["users"][0]
    lookup = hook.lookup

    def lookup_then_added(group: str, users: Any) -> Any:
        found = lookup(group, users)
        added = {"Group": group_key(group), "Members": [player_key(user)]}
        api(sandbox, "Group/AddMembers", added, title_token(sandbox, world))
        return found

    hook.lookup = lookup_then_added  # type: ignore[method-assign]
    result = invite_people(hook, env["group"], [user])
    assert result[0].status is Status.ALREADY_MEMBER
    assert result[0].code == "EntityIsAlreadyMember"


def test_auto_accept_false_invites_an_applicant(sandbox, env, world):
    request = InviteRequest(extra={"auto_accept_outstanding_application": False})
    outcomes = invite_people(PlayFabHook(), env["group"], [world.applicant], request=request)
    assert statuses(outcomes) == [Status.INVITED]
    listed = api(
        sandbox,
        "Group/ListGroupApplications",
        {"Group": group_key(env["group"])},
        title_token(sandbox, world),
    )
    assert [a["Entity"]["Key"]["Id"] for a in listed.json()["data"]["Applications"]] == [world.applicant]


def test_missing_role_1358_is_permanent_and_named(sandbox, env):
    request = InviteRequest(extra={"role_id": "officers"})
    outcomes = invite_people(PlayFabHook(), env["group"], env["users"][:3], request=request)
    assert statuses(outcomes) == [Status.FAILED] * 3
    assert all("'officers' does not exist" in o.detail and o.code == "RoleDoesNotExist" for o in outcomes)
    # the first refusal stops the batch (only invites already in flight in other threads were sent)
    assert 1 <= len(calls(sandbox, "InviteToGroup")) <= PlayFabHook.write_concurrency
    assert sandbox.invites("playfab") and all(i["applied"] == 0 for i in sandbox.invites("playfab"))


def test_master_account_id_is_explained(sandbox, env, world):
    master = world.masters[env["users"][0]]
    outcomes = invite_people(PlayFabHook(), env["group"], [master])
    assert statuses(outcomes) == [Status.FAILED]
    assert outcomes[0].code == "ProfileDoesNotExist"
    assert "GetTitlePlayersFromMasterPlayerAccountIds" in outcomes[0].detail
    with pytest.raises(InviteInputError, match="master_player_account"):
        invite_people(PlayFabHook(), env["group"], [f"master_player_account:{master}"])


def test_unknown_group_fails_everyone_without_invites(sandbox, env):
    outcomes = invite_people(PlayFabHook(), "0123456789ABCDEF", env["users"][:2])
    assert statuses(outcomes) == [Status.FAILED] * 2
    assert "group not found" in outcomes[0].detail
    assert calls(sandbox, "InviteToGroup") == []


# -- the entity token --------------------------------------------------------------------------------


def test_token_expiry_mid_batch_renews_once(sandbox, env, world):
    people = sandbox.people("playfab", 12)
    hook = PlayFabHook()
    # after the first invite, every token issued so far is past TokenExpiration
    sandbox.after_first_invite(hook, lambda: world.advance(DAY + 60))
    outcomes = invite_people(hook, env["group"], people)
    assert statuses(outcomes) == [Status.INVITED] * 12
    assert len(calls(sandbox, "GetEntityToken")) == 2  # one renewal, shared by the invite threads
    invite_statuses = [r["status"] for r in calls(sandbox, "InviteToGroup")]
    assert invite_statuses.count(200) == 12 and 1 <= invite_statuses.count(401) <= hook.write_concurrency
    assert [i["applied"] for i in sandbox.invites("playfab")] == [1] * 12


def test_token_renewed_before_expiration(sandbox, env):
    hook = PlayFabHook()
    hook.check_connection()
    assert hook._token_renew_at is not None and hook._token_expires is not None
    assert (hook._token_expires - hook._token_renew_at).total_seconds() == 3600
    late = hook._token_renew_at
    hook._now = lambda: late  # type: ignore[method-assign]
    invite_people(hook, env["group"], env["users"][:1])
    assert len(calls(sandbox, "GetEntityToken")) == 2
    assert {r["status"] for r in calls(sandbox)} == {200}  # renewed ahead: no 401 on the way


def test_token_refused_twice_is_an_auth_error(sandbox, env, world):
    world.token_lifetime = world.token_lifetime * 0  # every token is born expired
    outcomes = invite_people(fast_hook(), env["group"], env["users"][:1])
    assert statuses(outcomes) == [Status.FAILED]
    assert "credentials refused" in outcomes[0].detail and outcomes[0].code == "EntityTokenExpired"
    # the first token, one renewal ahead of time (it is already due) and one after the 401: no loop
    assert len(calls(sandbox, "GetEntityToken")) == 3
    assert [r["status"] for r in calls(sandbox, "ListGroupMembers")] == [401, 401]


def test_wrong_secret_key_is_a_clear_auth_error(sandbox, env, monkeypatch):
    conn = json.loads(sandbox.connection_env("playfab"))
    conn["password"] = "X" + conn["password"][1:]
    monkeypatch.setenv("AIRFLOW_CONN_PLAYFAB_DEFAULT", json.dumps(conn))
    ok, message = PlayFabHook().test_connection()
    assert not ok and "re-authorise the connection playfab_default" in message
    outcomes = invite_people(PlayFabHook(), env["group"], env["users"][:1])
    assert statuses(outcomes) == [Status.FAILED] and outcomes[0].code == "NotAuthenticated"
    assert len(calls(sandbox, "GetEntityToken")) == 2  # one per hook, never retried


def test_title_id_that_does_not_match_the_key(sandbox, monkeypatch):
    conn = json.loads(sandbox.connection_env("playfab"))
    conn["login"] = "ABCD"
    monkeypatch.setenv("AIRFLOW_CONN_PLAYFAB_DEFAULT", json.dumps(conn))
    with pytest.raises(PlatformAuthError, match="belongs to title"):
        PlayFabHook().check_connection()


def test_default_base_url_is_the_titles_host(monkeypatch):
    conn = {"conn_type": "playfab", "login": "a1b2c", "password": "secret-key"}
    monkeypatch.setenv("AIRFLOW_CONN_PF_PROD", json.dumps(conn))
    assert PlayFabHook(conn_id="pf_prod").base_url() == "https://A1B2C.playfabapi.com"


# -- throttling and transient faults ------------------------------------------------------------------


@pytest.mark.parametrize("report_errors_as_success", [False, True])
def test_throttling_waits_retry_after_seconds(sandbox, env, report_errors_as_success):
    sandbox.faults("playfab", rate=1.0, kinds=["throttle"], throttle_seconds=3)
    hook = PlayFabHook()
    if report_errors_as_success:
        hook.http.session.headers["X-ReportErrorAsSuccess"] = "true"
    waits: list[float] = []
    hook.http.sleep = lambda s: (sandbox.clear_faults(), waits.append(s))  # type: ignore[method-assign]
    outcomes = invite_people(hook, env["group"], env["users"][:1])
    assert statuses(outcomes) == [Status.INVITED]
    assert len(waits) == 1 and 3.0 <= waits[0] <= 3.5  # PlayFab's retryAfterSeconds, plus jitter
    throttled = [r for r in calls(sandbox) if r["status"] == (200 if report_errors_as_success else 429)]
    assert throttled


@pytest.mark.parametrize("kind", ["server_error", "reset", "truncated"])
def test_transient_fault_then_success(sandbox, env, kind):
    sandbox.faults("playfab", rate=1.0, kinds=[kind])
    hook = PlayFabHook()
    hook.http.sleep = lambda s: sandbox.clear_faults()  # type: ignore[method-assign]
    outcomes = invite_people(hook, env["group"], env["users"][:2])
    assert statuses(outcomes) == [Status.INVITED, Status.INVITED]
    assert [i["applied"] for i in sandbox.invites("playfab")] == [1, 1]


def test_lost_invite_reply_is_looked_up_not_resent(sandbox, env):
    hook = PlayFabHook()
    sandbox.lose_next_invite_reply(hook, "playfab")
    outcomes = invite_people(hook, env["group"], env["users"][:1])
    assert statuses(outcomes) == [Status.INVITED] and "lost reply" in outcomes[0].detail
    assert [(r["applied"], r["requests"]) for r in sandbox.invites("playfab")] == [(1, 1)]


# -- input checked before any request ----------------------------------------------------------------

GOOD = "36163DA3783B0C8A"


@pytest.mark.parametrize(
    ("group", "users", "extra", "field"),
    [
        ("7e1b5c2a9f3d4e60", [GOOD], {}, "group"),
        ("7E1B5C2A9F3D4E6", [GOOD], {}, "group"),
        ("7E1B5C2A9F3D4E60", ["36163da3783b0c8a"], {}, "users"),
        ("7E1B5C2A9F3D4E60", ["36163DA3783B0C8"], {}, "users"),
        ("7E1B5C2A9F3D4E60", [f"Title_Player_Account:{GOOD}"], {}, "users"),
        ("7E1B5C2A9F3D4E60", [f"group:{GOOD}"], {}, "users"),
        ("7E1B5C2A9F3D4E60", [f"master_player_account:{GOOD}"], {}, "users"),
        ("7E1B5C2A9F3D4E60", [{"Id": GOOD, "Type": "title"}], {}, "users"),
        ("7E1B5C2A9F3D4E60", [GOOD, GOOD], {}, "users"),
        ("7E1B5C2A9F3D4E60", [GOOD], {"role_id": "officers!"}, "role_id"),
        ("7E1B5C2A9F3D4E60", [GOOD], {"role_id": "r" * 65}, "role_id"),
        ("7E1B5C2A9F3D4E60", [GOOD], {"role_id": "new role"}, "role_id"),
        ("7E1B5C2A9F3D4E60", [GOOD], {"custom_tags": {f"k{i}": "v" for i in range(11)}}, "custom_tags"),
        ("7E1B5C2A9F3D4E60", [GOOD], {"custom_tags": {"k" * 65: "v"}}, "custom_tags"),
        ("7E1B5C2A9F3D4E60", [GOOD], {"custom_tags": {"k": "v" * 129}}, "custom_tags"),
        ("7E1B5C2A9F3D4E60", [GOOD], {"custom_tags": {"k": 1}}, "custom_tags"),
        ("7E1B5C2A9F3D4E60", [GOOD], {"custom_tags": "k=v"}, "custom_tags"),
        ("7E1B5C2A9F3D4E60", [GOOD], {"auto_accept_outstanding_application": "yes"}, "auto_accept"),
    ],
)
def test_bad_input_fails_before_any_request(sandbox, group, users, extra, field):
    with pytest.raises(InviteInputError) as caught:
        invite_people(PlayFabHook(), group, users, request=InviteRequest(extra=extra))
    assert str(caught.value).startswith(field)
    assert calls(sandbox) == []


def test_good_options_reach_playfab(sandbox, env):
    extra = {"role_id": "admins", "custom_tags": {"dag_run": "manual__2024"}}
    outcomes = invite_people(
        PlayFabHook(), env["group"], env["users"][:1], request=InviteRequest(extra=extra)
    )
    assert statuses(outcomes) == [Status.INVITED] and "invited as admins" in outcomes[0].detail


# -- secrets ----------------------------------------------------------------------------------------------


def test_no_secret_key_or_token_in_logs_or_outcomes(sandbox, env, world, caplog, capsys, monkeypatch):
    caplog.set_level(logging.DEBUG)
    hook = fast_hook()
    send = hook.send_invites

    def send_then_expire(group, users, request):
        result = send(group, users, request)
        world.advance(DAY + 60)
        return result

    hook.send_invites = send_then_expire  # type: ignore[method-assign]
    sandbox.faults("playfab", rate=0.3, kinds=["throttle", "server_error"], throttle_seconds=0, seed=3)
    outcomes = invite_people(hook, env["group"], [*env["users"][:3], world.blocked_player, world.applicant])
    sandbox.clear_faults()
    conn = json.loads(sandbox.connection_env("playfab"))
    conn["password"] = conn["password"][::-1]
    monkeypatch.setenv("AIRFLOW_CONN_PLAYFAB_DEFAULT", json.dumps(conn))
    failed = invite_people(fast_hook(), env["group"], env["users"][3:4])
    text = caplog.text + "".join(capsys.readouterr()) + json.dumps([o.to_dict() for o in outcomes + failed])
    secrets = sandbox.secrets()
    assert world.secret_key in secrets and len(world.tokens) >= 2
    for secret in [*secrets, conn["password"]]:
        assert secret not in text
    assert all(token in hook.scrubber for token in world.tokens)


# -- operator ---------------------------------------------------------------------------------------------


class FakeTI:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def test_operator_with_platform_options(sandbox, env, world):
    op = PlayFabGroupInviteOperator(
        task_id="invite",
        group=env["group"],
        users=[world.applicant, env["users"][0]],
        role_id="members",
        custom_tags='{"source": "airflow"}',
        auto_accept_outstanding_application="false",
        message="Welcome!",
    )
    ti = FakeTI()
    data = op.execute({"ti": ti})
    assert [d["status"] for d in data] == ["invited", "invited"]
    assert ti.xcom["outcomes"] == data
    assert {"role_id", "custom_tags", "auto_accept_outstanding_application"} <= set(op.template_fields)


def test_operator_with_common_arguments_only(sandbox, env):
    op = PlayFabGroupInviteOperator(task_id="invite", group=env["group"], users=",".join(env["users"][:2]))
    data = op.execute({"ti": FakeTI()})
    assert [d["status"] for d in data] == ["invited", "invited"]


# -- the sandbox behaves as PlayFab -------------------------------------------------------------------------


def test_sandbox_envelopes_and_auth_errors(sandbox, env, world):
    token = title_token(sandbox, world)
    ok = api(sandbox, "Group/GetGroup", {"GroupName": "Onboarding Guild"}, token)
    assert ok.status_code == 200
    body = ok.json()
    assert (body["code"], body["status"], body["data"]["MemberRoleId"]) == (200, "OK", "members")
    assert body["data"]["Group"]["Id"] == env["group"]
    cases = [
        ({}, 401, "NotAuthenticated", 1074),
        (
            {"X-SecretKey": world.secret_key},
            401,
            "NotAuthenticated",
            1074,
        ),  # the key is not a group credential
        ({"X-EntityToken": "garbage"}, 401, "EntityTokenInvalid", 1335),
    ]
    for headers, code, error, number in cases:
        reply = api(sandbox, "Group/ListGroupMembers", {"Group": group_key(env["group"])}, headers)
        assert (reply.status_code, reply.json()["error"], reply.json()["errorCode"]) == (code, error, number)
        assert reply.json()["status"] == "Unauthorized"
    world.advance(DAY)
    expired = api(sandbox, "Group/ListGroupMembers", {"Group": group_key(env["group"])}, token)
    assert (expired.status_code, expired.json()["errorCode"]) == (401, 1336)
    as_success = api(
        sandbox,
        "Group/ListGroupMembers",
        {"Group": group_key(env["group"])},
        {**token, "X-ReportErrorAsSuccess": "true"},
    )
    assert as_success.status_code == 200 and as_success.json()["code"] == 401
    unknown = api(sandbox, "Group/NoSuchCall", {}, token)
    assert unknown.status_code == 404 and unknown.json()["status"] == "NotFound"
    form = requests.post(f"{sandbox.base_url}/playfab/Group/GetGroup", data="{}", headers=token, timeout=5)
    assert (form.status_code, form.json()["errorCode"]) == (400, 1144)


def test_sandbox_invite_order_and_related_calls(sandbox, env, world):
    token = title_token(sandbox, world)
    group = group_key(env["group"])
    newcomer = player_key(env["users"][0])
    missing = api(sandbox, "Group/InviteToGroup", {"Group": group}, token).json()
    assert (missing["errorCode"], missing["errorDetails"]) == (
        1000,
        {"Entity": ["The Entity field is required."]},
    )
    first = api(sandbox, "Group/InviteToGroup", {"Group": group, "Entity": newcomer}, token).json()["data"]
    again = api(sandbox, "Group/InviteToGroup", {"Group": group, "Entity": newcomer}, token).json()["data"]
    assert (
        first == again and first["RoleId"] == "members" and first["InvitedByEntity"]["Key"]["Type"] == "title"
    )
    invitations = api(sandbox, "Group/ListGroupInvitations", {"Group": group}, token).json()["data"]
    assert [i["InvitedEntity"]["Key"]["Id"] for i in invitations["Invitations"]] == [newcomer["Id"]]
    # a player token without an admin role may not invite
    player = api(sandbox, "Authentication/GetEntityToken", {"Entity": newcomer}, token).json()["data"]
    denied = api(
        sandbox,
        "Group/InviteToGroup",
        {"Group": group, "Entity": player_key(env["users"][1])},
        {"X-EntityToken": player["EntityToken"]},
    )
    assert (denied.status_code, denied.json()["errorCode"]) == (403, 1089)
    # the title accepts on the player's behalf; a second accept finds them a member
    accept = {"Group": group, "Entity": newcomer}
    assert api(sandbox, "Group/AcceptGroupInvitation", accept, token).json() == {
        "code": 200,
        "status": "OK",
        "data": {},
    }
    assert api(sandbox, "Group/AcceptGroupInvitation", accept, token).json()["errorCode"] == 1359
    membership = api(sandbox, "Group/ListMembership", {"Entity": newcomer}, token).json()["data"]["Groups"]
    assert [(g["GroupName"], g["Roles"][0]["RoleId"]) for g in membership] == [
        ("Onboarding Guild", "members")
    ]
    assert api(sandbox, "Group/IsMember", {**accept, "RoleId": "nope"}, token).json()["errorCode"] == 1358
    # rescind: 1361 when there is none; invitations expire after the sandbox's 7 days
    other = {"Group": group, "Entity": player_key(env["users"][2])}
    assert api(sandbox, "Group/RemoveGroupInvitation", other, token).json()["errorCode"] == 1361
    api(sandbox, "Group/InviteToGroup", other, token)
    assert api(sandbox, "Group/RemoveGroupInvitation", other, token).json()["data"] == {}
    api(sandbox, "Group/InviteToGroup", other, token)
    applied = api(sandbox, "Group/ApplyToGroup", other, token).json()
    assert applied["errorCode"] == 1363  # the outstanding invitation was accepted instead
    late = {"Group": group, "Entity": player_key(env["users"][3])}
    api(sandbox, "Group/InviteToGroup", late, token)
    world.advance(8 * DAY)
    token = title_token(sandbox, world)
    assert api(sandbox, "Group/ListGroupInvitations", {"Group": group}, token).json()["data"] == {
        "Invitations": []
    }
