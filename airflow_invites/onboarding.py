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
With ``wait_for_acceptance``, a deferrable ``GroupMembershipSensor`` per platform waits (in the
triggerer) until the person has accepted; the report then also fails the run if someone did not.

``BulkInviteOperator`` is the platform-generic invite task that ``scheduled_onboarding`` maps over
groups: many people per task, one look-up per group, and the look-up count in its log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, TaskGroup, TriggerRule
from airflow.sdk.exceptions import AirflowFailException

from airflow_invites.operators.base import (
    OUTCOMES_KEY,
    GroupInviteOperator,
    GroupMembershipOperator,
)
from airflow_invites.platforms import PLATFORMS
from airflow_invites.pools import pool_name

#: the default order of ``onboard_user`` and the task group
DEFAULT_ORDER: tuple[str, ...] = tuple(PLATFORMS)


def operator_class(platform: str) -> type[GroupMembershipOperator]:
    """The invite operator of ``platform`` (from the registry)."""
    return PLATFORMS[platform].operator_class  # type: ignore[no-any-return]


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
    wait_for_acceptance: bool | str = False,
    acceptance_poll_interval: float | str = 300.0,
    acceptance_timeout: timedelta = timedelta(days=7),
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
    :param wait_for_acceptance: add a deferrable ``wait_<platform>`` sensor after each invite that
        waits until the person is a member; a template (e.g. ``"{{ params.wait_for_acceptance }}"``)
        decides per run (rendering false skips the sensors). False (the default): no sensors at all
    :param acceptance_poll_interval: seconds between look-ups while waiting (templated)
    :param acceptance_timeout: how long to wait for acceptance before the sensor fails
    """
    order = list(platforms or DEFAULT_ORDER)
    unknown = [p for p in order if p not in PLATFORMS]
    if unknown:
        raise ValueError(f"platforms: unknown {unknown}; expected some of {list(PLATFORMS)}")
    with TaskGroup(group_id=group_id) as group:
        previous = None
        invite_tasks = []
        wait_tasks = []
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
            if wait_for_acceptance is not False:
                from airflow_invites.sensors.membership import GroupMembershipSensor

                wait = GroupMembershipSensor(
                    task_id=f"wait_{platform}",
                    platform=platform,
                    group=invite.group,
                    users=invite.users,
                    conn_id=(conn_ids or {}).get(platform),
                    enabled=wait_for_acceptance,
                    poll_interval=acceptance_poll_interval,
                    timeout=acceptance_timeout,
                )
                invite >> wait
                wait_tasks.append(wait)
        report_task = OnboardingReportOperator(
            task_id="report",
            invite_task_ids=[t.task_id for t in invite_tasks],
            wait_task_ids=[t.task_id for t in wait_tasks],
            trigger_rule=TriggerRule.ALL_DONE,
        )
        for upstream in invite_tasks + wait_tasks:
            upstream >> report_task
    return group


class OnboardingReportOperator(BaseOperator):
    """A Markdown table of every platform's outcomes in the log; fails the run if anyone failed.

    :param invite_task_ids: the invite tasks, whose XCom ``outcomes`` it reads
    :param wait_task_ids: the acceptance sensors; one that neither succeeded nor was skipped fails the run
    """

    ui_color = "#f0ede4"

    def __init__(
        self, *, invite_task_ids: list[str], wait_task_ids: list[str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.invite_task_ids = invite_task_ids
        self.wait_task_ids = wait_task_ids or []

    def execute(self, context: Any) -> list[dict[str, Any]]:
        ti = context["ti"]
        rows: list[dict[str, Any]] = []
        lines = ["| platform | group | user | status | detail |", "|---|---|---|---|---|"]
        failed_platforms = []
        for task_id in self.invite_task_ids:
            outcomes = ti.xcom_pull(task_ids=task_id, key=OUTCOMES_KEY) or []
            platform = task_id.rsplit("invite_", 1)[-1]
            if not outcomes:
                lines.append(f"| {platform} | | | skipped | no person given, or the task did not run |")
                continue
            for outcome in outcomes:
                rows.append(outcome)
                detail = str(outcome.get("detail", "")).replace("|", "/")
                lines.append(
                    f"| {outcome['platform']} | {outcome['group']} | {outcome['user']} | {outcome['status']} "
                    f"| {detail} |"
                )
                if outcome["status"] == "failed" and platform not in failed_platforms:
                    failed_platforms.append(platform)
        not_accepted = _acceptance_lines(context, self.wait_task_ids, lines)
        failed_platforms += [p for p in not_accepted if p not in failed_platforms]
        table = "\n".join(lines)
        self.log.info("onboarding report\n%s\n", table)
        if failed_platforms:
            raise AirflowFailException(f"onboarding failed on: {', '.join(failed_platforms)}\n{table}")
        return rows


def _acceptance_lines(context: Any, wait_task_ids: list[str], lines: list[str]) -> list[str]:
    """Append the acceptance sensors' results to ``lines``; return the platforms not accepted."""
    if not wait_task_ids:
        return []
    ti = context["ti"]
    run_id = context["run_id"]
    states = ti.get_task_states(dag_id=ti.dag_id, task_ids=wait_task_ids, run_ids=[run_id]).get(run_id, {})
    lines += ["", "| platform | accepted |", "|---|---|"]
    not_accepted = []
    for task_id in wait_task_ids:
        platform = task_id.rsplit("wait_", 1)[-1]
        state = states.get(task_id)
        if state == "success":
            lines.append(f"| {platform} | yes |")
        elif state in ("skipped", None):
            lines.append(f"| {platform} | not waited for |")
        else:
            lines.append(f"| {platform} | no: the sensor ended {state} (see its log) |")
            not_accepted.append(platform)
    return not_accepted


class BulkInviteOperator(GroupInviteOperator):
    """Invite many people into one group on ``platform``, with any platform's hook (by registry).

    What ``scheduled_onboarding`` maps over (``.partial(platform=...).expand_kwargs([{group, users}])``);
    the figures of each group (look-ups, requests) go to XCom key ``stats``.
    """
