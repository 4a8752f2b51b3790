"""No secret anywhere, on every platform and auth mode; everything obtained at run time is masked.

For each auth mode the operator runs three times (``operator.execute(context)`` with a ``ti`` that
records ``xcom_push``): a successful invite, a refused group, and a platform answering only faults.
Then every credential the sandbox holds or issued (``GET /_sandbox/secrets``, fetched after the
runs) is looked for in: the captured logs (caplog at DEBUG, urllib3 included, and stdout/stderr),
the XCom values, the rendered template fields, and the exception texts with their whole chain.
Airflow masks only in real task logs (not here), so this proves we never write a secret at all.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from airflow.sdk.log import redact

from airflow_invites.core import runtime_store
from airflow_invites.core.membership import invite_people
from airflow_invites.platforms import PLATFORMS

#: a syntactically valid group the bot cannot invite into, per platform
REFUSED_GROUP = {
    "rocketchat": "secret-club",
    "bitrix24": "999",
    "bungie": "1",
    "vrchat": "grp_00000000-0000-4000-8000-000000000000",
    "playfab": "0000000000000001",
}


def live(sandbox: Any, platform: str) -> Any:
    return sandbox.server.config.app.state.sandbox.platforms[platform]


@pytest.fixture(autouse=True)
def no_kept_sessions() -> Iterator[None]:
    runtime_store._LOCAL.clear()
    yield
    runtime_store._LOCAL.clear()


# -- the auth modes: each returns the connection (as AIRFLOW_CONN_ JSON) and extra secrets to look for


def default_mode(platform: str) -> Callable[[Any], tuple[dict[str, Any], list[str]]]:
    def make(sandbox: Any) -> tuple[dict[str, Any], list[str]]:
        return dict(sandbox.env()[platform]["connection"]), []

    return make


def rocketchat_password_totp(sandbox: Any) -> tuple[dict[str, Any], list[str]]:
    user = live(sandbox, "rocketchat").totp_user
    conn = {
        "conn_type": "rocketchat",
        "host": f"{sandbox.base_url}/rocketchat",
        "login": user["username"],
        "password": user["password"],
        "extra": {"auth_type": "password", "totp_secret": user["totp_secret"]},
    }
    return conn, []


def bungie_oauth(sandbox: Any) -> tuple[dict[str, Any], list[str]]:
    conn = dict(sandbox.env()["bungie"]["connection"])
    basic = base64.b64encode(f"{conn['login']}:{conn['password']}".encode()).decode()
    return conn, [basic]  # the Basic header carries the client secret


def vrchat_auth_cookie(sandbox: Any) -> tuple[dict[str, Any], list[str]]:
    from airflow_invites.core.runtime_store import RuntimeStore
    from airflow_invites.hooks.vrchat import SESSION_TOKEN, VRChatHook

    conn = dict(sandbox.env()["vrchat"]["connection"])
    conn["extra"] = {**conn["extra"], "timeout": 2}
    os.environ["AIRFLOW_CONN_VRCHAT_COOKIE_SETUP"] = json.dumps(conn)
    VRChatHook(conn_id="vrchat_cookie_setup").check_connection()  # a login, as a human would do
    cookie = json.loads(RuntimeStore("vrchat_cookie_setup").get(SESSION_TOKEN) or "{}")["auth"]
    del os.environ["AIRFLOW_CONN_VRCHAT_COOKIE_SETUP"]
    return {**conn, "login": None, "password": None, "extra": {"auth_cookie": cookie}}, [cookie]


def bitrix24_oauth(sandbox: Any) -> tuple[dict[str, Any], list[str]]:
    return live(sandbox, "bitrix24").oauth_connection(f"{sandbox.base_url}/bitrix24"), []


MODES: dict[str, tuple[str, Callable[[Any], tuple[dict[str, Any], list[str]]]]] = {
    "rocketchat-token": ("rocketchat", default_mode("rocketchat")),
    "rocketchat-password-totp": ("rocketchat", rocketchat_password_totp),
    "bungie-apikey-oauth-refresh": ("bungie", bungie_oauth),
    "vrchat-password-totp": ("vrchat", default_mode("vrchat")),
    "vrchat-auth-cookie": ("vrchat", vrchat_auth_cookie),
    "playfab-secret-key-entity-token": ("playfab", default_mode("playfab")),
    "bitrix24-webhook": ("bitrix24", default_mode("bitrix24")),
    "bitrix24-oauth": ("bitrix24", bitrix24_oauth),
}


class FakeTI:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def exception_texts(exc: BaseException) -> list[str]:
    """str, repr, args and the formatted traceback of the exception and its whole chain."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), *map(repr, current.args)]
        current = current.__cause__ or current.__context__
    return texts


@pytest.mark.parametrize("mode", list(MODES))
def test_no_secret_in_logs_xcom_templates_or_exceptions(sandbox, monkeypatch, caplog, capsys, mode):
    platform, make_connection = MODES[mode]
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    env = sandbox.env()[platform]
    conn, extra_secrets = make_connection(sandbox)
    # two attempts per call, no pacing: the fault run gives up quickly
    conn["extra"] = {**conn.get("extra", {}), "timeout": 2, "max_attempts": 2, "max_requests_per_second": 0}
    monkeypatch.setenv(f"AIRFLOW_CONN_{platform.upper()}_DEFAULT", json.dumps(conn))
    if platform == "bungie":
        live(sandbox, "bungie").expire_access_tokens()  # the run refreshes mid-way too
    texts: list[str] = []
    hooks: list[Any] = []
    connection_tests: list[tuple[bool, str]] = []

    def run(group: str, users: list[str]) -> None:
        ti = FakeTI()
        operator = PLATFORMS[platform].operator_class(
            task_id="invite", group=group, users=users, message="Welcome"
        )
        operator.render_template_fields({"params": {}, "ti": ti})
        hook = operator.get_hook()
        hooks.append(hook)
        monkeypatch.setattr(operator, "get_hook", lambda: hook)
        try:
            texts.append(json.dumps(operator.execute({"ti": ti})))
        except Exception as exc:
            texts.extend(exception_texts(exc))
        texts.append(json.dumps(ti.pushed))
        texts.extend(repr(getattr(operator, field)) for field in operator.template_fields)
        connection_tests.append(hook.test_connection())
        texts.append(str(connection_tests[-1]))

    run(env["group"], env["users"][:2])
    if platform == "bungie":
        live(sandbox, "bungie").expire_access_tokens()
    run(REFUSED_GROUP[platform], env["users"][2:3])
    sandbox.faults(platform, rate=1.0, kinds=["server_error", "reset", "truncated"], seed=3)
    run(env["group"], env["users"][3:4])
    sandbox.clear_faults()

    captured = capsys.readouterr()
    texts += [caplog.text, captured.out, captured.err]
    everything = "\n".join(texts)
    secrets = [s for s in [*sandbox.secrets(), *extra_secrets] if s and len(s) >= 5]
    assert any(s in json.dumps(conn) for s in secrets)  # the connection's own secrets are listed
    leaked = [s for s in secrets if s in everything]
    assert leaked == []
    assert connection_tests[0][0], connection_tests[0]  # the credentials really worked
    assert any(r.name.startswith("urllib3") for r in caplog.records)  # urllib3's lines were captured


@pytest.mark.parametrize("mode", list(MODES))
def test_everything_obtained_at_run_time_is_masked_for_airflow(sandbox, monkeypatch, mode):
    """``redact`` (Airflow's task-log masker) hides each token issued to the hook during the run."""
    platform, make_connection = MODES[mode]
    env = sandbox.env()[platform]
    conn, extra_secrets = make_connection(sandbox)
    conn["extra"] = {**conn.get("extra", {}), "timeout": 2, "max_requests_per_second": 0}
    monkeypatch.setenv(f"AIRFLOW_CONN_{platform.upper()}_DEFAULT", json.dumps(conn))
    before = set(sandbox.secrets())
    hook = PLATFORMS[platform].hook_for()
    # a dry run authenticates and looks up (the Rocket.Chat TOTP user is not in the group: failed)
    invite_people(hook, env["group"], env["users"][:1], dry_run=True)
    issued = set(sandbox.secrets()) - before  # only this hook talked to the sandbox meanwhile
    held = [v for v in json.dumps(conn).split('"') if v in before or v in extra_secrets]
    if mode not in ("rocketchat-token", "bitrix24-webhook", "vrchat-auth-cookie"):  # these obtain nothing
        assert issued, "the hook obtained no token: the test would prove nothing"
    for secret in sorted(issued | set(held)):
        if len(secret) < 5:  # Airflow does not mask values this short (min_length_masked_secret)
            continue
        assert secret in hook.scrubber, "not registered as a secret"
        assert redact(f"token={secret}; next") == "token=***; next"
