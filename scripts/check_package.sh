#!/usr/bin/env bash
# make package: build the sdist and the wheel, `twine check` them, check what they contain
# (scripts/check_dist.py), then install the wheel into two clean virtualenvs, one with the lowest
# Airflow pyproject.toml allows and one with the newest on the index, check that `airflow providers list`
# shows the provider in both, and run a short test subset against the installed wheel (not this
# checkout) in both. Prints the time of each step.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/.venv/bin
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d -t invites-package-XXXX)
trap 'rm -rf "$WORK"' EXIT
# the tests that need no other service than the sandbox, quick, and touch every layer: provider info,
# bad input in a real DAG run, one platform over HTTP, the CLI, the example DAGs
SUBSET=(tests/test_provider.py tests/test_bad_input.py tests/test_rocketchat.py tests/test_cli.py tests/test_dags.py)

step() { printf '== %s (%ss so far)\n' "$1" "$SECONDS"; }

step "build sdist and wheel"
"$BIN/python" -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
ls -l "$WORK"/dist
step "twine check"
"$BIN/twine" check --strict "$WORK"/dist/*
"$BIN/python" scripts/check_dist.py "$WORK/dist"
WHEEL=$(ls "$WORK"/dist/*.whl)

# the test subset, run from a copy outside this checkout so that it imports the installed wheel
mkdir -p "$WORK/src/tests"
cp -r dags pyproject.toml "$WORK/src/"
cp tests/conftest.py "${SUBSET[@]}" "$WORK/src/tests/"

try_airflow() {  # try_airflow NAME PIP-REQUIREMENT...
  local name=$1 venv=$WORK/venv-$1
  shift
  step "clean venv '$name': pip install $*"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet "$@" pytest pytest-timeout >"$WORK/pip-$name.log" 2>&1 \
    || { grep -v '^WARNING: Location' "$WORK/pip-$name.log"; exit 1; }
  "$venv/bin/python" -m pip check
  local version
  version=$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("apache-airflow"))')
  step "'$name': apache-airflow $version, airflow providers list"
  mkdir -p "$WORK/home-$name"
  AIRFLOW_HOME=$WORK/home-$name "$venv/bin/airflow" providers list >"$WORK/providers-$name.txt" 2>&1 \
    || { cat "$WORK/providers-$name.txt"; exit 1; }
  grep -E '^airflow-invites +\| Invite people' "$WORK/providers-$name.txt" \
    || { echo "airflow-invites is not listed by airflow providers list:"; cat "$WORK/providers-$name.txt"; exit 1; }
  step "'$name': tests against the installed wheel: ${SUBSET[*]}"
  (cd "$WORK/src" && "$venv/bin/python" -c \
    'import airflow_invites, sys; f = airflow_invites.__file__; print(f); sys.exit("site-packages" not in f)')
  (cd "$WORK/src" && "$venv/bin/python" -m pytest -q -p no:cacheprovider "${SUBSET[@]}" | tail -3)
  echo "airflow $version: provider listed, tests passed" >>"$WORK/summary.txt"
}

LOWEST=$("$BIN/python" scripts/check_dist.py --lowest-airflow)
try_airflow lowest "$WHEEL" "apache-airflow==$LOWEST"
try_airflow newest "$WHEEL[sandbox,sql]"   # pip picks the newest Airflow the wheel allows
step "done"
cat "$WORK/summary.txt"
