"""Credentials that outlive a task: rotating OAuth refresh tokens and shared access tokens.

One rule for every platform whose refresh token rotates on use (the used one is spent):

- the newest token is kept in the ``RuntimeStore`` (an Airflow Variable, masked) with a
  fingerprint of the connection's token it descends from; a human who re-authorises puts a new
  token in the connection, and that token then wins over the old chain (no Variable to delete);
- a rotated token is saved before the new access token is used;
- when the token we sent is refused, another task of the same connection may have rotated it a
  moment ago and still be saving the new one: the store is read again for a few seconds, and the
  newer token is used once;
- when no newer token turns up, one clear error says to re-authorise.

Access tokens obtained by one task are shared with the next through the same store (until shortly
before they expire), so that tasks do not each spend a refresh.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from airflow_invites.core.errors import PlatformAuthError, RefreshTokenRefused
from airflow_invites.core.replies import ErrorTable, Reply, credentials, token_refused, transient
from airflow_invites.core.runtime_store import RuntimeStore

#: how often, and how long apart, the store is read again after a refusal (another task rotating)
ROTATION_RACE_CHECKS, ROTATION_RACE_WAIT_S = 3, 1.0


@dataclass(frozen=True)
class OAuthGrant:
    """A token endpoint's answer to a refresh grant."""

    access_token: str
    refresh_token: str
    expires_in: float
    extra: Mapping[str, Any] = field(default_factory=dict)


def oauth_errors(platform: str) -> ErrorTable:
    """RFC 6749 section 5.2 errors of a token endpoint; platforms extend it with their quirks."""
    return ErrorTable(
        platform,
        codes={
            "invalid_grant": token_refused("the refresh token was refused"),
            "invalid_client": credentials("the OAuth client id or secret was refused (invalid_client)"),
            "unauthorized_client": credentials("the OAuth client may not use the refresh grant"),
            "temporarily_unavailable": transient("the token endpoint is unavailable", applied=False),
        },
    )


def oauth_envelope(response: requests.Response, body: Any) -> Reply:
    """A token endpoint's JSON: the token fields on success, ``error``/``error_description`` else."""
    if not isinstance(body, dict):
        return Reply(response.status_code, False, message="reply is not a JSON object")
    if response.status_code == 200 and body.get("access_token"):
        return Reply(200, True, body)
    return Reply(
        response.status_code,
        False,
        body,
        code=str(body.get("error") or "") or None,
        message=str(body.get("error_description") or ""),
    )


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


class RotatingRefreshToken:
    """The newest refresh token descended from the connection's, and the one way to spend it.

    :param store: where the rotated token is kept between tasks
    :param origin: the connection's refresh token (what a human last put there)
    :param reauthorise: what a human must do when the chain is really refused (one sentence)
    """

    NAME = "refresh_token"

    def __init__(
        self,
        store: RuntimeStore,
        *,
        origin: str,
        platform: str,
        reauthorise: str,
        remember: Callable[[str], object] = lambda value: None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.origin = origin
        self.platform = platform
        self.reauthorise = reauthorise
        self.remember = remember  # registers a token as a secret (scrubbed, masked)
        self.sleep = sleep

    def current(self) -> str:
        """The newest stored token of this connection's chain, else the connection's own."""
        return self._stored() or self.origin

    def save(self, token: str) -> None:
        self.remember(token)
        self.store.set(self.NAME, json.dumps({"refresh_token": token, "origin": fingerprint(self.origin)}))

    def spend(self, grant: Callable[[str], OAuthGrant]) -> OAuthGrant:
        """Run ``grant(token)`` with the newest token; keep the rotated one before returning."""
        tried: set[str] = set()
        token = self.current()
        while True:
            tried.add(token)
            try:
                result = grant(token)
            except RefreshTokenRefused as refused:
                newer = self._newer(tried)
                if newer is None:
                    raise PlatformAuthError(
                        f"{self.platform}: connection {self.store.conn_id}: the refresh token was refused "
                        f"({refused.description}): it is spent, revoked or expired. {self.reauthorise}",
                        code=refused.code or refused.description[:60] or None,
                    ) from None
                token = newer
                continue
            self.save(result.refresh_token)
            return result

    def _stored(self) -> str | None:
        raw = self.store.get(self.NAME)
        if not raw:
            return None
        try:
            data = json.loads(raw)
            token, origin = str(data["refresh_token"]), str(data["origin"])
        except (ValueError, KeyError, TypeError):
            return None  # unreadable (or written by an older version): the connection's token counts
        self.remember(token)
        return token if origin == fingerprint(self.origin) else None

    def _newer(self, tried: set[str]) -> str | None:
        """A stored token not tried yet, waiting out another task that may still be saving it."""
        for attempt in range(ROTATION_RACE_CHECKS):
            newer = self._stored()
            if newer and newer not in tried:
                return newer
            if attempt + 1 < ROTATION_RACE_CHECKS:
                self.sleep(ROTATION_RACE_WAIT_S)
        return None


class SharedAccessToken:
    """An access token kept in the store for the connection's other tasks, until shortly before it ends.

    ``extra`` keeps what came with the token (e.g. the caller's user id).
    """

    NAME = "access_token"

    def __init__(
        self,
        store: RuntimeStore,
        *,
        margin_s: float = 60.0,
        remember: Callable[[str], object] = lambda value: None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.margin_s = margin_s
        self.remember = remember
        self.now = now
        self.refused: set[str] = set()

    def get(self) -> tuple[str, dict[str, Any]] | None:
        """A stored token with more than ``margin_s`` left and not refused in this process, and its extra."""
        raw = self.store.get(self.NAME)
        if not raw:
            return None
        try:
            data = json.loads(raw)
            token, expires, extra = str(data["token"]), float(data["expires"]), dict(data.get("extra") or {})
        except (ValueError, KeyError, TypeError):
            return None
        self.remember(token)
        if token in self.refused or expires - self.margin_s <= self.now():
            return None
        return token, extra

    def put(self, token: str, expires_in: float, extra: Mapping[str, Any] | None = None) -> None:
        self.remember(token)
        record = {"token": token, "expires": self.now() + float(expires_in), "extra": dict(extra or {})}
        self.store.set(self.NAME, json.dumps(record))

    def refuse(self, token: str) -> None:
        """The platform refused ``token``: never use it again in this process."""
        self.refused.add(token)


class KeptSession:
    """A session a login opened (cookies, a session token), shared with the connection's next tasks.

    For platforms whose sessions do not say when they end: the session is kept in the store as one
    JSON object (masked) and used until a call is refused. Then the parts that outlive a refusal
    (``durable``, e.g. a "remember this device" cookie that spares the next login its second factor)
    are kept, the rest dropped, and another session is opened once. A ready session the connection
    holds (``ready``, e.g. a cookie a human pasted) comes after a kept one and before a login.

    :param login: opens a session, given the durable parts kept (possibly none); returns its values
    :param fields: the names of the values kept (others in the store are ignored)
    """

    def __init__(
        self,
        store: RuntimeStore,
        name: str,
        *,
        login: Callable[[dict[str, str]], dict[str, str]],
        fields: tuple[str, ...],
        durable: tuple[str, ...] = (),
        ready: Mapping[str, str] | None = None,
        remember: Callable[[str], object] = lambda value: None,
    ) -> None:
        self.store, self.name, self.login = store, name, login
        self.fields, self.durable, self.ready = fields, durable, dict(ready or {})
        self.remember = remember
        self.values: dict[str, str] | None = None  # the session in use
        self.source = ""  # where it came from: "store", "connection" or "login"

    def current(self) -> dict[str, str]:
        """The session in use; else a kept one, the connection's, or a new login (in that order)."""
        if self.values is None:
            kept = self._stored()
            if set(kept) - set(self.durable):
                self._use(kept, "store")
            elif self.ready:
                self._use(self.ready, "connection")
            else:
                self._open(kept)
        return self.values or {}

    def refused(self) -> dict[str, str]:
        """The session in use was refused: the connection's (if a kept one failed and it differs), else a login."""
        failed, source = self.values or {}, self.source
        self.values = None
        durable = {k: v for k, v in failed.items() if k in self.durable}
        if source == "store":
            self._keep(durable)
        if self.ready and source == "store" and any(failed.get(k) != v for k, v in self.ready.items()):
            self._use(self.ready, "connection")
        else:
            self._open(durable)
        return self.values or {}

    def _open(self, durable: dict[str, str]) -> None:
        self._use({**durable, **self.login(durable)}, "login")
        self._keep(self.values or {})

    def _use(self, values: Mapping[str, str], source: str) -> None:
        for value in values.values():
            self.remember(value)
        self.values, self.source = dict(values), source

    def _keep(self, values: Mapping[str, str]) -> None:
        if values:
            self.store.set(self.name, json.dumps(dict(values)))
        else:
            self.store.delete(self.name)

    def _stored(self) -> dict[str, str]:
        try:
            data = json.loads(self.store.get(self.name) or "{}")
            kept = {k: str(data[k]) for k in self.fields if data.get(k)}
        except (ValueError, TypeError, AttributeError):
            return {}  # unreadable: as if nothing was kept
        for value in kept.values():
            self.remember(value)
        return kept
