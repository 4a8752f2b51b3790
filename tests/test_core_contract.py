"""Pure logic of the new contract pieces: the error interpreter, the rotating token, removal and
handle decisions of the algorithm (against an in-memory adapter), the HTTP layer's retry bounds."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence

import pytest
import requests
from test_core import MemoryAdapter

from airflow_invites.core.adapter import (
    Handle,
    PersonResult,
    Presence,
    Resolution,
    UserState,
)
from airflow_invites.core.credentials import OAuthGrant, RotatingRefreshToken, SharedAccessToken
from airflow_invites.core.errors import (
    AuthExpired,
    InviteInputError,
    PermanentPlatformError,
    PersonRefused,
    PlatformAuthError,
    RefreshTokenRefused,
    TransientPlatformError,
)
from airflow_invites.core.http import HttpClient, LongWait, RetryPolicy
from airflow_invites.core.membership import (
    MassRemovalRefused,
    RunStats,
    invite_people,
    parse_people,
    remove_people,
)
from airflow_invites.core.outcome import Status
from airflow_invites.core.replies import (
    ErrorTable,
    MessageRule,
    Reply,
    group,
    person,
    read_reply,
    throttle,
    transient,
)
from airflow_invites.core.secrets import SecretScrubber

TABLE = ErrorTable(
    "demo",
    codes={
        "SLOW": throttle("slow down", wait=7),
        "BUSY": transient("busy", applied=False),
        "NOGROUP": group("no such group", code="group-not-found"),
        "MEMBER": person(Status.ALREADY_MEMBER, "already a member", presence=Presence.MEMBER),
    },
    messages=[MessageRule("wasn't invited", person(Status.ALREADY_ABSENT, "not invited"), http_status=400)],
)


@pytest.mark.parametrize(
    ("reply", "write", "expected", "attrs"),
    [
        (Reply(429, False), False, TransientPlatformError, {"retry_after": None}),
        (Reply(429, False, retry_after=3), False, TransientPlatformError, {"retry_after": 3}),
        (Reply(200, False, code="SLOW"), False, TransientPlatformError, {"retry_after": 7}),
        (Reply(503, False), True, TransientPlatformError, {"maybe_applied": True}),
        (Reply(200, False, code="busy"), True, TransientPlatformError, {"maybe_applied": False}),
        (Reply(401, False), False, AuthExpired, {}),
        (Reply(404, False, code="NOGROUP"), False, PermanentPlatformError, {"code": "group-not-found"}),
        (Reply(400, False, code="MEMBER"), True, PermanentPlatformError, {}),
        (Reply(418, False, code="WHAT", message="teapot"), False, PermanentPlatformError, {"code": "WHAT"}),
    ],
)
def test_the_interpreter_applies_table_then_defaults(reply, write, expected, attrs):
    with pytest.raises(expected) as caught:
        TABLE.interpret(reply, write=write)
    assert type(caught.value) is expected  # a PERSON rule on a call naming nobody is the group's
    for name, value in attrs.items():
        assert getattr(caught.value, name) == value
    assert str(caught.value).startswith("demo: ")


def test_a_person_rule_is_that_persons_outcome_when_the_call_names_one():
    with pytest.raises(PersonRefused) as caught:
        TABLE.interpret(Reply(400, False, code="MEMBER", message="x"), person=True)
    assert (caught.value.status, caught.value.presence) == (Status.ALREADY_MEMBER, Presence.MEMBER)
    with pytest.raises(PersonRefused) as caught:
        TABLE.interpret(
            Reply(400, False, message="You can't uninvite a user who WASN'T INVITED."), person=True
        )
    assert caught.value.status is Status.ALREADY_ABSENT
    assert TABLE.interpret(Reply(200, True, {"a": 1})) == {"a": 1}


def test_an_endpoint_table_overrides_the_platforms():
    kick = TABLE.extend(codes={"MEMBER": group("kick refused")})
    with pytest.raises(PermanentPlatformError, match="kick refused"):
        kick.interpret(Reply(400, False, code="MEMBER"), person=True)
    with pytest.raises(PersonRefused):
        TABLE.interpret(Reply(400, False, code="MEMBER"), person=True)


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers.update(headers or {})
    return response


def test_read_reply_turns_odd_bodies_into_clear_transient_errors():
    envelope = lambda response, body: Reply(response.status_code, response.status_code == 200, body)  # noqa: E731
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(TransientPlatformError, match="not readable JSON") as caught:
        read_reply(_response(200, deep), "demo", envelope, write=True)
    assert caught.value.maybe_applied
    with pytest.raises(TransientPlatformError, match="empty"):
        read_reply(_response(200, b""), "demo", envelope)
    reply = read_reply(_response(503, b"<html>", {"Retry-After": "9"}), "demo", envelope)
    assert (reply.ok, reply.retry_after) == (False, 9.0)


class MemoryStore:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.conn_id = "demo_conn"

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def set(self, name: str, value: str) -> None:
        self.values[name] = value


def test_the_refresh_chain_keeps_the_rotated_token_and_waits_out_a_rotation():
    store = MemoryStore()
    chain = RotatingRefreshToken(
        store, origin="t0", platform="demo", reauthorise="Do X.", sleep=lambda s: None
    )  # type: ignore[arg-type]
    spent: list[str] = []

    def grant(token: str) -> OAuthGrant:
        spent.append(token)
        if token in ("t0",) and len(spent) > 1:
            raise RefreshTokenRefused("invalid_grant")
        return OAuthGrant("a", f"{token}+", 3600)

    assert chain.spend(grant).refresh_token == "t0+"
    assert chain.current() == "t0+"
    # another task rotated t0+ meanwhile: our refused try finds the newer one in the store
    other = RotatingRefreshToken(
        store, origin="t0", platform="demo", reauthorise="Do X.", sleep=lambda s: None
    )  # type: ignore[arg-type]
    other.save("t0++")

    def refuse_old(token: str) -> OAuthGrant:
        if token == "t0+":
            raise RefreshTokenRefused("invalid_grant")
        return OAuthGrant("a", f"{token}!", 3600)

    chain.current = lambda: "t0+"  # type: ignore[method-assign]  # read just before the other rotated
    assert chain.spend(refuse_old).refresh_token == "t0++!"
    # a human put a new token in the connection: the old chain no longer counts
    fresh = RotatingRefreshToken(
        store, origin="n0", platform="demo", reauthorise="Do X.", sleep=lambda s: None
    )  # type: ignore[arg-type]
    assert fresh.current() == "n0"
    with pytest.raises(PlatformAuthError, match=r"refresh token was refused \(invalid_grant\).*Do X\."):
        fresh.spend(lambda token: (_ for _ in ()).throw(RefreshTokenRefused("invalid_grant")))


def test_a_shared_access_token_is_used_until_shortly_before_it_ends():
    store = MemoryStore()
    now = [1000.0]
    shared = SharedAccessToken(store, margin_s=60, now=lambda: now[0])  # type: ignore[arg-type]
    shared.put("acc", 120, {"user_id": 7})
    assert shared.get() == ("acc", {"user_id": 7})
    now[0] += 61
    assert shared.get() is None
    shared.put("acc2", 3600)
    shared.refuse("acc2")
    assert shared.get() is None
    store.values["access_token"] = json.dumps({"garbage": 1})
    assert shared.get() is None


class Memory(MemoryAdapter):
    """A platform in memory with removals and handles (ids as in ``test_core``)."""

    platform = "memory"
    can_cancel_invites = True
    can_remove_members = True
    handle_kinds = {"email": "an e-mail", "name": "a display name"}
    resolve_batch_size = 10

    def __init__(self) -> None:
        self.members: set[str] = set()
        self.invited: set[str] = set()
        self.owner = "owner1"
        self.members.add(self.owner)
        self.emails = {"ann@example.test": "ann1", "bob@example.test": "bob1"}
        self.names = {"Same": ["x1", "x2"]}
        self.writes: list[tuple[str, list[str]]] = []
        self.resolved: list[list[Handle]] = []
        self.claim_absent: set[str] = set()
        self.lose: set[str] = set()
        self.lock = threading.Lock()

    def resolve(self, handles: Sequence[Handle]) -> Mapping[Handle, Resolution]:
        self.resolved.append(list(handles))
        found: dict[Handle, Resolution] = {}
        for handle in handles:
            if handle.kind == "email" and handle.value in self.emails:
                found[handle] = Resolution.found(self.emails[handle.value])
            elif handle.kind == "name" and handle.value in self.names:
                found[handle] = Resolution.ambiguous(len(self.names[handle.value]))
        return found

    def lookup(self, group: str, users: Sequence[str]) -> Mapping[str, UserState]:
        state = {
            u: UserState(Presence.MEMBER, protected="owner" if u == self.owner else "")
            for u in users
            if u in self.members
        }
        state.update({u: UserState(Presence.INVITED) for u in users if u in self.invited})
        return state

    def _write(self, kind: str, users: Sequence[str]) -> dict[str, PersonResult]:
        with self.lock:
            self.writes.append((kind, list(users)))
            if kind == "invite":
                self.invited.update(users)
            elif kind == "cancel":
                self.invited.difference_update(users)
            else:
                self.members.difference_update(users)
            if self.lose & set(users):
                self.lose.difference_update(users)
                raise TransientPlatformError("lost", maybe_applied=True)
        done = {"invite": Status.INVITED, "cancel": Status.INVITE_CANCELLED, "remove": Status.REMOVED}[kind]
        return {u: PersonResult(Status.ALREADY_ABSENT if u in self.claim_absent else done) for u in users}

    def send_invites(self, group, users, request):  # type: ignore[no-untyped-def]
        return self._write("invite", users)

    def cancel_invites(self, group, users):  # type: ignore[no-untyped-def]
        return self._write("cancel", users)

    def remove_members(self, group, users):  # type: ignore[no-untyped-def]
        return self._write("remove", users)


def test_removal_decides_per_presence_and_never_touches_the_protected():
    adapter = Memory()
    adapter.members.add("m1")
    adapter.invited.add("i1")
    outcomes = remove_people(adapter, "g", ["m1", "i1", "a1", "owner1"])
    assert [(o.status, o.code) for o in outcomes] == [
        (Status.REMOVED, None),
        (Status.INVITE_CANCELLED, None),
        (Status.ALREADY_ABSENT, None),
        (Status.FAILED, "protected"),
    ]
    assert sorted(adapter.writes) == [("cancel", ["i1"]), ("remove", ["m1"])]


def test_a_removal_the_platform_calls_unneeded_is_checked_and_redone_if_they_joined():
    adapter = Memory()
    adapter.invited.add("i1")

    def cancel_but_they_accepted(group: str, users: Sequence[str]) -> dict[str, PersonResult]:
        adapter.invited.discard("i1")
        adapter.members.add("i1")  # accepted a moment before our cancel
        adapter.writes.append(("cancel", list(users)))
        return {"i1": PersonResult(Status.ALREADY_ABSENT, "was not invited")}

    adapter.cancel_invites = cancel_but_they_accepted  # type: ignore[method-assign]
    outcomes = remove_people(adapter, "g", ["i1"])
    assert [o.status for o in outcomes] == [Status.REMOVED]
    assert adapter.writes == [("cancel", ["i1"]), ("remove", ["i1"])]


def test_mass_removal_guard_names_everyone_and_writes_nothing():
    adapter = Memory()
    adapter.members.update({"a", "b", "c"})
    with pytest.raises(MassRemovalRefused, match=r"3 people would be removed.*max_removals=2") as caught:
        remove_people(adapter, "g", ["a", "b", "c"], max_removals=2)
    assert caught.value.people == ["a", "b", "c"] and adapter.writes == []
    assert [o.status for o in remove_people(adapter, "g", ["a", "b", "c"], max_removals=2, dry_run=True)] == [
        Status.WOULD_REMOVE
    ] * 3


def test_a_lost_removal_reply_is_confirmed_by_a_lookup():
    adapter = Memory()
    adapter.members.add("m1")
    adapter.lose.add("m1")
    stats = RunStats()
    outcomes = remove_people(adapter, "g", ["m1"], stats=stats)
    assert [(o.status, o.detail) for o in outcomes] == [
        (Status.REMOVED, "confirmed by a look-up after a lost reply")
    ]
    assert adapter.writes == [("remove", ["m1"])] and stats.rechecks == 1


def test_handles_resolve_once_and_never_on_a_guess():
    adapter = Memory()
    stats = RunStats()
    outcomes = invite_people(
        adapter,
        "g",
        ["email:ann@example.test", "bob@example.test", "name:Same", "email:zed@example.test", "c1"],
        stats=stats,
    )
    assert [(o.user, o.handle, o.status, o.code) for o in outcomes] == [
        ("ann1", "email:ann@example.test", Status.INVITED, None),
        ("bob1", "bob@example.test", Status.INVITED, None),
        ("name:Same", "name:Same", Status.FAILED, "ambiguous"),
        ("email:zed@example.test", "email:zed@example.test", Status.FAILED, "not_found"),
        ("c1", None, Status.INVITED, None),
    ]
    assert "2 memory accounts match" in outcomes[2].detail
    assert len(adapter.resolved) == 1 and stats.handles == 4
    assert sorted(u for _, users in adapter.writes for u in users) == ["ann1", "bob1", "c1"]


def test_two_handles_of_one_person_act_once():
    adapter = Memory()
    adapter.emails["ann.other@example.test"] = "ann1"
    outcomes = invite_people(adapter, "g", ["email:ann@example.test", "email:ann.other@example.test"])
    assert [o.status for o in outcomes] == [Status.INVITED, Status.INVITED]
    assert adapter.writes == [("invite", ["ann1"])]


@pytest.mark.parametrize(
    ("given", "match"),
    [
        ("username:ann", r"username: is not resolved on memory"),
        ("email:not-an-address", r"email:<an e-mail address"),
        ("name:", r"name:<text of 1-256 characters"),
        ("has space", r"letters and digits; or a handle: email:<an e-mail>, name:<a display name>"),
    ],
)
def test_handle_forms_are_checked_before_any_request(given, match):
    with pytest.raises(InviteInputError, match=match):
        parse_people(Memory(), [given])


def test_validation_of_many_people_is_linear():
    import time

    users = [f"u{i}" for i in range(60_000)]
    started = time.perf_counter()
    assert len(parse_people(Memory(), users)) == 60_000
    assert time.perf_counter() - started < 5  # was 16 s with a list membership test


def _client(**policy: object) -> tuple[HttpClient, list[float]]:
    waits: list[float] = []
    client = HttpClient(
        platform="demo",
        base_url="http://127.0.0.1:9",
        scrubber=SecretScrubber(),
        retry=RetryPolicy(jitter=0, **policy),  # type: ignore[arg-type]
        sleep=waits.append,
    )
    return client, waits


def test_waits_are_bounded_per_call_and_long_hints_are_not_slept():
    client, waits = _client(max_call_wait=10)
    client._send = lambda *a, **k: (_ for _ in ()).throw(TransientPlatformError("slow", retry_after=4))  # type: ignore[method-assign]
    with pytest.raises(
        TransientPlatformError, match="gave up: another 4 s would exceed the 10 s one call may wait"
    ):
        client.request("GET", "x", check=lambda r: r)
    assert waits == [4, 4]
    client, waits = _client(defer_after=30)
    client._send = lambda *a, **k: (_ for _ in ()).throw(TransientPlatformError("slow", retry_after=590))  # type: ignore[method-assign]
    with pytest.raises(LongWait) as caught:
        client.request("GET", "x", check=lambda r: r)
    assert caught.value.retry_after == 590 and waits == []


def test_a_login_inside_a_call_is_not_retried_on_its_own():
    client, _ = _client(max_attempts=3)
    logins: list[int] = []

    def login() -> dict[str, str]:
        logins.append(1)
        return client.request("POST", "login", check=lambda r: r)  # type: ignore[no-any-return]

    client._send = lambda method, path, *a: (
        (_ for _ in ()).throw(TransientPlatformError("throttled", retry_after=1)) if path == "login" else {}
    )  # type: ignore[method-assign]
    original = client._send

    def send(method, path, check, params, json_, data, headers, auth, write):  # type: ignore[no-untyped-def]
        if auth is not None:
            auth()
        return original(method, path)

    client._send = send  # type: ignore[method-assign]
    with pytest.raises(TransientPlatformError, match="gave up: 3 attempts"):
        client.request("GET", "x", check=lambda r: r, auth=login)
    assert len(logins) == 3  # 3 outer attempts x 1 login each, not 3 x 3


def test_the_adaptive_pacer_climbs_steps_down_and_settles_under_the_ceiling():
    from airflow_invites.core.pacing import AdaptivePacer

    now = [0.0]
    pacer = AdaptivePacer(2.0, cap=None, clock=lambda: now[0], sleep=lambda s: None)
    ceiling, sent, throttled = 7.0, 0, 0
    for _second in range(120):  # two minutes of clean replies below the ceiling, throttles above it
        now[0] += 1.0
        over = pacer.rate > ceiling
        pacer.record(throttled=over)
        throttled += over
        sent += min(pacer.rate, ceiling)
    assert 0.8 * ceiling <= sent / 120 <= ceiling
    assert throttled <= 6  # it stops probing hard once it knows where the ceiling is
    capped = AdaptivePacer(2.0, cap=3.0, clock=lambda: now[0])
    for _ in range(30):
        now[0] += 1.0
        capped.record(throttled=False)
    assert capped.rate == 3.0
