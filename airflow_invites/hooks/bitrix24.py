"""Bitrix24 workgroups: ``batch`` look-ups, ``sonet_group.user.invite`` and ``.delete``, e-mail look-ups.

Webhooks call ``{portal}/rest/{user_id}/{code}/{method}.json`` (the code is a secret: registered before
any request); OAuth apps call ``{portal}/rest/{method}.json`` with a Bearer token (``core.credentials``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import SplitResult, urlencode, urlsplit

import requests

from airflow_invites.core import credentials, replies
from airflow_invites.core.adapter import Handle, InviteRequest, PersonResult, Presence, Resolution, UserState
from airflow_invites.core.errors import InviteInputError, PlatformAuthError
from airflow_invites.core.outcome import Status
from airflow_invites.hooks.base import InvitesHook
from airflow_invites.platforms import PLATFORMS

SPEC = PLATFORMS["bitrix24"]
MAX_ID = 2**31 - 1  # ids are MySQL INT columns
CODE_RE = re.compile(r"^[A-Za-z0-9_-]{4,128}$")
WEBHOOK_IN_URL = re.compile(r"/rest/([^/]+)/([^/]+)(?:/.*)?$")
MESSAGE_MAX = 10_000
BATCH_MAX = 50  # commands per batch request; user.get pages hold 50 rows too
WRITE_BATCH = 200  # people per invite or delete call (see docs/operators/bitrix24.md)
MIN_OPERATING_WAIT = 10.0
MALFORMED = "a reply with neither result nor error"
OAUTH_EXTRAS = ("client_id", "client_secret", "refresh_token")
Results = dict[str, PersonResult]
BUSINESS_ERRORS = {  # the sonet_group.* refusals: HTTP 400 with an empty code, told apart by their text
    "Wrong group ID": "the workgroup id is not valid",
    "Wrong user IDs": "no valid user id was sent",
    "Socialnetwork group not found": "workgroup not found, or hidden from the connection's user",
    "No permissions to update users role": "only portal admins may remove people or withdraw invitations",
}
_credentials, _group = replies.credentials, replies.group
ERRORS = replies.ErrorTable(
    "bitrix24",
    codes={
        "QUERY_LIMIT_EXCEEDED": replies.throttle("too many requests (the portal's bucket: 50 at once, 2/s)"),
        "OPERATION_TIME_LIMIT": replies.throttle("the method used up its operating time", wait=10.0),
        "INTERNAL_SERVER_ERROR": replies.transient("portal error"),
        "ERROR_UNEXPECTED_ANSWER": replies.transient("portal error"),
        "EXPIRED_TOKEN": replies.expired("the access token expired"),
        "INVALID_TOKEN": replies.expired("the access token is not valid"),
        "INVALID_CREDENTIALS": _credentials("webhook refused (wrong id or code, deleted, leaked)"),
        "NO_AUTH_FOUND": _credentials("no credentials reached the portal: check the connection"),
        "INSUFFICIENT_SCOPE": _credentials("a scope is missing: tick sonet_group, socialnetwork and user"),
        "AUTHORIZATION_ERROR": _credentials("the connection's user is deactivated or cannot log in"),
        "INVALID_REQUEST": _credentials("the portal requires HTTPS"),
        "USER_ACCESS_ERROR": _credentials("the user does not have access to the application"),
        "APPLICATION_NOT_FOUND": _credentials("the OAuth application is not installed on this portal"),
        "ACCESS_DENIED": _group("access denied (REST is not available on this plan, or no right)"),
        "OVERLOAD_LIMIT": _group("REST API blocked by Bitrix24 for overload"),
        "ERROR_METHOD_NOT_FOUND": _group("no such method: check the portal URL and webhook user id"),
        "SONET_CONTROLLER_WORKGROUP_NOT_FOUND": _group("workgroup not found, or hidden from the caller"),
    },
    messages=[
        replies.MessageRule(MALFORMED, replies.transient("a reply of another shape (a proxy's JSON?)")),
        *(replies.MessageRule(text, _group(meaning, code=text)) for text, meaning in BUSINESS_ERRORS.items()),
    ],
)


@dataclass(frozen=True)
class Settings:
    """The connection, checked: where the portal is and how to authenticate."""

    portal: str  # scheme://host[:port][/path], no trailing slash
    root: str  # "rest/<user id>/<code>" (webhook) or "rest" (OAuth)
    oauth: Mapping[str, str] = field(default_factory=dict, repr=False)  # client, refresh token, server


class Bitrix24Hook(InvitesHook):
    """Bitrix24 REST (workgroups). Connection type ``bitrix24``."""

    platform = "bitrix24"
    conn_name_attr = "bitrix24_conn_id"
    default_conn_name = "bitrix24_default"
    conn_type = "bitrix24"
    hook_name = "Bitrix24"
    secret_extras = ("webhook_code", "client_secret", "refresh_token")
    errors = ERRORS
    invite_batch_size = cancel_batch_size = remove_batch_size = WRITE_BATCH
    resolve_batch_size = BATCH_MAX  # one user.get per address, 50 to a batch request
    can_cancel_invites = can_remove_members = True
    client_rate = (1.9, 45)  # just under the portal's leaky bucket (2 requests/s, bursts of 50)
    unconfirmed_detail = (  # Bitrix24 gives no reason; these are all it may be
        "Bitrix24 skipped this invitation: the group lets the owner only, or the owner and moderators "
        "invite and the connection's user is none (nor a portal admin); or the person's privacy settings "
        "forbid invitations; or the person is banned from the group"
    )

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(conn_id, **kwargs)
        self._access: str | None = None
        self._caller_id: int | None = None
        self._operating_reset: dict[str, float] = {}  # method -> when its time budget frees up

    @cached_property
    def settings(self) -> Settings:
        where = f"connection {self.conn_id}"
        allow_http = self.extra_flag("allow_http", False)
        parts = _https(super().base_url(), f"{where}: host", allow_http)  # port, no user:password@
        path, url_uid, url_code = parts.path, "", ""
        if found := WEBHOOK_IN_URL.search(path):  # a whole webhook URL pasted as the host
            path, url_uid, url_code = path[: found.start()], found.group(1), found.group(2)
            self.scrubber.add(url_code)
        portal = f"{parts.scheme}://{parts.netloc}{path.removesuffix('/rest')}"
        auth_type = str(self.extra("auth_type", "webhook")).strip().lower()
        if auth_type == "oauth":
            server = str(self.extra("oauth_server", "https://oauth.bitrix.info"))
            server = _https(server, f"{where}: extra oauth_server", allow_http).geturl()
            values = {key: str(self.extra(key, "")).strip() for key in OAUTH_EXTRAS}
            if missing := ", ".join(key for key, value in values.items() if not value):
                raise InviteInputError(f"{where}: extra {missing}", "set for OAuth authentication")
            return Settings(portal, "rest", {**values, "server": server})
        if auth_type != "webhook":
            raise InviteInputError(f"{where}: extra auth_type", "'webhook' or 'oauth'", auth_type)
        user_id = str(self.extra("webhook_user_id", url_uid)).strip()
        code = str(self.extra("webhook_code", url_code)).strip()
        if url_code and (code != url_code or user_id != url_uid):
            raise InviteInputError(f"{where}: host", "a webhook URL or the webhook fields, not both")
        if not SPEC.user_re.fullmatch(user_id):
            raise InviteInputError(f"{where}: extra webhook_user_id", "the webhook URL's user id", user_id)
        if not CODE_RE.fullmatch(code):
            raise InviteInputError(f"{where}: extra webhook_code", "the webhook URL's code", show_value=False)
        self.scrubber.add(code)
        self._caller_id = int(user_id)
        return Settings(portal, f"rest/{user_id}/{code}")

    def base_url(self) -> str:
        return self.settings.portal

    @cached_property
    def refresh_tokens(self) -> credentials.RotatingRefreshToken:
        again = "Re-authorise the application and put its new refresh token into the connection."
        origin, store, remember = self.settings.oauth["refresh_token"], self.store, self.remember_secret
        return credentials.RotatingRefreshToken(
            store, origin=origin, platform="bitrix24", reauthorise=again, remember=remember
        )

    @cached_property
    def access_tokens(self) -> credentials.SharedAccessToken:
        return credentials.SharedAccessToken(self.store, remember=self.remember_secret)

    def auth_headers(self) -> Mapping[str, str]:
        if self._access is None and self.can_reauthenticate():
            self.reauthenticate()
        return {"Authorization": f"Bearer {self._access}"} if self._access else {}

    def can_reauthenticate(self) -> bool:
        return self.settings.root == "rest"  # OAuth

    def reauthenticate(self) -> None:
        """An access token another task stored (unless refused), else one refresh of the newest token."""
        if self._access:
            self.access_tokens.refuse(self._access)
        stored = self.access_tokens.get()
        if stored is None:
            grant = self.refresh_tokens.spend(self._grant)
            self.access_tokens.put(grant.access_token, grant.expires_in, grant.extra)
            stored = grant.access_token, dict(grant.extra)
            self.log.info("bitrix24: OAuth token refreshed; the rotated one is kept for later tasks")
        self._access, extra = stored
        self._caller_id = _int(extra.get("user_id")) or None

    def _grant(self, refresh_token: str) -> credentials.OAuthGrant:
        """One refresh-token grant at the OAuth server (``write``: a lost reply may have spent it)."""

        def check(response: requests.Response) -> credentials.OAuthGrant:
            reply = replies.read_reply(response, self.platform, credentials.oauth_envelope, write=True)
            body = credentials.oauth_errors(self.platform).interpret(reply, write=True)
            access, refresh = (str(body.get(k) or "") for k in ("access_token", "refresh_token"))
            if not self.remember_secret(access) or not self.remember_secret(refresh):
                raise PlatformAuthError("bitrix24: the OAuth server answered without a pair of tokens")
            expires_in, extra = float(body.get("expires_in") or 3600), {"user_id": _int(body.get("user_id"))}
            return credentials.OAuthGrant(access, refresh, expires_in, extra)

        params = {k: v for k, v in self.settings.oauth.items() if k in ("client_id", "client_secret")}
        params.update(grant_type="refresh_token", refresh_token=refresh_token)
        url = f"{self.settings.oauth['server']}/oauth/token/"
        return self.http.request("GET", url, params=params, check=check, write=True)

    def read_envelope(self, response: requests.Response, body: Any) -> replies.Reply:
        """``result`` (noting the method's operating budget), or ``error``/``error_description``."""
        method = urlsplit(response.url).path.rsplit("/", 1)[-1].removesuffix(".json")
        return self._reply(method, response.status_code, body)

    def _reply(self, method: str, status: int, body: Any, time_block: object = None) -> replies.Reply:
        if isinstance(body, dict) and "error" in body:
            code, message = str(body.get("error") or "") or None, str(body.get("error_description") or "")
            if code and code.lower() == "insufficient_scope" and not message:
                message = f"no scope for {method}"
            reset = self._operating_reset.get(method, 0.0)  # the method's budget frees up then
            hint = max(MIN_OPERATING_WAIT, reset - time.time()) if code == "OPERATION_TIME_LIMIT" else None
            return replies.Reply(status, False, body, code=code, message=message, retry_after=hint)
        if status != 200 or not isinstance(body, dict) or "result" not in body:
            return replies.Reply(status, False, message=MALFORMED)
        block = time_block if time_block is not None else body.get("time")
        if isinstance(block, dict) and isinstance(block.get("operating_reset_at"), (int, float)):
            self._operating_reset[method] = float(block["operating_reset_at"])
        return replies.Reply(status, True, body["result"])

    def call_method(self, method: str, params: Mapping[str, Any] | None = None, write: bool = False) -> Any:
        return self.call("POST", f"{self.settings.root}/{method}.json", json=dict(params or {}), write=write)

    def batch(self, commands: Mapping[str, str]) -> dict[str, Any]:
        """Read commands, 50 to a ``batch`` request: results by key; a failed command raises what the
        table says (a transient one makes the HTTP layer retry its whole batch: reads only, so safe)."""
        methods = {key: command.split("?", 1)[0] for key, command in commands.items()}

        def check(response: requests.Response) -> dict[str, Any]:
            body = replies.read_reply(response, self.platform, self.read_envelope)
            reply = _section(self.errors.interpret(body))
            for key, error in _section(reply.get("result_error")).items():
                error = error if isinstance(error, dict) else {"error": ""}
                raise self.errors.error(self._reply(methods.get(key, "?"), 200, error))
            times, results = _section(reply.get("result_time")), _section(reply.get("result"))
            for key, result in results.items():  # notes each method's operating budget
                self._reply(methods.get(key, "?"), 200, {"result": result}, times.get(key))
            return results

        found: dict[str, Any] = {}
        keys, path = list(commands), f"{self.settings.root}/batch.json"
        for start in range(0, len(keys), BATCH_MAX):
            chunk = {key: commands[key] for key in keys[start : start + BATCH_MAX]}
            found.update(self.call("POST", path, json={"halt": 0, "cmd": chunk}, check=check))
        return found

    def normalize_group(self, group: object) -> str:
        return _positive_id(group, "group", "a workgroup id: a positive integer up to 2147483647, e.g. 5")

    def normalize_user(self, user: object) -> str:
        return _positive_id(user, "users", "Bitrix24 user ids: positive integers up to 2147483647, e.g. 17")

    def normalize_request(self, request: InviteRequest) -> InviteRequest:
        message = request.message
        if request.extra:
            raise InviteInputError("options", "none (Bitrix24 takes only a message)", sorted(request.extra))
        if message is not None and (not isinstance(message, str) or len(message) > MESSAGE_MAX):
            raise InviteInputError("message", f"text of at most {MESSAGE_MAX} characters", message)
        return InviteRequest(message=message.strip() or None if message else None)

    def list_group(self, group: str) -> Mapping[str, UserState]:
        return self.lookup(group, [])

    def lookup(self, group: str, users: Sequence[str]) -> Mapping[str, UserState]:
        """One ``batch``: the group's relations (``socialnetwork.api.workgroup.get``) and ``user.get``;
        with no ``users``, everyone with a relation (``list_group``)."""
        commands = {"group": "socialnetwork.api.workgroup.get?" + _php_query({"params": {"groupId": group}})}
        for start in range(0, len(users), BATCH_MAX):
            page = [int(u) for u in users[start : start + BATCH_MAX]]
            commands[f"users{start}"] = "user.get?" + _php_query({"FILTER": {"ID": page}})
        results = self.batch(commands)
        info = results.pop("group")
        owner, scrum = _int(info.get("OWNER_ID")), _int(info.get("SCRUM_MASTER_ID"))
        listed = [*_ints(info.get("MEMBERS")), *_ints(info.get("INVITED_MEMBERS"))]  # relation order
        members, invited = set(_ints(info.get("MEMBERS"))), set(_ints(info.get("INVITED_MEMBERS")))
        moderators = set(_ints(info.get("MODERATOR_MEMBERS")))
        people = {_int(row.get("ID")): row for rows in results.values() for row in _rows(rows)}
        protected = {self._caller_id or 0: "the connection's own user", scrum: "the group's scrum master"}
        protected[owner] = "the group's owner"
        states: dict[str, UserState] = {}
        for user in users or [str(u) for u in listed]:
            uid, person = int(user), people.get(int(user))
            relation = Presence.MEMBER if uid in members else Presence.INVITED if uid in invited else None
            if person is not None and person.get("ACTIVE") in (False, "N", "0", 0):  # can be removed only
                why = "deactivated (fired) user" + (f" still {relation.value} here" if relation else "")
                states[user] = UserState(Presence.BLOCKED, why, "user-inactive", holds=relation)
            elif relation is Presence.MEMBER:  # also when the caller may not see the person (extranet)
                role = "owner" if uid == owner else "moderator" if uid in moderators else "member"
                why, keep = f"already in the group ({role})", protected.get(uid, "")
                states[user] = UserState(relation, why, protected=keep)
            elif relation is Presence.INVITED:
                states[user] = UserState(relation, "invitation or request to join pending")
            elif person is None:
                why = "no such user on the portal (or not visible to the connection's user)"
                states[user] = UserState(Presence.NOT_FOUND, why, "user-not-found")
            elif uid == self._caller_id:
                why = "this is the connection's own user: Bitrix24 never invites the caller"
                states[user] = UserState(Presence.BLOCKED, why, "self")
        return states

    def resolve(self, handles: Sequence[Handle]) -> Mapping[Handle, Resolution]:
        """``user.get`` filtered by ``EMAIL`` per address, in one ``batch``; every row checked here."""
        keys = {f"h{index}": handle for index, handle in enumerate(handles)}
        query = {key: "user.get?" + _php_query({"FILTER": {"EMAIL": h.value}}) for key, h in keys.items()}
        results = self.batch(query)
        found: dict[Handle, Resolution] = {}
        for key, handle in keys.items():
            rows = _rows(results.get(key))
            if any("EMAIL" not in row for row in rows):  # user_brief: the filter is dropped, no e-mails shown
                why = "sees no e-mails: give it the scope user (or user_basic), not user_brief"
                raise PlatformAuthError(f"bitrix24: {self.conn_id} {why}", code="insufficient_scope")
            same = [r for r in rows if str(r["EMAIL"]).strip().casefold() == handle.value.casefold()]
            if len(same) == 1:
                found[handle] = Resolution.found(str(_int(same[0].get("ID"))))
            elif same:
                found[handle] = Resolution.ambiguous(len(same), f"{len(same)} accounts have this e-mail")
        return found

    def send_invites(self, group: str, users: Sequence[str], request: InviteRequest) -> Results:
        """The reply lists whom it invited; the others were skipped silently (the algorithm looks again)."""
        params: dict[str, Any] = {"GROUP_ID": int(group), "USER_ID": [int(u) for u in users]}
        if request.message:
            params["MESSAGE"] = request.message
        invited = set(_ints(self.call_method("sonet_group.user.invite", params, write=True)))
        return {u: PersonResult(Status.INVITED) for u in users if int(u) in invited}

    def cancel_invites(self, group: str, users: Sequence[str]) -> Results:
        return self._delete(group, users, Status.INVITE_CANCELLED)

    def remove_members(self, group: str, users: Sequence[str]) -> Results:
        return self._delete(group, users, Status.REMOVED)

    def _delete(self, group: str, users: Sequence[str], done: Status) -> Results:
        """``sonet_group.user.delete`` ends any relation and lists whom it removed; the rest had none."""
        params = {"GROUP_ID": int(group), "USER_ID": [int(u) for u in users]}
        removed = set(_ints(self.call_method("sonet_group.user.delete", params, write=True)))
        none = PersonResult(Status.ALREADY_ABSENT, "Bitrix24 removed nothing: no relation to the group")
        return {u: PersonResult(done) if int(u) in removed else none for u in users}

    def group_url(self, group: str) -> str | None:
        return f"{self.base_url()}/workgroups/group/{group}/"

    def check_connection(self) -> str:
        """``user.current`` and ``scope`` in one batch: who we are, and whether the scopes suffice."""
        results = self.batch({"me": "user.current", "scope": "scope"})
        me = results["me"] if isinstance(results.get("me"), dict) else {}
        scopes = {str(s) for s in _section(results.get("scope")).values()}
        scopes |= {"user"} if scopes & {"user_basic", "user_brief"} else set()
        if missing := [s for s in ("sonet_group", "socialnetwork", "user") if s not in scopes]:
            tick = f"lacks the scopes {', '.join(missing)}: tick them on the webhook (or the application)"
            raise PlatformAuthError(f"bitrix24: connection {self.conn_id} {tick}")
        name = " ".join(str(me.get(k, "")) for k in ("NAME", "LAST_NAME")).strip() or "?"
        emails = "" if "user_brief" not in scopes else " (with user_brief only, e-mail look-ups need user)"
        host = urlsplit(self.base_url()).hostname
        return f"Connected to Bitrix24 {host} as {name} (user {me.get('ID', '?')}){emails}"


def _https(url: str, field: str, allow_http: bool) -> SplitResult:
    """The URL (https by default); plain HTTP would put the webhook code or tokens on the wire."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url if "://" in url else f"https://{url}")
    host = parts.hostname or ""
    loopback = host in ("localhost", "::1") or host.startswith("127.")
    if parts.scheme == "https" or (parts.scheme == "http" and host and (allow_http or loopback)):
        return parts
    expected = "an https:// URL (plain http only for loopback, or extra allow_http)"
    raise InviteInputError(field, expected, parts.scheme)


def _positive_id(value: object, field: str, expected: str) -> str:
    """A positive integer id; no PHP-style coercion ("12abc", "1.9", True, " 0")."""
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if not SPEC.user_re.fullmatch(text) or int(text) > MAX_ID:
        raise InviteInputError(field, expected, value)
    return text


def _php_query(params: Mapping[str, Any]) -> str:
    """``http_build_query``: nested arrays as ``KEY[0]=3&KEY[1]=4`` (never repeated plain keys)."""

    def pairs(value: Any, prefix: str) -> Iterator[tuple[str, str]]:
        if not isinstance(value, (Mapping, list, tuple)):
            yield prefix, str(value)
            return
        for key, item in value.items() if isinstance(value, Mapping) else enumerate(value):
            yield from pairs(item, f"{prefix}[{key}]" if prefix else str(key))

    return urlencode(list(pairs(params, "")))


def _section(value: object) -> dict[str, Any]:
    """A PHP array: an empty one is ``[]``, keys 0..n-1 make a list, any other keys an object."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return {str(k): v for k, v in items}


def _rows(value: object) -> list[dict[str, Any]]:
    return [row for row in _section(value).values() if isinstance(row, dict)]


def _ints(value: object) -> list[int]:
    return [_int(v) for v in _section(value).values()]


def _int(value: object) -> int:
    """Ids come back as numbers or strings (invite echoes what it got): compare as int."""
    text = "" if value is None or isinstance(value, bool) else str(value).strip()
    return int(text) if text.isdigit() else 0
