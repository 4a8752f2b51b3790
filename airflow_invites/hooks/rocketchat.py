"""Rocket.Chat private groups: auth, look-ups, ``groups.invite`` and its error table.

Reference: ``shared/platforms/rocketchat.md``. A personal access token (``X-User-Id`` +
``X-Auth-Token``) or a username/password login (``POST /api/v1/login``, TOTP two-factor).
``groups.invite`` takes many ``userIds`` in one call, adds them at once (no pending state), is a
silent no-op for members and silently drops unknown ids: so the look-up says who is a member, and
``usersCount`` in the reply says whether everyone sent was added.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from airflow_invites.core.adapter import InviteRequest, InviteResult, Presence, UserState
from airflow_invites.core.errors import (
    AuthExpired,
    InviteInputError,
    PermanentPlatformError,
    PlatformAuthError,
    TransientPlatformError,
)
from airflow_invites.core.http import json_body
from airflow_invites.core.outcome import Status
from airflow_invites.core.totp import is_base32_secret, totp_code
from airflow_invites.hooks.base import InvitesHook

ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
METEOR_ID_RE = re.compile(r"^([23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz]{17}|[0-9a-f]{24})$")
MEMBERS_PAGE = 100  # API_Upper_Count_Limit
PER_PERSON_COST = 2  # users.info + groups.members?filter=<username>
#: errorType -> why the whole call is refused (the group, not one person)
GROUP_ERRORS = {
    "error-room-not-found": "group not found, not a private group, or the bot is not in it",
    "error-room-archived": "the group is archived",
    "error-not-allowed": "the bot may not add people here (needs owner/moderator in the group)",
    "error-room-param-not-provided": "no group given",
}


class RocketChatHook(InvitesHook):
    """Rocket.Chat REST API v1. Connection type ``rocketchat``."""

    platform = "rocketchat"
    conn_name_attr = "rocketchat_conn_id"
    default_conn_name = "rocketchat_default"
    conn_type = "rocketchat"
    hook_name = "Rocket.Chat"
    secret_extras = ("totp_secret",)
    invite_batch_size = 50

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(conn_id, **kwargs)
        self._user_id: str | None = None
        self._token: str | None = None
        self._users_count: dict[str, int] = {}
        self._room_ids: dict[str, str] = {}

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
        reply = self.http.request("POST", "api/v1/login", json=body, check=self._check_login)
        if reply.get("error") == "totp-required":
            secret = self.extra("totp_secret")
            if not secret:
                raise PlatformAuthError(
                    f"rocketchat: {conn.login} has two-factor login; set the connection's TOTP secret"
                )
            if not is_base32_secret(str(secret)):
                raise InviteInputError(f"connection {self.conn_id}: extra totp_secret", "a base32 string")
            body["code"] = totp_code(str(secret))
            reply = self.http.request("POST", "api/v1/login", json=body, check=self._check_login)
            if reply.get("error"):
                raise PlatformAuthError(f"rocketchat: two-factor code refused ({reply['error']})")
        data = reply["data"]
        self._user_id = str(data["userId"])
        self._token = self.remember_secret(str(data["authToken"]))

    def _check_login(self, response: requests.Response) -> dict[str, Any]:
        body = json_body(response, self.platform)
        if response.status_code == 200 and body.get("status") == "success":
            return dict(body)
        if response.status_code == 401:
            error = body.get("error", "")
            if error == "totp-required":
                method = (body.get("details") or {}).get("method")
                if method not in (None, "totp"):
                    raise PlatformAuthError(
                        f"rocketchat: this account's two-factor method is {method!r}; only TOTP can be "
                        "automated. Use a personal access token instead."
                    )
                return {"error": error}
            if error in ("totp-invalid", "totp-max-attempts"):
                return {"error": error}
            raise PlatformAuthError("rocketchat: login refused: wrong username or password")
        self._raise_common(response, body)
        raise PermanentPlatformError(f"rocketchat: unexpected login reply HTTP {response.status_code}")

    # -- the error table -------------------------------------------------------------------------

    def _check(self, response: requests.Response, *, write: bool = False) -> dict[str, Any]:
        body = json_body(response, self.platform, write=write)
        if response.status_code == 200 and isinstance(body, dict) and body.get("success") is not False:
            return body
        self._raise_common(response, body, write=write)
        error_type = body.get("errorType") if isinstance(body, dict) else None
        text = body.get("error", "") if isinstance(body, dict) else ""
        if error_type in GROUP_ERRORS:
            raise PermanentPlatformError(f"rocketchat: {GROUP_ERRORS[error_type]}", code=error_type)
        raise PermanentPlatformError(
            f"rocketchat: HTTP {response.status_code}: {str(text)[:200]}", code=error_type or None
        )

    def _raise_common(self, response: requests.Response, body: Any, *, write: bool = False) -> None:
        status = response.status_code
        if status == 401:
            raise AuthExpired("rocketchat: token refused (You must be logged in to do this.)")
        if status == 429:
            raise TransientPlatformError("rocketchat: rate limited (429)", retry_after=_reset_wait(response))
        if status >= 500:
            raise TransientPlatformError(f"rocketchat: server error HTTP {status}", maybe_applied=write)
        if not isinstance(body, dict):
            raise TransientPlatformError(f"rocketchat: malformed reply HTTP {status}", maybe_applied=write)

    # -- adapter ---------------------------------------------------------------------------------

    def normalize_group(self, group: object) -> str:
        return _rocket_id(group, "group", "a private group's id or name ([A-Za-z0-9._-], 1-64)")

    def normalize_user(self, user: object) -> str:
        return _rocket_id(
            user, "users", "Rocket.Chat user ids ([A-Za-z0-9._-], 1-64, e.g. nSYqWzZ4GsKTX4dyK)"
        )

    def normalize_request(self, request: InviteRequest) -> InviteRequest:
        return request  # groups.invite takes no message

    def _room(self, group: str) -> dict[str, str]:
        """The room selector: its id once known, else id or name by the shape of ``group``."""
        if group in self._room_ids:
            return {"roomId": self._room_ids[group]}
        return {"roomId": group} if METEOR_ID_RE.fullmatch(group) else {"roomName": group}

    def lookup(self, group: str, users: Sequence[str]) -> Mapping[str, UserState]:
        """Members among ``users``: the whole member list, or per person when that is cheaper."""
        info = self.call("GET", "api/v1/groups.info", params=self._room(group), check=self._check)
        self._room_ids[group] = str(info["group"]["_id"])
        users_count = int(info["group"].get("usersCount", 0))
        self._users_count[group] = users_count
        listing_cost = -(-users_count // MEMBERS_PAGE)
        if PER_PERSON_COST * len(users) < listing_cost:
            return self._lookup_each(group, users)
        return self._lookup_listing(group, users)

    def _lookup_listing(self, group: str, users: Sequence[str]) -> dict[str, UserState]:
        wanted = set(users)
        found: dict[str, UserState] = {}
        offset = 0
        while True:
            page = self.call(
                "GET",
                "api/v1/groups.members",
                params={**self._room(group), "offset": offset, "count": MEMBERS_PAGE},
                check=self._check,
            )
            members = page.get("members", [])
            for member in members:
                if member.get("_id") in wanted:
                    found[member["_id"]] = UserState(Presence.MEMBER)
            offset += len(members)
            if not members or offset >= int(page.get("total", 0)) or len(found) == len(wanted):
                return found

    def _lookup_each(self, group: str, users: Sequence[str]) -> dict[str, UserState]:
        """``users.info`` for the username, then ``groups.members`` filtered by it (2 calls a person)."""
        found: dict[str, UserState] = {}
        for user in users:
            username = self.call("GET", "api/v1/users.info", params={"userId": user}, check=self._check_user)
            if username is None:
                found[user] = UserState(Presence.BLOCKED, "no such user", "user-not-found")
                continue
            page = self.call(
                "GET",
                "api/v1/groups.members",
                params={**self._room(group), "filter": username, "count": MEMBERS_PAGE},
                check=self._check,
            )
            if any(member.get("_id") == user for member in page.get("members", [])):
                found[user] = UserState(Presence.MEMBER)
        return found

    def _check_user(self, response: requests.Response) -> str | None:
        """The username, or None for "User not found." (400 without errorType)."""
        if response.status_code == 400:
            body = json_body(response, self.platform)
            if isinstance(body, dict) and body.get("error") == "User not found.":
                return None
        return str(self._check(response)["user"]["username"])

    def send_invites(
        self, group: str, users: Sequence[str], request: InviteRequest
    ) -> Mapping[str, InviteResult]:
        before = self._users_count.get(group)
        response = self.call(
            "POST",
            "api/v1/groups.invite",
            json={**self._room(group), "userIds": list(users)},
            check=self._check_invite,
            write=True,
        )
        if response.get("errorType") == "error-empty-invite-list":
            return {u: _unknown_user() for u in users}
        after = int(response["group"].get("usersCount", 0))
        self._users_count[group] = after
        if before is not None and after - before == len(users):
            return {u: InviteResult(Status.INVITED) for u in users}
        # someone was dropped silently (unknown or deactivated id), or others changed the group
        now = self.lookup(group, users)
        return {
            u: InviteResult(Status.INVITED)
            if u in now and now[u].presence is Presence.MEMBER
            else _unknown_user()
            for u in users
        }

    def _check_invite(self, response: requests.Response) -> dict[str, Any]:
        if response.status_code == 400:
            body = json_body(response, self.platform, write=True)
            if isinstance(body, dict) and body.get("errorType") == "error-empty-invite-list":
                return dict(body)
        return self._check(response, write=True)

    def group_url(self, group: str) -> str | None:
        return f"{self.base_url()}/group/{group}"

    def check_connection(self) -> str:
        me = self.call("GET", "api/v1/me", check=self._check)
        return f"Connected to Rocket.Chat as {me.get('username', '?')}"


def _rocket_id(value: object, field: str, expected: str) -> str:
    if not isinstance(value, str):
        raise InviteInputError(field, expected, value)
    text = value.strip()
    if not ID_RE.fullmatch(text) or set(text) <= {"."}:
        raise InviteInputError(field, expected, value)
    return text


def _unknown_user() -> InviteResult:
    return InviteResult(
        Status.FAILED,
        "not added: no such active user (Rocket.Chat drops unknown or deactivated ids silently)",
        "user-not-added",
    )


def _reset_wait(response: requests.Response) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (epoch milliseconds), else the N in 'wait N seconds'."""
    reset = response.headers.get("X-RateLimit-Reset")
    if reset and reset.isdigit():
        return max(0.0, int(reset) / 1000 - time.time())
    match = re.search(r"wait (\d+) seconds", response.text)
    return float(match.group(1)) if match else None
