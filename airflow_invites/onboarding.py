"""The reusable building blocks: task groups that onboard or offboard people across platforms.

A company DAG is a few lines::

    from airflow_invites.onboarding import onboarding_task_group

    with DAG("onboard_newcomer", schedule=None, start_date=None):
        onboarding_task_group(
            users={"rocketchat": "{{ params.rc_user }}", "vrchat": "{{ params.vrchat_user }}"},
            groups={"rocketchat": "ByehQjC44FwMeiLbX", "vrchat": "grp_..."},
        )

Platforms run in the order given, one after another; each runs even if an earlier one failed, and a
final ``report`` task shows every platform's outcomes. The report fails the run when anyone failed,
when a platform's task died without outcomes (a timeout, a killed worker, marked failed by hand),
or when no platform had anyone to act on. ``offboarding_task_group`` is the same with removals.
With ``wait_for_acceptance``, a ``GroupMembershipSensor`` per platform waits (in the triggerer, or
in reschedule mode) until the person has accepted. With ``approval``, a dry-run preview of every
platform is shown to a person who approves or rejects it before anyone is touched (see
``airflow_invites.approval``); a Reject ends the run green with the report saying who rejected it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, TaskGroup, TriggerRule
from airflow.sdk.exceptions import AirflowFailException

from airflow_invites.approval import (
    DEFAULT_APPROVAL_TIMEOUT,
    add_approval,
    decided_by,
    preview_task,
    read_decision,
)
from airflow_invites.core.membership import State
from airflow_invites.operators.base import OUTCOMES_KEY, STATS_KEY
from airflow_invites.params import check_conf, nearest
from airflow_invites.platforms import PLATFORMS
from airflow_invites.pools import WATCH_TASK, PoolWatchSensor, pool_name
from airflow_invites.report import cell, task_states

#: the default order of ``onboard_user`` and the task groups
DEFAULT_ORDER: tuple[str, ...] = tuple(PLATFORMS)


def default_group_template(platform: str) -> str:
    """Jinja for "the group param if set, else the Variable ``invites_<platform>_group``"."""
    return f"{{{{ params.get('{platform}_group') or var.value.get('invites_{platform}_group', '') }}}}"


def check_platform_keys(field: str, mapping: Mapping[str, Any] | None) -> None:
    """Every key of ``mapping`` is a platform name; a typo fails when the DAG is parsed."""
    for key in mapping or {}:
        if key not in PLATFORMS:
            raise ValueError(
                f"{field}: unknown platform {key!r}{nearest(key, list(PLATFORMS))}; known: {list(PLATFORMS)}"
            )


def membership_task_group(
    *,
    state: State,
    users: Mapping[str, Any],
    groups: Mapping[str, Any] | None = None,
    platforms: Sequence[str] | None = None,
    message: str | None = None,
    dry_run: bool | str = False,
    group_id: str,
    use_pools: bool = True,
    conn_ids: Mapping[str, str] | None = None,
    operator_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    max_removals: int | None = None,
    wait_for_acceptance: bool | str = False,
    acceptance_poll_interval: float | str = 300.0,
    acceptance_timeout: timedelta = timedelta(days=7),
    approval: bool | str = False,
    approval_timeout: timedelta | None = DEFAULT_APPROVAL_TIMEOUT,
    approval_notifiers: Sequence[Any] | None = None,
    report_notifiers: Sequence[Any] | None = None,
) -> TaskGroup:
    """One person (or a few) to ``state`` on ``platforms`` in sequence, then a report (see module doc)."""
    order = list(platforms or DEFAULT_ORDER)
    unknown = [p for p in order if p not in PLATFORMS]
    if unknown:
        raise ValueError(f"platforms: unknown {unknown}; expected some of {list(PLATFORMS)}")
    for name, mapping in (
        ("users", users),
        ("groups", groups),
        ("conn_ids", conn_ids),
        ("operator_kwargs", operator_kwargs),
    ):
        check_platform_keys(name, mapping)
    verb = "invite" if state is State.PRESENT else "remove"
    with TaskGroup(group_id=group_id) as group:
        previous: Any = None
        member_tasks: dict[str, str] = {}
        wait_tasks: dict[str, str] = {}
        upstreams: list[BaseOperator] = []

        def member(platform: str, task_id: str, **fixed: Any) -> Any:
            extra: dict[str, Any] = dict((operator_kwargs or {}).get(platform, {}))
            if use_pools:
                extra.setdefault("pool", pool_name(platform))
            if state is State.ABSENT:
                extra.setdefault("max_removals", max_removals)
            spec = PLATFORMS[platform]
            operator = spec.operator_class if state is State.PRESENT else spec.remove_operator_class
            arguments: dict[str, Any] = {
                "group": (groups or {}).get(platform) or default_group_template(platform),
                "users": users.get(platform, ""),
                "message": message,
                "dry_run": dry_run,
                "conn_id": (conn_ids or {}).get(platform),
                "skip_if_empty": True,
                "check_trigger_conf": True,
                **extra,
                **fixed,
            }
            return operator(task_id=task_id, **arguments)

        approve = None
        previews: dict[Any, str] = {}
        if approval is not False:
            previews = {
                member(p, preview_task(p), dry_run=True, fail_on_failure=False, outlets=[]): p for p in order
            }
            approve = add_approval(
                required=approval,
                previews=previews,
                keep=[],
                timeout=approval_timeout,
                notifiers=approval_notifiers,
                subject=f"Approve {'onboarding' if state is State.PRESENT else 'offboarding'}",
            )
            previous = approve
        for position, platform in enumerate(order):
            task = member(
                platform,
                f"{verb}_{platform}",
                # after an approval task, each task reads its decision itself (none recorded: nobody touched)
                trigger_rule=TriggerRule.ALL_SUCCESS
                if position == 0 and approve is None
                else TriggerRule.ALL_DONE,
                approval_task=approve.task_id if approve is not None else None,
            )
            if previous is not None:
                previous >> task
            previous = task
            member_tasks[task.task_id] = platform
            upstreams.append(task)
            if wait_for_acceptance is not False and state is State.PRESENT:
                from airflow_invites.sensors.membership import GroupMembershipSensor

                wait = GroupMembershipSensor(
                    task_id=f"wait_{platform}",
                    platform=platform,
                    group=task.group,
                    users=task.users,
                    conn_id=(conn_ids or {}).get(platform),
                    enabled=wait_for_acceptance,
                    poll_interval=acceptance_poll_interval,
                    timeout=acceptance_timeout,
                )
                task >> wait
                wait_tasks[wait.task_id] = platform
                upstreams.append(wait)
        report_task = MembershipReportOperator(
            task_id="report",
            member_tasks=member_tasks,
            wait_tasks=wait_tasks,
            approval_task=approve.task_id if approve is not None else None,
            trigger_rule=TriggerRule.ALL_DONE,
            on_failure_callback=list(report_notifiers or []),
        )
        if use_pools:  # says so when a pooled task waits too long (a missing pool): see airflow_invites.pools
            pooled = [*previews, *upstreams]
            watched = {t.task_id: t.pool for t in pooled if t.pool != "default_pool"}
            upstreams.append(PoolWatchSensor(task_id=WATCH_TASK, watched=watched))
        for upstream in upstreams:
            upstream >> report_task
        if approve is not None:
            approve.keep = [report_task.task_id]  # a Reject skips the rest; the report says so
    return group


def onboarding_task_group(*, group_id: str = "onboard", **kwargs: Any) -> TaskGroup:
    """Invite people on ``platforms`` in sequence, then report.

    :param users: platform -> one id or handle, a comma-separated string or a list (templated); empty = skip
    :param groups: platform -> group id (templated); default: the Variable ``invites_<platform>_group``
    :param platforms: the order to run in (default: all five, registry order); unknown names fail
    :param message: invitation text where the platform takes one (templated)
    :param dry_run: look up and report, invite nobody (templated)
    :param use_pools: run each platform's task in pool ``invites_<platform>``, with a ``watch_pools``
        task that fails naming a pool a task waited for too long (``airflow_invites.pools``)
    :param conn_ids: platform -> connection id (default ``<platform>_default``)
    :param operator_kwargs: platform -> extra operator arguments (e.g. PlayFab ``role_id``)
    :param wait_for_acceptance: add a deferrable ``wait_<platform>`` sensor after each invite that
        waits until the person is a member; a template (e.g. ``"{{ params.wait_for_acceptance }}"``)
        decides per run (rendering false skips the sensors). False (the default): no sensors at all
    :param acceptance_poll_interval: seconds between look-ups while waiting (templated)
    :param acceptance_timeout: how long to wait for acceptance before the sensor fails
    :param approval: preview every platform (dry run), then wait for a person to approve in the UI's
        Required Actions page before anyone is invited; a template (e.g.
        ``"{{ params.require_approval }}"``) decides per run. Reject: nobody touched, the report says who
    :param approval_timeout: how long the request waits for an answer before it counts as rejected
        (default 3 days)
    :param approval_notifiers: notifiers called when approval is asked (e.g. ``RocketChatNotifier``)
    :param report_notifiers: notifiers called when the report fails (someone failed on a platform)
    """
    return membership_task_group(state=State.PRESENT, group_id=group_id, **kwargs)


def offboarding_task_group(
    *, group_id: str = "offboard", max_removals: int | None = 25, **kwargs: Any
) -> TaskGroup:
    """Remove people from ``platforms`` in sequence (members removed, invitations withdrawn), then report.

    Takes the arguments of ``onboarding_task_group`` but the acceptance ones, plus ``max_removals``
    per platform (default 25: above it nobody is removed there and the task fails naming them).
    """
    return membership_task_group(state=State.ABSENT, group_id=group_id, max_removals=max_removals, **kwargs)


class MembershipReportOperator(BaseOperator):
    """A Markdown table of every platform's outcomes in the log; fails the run if anyone failed.

    A platform whose task neither succeeded nor was skipped (it died, timed out, was marked failed)
    fails the run even without outcomes; so does a run where no platform had anyone to act on.

    :param member_tasks: task id -> platform of the membership tasks, whose XCom ``outcomes`` it reads
    :param wait_tasks: task id -> platform of the acceptance sensors
    :param approval_task: the approval task whose decision it reports (a Reject ends green: nobody
        was touched, as decided)

    XCom ``failed_platforms``: the platforms that failed (for a failure notifier's text).
    """

    ui_color = "#f0ede4"

    def __init__(
        self,
        *,
        member_tasks: Mapping[str, str],
        wait_tasks: Mapping[str, str] | None = None,
        approval_task: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.member_tasks = dict(member_tasks)
        self.wait_tasks = dict(wait_tasks or {})
        self.approval_task = approval_task

    def execute(self, context: Any) -> list[dict[str, Any]]:
        check_conf(context)
        ti = context["ti"]
        decision = read_decision(context, self.approval_task) if self.approval_task else None
        if decision and decision.get("required") and not decision.get("approved"):
            self.log.info(
                "membership report\n\nRejected by %s at %s: nobody was touched on %s.\n",
                decided_by(decision),
                decision.get("at"),
                ", ".join(dict.fromkeys(self.member_tasks.values())),
            )
            return []
        states = task_states(context, [*self.member_tasks, *self.wait_tasks])
        rows: list[dict[str, Any]] = []
        lines = ["| platform | group | person | status | detail |", "|---|---|---|---|---|"]
        if decision and decision.get("required"):
            lines = [f"Approved by {cell(decided_by(decision))} at {decision.get('at')}.", "", *lines]
        failed: list[str] = []
        ran: list[str] = []
        for task_id, platform in self.member_tasks.items():
            state = states.get(task_id)
            outcomes = ti.xcom_pull(task_ids=task_id, key=OUTCOMES_KEY) or []
            if state == "skipped" and not outcomes:
                lines.append(f"| {platform} | | | skipped | no person given |")
                continue
            ran.append(platform)
            if not outcomes:
                lines.append(
                    f"| {platform} | | | failed | the task ended {state or 'without running'} (see its log) |"
                )
                failed.append(platform)
                continue
            for outcome in outcomes:
                rows.append(outcome)
                person = outcome.get("handle") or outcome["user"] or "(the task)"
                if outcome.get("handle") and outcome["user"] != outcome["handle"]:
                    person = f"{outcome['handle']} ({outcome['user']})"
                lines.append(
                    f"| {platform} | {cell(outcome['group'])} | {cell(person)} | {outcome['status']} "
                    f"| {cell(outcome.get('detail', ''))} |"
                )
            if any(o["status"] == "failed" for o in outcomes) or state not in ("success", None):
                failed.append(platform)
        failed += [p for p in _acceptance_lines(states, self.wait_tasks, lines) if p not in failed]
        _deferral_lines(ti, self.member_tasks, lines)
        table = "\n".join(lines)
        self.log.info("membership report\n%s\n", table)
        ti.xcom_push(key="failed_platforms", value=failed)
        if failed:
            raise AirflowFailException(f"failed on: {', '.join(failed)}\n{table}")
        if not ran:
            raise AirflowFailException(
                "no person was given for any platform: nothing was done (check the trigger conf's "
                "<platform>_user fields)\n" + table
            )
        return rows


#: the name of the onboarding report before removals existed
OnboardingReportOperator = MembershipReportOperator


def _deferral_lines(ti: Any, member_tasks: Mapping[str, str], lines: list[str]) -> None:
    """Append how long each platform's task waited for the platform outside the worker (if it did)."""
    deferred = []
    for task_id, platform in member_tasks.items():
        figures = ti.xcom_pull(task_ids=task_id, key=STATS_KEY) or {}
        if figures.get("deferrals"):
            deferred.append(
                f"| {platform} | {figures['deferrals']} | {figures['deferred_s']:.0f} s | {figures['requests']} |"
            )
    if deferred:
        lines += [
            "",
            "| platform | deferred (times) | deferred (time) | requests |",
            "|---|---|---|---|",
            *deferred,
        ]


def _acceptance_lines(
    states: Mapping[str, str | None], wait_tasks: Mapping[str, str], lines: list[str]
) -> list[str]:
    """Append the acceptance sensors' results (only when someone waited); return the platforms not accepted."""
    waited = {
        t: p for t, p in wait_tasks.items() if states.get(t) not in ("skipped", "upstream_failed", None)
    }
    if not waited:
        return []
    lines += ["", "| platform | accepted |", "|---|---|"]
    not_accepted = []
    for task_id, platform in waited.items():
        state = states.get(task_id)
        if state == "success":
            lines.append(f"| {platform} | yes |")
        else:
            lines.append(f"| {platform} | no: the sensor ended {state} (see its log) |")
            not_accepted.append(platform)
    return not_accepted
