"""The sandbox's shared parts: the ledger behind the admin API and the platform base class.

Every platform module in ``sandbox/platforms/`` defines ``PLATFORM``, a ``SandboxPlatform``
subclass, written one way: ``routes()`` is its table of the real API's paths, each handler an
``async def handler(request) -> Response`` that raises ``SandboxError`` with the platform's own
error reply. Handlers never ``await`` between reading and writing state, so concurrent requests
see a consistent state (one event loop, no threads).
"""

from __future__ import annotations

import random
import string
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

FAULT_KINDS = ("throttle", "server_error", "reset", "timeout", "truncated", "lost_response")
#: hostile replies: only when asked for by name (not part of the default mix above)
HOSTILE_KINDS = ("html", "empty", "malformed", "huge", "redirect")


@dataclass
class FaultPlan:
    rate: float = 0.0
    kinds: tuple[str, ...] = ()
    latency_ms: float = 0.0
    timeout_ms: float = 3000.0
    throttle_seconds: float = 1.0  # the wait hint a "throttle" fault gives
    huge_bytes: int = 50 * 1024 * 1024  # the body size of a "huge" fault
    redirect_to: str = "http://elsewhere.invalid/"  # where a "redirect" fault points
    rng: random.Random = field(default_factory=lambda: random.Random(1))

    def draw(self) -> str | None:
        if self.rate <= 0 or not self.kinds:
            return None
        return self.rng.choice(self.kinds) if self.rng.random() < self.rate else None


@dataclass
class InviteCount:
    applied: int = 0
    requests: int = 0


class Ledger:
    """What the admin API reports: invite and removal counts, the request log, faults and limits."""

    def __init__(self) -> None:
        self.invites: dict[tuple[str, str, str], InviteCount] = defaultdict(InviteCount)
        self.removals: dict[tuple[str, str, str], InviteCount] = defaultdict(InviteCount)
        self.requests: list[dict[str, Any]] = []
        self.faults: dict[str, FaultPlan] = {}
        self.limit_scale: dict[str, float] = {}
        #: explicit ceilings (``PUT /_sandbox/limits`` with ``rate``): one bucket per platform
        self.ceilings: dict[str, LeakyBucket] = {}

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]

    def invite_requested(self, platform: str, group: str, user: str) -> None:
        self.invites[(platform, group, user)].requests += 1

    def invite_applied(self, platform: str, group: str, user: str) -> None:
        self.invites[(platform, group, user)].applied += 1

    def removal_requested(self, platform: str, group: str, user: str) -> None:
        self.removals[(platform, group, user)].requests += 1

    def removal_applied(self, platform: str, group: str, user: str) -> None:
        self.removals[(platform, group, user)].applied += 1

    def log_request(self, platform: str, method: str, path: str, status: int) -> None:
        self.requests.append({"platform": platform, "method": method, "path": path, "status": status})

    def fault_plan(self, platform: str) -> FaultPlan | None:
        return self.faults.get(platform) or self.faults.get("*")

    def scale(self, platform: str) -> float:
        return self.limit_scale.get(platform, self.limit_scale.get("*", 1.0))

    def set_ceiling(self, platform: str, rate: float, burst: int) -> None:
        """``rate`` requests per second, bursts of ``burst``, for all of ``platform``; rate 0 removes it."""
        if rate > 0:
            self.ceilings[platform] = LeakyBucket(rate, burst)
        else:
            self.ceilings.pop(platform, None)

    def ceiling_wait(self, platform: str) -> float | None:
        """Count one request against ``platform``'s ceiling: seconds to wait if over it, else None.

        The ceiling is absolute (``scale`` does not multiply it) and is checked before the platform
        sees the request, so a refused request does not count against the documented limits.
        """
        bucket = self.ceilings.get(platform)
        return None if bucket is None else bucket.hit(platform, 1.0)


class FixedWindowLimiter:
    """``calls`` per ``seconds`` per key, scaled by the ledger (scale 0 = off)."""

    def __init__(self, calls: int, seconds: float) -> None:
        self.calls = calls
        self.seconds = seconds
        self.windows: dict[str, tuple[float, int]] = {}

    def hit(self, key: str, scale: float) -> float | None:
        """Count one call; returns seconds until the window resets if over the limit, else None."""
        if scale <= 0:
            return None
        window = self.seconds / scale
        now = time.monotonic()
        start, count = self.windows.get(key, (now, 0))
        if now - start >= window:
            start, count = now, 0
        count += 1
        self.windows[key] = (start, count)
        if count > self.calls:
            return max(0.0, window - (now - start))
        return None

    def remaining(self, key: str) -> int:
        return max(0, self.calls - self.windows.get(key, (0.0, 0))[1])


class LeakyBucket:
    """A bucket of ``burst`` drained at ``rate`` per second per key, scaled by the ledger."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.levels: dict[str, tuple[float, float]] = {}

    def hit(self, key: str, scale: float) -> float | None:
        """Add one call; returns seconds until there is room if full, else None."""
        if scale <= 0:
            return None
        rate = self.rate * scale
        now = time.monotonic()
        level, last = self.levels.get(key, (0.0, now))
        level = max(0.0, level - (now - last) * rate)
        if level + 1 > self.burst:
            self.levels[key] = (level, now)
            return (level + 1 - self.burst) / rate
        self.levels[key] = (level + 1, now)
        return None


def random_token(
    rng: random.Random, length: int, alphabet: str = string.ascii_letters + string.digits
) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


@dataclass(frozen=True)
class PlatformEnv:
    """What ``--print-env`` says for one platform.

    ``handles`` are the same people as ``users``, in the same order, each in a handle form the
    hook resolves (``username:ada.lovelace``, ``email:...``, ``name:...``); empty where the platform
    has none yet.
    """

    connection: dict[str, Any]
    group: str
    users: list[str]
    handles: list[str] = field(default_factory=list)


class SandboxError(Exception):
    """A handler's refusal: the platform's own error reply, sent as is."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


class DuplicateHandle(ValueError):
    """``add_people`` was asked for a handle the real platform keeps unique (an e-mail, a username)."""


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    """One path of a platform's real API: ``GET /api/v1/groups.info`` -> ``handler(request)``."""

    method: str
    path: str
    handler: Handler


class SandboxPlatform(ABC):
    """One emulated platform, mounted under ``/<name>``."""

    name: ClassVar[str]

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.reset()

    @property
    def prefix(self) -> str:
        return f"/{self.name}"

    @abstractmethod
    def reset(self) -> None:
        """Back to the deterministic seeded state."""

    def routes(self) -> list[Route]:
        """The platform's real API: its route table (paths below ``prefix``)."""
        return []

    def router(self) -> APIRouter:
        """The route table as a FastAPI router; a ``SandboxError`` becomes its reply."""
        router = APIRouter()
        for route in self.routes():
            router.add_api_route(route.path, _endpoint(route.handler), methods=[route.method])
        return router

    @abstractmethod
    def env(self, base_url: str) -> PlatformEnv:
        """Connection, group and people not in it, for ``--print-env`` (base_url ends at the prefix)."""

    def add_people(self, count: int, group: str | None = None) -> list[str]:
        """``count`` new people, in no group or already members of ``group`` (``KeyError`` if unknown);
        returns their ids as the hook takes them. Seeded members are not invites: the ledger is untouched."""
        return [person["id"] for person in self.create_people(count, group)]

    @abstractmethod
    def create_people(
        self, count: int, group: str | None = None, handles: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """``add_people`` with each person's handles: ``[{"id", "handles": {kind: value}}]``.

        ``handles`` sets those values on every person created (``DuplicateHandle`` where the real
        platform forbids two people with one value).
        """

    @abstractmethod
    def members(self, group: str) -> dict[str, list[str]]:
        """``{"members": [ids], "invited": [ids], "protected": [ids]}`` of ``group`` (``KeyError`` if
        unknown): ids as the hook takes them; ``protected`` are the members the platform or we never
        remove (the owner, the connection's own account)."""

    @abstractmethod
    def accept(self, group: str, user: str) -> bool:
        """The person accepts a pending invite; False if there was none."""

    @abstractmethod
    def secrets(self) -> list[str]:
        """Every credential held or issued (passwords, keys, codes, tokens, cookies)."""

    @abstractmethod
    def throttle_response(self, request: Request) -> Response:
        """The platform's own rate-limit reply, with its wait hint."""

    def server_error_response(self, request: Request) -> Response:
        """The platform's own 5xx reply."""
        return JSONResponse({"error": "Internal Server Error"}, status_code=500)

    def ceiling_response(self, request: Request, wait: float) -> Response:
        """``throttle_response`` for a request over the explicit ceiling, hinting ``wait`` seconds."""
        self._ceiling_wait = wait
        try:
            return self.throttle_response(request)
        finally:
            self._ceiling_wait = None

    # helpers for platform modules
    _ceiling_wait: float | None = None

    def fault_wait(self) -> float:
        """Seconds a throttle reply asks the client to wait: the ceiling's own wait while
        ``ceiling_response`` runs, else the wait hint of a "throttle" fault."""
        if self._ceiling_wait is not None:
            return self._ceiling_wait
        plan = self.ledger.fault_plan(self.name)
        return plan.throttle_seconds if plan else 1.0

    def limit_scale(self) -> float:
        return self.ledger.scale(self.name)

    def invite_requested(self, group: str, user: str) -> None:
        self.ledger.invite_requested(self.name, group, user)

    def invite_applied(self, group: str, user: str) -> None:
        self.ledger.invite_applied(self.name, group, user)

    def removal_requested(self, group: str, user: str) -> None:
        self.ledger.removal_requested(self.name, group, user)

    def removal_applied(self, group: str, user: str) -> None:
        self.ledger.removal_applied(self.name, group, user)


def _endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except SandboxError as refused:
            return refused.response

    endpoint.__name__ = getattr(handler, "__name__", "endpoint")
    return endpoint
