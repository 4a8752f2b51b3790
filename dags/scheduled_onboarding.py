"""Onboard everyone listed in a CSV file (or a SQL query), every hour, safely re-runnable.

Source: a CSV file (param ``people_file``; default: the Variable ``invites_people_file``) and/or
the rows of ``sql`` run on the Airflow SQL connection ``sql_conn_id``. One row per person, one column
per platform (``rocketchat``, ``vrchat``, ``bungie``, ``playfab``, ``bitrix24``) holding the person's
id there; blank = skip. An optional ``<platform>_group`` column overrides the group for that row.
Other columns (``name``, ``email``...) are carried into the report.

Per platform, one mapped task ``invite_<platform>`` (one map index per group, in pool
``invites_<platform>``) invites all of that group's people in bulk: one look-up per group, then
invites only those who are neither members nor invited. A second run over the same people invites
nobody. The group is the param ``<platform>_group``, else the Variable ``invites_<platform>_group``.

The ``report`` task logs counts per platform and status, who failed and why, and the look-ups and
requests per group; it fails the run if anyone failed.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG, Param, TriggerRule, get_current_context, task

from airflow_invites.onboarding import STATS_KEY, BulkInviteOperator
from airflow_invites.operators.base import OUTCOMES_KEY
from airflow_invites.platforms import PLATFORMS
from airflow_invites.pools import pool_name

PLATFORM_COLUMNS = tuple(PLATFORMS)
STATUSES = ("invited", "already_member", "already_invited", "joined", "would_invite", "failed")

params: dict[str, Param] = {
    "people_file": Param(
        None,
        type=["null", "string"],
        title="People CSV file",
        description="Path of the CSV file on the workers. Empty: the Variable invites_people_file.",
        section="Source",
    ),
    "sql_conn_id": Param(
        None,
        type=["null", "string"],
        title="SQL connection",
        description="Optional: an Airflow SQL connection (Postgres, MySQL, SQLite...) to read people from.",
        section="Source",
    ),
    "sql": Param(
        None,
        type=["null", "string"],
        format="multiline",
        title="SQL query",
        description="Optional: a query returning the same columns as the CSV file.",
        section="Source",
    ),
}
for _name, _spec in PLATFORMS.items():
    _pattern: dict[str, Any] = {"pattern": f"^$|{_spec.group_pattern}"} if _spec.group_pattern else {}
    params[f"{_name}_group"] = Param(
        None,
        type=["null", "string"],
        title=f"{_spec.display}: group",
        description=f"{_spec.group_description} Empty: the Variable invites_{_name}_group.",
        section="Groups",
        **_pattern,
    )
params["message"] = Param(None, type=["null", "string"], maxLength=500, title="Message", section="Options")
params["dry_run"] = Param(
    False,
    type="boolean",
    title="Dry run",
    description="Look up and report; invite nobody.",
    section="Options",
)


# -- reading the people (at run time only) ---------------------------------------------------------


def rows_from_csv(path: str) -> list[dict[str, str]]:
    """The CSV file's rows, column names lower-cased and stripped, values stripped."""
    import csv

    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        return [
            {str(k).strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
            for row in reader
        ]


def rows_from_sql(hook: Any, sql: str) -> list[dict[str, str]]:
    """The query's rows through a common.sql ``DbApiHook`` (NULL -> blank)."""

    def fetch(cursor: Any) -> tuple[list[str], list[Any]]:
        return [str(d[0]).strip().lower() for d in cursor.description], list(cursor.fetchall())

    names, records = hook.run(sql, handler=fetch)
    return [
        {
            name: "" if value is None else str(value).strip()
            for name, value in zip(names, record, strict=False)
        }
        for record in records
    ]


def read_people(params: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """All rows from the file and the query, each with a ``_source`` (file:line or sql:row)."""
    from airflow.sdk import BaseHook, Variable
    from airflow.sdk.exceptions import AirflowFailException

    rows: list[dict[str, Any]] = []
    sources: list[str] = []
    path = params.get("people_file") or Variable.get("invites_people_file", default=None)
    if path:
        try:
            found = rows_from_csv(str(path))
        except OSError as exc:
            raise AirflowFailException(f"people_file: cannot read {path}: {exc.strerror}") from None
        rows += [{**row, "_source": f"{path}:{n}"} for n, row in enumerate(found, start=2)]
        sources.append(f"{path} ({len(found)} rows)")
    if params.get("sql_conn_id") and params.get("sql"):
        from airflow.providers.common.sql.hooks.sql import DbApiHook

        hook = BaseHook.get_connection(params["sql_conn_id"]).get_hook()
        if not isinstance(hook, DbApiHook):
            raise AirflowFailException(f"sql_conn_id: {params['sql_conn_id']} is not a SQL connection")
        found = rows_from_sql(hook, params["sql"])
        rows += [{**row, "_source": f"sql:{n}"} for n, row in enumerate(found, start=1)]
        sources.append(f"sql on {params['sql_conn_id']} ({len(found)} rows)")
    if not sources:
        raise AirflowFailException(
            "no people source: set people_file (or the Variable invites_people_file), or sql_conn_id and sql"
        )
    if rows and not any(column in rows[0] for column in PLATFORM_COLUMNS):
        raise AirflowFailException(
            f"the people source has none of the platform columns {list(PLATFORM_COLUMNS)}: "
            f"found {sorted(k for k in rows[0] if k != '_source')}"
        )
    return rows, sources


def person_label(row: dict[str, Any]) -> str:
    """How the report names a person: name and e-mail if given, else where the row came from."""
    name, email = row.get("name", ""), row.get("email", "")
    if name and email:
        return f"{name} <{email}>"
    return name or email or row.get("_source", "?")


@task
def load_people() -> dict[str, Any]:
    """Read the people from the file and/or the query (at run time)."""
    rows, sources = read_people(dict(get_current_context()["params"]))
    print(f"read {len(rows)} people from {', '.join(sources)}")
    return {"people": rows, "sources": sources}


@task
def plan(platform: str, source: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{group, users}]`` for one platform: ids checked by its hook, de-duplicated, per group.

    Rejected ids (bad shape, no group, platform not installed) go to XCom key ``rejected``;
    which rows each id came from to key ``who``.
    """
    from airflow.sdk import Variable

    from airflow_invites.triggers.membership import hook_from_path

    context = get_current_context()
    ti = context["ti"]
    spec = PLATFORMS[platform]
    wanted = [(row, row[platform]) for row in source["people"] if row.get(platform)]
    rejected: list[dict[str, str]] = []
    who: dict[str, list[str]] = {}
    batches: dict[str, list[str]] = {}
    try:
        hook = hook_from_path(spec.hook, spec.default_conn_id) if wanted else None
    except Exception as exc:
        why = f"platform not available: {type(exc).__name__}: {exc}"
        rejected = [_rejection(platform, uid, row, why) for row, uid in wanted]
        wanted, hook = [], None
    default_group = context["params"].get(f"{platform}_group")
    if wanted and not default_group:
        default_group = Variable.get(f"invites_{platform}_group", default=None)
    for row, raw_id in wanted:
        group = row.get(f"{platform}_group") or default_group
        if not group:
            why = f"no group: set the param {platform}_group or the Variable invites_{platform}_group"
            rejected.append(_rejection(platform, raw_id, row, why))
            continue
        try:
            group_id, user_id = hook.normalize_group(group), hook.normalize_user(raw_id)  # type: ignore[union-attr]
        except Exception as exc:  # InviteInputError: names the field and the expected shape
            rejected.append(_rejection(platform, raw_id, row, str(exc)))
            continue
        who.setdefault(user_id, []).append(person_label(row))
        members = batches.setdefault(group_id, [])
        if user_id not in members:
            members.append(user_id)
    ti.xcom_push(key="rejected", value=rejected)
    ti.xcom_push(key="who", value=who)
    print(
        f"{spec.display}: {sum(len(u) for u in batches.values())} people in {len(batches)} group(s); "
        f"{len(rejected)} rejected before any request"
    )
    return [{"group": group, "users": users} for group, users in batches.items()]


def _rejection(platform: str, user: str, row: dict[str, Any], why: str) -> dict[str, str]:
    return {"platform": platform, "user": user, "person": person_label(row), "detail": why}


@task(trigger_rule=TriggerRule.ALL_DONE)
def report(source: dict[str, Any] | None) -> dict[str, Any]:
    """Counts per platform and status, who failed and why, look-ups per group; fails if anyone failed."""
    from collections import Counter

    from airflow.sdk.exceptions import AirflowFailException

    if not source:
        raise AirflowFailException("no people were read: see the load_people task's log")
    ti = get_current_context()["ti"]
    counts: dict[str, Counter[str]] = {p: Counter() for p in PLATFORMS}
    failures: list[dict[str, str]] = []
    stats: list[dict[str, Any]] = []
    for platform in PLATFORMS:
        batches = ti.xcom_pull(task_ids=f"plan_{platform}") or []
        who = ti.xcom_pull(task_ids=f"plan_{platform}", key="who") or {}
        for rejection in ti.xcom_pull(task_ids=f"plan_{platform}", key="rejected") or []:
            counts[platform]["failed"] += 1
            failures.append(rejection)
        if not batches:
            continue
        indexes = list(range(len(batches)))
        task_id = f"invite_{platform}"
        all_outcomes = ti.xcom_pull(task_ids=task_id, key=OUTCOMES_KEY, map_indexes=indexes)
        stats += [s for s in ti.xcom_pull(task_ids=task_id, key=STATS_KEY, map_indexes=indexes) if s]
        for batch, outcomes in zip(batches, all_outcomes, strict=True):
            seen: set[str] = set()
            whole_batch_failure = ""
            for outcome in outcomes or []:
                if outcome["user"] not in batch["users"]:  # the task failed as a whole
                    whole_batch_failure = outcome.get("detail", "")
                    continue
                seen.add(outcome["user"])
                counts[platform][outcome["status"]] += 1
                if outcome["status"] == "failed":
                    failures.append(_failure(platform, outcome["user"], outcome.get("detail", ""), who))
            for user in batch["users"]:
                if user not in seen:
                    counts[platform]["failed"] += 1
                    why = whole_batch_failure or "no outcome: the task did not finish (see its log)"
                    failures.append(_failure(platform, user, why, who))
    lines = [
        f"## Scheduled onboarding: {len(source['people'])} people from {', '.join(source['sources'])}",
        "",
        "| platform | " + " | ".join(s.replace("_", " ") for s in STATUSES) + " |",
        "|---" * (len(STATUSES) + 1) + "|",
    ]
    for platform, counter in counts.items():
        if counter:
            lines.append(f"| {platform} | " + " | ".join(str(counter[s]) for s in STATUSES) + " |")
    lines += ["", "| platform | group | people | look-ups | requests |", "|---|---|---|---|---|"]
    lines += [
        f"| {s['platform']} | {s['group']} | {s['people']} | {s['lookups']} | {s['requests']} |"
        for s in stats
    ]
    if failures:
        lines += [
            "",
            f"### Failed ({len(failures)})",
            "",
            "| platform | id | person | why |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {f['platform']} | {f['user']} | {f['person']} | {_cell(f['detail'])} |" for f in failures
        ]
    print("\n".join(lines))
    summary = {
        "counts": {p: dict(c) for p, c in counts.items() if c},
        "failed": failures,
        "lookups": stats,
    }
    if failures:
        by_platform = Counter(f["platform"] for f in failures)
        raise AirflowFailException(
            "onboarding failed for " + ", ".join(f"{n} on {p}" for p, n in by_platform.items())
        )
    return summary


def _failure(platform: str, user: str, why: str, who: dict[str, list[str]]) -> dict[str, str]:
    return {"platform": platform, "user": user, "person": "; ".join(who.get(user, [])), "detail": why}


def _cell(text: str) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


with DAG(
    dag_id="scheduled_onboarding",
    schedule="@hourly",
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["invites", "onboarding"],
    params=params,
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
) as dag:
    source: Any = load_people()  # an XComArg at parse time
    summary = report(source)
    for _platform in PLATFORMS:
        batches = plan.override(task_id=f"plan_{_platform}")(_platform, source)
        invite = BulkInviteOperator.partial(
            task_id=f"invite_{_platform}",
            platform=_platform,
            pool=pool_name(_platform),
            message="{{ params.message or '' }}",
            dry_run="{{ params.dry_run }}",
            map_index_template="{{ task.group }}",
        ).expand_kwargs(batches)
        invite >> summary
