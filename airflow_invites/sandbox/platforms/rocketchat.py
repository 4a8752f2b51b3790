"""Rocket.Chat REST API v1 (private groups), as ``shared/platforms/rocketchat.md`` describes it.

Served under ``/rocketchat``: ``/rocketchat/api/v1/groups.invite`` etc. Nothing but Rocket.Chat here.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from airflow_invites.core.totp import totp_valid
from airflow_invites.sandbox.core import FixedWindowLimiter, PlatformEnv, SandboxPlatform, random_token

METEOR_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"
TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
VERSION = "7.5.1"
RATE_CALLS, RATE_WINDOW_S = 10, 60.0
BYPASS_ROLES = {"admin", "bot", "app"}

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
}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def meteor_error(
    error_type: str, reason: str | None = None, details: dict[str, Any] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {
        "success": False,
        "error": f"{reason or ERRORS[error_type]} [{error_type}]",
        "errorType": error_type,
    }
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=400)


class RocketChatSandbox(SandboxPlatform):
    name = "rocketchat"

    def reset(self) -> None:
        self.rng = random.Random("rocketchat-seed")
        self.users: dict[str, dict[str, Any]] = {}
        self.rooms: dict[str, dict[str, Any]] = {}
        self.subs: dict[str, list[str]] = {}  # room id -> user ids, in join order
        self.limiter = FixedWindowLimiter(RATE_CALLS, RATE_WINDOW_S)
        self.people_made = 0
        self.issued_tokens: list[str] = []
        bot = self._user("invites.bot", "Invites Bot", roles=["user", "bot"], password=self._secret(20))
        self.bot_id = bot["_id"]
        self.bot_pat = self._add_token(bot)
        owner = self._user("marc.anp", "Marc Anp", roles=["user", "admin"], password=self._secret(20))
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
        self.group_id = self._room("onboarding", "p", creator=bot, members=[bot, member, retired])
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
            "emails": [{"address": f"{username}@example.test", "verified": True}],
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
            "owners": [creator["_id"]],
            "moderators": [],
        }
        self.subs[rid] = [m["_id"] for m in members]
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
        return PlatformEnv(connection=connection, group=self.group_id, users=list(self.newcomers))

    def add_people(self, count: int, group: str | None = None) -> list[str]:
        room = self.rooms[group] if group is not None else None
        made = []
        for _ in range(count):
            self.people_made += 1
            made.append(self._user(f"person.{self.people_made}", f"Person {self.people_made}")["_id"])
        if room is not None:
            self.subs[room["_id"]].extend(made)
            room["usersCount"] += count
        return made

    def accept(self, group: str, user: str) -> bool:
        return False  # groups.invite adds people at once: there is nothing pending to accept

    def secrets(self) -> list[str]:
        values = [u["password"] for u in self.users.values()]
        values += [u["totp_secret"] for u in self.users.values() if u["totp_secret"]]
        return values + self.issued_tokens

    def throttle_response(self, request: Request) -> Response:
        wait = self.fault_wait()
        return self._too_many(wait, RATE_CALLS)

    def server_error_response(self, request: Request) -> Response:
        return JSONResponse({"success": False, "error": "Internal server error"}, status_code=500)

    # -- helpers ---------------------------------------------------------------------------------

    def _too_many(self, wait: float, limit: int) -> Response:
        seconds = max(1, round(wait))
        body = {
            "success": False,
            "error": "Error, too many requests. Please slow down. You must wait "
            f"{seconds} seconds before trying this endpoint again. [error-too-many-requests]",
        }
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int((time.time() + wait) * 1000)),
        }
        return JSONResponse(body, status_code=429, headers=headers)

    def _caller(self, request: Request) -> dict[str, Any] | None:
        user = self.users.get(request.headers.get("x-user-id", ""))
        token = request.headers.get("x-auth-token", "")
        if user and token and hashlib.sha256(token.encode()).hexdigest() in user["tokens"]:
            return user
        return None

    def _limit(
        self, request: Request, caller: dict[str, Any] | None
    ) -> tuple[Response | None, dict[str, str]]:
        """Rate limiter per route + method + client IP; bypassed by admin/bot/app roles."""
        if caller and BYPASS_ROLES & set(caller["roles"]):
            return None, {}
        scale = self.limit_scale()
        ip = request.client.host if request.client else "?"
        key = f"{request.url.path}{request.method.lower()}{ip}"
        wait = self.limiter.hit(key, scale)
        if wait is not None:
            return self._too_many(wait, RATE_CALLS), {}
        if scale <= 0:
            return None, {}
        start = self.limiter.windows[key][0]
        reset_ms = int((time.time() + (start + RATE_WINDOW_S / scale - time.monotonic())) * 1000)
        return None, {
            "X-RateLimit-Limit": str(RATE_CALLS),
            "X-RateLimit-Remaining": str(self.limiter.remaining(key)),
            "X-RateLimit-Reset": str(reset_ms),
        }

    def _authed(self, request: Request) -> tuple[dict[str, Any] | None, Response | None, dict[str, str]]:
        caller = self._caller(request)
        if caller is None:
            return None, JSONResponse(NOT_LOGGED_IN, status_code=401), {}
        limited, headers = self._limit(request, caller)
        return caller, limited, headers

    def _find_group(
        self, id_or_name: str, *, by_name: bool = False, either: bool = False
    ) -> dict[str, Any] | None:
        for room in self.rooms.values():
            if room["t"] != "p":
                continue
            if (either or not by_name) and room["_id"] == id_or_name:
                return room
            if (either or by_name) and room["name"] == id_or_name:
                return room
        return None

    def _public_user(self, user: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in user.items() if k not in ("password", "tokens", "totp_secret")}

    def _group_view(self, room: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in room.items() if k not in ("owners", "moderators")}

    async def _json(self, request: Request) -> Any:
        raw = await request.body()
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            return None

    # -- routes ----------------------------------------------------------------------------------

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.get("/api/info")
        async def info() -> Response:
            return JSONResponse({"version": VERSION, "success": True})

        @router.post("/api/v1/login")
        async def login(request: Request) -> Response:
            limited, headers = self._limit(request, None)
            if limited:
                return limited
            if "application/json" not in request.headers.get("content-type", ""):
                return JSONResponse(UNAUTHORIZED, status_code=401)
            body = await self._json(request)
            if not isinstance(body, dict):
                return JSONResponse(UNAUTHORIZED, status_code=401)
            user = self._login_user(body)
            if user is None:
                return JSONResponse(UNAUTHORIZED, status_code=401, headers=headers)
            if user["totp_secret"]:
                code = str(body.get("code") or request.headers.get("x-2fa-code") or "")
                if not code:
                    return JSONResponse(
                        {
                            "success": False,
                            "error": "totp-required",
                            "status": "error",
                            "details": {"method": "totp", "availableMethods": ["totp"]},
                            "message": "TOTP Required",
                        },
                        status_code=401,
                        headers=headers,
                    )
                if not totp_valid(user["totp_secret"], code):
                    return JSONResponse(
                        {
                            "success": False,
                            "error": "totp-invalid",
                            "status": "error",
                            "details": {"method": "totp", "availableMethods": ["totp"]},
                            "message": "TOTP Invalid",
                        },
                        status_code=401,
                        headers=headers,
                    )
            token = self._add_token(user)
            me = {
                k: user[k]
                for k in (
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
            }
            me.update(settings={"preferences": {}}, avatarUrl=f"{request.base_url}avatar/{user['username']}")
            data = {"userId": user["_id"], "authToken": token, "me": me}
            return JSONResponse({"status": "success", "data": data, "success": True}, headers=headers)

        @router.api_route("/api/v1/logout", methods=["GET", "POST"])
        async def logout(request: Request) -> Response:
            caller, limited, headers = self._authed(request)
            if caller is None or limited:
                return limited or JSONResponse(NOT_LOGGED_IN, status_code=401)
            token = request.headers.get("x-auth-token", "")
            caller["tokens"].remove(hashlib.sha256(token.encode()).hexdigest())
            return JSONResponse(
                {"status": "success", "data": {"message": "You've been logged out!"}, "success": True},
                headers=headers,
            )

        @router.get("/api/v1/me")
        async def me(request: Request) -> Response:
            caller, limited, headers = self._authed(request)
            if caller is None or limited:
                return limited or JSONResponse(NOT_LOGGED_IN, status_code=401)
            return JSONResponse({**self._public_user(caller), "success": True}, headers=headers)

        @router.post("/api/v1/groups.invite")
        async def groups_invite(request: Request) -> Response:
            caller, limited, headers = self._authed(request)
            if caller is None or limited:
                return limited or JSONResponse(NOT_LOGGED_IN, status_code=401)
            body = await self._json(request)
            if not isinstance(body, dict):
                return JSONResponse({"success": False, "error": "Invalid JSON body"}, status_code=400)
            return self._invite(caller, body, headers)

        @router.get("/api/v1/groups.info")
        async def groups_info(request: Request) -> Response:
            caller, limited, headers = self._authed(request)
            if caller is None or limited:
                return limited or JSONResponse(NOT_LOGGED_IN, status_code=401)
            room, error = self._readable_group(request, caller, check_archived=False)
            if error:
                return error
            assert room is not None
            return JSONResponse({"group": self._group_view(room), "success": True}, headers=headers)

        @router.get("/api/v1/groups.members")
        async def groups_members(request: Request) -> Response:
            caller, limited, headers = self._authed(request)
            if caller is None or limited:
                return limited or JSONResponse(NOT_LOGGED_IN, status_code=401)
            room, error = self._readable_group(request, caller, check_archived=True)
            if error:
                return error
            assert room is not None
            offset, count = _paging(request)
            members = [self.users[u] for u in self.subs[room["_id"]] if self.users[u]["active"]]
            needle = request.query_params.get("filter", "").lower()
            if needle:  # the server matches username or name, case-insensitively, anywhere
                members = [
                    u for u in members if needle in u["username"].lower() or needle in u["name"].lower()
                ]
            members.sort(key=lambda u: (u["statusConnection"] != "online", u["username"]))
            page = members[offset:] if count == 0 else members[offset : offset + count]
            shown = [{k: u[k] for k in ("_id", "username", "name", "status", "_updatedAt")} for u in page]
            return JSONResponse(
                {
                    "members": shown,
                    "count": len(shown),
                    "offset": offset,
                    "total": len(members),
                    "success": True,
                },
                headers=headers,
            )

        @router.get("/api/v1/groups.list")
        async def groups_list(request: Request) -> Response:
            caller, limited, headers = self._authed(request)
            if caller is None or limited:
                return limited or JSONResponse(NOT_LOGGED_IN, status_code=401)
            offset, count = _paging(request)
            mine = [
                self._group_view(r)
                for r in self.rooms.values()
                if r["t"] == "p" and caller["_id"] in self.subs[r["_id"]]
            ]
            page = mine[offset:] if count == 0 else mine[offset : offset + count]
            return JSONResponse(
                {"groups": page, "count": len(page), "offset": offset, "total": len(mine), "success": True},
                headers=headers,
            )

        @router.get("/api/v1/users.info")
        async def users_info(request: Request) -> Response:
            caller, limited, headers = self._authed(request)
            if caller is None or limited:
                return limited or JSONResponse(NOT_LOGGED_IN, status_code=401)
            user_id, username = request.query_params.get("userId"), request.query_params.get("username")
            if not user_id and not username:
                return JSONResponse(
                    {
                        "success": False,
                        "error": 'The required "userId" or "username" param '
                        "was not provided [error-user-param-not-provided]",
                        "errorType": "invalid-params",
                    },
                    status_code=400,
                )
            found = (
                self.users.get(user_id or "")
                if user_id
                else next(
                    (u for u in self.users.values() if u["username"].lower() == (username or "").lower()),
                    None,
                )
            )
            if found is None:
                return JSONResponse({"success": False, "error": "User not found."}, status_code=400)
            return JSONResponse({"user": self._public_user(found), "success": True}, headers=headers)

        @router.get("/api/v1/rooms.isMember")
        async def rooms_is_member(request: Request) -> Response:
            caller, limited, headers = self._authed(request)
            if caller is None or limited:
                return limited or JSONResponse(NOT_LOGGED_IN, status_code=401)
            room = self.rooms.get(request.query_params.get("roomId", ""))
            if room is None or caller["_id"] not in self.subs[room["_id"]]:
                return meteor_error("error-room-not-found")
            user_id = request.query_params.get("userId", "")
            return JSONResponse(
                {"isMember": user_id in self.subs[room["_id"]], "success": True}, headers=headers
            )

        @router.get("/api/v1/subscriptions.getOne")
        async def subscription(request: Request) -> Response:
            caller, limited, headers = self._authed(request)
            if caller is None or limited:
                return limited or JSONResponse(NOT_LOGGED_IN, status_code=401)
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
            return JSONResponse({"subscription": sub, "success": True}, headers=headers)

        @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
        async def not_found(rest: str) -> Response:
            return JSONResponse({"success": False, "error": "Resource not found"}, status_code=404)

        return router

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
            user = next((u for u in self.users.values() if u["username"].lower() == name.lower()), None)
        if user is None or not user["active"] or user["password"] != password:
            return None
        return user

    def _readable_group(
        self, request: Request, caller: dict[str, Any], *, check_archived: bool
    ) -> tuple[dict[str, Any] | None, Response | None]:
        room_id, room_name = request.query_params.get("roomId"), request.query_params.get("roomName")
        if not room_id and not room_name:
            return None, meteor_error("error-room-param-not-provided")
        room = self._find_group(room_id) if room_id else self._find_group(room_name or "", by_name=True)
        if room is None or caller["_id"] not in self.subs[room["_id"]]:
            return None, meteor_error("error-room-not-found")
        if check_archived and room.get("archived"):
            return None, meteor_error(
                "error-room-archived", f"The private group, {room['name']}, is archived"
            )
        return room, None

    def _invite(self, caller: dict[str, Any], body: dict[str, Any], headers: dict[str, str]) -> Response:
        id_or_name = body.get("roomId") or body.get("roomName")
        if not id_or_name:
            return meteor_error("error-room-param-not-provided")
        room = self._find_group(str(id_or_name), either=True)
        if room is None:
            return meteor_error("error-room-not-found")
        by_id = "userIds" in body or "userId" in body
        listed = body.get("userIds") if "userIds" in body else body.get("usernames", [])
        if listed is None:
            listed = []
        if not isinstance(listed, list):
            return JSONResponse(
                {"success": False, "error": "userListParam.push is not a function"}, status_code=400
            )
        single = body.get("userId") or body.get("username") or body.get("user")
        if single is not None and not isinstance(single, str):
            return JSONResponse(
                {"success": False, "error": "params.username.trim is not a function"}, status_code=400
            )
        wanted = [str(x) for x in [*listed, single] if x]
        wanted = list(dict.fromkeys(wanted))
        if not wanted:
            return meteor_error("error-users-params-not-provided")
        found = []
        for key in wanted:
            user = (
                self.users.get(key)
                if by_id
                else next((u for u in self.users.values() if u["username"].lower() == key.lower()), None)
            )
            if user is not None:
                found.append(user)
            self.invite_requested(room["_id"], user["_id"] if user else key)
        if not found:
            return meteor_error("error-empty-invite-list")
        subscribed = caller["_id"] in self.subs[room["_id"]]
        room_role = caller["_id"] in room["owners"] or caller["_id"] in room["moderators"]
        if not (subscribed and (room_role or "admin" in caller["roles"])):
            return meteor_error("error-not-allowed", details={"method": "addUsersToRoom"})
        for user in found:
            if user["_id"] in self.subs[room["_id"]]:
                continue
            self.subs[room["_id"]].append(user["_id"])
            stamp = now_iso()
            room.update(usersCount=room["usersCount"] + 1, msgs=room["msgs"] + 1, lm=stamp, _updatedAt=stamp)
            self.invite_applied(room["_id"], user["_id"])
        return JSONResponse({"group": self._group_view(room), "success": True}, headers=headers)


def _paging(request: Request) -> tuple[int, int]:
    def number(name: str, default: int) -> int:
        try:
            return max(0, int(request.query_params.get(name, default)))
        except ValueError:
            return default

    count = number("count", 50)
    return number("offset", 0), min(count, 100) if count else 0


PLATFORM = RocketChatSandbox
