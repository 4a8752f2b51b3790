"""Bulk membership from a company's roster: read, plan per platform, sync each group, report.

The building blocks of ``dags/scheduled_onboarding.py``, as operators (no TaskFlow at DAG-parse time),
and ``roster_sync_tasks`` which wires them and owns the task ids the report reads:

- ``LoadPeopleOperator`` (``load_people``): rows from a CSV file and/or a SQL query, read when the
  task runs, only from the folders and connections the deployment allows;
- ``PlanMembershipOperator`` (``plan_<platform>``): one platform's ``[{group, users}]``, every id and
  handle checked by its hook (no request), de-duplicated;
- ``RosterSyncOperator`` (``sync_<platform>``, mapped per group): the roster sync of one group;
- ``BulkReportOperator`` (``report``): counts per platform and status, the drift, who failed and
  why, look-ups and requests per group (and time deferred); fails the run when anyone failed or a
  task died.

With ``approval``, a mapped dry-run ``preview_<platform>`` per group runs before ``sync_<platform>``,
and an ``approve`` task shows its table to a person first (see ``airflow_invites.approval``). Each
``sync_<platform>`` emits the asset event ``invites://<platform>/<group>`` (``airflow_invites.assets``).

The trigger form is untrusted: a ``people_file`` it names must lie in a folder listed in
``[invites] people_folders``, a ``sql_conn_id`` must be listed in ``[invites] sql_conn_ids``, and
its query runs in a read-only transaction. Errors never quote a file's content.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, TriggerRule
from airflow.sdk.exceptions import AirflowFailException

from airflow_invites.approval import (
    APPROVE_TASK,
    DEFAULT_APPROVAL_TIMEOUT,
    add_approval,
    decided_by,
    preview_task,
    read_decision,
)
from airflow_invites.assets import membership_alias
from airflow_invites.core.outcome import INVITE_STATUSES, REMOVE_STATUSES, Status
from airflow_invites.operators.base import OUTCOMES_KEY, STATS_KEY, GroupMembershipOperator
from airflow_invites.platforms import PLATFORMS
from airflow_invites.pools import WATCH_TASK, PoolWatchSensor, pool_name
from airflow_invites.report import cell, task_states

PLATFORM_COLUMNS = tuple(PLATFORMS)
DRIFT_KEY = "drift"
#: the task ids of ``roster_sync_tasks``: what the report reads
LOAD_TASK, REPORT_TASK = "load_people", "report"


def plan_task(platform: str) -> str:
    return f"plan_{platform}"


def sync_task(platform: str) -> str:
    return f"sync_{platform}"


class PeopleSourceError(AirflowFailException):
    """The roster could not be read as asked (names the source, never its content)."""


# -- reading the people ------------------------------------------------------------------------------


def rows_from_csv(path: str) -> list[tuple[int, dict[str, str]]]:
    """(line, row) of each record: column names lower-cased and stripped, values stripped.

    ``line`` is where the record starts (quoted fields may span lines).
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                return []
            columns = [name.strip().lower() for name in header]
            seen: dict[str, str] = {}
            for original, name in zip(header, columns, strict=True):
                if name in seen and name:
                    raise PeopleSourceError(
                        f"people_file {path}: columns {seen[name].strip()!r} and {original.strip()!r} differ only "
                        "in case or spaces; keep one"
                    )
                seen[name] = original
            rows: list[tuple[int, dict[str, str]]] = []
            start = reader.line_num + 1
            for record in reader:
                if any(value.strip() for value in record):
                    rows.append(
                        (start, {c: (v or "").strip() for c, v in zip(columns, record, strict=False) if c})
                    )
                start = reader.line_num + 1
            return rows
    except UnicodeDecodeError as exc:
        line = _line_of_byte(path, exc.start)
        raise PeopleSourceError(
            f"people_file {path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} on line {line}); "
            "save the file as UTF-8"
        ) from None
    except csv.Error as exc:
        raise PeopleSourceError(f"people_file {path}: not a readable CSV file ({exc})") from None


def _line_of_byte(path: str, offset: int) -> int:
    with open(path, "rb") as handle:
        return handle.read(offset).count(b"\n") + 1


def rows_from_sql(hook: Any, sql: str, *, conn_type: str = "") -> list[dict[str, str]]:
    """The query's rows through a common.sql ``DbApiHook`` (NULL -> blank), in a read-only session."""

    def fetch(cursor: Any) -> tuple[list[str], list[Any]]:
        return [str(d[0]).strip().lower() for d in cursor.description], list(cursor.fetchall())

    names, records = _read_only(hook, sql, fetch, conn_type)
    return [
        {
            name: "" if value is None else str(value).strip()
            for name, value in zip(names, record, strict=False)
        }
        for record in records
    ]


#: how each database is told that a session only reads (PostgreSQL, MySQL/MariaDB, SQLite)
READ_ONLY_STATEMENTS = {
    "postgres": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "mysql": "SET SESSION TRANSACTION READ ONLY",
    "sqlite": "PRAGMA query_only = ON",
}


def _read_only(hook: Any, sql: str, fetch: Any, conn_type: str) -> Any:
    dialect = _dialect(conn_type or type(hook).__name__)
    statement = READ_ONLY_STATEMENTS.get(dialect)
    if statement is None:
        raise PeopleSourceError(
            f"sql_conn_id: a {dialect or 'database'} connection cannot be made read-only here; "
            f"supported: {', '.join(READ_ONLY_STATEMENTS)}"
        )
    connection = hook.get_conn()
    try:
        cursor = connection.cursor()
        cursor.execute(statement)
        cursor.execute(sql)
        return fetch(cursor)
    finally:
        try:
            connection.rollback()
        finally:
            connection.close()


def _dialect(name: str) -> str:
    """``postgres``, ``mysql`` or ``sqlite`` from a connection type or hook class name, else the name."""
    lowered = name.lower()
    return next((known for known in READ_ONLY_STATEMENTS if known in lowered), lowered)


def allowed(option: str) -> list[str]:
    """A comma-separated ``[invites]`` option of the deployment (never of the trigger form)."""
    from airflow.sdk import conf

    return [
        part.strip()
        for part in str(conf.get("invites", option, fallback="") or "").split(",")
        if part.strip()
    ]


def check_people_file(path: str, *, from_form: bool) -> str:
    """The real path of ``path``; one named in the trigger form must lie in ``[invites] people_folders``."""
    real = os.path.realpath(path)
    if not from_form:
        return real
    folders = [os.path.realpath(folder) for folder in allowed("people_folders")]
    if not any(os.path.commonpath([real, folder]) == folder for folder in folders):
        raise PeopleSourceError(
            f"people_file: {path} is not in a folder this deployment allows for the trigger form "
            "([invites] people_folders" + (f": {', '.join(folders)})" if folders else " is empty)")
        )
    return real


def read_people(params: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """All rows from the file and the query, each with a ``_source`` (file:line or sql:row)."""
    from airflow.sdk import BaseHook, Variable

    rows: list[dict[str, Any]] = []
    sources: list[str] = []
    form_path = params.get("people_file")
    path = form_path or Variable.get("invites_people_file", default=None)
    if path:
        real = check_people_file(str(path), from_form=bool(form_path))
        try:
            found = rows_from_csv(real)
        except OSError as exc:
            raise PeopleSourceError(f"people_file: cannot read {path}: {exc.strerror}") from None
        rows += [{**row, "_source": f"{path}:{line}"} for line, row in found]
        sources.append(f"{path} ({len(found)} rows)")
    conn_id, sql = params.get("sql_conn_id"), params.get("sql")
    if conn_id and sql:
        if conn_id not in allowed("sql_conn_ids"):
            raise PeopleSourceError(
                f"sql_conn_id: {conn_id} is not a connection this deployment allows for the trigger form "
                "([invites] sql_conn_ids)"
            )
        from airflow.providers.common.sql.hooks.sql import DbApiHook

        connection = BaseHook.get_connection(conn_id)
        hook = connection.get_hook()
        if not isinstance(hook, DbApiHook):
            raise PeopleSourceError(f"sql_conn_id: {conn_id} is not a SQL connection")
        found_sql = rows_from_sql(hook, str(sql), conn_type=str(connection.conn_type or ""))
        rows += [{**row, "_source": f"sql:{n}"} for n, row in enumerate(found_sql, start=1)]
        sources.append(f"sql on {conn_id} ({len(found_sql)} rows)")
    if not sources:
        raise PeopleSourceError(
            "no people source: set people_file (or the Variable invites_people_file), or sql_conn_id and sql"
        )
    if rows and not any(column in rows[0] for column in PLATFORM_COLUMNS):
        raise PeopleSourceError(
            f"the people source has none of the platform columns {list(PLATFORM_COLUMNS)} "
            f"({len([k for k in rows[0] if k != '_source'])} other columns)"
        )
    return rows, sources


def person_label(row: Mapping[str, Any]) -> str:
    """How the report names a person: name and e-mail if given, else where the row came from."""
    name, email = row.get("name", ""), row.get("email", "")
    if name and email:
        return f"{name} <{email}>"
    return str(name or email or row.get("_source", "?"))


class LoadPeopleOperator(BaseOperator):
    """Read the people from the file and/or the query named by the run's params (at run time)."""

    def execute(self, context: Any) -> dict[str, Any]:
        rows, sources = read_people(dict(context["params"]))
        self.log.info("read %d people from %s", len(rows), ", ".join(sources))
        return {"people": rows, "sources": sources}


# -- planning one platform ---------------------------------------------------------------------------


class PlanMembershipOperator(BaseOperator):
    """``[{group, users}]`` for one platform: ids and handles checked by its hook, de-duplicated, per group.

    Rejected people (bad shape, no group, platform not available) go to XCom key ``rejected``;
    which rows each person came from to key ``who``. No request is sent.

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

        from airflow_invites.core.membership import parse_person

        platform, spec = self.platform, PLATFORMS[self.platform]
        wanted = [(row, row[platform]) for row in (self.source or {}).get("people", []) if row.get(platform)]
        rejected: list[dict[str, str]] = []
        who: dict[str, list[str]] = {}
        batches: dict[str, dict[str, None]] = {}
        hook: Any = None
        try:
            hook = spec.hook_for() if wanted else None
        except Exception as exc:
            why = f"platform not available: {type(exc).__name__}: {exc}"
            rejected = [_rejection(platform, value, row, why) for row, value in wanted]
            wanted = []
        default_group = context["params"].get(f"{platform}_group")
        if wanted and not default_group:
            default_group = Variable.get(f"invites_{platform}_group", default=None)
        groups: dict[str, str] = {}
        for row, value in wanted:
            group = row.get(f"{platform}_group") or default_group
            if not group:
                why = f"no group: set the param {platform}_group or the Variable invites_{platform}_group"
                rejected.append(_rejection(platform, value, row, why))
                continue
            try:
                if group not in groups:
                    groups[group] = hook.normalize_group(group)
                person = parse_person(hook, value)
            except Exception as exc:  # InviteInputError: names the field and the expected shape
                rejected.append(_rejection(platform, value, row, str(exc)))
                continue
            key = person.user or person.text
            who.setdefault(key, []).append(person_label(row))
            batches.setdefault(groups[group], {})[key] = None
        context["ti"].xcom_push(key="rejected", value=rejected)
        context["ti"].xcom_push(key="who", value=who)
        self.log.info(
            "%s: %d people in %d group(s); %d rejected before any request",
            spec.display,
            sum(len(u) for u in batches.values()),
            len(batches),
            len(rejected),
        )
        return [{"group": group, "users": list(users)} for group, users in batches.items()]


def _rejection(platform: str, user: str, row: Mapping[str, Any], why: str) -> dict[str, str]:
    return {"platform": platform, "user": user, "person": person_label(row), "detail": why}


# -- syncing one group -----------------------------------------------------------------------------------


class RosterSyncOperator(GroupMembershipOperator):
    """Bring one group to its roster: invite the missing; with ``mode="authoritative"`` also remove the rest.

    :param mode: ``additive`` (invite only) or ``authoritative`` (templated)
    :param keep: platform -> people never removed (ids or handles); ``"*"`` applies to every
        platform (templated; a dict or its JSON)
    :param max_removals: above this many removals in the group, nobody is touched and the task
        fails naming them (templated)
    """

    template_fields = (*GroupMembershipOperator.template_fields, "mode", "keep", "max_removals_text")

    def __init__(
        self,
        *,
        mode: str = "additive",
        keep: Any = None,
        max_removals: int | str = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.mode = mode
        self.keep = keep
        self.max_removals_text = max_removals

    def apply(self, hook: Any, stats: Any, context: Any) -> list[Any]:
        from airflow_invites.core.membership import parse_bool

        self.check_group(hook)
        from airflow_invites.core.roster import parse_max_removals, parse_mode, sync_roster

        outcomes, drift = sync_roster(
            hook,
            self.group,
            self.users,
            mode=parse_mode(self.mode),
            keep=keep_for(self.keep, self.platform),
            max_removals=parse_max_removals(self.max_removals_text),
            request=self.invite_request(),
            dry_run=parse_bool(self.dry_run_mode, "dry_run"),
            stats=stats,
        )
        context["ti"].xcom_push(key=DRIFT_KEY, value=drift.to_dict())
        return outcomes


def keep_for(keep: Any, platform: str) -> list[str]:
    """The keep-list entries of ``platform`` (and of ``"*"``) from a dict or its JSON text."""
    import json

    from airflow_invites.core.errors import InviteInputError

    if keep in (None, "", {}, "None"):
        return []
    if isinstance(keep, str):
        try:
            keep = json.loads(keep)
        except ValueError:
            raise InviteInputError(
                "keep", 'an object like {"rocketchat": ["id", "username:ann"]}', keep
            ) from None
    if not isinstance(keep, Mapping) or not all(isinstance(v, list) for v in keep.values()):
        raise InviteInputError(
            "keep", 'an object of platform -> list of ids or handles ("*": every platform)', keep
        )
    return [str(v) for v in (*keep.get("*", []), *keep.get(platform, []))]


# -- the report ----------------------------------------------------------------------------------------


class BulkReportOperator(BaseOperator):
    """Counts per platform and status, the drift, who failed and why, look-ups per group.

    Fails the run when anyone failed, or when a platform that had people produced no outcomes
    (its plan or sync task died, was killed or marked failed).

    :param source: the output of ``LoadPeopleOperator`` (an XComArg)
    :param approval_task: the approval task whose decision it reports (a Reject ends green)
    """

    template_fields = ("source",)

    def __init__(
        self,
        *,
        source: Any,
        platforms: Iterable[str] = PLATFORMS,
        approval_task: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.platforms = list(platforms)
        self.approval_task = approval_task

    def execute(self, context: Any) -> dict[str, Any]:
        source = self.source
        if not source:
            raise AirflowFailException("no people were read: see the load_people task's log")
        ti = context["ti"]
        decision = read_decision(context, self.approval_task) if self.approval_task else None
        if decision and decision.get("required") and not decision.get("approved"):
            self.log.info(
                "membership report\n\n## Roster: %d people\n\nRejected by %s at %s: nobody was touched.\n",
                len(source["people"]),
                decided_by(decision),
                decision.get("at"),
            )
            return {
                "counts": {},
                "failed": [],
                "lookups": [],
                "drift": [],
                "rejected_by": decided_by(decision),
            }
        counts: dict[str, Counter[str]] = {p: Counter() for p in self.platforms}
        failures: list[dict[str, str]] = []
        stats: list[dict[str, Any]] = []
        deferred: list[dict[str, Any]] = []
        drifts: list[dict[str, Any]] = []
        states = task_states(context, [t for p in self.platforms for t in (plan_task(p), sync_task(p))])
        wanted = {p: sum(1 for row in source["people"] if row.get(p)) for p in self.platforms}
        if not any(wanted.values()):
            raise AirflowFailException(
                f"the roster has nobody for any platform: no row has a value in {list(self.platforms)}"
            )
        for platform in self.platforms:
            plan = plan_task(platform)
            if wanted[platform] and states.get(plan) != "success":
                counts[platform]["failed"] += wanted[platform]
                failures.append(_died(platform, plan, states.get(plan)))
                continue
            batches = ti.xcom_pull(task_ids=plan) or []
            who = ti.xcom_pull(task_ids=plan, key="who") or {}
            for rejection in ti.xcom_pull(task_ids=plan, key="rejected") or []:
                counts[platform]["failed"] += 1
                failures.append(rejection)
            if not batches:
                continue
            indexes = list(range(len(batches)))
            task_id = sync_task(platform)
            all_outcomes = ti.xcom_pull(task_ids=task_id, key=OUTCOMES_KEY, map_indexes=indexes)
            figures = [s for s in ti.xcom_pull(task_ids=task_id, key=STATS_KEY, map_indexes=indexes) if s]
            stats += [
                {k: s[k] for k in ("platform", "group", "people", "lookups", "requests")} for s in figures
            ]
            deferred += [
                {k: s[k] for k in ("platform", "group", "deferrals", "deferred_s")}
                for s in figures
                if s.get("deferrals")
            ]
            drifts += [
                {"platform": platform, **d}
                for d in ti.xcom_pull(task_ids=task_id, key=DRIFT_KEY, map_indexes=indexes)
                if d
            ]
            for batch, outcomes in zip(batches, all_outcomes, strict=True):
                _count_batch(platform, batch, outcomes or [], who, counts, failures)
        table = _render(source, counts, stats, drifts, failures)
        if deferred:
            table += "\n\n| platform | group | deferred (times) | deferred (s) |\n|---|---|---|---|\n"
            table += "\n".join(
                f"| {d['platform']} | {cell(d['group'])} | {d['deferrals']} | {d['deferred_s']:.0f} |"
                for d in deferred
            )
        if decision and decision.get("required"):
            table = f"Approved by {cell(decided_by(decision))} at {decision.get('at')}.\n\n{table}"
        self.log.info("membership report\n%s\n", table)
        summary = {
            "counts": {p: dict(c) for p, c in counts.items() if c},
            "failed": failures,
            "lookups": stats,
            "drift": drifts,
        }
        if deferred:
            summary["deferred"] = deferred
        ti.xcom_push(key="failed_platforms", value=sorted({f["platform"] for f in failures}))
        if failures:
            by_platform = Counter(f["platform"] for f in failures)
            raise AirflowFailException(
                "membership sync failed for " + ", ".join(f"{n} on {p}" for p, n in by_platform.items())
            )
        return summary


def _died(platform: str, task_id: str, state: str | None) -> dict[str, str]:
    return {
        "platform": platform,
        "user": "",
        "person": "everyone of this platform",
        "detail": f"{task_id} ended {state or 'without running'}: nobody was handled (see its log)",
    }


def _count_batch(
    platform: str,
    batch: Mapping[str, Any],
    outcomes: list[dict[str, Any]],
    who: Mapping[str, list[str]],
    counts: dict[str, Counter[str]],
    failures: list[dict[str, str]],
) -> None:
    seen: set[str] = set()
    whole_batch_failure = ""
    wanted = set(batch["users"])
    for outcome in outcomes:
        if not outcome["user"]:  # the task failed as a whole
            whole_batch_failure = outcome.get("detail", "")
            continue
        given = outcome.get("handle") or outcome["user"]
        if given in wanted:
            seen.add(given)
        counts[platform][outcome["status"]] += 1  # (or a removal of someone not on the roster)
        if outcome["status"] == "failed":
            failures.append(_failure(platform, given, outcome.get("detail", ""), who))
    for user in batch["users"]:
        if user not in seen:
            counts[platform]["failed"] += 1
            why = whole_batch_failure or "no outcome: the task did not finish (see its log)"
            failures.append(_failure(platform, user, why, who))


def _render(
    source: Mapping[str, Any],
    counts: Mapping[str, Counter[str]],
    stats: list[dict[str, Any]],
    drifts: list[dict[str, Any]],
    failures: list[dict[str, str]],
) -> str:
    removals = [
        s for s in REMOVE_STATUSES if s is not Status.FAILED and any(c[s.value] for c in counts.values())
    ]
    shown = [*INVITE_STATUSES[:-1], *removals, Status.FAILED]
    lines = [
        f"## Roster: {len(source['people'])} people from {cell(', '.join(source['sources']))}",
        "",
        "| platform | " + " | ".join(s.value.replace("_", " ") for s in shown) + " |",
        "|---" * (len(shown) + 1) + "|",
    ]
    for platform, counter in counts.items():
        if counter:
            lines.append(f"| {platform} | " + " | ".join(str(counter[s.value]) for s in shown) + " |")
    lines += ["", "| platform | group | people | look-ups | requests |", "|---|---|---|---|---|"]
    lines += [
        f"| {s['platform']} | {cell(s['group'])} | {s['people']} | {s['lookups']} | {s['requests']} |"
        for s in stats
    ]
    if any(d["to_remove"] or d["protected"] for d in drifts):
        lines += ["", "| platform | group | to add | to remove | protected |", "|---|---|---|---|---|"]
        lines += [
            f"| {d['platform']} | {cell(d['group'])} | {len(d['to_add'])} | "
            f"{cell(', '.join(d['to_remove'])) or 0} | {cell(', '.join(d['protected'])) or 0} |"
            for d in drifts
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
            f"| {f['platform']} | {cell(f['user'])} | {cell(f['person'])} | {cell(f['detail'])} |"
            for f in failures
        ]
    return "\n".join(lines)


def _failure(platform: str, user: str, why: str, who: Mapping[str, list[str]]) -> dict[str, str]:
    return {"platform": platform, "user": user, "person": "; ".join(who.get(user, [])), "detail": why}


# -- wiring -------------------------------------------------------------------------------------------------


def roster_sync_tasks(
    *,
    platforms: Iterable[str] = PLATFORMS,
    mode: str = "{{ params.mode }}",
    keep: str = "{{ params.keep | tojson }}",
    max_removals: str = "{{ params.max_removals }}",
    message: str | None = "{{ params.message or '' }}",
    dry_run: str = "{{ params.dry_run }}",
    use_pools: bool = True,
    approval: bool | str = False,
    approval_timeout: timedelta | None = DEFAULT_APPROVAL_TIMEOUT,
    approval_notifiers: Sequence[Any] | None = None,
    report_notifiers: Sequence[Any] | None = None,
) -> tuple[BaseOperator, BaseOperator]:
    """``load_people`` -> per platform ``plan_<p>`` -> ``sync_<p>`` (mapped per group) -> ``report``.

    Call inside a DAG; returns (load, report). The arguments are templates over the DAG's params by
    default (see ``dags/scheduled_onboarding.py``). ``approval`` (a bool, or a template such as
    ``"{{ params.require_approval }}"``) adds a mapped dry-run ``preview_<p>`` and one ``approve``
    task before the syncs; ``approval_notifiers`` are called when approval is asked,
    ``report_notifiers`` when the report fails.
    """
    names = list(platforms)
    unknown = [p for p in names if p not in PLATFORMS]
    if unknown:
        raise ValueError(f"platforms: unknown {unknown}; expected some of {list(PLATFORMS)}")
    load = LoadPeopleOperator(task_id=LOAD_TASK)
    report = BulkReportOperator(
        task_id=REPORT_TASK,
        source=load.output,
        platforms=names,
        approval_task=APPROVE_TASK if approval is not False else None,
        trigger_rule=TriggerRule.ALL_DONE,
        on_failure_callback=list(report_notifiers or []),
    )

    def sync_for(platform: str, task_id: str, plan: BaseOperator, **fixed: Any) -> Any:
        arguments: dict[str, Any] = {
            "platform": platform,
            "mode": mode,
            "keep": keep,
            "max_removals": max_removals,
            "message": message,
            "dry_run": dry_run,
            "map_index_template": "{{ task.group }}",
            **({"pool": pool_name(platform)} if use_pools else {}),
            **fixed,
        }
        return RosterSyncOperator.partial(task_id=task_id, **arguments).expand_kwargs(plan.output)

    plans = {p: PlanMembershipOperator(task_id=plan_task(p), platform=p, source=load.output) for p in names}
    approve = None
    previews: dict[Any, str] = {}
    if approval is not False:
        previews = {
            sync_for(p, preview_task(p), plans[p], dry_run=True, fail_on_failure=False, outlets=[]): p
            for p in names
        }
        approve = add_approval(
            required=approval,
            previews=previews,
            mapped_previews={preview_task(p): plan_task(p) for p in names},
            keep=[REPORT_TASK],
            timeout=approval_timeout,
            notifiers=approval_notifiers,
            subject="Approve the roster sync",
        )
    for platform, plan in plans.items():
        sync = sync_for(
            platform,
            sync_task(platform),
            plan,
            outlets=[
                membership_alias(platform)
            ],  # a mapped task's outlets are declared here, not in __init__
            **({"approval_task": APPROVE_TASK} if approve is not None else {}),
        )
        if approve is not None:
            approve >> sync
        plan >> report
        sync >> report
    if use_pools:  # says so when a pooled task waits too long (a missing pool): see airflow_invites.pools
        watched = {sync_task(p): pool_name(p) for p in names}
        watched.update({preview_task(p): pool_name(p) for p in names if approve is not None})
        PoolWatchSensor(task_id=WATCH_TASK, watched=watched) >> report
    return load, report
