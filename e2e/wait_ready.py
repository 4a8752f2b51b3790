"""Wait until the Airflow stack of ``e2e/run.sh`` is ready: health, a parsed DAG, Celery workers."""

from __future__ import annotations

import argparse
import os
import sys
import time

import requests
from e2e_api import API, Airflow


def healthy() -> tuple[bool, str]:
    try:
        health = requests.get(f"{API}/api/v2/monitor/health", timeout=5).json()
    except (requests.RequestException, ValueError) as exc:
        return False, f"health: {exc}"
    bad = {
        k: v.get("status") for k, v in health.items() if isinstance(v, dict) and v.get("status") != "healthy"
    }
    return not bad, f"health: {bad or 'all healthy'}"


def dag_parsed(airflow: Airflow, dag_id: str) -> tuple[bool, str]:
    reply = airflow.session.get(
        f"{API}/api/v2/dags/{dag_id}", headers={"Authorization": f"Bearer {airflow.token()}"}, timeout=10
    )
    return reply.status_code == 200, f"dag {dag_id}: HTTP {reply.status_code}"


def celery_workers() -> int:
    from airflow.providers.celery.executors.celery_executor_utils import app

    return len(app.control.ping(timeout=1.0) or [])


def dead_components() -> list[str]:
    """Components of ``E2E_WATCH`` (``name:pid ...``) that are no longer running."""
    dead = []
    for item in os.environ.get("E2E_WATCH", "").split():
        name, _, pid = item.partition(":")
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            dead.append(name)
        except PermissionError:
            pass
    return dead


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dag")
    parser.add_argument("--celery-workers", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    airflow = Airflow()
    deadline, t0, status = time.monotonic() + args.timeout, time.monotonic(), ""
    while time.monotonic() < deadline:
        dead = dead_components()
        if dead:
            print(f"not ready: {', '.join(dead)} exited (see its log in $E2E_WORK/logs)", file=sys.stderr)
            return 1
        ok, status = healthy()
        if ok and args.dag:
            ok, status = dag_parsed(airflow, args.dag)
        if ok and args.celery_workers:
            found = celery_workers()
            ok, status = found >= args.celery_workers, f"celery workers answering: {found}"
        if ok:
            print(f"ready after {time.monotonic() - t0:.1f} s")
            return 0
        time.sleep(1)
    print(f"not ready after {args.timeout} s: {status}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
