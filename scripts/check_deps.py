"""Check that pyproject.toml declares what airflow_invites imports, and nothing it does not.

- every third-party module imported under ``airflow_invites/`` belongs to a declared distribution
  (``dependencies`` or the extras ``sandbox`` and ``sql``);
- a distribution of an extra is imported only by the sandbox (``airflow_invites/sandbox/``) or inside a
  function, so that the provider imports without the extra;
- every declared distribution (those lists) is imported somewhere.

``airflow.providers.<name>`` counts as ``apache-airflow-providers-<name>`` (``common.sql`` ->
``apache-airflow-providers-common-sql``); any other ``airflow`` module as ``apache-airflow``.
Run: ``python scripts/check_deps.py [--pyproject FILE]``; exit 1 and one line per problem.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections import defaultdict
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "airflow_invites"
#: extras that hold runtime code paths (test and docs are tooling)
RUNTIME_EXTRAS = ("sandbox", "sql")
#: sub-packages allowed to import an extra's distributions at module level
EXTRA_HOMES = {"sandbox": f"{PACKAGE}/sandbox/"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distribution_of(module: str, known: dict[str, list[str]]) -> str | None:
    """The distribution that provides ``module`` (dotted), or None for the standard library and ours."""
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top == PACKAGE or top == "__future__":
        return None
    if top == "airflow":
        parts = module.split(".")
        if len(parts) > 2 and parts[1] == "providers":
            name = parts[2:4] if parts[2] == "common" and len(parts) > 3 else parts[2:3]
            return canonical("apache-airflow-providers-" + "-".join(name))
        return "apache-airflow"
    dists = known.get(top)
    return canonical(dists[0]) if dists else canonical(top)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at module level) for every absolute import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    lazy: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lazy.update(id(inner) for inner in ast.walk(node))
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            lazy.update(id(inner) for inner in ast.walk(node))  # not imported at run time
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) not in lazy) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, id(node) not in lazy))
    return found


def check(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    declared: dict[str, str] = {}  # distribution -> "dependencies" or the extra's name
    for requirement in project.get("dependencies", []):
        declared[canonical(Requirement(requirement).name)] = "dependencies"
    for extra in RUNTIME_EXTRAS:
        for requirement in project.get("optional-dependencies", {}).get(extra, []):
            declared.setdefault(canonical(Requirement(requirement).name), extra)

    known = packages_distributions()
    used: dict[str, set[str]] = defaultdict(set)
    problems = []
    for path in sorted((REPO / PACKAGE).rglob("*.py")):
        relative = path.relative_to(REPO).as_posix()
        for module, eager in imports(path):
            dist = distribution_of(module, known)
            if dist is None:
                continue
            used[dist].add(relative)
            where = declared.get(dist)
            if where is None:
                problems.append(f"{relative}: imports {module}, but {dist} is not declared")
            elif where != "dependencies" and eager and not relative.startswith(EXTRA_HOMES.get(where, "\0")):
                problems.append(
                    f"{relative}: imports {module} at module level, but {dist} is only in the extra "
                    f"{where!r}: import it inside the function that needs it"
                )
    for dist, where in sorted(declared.items()):
        if dist not in used:
            problems.append(f"{dist} is declared ({where}) but nothing under {PACKAGE}/ imports it")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", type=Path, default=REPO / "pyproject.toml")
    problems = check(parser.parse_args().pyproject)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
