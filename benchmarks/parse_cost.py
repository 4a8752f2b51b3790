"""DAG parse cost: each file in dags/ imported over a bare ``airflow.sdk`` import, in fresh processes."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

DAGS = Path(__file__).resolve().parents[1] / "dags"
SERVER_MODULES = (
    "fastapi",
    "uvicorn",
    "starlette",
    "airflow_invites.sandbox.app",
    "airflow_invites.sandbox.core",
)

PROBE = """
import importlib.util, json, sys, time
t0 = time.perf_counter()
import airflow.sdk
t1 = time.perf_counter()
before = set(sys.modules)
spec = importlib.util.spec_from_file_location("probe_dag", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
t2 = time.perf_counter()
added = set(sys.modules) - before
server = [m for m in json.loads(sys.argv[2]) if m in sys.modules]
print(json.dumps({"sdk_s": t1 - t0, "dag_s": t2 - t1, "modules_added": len(added), "server_modules": server}))
"""


def measure(dag_file: Path, runs: int = 5) -> dict[str, object]:
    samples = []
    for _ in range(runs):
        out = (
            subprocess.run(
                [sys.executable, "-c", PROBE, str(dag_file), json.dumps(SERVER_MODULES)],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        samples.append(json.loads(out))
    return {
        "file": dag_file.name,
        "sdk_ms": round(statistics.median(s["sdk_s"] for s in samples) * 1000, 1),
        "dag_ms": round(statistics.median(s["dag_s"] for s in samples) * 1000, 1),
        "modules_added": samples[-1]["modules_added"],
        "server_modules": samples[-1]["server_modules"],
    }


def measure_all(runs: int = 5) -> list[dict[str, object]]:
    return [measure(path, runs) for path in sorted(DAGS.glob("*.py"))]


if __name__ == "__main__":
    for row in measure_all():
        print(row)
