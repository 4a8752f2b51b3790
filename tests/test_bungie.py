"""Bungie.net hook and operator over real HTTP against the sandbox."""

from __future__ import annotations

import base64
import json
import logging
import os
from typing import Any

import pytest
import requests

from airflow_invites.core.adapter import InviteRequest
from airflow_invites.core.errors import InviteInputError, PlatformAuthError
from airflow_invites.core.membership import invite_people, parse_person, remove_people
from airflow_invites.core.outcome import Status
from airflow_invites.core.runtime_store import RuntimeStore
from airflow_invites.hooks import bungie as bungie_module
from airflow_invites.hooks.bungie import BungieHook
from airflow_invites.operators.bungie import BungieClanInviteOperator

P = "bungie"


@pytest.fixture(autouse=True)
def fresh_store() -> None:
    """Rotated tokens of earlier tests belong to a sandbox state that was reset."""
    for conn_id in ("bungie_default", "bungie_other"):
        RuntimeStore(conn_id).delete("refresh_token")


@pytest.fixture
def live(sandbox: Any) -> Any:
    """The running sandbox's Bungie emulator (for test switches: expire tokens, revoke consent)."""
    return sandbox.server.config.app.state.sandbox.platforms[P]


def fast(hook: BungieHook) -> BungieHook:
    hook.http.sleep = lambda seconds: None  # type: ignore[method-assign]
    return hook


def statuses(outcomes: list[Any]) -> list[Status]:
    return [o.status for o in outcomes]


def calls(sandbox: Any, suffix: str) -> list[dict[str, Any]]:
    return [r for r in sandbox.requests(P) if r["path"].endswith(suffix)]


def invite_posts(sandbox: Any) -> list[dict[str, Any]]:
    return [r for r in sandbox.requests(P) if "/IndividualInvite/" in r["path"]]


def applied(sandbox: Any) -> dict[str, tuple[int, int]]:
    return {r["user"]: (r["applied"], r["requests"]) for r in sandbox.invites(P)}


def token_calls(sandbox: Any) -> list[dict[str, Any]]:
    return calls(sandbox, "/App/OAuth/token/")


def current_connection() -> dict[str, Any]:
    """The connection the hooks of this test read (``sandbox.env()`` would mint another token)."""
    return dict(json.loads(os.environ["AIRFLOW_CONN_BUNGIE_DEFAULT"]))


def use_connection(sandbox: Any, monkeypatch: pytest.MonkeyPatch, **changes: Any) -> None:
    conn = current_connection()
    extra = conn.pop("extra")
    for key, value in changes.items():
        if key in ("api_key", "refresh_token"):
            extra[key] = value
            if value is None:
                del extra[key]
        else:
            conn[key] = value
    monkeypatch.setenv("AIRFLOW_CONN_BUNGIE_DEFAULT", json.dumps({**conn, "extra": extra}))


# -- the invite and the look-up ---------------------------------------------------------------------


def test_invite_then_already_invited_then_already_member(sandbox):
    env = sandbox.env()[P]
    users = env["users"][:2]
    first = invite_people(BungieHook(), env["group"], users, request=InviteRequest(message="Welcome!"))
    assert statuses(first) == [Status.INVITED, Status.INVITED]
    assert len(invite_posts(sandbox)) == 2

    second = invite_people(BungieHook(), env["group"], users)
    assert statuses(second) == [Status.ALREADY_INVITED, Status.ALREADY_INVITED]
    assert len(invite_posts(sandbox)) == 2  # zero invite requests: Bungie would answer Success again

    sandbox.accept(P, env["group"], users[0])
    third = invite_people(BungieHook(), env["group"], users)
    assert statuses(third) == [Status.ALREADY_MEMBER, Status.ALREADY_INVITED]
    assert [(i["applied"], i["requests"]) for i in sandbox.invites(P)] == [(1, 1), (1, 1)]


def test_member_answer_676_is_already_member(sandbox, live):
    """Had the look-up missed it, ClanInviteAlreadyMember is success, not a failure."""
    env = sandbox.env()[P]
    member = next(k for k, (level, _) in live.clans[env["group"]].members.items() if level == 2)
    hook = BungieHook()
    hook.lookup = lambda group, users: {}  # type: ignore[method-assign]  # as if the look-up missed them
    result = invite_people(hook, env["group"], [member])
    assert result[0].status is Status.ALREADY_MEMBER
    assert result[0].code == "ClanInviteAlreadyMember"
    assert len(invite_posts(sandbox)) == 1
    assert invite_people(BungieHook(), env["group"], [member])[0].status is Status.ALREADY_MEMBER


def test_bulk_of_55_one_lookup_then_target_on_page_2_of_invited_list(sandbox):
    env = sandbox.env()[P]
    people = sandbox.people(P, 55)
    outcomes = invite_people(fast(BungieHook()), env["group"], people)
    assert statuses(outcomes) == [Status.INVITED] * 55
    paths = [r["path"].split("/Platform/")[1] for r in sandbox.requests(P)]
    group = env["group"]
    assert paths[:3] == [
        "App/OAuth/token/",
        f"GroupV2/{group}/Members/",
        f"GroupV2/{group}/Members/InvitedIndividuals/",
    ]
    assert len(paths) == 3 + 55  # one look-up for the batch, one invite per person
    assert all(i["applied"] == 1 for i in sandbox.invites(P))

    before = len(sandbox.requests(P))
    target = people[52]  # 50 invitations a page: this one is on page 2
    again = invite_people(BungieHook(), env["group"], [target])
    assert statuses(again) == [Status.ALREADY_INVITED]
    later = [r["path"] for r in sandbox.requests(P)[before:]]
    assert sum(p.endswith("/InvitedIndividuals/") for p in later) == 2
    assert not any("/IndividualInvite/" in p for p in later)


def test_refusals_of_one_person_are_failed_outcomes(sandbox, live):
    env = sandbox.env()[P]
    unknown = "3:4611686018999999999"
    users = [live.banned, env["users"][0], live.disallows_invites, unknown]
    outcomes = invite_people(BungieHook(), env["group"], users)
    assert statuses(outcomes) == [Status.FAILED, Status.INVITED, Status.FAILED, Status.FAILED]
    assert [o.code for o in outcomes] == [
        "GroupMemberBanned",
        None,
        "ClanTargetDisallowsInvites",
        "DestinyAccountNotFound",
    ]
    assert "banned" in outcomes[0].detail


def test_full_clan_is_permanent_for_everyone(sandbox, live):
    env = sandbox.env()[P]
    outcomes = invite_people(BungieHook(), live.full_group_id, env["users"][:3])
    assert statuses(outcomes) == [Status.FAILED] * 3
    assert {o.code for o in outcomes} == {"ClanMaximumMembershipReached"}
    # a refusal of the clan: nobody else is tried, beyond the invites already in flight with it
    assert 1 <= len(invite_posts(sandbox)) <= BungieHook.write_concurrency
    assert len(calls(sandbox, f"/{live.full_group_id}/Members/")) == 1  # 100 members on one page


def test_admin_without_invite_right_is_permanent(sandbox, live, monkeypatch):
    use_connection(sandbox, monkeypatch, refresh_token=live.mint_refresh_token(live.admin.bungie_id))
    env = sandbox.env()[P]
    outcomes = invite_people(BungieHook(), env["group"], env["users"][:2])
    assert statuses(outcomes) == [Status.FAILED, Status.FAILED]
    assert outcomes[0].code == "InsufficientPrivileges"
    assert "invitePermissionOverride" in outcomes[0].detail
    assert sandbox.invites(P)[0]["applied"] == 0


# -- removal: Kick and IndividualInviteCancel ------------------------------------------------------


def removal_posts(sandbox: Any) -> list[dict[str, Any]]:
    return [
        r
        for r in sandbox.requests(P)
        if r["path"].endswith("/Kick/") or "/IndividualInviteCancel/" in r["path"]
    ]


def test_kick_answering_not_a_member_is_checked_again(sandbox, live):
    """611 GroupMembershipNotFound on Kick means gone already (another admin was quicker)."""
    env = sandbox.env()[P]
    member = sandbox.people(P, 1, group=env["group"])[0]
    hook = BungieHook()
    real = hook.lookup
    first = dict(real(env["group"], [member]))
    del live.clans[env["group"]].members[member]  # removed by hand right after our look-up
    answers = [first]
    hook.lookup = lambda group, users: answers.pop() if answers else real(group, users)  # type: ignore[method-assign]
    outcomes = remove_people(hook, env["group"], [member])
    assert [(o.status, o.code) for o in outcomes] == [(Status.ALREADY_ABSENT, None)]
    assert [r["status"] for r in removal_posts(sandbox)] == [500]
    assert applied_removals(sandbox) == {member: (0, 1)}


def test_nobody_invited_gets_no_cancel(sandbox):
    """IndividualInviteCancel answers Success/Rescinded for anyone: only the look-up's invitees get one."""
    env = sandbox.env()[P]
    outcomes = remove_people(BungieHook(), env["group"], env["users"][:2])
    assert statuses(outcomes) == [Status.ALREADY_ABSENT] * 2
    assert removal_posts(sandbox) == []


def test_cancel_answers_rescinded_for_nobody_on_the_wire(sandbox, live):
    root = f"{sandbox.base_url}/bungie/Platform"
    hook = BungieHook()
    headers = dict(hook.auth_headers())
    url = f"{root}/GroupV2/{live.group_id}/Members/IndividualInviteCancel/{live.newcomers[0].replace(':', '/')}/"
    reply = requests.post(url, headers=headers, timeout=5)
    assert reply.status_code == 200 and reply.json()["Response"] == {"resolution": 3}
    assert applied_removals(sandbox) == {live.newcomers[0]: (0, 1)}


def test_admin_connection_keeps_itself_and_the_founder(sandbox, live, monkeypatch):
    """An Admin may kick members; the founder (memberType 5) and the connection's own account are protected."""
    use_connection(sandbox, monkeypatch, refresh_token=live.mint_refresh_token(live.admin.bungie_id))
    env = sandbox.env()[P]
    clan = live.clans[env["group"]]
    founder = next(k for k, (level, _) in clan.members.items() if level == 5)
    member = sandbox.people(P, 1, group=env["group"])[0]
    outcomes = remove_people(BungieHook(), env["group"], [founder, live.admin.key, member])
    assert [(o.status, o.code) for o in outcomes] == [
        (Status.FAILED, "protected"),
        (Status.FAILED, "protected"),
        (Status.REMOVED, None),
    ]
    assert "founder" in outcomes[0].detail and "own account" in outcomes[1].detail
    assert applied_removals(sandbox) == {member: (1, 1)}


def test_member_connection_may_not_kick(sandbox, live, monkeypatch):
    member = sandbox.people(P, 2, group=live.group_id)
    owner = live.accounts[member[0]].bungie_id
    use_connection(sandbox, monkeypatch, refresh_token=live.mint_refresh_token(owner))
    outcomes = remove_people(BungieHook(), live.group_id, member[1:])
    assert [(o.status, o.code) for o in outcomes] == [(Status.FAILED, "InsufficientPrivileges")]
    assert "may not remove members" in outcomes[0].detail
    assert member[1] in sandbox.members(P, live.group_id)["members"]


def test_kicking_the_founder_on_the_wire_is_refused(sandbox, live):
    root = f"{sandbox.base_url}/bungie/Platform/GroupV2/{live.group_id}/Members"
    headers = dict(BungieHook().auth_headers())
    founder = live.clans[live.group_id].founder.replace(":", "/")
    outranked = requests.post(f"{root}/{founder}/Kick/", headers=headers, timeout=5).json()
    assert outranked["ErrorStatus"] == "ClanMembershipLevelDoesNotPermitThatAction"
    stranger = live.newcomers[0].replace(":", "/")
    missing = requests.post(f"{root}/{stranger}/Kick/", headers=headers, timeout=5)
    assert missing.status_code == 500 and missing.json()["Message"] == "GroupMembershipNotFound"
    anonymous = requests.post(f"{root}/{stranger}/Kick/", headers={"X-API-Key": live.api_key}, timeout=5)
    assert anonymous.json()["ErrorStatus"] == "WebAuthRequired"


def applied_removals(sandbox: Any) -> dict[str, tuple[int, int]]:
    return {r["user"]: (r["applied"], r["requests"]) for r in sandbox.removals(P)}


# -- Bungie Names ------------------------------------------------------------------------------------


def test_bungie_name_resolves_to_the_cross_save_primary(sandbox, live):
    env = sandbox.env()[P]
    target = live.accounts[env["users"][0]]
    cards = [a for a in live.people[target.bungie_id]]
    assert len(cards) == 2 and all(a.cross_save == target.membership_type for a in cards)
    bare = target.bungie_name.upper()  # bare and in another case: Bungie compares names case-insensitively
    outcomes = invite_people(BungieHook(), env["group"], [bare], dry_run=True)
    assert [(o.user, o.handle, o.status) for o in outcomes] == [(target.key, bare, Status.WOULD_INVITE)]
    searches = calls(sandbox, "/SearchDestinyPlayerByBungieName/-1/")
    assert [r["method"] for r in searches] == ["POST"]


def test_a_name_with_two_memberships_and_no_cross_save_is_ambiguous(sandbox, live):
    env = sandbox.env()[P]
    two = live.accounts[live.two_platforms[0]]
    outcomes = invite_people(BungieHook(), env["group"], [f"name:{two.bungie_name}", env["users"][0]])
    assert [(o.status, o.code) for o in outcomes] == [(Status.FAILED, "ambiguous"), (Status.INVITED, None)]
    assert "2 Destiny memberships (types 1, 3)" in outcomes[0].detail
    assert "give the id" in outcomes[0].detail and live.two_platforms[0] not in outcomes[0].detail
    assert set(applied(sandbox)) == {env["users"][0]}


def test_a_name_resolves_once_per_task(sandbox, live):
    env = sandbox.env()[P]
    name = live.accounts[env["users"][0]].bungie_name
    outcomes = invite_people(BungieHook(), env["group"], [f"name:{name}", env["users"][1]], dry_run=True)
    assert statuses(outcomes) == [Status.WOULD_INVITE] * 2
    with pytest.raises(InviteInputError, match="each person once"):
        invite_people(BungieHook(), env["group"], [f"name:{name}", name])
    assert len(calls(sandbox, "/SearchDestinyPlayerByBungieName/-1/")) == 1


def test_removal_by_bungie_name(sandbox, live):
    env = sandbox.env()[P]
    person = sandbox.people_with_handles(P, 1, group=env["group"], handles={"bungie_name": "Leaver#0815"})[0]
    assert person["handles"] == {"bungie_name": "Leaver#0815"}
    outcomes = remove_people(BungieHook(), env["group"], ["name:leaver#815"])
    assert [(o.user, o.status) for o in outcomes] == [(person["id"], Status.REMOVED)]


def test_duplicate_bungie_name_is_refused_by_the_sandbox(sandbox, live):
    taken = live.accounts[live.newcomers[0]].bungie_name
    reply = requests.post(
        f"{sandbox.base_url}/_sandbox/people",
        json={"platform": P, "count": 1, "handles": {"bungie_name": taken}},
        timeout=5,
    )
    assert reply.status_code == 409


def test_throttled_search_waits_the_hint(sandbox, live):
    env = sandbox.env()[P]
    hook = BungieHook()
    hook.auth_headers()
    sandbox.faults(P, rate=1.0, kinds=["throttle"], throttle_seconds=2)
    waits: list[float] = []
    hook.http.sleep = lambda s: (sandbox.clear_faults(), waits.append(s))  # type: ignore[method-assign]
    outcomes = invite_people(hook, env["group"], env["handles"][:1], dry_run=True)
    assert [(o.user, o.status) for o in outcomes] == [(env["users"][0], Status.WOULD_INVITE)]
    assert waits and 2.0 <= waits[0] <= 2.5


@pytest.mark.parametrize(
    "handle",
    [
        "name:Guardian",
        "name:#1234",
        "name:Guardian#12345",
        "name:Guardian#12a4",
        "Guardian#",
        "ann@example.com",
    ],
)
def test_bad_bungie_names_fail_before_any_request(sandbox, handle):
    with pytest.raises(InviteInputError, match=r"^users: expected ") as caught:
        invite_people(BungieHook(), "1234567", [handle])
    if "@" in handle:
        assert "cannot find people by e-mail" in str(caught.value)
    assert sandbox.requests(P) == []


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("name:Guardian#42", "Guardian#0042"),
        ("Guardian#0042", "Guardian#0042"),
        ("name: [BS] Fei #5889", "[BS] Fei#5889"),
    ],
)
def test_bungie_name_forms(given, canonical):
    person = parse_person(BungieHook(), given)
    assert person.handle is not None and person.handle.value == canonical


# -- auth: refresh, rotation, revocation, API key -------------------------------------------------


def test_access_token_expired_mid_batch_refreshes_once(sandbox, live):
    env = sandbox.env()[P]
    hook = BungieHook()
    sandbox.after_first_invite(hook, live.expire_access_tokens)  # an hour passes after the first invite
    outcomes = invite_people(hook, env["group"], env["users"][:4])
    assert statuses(outcomes) == [Status.INVITED] * 4
    assert len(token_calls(sandbox)) == 2 and hook.refreshes == 2
    statuses_seen = [r["status"] for r in invite_posts(sandbox)]
    # 2111 AccessTokenHasExpired for the invites in flight when the token expired (up to the
    # invite threads less the one that finished first), one refresh for all, then their retries
    assert statuses_seen[0] == 200 and statuses_seen.count(200) == 4
    assert 1 <= statuses_seen.count(500) <= BungieHook.write_concurrency - 1
    assert all(i["applied"] == 1 for i in sandbox.invites(P))


def test_token_expiring_soon_is_refreshed_before_the_call(sandbox, live):
    live.access_token_lifetime = 1  # the hook refreshes half-way through such a short lifetime
    env = sandbox.env()[P]
    hook = BungieHook()
    hook.auth_headers()
    hook._access_expires = 0.0  # as if the lifetime had passed on our clock
    outcomes = invite_people(hook, env["group"], env["users"][:1])
    assert statuses(outcomes) == [Status.INVITED]
    assert len(token_calls(sandbox)) == 2
    assert all(r["status"] == 200 for r in sandbox.requests(P))  # no 2111 needed


def test_rotated_refresh_token_survives_into_the_next_run(sandbox, live):
    env = sandbox.env()[P]
    first_token = current_connection()["extra"]["refresh_token"]
    store = RuntimeStore("bungie_default")

    first = invite_people(BungieHook(), env["group"], env["users"][:1])
    assert statuses(first) == [Status.INVITED]
    rotated = json.loads(store.get("refresh_token") or "{}")["refresh_token"]
    assert rotated != first_token and live.is_spent(first_token)

    second = invite_people(BungieHook(), env["group"], env["users"][1:2])  # the next DAG run
    assert statuses(second) == [Status.INVITED]
    assert live.is_spent(rotated)  # run 2 used the rotated token, not the spent one
    newest = json.loads(store.get("refresh_token") or "{}")["refresh_token"]
    assert newest not in (first_token, rotated)
    assert [r["status"] for r in token_calls(sandbox)] == [200, 200]

    store.delete("refresh_token")  # without the store the connection's token is spent: refused
    third = invite_people(BungieHook(), env["group"], env["users"][2:3])
    assert third[0].status is Status.FAILED and "Re-authorise this connection" in third[0].detail


def test_new_connection_token_wins_over_the_stored_chain(sandbox, live, monkeypatch):
    """After a human re-authorises and edits the connection, the new token is used."""
    env = sandbox.env()[P]
    invite_people(BungieHook(), env["group"], env["users"][:1])
    fresh = live.mint_refresh_token()
    use_connection(sandbox, monkeypatch, refresh_token=fresh)
    assert statuses(invite_people(BungieHook(), env["group"], env["users"][1:2])) == [Status.INVITED]
    assert live.is_spent(fresh)


def test_token_rotated_by_another_task_meanwhile_is_used(sandbox, live):
    env = sandbox.env()[P]
    other = BungieHook()
    other.auth_headers()  # stores R1
    mine = BungieHook()
    stale = current_connection()["extra"]["refresh_token"]
    real = mine.refresh_tokens._stored
    reads: list[str | None] = []

    def read_late() -> str | None:
        """The first read happened before the other task stored its rotated token."""
        reads.append(None if not reads else real())
        return reads[-1]

    mine.refresh_tokens._stored = read_late  # type: ignore[method-assign]
    assert mine.extra("refresh_token") == stale
    outcomes = invite_people(mine, env["group"], env["users"][:1])
    assert statuses(outcomes) == [Status.INVITED]
    assert [r["status"] for r in token_calls(sandbox)] == [200, 400, 200]


@pytest.mark.parametrize("how", ["spent", "revoked", "garbage"])
def test_revoked_refresh_token_is_a_clear_error_without_retries(sandbox, live, monkeypatch, how):
    env = sandbox.env()[P]
    if how == "spent":
        token = current_connection()["extra"]["refresh_token"]
        live.spent_refresh_tokens.add(token)
    elif how == "revoked":
        live.revoke_consent()
    else:
        use_connection(sandbox, monkeypatch, refresh_token="CKWqAxnotatoken+/=")
    outcomes = invite_people(fast(BungieHook()), env["group"], env["users"][:2])
    assert statuses(outcomes) == [Status.FAILED, Status.FAILED]
    assert "Re-authorise this connection" in outcomes[0].detail
    expected = "AuthorizationRecordRevoked" if how == "revoked" else "ProvidedTokenNotValidRefreshToken"
    assert outcomes[0].code == expected
    assert len(token_calls(sandbox)) == 1  # no retries
    assert len(sandbox.requests(P)) == 1
    with pytest.raises(PlatformAuthError, match="Re-authorise this connection"):
        BungieHook().auth_headers()


def test_wrong_client_secret_is_a_clear_error(sandbox, monkeypatch):
    use_connection(sandbox, monkeypatch, password="not-the-secret")
    with pytest.raises(PlatformAuthError, match="client id/secret were refused"):
        BungieHook().auth_headers()
    assert len(sandbox.requests(P)) == 1


def test_missing_api_key_fails_before_any_request(sandbox, monkeypatch):
    use_connection(sandbox, monkeypatch, api_key=None)
    env = sandbox.env()[P]
    with pytest.raises(InviteInputError, match="api_key"):
        invite_people(BungieHook(), env["group"], env["users"][:1])
    ok, message = BungieHook().test_connection()
    assert not ok and "api_key" in message
    assert sandbox.requests(P) == []


def test_wrong_api_key_is_an_auth_error(sandbox, monkeypatch):
    use_connection(sandbox, monkeypatch, api_key="0123456789abcdef0123456789abcdef")
    env = sandbox.env()[P]
    outcomes = invite_people(fast(BungieHook()), env["group"], env["users"][:1])
    assert outcomes[0].status is Status.FAILED and outcomes[0].code == "ApiInvalidOrExpiredKey"
    assert "api_key" in outcomes[0].detail
    assert len(calls(sandbox, "/Members/")) == 1  # refused once, not retried


def test_test_connection_outside_a_task_keeps_the_refresh_token(sandbox):
    ok, message = BungieHook().test_connection()
    assert ok and "API key accepted" in message
    assert token_calls(sandbox) == []  # a refresh here would rotate a token nobody could keep


def test_test_connection_in_a_task_proves_key_and_token(sandbox, monkeypatch):
    monkeypatch.setattr(bungie_module, "rotated_tokens_persist", lambda: True)
    ok, message = BungieHook().test_connection()
    assert ok and message.startswith("Connected to Bungie.net as Marc Anp#")
    assert len(token_calls(sandbox)) == 1
    assert RuntimeStore("bungie_default").get("refresh_token")


# -- throttling and faults ------------------------------------------------------------------------


def test_throttle_seconds_then_success(sandbox):
    env = sandbox.env()[P]
    hook = BungieHook()
    hook.auth_headers()
    sandbox.faults(P, rate=1.0, kinds=["throttle"], throttle_seconds=3)
    waits: list[float] = []
    hook.http.sleep = lambda s: (sandbox.clear_faults(), waits.append(s))  # type: ignore[method-assign]
    outcomes = invite_people(hook, env["group"], env["users"][:1])
    assert statuses(outcomes) == [Status.INVITED]
    assert waits and 3.0 <= waits[0] <= 3.5  # Bungie's ThrottleSeconds, not our own backoff
    assert sandbox.requests(P)[1]["status"] == 429


# -- input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "users", "field"),
    [
        ("abc", ["3:4611686018467284386"], "group"),
        ("0", ["3:4611686018467284386"], "group"),
        ("01234", ["3:4611686018467284386"], "group"),
        ("9223372036854775808", ["3:4611686018467284386"], "group"),
        (True, ["3:4611686018467284386"], "group"),
        ("12 34", ["3:4611686018467284386"], "group"),
        ("1234567", [], "users"),
        ("1234567", ["4611686018467284386"], "users"),
        ("1234567", ["254:4611686018467284386"], "users"),
        ("1234567", ["0:4611686018467284386"], "users"),
        ("1234567", ["-1:4611686018467284386"], "users"),
        ("1234567", ["5:4611686018467284386"], "users"),
        ("1234567", ["TigerStadia:4611686018467284386"], "users"),
        ("1234567", ["BungieNext:4611686018467284386"], "users"),
        ("1234567", ["3:abc"], "users"),
        ("1234567", ["3:0"], "users"),
        ("1234567", ["3:9223372036854775808"], "users"),
        ("1234567", ["3:\uff11\uff12\uff13"], "users"),  # full-width digits
        ("1234567", ["3:1 2"], "users"),
        ("1234567", [3], "users"),
        ("1234567", ["3:46116", "Steam:46116"], "users"),
    ],
)
def test_bad_input_fails_before_any_request(sandbox, group, users, field):
    with pytest.raises(InviteInputError) as caught:
        invite_people(BungieHook(), group, users)
    assert str(caught.value).startswith(f"{field}: expected")
    assert sandbox.requests(P) == []


def test_message_too_long_fails_before_any_request(sandbox):
    with pytest.raises(InviteInputError, match=r"^message: expected"):
        invite_people(BungieHook(), "1234567", ["3:1"], request=InviteRequest(message="x" * 501))
    assert sandbox.requests(P) == []


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("3:4611686018467284386", "3:4611686018467284386"),
        ("TigerSteam:4611686018467284386", "3:4611686018467284386"),
        (" steam : 9223372036854775807 ", "3:9223372036854775807"),
        ("tigerxbox:1", "1:1"),
        ("PSN:42", "2:42"),
        ("TigerEgs:7", "6:7"),
    ],
)
def test_membership_type_by_name_or_number(given, canonical):
    assert BungieHook().normalize_user(given) == canonical


def test_stadia_refusal_says_why():
    with pytest.raises(InviteInputError, match="TigerStadia ended"):
        BungieHook().normalize_user("5:4611686018467284386")


# -- secrets --------------------------------------------------------------------------------------


def test_no_secret_in_logs_or_outcomes(sandbox, live, monkeypatch, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    env = sandbox.env()[P]
    hook = BungieHook()
    send = hook.send_invites

    def send_then_expire(group, users, request):
        live.expire_access_tokens()
        return send(group, users, request)

    hook.send_invites = send_then_expire  # type: ignore[method-assign]
    sandbox.faults(P, rate=0.3, kinds=["throttle", "server_error"], seed=4, throttle_seconds=1)
    hook.http.sleep = lambda s: None  # type: ignore[method-assign]
    outcomes = invite_people(hook, env["group"], env["users"])
    sandbox.clear_faults()
    live.revoke_consent()
    failed = invite_people(BungieHook(), env["group"], ["3:4611686018467284386"])
    monkeypatch.setattr(bungie_module, "rotated_tokens_persist", lambda: True)
    test_message = BungieHook().test_connection()[1]
    text = json.dumps([o.to_dict() for o in outcomes + failed]) + test_message
    text += caplog.text + "".join(capsys.readouterr())
    conn = current_connection()
    basic = base64.b64encode(f"{conn['login']}:{conn['password']}".encode()).decode()
    secrets = [s for s in [*live.secrets(), basic] if s]
    assert len(live.issued) >= 5
    assert hook.refreshes >= 2
    assert not [s for s in secrets if s in text]


# -- operator and sandbox wire format ---------------------------------------------------------------


class FakeTI:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def test_operator_with_only_the_common_arguments(sandbox):
    env = sandbox.env()[P]
    ti = FakeTI()
    operator = BungieClanInviteOperator(
        task_id="invite", group=env["group"], users=env["users"][:2], message="Welcome", dry_run=False
    )
    data = operator.execute({"ti": ti})
    assert [d["status"] for d in data] == ["invited", "invited"]
    assert ti.pushed["outcomes"] == data
    assert operator.group_url == f"{sandbox.base_url}/bungie/en/ClanV2?groupid={env['group']}"
    dry = BungieClanInviteOperator(task_id="dry", group=env["group"], users=env["users"][2], dry_run="true")
    assert [d["status"] for d in dry.execute({"ti": FakeTI()})] == ["would_invite"]


def test_sandbox_speaks_bungies_wire_format(sandbox, live):
    root = f"{sandbox.base_url}/bungie/Platform"
    conn = current_connection()
    key = conn["extra"]["api_key"]
    # DIM / aiobungie style: client credentials in the form body
    form = {
        "grant_type": "refresh_token",
        "refresh_token": conn["extra"]["refresh_token"],
        "client_id": conn["login"],
        "client_secret": conn["password"],
    }
    reply = requests.post(f"{root}/App/OAuth/token/", data=form, timeout=5)
    assert reply.status_code == 200
    grant = reply.json()
    assert grant["token_type"] == "Bearer" and grant["expires_in"] == 3600
    assert grant["refresh_expires_in"] == 7776000 and isinstance(grant["membership_id"], str)
    again = requests.post(f"{root}/App/OAuth/token/", data=form, timeout=5)
    assert again.status_code == 400 and again.json() == {
        "error": "invalid_request",
        "error_description": "ProvidedTokenNotValidRefreshToken",
    }
    as_json = requests.post(f"{root}/App/OAuth/token/", json=form, timeout=5)
    assert as_json.json()["error_description"] == "Missing required parameter grant_type"

    group = live.group_id
    no_key = requests.get(f"{root}/GroupV2/{group}/Members/", timeout=5)
    assert no_key.status_code == 500 and no_key.json()["ErrorStatus"] == "ApiKeyMissingFromRequest"
    members = requests.get(f"{root}/GroupV2/{group}/Members/", headers={"X-API-Key": key}, timeout=5).json()
    assert members["ErrorCode"] == 1 and members["Response"]["query"]["currentPage"] == 1
    row = members["Response"]["results"][0]
    assert isinstance(row["groupId"], str) and isinstance(row["destinyUserInfo"]["membershipId"], str)
    assert row["joinDate"].endswith("Z")
    headers = {"X-API-Key": key, "Authorization": f"Bearer {grant['access_token']}"}
    invited = requests.get(
        f"{root}/GroupV2/{group}/Members/InvitedIndividuals/?CurrentPage=0", headers=headers, timeout=5
    )
    assert invited.json()["ErrorStatus"] == "ParameterInvalidRange"
    no_slash = requests.get(
        f"{root}/GroupV2/{group}/Members", headers=headers, timeout=5, allow_redirects=False
    )
    assert no_slash.status_code == 301
    # bungio style: JSON body, no currentpage; a repeated invite is Success again
    target = live.newcomers[0].replace(":", "/")
    url = f"{root}/GroupV2/{group}/Members/IndividualInvite/{target}/"
    for _ in range(2):
        answer = requests.post(url, json={"message": "hi"}, headers=headers, timeout=5).json()
        assert answer["ErrorCode"] == 1 and answer["Response"] == {"resolution": 0}
    assert [i["applied"] for i in sandbox.invites(P)] == [1]
    cancel = requests.post(
        url.replace("IndividualInvite", "IndividualInviteCancel"), headers=headers, timeout=5
    )
    assert cancel.json()["Response"] == {"resolution": 3}
    anonymous = requests.post(url, json={"message": "hi"}, headers={"X-API-Key": key}, timeout=5)
    assert anonymous.status_code == 500 and anonymous.json()["Message"] == "Please sign-in to continue."
    # the authorisation-code grant that produces the first refresh token
    consent = requests.get(
        f"{sandbox.base_url}/bungie/en/OAuth/Authorize",
        params={"client_id": conn["login"], "response_type": "code", "state": "xyz"},
        allow_redirects=False,
        timeout=5,
    )
    assert consent.status_code == 302 and "state=xyz" in consent.headers["location"]
    code = consent.headers["location"].split("code=")[1].split("&")[0]
    basic = (conn["login"], conn["password"])
    exchange = {"grant_type": "authorization_code", "code": code}
    first = requests.post(f"{root}/App/OAuth/token/", data=exchange, auth=basic, timeout=5)
    assert first.status_code == 200 and first.json()["refresh_token"]
    reused = requests.post(f"{root}/App/OAuth/token/", data=exchange, auth=basic, timeout=5)
    assert reused.json()["error"] == "invalid_grant"


def test_print_env_credentials_work_on_a_separately_started_sandbox(sandbox, monkeypatch):
    from airflow_invites.sandbox.app import Sandbox

    printed = Sandbox().env(f"{sandbox.base_url}")[P]  # as `airflow-invites sandbox --print-env` does
    monkeypatch.setenv("AIRFLOW_CONN_BUNGIE_OTHER", json.dumps(printed.connection))
    outcomes = invite_people(BungieHook(conn_id="bungie_other"), printed.group, printed.users[:1])
    assert statuses(outcomes) == [Status.INVITED]


def test_many_pending_invitations_few_people_checks_each_person(sandbox, live):
    env = sandbox.env()[P]
    crowd = sandbox.people(P, 160)
    invite_people(BungieHook(), env["group"], crowd)  # 160 pending invitations: 4 pages
    before = len(sandbox.requests(P))
    outcomes = invite_people(BungieHook(), env["group"], [crowd[-1], env["users"][0]])
    assert statuses(outcomes) == [Status.ALREADY_INVITED, Status.INVITED]
    paths = [r["path"] for r in sandbox.requests(P)[before:]]
    assert sum("/InvitedIndividuals/" in p for p in paths) == 1  # one page, then per person
    assert sum("/User/Potential/" in p for p in paths) == 2
