"""Real task logs: after all the runs, no credential the sandbox knows (the connections' secrets and
every token it issued) appears in any file under $AIRFLOW_HOME/logs."""

from __future__ import annotations

import os
from pathlib import Path

from e2e_api import Sandbox

AIRFLOW_LOGS = Path(os.environ.get("AIRFLOW_HOME", "")) / "logs"
COMPONENT_LOGS = Path(os.environ.get("E2E_WORK", "")) / "logs"
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer", "w1", "w2")


def leaks(files: list[Path], secrets: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in files:
        text = path.read_text(errors="replace")
        hits = [f"{s[:4]}…({len(s)} chars)" for s in secrets if s in text]
        if hits:
            found[str(path)] = hits
    return found


def test_task_logs_hold_no_secret(sandbox: Sandbox) -> None:
    secrets = sandbox.secrets()
    assert len(secrets) >= 5, secrets  # the connections' credentials and the tokens issued during the runs
    files = [p for p in AIRFLOW_LOGS.rglob("*") if p.is_file()]
    task_logs = [p for p in files if p.name.startswith("attempt=")]
    assert len(task_logs) >= 20, f"expected the runs' task logs under {AIRFLOW_LOGS}: {len(task_logs)}"
    assert not leaks(files, secrets)


def test_component_logs_hold_no_secret(sandbox: Sandbox) -> None:
    """The components' own output (api-server, scheduler, workers, ...) too."""
    files = [COMPONENT_LOGS / f"{name}.log" for name in AIRFLOW_COMPONENTS]
    files = [p for p in files if p.exists()]
    assert files
    assert not leaks(files, sandbox.secrets())
