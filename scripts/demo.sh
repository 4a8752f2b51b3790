#!/usr/bin/env bash
# make demo: start the sandbox, run the onboarding DAG against it twice (SQLite, throwaway
# AIRFLOW_HOME), print each person's outcome, stop the sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT=${SANDBOX_PORT:-$($BIN/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
WORK=$(mktemp -d -t invites-demo-XXXX)
export AIRFLOW_HOME=$WORK/airflow AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__DAGS_FOLDER=$PWD/dags
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlite:///$WORK/airflow/airflow.db

$BIN/airflow-invites sandbox --port "$PORT" >"$WORK/sandbox.log" 2>&1 &
SANDBOX_PID=$!
trap 'kill $SANDBOX_PID 2>/dev/null || true; wait $SANDBOX_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
eval "$($BIN/airflow-invites sandbox --print-env --port "$PORT")"

echo "== airflow db migrate (SQLite under $AIRFLOW_HOME)"
$BIN/airflow db migrate >"$WORK/migrate.log" 2>&1 || { cat "$WORK/migrate.log"; exit 1; }
$BIN/python -m airflow_invites.pools >"$WORK/pools.json"
$BIN/airflow pools import "$WORK/pools.json" >/dev/null
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/_sandbox/health" >/dev/null 2>&1 && break; sleep 0.2; done

CONF=$($BIN/python scripts/demo_conf.py)
echo "== trigger conf: $CONF"
for attempt in first second; do
  echo "== airflow dags test onboard_user ($attempt run)"
  if $BIN/airflow dags test onboard_user -c "$CONF" >"$WORK/run-$attempt.log" 2>&1; then rc=0; else rc=$?; fi
  grep -E '^\| ' "$WORK/run-$attempt.log" || { tail -40 "$WORK/run-$attempt.log"; }
  [ "$rc" = 0 ] || { echo "dags test failed (rc=$rc)"; tail -60 "$WORK/run-$attempt.log"; exit "$rc"; }
done
echo "== /_sandbox/invites (applied = state changes per person: 1 each, whatever the re-runs)"
curl -fs "http://127.0.0.1:$PORT/_sandbox/invites" | $BIN/python -m json.tool
