#!/usr/bin/env bash
# make try: the sandbox in the background and a shell with its five connections (AIRFLOW_CONN_*_DEFAULT),
# INVITES_SANDBOX_*, the group Variables and pools set, on a throwaway Airflow home (SQLite, this
# checkout's dags/). `exit` stops the sandbox and deletes the home. Port: $INVITES_SANDBOX_PORT, else a
# free one.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PWD/.venv/bin:$PATH
WORK=$(mktemp -d -t invites-try-XXXX)
export AIRFLOW_HOME=$WORK/airflow AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__DAGS_FOLDER=$PWD/dags
export INVITES_SANDBOX_PORT=${INVITES_SANDBOX_PORT:-$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}

airflow-invites sandbox >"$WORK/sandbox.log" 2>&1 &
SANDBOX_PID=$!
trap 'kill $SANDBOX_PID 2>/dev/null || true; wait $SANDBOX_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
eval "$(airflow-invites sandbox --print-env)"
airflow db migrate >"$WORK/migrate.log" 2>&1 || { cat "$WORK/migrate.log"; exit 1; }
kill -0 $SANDBOX_PID 2>/dev/null || { cat "$WORK/sandbox.log"; exit 1; }  # e.g. the port was taken
python -m airflow_invites.pools >"$WORK/pools.json"
python - >"$WORK/variables.json" <<'PY'
import json, os
from airflow_invites.platforms import PLATFORMS
print(json.dumps({f"invites_{p}_group": os.environ[f"INVITES_SANDBOX_{p.upper()}_GROUP"] for p in PLATFORMS}))
PY
airflow pools import "$WORK/pools.json" >/dev/null
airflow variables import "$WORK/variables.json" >/dev/null

cat <<MSG
Sandbox on http://127.0.0.1:$INVITES_SANDBOX_PORT (log: $WORK/sandbox.log), Airflow home $AIRFLOW_HOME.
Set: AIRFLOW_CONN_<PLATFORM>_DEFAULT, INVITES_SANDBOX_<PLATFORM>_GROUP / _USERS, Variables invites_<platform>_group.
Try:  airflow dags test onboard_user -c "{\"rocketchat_user\": \"\${INVITES_SANDBOX_ROCKETCHAT_USERS%%,*}\"}"
      curl -s http://127.0.0.1:$INVITES_SANDBOX_PORT/_sandbox/invites
'exit' stops the sandbox.
MSG
RC=$WORK/bashrc
{ [ -f "$HOME/.bashrc" ] && echo "source ~/.bashrc"; echo 'PS1="(invites-try) $PS1"'; } >"$RC"
bash --rcfile "$RC" -i || true
