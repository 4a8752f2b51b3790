"""PlayFab Groups (entity model), as ``shared/platforms/playfab.md`` describes it.

Served under ``/playfab``: ``/playfab/Authentication/GetEntityToken``, ``/playfab/Group/InviteToGroup``
etc. Every call is ``POST`` with a JSON body; replies use PlayFab's ``{code, status, data}``
envelope and its ApiErrorWrapper (``error``/``errorCode`` names and numbers from PlayFab's list).
``X-ReportErrorAsSuccess: true`` turns every error into HTTP 200 with the real code in the body.

Test knobs (attributes, off by default): ``token_lifetime`` (24 h), ``advance(seconds)`` moves the
clock (tokens, invitations and applications expire), ``revoke_tokens()``.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from airflow_invites.sandbox.core import LeakyBucket, PlatformEnv, SandboxPlatform, random_token

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
TOKEN_LIFETIME = timedelta(hours=24)
INVITATION_LIFETIME = timedelta(days=7)  # undocumented [I]
APPLICATION_LIFETIME = timedelta(days=7)
#: no numbers are published; title tokens get more than player tokens [I]
TITLE_RATE, TITLE_BURST = 100.0, 1000
MAX_GROUP_MEMBERS = 1000  # a PlayFab group holds at most 1,000 members
PLAYER_RATE, PLAYER_BURST = 10.0, 100
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
NOT_AUTHENTICATED = "This API method does not allow anonymous callers."
THROTTLED = "The client has exceeded the maximum API request rate and is being throttled"

Key = tuple[str, str]  # (Type, Id)


class Fault(Exception):
    """An ApiErrorWrapper reply."""

    def __init__(
        self,
        code: int,
        error: str,
        number: int,
        message: str,
        details: dict[str, list[str]] | None = None,
    ) -> None:
        self.code, self.error, self.number, self.message, self.details = code, error, number, message, details
        super().__init__(message)


def bad_params(field_name: str, message: str) -> Fault:
    return Fault(400, "InvalidParams", 1000, "Invalid input parameters", {field_name: [message]})


def no_profile() -> Fault:
    return Fault(400, "ProfileDoesNotExist", 1298, "The requested profile does not exist.")


def role_missing() -> Fault:
    return Fault(400, "RoleDoesNotExist", 1358, "The role does not exist.")


def blocked() -> Fault:
    return Fault(400, "EntityBlockedByGroup", 1357, "The entity is blocked from joining this group.")


def already_member() -> Fault:
    return Fault(400, "EntityIsAlreadyMember", 1359, "The entity is already a member of the group.")


def not_authorized() -> Fault:
    return Fault(403, "NotAuthorized", 1089, "The caller is not authorized to perform this action.")


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Token:
    entity: Key
    expires: datetime
    revoked: bool = False


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
    """One request, parsed: the caller's entity and the JSON body."""

    caller: Key
    body: dict[str, Any]


class PlayFabSandbox(SandboxPlatform):
    name = "playfab"

    def reset(self) -> None:
        self.rng = random.Random("playfab-seed")
        self.clock_offset = timedelta(0)
        self.token_lifetime = TOKEN_LIFETIME
        self.title_id = self._hex(5)
        self.namespace_id = self._hex(16)
        self.secret_key = random_token(self.rng, 52, HEX + "GHIJKLMNOPQRSTUVWXYZ")
        self.tokens: dict[str, Token] = {}
        self.masters: dict[str, str] = {}  # title_player_account id -> master_player_account id
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
        guild.members[("title_player_account", self.admin)] = ["admins"]
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

    def _player(self) -> str:
        player = self._hex(16)
        self.masters[player] = self._hex(16)
        return player

    def _group(self, name: str, now: datetime) -> Group:
        group = Group(id=self._hex(16), name=name, created=now)
        self.groups[group.id] = group
        return group

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self.clock_offset

    # -- test knobs ------------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move the sandbox's clock forward (tokens, invitations and applications expire)."""
        self.clock_offset += timedelta(seconds=seconds)

    def revoke_tokens(self) -> None:
        for token in self.tokens.values():
            token.revoked = True

    # -- admin hooks -----------------------------------------------------------------------------

    def env(self, base_url: str) -> PlatformEnv:
        connection = {
            "conn_type": "playfab",
            "host": base_url,
            "login": self.title_id,
            "password": self.secret_key,
        }
        return PlatformEnv(connection=connection, group=self.group_id, users=list(self.newcomers))

    def add_people(self, count: int, group: str | None = None) -> list[str]:
        target = self.groups[group] if group is not None else None
        if target is not None and len(target.members) + count > MAX_GROUP_MEMBERS:
            raise ValueError(f"a group holds at most {MAX_GROUP_MEMBERS} members")
        made = [self._player() for _ in range(count)]
        if target is not None:
            for player in made:
                self._join(target, ("title_player_account", player), target.member_role)
        return made

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
        return self._throttled(request, self.fault_wait())

    def server_error_response(self, request: Request) -> Response:
        fault = Fault(503, "ServiceUnavailable", 1123, "The service is currently unavailable.")
        return self._error(request, fault)

    # -- envelopes -------------------------------------------------------------------------------

    def _error(self, request: Request, fault: Fault, headers: dict[str, str] | None = None) -> Response:
        body: dict[str, Any] = {
            "code": fault.code,
            "status": STATUS_TEXT.get(fault.code, "BadRequest"),
            "error": fault.error,
            "errorCode": fault.number,
            "errorMessage": fault.message,
        }
        if fault.details:
            body["errorDetails"] = fault.details
        if fault.code == 429:
            body["retryAfterSeconds"] = int(headers.get("Retry-After", 1)) if headers else 1
        as_success = request.headers.get("x-reporterrorassuccess", "").lower() == "true"
        return JSONResponse(body, status_code=200 if as_success else fault.code, headers=headers)

    def _throttled(self, request: Request, wait: float) -> Response:
        seconds = max(1, math.ceil(wait))
        fault = Fault(429, "APIClientRequestRateLimitExceeded", 1199, THROTTLED)
        return self._error(request, fault, headers={"Retry-After": str(seconds)})

    @staticmethod
    def _ok(data: dict[str, Any]) -> Response:
        return JSONResponse({"code": 200, "status": "OK", "data": data})

    # -- request plumbing ------------------------------------------------------------------------

    async def _handle(self, request: Request, operation: Callable[[Call], dict[str, Any]] | None) -> Response:
        raw = await request.body()  # the only await: state is read and written below without one
        if operation is None or request.method != "POST":
            fault = Fault(404, "InvalidAPIEndpoint", 1131, "The requested API does not exist.")
            return self._error(request, fault)
        if "application/json" not in request.headers.get("content-type", "").lower():
            fault = Fault(400, "InvalidContentType", 1144, "Content-Type must be application/json.")
            return self._error(request, fault)
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self._error(
                request, Fault(400, "InvalidRequest", 1071, "The request body is not valid JSON.")
            )
        try:
            caller = self._authenticate(request, body, token_call=operation == self._get_entity_token)
            wait = self._rate(caller)
            if wait is not None:
                return self._throttled(request, wait)
            return self._ok(operation(Call(caller, body)))
        except Fault as fault:
            return self._error(request, fault)

    def _authenticate(self, request: Request, body: dict[str, Any], *, token_call: bool) -> Key:
        entity_token = request.headers.get("x-entitytoken")
        if entity_token:
            token = self.tokens.get(entity_token)
            if token is None:
                raise Fault(401, "EntityTokenInvalid", 1335, "Invalid entity token")
            if token.revoked:
                raise Fault(401, "EntityTokenRevoked", 1337, "Entity token has been revoked")
            if token.expires <= self.now():
                raise Fault(401, "EntityTokenExpired", 1336, "Entity token has expired")
            return token.entity
        secret = request.headers.get("x-secretkey")
        if token_call and secret:
            if secret != self.secret_key:
                raise Fault(401, "NotAuthenticated", 1074, NOT_AUTHENTICATED)
            return ("title", self.title_id)
        raise Fault(401, "NotAuthenticated", 1074, NOT_AUTHENTICATED)

    def _rate(self, caller: Key) -> float | None:
        kind = "title" if caller[0] == "title" else "player"
        return self.limiter[kind].hit(caller[1], self.limit_scale())

    # -- entities --------------------------------------------------------------------------------

    def _key(self, body: dict[str, Any], name: str, *, default: Key | None = None) -> Key:
        value = body.get(name)
        if value is None and default is not None:
            return default
        if not isinstance(value, dict) or not isinstance(value.get("Id"), str) or not value["Id"]:
            raise bad_params(name, f"The {name} field is required.")
        entity_type = value.get("Type") or value.get("TypeString")
        if not isinstance(entity_type, str) or entity_type not in BUILT_IN_TYPES:
            raise Fault(400, "InvalidEntityType", 1373, f"The entity type {entity_type!r} is not valid.")
        return (entity_type, value["Id"])

    def _member_entity(
        self, body: dict[str, Any], name: str = "Entity", *, default: Key | None = None
    ) -> Key:
        key = self._key(body, name, default=default)
        if key[0] not in MEMBER_TYPES:
            raise Fault(
                400,
                "InvalidEntityType",
                1373,
                "Only entities of type title_player_account and character may be members of groups.",
            )
        exists = key[1] in self.masters if key[0] == "title_player_account" else key[1] in self.characters
        if not exists:
            raise no_profile()
        return key

    def _group_of(self, body: dict[str, Any]) -> Group:
        value = body.get("Group")
        if not isinstance(value, dict) or not isinstance(value.get("Id"), str) or not value["Id"]:
            raise bad_params("Group", "The Group field is required.")
        group = self.groups.get(value["Id"])
        if group is None:
            raise no_profile()
        self._purge(group)
        return group

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
        if key[0] in MEMBER_TYPES and player:
            lineage["master_player_account"] = _entity_key(("master_player_account", self.masters[player]))
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

    def _role(self, body: dict[str, Any], group: Group, *, default: str | None = None) -> str | None:
        role = body.get("RoleId")
        if role is None:
            return default
        if not isinstance(role, str) or not 1 <= len(role) <= 64 or not set(role) <= ROLE_CHARS:
            raise bad_params("RoleId", "Role IDs must be between 1 and 64 characters long.")
        if role not in group.roles:
            raise role_missing()
        return role

    def _join(self, group: Group, key: Key, role: str) -> None:
        group.members.setdefault(key, [])
        if role not in group.members[key]:
            group.members[key].append(role)
        group.invitations.pop(key, None)
        group.applications.pop(key, None)
        group.version += 1

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

    # -- operations ------------------------------------------------------------------------------

    def _get_entity_token(self, call: Call) -> dict[str, Any]:
        entity = call.caller
        if call.body.get("Entity") is not None:
            wanted = self._key(call.body, "Entity")
            if wanted != call.caller:
                if call.caller[0] != "title" or wanted[0] not in MEMBER_TYPES:
                    raise not_authorized()
                entity = self._member_entity(call.body)
        token = random_token(
            self.rng, 120, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        )
        expires = self.now() + self.token_lifetime
        self.tokens[token] = Token(entity, expires)
        return {"EntityToken": token, "TokenExpiration": iso(expires), "Entity": _entity_key(entity)}

    def _invite_to_group(self, call: Call) -> dict[str, Any]:
        body = call.body
        for name in ("Group", "Entity"):  # the shape of the whole body first, then the entities
            if not isinstance(body.get(name), dict) or not body[name].get("Id"):
                raise bad_params(name, f"The {name} field is required.")
        role = body.get("RoleId")
        if role is not None and (
            not isinstance(role, str) or not 1 <= len(role) <= 64 or not set(role) <= ROLE_CHARS
        ):
            raise bad_params("RoleId", "Role IDs must be between 1 and 64 characters long.")
        _check_tags(body)
        group = self._group_of(body)
        key = self._member_entity(body)
        self.invite_requested(group.id, _user_id(key))
        if not self._is_admin(call.caller, group):
            raise not_authorized()
        role = self._role(body, group, default=group.member_role)
        assert role is not None
        if key in group.blocks:
            raise blocked()
        if key in group.members:
            raise already_member()
        if key in group.applications and body.get("AutoAcceptOutstandingApplication") is not False:
            self._join(group, key, role)
            self.invite_applied(group.id, _user_id(key))
            raise Fault(
                400,
                "OutstandingApplicationAcceptedInstead",
                1364,
                "An outstanding application to join the group was accepted instead.",
            )
        if key not in group.invitations:  # a second invite returns the first one unchanged
            group.invitations[key] = {
                "role": role,
                "expires": self.now() + INVITATION_LIFETIME,
                "by": call.caller,
            }
            self.invite_applied(group.id, _user_id(key))
        return self._invitation_view(group, key)

    def _is_member(self, call: Call) -> dict[str, Any]:
        group = self._group_of(call.body)
        key = self._member_entity(call.body)
        role = self._role(call.body, group)
        roles = group.members.get(key, [])
        return {"IsMember": bool(roles) and (role is None or role in roles)}

    def _list_invitations(self, call: Call) -> dict[str, Any]:
        group = self._group_of(call.body)
        return {"Invitations": [self._invitation_view(group, k) for k in group.invitations]}

    def _list_applications(self, call: Call) -> dict[str, Any]:
        group = self._group_of(call.body)
        return {"Applications": [self._application_view(group, k) for k in group.applications]}

    def _list_members(self, call: Call) -> dict[str, Any]:
        group = self._group_of(call.body)
        blocks = []
        for role_id, role_name in group.roles.items():
            members = [self._with_lineage(k) for k, roles in group.members.items() if role_id in roles]
            if members:
                blocks.append({"RoleId": role_id, "RoleName": role_name, "Members": members})
        return {"Members": blocks}

    def _list_membership(self, call: Call) -> dict[str, Any]:
        entity = self._key(call.body, "Entity", default=call.caller)
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
        return {"Groups": found}

    def _list_opportunities(self, call: Call) -> dict[str, Any]:
        entity = self._key(call.body, "Entity", default=call.caller)
        if not self._acts_for(call.caller, entity):
            raise not_authorized()
        applications, invitations = [], []
        for group in self.groups.values():
            self._purge(group)
            if entity in group.applications:
                applications.append(self._application_view(group, entity))
            if entity in group.invitations:
                invitations.append(self._invitation_view(group, entity))
        return {"Applications": applications, "Invitations": invitations}

    def _get_group(self, call: Call) -> dict[str, Any]:
        if call.body.get("Group") is None and isinstance(call.body.get("GroupName"), str):
            group = next((g for g in self.groups.values() if g.name == call.body["GroupName"]), None)
            if group is None:
                raise no_profile()
        else:
            group = self._group_of(call.body)
        return {
            "Group": _entity_key(("group", group.id)),
            "GroupName": group.name,
            "AdminRoleId": group.admin_role,
            "MemberRoleId": group.member_role,
            "Roles": dict(group.roles),
            "Created": iso(group.created),
            "ProfileVersion": group.version,
        }

    def _remove_invitation(self, call: Call) -> dict[str, Any]:
        group = self._group_of(call.body)
        key = self._member_entity(call.body)
        if not (self._is_admin(call.caller, group) or self._acts_for(call.caller, key)):
            raise not_authorized()
        if group.invitations.pop(key, None) is None:
            raise Fault(400, "GroupInvitationNotFound", 1361, "The group invitation was not found.")
        return {}

    def _accept_invitation(self, call: Call) -> dict[str, Any]:
        group = self._group_of(call.body)
        key = self._member_entity(call.body, default=call.caller)
        if not self._acts_for(call.caller, key):
            raise not_authorized()
        if key in group.blocks:
            raise blocked()
        if key in group.members:
            raise already_member()
        invitation = group.invitations.get(key)
        if invitation is None:
            raise Fault(400, "GroupInvitationNotFound", 1361, "The group invitation was not found.")
        if invitation["role"] not in group.roles:
            raise role_missing()
        self._join(group, key, invitation["role"])
        return {}

    def _apply(self, call: Call) -> dict[str, Any]:
        group = self._group_of(call.body)
        key = self._member_entity(call.body, default=call.caller)
        if not self._acts_for(call.caller, key):
            raise not_authorized()
        if key in group.blocks:
            raise blocked()
        if key in group.members:
            raise already_member()
        invitation = group.invitations.get(key)
        if invitation is not None and call.body.get("AutoAcceptOutstandingInvite") is not False:
            self._join(group, key, invitation["role"])
            raise Fault(
                400,
                "OutstandingInvitationAcceptedInstead",
                1363,
                "An outstanding invitation to join the group was accepted instead.",
            )
        group.applications.setdefault(key, {"expires": self.now() + APPLICATION_LIFETIME})
        return self._application_view(group, key)

    def _accept_application(self, call: Call) -> dict[str, Any]:
        group = self._group_of(call.body)
        key = self._member_entity(call.body)
        if not self._is_admin(call.caller, group):
            raise not_authorized()
        if key in group.blocks:
            raise blocked()
        if key in group.members:
            raise already_member()
        if key not in group.applications:
            raise Fault(400, "GroupApplicationNotFound", 1362, "The group application was not found.")
        self._join(group, key, group.member_role)
        return {}

    def _remove_application(self, call: Call) -> dict[str, Any]:
        group = self._group_of(call.body)
        key = self._member_entity(call.body)
        if not (self._is_admin(call.caller, group) or self._acts_for(call.caller, key)):
            raise not_authorized()
        if group.applications.pop(key, None) is None:
            raise Fault(400, "GroupApplicationNotFound", 1362, "The group application was not found.")
        return {}

    def _entities(self, call: Call) -> list[Key]:
        listed = call.body.get("Members")
        if not isinstance(listed, list) or not listed:
            raise bad_params("Members", "The Members field is required.")
        return [self._member_entity({"Entity": item}) for item in listed]

    def _add_members(self, call: Call) -> dict[str, Any]:
        group = self._group_of(call.body)
        keys = self._entities(call)
        if not self._is_admin(call.caller, group):
            raise not_authorized()
        role = self._role(call.body, group, default=group.member_role)
        assert role is not None
        if any(k in group.blocks for k in keys):
            raise blocked()
        for key in keys:
            self._join(group, key, role)
        return {}

    def _remove_members(self, call: Call) -> dict[str, Any]:
        group = self._group_of(call.body)
        keys = self._entities(call)
        if not self._is_admin(call.caller, group):
            raise not_authorized()
        role = self._role(call.body, group)
        for key in keys:
            roles = group.members.get(key, [])
            if role is None or roles == [role]:
                group.members.pop(key, None)
            elif role in roles:
                roles.remove(role)
        group.version += 1
        return {}

    def _block(self, call: Call) -> dict[str, Any]:
        group = self._group_of(call.body)
        key = self._member_entity(call.body)
        if not self._is_admin(call.caller, group):
            raise not_authorized()
        group.blocks.add(key)
        group.members.pop(key, None)  # blocking removes a member; invitations stay [C]
        group.applications.pop(key, None)
        return {}

    def _unblock(self, call: Call) -> dict[str, Any]:
        group = self._group_of(call.body)
        key = self._member_entity(call.body)
        if not self._is_admin(call.caller, group):
            raise not_authorized()
        group.blocks.discard(key)
        return {}

    def _list_blocks(self, call: Call) -> dict[str, Any]:
        group = self._group_of(call.body)
        view = _entity_key(("group", group.id))
        return {"BlockedEntities": [{"Entity": self._with_lineage(k), "Group": view} for k in group.blocks]}

    # -- routes ----------------------------------------------------------------------------------

    def router(self) -> APIRouter:
        operations: dict[str, Callable[[Call], dict[str, Any]]] = {
            "Authentication/GetEntityToken": self._get_entity_token,
            "Group/InviteToGroup": self._invite_to_group,
            "Group/IsMember": self._is_member,
            "Group/ListGroupInvitations": self._list_invitations,
            "Group/ListGroupApplications": self._list_applications,
            "Group/ListGroupMembers": self._list_members,
            "Group/ListMembership": self._list_membership,
            "Group/ListMembershipOpportunities": self._list_opportunities,
            "Group/GetGroup": self._get_group,
            "Group/RemoveGroupInvitation": self._remove_invitation,
            "Group/AcceptGroupInvitation": self._accept_invitation,
            "Group/ApplyToGroup": self._apply,
            "Group/AcceptGroupApplication": self._accept_application,
            "Group/RemoveGroupApplication": self._remove_application,
            "Group/AddMembers": self._add_members,
            "Group/RemoveMembers": self._remove_members,
            "Group/BlockEntity": self._block,
            "Group/UnblockEntity": self._unblock,
            "Group/ListGroupBlocks": self._list_blocks,
        }
        router = APIRouter()

        @router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
        async def dispatch(path: str, request: Request) -> Response:
            return await self._handle(request, operations.get(path.strip("/")))

        return router


def _entity_key(key: Key) -> dict[str, str]:
    return {"Id": key[1], "Type": key[0], "TypeString": key[0]}


def _user_id(key: Key) -> str:
    """The id as the hook names people: a bare id for title_player_account, else type:id."""
    return key[1] if key[0] == "title_player_account" else f"{key[0]}:{key[1]}"


def _check_tags(body: dict[str, Any]) -> None:
    tags = body.get("CustomTags")
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
        raise bad_params("CustomTags", "At most 10 tags; keys up to 64 and values up to 128 characters.")


PLATFORM = PlayFabSandbox
