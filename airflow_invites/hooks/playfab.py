"""PlayFab entity groups: the title's entity token, look-ups, ``InviteToGroup`` and its error table.

Reference: ``shared/platforms/playfab.md``. The connection holds the title id and a title secret
key; the key is exchanged for the title's entity token (``/Authentication/GetEntityToken`` with
``X-SecretKey``), which every ``/Group/*`` call carries as ``X-EntityToken``. ``InviteToGroup``
names one entity per call and answers 200 again for someone already invited, so the look-up
(``ListGroupMembers`` + ``ListGroupInvitations``, no paging) decides ``already_invited``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
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
from airflow_invites.core.http import json_body, retry_after_seconds
from airflow_invites.core.outcome import Status
from airflow_invites.hooks.base import InvitesHook

ENTITY_ID_RE = re.compile(r"^[0-9A-F]{16}$")
TITLE_ID_RE = re.compile(r"^[0-9A-F]{3,6}$")
ROLE_ID_RE = re.compile(r"^[A-Za-z0-9()_.\-]{1,64}$")
#: entity types a group may hold (case-sensitive, as PlayFab spells them)
MEMBER_TYPES = ("title_player_account", "character")
DEFAULT_TYPE = "title_player_account"
MAX_CUSTOM_TAGS, MAX_TAG_KEY, MAX_TAG_VALUE = 10, 64, 128
#: renew the entity token when less than this is left (or less than half its lifetime)
REFRESH_MARGIN = timedelta(hours=1)
#: wait when PlayFab throttles without saying how long
DEFAULT_THROTTLE_WAIT_S = 2.0

MASTER_ACCOUNT_HINT = (
    "a classic PlayFabId is a master_player_account id, which groups do not take; map it to the "
    "title_player_account id with /Profile/GetTitlePlayersFromMasterPlayerAccountIds"
)


class Action(Enum):
    """What a PlayFab ``errorCode`` means for us."""

    ALREADY_MEMBER = "already a member"
    JOINED = "joined: the person's outstanding application was accepted instead"
    BLOCKED = "blocked by the group (BlockEntity); unblock them to invite"
    NO_SUCH_ENTITY = "no such entity in this title"
    ROLE_MISSING = "role does not exist in this group"
    RENEW_TOKEN = "entity token refused: get a new one once"
    THROTTLED = "throttled"
    RETRY = "PlayFab is busy or unavailable"
    CREDENTIALS = "title secret key refused"
    REFUSED = "refused"


@dataclass(frozen=True)
class Rule:
    action: Action
    hint: str = ""


#: PlayFab ``errorCode`` -> what we do. The one place where every reply code is handled.
ERROR_TABLE: dict[int, Rule] = {
    # InviteToGroup, per person
    1359: Rule(Action.ALREADY_MEMBER),  # EntityIsAlreadyMember
    1364: Rule(Action.JOINED),  # OutstandingApplicationAcceptedInstead
    1357: Rule(Action.BLOCKED),  # EntityBlockedByGroup
    1298: Rule(Action.NO_SUCH_ENTITY),  # ProfileDoesNotExist (unknown group or entity)
    # InviteToGroup, whole call
    1358: Rule(Action.ROLE_MISSING),  # RoleDoesNotExist
    1373: Rule(Action.REFUSED, "groups hold only title_player_account and character entities"),
    1000: Rule(Action.REFUSED, "invalid input parameters"),  # InvalidParams
    1071: Rule(Action.REFUSED, "malformed request"),  # InvalidRequest
    1089: Rule(Action.REFUSED, "the caller may not do this (a player token without the right role?)"),
    1191: Rule(Action.REFUSED, "the title's API policy disables this call (NotAuthorizedByTitle)"),
    1131: Rule(Action.REFUSED, "this API is not valid for this title: check the connection's host"),
    1144: Rule(Action.REFUSED, "the request was not sent as application/json"),
    1214: Rule(Action.REFUSED, "a title limit would be exceeded (at most 1,000 members per group)"),
    1295: Rule(Action.REFUSED, "API requests are disabled for this title"),
    1347: Rule(Action.REFUSED, "the title was deleted"),
    # authentication
    1074: Rule(Action.CREDENTIALS),  # NotAuthenticated: no or unknown credentials
    1334: Rule(Action.RENEW_TOKEN),  # EntityTokenMissing
    1335: Rule(Action.RENEW_TOKEN),  # EntityTokenInvalid
    1336: Rule(Action.RENEW_TOKEN),  # EntityTokenExpired
    1337: Rule(Action.RENEW_TOKEN),  # EntityTokenRevoked
    # wait and retry
    1199: Rule(Action.THROTTLED),  # APIClientRequestRateLimitExceeded
    1342: Rule(Action.THROTTLED),  # APIConcurrentRequestLimitExceeded
    1123: Rule(Action.RETRY),  # ServiceUnavailable
    1127: Rule(Action.RETRY),  # DownstreamServiceUnavailable
    1133: Rule(Action.RETRY),  # ConcurrentEditError
    1287: Rule(Action.RETRY),  # the docs' list of codes safe to retry
}
#: outcome of one person, for the per-person codes of InviteToGroup
PERSON_RESULTS: dict[Action, Status] = {
    Action.ALREADY_MEMBER: Status.ALREADY_MEMBER,
    Action.JOINED: Status.JOINED,
    Action.BLOCKED: Status.FAILED,
    Action.NO_SUCH_ENTITY: Status.FAILED,
}


class PlayFabHook(InvitesHook):
    """PlayFab Groups (entity model). Connection type ``playfab``: title id + title secret key."""

    platform = "playfab"
    conn_name_attr = "playfab_conn_id"
    default_conn_name = "playfab_default"
    conn_type = "playfab"
    hook_name = "PlayFab"
    invite_batch_size = 1  # InviteToGroup names one entity
    write_concurrency = 4  # so a whole guild (up to 1,000) does not wait on 1,000 round trips

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(conn_id, **kwargs)
        self._token: str | None = None
        self._token_expires: datetime | None = None
        self._token_renew_at: datetime | None = None
        self._token_lock = threading.Lock()  # invites run in a few threads
        self._now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)

    # -- connection and auth ---------------------------------------------------------------------

    @property
    def title_id(self) -> str:
        title = str(self.connection.login or "").strip().upper()
        if not TITLE_ID_RE.fullmatch(title):
            raise InviteInputError(
                f"connection {self.conn_id}: login", "the title id (3-6 hex characters, e.g. A1B2C)", title
            )
        return title

    def base_url(self) -> str:
        """The connection's host used as is (a test server), else ``https://{titleId}.playfabapi.com``."""
        if (self.connection.host or "").strip():
            return super().base_url()
        return f"https://{self.title_id}.playfabapi.com"

    def auth_headers(self) -> Mapping[str, str]:
        with self._token_lock:
            if self._token is None or self._token_due():
                self._get_entity_token()
            return {"X-EntityToken": self._token or ""}

    def can_reauthenticate(self) -> bool:
        return True

    def reauthenticate(self) -> None:
        # never refresh with the refused token: the title secret key gets a new one
        with self._token_lock:
            self._token = None
            self._get_entity_token()

    def _token_due(self) -> bool:
        return self._token_renew_at is not None and self._now() >= self._token_renew_at

    def _get_entity_token(self) -> dict[str, Any]:
        """Exchange the title secret key for the title's entity token; returns the reply's data."""
        title = self.title_id
        secret = self.connection.password
        if not secret:
            raise InviteInputError(f"connection {self.conn_id}: password", "the title secret key")
        data = self.http.request(
            "POST",
            "Authentication/GetEntityToken",
            json={},
            headers={"X-SecretKey": secret},
            check=self._check_token,
        )
        token = data.get("EntityToken")
        if not isinstance(token, str) or not token:
            raise TransientPlatformError("playfab: GetEntityToken answered without an EntityToken")
        self._token = self.remember_secret(token)
        entity = data.get("Entity") or {}
        if entity.get("Id") and str(entity["Id"]).upper() != title:
            raise PlatformAuthError(
                f"playfab: the title secret key belongs to title {entity['Id']}, but the connection "
                f"{self.conn_id} says {title}: fix the connection's login"
            )
        now = self._now()
        expires = _parse_time(data.get("TokenExpiration")) or now + timedelta(hours=24)
        self._token_expires = expires
        self._token_renew_at = expires - min(REFRESH_MARGIN, (expires - now) / 2)
        return dict(data)

    def _check_token(self, response: requests.Response) -> dict[str, Any]:
        try:
            return self._check(response)
        except (AuthExpired, PlatformAuthError) as exc:
            raise PlatformAuthError(
                f"playfab: GetEntityToken refused the title secret key ({exc}); re-authorise the "
                f"connection {self.conn_id} with an enabled secret key of title {self.title_id}",
                code=exc.code,
            ) from None

    # -- the error table -------------------------------------------------------------------------

    def _check(self, response: requests.Response, *, write: bool = False) -> dict[str, Any]:
        """The envelope's ``data``; errors raised per ``ERROR_TABLE``.

        Works with and without ``X-ReportErrorAsSuccess`` (HTTP 200 and the real code in the body).
        """
        error = self._error_of(response, write=write)
        if error is None:
            return dict(json_body(response, self.platform)["data"])
        raise self._exception(error, response, write=write)

    def _error_of(self, response: requests.Response, *, write: bool = False) -> dict[str, Any] | None:
        """The ApiErrorWrapper of a reply, or None for a success envelope."""
        if response.status_code >= 500:
            try:
                body = response.json()
            except ValueError:
                body = None
            if not isinstance(body, dict) or "errorCode" not in body:
                raise TransientPlatformError(
                    f"playfab: server error HTTP {response.status_code}", maybe_applied=write
                )
            return body
        body = json_body(response, self.platform, write=write)
        if not isinstance(body, dict):
            raise TransientPlatformError(
                f"playfab: reply is not a PlayFab envelope (HTTP {response.status_code})", maybe_applied=write
            )
        code = _int(body.get("code"), response.status_code)
        if code == 200 and response.status_code == 200 and isinstance(body.get("data"), dict):
            return None
        if code == 200:
            raise TransientPlatformError("playfab: success reply without data", maybe_applied=write)
        body.setdefault("code", code)
        return body

    def _exception(self, error: Mapping[str, Any], response: requests.Response, *, write: bool) -> Exception:
        code = _int(error.get("code"), response.status_code)
        number = _int(error.get("errorCode"), 0)
        name = str(error.get("error") or "")
        label = f"{name} {number}".strip() if number else name or f"HTTP {code}"
        message = _short(error.get("errorMessage"))
        rule = ERROR_TABLE.get(number)
        action = rule.action if rule else None
        if action is Action.THROTTLED or code == 429:
            return TransientPlatformError(
                f"playfab: throttled ({label})", retry_after=_throttle_wait(error, response), code=name
            )
        if action in (Action.RENEW_TOKEN, Action.CREDENTIALS) or (code == 401 and action is None):
            # a new token once; on GetEntityToken itself ``_check_token`` makes this final
            return AuthExpired(f"playfab: {label}: {message}", code=name)
        if action is Action.RETRY or code >= 500 or code in (408, 409):
            return TransientPlatformError(
                f"playfab: {label}: {message}", maybe_applied=write and action is not Action.RETRY, code=name
            )
        if action in PERSON_RESULTS or action is Action.ROLE_MISSING:
            return _PersonRefusal(action, label, name, message)
        hint = f" ({rule.hint})" if rule and rule.hint else ""
        details = _details(error.get("errorDetails"))
        return PermanentPlatformError(f"playfab: {label}: {message}{hint}{details}", code=name or None)

    # -- adapter ---------------------------------------------------------------------------------

    def normalize_group(self, group: object) -> str:
        text = group.strip() if isinstance(group, str) else group
        if isinstance(text, str) and text.startswith("group:"):
            text = text.removeprefix("group:")
        if not isinstance(text, str) or not ENTITY_ID_RE.fullmatch(text):
            raise InviteInputError(
                "group", "a group entity id (16 upper-case hex, e.g. 7E1B5C2A9F3D4E60)", group
            )
        return text

    def normalize_user(self, user: object) -> str:
        """``ID`` (a title_player_account), ``character:ID``, or an EntityKey ``{"Id", "Type"}``."""
        expected = "a title_player_account id (16 upper-case hex), or character:<id>"
        if isinstance(user, Mapping):
            entity_type, entity_id = user.get("Type") or DEFAULT_TYPE, user.get("Id")
        elif isinstance(user, str):
            entity_type, _, entity_id = user.strip().rpartition(":")
            entity_type = entity_type or DEFAULT_TYPE
        else:
            raise InviteInputError("users", expected, user)
        if entity_type == "master_player_account":
            raise InviteInputError("users", f"{expected}; {MASTER_ACCOUNT_HINT}", user)
        if entity_type not in MEMBER_TYPES:
            raise InviteInputError(
                "users", f"{expected}; entity type must be one of {MEMBER_TYPES} (case-sensitive)", user
            )
        if not isinstance(entity_id, str) or not ENTITY_ID_RE.fullmatch(entity_id):
            raise InviteInputError("users", expected, user)
        return _user_key(entity_type, entity_id)

    def normalize_request(self, request: InviteRequest) -> InviteRequest:
        extra = dict(request.extra)
        role_id = extra.get("role_id")
        if role_id in (None, ""):
            extra.pop("role_id", None)
        elif not isinstance(role_id, str) or not ROLE_ID_RE.fullmatch(role_id):
            raise InviteInputError("role_id", "1-64 characters from A-Z a-z 0-9 ( ) _ - .", role_id)
        tags = extra.get("custom_tags")
        if tags in (None, {}, ""):
            extra.pop("custom_tags", None)
        else:
            extra["custom_tags"] = _valid_tags(tags)
        auto_accept = extra.get("auto_accept_outstanding_application")
        if auto_accept is not None and not isinstance(auto_accept, bool):
            raise InviteInputError("auto_accept_outstanding_application", "true or false", auto_accept)
        return InviteRequest(message=request.message, extra=extra)

    def lookup(self, group: str, users: Sequence[str]) -> Mapping[str, UserState]:
        key = _group_key(group)
        wanted = set(users)
        found: dict[str, UserState] = {}
        members = self.call("POST", "Group/ListGroupMembers", json={"Group": key}, check=self._check_lookup)
        for role in members.get("Members") or []:
            for member in role.get("Members") or []:
                user = _user_of(member)
                if user in wanted and user not in found:
                    found[user] = UserState(Presence.MEMBER, f"member in role {role.get('RoleId', '?')}")
        invitations = self.call(
            "POST", "Group/ListGroupInvitations", json={"Group": key}, check=self._check_lookup
        )
        now = self._now()
        for invitation in invitations.get("Invitations") or []:
            user = _user_of(invitation.get("InvitedEntity"))
            expires = _parse_time(invitation.get("Expires"))
            if user in wanted and user not in found and (expires is None or expires > now):
                role = invitation.get("RoleId", "?")
                found[user] = UserState(
                    Presence.INVITED, f"invitation pending (role {role}, expires {invitation.get('Expires')})"
                )
        return found

    def _check_lookup(self, response: requests.Response) -> dict[str, Any]:
        try:
            return self._check(response)
        except _PersonRefusal as refusal:  # 1298 on a list call: the group itself is unknown
            raise PermanentPlatformError(
                f"playfab: group not found ({refusal.label}: {refusal.message})", code=refusal.name
            ) from None

    def send_invites(
        self, group: str, users: Sequence[str], request: InviteRequest
    ) -> Mapping[str, InviteResult]:
        results: dict[str, InviteResult] = {}
        for user in users:
            body: dict[str, Any] = {"Group": _group_key(group), "Entity": _entity_key(user)}
            role_id = request.extra.get("role_id")
            if role_id:
                body["RoleId"] = role_id
            auto_accept = request.extra.get("auto_accept_outstanding_application")
            if auto_accept is not None:
                body["AutoAcceptOutstandingApplication"] = auto_accept
            if request.extra.get("custom_tags"):
                body["CustomTags"] = dict(request.extra["custom_tags"])
            try:
                data = self.call(
                    "POST", "Group/InviteToGroup", json=body, check=self._check_invite, write=True
                )
            except _PersonRefusal as refusal:
                results[user] = self._refusal_result(refusal, group, role_id)
                continue
            results[user] = InviteResult(
                Status.INVITED,
                f"invited as {data.get('RoleId', role_id or 'members')} until {data.get('Expires')}",
            )
        return results

    def _check_invite(self, response: requests.Response) -> dict[str, Any]:
        return self._check(response, write=True)

    def _refusal_result(self, refusal: _PersonRefusal, group: str, role_id: str | None) -> InviteResult:
        if refusal.action is Action.ROLE_MISSING:
            role = role_id or "the group's default member role"
            raise PermanentPlatformError(
                f"playfab: role {role!r} does not exist in group {group} ({refusal.label}); use one of "
                "the role ids GetGroup lists (new groups have 'admins' and 'members')",
                code=refusal.name,
            )
        detail = refusal.action.value
        if refusal.action is Action.NO_SUCH_ENTITY:
            detail += f" ({MASTER_ACCOUNT_HINT} if this id came from a login result)"
        return InviteResult(
            PERSON_RESULTS[refusal.action], f"{detail} ({refusal.label})", refusal.name or None
        )

    def group_url(self, group: str) -> str | None:
        return None  # a group has no web page; Game Manager pages need a developer login

    def check_connection(self) -> str:
        with self._token_lock:
            data = self._get_entity_token()
        entity = data.get("Entity") or {}
        return (
            f"Connected to PlayFab title {entity.get('Id', self.title_id)}: entity token valid until "
            f"{data.get('TokenExpiration', '?')}"
        )


class _PersonRefusal(Exception):
    """An InviteToGroup refusal that concerns this one person (or the role): not retried."""

    def __init__(self, action: Action | None, label: str, name: str, message: str) -> None:
        self.action = action or Action.REFUSED
        self.label = label
        self.name = name
        self.message = message
        super().__init__(f"{label}: {message}")


def _user_key(entity_type: str, entity_id: str) -> str:
    return entity_id if entity_type == DEFAULT_TYPE else f"{entity_type}:{entity_id}"


def _entity_key(user: str) -> dict[str, str]:
    entity_type, _, entity_id = user.rpartition(":")
    return {"Id": entity_id, "Type": entity_type or DEFAULT_TYPE}


def _group_key(group: str) -> dict[str, str]:
    return {"Id": group, "Type": "group"}


def _user_of(entity: Any) -> str | None:
    """Our key of an EntityWithLineage (``Key``) or an EntityKey; ``TypeString`` is the legacy alias."""
    if not isinstance(entity, Mapping):
        return None
    key = entity.get("Key", entity)
    if not isinstance(key, Mapping) or not key.get("Id"):
        return None
    return _user_key(str(key.get("Type") or key.get("TypeString") or DEFAULT_TYPE), str(key["Id"]))


def _valid_tags(tags: object) -> dict[str, str]:
    expected = (
        f"a mapping of at most {MAX_CUSTOM_TAGS} string pairs, keys 1-{MAX_TAG_KEY} and values "
        f"at most {MAX_TAG_VALUE} characters"
    )
    if not isinstance(tags, Mapping) or len(tags) > MAX_CUSTOM_TAGS:
        raise InviteInputError("custom_tags", expected, tags)
    for key, value in tags.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_TAG_KEY:
            raise InviteInputError("custom_tags", expected, key)
        if not isinstance(value, str) or len(value) > MAX_TAG_VALUE:
            raise InviteInputError("custom_tags", expected, value)
    return dict(tags)


def _parse_time(value: object) -> datetime | None:
    """ISO-8601 UTC, with or without fractional seconds (``...Z``)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    # Python 3.10 takes exactly 6 fraction digits; PlayFab sends none, 3 or (.NET) 7
    text = re.sub(r"\.(\d+)", lambda m: "." + m.group(1)[:6].ljust(6, "0"), text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _throttle_wait(error: Mapping[str, Any], response: requests.Response) -> float:
    """``max(retryAfterSeconds, Retry-After)``, 2 s if PlayFab gave neither."""
    hints = [
        h for h in (_float(error.get("retryAfterSeconds")), retry_after_seconds(response)) if h is not None
    ]
    return max(hints) if hints else DEFAULT_THROTTLE_WAIT_S


def _details(details: object) -> str:
    if not isinstance(details, Mapping) or not details:
        return ""
    parts = [
        f"{field}: {'; '.join(map(str, msgs)) if isinstance(msgs, list) else msgs}"
        for field, msgs in details.items()
    ]
    return " [" + _short(", ".join(parts)) + "]"


def _short(value: object, limit: int = 200) -> str:
    text = str(value or "").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _int(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return default


def _float(value: object) -> float | None:
    try:
        return max(0.0, float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
