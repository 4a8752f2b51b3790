"""The adapter contract: what every platform does alike, over real HTTP against the sandbox.

One suite, parametrized over the registry: invite then "already", dry runs, transient faults, lost
replies, bad input, bulk with one look-up, removal (members, pending invitations, people already
gone, protected members, the mass-removal guard) and handles (found, not found, kinds a platform
does not take). The per-platform test files keep only each platform's own traps.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_invites.core.errors import InviteInputError
from airflow_invites.core.membership import MassRemovalRefused, RunStats, invite_people, remove_people
from airflow_invites.core.outcome import Status
from airflow_invites.platforms import PLATFORMS

NAMES = list(PLATFORMS)
TRANSIENT_KINDS = ["server_error", "reset", "truncated", "timeout"]
#: a syntactically valid group id that no sandbox group has
UNKNOWN_GROUP = {
    "bungie": "987654321",
    "vrchat": "grp_00000000-0000-4000-8000-000000000000",
    "playfab": "0123456789ABCDEF",
    "bitrix24": "987654",
    "rocketchat": "zzzzzzzzzzzzzzzzz",
}
#: a handle value of each kind that nobody in the sandbox has
UNKNOWN_HANDLE = {
    "email": "nobody.here@example.test",
    "username": "nobody.here.zz",
    "name": "Nobody Here Zz",
}
UNKNOWN_BUNGIE_NAME = "NobodyHere#0001"


@pytest.fixture(params=NAMES)
def platform(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def hook_of(platform: str) -> Any:
    return PLATFORMS[platform].hook_for()


def fast(hook: Any, between: Any = None) -> list[float]:
    """No real sleeping in the hook's retries; returns the waits asked for."""
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if between is not None:
            between()

    hook.http.sleep = sleep
    return waits


def statuses(outcomes: list[Any]) -> list[Status]:
    return [o.status for o in outcomes]


def applied(rows: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """user -> (applied, requests) of the sandbox's invite or removal ledger."""
    return {r["user"]: (r["applied"], r["requests"]) for r in rows}


def needs(hook: Any, capability: str) -> None:
    if not getattr(hook, capability):
        pytest.skip(f"{hook.platform} does not declare {capability} yet")


# -- invites -------------------------------------------------------------------------------------------


def test_invite_then_already(sandbox, platform):
    env = sandbox.env()[platform]
    users = env["users"][:2]
    first = invite_people(hook_of(platform), env["group"], users)
    assert statuses(first) == [Status.INVITED, Status.INVITED]
    writes = sandbox.invites(platform)
    second = invite_people(hook_of(platform), env["group"], users)
    assert set(statuses(second)) <= {Status.ALREADY_INVITED, Status.ALREADY_MEMBER}
    assert applied(sandbox.invites(platform)) == applied(writes) == {u: (1, 1) for u in users}


def test_dry_run_sends_no_write(sandbox, platform):
    env = sandbox.env()[platform]
    outcomes = invite_people(hook_of(platform), env["group"], env["users"][:3], dry_run=True)
    assert statuses(outcomes) == [Status.WOULD_INVITE] * 3
    assert sandbox.invites(platform) == []


def test_bulk_needs_one_lookup(sandbox, platform):
    env = sandbox.env()[platform]
    members = sandbox.people(platform, 3, group=env["group"])
    newcomers = sandbox.people(platform, 7)
    stats = RunStats()
    outcomes = invite_people(hook_of(platform), env["group"], members + newcomers, stats=stats)
    assert statuses(outcomes) == [Status.ALREADY_MEMBER] * 3 + [Status.INVITED] * 7
    assert stats.lookups - stats.rechecks == 1  # one look-up (a re-check only where a reply named nobody)
    assert set(applied(sandbox.invites(platform))) == set(newcomers)


@pytest.mark.parametrize("kind", TRANSIENT_KINDS)
def test_transient_fault_then_success(sandbox, platform, kind):
    env = sandbox.env()[platform]
    hook = hook_of(platform)
    hook.auth_headers()  # the fault is meant for the invite's calls, not the login
    sandbox.faults(platform, rate=1.0, kinds=[kind], timeout_ms=2500)
    fast(hook, between=sandbox.clear_faults)
    outcomes = invite_people(hook, env["group"], env["users"][:2])
    assert statuses(outcomes) == [Status.INVITED, Status.INVITED]
    assert applied(sandbox.invites(platform)) == {u: (1, 1) for u in env["users"][:2]}


def test_throttle_waits_the_platforms_hint(sandbox, platform):
    env = sandbox.env()[platform]
    hook = hook_of(platform)
    hook.auth_headers()
    sandbox.faults(platform, rate=1.0, kinds=["throttle"], throttle_seconds=1)
    waits = fast(hook, between=sandbox.clear_faults)
    outcomes = invite_people(hook, env["group"], env["users"][:1])
    assert statuses(outcomes) == [Status.INVITED]
    assert waits and waits[0] >= 0.5  # the platform's hint, not an immediate retry


def test_lost_invite_reply_is_confirmed_not_resent(sandbox, platform):
    env = sandbox.env()[platform]
    hook = hook_of(platform)
    sandbox.lose_next_invite_reply(hook, platform)
    outcomes = invite_people(hook, env["group"], env["users"][:1])
    assert statuses(outcomes) == [Status.INVITED]
    assert "confirmed by a look-up" in outcomes[0].detail
    assert applied(sandbox.invites(platform)) == {env["users"][0]: (1, 1)}


def test_bad_group_fails_before_any_request(sandbox, platform):
    env = sandbox.env()[platform]
    before = sandbox.request_count(platform)
    with pytest.raises(InviteInputError, match=r"^group: expected "):
        invite_people(hook_of(platform), "../" + env["group"], env["users"][:1])
    with pytest.raises(InviteInputError, match=r"^users: expected "):
        invite_people(hook_of(platform), env["group"], [env["users"][0], env["users"][0]])
    assert sandbox.request_count(platform) == before


def test_unknown_group_fails_everyone_and_writes_nothing(sandbox, platform):
    env = sandbox.env()[platform]
    outcomes = invite_people(hook_of(platform), UNKNOWN_GROUP[platform], env["users"][:2])
    assert statuses(outcomes) == [Status.FAILED, Status.FAILED]
    assert outcomes[0].detail and sandbox.invites(platform) == []


# -- removals ------------------------------------------------------------------------------------------


def test_remove_member_and_invitation_then_already_absent(sandbox, platform):
    env = sandbox.env()[platform]
    hook = hook_of(platform)
    needs(hook, "can_remove_members")
    member = sandbox.people(platform, 1, group=env["group"])[0]
    invited, absent = env["users"][:2]
    invite_people(hook_of(platform), env["group"], [invited])
    outcomes = remove_people(hook, env["group"], [member, invited, absent])
    pending_kind = Status.INVITE_CANCELLED if hook.can_cancel_invites else Status.REMOVED
    assert statuses(outcomes) == [Status.REMOVED, pending_kind, Status.ALREADY_ABSENT]
    listed = sandbox.members(platform, env["group"])
    assert {member, invited}.isdisjoint(listed["members"] + listed["invited"])
    assert applied(sandbox.removals(platform)) == {member: (1, 1), invited: (1, 1)}
    again = remove_people(hook_of(platform), env["group"], [member, invited, absent])
    assert statuses(again) == [Status.ALREADY_ABSENT] * 3
    assert applied(sandbox.removals(platform)) == {member: (1, 1), invited: (1, 1)}


def test_remove_dry_run_sends_no_write(sandbox, platform):
    env = sandbox.env()[platform]
    hook = hook_of(platform)
    needs(hook, "can_remove_members")
    member = sandbox.people(platform, 1, group=env["group"])[0]
    outcomes = remove_people(hook, env["group"], [member, env["users"][0]], dry_run=True)
    assert statuses(outcomes) == [Status.WOULD_REMOVE, Status.ALREADY_ABSENT]
    assert sandbox.removals(platform) == []
    assert member in sandbox.members(platform, env["group"])["members"]


def test_lost_removal_reply_is_confirmed_not_resent(sandbox, platform):
    env = sandbox.env()[platform]
    hook = hook_of(platform)
    needs(hook, "can_remove_members")
    member = sandbox.people(platform, 1, group=env["group"])[0]
    sandbox.lose_next_write_reply(hook, platform, "remove_members")
    outcomes = remove_people(hook, env["group"], [member])
    assert statuses(outcomes) == [Status.REMOVED]
    assert "confirmed by a look-up" in outcomes[0].detail
    assert applied(sandbox.removals(platform)) == {member: (1, 1)}


@pytest.mark.parametrize("kind", ["server_error", "reset", "truncated"])
def test_removal_under_a_transient_fault_removes_once(sandbox, platform, kind):
    env = sandbox.env()[platform]
    hook = hook_of(platform)
    needs(hook, "can_remove_members")
    members = sandbox.people(platform, 2, group=env["group"])
    hook.auth_headers()
    sandbox.faults(platform, rate=1.0, kinds=[kind])
    fast(hook, between=sandbox.clear_faults)
    outcomes = remove_people(hook, env["group"], members)
    assert statuses(outcomes) == [Status.REMOVED, Status.REMOVED]
    assert applied(sandbox.removals(platform)) == {m: (1, 1) for m in members}


def test_protected_members_are_never_removed(sandbox, platform):
    env = sandbox.env()[platform]
    hook = hook_of(platform)
    needs(hook, "can_remove_members")
    protected = sandbox.members(platform, env["group"]).get("protected", [])
    assert protected, "the sandbox's group has an owner / the connection's own account"
    outcomes = remove_people(hook, env["group"], protected)
    assert statuses(outcomes) == [Status.FAILED] * len(protected)
    assert {o.code for o in outcomes} == {"protected"}
    assert sandbox.removals(platform) == []


def test_more_removals_than_allowed_removes_nobody(sandbox, platform):
    env = sandbox.env()[platform]
    hook = hook_of(platform)
    needs(hook, "can_remove_members")
    members = sandbox.people(platform, 3, group=env["group"])
    with pytest.raises(MassRemovalRefused, match="3 people would be removed") as refused:
        remove_people(hook, env["group"], members, max_removals=2)
    assert set(refused.value.people) == set(members)
    assert sandbox.removals(platform) == []


# -- handles -------------------------------------------------------------------------------------------


def test_handles_resolve_to_the_sandboxs_ids(sandbox, platform):
    env = sandbox.env()[platform]
    hook = hook_of(platform)
    needs(hook, "handle_kinds")
    handles, users = env["handles"][:2], env["users"][:2]
    stats = RunStats()
    outcomes = invite_people(hook, env["group"], handles, stats=stats)
    assert [(o.user, o.handle, o.status) for o in outcomes] == [
        (users[0], handles[0], Status.INVITED),
        (users[1], handles[1], Status.INVITED),
    ]
    assert stats.handles == 2
    assert set(applied(sandbox.invites(platform))) == set(users)


def test_unknown_handle_fails_without_a_write(sandbox, platform):
    env = sandbox.env()[platform]
    hook = hook_of(platform)
    needs(hook, "handle_kinds")
    kind = env["handles"][0].split(":", 1)[0]
    value = UNKNOWN_BUNGIE_NAME if platform == "bungie" else UNKNOWN_HANDLE[kind]
    outcomes = invite_people(hook, env["group"], [f"{kind}:{value}", env["users"][0]])
    assert [(o.status, o.code) for o in outcomes] == [(Status.FAILED, "not_found"), (Status.INVITED, None)]
    assert outcomes[0].handle == f"{kind}:{value}"
    assert set(applied(sandbox.invites(platform))) == {env["users"][0]}


def test_a_handle_kind_the_platform_does_not_take_is_bad_input(sandbox, platform):
    env = sandbox.env()[platform]
    hook = hook_of(platform)
    kind = next(k for k in ("email", "username", "name") if k not in hook.handle_kinds)
    before = sandbox.request_count(platform)
    with pytest.raises(InviteInputError, match=rf"^users: expected .*{kind}: is not resolved on {platform}"):
        invite_people(hook, env["group"], [f"{kind}:{UNKNOWN_HANDLE[kind]}"])
    assert sandbox.request_count(platform) == before


def test_handles_under_a_transient_fault_resolve_once(sandbox, platform):
    env = sandbox.env()[platform]
    hook = hook_of(platform)
    needs(hook, "handle_kinds")
    hook.auth_headers()
    sandbox.faults(platform, rate=1.0, kinds=["server_error"])
    fast(hook, between=sandbox.clear_faults)
    outcomes = invite_people(hook, env["group"], env["handles"][:1])
    assert [(o.user, o.status) for o in outcomes] == [(env["users"][0], Status.INVITED)]


def test_dry_run_resolves_and_shows_the_id(sandbox, platform):
    env = sandbox.env()[platform]
    hook = hook_of(platform)
    needs(hook, "handle_kinds")
    outcomes = invite_people(hook, env["group"], env["handles"][:1], dry_run=True)
    assert [(o.user, o.status) for o in outcomes] == [(env["users"][0], Status.WOULD_INVITE)]
    assert sandbox.invites(platform) == []


# -- roster sync -----------------------------------------------------------------------------------------


def test_an_authoritative_sync_removes_exactly_the_leavers(sandbox, platform):
    from airflow_invites.core.roster import Mode, sync_roster

    env = sandbox.env()[platform]
    hook = hook_of(platform)
    needs(hook, "can_remove_members")
    before = sandbox.members(platform, env["group"])
    leavers = sandbox.people(platform, 2, group=env["group"])
    listed = hook_of(platform).list_group(env["group"])  # what the platform shows the bot
    staying = [u for u, state in listed.items() if not state.protected and u not in leavers]
    newcomer = env["users"][0]
    outcomes, drift = sync_roster(hook, env["group"], [*staying, newcomer], mode=Mode.AUTHORITATIVE)
    assert sorted(drift.to_remove) == sorted(leavers) and drift.to_add == [newcomer]
    by_user = {o.user: o.status for o in outcomes}
    assert by_user[newcomer] is Status.INVITED
    assert {by_user[u] for u in leavers} == {Status.REMOVED}
    after = sandbox.members(platform, env["group"])
    assert set(before.get("protected", [])) <= set(after["members"])
    assert set(staying) <= set(after["members"] + after["invited"])
    assert not set(leavers) & set(after["members"])
    assert set(applied(sandbox.removals(platform))) == set(leavers)


def test_a_roster_that_lost_half_its_rows_removes_nobody(sandbox, platform):
    from airflow_invites.core.roster import EmptyRoster, Mode, sync_roster

    env = sandbox.env()[platform]
    hook = hook_of(platform)
    needs(hook, "can_remove_members")
    members = sandbox.people(platform, 6, group=env["group"])
    listed = hook_of(platform).list_group(env["group"])
    half = [u for u, state in listed.items() if not state.protected and u not in members[:3]]
    with pytest.raises(MassRemovalRefused, match="3 people would be removed") as refused:
        sync_roster(hook, env["group"], half, mode=Mode.AUTHORITATIVE, max_removals=2)
    assert sorted(refused.value.people) == sorted(members[:3])
    with pytest.raises(EmptyRoster):
        sync_roster(hook_of(platform), env["group"], [], mode=Mode.AUTHORITATIVE)
    assert sandbox.removals(platform) == [] and sandbox.invites(platform) == []
