"""Onboard one person across platforms, in sequence, from the Airflow UI's trigger form.

The person: an ``email`` (used on the platforms that find people by e-mail) and per platform
``<platform>_user``, an id or a handle (``username:``, ``name:``, ``email:``; empty = the e-mail, else
skip) and ``<platform>_group`` (empty = the Variable ``invites_<platform>_group``); plus
``platforms`` (which to run), ``message`` and ``dry_run``. With ``wait_for_acceptance``, a
deferrable sensor per platform then waits (in the triggerer, polling every
``acceptance_poll_seconds``) until the person has accepted the invitation. The ``report`` task shows
every platform's outcome and fails the run if any platform failed or nobody was given.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from airflow_invites.notifications.rocketchat import approval_needed, failed_on
from airflow_invites.onboarding import DEFAULT_ORDER, onboarding_task_group
from airflow_invites.params import (
    approval_param,
    dry_run_param,
    message_param,
    notify_room_param,
    person_params,
    person_template,
)
from airflow_invites.platforms import PLATFORMS

params: dict[str, Param] = person_params("invite")
params["message"] = message_param()
params["dry_run"] = dry_run_param()
params["notify_room"] = notify_room_param()
params["require_approval"] = approval_param()
params["wait_for_acceptance"] = Param(
    False,
    type="boolean",
    title="Wait for acceptance",
    description="After each invite, wait (without holding a worker) until the person is a member; "
    "up to 7 days.",
    section="Options",
)
params["acceptance_poll_seconds"] = Param(
    300,
    type="integer",
    minimum=1,
    maximum=86400,
    title="Look-up interval while waiting (s)",
    description="Seconds between membership look-ups while waiting for acceptance.",
    section="Options",
)

with DAG(
    dag_id="onboard_user",
    schedule=None,
    catchup=False,
    tags=["invites", "onboarding"],
    params=params,
    doc_md=__doc__,
) as dag:
    onboarding_task_group(
        users={name: person_template(spec) for name, spec in PLATFORMS.items()},
        platforms=list(DEFAULT_ORDER),
        message="{{ params.message or '' }}",
        dry_run="{{ params.dry_run }}",
        wait_for_acceptance="{{ params.wait_for_acceptance and not params.dry_run }}",
        acceptance_poll_interval="{{ params.acceptance_poll_seconds }}",
        approval="{{ params.require_approval }}",
        approval_notifiers=[approval_needed("onboarding")],
        report_notifiers=[failed_on("Onboarding")],
    )
