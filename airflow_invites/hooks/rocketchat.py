"""Rocket.Chat private groups (REST API v1): auth, look-ups, invite, kick, handles, messages.

A personal access token (``X-User-Id`` + ``X-Auth-Token``) or a login (``POST /api/v1/login``, TOTP).
Relied on (server source, https://github.com/RocketChat/Rocket.Chat, 6.x-8.x): ``groups.invite`` adds
many ``userIds`` at once, members are a no-op and unknown or deactivated ids are dropped silently, so
its reply names nobody (the algorithm looks them up again); ``groups.kick`` takes one person, and a
caller with ``kick-user-from-any-p-room`` "kicks" a non-member with success, so only people the
look-up found are kicked; ``groups.members`` lists active members (``count=0``: all at once) and its
``filter`` matches username or name anywhere; ``users.info?username=`` matches an id or a username
exactly; ``users.info?email=`` exists from 8.4, for others only with ``view-full-other-user-info``.
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
USERS_INFO = "api/v1/users.info"
NOT_ADDED = "not added: no such active user (Rocket.Chat drops unknown or deactivated ids silently)"
NO_USER = person(Status.FAILED, "no such user", presence=Presence.NOT_FOUND, code="user-not-found")
NOT_FOUND = {
    "username": "no Rocket.Chat account has this exact username (case included)",
    "email": "no Rocket.Chat account has this e-mail address",
}


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
    unconfirmed_detail = NOT_ADDED
    unconfirmed_code = "user-not-added"

    errors = ErrorTable(
        "rocketchat",
        codes={
            ROOM_NOT_FOUND: group("group not found, not a private group, or the bot is not in it"),
            "error-room-archived": group("the group is archived"),
            "error-not-allowed": group("the bot may not do this (it needs owner or moderator in the group)"),
            "error-room-param-not-provided": group("no group given"),
            EMPTY_INVITE_LIST: group(NOT_ADDED),
            "error-user-not-in-room": person(Status.ALREADY_ABSENT, "not a member of the group"),
            "error-you-are-last-owner": person(
                Status.FAILED, "never removed: the last owner", code="protected"
            ),
            "error-invalid-user": NO_USER,
            "invalid-channel": group("no such room (chat.postMessage answers invalid-channel)"),
            "error-message-size-exceeded": group("the message is longer than the server allows"),
        },
        messages=[MessageRule("User not found.", NO_USER)],
    )
    login_errors = errors.extend(
        codes={
            "totp-invalid": credentials("two-factor code refused (totp-invalid)"),
            "totp-max-attempts": credentials("too many wrong two-factor codes (totp-max-attempts)"),
        },
        statuses={401: credentials("login refused: wrong username or password")},
    )

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(conn_id, **kwargs)
        self._user_id: str | None = None
        self._token: str | None = None
        self._rooms: dict[str, dict[str, Any]] = {}  # group as given -> its room (groups.info, invites)
        self._email_why: str | None = None  # None: not checked yet; "": e-mail look-ups work

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
                    f"rocketchat: {conn.login} logs in with a TOTP code: set the TOTP secret"
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
        code = body.get("errorType") or _bare_code(message)
        hint = _reset_wait(response, message)
        return Reply(status, False, body, code=code, message=message, retry_after=hint)

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

    def _room(self, group: str) -> dict[str, Any]:
        """The group's room (``_id``, ``usersCount``, ``u``): by name or id, in the order its shape suggests."""
        if group not in self._rooms:
            keys = ["roomId", "roomName"] if METEOR_ID_RE.fullmatch(group) else ["roomName", "roomId"]
            try:
                info = self.call("GET", "api/v1/groups.info", params={keys[0]: group})
            except PermanentPlatformError as exc:
                if exc.code != ROOM_NOT_FOUND:
                    raise
                info = self.call("GET", "api/v1/groups.info", params={keys[1]: group})
            self._rooms[group] = info["group"]
        return self._rooms[group]

    # -- reads -----------------------------------------------------------------------------------

    def lookup(self, group: str, users: Sequence[str]) -> Mapping[str, UserState]:
        """Members among ``users``: the member list, or per person in a big group when cheaper."""
        room = self._room(group)
        size = int(room.get("usersCount", 0))
        if PER_PERSON_COST * len(users) < (1 if size <= ALL_AT_ONCE_UP_TO else -(-size // MEMBERS_PAGE)):
            found = {u: self._protect(u, self._lookup_one(room["_id"], u), room) for u in users}
            return {u: s for u, s in found.items() if s.presence is not Presence.ABSENT}
        listing = self.list_group(group)
        return {u: listing[u] for u in users if u in listing}

    def list_group(self, group: str) -> Mapping[str, UserState]:
        """Every member ``groups.members`` lists (deactivated members never are), the protected marked."""
        room = self._room(group)
        page = 0 if int(room.get("usersCount", 0)) <= ALL_AT_ONCE_UP_TO else MEMBERS_PAGE
        members = self._members(str(room["_id"]), {"count": page})
        return {
            str(m["_id"]): self._protect(str(m["_id"]), UserState(Presence.MEMBER), room) for m in members
        }

    def _lookup_one(self, rid: str, user: str) -> UserState:
        """``users.info`` for the username, then the member list filtered by it, paged, matched by id."""
        try:
            account = self.call("GET", USERS_INFO, params={"userId": user}, person=True)["user"]
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
            params = {"roomId": rid, **query, "offset": offset}
            page = self.call("GET", "api/v1/groups.members", params=params)
            members = page.get("members", [])
            yield from members
            offset += len(members)
            if not members or offset >= int(page.get("total", 0)):
                return

    def _protect(self, user: str, state: UserState, room: Mapping[str, Any]) -> UserState:
        """Members never removed: the connection's own account and the group's owner (its creator ``u``)."""
        owner = str((room.get("u") or {}).get("_id") or "")
        if state.presence is Presence.MEMBER and user in (self._user_id, owner):
            why = "the connection's own account" if user == self._user_id else "the group's owner"
            return UserState(Presence.MEMBER, protected=why)
        return state

    def resolve(self, handles: Sequence[Handle]) -> Mapping[Handle, Resolution]:
        """``users.info?username=`` (exact) or ``?email=`` (8.4+, with ``view-full-other-user-info``)."""
        found: dict[Handle, Resolution] = {}
        for handle in handles:
            if handle.kind == "email" and self._email_blocked():
                raise PermanentPlatformError(
                    f"rocketchat: finding people by e-mail {self._email_why}. "
                    "Give username:<name> or the user id instead",
                    code="email-lookup-unavailable",
                )
            try:
                account = self.call("GET", USERS_INFO, params={handle.kind: handle.value}, person=True)[
                    "user"
                ]
            except PersonRefused:  # "User not found."
                found[handle] = Resolution.not_found(NOT_FOUND[handle.kind])
                continue
            if handle.kind == "email" or account.get("username") == handle.value:  # it also matches ids
                found[handle] = Resolution.found(str(account["_id"]))
        return found

    def _email_blocked(self) -> str:
        """Why e-mail look-ups cannot work here (a server before 8.4; the bot lacks the permission), or ""."""
        if self._email_why is None:
            version = str(self.call("GET", "api/info").get("version") or "")
            numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
            if len(numbers) == 2 and numbers < EMAIL_SINCE:
                self._email_why = (
                    f"needs Rocket.Chat 8.4 or later (users.info?email=); this server is {version}"
                )
            else:
                self._email_why = self._missing_permission()
        return self._email_why

    def _missing_permission(self) -> str:
        """Why the connection's user may not look others up by e-mail, or "" when it may."""
        roles = set(self.call("GET", "api/v1/me").get("roles") or [])
        listed = self.call("GET", "api/v1/permissions.listAll").get("update") or []
        allowed = next((set(p.get("roles") or []) for p in listed if p.get("_id") == EMAIL_PERMISSION), set())
        if roles & allowed:
            return ""
        return (
            f"needs the permission {EMAIL_PERMISSION} for the connection's user (it has roles {sorted(roles)}; "
            f"the permission is given to {sorted(allowed)}): without it Rocket.Chat answers 'User not found.' "
            "for everyone else"
        )

    # -- writes ----------------------------------------------------------------------------------

    def send_invites(
        self, group: str, users: Sequence[str], request: InviteRequest
    ) -> Mapping[str, PersonResult]:
        """One ``groups.invite``; its reply names nobody, so nobody is confirmed here."""
        rid = self._room(group)["_id"]
        try:
            reply = self.call(
                "POST", "api/v1/groups.invite", json={"roomId": rid, "userIds": list(users)}, write=True
            )
        except PermanentPlatformError as refused:
            if refused.code != EMPTY_INVITE_LIST:
                raise
            return dict.fromkeys(users, PersonResult(Status.FAILED, NOT_ADDED, self.unconfirmed_code))
        self._rooms[group] = reply["group"]  # the group as it is now (usersCount)
        return {}

    def remove_members(self, group: str, users: Sequence[str]) -> Mapping[str, PersonResult]:
        rid = self._room(group)["_id"]
        for user in users:  # one person per call
            kick = {"roomId": rid, "userId": user}
            self.call("POST", "api/v1/groups.kick", json=kick, person=True, write=True)
        return dict.fromkeys(users, PersonResult(Status.REMOVED))

    def post_message(self, room: str, text: str) -> dict[str, Any]:
        """Post ``text`` to ``room`` (a room id, ``#name`` or ``@username``); returns the message posted."""
        where = room.strip() if isinstance(room, str) and "\n" not in room else ""
        if not where:
            raise InviteInputError("room", "a room id, #room-name or @username", room)
        if not isinstance(text, str) or not text.strip():
            raise InviteInputError("text", "a non-empty message text", text)
        key = "channel" if where.startswith(("#", "@")) else "roomId"
        reply = self.call("POST", "api/v1/chat.postMessage", json={key: where, "text": text}, write=True)
        return dict(reply["message"])

    def group_url(self, group: str) -> str | None:
        return f"{self.base_url()}/group/{group}"

    def check_connection(self) -> str:
        me = self.call("GET", "api/v1/me")
        return f"Connected to Rocket.Chat as {me.get('username', '?')}"


def _rocket_id(value: object, field: str, expected: str) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not SPEC.user_re.fullmatch(text) or set(text) <= {"."}:
        raise InviteInputError(field, expected, value)
    return text


def _bare_code(message: str) -> str | None:
    """The code in an error text without ``errorType``: ``... [error-x]``, or a text that is one."""
    match = re.search(r"\[([a-z0-9-]+)\]\s*$", message) or re.fullmatch(r"([a-z]+(-[a-z0-9]+)+)", message)
    return match.group(1) if match else None


def _reset_wait(response: requests.Response, message: str) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (epoch milliseconds), else the N in 'wait N seconds'."""
    reset = response.headers.get("X-RateLimit-Reset")
    if response.status_code == 429 and reset and reset.isdigit():
        return max(0.0, int(reset) / 1000 - time.time())
    match = re.search(r"wait (\d+) seconds", message)
    return float(match.group(1)) if match else None
