"""Offboard one person across platforms, in sequence, from the Airflow UI's trigger form.

The form is ``onboard_user``'s: an ``email`` and per platform ``<platform>_user`` (an id or a handle;
empty = the e-mail where the platform finds people by e-mail, else skip) and ``<platform>_group``
(empty = the Variable ``invites_<platform>_group``); ``platforms`` and ``dry_run``. On each platform
a member is removed and a pending invitation withdrawn (outcomes ``removed``, ``invite_cancelled``,
``already_absent``); the group's owner and the connection's own account are never removed. The
``report`` task fails the run if any platform failed or nobody was given.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from airflow_invites.notifications.rocketchat import approval_needed, failed_on
from airflow_invites.onboarding import DEFAULT_ORDER, offboarding_task_group
from airflow_invites.params import (
    approval_param,
    dry_run_param,
    notify_room_param,
    person_params,
    person_template,
)
from airflow_invites.platforms import PLATFORMS

params: dict[str, Param] = person_params("remove the person")
params["dry_run"] = dry_run_param("Look up and report; remove nobody.")
params["notify_room"] = notify_room_param()
params["require_approval"] = approval_param("removals")

with DAG(
    dag_id="offboard_user",
    schedule=None,
    catchup=False,
    tags=["invites", "offboarding"],
    params=params,
    doc_md=__doc__,
) as dag:
    offboarding_task_group(
        users={name: person_template(spec) for name, spec in PLATFORMS.items()},
        platforms=list(DEFAULT_ORDER),
        dry_run="{{ params.dry_run }}",
        approval="{{ params.require_approval }}",
        approval_notifiers=[approval_needed("offboarding")],
        report_notifiers=[failed_on("Offboarding")],
    )
