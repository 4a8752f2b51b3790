"""Bungie.net clans (GroupV2): invite, withdraw, kick, find people by Bungie Name.

Every /Platform call carries ``X-API-Key`` and a bearer token from the refresh grant; Bungie rotates
the refresh token on every refresh (``RotatingRefreshToken`` keeps the newest). What its codes mean is
data in ``bungie_codes``. Re-inviting an invited person and withdrawing an invitation nobody has are
both Success on Bungie: the look-up (members + ``InvitedIndividuals``) decides both.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import cached_property
from typing import Any

import requests

from airflow_invites.core.adapter import Handle, InviteRequest, PersonResult, Presence, Resolution, UserState
from airflow_invites.core.credentials import OAuthGrant, RotatingRefreshToken, oauth_envelope
from airflow_invites.core.errors import InviteInputError, PersonRefused, PlatformAuthError
from airflow_invites.core.outcome import Status
from airflow_invites.core.replies import ErrorTable, Reply, read_reply
from airflow_invites.hooks import bungie_codes as codes
from airflow_invites.hooks.base import USER_AGENT, InvitesHook
from airflow_invites.platforms import PLATFORMS

SPEC = PLATFORMS["bungie"]
DEFAULT_ROOT = "https://www.bungie.net/Platform"
INT64_MAX = 2**63 - 1
MESSAGE_MAX = 500  # our own cap: Bungie documents none
#: refresh this long before the access token's end
REFRESH_MARGIN_S = 300.0
INVITED_PAGE_LIMIT = 200  # 10,000 pending invitations: more means something is wrong
INVITED_PER_PAGE = 50  # GetInvitedIndividuals page size
MEMBER_PAGE_LIMIT = 10  # GetMembersOfGroup: 100 a page; a clan holds 100


class BungieHook(InvitesHook):
    """Bungie.net Platform API, clans of Destiny 2. Connection type ``bungie``.

    Connection: ``host`` = API root (default ``https://www.bungie.net/Platform``), ``login`` = OAuth
    client id, ``password`` = OAuth client secret (confidential client), extras ``api_key`` and
    ``refresh_token``.
    """

    platform = "bungie"
    conn_name_attr = "bungie_conn_id"
    default_conn_name = "bungie_default"
    conn_type = "bungie"
    hook_name = "Bungie.net"
    default_host = DEFAULT_ROOT
    secret_extras = ("api_key", "refresh_token")
    client_rate = (24.0, 1)  # Bungie allows 25/s averaged over 10 s per IP; bungio keeps to 24/s
    errors = codes.ERRORS
    write_concurrency = 4  # round trips overlap; the pacing above keeps the rate
    can_cancel_invites = True
    can_remove_members = True
    unconfirmed_detail = "Bungie answered Success but the person is still listed in the clan"

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(conn_id, **kwargs)
        self._access_token: str | None = None
        self._access_expires = 0.0
        self._own_id = ""  # the connection's Bungie.net account (from the token reply)
        self.refreshes = 0

    # -- connection ------------------------------------------------------------------------------

    def base_url(self) -> str:
        """The API root; ``/Platform`` is appended when the host lacks it."""
        root = super().base_url()
        return root if root.endswith("/Platform") else f"{root}/Platform"

    def user_agent(self) -> str:
        return USER_AGENT.replace(" (+", f" AppId/{self.connection.login or '?'} (+", 1)

    def _setting(self, name: str) -> str:
        """A connection field of the shape ``SETTINGS`` gives, or an input error naming it."""
        field, pattern, expected = codes.SETTINGS[name]
        text = str((self.extra(name) if field == "extra" else getattr(self.connection, name)) or "").strip()
        if not pattern.fullmatch(text):
            shown = "missing" if not text else text if name == "login" else None  # the others are secrets
            where = f"connection {self.conn_id}: " + (f"extra {name}" if field == "extra" else name)
            raise InviteInputError(where, expected, shown, show_value=shown is not None)
        return text

    @cached_property
    def refresh_tokens(self) -> RotatingRefreshToken:
        """The newest refresh token descended from the connection's (kept in a masked Variable)."""
        return RotatingRefreshToken(
            self.store,
            origin=self._setting("refresh_token"),
            platform=self.platform,
            reauthorise=codes.REAUTHORISE,
            remember=self.remember_secret,
        )

    # -- auth ------------------------------------------------------------------------------------

    def auth_headers(self) -> Mapping[str, str]:
        api_key = self._setting("api_key")
        if self._access_token is None or time.monotonic() >= self._access_expires:
            self._refresh()
        return {"X-API-Key": api_key, "Authorization": f"Bearer {self._access_token}"}

    def can_reauthenticate(self) -> bool:
        return True

    def reauthenticate(self) -> None:
        self._access_token = None
        self._refresh()

    def _refresh(self) -> None:
        """Refresh grant; the rotated refresh token is kept before the access token is used."""
        self._setting("api_key")  # a connection without a key fails before any request
        self._access_token = None
        grant = self.refresh_tokens.spend(self._refresh_grant)
        self._access_token = grant.access_token
        self._own_id = str(grant.extra.get("membership_id") or "")
        margin = min(REFRESH_MARGIN_S, grant.expires_in / 2)
        self._access_expires = time.monotonic() + grant.expires_in - margin
        self.refreshes += 1

    def _refresh_grant(self, refresh_token: str) -> OAuthGrant:
        client_id, client_secret = self._setting("login"), self._setting("password")
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        self.remember_secret(basic)
        body = self.http.request(
            "POST",
            "App/OAuth/token/",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            headers={"Authorization": f"Basic {basic}"},
            check=self._check(codes.TOKEN_ERRORS, self._read_token_reply),
        )
        access = self.remember_secret(str(body["access_token"])) or ""
        refresh = self.remember_secret(str(body.get("refresh_token") or "")) or ""
        if not refresh:
            raise PlatformAuthError(
                "bungie: the token reply has no refresh_token: the application is not a Confidential "
                "client. Register a Confidential one (docs/connections/bungie.md)."
            )
        extra = {"membership_id": str(body.get("membership_id") or "")}
        return OAuthGrant(access, refresh, float(body.get("expires_in") or 3600), extra)

    def _read_token_reply(self, response: requests.Response, body: Any) -> Reply:
        """Plain JSON (Bungie names the reason, an ErrorStatus, in ``error_description``), or an envelope."""
        if isinstance(body, dict) and isinstance(body.get("ErrorCode"), int):
            return self.read_envelope(response, body)
        reply = oauth_envelope(response, body)
        return replace(reply, name=reply.message) if re.fullmatch(r"[A-Za-z]+", reply.message) else reply

    def _check(
        self, table: ErrorTable, envelope: Callable[[requests.Response, Any], Reply] | None = None
    ) -> Callable[[requests.Response], Any]:
        """A reply check for calls made past ``call()`` (the token endpoint, API-key-only calls)."""
        read = envelope or self.read_envelope
        return lambda response: table.interpret(read_reply(response, self.platform, read))

    # -- the envelope ------------------------------------------------------------------------------

    def read_envelope(self, response: requests.Response, body: Any) -> Reply:
        """``{"Response", "ErrorCode", "ErrorStatus", "Message", "ThrottleSeconds"}``; 1 is Success."""
        code = body.get("ErrorCode") if isinstance(body, dict) else None
        if not isinstance(code, int):
            return Reply(response.status_code, False, message="reply is not a Bungie.net envelope")
        if code == 1:
            return Reply(response.status_code, True, body.get("Response"))
        wait = body.get("ThrottleSeconds")
        waits = isinstance(wait, (int, float)) and not isinstance(wait, bool) and wait > 0
        return Reply(
            response.status_code,
            False,
            code=codes.THROTTLED if waits else code,
            name=str(body.get("ErrorStatus") or code),
            message=str(body.get("Message") or ""),
            retry_after=max(float(wait), 1.0) if waits else None,
        )

    # -- input -----------------------------------------------------------------------------------

    def normalize_group(self, group: object) -> str:
        text = str(group).strip() if isinstance(group, (str, int)) and not isinstance(group, bool) else ""
        if not SPEC.group_re.fullmatch(text) or int(text) > INT64_MAX:
            raise InviteInputError(
                "group", "a clan (group) id: digits only, 1 to 2^63-1, e.g. 4107840", group
            )
        return text

    def normalize_user(self, user: object) -> str:
        expected = (
            "<membershipType>:<membershipId> of a Destiny account, type by number or name "
            "(1 TigerXbox, 2 TigerPsn, 3 TigerSteam, 6 TigerEgs), e.g. 3:4611686018467284386"
        )
        if not isinstance(user, str) or not SPEC.user_re.fullmatch(user):
            raise InviteInputError("users", expected, user)
        type_text, id_text = (part.strip() for part in user.split(":"))
        membership_type = codes.membership_type(type_text)
        if membership_type is None:
            reason = codes.NOT_INVITABLE.get(int(type_text)) if type_text.isdigit() else None
            raise InviteInputError("users", f"{expected}; {reason}" if reason else expected, user)
        if int(id_text) > INT64_MAX:
            raise InviteInputError("users", expected, user)
        return f"{membership_type}:{id_text}"

    def normalize_request(self, request: InviteRequest) -> InviteRequest:
        message = request.message
        if message is not None and (not isinstance(message, str) or len(message) > MESSAGE_MAX):
            raise InviteInputError("message", f"text of at most {MESSAGE_MAX} characters", message)
        return request

    def normalize_handle(self, handle: Handle) -> Handle:
        """A Bungie Name as ``Name#0042``: the name as given, the code with four digits."""
        value = super().normalize_handle(handle).value
        match = codes.BUNGIE_NAME_RE.fullmatch(value)
        if match is None or not match["name"].strip():
            raise InviteInputError(
                "users", "name:<a Bungie Name: the name, # and its code, e.g. Guardian#0042>", str(handle)
            )
        return Handle("name", f"{match['name'].strip()}#{int(match['code']):04d}")

    # -- reads -----------------------------------------------------------------------------------

    def resolve(self, handles: Sequence[Handle]) -> Mapping[Handle, Resolution]:
        """SearchDestinyPlayerByBungieName: the cross-save primary, else the only membership."""
        [handle] = handles
        name, code = handle.value.rsplit("#", 1)
        cards = self.call(
            "POST",
            "Destiny2/SearchDestinyPlayerByBungieName/-1/",
            json={"displayName": name, "displayNameCode": int(code)},
            errors=codes.SEARCH_ERRORS,
            person=True,
        )
        return {handle: codes.choose_membership([c for c in cards or [] if isinstance(c, dict)])}

    def lookup(self, group: str, users: Sequence[str]) -> Mapping[str, UserState]:
        """Members (100 a page), then pending invitations (50 a page), each until all are found."""
        by_id = {user.split(":", 1)[1]: user for user in users}
        found: dict[str, UserState] = {}
        for page in range(1, MEMBER_PAGE_LIMIT + 1):
            reply = self._page(f"GroupV2/{group}/Members/", page)
            for row in reply.get("results") or []:
                self._match(row, by_id, found, Presence.MEMBER)
            if len(found) == len(by_id) or not reply.get("hasMore"):
                break
        if len(found) < len(by_id):
            for page in range(1, INVITED_PAGE_LIMIT + 1):
                reply = self._page(f"GroupV2/{group}/Members/InvitedIndividuals/", page)
                for row in reply.get("results") or []:
                    if row.get("resolveState", 0) == 0:
                        self._match(row, by_id, found, Presence.INVITED)
                if len(found) == len(by_id) or not reply.get("hasMore"):
                    break
                unfound = [user for user in users if user not in found]
                pages_left = -(-int(reply.get("totalResults") or 0) // INVITED_PER_PAGE) - page
                if len(unfound) < pages_left:  # cheaper to ask about each person still unfound
                    found.update((user, self._invited_state(group, user)) for user in unfound)
                    break
        return {user: state for user, state in found.items() if state.presence is not Presence.ABSENT}

    def _invited_state(self, group: str, user: str) -> UserState:
        """GetPotentialGroupsForMember: is there a pending invitation of ``user`` to ``group``?"""
        try:
            reply = self.call("GET", f"GroupV2/User/Potential/{_path(user)}/0/1/", person=True)
        except PersonRefused as refused:
            return UserState(refused.presence or Presence.NOT_FOUND, str(refused), refused.code)
        for row in (reply or {}).get("results") or []:
            member, clan = row.get("member") or {}, row.get("group") or {}
            if str(clan.get("groupId")) == group and member.get("potentialStatus") == codes.POTENTIAL_INVITEE:
                return UserState(Presence.INVITED)
        return UserState(Presence.ABSENT)

    def _page(self, path: str, page: int) -> dict[str, Any]:
        reply = self.call("GET", path, params={"currentpage": page})
        return reply if isinstance(reply, dict) else {}

    def _match(
        self, row: Mapping[str, Any], by_id: Mapping[str, str], found: dict, presence: Presence
    ) -> None:
        info = row.get("destinyUserInfo") or {}
        user = by_id.get(str(info.get("membershipId", "")))
        if user is not None and user not in found:
            listed = f"{info.get('membershipType')}:{info.get('membershipId')}"
            found[user] = self._state(
                row, presence, "" if listed == user else f"listed as {listed} (cross save)"
            )

    def _state(self, row: Mapping[str, Any], presence: Presence, detail: str = "") -> UserState:
        protected = ""
        if presence is Presence.MEMBER:
            account = str((row.get("bungieNetUserInfo") or {}).get("membershipId") or "")
            if row.get("memberType") == codes.FOUNDER:
                protected = "the clan's founder"
            elif self._own_id and account == self._own_id:
                protected = "the connection's own account"
        return UserState(presence, detail, protected=protected)

    def list_group(self, group: str) -> Mapping[str, UserState]:
        """Every member and pending invitation, each as the membership the clan lists."""
        found: dict[str, UserState] = {}
        for kind, presence, limit in (
            ("", Presence.MEMBER, MEMBER_PAGE_LIMIT),
            ("InvitedIndividuals/", Presence.INVITED, INVITED_PAGE_LIMIT),
        ):
            for page in range(1, limit + 1):
                reply = self._page(f"GroupV2/{group}/Members/{kind}", page)
                for row in reply.get("results") or []:
                    info = row.get("destinyUserInfo") or {}
                    if presence is Presence.MEMBER or row.get("resolveState", 0) == 0:
                        found.setdefault(
                            f"{info.get('membershipType')}:{info.get('membershipId')}",
                            self._state(row, presence),
                        )
                if not reply.get("hasMore"):
                    break
        return found

    # -- writes ----------------------------------------------------------------------------------

    def send_invites(self, group: str, users: Sequence[str], request: InviteRequest) -> Mapping[str, Any]:
        [user] = users
        reply = self._post(
            f"GroupV2/{group}/Members/IndividualInvite/{_path(user)}/", message=request.message
        )
        # resolution 1 Accepted: the person had applied and is now a member
        joined = isinstance(reply, dict) and reply.get("resolution") == 1
        return {user: PersonResult(Status.JOINED if joined else Status.INVITED)}

    def cancel_invites(self, group: str, users: Sequence[str]) -> Mapping[str, PersonResult]:
        """IndividualInviteCancel: Success/Rescinded, also for nobody invited (the look-up chose them)."""
        [user] = users
        reply = self._post(
            f"GroupV2/{group}/Members/IndividualInviteCancel/{_path(user)}/", codes.CANCEL_ERRORS
        )
        rescinded = isinstance(reply, dict) and reply.get("resolution") == codes.RESCINDED
        return {user: PersonResult(Status.INVITE_CANCELLED)} if rescinded else {}

    def remove_members(self, group: str, users: Sequence[str]) -> Mapping[str, PersonResult]:
        """Kick (GroupMemberLeaveResult); 611 for someone who is not a member."""
        [user] = users
        self._post(f"GroupV2/{group}/Members/{_path(user)}/Kick/", codes.KICK_ERRORS)
        return {user: PersonResult(Status.REMOVED)}

    def _post(self, path: str, errors: ErrorTable = codes.ERRORS, **body: Any) -> Any:
        """A write naming one person (IndividualInvite has a JSON body; the others none)."""
        json = {k: v or "" for k, v in body.items()} or None
        return self.call("POST", path, json=json, errors=errors, person=True, write=True)

    def group_url(self, group: str) -> str | None:
        return f"{self.base_url().removesuffix('/Platform')}/en/ClanV2?groupid={group}"

    def check_connection(self) -> str:
        """Prove the API key and the refresh token (a refresh rotates it; kept as in a run)."""
        self.http.request(
            "GET",
            "Settings/",
            auth=lambda: {"X-API-Key": self._setting("api_key")},
            check=self._check(self.errors),
        )
        if not rotated_tokens_persist():
            return (
                "Bungie.net API key accepted. The refresh token was not used: a refresh rotates it and "
                "outside an Airflow task the new one could not be saved for the next run. Run a task "
                "that calls this hook's test_connection() to check it."
            )
        me = self.call("GET", "User/GetMembershipsForCurrentUser/") or {}
        user = me.get("bungieNetUser") or {}
        destiny = [
            f"{m.get('membershipType')}:{m.get('membershipId')}" for m in me.get("destinyMemberships", ())
        ]
        return (
            f"Connected to Bungie.net as {user.get('uniqueName') or user.get('displayName') or '?'} "
            f"(Destiny memberships: {', '.join(destiny) or 'none'})"
        )


def rotated_tokens_persist() -> bool:
    """True inside an Airflow task, where the store can write the rotated token to a Variable."""
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:
        return False
    return getattr(task_runner, "SUPERVISOR_COMMS", None) is not None


def _path(user: str) -> str:
    """``3:4611686018467284386`` -> ``3/4611686018467284386`` (membershipType/membershipId)."""
    return user.replace(":", "/", 1)
