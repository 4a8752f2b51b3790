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

from airflow.sdk import DAG, Param, TriggerRule

from airflow_invites.bulk import BulkReportOperator, LoadPeopleOperator, PlanInvitesOperator
from airflow_invites.onboarding import BulkInviteOperator
from airflow_invites.params import dry_run_param, group_param, message_param
from airflow_invites.platforms import PLATFORMS
from airflow_invites.pools import pool_name

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
    params[f"{_name}_group"] = group_param(_spec, section="Groups")
params["message"] = message_param()
params["dry_run"] = dry_run_param()


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
    load = LoadPeopleOperator(task_id="load_people")
    summary = BulkReportOperator(task_id="report", source=load.output, trigger_rule=TriggerRule.ALL_DONE)
    for _platform in PLATFORMS:
        plan = PlanInvitesOperator(task_id=f"plan_{_platform}", platform=_platform, source=load.output)
        invite = BulkInviteOperator.partial(
            task_id=f"invite_{_platform}",
            platform=_platform,
            pool=pool_name(_platform),
            message="{{ params.message or '' }}",
            dry_run="{{ params.dry_run }}",
            map_index_template="{{ task.group }}",
        ).expand_kwargs(plan.output)
        invite >> summary
