"""The Invites page and a Dag run's Invites tab in headless Chromium, after the runs e2e has made.

What the page should show is computed here from Airflow's REST API (every ``outcomes`` XCom of the
onboarding Dags, newest run first), independently of the plugin's code; the run tab is checked against
the report task's output. Anonymous requests must get no data. Screenshots go to docs/images/.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from conftest import conf_for, fact, new_people
from e2e_api import API, DAG_ID, Airflow, Sandbox
from playwright.sync_api import Browser, Frame, Page, expect
from test_browser import browser as chromium  # noqa: F401 (a fixture: headless Chromium)
from test_browser import test_login as log_in

from airflow_invites.plugins.statuses import STATUS_STYLES, UNKNOWN_STYLE

SHOWN_DAGS = ("onboard_user", "scheduled_onboarding", "offboard_user")
expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def extra_runs(airflow: Airflow, sandbox: Sandbox, sandbox_env: dict, platforms: list[str]) -> dict[str, str]:
    """Two more runs for more colours: a dry run (would invite) and one that fails (unknown person)."""
    dry = conf_for(platforms, sandbox_env, new_people(sandbox, platforms))
    dry["dry_run"] = True
    nobody = f"nobody-{uuid.uuid4().hex[:8]}"
    unknown = conf_for(["rocketchat"], sandbox_env, {"rocketchat": nobody})
    runs = {"dry": airflow.trigger(dry), "failed": airflow.trigger(unknown)}
    states = airflow.wait_runs(list(runs.values()))
    assert states == {runs["dry"]: "success", runs["failed"]: "failed"}, states
    return {**runs, "nobody": nobody}


def outcome_entries(airflow: Airflow) -> list[dict[str, Any]]:
    """Every XCom ``outcomes`` of the shown Dags, with its value and its run's ``run_after``."""
    entries, offset = [], 0
    while True:
        page = airflow.get(
            f"/dags/~/dagRuns/~/taskInstances/~/xcomEntries?xcom_key=outcomes&limit=100&offset={offset}"
        )
        entries += [e for e in page["xcom_entries"] if e["dag_id"] in SHOWN_DAGS]
        offset += 100
        if offset >= page["total_entries"]:
            break
    for entry in entries:
        path = f"/dags/{entry['dag_id']}/dagRuns/{quote(entry['run_id'], safe='')}/taskInstances/{entry['task_id']}"
        entry["value"] = airflow.get(f"{path}/xcomEntries/outcomes?map_index={entry['map_index']}")["value"]
    return entries


def expected_grid(airflow: Airflow) -> dict[tuple[str, str], set[str]]:
    """(person, platform) -> the statuses of the newest run that has that pair (one per group)."""
    newest: dict[tuple[str, str], tuple[str, set[str]]] = {}
    for entry in sorted(outcome_entries(airflow), key=lambda e: e["run_after"], reverse=True):
        for row in entry["value"]:
            key = (row.get("handle") or row["user"], row["platform"])
            run = f"{entry['dag_id']}/{entry['run_id']}"
            if key not in newest:
                newest[key] = (run, {row["status"]})
            elif newest[key][0] == run:
                newest[key][1].add(row["status"])
    return {key: statuses for key, (_, statuses) in newest.items()}


def rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


GRID_JS = """() => Array.from(document.querySelectorAll('#grid tbody tr')).map(tr => ({
  person: tr.cells[0].textContent,
  hidden: tr.hidden,
  cells: Array.from(tr.querySelectorAll('td[data-status]')).map(td => {
    const a = td.querySelector('a');
    return {platform: td.dataset.platform, status: td.dataset.status, text: a.textContent,
            background: getComputedStyle(a).backgroundColor, title: a.title, href: a.getAttribute('href')};
  }),
}))"""


@pytest.fixture(scope="module")
def page(chromium: Browser) -> Iterator[Page]:  # noqa: F811 (the fixture imported above)
    """A Chromium tab signed in to Airflow as the admin."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    page = context.new_page()
    log_in(page)
    yield page
    context.close()


def plugin_frame(page: Page, path_part: str) -> Frame:
    """The iframe the Airflow UI shows the plugin page in, once its grid (or empty note) is there."""
    iframe = page.locator(f'iframe[src*="{path_part}"]')
    expect(iframe).to_be_visible()
    frame = iframe.element_handle().content_frame()
    assert frame is not None
    frame.wait_for_selector("#grid, #empty")
    return frame


# ------------------------------------------------------------------------------------------------ access


def test_anonymous_requests_get_no_data(airflow: Airflow, extra_runs: dict[str, str]) -> None:
    person_ids = {person for person, _ in expected_grid(airflow)}
    assert person_ids
    run = quote(extra_runs["dry"], safe="")
    for path in (
        "/invites/",
        "/invites/api/grid",
        f"/invites/dags/{DAG_ID}/runs/{run}",
        "/invites/static/grid.js",
    ):
        for headers, refused in (({}, 401), ({"Authorization": "Bearer not-a-token"}, 403)):
            reply = requests.get(f"{API}{path}", headers=headers, timeout=30)
            assert reply.status_code == refused, (path, reply.status_code, reply.text[:200])
            assert not [p for p in person_ids if p in reply.text], path
    for path in ("/invites/docs", "/invites/redoc", "/invites/openapi.json"):
        assert requests.get(f"{API}{path}", timeout=30).status_code == 404, path
    signed_in = requests.get(f"{API}/invites/api/grid", cookies={"_token": airflow.token()}, timeout=30)
    assert signed_in.status_code == 200 and signed_in.json()["people"]


# ------------------------------------------------------------------------------------------------ the page


def test_the_invites_page_shows_every_person_with_the_right_colour(
    page: Page, airflow: Airflow, extra_runs: dict[str, str], images: Path
) -> None:
    expected = expected_grid(airflow)
    statuses = {s for shown in expected.values() for s in shown}
    assert {"failed", "would_invite"} <= statuses and statuses & {"invited", "joined"}, statuses

    page.goto(f"{API}/")
    page.get_by_role("link", name="Invites").first.click()  # the entry in Airflow's navigation
    started = time.monotonic()
    frame = plugin_frame(page, "invites/")
    fact(f"invites page: {len(expected)} cells drawn {time.monotonic() - started:.1f} s after the click")
    rows = frame.evaluate(GRID_JS)
    shown = {(row["person"], cell["platform"]): cell for row in rows for cell in row["cells"]}
    assert set(shown) == set(expected), {
        "missing": set(expected) - set(shown),
        "extra": set(shown) - set(expected),
    }
    for key, cell in shown.items():
        assert cell["status"] in expected[key], (key, cell["status"], expected[key])
        style = STATUS_STYLES.get(cell["status"], UNKNOWN_STYLE)
        assert cell["background"] == rgb(style.background), (key, cell)
        assert cell["text"].startswith(style.label or cell["status"]), (key, cell)
        assert (
            f"{key[0]} on {key[1]}:" in cell["title"]
            and "group: " in cell["title"]
            and "task: " in cell["title"]
        )
    failed = next(c for c in shown.values() if c["status"] == "failed")
    assert failed["background"] == "rgb(198, 40, 40)" and "run: onboard_user / " in failed["title"]
    page.screenshot(path=images / "invites-page.png")

    # the person filter runs in the page: one person left
    person = extra_runs["nobody"]
    assert shown[(person, "rocketchat")]["status"] == "failed"
    frame.fill("#f-person", person)
    visible = [row["person"] for row in frame.evaluate(GRID_JS) if not row["hidden"]]
    assert visible == [person]
    frame.fill("#f-person", "")
    frame.select_option("#f-status", "would_invite")
    visible_rows = [row for row in frame.evaluate(GRID_JS) if not row["hidden"]]
    assert visible_rows and all(any(c["status"] == "would_invite" for c in r["cells"]) for r in visible_rows)
    frame.locator('.legend li[data-status="failed"]').click()  # the legend filters too
    assert frame.input_value("#f-status") == "failed"
    assert [row["person"] for row in frame.evaluate(GRID_JS) if not row["hidden"]] == [person]

    # a cell opens its task instance in the Airflow UI (the top window, not the frame)
    frame.select_option("#f-status", "")
    frame.fill("#f-person", person)
    frame.locator('td[data-status="failed"] a').first.click()
    page.wait_for_url(f"**/dags/{DAG_ID}/runs/*/tasks/onboard.invite_rocketchat")
    assert quote(extra_runs["failed"], safe="") in page.url


def test_a_runs_invites_tab_shows_what_its_report_logged(
    page: Page, airflow: Airflow, extra_runs: dict[str, str], platforms: list[str], images: Path
) -> None:
    runs = airflow.get(f"/dags/{DAG_ID}/dagRuns?order_by=-run_after&limit=50&state=success")["dag_runs"]
    reports = {r["dag_run_id"]: airflow.xcom(r["dag_run_id"], "onboard.report") for r in runs}
    # the run with the most people, most of them invited (the trigger-form and REST runs)
    run_id = max(
        (r for r in reports if r != extra_runs["dry"]),
        key=lambda r: (len(reports[r]), sum(row["status"] == "invited" for row in reports[r])),
    )
    report = {(row.get("handle") or row["user"], row["platform"]): row["status"] for row in reports[run_id]}
    assert len(report) == len(platforms), report

    page.goto(f"{API}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}")
    page.locator('a[href$="/plugin/invites_run"]').click()  # the run page's "Invites" tab
    frame = plugin_frame(page, "invites/dags/")
    shown = {
        (row["person"], c["platform"]): c["status"] for row in frame.evaluate(GRID_JS) for c in row["cells"]
    }
    assert shown == report
    expect(page.locator('iframe[src*="invites/dags/"]')).to_be_visible()
    page.screenshot(path=images / "invites-run-tab.png")
