"""Bulk onboarding from a company's list of people: read, plan per platform, invite, report.

The building blocks of ``dags/scheduled_onboarding.py``, as operators (no TaskFlow at DAG-parse time):

- ``LoadPeopleOperator``: rows from a CSV file and/or a SQL query (read when the task runs);
- ``PlanInvitesOperator``: one platform's ``[{group, users}]``, ids checked by its hook, de-duplicated;
- ``BulkInviteOperator`` (``airflow_invites.onboarding``): mapped over the plan, one look-up per group;
- ``BulkReportOperator``: counts per platform and status, who failed and why, look-ups per group.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_invites.operators.base import OUTCOMES_KEY, STATS_KEY
from airflow_invites.platforms import PLATFORMS

PLATFORM_COLUMNS = tuple(PLATFORMS)
STATUSES = ("invited", "already_member", "already_invited", "joined", "would_invite", "failed")


# -- reading the people ------------------------------------------------------------------------------


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


class LoadPeopleOperator(BaseOperator):
    """Read the people from the file and/or the query named by the run's params (at run time)."""

    def execute(self, context: Any) -> dict[str, Any]:
        rows, sources = read_people(dict(context["params"]))
        self.log.info("read %d people from %s", len(rows), ", ".join(sources))
        return {"people": rows, "sources": sources}


# -- planning one platform ---------------------------------------------------------------------------


class PlanInvitesOperator(BaseOperator):
    """``[{group, users}]`` for one platform: ids checked by its hook, de-duplicated, per group.

    Rejected ids (bad shape, no group, platform not available) go to XCom key ``rejected``; which
    rows each id came from to key ``who``.

    :param platform: a platform name from the registry
    :param source: the output of ``LoadPeopleOperator`` (an XComArg)
    """

    template_fields = ("source",)

    def __init__(self, *, platform: str, source: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.platform = platform
        self.source = source

    def execute(self, context: Any) -> list[dict[str, Any]]:
        from airflow.sdk import Variable

        from airflow_invites.triggers.membership import hook_from_path

        platform, spec = self.platform, PLATFORMS[self.platform]
        wanted = [(row, row[platform]) for row in (self.source or {}).get("people", []) if row.get(platform)]
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
        context["ti"].xcom_push(key="rejected", value=rejected)
        context["ti"].xcom_push(key="who", value=who)
        self.log.info(
            "%s: %d people in %d group(s); %d rejected before any request",
            spec.display,
            sum(len(u) for u in batches.values()),
            len(batches),
            len(rejected),
        )
        return [{"group": group, "users": users} for group, users in batches.items()]


def _rejection(platform: str, user: str, row: dict[str, Any], why: str) -> dict[str, str]:
    return {"platform": platform, "user": user, "person": person_label(row), "detail": why}


# -- the report ----------------------------------------------------------------------------------------


class BulkReportOperator(BaseOperator):
    """Counts per platform and status, who failed and why, look-ups per group; fails if anyone failed.

    :param source: the output of ``LoadPeopleOperator`` (an XComArg)
    """

    template_fields = ("source",)

    def __init__(self, *, source: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source = source

    def execute(self, context: Any) -> dict[str, Any]:
        source = self.source
        if not source:
            raise AirflowFailException("no people were read: see the load_people task's log")
        ti = context["ti"]
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
            stats += [
                {k: s[k] for k in ("platform", "group", "people", "lookups", "requests")}
                for s in ti.xcom_pull(task_ids=task_id, key=STATS_KEY, map_indexes=indexes)
                if s
            ]
            for batch, outcomes in zip(batches, all_outcomes, strict=True):
                _count_batch(platform, batch, outcomes or [], who, counts, failures)
        self.log.info("onboarding report\n%s\n", _render(source, counts, stats, failures))
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


def _count_batch(
    platform: str,
    batch: dict[str, Any],
    outcomes: list[dict[str, Any]],
    who: dict[str, list[str]],
    counts: dict[str, Counter[str]],
    failures: list[dict[str, str]],
) -> None:
    seen: set[str] = set()
    whole_batch_failure = ""
    for outcome in outcomes:
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


def _render(
    source: dict[str, Any],
    counts: dict[str, Counter[str]],
    stats: list[dict[str, Any]],
    failures: list[dict[str, str]],
) -> str:
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
    return "\n".join(lines)


def _failure(platform: str, user: str, why: str, who: dict[str, list[str]]) -> dict[str, str]:
    return {"platform": platform, "user": user, "person": "; ".join(who.get(user, [])), "detail": why}


def _cell(text: str) -> str:
    return str(text).replace("|", "/").replace("\n", " ")
