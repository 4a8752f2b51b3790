"""VRChat API ``api/1`` (auth, users, groups), served under ``/vrchat/api/1/...``.

VRChat publishes no API documentation; what is emulated follows the community OpenAPI
specification (https://github.com/vrchatapi/specification), the ``vrchatapi`` Python client
(1.23.0) and replies people captured from the live API. The user-agent firewall runs before
everything else; logins open sessions (``auth`` cookie), accounts with TOTP get the compact 200
challenge and must verify before any other call; a ``twoFactorAuth`` cookie lets a later Basic
login skip the code. Every Basic login counts against a per-account session limit (``Created too
many sessions for that user``). Messages carry VRChat's look-alike punctuation (U+2024 for ``.``,
U+01C3 for ``!``). Where no live reply was ever captured (wrong 2FA code, unknown user, kicking a
non-member or the owner, generic 429 text), the text here is our choice and says so in a comment.

Display names are not unique (two people may share one) and ``GET /users?search=`` matches them
fuzzily: here, any display name containing the search text, ignoring case (a live search for
``xyz`` answered ``XYZ`` and names with ``Xyz`` inside), in the order people were created (exact
matches are not put first, so a client must page through all of them).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

from fastapi import Request
from fastapi.responses import Response

from airflow_invites.core.totp import totp_valid
from airflow_invites.sandbox.core import (
    FixedWindowLimiter,
    LeakyBucket,
    PlatformEnv,
    Route,
    SandboxError,
    SandboxPlatform,
    random_token,
)

BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#: Basic logins (new sessions) per account and window; calls per session (bucket)
LOGINS_PER_WINDOW, LOGIN_WINDOW_S = 10, 3600.0
CALL_RATE, CALL_BURST = 10.0, 120
COOKIE_AGE_S = 365 * 24 * 3600
#: the largest page of any listing or search (``n``)
MAX_PAGE = 100

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
DOT, BANG, COLON, EQUALS = "\u2024", "\u01c3", "\u02f8", "\uff1d"  # VRChat's look-alike . ! : =
SLOW_DOWN = f"You're doing that too much{DOT} Please slow down{DOT}"  # generic 429 text: our choice
CANT_FIND_GROUP = f"Can't find group{BANG}"
NOT_A_MEMBER = f"You're not a member{DOT}"
NO_PERMISSION = f"You don't have permission{DOT}"
CANT_INVITE = f"You can't invite that user{DOT}"
CANT_UNINVITE = f"You can't uninvite a user who wasn't invited{DOT}"
CANT_KICK_OWNER = f"You can't kick the owner of the group{DOT}"  # not captured: our choice
USER_NOT_FOUND = "User not found"  # not captured: our choice
MEMBER_DELETED = "Group member deleted!"
UNKNOWN_ROUTE = {
    "error": "The endpoint you're looking for is not implemented by our system.",
    "status_code": 404,
}
#: what a group's listings show, by the last part of their path: (relation shown, permission needed)
LISTINGS = {
    "members": ("member", None),
    "invites": ("invited", "group-invites-manage"),
    "bans": ("banned", "group-bans-manage"),
    "requests": ("requested", "group-invites-manage"),
}
#: the role the sandbox's bot account holds in the seeded group: everything an invite and removal bot needs
MANAGER_PERMISSIONS = [
    "group-invites-manage",
    "group-bans-manage",
    "group-members-remove",
    "group-members-viewall",
    "group-audit-view",
]


def compact(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON as VRChat sends it: no spaces, UTF-8, non-ASCII kept."""
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error(message: str, status: int, **extra: Any) -> Response:
    return compact({"error": {"message": message, "status_code": status, **extra}}, status)


def refused(message: str, status: int) -> SandboxError:
    """VRChat's error envelope, raised from a handler."""
    return SandboxError(error(message, status))


def success(message: str = "Ok!") -> Response:
    return compact({"success": {"message": message, "status_code": 200}})


def user_agent_ok(value: str) -> bool:
    match = UA_RE.fullmatch(value.strip())
    return bool(match and CONTACT_RE.search(match.group("contact")))


def now_iso(offset_s: float = 0.0) -> str:
    stamp = datetime.now(timezone.utc) + timedelta(seconds=offset_s)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object sent, or an empty one (VRChat reads missing fields as absent)."""
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _paging(request: Request, *, cap: bool) -> tuple[int, int]:
    """``n`` (1..100, default 60) and ``offset`` (>= 0).

    Group listings cap a larger ``n`` at 100; the user search refuses it with VRChat's own text.
    """
    raw_n = request.query_params.get("n", "60")
    try:
        n, offset = int(raw_n), int(request.query_params.get("offset", 0))
    except ValueError:
        raise refused(f"n must be a positive integer{COLON} '{raw_n}'", 400) from None
    if n < 1:
        raise refused(f"n must be a positive integer{COLON} '{raw_n}'", 400)
    if n > MAX_PAGE and not cap:
        raise refused(f"n{EQUALS}{n} is much too high{DOT} implement paging you savages{DOT}", 400)
    if offset < 0:
        raise refused("Invalid parameters", 400)  # not captured: our choice
    return min(n, MAX_PAGE), offset


def _name_matches(display_name: str, search: str) -> bool:
    """VRChat's fuzzy search as emulated here: the text anywhere in the name, ignoring case."""
    return bool(search) and search.casefold() in display_name.casefold()


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
        self.group_id = self._group("Onboarding", "ONBRD", owner=owner)
        self._relate(self.group_id, member, "member")
        self._relate(self.group_id, invited, "invited")
        self._relate(self.group_id, banned, "banned")
        self._relate(self.group_id, blocker, "userblocked")
        self._relate(self.group_id, requester, "requested")
        self.named = {
            "owner": owner["id"],
            "bot": self.bot["id"],
            "member": member["id"],
            "invited": invited["id"],
            "banned": banned["id"],
            "userblocked": blocker["id"],
            "requested": requester["id"],
        }
        self.foreign_group_id = self._group("Secret Club", "SECRT", owner=owner)
        self.limited_group_id = self._group("Helpers Only", "HELPR", owner=owner)
        self._relate(self.limited_group_id, self.bot, "member", role="helper")
        self._relate(self.group_id, self.bot, "member", role="manager")  # last: the ids above stay as seeded

    def routes(self) -> list[Route]:
        """The real API's paths, each behind VRChat's user-agent firewall; unknown paths last."""
        table = [
            ("GET", "/api/1/config", self._config),
            ("GET", "/api/1/auth/user", self._current_user_or_login),
            ("POST", "/api/1/auth/twofactorauth/{kind}/verify", self._verify),
            ("GET", "/api/1/auth", self._verify_auth),
            ("PUT", "/api/1/logout", self._logout),
            ("GET", "/api/1/users", self._search_users),
            ("GET", "/api/1/users/{user_id}", self._get_user),
            ("GET", "/api/1/users/{user_id}/groups", self._user_groups),
            ("GET", "/api/1/groups/{group_id}", self._get_group),
            ("GET", "/api/1/groups/{group_id}/members/{user_id}", self._get_member),
            ("DELETE", "/api/1/groups/{group_id}/members/{user_id}", self._kick),
            ("GET", "/api/1/groups/{group_id}/{listing}", self._listing),
            ("POST", "/api/1/groups/{group_id}/invites", self._invite),
            ("DELETE", "/api/1/groups/{group_id}/invites/{user_id}", self._uninvite),
            ("PUT", "/api/1/groups/{group_id}/requests/{user_id}", self._respond),
            *(
                (method, "/{rest:path}", self._unknown)
                for method in ("GET", "POST", "PUT", "DELETE", "PATCH")
            ),
        ]
        return [Route(method, path, self._firewalled(handler)) for method, path, handler in table]

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
            "manager": {  # an id derived from the group's: the seeded ids stay as they were
                "id": f"grol_{uuid.uuid5(uuid.NAMESPACE_URL, group_id + '/manager')}",
                "name": "Manager",
                "permissions": list(MANAGER_PERMISSIONS),
            },
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
        handles = [f"name:{self.users[user]['displayName']}" for user in self.newcomers]
        return PlatformEnv(connection, self.group_id, list(self.newcomers), handles)

    def create_people(
        self, count: int, group: str | None = None, handles: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """People named ``Person <n>``, or all ``handles["display_name"]``: VRChat allows shared names."""
        if group is not None and group not in self.groups:
            raise KeyError(group)
        unknown = set(handles or {}) - {"display_name"}
        if unknown:
            raise ValueError(f"handles: vrchat people have a display_name only, not {sorted(unknown)}")
        made = []
        for _ in range(count):
            self.people_made += 1
            person = self._user((handles or {}).get("display_name") or f"Person {self.people_made}")
            if group is not None:
                self._relate(group, person, "member")
            made.append({"id": person["id"], "handles": {"display_name": person["displayName"]}})
        return made

    def members(self, group: str) -> dict[str, list[str]]:
        """Members, pending invitations, and the protected: the owner and the sandbox's bot account."""
        found = self.groups[group]
        relations = found["relations"].values()
        listed = {
            kind: [r["userId"] for r in relations if r["membershipStatus"] == status]
            for kind, status in (("members", "member"), ("invited", "invited"))
        }
        listed["protected"] = [u for u in (found["ownerId"], self.bot["id"]) if u in listed["members"]]
        return listed

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

    # -- gates -----------------------------------------------------------------------------------

    def _firewalled(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """VRChat's WAF: a request without a descriptive User-Agent is refused before anything else."""

        async def gated(request: Request) -> Response:
            if not user_agent_ok(request.headers.get("user-agent", "")):
                raise SandboxError(error(WAF_MESSAGE, 403, waf_code=13799))
            return await handler(request)

        gated.__name__ = handler.__name__
        return gated

    def _session(self, request: Request) -> dict[str, Any] | None:
        return self.sessions.get(request.cookies.get("auth", ""))

    def _caller(self, request: Request) -> dict[str, Any]:
        """The auth gate of every API call: the logged-in, verified user; then the per-session call limit."""
        session = self._session(request)
        if session is None:
            raise refused(MISSING_CREDENTIALS, 401)
        if not session["verified"]:
            raise refused(REQUIRES_2FA, 401)
        if self.call_bucket.hit(session["cookie"], self.limit_scale()) is not None:
            raise refused(SLOW_DOWN, 429)
        return self.users[session["user"]]

    def _member_group(
        self, request: Request, caller: dict[str, Any], permission: str | None = None
    ) -> dict[str, Any]:
        """The path's group, which the caller belongs to (403 otherwise, also for unknown ids, as live)."""
        group = self.groups.get(request.path_params["group_id"])
        if group is None or group["relations"].get(caller["id"], {}).get("membershipStatus") != "member":
            raise refused(NOT_A_MEMBER, 403)
        if permission is not None and not self._may(group, caller["id"], permission):
            raise refused(NO_PERMISSION, 403)
        return group

    def _may(self, group: dict[str, Any], user_id: str, permission: str) -> bool:
        granted = self._permissions(group, user_id)
        return "*" in granted or permission in granted

    # -- auth ------------------------------------------------------------------------------------

    async def _config(self, request: Request) -> Response:
        return compact(
            {
                "address": "sandbox",
                "clientApiKey": "JlE5Jldo5Jibnk5O5hTx6XVqsJu4WJ26",
                "serverName": "sandbox",
            }
        )

    async def _current_user_or_login(self, request: Request) -> Response:
        """A valid cookie wins over Basic; Basic opens a new session (counted against the limit)."""
        session = self._session(request)
        if session is not None:
            known = self.users[session["user"]]
            if not session["verified"]:
                return compact({"requiresTwoFactorAuth": self._challenge(known)})
            return compact(self._current_user(known))
        credentials = _basic(request)
        if credentials is None:
            raise refused(MISSING_CREDENTIALS, 401)
        name, password = credentials
        user = next(
            (
                u
                for u in self.users.values()
                if u["password"] and name.lower() in (u["username"].lower(), u["email"].lower())
            ),
            None,
        )
        if user is None or user["password"] != password:
            raise refused(INVALID_LOGIN, 401)
        if self.login_limiter.hit(user["id"], self.limit_scale()) is not None:
            raise refused(TOO_MANY_SESSIONS, 429)
        cookie = self._issue(f"authcookie_{uuid.uuid4()}")
        remembered = self.devices.get(request.cookies.get("twoFactorAuth", "")) == user["id"]
        methods = self._challenge(user)
        session = {"cookie": cookie, "user": user["id"], "verified": remembered or not methods}
        if user["email_otp"] and not remembered:
            session["email_code"] = f"{random.SystemRandom().randint(0, 999999):06d}"
        self.sessions[cookie] = session
        body = self._current_user(user) if session["verified"] else {"requiresTwoFactorAuth": methods}
        response = compact(body)
        self._set_cookie(response, "auth", cookie)
        return response

    async def _verify(self, request: Request) -> Response:
        """``POST /auth/twofactorauth/{totp|otp|emailotp}/verify`` with the half-open login's cookie."""
        kind = request.path_params["kind"]
        if kind not in ("totp", "otp", "emailotp"):
            return await self._unknown(request)
        session = self._session(request)
        if session is None:
            raise refused(MISSING_CREDENTIALS, 401)
        user = self.users[session["user"]]
        code = str((await _body(request)).get("code", ""))
        if kind == "totp":
            ok = bool(user["totp_secret"]) and totp_valid(user["totp_secret"], code)
        elif kind == "otp":
            ok = code.replace("-", "").lower() in user["recovery_codes"]
            if ok:
                user["recovery_codes"].remove(code.replace("-", "").lower())
        else:
            ok = bool(session.get("email_code")) and code == session["email_code"]
        if not ok:
            raise refused(INVALID_CODE, 400)
        session["verified"] = True
        device = self._issue(".".join(random_token(random.Random(), n, B64URL) for n in (36, 120, 43)))
        self.devices[device] = user["id"]
        response = compact({"verified": True} if kind == "emailotp" else {"verified": True, "enabled": True})
        self._set_cookie(response, "twoFactorAuth", device)
        return response

    async def _verify_auth(self, request: Request) -> Response:
        self._caller(request)
        return compact({"ok": True, "token": request.cookies.get("auth", "")})

    async def _logout(self, request: Request) -> Response:
        self._caller(request)
        self.sessions.pop(request.cookies.get("auth", ""), None)
        response = success("Ok!")
        self._set_cookie(response, "auth", "", expire=True)
        return response

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

    def _challenge(self, user: dict[str, Any]) -> list[str]:
        if user["totp_secret"]:
            return ["totp", "otp"]
        return ["emailOtp"] if user["email_otp"] else []

    # -- users -----------------------------------------------------------------------------------

    async def _search_users(self, request: Request) -> Response:
        """``GET /users?search=``: LimitedUserSearch objects whose display name contains the text."""
        self._caller(request)
        n, offset = _paging(request, cap=False)
        search = request.query_params.get("search", "")
        found = [u for u in self.users.values() if _name_matches(u["displayName"], search)]
        return compact([self._search_view(u) for u in found[offset : offset + n]])

    async def _get_user(self, request: Request) -> Response:
        self._caller(request)
        return compact(self._public_user(self._target(request)))

    async def _user_groups(self, request: Request) -> Response:
        caller = self._caller(request)
        user_id = self._target(request)["id"]
        rows = []
        for group in self.groups.values():
            record = group["relations"].get(user_id)
            if record is None or record["membershipStatus"] != "member" or record["visibility"] == "hidden":
                continue
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
                    "memberCount": self._member_count(group),
                    "privacy": group["privacy"],
                }
            )
        return compact(rows)

    def _target(self, request: Request) -> dict[str, Any]:
        """The path's user, or VRChat's 404."""
        user = self.users.get(request.path_params["user_id"])
        if user is None:
            raise refused(USER_NOT_FOUND, 404)
        return user

    # -- groups ----------------------------------------------------------------------------------

    async def _get_group(self, request: Request) -> Response:
        caller = self._caller(request)
        group = self.groups.get(request.path_params["group_id"])
        if group is None:
            raise refused(CANT_FIND_GROUP, 404)
        return compact(self._group_view(group, caller))

    async def _listing(self, request: Request) -> Response:
        """``GET /groups/{id}/members|invites|bans|requests``: never the caller; members without
        ``group-members-viewall`` only the caller's friends (none in the sandbox)."""
        listing = request.path_params["listing"]
        if listing not in LISTINGS:
            return await self._unknown(request)
        caller = self._caller(request)
        status, permission = LISTINGS[listing]
        group = self._member_group(request, caller, permission)
        n, offset = _paging(request, cap=True)
        if listing == "members" and not self._may(group, caller["id"], "group-members-viewall"):
            return compact([])
        rows = [
            r
            for r in group["relations"].values()
            if r["membershipStatus"] == status and r["userId"] != caller["id"]
        ]
        if request.query_params.get("sort") == "joinedAt:desc":
            rows.reverse()
        return compact([self._member_view(r, with_user=True) for r in rows[offset : offset + n]])

    async def _get_member(self, request: Request) -> Response:
        """One person's relation to the group (any status, no ``user``), or 200 ``null`` for none."""
        group = self._member_group(request, self._caller(request))
        user_id = self._target(request)["id"]
        record = group["relations"].get(user_id)
        return compact(None if record is None else self._member_view(record, with_user=False))

    async def _invite(self, request: Request) -> Response:
        caller = self._caller(request)
        user_id = (await _body(request)).get("userId")
        if not isinstance(user_id, str) or not user_id:
            raise refused("userId is required", 400)  # not captured: our choice
        group_id = request.path_params["group_id"]
        self.invite_requested(group_id, user_id)
        group = self._member_group(request, caller, "group-invites-manage")
        target = self.users.get(user_id)
        if target is None:
            raise refused(USER_NOT_FOUND, 404)
        record = group["relations"].get(user_id)
        status = record["membershipStatus"] if record else None
        if status == "member":
            raise refused(f"User {target['displayName']} is already a member of this group.", 400)
        if status == "invited":
            raise refused(f"User {target['displayName']} is already invited.", 400)
        if status == "userblocked":
            raise refused(CANT_INVITE, 403)
        self._relate(group_id, target, "invited")  # a ban is lifted by the invite, as on VRChat
        self.invite_applied(group_id, user_id)
        return success(f"Invited {target['displayName']}")

    async def _uninvite(self, request: Request) -> Response:
        """``DELETE /groups/{id}/invites/{userId}``: 200, or 400 for someone not invited."""
        self._end_relation(request, "group-invites-manage", "invited", refused(CANT_UNINVITE, 400))
        return compact(None)

    async def _kick(self, request: Request) -> Response:
        """``DELETE /groups/{id}/members/{userId}``: needs "Remove Group Members"; the owner stays.

        Someone who is not a member (never joined, invited, banned) gets the 403 ``You're not a
        member.`` the specification documents for this call (which membership it means was never
        captured: our choice). A ban is a separate relation and is left as it is.
        """
        self._end_relation(request, "group-members-remove", "member", refused(NOT_A_MEMBER, 403))
        return success(MEMBER_DELETED)

    def _end_relation(self, request: Request, permission: str, status: str, otherwise: SandboxError) -> None:
        """A cancel or a kick: counted, checked (the caller may; the person holds ``status``; not the
        owner), then the person's relation to the group ends."""
        caller = self._caller(request)
        group_id, user_id = request.path_params["group_id"], request.path_params["user_id"]
        self.removal_requested(group_id, user_id)
        group = self._member_group(request, caller, permission)
        record = group["relations"].get(user_id)
        if record is None or record["membershipStatus"] != status:
            raise otherwise
        if user_id == group["ownerId"]:
            raise refused(CANT_KICK_OWNER, 403)
        del group["relations"][user_id]
        self.removal_applied(group_id, user_id)

    async def _respond(self, request: Request) -> Response:
        caller = self._caller(request)
        group = self._member_group(request, caller, "group-invites-manage")
        user_id = request.path_params["user_id"]
        action = (await _body(request)).get("action")
        record = group["relations"].get(user_id)
        if action not in ("accept", "reject") or record is None or record["membershipStatus"] != "requested":
            raise refused("Invalid request", 400)  # not captured: our choice
        if action == "accept":
            self._become_member(group["id"], record)
            self.invite_applied(group["id"], user_id)
        else:
            del group["relations"][user_id]
        return compact(None)

    async def _unknown(self, request: Request) -> Response:
        return compact(UNKNOWN_ROUTE, 404)

    def _become_member(self, group_id: str, record: dict[str, Any]) -> None:
        group = self.groups[group_id]
        record.update(
            membershipStatus="member",
            joinedAt=now_iso(),
            bannedAt=None,
            roleIds=[group["roles"]["member"]["id"]],
            role="member",
        )

    # -- views -----------------------------------------------------------------------------------

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

    def _search_view(self, user: dict[str, Any]) -> dict[str, Any]:
        """LimitedUserSearch: what ``GET /users?search=`` shows of a person (no e-mail, no username)."""
        full = self._public_user(user)
        keys = (
            "bio", "bioLinks", "currentAvatarImageUrl", "currentAvatarTags", "currentAvatarThumbnailImageUrl",
            "developerType", "displayName", "id", "isFriend", "last_platform", "profilePicOverride",
            "pronouns", "status", "statusDescription", "tags", "userIcon",
        )  # fmt: skip
        return {k: full[k] for k in keys}

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

    def _member_count(self, group: dict[str, Any]) -> int:
        return sum(r["membershipStatus"] == "member" for r in group["relations"].values())

    def _group_view(self, group: dict[str, Any], caller: dict[str, Any]) -> dict[str, Any]:
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
            "memberCount": self._member_count(group),
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


PLATFORM = VRChatSandbox
