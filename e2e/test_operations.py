"""Airflow-native operations on the real stack: the Test button under throttling, long throttles waited
out in the triggerer (worker-seconds measured before/after), approval through the UI (approve once,
reject once), asset events in the UI, the Rocket.Chat notifier, the roster's asset starting the roster
sync, and a missing pool named by ``watch_pools``.

Worker-seconds are measured from outside: the task instance's state is polled every 0.25 s and the
time it spends ``queued`` or ``running`` (handed to the executor, holding a worker slot) is summed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from conftest import conf_for, fact, new_people
from e2e_api import API, SANDBOX, Airflow, Sandbox
from playwright.sync_api import Browser, Page, expect
from test_browser import browser as chromium  # noqa: F401 (a fixture: headless Chromium)
from test_browser import test_login as log_in

AIRFLOW_CLI = str(Path(sys.executable).parent / "airflow")
expect.set_options(timeout=30_000)


def wait_for(
    what: str, check: Callable[[], tuple[bool, Any]], timeout: float = 180, every: float = 1.0
) -> Any:
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        ok, last = check()
        if ok:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not after {timeout} s; last seen {last}")


def ti_path(run_id: str, task_id: str, dag_id: str = "onboard_user") -> str:
    return f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"


class StateClock:
    """Polls task instances every 0.25 s in a thread; sums the seconds each spends in each state."""

    def __init__(self, airflow: Airflow, paths: list[str]) -> None:
        self.airflow, self.paths = airflow, paths
        self.seconds: dict[str, dict[str, float]] = {p: {} for p in paths}
        self.last: dict[str, dict[str, Any]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        client = Airflow()
        previous = time.monotonic()
        while not self.stop.is_set():
            time.sleep(0.25)
            now = time.monotonic()
            for path in self.paths:
                try:
                    ti = client.get(path, expect=(200, 404))
                except Exception:  # a transient API error: the next poll counts the time
                    continue
                if ti and "state" in ti:
                    self.last[path] = ti
                    state = str(ti["state"])
                    self.seconds[path][state] = self.seconds[path].get(state, 0.0) + now - previous
            previous = now

    def state(self, path: str) -> str | None:
        return (self.last.get(path) or {}).get("state")

    def held(self, path: str) -> float:
        """Seconds handed to the executor: ``queued`` (a worker starting) or ``running``."""
        return sum(self.seconds[path].get(state, 0.0) for state in ("queued", "running"))

    def finish(self) -> dict[str, dict[str, float]]:
        self.stop.set()
        self.thread.join(timeout=10)
        return self.seconds


def faults(plan: dict[str, Any]) -> None:
    requests.put(f"{SANDBOX}/_sandbox/faults", json=plan, timeout=30).raise_for_status()


def clear_faults() -> None:
    requests.delete(f"{SANDBOX}/_sandbox/faults", timeout=30).raise_for_status()


# -- the Test button -------------------------------------------------------------------------------------


def test_connections_test_answers_within_10_s_while_everything_is_throttled(sandbox: Sandbox) -> None:
    faults({"platform": "*", "rate": 1.0, "kinds": ["throttle"], "throttle_seconds": 120})
    took: dict[str, float] = {}
    try:
        for platform in ("bungie", "vrchat", "playfab", "bitrix24", "rocketchat"):
            started = time.monotonic()
            done = subprocess.run(
                [AIRFLOW_CLI, "connections", "test", f"{platform}_default"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            took[platform] = time.monotonic() - started
            output = done.stdout + done.stderr
            assert "Connection failed!" in output, output[-1000:]
            reason = output.split("Connection failed!", 1)[1]
            assert platform in reason and "gave up" not in reason, output[-1000:]  # the platform's own reason
    finally:
        clear_faults()
    fact(
        "airflow connections test under a 120 s throttle: "
        + ", ".join(f"{p} {s:.1f} s" for p, s in took.items())
    )
    assert max(took.values()) < 10, took


# -- long throttles: deferred, not slept ---------------------------------------------------------------------


def set_connection_extra(conn_id: str, **extra: Any) -> dict[str, Any]:
    """Change a connection's extra in the metadata DB (as an admin's CLI does); returns the old extra."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        connection = session.query(Connection).filter(Connection.conn_id == conn_id).one()
        old = dict(connection.extra_dejson)
        connection.set_extra(json.dumps({**old, **extra}))
    return old


def restore_connection_extra(conn_id: str, old: dict[str, Any]) -> None:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        connection = session.query(Connection).filter(Connection.conn_id == conn_id).one()
        connection.set_extra(json.dumps(old))


def throttled_at(sandbox: Sandbox, platform: str, since: int) -> bool:
    found = sandbox.get("requests", platform=platform, since=since)["requests"]
    return any(r["status"] == 429 for r in found)


def test_a_long_throttle_is_waited_out_in_the_triggerer_not_in_a_worker(
    airflow: Airflow, sandbox: Sandbox, sandbox_env: dict
) -> None:
    """Rocket.Chat throttled with a 120 s hint: two invite tasks defer, free their slots, resume and
    invite each person once. Side by side, PlayFab with deferral off (defer_after 0, today's retry
    loop) and a 60 s hint: its task sleeps in the worker. Worker-seconds are measured for both."""
    deferred_people = new_people(sandbox, ["rocketchat"]), new_people(sandbox, ["rocketchat"])
    slept_person = new_people(sandbox, ["playfab"])
    old_extra = set_connection_extra("playfab_default", defer_after=0)
    since = {p: sandbox.get("requests", platform=p)["total"] for p in ("rocketchat", "playfab")}
    faults({"platform": "rocketchat", "rate": 1.0, "kinds": ["throttle"], "throttle_seconds": 120})
    faults({"platform": "playfab", "rate": 1.0, "kinds": ["throttle"], "throttle_seconds": 60})
    try:
        deferred_runs = [airflow.trigger(conf_for(["rocketchat"], sandbox_env, p)) for p in deferred_people]
        slept_run = airflow.trigger(conf_for(["playfab"], sandbox_env, slept_person))
        paths = [ti_path(r, "onboard.invite_rocketchat") for r in deferred_runs]
        slept_path = ti_path(slept_run, "onboard.invite_playfab")
        clock = StateClock(airflow, [*paths, slept_path])

        def both_deferred() -> tuple[bool, Any]:
            tis = [airflow.get(p) for p in paths]
            return all(t["state"] == "deferred" and (t.get("triggerer_job") or {}).get("id") for t in tis), [
                t["state"] for t in tis
            ]

        wait_for("both invite tasks deferred and held by the triggerer", both_deferred, timeout=180)
        pool = airflow.get("/pools/invites_rocketchat")
        assert (
            pool["deferred_slots"] == 2 and pool["running_slots"] == 0 and pool["open_slots"] == pool["slots"]
        ), pool
        wait_for("PlayFab throttled", lambda: (throttled_at(sandbox, "playfab", since["playfab"]), None), 120)
        clear_faults()  # the platforms stop throttling
        assert airflow.wait_runs([*deferred_runs, slept_run], timeout=400) == dict.fromkeys(
            [*deferred_runs, slept_run], "success"
        )
        seconds = clock.finish()
    finally:
        clear_faults()
        restore_connection_extra("playfab_default", old_extra)
    for people in deferred_people:
        assert sandbox.applied("rocketchat", people["rocketchat"]) == 1
    assert sandbox.applied("playfab", slept_person["playfab"]) == 1
    held = [clock.held(p) for p in paths]
    deferred = [seconds[p].get("deferred", 0.0) for p in paths]
    figures = [airflow.xcom(r, "onboard.invite_rocketchat", "stats") for r in deferred_runs]
    assert all(f["deferrals"] == 1 and f["deferred_s"] >= 115 for f in figures), figures
    log = json.dumps(airflow.get(f"{paths[0]}/logs/1?full_content=true"))
    for said in (
        "; deferring 1",
        "the worker slot is free meanwhile",
        "resumed after 1",
        "deferred 1 time(s)",
    ):
        assert said in log, (said, log[-3000:])  # the task's own log tells the story
    slept = clock.held(slept_path)
    slept_stats = airflow.xcom(slept_run, "onboard.invite_playfab", "stats")
    fact(
        "120 s throttle, deferred: worker-seconds held per task "
        + ", ".join(f"{h:.1f}" for h in held)
        + f" while {', '.join(f'{d:.0f}' for d in deferred)} s deferred (stats: "
        + ", ".join(f"{f['deferred_s']:.0f} s in {f['deferrals']} deferral" for f in figures)
        + ")"
    )
    fact(
        f"60 s throttle, slept in the worker (defer_after 0): {slept:.1f} worker-seconds held ({slept_stats['waited_s']:.0f} s waited)"
    )
    assert max(held) < 30 and min(deferred) >= 110, (held, deferred)
    assert slept >= 55 and slept_stats["retries"] >= 1, (slept, slept_stats)


# -- approval through the UI, asset events, the notifier ---------------------------------------------------


@pytest.fixture(scope="module")
def page(chromium: Browser) -> Iterator[Page]:  # noqa: F811
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    page = context.new_page()
    log_in(page)
    yield page
    context.close()


def room_messages(sandbox_env: dict, room: str) -> list[str]:
    """The room's chat messages, newest first, through Rocket.Chat's API as the bot."""
    connection = sandbox_env["rocketchat"]["connection"]
    reply = requests.get(
        f"{SANDBOX}/rocketchat/api/v1/groups.history",
        params={"roomId": room},
        headers={"X-User-Id": connection["login"], "X-Auth-Token": connection["password"]},
        timeout=30,
    )
    reply.raise_for_status()
    return [m["msg"] for m in reply.json()["messages"] if not m.get("t")]


def answer_in_the_ui(page: Page, airflow: Airflow, run_id: str, option: str, screenshot: Path | None) -> None:
    def asking() -> tuple[bool, Any]:
        state = airflow.get(ti_path(run_id, "onboard.approve"))["state"]
        if state in ("success", "failed", "skipped", "upstream_failed"):
            raise AssertionError(f"the approval task ended {state} before anyone answered")
        return state == "awaiting_input", state

    wait_for("the approval task waiting for input", asking, timeout=240)
    time.sleep(5)  # a human takes seconds; an answer right after parking races the executor (docs)
    page.goto(f"{API}/dags/onboard_user/runs/{quote(run_id)}/tasks/onboard.approve/required_actions")
    expect(page.get_by_text("would be invited").first).to_be_visible()
    if screenshot is not None:
        page.screenshot(path=screenshot)
    page.get_by_role("button", name=option, exact=True).click()
    expect(page.get_by_text("Response received at").first).to_be_visible()


def test_approval_in_the_ui_approve_once_reject_once(
    page: Page, airflow: Airflow, sandbox: Sandbox, sandbox_env: dict, images: Path
) -> None:
    room = sandbox_env["rocketchat"]["group"]
    approved_person, rejected_person = (
        new_people(sandbox, ["rocketchat"]),
        new_people(sandbox, ["rocketchat"]),
    )
    runs = {}
    for name, person in (("approved", approved_person), ("rejected", rejected_person)):
        conf = conf_for(["rocketchat"], sandbox_env, person)
        runs[name] = airflow.trigger({**conf, "require_approval": True, "notify_room": room})
    answer_in_the_ui(page, airflow, runs["approved"], "Approve", images / "approval.png")
    answer_in_the_ui(page, airflow, runs["rejected"], "Reject", None)
    assert airflow.wait_runs(list(runs.values()), timeout=300) == dict.fromkeys(runs.values(), "success")

    assert sandbox.applied("rocketchat", approved_person["rocketchat"]) == 1
    named = [row for row in sandbox.invites("rocketchat") if row["user"] == rejected_person["rocketchat"]]
    assert named == [], named  # not one invite request named the rejected person
    states = {ti["task_id"]: ti["state"] for ti in airflow.task_instances(runs["rejected"])}
    assert states["onboard.invite_rocketchat"] == "skipped" and states["onboard.report"] == "success", states
    decision = airflow.xcom(runs["rejected"], "onboard.approve", "decision")
    assert decision["approved"] is False and decision["by"] == "admin", decision
    assert airflow.xcom(runs["approved"], "onboard.approve", "decision")["approved"] is True

    messages = room_messages(sandbox_env, room)
    for run_id in runs.values():
        asked = [
            m for m in messages if m.startswith(f"Approval needed: onboarding (onboard_user, run {run_id})")
        ]
        assert len(asked) == 1 and "/required_actions" in asked[0], messages
    fact(f"approval: 2 requests answered in the UI; {len(messages)} messages in the Rocket.Chat room")


def test_asset_events_appear_in_the_ui(page: Page, airflow: Airflow, sandbox_env: dict, images: Path) -> None:
    group = sandbox_env["rocketchat"]["group"]
    uri = f"invites://rocketchat/{group}"
    events = airflow.get("/assets/events?source_dag_id=onboard_user&order_by=-timestamp&limit=100")[
        "asset_events"
    ]
    ours = [e for e in events if e["uri"] == uri and e["source_task_id"] == "onboard.invite_rocketchat"]
    assert ours, [e["uri"] for e in events]
    assert {"platform", "group", "people", "changed"} <= set(ours[0]["extra"]), ours[0]
    page.goto(f"{API}/assets/{ours[0]['asset_id']}")
    expect(page.get_by_text(uri).first).to_be_visible()
    expect(page.get_by_text("Asset Event").first).to_be_visible()
    page.locator(".codicon-folding-collapsed").first.click(force=True)  # unfold the newest event's extra
    expect(page.locator(".monaco-editor").first).to_contain_text('"platform": "rocketchat"')
    page.screenshot(path=images / "asset-events.png")
    fact(f"asset events: {len(ours)} for {uri} from onboard_user")


def test_a_failed_onboarding_is_posted_to_the_room(
    airflow: Airflow, sandbox: Sandbox, sandbox_env: dict
) -> None:
    room = sandbox_env["rocketchat"]["group"]
    conf = {
        **conf_for(["playfab"], sandbox_env, new_people(sandbox, ["playfab"])),
        "playfab_group": "FFFFFFFFFFFFFFF0",
    }
    run_id = airflow.trigger({**conf, "notify_room": room})
    assert airflow.wait_runs([run_id]) == {run_id: "failed"}
    expected = f"Onboarding failed on playfab (onboard_user, run {run_id})."
    wait_for("the failure message", lambda: (expected in room_messages(sandbox_env, room), None), timeout=60)


# -- the roster's asset starts the roster sync -------------------------------------------------------------------


def test_an_event_of_the_roster_asset_starts_the_roster_sync(
    airflow: Airflow, sandbox: Sandbox, sandbox_env: dict
) -> None:
    import os

    roster_uri = os.environ["AIRFLOW__INVITES__ROSTER_ASSET"]
    roster = Path(roster_uri.removeprefix("file://"))
    person = new_people(sandbox, ["rocketchat"])["rocketchat"]
    roster.write_text(f"name,rocketchat\nRoster Person,{person}\n")
    subprocess.run(
        [AIRFLOW_CLI, "variables", "set", "invites_people_file", str(roster)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    airflow.unpause("scheduled_onboarding")
    assets = airflow.get(f"/assets?uri_pattern={quote(roster.name)}")["assets"]
    asset = next(a for a in assets if a["uri"] == roster_uri)
    before = {
        r["dag_run_id"] for r in airflow.get("/dags/scheduled_onboarding/dagRuns?limit=100")["dag_runs"]
    }
    started = time.monotonic()
    airflow.request(
        "POST", "/assets/events", json={"asset_id": asset["id"], "extra": {"rows": 1}}, expect=(200, 201)
    )

    def triggered() -> tuple[bool, Any]:
        runs = airflow.get("/dags/scheduled_onboarding/dagRuns?order_by=-run_after&limit=5")["dag_runs"]
        found = [r for r in runs if r["run_type"] == "asset_triggered" and r["dag_run_id"] not in before]
        return bool(found), found or [r["run_type"] for r in runs]

    run = wait_for("an asset-triggered run of scheduled_onboarding", triggered, timeout=180)[0]
    try:
        state = airflow.wait_runs([run["dag_run_id"]], timeout=300, dag_id="scheduled_onboarding")
    finally:
        airflow.request("PATCH", "/dags/scheduled_onboarding", json={"is_paused": True})
    assert state == {run["dag_run_id"]: "success"}
    assert sandbox.applied("rocketchat", person) == 1
    fact(f"roster asset event -> scheduled_onboarding run succeeded {time.monotonic() - started:.0f} s later")


# -- a missing pool is named --------------------------------------------------------------------------------------


def test_a_missing_pool_is_named_by_the_watch_and_the_run_goes_on_once_it_exists(
    airflow: Airflow, sandbox: Sandbox, sandbox_env: dict
) -> None:
    pool = airflow.get("/pools/invites_bungie")
    airflow.request("DELETE", "/pools/invites_bungie", expect=(204,))
    subprocess.run(
        [AIRFLOW_CLI, "variables", "set", "invites_pool_wait_seconds", "20"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        run_id = airflow.trigger(conf_for(["rocketchat"], sandbox_env, new_people(sandbox, ["rocketchat"])))
        watch = ti_path(run_id, "onboard.watch_pools")
        started = time.monotonic()

        def watch_failed() -> tuple[bool, Any]:
            return airflow.get(watch)["state"] == "failed", airflow.get(watch)["state"]

        wait_for("watch_pools failing", watch_failed, timeout=240, every=2)
        named_after = time.monotonic() - started
        assert airflow.get(ti_path(run_id, "onboard.invite_bungie"))["state"] == "scheduled"
        text = json.dumps(airflow.get(f"{watch}/logs/1?full_content=true"))
        assert "pool(s) invites_bungie" in text and "airflow pools import" in text, text[-2000:]
    finally:
        airflow.request(
            "POST",
            "/pools",
            json={
                "name": "invites_bungie",
                "slots": pool["slots"],
                "description": pool["description"],
                "include_deferred": False,
            },
            expect=(200, 201, 409),
        )
        subprocess.run(
            [AIRFLOW_CLI, "variables", "delete", "invites_pool_wait_seconds"],
            capture_output=True,
            timeout=120,
        )
    assert airflow.wait_runs([run_id], timeout=240) == {
        run_id: "success"
    }  # the pool exists again: it went on
    fact(
        f"missing pool: watch_pools named invites_bungie {named_after:.0f} s after the trigger (pool_wait 20 s)"
    )
