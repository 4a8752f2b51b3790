"""Rocket.Chat's own traps, over real HTTP against the sandbox (what all platforms share is in
``test_contract.py``)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from airflow_invites.core.errors import InviteInputError, PermanentPlatformError, PlatformAuthError
from airflow_invites.core.membership import invite_people, remove_people
from airflow_invites.core.outcome import Status
from airflow_invites.hooks.rocketchat import RocketChatHook

UNKNOWN_ID = "zzzzzzzzzzzzzzzzz"


def statuses(outcomes):
    return [o.status for o in outcomes]


def invite_posts(sandbox):
    return [r for r in sandbox.requests("rocketchat") if r["path"].endswith("groups.invite")]


def calls(sandbox, endpoint: str) -> int:
    return sum(1 for r in sandbox.requests("rocketchat") if r["path"].endswith(f"/{endpoint}"))


def seeded() -> Any:
    """The sandbox's seeded Rocket.Chat state (the same seed as the server's: passwords of the seed)."""
    from airflow_invites.sandbox.app import Sandbox

    return Sandbox().platforms["rocketchat"]


def api(sandbox, method: str, path: str, auth: tuple[str, str], **kwargs: Any) -> tuple[int, Any]:
    """One call of the real API, as any client sends it."""
    headers = {"X-User-Id": auth[0], "X-Auth-Token": auth[1]}
    url = f"{sandbox.base_url}/rocketchat/api/v1/{path}"
    response = requests.request(method, url, headers=headers, timeout=5, **kwargs)
    return response.status_code, response.json()


def as_bot(sandbox) -> tuple[str, str]:
    connection = sandbox.env()["rocketchat"]["connection"]
    return connection["login"], connection["password"]


def as_admin(sandbox) -> tuple[str, str]:
    admin = seeded().admin
    body = {"user": admin["username"], "password": admin["password"]}
    reply = requests.post(f"{sandbox.base_url}/rocketchat/api/v1/login", json=body, timeout=5).json()
    return reply["data"]["userId"], reply["data"]["authToken"]


def grant(sandbox, permission: str, roles: list[str]) -> None:
    """An admin gives ``permission`` to ``roles`` (``permissions.update``), as on a real server."""
    change = {"permissions": [{"_id": permission, "roles": roles}]}
    status, reply = api(sandbox, "POST", "permissions.update", as_admin(sandbox), json=change)
    assert (status, reply["success"]) == (200, True), reply


def live(sandbox) -> Any:
    """The running server's Rocket.Chat state (it runs in a thread of this process)."""
    return sandbox.server.config.app.state.sandbox.platforms["rocketchat"]


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


def test_unknown_user_reported_failed(sandbox):
    env = sandbox.env()["rocketchat"]
    outcomes = invite_people(RocketChatHook(), env["group"], [env["users"][0], "zzzzzzzzzzzzzzzzz"])
    assert statuses(outcomes) == [Status.INVITED, Status.FAILED]
    assert outcomes[1].code == "user-not-added"


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


# -- issue 15: no false "invited", exact per-person look-ups, group names that look like ids ---------------


def test_an_unknown_id_dropped_while_someone_else_joins_is_not_reported_invited(sandbox):
    """usersCount after minus before equals the people sent, yet the unknown id was never added."""
    env = sandbox.env()["rocketchat"]
    hook = RocketChatHook()
    lookup, joined = hook.lookup, []

    def lookup_then_someone_joins(group: str, users: Any) -> Any:
        state = lookup(group, users)
        if not joined:  # between our look-up and our invite, someone else is added to the group
            joined.extend(sandbox.people("rocketchat", 1, group=env["group"]))
        return state

    hook.lookup = lookup_then_someone_joins  # type: ignore[method-assign]
    outcomes = invite_people(hook, env["group"], [env["users"][0], UNKNOWN_ID])
    assert [(o.status, o.code) for o in outcomes] == [
        (Status.INVITED, None),
        (Status.FAILED, "user-not-added"),
    ]
    assert "no such active user" in outcomes[1].detail
    members = sandbox.members("rocketchat", env["group"])["members"]
    assert env["users"][0] in members and UNKNOWN_ID not in members and joined[0] in members


def test_a_short_username_among_many_similar_ones_is_found_in_a_big_group(sandbox):
    """The per-person look-up filters by username (a substring match), pages, and matches the id."""
    env = sandbox.env()["rocketchat"]
    sandbox.people("rocketchat", 5200, group=env["group"])  # big: per-person look-ups are cheaper
    ann = sandbox.people_with_handles("rocketchat", 1, env["group"], {"username": "ann"})[0]["id"]
    for n in range(120):  # usernames that contain "ann" and sort before it: ann is on page 2
        sandbox.people_with_handles("rocketchat", 1, env["group"], {"username": f"a.ann.{n:03}"})
    before = len(invite_posts(sandbox))
    outcomes = invite_people(RocketChatHook(), env["group"], [ann])
    assert statuses(outcomes) == [Status.ALREADY_MEMBER]
    assert len(invite_posts(sandbox)) == before  # nothing sent for someone already there
    pages = [r for r in sandbox.requests("rocketchat") if r["path"].endswith("groups.members")]
    assert len(pages) == 2  # 121 matches of "ann": two pages of 100


def test_a_group_name_made_of_id_characters_is_found_by_name(sandbox):
    env = sandbox.env()["rocketchat"]
    name = "engineeringteamsx"  # 17 characters of the id alphabet
    status, reply = api(sandbox, "POST", "groups.create", as_bot(sandbox), json={"name": name})
    assert status == 200, reply
    outcomes = invite_people(RocketChatHook(), name, env["users"][:1])
    assert statuses(outcomes) == [Status.INVITED]
    assert env["users"][0] in sandbox.members("rocketchat", reply["group"]["_id"])["members"]


# -- removal: groups.kick and its traps ----------------------------------------------------------------


def test_the_sandbox_reproduces_the_kick_any_trap(sandbox):
    """With kick-user-from-any-p-room, kicking a non-member 'succeeds' and says so in the group."""
    env = sandbox.env()["rocketchat"]
    outsider = env["users"][0]
    kick = {"roomId": env["group"], "userId": outsider}
    status, reply = api(sandbox, "POST", "groups.kick", as_bot(sandbox), json=kick)
    assert (status, reply["errorType"]) == (400, "error-user-not-in-room")
    grant(sandbox, "kick-user-from-any-p-room", ["bot"])
    status, reply = api(sandbox, "POST", "groups.kick", as_bot(sandbox), json=kick)
    assert (status, reply) == (200, {"success": True})
    _status, history = api(sandbox, "GET", "groups.history", as_bot(sandbox), params={"roomId": env["group"]})
    newest = history["messages"][0]
    assert (newest["t"], newest["msg"]) == ("ru", seeded().users[outsider]["username"])


def test_with_the_kick_any_permission_a_non_member_is_never_kicked(sandbox):
    env = sandbox.env()["rocketchat"]
    grant(sandbox, "kick-user-from-any-p-room", ["bot"])
    outcomes = remove_people(RocketChatHook(), env["group"], [env["users"][0]])
    assert statuses(outcomes) == [Status.ALREADY_ABSENT]
    assert calls(sandbox, "groups.kick") == 0
    assert sandbox.removals("rocketchat") == []


def test_the_last_owner_and_a_caller_without_remove_user_are_refused(sandbox):
    env = sandbox.env()["rocketchat"]
    status, reply = api(
        sandbox, "POST", "groups.create", as_bot(sandbox), json={"name": "solo", "members": []}
    )
    solo = reply["group"]["_id"]
    status, reply = api(
        sandbox,
        "POST",
        "groups.kick",
        as_bot(sandbox),
        json={"roomId": solo, "userId": env["connection"]["login"]},
    )
    assert (status, reply["errorType"]) == (400, "error-you-are-last-owner")
    grant(sandbox, "remove-user", ["admin"])  # owners and moderators no longer may
    member = sandbox.people("rocketchat", 1, group=env["group"])[0]
    outcomes = remove_people(RocketChatHook(), env["group"], [member])
    assert (outcomes[0].status, outcomes[0].code) == (Status.FAILED, "error-not-allowed")
    assert member in sandbox.members("rocketchat", env["group"])["members"]


def test_removing_an_unknown_id_sends_no_kick(sandbox):
    env = sandbox.env()["rocketchat"]
    outcomes = remove_people(RocketChatHook(), env["group"], [UNKNOWN_ID])
    assert statuses(outcomes) == [Status.ALREADY_ABSENT]
    assert calls(sandbox, "groups.kick") == 0


# -- handles -------------------------------------------------------------------------------------------


def test_usernames_are_exact_and_an_id_is_not_a_username(sandbox):
    env = sandbox.env()["rocketchat"]
    ada = env["users"][0]
    outcomes = invite_people(
        RocketChatHook(), env["group"], ["username:@ada.lovelace", "username:Alan.Turing", f"username:{ada}"]
    )
    assert [(o.user, o.status, o.code) for o in outcomes] == [
        (ada, Status.INVITED, None),
        ("username:Alan.Turing", Status.FAILED, "not_found"),  # stored as alan.turing
        (f"username:{ada}", Status.FAILED, "not_found"),  # users.info matches ids too: not taken
    ]
    assert "exact username" in outcomes[1].detail
    assert [r["user"] for r in sandbox.invites("rocketchat")] == [ada]


def test_email_needs_the_permission_and_says_which(sandbox):
    env = sandbox.env()["rocketchat"]
    outcomes = invite_people(RocketChatHook(), env["group"], ["ada.lovelace@example.test", env["users"][1]])
    assert [(o.status, o.code) for o in outcomes] == [
        (Status.FAILED, "email-lookup-unavailable"),
        (Status.INVITED, None),
    ]
    assert (
        "view-full-other-user-info" in outcomes[0].detail
        and outcomes[0].handle == "ada.lovelace@example.test"
    )
    assert [r["user"] for r in sandbox.invites("rocketchat")] == [env["users"][1]]


def test_email_with_the_permission_finds_people_and_explains_the_others(sandbox):
    env = sandbox.env()["rocketchat"]
    grant(sandbox, "view-full-other-user-info", ["admin", "bot"])
    person = sandbox.people_with_handles("rocketchat", 1, handles={"email": "Cid@Example.test"})[0]
    outcomes = invite_people(
        RocketChatHook(), env["group"], ["email:cid@example.test", "email:nobody.here@example.test"]
    )
    assert [(o.user, o.status, o.code) for o in outcomes] == [
        (person["id"], Status.INVITED, None),
        ("email:nobody.here@example.test", Status.FAILED, "not_found"),
    ]


def test_email_on_a_server_before_8_4_says_which_version(sandbox):
    env = sandbox.env()["rocketchat"]
    live(sandbox).version = "8.3.2"
    outcomes = invite_people(RocketChatHook(), env["group"], ["email:ada.lovelace@example.test"])
    assert (outcomes[0].status, outcomes[0].code) == (Status.FAILED, "email-lookup-unavailable")
    assert "8.4 or later" in outcomes[0].detail and "8.3.2" in outcomes[0].detail
    assert calls(sandbox, "users.info") == 0
    status, reply = api(sandbox, "GET", "users.info", as_bot(sandbox), params={"email": "a@example.test"})
    assert (status, reply["errorType"]) == (400, "invalid-params")  # as such a server answers


def test_a_bare_username_is_taken_for_an_id_not_a_handle(sandbox):
    env = sandbox.env()["rocketchat"]
    outcomes = invite_people(RocketChatHook(), env["group"], ["ada.lovelace"])
    assert (outcomes[0].status, outcomes[0].code, outcomes[0].handle) == (
        Status.FAILED,
        "user-not-added",
        None,
    )
    assert calls(sandbox, "users.info") == 0


@pytest.mark.parametrize(
    ("person", "expected"),
    [
        ("username:", "username:<text"),
        ("username:a\nb", "username:<text"),
        ("email:not-an-address", "email:<an e-mail address"),
        ("email:", "email:<an e-mail address"),
        ("name:Ada Lovelace", "name: is not resolved on rocketchat"),
        ("ann@", "or a handle: username:<"),  # not an address: taken for an id, which it is not either
    ],
)
def test_bad_handles_fail_before_any_request(sandbox, person, expected):
    env = sandbox.env()["rocketchat"]
    with pytest.raises(InviteInputError, match=r"^users: expected ") as caught:
        invite_people(RocketChatHook(), env["group"], [person])
    assert expected in str(caught.value)
    assert sandbox.requests("rocketchat") == []


def test_users_info_shows_others_only_what_the_caller_may_see(sandbox):
    env = sandbox.env()["rocketchat"]
    ada = env["users"][0]
    _status, other = api(sandbox, "GET", "users.info", as_bot(sandbox), params={"userId": ada})
    assert other["user"]["username"] == "ada.lovelace" and other["user"]["canViewAllInfo"] is False
    assert not {"emails", "roles", "password", "tokens"} & set(other["user"])
    _status, mine = api(sandbox, "GET", "users.info", as_bot(sandbox), params={"username": "invites.bot"})
    assert {"emails", "roles"} <= set(mine["user"]) and mine["user"]["canViewAllInfo"] is True
    _status, seen = api(sandbox, "GET", "users.info", as_admin(sandbox), params={"userId": ada})
    assert seen["user"]["emails"][0]["address"] == "ada.lovelace@example.test"


# -- messages (the notifier's call) ---------------------------------------------------------------------


def test_post_message_to_a_group_is_in_its_history(sandbox):
    env = sandbox.env()["rocketchat"]
    message = RocketChatHook().post_message(env["group"], "onboarding failed on vrchat")
    assert (message["rid"], message["msg"], message["u"]["username"]) == (
        env["group"],
        "onboarding failed on vrchat",
        "invites.bot",
    )
    _status, history = api(sandbox, "GET", "groups.history", as_bot(sandbox), params={"roomId": env["group"]})
    assert history["messages"][0]["_id"] == message["_id"]
    _status, got = api(sandbox, "GET", "chat.getMessage", as_bot(sandbox), params={"msgId": message["_id"]})
    assert got["message"]["msg"] == "onboarding failed on vrchat"


def test_post_message_by_channel_name_answers_as_the_real_api(sandbox):
    body = {"channel": "#general", "text": "approval needed"}
    status, reply = api(sandbox, "POST", "chat.postMessage", as_bot(sandbox), json=body)
    assert status == 200 and set(reply) == {"ts", "channel", "message", "success"}
    assert (reply["channel"], reply["success"], isinstance(reply["ts"], int)) == ("#general", True, True)
    assert reply["message"]["rid"] == "GENERAL"
    assert RocketChatHook().post_message("#general", "again")["rid"] == "GENERAL"
    _status, history = api(
        sandbox, "GET", "channels.history", as_bot(sandbox), params={"roomName": "general"}
    )
    assert [m["msg"] for m in history["messages"][:2]] == ["again", "approval needed"]


def test_post_message_refusals_are_clear_and_not_retried(sandbox):
    hook = RocketChatHook()
    with pytest.raises(PermanentPlatformError, match="no such room"):
        hook.post_message("#no-such-room", "hello")
    with pytest.raises(PermanentPlatformError, match="may not"):
        hook.post_message("secret-club", "hello")  # a private group the bot is not in
    status, reply = api(
        sandbox, "POST", "chat.postMessage", as_bot(sandbox), json={"roomId": "nope", "text": "x"}
    )
    assert (status, reply) == (
        400,
        {"success": False, "error": "[invalid-channel]", "errorType": "invalid-channel"},
    )
    assert calls(sandbox, "chat.postMessage") == 3
    before = len(sandbox.requests("rocketchat"))
    with pytest.raises(InviteInputError, match=r"^room: expected"):
        hook.post_message(" ", "hello")
    with pytest.raises(InviteInputError, match=r"^text: expected"):
        hook.post_message("#general", "")
    assert len(sandbox.requests("rocketchat")) == before


@pytest.mark.parametrize("kind", ["throttle", "truncated", "reset"])
def test_email_resolution_under_a_fault_resolves_once(sandbox, kind):
    """The e-mail resolution's first call (the server version) meets the fault: retried, resolved, invited once."""
    env = sandbox.env()["rocketchat"]
    grant(sandbox, "view-full-other-user-info", ["admin", "bot"])
    hook = RocketChatHook()
    hook.auth_headers()
    waits: list[float] = []
    hook.http.sleep = lambda seconds: (waits.append(seconds), sandbox.clear_faults())  # type: ignore[method-assign]
    sandbox.faults("rocketchat", rate=1.0, kinds=[kind], throttle_seconds=1)
    outcomes = invite_people(hook, env["group"], ["email:ada.lovelace@example.test"])
    assert [(o.user, o.status) for o in outcomes] == [(env["users"][0], Status.INVITED)]
    assert len(waits) == 1 and [r["user"] for r in sandbox.invites("rocketchat")] == [env["users"][0]]


def test_list_group_lists_active_members_with_the_protected_marked(sandbox):
    """What an authoritative roster sync compares with: one listing, the owner and the bot protected."""
    env = sandbox.env()["rocketchat"]
    seed = seeded()
    listing = RocketChatHook().list_group("onboarding")  # by name
    assert {u: s.protected for u, s in listing.items() if s.protected} == {
        seed.bot_id: "the connection's own account",
        seed.admin["_id"]: "the group's owner",
    }
    retired = next(u for u, p in seed.users.items() if p["username"] == "old.timer")
    assert retired not in listing and set(listing) < set(
        sandbox.members("rocketchat", env["group"])["members"]
    )
    assert [r["path"].rsplit("/", 1)[1] for r in sandbox.requests("rocketchat")] == [
        "groups.info",
        "groups.members",
    ]
