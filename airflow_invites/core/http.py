"""The HTTP layer every hook uses: one ``requests.Session``, a timeout on every call, retries
that honour the platform's own wait hint within a total wait budget, one re-authentication, no
redirects, no secrets in anything it logs or raises.

A hook hands each call a ``check`` function that turns a ``requests.Response`` into a value or
raises one of the errors in ``core.errors`` (usually its ``ErrorTable`` from ``core.replies``).

Retries are bounded three ways: ``max_attempts`` per call; a wait hint longer than ``max_hint`` is
not slept at all; and the waits of one call add up to at most ``max_call_wait``.
A call made while another call of the same client is being attempted (a login inside a call's
authentication) gets one attempt: its failure is retried by the outer call, never multiplied.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests

from airflow_invites.core.errors import (
    AuthExpired,
    InviteInputError,
    PermanentPlatformError,
    PersonRefused,
    PlatformAuthError,
    TransientPlatformError,
)
from airflow_invites.core.pacing import RateLimiter
from airflow_invites.core.phases import PHASE
from airflow_invites.core.replies import json_body, retry_after_seconds
from airflow_invites.core.secrets import SecretScrubber

__all__ = [
    "Check",
    "HttpClient",
    "LongWait",
    "RateLimiter",
    "RetryPolicy",
    "json_body",
    "retry_after_seconds",
]

T = TypeVar("T")
Check = Callable[[requests.Response], T]

DEFAULT_TIMEOUT = 30.0
#: a reply body larger than this is refused unread (no platform's API answers this much at once)
MAX_REPLY_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the HTTP layer tries before handing a transient error to Airflow's task retry."""

    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_hint: float = 600.0  # a platform asking us to wait longer than this: give up, let Airflow retry
    max_call_wait: float = 120.0  # seconds one call may spend waiting between its attempts, in total
    jitter: float = 0.1
    #: a wait longer than this is not slept: ``LongWait`` is raised for the caller to defer (None: never)
    defer_after: float | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise InviteInputError("max_attempts", "an integer >= 1", self.max_attempts)


class LongWait(TransientPlatformError):
    """The platform asked for a wait longer than ``RetryPolicy.defer_after``: wait outside the worker."""


def _not_sent(exc: requests.RequestException) -> bool:
    """True when the request surely never reached the server (so a write did not happen)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    text = repr(exc)
    return isinstance(exc, requests.exceptions.ConnectionError) and (
        "NewConnectionError" in text or "Connection refused" in text
    )


class HttpClient:
    """Calls one platform's API. Build one per hook; it is reused for every call of a task."""

    def __init__(
        self,
        *,
        platform: str,
        base_url: str,
        scrubber: SecretScrubber,
        timeout: float = DEFAULT_TIMEOUT,
        verify: bool = True,
        headers: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        logger: logging.Logger | None = None,
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ) -> None:
        self.platform = platform
        self.max_reply_bytes = max_reply_bytes
        self.base_url = base_url.rstrip("/")
        self.scrubber = scrubber
        self.timeout = timeout
        self.verify = verify
        self.retry = retry or RetryPolicy()
        self.rate_limiter = rate_limiter
        self.session = requests.Session()
        self.session.headers.update(headers or {})
        self.sleep = sleep
        self.log = logger or logging.getLogger(f"airflow_invites.{platform}")
        self.requests_sent = 0
        #: requests per phase (see ``phase``)
        self.requests_by_phase: Counter[str] = Counter()
        self.retries = 0
        self.waited = 0.0  # seconds slept between attempts, over all calls (for reports)
        self._counter_lock = threading.Lock()
        self._auth_lock = threading.Lock()
        self._auth_generation = 0  # bumped by each re-authentication
        self._attempting = threading.local()  # depth of calls being attempted in this thread

    def close(self) -> None:
        self.session.close()

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        *,
        check: Check[T],
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | list[tuple[str, Any]] | str | None = None,
        headers: Mapping[str, str] | None = None,
        auth: Callable[[], Mapping[str, str]] | None = None,
        reauthenticate: Callable[[], None] | None = None,
        write: bool = False,
    ) -> T:
        """Send one call with retries; ``write=True`` never re-sends after an ambiguous failure.

        ``auth`` returns the auth headers (called per attempt, so a refreshed token is used);
        ``reauthenticate`` is called once when ``check`` raises ``AuthExpired``.
        """
        reauthenticated = False

        def attempt() -> T:
            nonlocal reauthenticated
            generation = self._auth_generation
            try:
                return self._send(method, path, check, params, json, data, headers, auth, write)
            except AuthExpired as exc:
                if reauthenticate is None or reauthenticated:
                    raise PlatformAuthError(
                        f"{self.platform}: credentials refused ({self.scrubber.scrub(str(exc))})",
                        code=exc.code,
                    ) from None
                reauthenticated = True
                with self._auth_lock:  # one refresh for all threads (rotating tokens allow one)
                    if self._auth_generation == generation:
                        self.log.info("%s: credentials expired, authenticating again once", self.platform)
                        reauthenticate()
                        self._auth_generation += 1
                return attempt()

        if getattr(self._attempting, "depth", 0):  # inside another call's attempt: one try only
            return attempt()
        number, waited = 0, 0.0
        while True:
            number += 1
            self._attempting.depth = 1
            try:
                return attempt()
            except TransientPlatformError as exc:
                if write and exc.maybe_applied:
                    raise  # the caller looks the state up before anything is re-sent
                waited += self._wait_or_give_up(exc, number, waited)
            finally:
                self._attempting.depth = 0

    def _wait_or_give_up(self, exc: TransientPlatformError, number: int, waited: float) -> float:
        """Sleep before the next attempt, or raise ``exc`` (with why we stop) when a bound is reached."""
        policy = self.retry
        hint = exc.retry_after
        backoff = min(policy.max_delay, policy.base_delay * 2 ** (number - 1))
        delay = float(hint) if hint is not None else backoff
        delay += random.uniform(0, policy.jitter * max(delay, 0.1))
        if policy.defer_after is not None and hint is not None and hint > policy.defer_after:
            raise LongWait(
                f"{self.scrubber.scrub(str(exc))} (the platform asks for {hint:.0f} s: waiting outside the worker)",
                retry_after=hint,
                code=exc.code,
            ) from None
        why = ""
        if number >= policy.max_attempts:
            why = f"{number} attempts"
        elif hint is not None and hint > policy.max_hint:
            why = f"the platform asks for {hint:.0f} s, more than the {policy.max_hint:.0f} s we wait at once"
        elif waited + delay > policy.max_call_wait:
            why = (
                f"another {delay:.0f} s would exceed the {policy.max_call_wait:.0f} s one call may wait "
                f"({waited:.0f} s spent)"
            )
        if why:
            raise type(exc)(
                f"{self.scrubber.scrub(str(exc))}; gave up: {why}",
                retry_after=hint,
                maybe_applied=exc.maybe_applied,
                code=exc.code,
            ) from None
        with self._counter_lock:
            self.retries += 1
            self.waited += delay
        self.log.warning(
            "%s; waiting %.1f s (attempt %d of %d)",
            self.scrubber.scrub(str(exc)),
            delay,
            number,
            policy.max_attempts,
        )
        self.sleep(delay)
        return delay

    # -- internals -------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        check: Check[T],
        params: Any,
        json: Any,
        data: Any,
        headers: Mapping[str, str] | None,
        auth: Callable[[], Mapping[str, str]] | None,
        write: bool,
    ) -> T:
        all_headers = dict(headers or {})
        if auth is not None:
            all_headers.update(auth())
        _check_header_values(all_headers, self.platform)
        if self.rate_limiter is not None:
            self.rate_limiter.acquire()
        url = self.url(path)
        started = time.monotonic()
        with self._counter_lock:
            self.requests_sent += 1
            self.requests_by_phase[PHASE.get()] += 1
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                json=json,
                data=data,
                headers=all_headers,
                timeout=self.timeout,
                verify=self.verify,
                allow_redirects=False,
                stream=True,  # the body is read below, up to max_reply_bytes
            )
            self._read_body(response, method, url, write)
        except requests.RequestException as exc:
            kind = type(exc).__name__
            raise TransientPlatformError(
                f"{self.platform}: {method} {self._shown(url)} failed: {kind}",
                maybe_applied=write and not _not_sent(exc),
            ) from None
        self.log.debug(
            "%s %s -> %s (%.0f ms)",
            method,
            self._shown(url),
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        if response.is_redirect or 300 <= response.status_code < 400:
            target = urlsplit(response.headers.get("Location", "")).netloc or "?"
            raise PermanentPlatformError(
                f"{self.platform}: {method} {self._shown(url)} answered a redirect "
                f"({response.status_code} to host {target}); not followed, credentials stay here. "
                "Check the connection's host."
            )
        try:
            value = check(response)
        except (PersonRefused, PermanentPlatformError, PlatformAuthError, TransientPlatformError) as exc:
            exc.args = (self.scrubber.scrub(str(exc)),)  # a platform may echo what we sent
            if self.rate_limiter is not None:
                self.rate_limiter.record(throttled=isinstance(exc, TransientPlatformError) and exc.throttled)
            raise
        if self.rate_limiter is not None:
            self.rate_limiter.record(throttled=False)
        return value

    def _read_body(self, response: requests.Response, method: str, url: str, write: bool) -> None:
        """Read the body into ``response`` (as without streaming), refusing one over the cap."""
        size = 0
        chunks: list[bytes] = []
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > self.max_reply_bytes:
                response.close()  # drops the connection: the rest is never read
                raise TransientPlatformError(
                    f"{self.platform}: {method} {self._shown(url)} answered HTTP {response.status_code} "
                    f"with a body over {self.max_reply_bytes // (1024 * 1024)} MB; not read",
                    maybe_applied=write,
                )
            chunks.append(chunk)
        response._content = b"".join(chunks)
        response._content_consumed = True  # type: ignore[attr-defined]

    def _shown(self, url: str) -> str:
        """The URL's path, secrets scrubbed (never the query string, which may carry tokens)."""
        return self.scrubber.scrub(urlsplit(url).path)


def _check_header_values(headers: Mapping[str, str], platform: str) -> None:
    """HTTP headers carry Latin-1 only: a credential with other characters is the connection's error."""
    for name, value in headers.items():
        try:
            str(value).encode("latin-1")
        except UnicodeEncodeError:
            raise InviteInputError(
                f"{platform} connection: the value sent as header {name}",
                "Latin-1 characters only (check the connection's credentials for a stray character)",
                show_value=False,
            ) from None
