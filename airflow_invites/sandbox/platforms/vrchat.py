"""VRChat API ``api/1`` (auth, groups), as ``shared/platforms/vrchat.md`` describes it.

Served under ``/vrchat/api/1/...``. The user-agent firewall runs before everything else; logins
open sessions (``auth`` cookie), accounts with TOTP get the compact 200 challenge and must verify
before any other call; a ``twoFactorAuth`` cookie lets a later Basic login skip the code. Every
Basic login counts against a per-account session limit (``Created too many sessions for that
user``). Messages carry VRChat's look-alike punctuation (U+2024 for ``.``, U+01C3 for ``!``).
Where the notes mark a reply as not captured (wrong 2FA code, unknown user, generic 429 text),
the text here is our choice and says so in a comment.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from airflow_invites.core.totp import totp_valid
from airflow_invites.sandbox.core import (
    FixedWindowLimiter,
    LeakyBucket,
    PlatformEnv,
    SandboxPlatform,
    random_token,
)

BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#: Basic logins (new sessions) per account and window; calls per session (bucket)
LOGINS_PER_WINDOW, LOGIN_WINDOW_S = 10, 3600.0
CALL_RATE, CALL_BURST = 10.0, 120
COOKIE_AGE_S = 365 * 24 * 3600

WAF_MESSAGE = (
    '"please identify yourself with a properly formatted user-agent containing application name, '
    'version and contact information. thank you!"'
)
UA_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[0-9A-Za-z][0-9A-Za-z._+-]*\s+(?P<contact>\S.*)$")
CONTACT_RE = re.compile(r"[^\s@()<>]+@[^\s@()<>]+\.[A-Za-z]{2,}|https?://[^\s()<>]+\.[^\s()<>]+")

MISSING_CREDENTIALS = '"Missing Credentials"'
INVALID_LOGIN = '"Invalid Username/Email or Password"'
REQUIRES_2FA = '"Requires Two-Factor Authentication"'
TOO_MANY_SESSIONS = "Created too many sessions for that user"
INVALID_CODE = '"Invalid 2FA code"'  # not captured from the live API: our choice
DOT, BANG = "\u2024", "\u01c3"  # VRChat's look-alike full stop and exclamation mark
SLOW_DOWN = f"You're doing that too much{DOT} Please slow down{DOT}"  # generic 429 text: our choice
CANT_FIND_GROUP = f"Can't find group{BANG}"
NOT_A_MEMBER = f"You're not a member{DOT}"
NO_PERMISSION = f"You don't have permission{DOT}"
CANT_INVITE = f"You can't invite that user{DOT}"
CANT_UNINVITE = f"You can't uninvite a user who wasn't invited{DOT}"
USER_NOT_FOUND = "User not found"  # not captured: the notes' choice
UNKNOWN_ROUTE = {
    "error": "The endpoint you're looking for is not implemented by our system.",
    "status_code": 404,
}


def compact(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON as VRChat sends it: no spaces, UTF-8, non-ASCII kept."""
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error(message: str, status: int, **extra: Any) -> Response:
    return compact({"error": {"message": message, "status_code": status, **extra}}, status)


def success(message: str = "Ok!") -> Response:
    return compact({"success": {"message": message, "status_code": 200}})


def user_agent_ok(value: str) -> bool:
    match = UA_RE.fullmatch(value.strip())
    return bool(match and CONTACT_RE.search(match.group("contact")))


def now_iso(offset_s: float = 0.0) -> str:
    stamp = datetime.now(timezone.utc) + timedelta(seconds=offset_s)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FirewallRoute(APIRoute):
    """VRChat's WAF: a request without a descriptive User-Agent is refused before anything else."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def gated(request: Request) -> Response:
            if not user_agent_ok(request.headers.get("user-agent", "")):
                return error(WAF_MESSAGE, 403, waf_code=13799)
            return await handler(request)

        return gated


class VRChatSandbox(SandboxPlatform):
    name = "vrchat"

    def reset(self) -> None:
        self.rng = random.Random("vrchat-seed")
        self.users: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}  # auth cookie -> session
        self.devices: dict[str, str] = {}  # twoFactorAuth cookie -> user id
        self.issued: list[str] = []
        self.login_limiter = FixedWindowLimiter(LOGINS_PER_WINDOW, LOGIN_WINDOW_S)
        self.call_bucket = LeakyBucket(CALL_RATE, CALL_BURST)
        self.people_made = 0
        self.bot = self._user("Invites Bot", username="invites-bot", password=self._secret(24))
        self.bot["totp_secret"] = "".join(self.rng.choice(BASE32) for _ in range(32))
        self.bot["recovery_codes"] = [self._secret(8).lower() for _ in range(6)]
        self.mail_only = self._user("Mail Only", username="mail-only", password=self._secret(24))
        self.mail_only["email_otp"] = True
        owner = self._user("Marc Owner")
        member = self._user("Grace Member")
        invited = self._user("Ivy Invited")
        banned = self._user("Bart Banned")
        blocker = self._user("Bea Blocker")
        requester = self._user("Rex Requester")
        self.newcomers = [
            self._user(name)["id"]
            for name in ("Ada Lovelace", "Alan Turing", "Barbara Liskov", "Edsger Dijkstra", "Ken Thompson")
        ]
        self.newcomers.append(self._user("Legacy Larry", legacy=True)["id"])
        self.group_id = self._group("Onboarding", "ONBRD", owner=self.bot)
        self._relate(self.group_id, member, "member")
        self._relate(self.group_id, invited, "invited")
        self._relate(self.group_id, banned, "banned")
        self._relate(self.group_id, blocker, "userblocked")
        self._relate(self.group_id, requester, "requested")
        self.named = {
            "member": member["id"],
            "invited": invited["id"],
            "banned": banned["id"],
            "userblocked": blocker["id"],
            "requested": requester["id"],
        }
        self.foreign_group_id = self._group("Secret Club", "SECRT", owner=owner)
        self.limited_group_id = self._group("Helpers Only", "HELPR", owner=owner)
        self._relate(self.limited_group_id, self.bot, "member", role="helper")

    def router(self) -> APIRouter:
        return _router(self)

    # -- seeding ---------------------------------------------------------------------------------

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _secret(self, length: int) -> str:
        return random_token(self.rng, length)

    def _user(
        self,
        display_name: str,
        *,
        username: str | None = None,
        password: str | None = None,
        legacy: bool = False,
    ) -> dict[str, Any]:
        user_id = random_token(self.rng, 10) if legacy else f"usr_{self._uuid()}"
        user: dict[str, Any] = {
            "id": user_id,
            "displayName": display_name,
            "username": username or display_name.lower().replace(" ", ""),
            "email": f"{username or display_name.lower().replace(' ', '.')}@vrchat.sandbox.test",
            "password": password,
            "totp_secret": None,
            "recovery_codes": [],
            "email_otp": False,
            "date_joined": f"2021-0{self.rng.randint(1, 9)}-1{self.rng.randint(0, 9)}",
        }
        self.users[user_id] = user
        return user

    def _group(self, name: str, short_code: str, *, owner: dict[str, Any]) -> str:
        group_id = f"grp_{self._uuid()}"
        roles = {
            "owner": {"id": f"grol_{self._uuid()}", "name": "Owner", "permissions": ["*"]},
            "helper": {
                "id": f"grol_{self._uuid()}",
                "name": "Helper",
                "permissions": ["group-announcement-manage"],
            },
            "member": {"id": f"grol_{self._uuid()}", "name": "Member", "permissions": []},
        }
        self.groups[group_id] = {
            "id": group_id,
            "name": name,
            "shortCode": short_code,
            "discriminator": "0000",
            "description": f"{name} (sandbox)",
            "ownerId": owner["id"],
            "joinState": "invite",
            "privacy": "default",
            "createdAt": now_iso(-86400 * 30),
            "roles": roles,
            "relations": {},  # user id -> GroupMember (any membershipStatus)
        }
        self._relate(group_id, owner, "member", role="owner")
        return group_id

    def _relate(
        self, group_id: str, user: dict[str, Any], status: str, role: str = "member"
    ) -> dict[str, Any]:
        group = self.groups[group_id]
        stamp = now_iso()
        record = {
            "id": f"gmem_{self._uuid()}",
            "groupId": group_id,
            "userId": user["id"],
            "isRepresenting": False,
            "roleIds": [group["roles"][role]["id"]] if status == "member" else [],
            "mRoleIds": [],
            "role": role,
            "membershipStatus": status,
            "visibility": "visible",
            "isSubscribedToAnnouncements": status == "member",
            "isSubscribedToEventAnnouncements": False,
            "joinedAt": stamp if status == "member" else None,
            "createdAt": stamp,
            "bannedAt": stamp if status == "banned" else None,
            "managerNotes": "",
            "lastPostReadAt": None,
            "acceptedById": None,
            "acceptedByDisplayName": None,
            "hasJoinedFromPurchase": False,
        }
        group["relations"][user["id"]] = record
        return record

    # -- admin hooks -----------------------------------------------------------------------------

    def env(self, base_url: str) -> PlatformEnv:
        connection = {
            "conn_type": "vrchat",
            "host": base_url,
            "login": self.bot["username"],
            "password": self.bot["password"],
            "extra": {"totp_secret": self.bot["totp_secret"]},
        }
        return PlatformEnv(connection=connection, group=self.group_id, users=list(self.newcomers))

    def add_people(self, count: int, group: str | None = None) -> list[str]:
        if group is not None and group not in self.groups:
            raise KeyError(group)
        made = []
        for _ in range(count):
            self.people_made += 1
            person = self._user(f"Person {self.people_made}")
            made.append(person["id"])
            if group is not None:
                self._relate(group, person, "member")
        return made

    def accept(self, group: str, user: str) -> bool:
        record = self.groups.get(group, {}).get("relations", {}).get(user)
        if record is None or record["membershipStatus"] != "invited":
            return False
        self._become_member(group, record)
        return True

    def secrets(self) -> list[str]:
        values: list[str] = []
        for user in self.users.values():
            values += [user["password"], user["totp_secret"], *user["recovery_codes"]]
        values += [s["email_code"] for s in self.sessions.values() if s.get("email_code")]
        return [v for v in values if v] + self.issued

    def throttle_response(self, request: Request) -> Response:
        response = error(SLOW_DOWN, 429)
        response.headers["Retry-After"] = str(max(1, round(self.fault_wait())))
        return response

    def server_error_response(self, request: Request) -> Response:
        return error("Internal Server Error", 500)

    # -- sessions --------------------------------------------------------------------------------

    def _issue(self, value: str) -> str:
        self.issued.append(value)
        return value

    def _set_cookie(self, response: Response, name: str, value: str, *, expire: bool = False) -> None:
        response.set_cookie(
            name,
            "" if expire else value,
            max_age=0 if expire else COOKIE_AGE_S,
            path="/",
            httponly=True,
            samesite=None,
        )

    def _session(self, request: Request) -> dict[str, Any] | None:
        return self.sessions.get(request.cookies.get("auth", ""))

    def _device_user(self, request: Request) -> str | None:
        return self.devices.get(request.cookies.get("twoFactorAuth", ""))

    def _caller(self, request: Request) -> tuple[dict[str, Any] | None, Response | None]:
        """The logged-in, verified user, or VRChat's 401; then the per-session call limit."""
        session = self._session(request)
        if session is None:
            return None, error(MISSING_CREDENTIALS, 401)
        if not session["verified"]:
            return None, error(REQUIRES_2FA, 401)
        wait = self.call_bucket.hit(session["cookie"], self.limit_scale())
        if wait is not None:
            return None, error(SLOW_DOWN, 429)
        return self.users[session["user"]], None

    def _challenge(self, user: dict[str, Any]) -> list[str]:
        if user["totp_secret"]:
            return ["totp", "otp"]
        return ["emailOtp"] if user["email_otp"] else []

    def _current_user(self, user: dict[str, Any]) -> dict[str, Any]:
        uid = user["id"]
        avatar = f"avtr_{uuid.UUID(bytes=hashlib.md5(uid.encode()).digest(), version=4)}"
        return {
            "acceptedPrivacyVersion": 0,
            "acceptedTOSVersion": 10,
            "accountDeletionDate": None,
            "accountDeletionLog": None,
            "activeFriends": [],
            "ageVerificationStatus": "hidden",
            "ageVerified": False,
            "allowAvatarCopying": False,
            "badges": [],
            "bio": "",
            "bioLinks": [],
            "currentAvatar": avatar,
            "currentAvatarAssetUrl": "",
            "currentAvatarImageUrl": "https://api.vrchat.cloud/api/1/file/file_sandbox/1/file",
            "currentAvatarTags": [],
            "currentAvatarThumbnailImageUrl": "https://api.vrchat.cloud/api/1/image/file_sandbox/1/256",
            "date_joined": user["date_joined"],
            "developerType": "none",
            "displayName": user["displayName"],
            "emailVerified": True,
            "fallbackAvatar": avatar,
            "friendGroupNames": [],
            "friendKey": "",
            "friends": [],
            "hasBirthday": True,
            "hasEmail": True,
            "hasLoggedInFromClient": False,
            "hasPendingEmail": False,
            "hideContentFilterSettings": False,
            "homeLocation": "",
            "id": uid,
            "isAdult": True,
            "isBoopingEnabled": False,
            "isFriend": False,
            "last_activity": now_iso(),
            "last_login": now_iso(),
            "last_mobile": None,
            "last_platform": "standalonewindows",
            "obfuscatedEmail": "i***@vrchat.sandbox.test",
            "obfuscatedPendingEmail": "",
            "oculusId": "",
            "offlineFriends": [],
            "onlineFriends": [],
            "pastDisplayNames": [],
            "presence": {"platform": "", "status": "offline", "world": "", "instance": ""},
            "profilePicOverride": "",
            "profilePicOverrideThumbnail": "",
            "pronouns": "",
            "queuedInstance": None,
            "state": "offline",
            "status": "offline",
            "statusDescription": "",
            "statusFirstTime": False,
            "statusHistory": [],
            "steamDetails": {},
            "steamId": "",
            "tags": ["system_no_captcha"],
            "twoFactorAuthEnabled": bool(user["totp_secret"]),
            "twoFactorAuthEnabledDate": "2023-01-01T00:00:00.000Z" if user["totp_secret"] else None,
            "unsubscribe": False,
            "updated_at": now_iso(),
            "userIcon": "",
            "userLanguage": None,
            "userLanguageCode": None,
            "username": user["username"],
        }

    def _public_user(self, user: dict[str, Any]) -> dict[str, Any]:
        full = self._current_user(user)
        keys = (
            "ageVerificationStatus", "ageVerified", "allowAvatarCopying", "badges", "bio", "bioLinks",
            "currentAvatarImageUrl", "currentAvatarTags", "currentAvatarThumbnailImageUrl", "date_joined",
            "developerType", "displayName", "friendKey", "id", "isFriend", "last_activity", "last_login",
            "last_platform", "profilePicOverride", "pronouns", "state", "status", "statusDescription",
            "tags", "userIcon",
        )  # fmt: skip
        return {k: full[k] for k in keys}

    # -- groups ----------------------------------------------------------------------------------

    def _member_view(self, record: dict[str, Any], *, with_user: bool) -> dict[str, Any]:
        view = {k: v for k, v in record.items() if k != "role"}
        if with_user:
            user = self.users[record["userId"]]
            view["user"] = {
                "id": user["id"],
                "displayName": user["displayName"],
                "thumbnailUrl": None,
                "iconUrl": "",
                "profilePicOverride": "",
                "currentAvatarThumbnailImageUrl": "https://api.vrchat.cloud/api/1/image/file_sandbox/1/256",
                "currentAvatarTags": [],
            }
        return view

    def _permissions(self, group: dict[str, Any], user_id: str) -> list[str]:
        record = group["relations"].get(user_id)
        if record is None or record["membershipStatus"] != "member":
            return []
        return list(group["roles"][record["role"]]["permissions"])

    def _group_view(self, group: dict[str, Any], caller: dict[str, Any]) -> dict[str, Any]:
        members = [r for r in group["relations"].values() if r["membershipStatus"] == "member"]
        mine = group["relations"].get(caller["id"])
        my_member = None
        if mine is not None:
            my_member = {
                **{
                    k: mine[k] for k in ("id", "groupId", "userId", "roleIds", "membershipStatus", "joinedAt")
                },
                "isRepresenting": False,
                "permissions": self._permissions(group, caller["id"]),
            }
        return {
            "id": group["id"],
            "name": group["name"],
            "shortCode": group["shortCode"],
            "discriminator": group["discriminator"],
            "description": group["description"],
            "ownerId": group["ownerId"],
            "joinState": group["joinState"],
            "privacy": group["privacy"],
            "memberCount": len(members),
            "createdAt": group["createdAt"],
            "membershipStatus": mine["membershipStatus"] if mine else "inactive",
            "myMember": my_member,
            "tags": [],
            "galleries": [],
            "languages": ["eng"],
            "links": [],
            "rules": "",
            "isVerified": False,
            "badges": [],
        }

    def _member_group(
        self, group_id: str, caller: dict[str, Any], permission: str | None = None
    ) -> tuple[dict[str, Any] | None, Response | None]:
        """A group the caller belongs to (403 otherwise, also for unknown ids, as live)."""
        group = self.groups.get(group_id)
        if group is None or group["relations"].get(caller["id"], {}).get("membershipStatus") != "member":
            return None, error(NOT_A_MEMBER, 403)
        if permission is not None:
            granted = self._permissions(group, caller["id"])
            if "*" not in granted and permission not in granted:
                return None, error(NO_PERMISSION, 403)
        return group, None

    def _become_member(self, group_id: str, record: dict[str, Any]) -> None:
        group = self.groups[group_id]
        record.update(
            membershipStatus="member",
            joinedAt=now_iso(),
            bannedAt=None,
            roleIds=[group["roles"]["member"]["id"]],
            role="member",
        )


def _paging(request: Request) -> tuple[int, int] | Response:
    """``n`` (1..100, larger values capped, default 60) and ``offset`` (>= 0)."""
    try:
        n = int(request.query_params.get("n", 60))
        offset = int(request.query_params.get("offset", 0))
    except ValueError:
        return error("Invalid parameters", 400)  # not captured: our choice
    if n < 1 or offset < 0:
        return error("Invalid parameters", 400)
    return min(n, 100), offset


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True).decode()
    except ValueError:
        return None
    name, sep, password = raw.partition(":")
    if not sep:
        return None
    return unquote(name), unquote(password)


def _add_routes(platform: VRChatSandbox, router: APIRouter) -> None:
    p = platform

    @router.get("/api/1/config")
    async def config() -> Response:
        return compact(
            {
                "address": "sandbox",
                "clientApiKey": "JlE5Jldo5Jibnk5O5hTx6XVqsJu4WJ26",
                "serverName": "sandbox",
            }
        )

    @router.get("/api/1/auth/user")
    async def current_user(request: Request) -> Response:
        session = p._session(request)
        if session is not None:  # a valid cookie wins over Basic
            known = p.users[session["user"]]
            if not session["verified"]:
                return compact({"requiresTwoFactorAuth": p._challenge(known)})
            return compact(p._current_user(known))
        credentials = _basic(request)
        if credentials is None:
            return error(MISSING_CREDENTIALS, 401)
        name, password = credentials
        user: dict[str, Any] | None = next(
            (
                u
                for u in p.users.values()
                if u["password"] and name.lower() in (u["username"].lower(), u["email"].lower())
            ),
            None,
        )
        if user is None or user["password"] != password:
            return error(INVALID_LOGIN, 401)
        if p.login_limiter.hit(user["id"], p.limit_scale()) is not None:
            return error(TOO_MANY_SESSIONS, 429)
        cookie = p._issue(f"authcookie_{uuid.uuid4()}")
        remembered = p._device_user(request) == user["id"]
        methods = p._challenge(user)
        session = {"cookie": cookie, "user": user["id"], "verified": remembered or not methods}
        if user["email_otp"] and not remembered:
            session["email_code"] = f"{random.SystemRandom().randint(0, 999999):06d}"
        p.sessions[cookie] = session
        body = p._current_user(user) if session["verified"] else {"requiresTwoFactorAuth": methods}
        response = compact(body)
        p._set_cookie(response, "auth", cookie)
        return response

    def verifier(kind: str) -> Callable[[Request], Awaitable[Response]]:
        async def verify(request: Request) -> Response:
            session = p._session(request)
            if session is None:
                return error(MISSING_CREDENTIALS, 401)
            user = p.users[session["user"]]
            try:
                body = json.loads(await request.body() or b"{}")
            except ValueError:
                body = None
            code = str(body.get("code", "")) if isinstance(body, dict) else ""
            if kind == "totp":
                ok = bool(user["totp_secret"]) and totp_valid(user["totp_secret"], code)
            elif kind == "otp":
                ok = code.replace("-", "").lower() in user["recovery_codes"]
                if ok:
                    user["recovery_codes"].remove(code.replace("-", "").lower())
            else:
                ok = bool(session.get("email_code")) and code == session["email_code"]
            if not ok:
                return error(INVALID_CODE, 400)
            session["verified"] = True
            device = p._issue(".".join(random_token(random.Random(), n, B64URL) for n in (36, 120, 43)))
            p.devices[device] = user["id"]
            response = compact(
                {"verified": True} if kind == "emailotp" else {"verified": True, "enabled": True}
            )
            p._set_cookie(response, "twoFactorAuth", device)
            return response

        return verify

    for kind in ("totp", "otp", "emailotp"):
        router.add_api_route(f"/api/1/auth/twofactorauth/{kind}/verify", verifier(kind), methods=["POST"])

    @router.get("/api/1/auth")
    async def verify_auth(request: Request) -> Response:
        caller, refused = p._caller(request)
        if caller is None:
            return refused or error(MISSING_CREDENTIALS, 401)
        return compact({"ok": True, "token": request.cookies.get("auth", "")})

    @router.put("/api/1/logout")
    async def logout(request: Request) -> Response:
        caller, refused = p._caller(request)
        if caller is None:
            return refused or error(MISSING_CREDENTIALS, 401)
        p.sessions.pop(request.cookies.get("auth", ""), None)
        response = success("Ok!")
        p._set_cookie(response, "auth", "", expire=True)
        return response

    @router.get("/api/1/users/{user_id}")
    async def get_user(request: Request, user_id: str) -> Response:
        caller, refused = p._caller(request)
        if caller is None:
            return refused or error(MISSING_CREDENTIALS, 401)
        user = p.users.get(user_id)
        if user is None:
            return error(USER_NOT_FOUND, 404)
        return compact(p._public_user(user))

    @router.get("/api/1/users/{user_id}/groups")
    async def user_groups(request: Request, user_id: str) -> Response:
        caller, refused = p._caller(request)
        if caller is None:
            return refused or error(MISSING_CREDENTIALS, 401)
        if user_id not in p.users:
            return error(USER_NOT_FOUND, 404)
        rows = []
        for group in p.groups.values():
            record = group["relations"].get(user_id)
            if record is None or record["membershipStatus"] != "member" or record["visibility"] == "hidden":
                continue
            members = [r for r in group["relations"].values() if r["membershipStatus"] == "member"]
            rows.append(
                {
                    "id": record["id"],
                    "groupId": group["id"],
                    "name": group["name"],
                    "shortCode": group["shortCode"],
                    "discriminator": group["discriminator"],
                    "memberVisibility": record["visibility"],
                    "isRepresenting": record["isRepresenting"],
                    "mutualGroup": caller["id"] in group["relations"],
                    "ownerId": group["ownerId"],
                    "memberCount": len(members),
                    "privacy": group["privacy"],
                }
            )
        return compact(rows)

    @router.get("/api/1/groups/{group_id}")
    async def get_group(request: Request, group_id: str) -> Response:
        caller, refused = p._caller(request)
        if caller is None:
            return refused or error(MISSING_CREDENTIALS, 401)
        group = p.groups.get(group_id)
        if group is None:
            return error(CANT_FIND_GROUP, 404)
        return compact(p._group_view(group, caller))

    def lister(status: str, permission: str | None) -> Callable[[Request, str], Awaitable[Response]]:
        async def listing(request: Request, group_id: str) -> Response:
            caller, refused = p._caller(request)
            if caller is None:
                return refused or error(MISSING_CREDENTIALS, 401)
            group, refused = p._member_group(group_id, caller, permission)
            if group is None:
                return refused or error(NOT_A_MEMBER, 403)
            paging = _paging(request)
            if isinstance(paging, Response):
                return paging
            n, offset = paging
            rows = [
                r
                for r in group["relations"].values()
                if r["membershipStatus"] == status and r["userId"] != caller["id"]
            ]
            if request.query_params.get("sort") == "joinedAt:desc":
                rows.reverse()
            return compact([p._member_view(r, with_user=True) for r in rows[offset : offset + n]])

        return listing

    for path, status, permission in (
        ("members", "member", None),
        ("invites", "invited", "group-invites-manage"),
        ("bans", "banned", "group-bans-manage"),
        ("requests", "requested", "group-invites-manage"),
    ):
        router.add_api_route(
            f"/api/1/groups/{{group_id}}/{path}", lister(status, permission), methods=["GET"]
        )

    @router.get("/api/1/groups/{group_id}/members/{user_id}")
    async def get_member(request: Request, group_id: str, user_id: str) -> Response:
        caller, refused = p._caller(request)
        if caller is None:
            return refused or error(MISSING_CREDENTIALS, 401)
        group, refused = p._member_group(group_id, caller)
        if group is None:
            return refused or error(NOT_A_MEMBER, 403)
        record = group["relations"].get(user_id)
        return compact(None if record is None else p._member_view(record, with_user=False))

    @router.post("/api/1/groups/{group_id}/invites")
    async def invite(request: Request, group_id: str) -> Response:
        caller, refused = p._caller(request)
        if caller is None:
            return refused or error(MISSING_CREDENTIALS, 401)
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = None
        user_id = body.get("userId") if isinstance(body, dict) else None
        if not isinstance(user_id, str) or not user_id:
            return error("userId is required", 400)  # not captured: our choice
        p.invite_requested(group_id, user_id)
        group, refused = p._member_group(group_id, caller, "group-invites-manage")
        if group is None:
            return refused or error(NOT_A_MEMBER, 403)
        target = p.users.get(user_id)
        if target is None:
            return error(USER_NOT_FOUND, 404)
        record = group["relations"].get(user_id)
        status = record["membershipStatus"] if record else None
        if status == "member":
            return error(f"User {target['displayName']} is already a member of this group.", 400)
        if status == "invited":
            return error(f"User {target['displayName']} is already invited.", 400)
        if status == "userblocked":
            return error(CANT_INVITE, 403)
        # a ban is lifted by the invite, as on VRChat
        record = p._relate(group_id, target, "invited")
        p.invite_applied(group_id, user_id)
        return success(f"Invited {target['displayName']}")

    @router.delete("/api/1/groups/{group_id}/invites/{user_id}")
    async def uninvite(request: Request, group_id: str, user_id: str) -> Response:
        caller, refused = p._caller(request)
        if caller is None:
            return refused or error(MISSING_CREDENTIALS, 401)
        group, refused = p._member_group(group_id, caller, "group-invites-manage")
        if group is None:
            return refused or error(NOT_A_MEMBER, 403)
        record = group["relations"].get(user_id)
        if record is None or record["membershipStatus"] != "invited":
            return error(CANT_UNINVITE, 400)
        del group["relations"][user_id]
        return compact(None)

    @router.put("/api/1/groups/{group_id}/requests/{user_id}")
    async def respond(request: Request, group_id: str, user_id: str) -> Response:
        caller, refused = p._caller(request)
        if caller is None:
            return refused or error(MISSING_CREDENTIALS, 401)
        group, refused = p._member_group(group_id, caller, "group-invites-manage")
        if group is None:
            return refused or error(NOT_A_MEMBER, 403)
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = None
        action = body.get("action") if isinstance(body, dict) else None
        record = group["relations"].get(user_id)
        if action not in ("accept", "reject") or record is None or record["membershipStatus"] != "requested":
            return error("Invalid request", 400)  # not captured: our choice
        if action == "accept":
            p._become_member(group_id, record)
            p.invite_applied(group_id, user_id)
        else:
            del group["relations"][user_id]
        return compact(None)

    @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    async def not_found(rest: str) -> Response:
        return compact(UNKNOWN_ROUTE, 404)


def _router(platform: VRChatSandbox) -> APIRouter:
    router = APIRouter(route_class=FirewallRoute)
    _add_routes(platform, router)
    return router


PLATFORM = VRChatSandbox
