"""Client-side pacing: a fixed token bucket where a platform documents its limit, and an adaptive one
where it does not.

``AdaptivePacer`` starts gently, raises its rate while replies are clean, steps down on a throttle
reply (the retry honours the platform's own wait hint) and then climbs again slowly near the rate
that was throttled, so that it settles just under a ceiling nobody told it. One pacer is shared by
every task of a worker process that uses the same platform, host and connection; the rate it
learned is kept in the connection's ``RuntimeStore`` so that the next run starts from it. A
connection's ``max_requests_per_second`` caps it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: how much a clean second raises the rate far from the last throttled rate, and a clean ten
#: seconds near it (a throttle may cost a long wait: VRChat asks for a minute)
FAST_STEP, SLOW_STEP = 0.25, 0.03
#: what a throttle reply does to the rate
STEP_DOWN = 0.8
#: the lowest rate an adaptive pacer goes down to (requests per second)
FLOOR = 0.2
LEARNED_RATE = "learned_rate"  # RuntimeStore name


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

    def record(self, *, throttled: bool) -> None:
        """A reply arrived (``throttled``: the platform asked us to slow down). Fixed: nothing to learn."""


class AdaptivePacer(RateLimiter):
    """A token bucket whose rate follows the platform's replies (see the module's docstring).

    :param start: the rate of the first request (requests per second)
    :param cap: never faster than this (None: no cap)
    """

    def __init__(
        self,
        start: float,
        burst: int = 1,
        *,
        cap: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(min(start, cap) if cap else start, burst, sleep)
        self.cap = cap
        self.throttled_at: float | None = None  # the last rate a throttle reply came at
        self.throttles = 0
        self._clock = clock
        self._since = clock()  # start of the current clean stretch

    def record(self, *, throttled: bool) -> None:
        with self._lock:
            now = self._clock()
            if throttled:
                self.throttles += 1
                self.throttled_at = self.rate
                self.rate = max(FLOOR, self.rate * STEP_DOWN)
                self._tokens = min(self._tokens, 0.0)  # no burst right after a throttle
                self._since = now
                return
            clean = now - self._since
            if clean < 1.0:
                return
            near = self.throttled_at is not None and self.rate >= 0.9 * self.throttled_at
            if near and clean < 10.0:
                return
            self.rate *= 1 + SLOW_STEP if near else (1 + FAST_STEP) ** int(clean)
            if self.throttled_at is not None and not near:
                self.rate = min(self.rate, 0.9 * self.throttled_at)
            if self.cap:
                self.rate = min(self.rate, self.cap)
            self._since = now


_SHARED: dict[tuple[str, ...], AdaptivePacer] = {}
_SHARED_LOCK = threading.Lock()


def shared_pacer(key: tuple[str, ...], start: float, burst: int, cap: float | None) -> AdaptivePacer:
    """The pacer of ``key`` (platform, host, connection) in this process, made on first use."""
    with _SHARED_LOCK:
        pacer = _SHARED.get(key)
        if pacer is None or pacer.cap != cap:
            pacer = _SHARED[key] = AdaptivePacer(start, burst, cap=cap)
        return pacer
