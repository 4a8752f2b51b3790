"""PlayFab entity groups: the title's entity token, look-ups, invites, removals, players by handle.

The title secret key (``X-SecretKey``) buys the title's entity token (``GetEntityToken``, 24 h), which
``/Group/*`` calls carry as ``X-EntityToken`` (a title bypasses group role checks). Every call is a POST
of a JSON object (https://learn.microsoft.com/rest/api/playfab/). Invites and cancels name one entity
per call; ``RemoveMembers`` takes a list and answers ``data: {}``, naming nobody, so the look-up after it
says who went; ``Admin/GetUserAccountInfo`` finds one account by e-mail or username.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, TypeGuard

import requests

from airflow_invites.core.adapter import Handle, InviteRequest, PersonResult, Presence, Resolution, UserState
from airflow_invites.core.errors import InviteInputError, PlatformAuthError, TransientPlatformError
from airflow_invites.core.http import retry_after_seconds
from airflow_invites.core.outcome import Status
from airflow_invites.core.replies import ErrorTable, Reply, credentials, expired, person, throttle, transient
from airflow_invites.core.replies import group as group_rule
from airflow_invites.hooks.base import InvitesHook
from airflow_invites.platforms import PLATFORMS

SPEC = PLATFORMS["playfab"]
TITLE_ID_RE = re.compile(r"^[0-9A-F]{3,6}$")
ROLE_ID_RE = re.compile(r"^[A-Za-z0-9()_.\-]{1,64}$")
USERNAME_RE = re.compile(r"^[A-Za-z0-9]{3,20}$")  # others are refused as InvalidParams
MEMBER_TYPES = ("title_player_account", "character")  # the types a group holds (case-sensitive)
DEFAULT_TYPE = "title_player_account"
MAX_CUSTOM_TAGS, MAX_TAG_KEY, MAX_TAG_VALUE = 10, 64, 128
MAX_GROUP_MEMBERS = 1000  # and PlayFab documents no other cap on RemoveMembers' list
REFRESH_MARGIN = timedelta(hours=1)  # renew the token this long before it ends (or at half its life)
DEFAULT_THROTTLE_WAIT_S = 2.0  # when PlayFab throttles without saying how long
NOT_ENVELOPE = "not_envelope"  # our code for a body that is not PlayFab's envelope
LOOKUP_FIELDS = {"email": "Email", "username": "Username"}
GROUP_EXPECTED = "a group entity id (16 upper-case hex, e.g. 7E1B5C2A9F3D4E60)"
TAGS_EXPECTED = (
    f"a mapping of at most {MAX_CUSTOM_TAGS} string pairs, keys 1-{MAX_TAG_KEY} and values at most "
    f"{MAX_TAG_VALUE} characters"
)
MASTER_ACCOUNT_HINT = (
    "a classic PlayFabId is a master_player_account id, which groups do not take; map it to the "
    "title_player_account id with /Profile/GetTitlePlayersFromMasterPlayerAccountIds"
)


def _codes(**rules: tuple[int, Any]) -> dict[str | int, Any]:
    """``Name=(errorCode, rule)`` -> rules by PlayFab's ``errorCode``, with its error name as our code."""
    return {number: replace(rule, code=name) for name, (number, rule) in rules.items()}


MEMBER = "already a member"
JOINED = "joined: the person's outstanding application was accepted instead"
BLOCKED = "blocked by the group (BlockEntity); unblock them to invite"
NO_ENTITY = f"no such entity in this title ({MASTER_ACCOUNT_HINT} if this id came from a login result)"
BUSY = "PlayFab is busy or unavailable"
ROLE_HINT = "use one of the role ids GetGroup lists (new groups have 'admins' and 'members')"
NO_POLICY = (
    "the title's API policy does not let the secret key call /Admin/GetUserAccountInfo: allow it "
    "(Game Manager > Title settings > API Features) or give title player account ids"
)
#: every PlayFab reply code we act on; the endpoints whose codes mean more extend it below
ERRORS = ErrorTable(
    "playfab",
    codes=_codes(
        EntityIsAlreadyMember=(1359, person(Status.ALREADY_MEMBER, MEMBER, presence=Presence.MEMBER)),
        OutstandingApplicationAcceptedInstead=(1364, person(Status.JOINED, JOINED, presence=Presence.MEMBER)),
        EntityBlockedByGroup=(1357, person(Status.FAILED, BLOCKED, presence=Presence.BLOCKED)),
        ProfileDoesNotExist=(1298, person(Status.FAILED, NO_ENTITY)),
        RoleDoesNotExist=(1358, group_rule("the role does not exist in this group")),
        InvalidEntityType=(1373, group_rule("groups hold only title_player_account and character entities")),
        InvalidParams=(1000, group_rule("invalid input parameters")),
        NotAuthorizedByTitle=(1191, group_rule("the title's API policy disables this call")),
        InvalidAPIEndpoint=(1131, group_rule("no such API for this title: check the connection's host")),
        OverLimit=(1214, group_rule("a title limit would be exceeded (at most 1,000 members per group)")),
        NotAuthenticated=(1074, expired("no or unknown credentials")),
        EntityTokenMissing=(1334, expired("entity token missing")),
        EntityTokenInvalid=(1335, expired("entity token refused")),
        EntityTokenExpired=(1336, expired("entity token expired")),
        EntityTokenRevoked=(1337, expired("entity token revoked")),
        APIClientRequestRateLimitExceeded=(1199, throttle("throttled")),
        APIConcurrentRequestLimitExceeded=(1342, throttle("throttled (too many concurrent requests)")),
        ServiceUnavailable=(1123, transient(BUSY, applied=False)),
        DownstreamServiceUnavailable=(1127, transient(BUSY, applied=False)),
        ConcurrentEditError=(1133, transient("a concurrent edit of the group", applied=False)),
        DataUpdateRateExceeded=(1287, transient("data updated too often", applied=False)),
    )
    | {NOT_ENVELOPE: transient("a reply that is not PlayFab's envelope")},
    statuses={409: transient("conflict (HTTP 409)")},
    throttle_wait=DEFAULT_THROTTLE_WAIT_S,
)
LOOKUP_ERRORS = ERRORS.extend(codes=_codes(ProfileDoesNotExist=(1298, group_rule("group not found"))))
CANCEL_ERRORS = ERRORS.extend(
    codes=_codes(GroupInvitationNotFound=(1361, person(Status.ALREADY_ABSENT, "no pending invitation")))
)
#: a removal naming a non-member is refused (as "impossible"); PlayFab documents no code for it, so
#: both candidates count as "not there", and the look-up afterwards checks everyone of the call
NOT_A_MEMBER = person(Status.ALREADY_ABSENT, "not a member")
REMOVE_ERRORS = ERRORS.extend(
    codes=_codes(MembershipNotFound=(1331, NOT_A_MEMBER), ProfileDoesNotExist=(1298, NOT_A_MEMBER))
)
KEY_REFUSED = credentials("the Admin API refused the title secret key")
RESOLVE_ERRORS = ERRORS.extend(
    codes=_codes(
        AccountNotFound=(1001, person(Status.FAILED, "no PlayFab account", presence=Presence.NOT_FOUND)),
        NotAuthenticated=(1074, KEY_REFUSED),
        NotAuthorizedByTitle=(1191, group_rule(NO_POLICY)),
        NotAuthorized=(1089, group_rule("the secret key may not call /Admin/GetUserAccountInfo")),
    ),
    statuses={401: KEY_REFUSED},
)


class PlayFabHook(InvitesHook):
    """PlayFab Groups (entity model). Connection type ``playfab``: title id + title secret key."""

    platform = "playfab"
    conn_name_attr = "playfab_conn_id"
    default_conn_name = "playfab_default"
    conn_type = "playfab"
    hook_name = "PlayFab"
    errors = ERRORS
    invite_batch_size = cancel_batch_size = 1  # InviteToGroup, RemoveGroupInvitation: one entity each
    remove_batch_size = MAX_GROUP_MEMBERS  # RemoveMembers takes a list: everyone a group can hold
    resolve_batch_size = 1  # GetUserAccountInfo finds one account; PlayFab has no batch look-up
    write_concurrency = 4  # so a whole guild (up to 1,000) does not wait on 1,000 round trips
    adaptive_rate = (20.0, 10)  # PlayFab publishes no per-call limit: learned from its throttle replies
    can_cancel_invites = can_remove_members = True
    unconfirmed_detail = "PlayFab answered RemoveMembers, but they are still a member of the group"

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(conn_id, **kwargs)
        self._token: str | None = None
        self._token_expires: datetime | None = None
        self._token_renew_at: datetime | None = None
        self._admin_roles: dict[str, str] = {}  # group -> its AdminRoleId (GetGroup)
        self._now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)

    # -- connection and auth ---------------------------------------------------------------------

    @property
    def title_id(self) -> str:
        title = str(self.connection.login or "").strip().upper()
        if not TITLE_ID_RE.fullmatch(title):
            expected = "the title id (3-6 hex characters, e.g. A1B2C)"
            raise InviteInputError(f"connection {self.conn_id}: login", expected, title)
        return title

    def base_url(self) -> str:
        """The connection's host used as is (a test server), else ``https://{titleId}.playfabapi.com``."""
        if (self.connection.host or "").strip():
            return super().base_url()
        return f"https://{self.title_id}.playfabapi.com"

    def secret_key_headers(self) -> Mapping[str, str]:
        if not self.connection.password:
            raise InviteInputError(f"connection {self.conn_id}: password", "the title secret key")
        return {"X-SecretKey": self.connection.password}

    def auth_headers(self) -> Mapping[str, str]:
        if self._token is None or (self._token_renew_at is not None and self._now() >= self._token_renew_at):
            self._get_entity_token()
        return {"X-EntityToken": self._token or ""}

    def can_reauthenticate(self) -> bool:
        return True

    def reauthenticate(self) -> None:
        self._token = None  # never refresh with the refused token: the secret key gets a new one
        self._get_entity_token()

    def _get_entity_token(self) -> dict[str, Any]:
        """Exchange the title secret key for the title's entity token; returns the reply's data."""
        title = self.title_id
        refused = credentials(
            f"GetEntityToken refused the title secret key; re-authorise the connection {self.conn_id} "
            f"with an enabled secret key of title {title}"
        )
        table = ERRORS.extend(codes=_codes(NotAuthenticated=(1074, refused)), statuses={401: refused})
        data = self._post("Authentication/GetEntityToken", {}, table, auth=self.secret_key_headers)
        if not isinstance(data.get("EntityToken"), str) or not data["EntityToken"]:
            raise TransientPlatformError("playfab: GetEntityToken answered without an EntityToken")
        self._token = self.remember_secret(data["EntityToken"])
        entity = data.get("Entity") or {}
        if entity.get("Id") and str(entity["Id"]).upper() != title:
            raise PlatformAuthError(
                f"playfab: the title secret key belongs to title {entity['Id']}, but the connection "
                f"{self.conn_id} says {title}: fix the connection's login"
            )
        now = self._now()
        self._token_expires = _parse_time(data.get("TokenExpiration")) or now + timedelta(hours=24)
        self._token_renew_at = self._token_expires - min(REFRESH_MARGIN, (self._token_expires - now) / 2)
        return dict(data)

    def read_envelope(self, response: requests.Response, body: Any) -> Reply:
        """``data``, or the error's number, name, message and wait hint (status: the body's ``code``)."""
        if not isinstance(body, dict):
            return Reply(response.status_code, False, code=NOT_ENVELOPE)
        status = int(_number(body.get("code")) or response.status_code)
        if status == 200:
            ok = response.status_code == 200 and isinstance(body.get("data"), dict)
            return Reply(200, True, body["data"]) if ok else Reply(200, False, code=NOT_ENVELOPE)
        hints = (_number(body.get("retryAfterSeconds")), retry_after_seconds(response))
        message = " ".join(str(body[k]) for k in ("error", "errorMessage", "errorDetails") if body.get(k))
        code = int(_number(body.get("errorCode")) or 0) or None
        hint = max((h for h in hints if h is not None), default=None)
        return Reply(status, False, body, code=code, message=message, retry_after=hint)

    # -- input -----------------------------------------------------------------------------------

    def normalize_group(self, group: object) -> str:
        text = group.strip().removeprefix("group:") if isinstance(group, str) else group
        if not isinstance(text, str) or not SPEC.group_re.fullmatch(text):
            raise InviteInputError("group", GROUP_EXPECTED, group)
        return text

    def normalize_user(self, user: object) -> str:
        """``ID`` (a title_player_account), ``character:ID``, or an EntityKey ``{"Id", "Type"}``."""
        expected = "a title_player_account id (16 upper-case hex), or character:<id>"
        if isinstance(user, Mapping):
            entity_type, entity_id = user.get("Type") or DEFAULT_TYPE, user.get("Id")
        elif isinstance(user, str):
            entity_type, _, entity_id = user.strip().rpartition(":")
        else:
            raise InviteInputError("users", expected, user)
        entity_type = entity_type or DEFAULT_TYPE
        if entity_type == "master_player_account":
            raise InviteInputError("users", f"{expected}; {MASTER_ACCOUNT_HINT}", user)
        if entity_type not in MEMBER_TYPES:
            expected += f"; entity type must be one of {MEMBER_TYPES} (case-sensitive)"
            raise InviteInputError("users", expected, user)
        if not isinstance(entity_id, str) or not SPEC.user_re.fullmatch(f"{entity_type}:{entity_id}"):
            raise InviteInputError("users", expected, user)
        return _user_key(entity_type, entity_id)

    def normalize_handle(self, handle: Handle) -> Handle:
        """Usernames are 3-20 letters and digits; e-mail addresses as every platform checks them."""
        if handle.kind != "username":
            return super().normalize_handle(handle)
        if not USERNAME_RE.fullmatch(handle.value.strip()):
            expected = "username:<a PlayFab username: 3-20 letters and digits>"
            raise InviteInputError("users", expected, str(handle))
        return Handle("username", handle.value.strip())

    def normalize_request(self, request: InviteRequest) -> InviteRequest:
        extra = {k: v for k, v in request.extra.items() if v not in (None, "") and v != {}}
        role_id = extra.get("role_id")
        if role_id is not None and (not isinstance(role_id, str) or not ROLE_ID_RE.fullmatch(role_id)):
            raise InviteInputError("role_id", "1-64 characters from A-Z a-z 0-9 ( ) _ - .", role_id)
        tags = extra.get("custom_tags", {})
        if not isinstance(tags, Mapping) or len(tags) > MAX_CUSTOM_TAGS:
            raise InviteInputError("custom_tags", TAGS_EXPECTED, tags)
        for key, value in tags.items():
            if not isinstance(key, str) or not 1 <= len(key) <= MAX_TAG_KEY:
                raise InviteInputError("custom_tags", TAGS_EXPECTED, key)
            if not isinstance(value, str) or len(value) > MAX_TAG_VALUE:
                raise InviteInputError("custom_tags", TAGS_EXPECTED, value)
        auto_accept = extra.get("auto_accept_outstanding_application")
        if auto_accept is not None and not isinstance(auto_accept, bool):
            raise InviteInputError("auto_accept_outstanding_application", "true or false", auto_accept)
        return InviteRequest(message=request.message, extra=extra)

    # -- reads -----------------------------------------------------------------------------------

    def resolve(self, handles: Sequence[Handle]) -> Mapping[Handle, Resolution]:
        """The title player account of one e-mail or username (each belongs to one account on PlayFab)."""
        handle = handles[0]
        body = {LOOKUP_FIELDS[handle.kind]: handle.value}
        data = self._post(
            "Admin/GetUserAccountInfo", body, RESOLVE_ERRORS, auth=self.secret_key_headers, person=True
        )
        account = ((data.get("UserInfo") or {}).get("TitleInfo") or {}).get("TitlePlayerAccount") or {}
        if not account.get("Id"):
            return {handle: Resolution.not_found("the PlayFab account has no player in this title")}
        return {handle: Resolution.found(_user_key(account.get("Type") or DEFAULT_TYPE, str(account["Id"])))}

    def lookup(self, group: str, users: Sequence[str]) -> Mapping[str, UserState]:
        return self._states(group, set(users))

    def list_group(self, group: str) -> Mapping[str, UserState]:
        return self._states(group, None)

    def _states(self, group: str, wanted: set[str] | None) -> dict[str, UserState]:
        """Members (by role; admins protected) and unexpired invitations of ``wanted`` (None: all)."""

        def asked(user: str | None) -> TypeGuard[str]:
            return user is not None and (wanted is None or user in wanted)

        roles: dict[str, list[str]] = {}
        members = self._post("Group/ListGroupMembers", {"Group": _group_key(group)}, LOOKUP_ERRORS)
        for role in members.get("Members") or []:
            for user in filter(asked, map(_user_of, role.get("Members") or [])):
                roles.setdefault(user, []).append(str(role.get("RoleId", "?")))
        admin = self._admin_role(group) if roles else None
        found: dict[str, UserState] = {}
        for user, held in roles.items():
            protected = f"holds the group's admin role {admin!r}" if admin in held else ""
            where = f"member in role{'s' if len(held) > 1 else ''} {', '.join(held)}"
            found[user] = UserState(Presence.MEMBER, where, protected=protected)
        if wanted is not None and wanted <= found.keys():
            return found  # everyone asked about is a member: no invitation to look for
        invitations = self._post("Group/ListGroupInvitations", {"Group": _group_key(group)}, LOOKUP_ERRORS)
        now = self._now()
        for invitation in invitations.get("Invitations") or []:
            invited, expires = _user_of(invitation.get("InvitedEntity")), invitation.get("Expires")
            if asked(invited) and invited not in found and (_parse_time(expires) or now) >= now:
                pending = f"invitation pending (role {invitation.get('RoleId', '?')}, expires {expires})"
                found[invited] = UserState(Presence.INVITED, pending)
        return found

    def _admin_role(self, group: str) -> str:
        """The group's AdminRoleId: its holders (the group's creator is one) are never removed."""
        if group not in self._admin_roles:
            data = self._post("Group/GetGroup", {"Group": _group_key(group)}, LOOKUP_ERRORS)
            self._admin_roles[group] = str(data.get("AdminRoleId") or "admins")
        return self._admin_roles[group]

    # -- writes ----------------------------------------------------------------------------------

    def send_invites(
        self, group: str, users: Sequence[str], request: InviteRequest
    ) -> Mapping[str, PersonResult]:
        user, role_id, extra = users[0], request.extra.get("role_id"), request.extra
        body: dict[str, Any] = {"Group": _group_key(group), "Entity": _entity_key(user)}
        for name, field in (("role_id", "RoleId"), ("custom_tags", "CustomTags")):
            if extra.get(name):
                body[field] = extra[name]
        if extra.get("auto_accept_outstanding_application") is not None:
            body["AutoAcceptOutstandingApplication"] = extra["auto_accept_outstanding_application"]
        missing = f"role {role_id or 'of the members'!r} does not exist in group {group}; {ROLE_HINT}"
        errors = ERRORS.extend(codes=_codes(RoleDoesNotExist=(1358, group_rule(missing))))
        data = self._post("Group/InviteToGroup", body, errors, person=True, write=True)
        invited = f"invited as {data.get('RoleId', role_id or 'members')} until {data.get('Expires')}"
        return {user: PersonResult(Status.INVITED, invited)}

    def cancel_invites(self, group: str, users: Sequence[str]) -> Mapping[str, PersonResult]:
        body = {"Group": _group_key(group), "Entity": _entity_key(users[0])}
        self._post("Group/RemoveGroupInvitation", body, CANCEL_ERRORS, person=True, write=True)
        return {users[0]: PersonResult(Status.INVITE_CANCELLED, "invitation withdrawn")}

    def remove_members(self, group: str, users: Sequence[str]) -> Mapping[str, PersonResult]:
        """One ``RemoveMembers`` for all; its ``data: {}`` names nobody, so nobody is confirmed here."""
        body = {"Group": _group_key(group), "Members": [_entity_key(u) for u in users]}
        self._post("Group/RemoveMembers", body, REMOVE_ERRORS, person=True, write=True)
        return {}

    def check_connection(self) -> str:
        with self._auth_lock:
            data = self._get_entity_token()
        title = (data.get("Entity") or {}).get("Id", self.title_id)
        return f"Connected to PlayFab title {title}: entity token valid until {data.get('TokenExpiration')}"

    def _post(self, path: str, body: Mapping[str, Any], errors: ErrorTable, **kwargs: Any) -> Any:
        """Every PlayFab call is a POST of a JSON object."""
        return self.call("POST", path, json=body, errors=errors, **kwargs)


def _user_key(entity_type: str, entity_id: str) -> str:
    return entity_id if entity_type == DEFAULT_TYPE else f"{entity_type}:{entity_id}"


def _entity_key(user: str) -> dict[str, str]:
    entity_type, _, entity_id = user.rpartition(":")
    return {"Id": entity_id, "Type": entity_type or DEFAULT_TYPE}


def _group_key(group: str) -> dict[str, str]:
    return {"Id": group, "Type": "group"}


def _user_of(entity: Any) -> str | None:
    """Our key of an EntityWithLineage (``Key``) or an EntityKey; ``TypeString`` is the legacy alias."""
    key = entity.get("Key", entity) if isinstance(entity, Mapping) else None
    if not isinstance(key, Mapping) or not key.get("Id"):
        return None
    return _user_key(str(key.get("Type") or key.get("TypeString") or DEFAULT_TYPE), str(key["Id"]))


def _parse_time(value: object) -> datetime | None:
    """ISO-8601 UTC, with or without fractional seconds (``...Z``)."""
    # Python 3.10 takes neither "Z" nor PlayFab's 3 or (.NET) 7 fraction digits; seconds are enough
    text = re.sub(r"\.\d+|[Zz]$", "", value.strip()) if isinstance(value, str) else ""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _number(value: object) -> float | None:
    try:
        return max(0.0, float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
