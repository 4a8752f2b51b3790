"""Keep every group matching the company's roster (a CSV file or a SQL query): when the roster changes,
or every hour.

Source: a CSV file (param ``people_file``; default: the Variable ``invites_people_file``) and/or the
rows of ``sql`` run read-only on the SQL connection ``sql_conn_id``. A file or connection named in
the trigger form must be allowed by the deployment (``[invites] people_folders``,
``[invites] sql_conn_ids``). One row per person, one column per platform (``rocketchat``,
``vrchat``, ``bungie``, ``playfab``, ``bitrix24``) holding the person's id or handle there (e.g.
``email:ann@example.com``); blank = not on that platform. An optional ``<platform>_group`` column
overrides the group for that row. Other columns (``name``, ``email``...) are carried into the report.

Per platform, one mapped task ``sync_<platform>`` (one map index per group, in pool
``invites_<platform>``): ``mode`` ``additive`` (default) invites whoever is missing;
``authoritative`` also removes members and withdraws invitations of people not on the roster, except
the group's owner, the connection's own account and the ``keep`` list; and when a group would lose
more than ``max_removals`` people (an empty or truncated roster looks like that), nobody there is
touched and the task fails naming them. A dry run reports the drift (to add, to remove, protected).

The ``report`` task logs counts per platform and status, the drift, who failed and why, and the
look-ups and requests per group; it fails the run if anyone failed or a task died.

When: with ``[invites] roster_asset`` set (e.g. ``AIRFLOW__INVITES__ROSTER_ASSET=file:///srv/hr/people.csv``),
the DAG runs when that asset gets an event (the DAG or task that writes the roster declares it as
an outlet), else ``@hourly``. With ``require_approval``, a dry-run preview of every group is shown to a
person who approves or rejects it first. Each ``sync_<platform>`` emits the asset event
``invites://<platform>/<group>``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, Asset, Param, conf

from airflow_invites.bulk import roster_sync_tasks
from airflow_invites.notifications.rocketchat import approval_needed, failed_on
from airflow_invites.params import (
    approval_param,
    dry_run_param,
    group_param,
    message_param,
    notify_room_param,
)
from airflow_invites.platforms import PLATFORMS

params: dict[str, Param] = {
    "people_file": Param(
        None,
        type=["null", "string"],
        title="People CSV file",
        description="Path of the CSV file on the workers, in a folder the deployment allows "
        "([invites] people_folders). Empty: the Variable invites_people_file.",
        section="Source",
    ),
    "sql_conn_id": Param(
        None,
        type=["null", "string"],
        title="SQL connection",
        description="Optional: a SQL connection the deployment allows ([invites] sql_conn_ids); "
        "the query runs read-only.",
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
    "mode": Param(
        "additive",
        type="string",
        enum=["additive", "authoritative"],
        title="Mode",
        description="additive: invite the missing. authoritative: also remove whoever is not on the roster.",
        section="Sync",
    ),
    "keep": Param(
        {},
        type="object",
        title="Never remove",
        description='Platform -> ids or handles never removed, e.g. {"rocketchat": ["username:ceo"]}; '
        '"*" applies to every platform.',
        section="Sync",
    ),
    "max_removals": Param(
        10,
        type="integer",
        minimum=0,
        title="Max removals per group",
        description="Above this many removals in one group, nobody there is removed and the run fails "
        "naming who would have gone.",
        section="Sync",
    ),
}
for _name, _spec in PLATFORMS.items():
    params[f"{_name}_group"] = group_param(_spec, section="Groups")
params["message"] = message_param()
params["dry_run"] = dry_run_param("Look up and report the drift; change nothing.")
params["require_approval"] = approval_param("changes")
params["notify_room"] = notify_room_param()

#: the roster's asset (a deployment setting): run when it changes instead of every hour
ROSTER_ASSET = str(conf.get("invites", "roster_asset", fallback="") or "").strip()


with DAG(
    dag_id="scheduled_onboarding",
    schedule=[Asset(ROSTER_ASSET)] if ROSTER_ASSET else "@hourly",
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["invites", "onboarding"],
    params=params,
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
) as dag:
    roster_sync_tasks(
        approval="{{ params.require_approval }}",
        approval_notifiers=[approval_needed("roster sync")],
        report_notifiers=[failed_on("Roster sync")],
    )
