"""The HTTP layer every hook uses: one ``requests.Session``, a timeout on every call, retries
that honour the platform's own wait hint, one re-authentication, no redirects, no secrets in
anything it logs or raises.

A hook hands each call a ``check`` function (its error table) that turns a ``requests.Response``
into a value or raises one of the errors in ``core.errors``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_any
from tenacity.stop import stop_base

from airflow_invites.core.errors import (
    AuthExpired,
    PermanentPlatformError,
    PlatformAuthError,
    TransientPlatformError,
)
from airflow_invites.core.secrets import SecretScrubber

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
    jitter: float = 0.1


class RateLimiter:
    """Token bucket: ``rate`` requests per second with bursts of ``burst``. Thread-safe."""

    def __init__(self, rate: float, burst: int = 1, sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self._sleep = sleep

    def acquire(self) -> None:
        if self.rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


def _not_sent(exc: requests.RequestException) -> bool:
    """True when the request surely never reached the server (so a write did not happen)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    text = repr(exc)
    return isinstance(exc, requests.exceptions.ConnectionError) and (
        "NewConnectionError" in text or "Connection refused" in text
    )


class _HintTooLong(stop_base):
    """Stop when the platform asks us to wait longer than we would hold a worker slot."""

    def __init__(self, max_hint: float) -> None:
        self.max_hint = max_hint

    def __call__(self, retry_state: RetryCallState) -> bool:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        hint = getattr(exc, "retry_after", None)
        return hint is not None and hint > self.max_hint


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
        self._sleep = sleep
        self.log = logger or logging.getLogger(f"airflow_invites.{platform}")
        self.requests_sent = 0
        self.retries = 0
        self._auth_lock = threading.Lock()
        self._auth_generation = 0  # bumped by each re-authentication

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
        state = {"reauthenticated": False}

        def attempt() -> T:
            generation = self._auth_generation
            try:
                return self._send(method, path, check, params, json, data, headers, auth, write)
            except AuthExpired as exc:
                if reauthenticate is None or state["reauthenticated"]:
                    raise PlatformAuthError(
                        f"{self.platform}: credentials refused ({self.scrubber.scrub(str(exc))})",
                        code=exc.code,
                    ) from None
                state["reauthenticated"] = True
                with self._auth_lock:  # one refresh for all threads (rotating tokens allow one)
                    if self._auth_generation == generation:
                        self.log.info("%s: credentials expired, authenticating again once", self.platform)
                        reauthenticate()
                        self._auth_generation += 1
                return attempt()

        retrying = Retrying(
            retry=retry_if_exception(lambda exc: self._retryable(exc, write)),
            stop=stop_any(stop_after_attempt(self.retry.max_attempts), _HintTooLong(self.retry.max_hint)),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        return retrying(attempt)

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
        if self.rate_limiter is not None:
            self.rate_limiter.acquire()
        url = self.url(path)
        started = time.monotonic()
        self.requests_sent += 1
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
        return check(response)

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

    @staticmethod
    def _retryable(exc: BaseException, write: bool) -> bool:
        if not isinstance(exc, TransientPlatformError):
            return False
        return not (write and exc.maybe_applied)

    def _wait(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        hint = getattr(exc, "retry_after", None)
        backoff = min(self.retry.max_delay, self.retry.base_delay * 2 ** (retry_state.attempt_number - 1))
        delay = float(hint) if hint is not None else backoff
        return delay + random.uniform(0, self.retry.jitter * max(delay, 0.1))

    def _log_retry(self, retry_state: RetryCallState) -> None:
        self.retries += 1
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        self.log.warning(
            "%s; waiting %.1f s (attempt %d of %d)",
            self.scrubber.scrub(str(exc)),
            wait,
            retry_state.attempt_number,
            self.retry.max_attempts,
        )


def json_body(response: requests.Response, platform: str, *, write: bool = False) -> Any:
    """The parsed JSON body; a body that is not JSON is a transient fault (HTML error page, cut reply)."""
    try:
        return response.json()
    except ValueError:
        kind = "empty" if not response.content else f"not JSON ({response.headers.get('Content-Type', '?')})"
        raise TransientPlatformError(
            f"{platform}: HTTP {response.status_code} with a body that is {kind}",
            maybe_applied=write,
        ) from None


def retry_after_seconds(response: requests.Response) -> float | None:
    """The standard ``Retry-After`` header in seconds, if present and numeric."""
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
