"""Bungie.net clans (GroupV2): API key + rotating OAuth refresh token, look-ups, ``IndividualInvite``.

Reference: ``shared/platforms/bungie.md``. Every /Platform call carries ``X-API-Key`` and a bearer
token obtained at run time with the refresh grant. Bungie rotates the refresh token on every
refresh and the used one is spent, so the newest is kept in the ``RuntimeStore`` (an Airflow
Variable) and read before the connection's own ``refresh_token``.

Errors come with a non-200 status and the platform envelope: we branch on ``ErrorCode`` only
(``ERRORS`` below is the whole table). Re-inviting an invited person is Success again on Bungie,
so the look-up (members + ``InvitedIndividuals``) is what reports ``already_invited``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
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
from airflow_invites.hooks.base import InvitesHook

DEFAULT_ROOT = "https://www.bungie.net/Platform"
INT64_MAX = 2**63 - 1
INT64_RE = re.compile(r"[1-9][0-9]{0,18}")
CLIENT_ID_RE = re.compile(r"[1-9][0-9]{0,9}")
API_KEY_RE = re.compile(r"[A-Za-z0-9]{16,64}")
USER_RE = re.compile(r"\s*([A-Za-z]+|-?[0-9]{1,3})\s*:\s*(\S+)\s*")
MESSAGE_MAX = 500  # our own cap: Bungie documents none
#: Destiny platforms a clan invite may name (BungieMembershipType)
INVITABLE_TYPES = {"TigerXbox": 1, "TigerPsn": 2, "TigerSteam": 3, "TigerEgs": 6}
TYPE_ALIASES = {"xbox": 1, "psn": 2, "playstation": 2, "steam": 3, "egs": 6, "epic": 6}
#: types that exist but cannot be invited, with the reason
NOT_INVITABLE = {
    0: "None is not a platform",
    4: "TigerBlizzard accounts moved to Steam in 2019: use the Steam membership (3)",
    5: "TigerStadia ended in 2023: use the account's cross-save platform",
    10: "TigerDemon is an internal platform",
    20: "GoliathGame is not a Destiny platform",
    254: "BungieNext is the Bungie.net account, not a Destiny membership",
    -1: "All is only for searches",
}
#: refresh this long before the access token's end
REFRESH_MARGIN_S = 300.0
STORE_NAME = "refresh_token"
INVITED_PAGE_LIMIT = 200  # 10,000 pending invitations: more means something is wrong
INVITED_PER_PAGE = 50  # GetInvitedIndividuals page size
#: a refused refresh token may have just been rotated by another task still saving the new one
ROTATION_RACE_CHECKS, ROTATION_RACE_WAIT_S = 3, 1.0
POTENTIAL_INVITEE = 2  # GroupPotentialMemberStatus.Invitee
MEMBER_PAGE_LIMIT = 10


class Kind(str, Enum):
    """What an ErrorCode means for us."""

    REFRESH = "refresh"  # access token expired or not accepted: refresh once, retry once
    REAUTHORISE = "reauthorise"  # the consent is gone: a human must authorise again
    API_KEY = "api_key"
    THROTTLE = "throttle"
    TRANSIENT = "transient"
    ALREADY_MEMBER = "already_member"
    PERSON = "person"  # this person cannot be invited (others may)
    GROUP = "group"  # nobody can be invited into this clan by this account


#: ErrorCode -> (kind, what it means). The one place Bungie's errors are interpreted.
ERRORS: dict[int, tuple[Kind, str]] = {
    99: (Kind.REFRESH, "not signed in (WebAuthRequired)"),
    22: (Kind.REFRESH, "token not accepted (WebAuthModuleAsyncFailed)"),
    2111: (Kind.REFRESH, "access token expired"),
    2115: (Kind.REFRESH, "access token not valid"),
    2117: (Kind.REAUTHORISE, "the authorisation is not valid"),
    2118: (Kind.REAUTHORISE, "the authorisation is not valid"),
    2119: (Kind.REAUTHORISE, "the authorisation is not valid"),
    2120: (Kind.REAUTHORISE, "the authorisation is not valid"),
    2121: (Kind.REAUTHORISE, "the authorisation is not valid"),
    2122: (Kind.REAUTHORISE, "the authorisation code is stale"),
    2123: (Kind.REAUTHORISE, "the authorisation expired (consent ends after about a year)"),
    2124: (Kind.REAUTHORISE, "the authorisation was revoked by the user"),
    2101: (Kind.API_KEY, "the API key is invalid or disabled"),
    2102: (Kind.API_KEY, "the API key is missing from the request"),
    2107: (Kind.API_KEY, "the Origin header does not match the API key's settings"),
    2108: (Kind.API_KEY, "the application lacks the AdminGroups scope"),
    31: (Kind.THROTTLE, "throttled"),
    35: (Kind.THROTTLE, "throttled"),
    36: (Kind.THROTTLE, "throttled"),
    37: (Kind.THROTTLE, "throttled"),
    51: (Kind.THROTTLE, "too many requests per second"),
    54: (Kind.THROTTLE, "application throttled"),
    55: (Kind.THROTTLE, "throttled"),
    56: (Kind.THROTTLE, "throttled"),
    57: (Kind.THROTTLE, "user throttled"),
    694: (Kind.THROTTLE, "clan culture throttle"),
    1672: (Kind.THROTTLE, "throttled by the game server"),
    3: (Kind.TRANSIENT, "Bungie-side error (UnhandledException)"),
    5: (Kind.TRANSIENT, "Bungie is down for maintenance (SystemDisabled)"),
    1618: (Kind.TRANSIENT, "Destiny unexpected error"),
    1626: (Kind.TRANSIENT, "Destiny internal error"),
    1643: (Kind.TRANSIENT, "Destiny service failure"),
    676: (Kind.ALREADY_MEMBER, "already a member of this clan"),
    642: (Kind.ALREADY_MEMBER, "already a member of this group"),
    632: (Kind.ALREADY_MEMBER, "already a clan member on this platform"),
    695: (Kind.PERSON, "the player's privacy settings refuse clan invitations"),
    623: (Kind.PERSON, "banned from this clan"),
    1601: (Kind.PERSON, "no Destiny account with this membership type and id"),
    630: (Kind.PERSON, "no Destiny account on a platform this clan allows"),
    608: (Kind.PERSON, "membership id not valid"),
    609: (Kind.PERSON, "membership type not valid"),
    8: (Kind.PERSON, "membership type or id outside the valid range"),
    7: (Kind.PERSON, "membership type or id could not be parsed"),
    611: (Kind.PERSON, "membership not found (does the type match the id?)"),
    667: (Kind.GROUP, "the clan is full"),
    629: (Kind.GROUP, "the clan is full"),
    12: (
        Kind.GROUP,
        "the connection's account may not invite into this clan (Founder or ActingFounder, or an Admin "
        "when the founder enabled invitePermissionOverride)",
    ),
    603: (Kind.GROUP, "the connection's account lacks privileges in this clan"),
    687: (Kind.GROUP, "the connection's account's clan rank does not permit inviting"),
    686: (Kind.GROUP, "clan not found"),
    622: (Kind.GROUP, "group not found"),
    607: (Kind.GROUP, "group id not valid"),
    654: (Kind.GROUP, "the clan is not enabled for this platform"),
}
#: token-endpoint ``error_description`` values that a retry may cure
TOKEN_TRANSIENT = {"SystemDisabled"}

REAUTHORISE_HINT = (
    "Re-authorise this connection: have a clan founder open the app's Authorize URL, exchange the code "
    "for a refresh token and put it in the connection's refresh_token field (see "
    "docs/connections/bungie.md)."
)


class PersonRefused(PermanentPlatformError):
    """Bungie refused one person (the others may still be invited)."""

    def __init__(self, message: str, *, code: str, already_member: bool = False) -> None:
        super().__init__(message, code=code)
        self.already_member = already_member


class _RefreshTokenRefused(Exception):
    """The token endpoint refused the refresh token we sent (spent, revoked, unknown)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


@dataclass(frozen=True)
class _Grant:
    access_token: str
    refresh_token: str
    expires_in: float


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
    invite_batch_size = 1
    write_concurrency = 4  # round trips overlap; the pacing above keeps the rate

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(conn_id, **kwargs)
        self._access_token: str | None = None
        self._access_expires = 0.0
        self.refreshes = 0

    # -- connection ------------------------------------------------------------------------------

    def base_url(self) -> str:
        """The API root; ``/Platform`` is appended when the host lacks it."""
        root = super().base_url()
        return root if root.endswith("/Platform") else f"{root}/Platform"

    def user_agent(self) -> str:
        client_id = self.connection.login or "?"
        return (
            f"airflow-invites/0.1.0 AppId/{client_id} (+https://github.com/airflow-invites/airflow-invites)"
        )

    def _api_key(self) -> str:
        key = str(self.extra("api_key", "")).strip()
        if not API_KEY_RE.fullmatch(key):
            raise InviteInputError(
                f"connection {self.conn_id}: extra api_key",
                "the X-API-Key of your Bungie.net application (https://www.bungie.net/en/Application)",
                "missing" if not key else None,
                show_value=not key,
            )
        return key

    def _client_credentials(self) -> tuple[str, str]:
        client_id = str(self.connection.login or "").strip()
        if not CLIENT_ID_RE.fullmatch(client_id):
            raise InviteInputError(
                f"connection {self.conn_id}: login", "the application's OAuth client_id (digits)", client_id
            )
        if not self.connection.password:
            raise InviteInputError(
                f"connection {self.conn_id}: password",
                "the OAuth client_secret of a Confidential application (only those get refresh tokens)",
            )
        return client_id, str(self.connection.password)

    # -- refresh tokens that outlive the task ---------------------------------------------------

    def _connection_refresh_token(self) -> str:
        token = str(self.extra("refresh_token", "")).strip()
        if not token:
            raise InviteInputError(
                f"connection {self.conn_id}: extra refresh_token",
                "the first OAuth refresh token of a founder/admin who authorised the app (AdminGroups scope)",
            )
        return token

    def _stored_refresh_token(self) -> str | None:
        """The newest rotated refresh token, if it descends from the connection's current one.

        The store keeps a fingerprint of the connection's token it started from: after a human
        re-authorises and puts a new token in the connection, that token wins over the old chain.
        """
        raw = self.store.get(STORE_NAME)
        if not raw:
            return None
        try:
            data = json.loads(raw)
            token, origin = str(data["refresh_token"]), str(data["origin"])
        except (ValueError, KeyError, TypeError):
            self.log.warning("bungie: ignoring an unreadable stored refresh token for %s", self.conn_id)
            return None
        self.remember_secret(token)
        return token if origin == _fingerprint(self._connection_refresh_token()) else None

    def _newer_stored_refresh_token(self, tried: set[str]) -> str | None:
        for attempt in range(ROTATION_RACE_CHECKS):
            newer = self._stored_refresh_token()
            if newer and newer not in tried:
                return newer
            if attempt + 1 < ROTATION_RACE_CHECKS:
                time.sleep(ROTATION_RACE_WAIT_S)
        return None

    def _keep_refresh_token(self, token: str) -> None:
        origin = _fingerprint(self._connection_refresh_token())
        self.store.set(STORE_NAME, json.dumps({"refresh_token": token, "origin": origin}))

    # -- auth ------------------------------------------------------------------------------------

    def auth_headers(self) -> Mapping[str, str]:
        api_key = self._api_key()
        if self._access_token is None or time.monotonic() >= self._access_expires:
            self._refresh()
        return {"X-API-Key": api_key, "Authorization": f"Bearer {self._access_token}"}

    def _key_headers(self) -> Mapping[str, str]:
        """For calls that need only the API key."""
        return {"X-API-Key": self._api_key()}

    def can_reauthenticate(self) -> bool:
        return True

    def reauthenticate(self) -> None:
        self._access_token = None
        self._refresh()

    def _refresh(self) -> None:
        """Refresh grant; the rotated refresh token is kept before the access token is used."""
        self._api_key()  # a connection without a key fails before any request
        self._access_token = None
        tried: set[str] = set()
        token = self._stored_refresh_token() or self._connection_refresh_token()
        while True:
            tried.add(token)
            try:
                grant = self._refresh_grant(token)
                break
            except _RefreshTokenRefused as refused:
                # another task of this connection may have rotated it meanwhile: use the newest once
                # (it may still be saving it: look again for a few seconds before giving up)
                newer = self._newer_stored_refresh_token(tried)
                if newer:
                    token = newer
                    continue
                raise PlatformAuthError(
                    f"bungie: connection {self.conn_id}: the refresh token was refused "
                    f"({refused.description}): it is spent, revoked or expired. {REAUTHORISE_HINT}",
                    code=refused.description,
                ) from None
        self._keep_refresh_token(grant.refresh_token)
        self._access_token = grant.access_token
        margin = min(REFRESH_MARGIN_S, grant.expires_in / 2)
        self._access_expires = time.monotonic() + grant.expires_in - margin
        self.refreshes += 1

    def _refresh_grant(self, refresh_token: str) -> _Grant:
        client_id, client_secret = self._client_credentials()
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        self.remember_secret(basic)
        return self.http.request(
            "POST",
            "App/OAuth/token/",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            headers={"Authorization": f"Basic {basic}"},
            check=self._check_token,
        )

    def _check_token(self, response: requests.Response) -> _Grant:
        """The token endpoint: plain JSON, OAuth error bodies (no platform envelope)."""
        body = json_body(response, self.platform)
        if not isinstance(body, dict):
            raise TransientPlatformError(
                f"bungie: token endpoint HTTP {response.status_code}: malformed reply"
            )
        if response.status_code == 200 and body.get("access_token"):
            access = self.remember_secret(str(body["access_token"])) or ""
            refresh = self.remember_secret(str(body.get("refresh_token") or "")) or ""
            if not refresh:
                raise PlatformAuthError(
                    "bungie: the token reply has no refresh_token: the application is not a Confidential "
                    "client. Register a Confidential one (docs/connections/bungie.md)."
                )
            return _Grant(access, refresh, float(body.get("expires_in") or 3600))
        if response.status_code == 200:
            raise TransientPlatformError(
                "bungie: token endpoint HTTP 200 without an access_token: malformed reply"
            )
        if "ThrottleSeconds" in body:  # a Platform envelope (throttle, maintenance)
            self._check(response)
        error = str(body.get("error", ""))
        description = str(body.get("error_description", ""))[:100]
        if response.status_code == 429 or response.status_code >= 500 or description in TOKEN_TRANSIENT:
            raise TransientPlatformError(f"bungie: token endpoint HTTP {response.status_code} {description}")
        if error == "invalid_client":
            raise PlatformAuthError(
                f"bungie: connection {self.conn_id}: the OAuth client id/secret were refused (invalid_client). "
                "Check the connection's login (client_id) and password (client_secret)."
            )
        if error == "invalid_request" and "client_id" in description:
            raise PlatformAuthError(
                f"bungie: connection {self.conn_id}: the OAuth client_id was refused ({description})."
            )
        if error in ("invalid_request", "invalid_grant", "server_error"):
            raise _RefreshTokenRefused(description or error)
        raise PlatformAuthError(
            f"bungie: token endpoint refused the refresh ({error}: {description}). {REAUTHORISE_HINT}"
        )

    # -- the error table -------------------------------------------------------------------------

    def _check(self, response: requests.Response, *, write: bool = False) -> Any:
        """The Platform envelope -> ``Response``, or the error ``ERRORS`` says. Never the status alone."""
        body = json_body(response, self.platform, write=write)
        code = body.get("ErrorCode") if isinstance(body, dict) else None
        if not isinstance(code, int):
            if response.status_code == 429 or response.status_code >= 500:
                raise TransientPlatformError(
                    f"bungie: HTTP {response.status_code} without a Platform envelope", maybe_applied=write
                )
            raise PermanentPlatformError(f"bungie: HTTP {response.status_code} without a Platform envelope")
        if code == 1:
            return body.get("Response")
        name = str(body.get("ErrorStatus") or code)
        text = str(body.get("Message") or "")[:200]
        kind, meaning = ERRORS.get(code, (None, ""))
        throttle = body.get("ThrottleSeconds")
        if kind is Kind.THROTTLE or (isinstance(throttle, int) and throttle > 0):
            wait = max(float(throttle) if isinstance(throttle, (int, float)) else 0.0, 1.0)
            raise TransientPlatformError(f"bungie: {name} (wait {wait:.0f} s)", retry_after=wait, code=name)
        if kind is Kind.REFRESH:
            raise AuthExpired(f"bungie: {name}: {meaning}", code=name)
        if kind is Kind.REAUTHORISE:
            raise PlatformAuthError(f"bungie: {name}: {meaning}. {REAUTHORISE_HINT}", code=name)
        if kind is Kind.API_KEY:
            raise PlatformAuthError(
                f"bungie: {name}: {meaning}. Check the connection's api_key and the application's settings "
                "at https://www.bungie.net/en/Application.",
                code=name,
            )
        if kind is Kind.TRANSIENT:
            raise TransientPlatformError(
                f"bungie: {name}: {meaning}", maybe_applied=write and code != 5, code=name
            )
        if kind in (Kind.PERSON, Kind.ALREADY_MEMBER):
            raise PersonRefused(
                f"{meaning} ({text})" if text else meaning,
                code=name,
                already_member=kind is Kind.ALREADY_MEMBER,
            )
        if kind is Kind.GROUP:
            raise PermanentPlatformError(f"bungie: {meaning} ({name})", code=name)
        raise PermanentPlatformError(f"bungie: {name}: {text}", code=name)

    def _check_write(self, response: requests.Response) -> Any:
        return self._check(response, write=True)

    # -- adapter ---------------------------------------------------------------------------------

    def normalize_group(self, group: object) -> str:
        return _int64(group, "group", "a clan (group) id: digits only, 1 to 2^63-1, e.g. 4107840")

    def normalize_user(self, user: object) -> str:
        expected = (
            "<membershipType>:<membershipId> of a Destiny account, type by number or name "
            "(1 TigerXbox, 2 TigerPsn, 3 TigerSteam, 6 TigerEgs), e.g. 3:4611686018467284386"
        )
        match = USER_RE.fullmatch(user) if isinstance(user, str) else None
        if match is None:
            raise InviteInputError("users", expected, user)
        type_text, id_text = match.groups()
        membership_type = _membership_type(type_text)
        if membership_type is None:
            reason = NOT_INVITABLE.get(int(type_text)) if re.fullmatch(r"-?[0-9]+", type_text) else None
            raise InviteInputError("users", f"{expected}; {reason}" if reason else expected, user)
        membership_id = _int64(id_text, "users", expected, shown=user)
        return f"{membership_type}:{membership_id}"

    def normalize_request(self, request: InviteRequest) -> InviteRequest:
        message = request.message
        if message is not None and (not isinstance(message, str) or len(message) > MESSAGE_MAX):
            raise InviteInputError("message", f"text of at most {MESSAGE_MAX} characters", message)
        return request

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
                    found.update(self._invited_each(group, unfound))
                    break
        return found

    def _invited_each(self, group: str, users: Sequence[str]) -> dict[str, UserState]:
        """GetPotentialGroupsForMember per person: is there a pending invitation to ``group``?"""
        found: dict[str, UserState] = {}
        for user in users:
            kind, membership_id = user.split(":", 1)
            reply = self.call(
                "GET", f"GroupV2/User/Potential/{kind}/{membership_id}/0/1/", check=self._check_person_lookup
            )
            for row in (reply or {}).get("results") or []:
                member, clan = row.get("member") or {}, row.get("group") or {}
                if str(clan.get("groupId")) == group and member.get("potentialStatus") == POTENTIAL_INVITEE:
                    found[user] = UserState(Presence.INVITED)
        return found

    def _page(self, path: str, page: int) -> dict[str, Any]:
        reply = self.call("GET", path, params={"currentpage": page}, check=self._check_group)
        return reply if isinstance(reply, dict) else {}

    def _check_person_lookup(self, response: requests.Response) -> Any:
        """A look-up about one person: a refusal concerning that person (unknown account) is no state."""
        try:
            return self._check(response)
        except PersonRefused:
            return {}

    def _check_group(self, response: requests.Response) -> Any:
        """Look-ups name no person: a per-person code here concerns the group."""
        try:
            return self._check(response)
        except PersonRefused as refused:
            raise PermanentPlatformError(f"bungie: {refused}", code=refused.code) from None

    @staticmethod
    def _match(
        row: Mapping[str, Any], by_id: Mapping[str, str], found: dict[str, UserState], presence: Presence
    ) -> None:
        info = row.get("destinyUserInfo") or {}
        user = by_id.get(str(info.get("membershipId", "")))
        if user is None or user in found:
            return
        listed = f"{info.get('membershipType')}:{info.get('membershipId')}"
        detail = "" if listed == user else f"listed as {listed} (cross save)"
        found[user] = UserState(presence, detail)

    def send_invites(
        self, group: str, users: Sequence[str], request: InviteRequest
    ) -> Mapping[str, InviteResult]:
        results: dict[str, InviteResult] = {}
        for user in users:
            membership_type, membership_id = user.split(":", 1)
            try:
                reply = self.call(
                    "POST",
                    f"GroupV2/{group}/Members/IndividualInvite/{membership_type}/{membership_id}/",
                    json={"message": request.message or ""},
                    check=self._check_write,
                    write=True,
                )
            except PersonRefused as refused:
                status = Status.ALREADY_MEMBER if refused.already_member else Status.FAILED
                results[user] = InviteResult(status, str(refused), refused.code)
                continue
            resolution = reply.get("resolution") if isinstance(reply, dict) else None
            # 1 Accepted: the person had applied and is now a member
            results[user] = InviteResult(Status.JOINED if resolution == 1 else Status.INVITED)
        return results

    def group_url(self, group: str) -> str | None:
        return f"{self.base_url().removesuffix('/Platform')}/en/ClanV2?groupid={group}"

    def check_connection(self) -> str:
        """Prove the API key and the refresh token (a refresh rotates it; kept as in a run)."""
        self.http.request("GET", "Settings/", auth=self._key_headers, check=self._check)
        if not rotated_tokens_persist():
            return (
                "Bungie.net API key accepted. The refresh token was not used: a refresh rotates it and "
                "outside an Airflow task the new one could not be saved for the next run. Run a task "
                "that calls this hook's test_connection() to check it."
            )
        me = self.call("GET", "User/GetMembershipsForCurrentUser/", check=self._check)
        user = (me or {}).get("bungieNetUser") or {}
        destiny = [
            f"{m.get('membershipType')}:{m.get('membershipId')}"
            for m in (me or {}).get("destinyMemberships", [])
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


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def _membership_type(text: str) -> int | None:
    if re.fullmatch(r"-?[0-9]+", text):
        number = int(text)
        return number if number in INVITABLE_TYPES.values() else None
    lowered = text.lower()
    for name, number in INVITABLE_TYPES.items():
        if lowered in (name.lower(), name.lower().removeprefix("tiger")):
            return number
    return TYPE_ALIASES.get(lowered)


def _int64(value: object, field: str, expected: str, *, shown: object = None) -> str:
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not INT64_RE.fullmatch(text) or int(text) > INT64_MAX:
        raise InviteInputError(field, expected, value if shown is None else shown)
    return text
