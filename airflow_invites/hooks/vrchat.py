"""VRChat groups: cookie sessions with TOTP two-factor, look-ups, group invites and their error table.

Reference: ``shared/platforms/vrchat.md``. There are no API keys: a login (``GET /auth/user`` with
HTTP Basic, each part URL-encoded before base64) answers with an ``auth`` cookie and, for accounts
with an authenticator app, the HTTP 200 challenge ``{"requiresTwoFactorAuth":["totp","otp"]}``;
``POST /auth/twofactorauth/totp/verify`` then makes the cookie usable and adds a
``twoFactorAuth`` ("remember this device") cookie. VRChat limits how many sessions an account may
open, so the cookies are kept between task runs in a masked Variable and a login happens only when
a call answers 401. Inviting a banned person lifts the ban, so banned people are never invited.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import quote

import requests

from airflow_invites.core.adapter import InviteRequest, InviteResult, Presence, UserState
from airflow_invites.core.errors import (
    AuthExpired,
    InviteInputError,
    PermanentPlatformError,
    PlatformAuthError,
    TransientPlatformError,
)
from airflow_invites.core.http import HttpClient, json_body, retry_after_seconds
from airflow_invites.core.outcome import Status
from airflow_invites.core.totp import is_base32_secret, totp_code
from airflow_invites.hooks.base import USER_AGENT, InvitesHook

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
USER_ID_RE = re.compile(rf"^(usr_{UUID}|[A-Za-z0-9]{{10}})$")
GROUP_ID_RE = re.compile(rf"^grp_{UUID}$")
#: ``name/version`` then a contact (an e-mail address or a URL), as VRChat's firewall demands
USER_AGENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[0-9A-Za-z][0-9A-Za-z._+-]*\s+\S.*$")
CONTACT_RE = re.compile(r"[^\s@()<>]+@[^\s@()<>]+\.[A-Za-z]{2,}|https?://[^\s()<>]+\.[^\s()<>]+")
PLACEHOLDER_CONTACT_RE = re.compile(r"(@|//)(www\.)?example\.(com|org|net)\b|my@email\.com", re.IGNORECASE)
DEFAULT_USER_AGENT = USER_AGENT
DEFAULT_HOST = "https://api.vrchat.cloud/api/1"
PAGE = 100  # the largest ``n`` VRChat accepts
SESSION_TOKEN = "session_token"  # RuntimeStore name (contains "token": Airflow masks it)
#: no Retry-After on a 429: VRChat asks clients to back off for a minute, not to hammer
DEFAULT_THROTTLE_WAIT_S = 60.0
INVITE_PERMISSIONS = {"*", "group-invites-manage"}
#: relations a per-person look-up acts on; others (requested, left...) leave the person invitable
RELATIONS_THAT_COUNT = {"member", "invited", "banned", "userblocked"}
BAN_PERMISSIONS = {"*", "group-bans-manage"}

#: VRChat writes messages with look-alike punctuation (U+2024 for a full stop, U+01C3 for ``!``...)
LOOKALIKES = str.maketrans(
    {"\u2024": ".", "\u01c3": "!", "\u02f8": ":", "\u201a": ",", "\u2018": "'", "\u2019": "'", "\u00a0": " "}
)


@dataclass(frozen=True)
class Rule:
    """One line of the error table."""

    status: int
    text: str  # substring of the normalised message
    result: Status | None  # None: the whole call is refused (PermanentPlatformError)
    code: str
    detail: str


#: THE error table: (HTTP status, message substring) -> what it means. First match wins.
#: 401 (log in again once), 429 (back off, never log in again) and 5xx are handled in ``_raise_for``.
ERROR_TABLE: tuple[Rule, ...] = (
    Rule(400, "already a member", Status.ALREADY_MEMBER, "already-member", "already a member"),
    Rule(400, "already invited", Status.ALREADY_INVITED, "already-invited", "an invite is pending"),
    Rule(
        403, "can't invite that user", Status.FAILED, "cannot-invite", "VRChat refuses invites to this user"
    ),
    Rule(403, "too many groups", Status.FAILED, "too-many-groups", "the user is in too many groups"),
    Rule(404, "user not found", Status.FAILED, "user-not-found", "no such VRChat user"),
    Rule(404, "group", None, "group-not-found", "group not found"),
    Rule(403, "not a member", None, "not-a-member", "the bot account is not a member of this group"),
    Rule(403, "permission", None, "no-permission", "the bot account's role lacks a permission here"),
    Rule(403, "not allowed", None, "no-permission", "the bot account's role lacks a permission here"),
)


def normalise_message(text: str) -> str:
    """Plain lower-case text: look-alikes replaced, JSON quoting removed."""
    text = unicodedata.normalize("NFKC", text.translate(LOOKALIKES))
    return text.strip().strip('"').strip().casefold()


def error_message(body: Any) -> str:
    """The message of VRChat's envelopes: ``{"error":{"message":...}}`` or ``{"error":"..."}``."""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict):
        message = error.get("message", "")
        if isinstance(message, str) and message.startswith('"'):
            with contextlib.suppress(ValueError):
                message = json.loads(message)
        return str(message)
    return str(error or "")


class VRChatHook(InvitesHook):
    """VRChat API (``api/1``). Connection type ``vrchat``."""

    platform = "vrchat"
    conn_name_attr = "vrchat_conn_id"
    default_conn_name = "vrchat_default"
    conn_type = "vrchat"
    hook_name = "VRChat"
    default_host = DEFAULT_HOST
    secret_extras = ("totp_secret", "auth_cookie")
    invite_batch_size = 1  # POST /groups/{id}/invites names one person
    client_rate = (2.0, 10)  # VRChat publishes no limit and asks for gentle clients
    write_concurrency = 4  # round trips overlap; the pacing above keeps the rate

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(conn_id, **kwargs)
        self._cookies: dict[str, str] | None = None  # auth (+ twoFactorAuth) in use
        self._cookie_source = ""  # "store", "connection" or "login"
        self._permissions: dict[str, set[str]] = {}
        #: logins this hook made (every one counts against VRChat's session limit)
        self.logins = 0

    # -- connection ------------------------------------------------------------------------------

    def base_url(self) -> str:
        url = super().base_url()
        return url if url.endswith("/api/1") else f"{url}/api/1"

    def user_agent(self) -> str:
        value = str(self.extra("user_agent", DEFAULT_USER_AGENT)).strip()
        expected = "name/version contact, e.g. 'acme-invites/1.2 ops@acme.org' (a real contact)"
        field = f"connection {self.conn_id}: extra user_agent"
        if not USER_AGENT_RE.fullmatch(value) or not CONTACT_RE.search(value.split(None, 1)[1]):
            raise InviteInputError(field, expected, value)
        if PLACEHOLDER_CONTACT_RE.search(value):
            raise InviteInputError(field, expected + ", not a placeholder", value)
        return value

    @cached_property
    def http(self) -> HttpClient:
        client = super().http
        # cookies are sent explicitly (auth_headers), never picked up silently by the session
        client.session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        return client

    def _totp_secret(self) -> str | None:
        secret = self.extra("totp_secret")
        if secret and not is_base32_secret(str(secret)):
            raise InviteInputError(
                f"connection {self.conn_id}: extra totp_secret", "a base32 string", show_value=False
            )
        return str(secret) if secret else None

    # -- session ---------------------------------------------------------------------------------

    def auth_headers(self) -> Mapping[str, str]:
        if self._cookies is None:
            self._open_session()
        return {"Cookie": _cookie_header(self._cookies or {})}

    def can_reauthenticate(self) -> bool:
        return True  # reauthenticate() itself says clearly when no other credential is left

    def reauthenticate(self) -> None:
        """The cookie in use was refused: try the connection's cookie, else log in (once)."""
        failed, source = self._cookies or {}, self._cookie_source
        self._cookies = None
        if source == "store":
            kept = {k: v for k, v in failed.items() if k == "twoFactorAuth"}
            if kept:
                self.store.set(SESSION_TOKEN, json.dumps(kept))
            else:
                self.store.delete(SESSION_TOKEN)
        ready = self.extra("auth_cookie")
        if ready and source == "store" and failed.get("auth") != ready:
            self._use({"auth": str(ready)}, "connection")
            return
        self._login(two_factor=failed.get("twoFactorAuth"))

    def _open_session(self) -> None:
        """Cookies kept by an earlier task, else the connection's cookie, else a login."""
        stored = self._stored_cookies()
        if stored.get("auth"):
            self._use(stored, "store")
            return
        ready = self.extra("auth_cookie")
        if ready:
            self._use({"auth": str(ready)}, "connection")
            return
        self._login(two_factor=stored.get("twoFactorAuth"))

    def _stored_cookies(self) -> dict[str, str]:
        raw = self.store.get(SESSION_TOKEN)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        cookies = {k: str(v) for k, v in data.items() if k in ("auth", "twoFactorAuth") and v}
        for value in cookies.values():
            self.remember_secret(value)
        return cookies

    def _use(self, cookies: dict[str, str], source: str) -> None:
        for value in cookies.values():
            self.remember_secret(value)
        self._cookies, self._cookie_source = cookies, source

    def _login(self, *, two_factor: str | None) -> None:
        """Basic login, then TOTP if VRChat asks for it; keeps the cookies for later tasks."""
        conn = self.connection
        if not conn.login or not conn.password:
            raise PlatformAuthError(
                f"vrchat: no usable session and connection {self.conn_id} has no username/password "
                "to log in with; re-authorise this connection (a fresh auth cookie, or a login)"
            )
        secret = self._totp_secret()
        raw = f"{quote(conn.login, safe='')}:{quote(conn.password, safe='')}"
        basic = base64.b64encode(raw.encode()).decode()
        self.remember_secret(basic)
        headers = {"Authorization": f"Basic {basic}"}
        if two_factor:
            headers["Cookie"] = _cookie_header({"twoFactorAuth": two_factor})
        self.logins += 1
        self.log.info("vrchat: logging in as %s (no usable session)", conn.login)
        body, cookies = self.http.request("GET", "auth/user", headers=headers, check=self._check_login)
        session = {"auth": cookies.get("auth", "")}
        if two_factor and "twoFactorAuth" not in cookies:
            session["twoFactorAuth"] = two_factor
        session.update({k: v for k, v in cookies.items() if k == "twoFactorAuth"})
        if not session["auth"]:
            raise PlatformAuthError("vrchat: the login answered without an auth cookie")
        self._use(session, "login")
        methods = body.get("requiresTwoFactorAuth")
        if methods is not None:
            self._second_factor(list(methods), secret)
        self.store.set(SESSION_TOKEN, json.dumps(self._cookies))

    def _second_factor(self, methods: list[str], secret: str | None) -> None:
        if "totp" not in methods:
            raise PlatformAuthError(
                f"vrchat: this account's only two-factor method is {methods}; e-mail codes cannot be "
                "automated. Enable an authenticator app (TOTP) on the account and set the "
                "connection's TOTP secret."
            )
        if not secret:
            raise PlatformAuthError(
                f"vrchat: the account asks for an authenticator code; set connection {self.conn_id}'s "
                "extra totp_secret (the base32 seed)"
            )
        body, cookies = self.http.request(
            "POST",
            "auth/twofactorauth/totp/verify",
            json={"code": totp_code(secret)},
            headers={"Cookie": _cookie_header(self._cookies or {})},
            check=self._check_verify,
        )
        if body.get("verified") is not True:
            raise PlatformAuthError(
                "vrchat: the authenticator code was refused; check the TOTP secret and the worker's clock"
            )
        self._use({**(self._cookies or {}), **cookies}, "login")

    def _check_login(self, response: requests.Response) -> tuple[dict[str, Any], dict[str, str]]:
        status = response.status_code
        body = _lenient_json(response)
        if status == 200:
            body = json_body(response, self.platform)
            if not isinstance(body, dict):
                raise TransientPlatformError("vrchat: malformed login reply")
            return body, _reply_cookies(response)
        message = normalise_message(error_message(body))
        if status == 401:
            raise PlatformAuthError(
                "vrchat: login refused (invalid username/e-mail or password); re-authorise this connection"
            )
        if status == 429 and "too many sessions" in message:
            raise PlatformAuthError(
                "vrchat: VRChat refuses new logins for this account for now (created too many "
                "sessions); this lasts 30 minutes to hours, so do not retry sooner. Sessions are reused "
                "between runs: check that nothing else logs in with this account."
            )
        self._raise_for(response, body)
        raise PermanentPlatformError(f"vrchat: unexpected login reply HTTP {status}")

    def _check_verify(self, response: requests.Response) -> tuple[dict[str, Any], dict[str, str]]:
        if 400 <= response.status_code < 500 and response.status_code != 429:
            raise PlatformAuthError(
                "vrchat: the authenticator code was refused; check the TOTP secret and the worker's clock"
            )
        return self._check_login(response)

    # -- the error table -------------------------------------------------------------------------

    def _raise_for(self, response: requests.Response, body: Any, *, write: bool = False) -> Rule | None:
        """Raise for errors that are not one person's; return the person-level rule, if any."""
        status = response.status_code
        message = error_message(body)
        plain = normalise_message(message)
        if status == 401:
            raise AuthExpired(f"vrchat: session refused ({plain or 'HTTP 401'})")
        if status == 429:
            hint = retry_after_seconds(response)
            raise TransientPlatformError(
                "vrchat: rate limited (429)",
                retry_after=DEFAULT_THROTTLE_WAIT_S if hint is None else hint,
            )
        if status >= 500:
            raise TransientPlatformError(f"vrchat: server error HTTP {status}", maybe_applied=write)
        if status == 403 and isinstance(body, dict) and "waf_code" in body.get("error", {}):
            raise PermanentPlatformError(
                "vrchat: VRChat's firewall refused the User-Agent; set the connection's extra "
                "user_agent to 'name/version contact'",
                code="user-agent-refused",
            )
        for rule in ERROR_TABLE:
            if rule.status == status and rule.text in plain:
                if rule.result is None:
                    raise PermanentPlatformError(f"vrchat: {rule.detail} ({message})", code=rule.code)
                return rule
        raise PermanentPlatformError(f"vrchat: HTTP {status}: {message[:200]}", code=f"http-{status}")

    def _check(self, response: requests.Response) -> Any:
        """A read: the parsed body, or raise."""
        if 200 <= response.status_code < 300:
            return json_body(response, self.platform)
        rule = self._raise_for(response, _lenient_json(response))
        assert rule is not None
        raise PermanentPlatformError(f"vrchat: {rule.detail}", code=rule.code)

    def _check_invite(self, response: requests.Response) -> InviteResult:
        """The invite's outcome for its one person, or raise for the whole group."""
        if 200 <= response.status_code < 300:
            return InviteResult(Status.INVITED)  # the status says it; the body may be empty
        rule = self._raise_for(response, _lenient_json(response), write=True)
        assert rule is not None and rule.result is not None
        return InviteResult(rule.result, rule.detail, rule.code)

    # -- adapter ---------------------------------------------------------------------------------

    def normalize_group(self, group: object) -> str:
        if not isinstance(group, str) or not GROUP_ID_RE.fullmatch(group.strip()):
            raise InviteInputError("group", "a VRChat group id: grp_<lower-case uuid>", group)
        return group.strip()

    def normalize_user(self, user: object) -> str:
        if not isinstance(user, str) or not USER_ID_RE.fullmatch(user.strip()):
            raise InviteInputError(
                "users", "VRChat user ids: usr_<lower-case uuid> or a legacy 10-character id", user
            )
        return user.strip()

    def normalize_request(self, request: InviteRequest) -> InviteRequest:
        override = request.extra.get("confirm_override_block", False)
        if not isinstance(override, bool):
            raise InviteInputError("confirm_override_block", "true or false", override)
        return InviteRequest(message=None, extra={"confirm_override_block": override})

    def lookup(self, group: str, users: Sequence[str]) -> Mapping[str, UserState]:
        """The group (and whether we may invite), then members, sent invites and bans."""
        info = self.call("GET", f"groups/{group}", check=self._check)
        mine = info.get("myMember") or {}
        permissions = set(mine.get("permissions") or [])
        if not mine or mine.get("membershipStatus", "member") != "member":
            raise PermanentPlatformError(
                "vrchat: the bot account is not a member of this group", code="not-a-member"
            )
        if not permissions & INVITE_PERMISSIONS:
            raise PermanentPlatformError(
                "vrchat: the bot account's role lacks 'group-invites-manage' in this group",
                code="no-permission",
            )
        if not permissions & BAN_PERMISSIONS:
            raise PermanentPlatformError(
                "vrchat: the bot account's role lacks 'group-bans-manage', so bans cannot be checked; "
                "inviting a banned user would lift the ban, so nobody is invited",
                code="no-permission",
            )
        listing_cost = -(-int(info.get("memberCount") or 0) // PAGE) + 2  # + the invites and bans pages
        if len(users) < listing_cost:
            return self._lookup_each(group, users)
        wanted = set(users)
        found: dict[str, UserState] = {}
        for listing in ("members", "invites", "bans"):
            for member in self._listing(group, listing):
                user = member.get("userId")
                if user in wanted and user not in found:
                    found[user] = _state(listing, member)
                if wanted <= found.keys():
                    return found
        return found

    def _lookup_each(self, group: str, users: Sequence[str]) -> dict[str, UserState]:
        """``GET /groups/{id}/members/{userId}`` per person: any relation (member, invited, banned) or null."""
        found: dict[str, UserState] = {}
        for user in users:
            record = self.call("GET", f"groups/{group}/members/{user}", check=self._check)
            if isinstance(record, dict) and record.get("membershipStatus") in RELATIONS_THAT_COUNT:
                found[user] = _state("member", record)
        return found

    def _listing(self, group: str, listing: str) -> Iterator[dict[str, Any]]:
        """The items of a group listing, ``n=100`` per page (a short page is the last one)."""
        offset = 0
        while True:
            page = self.call(
                "GET", f"groups/{group}/{listing}", params={"n": PAGE, "offset": offset}, check=self._check
            )
            if not isinstance(page, list):
                raise TransientPlatformError(f"vrchat: malformed {listing} listing")
            yield from (item for item in page if isinstance(item, dict) and item.get("userId"))
            offset += len(page)
            if len(page) < PAGE:
                return

    def send_invites(
        self, group: str, users: Sequence[str], request: InviteRequest
    ) -> Mapping[str, InviteResult]:
        results: dict[str, InviteResult] = {}
        for user in users:
            body = {"userId": user, "confirmOverrideBlock": bool(request.extra.get("confirm_override_block"))}
            results[user] = self.call(
                "POST", f"groups/{group}/invites", json=body, check=self._check_invite, write=True
            )
        return results

    def group_url(self, group: str) -> str | None:
        return f"https://vrchat.com/home/group/{group}"

    def check_connection(self) -> str:
        me = self.call("GET", "auth/user", check=self._check)
        if "requiresTwoFactorAuth" in me:
            raise PlatformAuthError("vrchat: the session still waits for two-factor authentication")
        return f"Connected to VRChat as {me.get('displayName', '?')} ({me.get('id', '?')})"


def _state(listing: str, member: Mapping[str, Any]) -> UserState:
    status = member.get("membershipStatus")
    if listing == "bans" or status == "banned":
        return UserState(
            Presence.BLOCKED,
            "banned from this group: not invited (an invite would lift the ban)",
            "banned",
        )
    if status == "userblocked":
        return UserState(Presence.BLOCKED, "the user blocked this group", "userblocked")
    if listing == "invites" or status == "invited":
        return UserState(Presence.INVITED)
    return UserState(Presence.MEMBER)


def _cookie_header(cookies: Mapping[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in cookies.items() if value)


def _reply_cookies(response: requests.Response) -> dict[str, str]:
    return {c.name: c.value for c in response.cookies if c.name in ("auth", "twoFactorAuth") and c.value}


def _lenient_json(response: requests.Response) -> Any:
    """Error bodies: JSON if they are, else None (some 429/5xx replies are HTML or text)."""
    try:
        return response.json()
    except ValueError:
        return None
