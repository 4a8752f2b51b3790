"""Bitrix24 REST (workgroups and users), as a cloud portal answers it.

Served under ``/bitrix24``: inbound webhooks at ``/bitrix24/rest/<user>/<code>/<method>``, OAuth
calls at ``/bitrix24/rest/<method>`` (``auth``/``access_token`` parameter or a Bearer header), and
the OAuth server's ``/bitrix24/oauth/token/``. Parameters are parsed as PHP parses them
(``parse_str``, ``(int)``), replies are ``{"result", "time"}`` or ``{"error", "error_description"}``
with the portal's status codes; a leaky bucket (50, 2/s per client IP) and a per-method operating
budget limit the calls. The methods follow the portal's server code (``socialnetwork``'s REST
class, ``rest``'s ``user.get``): ``sonet_group.user.delete`` ends any relation (a pending invitation
too) except the owner's and the scrum master's and lists the ids it removed; ``user.get`` filters
an e-mail with SQL ``LIKE`` (case-insensitive, ``%`` and ``_`` are wildcards), drops filters on
fields the caller's scope cannot see (``user_brief`` sees no e-mails) and never lists bots or
e-mail users; two accounts may share an e-mail (uniqueness is an off-by-default portal option).
"""

from __future__ import annotations

import json
import random
import re
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from airflow_invites.sandbox.core import (
    LeakyBucket,
    PlatformEnv,
    Route,
    SandboxError,
    SandboxPlatform,
    random_token,
)

BUCKET_BURST, BUCKET_RATE = 50, 2.0
OPERATING_LIMIT_S, OPERATING_WINDOW_S = 480.0, 600.0
BATCH_MAX = 50
PAGE = 50
ACCESS_TOKEN_TTL = 3600
CODE_ALPHABET = string.ascii_lowercase + string.digits
TOKEN_ALPHABET = string.ascii_lowercase + string.digits
MEMBER_ROLES = ("A", "E", "K")  # owner, moderator, member; Z invited or asked to join, T banned
USER_SCOPES = {"user", "user_brief", "user_basic"}
FULL_SCOPES = ["sonet_group", "socialnetwork", "user", "task"]
JSON_TYPE = "application/json; charset=utf-8"
NOT_FOUND = ("ERROR_METHOD_NOT_FOUND", "Method not found!")
#: the user fields each scope shows and may filter by (``rest/lib/api/user.php``; ``user_brief`` no e-mail)
BRIEF_FIELDS: tuple[str, ...] = ("ID", "XML_ID", "ACTIVE", "NAME", "LAST_NAME", "SECOND_NAME", "TITLE")
BRIEF_FIELDS += ("IS_ONLINE", "TIME_ZONE", "DATE_REGISTER", "PERSONAL_GENDER", "WORK_POSITION")
BRIEF_FIELDS += ("UF_DEPARTMENT", "USER_TYPE")
BASIC_FIELDS = (*BRIEF_FIELDS[:7], "EMAIL", *BRIEF_FIELDS[7:12], "USER_TYPE")
USER_FIELDS = (*BASIC_FIELDS, "LAST_LOGIN", "UF_DEPARTMENT")
FILTER_ONLY = ("IS_ONLINE", "HAS_DEPARTAMENT", "NAME_SEARCH", "EXTERNAL_AUTH_ID")
#: accounts ``user.get`` never lists (its ``REAL_USER`` condition)
NOT_REAL = ("bot", "email", "imconnector", "replica", "controller")


def fail(status: int, error: str, description: str) -> SandboxError:
    """The portal's error reply: ``{"error", "error_description"}`` with no ``time`` block."""
    body = {"error": error, "error_description": description}
    return SandboxError(JSONResponse(body, status_code=status, media_type=JSON_TYPE))


def business(description: str) -> SandboxError:
    """The ``sonet_group.*`` business errors: HTTP 400 with an empty ``error`` code."""
    return fail(400, "", description)


def error_of(refused: SandboxError) -> dict[str, Any]:
    """The error reply's body (a ``batch`` lists it under ``result_error``)."""
    return dict(json.loads(bytes(refused.response.body)))


# -- PHP semantics ---------------------------------------------------------------------------------


def php_int(value: Any) -> int:
    """PHP ``(int)``: "12abc" -> 12, "abc" -> 0, "1.9" -> 1, arrays -> 0/1."""
    if isinstance(value, (bool, int, float)):
        return int(value)
    if isinstance(value, (list, dict)):
        return 1 if value else 0
    match = re.match(r"\s*([+-]?\d+)", str(value)) if value is not None else None
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
            base, parts = raw_key[:bracket], re.findall(r"\[([^\]]*)\]", raw_key[bracket:])
        else:
            base, parts = raw_key, []
        base = base.replace(".", "_").replace(" ", "_")
        if not base:
            continue
        keys = [base, *parts]
        target = out
        for depth, key in enumerate(keys):
            if key == "" and depth > 0:
                key = _next_index(target)
            if depth == len(keys) - 1:
                target[key] = value
            else:
                child = target.get(key)
                if not isinstance(child, dict):
                    child = target[key] = {}
                target = child
    return out


def parse_str(query: str) -> dict[str, Any]:
    pairs = []
    for chunk in query.split("&"):
        if chunk:
            key, _, value = chunk.partition("=")
            pairs.append((unquote_plus(key), unquote_plus(value)))
    return parse_str_pairs(pairs)


def as_list(value: Any) -> list[Any]:
    """A PHP array (dict from a form, list from JSON) as its values; a scalar as one item."""
    if isinstance(value, dict):
        return list(value.values())
    return value if isinstance(value, list) else [value]


def php_array(items: dict[str, Any]) -> Any:
    """``json_encode`` of a PHP array: empty -> [], keys 0..n-1 in order -> list, else an object."""
    if not items:
        return []
    if list(items) == [str(i) for i in range(len(items))]:
        return list(items.values())
    return items


def upper_keys(value: Any) -> dict[str, Any]:
    return {str(k).upper(): v for k, v in value.items()} if isinstance(value, dict) else {}


def sql_like(pattern: str, value: str) -> bool:
    """MySQL ``UPPER(field) LIKE UPPER(pattern)``: ``%`` any run, ``_`` one character."""
    if "%" not in pattern and "_" not in pattern:
        return pattern.casefold() == value.casefold()
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL) is not None


def wanted_ids(raw: Any) -> list[int]:
    """``USER_ID`` of add/delete: a positive scalar or a non-empty array, else "Wrong user IDs"."""
    if isinstance(raw, (list, dict)) and raw:
        return [php_int(v) for v in as_list(raw)]
    if not isinstance(raw, (list, dict)) and php_int(raw) > 0:
        return [php_int(raw)]
    raise business("Wrong user IDs")


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
    scrum_master_id: int | None = None
    members: dict[int, Relation] = field(default_factory=dict)

    def relations(self) -> list[tuple[int, Relation]]:
        """In relation-id order, as the database returns them."""
        return sorted(self.members.items(), key=lambda item: item[1].id)


@dataclass
class AccessToken:
    user_id: int
    expires: float
    scopes: list[str]


@dataclass
class Paged:
    """A list method's page: ``result`` rows plus ``total`` and (while rows remain) ``next``."""

    rows: list[Any]
    total: int
    next: int | None = None


@dataclass
class Ran:
    """One method run: its result and the ``time`` block's operating figures."""

    result: Any
    processing: float = 0.0
    reset_at: int | None = None
    operating: float = 0.0


Method = Callable[[Caller, dict[str, Any]], Any]


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
        for user_id, role in ((self.admin, "A"), (moderator, "E"), (member, "K")):
            self._relate(group, user_id, role)
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

        # added later: seeded after the above so that the ids above stay as they were
        self.banned_user = self._user("Gleb", "Orlov")
        self._relate(group, self.banned_user, "T")
        self.mail_contact = self._user("Anna", "Volkova", external="email")  # an e-mail user, same address
        self.users[self.mail_contact]["EMAIL"] = self.users[self.newcomers[0]]["EMAIL"]
        self.scrum_group_id = 9
        scrum = Group(
            self.scrum_group_id, "Sprint", self.admin, initiate_perms="E", scrum_master_id=moderator
        )
        self.groups[scrum.id] = scrum
        for user_id, role in ((self.admin, "A"), (moderator, "E"), (member, "K")):
            self._relate(scrum, user_id, role)
        self.brief_code = self._code()  # sees users, but not their e-mail addresses
        self.webhooks[(self.admin, self.brief_code)] = ["sonet_group", "socialnetwork", "user_brief"]
        self.userless_code = self._code()  # no user scope at all
        self.webhooks[(self.admin, self.userless_code)] = ["sonet_group", "socialnetwork"]

    # -- seeding ---------------------------------------------------------------------------------

    def _code(self) -> str:
        code = random_token(self.rng, 16, CODE_ALPHABET)
        self.issued.append(code)
        return code

    def _user(
        self, first: str, last: str, *, active: bool = True, admin: bool = False, external: str = ""
    ) -> int:
        user_id = self.next_user_id
        self.next_user_id += 1
        self.users[user_id] = {
            "ID": str(user_id),
            "XML_ID": str(self.rng.randint(10**7, 10**8)),
            "ACTIVE": active,
            "NAME": first,
            "LAST_NAME": last,
            "SECOND_NAME": "",
            "TITLE": "",
            "EMAIL": f"{first}.{last}{user_id}@example.test".lower(),
            "LAST_LOGIN": None,
            "DATE_REGISTER": "2025-01-15T09:00:00+03:00",
            "IS_ONLINE": "N",
            "TIME_ZONE": "",
            "PERSONAL_GENDER": "",
            "WORK_POSITION": "",
            "UF_DEPARTMENT": [1],
            "USER_TYPE": "employee",
            "_admin": admin,
            "_external": external,
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

    # -- admin API -------------------------------------------------------------------------------

    def env(self, base_url: str) -> PlatformEnv:
        extra = {"auth_type": "webhook", "webhook_user_id": str(self.admin), "webhook_code": self.admin_code}
        return PlatformEnv(
            connection={"conn_type": "bitrix24", "host": base_url, "extra": extra},
            group=str(self.group_id),
            users=[str(u) for u in self.newcomers],
            handles=[f"email:{self.users[u]['EMAIL']}" for u in self.newcomers],
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

    def create_people(
        self, count: int, group: str | None = None, handles: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """New employees (members of ``group`` if given); ``handles["email"]`` on every one of them:
        Bitrix24 lets several accounts share an e-mail address."""
        unknown = set(handles or {}) - {"email"}
        if unknown:
            raise ValueError(f"handles: bitrix24 people have an email only, not {sorted(unknown)}")
        target = self.groups[php_int(group)] if group is not None else None
        made = [self._user("Person", str(self.next_user_id)) for _ in range(count)]
        for user_id in made:
            if handles and "email" in handles:
                self.users[user_id]["EMAIL"] = handles["email"]
            if target is not None:
                self._relate(target, user_id, "K")
        return [{"id": str(u), "handles": {"email": self.users[u]["EMAIL"]}} for u in made]

    def members(self, group: str) -> dict[str, list[str]]:
        """Relations by role; ``protected``: the owner and scrum master (never removed) and the admin
        the sandbox's connection acts as."""
        found = self.groups[php_int(group)]
        ids = {role: [str(u) for u, r in found.relations() if r.role in role] for role in ("AEK", "Z")}
        keep = {found.owner_id, found.scrum_master_id, self.admin}
        protected = [str(u) for u, r in found.relations() if r.role in MEMBER_ROLES and u in keep]
        return {"members": ids["AEK"], "invited": ids["Z"], "protected": protected}

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
        return fail(503, "QUERY_LIMIT_EXCEEDED", "Too many requests").response

    def server_error_response(self, request: Request) -> Response:
        return fail(500, "INTERNAL_SERVER_ERROR", "Internal server error").response

    # -- routes ----------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            *(
                Route(verb, path, self._token)
                for verb in ("GET", "POST")
                for path in ("/oauth/token", "/oauth/token/")
            ),
            *(Route(verb, "/rest/{path:path}", self._rest) for verb in ("GET", "POST")),
            *(
                Route(verb, "/{rest:path}", self._no_page)
                for verb in ("GET", "POST", "PUT", "DELETE", "PATCH")
            ),
        ]

    async def _no_page(self, request: Request) -> Response:
        return Response("<html><body><h1>404 Not Found</h1></body></html>", 404, media_type="text/html")

    async def _token(self, request: Request) -> Response:
        """The OAuth server's refresh grant: both tokens rotate; a spent refresh token is ``invalid_grant``."""
        params = await self._params(request)
        if params.get("client_id") != self.client_id or params.get("client_secret") != self.client_secret:
            raise fail(401, "invalid_client", "Invalid client credentials")
        grant = params.get("grant_type")
        if grant == "authorization_code":
            raise fail(400, "invalid_grant", "Invalid authorization code")
        if grant != "refresh_token":
            raise fail(400, "invalid_request", "Invalid grant_type")
        user_id = self.refresh_tokens.pop(str(params.get("refresh_token", "")), None)
        if user_id is None:  # unknown, or spent by an earlier refresh
            raise fail(400, "invalid_grant", "Invalid refresh token")
        access = random_token(self.rng, 70, TOKEN_ALPHABET)
        expires = int(time.time()) + ACCESS_TOKEN_TTL
        self.access_tokens[access] = AccessToken(user_id, expires, list(FULL_SCOPES))
        self.issued.append(access)
        body = {
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
            "refresh_token": self._new_refresh_token(user_id),
        }
        return JSONResponse(body, media_type=JSON_TYPE)

    async def _rest(self, request: Request) -> Response:
        """``rest/<user>/<code>/<method>`` or ``rest/<method>``: the method is resolved before auth."""
        started = time.time()
        params = await self._params(request)
        parts = [p for p in str(request.path_params["path"]).split("/") if p]
        if len(parts) not in (1, 3):
            raise fail(404, *NOT_FOUND)
        uid, code = (parts[0], parts[1]) if len(parts) == 3 else (None, None)
        method = parts[-1].lower().removesuffix(".json")
        if method not in self._methods() and method != "batch":
            raise fail(404, *NOT_FOUND)
        caller = self._authenticate(request, uid, code, params)
        if self.bucket.hit(request.client.host if request.client else "?", self.limit_scale()) is not None:
            raise fail(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
        ran = Ran(self._batch(caller, params)) if method == "batch" else self._run(caller, method, params)
        paged = ran.result if isinstance(ran.result, Paged) else None
        body: dict[str, Any] = {"result": paged.rows if paged else ran.result}
        if paged:
            body.update({"next": paged.next} if paged.next is not None else {}, total=paged.total)
        body["time"] = self._time(started, ran)
        return JSONResponse(body, media_type=JSON_TYPE)

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
                raise fail(400, "ERROR_ARGUMENT", "Invalid JSON in request body") from None
            if isinstance(body, dict):
                params.update(body)
        elif "multipart/form-data" in content_type:
            form = await request.form()
            params.update(parse_str_pairs([(k, v) for k, v in form.multi_items() if isinstance(v, str)]))
        else:  # x-www-form-urlencoded (also what PHP does without a content type)
            params.update(parse_str(raw.decode("utf-8", "replace")))
        return params

    def _authenticate(
        self, request: Request, uid: str | None, code: str | None, params: dict[str, Any]
    ) -> Caller:
        """The one auth gate of ``rest/``: a webhook (user id + code) or an OAuth access token."""
        if uid is not None and code is not None:
            scopes = self.webhooks.get((php_int(uid), code)) if uid.isdigit() else None
            user = self.users.get(php_int(uid))
            if scopes is None or user is None:
                raise fail(401, "INVALID_CREDENTIALS", "Invalid request credentials")
            if not user["ACTIVE"]:
                raise fail(401, "authorization_error", "Unable to authorize user")
            caller = Caller(php_int(uid), scopes, f"webhook:{uid}:{code}", "webhook")
        else:
            token = params.get("auth") or params.get("access_token")
            header = request.headers.get("authorization", "")
            if not token and header.lower().startswith("bearer "):
                token = header[7:].strip()
            if not token:
                raise fail(401, "NO_AUTH_FOUND", "Wrong authorization data")
            found = self.access_tokens.get(str(token))
            if found is None:
                raise fail(401, "invalid_token", "Unable to get application by token")
            if found.expires <= time.time():
                raise fail(401, "expired_token", "The access token provided has expired")
            caller = Caller(found.user_id, found.scopes, f"app:{self.client_id}", "token")
        if not self.rest_available:
            raise fail(401, "ACCESS_DENIED", "REST is available only by subscription.")
        return caller

    def _time(self, start: float, ran: Ran) -> dict[str, Any]:
        finish = time.time()
        block: dict[str, Any] = {
            "start": round(start, 4),
            "finish": round(finish, 4),
            "duration": round(finish - start, 4),
            "processing": round(ran.processing, 4),
            "date_start": datetime.fromtimestamp(int(start)).astimezone().isoformat(),
            "date_finish": datetime.fromtimestamp(int(finish)).astimezone().isoformat(),
            "operating": round(ran.operating, 4),
        }
        if ran.reset_at is not None:
            block["operating_reset_at"] = ran.reset_at
        return block

    # -- methods ---------------------------------------------------------------------------------

    def _methods(self) -> dict[str, tuple[set[str], Method]]:
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

    def _run(self, caller: Caller, method: str, params: dict[str, Any]) -> Ran:
        """One method call: scope check, operating budget, the method."""
        scopes, handler = self._methods()[method]
        if scopes and not scopes & set(caller.scopes):
            token = "webhook" if caller.kind == "webhook" else "access token"
            raise fail(
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
            raise fail(429, "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.")
        clock = time.perf_counter()
        result = handler(caller, params)
        processing = self.processing_override.get(method, time.perf_counter() - clock)
        spent.append((now, processing))
        reset_at = int(min(t for t, _ in spent) + OPERATING_WINDOW_S)
        return Ran(result, processing, reset_at, used + processing)

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
        allowed = {"A": ("A",), "E": ("A", "E"), "K": MEMBER_ROLES}.get(group.initiate_perms, ("A",))
        return relation is not None and relation.role in allowed

    def _invite(self, caller: Caller, params: dict[str, Any]) -> list[Any]:
        """Invites whom it can and echoes them as sent; skips everyone else silently."""
        group_id = php_int(params.get("GROUP_ID"))
        if group_id <= 0:
            raise business("Wrong group ID")
        raw = params.get("USER_ID")
        if (isinstance(raw, (list, dict)) and not raw) or (
            not isinstance(raw, (list, dict)) and php_int(raw) <= 0
        ):
            raise business("Wrong user IDs")
        group = self.groups.get(group_id)
        if group is None or not self._visible(group, caller, admin_sees_all=False):
            raise business("Socialnetwork group not found")
        may_invite = self._may_invite(group, caller.user_id)
        invited: list[Any] = []
        for item in as_list(raw):
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
            raise business("Wrong socialnetwork group ID")
        group = self.groups.get(group_id)
        if group is None or not self._visible(group, caller, admin_sees_all=True):
            raise business("Socialnetwork group not found")
        return [
            {"USER_ID": str(uid), "ROLE": rel.role}
            for uid, rel in group.relations()
            if rel.role in MEMBER_ROLES and self.users[uid]["ACTIVE"]
        ]

    def _workgroup_get(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        inner = params.get("params")
        group_id = php_int(inner.get("groupId")) if isinstance(inner, dict) else 0
        if group_id <= 0:
            raise fail(400, "SONET_CONTROLLER_WORKGROUP_EMPTY", "No value for the workgroup ID was provided.")
        group = self.groups.get(group_id)
        if group is None or not self._visible(group, caller, admin_sees_all=True):
            raise fail(400, "SONET_CONTROLLER_WORKGROUP_NOT_FOUND", "Workgroup not found.")
        by_role: dict[str, list[int]] = {"A": [], "E": [], "K": [], "Z": [], "T": []}
        for uid, rel in group.relations():  # every relation, deactivated people's too
            by_role.setdefault(rel.role, []).append(uid)
        members = by_role["A"] + by_role["E"] + by_role["K"]
        result: dict[str, Any] = {
            **self._group_row(group),
            "ID": group.id,
            "OWNER_ID": group.owner_id,
            "SCRUM_MASTER_ID": group.scrum_master_id,
            "NUMBER_OF_MEMBERS": len(members),
            "MEMBERS": members,
            "ORDINARY_MEMBERS": by_role["K"],
            "MODERATOR_MEMBERS": by_role["E"],
            "INVITED_MEMBERS": by_role["Z"],
        }
        if "USER_DATA" in (as_list(inner.get("select", [])) if isinstance(inner, dict) else []):
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
            "PROJECT": "Y" if group.scrum_master_id else "N",
            "INITIATE_PERMS": group.initiate_perms,
            "NUMBER_OF_MEMBERS": str(sum(1 for r in group.members.values() if r.role in MEMBER_ROLES)),
        }

    def _groups_list(self, caller: Caller, params: dict[str, Any]) -> Paged:
        admin_all = php_truthy(params.get("IS_ADMIN")) and params.get("IS_ADMIN") != "N"
        admin_all = admin_all and self._is_admin(caller.user_id)
        filters = upper_keys(params.get("FILTER"))
        wanted = {php_int(v) for v in as_list(filters["ID"])} if "ID" in filters else None
        rows = [
            self._group_row(group)
            for group in sorted(self.groups.values(), key=lambda g: g.id)
            if (admin_all or self._visible(group, caller, admin_sees_all=False))
            and (wanted is None or group.id in wanted)
        ]
        if "GROUP_ID" in params and php_int(params["GROUP_ID"]) > 0:
            rows = [r for r in rows if r["ID"] == str(php_int(params["GROUP_ID"]))]
        return _page(rows, params)

    def _my_groups(self, caller: Caller, params: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"GROUP_ID": str(g.id), "GROUP_NAME": g.name, "ROLE": g.members[caller.user_id].role}
            for g in sorted(self.groups.values(), key=lambda g: g.id)
            if caller.user_id in g.members and g.members[caller.user_id].role in MEMBER_ROLES
        ]

    def _user_fields(self, caller: Caller) -> tuple[str, ...]:
        """What the caller's scopes show of a person (``user`` > ``user_basic`` > ``user_brief``)."""
        if "user" in caller.scopes:
            return USER_FIELDS
        return BASIC_FIELDS if "user_basic" in caller.scopes else BRIEF_FIELDS

    def _shown(self, caller: Caller, user: dict[str, Any]) -> dict[str, Any]:
        return {key: user[key] for key in self._user_fields(caller) if key in user}

    def _user_get(self, caller: Caller, params: dict[str, Any]) -> Paged:
        """``FILTER`` (or, without one, the parameters themselves) on the fields the scope shows."""
        upper = upper_keys(params)
        query = upper_keys(upper["FILTER"]) if isinstance(upper.get("FILTER"), dict) else upper
        allowed = (*self._user_fields(caller), *FILTER_ONLY)
        tests: list[Callable[[dict[str, Any]], bool]] = []
        for key, value in query.items():
            prefix, name = re.match(r"^(\W{0,2})(.*)$", key).groups()  # type: ignore[union-attr]
            if name in allowed:
                tests.append(_user_test(prefix, name, value))
        wanted = {php_int(v) for v in as_list(query["ID"])} if query.get("ID") is not None else None
        candidates = sorted(wanted & self.users.keys()) if wanted is not None else sorted(self.users)
        rows = [
            self._shown(caller, self.users[user_id])
            for user_id in candidates
            if self.users[user_id]["_external"] not in NOT_REAL and all(t(self.users[user_id]) for t in tests)
        ]
        return _page(rows, upper)

    def _user_current(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return self._shown(caller, self.users[caller.user_id])

    def _add(self, caller: Caller, params: dict[str, Any]) -> list[str]:
        group_id = php_int(params.get("GROUP_ID"))
        if group_id <= 0:
            raise business("Wrong group ID")
        if not self._is_admin(caller.user_id):
            raise business("No permissions to add users")
        wanted = wanted_ids(params.get("USER_ID"))
        group = self.groups.get(group_id)
        if group is None:
            raise business("Socialnetwork group not found")
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
        """Ends any relation (member, invitation, request, ban) but the owner's and the scrum master's;
        lists the ids it removed (strings, relation order). No relation: nothing, no error."""
        group_id = php_int(params.get("GROUP_ID"))
        if group_id <= 0:
            raise business("Wrong group ID")
        if not self._is_admin(caller.user_id):
            raise business("No permissions to update users role")
        wanted = set(wanted_ids(params.get("USER_ID")))
        group = self.groups.get(group_id)
        if group is None:  # no visibility check: an admin reaches hidden groups too
            raise business("Socialnetwork group not found")
        for user_id in sorted(u for u in wanted if u > 0):
            self.removal_requested(str(group.id), str(user_id))
        removed = []
        for user_id, relation in group.relations():
            if user_id not in wanted or relation.role == "A" or user_id == group.scrum_master_id:
                continue
            del group.members[user_id]
            self.removal_applied(str(group.id), str(user_id))
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
        sections: dict[str, dict[str, Any]] = {k: {} for k in ("result", "error", "total", "next", "time")}
        for index, (key, command) in enumerate(commands.items()):
            started = time.time()
            try:
                if index >= BATCH_MAX:
                    raise fail(400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
                method, _, query = str(command).partition("?")
                method = method.strip().lower().removesuffix(".json")
                if method == "batch":
                    raise fail(400, "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage")
                if method not in self._methods():
                    raise fail(404, *NOT_FOUND)
                ran = self._run(caller, method, parse_str(_substitute(query, sections["result"])))
            except SandboxError as refused:
                error = error_of(refused)
                if error["error"] == "insufficient_scope":
                    error["error_description"] = ""
                sections["error"][str(key)] = error
                if halt:
                    break
                continue
            paged = ran.result if isinstance(ran.result, Paged) else None
            sections["result"][str(key)] = paged.rows if paged else ran.result
            if paged:
                sections["total"][str(key)] = paged.total
                if paged.next is not None:
                    sections["next"][str(key)] = paged.next
            sections["time"][str(key)] = self._time(started, ran)
        return {f"result_{k}" if k != "result" else k: php_array(v) for k, v in sections.items()}


def _user_test(prefix: str, name: str, value: Any) -> Callable[[dict[str, Any]], bool]:
    """One ``user.get`` filter: no prefix is ``LIKE`` (``%``/``_`` wildcards), ``=`` equality,
    ``%`` a substring, all case-insensitive (the portal's collation); ``ID`` and ``ACTIVE`` exact."""
    if name == "ID":
        ids = {php_int(v) for v in as_list(value)}
        return lambda user: int(user["ID"]) in ids
    if name == "ACTIVE":
        want = value is True or (isinstance(value, str) and value.upper() in ("Y", "TRUE", "1"))
        return lambda user: bool(user["ACTIVE"]) == want
    if name not in USER_FIELDS:
        return lambda user: True  # filters the sandbox does not model
    text = str(value)

    def test(user: dict[str, Any]) -> bool:
        have = str(user.get(name) or "")
        if prefix == "=":
            return have.casefold() == text.casefold()
        if prefix == "%":
            return text.casefold() in have.casefold()
        return sql_like(text, have)

    return test


def _page(rows: list[Any], params: dict[str, Any]) -> Paged:
    """50 rows from ``start``; ``total`` always, ``next`` only while rows remain."""
    start = max(0, php_int(params.get("start", params.get("START", 0))))
    return Paged(rows[start : start + PAGE], len(rows), start + PAGE if start + PAGE < len(rows) else None)


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
