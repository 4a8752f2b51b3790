"""The Airflow UI in headless Chromium (Playwright driving Debian's /usr/bin/chromium).

Log in; the connection form of each of the five types; save a connection from the form; trigger
``onboard_user`` from its trigger form, wait for success, check the report and the sandbox.
Screenshots go to docs/images/ (shown in docs/deploy.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from conftest import new_people
from e2e_api import API, DAG_ID, PASSWORD, USER, Airflow, Sandbox
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
#: as root on a closed network: no sandbox, no background networking (see the machine notes)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UI_CONN_ID = "rocketchat_ui"
# a shared 2-core machine: give the UI time (Playwright's default for expect() is 5 s)
expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(autouse=True)
def screenshot_on_failure(request: pytest.FixtureRequest, page: Page) -> Iterator[None]:
    """A failed check leaves a screenshot next to the component logs ($E2E_WORK/logs)."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and os.environ.get("E2E_WORK"):
        page.screenshot(path=Path(os.environ["E2E_WORK"]) / "logs" / f"{request.node.name}.png")


def provider_connection_types() -> dict[str, dict[str, Any]]:
    from airflow_invites.get_provider_info import get_provider_info

    return {c["connection-type"]: c for c in get_provider_info()["connection-types"]}


def labels(scope: Locator) -> list[str]:
    """Visible field labels, without the required-field asterisk."""
    texts = scope.locator("label:visible").all_inner_texts()
    return [t.replace("*", "").strip() for t in texts if t.strip()]


def open_section(dialog: Locator, name: str) -> None:
    """Open an accordion section of a dialog (the UI shows one at a time)."""
    button = dialog.get_by_role("button", name=name, exact=True)
    if button.get_attribute("aria-expanded") != "true":
        button.click()
    expect(button).to_have_attribute("aria-expanded", "true")


def open_new_connection_form(page: Page, type_display: str) -> Locator:
    page.goto(f"{API}/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    combo = dialog.get_by_role("combobox").first
    combo.click()
    combo.fill(type_display)
    page.get_by_role("option", name=type_display, exact=True).click()
    expect(dialog.get_by_role("button", name="Standard Fields", exact=True)).to_be_visible()
    return dialog


def test_login(page: Page) -> None:
    page.goto(f"{API}/")
    page.wait_for_url("**/auth/login**")
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{API}/")
    expect(page.get_by_role("link", name="Dags").first).to_be_visible()


@pytest.mark.parametrize("conn_type", ["bungie", "vrchat", "playfab", "bitrix24", "rocketchat"])
def test_connection_form_offers_the_types_own_fields(page: Page, conn_type: str, images: Path) -> None:
    info = provider_connection_types()[conn_type]
    behaviour = info.get("ui-field-behaviour", {})
    dialog = open_new_connection_form(page, info["hook-name"])
    standard = labels(dialog)
    for field, label in behaviour.get("relabeling", {}).items():
        if field not in behaviour.get("hidden-fields", []):
            assert label in standard, (
                f"{conn_type}: standard field {field} should be labelled {label!r}: {standard}"
            )
    for hidden in behaviour.get("hidden-fields", []):
        assert hidden.capitalize() not in standard, f"{conn_type}: {hidden} should be hidden: {standard}"
    before = set(standard)
    open_section(dialog, "Extra Fields")
    extra = set(labels(dialog)) - before - {"Description"}
    expected = {spec["label"] for spec in info.get("conn-fields", {}).values()}
    assert extra == expected, (
        f"{conn_type}: the form's extra fields {sorted(extra)} != provider info {sorted(expected)}"
    )
    if conn_type == "rocketchat":
        open_section(dialog, "Standard Fields")
        dialog.screenshot(path=images / "connection-form.png")
    page.keyboard.press("Escape")


def test_save_connection_from_the_form(page: Page, airflow: Airflow, sandbox_env: dict) -> None:
    env = sandbox_env["rocketchat"]["connection"]
    airflow.request("DELETE", f"/connections/{UI_CONN_ID}", expect=(204, 404))
    totp = "JBSWY3DPEHPK3PXPJBSWY3DP"
    dialog = open_new_connection_form(page, "Rocket.Chat")
    dialog.locator("input[name=connection_id]").fill(UI_CONN_ID)
    dialog.locator("input[name=host]").fill(env["host"])
    dialog.locator("input[name=login]").fill(env["login"])
    dialog.locator("input[name=password]").fill(env["password"])
    open_section(dialog, "Extra Fields")
    auth_type = dialog.get_by_role("combobox").nth(1)
    auth_type.click()
    page.get_by_role("option", name="token", exact=True).click()
    dialog.locator("#element_totp_secret").fill(totp)
    dialog.locator("input[name=element_timeout]").fill("15")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()

    saved = airflow.get(f"/connections/{UI_CONN_ID}")
    assert (
        saved["conn_type"] == "rocketchat" and saved["host"] == env["host"] and saved["login"] == env["login"]
    )
    extra = json.loads(saved["extra"])
    # bare field names in extra; the REST API masks the sensitive ones
    assert extra["auth_type"] == "token" and extra["timeout"] == 15 and extra["verify_ssl"] is True, extra
    assert extra["totp_secret"] == "***", extra
    assert env["password"] not in json.dumps(saved)
    # what was really stored (the CLI reads the metadata DB unmasked)
    cli = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "connections", "get", UI_CONN_ID, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    stored = json.loads(cli.stdout)[0]
    assert stored["extra_dejson"]["totp_secret"] == totp
    assert stored["password"] == env["password"]


def test_trigger_form_run(
    page: Page, airflow: Airflow, sandbox: Sandbox, sandbox_env: dict, platforms: list[str], images: Path
) -> None:
    people = new_people(sandbox, platforms)
    page.goto(f"{API}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(f"Trigger Dag - {DAG_ID}")).to_be_visible()
    sections = {name: sandbox_env[name] for name in platforms}
    for name in platforms:
        field = dialog.locator(f"#element_{name}_user")
        if not field.is_visible():
            open_section(dialog, field_section(dialog, name))
        field.fill(people[name])
        dialog.locator(f"#element_{name}_group").fill(sections[name]["group"])
    open_section(dialog, "Options")
    dialog.locator("#element_message").fill("Welcome aboard! (from the trigger form)")
    open_section(dialog, "Rocket.Chat")
    dialog.screenshot(path=images / "trigger-form.png")
    dialog.get_by_role("button", name="Trigger").click()
    expect(dialog).to_be_hidden()

    run_id = find_run(airflow, "rocketchat_user", people["rocketchat"])
    assert airflow.wait_runs([run_id]) == {run_id: "success"}
    rows = {row["platform"]: row for row in airflow.xcom(run_id, "onboard.report")}
    for name in platforms:
        assert rows[name]["status"] in ("invited", "joined"), rows[name]
        assert rows[name]["user"] and rows[name]["group"], rows[name]
        assert sandbox.applied(name, people[name]) == 1, name

    page.goto(f"{API}/dags/{DAG_ID}/runs/{quote(run_id)}")
    expect(page.get_by_text("success").first).to_be_visible()
    page.wait_for_timeout(1500)
    page.screenshot(path=images / "finished-run.png")
    page.goto(f"{API}/dags/{DAG_ID}/runs/{quote(run_id)}/tasks/onboard.report")
    expect(page.get_by_text("Post Execute").first).to_be_visible()  # the log has loaded
    row = page.get_by_text(
        f"| rocketchat | {sandbox_env['rocketchat']['group']} | {people['rocketchat']} | invited"
    )
    if not row.first.is_visible():
        # the table is print()ed; Airflow stamps stdout lines when the supervisor reads them, after
        # the task returned, so the UI files them under the collapsed "Post Execute" group
        page.get_by_text("Post Execute").first.click()
    expect(row.first).to_be_visible()
    row.first.scroll_into_view_if_needed()
    page.screenshot(path=images / "report-log.png")


def field_section(dialog: Locator, platform: str) -> str:
    from airflow_invites.platforms import PLATFORMS

    return PLATFORMS[platform].display


def find_run(airflow: Airflow, key: str, value: str) -> str:
    runs = airflow.get(f"/dags/{DAG_ID}/dagRuns?order_by=-run_after&limit=20")["dag_runs"]
    matching = [r["dag_run_id"] for r in runs if (r.get("conf") or {}).get(key) == value]
    assert len(matching) == 1, f"expected one run with {key}={value}: {matching}"
    return str(matching[0])
