"""Pure logic of the core: outcomes, input parsing, TOTP, secret scrubbing, the algorithm's decisions.

The algorithm runs here against an in-memory adapter (pure logic); its HTTP behaviour is tested
against the sandbox in the platform test files.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import pytest

from airflow_invites.core.adapter import InviteRequest, MembershipAdapter, PersonResult, Presence, UserState
from airflow_invites.core.errors import InviteInputError, PermanentPlatformError, TransientPlatformError
from airflow_invites.core.membership import as_user_list, invite_people
from airflow_invites.core.outcome import InviteOutcome, Status, summarize
from airflow_invites.core.secrets import SecretScrubber
from airflow_invites.core.totp import totp_code, totp_valid
from airflow_invites.operators.base import parse_bool


class MemoryAdapter(MembershipAdapter):
    """A platform in memory: members, pending invites, and scripted failures of invite calls."""

    platform = "memory"

    def __init__(self, batch: int = 1, concurrency: int = 1) -> None:
        self.members: set[str] = set()
        self.invited: set[str] = set()
        self.blocked: set[str] = set()
        self.lookups = 0
        self.sends: list[list[str]] = []
        self.lose_next_reply = 0
        self.refuse_group = False
        self.lock = threading.Lock()
        self.invite_batch_size = batch  # type: ignore[misc]
        self.write_concurrency = concurrency  # type: ignore[misc]

    def normalize_group(self, group: object) -> str:
        if not isinstance(group, str) or not group.isalnum():
            raise InviteInputError("group", "letters and digits", group)
        return group

    def normalize_user(self, user: object) -> str:
        if not isinstance(user, str) or not user.isalnum():
            raise InviteInputError("users", "letters and digits", user)
        return user

    def lookup(self, group: str, users: Sequence[str]) -> Mapping[str, UserState]:
        self.lookups += 1
        state = {u: UserState(Presence.MEMBER) for u in users if u in self.members}
        state.update({u: UserState(Presence.INVITED) for u in users if u in self.invited})
        state.update({u: UserState(Presence.BLOCKED, "banned", "banned") for u in users if u in self.blocked})
        return state

    def send_invites(
        self, group: str, users: Sequence[str], request: InviteRequest
    ) -> Mapping[str, PersonResult]:
        with self.lock:
            self.sends.append(list(users))
            if self.refuse_group:
                raise PermanentPlatformError("group not found", code="404")
            self.invited.update(users)
            if self.lose_next_reply:
                self.lose_next_reply -= 1
                raise TransientPlatformError("reply lost", maybe_applied=True)
        return {u: PersonResult(Status.INVITED) for u in users}


def test_outcome_round_trips_and_summarizes():
    outcome = InviteOutcome("p", "g", "u", Status.ALREADY_INVITED, "pending", "x")
    assert InviteOutcome.from_dict(outcome.to_dict()) == outcome
    assert outcome.to_dict()["status"] == "already_invited"
    assert summarize([outcome, InviteOutcome("p", "g", "v", Status.INVITED)]) == (
        "1 invited, 1 already invited, 0 failed"
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [("a", ["a"]), ("a, b", ["a", "b"]), (["a", "b"], ["a", "b"]), (7, [7]), (("a",), ["a"])],
)
def test_as_user_list(given, expected):
    assert as_user_list(given) == expected


@pytest.mark.parametrize("bad", [None, {"a": 1}, 1.5, True])
def test_as_user_list_rejects_other_types(bad):
    with pytest.raises(InviteInputError, match=r"^users: expected"):
        as_user_list(bad)


@pytest.mark.parametrize(("value", "expected"), [(True, True), ("False", False), ("true", True), ("", False)])
def test_parse_bool(value, expected):
    assert parse_bool(value, "dry_run") is expected


def test_parse_bool_names_the_field():
    with pytest.raises(InviteInputError, match=r"^dry_run: expected true or false"):
        parse_bool("maybe", "dry_run")


def test_totp_matches_rfc6238_vector():
    secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # "12345678901234567890"
    assert totp_code(secret, at=59) == "287082"
    assert totp_code(secret, at=1111111109) == "081804"
    assert totp_valid(secret, "287082", at=59 + 30)
    assert not totp_valid(secret, "287082", at=59 + 90)


def test_scrubber_masks_for_airflow_and_scrubs_our_texts():
    from airflow.sdk.log import redact

    scrubber = SecretScrubber()
    scrubber.add("s3cr3t/with+chars", None, "abc")  # too short values are ignored
    assert (
        scrubber.scrub("url /rest/1/s3cr3t%2Fwith%2Bchars/x and s3cr3t/with+chars")
        == "url /rest/1/***/x and ***"
    )
    assert redact("token s3cr3t/with+chars") == "token ***"
    assert "abc" not in scrubber


def test_algorithm_decides_from_the_lookup():
    adapter = MemoryAdapter()
    adapter.members.add("m1")
    adapter.invited.add("i1")
    adapter.blocked.add("b1")
    outcomes = invite_people(adapter, "g1", ["m1", "i1", "b1", "n1"])
    assert [o.status for o in outcomes] == [
        Status.ALREADY_MEMBER,
        Status.ALREADY_INVITED,
        Status.FAILED,
        Status.INVITED,
    ]
    assert adapter.sends == [["n1"]]
    assert outcomes[2].code == "banned"


def test_duplicates_and_bad_ids_fail_before_lookup():
    adapter = MemoryAdapter()
    with pytest.raises(InviteInputError, match=r"^users: expected each person once"):
        invite_people(adapter, "g1", ["a", "a"])
    with pytest.raises(InviteInputError, match=r"^group: expected"):
        invite_people(adapter, "../g", ["a"])
    assert adapter.lookups == 0


def test_lost_reply_is_checked_not_resent():
    adapter = MemoryAdapter(batch=2)
    adapter.lose_next_reply = 1
    outcomes = invite_people(adapter, "g1", ["a", "b", "c"])
    assert [o.status for o in outcomes] == [Status.INVITED] * 3
    assert adapter.sends == [["a", "b"], ["c"]]  # the lost chunk was not sent again
    assert "lost reply" in outcomes[0].detail
    assert adapter.lookups == 2


def test_group_wide_refusal_stops_further_requests():
    adapter = MemoryAdapter(batch=1)
    adapter.refuse_group = True
    outcomes = invite_people(adapter, "g1", ["a", "b", "c"])
    assert {o.status for o in outcomes} == {Status.FAILED}
    assert len(adapter.sends) == 1


def test_dry_run_sends_nothing():
    adapter = MemoryAdapter()
    outcomes = invite_people(adapter, "g1", ["a", "b"], dry_run=True)
    assert {o.status for o in outcomes} == {Status.WOULD_INVITE}
    assert adapter.sends == []


def test_concurrent_chunks_keep_input_order_and_invite_once():
    adapter = MemoryAdapter(batch=3, concurrency=4)
    users = [f"u{i}" for i in range(50)]
    outcomes = invite_people(adapter, "g1", users)
    assert [o.user for o in outcomes] == users
    assert sorted(u for chunk in adapter.sends for u in chunk) == sorted(users)
    assert {o.status for o in outcomes} == {Status.INVITED}
