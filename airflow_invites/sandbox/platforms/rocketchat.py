"""Rocket.Chat REST API v1 (private groups, users, permissions, messages), served under ``/rocketchat``.

Written from the server's source (https://github.com/RocketChat/Rocket.Chat, ``apps/meteor/app/api/
server/v1/groups.ts``, ``users.ts``, ``chat.ts``, ``permissions.ts``; ``server/methods/
removeUserFromRoom.ts``; ``app/lib/server/functions/getFullUserData.ts``, ``processWebhookMessage.ts``)
and its API tests. Emulates server 8.4 (``users.info?email=`` exists; set ``version`` lower and it is
refused as on older servers). Permissions are the server's defaults and can be changed with
``permissions.update`` by an admin, as on a real server; two traps are kept: a caller with
``kick-user-from-any-p-room`` kicks a non-member with success and a "user removed" message, and
``users.info?username=`` matches an id as well as a username, exactly.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from airflow_invites.core.totp import totp_valid
from airflow_invites.sandbox.core import (
    DuplicateHandle,
    FixedWindowLimiter,
    PlatformEnv,
    Route,
    SandboxError,
    SandboxPlatform,
    random_token,
)

METEOR_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"
TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
VERSION = "8.4.1"
EMAIL_SINCE = (8, 4)
RATE_CALLS, RATE_WINDOW_S = 10, 60.0
MAX_MESSAGE = 5000  # Message_MaxAllowedSize
HISTORY_COUNT = 20
#: the server's default roles of the permissions emulated here (upsertPermissions.ts)
DEFAULT_PERMISSIONS: dict[str, list[str]] = {
    "access-permissions": ["admin"],
    "add-user-to-any-p-room": [],
    "add-user-to-joined-room": ["admin", "owner", "moderator"],
    "api-bypass-rate-limit": ["admin", "bot", "app"],
    "create-p": ["admin", "user", "bot", "app"],
    "kick-user-from-any-p-room": [],
    "post-readonly": ["admin", "owner", "moderator"],
    "remove-user": ["admin", "owner", "moderator"],
    "view-full-other-user-info": ["admin"],
}
ROLES = {"admin", "user", "bot", "app", "guest", "anonymous", "owner", "moderator", "leader"}
#: what ``users.info`` shows of anyone, and what only a caller who may see everything sees
DEFAULT_FIELDS = ("name", "username", "nickname", "status", "utcOffset", "type", "active", "statusText")
FULL_FIELDS = ("emails", "statusConnection", "createdAt", "roles")

NOT_LOGGED_IN = {
    "success": False,
    "error": "You must be logged in to do this.",
    "status": "error",
    "message": "You must be logged in to do this.",
}
UNAUTHORIZED = {"success": False, "error": "Unauthorized", "status": "error", "message": "Unauthorized"}
ERRORS = {
    "error-room-param-not-provided": 'The parameter "roomId" or "roomName" is required',
    "error-room-not-found": 'The required "roomId" or "roomName" param provided does not match any group',
    "error-users-params-not-provided": 'Please provide "userId" or "username" or "userIds" or "usernames" as param',
    "error-empty-invite-list": "Cannot invite if no valid users are provided",
    "error-not-allowed": "Not allowed",
    "error-user-param-not-provided": 'The required "userId" or "username" param was not provided',
    "error-invalid-user": 'The required "userId" or "username" param provided does not match any users',
    "error-user-not-in-room": "User is not in this room",
    "error-you-are-last-owner": "You are the last owner. Please set new owner before leaving the room.",
}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def refuse(body: dict[str, Any], status: int = 400, headers: dict[str, str] | None = None) -> SandboxError:
    return SandboxError(JSONResponse(body, status_code=status, headers=headers))


def meteor_error(
    error_type: str, reason: str | None = None, details: dict[str, Any] | None = None
) -> SandboxError:
    """A thrown ``Meteor.Error``: ``error`` is the reason plus `` [errorType]``."""
    text = reason if reason is not None else ERRORS.get(error_type, "")
    body: dict[str, Any] = {
        "success": False,
        "error": f"{text} [{error_type}]" if text else f"[{error_type}]",
        "errorType": error_type,
    }
    if details:
        body["details"] = details
    return refuse(body)


def failure(text: str | None = None) -> SandboxError:
    """``API.v1.failure(text)`` or a plain ``Error`` thrown: no ``errorType``."""
    return refuse({"success": False} if text is None else {"success": False, "error": text})


def invalid_params(text: str) -> SandboxError:
    """A typed route's schema refusal."""
    return refuse({"success": False, "errorType": "invalid-params", "error": text})


class RocketChatSandbox(SandboxPlatform):
    name = "rocketchat"

    def reset(self) -> None:
        self.rng = random.Random("rocketchat-seed")
        self.version = VERSION
        self.users: dict[str, dict[str, Any]] = {}
        self.rooms: dict[str, dict[str, Any]] = {}
        self.subs: dict[str, list[str]] = {}  # room id -> user ids, in join order
        self.messages: dict[str, list[dict[str, Any]]] = {}  # room id -> messages, oldest first
        self.permissions = {k: list(v) for k, v in DEFAULT_PERMISSIONS.items()}
        self.limiter = FixedWindowLimiter(RATE_CALLS, RATE_WINDOW_S)
        self.people_made = 0
        self.issued_tokens: list[str] = []
        bot = self._user("invites.bot", "Invites Bot", roles=["user", "bot"], password=self._secret(20))
        self.bot_id = bot["_id"]
        self.bot_pat = self._add_token(bot)
        owner = self._user("marc.anp", "Marc Anp", roles=["user", "admin"], password=self._secret(20))
        self.admin = owner
        self.newcomers = [
            self._user(username, username.replace(".", " ").title())["_id"]
            for username in (
                "ada.lovelace",
                "alan.turing",
                "barbara.liskov",
                "edsger.dijkstra",
                "ken.thompson",
                "margaret.hamilton",
            )
        ]
        member = self._user("grace.hopper", "Grace Hopper")
        retired = self._user("old.timer", "Old Timer", active=False)
        self.totp_user = self._user("totp.user", "Totp User", password=self._secret(20))
        self.totp_user["totp_secret"] = "".join(self.rng.choice(BASE32) for _ in range(32))
        self.group_id = self._room(
            "onboarding", "p", creator=owner, members=[bot, member, retired, owner], owners=[owner, bot]
        )
        self._room("general", "c", creator=owner, members=[owner, bot], room_id="GENERAL")
        self._room("secret-club", "p", creator=owner, members=[owner])

    # -- seeding ---------------------------------------------------------------------------------

    def _id(self) -> str:
        return "".join(self.rng.choice(METEOR_ALPHABET) for _ in range(17))

    def _secret(self, length: int) -> str:
        return random_token(self.rng, length)

    def _user(
        self,
        username: str,
        name: str,
        *,
        roles: list[str] | None = None,
        password: str | None = None,
        active: bool = True,
        email: str | None = None,
    ) -> dict[str, Any]:
        user: dict[str, Any] = {
            "_id": self._id(),
            "username": username,
            "name": name,
            "type": "user",
            "active": active,
            "roles": roles or ["user"],
            "status": "offline",
            "statusConnection": "offline",
            "utcOffset": 0,
            "emails": [{"address": email or f"{username}@example.test", "verified": True}],
            "createdAt": now_iso(),
            "password": password or self._secret(20),
            "tokens": [],
            "totp_secret": None,
            "_updatedAt": now_iso(),
        }
        self.users[user["_id"]] = user
        return user

    def _add_token(self, user: dict[str, Any]) -> str:
        token = random_token(self.rng, 43, TOKEN_ALPHABET)
        user["tokens"].append(hashlib.sha256(token.encode()).hexdigest())
        self.issued_tokens.append(token)
        return token

    def _room(
        self,
        name: str,
        kind: str,
        *,
        creator: dict[str, Any],
        members: list[dict[str, Any]],
        owners: list[dict[str, Any]] | None = None,
        room_id: str | None = None,
    ) -> str:
        rid = room_id or self._id()
        stamp = now_iso()
        self.rooms[rid] = {
            "_id": rid,
            "name": name,
            "fname": name,
            "t": kind,
            "msgs": 0,
            "usersCount": len(members),
            "u": {"_id": creator["_id"], "username": creator["username"]},
            "customFields": {},
            "broadcast": False,
            "encrypted": False,
            "ts": stamp,
            "ro": False,
            "default": False,
            "sysMes": True,
            "_updatedAt": stamp,
            "owners": [u["_id"] for u in owners or [creator]],
            "moderators": [],
        }
        self.subs[rid] = [m["_id"] for m in members]
        self.messages[rid] = []
        return rid

    # -- admin hooks -----------------------------------------------------------------------------

    def env(self, base_url: str) -> PlatformEnv:
        connection = {
            "conn_type": "rocketchat",
            "host": base_url,
            "login": self.bot_id,
            "password": self.bot_pat,
            "extra": {"auth_type": "token"},
        }
        handles = [f"username:{self.users[u]['username']}" for u in self.newcomers]
        return PlatformEnv(
            connection=connection, group=self.group_id, users=list(self.newcomers), handles=handles
        )

    def create_people(
        self, count: int, group: str | None = None, handles: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        room = self.rooms[group] if group is not None else None
        handles = handles or {}
        unknown = set(handles) - {"username", "email"}
        if unknown:
            raise DuplicateHandle(
                f"rocketchat people have no handle {sorted(unknown)}; known: username, email"
            )
        if handles and count > 1:
            raise DuplicateHandle(
                "Rocket.Chat keeps usernames and e-mail addresses unique: one person per value"
            )
        taken_names = {u["username"].lower() for u in self.users.values()}
        taken_mails = {e["address"].lower() for u in self.users.values() for e in u["emails"]}
        if handles.get("username", "").lower() in taken_names:
            raise DuplicateHandle(
                f"username {handles['username']!r} is taken (usernames are unique, ignoring case)"
            )
        if handles.get("email", "").lower() in taken_mails:
            raise DuplicateHandle(f"e-mail {handles['email']!r} is taken")
        made = []
        for _ in range(count):
            self.people_made += 1
            username = handles.get("username") or f"person.{self.people_made}"
            user = self._user(username, f"Person {self.people_made}", email=handles.get("email"))
            made.append(
                {"id": user["_id"], "handles": {"username": username, "email": user["emails"][0]["address"]}}
            )
        if room is not None:
            self.subs[room["_id"]].extend(p["id"] for p in made)
            room["usersCount"] += count
        return made

    def members(self, group: str) -> dict[str, list[str]]:
        room = self.rooms[group]
        subscribed = self.subs[room["_id"]]
        protected = [u for u in dict.fromkeys([room["u"]["_id"], self.bot_id]) if u in subscribed]
        return {"members": list(subscribed), "invited": [], "protected": protected}

    def accept(self, group: str, user: str) -> bool:
        return False  # groups.invite adds people at once: there is nothing pending to accept

    def secrets(self) -> list[str]:
        values = [u["password"] for u in self.users.values()]
        values += [u["totp_secret"] for u in self.users.values() if u["totp_secret"]]
        return values + self.issued_tokens

    def throttle_response(self, request: Request) -> Response:
        return self._too_many(self.fault_wait())

    def server_error_response(self, request: Request) -> Response:
        return JSONResponse({"success": False, "error": "Internal server error"}, status_code=500)

    # -- the gate: authentication, rate limit, permissions ----------------------------------------

    def _too_many(self, wait: float) -> Response:
        seconds = max(1, round(wait))
        body = {
            "success": False,
            "error": "Error, too many requests. Please slow down. You must wait "
            f"{seconds} seconds before trying this endpoint again. [error-too-many-requests]",
        }
        headers = {
            "X-RateLimit-Limit": str(RATE_CALLS),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int((time.time() + wait) * 1000)),
        }
        return JSONResponse(body, status_code=429, headers=headers)

    def _limit(self, request: Request, caller: dict[str, Any] | None) -> dict[str, str]:
        """Rate limiter per route + method + client IP (not for callers with api-bypass-rate-limit)."""
        if caller and self._can(caller, "api-bypass-rate-limit"):
            return {}
        scale = self.limit_scale()
        ip = request.client.host if request.client else "?"
        key = f"{request.url.path}{request.method.lower()}{ip}"
        wait = self.limiter.hit(key, scale)
        if wait is not None:
            raise SandboxError(self._too_many(wait))
        if scale <= 0:
            return {}
        start = self.limiter.windows[key][0]
        reset_ms = int((time.time() + (start + RATE_WINDOW_S / scale - time.monotonic())) * 1000)
        return {
            "X-RateLimit-Limit": str(RATE_CALLS),
            "X-RateLimit-Remaining": str(self.limiter.remaining(key)),
            "X-RateLimit-Reset": str(reset_ms),
        }

    def _gate(self, request: Request) -> tuple[dict[str, Any], dict[str, str]]:
        """The authenticated caller and the rate-limit headers; 401 or 429 otherwise."""
        user = self.users.get(request.headers.get("x-user-id", ""))
        token = request.headers.get("x-auth-token", "")
        if not (user and token and hashlib.sha256(token.encode()).hexdigest() in user["tokens"]):
            raise refuse(NOT_LOGGED_IN, 401)
        return user, self._limit(request, user)

    def _can(self, user: dict[str, Any], permission: str, room: dict[str, Any] | None = None) -> bool:
        roles = set(user["roles"])
        if room is not None:
            roles |= {"owner"} if user["_id"] in room["owners"] else set()
            roles |= {"moderator"} if user["_id"] in room["moderators"] else set()
        return bool(roles & set(self.permissions.get(permission, [])))

    @staticmethod
    def _ok(body: dict[str, Any], headers: dict[str, str]) -> Response:
        return JSONResponse({**body, "success": True}, headers=headers)

    async def _body(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise failure("Invalid JSON body")
        return body

    # -- look-ups of rooms and people ---------------------------------------------------------------

    def _by_id_or_name(self, id_or_name: str) -> dict[str, Any] | None:
        return self.rooms.get(id_or_name) or next(
            (r for r in self.rooms.values() if r["name"] == id_or_name), None
        )

    def _private_group(self, params: Any, caller: dict[str, Any], *, archived_ok: bool) -> dict[str, Any]:
        """``findPrivateGroupByIdOrName``: a private group the caller is in, by ``roomId`` or ``roomName``."""
        if not params.get("roomId") and not params.get("roomName"):
            raise meteor_error("error-room-param-not-provided")
        if "roomId" in params:
            room = self.rooms.get(str(params["roomId"]))
        else:
            room = next((r for r in self.rooms.values() if r["name"] == params["roomName"]), None)
        if room is None or room["t"] != "p" or caller["_id"] not in self.subs[room["_id"]]:
            raise meteor_error("error-room-not-found")
        if not archived_ok and room.get("archived"):
            raise meteor_error("error-room-archived", f"The private group, {room['name']}, is archived")
        return room

    def _by_username(self, name: str) -> dict[str, Any] | None:
        """``findOneByUsernameIgnoringCase``."""
        return next((u for u in self.users.values() if u["username"].lower() == name.lower()), None)

    def _user_from_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """``getUserFromParams``: ``userId`` (exact), else ``username`` or ``user`` (ignoring case)."""
        if str(params.get("userId") or "").strip():
            user = self.users.get(str(params["userId"]))
        elif str(params.get("username") or params.get("user") or "").strip():
            user = self._by_username(str(params.get("username") or params.get("user")))
        else:
            raise meteor_error("error-user-param-not-provided")
        if user is None:
            raise meteor_error("error-invalid-user")
        return user

    def _group_view(self, room: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in room.items() if k not in ("owners", "moderators")}

    def _user_view(self, user: dict[str, Any], caller: dict[str, Any], *, myself: bool) -> dict[str, Any]:
        """``getFullUserData``: other people's e-mails and roles only for ``view-full-other-user-info``."""
        full = myself or self._can(caller, "view-full-other-user-info")
        fields = DEFAULT_FIELDS + (FULL_FIELDS if full else ())
        view = {"_id": user["_id"], **{k: user[k] for k in fields if k in user}}
        if myself:
            view["services"] = {"password": True}
        return {**view, "canViewAllInfo": full}

    def _post(
        self, room: dict[str, Any], author: dict[str, Any], text: str, kind: str | None = None
    ) -> dict[str, Any]:
        """A message (``kind``: a system message type such as ``au`` or ``ru``) stored in ``room``."""
        stamp = now_iso()
        message: dict[str, Any] = {"_id": self._id(), "rid": room["_id"], "msg": text, "ts": stamp}
        if kind:
            message["t"] = kind
        else:
            message.update(alias="", parseUrls=True, groupable=False)
        message.update(u={"_id": author["_id"], "username": author["username"], "name": author["name"]})
        message["_updatedAt"] = stamp
        self.messages[room["_id"]].append(message)
        room.update(msgs=room["msgs"] + 1, lm=stamp, _updatedAt=stamp)
        return message

    # -- routes ----------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/api/info", self._info),
            Route("POST", "/api/v1/login", self._login),
            Route("GET", "/api/v1/logout", self._logout),
            Route("POST", "/api/v1/logout", self._logout),
            Route("GET", "/api/v1/me", self._me),
            Route("POST", "/api/v1/groups.create", self._groups_create),
            Route("POST", "/api/v1/groups.invite", self._groups_invite),
            Route("POST", "/api/v1/groups.kick", self._groups_kick),
            Route("GET", "/api/v1/groups.info", self._groups_info),
            Route("GET", "/api/v1/groups.members", self._groups_members),
            Route("GET", "/api/v1/groups.history", self._groups_history),
            Route("GET", "/api/v1/channels.history", self._channels_history),
            Route("GET", "/api/v1/groups.list", self._groups_list),
            Route("GET", "/api/v1/users.info", self._users_info),
            Route("GET", "/api/v1/rooms.isMember", self._rooms_is_member),
            Route("GET", "/api/v1/subscriptions.getOne", self._subscription),
            Route("GET", "/api/v1/permissions.listAll", self._permissions_list),
            Route("POST", "/api/v1/permissions.update", self._permissions_update),
            Route("POST", "/api/v1/chat.postMessage", self._chat_post),
            Route("GET", "/api/v1/chat.getMessage", self._chat_get),
            *(Route(m, "/{rest:path}", self._not_found) for m in ("GET", "POST", "PUT", "DELETE", "PATCH")),
        ]

    async def _not_found(self, request: Request) -> Response:
        return JSONResponse({"success": False, "error": "Resource not found"}, status_code=404)

    async def _info(self, request: Request) -> Response:
        return JSONResponse({"version": self.version, "success": True})

    async def _login(self, request: Request) -> Response:
        headers = self._limit(request, None)
        if "application/json" not in request.headers.get("content-type", ""):
            raise refuse(UNAUTHORIZED, 401)
        try:
            body = await self._body(request)
        except SandboxError:
            raise refuse(UNAUTHORIZED, 401) from None
        user = self._login_user(body)
        if user is None:
            raise refuse(UNAUTHORIZED, 401, headers)
        if user["totp_secret"]:
            code = str(body.get("code") or request.headers.get("x-2fa-code") or "")
            if not code or not totp_valid(user["totp_secret"], code):
                error, message = (
                    ("totp-invalid", "TOTP Invalid") if code else ("totp-required", "TOTP Required")
                )
                details = {"method": "totp", "availableMethods": ["totp"]}
                reply = {
                    "success": False,
                    "error": error,
                    "status": "error",
                    "details": details,
                    "message": message,
                }
                raise refuse(reply, 401, headers)
        token = self._add_token(user)
        keys = (
            "_id",
            "username",
            "name",
            "emails",
            "status",
            "statusConnection",
            "utcOffset",
            "active",
            "roles",
        )
        me = {k: user[k] for k in keys}
        me.update(settings={"preferences": {}}, avatarUrl=f"{request.base_url}avatar/{user['username']}")
        data = {"userId": user["_id"], "authToken": token, "me": me}
        return JSONResponse({"status": "success", "data": data, "success": True}, headers=headers)

    def _login_user(self, body: dict[str, Any]) -> dict[str, Any] | None:
        if "resume" in body:
            digest = hashlib.sha256(str(body["resume"]).encode()).hexdigest()
            return next((u for u in self.users.values() if digest in u["tokens"]), None)
        password = body.get("password")
        name = body.get("user") or body.get("username") or body.get("email")
        if not isinstance(name, str) or not isinstance(password, str):
            return None
        if "@" in name:
            user = next(
                (
                    u
                    for u in self.users.values()
                    if any(e["address"].lower() == name.lower() for e in u["emails"])
                ),
                None,
            )
        else:
            user = self._by_username(name)
        if user is None or not user["active"] or user["password"] != password:
            return None
        return user

    async def _logout(self, request: Request) -> Response:
        caller, headers = self._gate(request)
        caller["tokens"].remove(hashlib.sha256(request.headers.get("x-auth-token", "").encode()).hexdigest())
        return self._ok({"status": "success", "data": {"message": "You've been logged out!"}}, headers)

    async def _me(self, request: Request) -> Response:
        caller, headers = self._gate(request)
        hidden = ("password", "tokens", "totp_secret")
        return self._ok({k: v for k, v in caller.items() if k not in hidden}, headers)

    async def _groups_info(self, request: Request) -> Response:
        caller, headers = self._gate(request)
        room = self._private_group(request.query_params, caller, archived_ok=True)
        return self._ok({"group": self._group_view(room)}, headers)

    async def _groups_members(self, request: Request) -> Response:
        caller, headers = self._gate(request)
        room = self._private_group(request.query_params, caller, archived_ok=False)
        offset, count = _paging(request)
        members = [self.users[u] for u in self.subs[room["_id"]] if self.users[u]["active"]]
        needle = request.query_params.get("filter", "").lower()
        if needle:  # the server matches username or name, ignoring case, anywhere
            members = [u for u in members if needle in u["username"].lower() or needle in u["name"].lower()]
        members.sort(key=lambda u: (u["statusConnection"] != "online", u["username"]))
        page = members[offset:] if count == 0 else members[offset : offset + count]
        shown = [{k: u[k] for k in ("_id", "username", "name", "status", "_updatedAt")} for u in page]
        return self._ok(
            {"members": shown, "count": len(shown), "offset": offset, "total": len(members)}, headers
        )

    async def _groups_history(self, request: Request) -> Response:
        caller, headers = self._gate(request)
        room = self._private_group(request.query_params, caller, archived_ok=True)
        return self._ok({"messages": self._history(room, request)}, headers)

    async def _channels_history(self, request: Request) -> Response:
        _caller, headers = self._gate(request)
        params = request.query_params
        if not params.get("roomId") and not params.get("roomName"):
            raise meteor_error("error-room-param-not-provided")
        key = params.get("roomId") or params.get("roomName") or ""
        room = (
            self.rooms.get(key)
            if "roomId" in params
            else next((r for r in self.rooms.values() if r["name"] == key), None)
        )
        if room is None or room["t"] != "c":
            text = 'The required "roomId" or "roomName" param provided does not match any channel'
            raise meteor_error("error-room-not-found", text)
        return self._ok({"messages": self._history(room, request)}, headers)

    def _history(self, room: dict[str, Any], request: Request) -> list[dict[str, Any]]:
        """Newest first, ``count`` (default 20) from ``offset``, before ``latest``/after ``oldest``."""
        params = request.query_params
        latest, oldest = params.get("latest"), params.get("oldest")
        kept = [
            m
            for m in self.messages[room["_id"]]
            if (not latest or m["ts"] < latest) and (not oldest or m["ts"] > oldest)
        ]
        offset, count = _number(params.get("offset"), 0), _number(params.get("count"), HISTORY_COUNT)
        return list(reversed(kept))[offset : offset + count]

    async def _groups_list(self, request: Request) -> Response:
        caller, headers = self._gate(request)
        offset, count = _paging(request)
        mine = [
            self._group_view(r)
            for r in self.rooms.values()
            if r["t"] == "p" and caller["_id"] in self.subs[r["_id"]]
        ]
        page = mine[offset:] if count == 0 else mine[offset : offset + count]
        return self._ok({"groups": page, "count": len(page), "offset": offset, "total": len(mine)}, headers)

    async def _users_info(self, request: Request) -> Response:
        caller, headers = self._gate(request)
        params = request.query_params
        kinds = ["userId", "username", "importId"]
        if _version(self.version) >= EMAIL_SINCE:
            kinds.append("email")
        kind = next((k for k in kinds if params.get(k)), None)
        if kind is None or set(params) - {*kinds, "fields"}:
            raise refuse(
                {
                    "success": False,
                    "error": 'The required "userId" or "username" param was not provided [error-user-param-not-provided]',
                    "errorType": "invalid-params",
                }
            )
        value = params[kind]
        found: dict[str, Any] | None
        if kind == "email":  # findOneByEmailAddress: ignoring case
            myself = any(e["address"].lower() == value.lower() for e in caller["emails"])
            allowed = myself or self._can(caller, "view-full-other-user-info")
            found = next(
                (u for u in self.users.values() if any(e["address"].lower() == value.lower() for e in u["emails"])),
                None,
            ) if allowed else None  # fmt: skip
        elif kind == "importId":
            myself, found = False, None
        else:  # findOneByIdOrUsername: an id or a username, exactly
            myself = value in (caller["_id"], caller["username"])
            found = self.users.get(value) or next(
                (u for u in self.users.values() if u["username"] == value), None
            )
        if found is None:
            raise failure("User not found.")
        return self._ok({"user": self._user_view(found, caller, myself=myself)}, headers)

    async def _rooms_is_member(self, request: Request) -> Response:
        caller, headers = self._gate(request)
        room = self.rooms.get(request.query_params.get("roomId", ""))
        if room is None or caller["_id"] not in self.subs[room["_id"]]:
            raise meteor_error("error-room-not-found")
        return self._ok(
            {"isMember": request.query_params.get("userId", "") in self.subs[room["_id"]]}, headers
        )

    async def _subscription(self, request: Request) -> Response:
        caller, headers = self._gate(request)
        rid = request.query_params.get("roomId", "")
        room = self.rooms.get(rid)
        sub = None
        if room and caller["_id"] in self.subs[rid]:
            sub = {
                "_id": hashlib.md5(f"{rid}{caller['_id']}".encode()).hexdigest()[:24],
                "rid": rid,
                "name": room["name"],
                "t": room["t"],
                "u": {"_id": caller["_id"], "username": caller["username"]},
                "open": True,
                "alert": False,
                "unread": 0,
            }
        return self._ok({"subscription": sub}, headers)

    async def _permissions_list(self, request: Request) -> Response:
        _caller, headers = self._gate(request)
        return self._ok({"update": self._permission_list(), "remove": []}, headers)

    def _permission_list(self) -> list[dict[str, Any]]:
        stamp = now_iso()
        return [
            {"_id": k, "roles": list(v), "_updatedAt": stamp} for k, v in sorted(self.permissions.items())
        ]

    async def _permissions_update(self, request: Request) -> Response:
        caller, headers = self._gate(request)
        if not self._can(caller, "access-permissions"):
            text = "User does not have the permissions required for this action [error-unauthorized]"
            raise refuse({"success": False, "error": text}, 403)
        body = await self._body(request)
        changes = body.get("permissions")
        if not isinstance(changes, list) or not all(
            isinstance(c, dict) and isinstance(c.get("_id"), str) and isinstance(c.get("roles"), list)
            for c in changes
        ):
            raise refuse(
                {"success": False, "error": "Invalid body params", "errorType": "error-invalid-body-params"}
            )
        if any(c["_id"] not in self.permissions for c in changes):
            raise refuse(
                {"success": False, "error": "Invalid permission", "errorType": "error-invalid-permission"}
            )
        if any(r not in ROLES for c in changes for r in c["roles"]):
            raise refuse({"success": False, "error": "Invalid role", "errorType": "error-invalid-role"})
        for change in changes:
            self.permissions[change["_id"]] = list(dict.fromkeys(change["roles"]))
        return self._ok({"permissions": self._permission_list()}, headers)

    async def _groups_create(self, request: Request) -> Response:
        """A private group owned by the caller, with ``members`` (usernames; unknown ones dropped)."""
        caller, headers = self._gate(request)
        if not self._can(caller, "create-p"):
            raise refuse({"success": False, "error": "unauthorized"}, 403)
        body = await self._body(request)
        name, members = body.get("name"), body.get("members") or []
        if not name or not isinstance(name, str):
            raise failure('Body param "name" is required')
        if not isinstance(members, list):
            raise failure('Body param "members" must be an array if provided')
        if any(r["name"] == name for r in self.rooms.values()):
            raise meteor_error("error-duplicate-channel-name", f"A channel with name '{name}' exists")
        found = [u for u in (self._by_username(str(m)) for m in members) if u and u is not caller]
        rid = self._room(name, "p", creator=caller, members=[caller, *found])
        return self._ok({"group": self._group_view(self.rooms[rid])}, headers)

    async def _groups_invite(self, request: Request) -> Response:
        caller, headers = self._gate(request)
        body = await self._body(request)
        id_or_name = body.get("roomId") or body.get("roomName")
        if not isinstance(id_or_name, str) or not id_or_name.strip():
            raise meteor_error("error-room-param-not-provided")
        room = self._by_id_or_name(id_or_name)
        if room is None or room["t"] != "p":
            raise meteor_error("error-room-not-found")
        found = self._invitees(room, body)
        if not found:
            raise meteor_error("error-empty-invite-list")
        subscribed = caller["_id"] in self.subs[room["_id"]]
        if not (subscribed and self._can(caller, "add-user-to-joined-room", room)) and not self._can(
            caller, "add-user-to-any-p-room"
        ):
            raise meteor_error("error-not-allowed", details={"method": "addUsersToRoom"})
        for user in found:
            if user["_id"] in self.subs[room["_id"]]:
                continue  # already in: nothing happens (an ephemeral notice to the caller only)
            self.subs[room["_id"]].append(user["_id"])
            room["usersCount"] += 1
            self._post(room, caller, user["username"], "au")
            self.invite_applied(room["_id"], user["_id"])
        return self._ok({"group": self._group_view(room)}, headers)

    def _invitees(self, room: dict[str, Any], body: dict[str, Any]) -> list[dict[str, Any]]:
        """``getUserListFromParams``: ids if ``userIds``/``userId`` was given, else usernames; unknown dropped."""
        by_id = "userIds" in body or "userId" in body
        listed = body.get("userIds") if "userIds" in body else body.get("usernames", [])
        if listed is None:
            listed = []
        if not isinstance(listed, list):
            raise failure("userListParam.push is not a function")
        single = body.get("userId") or body.get("username") or body.get("user")
        if single is not None and not isinstance(single, str):
            raise failure("params.username.trim is not a function")
        wanted = list(dict.fromkeys(str(x) for x in [*listed, single] if x))
        if not wanted:
            raise meteor_error("error-users-params-not-provided")
        found = []
        for key in wanted:
            user = self.users.get(key) if by_id else self._by_username(key)
            if user is not None:
                found.append(user)
            self.invite_requested(room["_id"], user["_id"] if user else key)
        return found

    async def _groups_kick(self, request: Request) -> Response:
        """``groups.kick`` then ``removeUserFromRoom``, including the kick-any trap."""
        caller, headers = self._gate(request)
        body = await self._body(request)
        room = self._private_group(body, caller, archived_ok=False)
        user = self._user_from_params(body)
        self.removal_requested(room["_id"], user["_id"])
        if not self._can(caller, "remove-user", room):
            raise meteor_error("error-not-allowed", details={"method": "removeUserFromRoom"})
        member = user["_id"] in self.subs[room["_id"]]
        if not member and not self._can(caller, "kick-user-from-any-p-room"):
            raise meteor_error("error-user-not-in-room", details={"method": "removeUserFromRoom"})
        if user["_id"] in room["owners"] and len(room["owners"]) == 1:
            raise meteor_error("error-you-are-last-owner", details={"method": "removeUserFromRoom"})
        if member:
            self.subs[room["_id"]].remove(user["_id"])
            room["usersCount"] -= 1
            self.removal_applied(room["_id"], user["_id"])
        for ids in (room["owners"], room["moderators"]):
            if user["_id"] in ids:
                ids.remove(user["_id"])
        self._post(room, caller, user["username"], "ru")  # posted even when nobody was removed
        return self._ok({}, headers)

    async def _chat_post(self, request: Request) -> Response:
        """``chat.postMessage`` (``processWebhookMessage``): ``roomId`` or ``channel``, one or several."""
        caller, headers = self._gate(request)
        body = await self._body(request)
        targets = body.get("roomId") if "roomId" in body else body.get("channel")
        targets = [targets] if isinstance(targets, str) else targets
        if not targets or not isinstance(targets, list) or not all(isinstance(t, str) and t for t in targets):
            raise invalid_params("must have required property 'roomId'")
        text = body.get("text") if body.get("text") is not None else body.get("msg", "")
        if not isinstance(text, str):
            raise invalid_params("must be string")
        if len(text) > MAX_MESSAGE:
            raise failure("error-message-size-exceeded")
        sent = []
        for target in dict.fromkeys(targets):
            room = self._message_room(target, caller)
            if caller["_id"] not in self.subs[room["_id"]]:
                raise failure("error-not-allowed")
            if room["ro"] and not self._can(caller, "post-readonly", room):
                raise failure("You can't send messages because the room is readonly.")
            sent.append((target, self._post(room, caller, text.strip())))
        channel, message = sent[0]
        return self._ok({"ts": int(time.time() * 1000), "channel": channel, "message": message}, headers)

    def _message_room(self, target: str, caller: dict[str, Any]) -> dict[str, Any]:
        """``getRoomByNameOrIdWithOptionToJoin``: ``#name``, ``@username`` or an id or name; joins public channels."""
        if target.startswith("@"):
            other = self.users.get(target[1:]) or next(
                (u for u in self.users.values() if u["username"] == target[1:]), None
            )
            if other is None:
                raise meteor_error("invalid-channel", "")
            rid = "".join(sorted({caller["_id"], other["_id"]}))
            if rid not in self.rooms:
                self._room(
                    rid,
                    "d",
                    creator=caller,
                    members=[self.users[u] for u in sorted({caller["_id"], other["_id"]})],
                )
            return self.rooms[rid]
        room = self._by_id_or_name(target.removeprefix("#"))
        if room is None:
            raise meteor_error("invalid-channel", "")
        if room["t"] == "c" and caller["_id"] not in self.subs[room["_id"]]:
            self.subs[room["_id"]].append(caller["_id"])
            room["usersCount"] += 1
            self._post(room, caller, caller["username"], "uj")
        return room

    async def _chat_get(self, request: Request) -> Response:
        caller, headers = self._gate(request)
        msg_id = request.query_params.get("msgId")
        if not msg_id:
            raise failure('The "msgId" query parameter must be provided.')
        for rid, messages in self.messages.items():
            message = next((m for m in messages if m["_id"] == msg_id), None)
            if message is not None:
                if caller["_id"] not in self.subs[rid] and self.rooms[rid]["t"] != "c":
                    break
                return self._ok({"message": message}, headers)
        raise failure()


def _number(value: str | None, default: int) -> int:
    try:
        return max(0, int(value)) if value is not None else default
    except ValueError:
        return default


def _paging(request: Request) -> tuple[int, int]:
    """``getPaginationItems``: count default 50, capped at 100; 0 means all (API_Allow_Infinite_Count)."""
    count = _number(request.query_params.get("count"), 50)
    return _number(request.query_params.get("offset"), 0), min(count, 100) if count else 0


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


PLATFORM = RocketChatSandbox
