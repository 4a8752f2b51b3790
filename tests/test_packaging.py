"""The package's metadata: declared dependencies match the imports, an index would accept it.

Building, ``twine check`` and installing the wheel with the lowest and the newest supported Airflow is
``make package`` (scripts/check_package.sh), run by CI.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from trove_classifiers import classifiers as known_classifiers

import airflow_invites

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_every_import_is_declared_and_every_dependency_imported():
    result = subprocess.run(
        [sys.executable, "scripts/check_deps.py"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dependency_check_finds_an_undeclared_import_and_an_unused_dependency(tmp_path):
    dependencies = [d for d in PROJECT["dependencies"] if not d.startswith("requests")] + ["pendulum>=3"]
    extras = "\n".join(f"{k} = {json.dumps(v)}" for k, v in PROJECT["optional-dependencies"].items())
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        f"[project]\ndependencies = {json.dumps(dependencies)}\n[project.optional-dependencies]\n{extras}\n"
    )
    result = subprocess.run(
        [sys.executable, "scripts/check_deps.py", "--pyproject", str(pyproject)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "airflow_invites/core/http.py: imports requests, but requests is not declared" in result.stdout
    assert (
        "pendulum is declared (dependencies) but nothing under airflow_invites/ imports it" in result.stdout
    )


def test_classifiers_are_known_to_the_index_and_name_the_framework():
    assert set(PROJECT["classifiers"]) <= known_classifiers
    assert "Framework :: Apache Airflow :: Provider" in PROJECT["classifiers"]
    assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")]  # the SPDX field says it


def test_license_changelog_and_version_agree():
    assert PROJECT["license"] == "Apache-2.0"
    assert "Apache License" in (REPO / "LICENSE").read_text()[:200]
    assert "Version 2.0, January 2004" in (REPO / "LICENSE").read_text()[:200]
    assert PROJECT["version"] == airflow_invites.__version__
    assert re.search(rf"^## \[{re.escape(PROJECT['version'])}\]", (REPO / "CHANGELOG.md").read_text(), re.M)


def test_the_supported_airflow_range_is_stated_where_users_read_it():
    (airflow,) = [
        d for d in PROJECT["dependencies"] if re.match(r"apache-airflow[<>=! ]", d)
    ]  # not its providers
    lowest = re.search(r">=([0-9.]+)", airflow)
    assert lowest, airflow
    for page in ("README.md", "docs/deploy.md"):
        text = " ".join((REPO / page).read_text().split())
        assert f"Airflow {lowest.group(1)} or newer 3.x" in text, page
