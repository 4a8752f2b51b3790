"""Check a built wheel and sdist: what they contain and the metadata an index shows.

Run: ``python scripts/check_dist.py DIST_DIR`` (after ``python -m build --outdir DIST_DIR``);
``python scripts/check_dist.py --lowest-airflow`` prints the lowest Airflow that pyproject.toml allows.
Exit 1 and one line per problem.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "airflow_invites"
SDIST_MUST_HAVE = ("LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", f"{PACKAGE}/py.typed")
REQUIRED_CLASSIFIERS = ("Framework :: Apache Airflow", "Framework :: Apache Airflow :: Provider")


def lowest_airflow() -> str:
    """The ``>=`` bound of ``apache-airflow`` in pyproject.toml's dependencies."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for text in project["dependencies"]:
        requirement = Requirement(text)
        if requirement.name == "apache-airflow":
            bounds = [spec.version for spec in requirement.specifier if spec.operator == ">="]
            if bounds:
                return bounds[0]
    raise SystemExit("pyproject.toml: apache-airflow has no >= bound")


def check_wheel(path: Path) -> list[str]:
    problems = []
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    stray = [n for n in names if not n.startswith((f"{PACKAGE}/", f"{info}/"))]
    if stray:
        problems.append(f"{path.name}: files outside {PACKAGE}/: {stray[:5]}")
    if f"{PACKAGE}/py.typed" not in names:
        problems.append(f"{path.name}: no py.typed")
    if f"{info}/licenses/LICENSE" not in names:
        problems.append(f"{path.name}: no licenses/LICENSE")
    if metadata.get("License-Expression") != "Apache-2.0":
        problems.append(f"{path.name}: License-Expression is {metadata.get('License-Expression')!r}")
    classifiers = metadata.get_all("Classifier") or []
    problems += [
        f"{path.name}: classifier {c!r} missing" for c in REQUIRED_CLASSIFIERS if c not in classifiers
    ]
    if "[apache_airflow_provider]" not in entry_points:
        problems.append(f"{path.name}: no apache_airflow_provider entry point")
    extras = metadata.get_all("Provides-Extra") or []
    problems += [f"{path.name}: extra {e!r} missing" for e in ("sandbox", "sql") if e not in extras]
    return problems


def check_sdist(path: Path) -> list[str]:
    with tarfile.open(path) as sdist:
        names = [n.split("/", 1)[1] for n in sdist.getnames() if "/" in n]
    problems = [f"{path.name}: {n} missing" for n in SDIST_MUST_HAVE if n not in names]
    tests = [n for n in names if n.startswith("tests/")]
    if tests:
        problems.append(f"{path.name}: ships {len(tests)} files under tests/ (they need the repository)")
    return problems


def main(argv: list[str]) -> int:
    if argv == ["--lowest-airflow"]:
        print(lowest_airflow())
        return 0
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    dist = Path(argv[0])
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        print(f"{dist}: expected one wheel and one sdist, found {[p.name for p in dist.iterdir()]}")
        return 1
    problems = check_wheel(wheels[0]) + check_sdist(sdists[0])
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
