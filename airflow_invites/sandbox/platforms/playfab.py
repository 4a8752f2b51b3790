"""PlayFab Groups (entity model) and the Admin API's account look-up, as PlayFab answers them.

Served under ``/playfab``: ``/playfab/Authentication/GetEntityToken``, ``/playfab/Group/InviteToGroup``,
``/playfab/Admin/GetUserAccountInfo`` etc. Every call is a POST of a JSON object; replies use PlayFab's
``{code, status, data}`` envelope and its error wrapper (``error``/``errorCode`` names and numbers from
PlayFab's list, https://learn.microsoft.com/rest/api/playfab/groups/groups). ``X-ReportErrorAsSuccess:
true`` (every official SDK sends it) turns every error into HTTP 200 with the real code in the body.

Behaviour PlayFab does not document, chosen here (clients must not depend on the exact text):
invitations live 7 days; re-inviting returns the pending invitation unchanged; ``RemoveMembers``
naming someone who is not a member (in that role) removes nobody and answers 400
``MembershipNotFound`` 1331 (PlayFab's groups guide says only that a title's call fails when the
action is impossible, e.g. removing a non-member); ``GetUserAccountInfo`` finds nobody with 400
``AccountNotFound`` 1001 and compares e-mails and usernames case-insensitively.

Test knobs (attributes, off by default): ``token_lifetime`` (24 h), ``advance(seconds)`` moves the
clock (tokens, invitations and applications expire), ``revoke_tokens()``, ``admin_api_allowed``
(False: the title's API policy refuses ``GetUserAccountInfo``, 403 ``NotAuthorizedByTitle``).
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from airflow_invites.sandbox.core import (
    DuplicateHandle,
    LeakyBucket,
    PlatformEnv,
    Route,
    SandboxError,
    SandboxPlatform,
    random_token,
)

HEX = "0123456789ABCDEF"
BUILT_IN_TYPES = (
    "namespace",
    "title",
    "master_player_account",
    "title_player_account",
    "character",
    "group",
    "game_server",
)
MEMBER_TYPES = ("title_player_account", "character")
ROLE_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789()_-.")
USERNAME_RE = re.compile(r"^[A-Za-z0-9]+$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
TOKEN_LIFETIME = timedelta(hours=24)
INVITATION_LIFETIME = timedelta(days=7)  # not documented
APPLICATION_LIFETIME = timedelta(days=7)
#: no numbers are published; title tokens get more than player tokens
TITLE_RATE, TITLE_BURST = 100.0, 1000
PLAYER_RATE, PLAYER_BURST = 10.0, 100
MAX_GROUP_MEMBERS = 1000  # a PlayFab group holds at most 1,000 members
STATUS_TEXT = {
    200: "OK",
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}
LOOKUP_KEYS = ("PlayFabId", "Email", "Username", "TitleDisplayName")
ALL_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")

Key = tuple[str, str]  # (Type, Id)


@dataclass(frozen=True)
class Fault:
    """One ApiErrorWrapper: HTTP code, PlayFab error name and number, message, field details."""

    code: int
    error: str
    number: int
    message: str
    details: Mapping[str, list[str]] | None = None


NOT_AUTHENTICATED = Fault(401, "NotAuthenticated", 1074, "This API method does not allow anonymous callers.")
THROTTLING = "The client has exceeded the maximum API request rate and is being throttled"
THROTTLED = Fault(429, "APIClientRequestRateLimitExceeded", 1199, THROTTLING)
NO_PROFILE = Fault(400, "ProfileDoesNotExist", 1298, "The requested profile does not exist.")
ROLE_MISSING = Fault(400, "RoleDoesNotExist", 1358, "The role does not exist.")
BLOCKED = Fault(400, "EntityBlockedByGroup", 1357, "The entity is blocked from joining this group.")
ALREADY_MEMBER = Fault(400, "EntityIsAlreadyMember", 1359, "The entity is already a member of the group.")
NOT_AUTHORIZED = Fault(403, "NotAuthorized", 1089, "The caller is not authorized to perform this action.")
NO_INVITATION = Fault(400, "GroupInvitationNotFound", 1361, "The group invitation was not found.")
NO_APPLICATION = Fault(400, "GroupApplicationNotFound", 1362, "The group application was not found.")
NOT_A_MEMBER = Fault(400, "MembershipNotFound", 1331, "The entity is not a member of the group.")
NO_ACCOUNT = Fault(400, "AccountNotFound", 1001, "User not found")
NOT_BY_TITLE = Fault(403, "NotAuthorizedByTitle", 1191, "The title's API policy does not allow this call.")
UNKNOWN_API = Fault(404, "InvalidAPIEndpoint", 1131, "The requested API does not exist.")
WRONG_CONTENT = Fault(400, "InvalidContentType", 1144, "Content-Type must be application/json.")
NOT_JSON = Fault(400, "InvalidRequest", 1071, "The request body is not valid JSON.")
INSTEAD = "An outstanding {} to join the group was accepted instead."
APPLICATION_ACCEPTED = Fault(
    400, "OutstandingApplicationAcceptedInstead", 1364, INSTEAD.format("application")
)
INVITATION_ACCEPTED = Fault(400, "OutstandingInvitationAcceptedInstead", 1363, INSTEAD.format("invitation"))
MEMBERS_ONLY = "Only entities of type title_player_account and character may be members of groups."
ONLY_MEMBER_TYPES = Fault(400, "InvalidEntityType", 1373, MEMBERS_ONLY)


def bad_params(name: str, message: str) -> Fault:
    return Fault(400, "InvalidParams", 1000, "Invalid input parameters", {name: [message]})


def error_reply(fault: Fault, *, as_success: bool, headers: Mapping[str, str] | None = None) -> Response:
    """The ApiErrorWrapper; HTTP 200 under ``X-ReportErrorAsSuccess: true``, else HTTP = ``code``."""
    body: dict[str, Any] = {
        "code": fault.code,
        "status": STATUS_TEXT.get(fault.code, "BadRequest"),
        "error": fault.error,
        "errorCode": fault.number,
        "errorMessage": fault.message,
    }
    if fault.details:
        body["errorDetails"] = dict(fault.details)
    if fault.code == 429:
        body["retryAfterSeconds"] = int((headers or {}).get("Retry-After", 1))
    return JSONResponse(body, status_code=200 if as_success else fault.code, headers=dict(headers or {}))


def ok(data: dict[str, Any]) -> Response:
    return JSONResponse({"code": 200, "status": "OK", "data": data})


def reports_errors_as_success(request: Request) -> bool:
    return request.headers.get("x-reporterrorassuccess", "").lower() == "true"


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Token:
    entity: Key
    expires: datetime
    revoked: bool = False


@dataclass
class Account:
    """A player: the title player account, its master account (the classic PlayFabId) and handles."""

    player: str
    master: str
    email: str
    username: str
    created: datetime


@dataclass
class Group:
    id: str
    name: str
    created: datetime
    roles: dict[str, str] = field(default_factory=lambda: {"admins": "Administrators", "members": "Members"})
    admin_role: str = "admins"
    member_role: str = "members"
    members: dict[Key, list[str]] = field(default_factory=dict)  # entity -> role ids
    invitations: dict[Key, dict[str, Any]] = field(default_factory=dict)
    applications: dict[Key, dict[str, Any]] = field(default_factory=dict)
    blocks: set[Key] = field(default_factory=set)
    version: int = 1


@dataclass
class Call:
    """One authenticated request: the caller's entity, the JSON body, and how errors are sent."""

    caller: Key
    body: dict[str, Any]
    as_success: bool

    def refuse(self, fault: Fault) -> SandboxError:
        return SandboxError(error_reply(fault, as_success=self.as_success))


class PlayFabSandbox(SandboxPlatform):
    name = "playfab"

    def reset(self) -> None:
        self.rng = random.Random("playfab-seed")
        self.clock_offset = timedelta(0)
        self.token_lifetime = TOKEN_LIFETIME
        self.admin_api_allowed = True
        self.title_id = self._hex(5)
        self.namespace_id = self._hex(16)
        self.secret_key = random_token(self.rng, 52, HEX + "GHIJKLMNOPQRSTUVWXYZ")
        self.tokens: dict[str, Token] = {}
        self.accounts: dict[str, Account] = {}  # title_player_account id -> account
        self.account_index: dict[tuple[str, str], str] = {}  # (PlayFabId/Email/Username, value) -> id
        self.characters: dict[str, str] = {}  # character id -> owning title_player_account id
        self.groups: dict[str, Group] = {}
        self.limiter = {
            "title": LeakyBucket(TITLE_RATE, TITLE_BURST),
            "player": LeakyBucket(PLAYER_RATE, PLAYER_BURST),
        }
        self.admin = self._player()
        self.member = self._player()
        self.blocked_player = self._player()
        self.applicant = self._player()
        self.newcomers = [self._player() for _ in range(6)]
        self.character = self._hex(16)
        self.characters[self.character] = self.newcomers[0]
        now = self.now()
        guild = self._group("Onboarding Guild", now)
        guild.members[("title_player_account", self.admin)] = ["admins"]  # the owner
        guild.members[("title_player_account", self.member)] = ["members"]
        guild.blocks.add(("title_player_account", self.blocked_player))
        guild.applications[("title_player_account", self.applicant)] = {"expires": now + APPLICATION_LIFETIME}
        self.group_id = guild.id
        veterans = self._group("Veterans", now)
        veterans.members[("title_player_account", self.admin)] = ["admins"]
        self.second_group_id = veterans.id

    # -- seeding ---------------------------------------------------------------------------------

    def _hex(self, length: int) -> str:
        return "".join(self.rng.choice(HEX) for _ in range(length))

    def _player(self, email: str | None = None, username: str | None = None) -> str:
        player, master = self._hex(16), self._hex(16)
        number = len(self.accounts)
        while username is None or self._account_by("Username", username) is not None:
            username, number = f"player{number:04d}", number + 1
        account = Account(player, master, email or f"{username}@players.example.test", username, self.now())
        self.accounts[player] = account
        for lookup_key, value in (("PlayFabId", master), ("Email", account.email), ("Username", username)):
            self.account_index[_index_key(lookup_key, value)] = player
        return player

    def _group(self, name: str, now: datetime) -> Group:
        group = Group(id=self._hex(16), name=name, created=now)
        self.groups[group.id] = group
        return group

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self.clock_offset

    @property
    def masters(self) -> dict[str, str]:
        """title_player_account id -> its master_player_account id (the classic PlayFabId)."""
        return {player: account.master for player, account in self.accounts.items()}

    # -- test knobs ------------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move the sandbox's clock forward (tokens, invitations and applications expire)."""
        self.clock_offset += timedelta(seconds=seconds)

    def revoke_tokens(self) -> None:
        for token in self.tokens.values():
            token.revoked = True

    # -- admin hooks -----------------------------------------------------------------------------

    def env(self, base_url: str) -> PlatformEnv:
        connection = dict(conn_type="playfab", host=base_url, login=self.title_id, password=self.secret_key)
        handles = [f"email:{self.accounts[p].email}" for p in self.newcomers]
        return PlatformEnv(
            connection=connection, group=self.group_id, users=list(self.newcomers), handles=handles
        )

    def create_people(
        self, count: int, group: str | None = None, handles: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """``count`` players (``email``/``username`` given: the one player with them; both are unique)."""
        handles = dict(handles or {})
        target = self.groups[group] if group is not None else None
        if set(handles) - {"email", "username"}:
            raise ValueError(f"handles: playfab players have email and username, not {sorted(handles)}")
        if handles and count > 1:
            raise DuplicateHandle("playfab: an e-mail or username belongs to one account")
        for kind, lookup_key in (("email", "Email"), ("username", "Username")):
            if kind in handles and self._account_by(lookup_key, handles[kind]) is not None:
                raise DuplicateHandle(f"playfab: {kind} {handles[kind]!r} is taken")
        if "username" in handles and not (
            USERNAME_RE.fullmatch(handles["username"]) and 3 <= len(handles["username"]) <= 20
        ):
            raise ValueError("handles: a PlayFab username is 3-20 letters and digits")
        if target is not None and len(target.members) + count > MAX_GROUP_MEMBERS:
            raise ValueError(f"a group holds at most {MAX_GROUP_MEMBERS} members")
        made = [self._player(handles.get("email"), handles.get("username")) for _ in range(count)]
        for player in made:
            if target is not None:
                self._join(target, ("title_player_account", player), target.member_role)
        return [{"id": p, "handles": self._handles(p)} for p in made]

    def _handles(self, player: str) -> dict[str, str]:
        account = self.accounts[player]
        return {"email": account.email, "username": account.username}

    def members(self, group: str) -> dict[str, list[str]]:
        target = self.groups[group]
        self._purge(target)
        return {
            "members": [_user_id(k) for k in target.members],
            "invited": [_user_id(k) for k in target.invitations],
            # the admin role's holders: the group's creator is one, and no other owner is recorded
            "protected": [_user_id(k) for k, roles in target.members.items() if target.admin_role in roles],
        }

    def accept(self, group: str, user: str) -> bool:
        target = self.groups.get(group)
        entity_type, _, entity_id = user.rpartition(":")
        key = (entity_type or "title_player_account", entity_id)
        if target is None:
            return False
        self._purge(target)
        invitation = target.invitations.pop(key, None)
        if invitation is None or key in target.blocks:
            return False
        self._join(target, key, invitation["role"])
        return True

    def secrets(self) -> list[str]:
        return [self.secret_key, *self.tokens]

    def throttle_response(self, request: Request) -> Response:
        return self._throttled(self.fault_wait(), as_success=reports_errors_as_success(request))

    def server_error_response(self, request: Request) -> Response:
        fault = Fault(503, "ServiceUnavailable", 1123, "The service is currently unavailable.")
        return error_reply(fault, as_success=reports_errors_as_success(request))

    @staticmethod
    def _throttled(wait: float, *, as_success: bool) -> Response:
        headers = {"Retry-After": str(max(1, math.ceil(wait)))}
        return error_reply(THROTTLED, as_success=as_success, headers=headers)

    # -- the gate every handler passes -----------------------------------------------------------

    async def _gate(self, request: Request, *, auth: str = "entity") -> Call:
        """Content type, JSON object body, credentials and rate limit, as PlayFab checks them.

        ``auth``: ``entity`` (``X-EntityToken``: every ``/Group/*`` call), ``token`` (GetEntityToken:
        an entity token or ``X-SecretKey``), ``secret`` (the Admin API: ``X-SecretKey`` only).
        """
        raw = await request.body()  # the only await: state is read and written after it without one
        call = Call(("", ""), {}, reports_errors_as_success(request))
        if "application/json" not in request.headers.get("content-type", "").lower():
            raise call.refuse(WRONG_CONTENT)
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise call.refuse(NOT_JSON)
        call.body = body
        call.caller = self._caller(call, request, auth)
        wait = self.limiter["title" if call.caller[0] == "title" else "player"].hit(
            call.caller[1], self.limit_scale()
        )
        if wait is not None:
            raise SandboxError(self._throttled(wait, as_success=call.as_success))
        return call

    def _caller(self, call: Call, request: Request, auth: str) -> Key:
        entity_token = request.headers.get("x-entitytoken")
        secret = request.headers.get("x-secretkey")
        if entity_token and auth != "secret":
            token = self.tokens.get(entity_token)
            if token is None:
                raise call.refuse(Fault(401, "EntityTokenInvalid", 1335, "Invalid entity token"))
            if token.revoked:
                raise call.refuse(Fault(401, "EntityTokenRevoked", 1337, "Entity token has been revoked"))
            if token.expires <= self.now():
                raise call.refuse(Fault(401, "EntityTokenExpired", 1336, "Entity token has expired"))
            return token.entity
        if secret and auth != "entity" and secret == self.secret_key:
            return ("title", self.title_id)
        raise call.refuse(NOT_AUTHENTICATED)

    # -- entities --------------------------------------------------------------------------------

    def _key(self, call: Call, value: Any, name: str) -> Key:
        if not isinstance(value, dict) or not isinstance(value.get("Id"), str) or not value["Id"]:
            raise call.refuse(bad_params(name, f"The {name} field is required."))
        entity_type = value.get("Type") or value.get("TypeString")
        if not isinstance(entity_type, str) or entity_type not in BUILT_IN_TYPES:
            raise call.refuse(
                Fault(400, "InvalidEntityType", 1373, f"The entity type {entity_type!r} is not valid.")
            )
        return (entity_type, value["Id"])

    def _member_entity(self, call: Call, value: Any, name: str = "Entity") -> Key:
        """An existing title_player_account or character (the only entities a group holds)."""
        key = self._key(call, value, name)
        if key[0] not in MEMBER_TYPES:
            raise call.refuse(ONLY_MEMBER_TYPES)
        exists = key[1] in self.accounts if key[0] == "title_player_account" else key[1] in self.characters
        if not exists:
            raise call.refuse(NO_PROFILE)
        return key

    def _entity_or_caller(self, call: Call) -> Key:
        """The body's ``Entity``, which defaults to the caller."""
        value = call.body.get("Entity")
        return call.caller if value is None else self._member_entity(call, value)

    def _group_of(self, call: Call) -> Group:
        value = call.body.get("Group")
        if not isinstance(value, dict) or not isinstance(value.get("Id"), str) or not value["Id"]:
            raise call.refuse(bad_params("Group", "The Group field is required."))
        group = self.groups.get(value["Id"])
        if group is None:
            raise call.refuse(NO_PROFILE)
        self._purge(group)
        return group

    def _role(self, call: Call, group: Group, *, default: str | None = None) -> str | None:
        role = call.body.get("RoleId")
        if role is None:
            return default
        if not isinstance(role, str) or not 1 <= len(role) <= 64 or not set(role) <= ROLE_CHARS:
            raise call.refuse(bad_params("RoleId", "Role IDs must be between 1 and 64 characters long."))
        if role not in group.roles:
            raise call.refuse(ROLE_MISSING)
        return role

    def _entities(self, call: Call) -> list[Key]:
        listed = call.body.get("Members")
        if not isinstance(listed, list) or not listed:
            raise call.refuse(bad_params("Members", "The Members field is required."))
        return list(dict.fromkeys(self._member_entity(call, item, "Members") for item in listed))

    def _purge(self, group: Group) -> None:
        now = self.now()
        for pending in (group.invitations, group.applications):
            for key in [k for k, v in pending.items() if v["expires"] <= now]:
                del pending[key]

    def _lineage(self, key: Key) -> dict[str, Any]:
        lineage: dict[str, Any] = {
            "namespace": _entity_key(("namespace", self.namespace_id)),
            "title": _entity_key(("title", self.title_id)),
        }
        player = self.characters.get(key[1]) if key[0] == "character" else key[1]
        if key[0] in MEMBER_TYPES and player in self.accounts:
            master = self.accounts[player].master
            lineage["master_player_account"] = _entity_key(("master_player_account", master))
        if key[0] == "character" and player:
            lineage["title_player_account"] = _entity_key(("title_player_account", player))
        return lineage

    def _with_lineage(self, key: Key) -> dict[str, Any]:
        return {"Key": _entity_key(key), "Lineage": self._lineage(key)}

    def _is_admin(self, caller: Key, group: Group) -> bool:
        return caller[0] == "title" or group.admin_role in group.members.get(caller, [])

    def _acts_for(self, caller: Key, entity: Key) -> bool:
        """The entity itself, its parent player, or the title."""
        if caller[0] == "title" or caller == entity:
            return True
        return entity[0] == "character" and caller == (
            "title_player_account",
            self.characters.get(entity[1], ""),
        )

    def _join(self, group: Group, key: Key, role: str) -> None:
        group.members.setdefault(key, [])
        if role not in group.members[key]:
            group.members[key].append(role)
        group.invitations.pop(key, None)
        group.applications.pop(key, None)
        group.version += 1

    def _check_joinable(self, call: Call, group: Group, key: Key) -> None:
        if key in group.blocks:
            raise call.refuse(BLOCKED)
        if key in group.members:
            raise call.refuse(ALREADY_MEMBER)

    def _invitation_view(self, group: Group, key: Key) -> dict[str, Any]:
        invitation = group.invitations[key]
        return {
            "InvitedEntity": self._with_lineage(key),
            "Group": _entity_key(("group", group.id)),
            "InvitedByEntity": self._with_lineage(invitation["by"]),
            "RoleId": invitation["role"],
            "Expires": iso(invitation["expires"]),
        }

    def _application_view(self, group: Group, key: Key) -> dict[str, Any]:
        return {
            "Entity": self._with_lineage(key),
            "Group": _entity_key(("group", group.id)),
            "Expires": iso(group.applications[key]["expires"]),
        }

    def _account_by(self, lookup_key: str, value: str) -> Account | None:
        """The account whose master id (exact), e-mail or username (any case) is ``value``."""
        player = self.account_index.get(_index_key(lookup_key, value))
        return self.accounts[player] if player is not None else None

    async def _entity_call(self, request: Request, may_act: str) -> tuple[Call, Group, Key]:
        """A call about one entity of a group, refused unless ``may_act`` lets the caller make it.

        ``admin``: the group's admins (and the title); ``self``: the entity itself (by default the
        caller), its parent player or the title; ``admin or self``: either.
        """
        call = await self._gate(request)
        group = self._group_of(call)
        if may_act == "self":
            key = self._entity_or_caller(call)
        else:
            key = self._member_entity(call, call.body.get("Entity"))
        admin = may_act != "self" and self._is_admin(call.caller, group)
        if not (admin or (may_act != "admin" and self._acts_for(call.caller, key))):
            raise call.refuse(NOT_AUTHORIZED)
        return call, group, key

    # -- the API ---------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        api = [
            ("Authentication/GetEntityToken", self._get_entity_token),
            ("Admin/GetUserAccountInfo", self._get_user_account_info),
            ("Group/InviteToGroup", self._invite_to_group),
            ("Group/IsMember", self._is_member),
            ("Group/ListGroupInvitations", self._list_invitations),
            ("Group/ListGroupApplications", self._list_applications),
            ("Group/ListGroupMembers", self._list_members),
            ("Group/ListMembership", self._list_membership),
            ("Group/ListMembershipOpportunities", self._list_opportunities),
            ("Group/GetGroup", self._get_group),
            ("Group/RemoveGroupInvitation", self._remove_invitation),
            ("Group/AcceptGroupInvitation", self._accept_invitation),
            ("Group/ApplyToGroup", self._apply),
            ("Group/AcceptGroupApplication", self._accept_application),
            ("Group/RemoveGroupApplication", self._remove_application),
            ("Group/AddMembers", self._add_members),
            ("Group/RemoveMembers", self._remove_members),
            ("Group/BlockEntity", self._block),
            ("Group/UnblockEntity", self._unblock),
            ("Group/ListGroupBlocks", self._list_blocks),
        ]
        known = [Route("POST", f"/{path}", handler) for path, handler in api]
        # anything else (another path, or another verb): PlayFab's "no such API"
        return known + [Route(method, "/{path:path}", self._unknown_api) for method in ALL_METHODS]

    async def _unknown_api(self, request: Request) -> Response:
        await request.body()
        raise SandboxError(error_reply(UNKNOWN_API, as_success=reports_errors_as_success(request)))

    async def _get_entity_token(self, request: Request) -> Response:
        call = await self._gate(request, auth="token")
        entity = call.caller
        if call.body.get("Entity") is not None:
            wanted = self._key(call, call.body["Entity"], "Entity")
            if wanted != call.caller:
                if call.caller[0] != "title" or wanted[0] not in MEMBER_TYPES:
                    raise call.refuse(NOT_AUTHORIZED)
                entity = self._member_entity(call, call.body["Entity"])
        token = random_token(
            self.rng, 120, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        )
        expires = self.now() + self.token_lifetime
        self.tokens[token] = Token(entity, expires)
        return ok({"EntityToken": token, "TokenExpiration": iso(expires), "Entity": _entity_key(entity)})

    async def _get_user_account_info(self, request: Request) -> Response:
        call = await self._gate(request, auth="secret")
        if not self.admin_api_allowed:
            raise call.refuse(NOT_BY_TITLE)
        given = [k for k in LOOKUP_KEYS if call.body.get(k) not in (None, "")]
        if not given:
            raise call.refuse(
                bad_params("PlayFabId", "One of PlayFabId, Email, Username or TitleDisplayName is required.")
            )
        lookup_key, value = given[0], call.body[given[0]]
        if not isinstance(value, str):
            raise call.refuse(bad_params(lookup_key, f"The {lookup_key} field must be a string."))
        if lookup_key == "Email" and not EMAIL_RE.fullmatch(value):
            raise call.refuse(bad_params("Email", "Email address is not valid."))
        if lookup_key == "Username" and not USERNAME_RE.fullmatch(value):
            raise call.refuse(bad_params("Username", "Username contains invalid characters."))
        account = self._account_by(lookup_key, value)  # no display names are seeded
        if account is None:
            raise call.refuse(NO_ACCOUNT)
        title_info = {
            "Origination": "Organic",
            "Created": iso(account.created),
            "isBanned": False,
            "TitlePlayerAccount": _entity_key(("title_player_account", account.player)),
        }
        user_info = {
            "PlayFabId": account.master,
            "Created": iso(account.created),
            "Username": account.username,
            "PrivateInfo": {"Email": account.email},
            "TitleInfo": title_info,
        }
        return ok({"UserInfo": user_info})

    async def _invite_to_group(self, request: Request) -> Response:
        call = await self._gate(request)
        body = call.body
        for name in ("Group", "Entity"):  # the shape of the whole body first, then the entities
            if not isinstance(body.get(name), dict) or not body[name].get("Id"):
                raise call.refuse(bad_params(name, f"The {name} field is required."))
        role = body.get("RoleId")
        if role is not None and (
            not isinstance(role, str) or not 1 <= len(role) <= 64 or not set(role) <= ROLE_CHARS
        ):
            raise call.refuse(bad_params("RoleId", "Role IDs must be between 1 and 64 characters long."))
        _check_tags(call)
        group = self._group_of(call)
        key = self._member_entity(call, body["Entity"])
        self.invite_requested(group.id, _user_id(key))
        if not self._is_admin(call.caller, group):
            raise call.refuse(NOT_AUTHORIZED)
        role = self._role(call, group, default=group.member_role) or group.member_role
        self._check_joinable(call, group, key)
        if key in group.applications and body.get("AutoAcceptOutstandingApplication") is not False:
            self._join(group, key, role)
            self.invite_applied(group.id, _user_id(key))
            raise call.refuse(APPLICATION_ACCEPTED)
        if key not in group.invitations:  # a second invite returns the first one unchanged
            invitation = {"role": role, "expires": self.now() + INVITATION_LIFETIME, "by": call.caller}
            group.invitations[key] = invitation
            self.invite_applied(group.id, _user_id(key))
        return ok(self._invitation_view(group, key))

    async def _is_member(self, request: Request) -> Response:
        call = await self._gate(request)
        group = self._group_of(call)
        key = self._member_entity(call, call.body.get("Entity"))
        role = self._role(call, group)
        roles = group.members.get(key, [])
        return ok({"IsMember": bool(roles) and (role is None or role in roles)})

    async def _list_invitations(self, request: Request) -> Response:
        call = await self._gate(request)
        group = self._group_of(call)
        return ok({"Invitations": [self._invitation_view(group, k) for k in group.invitations]})

    async def _list_applications(self, request: Request) -> Response:
        call = await self._gate(request)
        group = self._group_of(call)
        return ok({"Applications": [self._application_view(group, k) for k in group.applications]})

    async def _list_members(self, request: Request) -> Response:
        call = await self._gate(request)
        group = self._group_of(call)
        blocks = []
        for role_id, role_name in group.roles.items():
            members = [self._with_lineage(k) for k, roles in group.members.items() if role_id in roles]
            if members:
                blocks.append({"RoleId": role_id, "RoleName": role_name, "Members": members})
        return ok({"Members": blocks})

    async def _list_membership(self, request: Request) -> Response:
        call = await self._gate(request)
        entity = (
            call.caller if call.body.get("Entity") is None else self._key(call, call.body["Entity"], "Entity")
        )
        found = []
        for group in self.groups.values():
            roles = group.members.get(entity)
            visible = call.caller[0] == "title" or call.caller == entity or call.caller in group.members
            if roles and visible:
                found.append(
                    {
                        "Group": _entity_key(("group", group.id)),
                        "GroupName": group.name,
                        "ProfileVersion": group.version,
                        "Roles": [{"RoleId": r, "RoleName": group.roles.get(r, r)} for r in roles],
                    }
                )
        return ok({"Groups": found})

    async def _list_opportunities(self, request: Request) -> Response:
        call = await self._gate(request)
        entity = (
            call.caller if call.body.get("Entity") is None else self._key(call, call.body["Entity"], "Entity")
        )
        if not self._acts_for(call.caller, entity):
            raise call.refuse(NOT_AUTHORIZED)
        applications, invitations = [], []
        for group in self.groups.values():
            self._purge(group)
            if entity in group.applications:
                applications.append(self._application_view(group, entity))
            if entity in group.invitations:
                invitations.append(self._invitation_view(group, entity))
        return ok({"Applications": applications, "Invitations": invitations})

    async def _get_group(self, request: Request) -> Response:
        call = await self._gate(request)
        if call.body.get("Group") is None and isinstance(call.body.get("GroupName"), str):
            group = next((g for g in self.groups.values() if g.name == call.body["GroupName"]), None)
            if group is None:
                raise call.refuse(NO_PROFILE)
        else:
            group = self._group_of(call)
        return ok(
            {
                "Group": _entity_key(("group", group.id)),
                "GroupName": group.name,
                "AdminRoleId": group.admin_role,
                "MemberRoleId": group.member_role,
                "Roles": dict(group.roles),
                "Created": iso(group.created),
                "ProfileVersion": group.version,
            }
        )

    async def _remove_invitation(self, request: Request) -> Response:
        """Rescinds (the group's side) or rejects (the invited entity or its parent) an invitation."""
        call = await self._gate(request)
        group = self._group_of(call)
        key = self._member_entity(call, call.body.get("Entity"))
        self.removal_requested(group.id, _user_id(key))
        if not (self._is_admin(call.caller, group) or self._acts_for(call.caller, key)):
            raise call.refuse(NOT_AUTHORIZED)
        if group.invitations.pop(key, None) is None:
            raise call.refuse(NO_INVITATION)
        self.removal_applied(group.id, _user_id(key))
        return ok({})

    async def _accept_invitation(self, request: Request) -> Response:
        call, group, key = await self._entity_call(request, "self")
        self._check_joinable(call, group, key)
        invitation = group.invitations.get(key)
        if invitation is None:
            raise call.refuse(NO_INVITATION)
        if invitation["role"] not in group.roles:
            raise call.refuse(ROLE_MISSING)
        self._join(group, key, invitation["role"])
        return ok({})

    async def _apply(self, request: Request) -> Response:
        call, group, key = await self._entity_call(request, "self")
        self._check_joinable(call, group, key)
        invitation = group.invitations.get(key)
        if invitation is not None and call.body.get("AutoAcceptOutstandingInvite") is not False:
            self._join(group, key, invitation["role"])
            raise call.refuse(INVITATION_ACCEPTED)
        group.applications.setdefault(key, {"expires": self.now() + APPLICATION_LIFETIME})
        return ok(self._application_view(group, key))

    async def _accept_application(self, request: Request) -> Response:
        call, group, key = await self._entity_call(request, "admin")
        self._check_joinable(call, group, key)
        if key not in group.applications:
            raise call.refuse(NO_APPLICATION)
        self._join(group, key, group.member_role)
        return ok({})

    async def _remove_application(self, request: Request) -> Response:
        call, group, key = await self._entity_call(request, "admin or self")
        if group.applications.pop(key, None) is None:
            raise call.refuse(NO_APPLICATION)
        return ok({})

    async def _add_members(self, request: Request) -> Response:
        call = await self._gate(request)
        group = self._group_of(call)
        keys = self._entities(call)
        if not self._is_admin(call.caller, group):
            raise call.refuse(NOT_AUTHORIZED)
        role = self._role(call, group, default=group.member_role) or group.member_role
        if any(k in group.blocks for k in keys):
            raise call.refuse(BLOCKED)
        for key in keys:
            self._join(group, key, role)
        return ok({})

    async def _remove_members(self, request: Request) -> Response:
        """All or nobody: naming a non-member (of ``RoleId``, if given) removes nobody."""
        call = await self._gate(request)
        group = self._group_of(call)
        keys = self._entities(call)
        for key in keys:
            self.removal_requested(group.id, _user_id(key))
        if not (self._is_admin(call.caller, group) or keys == [call.caller]):  # a member may leave
            raise call.refuse(NOT_AUTHORIZED)
        role = self._role(call, group)
        if any(k not in group.members or (role is not None and role not in group.members[k]) for k in keys):
            raise call.refuse(NOT_A_MEMBER)
        for key in keys:
            roles = group.members[key]
            if role is None or roles == [role]:
                del group.members[key]
                self.removal_applied(group.id, _user_id(key))
            else:  # out of one role, still a member
                roles.remove(role)
        group.version += 1
        return ok({})

    async def _block(self, request: Request) -> Response:
        _, group, key = await self._entity_call(request, "admin")
        group.blocks.add(key)
        group.members.pop(key, None)  # blocking removes a member; invitations stay
        group.applications.pop(key, None)
        return ok({})

    async def _unblock(self, request: Request) -> Response:
        _, group, key = await self._entity_call(request, "admin")
        group.blocks.discard(key)
        return ok({})

    async def _list_blocks(self, request: Request) -> Response:
        call = await self._gate(request)
        group = self._group_of(call)
        view = _entity_key(("group", group.id))
        return ok(
            {"BlockedEntities": [{"Entity": self._with_lineage(k), "Group": view} for k in group.blocks]}
        )


def _entity_key(key: Key) -> dict[str, str]:
    return {"Id": key[1], "Type": key[0], "TypeString": key[0]}


def _user_id(key: Key) -> str:
    """The id as the hook names people: a bare id for title_player_account, else type:id."""
    return key[1] if key[0] == "title_player_account" else f"{key[0]}:{key[1]}"


def _index_key(lookup_key: str, value: str) -> tuple[str, str]:
    return (lookup_key, value if lookup_key == "PlayFabId" else value.casefold())


def _check_tags(call: Call) -> None:
    tags = call.body.get("CustomTags")
    if tags is None:
        return
    valid = (
        isinstance(tags, dict)
        and len(tags) <= 10
        and all(
            isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 128
            for k, v in tags.items()
        )
    )
    if not valid:
        raise call.refuse(
            bad_params("CustomTags", "At most 10 tags; keys up to 64 and values up to 128 characters.")
        )


PLATFORM = PlayFabSandbox
