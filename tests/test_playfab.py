"""PlayFab hook, operator and sandbox over real HTTP against the sandbox."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import requests

from airflow_invites.core.adapter import InviteRequest
from airflow_invites.core.errors import InviteInputError, PlatformAuthError
from airflow_invites.core.membership import invite_people, remove_people
from airflow_invites.core.outcome import Status
from airflow_invites.core.roster import Mode, sync_roster
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


def after_first_lookup(hook: PlayFabHook, action: Any) -> None:
    """Call ``action()`` once, right after the hook's first look-up returns (a change the look-up missed)."""
    lookup = hook.lookup

    def lookup_then_act(group: str, users: Any) -> Any:
        found = lookup(group, users)
        hook.lookup = lookup  # type: ignore[method-assign]
        action()
        return found

    hook.lookup = lookup_then_act  # type: ignore[method-assign]


def title_token(sandbox: Any, world: PlayFabSandbox) -> dict[str, str]:
    reply = api(sandbox, "Authentication/GetEntityToken", {}, {"X-SecretKey": world.secret_key})
    return {"X-EntityToken": reply.json()["data"]["EntityToken"]}


def group_key(group: str) -> dict[str, str]:
    return {"Id": group, "Type": "group"}


def player_key(player: str) -> dict[str, str]:
    return {"Id": player, "Type": "title_player_account"}


# -- invite, look-up, idempotency ------------------------------------------------------------------


def test_accepted_invitation_is_already_member(sandbox, env, world):
    """A re-invite would answer 200 (no "already invited" code on PlayFab): the look-up decides."""
    user, pending = env["users"][:2]
    invite_people(PlayFabHook(), env["group"], [user], request=InviteRequest(extra={"role_id": "admins"}))
    invite_people(PlayFabHook(), env["group"], [pending])
    sandbox.accept("playfab", env["group"], user)
    again = invite_people(PlayFabHook(), env["group"], [user, world.member, pending])
    assert statuses(again) == [Status.ALREADY_MEMBER, Status.ALREADY_MEMBER, Status.ALREADY_INVITED]
    assert again[0].detail == "member in role admins"
    assert "invitation pending (role members" in again[2].detail
    assert len(calls(sandbox, "InviteToGroup")) == 2


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
    added = {"Group": group_key(env["group"]), "Members": [player_key(user)]}
    after_first_lookup(hook, lambda: api(sandbox, "Group/AddMembers", added, title_token(sandbox, world)))
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


# -- removal: RemoveGroupInvitation, RemoveMembers ---------------------------------------------------


def seat(sandbox: Any, env: dict[str, Any], members: int, invited: int) -> tuple[list[str], list[str]]:
    """New players: ``members`` of the group already, ``invited`` with a pending invitation."""
    in_group = sandbox.people("playfab", members, env["group"]) if members else []
    pending = sandbox.people("playfab", invited) if invited else []
    if pending:
        invite_people(PlayFabHook(), env["group"], pending)
    return in_group, pending


def test_remove_members_and_cancel_invitations_once(sandbox, env, world):
    members, invited = seat(sandbox, env, 3, 2)
    before = len(calls(sandbox))
    outcomes = remove_people(PlayFabHook(), env["group"], [*members, *invited, world.admin])
    assert statuses(outcomes) == [Status.REMOVED] * 3 + [Status.INVITE_CANCELLED] * 2 + [Status.FAILED]
    assert outcomes[5].code == "protected" and "admin role 'admins'" in outcomes[5].detail  # the owner
    run = [r["path"].rsplit("/", 1)[1] for r in calls(sandbox)[before:]]
    assert run.count("RemoveMembers") == 1  # one call for all three members
    assert run.count("RemoveGroupInvitation") == 2  # PlayFab withdraws one invitation per call
    assert run.count("GetGroup") == 1  # the admin role, asked once
    left = sandbox.members("playfab", env["group"])
    assert not set(members + invited) & set(left["members"] + left["invited"])
    assert sorted((r["user"], r["applied"], r["requests"]) for r in sandbox.removals("playfab")) == sorted(
        (u, 1, 1) for u in members + invited
    )
    before = len(calls(sandbox))
    again = remove_people(PlayFabHook(), env["group"], [*members, *invited])
    assert statuses(again) == [Status.ALREADY_ABSENT] * 5
    assert world.admin in sandbox.members("playfab", env["group"])["members"]
    assert {r["path"].rsplit("/", 1)[1] for r in calls(sandbox)[before:]} <= {
        "GetEntityToken",
        "ListGroupMembers",
        "ListGroupInvitations",
    }


def test_removal_of_200_members_in_one_call(sandbox, env):
    members, _ = seat(sandbox, env, 200, 0)
    outcomes = remove_people(PlayFabHook(), env["group"], members)
    assert statuses(outcomes) == [Status.REMOVED] * 200
    names = [r["path"].rsplit("/", 1)[1] for r in calls(sandbox)]
    # token, members, admin role, one RemoveMembers, and the look-up that confirms it (its reply names nobody)
    assert names == [
        "GetEntityToken",
        "ListGroupMembers",
        "GetGroup",
        "RemoveMembers",
        "ListGroupMembers",
        "ListGroupInvitations",
    ]
    assert all((r["applied"], r["requests"]) == (1, 1) for r in sandbox.removals("playfab"))


def test_someone_leaving_mid_run_does_not_fail_the_batch(sandbox, env, world):
    """RemoveMembers is refused as a whole when one of its list is no member (1331): all are checked again."""
    members, _ = seat(sandbox, env, 3, 0)
    hook = PlayFabHook()
    leave = {"Group": group_key(env["group"]), "Members": [player_key(members[0])]}
    after_first_lookup(hook, lambda: api(sandbox, "Group/RemoveMembers", leave, title_token(sandbox, world)))
    outcomes = remove_people(hook, env["group"], members)
    assert statuses(outcomes) == [Status.ALREADY_ABSENT, Status.REMOVED, Status.REMOVED]
    assert [r["status"] for r in calls(sandbox, "RemoveMembers")] == [200, 400, 200]
    assert sandbox.members("playfab", env["group"])["members"] == [world.admin, world.member]


def test_invitation_gone_before_the_cancel_is_already_absent(sandbox, env, world):
    _, invited = seat(sandbox, env, 0, 1)
    hook = PlayFabHook()
    after_first_lookup(hook, lambda: world.advance(8 * DAY))  # the invitation expires (the token too)
    outcomes = remove_people(hook, env["group"], invited)
    assert statuses(outcomes) == [Status.ALREADY_ABSENT]
    statuses_seen = [r["status"] for r in calls(sandbox, "RemoveGroupInvitation")]
    assert statuses_seen == [401, 400]  # a new token, then 1361


def test_lost_cancel_and_removal_replies_are_looked_up_not_resent(sandbox, env):
    members, invited = seat(sandbox, env, 2, 1)
    hook = PlayFabHook()
    sandbox.lose_next_write_reply(hook, "playfab", "remove_members")
    sandbox.lose_next_write_reply(hook, "playfab", "cancel_invites")
    outcomes = remove_people(hook, env["group"], [*members, *invited])
    assert statuses(outcomes) == [Status.REMOVED, Status.REMOVED, Status.INVITE_CANCELLED]
    assert "confirmed by a look-up after a lost reply" in outcomes[2].detail
    assert all((r["applied"], r["requests"]) == (1, 1) for r in sandbox.removals("playfab"))


def test_removal_through_transient_faults(sandbox, env):
    members, invited = seat(sandbox, env, 5, 5)
    sandbox.faults(
        "playfab", rate=0.3, kinds=["throttle", "server_error", "reset"], throttle_seconds=0, seed=3
    )
    outcomes = remove_people(fast_hook(), env["group"], [*members, *invited])
    sandbox.clear_faults()
    assert statuses(outcomes) == [Status.REMOVED] * 5 + [Status.INVITE_CANCELLED] * 5
    assert {r["status"] for r in calls(sandbox)} > {200}  # faults were met on the way
    assert all(r["applied"] == 1 for r in sandbox.removals("playfab"))


# -- people by handle: Admin/GetUserAccountInfo -------------------------------------------------------------


def test_players_found_by_email_and_username(sandbox, env):
    ann = sandbox.people_with_handles("playfab", 1, handles={"email": "Ann@Example.test", "username": "ann"})[
        0
    ]
    bob = sandbox.people_with_handles("playfab", 1, handles={"username": "bob2024"})[0]
    users = ["ann@example.test", "username:BOB2024", env["handles"][0], "email:nobody@example.test"]
    outcomes = invite_people(PlayFabHook(), env["group"], users)
    assert [(o.user, o.status) for o in outcomes[:3]] == [
        (ann["id"], Status.INVITED),
        (bob["id"], Status.INVITED),
        (env["users"][0], Status.INVITED),
    ]
    assert (outcomes[3].status, outcomes[3].code, outcomes[3].user) == (
        Status.FAILED,
        "not_found",
        "email:nobody@example.test",
    )
    assert "no PlayFab account" in outcomes[3].detail and "AccountNotFound" in outcomes[3].detail
    assert len(calls(sandbox, "GetUserAccountInfo")) == 4  # one per handle: PlayFab has no batch look-up
    assert len(calls(sandbox, "InviteToGroup")) == 3
    again = invite_people(PlayFabHook(), env["group"], users[:3])
    assert statuses(again) == [Status.ALREADY_INVITED] * 3


def test_removal_by_handle(sandbox, env):
    person = sandbox.people_with_handles("playfab", 1, env["group"], handles={"username": "leaver"})[0]
    outcomes = remove_people(PlayFabHook(), env["group"], ["username:leaver"])
    assert [(o.user, o.handle, o.status) for o in outcomes] == [
        (person["id"], "username:leaver", Status.REMOVED)
    ]


def test_authoritative_roster_sync_lists_the_group(sandbox, env, world):
    """``list_group``: members by role (the admin protected) and pending invitations, in two listings."""
    stays, leaves = seat(sandbox, env, 2, 0)[0], seat(sandbox, env, 1, 1)
    roster = [*stays, env["users"][0]]
    outcomes, drift = sync_roster(
        PlayFabHook(), env["group"], roster, mode=Mode.AUTHORITATIVE, keep=[world.member]
    )
    assert sorted(drift.to_remove) == sorted(leaves[0] + leaves[1]) and drift.to_add == [env["users"][0]]
    assert sorted(drift.protected) == sorted(
        [f"{world.admin} (holds the group's admin role 'admins')", f"{world.member} (on the keep list)"]
    )
    by_user = {o.user: o.status for o in outcomes}
    assert by_user[env["users"][0]] is Status.INVITED and by_user[leaves[0][0]] is Status.REMOVED
    assert by_user[leaves[1][0]] is Status.INVITE_CANCELLED
    left = sandbox.members("playfab", env["group"])
    assert sorted(left["members"]) == sorted([world.admin, world.member, *stays])


def test_api_policy_refusing_the_lookup_is_named(sandbox, env, world):
    world.admin_api_allowed = False
    outcomes = invite_people(PlayFabHook(), env["group"], ["email:ann@example.test", env["users"][1]])
    assert statuses(outcomes) == [Status.FAILED, Status.INVITED]  # the id given is still invited
    assert outcomes[0].code == "NotAuthorizedByTitle"
    assert "/Admin/GetUserAccountInfo" in outcomes[0].detail and "API Features" in outcomes[0].detail


def test_refused_secret_key_on_the_lookup_is_an_auth_error(sandbox, env, monkeypatch):
    conn = json.loads(sandbox.connection_env("playfab"))
    conn["password"] = conn["password"][::-1]
    monkeypatch.setenv("AIRFLOW_CONN_PLAYFAB_DEFAULT", json.dumps(conn))
    outcomes = invite_people(PlayFabHook(), env["group"], [env["handles"][0]])
    assert statuses(outcomes) == [Status.FAILED] and outcomes[0].code == "NotAuthenticated"
    assert "refused the title secret key" in outcomes[0].detail
    assert len(calls(sandbox, "GetUserAccountInfo")) == 1  # never retried


@pytest.mark.parametrize("kind", ["throttle", "reset", "truncated"])
def test_faults_during_resolution_are_retried(sandbox, env, kind):
    sandbox.faults("playfab", rate=1.0, kinds=[kind], throttle_seconds=0)
    hook = PlayFabHook()
    hook.http.sleep = lambda s: sandbox.clear_faults()  # type: ignore[method-assign]
    outcomes = invite_people(hook, env["group"], env["handles"][:1])
    assert [(o.user, o.status) for o in outcomes] == [(env["users"][0], Status.INVITED)]
    assert [r["status"] for r in calls(sandbox, "GetUserAccountInfo")][-1] == 200


def test_handles_are_unique_on_playfab(sandbox):
    sandbox.people_with_handles("playfab", 1, handles={"email": "dup@example.test", "username": "dup"})
    for handles in ({"email": "DUP@example.test"}, {"username": "DUP"}):
        with pytest.raises(requests.HTTPError) as refused:
            sandbox.people_with_handles("playfab", 1, handles=handles)
        assert refused.value.response.status_code == 409
    with pytest.raises(requests.HTTPError):
        sandbox.people_with_handles("playfab", 2, handles={"username": "twins"})


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


@pytest.mark.parametrize(
    ("users", "expected"),
    [
        (["username:ann.smith"], "3-20 letters and digits"),
        (["username:ab"], "3-20 letters and digits"),
        ([f"username:{'a' * 21}"], "3-20 letters and digits"),
        (["email:ann@"], "an e-mail address"),
        (["ann@example"], "or a handle: email:<"),  # not an e-mail address, nor an id
        (["name:Ann"], "email:<the e-mail of the player's PlayFab account>, username:<"),  # PlayFab's forms
        (["email:ann@example.test", " email:ann@example.test "], "each person once"),
    ],
)
@pytest.mark.parametrize("operation", [invite_people, remove_people])
def test_bad_handles_fail_before_any_request(sandbox, env, users, expected, operation):
    with pytest.raises(InviteInputError) as caught:
        operation(PlayFabHook(), env["group"], users)
    assert str(caught.value).startswith("users") and expected in str(caught.value)
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


def test_sandbox_account_lookup_as_the_admin_api(sandbox, env, world):
    secret = {"X-SecretKey": world.secret_key}
    email = env["handles"][0].removeprefix("email:")
    found = api(sandbox, "Admin/GetUserAccountInfo", {"Email": email.upper()}, secret).json()["data"]
    info = found["UserInfo"]
    assert info["TitleInfo"]["TitlePlayerAccount"] == {
        "Id": env["users"][0],
        "Type": "title_player_account",
        "TypeString": "title_player_account",
    }
    assert info["PlayFabId"] == world.masters[env["users"][0]] and info["PrivateInfo"]["Email"] == email
    by_name = api(sandbox, "Admin/GetUserAccountInfo", {"Username": info["Username"]}, secret).json()
    assert by_name["data"] == found
    cases = [
        ({"Email": "nobody@example.test"}, secret, 400, 1001),
        ({}, secret, 400, 1000),
        ({"Username": "not a name"}, secret, 400, 1000),
        ({"Email": email}, title_token(sandbox, world), 401, 1074),  # the Admin API takes the secret key only
        ({"Email": email}, {"X-SecretKey": "wrong"}, 401, 1074),
    ]
    for body, headers, code, number in cases:
        reply = api(sandbox, "Admin/GetUserAccountInfo", body, headers)
        assert (reply.status_code, reply.json()["errorCode"]) == (code, number), body
    as_success = api(
        sandbox,
        "Admin/GetUserAccountInfo",
        {"Email": "x@example.test"},
        {**secret, "X-ReportErrorAsSuccess": "true"},
    )
    assert as_success.status_code == 200 and as_success.json()["error"] == "AccountNotFound"
    world.admin_api_allowed = False
    refused = api(sandbox, "Admin/GetUserAccountInfo", {"Email": email}, secret)
    assert (refused.status_code, refused.json()["error"]) == (403, "NotAuthorizedByTitle")


def test_sandbox_remove_members_all_or_nobody(sandbox, env, world):
    token = title_token(sandbox, world)
    group = group_key(env["group"])
    members = sandbox.people("playfab", 2, env["group"])
    mixed = {"Group": group, "Members": [player_key(members[0]), player_key(env["users"][0])]}
    refused = api(sandbox, "Group/RemoveMembers", mixed, token).json()
    assert (refused["error"], refused["errorCode"]) == ("MembershipNotFound", 1331)
    assert set(members) <= set(sandbox.members("playfab", env["group"])["members"])  # nobody removed
    # a player may leave on its own; it may not remove another member
    player = api(sandbox, "Authentication/GetEntityToken", {"Entity": player_key(members[0])}, token).json()
    own = {"X-EntityToken": player["data"]["EntityToken"]}
    other = {"Group": group, "Members": [player_key(members[1])]}
    assert api(sandbox, "Group/RemoveMembers", other, own).json()["errorCode"] == 1089
    leave = {"Group": group, "Members": [player_key(members[0])]}
    assert api(sandbox, "Group/RemoveMembers", leave, own).json() == {"code": 200, "status": "OK", "data": {}}
    # RoleId takes one role away; the member stays while another role is left
    api(sandbox, "Group/AddMembers", {**other, "RoleId": "admins"}, token)
    assert api(sandbox, "Group/RemoveMembers", {**other, "RoleId": "admins"}, token).json()["data"] == {}
    is_member = api(sandbox, "Group/IsMember", {"Group": group, "Entity": player_key(members[1])}, token)
    assert is_member.json()["data"] == {"IsMember": True}
    rows = {r["user"]: (r["applied"], r["requests"]) for r in sandbox.removals("playfab")}
    assert rows == {members[0]: (1, 2), members[1]: (0, 2), env["users"][0]: (0, 1)}  # a role is no seat
    wrong_verb = requests.get(f"{sandbox.base_url}/playfab/Group/RemoveMembers", headers=token, timeout=5)
    assert (wrong_verb.status_code, wrong_verb.json()["errorCode"]) == (404, 1131)


def test_sandbox_env_handles_name_the_same_people(sandbox, env):
    assert len(env["handles"]) == len(env["users"]) and all(h.startswith("email:") for h in env["handles"])
    created = sandbox.people_with_handles("playfab", 2)
    assert all(set(p["handles"]) == {"email", "username"} for p in created)
    assert created[0]["handles"]["email"] != created[1]["handles"]["email"]
