"""VRChat's sign-in: the User-Agent its firewall demands, a Basic login with TOTP, cookies kept between tasks.

No API keys: a login (``GET /auth/user``, HTTP Basic, each part URL-encoded before base64) answers
an ``auth`` cookie and, with an authenticator app, the HTTP 200 challenge
``{"requiresTwoFactorAuth":["totp","otp"]}``; ``POST /auth/twofactorauth/totp/verify`` then makes
the cookie usable and adds a ``twoFactorAuth`` ("remember this device") cookie. VRChat limits the
sessions an account may open, so the cookies are kept between tasks (``core.credentials.KeptSession``)
and a login happens only when a call answers 401.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import unicodedata
from collections.abc import Mapping
from functools import cached_property
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import quote

import requests

from airflow_invites.core import errors as err
from airflow_invites.core.credentials import KeptSession
from airflow_invites.core.http import HttpClient
from airflow_invites.core.replies import Reply, Rule, credentials, read_reply
from airflow_invites.core.totp import is_base32_secret, totp_code
from airflow_invites.hooks.base import USER_AGENT, InvitesHook

#: ``name/version`` then a contact (an e-mail address or a URL), as VRChat's firewall demands
USER_AGENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[0-9A-Za-z][0-9A-Za-z._+-]*\s+\S.*$")
CONTACT_RE = re.compile(r"[^\s@()<>]+@[^\s@()<>]+\.[A-Za-z]{2,}|https?://[^\s()<>]+\.[^\s()<>]+")
PLACEHOLDER_CONTACT_RE = re.compile(r"(@|//)(www\.)?example\.(com|org|net)\b|my@email\.com", re.IGNORECASE)
SESSION_TOKEN = "session_token"  # RuntimeStore name (contains "token": Airflow masks it)
COOKIES = ("auth", "twoFactorAuth")
#: VRChat writes messages with look-alike punctuation (U+2024 for a full stop, U+01C3 for ``!``...)
LOOKALIKES = str.maketrans(
    {"\u2024": ".", "\u01c3": "!", "\u02f8": ":", "\u201a": ",", "\u2018": "'", "\u2019": "'", "\u00a0": " "}
)
#: what a refusal means on the two login calls (beside the hook's error table)
LOGIN_REFUSED = {
    401: credentials("login refused (invalid username/e-mail or password); re-authorise this connection")
}
CODE_REFUSED = credentials("the authenticator code was refused; check the TOTP secret and the worker's clock")
VERIFY_REFUSED = dict.fromkeys((400, 401, 403, 404), CODE_REFUSED)


def normalise_message(text: str) -> str:
    """Plain lower-case text: look-alikes replaced, JSON quoting removed."""
    text = unicodedata.normalize("NFKC", text.translate(LOOKALIKES))
    return text.strip().strip('"').strip().casefold()


def error_message(body: Any) -> str:
    """The message of VRChat's envelopes: ``{"error":{"message":...}}`` or ``{"error":"..."}``."""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message", "") if isinstance(error, dict) else error or ""
    if isinstance(message, str) and message.startswith('"'):
        with contextlib.suppress(ValueError):
            message = json.loads(message)
    return str(message)


class VRChatSignIn(InvitesHook):
    """The sign-in part of the VRChat hook; the hook declares the error table (``errors``)."""

    secret_extras = ("totp_secret", "auth_cookie")

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(conn_id, **kwargs)
        self.logins = 0  # logins this hook made (every one counts against VRChat's session limit)

    def base_url(self) -> str:
        url = super().base_url()
        return url if url.endswith("/api/1") else f"{url}/api/1"

    def user_agent(self) -> str:
        value = str(self.extra("user_agent", USER_AGENT)).strip()
        expected = "name/version contact, e.g. 'acme-invites/1.2 ops@acme.org' (a real contact)"
        field = f"connection {self.conn_id}: extra user_agent"
        if not USER_AGENT_RE.fullmatch(value) or not CONTACT_RE.search(value.split(None, 1)[1]):
            raise err.InviteInputError(field, expected, value)
        if PLACEHOLDER_CONTACT_RE.search(value):
            raise err.InviteInputError(field, expected + ", not a placeholder", value)
        return value

    @cached_property
    def http(self) -> HttpClient:
        client = super().http
        # cookies are sent explicitly (auth_headers), never picked up silently by the session
        client.session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        return client

    def read_envelope(self, response: requests.Response, body: Any) -> Reply:
        """Success is the status; errors are ``{"error": {"message", "status_code"[, "waf_code"]}}``."""
        if 200 <= response.status_code < 300:
            return Reply(response.status_code, True, body)
        error = body.get("error") if isinstance(body, dict) else None
        waf = error.get("waf_code") if isinstance(error, dict) else None
        return Reply(response.status_code, False, body, waf, normalise_message(error_message(body)))

    @cached_property
    def session(self) -> KeptSession:
        """The cookies: kept by an earlier task, else the connection's ``auth_cookie``, else a login."""
        ready = {"auth": str(self.extra("auth_cookie"))} if self.extra("auth_cookie") else None
        return KeptSession(
            self.store,
            SESSION_TOKEN,
            login=self._login,
            fields=COOKIES,
            durable=("twoFactorAuth",),  # "remember this device": spares the next login its TOTP code
            ready=ready,
            remember=self.remember_secret,
        )

    def auth_headers(self) -> Mapping[str, str]:
        return {"Cookie": _cookie_header(self.session.current())}

    def can_reauthenticate(self) -> bool:
        return True  # _login() says clearly when no other credential is left

    def reauthenticate(self) -> None:
        self.session.refused()

    def _login(self, kept: dict[str, str]) -> dict[str, str]:
        """Basic login (with the kept ``twoFactorAuth``), then TOTP if VRChat asks for it: the cookies."""
        conn, secret = self.connection, str(self.extra("totp_secret") or "")
        if not conn.login or not conn.password:
            raise err.PlatformAuthError(
                f"vrchat: no usable session and connection {self.conn_id} has no username/password "
                "to log in with; re-authorise this connection (a fresh auth cookie, or a login)"
            )
        if secret and not is_base32_secret(secret):
            field = f"connection {self.conn_id}: extra totp_secret"
            raise err.InviteInputError(field, "a base32 string", show_value=False)
        basic = base64.b64encode(f"{quote(conn.login, safe='')}:{quote(conn.password, safe='')}".encode())
        headers = {"Authorization": f"Basic {self.remember_secret(basic.decode())}"}
        if kept:
            headers["Cookie"] = _cookie_header(kept)
        self.logins += 1
        self.log.info("vrchat: logging in as %s (no usable session)", conn.login)
        body, cookies = self._login_call("GET", "auth/user", LOGIN_REFUSED, headers=headers)
        if not cookies.get("auth"):
            raise err.PlatformAuthError("vrchat: the login answered without an auth cookie")
        methods, cookies = body.get("requiresTwoFactorAuth"), {**kept, **cookies}
        if methods is None:  # no second factor asked (none set up, or the kept twoFactorAuth spared it)
            return cookies
        if "totp" not in methods:
            raise err.PlatformAuthError(
                f"vrchat: this account's only two-factor method is {methods}; e-mail codes cannot be automated. "
                "Enable an authenticator app (TOTP) on the account and set the connection's TOTP secret."
            )
        if not secret:
            raise err.PlatformAuthError(
                f"vrchat: the account asks for an authenticator code; set connection {self.conn_id}'s "
                "extra totp_secret (the base32 seed)"
            )
        code, headers = {"code": totp_code(secret)}, {"Cookie": _cookie_header(cookies)}
        path = "auth/twofactorauth/totp/verify"
        body, more = self._login_call("POST", path, VERIFY_REFUSED, json=code, headers=headers)
        if body.get("verified") is not True:
            raise err.PlatformAuthError(f"vrchat: {CODE_REFUSED.detail}")
        return {**cookies, **more}

    def _login_call(
        self, method: str, path: str, statuses: Mapping[int, Rule], **kwargs: Any
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """A login step (no session yet): the reply's JSON object and its cookies; ``statuses`` say what
        a refusal means here (beside the hook's table)."""
        table = self.errors.extend(statuses=statuses)

        def check(response: requests.Response) -> tuple[dict[str, Any], dict[str, str]]:
            body = table.interpret(read_reply(response, self.platform, self.read_envelope))
            if not isinstance(body, dict):
                raise err.TransientPlatformError("vrchat: malformed login reply")
            cookies = {c.name: c.value for c in response.cookies if c.name in COOKIES and c.value}
            return body, {name: str(self.remember_secret(value)) for name, value in cookies.items()}

        return self.http.request(method, path, check=check, **kwargs)  # type: ignore[no-any-return]

    def check_connection(self) -> str:
        me = self.call("GET", "auth/user")
        if "requiresTwoFactorAuth" in me:
            raise err.PlatformAuthError("vrchat: the session still waits for two-factor authentication")
        return f"Connected to VRChat as {me.get('displayName', '?')} ({me.get('id', '?')})"


def _cookie_header(cookies: Mapping[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in cookies.items() if value)
