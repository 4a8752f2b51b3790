"""The Invites page on a real history: 1,000 people x 5 platforms over 50 runs.

Seeds a fresh SQLite metadata DB (a throwaway AIRFLOW_HOME) with 50 runs of ``scheduled_onboarding``,
each with one mapped ``invite_<platform>`` task per platform whose XCom ``outcomes`` lists all 1,000
people (250,000 outcome records), then serves Airflow's own api-server app (with the plugin, the simple
auth manager and a JWT) with uvicorn on loopback and measures, over real HTTP:

- the page (``GET /invites/``) and the JSON (``GET /invites/api/grid``): median and worst of 5;
- the SQL statements one page request sends (counted on the engine);
- in headless Chromium (when Playwright and /usr/bin/chromium are installed, as ``make e2e`` does):
  from navigation start to the grid drawn (load event), and typing a person filter.

Usage: ``.venv/bin/python benchmarks/ui_render.py [--people 1000 --runs 50] [--no-docs]``; writes
benchmarks/results/ui_render.json and its section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HOME = Path(tempfile.mkdtemp(prefix="invites-ui-bench-"))
PASSWORD = "bench-" + uuid.uuid4().hex
os.environ.update(
    AIRFLOW_HOME=str(HOME),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{HOME}/airflow.db",
    AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
    AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(HOME / "passwords.json"),
    AIRFLOW__API_AUTH__JWT_SECRET=uuid.uuid4().hex * 2,
    AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
)
(HOME / "passwords.json").write_text(json.dumps({"admin": PASSWORD}))

sys.path.insert(0, str(REPO))
from benchmarks.report import KEPT_MARKER  # noqa: E402

PLATFORMS = ("bungie", "vrchat", "playfab", "bitrix24", "rocketchat")
DAG_ID = "scheduled_onboarding"
CHROMIUM = "/usr/bin/chromium"


def outcomes(platform: str, people: int, run: int) -> list[dict[str, Any]]:
    """One group's outcomes in run ``run`` (0 = oldest): mostly members, some invited, a few failed."""
    rows = []
    for person in range(people):
        if run == 0 or (person + run) % 97 == 0:
            status, code = "invited", None
        elif (person * 7 + run) % 101 == 0:
            status, code = "failed", "rate_limited"
        elif person % 13 == 0:
            status, code = "already_invited", None
        else:
            status, code = "already_member", None
        rows.append(
            {
                "platform": platform,
                "group": f"{platform}-main",
                "user": f"{platform}-{person:05d}",
                "handle": f"email:person{person:05d}@example.test",
                "status": status,
                "detail": "" if code is None else "429 Too Many Requests; retried 3 times",
                "code": code,
            }
        )
    return rows


def seed(people: int, runs: int) -> int:
    """``runs`` runs with one mapped task per platform, as ``scheduled_onboarding`` makes them."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import insert, select

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    records = 0
    with create_session() as session:
        for run in range(runs):
            moment = start + timedelta(hours=run)
            run_id = f"scheduled__{moment.isoformat()}"
            session.execute(
                insert(DagRun.__table__).values(
                    dag_id=DAG_ID,
                    run_id=run_id,
                    run_type="scheduled",
                    logical_date=moment,
                    run_after=moment + timedelta(hours=1),
                    start_date=moment + timedelta(hours=1),
                    state="success",
                )
            )
            pk = session.scalar(select(DagRun.id).where(DagRun.dag_id == DAG_ID, DagRun.run_id == run_id))
            tasks = [(f"invite_{p}", 0, p) for p in PLATFORMS]
            session.execute(
                insert(TaskInstance.__table__),
                [
                    {
                        "id": uuid.uuid4(),
                        "dag_id": DAG_ID,
                        "run_id": run_id,
                        "task_id": task_id,
                        "map_index": map_index,
                        "try_number": 1,
                        "pool": "default_pool",
                        "pool_slots": 1,
                        "state": "success",
                    }
                    for task_id, map_index, _ in tasks
                ],
            )
            values = {platform: outcomes(platform, people, run) for _, _, platform in tasks}
            records += sum(len(v) for v in values.values())
            session.execute(
                insert(XComModel.__table__),
                [
                    {
                        "dag_run_id": pk,
                        "dag_id": DAG_ID,
                        "run_id": run_id,
                        "task_id": task_id,
                        "map_index": map_index,
                        "key": "outcomes",
                        "value": values[platform],
                        "timestamp": moment,
                    }
                    for task_id, map_index, platform in tasks
                ],
            )
    return records


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ApiServer:
    """Airflow's api-server app (with the plugin) in a uvicorn thread on loopback."""

    def __init__(self) -> None:
        import uvicorn
        from airflow.api_fastapi.app import create_app

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ApiServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the api-server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


def count_statements() -> list[str]:
    """Every SQL statement the engine sends from now on (appended to the returned list)."""
    from airflow import settings
    from sqlalchemy import event

    seen: list[str] = []
    event.listen(settings.engine, "before_cursor_execute", lambda *args: seen.append(str(args[2])[:80]))
    return seen


def time_http(base: str, token: str, path: str, repeat: int = 5) -> dict[str, Any]:
    import requests

    samples, size = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        reply = requests.get(f"{base}{path}", cookies={"_token": token}, timeout=120)
        samples.append(time.perf_counter() - started)
        reply.raise_for_status()
        size = len(reply.content)
    return {"median_s": statistics.median(samples), "max_s": max(samples), "bytes": size}


def time_browser(base: str, token: str, people: int, repeat: int = 3) -> dict[str, Any] | None:
    """Navigation start to load event (the grid is in the HTML: drawn by then), and a filter keystroke."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not Path(CHROMIUM).exists():
        return None
    loads, filters = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.add_cookies([{"name": "_token", "value": token, "url": base}])
        page = context.new_page()
        for _ in range(repeat):
            page.goto(f"{base}/invites/", wait_until="load", timeout=120_000)
            rows = page.locator("#grid tbody tr").count()
            assert rows == people, f"the page shows {rows} people, expected {people}"
            loads.append(page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd") / 1000)
            started = time.perf_counter()
            page.fill("#f-person", "person00042")
            page.wait_for_function("document.getElementById('shown').textContent.startsWith('1 of')")
            filters.append(time.perf_counter() - started)
        browser.close()
    return {"load_median_s": statistics.median(loads), "load_max_s": max(loads), "filter_s": min(filters)}


IMPORT_PROBE = """
import sys, time
import airflow.sdk
before, started = set(sys.modules), time.perf_counter()
import airflow_invites.plugins.plugin
print((time.perf_counter() - started) * 1000, len(set(sys.modules) - before))
"""


def plugin_import_cost(repeat: int = 7) -> dict[str, float]:
    """What every Airflow component pays to load the plugin: its import over ``airflow.sdk``, fresh processes."""
    samples = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, check=True)
        ms, modules = out.stdout.split()[-2:]
        samples.append((float(ms), int(modules)))
    return {"median_ms": statistics.median(ms for ms, _ in samples), "modules": samples[-1][1]}


def measure(people: int, runs: int) -> dict[str, Any]:
    import requests
    from airflow.utils import db

    db.initdb()
    started = time.perf_counter()
    records = seed(people, runs)
    seeded_s = time.perf_counter() - started
    with ApiServer() as server:
        token = requests.post(
            f"{server.base}/auth/token", json={"username": "admin", "password": PASSWORD}, timeout=30
        ).json()["access_token"]
        first = time_http(server.base, token, "/invites/", repeat=1)  # builds the app, warms caches
        statements = count_statements()
        page = time_http(server.base, token, "/invites/", repeat=1)
        page_statements = list(statements)
        page = time_http(server.base, token, "/invites/")
        data = time_http(server.base, token, "/invites/api/grid")
        grid = requests.get(f"{server.base}/invites/api/grid", cookies={"_token": token}, timeout=120).json()
        browser = time_browser(server.base, token, people)
    return {
        "people": people,
        "platforms": len(PLATFORMS),
        "runs": runs,
        "records": records,
        "seed_s": seeded_s,
        "cells": sum(len(p["cells"]) for p in grid["people"]),
        "rows": len(grid["people"]),
        "first_request_s": first["median_s"],
        "page": page,
        "json": data,
        "page_sql_statements": len(page_statements),
        "page_sql": page_statements,
        "browser": browser,
        "plugin_import": plugin_import_cost(),
        "load_average": os.getloadavg()[0],  # a shared machine: what else was running
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }


def render(result: dict[str, Any]) -> str:
    page, data, browser = result["page"], result["json"], result["browser"]
    rows = [
        ("page `GET /invites/` (server, over HTTP)", page["median_s"], page["max_s"], page["bytes"]),
        ("data `GET /invites/api/grid`", data["median_s"], data["max_s"], data["bytes"]),
    ]
    lines = [
        "## Invites page in the Airflow UI",
        "",
        f"{result['people']:,} people x {result['platforms']} platforms over {result['runs']} runs of "
        f"`{DAG_ID}` ({result['records']:,} outcome records in XCom), SQLite metadata DB, Airflow's "
        "api-server app with the plugin under uvicorn on loopback, logged in with a JWT cookie. "
        f"{result['rows']:,} rows, {result['cells']:,} cells; {result['cpus']} cores, load average "
        f"{result['load_average']:.1f} at the end (the machine is shared). Reproduce: "
        "`.venv/bin/python benchmarks/ui_render.py` (about 30 s; the Chromium rows need `make e2e`'s "
        "Playwright and /usr/bin/chromium).",
        "",
        "| what | median s | worst s | bytes (before gzip) |",
        "|---|---|---|---|",
        *(f"| {label} | {median:.2f} | {worst:.2f} | {size:,} |" for label, median, worst, size in rows),
    ]
    if browser:
        lines.append(
            f"| headless Chromium: navigation to grid drawn (load event) | {browser['load_median_s']:.2f} "
            f"| {browser['load_max_s']:.2f} | |"
        )
        lines.append(
            f"| headless Chromium: person filter applied to {result['rows']:,} rows | "
            f"{browser['filter_s']:.2f} | | |"
        )
    else:
        lines.append("| headless Chromium | not measured (Playwright or /usr/bin/chromium missing) | | |")
    lines += [
        "",
        f"One page request sends {result['page_sql_statements']} SQL statements whatever the number of "
        "people (auth look-ups, the recent runs, their outcomes). The first request after start-up, which "
        f"also builds the plugin's app and warms Airflow's caches, took {result['first_request_s']:.2f} s.",
        "",
        "Every Airflow component (scheduler, workers, triggerer, dag-processor) imports the plugin module: "
        f"{result['plugin_import']['median_ms']:.1f} ms over `import airflow.sdk` (median of 7 fresh "
        f"processes), {result['plugin_import']['modules']} modules of ours, no FastAPI, SQLAlchemy or web "
        "app; the web app is built on the api-server at its first request.",
    ]
    return "\n".join(lines) + "\n"


def write_docs(text: str, docs: Path) -> None:
    """This benchmark's section of docs/performance.md: below the marker ``make bench`` keeps."""
    path = docs / "performance.md"
    head = path.read_text().split(KEPT_MARKER)[0].rstrip("\n")
    path.write_text(f"{head}\n\n{KEPT_MARKER}\n\n{text}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs/performance.md")
    parser.add_argument(
        "--render", action="store_true", help="print the docs section of the last results; measure nothing"
    )
    args = parser.parse_args()
    if args.render:
        shutil.rmtree(HOME, ignore_errors=True)
        print(render(json.loads((REPO / "benchmarks" / "results" / "ui_render.json").read_text())), end="")
        return 0
    try:
        result = measure(args.people, args.runs)
    finally:
        shutil.rmtree(HOME, ignore_errors=True)
    text = render(result)
    print(text)
    (REPO / "benchmarks" / "results").mkdir(exist_ok=True)
    (REPO / "benchmarks" / "results" / "ui_render.json").write_text(json.dumps(result, indent=2))
    if not args.no_docs:
        write_docs(text, REPO / "docs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
