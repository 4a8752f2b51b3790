"""The reusable building block: a TaskGroup that onboards people across chosen platforms.

A company DAG is a few lines::

    from airflow_invites.onboarding import onboarding_task_group

    with DAG("onboard_newcomer", schedule=None, start_date=None):
        onboarding_task_group(
            users={"rocketchat": "{{ params.rc_user }}", "vrchat": "{{ params.vrchat_user }}"},
            groups={"rocketchat": "ByehQjC44FwMeiLbX", "vrchat": "grp_..."},
        )

Platforms run in the order given, one after another; each runs even if an earlier one failed, and a
final ``report`` task shows every platform's outcomes (and fails the run if any platform failed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import TaskGroup, TriggerRule, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from airflow_invites.operators.base import OUTCOMES_KEY, GroupInviteOperator
from airflow_invites.platforms import PLATFORMS
from airflow_invites.pools import pool_name

#: the default order of ``onboard_user`` and the task group
DEFAULT_ORDER: tuple[str, ...] = tuple(PLATFORMS)


def operator_class(platform: str) -> type[GroupInviteOperator]:
    """The invite operator of ``platform`` (imported from the registry's class path)."""
    from importlib import import_module

    module_path, _, name = PLATFORMS[platform].operator.rpartition(".")
    return getattr(import_module(module_path), name)  # type: ignore[no-any-return]


def default_group_template(platform: str) -> str:
    """Jinja for "the group param if set, else the Variable ``invites_<platform>_group``"."""
    return f"{{{{ params.get('{platform}_group') or var.value.get('invites_{platform}_group', '') }}}}"


def onboarding_task_group(
    *,
    users: Mapping[str, Any],
    groups: Mapping[str, Any] | None = None,
    platforms: Sequence[str] | None = None,
    message: str | None = None,
    dry_run: bool | str = False,
    group_id: str = "onboard",
    use_pools: bool = True,
    conn_ids: Mapping[str, str] | None = None,
    operator_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
) -> TaskGroup:
    """Invite people on ``platforms`` in sequence, then report.

    :param users: platform -> one id, a comma-separated string or a list (templated); empty = skip
    :param groups: platform -> group id (templated); default: the Variable ``invites_<platform>_group``
    :param platforms: the order to run in (default: all five, registry order); unknown names fail
    :param message: invitation text where the platform takes one (templated)
    :param dry_run: look up and report, invite nobody (templated)
    :param use_pools: run each platform's task in pool ``invites_<platform>``
    :param conn_ids: platform -> connection id (default ``<platform>_default``)
    :param operator_kwargs: platform -> extra operator arguments (e.g. PlayFab ``role_id``)
    """
    order = list(platforms or DEFAULT_ORDER)
    unknown = [p for p in order if p not in PLATFORMS]
    if unknown:
        raise ValueError(f"platforms: unknown {unknown}; expected some of {list(PLATFORMS)}")
    with TaskGroup(group_id=group_id) as group:
        previous = None
        invite_tasks = []
        for position, platform in enumerate(order):
            extra: dict[str, Any] = dict((operator_kwargs or {}).get(platform, {}))
            if use_pools:
                extra.setdefault("pool", pool_name(platform))
            invite = operator_class(platform)(
                task_id=f"invite_{platform}",
                group=(groups or {}).get(platform) or default_group_template(platform),
                users=users.get(platform, ""),
                message=message,
                dry_run=dry_run,
                conn_id=(conn_ids or {}).get(platform),
                skip_if_empty=True,
                trigger_rule=TriggerRule.ALL_SUCCESS if position == 0 else TriggerRule.ALL_DONE,
                **extra,
            )
            if previous is not None:
                previous >> invite
            previous = invite
            invite_tasks.append(invite)
        report_task = report.override(task_id="report", trigger_rule=TriggerRule.ALL_DONE)(
            [t.task_id for t in invite_tasks]
        )
        for invite in invite_tasks:
            invite >> report_task
    return group


@task
def report(task_ids: list[str]) -> list[dict[str, Any]]:
    """A Markdown table of every platform's outcomes in the log; fails the run if anyone failed."""
    context = get_current_context()
    ti = context["ti"]
    rows: list[dict[str, Any]] = []
    lines = ["| platform | group | user | status | detail |", "|---|---|---|---|---|"]
    failed_platforms = []
    for task_id in task_ids:
        outcomes = ti.xcom_pull(task_ids=task_id, key=OUTCOMES_KEY) or []
        platform = task_id.rsplit("invite_", 1)[-1]
        if not outcomes:
            lines.append(f"| {platform} | | | skipped | no person given, or the task did not run |")
            continue
        for outcome in outcomes:
            rows.append(outcome)
            detail = str(outcome.get("detail", "")).replace("|", "/")
            lines.append(
                f"| {outcome['platform']} | {outcome['group']} | {outcome['user']} | {outcome['status']} | {detail} |"
            )
            if outcome["status"] == "failed" and platform not in failed_platforms:
                failed_platforms.append(platform)
    table = "\n".join(lines)
    print(table)  # the task log shows the table as it is
    if failed_platforms:
        raise AirflowFailException(f"onboarding failed on: {', '.join(failed_platforms)}\n{table}")
    return rows
