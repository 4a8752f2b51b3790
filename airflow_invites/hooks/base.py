"""What every platform hook shares: the connection, secrets, the HTTP client, calls through the
platform's error table, counters, and Airflow's test button."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import requests
from airflow.sdk import BaseHook

from airflow_invites.core.adapter import Handle, MembershipAdapter
from airflow_invites.core.errors import InviteInputError, TransientPlatformError
from airflow_invites.core.http import DEFAULT_TIMEOUT, Check, HttpClient, RateLimiter, RetryPolicy
from airflow_invites.core.membership import parse_bool
from airflow_invites.core.pacing import LEARNED_RATE, AdaptivePacer, shared_pacer
from airflow_invites.core.replies import ErrorTable, Reply, read_reply
from airflow_invites.core.runtime_store import RuntimeStore
from airflow_invites.core.secrets import SecretScrubber
from airflow_invites.platforms import PLATFORMS

T = TypeVar("T")

USER_AGENT = "airflow-invites/0.1.0 (+https://github.com/airflow-invites/airflow-invites)"


class InvitesHook(BaseHook, MembershipAdapter):
    """Base of the platform hooks. Subclasses declare the class attributes, their error table
    (``errors``) and envelope reader (``read_envelope``), and the adapter methods."""

    conn_name_attr: ClassVar[str]
    default_conn_name: ClassVar[str]
    conn_type: ClassVar[str]
    hook_name: ClassVar[str]
    #: used when the connection has no host
    default_host: ClassVar[str] = ""
    #: extras whose values are secrets (the password is always one)
    secret_extras: ClassVar[tuple[str, ...]] = ()
    #: client-side pacing at the platform's documented limit: (requests per second, burst), or None
    client_rate: ClassVar[tuple[float, int] | None] = None
    #: where the platform publishes no limit: adaptive pacing from (start rate, burst), or None
    adaptive_rate: ClassVar[tuple[float, int] | None] = None
    #: what the platform's refusals mean (``core.replies``)
    errors: ClassVar[ErrorTable]
    #: set by a task that can defer: a wait hint longer than this many seconds raises ``LongWait``
    #: instead of being slept in the worker (None: every wait is slept, within the retry bounds)
    defer_after: float | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A hook that resolves handles takes the kinds its registry entry lists (the one source)."""
        super().__init_subclass__(**kwargs)
        spec = PLATFORMS.get(str(getattr(cls, "platform", "")))
        if (
            spec is not None
            and "handle_kinds" not in cls.__dict__
            and cls.resolve is not MembershipAdapter.resolve
        ):
            cls.handle_kinds = dict(spec.handle_kinds)

    def bare_handle(self, text: str) -> Handle | None:
        """A handle given without ``kind:``, where the registry says it is unambiguous (an e-mail, Name#1234)."""
        pattern = PLATFORMS[self.platform].bare_handle_pattern
        if not self.handle_kinds or not pattern or not re.fullmatch(pattern, text):
            return None
        return Handle("email" if "email" in self.handle_kinds else next(iter(self.handle_kinds)), text)

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        named = kwargs.pop(self.conn_name_attr, None)
        super().__init__(**kwargs)
        self.conn_id: str = named or conn_id or self.default_conn_name
        self.scrubber = SecretScrubber()
        self.store = RuntimeStore(self.conn_id)
        self._auth_lock = threading.RLock()  # invite threads share one login / token

    # -- connection ------------------------------------------------------------------------------

    @cached_property
    def connection(self) -> Any:
        conn = self.get_connection(self.conn_id)
        self.scrubber.add(conn.password)
        extras = conn.extra_dejson or {}
        self.scrubber.add(*(str(extras[k]) for k in self.secret_extras if extras.get(k)))
        return conn

    @property
    def extras(self) -> Mapping[str, Any]:
        return self.connection.extra_dejson or {}

    def extra(self, name: str, default: Any = None) -> Any:
        value = self.extras.get(name)
        return default if value in (None, "") else value

    def extra_flag(self, name: str, default: bool) -> bool:
        """A yes/no extra; anything but true/false is an input error naming the field."""
        return parse_bool(self.extra(name, default), f"connection {self.conn_id}: extra {name}")

    def base_url(self) -> str:
        """The connection's host (with a scheme; https by default), or the platform's default."""
        host = (self.connection.host or self.default_host).strip().rstrip("/")
        if not host:
            raise InviteInputError(f"connection {self.conn_id}: host", "the platform's base URL")
        if "://" not in host:
            host = f"https://{host}"
        parts = urlsplit(host)
        if parts.username is not None or parts.password is not None:
            self.scrubber.add(parts.password, parts.username)
            raise InviteInputError(
                f"connection {self.conn_id}: host",
                "a URL without user:password@ (credentials go in the connection's own fields)",
                show_value=False,
            )
        if self.connection.port and host.count(":") < 2:
            host = f"{host}:{self.connection.port}"
        return host

    @cached_property
    def http(self) -> HttpClient:
        return HttpClient(
            platform=self.platform,
            base_url=self.base_url(),
            scrubber=self.scrubber,
            timeout=_number(self, "timeout", DEFAULT_TIMEOUT, minimum=0.1, maximum=600),
            verify=self.extra_flag("verify_ssl", True),
            headers={"User-Agent": self.user_agent(), "Accept": "application/json"},
            retry=self.retry_policy(),
            rate_limiter=self._rate_limiter(),
            logger=self.log,  # type: ignore[arg-type]
        )

    def http_if_used(self) -> HttpClient | None:
        """The HTTP client if a call was made (building one reads the connection), else None."""
        return self.__dict__.get("http")

    def retry_policy(self) -> RetryPolicy:
        """The connection's ``max_attempts`` (default 8) on the shared policy."""
        attempts = self.extra("max_attempts", RetryPolicy.max_attempts)
        if isinstance(attempts, bool) or not str(attempts).strip().isdigit() or int(str(attempts)) < 1:
            raise InviteInputError(
                f"connection {self.conn_id}: extra max_attempts", "an integer >= 1", attempts
            )
        return RetryPolicy(max_attempts=int(str(attempts)), defer_after=self.defer_after)

    def _rate_limiter(self) -> RateLimiter | None:
        """Client-side pacing: the documented limit, the connection's own figures, or learned (adaptive)."""
        rate, burst = self.client_rate or self.adaptive_rate or (0.0, 1)
        explicit = self.extra("max_requests_per_second") is not None
        rate = _number(self, "max_requests_per_second", rate)
        burst = int(_number(self, "burst", burst, minimum=1))
        if rate <= 0:
            return None
        if self.adaptive_rate is None:
            return RateLimiter(rate, burst)
        start = self.adaptive_rate[0]
        learned = self.store.get(LEARNED_RATE)
        if learned and learned.replace(".", "", 1).isdigit():
            start = max(start, 0.9 * float(learned))
        key = (self.platform, self.base_url(), self.conn_id)
        return shared_pacer(key, start, burst, cap=rate if explicit else None)

    def remember_pace(self) -> None:
        """Keep the rate an adaptive pacer learned for the connection's next run."""
        http = self.http_if_used()
        pacer = http.rate_limiter if http else None
        if isinstance(pacer, AdaptivePacer):
            self.store.set(LEARNED_RATE, f"{pacer.rate:.2f}")

    def user_agent(self) -> str:
        return USER_AGENT

    # -- calls -----------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        check: Check[T] | None = None,
        errors: ErrorTable | None = None,
        person: bool = False,
        write: bool = False,
        auth: Callable[[], Mapping[str, str]] | None = None,
        **kwargs: Any,
    ) -> Any:
        """One authenticated API call through the shared HTTP layer.

        By default the reply is read with ``read_envelope`` and interpreted with ``errors`` (the
        hook's table unless an endpoint's own is given); ``person=True`` when the call names one
        person, so that a per-person refusal is that person's outcome. ``check`` replaces all that
        for a reply of another shape. ``auth`` gives this call's headers instead of the hook's
        session (an endpoint that takes a static key): no re-authentication then.
        """
        if check is None:
            table = errors or self.errors

            def check(response: requests.Response) -> Any:
                reply = read_reply(response, self.platform, self.read_envelope, write=write)
                return table.interpret(reply, write=write, person=person)

        return self.http.request(
            method,
            path,
            check=check,
            auth=auth or self._locked_auth_headers,
            reauthenticate=self._reauthenticator() if auth is None else None,
            write=write,
            **kwargs,
        )

    def _reauthenticator(self) -> Callable[[], None] | None:
        return self._locked_reauthenticate if self.can_reauthenticate() else None

    def _locked_auth_headers(self) -> Mapping[str, str]:
        with self._auth_lock:
            return self.auth_headers()

    def _locked_reauthenticate(self) -> None:
        with self._auth_lock:
            self.reauthenticate()

    def read_envelope(self, response: requests.Response, body: Any) -> Reply:
        """The platform's envelope of a parsed JSON body: success and value, or code, message, hint."""
        raise NotImplementedError(f"{type(self).__name__} reads no envelope: pass check= to call()")

    def auth_headers(self) -> Mapping[str, str]:
        """Headers that authenticate a call (authenticating first if needed)."""
        return {}

    def can_reauthenticate(self) -> bool:
        """True if ``reauthenticate`` can get new credentials (a refresh, a login)."""
        return False

    def reauthenticate(self) -> None:
        """Drop the current credentials and obtain new ones."""

    def remember_secret(self, value: str | None) -> str | None:
        """Register a value obtained at run time (token, cookie) as a secret; returns it."""
        self.scrubber.add(value)
        return value

    # -- Airflow's test button -------------------------------------------------------------------

    def check_connection(self) -> str:
        """Prove the credentials with a harmless read; return a short message."""
        raise NotImplementedError

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's Test button: one attempt per call, short timeouts, an answer within ``TEST_DEADLINE``.

        A throttled or failing platform is reported with its own reason at once (no backoff, no
        waiting out a wait hint); a platform that does not answer in time is reported as such.
        """
        answer: list[tuple[bool, str]] = []

        def run() -> None:
            try:
                client = self.http
                client.retry = RetryPolicy(max_attempts=1)
                client.timeout = min(client.timeout, TEST_REQUEST_TIMEOUT)
                client.rate_limiter = None  # a test sends one or two requests: no pacing wait
                answer.append((True, self.check_connection()))
            except Exception as exc:
                answer.append((False, self.scrubber.scrub(_test_reason(exc))))

        worker = threading.Thread(target=run, name=f"test-{self.conn_id}", daemon=True)
        worker.start()
        worker.join(TEST_DEADLINE)
        if answer:
            return answer[0]
        return False, (
            f"{self.platform}: no answer within {TEST_DEADLINE:.0f} s (the platform or the network is slow "
            "or unreachable); nothing was changed"
        )


#: seconds the Test button waits for each reply, and for its whole answer
TEST_REQUEST_TIMEOUT, TEST_DEADLINE = 4.0, 7.0


def _test_reason(exc: Exception) -> str:
    """The platform's own reason, without the retry layer's 'gave up' bookkeeping."""
    text = str(exc).split("; gave up: ", 1)[0]
    hint = getattr(exc, "retry_after", None)
    if isinstance(exc, TransientPlatformError) and hint:
        text += f" (the platform asks to wait {hint:.0f} s: test again later)"
    return text


def _number(
    hook: InvitesHook, name: str, default: float, *, minimum: float = 0.0, maximum: float | None = None
) -> float:
    value = hook.extra(name, default)
    expected = f"a number from {minimum:g}" + (f" to {maximum:g}" if maximum is not None else " up")
    try:
        number = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        raise InviteInputError(f"connection {hook.conn_id}: extra {name}", expected, value) from None
    if not number >= minimum or (maximum is not None and number > maximum):  # NaN fails too
        raise InviteInputError(f"connection {hook.conn_id}: extra {name}", expected, value)
    return number
