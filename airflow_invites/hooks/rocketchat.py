"""Rocket.Chat private groups (REST API v1): auth, look-ups, invite, kick, handles, messages.

A personal access token (headers ``X-User-Id`` + ``X-Auth-Token``) or a username/password login
(``POST /api/v1/login``, TOTP two-factor). What this adapter relies on (Rocket.Chat 6.x-8.x server
source, https://github.com/RocketChat/Rocket.Chat):

- ``groups.invite`` takes many ``userIds`` and adds them at once (no pending state); members are a
  silent no-op and unknown or deactivated ids are dropped silently, so its reply never says who was
  added: ``send_invites`` confirms nobody and the algorithm looks them up again;
- ``groups.kick`` takes one person; a caller with ``kick-user-from-any-p-room`` "kicks" a non-member
  with success (and a "user removed" message), so only people the look-up found are ever kicked;
- ``groups.members`` lists active members only; ``count=0`` means all at once (unless the server
  disallows it: then it pages); its ``filter`` matches username or name anywhere, ignoring case;
- ``users.info?username=`` matches an id or a username exactly; ``users.info?email=`` exists from
  8.4 and finds other people only for a caller with ``view-full-other-user-info``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from airflow_invites.core.adapter import Handle, InviteRequest, PersonResult, Presence, Resolution, UserState
from airflow_invites.core.errors import (
    InviteInputError,
    PermanentPlatformError,
    PersonRefused,
    PlatformAuthError,
)
from airflow_invites.core.outcome import Status
from airflow_invites.core.replies import (
    ErrorTable,
    MessageRule,
    Reply,
    credentials,
    group,
    person,
    read_reply,
)
from airflow_invites.core.totp import is_base32_secret, totp_code
from airflow_invites.hooks.base import InvitesHook
from airflow_invites.platforms import PLATFORMS

SPEC = PLATFORMS["rocketchat"]
#: what a Meteor-generated id looks like (17 characters) or an imported one (Mongo ObjectId)
METEOR_ID_RE = re.compile(r"^([23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz]{17}|[0-9a-f]{24})$")
#: ``groups.members`` page cap (``API_Upper_Count_Limit``, default 100)
MEMBERS_PAGE = 100
#: up to this many members, one ``count=0`` reply lists them all (a few hundred KB); above, pages
ALL_AT_ONCE_UP_TO = 5000
PER_PERSON_COST = 2  # users.info + one filtered groups.members page
EMAIL_SINCE = (8, 4)
EMAIL_PERMISSION = "view-full-other-user-info"
EMPTY_INVITE_LIST = "error-empty-invite-list"
ROOM_NOT_FOUND = "error-room-not-found"
NOT_ADDED = "not added: no such active user (Rocket.Chat drops unknown or deactivated ids silently)"
NO_USER = person(Status.FAILED, "no such user", presence=Presence.NOT_FOUND, code="user-not-found")
BAD_PARAMS = group("the server refused the request's parameters")


def _not_found(detail: str) -> list[MessageRule]:
    """``User not found.`` from ``users.info`` by a handle: the handle matched nobody."""
    rule = person(Status.FAILED, detail, presence=Presence.NOT_FOUND, code="not_found")
    return [MessageRule("User not found.", rule)]


class RocketChatHook(InvitesHook):
    """Rocket.Chat REST API v1. Connection type ``rocketchat``."""

    platform = "rocketchat"
    conn_name_attr = "rocketchat_conn_id"
    default_conn_name = "rocketchat_default"
    conn_type = "rocketchat"
    hook_name = "Rocket.Chat"
    secret_extras = ("totp_secret",)
    #: no documented cap on ``userIds`` (the server adds them concurrently); 500 ids are ~10 KB
    invite_batch_size = 500
    remove_batch_size = 1  # groups.kick names one person
    can_remove_members = True
    can_cancel_invites = False  # groups.invite adds at once: there is never a pending invitation
    handle_kinds = {
        "username": "the account's username, exactly as Rocket.Chat stores it (a leading @ is dropped)",
        "email": f"the account's e-mail address (Rocket.Chat 8.4 or later; the bot needs {EMAIL_PERMISSION})",
    }
    unconfirmed_detail = NOT_ADDED
    unconfirmed_code = "user-not-added"

    errors = ErrorTable(
        "rocketchat",
        codes={
            ROOM_NOT_FOUND: group("group not found, not a private group, or the bot is not in it"),
            "error-room-archived": group("the group is archived"),
            "error-not-allowed": group(
                "the bot may not do this here (it needs owner or moderator in the group)"
            ),
            "error-room-param-not-provided": group("no group given"),
            EMPTY_INVITE_LIST: group(NOT_ADDED),
            "error-user-not-in-room": person(Status.ALREADY_ABSENT, "not a member of the group"),
            "error-you-are-last-owner": person(
                Status.FAILED, "never removed: the group's last owner", code="protected"
            ),
            "error-invalid-user": NO_USER,
            "invalid-params": BAD_PARAMS,
            "error-invalid-params": BAD_PARAMS,
            "invalid-channel": group("no such room (chat.postMessage answers invalid-channel)"),
            "error-message-size-exceeded": group("the message is longer than the server allows"),
        },
        messages=[MessageRule("User not found.", NO_USER)],
    )
    #: ``users.info`` by a handle: "not found" is that handle's outcome
    username_errors = errors.extend(messages=_not_found("no account has this exact username (case included)"))
    email_errors = errors.extend(messages=_not_found("no account has this e-mail address"))
    login_errors = errors.extend(
        codes={
            "totp-invalid": credentials("two-factor code refused (totp-invalid)"),
            "totp-max-attempts": credentials("too many wrong two-factor codes (totp-max-attempts)"),
            "error-login-blocked-for-user": credentials("login blocked for this user after failed attempts"),
            "error-login-blocked-for-ip": credentials("login blocked for this address after failed attempts"),
        },
        statuses={401: credentials("login refused: wrong username or password")},
    )

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(conn_id, **kwargs)
        self._user_id: str | None = None
        self._token: str | None = None
        self._room_ids: dict[str, str] = {}  # group as given -> room id
        self._sizes: dict[str, int] = {}  # room id -> usersCount, from groups.info and invite replies
        self._creators: dict[str, str] = {}  # room id -> the group's owner (its creator, ``u``)
        self._email_ready: str | None = None  # None: not checked; "": e-mail look-ups work; else why not

    # -- auth ------------------------------------------------------------------------------------

    @property
    def auth_type(self) -> str:
        value = str(self.extra("auth_type", "token")).lower()
        if value not in ("token", "password"):
            raise InviteInputError(
                f"connection {self.conn_id}: extra auth_type", "'token' or 'password'", value
            )
        return value

    def base_url(self) -> str:
        return super().base_url().removesuffix("/api/v1").removesuffix("/api")

    def auth_headers(self) -> Mapping[str, str]:
        if self._token is None:
            self._authenticate()
        return {"X-User-Id": self._user_id or "", "X-Auth-Token": self._token or ""}

    def can_reauthenticate(self) -> bool:
        return self.auth_type == "password"

    def reauthenticate(self) -> None:
        self._token = None
        self._authenticate()

    def _authenticate(self) -> None:
        conn = self.connection
        if not conn.login or not conn.password:
            what = (
                "user id and personal access token" if self.auth_type == "token" else "username and password"
            )
            raise InviteInputError(f"connection {self.conn_id}: login/password", what)
        if self.auth_type == "token":
            self._user_id, self._token = conn.login, conn.password
            return
        body: dict[str, Any] = {"user": conn.login, "password": conn.password}
        data = self._login(body)
        if data is None:
            secret = self.extra("totp_secret")
            if not secret:
                raise PlatformAuthError(
                    f"rocketchat: {conn.login} has two-factor login; set the connection's TOTP secret"
                )
            if not is_base32_secret(str(secret)):
                raise InviteInputError(f"connection {self.conn_id}: extra totp_secret", "a base32 string")
            data = self._login({**body, "code": totp_code(str(secret))})
            if data is None:
                raise PlatformAuthError("rocketchat: two-factor code refused")
        self._user_id = str(data["userId"])
        self._token = self.remember_secret(str(data["authToken"]))

    def _login(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """The login's ``data``, or None when the server asks for a TOTP code."""

        def check(response: requests.Response) -> dict[str, Any] | None:
            reply = read_reply(response, self.platform, self.read_envelope)
            if not reply.ok and reply.code == "totp-required":
                method = (reply.value.get("details") or {}).get("method")
                if method not in (None, "totp"):
                    raise PlatformAuthError(
                        f"rocketchat: this account's two-factor method is {method!r}; only TOTP can be "
                        "automated. Use a personal access token instead."
                    )
                return None
            return dict(self.login_errors.interpret(reply)["data"])

        return self.http.request("POST", "api/v1/login", json=dict(body), check=check)

    def read_envelope(self, response: requests.Response, body: Any) -> Reply:
        """``{"success": true, ...}`` (older servers may omit it), or ``error`` + ``errorType``."""
        status = response.status_code
        if not isinstance(body, dict):
            return Reply(status, False, message="reply is not a JSON object")
        if status == 200 and body.get("success") is not False:
            return Reply(200, True, body)
        message = str(body.get("error") or body.get("message") or "")
        return Reply(
            status,
            False,
            body,
            code=body.get("errorType") or _bare_code(message),
            message=message,
            retry_after=_reset_wait(response, message),
        )

    # -- input -----------------------------------------------------------------------------------

    def normalize_group(self, group: object) -> str:
        return _rocket_id(group, "group", "a private group's id or name ([A-Za-z0-9._-], 1-64)")

    def normalize_user(self, user: object) -> str:
        return _rocket_id(
            user, "users", "Rocket.Chat user ids ([A-Za-z0-9._-], 1-64, e.g. nSYqWzZ4GsKTX4dyK)"
        )

    def normalize_handle(self, handle: Handle) -> Handle:
        if handle.kind == "username":
            handle = Handle("username", handle.value.strip().removeprefix("@"))
        return super().normalize_handle(handle)

    # -- the group -------------------------------------------------------------------------------

    def _room_id(self, group: str) -> str:
        """The group's room id: a name or an id, tried in the order its shape suggests."""
        if group in self._room_ids:
            return self._room_ids[group]
        first, second = ("roomId", "roomName") if METEOR_ID_RE.fullmatch(group) else ("roomName", "roomId")
        try:
            info = self.call("GET", "api/v1/groups.info", params={first: group})
        except PermanentPlatformError as exc:
            if exc.code != ROOM_NOT_FOUND:
                raise
            info = self.call("GET", "api/v1/groups.info", params={second: group})
        room = info["group"]
        rid = str(room["_id"])
        self._room_ids[group] = rid
        self._sizes[rid] = int(room.get("usersCount", 0))
        self._creators[rid] = str((room.get("u") or {}).get("_id") or "")
        return rid

    # -- reads -----------------------------------------------------------------------------------

    def lookup(self, group: str, users: Sequence[str]) -> Mapping[str, UserState]:
        """Members among ``users``: the member list, or per person in a big group when cheaper."""
        rid = self._room_id(group)
        size = self._sizes.get(rid, 0)
        listing_cost = 1 if size <= ALL_AT_ONCE_UP_TO else -(-size // MEMBERS_PAGE)
        if PER_PERSON_COST * len(users) < listing_cost:
            found = {user: self._lookup_one(rid, user) for user in users}
        else:
            found = self._lookup_listing(rid, users, size)
        return self._protect(rid, {u: s for u, s in found.items() if s.presence is not Presence.ABSENT})

    def _lookup_listing(self, rid: str, users: Sequence[str], size: int) -> dict[str, UserState]:
        wanted = set(users)
        found: dict[str, UserState] = {}
        for member in self._members(rid, {"count": 0 if size <= ALL_AT_ONCE_UP_TO else MEMBERS_PAGE}):
            if member.get("_id") in wanted:
                found[member["_id"]] = UserState(Presence.MEMBER)
                if len(found) == len(wanted):
                    break
        return found

    def _lookup_one(self, rid: str, user: str) -> UserState:
        """``users.info`` for the username, then the member list filtered by it, paged, matched by id."""
        try:
            account = self.call("GET", "api/v1/users.info", params={"userId": user}, person=True)["user"]
        except PersonRefused as refused:
            if refused.presence is None:
                raise
            return UserState(refused.presence, str(refused), refused.code)
        if account.get("active") is False:
            return UserState(Presence.NOT_FOUND, "a deactivated account", "user-deactivated")
        query = {"filter": str(account["username"]), "count": MEMBERS_PAGE}
        if any(member.get("_id") == user for member in self._members(rid, query)):
            return UserState(Presence.MEMBER)
        return UserState(Presence.ABSENT)

    def _members(self, rid: str, query: Mapping[str, Any]) -> Any:
        """Every member ``groups.members`` lists for ``query``, page after page."""
        offset = 0
        while True:
            page = self.call(
                "GET", "api/v1/groups.members", params={"roomId": rid, **query, "offset": offset}
            )
            members = page.get("members", [])
            yield from members
            offset += len(members)
            if not members or offset >= int(page.get("total", 0)):
                return

    def _protect(self, rid: str, found: dict[str, UserState]) -> dict[str, UserState]:
        """Members never removed: the connection's own account and the group's owner (its creator)."""
        for user, state in found.items():
            if state.presence is Presence.MEMBER and user == self._user_id:
                found[user] = UserState(Presence.MEMBER, protected="the connection's own account")
            elif state.presence is Presence.MEMBER and user == self._creators.get(rid):
                found[user] = UserState(Presence.MEMBER, protected="the group's owner")
        return found

    def resolve(self, handles: Sequence[Handle]) -> Mapping[Handle, Resolution]:
        """``users.info?username=`` (exact) or ``?email=`` (8.4+, with ``view-full-other-user-info``)."""
        found: dict[Handle, Resolution] = {}
        for handle in handles:
            if handle.kind == "email":
                account = self._by_email(handle.value)
            else:
                reply = self.call(
                    "GET", "api/v1/users.info", params={"username": handle.value}, person=True,
                    errors=self.username_errors,
                )  # fmt: skip
                account = reply["user"]
                if account.get("username") != handle.value:  # the server also matches ids here
                    continue
            found[handle] = Resolution.found(str(account["_id"]))
        return found

    def _by_email(self, address: str) -> dict[str, Any]:
        if self._email_ready is None:
            self._email_ready = self._email_support()
        if self._email_ready:
            raise PermanentPlatformError(self._email_ready, code="email-lookup-unavailable")
        try:
            reply = self.call(
                "GET", "api/v1/users.info", params={"email": address}, person=True, errors=self.email_errors
            )
        except PersonRefused:
            # "User not found." is also what a caller without the permission gets for everyone else
            why = self._missing_permission()
            if why:
                self._email_ready = why
                raise PermanentPlatformError(why, code="email-lookup-unavailable") from None
            raise
        return dict(reply["user"])

    def _email_support(self) -> str:
        """Why this server cannot find people by e-mail (its version), or "" when it can."""
        version = str(self.call("GET", "api/info").get("version") or "")
        numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
        if len(numbers) == 2 and numbers < EMAIL_SINCE:
            return (
                f"rocketchat: finding people by e-mail needs Rocket.Chat 8.4 or later (users.info?email=); "
                f"this server is {version}. Give username:<name> or the user id instead"
            )
        return ""

    def _missing_permission(self) -> str:
        """Why the connection's user may not look others up by e-mail, or "" when it may."""
        roles = set(self.call("GET", "api/v1/me").get("roles") or [])
        listed = self.call("GET", "api/v1/permissions.listAll").get("update") or []
        allowed = next((set(p.get("roles") or []) for p in listed if p.get("_id") == EMAIL_PERMISSION), set())
        if roles & allowed:
            return ""
        return (
            f"rocketchat: finding people by e-mail needs the permission {EMAIL_PERMISSION} for the "
            f"connection's user (roles {sorted(roles)}; the permission is given to {sorted(allowed)}); "
            "without it Rocket.Chat answers 'User not found.' for everyone else. Grant it, or give "
            "username:<name> or the user id instead"
        )

    # -- writes ----------------------------------------------------------------------------------

    def send_invites(
        self, group: str, users: Sequence[str], request: InviteRequest
    ) -> Mapping[str, PersonResult]:
        """One ``groups.invite``; its reply names nobody, so nobody is confirmed here."""
        rid = self._room_id(group)
        try:
            reply = self.call(
                "POST", "api/v1/groups.invite", json={"roomId": rid, "userIds": list(users)}, write=True
            )
        except PermanentPlatformError as refused:
            if refused.code != EMPTY_INVITE_LIST:
                raise
            return dict.fromkeys(users, PersonResult(Status.FAILED, NOT_ADDED, self.unconfirmed_code))
        self._sizes[rid] = int(reply["group"].get("usersCount", 0))
        return {}

    def remove_members(self, group: str, users: Sequence[str]) -> Mapping[str, PersonResult]:
        rid = self._room_id(group)
        for user in users:
            self.call(
                "POST", "api/v1/groups.kick", json={"roomId": rid, "userId": user}, person=True, write=True
            )
        return dict.fromkeys(users, PersonResult(Status.REMOVED))

    def post_message(self, room: str, text: str) -> dict[str, Any]:
        """Post ``text`` to ``room`` (a room id, ``#name`` or ``@username``); returns the message posted."""
        if not isinstance(room, str) or not room.strip() or "\n" in room:
            raise InviteInputError("room", "a room id, #room-name or @username", room)
        if not isinstance(text, str) or not text.strip():
            raise InviteInputError("text", "a non-empty message text", text)
        room = room.strip()
        target = {"channel": room} if room.startswith(("#", "@")) else {"roomId": room}
        reply = self.call("POST", "api/v1/chat.postMessage", json={**target, "text": text}, write=True)
        return dict(reply["message"])

    def group_url(self, group: str) -> str | None:
        return f"{self.base_url()}/group/{group}"

    def check_connection(self) -> str:
        me = self.call("GET", "api/v1/me")
        return f"Connected to Rocket.Chat as {me.get('username', '?')}"


def _rocket_id(value: object, field: str, expected: str) -> str:
    if not isinstance(value, str):
        raise InviteInputError(field, expected, value)
    text = value.strip()
    if not SPEC.user_re.fullmatch(text) or set(text) <= {"."}:
        raise InviteInputError(field, expected, value)
    return text


def _bare_code(message: str) -> str | None:
    """The code in an error text without ``errorType``: ``... [error-x]``, or a text that is one."""
    match = re.search(r"\[([a-z0-9-]+)\]\s*$", message) or re.fullmatch(
        r"([a-z][a-z0-9]*(-[a-z0-9]+)+)", message
    )
    return match.group(1) if match else None


def _reset_wait(response: requests.Response, message: str) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (epoch milliseconds), else the N in 'wait N seconds'."""
    reset = response.headers.get("X-RateLimit-Reset")
    if response.status_code == 429 and reset and reset.isdigit():
        return max(0.0, int(reset) / 1000 - time.time())
    match = re.search(r"wait (\d+) seconds", message)
    return float(match.group(1)) if match else None
