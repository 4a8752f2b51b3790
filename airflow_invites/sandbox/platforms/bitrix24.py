"""Bitrix24 REST (workgroups), as ``shared/platforms/bitrix24.md`` describes it.

Served under ``/bitrix24``: inbound webhooks at ``/bitrix24/rest/<user>/<code>/<method>``, OAuth
calls at ``/bitrix24/rest/<method>`` (``auth``/``access_token`` parameter or a Bearer header), and
the OAuth server's ``/bitrix24/oauth/token/``. Parameters are parsed as PHP parses them
(``parse_str``, ``(int)``), replies are ``{"result", "time"}`` or ``{"error", "error_description"}``
with the portal's status codes; a leaky bucket (50, 2/s per client IP) and a per-method operating
budget limit the calls. Nothing but Bitrix24 here.
"""

from __future__ import annotations

import json
import random
import re
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from airflow_invites.sandbox.core import LeakyBucket, PlatformEnv, SandboxPlatform, random_token

BUCKET_BURST, BUCKET_RATE = 50, 2.0
OPERATING_LIMIT_S, OPERATING_WINDOW_S = 480.0, 600.0
BATCH_MAX = 50
PAGE = 50
ACCESS_TOKEN_TTL = 3600
CODE_ALPHABET = string.ascii_lowercase + string.digits
TOKEN_ALPHABET = string.ascii_lowercase + string.digits
MEMBER_ROLES = ("A", "E", "K")
USER_SCOPES = {"user", "user_brief", "user_basic"}
FULL_SCOPES = ["sonet_group", "socialnetwork", "user", "task"]
JSON_TYPE = "application/json; charset=utf-8"

NOT_FOUND = ("ERROR_METHOD_NOT_FOUND", "Method not found!")


class Fail(Exception):
    """An error reply: HTTP status, ``error`` code, ``error_description``."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


def _bad(description: str) -> Fail:
    """The ``sonet_group.*`` business errors: HTTP 400 with an empty ``error`` code."""
    return Fail(400, "", description)


# -- PHP semantics ---------------------------------------------------------------------------------


def php_int(value: Any) -> int:
    """PHP ``(int)``: "12abc" -> 12, "abc" -> 0, "1.9" -> 1, arrays -> 0/1."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, (list, dict)):
        return 1 if value else 0
    if value is None:
        return 0
    match = re.match(r"\s*([+-]?\d+)", str(value))
    return int(match.group(1)) if match else 0


def php_truthy(value: Any) -> bool:
    """PHP truthiness: "0", "", 0, false, null and empty arrays are false; "false" is true."""
    if isinstance(value, str):
        return value not in ("", "0")
    return bool(value)


def _next_index(target: dict[str, Any]) -> str:
    numbers = [int(k) for k in target if re.fullmatch(r"-?\d+", k)]
    return str(max(numbers) + 1 if numbers else 0)


def parse_str_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """PHP ``parse_str`` on decoded pairs: ``a[]``, ``a[0]``, ``a[b][c]``; plain repeats keep the last."""
    out: dict[str, Any] = {}
    for raw_key, value in pairs:
        bracket = raw_key.find("[")
        if bracket > 0 and "]" in raw_key[bracket:]:
            base = raw_key[:bracket]
            parts = re.findall(r"\[([^\]]*)\]", raw_key[bracket:])
        else:
            base, parts = raw_key, []
        base = base.replace(".", "_").replace(" ", "_")
        if not base:
            continue
        keys = [base, *parts]
        target = out
        for depth, key in enumerate(keys):
            last = depth == len(keys) - 1
            if key == "" and depth > 0:
                key = _next_index(target)
            if last:
                target[key] = value
            else:
                child = target.get(key)
                if not isinstance(child, dict):
                    child = {}
                    target[key] = child
                target = child
    return out


def parse_str(query: str) -> dict[str, Any]:
    pairs = []
    for chunk in query.split("&"):
        if not chunk:
            continue
        key, _, value = chunk.partition("=")
        pairs.append((unquote_plus(key), unquote_plus(value)))
    return parse_str_pairs(pairs)


def as_list(value: Any) -> list[Any]:
    """A PHP array (dict from a form, list from JSON) as its values; a scalar as one item."""
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return value
    return [value]


def php_array(items: dict[str, Any]) -> Any:
    """``json_encode`` of a PHP array: empty -> [], keys 0..n-1 in order -> list, else an object."""
    if not items:
        return []
    if list(items) == [str(i) for i in range(len(items))]:
        return list(items.values())
    return items


def upper_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k).upper(): v for k, v in value.items()}
    return value


# -- state -----------------------------------------------------------------------------------------


@dataclass
class Caller:
    """Who is calling: the webhook's or the token's user, and the granted scopes."""

    user_id: int
    scopes: list[str]
    key: str  # operating-budget key: the webhook or the application
    kind: str  # "webhook" or "token"


@dataclass
class Relation:
    id: int
    role: str  # A owner, E moderator, K member, Z invited / asked, T banned
    initiated_by: str = "G"


@dataclass
class Group:
    id: int
    name: str
    owner_id: int
    visible: bool = True
    opened: bool = False
    initiate_perms: str = "K"
    members: dict[int, Relation] = field(default_factory=dict)


@dataclass
class AccessToken:
    user_id: int
    expires: float
    scopes: list[str]


class Bitrix24Sandbox(SandboxPlatform):
    name = "bitrix24"

    def reset(self) -> None:
        self.rng = random.Random("bitrix24-seed")
        self.users: dict[int, dict[str, Any]] = {}
        self.groups: dict[int, Group] = {}
        self.webhooks: dict[tuple[int, str], list[str]] = {}
        self.no_invites: set[int] = set()  # people whose privacy settings forbid invitations
        self.relation_seq = 100
        self.bucket = LeakyBucket(BUCKET_RATE, BUCKET_BURST)
        self.operating: dict[tuple[str, str], list[tuple[float, float]]] = {}
        #: seconds a method is billed per call (tests raise it to reach the operating limit)
        self.processing_override: dict[str, float] = {}
        self.rest_available = True  # False: the plan has no REST (401 ACCESS_DENIED)
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, int] = {}  # live refresh token -> user id
        self.issued: list[str] = []
        self.next_user_id = 1

        self.admin = self._user("Marina", "Orlova", admin=True)
        moderator = self._user("Pavel", "Sokolov")
        member = self._user("Irina", "Kuznetsova")
        fired_member = self._user("Oleg", "Popov", active=False)
        self.member_user = self._user("Nikolai", "Lebedev")
        other_owner = self._user("Svetlana", "Morozova")
        self.newcomers = [
            self._user(first, last)
            for first, last in (
                ("Anna", "Volkova"),
                ("Dmitry", "Novikov"),
                ("Elena", "Fedorova"),
                ("Sergey", "Mikhailov"),
                ("Olga", "Petrova"),
                ("Ivan", "Smirnov"),
            )
        ]
        self.fired_user = self._user("Boris", "Zaitsev", active=False)
        self.private_user = self._user("Vera", "Egorova")
        self.no_invites.add(self.private_user)

        self.group_id = 5
        group = Group(self.group_id, "Onboarding", self.admin, initiate_perms="E")
        self.groups[group.id] = group
        self._relate(group, self.admin, "A")
        self._relate(group, moderator, "E")
        self._relate(group, member, "K")
        self._relate(group, fired_member, "K")
        self._relate(group, self.member_user, "K")
        hidden = Group(7, "Board", other_owner, visible=False, initiate_perms="A")
        self.groups[hidden.id] = hidden
        self._relate(hidden, other_owner, "A")
        self.hidden_group_id = hidden.id

        self.admin_code = self._code()
        self.webhooks[(self.admin, self.admin_code)] = ["sonet_group", "socialnetwork", "user"]
        self.member_code = self._code()
        self.webhooks[(self.member_user, self.member_code)] = ["sonet_group", "socialnetwork", "user"]
        self.narrow_code = self._code()  # a webhook created without the sonet_group scope
        self.webhooks[(self.admin, self.narrow_code)] = ["user", "task"]
        self.client_id = (
            f"local.{random_token(self.rng, 14, '0123456789abcdef')}.{self.rng.randint(10**7, 10**8)}"
        )
        self.client_secret = random_token(self.rng, 50)
        self.first_refresh_token = self._new_refresh_token(self.admin)

    # -- seeding ---------------------------------------------------------------------------------

    def _code(self) -> str:
        code = random_token(self.rng, 16, CODE_ALPHABET)
        self.issued.append(code)
        return code

    def _user(self, first: str, last: str, *, active: bool = True, admin: bool = False) -> int:
        user_id = self.next_user_id
        self.next_user_id += 1
        self.users[user_id] = {
            "ID": str(user_id),
            "XML_ID": str(self.rng.randint(10**7, 10**8)),
            "ACTIVE": active,
            "NAME": first,
            "LAST_NAME": last,
            "SECOND_NAME": "",
            "EMAIL": f"{first}.{last}{user_id}@example.test".lower(),
            "LAST_LOGIN": None,
            "DATE_REGISTER": "2025-01-15T09:00:00+03:00",
            "IS_ONLINE": "N",
            "TIME_ZONE_OFFSET": "0",
            "PERSONAL_GENDER": "",
            "WORK_POSITION": "",
            "UF_DEPARTMENT": [1],
            "USER_TYPE": "employee",
            "_admin": admin,
        }
        return user_id

    def _relate(self, group: Group, user_id: int, role: str, initiated_by: str = "G") -> None:
        self.relation_seq += 1
        group.members[user_id] = Relation(self.relation_seq, role, initiated_by)

    def _new_refresh_token(self, user_id: int) -> str:
        token = random_token(self.rng, 64, TOKEN_ALPHABET)
        self.refresh_tokens[token] = user_id
        self.issued.append(token)
        return token

    def expire_access_tokens(self) -> None:
        """Every access token issued so far expires now (tests)."""
        for token in self.access_tokens.values():
            token.expires = 0.0

    # -- admin hooks -----------------------------------------------------------------------------

    def env(self, base_url: str) -> PlatformEnv:
        connection = {
            "conn_type": "bitrix24",
            "host": base_url,
            "extra": {
                "auth_type": "webhook",
                "webhook_user_id": str(self.admin),
                "webhook_code": self.admin_code,
            },
        }
        return PlatformEnv(
            connection=connection, group=str(self.group_id), users=[str(u) for u in self.newcomers]
        )

    def oauth_connection(self, base_url: str) -> dict[str, Any]:
        """The OAuth form of the connection (the token server is this sandbox too)."""
        return {
            "conn_type": "bitrix24",
            "host": base_url,
            "extra": {
                "auth_type": "oauth",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "refresh_token": self.first_refresh_token,
                "oauth_server": base_url,
            },
        }

    def add_people(self, count: int, group: str | None = None) -> list[str]:
        target = self.groups[php_int(group)] if group is not None else None
        made = [self._user("Person", str(self.next_user_id)) for _ in range(count)]
        if target is not None:
            for user_id in made:
                self._relate(target, user_id, "K")
        return [str(user_id) for user_id in made]

    def accept(self, group: str, user: str) -> bool:
        found = self.groups.get(php_int(group))
        relation = found.members.get(php_int(user)) if found else None
        if relation is None or relation.role != "Z":
            return False
        relation.role = "K"
        return True

    def secrets(self) -> list[str]:
        return [*self.issued, self.client_secret]

    def throttle_response(self, request: Request) -> Response:
        # Bitrix24 gives no wait hint with QUERY_LIMIT_EXCEEDED: clients back off on their own
        return self._error(Fail(503, "QUERY_LIMIT_EXCEEDED", "Too many requests"))

    def server_error_response(self, request: Request) -> Response:
        return self._error(Fail(500, "INTERNAL_SERVER_ERROR", "Internal server error"))

    # -- replies ---------------------------------------------------------------------------------

    @staticmethod
    def _error(fail: Fail) -> Response:
        return JSONResponse(
            {"error": fail.error, "error_description": fail.description},
            status_code=fail.status,
            media_type=JSON_TYPE,
        )

    def _time(
        self, start: float, processing: float, reset_at: int | None, operating: float
    ) -> dict[str, Any]:
        finish = time.time()
        block: dict[str, Any] = {
            "start": round(start, 4),
            "finish": round(finish, 4),
            "duration": round(finish - start, 4),
            "processing": round(processing, 4),
            "date_start": datetime.fromtimestamp(int(start)).astimezone().isoformat(),
            "date_finish": datetime.fromtimestamp(int(finish)).astimezone().isoformat(),
            "operating": round(operating, 4),
        }
        if reset_at is not None:
            block["operating_reset_at"] = reset_at
        return block

    # -- routes ----------------------------------------------------------------------------------

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.api_route("/oauth/token", methods=["GET", "POST"])
        @router.api_route("/oauth/token/", methods=["GET", "POST"])
        async def token(request: Request) -> Response:
            params = await self._params(request)
            return self._token(params)

        @router.api_route("/rest/{path:path}", methods=["GET", "POST"])
        async def rest(request: Request, path: str) -> Response:
            try:
                params = await self._params(request)
            except Fail as fail:
                return self._error(fail)
            return self._rest(request, path, params)

        @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
        async def not_found(rest: str) -> Response:
            return Response("<html><body><h1>404 Not Found</h1></body></html>", 404, media_type="text/html")

        return router

    async def _params(self, request: Request) -> dict[str, Any]:
        """Query string and body merged as the portal merges them (the body wins)."""
        params = parse_str(request.url.query)
        content_type = request.headers.get("content-type", "").lower()
        raw = await request.body()
        if not raw:
            return params
        if "application/json" in content_type:
            try:
                body = json.loads(raw)
            except ValueError:
                raise Fail(400, "ERROR_ARGUMENT", "Invalid JSON in request body") from None
            if isinstance(body, dict):
                params.update(body)
        elif "multipart/form-data" in content_type:
            form = await request.form()
            pairs = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
            params.update(parse_str_pairs(pairs))
        else:  # x-www-form-urlencoded (also what PHP does without a content type)
            params.update(parse_str(raw.decode("utf-8", "replace")))
        return params

    def _token(self, params: dict[str, Any]) -> Response:
        def oauth_error(status: int, error: str, description: str) -> Response:
            return JSONResponse(
                {"error": error, "error_description": description}, status, media_type=JSON_TYPE
            )

        if params.get("client_id") != self.client_id or params.get("client_secret") != self.client_secret:
            return oauth_error(401, "invalid_client", "Invalid client credentials")
        grant = params.get("grant_type")
        if grant != "refresh_token":
            if grant == "authorization_code":
                return oauth_error(400, "invalid_grant", "Invalid authorization code")
            return oauth_error(400, "invalid_request", "Invalid grant_type")
        user_id = self.refresh_tokens.pop(str(params.get("refresh_token", "")), None)
        if user_id is None:  # unknown, or spent by an earlier refresh
            return oauth_error(400, "invalid_grant", "Invalid refresh token")
        access = random_token(self.rng, 70, TOKEN_ALPHABET)
        expires = int(time.time()) + ACCESS_TOKEN_TTL
        self.access_tokens[access] = AccessToken(user_id, expires, list(FULL_SCOPES))
        self.issued.append(access)
        refresh = self._new_refresh_token(user_id)
        return JSONResponse(
            {
                "access_token": access,
                "expires": expires,
                "expires_in": ACCESS_TOKEN_TTL,
                "scope": ",".join(FULL_SCOPES),
                "domain": "oauth.bitrix.info",
                "server_endpoint": "https://oauth.bitrix.info/rest/",
                "status": "L",
                "client_endpoint": "https://sandbox.bitrix24.test/rest/",
                "member_id": "a223c6b3710f85df22e9377d6c4f7553",
                "user_id": user_id,
                "refresh_token": refresh,
            },
            media_type=JSON_TYPE,
        )

    def _rest(self, request: Request, path: str, params: dict[str, Any]) -> Response:
        started = time.time()
        parts = [p for p in path.split("/") if p]
        if len(parts) == 3:
            uid, code, method = parts
        elif len(parts) == 1:
            uid, code, method = None, None, parts[0]
        else:
            return self._error(Fail(404, *NOT_FOUND))
        method = method.lower().removesuffix(".json")
        handler = self._methods().get(method)
        if handler is None and method != "batch":
            return self._error(Fail(404, *NOT_FOUND))
        try:
            caller = self._authenticate(request, uid, code, params)
            wait = self.bucket.hit(request.client.host if request.client else "?", self.limit_scale())
            if wait is not None:
                raise Fail(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
            if method == "batch":
                return self._success(self._batch(caller, params), {}, started, 0.0, None, 0.0)
            result, extra, processing, reset_at, operating = self._run(caller, method, params)
        except Fail as fail:
            return self._error(fail)
        return self._success(result, extra, started, processing, reset_at, operating)

    def _success(
        self,
        result: Any,
        extra: dict[str, Any],
        started: float,
        processing: float,
        reset_at: int | None,
        operating: float,
    ) -> Response:
        body = {"result": result, **extra, "time": self._time(started, processing, reset_at, operating)}
        return JSONResponse(body, media_type=JSON_TYPE)

    def _authenticate(
        self, request: Request, uid: str | None, code: str | None, params: dict[str, Any]
    ) -> Caller:
        if uid is not None and code is not None:
            scopes = self.webhooks.get((php_int(uid), code)) if uid.isdigit() else None
            user = self.users.get(php_int(uid))
            if scopes is None or user is None:
                raise Fail(401, "INVALID_CREDENTIALS", "Invalid request credentials")
            if not user["ACTIVE"]:
                raise Fail(401, "authorization_error", "Unable to authorize user")
            caller = Caller(php_int(uid), scopes, f"webhook:{uid}:{code}", "webhook")
        else:
            token = params.get("auth") or params.get("access_token")
            header = request.headers.get("authorization", "")
            if not token and header.lower().startswith("bearer "):
                token = header[7:].strip()
            if not token:
                raise Fail(401, "NO_AUTH_FOUND", "Wrong authorization data")
            found = self.access_tokens.get(str(token))
            if found is None:
                raise Fail(401, "invalid_token", "Unable to get application by token")
            if found.expires <= time.time():
                raise Fail(401, "expired_token", "The access token provided has expired")
            caller = Caller(found.user_id, found.scopes, f"app:{self.client_id}", "token")
        if not self.rest_available:
            raise Fail(401, "ACCESS_DENIED", "REST is available only by subscription.")
        return caller

    # -- methods ---------------------------------------------------------------------------------

    def _methods(self) -> dict[str, tuple[set[str], Callable[[Caller, dict[str, Any]], Any]]]:
        sonet = {"sonet_group"}
        return {
            "sonet_group.user.invite": (sonet, self._invite),
            "sonet_group.user.get": (sonet, self._group_members),
            "sonet_group.user.add": (sonet, self._add),
            "sonet_group.user.delete": (sonet, self._delete),
            "sonet_group.user.groups": (sonet, self._my_groups),
            "sonet_group.get": (sonet, self._groups_list),
            "socialnetwork.api.workgroup.get": ({"socialnetwork"}, self._workgroup_get),
            "user.get": (USER_SCOPES, self._user_get),
            "user.current": (USER_SCOPES, self._user_current),
            "scope": (set(), lambda caller, params: list(caller.scopes)),
        }

    def _run(
        self, caller: Caller, method: str, params: dict[str, Any]
    ) -> tuple[Any, dict[str, Any], float, int | None, float]:
        """One method call: scope check, operating budget, the handler."""
        scopes, handler = self._methods()[method]
        if scopes and not scopes & set(caller.scopes):
            token = "webhook" if caller.kind == "webhook" else "access token"
            raise Fail(
                401,
                "insufficient_scope",
                f"The request requires higher privileges than provided by the {token}",
            )
        now = time.time()
        key = (caller.key, method)
        spent = [(t, s) for t, s in self.operating.get(key, []) if t > now - OPERATING_WINDOW_S]
        self.operating[key] = spent
        used = sum(s for _, s in spent)
        limit = OPERATING_LIMIT_S / self.limit_scale() if self.limit_scale() > 0 else None
        if limit is not None and used > limit:
            raise Fail(429, "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.")
        clock = time.perf_counter()
        result = handler(caller, params)
        extra: dict[str, Any] = {}
        if isinstance(result, tuple):
            result, extra = result
        processing = self.processing_override.get(method, time.perf_counter() - clock)
        spent.append((now, processing))
        reset_at = int(min(t for t, _ in spent) + OPERATING_WINDOW_S)
        return result, extra, processing, reset_at, used + processing

    def _visible(self, group: Group, caller: Caller, *, admin_sees_all: bool) -> bool:
        relation = group.members.get(caller.user_id)
        is_member = relation is not None and relation.role in MEMBER_ROLES
        return group.visible or is_member or (admin_sees_all and self._is_admin(caller.user_id))

    def _is_admin(self, user_id: int) -> bool:
        return bool(self.users.get(user_id, {}).get("_admin"))

    def _may_invite(self, group: Group, user_id: int) -> bool:
        if self._is_admin(user_id):
            return True
        relation = group.members.get(user_id)
        role = relation.role if relation else ""
        allowed = {"A": ("A",), "E": ("A", "E"), "K": MEMBER_ROLES}.get(group.initiate_perms, ("A",))
        return role in allowed

    def _invite(self, caller: Caller, params: dict[str, Any]) -> list[Any]:
        group_id = php_int(params.get("GROUP_ID"))
        if group_id <= 0:
            raise _bad("Wrong group ID")
        raw = params.get("USER_ID")
        if isinstance(raw, (list, dict)):
            if not raw:
                raise _bad("Wrong user IDs")
            wanted = as_list(raw)
        else:
            if php_int(raw) <= 0:
                raise _bad("Wrong user IDs")
            wanted = [raw]
        group = self.groups.get(group_id)
        if group is None or not self._visible(group, caller, admin_sees_all=False):
            raise _bad("Socialnetwork group not found")
        may_invite = self._may_invite(group, caller.user_id)
        invited: list[Any] = []
        for item in wanted:
            user_id = php_int(item)
            if user_id <= 0:
                continue
            self.invite_requested(str(group.id), str(user_id))
            if (
                user_id == caller.user_id
                or user_id in group.members
                or not may_invite
                or user_id not in self.users
                or user_id in self.no_invites
            ):
                continue
            self._relate(group, user_id, "Z", "G")
            self.invite_applied(str(group.id), str(user_id))
            invited.append(item)
        return invited

    def _group_members(self, caller: Caller, params: dict[str, Any]) -> list[dict[str, str]]:
        group_id = php_int(params.get("ID"))
        if group_id <= 0:
            raise _bad("Wrong socialnetwork group ID")
        group = self.groups.get(group_id)
        if group is None or not self._visible(group, caller, admin_sees_all=True):
            raise _bad("Socialnetwork group not found")
        rows = sorted(group.members.items(), key=lambda item: item[1].id)
        return [
            {"USER_ID": str(uid), "ROLE": rel.role}
            for uid, rel in rows
            if rel.role in MEMBER_ROLES and self.users[uid]["ACTIVE"]
        ]

    def _workgroup_get(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        inner = params.get("params")
        group_id = php_int(inner.get("groupId")) if isinstance(inner, dict) else 0
        if group_id <= 0:
            raise Fail(400, "SONET_CONTROLLER_WORKGROUP_EMPTY", "No value for the workgroup ID was provided.")
        group = self.groups.get(group_id)
        if group is None or not self._visible(group, caller, admin_sees_all=True):
            raise Fail(400, "SONET_CONTROLLER_WORKGROUP_NOT_FOUND", "Workgroup not found.")
        by_role: dict[str, list[int]] = {"A": [], "E": [], "K": [], "Z": []}
        for uid, rel in sorted(group.members.items(), key=lambda item: item[1].id):
            by_role.setdefault(rel.role, []).append(uid)
        members = by_role["A"] + by_role["E"] + by_role["K"]
        result: dict[str, Any] = {
            "ID": group.id,
            "NAME": group.name,
            "DESCRIPTION": "",
            "OWNER_ID": group.owner_id,
            "VISIBLE": "Y" if group.visible else "N",
            "OPENED": "Y" if group.opened else "N",
            "CLOSED": "N",
            "PROJECT": "N",
            "INITIATE_PERMS": group.initiate_perms,
            "NUMBER_OF_MEMBERS": len(members),
            "MEMBERS": members,
            "ORDINARY_MEMBERS": by_role["K"],
            "MODERATOR_MEMBERS": by_role["E"],
            "INVITED_MEMBERS": by_role["Z"],
        }
        select = as_list(inner.get("select", [])) if isinstance(inner, dict) else []
        if "USER_DATA" in select:
            mine = group.members.get(caller.user_id)
            result["USER_DATA"] = (
                {"ROLE": mine.role, "INITIATED_BY_TYPE": mine.initiated_by, "IS_PIN": False} if mine else None
            )
        return result

    def _group_row(self, group: Group) -> dict[str, Any]:
        return {
            "ID": str(group.id),
            "SITE_ID": "s1",
            "NAME": group.name,
            "DESCRIPTION": "",
            "OWNER_ID": str(group.owner_id),
            "VISIBLE": "Y" if group.visible else "N",
            "OPENED": "Y" if group.opened else "N",
            "CLOSED": "N",
            "PROJECT": "N",
            "INITIATE_PERMS": group.initiate_perms,
            "NUMBER_OF_MEMBERS": str(sum(1 for r in group.members.values() if r.role in MEMBER_ROLES)),
        }

    def _groups_list(self, caller: Caller, params: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        admin_all = php_truthy(params.get("IS_ADMIN")) and params.get("IS_ADMIN") != "N"
        admin_all = admin_all and self._is_admin(caller.user_id)
        filters = upper_keys(params.get("FILTER")) or {}
        rows = []
        wanted = {php_int(v) for v in as_list(filters["ID"])} if "ID" in filters else None
        for group in sorted(self.groups.values(), key=lambda g: g.id):
            if not (admin_all or self._visible(group, caller, admin_sees_all=False)):
                continue
            if wanted is not None and group.id not in wanted:
                continue
            rows.append(self._group_row(group))
        if "GROUP_ID" in params and php_int(params["GROUP_ID"]) > 0:
            rows = [r for r in rows if r["ID"] == str(php_int(params["GROUP_ID"]))]
        return _page(rows, params)

    def _my_groups(self, caller: Caller, params: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"GROUP_ID": str(g.id), "GROUP_NAME": g.name, "ROLE": g.members[caller.user_id].role}
            for g in sorted(self.groups.values(), key=lambda g: g.id)
            if caller.user_id in g.members and g.members[caller.user_id].role in MEMBER_ROLES
        ]

    def _public_user(self, user: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in user.items() if not k.startswith("_")}

    def _user_get(self, caller: Caller, params: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        upper = upper_keys(params)
        filters = upper_keys(upper.get("FILTER")) if isinstance(upper.get("FILTER"), dict) else {}
        rows = []
        wanted = {php_int(v) for v in as_list(filters["ID"])} if "ID" in filters else None
        candidates = sorted(wanted & self.users.keys()) if wanted is not None else sorted(self.users)
        for user_id in candidates:
            user = self.users[user_id]
            if "ACTIVE" in filters:
                want = filters["ACTIVE"]
                active = want is True or (isinstance(want, str) and want.upper() in ("Y", "TRUE", "1"))
                if user["ACTIVE"] != active:
                    continue
            if "EMAIL" in filters and user["EMAIL"] != str(filters["EMAIL"]).lower():
                continue
            rows.append(self._public_user(user))
        return _page(rows, upper)

    def _user_current(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return self._public_user(self.users[caller.user_id])

    def _add(self, caller: Caller, params: dict[str, Any]) -> list[str]:
        group_id = php_int(params.get("GROUP_ID"))
        if group_id <= 0:
            raise _bad("Wrong group ID")
        if not self._is_admin(caller.user_id):
            raise _bad("No permissions to add users")
        wanted = _user_ids(params.get("USER_ID"))
        group = self.groups.get(group_id)
        if group is None:
            raise _bad("Socialnetwork group not found")
        added = []
        for user_id in wanted:
            user = self.users.get(user_id)
            if user is None or user_id in group.members or user["USER_TYPE"] != "employee":
                continue
            self._relate(group, user_id, "K", "G")
            self.invite_applied(str(group.id), str(user_id))
            added.append(str(user_id))
        return added

    def _delete(self, caller: Caller, params: dict[str, Any]) -> list[str]:
        group_id = php_int(params.get("GROUP_ID"))
        if group_id <= 0:
            raise _bad("Wrong group ID")
        if not self._is_admin(caller.user_id):
            raise _bad("No permissions to update users role")
        wanted = _user_ids(params.get("USER_ID"))
        group = self.groups.get(group_id)
        if group is None:
            raise _bad("Socialnetwork group not found")
        removed = []
        for user_id in wanted:
            relation = group.members.get(user_id)
            if relation is None or relation.role == "A":
                continue
            del group.members[user_id]
            removed.append(str(user_id))
        return removed

    # -- batch -----------------------------------------------------------------------------------

    def _batch(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        commands = params.get("cmd")
        if isinstance(commands, list):
            commands = {str(i): c for i, c in enumerate(commands)}
        if not isinstance(commands, dict):
            commands = {}
        halt = php_truthy(params.get("halt", False))
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        totals: dict[str, Any] = {}
        nexts: dict[str, Any] = {}
        times: dict[str, Any] = {}
        for index, (key, command) in enumerate(commands.items()):
            started = time.time()
            try:
                if index >= BATCH_MAX:
                    raise Fail(400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
                method, _, query = str(command).partition("?")
                method = method.strip().lower().removesuffix(".json")
                if method == "batch":
                    raise Fail(400, "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage")
                if method not in self._methods():
                    raise Fail(404, *NOT_FOUND)
                sub_params = parse_str(_substitute(query, results))
                result, extra, processing, reset_at, operating = self._run(caller, method, sub_params)
            except Fail as fail:
                description = "" if fail.error == "insufficient_scope" else fail.description
                errors[str(key)] = {"error": fail.error, "error_description": description}
                if halt:
                    break
                continue
            results[str(key)] = result
            if "total" in extra:
                totals[str(key)] = extra["total"]
            if "next" in extra:
                nexts[str(key)] = extra["next"]
            times[str(key)] = self._time(started, processing, reset_at, operating)
        return {
            "result": php_array(results),
            "result_error": php_array(errors),
            "result_total": php_array(totals),
            "result_next": php_array(nexts),
            "result_time": php_array(times),
        }


def _user_ids(raw: Any) -> list[int]:
    values = as_list(raw) if isinstance(raw, (list, dict)) else [raw]
    ids = [php_int(v) for v in values]
    if not raw or all(i <= 0 for i in ids):
        raise _bad("Wrong user IDs")
    return [i for i in ids if i > 0]


def _page(rows: list[Any], params: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """50 rows from ``start``; ``total`` always, ``next`` only while rows remain."""
    start = max(0, php_int(params.get("start", params.get("START", 0))))
    page = rows[start : start + PAGE]
    extra: dict[str, Any] = {"total": len(rows)}
    if start + PAGE < len(rows):
        extra["next"] = start + PAGE
    return page, extra


def _substitute(query: str, results: dict[str, Any]) -> str:
    """``$result[key][FIELD]`` references to earlier commands' results."""

    def value(match: re.Match[str]) -> str:
        current: Any = results
        for part in re.findall(r"\[([^\]]*)\]", match.group(0)):
            if isinstance(current, dict):
                current = current.get(part)
            elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
                current = current[int(part)]
            else:
                return ""
        return "" if isinstance(current, (dict, list)) or current is None else str(current)

    return re.sub(r"\$result(\[[^\]]*\])+", value, query)


PLATFORM = Bitrix24Sandbox
