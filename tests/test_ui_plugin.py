"""The Invites view: Airflow's own api-server app (with the plugin, loaded from its entry point) over HTTP.

Runs are real: one ``onboard_user`` run made with ``dag.test()`` against the sandbox, and runs seeded
into the metadata DB the way workers leave them (a Dag run, its task instances, XCom ``outcomes``).
Users and permissions go through a real auth manager: the simple one, with one rule added for these
tests (``ScopedAuthManager``: some users may read only some Dags, or not their XComs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

PASSWORDS = {name: f"{name}-{uuid.uuid4().hex[:12]}" for name in ("admin", "scoped", "noxcom")}
#: the Dags the view shows in these tests (seeded here; onboard_user is run for real)
SHOWN = ("onboard_user", "ui_onboard", "ui_secret")
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


class ScopedAuthManager(SimpleAuthManager):
    """The simple auth manager, except: ``scoped`` may read only ``ui_onboard`` and ``onboard_user``;
    ``noxcom`` may read every Dag but no XCom."""

    def is_authorized_dag(
        self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None
    ) -> bool:
        from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity

        dag_id = details.id if details else None
        if user.get_name() == "scoped" and dag_id not in ("ui_onboard", "onboard_user"):
            return False
        if user.get_name() == "noxcom" and access_entity is DagAccessEntity.XCOM:
            return False
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )


@pytest.fixture(scope="module")
def client(airflow_db: None) -> Iterator[Any]:
    """Airflow's api-server app, with users ``admin`` (admin), ``scoped`` and ``noxcom`` (viewers)."""
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient

    home = Path(os.environ["AIRFLOW_HOME"])
    (home / "ui-passwords.json").write_text(json.dumps(PASSWORDS))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__CORE__AUTH_MANAGER", f"{__name__}.ScopedAuthManager")
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,scoped:viewer,noxcom:viewer")
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(home / "ui-passwords.json"))
        patch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", uuid.uuid4().hex * 2)
        patch.setenv("AIRFLOW__INVITES__UI_DAG_IDS", ",".join(SHOWN))
        patch.setenv("AIRFLOW__INVITES__UI_DAG_TAG", "")
        purge_cached_app()
        with TestClient(create_app()) as test_client:
            yield test_client
        purge_cached_app()


@pytest.fixture(scope="module")
def tokens(client: Any) -> dict[str, str]:
    out = {}
    for name, password in PASSWORDS.items():
        reply = client.post("/auth/token", json={"username": name, "password": password})
        assert reply.status_code == 201, reply.text
        out[name] = reply.json()["access_token"]
    return out


def seed_run(
    dag_id: str, run_id: str, run_after: datetime, values: dict[tuple[str, int], Any], serialize: bool = False
) -> None:
    """A finished run whose tasks pushed ``values`` as XCom ``outcomes`` ((task_id, map_index) -> value).

    ``serialize=True`` stores the value as JSON text, as ``XComModel.set`` does by default."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import insert

    with create_session() as session:
        session.add(DagRun(dag_id, run_id, run_after=run_after, run_type="manual", state="success"))
        session.flush()
        tasks = [
            {"id": uuid.uuid4(), "dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": index,
             "try_number": 1, "pool": "default_pool", "pool_slots": 1, "state": "success"}
            for task_id, index in values
        ]  # fmt: skip
        if tasks:
            session.execute(insert(TaskInstance.__table__), tasks)
        for (task_id, index), value in values.items():
            XComModel.set(
                "outcomes", value, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=index,
                serialize=serialize, session=session,
            )  # fmt: skip


def outcome(platform: str, user: str, status: str, group: str = "g1", **more: Any) -> dict[str, Any]:
    return {
        "platform": platform,
        "group": group,
        "user": user,
        "status": status,
        "detail": "",
        "code": None,
        **more,
    }


@pytest.fixture(scope="module")
def history(client: Any) -> dict[str, str]:
    """Three runs of ``ui_onboard`` (the newest seeded first) and one of ``ui_secret``; run ids by name."""
    runs = {"new": f"ui_new_{uuid.uuid4().hex[:6]}", "mid": f"ui_mid_{uuid.uuid4().hex[:6]}",
            "old": f"ui_old_{uuid.uuid4().hex[:6]}", "secret": f"ui_secret_{uuid.uuid4().hex[:6]}"}  # fmt: skip
    seed_run("ui_onboard", runs["new"], T0 + timedelta(hours=3), {
        ("onboard.invite_vrchat", -1): [outcome("vrchat", "usr_ann", "already_member", handle="email:ann@example.test")],
        ("invite_bungie", 0): [outcome("bungie", "4611686018400000001", "invited", group="clan-a")],
        ("invite_bungie", 1): [outcome("bungie", "4611686018400000001", "failed", group="clan-b",
                                       detail="clan is full", code="ClanMaximumMembershipReached")],
        ("remove_rocketchat", -1): [outcome("rocketchat", "bob", "removed"), outcome("rocketchat", "eve", "left_alone")],
    })  # fmt: skip
    seed_run("ui_onboard", runs["old"], T0 + timedelta(hours=1), {
        ("onboard.invite_vrchat", -1): [outcome("vrchat", "usr_ann", "failed", handle="email:ann@example.test"),
                                        outcome("vrchat", "usr_old", "invited")],
        ("onboard.invite_rocketchat", -1): [outcome("rocketchat", "ann", "invited", handle="email:ann@example.test")],
    })  # fmt: skip
    seed_run("ui_onboard", runs["mid"], T0 + timedelta(hours=2), {
        ("onboard.invite_vrchat", -1): [outcome("vrchat", "usr_ann", "already_invited", handle="email:ann@example.test"),
                                        "not a record", {"platform": "vrchat"}],
        ("onboard.invite_playfab", -1): {"not": "a list"},
    }, serialize=True)  # fmt: skip
    seed_run("ui_secret", runs["secret"], T0 + timedelta(hours=4), {
        ("onboard.invite_vrchat", -1): [outcome("vrchat", "usr_secret_person", "invited")],
    })  # fmt: skip
    return runs


def get(client: Any, path: str, token: str | None = None, **params: Any) -> Any:
    return client.get(path, params=params, cookies={"_token": token} if token else {})


def cells(grid: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(p["person"], platform): cell for p in grid["people"] for platform, cell in p["cells"].items()}


# ---------------------------------------------------------------------------------------------- registration


def test_installing_the_package_registers_the_plugin(client: Any, tokens: dict[str, str]) -> None:
    reply = client.get("/api/v2/plugins", headers={"Authorization": f"Bearer {tokens['admin']}"})
    assert reply.status_code == 200, reply.text
    plugin = next(p for p in reply.json()["plugins"] if p["name"] == "airflow_invites")
    assert "airflow-invites" in plugin["source"] and "airflow.plugins" in plugin["source"]
    assert [a["url_prefix"] for a in plugin["fastapi_apps"]] == ["/invites"]
    views = {v["destination"]: v for v in plugin["external_views"]}
    assert views["nav"]["href"] == "invites/" and views["nav"]["name"] == "Invites"
    assert views["dag_run"]["href"] == "invites/dags/{DAG_ID}/runs/{RUN_ID}"


def test_the_views_follow_airflow_under_a_sub_path(
    client: Any, tokens: dict[str, str], history: dict[str, str]
) -> None:
    """The UI frames a view's href as given, under ``<base href>`` = ``[api] base_url``: a relative
    href reaches the app wherever Airflow is served, and the page's own links follow its root path."""
    from urllib.parse import urljoin

    from fastapi.testclient import TestClient

    from airflow_invites.plugins.plugin import InvitesPlugin

    for view in InvitesPlugin.external_views:
        for key in ("href", "icon"):
            if view.get(key):
                assert urljoin("https://example.test/airflow/", view[key]).startswith(
                    "https://example.test/airflow/invites/"
                ), (key, view[key])
    under_sub_path = TestClient(client.app, root_path="/airflow")
    page = get(under_sub_path, "/airflow/invites/", tokens["admin"], dag_id="ui_onboard")
    assert page.status_code == 200, page.text
    assert 'href="/airflow/invites/static/grid.css' in page.text
    assert 'href="/dags/' not in page.text and 'href="/airflow/dags/' in page.text


def test_the_plugin_module_imports_no_web_stack() -> None:
    """Every Airflow component imports the plugin module: it must not pull FastAPI, SQLAlchemy or our app."""
    probe = (
        "import sys, airflow.sdk; before = set(sys.modules); import airflow_invites.plugins.plugin; "
        "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in "
        "('fastapi', 'starlette', 'sqlalchemy', 'pydantic') or m == 'airflow_invites.plugins.app'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


# ---------------------------------------------------------------------------------------------- access


@pytest.mark.parametrize(
    "path", ["/invites/", "/invites/api/grid", "/invites/dags/ui_onboard/runs/x", "/invites/static/grid.js"]
)
def test_anonymous_and_bad_tokens_get_no_data(client: Any, history: dict[str, str], path: str) -> None:
    anonymous = get(client, path)
    assert anonymous.status_code == 401, anonymous.text
    forged = get(client, path, token="not-a-jwt")
    assert forged.status_code == 403, forged.text
    for reply in (anonymous, forged):
        assert "usr_ann" not in reply.text and "ann@example.test" not in reply.text


@pytest.mark.parametrize("path", ["/invites/docs", "/invites/redoc", "/invites/openapi.json"])
def test_no_api_docs_are_served(client: Any, tokens: dict[str, str], path: str) -> None:
    assert get(client, path).status_code == 404
    assert get(client, path, tokens["admin"]).status_code == 404


def test_a_user_sees_only_the_dags_they_may_read(
    client: Any, tokens: dict[str, str], history: dict[str, str]
) -> None:
    admin = get(client, "/invites/api/grid", tokens["admin"]).json()
    assert {"ui_onboard", "ui_secret"} <= set(admin["dag_ids"])
    assert ("usr_secret_person", "vrchat") in cells(admin)

    scoped = get(client, "/invites/api/grid", tokens["scoped"]).json()
    assert "ui_secret" not in scoped["dag_ids"] and "ui_onboard" in scoped["dag_ids"]
    assert ("usr_secret_person", "vrchat") not in cells(scoped)
    page = get(client, "/invites/", tokens["scoped"])
    assert (
        page.status_code == 200
        and "usr_secret_person" not in page.text
        and "email:ann@example.test" in page.text
    )
    for path in (f"/invites/dags/ui_secret/runs/{history['secret']}", "/invites/api/grid"):
        refused = get(client, path, tokens["scoped"], **({"dag_id": "ui_secret", "run_id": history["secret"]}
                                                          if path.endswith("grid") else {}))  # fmt: skip
        assert refused.status_code == 403 and "usr_secret_person" not in refused.text

    noxcom = get(client, "/invites/api/grid", tokens["noxcom"]).json()
    assert noxcom["dag_ids"] == [] and noxcom["people"] == []


def test_person_data_stays_out_of_the_logs(
    client: Any, tokens: dict[str, str], history: dict[str, str], capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    assert "ann@example.test" in get(client, "/invites/", tokens["admin"]).text
    assert "ann@example.test" in get(client, "/invites/api/grid", tokens["admin"]).text
    out, err = capfd.readouterr()
    assert "ann@example.test" not in out + err + caplog.text


# ---------------------------------------------------------------------------------------------- the grid


def test_each_cell_is_the_newest_run_with_that_person_and_platform(
    client: Any, tokens: dict[str, str], history: dict[str, str]
) -> None:
    grid = get(client, "/invites/api/grid", tokens["admin"], dag_id="ui_onboard").json()
    assert [r["run_id"] for r in grid["runs"]] == [history["new"], history["mid"], history["old"]]
    by_pair = cells(grid)
    ann_vrchat = by_pair[("email:ann@example.test", "vrchat")]  # newest run, by run date not by insertion
    assert ann_vrchat["status"] == "already_member"
    assert [(o["run_id"], o["user"], o["task_id"]) for o in ann_vrchat["outcomes"]] == [
        (history["new"], "usr_ann", "onboard.invite_vrchat")
    ]
    # only the oldest run saw these pairs: still shown, from that run
    assert by_pair[("email:ann@example.test", "rocketchat")]["outcomes"][0]["run_id"] == history["old"]
    assert by_pair[("usr_old", "vrchat")]["status"] == "invited"
    # one person in two groups of one run: both outcomes, the failure shown first
    bungie = by_pair[("4611686018400000001", "bungie")]
    assert bungie["status"] == "failed"
    assert sorted((o["group"], o["status"], o["map_index"]) for o in bungie["outcomes"]) == [
        ("clan-a", "invited", 0), ("clan-b", "failed", 1)
    ]  # fmt: skip
    assert by_pair[("bob", "rocketchat")]["status"] == "removed"
    assert by_pair[("eve", "rocketchat")]["status"] == "left_alone"  # unknown: kept verbatim
    # the mid run's junk: a non-list value and two items that are not outcome records
    assert grid["unreadable"] == 3
    assert grid["platforms"] == ["bungie", "vrchat", "rocketchat"]  # the registry's order


def test_runs_narrows_to_the_most_recent(
    client: Any, tokens: dict[str, str], history: dict[str, str]
) -> None:
    grid = get(client, "/invites/api/grid", tokens["admin"], dag_id="ui_onboard", runs=1).json()
    assert [r["run_id"] for r in grid["runs"]] == [history["new"]]
    assert ("usr_old", "vrchat") not in cells(grid)
    assert get(client, "/invites/api/grid", tokens["admin"], runs=0).status_code == 422
    assert get(client, "/invites/api/grid", tokens["admin"], run_id="x").status_code == 400


def test_the_page_shows_colours_links_and_hover_detail(
    client: Any, tokens: dict[str, str], history: dict[str, str]
) -> None:
    from airflow_invites.plugins.statuses import STATUS_STYLES

    page = get(client, "/invites/", tokens["admin"], dag_id="ui_onboard")
    assert page.status_code == 200
    html = page.text
    run = quote(history["new"], safe="")
    failed_cell = (
        f'<td data-platform="bungie" data-status="failed"><a class="cell st-failed" '
        f'href="/dags/ui_onboard/runs/{run}/tasks/invite_bungie/mapped/1" target="_top" title="'
    )
    assert failed_cell in html
    title = html.split(failed_cell, 1)[1].split('"', 1)[0]
    for text in ("failed", "group: clan-b", "detail: clan is full", "code: ClanMaximumMembershipReached",
                 f"run: ui_onboard / {history['new']}", "task: invite_bungie [map index 1]", "clan-a"):  # fmt: skip
        assert text in title, (text, title)
    assert f'href="/dags/ui_onboard/runs/{run}/tasks/onboard.invite_vrchat" target="_top"' in html
    assert 'class="cell st-unknown"' in html and ">left_alone<" in html
    css = get(client, "/invites/static/grid.css", tokens["admin"]).text
    for style in STATUS_STYLES.values():
        assert f".{style.css_class}{{background:{style.background};" in css


def test_names_cannot_inject_markup(client: Any, tokens: dict[str, str]) -> None:
    run_id = f"ui_hostile_{uuid.uuid4().hex[:6]}"
    seed_run("ui_onboard", run_id, T0 - timedelta(days=1), {
        ("onboard.invite_vrchat", -1): [outcome(
            "vrchat", '"><script>alert(1)</script>', "failed", group="a|b\nc",
            detail='<img src=x onerror="alert(2)">', code="x'><b>", handle="<b>bold</b>\nname|pipe",
        )],
    })  # fmt: skip
    reply = get(client, f"/invites/dags/ui_onboard/runs/{run_id}", tokens["admin"])
    assert reply.status_code == 200
    html = reply.text
    for raw in ("<script>alert", "<img", "<b>", "'><"):
        assert raw not in html, raw
    assert (
        "&lt;b&gt;bold&lt;/b&gt;\nname|pipe" in html
        and "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in html
    )
    policy = reply.headers["content-security-policy"]
    assert (
        "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'self'" in policy
    )
    assert reply.headers["cache-control"] == "no-store"


def test_a_run_tab_on_a_dag_without_outcomes_says_so(client: Any, tokens: dict[str, str]) -> None:
    run_id = f"ui_empty_{uuid.uuid4().hex[:6]}"
    seed_run("ui_other", run_id, T0, {})
    reply = get(client, f"/invites/dags/ui_other/runs/{run_id}", tokens["admin"])
    assert reply.status_code == 200 and "No task of this run has pushed invite outcomes" in reply.text
    assert get(client, "/invites/dags/ui_other/runs/nope", tokens["admin"]).status_code == 404


def test_a_real_run_shows_what_its_report_logged(
    client: Any, tokens: dict[str, str], sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_dags import load_dag, outcomes_of

    env = sandbox.env()
    conf: dict[str, Any] = {"platforms": ["rocketchat", "bitrix24"]}
    for platform in conf["platforms"]:
        conf[f"{platform}_user"] = env[platform]["users"][0]
        conf[f"{platform}_group"] = env[platform]["group"]
    run = load_dag("onboard_user").test(run_conf=conf)
    assert run.state == "success"
    report = {(row["user"], row["platform"]): row["status"] for row in outcomes_of(run)}
    assert len(report) == 2

    grid = get(client, "/invites/api/grid", tokens["admin"], dag_id="onboard_user", run_id=run.run_id).json()
    shown = {pair: cell["status"] for pair, cell in cells(grid).items()}
    assert shown == report
    tab = get(client, f"/invites/dags/onboard_user/runs/{quote(run.run_id, safe='')}", tokens["admin"])
    assert tab.status_code == 200
    for user, platform in report:
        assert f">{user}</a>" in tab.text and f"/tasks/onboard.invite_{platform}" in tab.text

    # the Dags tagged ``onboarding`` (ours are) join the list when the tag is configured
    monkeypatch.setenv("AIRFLOW__INVITES__UI_DAG_IDS", "")
    monkeypatch.setenv("AIRFLOW__INVITES__UI_DAG_TAG", "onboarding")
    assert "onboard_user" in get(client, "/invites/api/grid", tokens["admin"]).json()["dag_ids"]


def test_every_status_the_operators_report_has_its_own_colour() -> None:
    from airflow_invites.core.outcome import Status
    from airflow_invites.plugins.statuses import STATUS_STYLES, UNKNOWN_STYLE

    assert {s.value for s in Status} <= set(STATUS_STYLES)
    colours = [s.background for s in STATUS_STYLES.values()] + [UNKNOWN_STYLE.background]
    assert len(set(colours)) == len(colours)
