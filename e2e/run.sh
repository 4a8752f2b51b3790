#!/usr/bin/env bash
# make e2e: a production-like Airflow 3.3 on this machine, tested from the outside.
#
# PostgreSQL (throwaway cluster on loopback) -> airflow db migrate -> sandbox -> connections, pools,
# Variables -> api-server, scheduler (LocalExecutor), dag-processor, triggerer -> browser, REST, deferral
# checks -> scheduler restarted on CeleryExecutor with Redis and two Celery workers -> Celery and log
# checks -> everything stopped, and a final check that no process of this run is left.
#
# Everything lives in one temp dir ($WORK); every process started here carries INVITES_E2E_RUN=$WORK in
# its environment, which is how the final check finds stragglers. Set E2E_KEEP=1 to keep $WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
BIN=$REPO/.venv/bin
T0=$(date +%s.%N)
PHASES=()

phase_start() { PHASE_NAME=$1; PHASE_T0=$(date +%s.%N); echo; echo "== [$(elapsed)] $1"; }
since() { awk -v a="$(date +%s.%N)" -v b="$1" 'BEGIN { printf "%.1f", a - b }'; }
phase_end() { PHASES+=("$(printf '%-52s %6s s' "$PHASE_NAME" "$(since "$PHASE_T0")")"); }
elapsed() { printf '%6ss' "$(since "$T0")"; }
die() { echo "e2e: $*" >&2; exit 1; }

# ---------------------------------------------------------------- 1. install (idempotent, quick when done)
phase_start "install (Debian + PyPI)"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
missing_debs=()
[ -x "${PG_BIN:-/nonexistent}/initdb" ] || missing_debs+=(postgresql)
command -v redis-server >/dev/null || missing_debs+=(redis-server)
[ -x /usr/bin/chromium ] || missing_debs+=(chromium)
[ -x /usr/bin/chromedriver ] || missing_debs+=(chromium-driver)
if [ ${#missing_debs[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing Debian packages ${missing_debs[*]}; install them as root"
  echo "apt-get install ${missing_debs[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing_debs[@]}" >/dev/null
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
if ! "$BIN/python" -c "import psycopg2, asyncpg, playwright.sync_api, airflow.providers.celery.executors.celery_executor_utils" >/dev/null 2>&1; then
  AIRFLOW_VERSION=$("$BIN/python" -c "import importlib.metadata as m; print(m.version('apache-airflow'))")
  echo "pip install -r e2e/requirements.txt (apache-airflow kept at $AIRFLOW_VERSION)"
  "$BIN/python" -m pip install --quiet -r e2e/requirements.txt "apache-airflow==$AIRFLOW_VERSION"
fi
phase_end

# ---------------------------------------------------------------- run directory, ports, environment
WORK=$(mktemp -d -t invites-e2e-XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK/logs" "$WORK/airflow" "$WORK/redis" "$WORK/people"
export INVITES_E2E_RUN=$WORK
free_port() { "$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PG_PORT=$(free_port); REDIS_PORT=$(free_port); API_PORT=$(free_port); SANDBOX_PORT=$(free_port)
LOG_PORT=$(free_port); TRIGGER_LOG_PORT=$(free_port); W1_LOG_PORT=$(free_port); W2_LOG_PORT=$(free_port)
ADMIN_PASSWORD=e2e-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')

export AIRFLOW_HOME=$WORK/airflow
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER=$REPO/dags
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM=4
export AIRFLOW__CORE__FERNET_KEY=$("$BIN/python" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')
export AIRFLOW__CORE__TEST_CONNECTION=Enabled
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=postgresql+psycopg2://airflow:airflow@127.0.0.1:$PG_PORT/airflow
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC=postgresql+asyncpg://airflow:airflow@127.0.0.1:$PG_PORT/airflow
export AIRFLOW__API__HOST=127.0.0.1 AIRFLOW__API__PORT=$API_PORT AIRFLOW__API__BASE_URL=http://127.0.0.1:$API_PORT
export AIRFLOW__API__WORKERS=1
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$API_PORT/execution/
export AIRFLOW__API_AUTH__JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=$AIRFLOW_HOME/passwords.json
export AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=$LOG_PORT AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=$TRIGGER_LOG_PORT
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=30
export AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK=False
export AIRFLOW__CELERY__BROKER_URL=redis://127.0.0.1:$REDIS_PORT/0
export AIRFLOW__CELERY__RESULT_BACKEND=db+postgresql+psycopg2://airflow:airflow@127.0.0.1:$PG_PORT/airflow
# (SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not installed: name the driver)
export AIRFLOW__CELERY__WORKER_CONCURRENCY=2
# deferrable sensors (the acceptance sensor waits in the triggerer); scheduled_onboarding runs when the
# roster's asset changes (e2e/test_operations.py sends the event) and reads rosters from $WORK/people
export AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE=True
export AIRFLOW__INVITES__ROSTER_ASSET=file://$WORK/people/roster.csv AIRFLOW__INVITES__PEOPLE_FOLDERS=$WORK/people
printf '{"admin": "%s"}\n' "$ADMIN_PASSWORD" >"$AIRFLOW_HOME/passwords.json"
# what the checks read
export E2E_API=http://127.0.0.1:$API_PORT E2E_SANDBOX=http://127.0.0.1:$SANDBOX_PORT
export E2E_ADMIN_USER=admin E2E_ADMIN_PASSWORD=$ADMIN_PASSWORD E2E_WORK=$WORK E2E_IMAGES=$REPO/docs/images

# ---------------------------------------------------------------- process control
declare -A PGIDS=()   # name -> process group id (each component runs in its own session)
start() {  # start NAME CMD...: a new session, output to $WORK/logs/NAME.log
  local name=$1; shift
  setsid "$@" >"$WORK/logs/$name.log" 2>&1 </dev/null &
  PGIDS[$name]=$!
}
stop() {  # stop NAME [GRACE_SECONDS]: SIGTERM the group, SIGKILL what is left after the grace period
  local name=$1 grace=${2:-30} pgid=${PGIDS[$1]:-}
  [ -n "$pgid" ] || return 0
  kill -TERM -- "-$pgid" 2>/dev/null || true
  for _ in $(seq $((grace * 5))); do kill -0 -- "-$pgid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 -- "-$pgid" 2>/dev/null; then
    echo "e2e: $name did not stop within ${grace}s: SIGKILL"
    kill -KILL -- "-$pgid" 2>/dev/null || true
  fi
  wait "$pgid" 2>/dev/null || true
  unset "PGIDS[$name]"
}
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
stragglers() {  # pids (not us, not our ancestors) carrying this run's marker or running from $WORK
  "$BIN/python" - "$WORK" <<'PY'
import os, sys
work = sys.argv[1]
mine, pid = set(), os.getpid()
while pid > 1:  # ourselves and our ancestors
    mine.add(pid)
    with open(f"/proc/{pid}/stat") as f:
        pid = int(f.read().rsplit(")", 1)[1].split()[1])
for entry in os.listdir("/proc"):
    if not entry.isdigit() or int(entry) in mine:
        continue
    try:
        with open(f"/proc/{entry}/environ", "rb") as f:
            env = f.read()
        with open(f"/proc/{entry}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        continue
    if f"INVITES_E2E_RUN={work}".encode() in env.split(b"\0") or work in cmd:
        print(entry, cmd[:160])
PY
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  echo; echo "== [$(elapsed)] stopping everything"
  local t=$(date +%s.%N)
  # Airflow first (in parallel: the triggerer alone takes a while), then what it talks to
  local stoppers=()
  for name in w1 w2 scheduler triggerer dag-processor api-server; do
    if [ -n "${PGIDS[$name]:-}" ]; then stop "$name" 40 & stoppers+=($!); fi
  done
  wait "${stoppers[@]}"  # not a bare `wait`: that would also wait for the sandbox and Redis
  for name in sandbox redis; do [ -n "${PGIDS[$name]:-}" ] && stop "$name" 10; done
  for name in "${!PGIDS[@]}"; do stop "$name" 5; done
  if [ -f "$WORK/pg/data/postmaster.pid" ]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m fast -w -t 30 stop >/dev/null
  fi
  local left
  left=$(stragglers)
  if [ -n "$left" ]; then
    echo "e2e: left after the orderly stop (killing them now):"; echo "$left"
    echo "$left" | awk '{print $1}' | xargs -r kill -KILL 2>/dev/null
    sleep 1
    [ "$rc" = 0 ] && rc=1
  fi
  left=$(stragglers)
  if [ -n "$left" ]; then echo "e2e: STILL RUNNING:"; echo "$left"; rc=1; else echo "no process of this run is left"; fi
  PHASES+=("$(printf '%-52s %6s s' "stop everything + final process check" "$(since "$t")")")
  echo; echo "== timings"; printf '%s\n' "${PHASES[@]}"
  printf '%-52s %6s s\n' "total" "$(since "$T0")"
  [ -n "${RESULTS:-}" ] && { echo; echo "== results"; printf '%s\n' "$RESULTS"; }
  if [ "$rc" != 0 ]; then
    echo "e2e FAILED (rc=$rc); component logs: $WORK/logs, Airflow logs: $AIRFLOW_HOME/logs"
    for f in "$WORK"/logs/*.log; do echo "---- tail $f"; tail -15 "$f"; done
  elif [ -z "${E2E_KEEP:-}" ]; then
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

watch_components() {  # wait_ready.py gives up at once when one of these has died
  export E2E_WATCH=""
  for name in "${!PGIDS[@]}"; do E2E_WATCH+="$name:${PGIDS[$name]} "; done
}
wait_http() {  # wait_http URL SECONDS WHAT
  for _ in $(seq $(($2 * 5))); do curl -fs -o /dev/null "$1" && return 0; sleep 0.2; done
  die "$3 did not answer on $1 within $2 s"
}

# ---------------------------------------------------------------- 2. PostgreSQL, migrate, sandbox, seed
phase_start "PostgreSQL cluster + airflow db migrate"
mkdir -p "$WORK/pg"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK/pg"
as_postgres "$PG_BIN/initdb" -D "$WORK/pg/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
  --no-sync >"$WORK/logs/initdb.log" 2>&1 || { cat "$WORK/logs/initdb.log"; die "initdb failed"; }
as_postgres "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/postgres.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $WORK/pg -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
  start >/dev/null
as_postgres psql -q -h "$WORK/pg" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
  -c "CREATE ROLE airflow LOGIN PASSWORD 'airflow'" -c "CREATE DATABASE airflow OWNER airflow" >/dev/null
"$BIN/airflow" db migrate >"$WORK/logs/migrate.log" 2>&1 || { tail -30 "$WORK/logs/migrate.log"; die "db migrate failed"; }
phase_end

phase_start "sandbox + connections, pools, Variables"
start sandbox "$BIN/airflow-invites" sandbox --port "$SANDBOX_PORT"
eval "$("$BIN/airflow-invites" sandbox --print-env --port "$SANDBOX_PORT")"
# The connections go into the metadata DB (as in a real deployment, read by workers through the
# Execution API); the AIRFLOW_CONN_* variables are not passed on to the Airflow components.
"$BIN/python" - "$WORK/connections.json" "$WORK/variables.json" <<'PY'
import json, os, sys
conns, variables = {}, {}
for key, value in os.environ.items():
    if key.startswith("AIRFLOW_CONN_") and key.endswith("_DEFAULT"):
        platform = key[len("AIRFLOW_CONN_"):-len("_DEFAULT")].lower()
        conn = json.loads(value)
        conn["extra"] = json.dumps(conn.get("extra") or {})
        conns[f"{platform}_default"] = conn
        variables[f"invites_{platform}_group"] = os.environ[f"INVITES_SANDBOX_{platform.upper()}_GROUP"]
json.dump(conns, open(sys.argv[1], "w"), indent=2)
json.dump(variables, open(sys.argv[2], "w"), indent=2)
print(f"{len(conns)} connections: {', '.join(sorted(conns))}")
PY
for v in $(env | awk -F= '/^AIRFLOW_CONN_/{print $1}'); do unset "$v"; done
"$BIN/python" -m airflow_invites.pools >"$WORK/pools.json"
"$BIN/airflow" connections import "$WORK/connections.json" >"$WORK/logs/seed.log" 2>&1 || { cat "$WORK/logs/seed.log"; die "connections import failed"; }
"$BIN/airflow" pools import "$WORK/pools.json" >>"$WORK/logs/seed.log" 2>&1 || { cat "$WORK/logs/seed.log"; die "pools import failed"; }
"$BIN/airflow" variables import "$WORK/variables.json" >>"$WORK/logs/seed.log" 2>&1 || { cat "$WORK/logs/seed.log"; die "variables import failed"; }
wait_http "$E2E_SANDBOX/_sandbox/health" 30 "sandbox"
phase_end

# ---------------------------------------------------------------- 3. Airflow on LocalExecutor
phase_start "start api-server, scheduler, dag-processor, triggerer"
start api-server "$BIN/airflow" api-server
start scheduler "$BIN/airflow" scheduler
start dag-processor "$BIN/airflow" dag-processor
start triggerer "$BIN/airflow" triggerer
wait_http "$E2E_API/api/v2/monitor/health" 120 "api-server"
watch_components; "$BIN/python" e2e/wait_ready.py --dag onboard_user --timeout 180
phase_end
if [ -n "${E2E_HOLD:-}" ]; then  # development: keep the stack up; stop with Ctrl-C or kill <this pid>
  export -p | grep -E ' (AIRFLOW|E2E_|INVITES_)' >"$WORK/env.sh"
  echo "E2E_HOLD: stack is up; source $WORK/env.sh; stop with: kill $$"
  while true; do sleep 1; done
fi

RESULTS=""
run_pytest() {  # run_pytest LABEL FILES...
  local label=$1; shift
  set +e
  "$BIN/python" -m pytest -p no:cacheprovider -c e2e/pytest.ini --rootdir e2e -q "$@" 2>&1 | tee "$WORK/logs/pytest-$label.out"
  local rc=${PIPESTATUS[0]}
  set -e
  RESULTS+="$(printf '%-22s %s' "$label:" "$(grep -E '^[0-9=].*(passed|failed|error|skipped)' "$WORK/logs/pytest-$label.out" | tail -1 | tr -d '=')")"$'\n'
  return "$rc"
}
FAILED=0
phase_start "checks on LocalExecutor (browser, REST, deferral, operations)"
run_pytest "LocalExecutor" e2e/test_browser.py e2e/test_rest.py e2e/test_deferral.py e2e/test_invites_ui.py \
  e2e/test_operations.py || FAILED=1
phase_end

# ---------------------------------------------------------------- 4. CeleryExecutor
phase_start "switch to CeleryExecutor (Redis, 2 workers)"
stop scheduler 40
start redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --daemonize no --dir "$WORK/redis"
export AIRFLOW__CORE__EXECUTOR=CeleryExecutor
for n in 1 2; do
  port_var=W${n}_LOG_PORT
  # each worker: its own name (celery and task instance hostname), log-server port and pid file
  start "w$n" env E2E_WORKER_NAME="celery-w$n" PYTHONPATH="$REPO/e2e" \
    AIRFLOW__CORE__HOSTNAME_CALLABLE=e2e_hostname.worker_hostname \
    AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT="${!port_var}" \
    "$BIN/airflow" celery worker --celery-hostname "w$n@%h" --concurrency 2 --pid "$WORK/w$n.pid"
done
start scheduler "$BIN/airflow" scheduler
watch_components; "$BIN/python" e2e/wait_ready.py --celery-workers 2 --timeout 120
phase_end

phase_start "checks on CeleryExecutor + task logs"
run_pytest "CeleryExecutor + logs" e2e/test_celery.py e2e/test_logs.py || FAILED=1
phase_end

[ "$FAILED" = 0 ] || die "some checks failed"
echo "e2e: all checks passed"
