"""Hostile replies on every platform: an HTML error page, an empty body, a 200 with another JSON
shape, a 50 MB body, a redirect to another host. Each ends in a clear error naming the platform:
no crash (no KeyError, TypeError...), no hang, no secret in it, and credentials never leave.

Every request of the platform gets the hostile reply (``rate: 1``), the logins included; the
connections allow two attempts per call so that a test stays short.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException

from airflow_invites.core import runtime_store
from airflow_invites.core.membership import invite_people
from airflow_invites.core.outcome import Status
from airflow_invites.platforms import PLATFORMS

NAMES = sorted(PLATFORMS)
#: the error must contain one of these, per kind
CLEAR = {
    "html": ("not JSON (text/html", "HTTP 502"),
    "empty": ("empty",),
    "huge": ("over 20 MB",),
    "redirect": ("answered a redirect",),
    # each platform words its own envelope check, or the algorithm says "unexpected shape"
    "malformed": ("",),
}


class Elsewhere(BaseHTTPRequestHandler):
    """Another host: records every request that reaches it (none must)."""

    seen: list[dict[str, Any]] = []

    def _any(self) -> None:
        Elsewhere.seen.append({"path": self.path, "headers": dict(self.headers)})
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = do_PUT = _any

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_address[1]}"  # another host name than 127.0.0.1
    server.shutdown()


@pytest.fixture(autouse=True)
def no_kept_sessions() -> Iterator[None]:
    runtime_store._LOCAL.clear()
    yield
    runtime_store._LOCAL.clear()


@pytest.mark.parametrize("kind", list(CLEAR))
@pytest.mark.parametrize("platform", NAMES)
def test_hostile_reply_is_a_clear_error(sandbox, monkeypatch, caplog, capsys, elsewhere, platform, kind):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{platform.upper()}_DEFAULT",
        sandbox.connection_env(platform, max_attempts=2, max_requests_per_second=0),
    )
    env = sandbox.env()[platform]
    Elsewhere.seen.clear()
    sandbox.faults(platform, rate=1.0, kinds=[kind], huge_mb=50, redirect_to=elsewhere)
    hook = PLATFORMS[platform].hook_class()
    hook.http.sleep = lambda seconds: None
    started = time.monotonic()
    texts: list[str] = []
    try:
        outcomes = invite_people(hook, env["group"], env["users"][:2])
    except Exception as exc:  # transient (the task would be retried) or a clear failure
        error = exc
        chain = "".join(traceback.format_exception(exc))
        texts.append(chain)
        assert isinstance(exc, AirflowException), chain  # ours, not a KeyError/TypeError crash
        message = str(exc)
    else:
        error = None
        assert {o.status for o in outcomes} == {Status.FAILED}, outcomes  # nobody reported invited
        message = outcomes[0].detail
        texts.append(json.dumps([o.to_dict() for o in outcomes]))
    elapsed = time.monotonic() - started
    sandbox.clear_faults()

    assert message.startswith(f"{platform}:") or f"{platform}:" in message, message
    assert any(words in message for words in CLEAR[kind]), message
    assert elapsed < 20, f"{elapsed:.1f} s"
    assert Elsewhere.seen == []  # the redirect was not followed: no credentials went elsewhere
    assert [r for r in sandbox.invites(platform) if r["applied"]] == [] or kind in ("empty", "malformed")
    captured = capsys.readouterr()
    everything = "\n".join([*texts, message, caplog.text, captured.out, captured.err])
    leaked = [s for s in sandbox.secrets() if len(s) >= 5 and s in everything]
    assert leaked == []
    print(f"{platform} {kind}: {type(error).__name__ if error else 'failed outcomes'}: {message[:160]}")
