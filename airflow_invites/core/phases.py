"""What the requests of the current thread are counted as: ``resolve``, ``lookup``, ``write``...

The algorithm names the phase; the HTTP layer counts each request under it (per thread).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

PHASE: ContextVar[str] = ContextVar("airflow_invites_phase", default="other")


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Count the requests sent inside this block under ``name``."""
    token = PHASE.set(name)
    try:
        yield
    finally:
        PHASE.reset(token)
