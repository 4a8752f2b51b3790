"""VRChat groups: cookie sessions with TOTP two-factor, look-ups, invites, removals, display names.

No API keys: a login (``GET /auth/user``, HTTP Basic) answers an ``auth`` cookie and, with an
authenticator app, the HTTP 200 challenge ``{"requiresTwoFactorAuth":["totp","otp"]}``; the TOTP
verify adds a ``twoFactorAuth`` ("remember this device") cookie. VRChat limits the sessions an
account may open, so the cookies are kept between tasks. Every write names one person.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import quote

import requests

from airflow_invites.core import errors as err
from airflow_invites.core.adapter import Handle, InviteRequest, PersonResult, Presence, Resolution, UserState
from airflow_invites.core.credentials import KeptSession
from airflow_invites.core.http import HttpClient
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
from airflow_invites.hooks.base import USER_AGENT, InvitesHook
from airflow_invites.platforms import PLATFORMS

SPEC = PLATFORMS["vrchat"]
#: ``name/version`` then a contact (an e-mail address or a URL), as VRChat's firewall demands
USER_AGENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[0-9A-Za-z][0-9A-Za-z._+-]*\s+\S.*$")
CONTACT_RE = re.compile(r"[^\s@()<>]+@[^\s@()<>]+\.[A-Za-z]{2,}|https?://[^\s()<>]+\.[^\s()<>]+")
PLACEHOLDER_CONTACT_RE = re.compile(r"(@|//)(www\.)?example\.(com|org|net)\b|my@email\.com", re.IGNORECASE)
DEFAULT_HOST = "https://api.vrchat.cloud/api/1"
PAGE = 100  # the largest ``n`` VRChat accepts, for group listings and the user search
SEARCH_PAGES = 10  # a name search reads at most this many pages; a name matching more is not resolved
SESSION_TOKEN = "session_token"  # RuntimeStore name (contains "token": Airflow masks it)
COOKIES = ("auth", "twoFactorAuth")
#: what the bot's role needs in the group for each write ("*", the owner's role, has everything)
NEEDS = {
    "invite": ("group-invites-manage", "group-bans-manage"),
    "cancel": ("group-invites-manage",),
    "remove": ("group-members-remove",),
}
WHY_NEEDED = {"group-bans-manage": ", so bans cannot be checked; inviting a banned user would lift the ban"}
#: listing a group beats asking per person only with these: without ``group-members-viewall``,
#: ``/members`` shows only the bot's friends, so someone missing from it may still be a member
LISTING_NEEDS = ("group-members-viewall", "group-invites-manage", "group-bans-manage")
#: relations a per-person look-up acts on; others (requested, left...) leave the person invitable
RELATIONS_THAT_COUNT = {"member", "invited", "banned", "userblocked"}
#: VRChat writes messages with look-alike punctuation (U+2024 for a full stop, U+01C3 for ``!``...)
LOOKALIKES = str.maketrans(
    {"\u2024": ".", "\u01c3": "!", "\u02f8": ":", "\u201a": ",", "\u2018": "'", "\u2019": "'", "\u00a0": " "}
)

TOO_MANY_SESSIONS = (
    "VRChat refuses new logins for this account for now (created too many sessions); this lasts 30 minutes "
    "to hours, so do not retry sooner. Sessions are reused between runs: check that nothing else logs in "
    "with this account."
)
WAF = "VRChat's firewall refused the User-Agent; set the connection's extra user_agent to 'name/version contact'"
NOT_IN_GROUP = "the bot account is not a member of this group"


def _said(text: str, http: int, status: Status, code: str, why: str, presence: Presence | None = None) -> Any:
    """One person's outcome when VRChat answers ``http`` with ``text`` in its (normalised) message."""
    return MessageRule(text, person(status, why, presence=presence, code=code), http)


#: what VRChat's replies mean, by part of the normalised message and HTTP status (first match wins)
MESSAGES = [
    _said("already a member", 400, Status.ALREADY_MEMBER, "already-member", "a member", Presence.MEMBER),
    _said("already invited", 400, Status.ALREADY_INVITED, "already-invited", "invited", Presence.INVITED),
    _said("can't uninvite", 400, Status.ALREADY_ABSENT, "not-invited", "no pending invitation to withdraw"),
    _said("can't invite", 403, Status.FAILED, "cannot-invite", "VRChat refuses invites", Presence.BLOCKED),
    _said("too many groups", 403, Status.FAILED, "too-many-groups", "the user is in too many groups"),
    _said(
        "user not found", 404, Status.FAILED, "user-not-found", "no such VRChat user"
    ),  # look-up: not found
    MessageRule("group", group("group not found", code="group-not-found"), 404),
    MessageRule("not a member", group(NOT_IN_GROUP, code="not-a-member"), 403),
    MessageRule("permission", group("the bot's role lacks a permission here", code="no-permission"), 403),
    MessageRule("not allowed", group("the bot may not look here", code="no-permission"), 403),
    MessageRule("too many sessions", credentials(TOO_MANY_SESSIONS), 429),
]
WAF_CODE = 13799  # the firewall's code (``waf_code``) on refusing a User-Agent
#: no Retry-After on a 429: VRChat asks clients to back off for a minute
ERRORS = ErrorTable("vrchat", {WAF_CODE: group(WAF, code="user-agent-refused")}, MESSAGES, throttle_wait=60.0)
LOGIN_REFUSED = "login refused (invalid username/e-mail or password); re-authorise this connection"
LOGIN_ERRORS = ERRORS.extend(statuses={401: credentials(LOGIN_REFUSED)})
CODE_REFUSED = credentials("the authenticator code was refused; check the TOTP secret and the worker's clock")
VERIFY_ERRORS = ERRORS.extend(statuses=dict.fromkeys((400, 401, 403, 404), CODE_REFUSED))
#: on ``DELETE /groups/{id}/members/{userId}``, "not a member" is about the person named
NOT_THERE = _said("not a member", 403, Status.ALREADY_ABSENT, "not-a-member", "not a member")
OWNER = _said("owner", 403, Status.FAILED, "protected", "VRChat keeps the group's owner")
REMOVE_ERRORS = ERRORS.extend(messages=[NOT_THERE, OWNER])


def normalise_message(text: str) -> str:
    """Plain lower-case text: look-alikes replaced, JSON quoting removed."""
    text = unicodedata.normalize("NFKC", text.translate(LOOKALIKES))
    return text.strip().strip('"').strip().casefold()


def error_message(body: Any) -> str:
    """The message of VRChat's envelopes: ``{"error":{"message":...}}`` or ``{"error":"..."}``."""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message", "") if isinstance(error, dict) else error or ""
    if isinstance(error, dict) and isinstance(message, str) and message.startswith('"'):
        with contextlib.suppress(ValueError):
            message = json.loads(message)
    return str(message)


def name_key(display_name: str) -> str:
    """What two display names must share to be the same: the text, ignoring case (as VRChat's search)."""
    return unicodedata.normalize("NFC", display_name).strip().casefold()


@dataclass(frozen=True)
class GroupFacts:
    """What ``GET /groups/{id}`` says that the look-up and the writes need."""

    owner: str
    me: str
    permissions: frozenset[str]
    member_count: int

    def grants(self, permission: str) -> bool:
        return "*" in self.permissions or permission in self.permissions


class VRChatHook(InvitesHook):
    """VRChat API (``api/1``). Connection type ``vrchat``."""

    platform = "vrchat"
    conn_name_attr = "vrchat_conn_id"
    default_conn_name = "vrchat_default"
    conn_type = "vrchat"
    hook_name = "VRChat"
    default_host = DEFAULT_HOST
    secret_extras = ("totp_secret", "auth_cookie")
    errors = ERRORS
    # every write and search names one person: POST/DELETE .../invites[/{userId}], DELETE .../members/{userId}
    invite_batch_size = cancel_batch_size = remove_batch_size = resolve_batch_size = 1
    can_cancel_invites = can_remove_members = True
    handle_kinds = {"name": "the display name VRChat shows, e.g. name:Ada Lovelace"}
    unconfirmed_detail = "VRChat answered 200, but a new look-up does not show the change"
    client_rate = (2.0, 10)  # VRChat publishes no limit and asks for gentle clients
    write_concurrency = 4  # round trips overlap; the pacing above keeps the rate

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(conn_id, **kwargs)
        self._groups: dict[str, GroupFacts] = {}
        self.logins = 0  # logins this hook made (every one counts against VRChat's session limit)

    # -- connection ------------------------------------------------------------------------------

    def base_url(self) -> str:
        url = super().base_url()
        return url if url.endswith("/api/1") else f"{url}/api/1"

    def user_agent(self) -> str:
        value = str(self.extra("user_agent", USER_AGENT)).strip()
        expected = "name/version contact, e.g. 'acme-invites/1.2 ops@acme.org' (a real contact)"
        field = f"connection {self.conn_id}: extra user_agent"
        if not USER_AGENT_RE.fullmatch(value) or not CONTACT_RE.search(value.split(None, 1)[1]):
            raise err.InviteInputError(field, expected, value)
        if PLACEHOLDER_CONTACT_RE.search(value):
            raise err.InviteInputError(field, expected + ", not a placeholder", value)
        return value

    @cached_property
    def http(self) -> HttpClient:
        client = super().http
        # cookies are sent explicitly (auth_headers), never picked up silently by the session
        client.session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        return client

    def read_envelope(self, response: requests.Response, body: Any) -> Reply:
        """Success is the status; errors are ``{"error": {"message", "status_code"[, "waf_code"]}}``."""
        if 200 <= response.status_code < 300:
            return Reply(response.status_code, True, body)
        error = body.get("error") if isinstance(body, dict) else None
        waf = error.get("waf_code") if isinstance(error, dict) else None
        return Reply(response.status_code, False, body, waf, normalise_message(error_message(body)))

    # -- session ---------------------------------------------------------------------------------

    @cached_property
    def session(self) -> KeptSession:
        """The cookies: kept by an earlier task, else the connection's ``auth_cookie``, else a login."""
        ready = {"auth": str(self.extra("auth_cookie"))} if self.extra("auth_cookie") else None
        return KeptSession(
            self.store,
            SESSION_TOKEN,
            login=self._login,
            fields=COOKIES,
            durable=("twoFactorAuth",),  # "remember this device": spares the next login its TOTP code
            ready=ready,
            remember=self.remember_secret,
        )

    def auth_headers(self) -> Mapping[str, str]:
        return {"Cookie": _cookie_header(self.session.current())}

    def can_reauthenticate(self) -> bool:
        return True  # _login() says clearly when no other credential is left

    def reauthenticate(self) -> None:
        self.session.refused()

    def _login(self, kept: dict[str, str]) -> dict[str, str]:
        """Basic login (with the kept ``twoFactorAuth``), then TOTP if VRChat asks for it: the cookies."""
        conn, secret = self.connection, str(self.extra("totp_secret") or "")
        if not conn.login or not conn.password:
            raise err.PlatformAuthError(
                f"vrchat: no usable session and connection {self.conn_id} has no username/password "
                "to log in with; re-authorise this connection (a fresh auth cookie, or a login)"
            )
        if secret and not is_base32_secret(secret):
            field = f"connection {self.conn_id}: extra totp_secret"
            raise err.InviteInputError(field, "a base32 string", show_value=False)
        basic = base64.b64encode(f"{quote(conn.login, safe='')}:{quote(conn.password, safe='')}".encode())
        headers = {"Authorization": f"Basic {self.remember_secret(basic.decode())}"}
        if kept:
            headers["Cookie"] = _cookie_header(kept)
        self.logins += 1
        self.log.info("vrchat: logging in as %s (no usable session)", conn.login)
        body, cookies = self._login_call("GET", "auth/user", LOGIN_ERRORS, headers=headers)
        if not cookies.get("auth"):
            raise err.PlatformAuthError("vrchat: the login answered without an auth cookie")
        methods, cookies = body.get("requiresTwoFactorAuth"), {**kept, **cookies}
        if methods is None:
            return cookies
        if "totp" not in methods:
            raise err.PlatformAuthError(
                f"vrchat: this account's only two-factor method is {methods}; e-mail codes cannot be automated. "
                "Enable an authenticator app (TOTP) on the account and set the connection's TOTP secret."
            )
        if not secret:
            raise err.PlatformAuthError(
                f"vrchat: the account asks for an authenticator code; set connection {self.conn_id}'s "
                "extra totp_secret (the base32 seed)"
            )
        code, headers = {"code": totp_code(secret)}, {"Cookie": _cookie_header(cookies)}
        body, verified = self._login_call(
            "POST", "auth/twofactorauth/totp/verify", VERIFY_ERRORS, json=code, headers=headers
        )
        if body.get("verified") is not True:
            raise err.PlatformAuthError(f"vrchat: {CODE_REFUSED.detail}")
        return {**cookies, **verified}

    def _login_call(
        self, method: str, path: str, table: ErrorTable, **kwargs: Any
    ) -> tuple[dict[str, Any], Any]:
        """A login step (no session yet): the reply's JSON object, read with ``table``, and its cookies."""

        def check(response: requests.Response) -> tuple[dict[str, Any], dict[str, str]]:
            body = table.interpret(read_reply(response, self.platform, self.read_envelope))
            if not isinstance(body, dict):
                raise err.TransientPlatformError("vrchat: malformed login reply")
            cookies = {c.name: c.value for c in response.cookies if c.name in COOKIES and c.value}
            for value in cookies.values():
                self.remember_secret(value)
            return body, cookies

        return self.http.request(method, path, check=check, **kwargs)  # type: ignore[no-any-return]

    # -- input -----------------------------------------------------------------------------------

    def normalize_group(self, group: object) -> str:
        if not isinstance(group, str) or not SPEC.group_re.fullmatch(group.strip()):
            raise err.InviteInputError("group", "a VRChat group id: grp_<lower-case uuid>", group)
        return group.strip()

    def normalize_user(self, user: object) -> str:
        if not isinstance(user, str) or not SPEC.user_re.fullmatch(user.strip()):
            expected = "VRChat user ids: usr_<lower-case uuid> or a legacy 10-character id"
            raise err.InviteInputError("users", expected, user)
        return user.strip()

    def normalize_request(self, request: InviteRequest) -> InviteRequest:
        override = request.extra.get("confirm_override_block", False)
        if not isinstance(override, bool):
            raise err.InviteInputError("confirm_override_block", "true or false", override)
        return InviteRequest(message=None, extra={"confirm_override_block": override})

    # -- reads -----------------------------------------------------------------------------------

    def resolve(self, handles: Sequence[Handle]) -> Mapping[Handle, Resolution]:
        """``name:`` through ``GET /users?search=`` (fuzzy): the exact display names, ignoring case."""
        [handle] = handles
        wanted, ids, more = name_key(handle.value), dict[str, None](), ""
        for number, page in enumerate(self._pages("users", search=handle.value), 1):
            ids.update((_user_id(u), None) for u in page if name_key(u.get("displayName") or "") == wanted)
            if number == SEARCH_PAGES and len(page) == PAGE:  # more pages follow: other matches may too
                more = f" among the first {SEARCH_PAGES * PAGE:,} accounts VRChat's search lists; more follow"
                break
        if len(ids) == 1 and not more:
            return {handle: Resolution.found(next(iter(ids)))}
        if ids:
            why = f"{len(ids)} VRChat account(s) have this display name{more}"
            return {handle: Resolution.ambiguous(max(len(ids), 2), why)}
        return {handle: Resolution.not_found(f"no VRChat account has this display name{more}")}

    def lookup(self, group: str, users: Sequence[str]) -> Mapping[str, UserState]:
        """The group (is the bot in it, owner, permissions), then each person or the listings, by cost."""
        facts = self._group_facts(group)
        others = [user for user in users if user != facts.me]
        found: dict[str, UserState] = {}
        if len(others) != len(users):
            found[facts.me] = UserState(Presence.MEMBER, protected="the connection's own account")
        listing_cost = -(-facts.member_count // PAGE) + 2  # + the invites and bans pages
        if len(others) < listing_cost or not all(facts.grants(p) for p in LISTING_NEEDS):
            found.update(self._lookup_each(group, others))
        else:
            found.update(self._lookup_listed(group, others))
        owner = found.get(facts.owner)
        if owner is not None and owner.presence is Presence.MEMBER:
            found[facts.owner] = replace(owner, protected="the group's owner")
        return found

    def _group_facts(self, group: str) -> GroupFacts:
        info = self.call("GET", f"groups/{group}")
        mine = info.get("myMember") or {}
        if not mine or mine.get("membershipStatus", "member") != "member":
            raise err.PermanentPlatformError(
                "vrchat: the bot is not a member of this group", code="not-a-member"
            )
        permissions, count = frozenset(mine.get("permissions") or []), int(info.get("memberCount") or 0)
        facts = GroupFacts(str(info["ownerId"]), str(mine["userId"]), permissions, count)
        self._groups[group] = facts
        return facts

    def _lookup_each(self, group: str, users: Sequence[str]) -> dict[str, UserState]:
        """``GET /groups/{id}/members/{userId}`` per person: any relation (member, invited, banned) or null."""
        found: dict[str, UserState] = {}
        for user in users:
            try:
                record = self.call("GET", f"groups/{group}/members/{user}", person=True)
            except err.PersonRefused as refused:  # e.g. 404 for an id no account has
                found[user] = UserState(refused.presence or Presence.NOT_FOUND, str(refused), refused.code)
                continue
            if isinstance(record, dict) and record.get("membershipStatus") in RELATIONS_THAT_COUNT:
                found[user] = _state("member", record)
        return found

    def _lookup_listed(self, group: str, users: Sequence[str]) -> dict[str, UserState]:
        """Members, sent invites and bans, page by page, until everyone is found or the lists end."""
        wanted, found = set(users), {}
        for listing in ("members", "invites", "bans"):
            for page in self._pages(f"groups/{group}/{listing}"):
                for item in page:
                    if item.get("userId") in wanted and item["userId"] not in found:
                        found[item["userId"]] = _state(listing, item)
                if wanted <= found.keys():
                    return found
        return found

    def _pages(self, path: str, **params: str) -> Iterator[list[dict[str, Any]]]:
        """The pages of a listing or search, ``n=100`` each (a short page is the last one)."""
        offset = 0
        while True:
            page = self.call("GET", path, params={**params, "n": PAGE, "offset": offset})
            if not isinstance(page, list):
                raise err.TransientPlatformError(f"vrchat: {path.rsplit('/', 1)[-1]} answered no list")
            yield [item for item in page if isinstance(item, dict)]
            if len(page) < PAGE:
                return
            offset += len(page)

    # -- writes ----------------------------------------------------------------------------------

    def send_invites(
        self, group: str, users: Sequence[str], request: InviteRequest
    ) -> dict[str, PersonResult]:
        [user] = users
        self._require(group, "invite")
        body = {"userId": user, "confirmOverrideBlock": bool(request.extra.get("confirm_override_block"))}
        self._write("POST", f"groups/{group}/invites", json=body)
        return {user: PersonResult(Status.INVITED)}

    def cancel_invites(self, group: str, users: Sequence[str]) -> Mapping[str, PersonResult]:
        """``DELETE /groups/{id}/invites/{userId}``; "wasn't invited" is ALREADY_ABSENT (checked again)."""
        [user] = users
        self._require(group, "cancel")
        self._write("DELETE", f"groups/{group}/invites/{user}")
        return {user: PersonResult(Status.INVITE_CANCELLED)}

    def remove_members(self, group: str, users: Sequence[str]) -> Mapping[str, PersonResult]:
        """``DELETE /groups/{id}/members/{userId}``; never the owner nor the bot itself."""
        [user] = users
        self._require(group, "remove")
        self._write("DELETE", f"groups/{group}/members/{user}", errors=REMOVE_ERRORS)
        return {user: PersonResult(Status.REMOVED)}

    def _require(self, group: str, write: str) -> GroupFacts:
        """The group's facts, or a refusal naming the permission the bot's role lacks for ``write``."""
        facts = self._groups.get(group) or self._group_facts(group)
        for permission in NEEDS[write]:
            if not facts.grants(permission):
                why = f"vrchat: the bot account's role lacks '{permission}' in this group"
                raise err.PermanentPlatformError(why + WHY_NEEDED.get(permission, ""), code="no-permission")
        return facts

    def _write(self, method: str, path: str, *, errors: ErrorTable = ERRORS, **kwargs: Any) -> None:
        """A write about one person: any 2xx is done (VRChat may answer an empty body); else the table."""

        def check(response: requests.Response) -> None:
            if not 200 <= response.status_code < 300:
                reply = read_reply(response, self.platform, self.read_envelope, write=True)
                errors.interpret(reply, write=True, person=True)

        self.call(method, path, check=check, write=True, **kwargs)

    def group_url(self, group: str) -> str | None:
        return f"https://vrchat.com/home/group/{group}"

    def check_connection(self) -> str:
        me = self.call("GET", "auth/user")
        if "requiresTwoFactorAuth" in me:
            raise err.PlatformAuthError("vrchat: the session still waits for two-factor authentication")
        return f"Connected to VRChat as {me.get('displayName', '?')} ({me.get('id', '?')})"


def _state(listing: str, member: Mapping[str, Any]) -> UserState:
    status = member.get("membershipStatus")
    if listing == "bans" or status == "banned":
        return UserState(Presence.BLOCKED, "banned: not invited (an invite would lift the ban)", "banned")
    if status == "userblocked":
        return UserState(Presence.BLOCKED, "the user blocked this group", "userblocked")
    return UserState(Presence.INVITED if listing == "invites" or status == "invited" else Presence.MEMBER)


def _user_id(found: Mapping[str, Any]) -> str:
    """A search result's id; one of another shape is a reply we do not understand."""
    user = str(found.get("id", ""))
    if not SPEC.user_re.fullmatch(user):
        raise ValueError("the user search answered an id of an unexpected shape")
    return user


def _cookie_header(cookies: Mapping[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in cookies.items() if value)
