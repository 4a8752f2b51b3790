"""Bitrix24 workgroups: auth, look-ups, ``sonet_group.user.invite`` and its error table.

Reference: ``shared/platforms/bitrix24.md``. Two ways in:

- an inbound webhook: ``{portal}/rest/{user_id}/{code}/{method}.json``. The code is a secret that
  sits in the URL path, so it is registered (with its URL-encoded forms) before any request, the
  HTTP layer shows only scrubbed paths, and urllib3's debug lines are scrubbed too;
- an OAuth application: ``{portal}/rest/{method}.json`` with ``Authorization: Bearer``. Refresh
  tokens rotate and a spent one fails (``invalid_grant``), so the newest pair lives in the
  ``RuntimeStore`` (Variables ``airflow_invites__<conn_id>__refresh_token`` / ``__access_token``),
  read before the connection's own value; an access token is reused until it expires, so a task
  refreshes at most once unless the portal says ``expired_token``.

``sonet_group.user.invite`` takes many ids and answers with the ids it really invited; everyone
else was skipped silently (already related, no right, privacy, banned, self). The look-up is one
``batch`` request (members, pending invitations, the people themselves), and whoever an invite
skipped is looked up again and explained, or reported failed.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import urlencode, urlsplit

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

ID_RE = re.compile(r"^[1-9][0-9]{0,9}$")
MAX_ID = 2**31 - 1  # ids are MySQL INT columns
CODE_RE = re.compile(r"^[A-Za-z0-9_-]{4,128}$")
WEBHOOK_IN_URL = re.compile(r"/rest/([^/]+)/([^/]+)(?:/.*)?$")
LOOPBACK_NAMES = {"localhost"}
DEFAULT_OAUTH_SERVER = "https://oauth.bitrix.info"
MESSAGE_MAX = 10_000
BATCH_MAX = 50  # commands per batch request
USER_GET_PAGE = 50  # user.get returns 50 rows per page: one command per 50 ids
MIN_OPERATING_WAIT = 10.0
ACCESS_TOKEN_MARGIN = 60.0  # do not start a call with a token this close to its expiry
REQUIRED_SCOPES = {"sonet_group": "sonet_group.*", "socialnetwork": "socialnetwork.api.workgroup.get"}
USER_SCOPES = {"user", "user_brief", "user_basic"}
ROLE_NAMES = {"A": "owner", "E": "moderator", "K": "member"}
INITIATE_PERMS = {"A": "the owner only", "E": "the owner and moderators", "K": "any member"}

# -- the error table -------------------------------------------------------------------------------
# kind: "transient" (back off), "expired" (refresh the OAuth token once), "auth" (re-authorise the
# connection), "permanent" (fail, no retries). Keys are upper-cased ``error`` codes.
ERRORS: dict[str, tuple[str, str]] = {
    "QUERY_LIMIT_EXCEEDED": ("transient", "too many requests (the portal's leaky bucket: 50 burst, 2/s)"),
    "OPERATION_TIME_LIMIT": ("transient", "method blocked by the portal's operating time limit"),
    "INTERNAL_SERVER_ERROR": ("transient", "portal error"),
    "ERROR_UNEXPECTED_ANSWER": ("transient", "portal error"),
    "EXPIRED_TOKEN": ("expired", "the access token expired"),
    "INVALID_TOKEN": ("expired", "the access token is not valid"),
    "INVALID_CREDENTIALS": (
        "auth",
        "the webhook was refused (wrong user id or code, deleted, or blocked for leaking): "
        "create a new inbound webhook and update the connection",
    ),
    "NO_AUTH_FOUND": ("auth", "no credentials reached the portal: check the connection"),
    "INSUFFICIENT_SCOPE": (
        "auth",
        "the webhook or application lacks a scope: it needs sonet_group, socialnetwork and user",
    ),
    "AUTHORIZATION_ERROR": ("auth", "the connection's user is deactivated or cannot log in"),
    "INVALID_REQUEST": ("auth", "the portal requires HTTPS"),
    "USER_ACCESS_ERROR": ("auth", "the user does not have access to the application"),
    "APPLICATION_NOT_FOUND": ("auth", "the OAuth application is not installed on this portal"),
    "ACCESS_DENIED": ("permanent", "access denied (REST is not available on this plan, or no right)"),
    "OVERLOAD_LIMIT": ("permanent", "REST API blocked by Bitrix24 for overload"),
    "PORTAL_DELETED": ("permanent", "the portal was deleted"),
    "ERROR_METHOD_NOT_FOUND": (
        "permanent",
        "method not found: check the portal URL (and that a webhook has both user id and code)",
    ),
    "SONET_CONTROLLER_WORKGROUP_NOT_FOUND": (
        "permanent",
        "workgroup not found, or not visible to the connection's user",
    ),
    "SONET_CONTROLLER_WORKGROUP_EMPTY": ("permanent", "no workgroup id"),
    "ERROR_CORE": ("permanent", "portal refused the call"),
    "ERROR_ARGUMENT": ("permanent", "bad argument"),
    "ERROR_BATCH_LENGTH_EXCEEDED": ("permanent", "more than 50 commands in one batch"),
    "ERROR_BATCH_METHOD_NOT_ALLOWED": ("permanent", "method not allowed in a batch"),
}
#: ``sonet_group.*`` business errors carry an empty ``error``: keyed by their description
BUSINESS_ERRORS: dict[str, str] = {
    "Wrong group ID": "the workgroup id is not valid",
    "Wrong socialnetwork group ID": "the workgroup id is not valid",
    "Wrong user IDs": "no valid user id was sent",
    "Socialnetwork group not found": "workgroup not found, or hidden from the connection's user",
    "No permissions to add users": "only portal admins may add people directly",
    "No permissions to update users role": "only portal admins may remove people",
}


@dataclass(frozen=True)
class Settings:
    """The connection, checked: where the portal is and how to authenticate."""

    portal: str  # scheme://host[:port][/path], no trailing slash
    auth_type: str  # "webhook" or "oauth"
    webhook_user_id: str = ""
    webhook_code: str = field(default="", repr=False)
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    refresh_token: str = field(default="", repr=False)
    oauth_server: str = DEFAULT_OAUTH_SERVER


@dataclass
class GroupFacts:
    """What the last look-up learned about a group, to explain a silent refusal."""

    owner_id: int | None = None
    moderators: frozenset[int] = frozenset()
    initiate_perms: str = ""


class Bitrix24Hook(InvitesHook):
    """Bitrix24 REST (workgroups). Connection type ``bitrix24``."""

    platform = "bitrix24"
    conn_name_attr = "bitrix24_conn_id"
    default_conn_name = "bitrix24_default"
    conn_type = "bitrix24"
    hook_name = "Bitrix24"
    secret_extras = ("webhook_code", "client_secret", "refresh_token")
    invite_batch_size = 50
    client_rate = (1.9, 45)  # just under the portal's leaky bucket (2 requests/s, bursts of 50)

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(conn_id, **kwargs)
        self._access: str | None = None
        self._refused: set[str] = set()
        self._caller_id: int | None = None
        self._operating_reset: dict[str, float] = {}
        self._facts: dict[str, GroupFacts] = {}

    # -- connection ------------------------------------------------------------------------------

    @cached_property
    def settings(self) -> Settings:
        conn = self.connection
        where = f"connection {self.conn_id}"
        raw = (conn.host or "").strip()
        if not raw:
            raise InviteInputError(f"{where}: host", "the portal URL, e.g. https://yourcompany.bitrix24.com")
        if "://" not in raw:
            raw = f"https://{raw}"
        parts = urlsplit(raw)
        path = parts.path.rstrip("/")
        url_uid = url_code = ""
        found = WEBHOOK_IN_URL.search(path)
        if found:  # a whole webhook URL pasted as the host
            url_uid, url_code = found.group(1), found.group(2)
            self.scrubber.add(url_code)
            path = path[: found.start()]
        path = path.removesuffix("/rest")
        netloc = parts.netloc
        if conn.port and not parts.port:
            netloc = f"{netloc}:{conn.port}"
        portal = f"{parts.scheme}://{netloc}{path}"
        allow_http = self.extra_flag("allow_http", False)
        _require_https(parts.scheme, parts.hostname, f"{where}: host", allow_http)
        auth_type = str(self.extra("auth_type", "webhook")).strip().lower()
        if auth_type not in ("webhook", "oauth"):
            raise InviteInputError(f"{where}: extra auth_type", "'webhook' or 'oauth'", auth_type)
        if auth_type == "oauth":
            oauth_server = str(self.extra("oauth_server", DEFAULT_OAUTH_SERVER)).strip().rstrip("/")
            server = urlsplit(oauth_server if "://" in oauth_server else f"https://{oauth_server}")
            _require_https(server.scheme, server.hostname, f"{where}: extra oauth_server", allow_http)
            values = {
                k: str(self.extra(k, "")).strip() for k in ("client_id", "client_secret", "refresh_token")
            }
            missing = [k for k, v in values.items() if not v]
            if missing:
                raise InviteInputError(f"{where}: extra {', '.join(missing)}", "set for OAuth authentication")
            return Settings(
                portal=portal,
                auth_type=auth_type,
                oauth_server=f"{server.scheme}://{server.netloc}{server.path.rstrip('/')}",
                **values,
            )
        user_id = str(self.extra("webhook_user_id", url_uid)).strip()
        code = str(self.extra("webhook_code", url_code)).strip()
        if url_code and (code != url_code or user_id != url_uid):
            raise InviteInputError(
                f"{where}: host", "either a webhook URL or the webhook fields, not two different webhooks"
            )
        if not ID_RE.fullmatch(user_id):
            raise InviteInputError(
                f"{where}: extra webhook_user_id", "the user id of the webhook URL", user_id
            )
        if not CODE_RE.fullmatch(code):
            raise InviteInputError(
                f"{where}: extra webhook_code", "the secret code of the webhook URL", show_value=False
            )
        self.scrubber.add(code)
        self._caller_id = int(user_id)
        return Settings(portal=portal, auth_type=auth_type, webhook_user_id=user_id, webhook_code=code)

    def base_url(self) -> str:
        return self.settings.portal

    # -- auth ------------------------------------------------------------------------------------

    def _method_path(self, method: str) -> str:
        settings = self.settings
        if settings.auth_type == "webhook":
            return f"rest/{settings.webhook_user_id}/{settings.webhook_code}/{method}.json"
        return f"rest/{method}.json"

    def auth_headers(self) -> Mapping[str, str]:
        if self.settings.auth_type != "oauth":
            return {}
        if self._access is None:
            self._obtain_access_token()
        return {"Authorization": f"Bearer {self._access}"}

    def can_reauthenticate(self) -> bool:
        return self.settings.auth_type == "oauth"

    def reauthenticate(self) -> None:
        if self._access:
            self._refused.add(self._access)
        self._access = None
        self._obtain_access_token()

    def _obtain_access_token(self) -> None:
        """An access token: one another task stored (if still valid), else one refresh."""
        if self._use_stored_access_token():
            return
        tried: set[str] = set()
        for _attempt in range(3):
            candidates = (self.store.get("refresh_token"), self.settings.refresh_token)
            token = next((t for t in candidates if t and t not in tried), None)
            if token is None:
                break
            tried.add(token)
            self.remember_secret(token)
            if self._refresh(token):
                return
            # invalid_grant: spent or revoked. Another task may have rotated it just now.
            if self._use_stored_access_token():
                return
        raise PlatformAuthError(
            f"bitrix24: the OAuth refresh token of connection {self.conn_id} was refused (invalid_grant: "
            "expired, revoked or already used). Re-authorise the application and put the new refresh "
            f"token into the connection (and delete Variable airflow_invites__{self.conn_id}__refresh_token)",
            code="invalid_grant",
        )

    def _use_stored_access_token(self) -> bool:
        raw = self.store.get("access_token")
        if not raw:
            return False
        try:
            data = json.loads(raw)
            token, expires, user_id = str(data["token"]), float(data["expires"]), int(data["user_id"])
        except (ValueError, KeyError, TypeError):
            return False
        self.remember_secret(token)
        if token in self._refused or expires - ACCESS_TOKEN_MARGIN <= time.time():
            return False
        self._access, self._caller_id = token, user_id
        return True

    def _refresh(self, refresh_token: str) -> bool:
        """One refresh-token grant. False on ``invalid_grant``; the new pair is stored at once."""
        settings = self.settings
        params = {
            "grant_type": "refresh_token",
            "client_id": settings.client_id,
            "client_secret": settings.client_secret,
            "refresh_token": refresh_token,
        }
        reply = self.http.request(
            "GET",
            f"{settings.oauth_server}/oauth/token/",
            params=params,
            check=self._check_token,
            write=True,  # a lost reply may have spent the refresh token: never re-send blindly
        )
        if reply is None:
            return False
        self.store.set("refresh_token", reply["refresh_token"])
        expires = float(reply.get("expires") or time.time() + float(reply.get("expires_in", 3600)))
        user_id = int(reply.get("user_id") or 0)
        self.store.set(
            "access_token",
            json.dumps({"token": reply["access_token"], "expires": expires, "user_id": user_id}),
        )
        self._access, self._caller_id = reply["access_token"], user_id or None
        self.log.info("bitrix24: OAuth token refreshed; the rotated refresh token is kept for the next task")
        return True

    def _check_token(self, response: requests.Response) -> dict[str, Any] | None:
        body = json_body(response, self.platform, write=True)
        if response.status_code == 200 and isinstance(body, dict) and body.get("access_token"):
            if not body.get("refresh_token"):
                raise PlatformAuthError("bitrix24: the OAuth server answered without a refresh token")
            self.remember_secret(str(body["access_token"]))
            self.remember_secret(str(body["refresh_token"]))
            return {
                k: body[k]
                for k in ("access_token", "refresh_token", "expires", "expires_in", "user_id")
                if k in body
            }
        error = str(body.get("error", "")) if isinstance(body, dict) else ""
        if response.status_code >= 500:
            raise TransientPlatformError(
                f"bitrix24: OAuth server error HTTP {response.status_code}", maybe_applied=True
            )
        if error == "invalid_grant":
            return None
        if error == "invalid_client":
            raise PlatformAuthError(
                f"bitrix24: the OAuth client id or secret of connection {self.conn_id} was refused "
                "(invalid_client), or the application is not installed",
                code=error,
            )
        raise PlatformAuthError(
            f"bitrix24: the OAuth server refused the refresh (HTTP {response.status_code} {error or '?'})",
            code=error or None,
        )

    # -- the error table -------------------------------------------------------------------------

    def _check(self, response: requests.Response, *, method: str, write: bool = False) -> dict[str, Any]:
        body = json_body(response, self.platform, write=write)
        if not isinstance(body, dict):
            raise TransientPlatformError(
                f"bitrix24: {method}: malformed reply HTTP {response.status_code}", maybe_applied=write
            )
        if response.status_code == 200 and "error" not in body and "result" in body:
            self._note_operating(method, body.get("time"))
            return body
        if response.status_code == 200 and "error" not in body:
            raise TransientPlatformError(f"bitrix24: {method}: reply without a result", maybe_applied=write)
        raise self._error(
            method,
            body.get("error"),
            body.get("error_description"),
            status=response.status_code,
            write=write,
            retry_after=retry_after_seconds(response),
        )

    def _error(
        self,
        method: str,
        error: object,
        description: object,
        *,
        status: int | None = None,
        write: bool = False,
        retry_after: float | None = None,
    ) -> Exception:
        """The one place every Bitrix24 error code is classified."""
        code = str(error or "")
        text = self.scrubber.scrub(str(description or ""))[:300]
        kind, meaning = ERRORS.get(code.upper(), ("", ""))
        if not code and text in BUSINESS_ERRORS:
            return PermanentPlatformError(f"bitrix24: {method}: {text} ({BUSINESS_ERRORS[text]})", code=text)
        shown = f"bitrix24: {method}: {code or 'error'}" + (f" ({text})" if text else "")
        if kind == "transient" and code.upper() == "OPERATION_TIME_LIMIT":
            reset = self._operating_reset.get(method)
            wait = max(MIN_OPERATING_WAIT, reset - time.time()) if reset else MIN_OPERATING_WAIT
            return TransientPlatformError(f"{shown}: {meaning}", retry_after=wait, code=code)
        if kind == "transient":
            applied = write and code.upper() != "QUERY_LIMIT_EXCEEDED"
            return TransientPlatformError(
                f"{shown}: {meaning}", retry_after=retry_after, maybe_applied=applied, code=code
            )
        if kind == "expired":
            if self.settings.auth_type == "oauth":
                return AuthExpired(f"{shown}: {meaning}", code=code)
            return PlatformAuthError(f"{shown}: {meaning}", code=code)
        if kind == "auth":
            return PlatformAuthError(
                f"{shown}: {meaning} (connection {self.conn_id}; re-authorise it)", code=code
            )
        if kind == "permanent":
            return PermanentPlatformError(f"{shown}: {meaning}", code=code)
        if status is not None and status >= 500:
            return TransientPlatformError(
                f"bitrix24: {method}: server error HTTP {status}", maybe_applied=write
            )
        if status == 401:
            return PlatformAuthError(
                f"{shown} (connection {self.conn_id}; re-authorise it)", code=code or None
            )
        return PermanentPlatformError(
            f"bitrix24: {method}: HTTP {status or 200} {shown.split(': ', 2)[-1]}", code=code or text or None
        )

    def _note_operating(self, method: str, block: object) -> None:
        """Remember when a method's operating budget frees up (the wait hint for a later 429)."""
        if isinstance(block, dict) and isinstance(block.get("operating_reset_at"), (int, float)):
            self._operating_reset[method] = float(block["operating_reset_at"])

    # -- calls -----------------------------------------------------------------------------------

    def call_method(
        self, method: str, params: Mapping[str, Any] | None = None, *, write: bool = False
    ) -> Any:
        """One REST method (JSON body); returns the reply's ``result``."""
        body = self.call(
            "POST",
            self._method_path(method),
            json=dict(params or {}),
            check=lambda response: self._check(response, method=method, write=write),
            write=write,
        )
        return body["result"]

    def batch(self, commands: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Exception]]:
        """Up to 50 read commands in one request: results and classified errors, by key.

        A command that failed transiently (``OPERATION_TIME_LIMIT``...) makes the whole batch be
        retried by the HTTP layer (reads only, so that is safe).
        """
        if len(commands) > BATCH_MAX:
            raise ValueError(f"at most {BATCH_MAX} commands per batch")
        found: dict[str, tuple[dict[str, Any], dict[str, Exception]]] = {}

        def check(response: requests.Response) -> dict[str, Any]:
            body = self._check(response, method="batch")
            found["reply"] = self._batch_sections(body["result"], commands)
            return body

        self.call("POST", self._method_path("batch"), json={"halt": 0, "cmd": dict(commands)}, check=check)
        return found["reply"]

    def _batch_sections(
        self, reply: object, commands: Mapping[str, str]
    ) -> tuple[dict[str, Any], dict[str, Exception]]:
        if not isinstance(reply, dict):
            raise TransientPlatformError("bitrix24: batch: malformed reply")
        for key, block in _php_section(reply.get("result_time")).items():
            self._note_operating(commands.get(key, "?").split("?", 1)[0], block)
        errors: dict[str, Exception] = {}
        for key, error in _php_section(reply.get("result_error")).items():
            method = commands.get(key, "?").split("?", 1)[0]
            if not isinstance(error, dict):
                error = {}
            description = error.get("error_description")
            if str(error.get("error", "")).lower() == "insufficient_scope" and not description:
                description = f"no scope for {method}"
            errors[key] = self._error(method, error.get("error"), description)
            if isinstance(errors[key], TransientPlatformError):
                raise errors[key]
        return _php_section(reply.get("result")), errors

    # -- adapter ---------------------------------------------------------------------------------

    def normalize_group(self, group: object) -> str:
        return _positive_id(group, "group", "a workgroup id: a positive integer up to 2147483647, e.g. 5")

    def normalize_user(self, user: object) -> str:
        return _positive_id(user, "users", "Bitrix24 user ids: positive integers up to 2147483647, e.g. 17")

    def normalize_request(self, request: InviteRequest) -> InviteRequest:
        if request.extra:
            raise InviteInputError(
                "options", "no platform options (Bitrix24 takes only a message)", sorted(request.extra)
            )
        message = request.message
        if message is not None and not isinstance(message, str):
            raise InviteInputError("message", "text", message)
        if message is not None and len(message) > MESSAGE_MAX:
            raise InviteInputError(
                "message", f"at most {MESSAGE_MAX} characters", f"{len(message)} characters"
            )
        return InviteRequest(message=message.strip() or None if message else None)

    def lookup(self, group: str, users: Sequence[str]) -> Mapping[str, UserState]:
        """One ``batch`` request: active members, pending invitations, the people themselves."""
        self._ensure_ready()
        ids = [int(u) for u in users]
        chunks = [ids[i : i + USER_GET_PAGE] for i in range(0, len(ids), USER_GET_PAGE)] or [[]]
        first: dict[str, str] = {
            "members": f"sonet_group.user.get?{_php_query({'ID': int(group)})}",
            "group": f"socialnetwork.api.workgroup.get?{_php_query({'params': {'groupId': int(group)}})}",
        }
        commands = [first]
        for index, chunk in enumerate(chunks):
            if len(commands[-1]) >= BATCH_MAX:
                commands.append({})
            commands[-1][f"users{index}"] = f"user.get?{_php_query({'FILTER': {'ID': chunk}})}"
        results: dict[str, Any] = {}
        for batch in commands:
            found, errors = self.batch(batch)
            for error in errors.values():
                raise error
            results.update(found)
        members = {
            int(row["USER_ID"]): str(row.get("ROLE", "K"))
            for row in _rows(results.get("members"))
            if str(row.get("USER_ID", "")).isdigit()
        }
        info = results.get("group") if isinstance(results.get("group"), dict) else {}
        assert isinstance(info, dict)
        invited = {_int(v) for v in _values(info.get("INVITED_MEMBERS"))}
        self._facts[group] = GroupFacts(
            owner_id=_int(info.get("OWNER_ID")) or None,
            moderators=frozenset(_int(v) for v in _values(info.get("MODERATOR_MEMBERS"))),
            initiate_perms=str(info.get("INITIATE_PERMS", "")),
        )
        people: dict[int, dict[str, Any]] = {}
        for key, value in results.items():
            if key.startswith("users"):
                people.update((_int(row.get("ID")), row) for row in _rows(value))
        states: dict[str, UserState] = {}
        for user in users:
            uid = int(user)
            person = people.get(uid)
            if uid in members:
                role = ROLE_NAMES.get(members[uid], members[uid])
                states[user] = UserState(Presence.MEMBER, f"already in the group ({role})")
            elif person is None:
                states[user] = UserState(
                    Presence.BLOCKED,
                    "no such user on the portal (or not visible to the connection's user)",
                    "user-not-found",
                )
            elif person.get("ACTIVE") in (False, "N", "0", 0):
                states[user] = UserState(
                    Presence.BLOCKED, "deactivated (fired) user: not invited", "user-inactive"
                )
            elif uid in invited:
                states[user] = UserState(Presence.INVITED, "invitation or request to join pending")
            elif uid == self._caller_id:
                states[user] = UserState(
                    Presence.BLOCKED,
                    "this is the connection's own user: Bitrix24 never invites the caller",
                    "self",
                )
        return states

    def send_invites(
        self, group: str, users: Sequence[str], request: InviteRequest
    ) -> Mapping[str, InviteResult]:
        params: dict[str, Any] = {"GROUP_ID": int(group), "USER_ID": [int(u) for u in users]}
        if request.message:
            params["MESSAGE"] = request.message
        reply = self.call_method("sonet_group.user.invite", params, write=True)
        invited = {_int(v) for v in _values(reply)}
        results = {u: InviteResult(Status.INVITED) for u in users if int(u) in invited}
        skipped = [u for u in users if int(u) not in invited]
        if not skipped:
            return results
        # [] means "nothing to do" and "not allowed" alike: look again and explain each person
        state = self.lookup(group, skipped)
        reason = self._refusal_reason(group)
        for user in skipped:
            current = state.get(user)
            if current is None:
                results[user] = InviteResult(Status.FAILED, reason, "not-invited")
            elif current.presence is Presence.MEMBER:
                results[user] = InviteResult(Status.ALREADY_MEMBER, "became a member meanwhile")
            elif current.presence is Presence.INVITED:
                results[user] = InviteResult(Status.ALREADY_INVITED, "invited or asked to join meanwhile")
            else:
                results[user] = InviteResult(Status.FAILED, current.detail, current.code)
        return results

    def _refusal_reason(self, group: str) -> str:
        text = "Bitrix24 skipped this invitation without a reason"
        facts = self._facts.get(group)
        caller = self._caller_id
        if facts and caller is not None and facts.initiate_perms in INITIATE_PERMS:
            allowed = {
                "A": caller == facts.owner_id,
                "E": caller == facts.owner_id or caller in facts.moderators,
            }.get(facts.initiate_perms, True)
            if not allowed:
                return (
                    f"{text}: the group lets {INITIATE_PERMS[facts.initiate_perms]} invite and the "
                    f"connection's user ({caller}) is none of them (only a portal admin may still invite)"
                )
        return f"{text}: the person's privacy settings forbid invitations, or the person is banned from the group"

    def _ensure_ready(self) -> None:
        """Settle the connection (and its secrets) before the first request."""
        _ = self.settings

    def group_url(self, group: str) -> str | None:
        return f"{self.base_url()}/workgroups/group/{group}/"

    def check_connection(self) -> str:
        """``user.current`` and ``scope`` in one batch: who we are, and whether the scopes suffice."""
        self._ensure_ready()
        results, errors = self.batch({"me": "user.current", "scope": "scope"})
        for error in errors.values():
            raise error
        me = results.get("me") if isinstance(results.get("me"), dict) else {}
        assert isinstance(me, dict)
        scopes = {str(s) for s in _values(results.get("scope"))}
        missing = [s for s in REQUIRED_SCOPES if s not in scopes]
        if not scopes & USER_SCOPES:
            missing.append("user")
        if missing:
            raise PlatformAuthError(
                f"bitrix24: connection {self.conn_id} lacks the scopes {', '.join(missing)}: edit the "
                "webhook (or the application) and tick them"
            )
        name = " ".join(str(me.get(k, "")) for k in ("NAME", "LAST_NAME")).strip() or "?"
        return (
            f"Connected to Bitrix24 {urlsplit(self.base_url()).hostname} as {name} (user {me.get('ID', '?')})"
        )


# -- helpers ---------------------------------------------------------------------------------------


def _require_https(scheme: str, hostname: str | None, field: str, allow_http: bool) -> None:
    """Plain HTTP would put the webhook code or tokens on the wire: only for test servers on
    loopback, or where the connection says ``allow_http`` explicitly (a sandbox in a container)."""
    if scheme == "https":
        return
    if scheme == "http" and hostname and (allow_http or _is_loopback(hostname)):
        return
    raise InviteInputError(
        field, "an https:// URL (plain http only for a test server: loopback, or extra allow_http)", scheme
    )


def _is_loopback(hostname: str) -> bool:
    if hostname.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _positive_id(value: object, field: str, expected: str) -> str:
    """A positive integer id; no PHP-style coercion ("12abc", "1.9", True, " 0")."""
    if isinstance(value, bool):
        raise InviteInputError(field, expected, value)
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise InviteInputError(field, expected, value)
    if not ID_RE.fullmatch(text) or int(text) > MAX_ID:
        raise InviteInputError(field, expected, value)
    return text


def _php_query(params: Mapping[str, Any]) -> str:
    """``http_build_query``: nested arrays as ``KEY[0]=3&KEY[1]=4`` (never repeated plain keys)."""
    pairs: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(f"{prefix}[{key}]", item)
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                walk(f"{prefix}[{index}]", item)
        else:
            pairs.append((prefix, str(value)))

    for key, value in params.items():
        walk(str(key), value)
    return urlencode(pairs)


def _php_section(value: object) -> dict[str, Any]:
    """A batch section: PHP encodes an empty one as [] and 0..n-1 keys as a list."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {}


def _rows(value: object) -> list[dict[str, Any]]:
    return [row for row in _values(value) if isinstance(row, dict)]


def _values(value: object) -> Iterable[Any]:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return value
    return []


def _int(value: object) -> int:
    """Ids come back as numbers or strings (invite echoes what it got): compare as int."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    text = str(value).strip() if value is not None else ""
    return int(text) if text.isdigit() else 0
