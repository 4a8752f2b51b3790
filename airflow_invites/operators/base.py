"""The membership operators: run the one algorithm with a platform's hook, report outcomes to XCom.

``GroupMembershipOperator(platform=..., state="present"|"absent")`` serves every platform (Ansible's
``state``); each platform module adds its invite and remove operators as thin subclasses with
the platform's own options.

A platform asking for a long wait (a throttle hint over ``defer_after`` seconds) does not hold the
worker: the task defers to a ``DateTimeTrigger`` and, woken in the triggerer, runs the algorithm
again from the start (it looks before it writes, so nobody is invited twice). Short hints keep the
HTTP layer's in-process backoff. One try spends at most ``max_deferral`` deferred, in at most
``MAX_DEFERRAL_ROUNDS`` rounds.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseOperator, BaseOperatorLink
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_invites.assets import add_membership_event, membership_alias
from airflow_invites.core.adapter import InviteRequest
from airflow_invites.core.errors import InviteInputError, TransientPlatformError
from airflow_invites.core.membership import RunStats, State, apply_state, parse_bool
from airflow_invites.core.outcome import InviteOutcome, Status, summarize
from airflow_invites.platforms import PLATFORMS

if TYPE_CHECKING:  # hooks (and requests) load when a task runs, not when a DAG file is parsed
    from airflow_invites.core.http import LongWait
    from airflow_invites.hooks.base import InvitesHook

OUTCOMES_KEY = "outcomes"
#: XCom key of the figures of one task (people, look-ups, requests by phase, retries)
STATS_KEY = "stats"
#: the default limit of a remove operator: more removals than this and nobody is removed
DEFAULT_MAX_REMOVALS = 25
#: XCom key of the current try's deferrals (kept across them: Airflow clears XCom per try only)
DEFERRAL_KEY = "deferral"
#: a wait hint longer than this many seconds is waited out in the triggerer, not in the worker
DEFAULT_DEFER_AFTER = 30.0
#: the most one try spends deferred, in total and in rounds
DEFAULT_MAX_DEFERRAL = timedelta(hours=1)
MAX_DEFERRAL_ROUNDS = 20
#: how late the triggerer may wake a deferred task before Airflow fails it (a triggerer backlog)
DEFERRAL_GRACE = timedelta(minutes=10)


@dataclass
class Deferrals:
    """What one try has spent deferred so far; the requests of earlier rounds are added to the stats."""

    rounds: int = 0
    deferred_s: float = 0.0
    since: float | None = None  # epoch seconds of the current deferral
    requests: int = 0
    retries: int = 0
    waited_s: float = 0.0

    @classmethod
    def of(cls, context: Any) -> Deferrals:
        ti = context["ti"]
        stored = ti.xcom_pull(task_ids=ti.task_id, key=DEFERRAL_KEY, map_indexes=ti.map_index)
        return cls(**stored) if isinstance(stored, dict) else cls()

    def resumed(self) -> float:
        """Close the current deferral; returns how long it lasted."""
        spent = max(0.0, time.time() - self.since) if self.since is not None else 0.0
        self.deferred_s += spent
        self.since = None
        return spent


class GroupLink(BaseOperatorLink):
    """Extra link from a membership task to the group's page on its platform."""

    name = "Group"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        return str(getattr(operator, "group_url", "") or "")


class GroupMembershipOperator(BaseOperator):
    """Bring people to a state in a group, idempotently: ``present`` (invited or a member) or ``absent``.

    ``absent`` removes members and withdraws pending invitations; the group's owner and the
    connection's own account are never removed (outcome ``failed``, code ``protected``).

    :param platform: a platform name from ``airflow_invites.platforms.PLATFORMS`` (set by the
        per-platform subclasses)
    :param group: the group's id on the platform (templated)
    :param users: one id or handle (``email:ann@example.com``...), a comma-separated string or a
        list (templated)
    :param state: ``present`` or ``absent`` (templated)
    :param message: invitation text, where the platform takes one (templated)
    :param dry_run: look up and report ``would_invite`` / ``would_remove``; send no write (templated)
    :param conn_id: the connection (default ``<platform>_default``) (templated)
    :param max_removals: with ``absent``: when more people would be removed, nobody is and the task
        fails naming them (None: no limit)
    :param fail_on_failure: fail the task if any person's outcome is ``failed`` (outcomes are
        pushed to XCom key ``outcomes`` first, so a report task still sees them)
    :param skip_if_empty: skip the task (instead of failing on bad input) when ``users`` renders empty
    :param check_trigger_conf: first fail on a trigger-conf key the DAG declares no param for (a typo
        such as ``rocketchat_usr`` would otherwise skip the platform silently)
    :param defer_after: seconds; a platform asking to wait longer defers the task (the worker slot
        is freed) instead of sleeping; 0: never defer (templated). Default: the connection's extra
        ``defer_after``, else 30
    :param max_deferral: the most one try spends deferred in total (a timedelta or seconds; default
        1 hour); a wait past it fails the task (Airflow's retries then apply)
    :param approval_task: the id of an approval task (``airflow_invites.approval``) whose decision this
        task reads before any request: it acts only when approved or when no approval was required

    Emits an asset event ``invites://<platform>/<group>`` (counts in its extra) through the outlet
    alias ``invites:<platform>`` when it succeeds; pass ``outlets=[]`` for none.
    """

    #: the platform's name in ``airflow_invites.platforms.PLATFORMS``
    platform: str
    #: the state a subclass stands for (None: the ``state`` argument decides)
    fixed_state: State | None = None
    template_fields: Sequence[str] = (
        "group",
        "users",
        "message",
        "dry_run_mode",
        "conn_id",
        "state",
        "defer_after",
    )
    operator_extra_links = (GroupLink(),)
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        group: str | int,
        users: str | int | list[str] | list[int],
        platform: str | None = None,
        state: str | None = None,
        message: str | None = None,
        dry_run: bool | str = False,
        conn_id: str | None = None,
        max_removals: int | None = None,
        fail_on_failure: bool = True,
        skip_if_empty: bool = False,
        check_trigger_conf: bool = False,
        defer_after: float | str | None = None,
        max_deferral: timedelta | float = DEFAULT_MAX_DEFERRAL,
        approval_task: str | None = None,
        **kwargs: Any,
    ) -> None:
        named = platform or getattr(type(self), "platform", None)
        if "outlets" not in kwargs and named in PLATFORMS:
            kwargs["outlets"] = [membership_alias(str(named))]
        super().__init__(**kwargs)
        if platform is not None:
            self.platform = platform
        if getattr(self, "platform", None) not in PLATFORMS:
            raise ValueError(
                f"platform: expected one of {list(PLATFORMS)}, got {getattr(self, 'platform', None)!r}"
            )
        if self.fixed_state is not None and state not in (None, self.fixed_state.value):
            raise ValueError(f"state: {type(self).__name__} is always {self.fixed_state.value!r}")
        self.state = state or (self.fixed_state.value if self.fixed_state else State.PRESENT.value)
        self.group = group
        self.users = users
        self.message = message
        self.dry_run_mode = dry_run  # BaseOperator.dry_run is a method
        self.conn_id = conn_id or PLATFORMS[self.platform].default_conn_id
        self.max_removals = max_removals
        self.fail_on_failure = fail_on_failure
        self.skip_if_empty = skip_if_empty
        self.check_trigger_conf = check_trigger_conf
        self.defer_after = defer_after
        self.max_deferral = (
            max_deferral if isinstance(max_deferral, timedelta) else timedelta(seconds=float(max_deferral))
        )
        self.approval_task = approval_task
        self.group_url: str | None = None

    def get_hook(self) -> InvitesHook:
        return PLATFORMS[self.platform].hook_for(self.conn_id)  # type: ignore[no-any-return]

    def invite_request(self) -> InviteRequest:
        """The platform options of an invite; subclasses add theirs to ``extra``."""
        return InviteRequest(message=self.message or None)

    def apply(self, hook: InvitesHook, stats: RunStats, context: Any) -> list[InviteOutcome]:
        """Run the algorithm for this task's people; subclasses change what is applied."""
        self.check_group(hook)
        state = self._state()
        return apply_state(
            hook,
            state,
            self.group,
            self.users,
            request=self.invite_request() if state is State.PRESENT else None,
            dry_run=parse_bool(self.dry_run_mode, "dry_run"),
            max_removals=self.max_removals,
            stats=stats,
        )

    def check_group(self, hook: InvitesHook) -> None:
        """An empty group says where a group comes from, not only that it is missing."""
        if str(self.group or "").strip() not in ("", "None"):
            return
        from airflow_invites.core.errors import InviteInputError

        try:
            hook.normalize_group("")
            expected = PLATFORMS[self.platform].group_description
        except InviteInputError as exc:
            expected = exc.expected
        raise InviteInputError(
            "group",
            f"{expected.rstrip('.')}; it is empty: set the DAG param {self.platform}_group or the Variable "
            f"invites_{self.platform}_group",
            self.group,
        )

    def _state(self) -> State:
        try:
            return State(str(self.state).strip().lower())
        except ValueError:
            from airflow_invites.core.errors import InviteInputError

            raise InviteInputError("state", "'present' or 'absent'", self.state) from None

    def defer_threshold(self, hook: InvitesHook) -> float | None:
        """Seconds of wait above which the task defers (None: never): the argument, else the connection's."""
        given = self.defer_after
        field = "defer_after"
        if given in (None, "", "None"):
            given = hook.extra("defer_after", DEFAULT_DEFER_AFTER)
            field = f"connection {hook.conn_id}: extra defer_after"
        try:
            seconds = float(given) if not isinstance(given, bool) else -1.0  # type: ignore[arg-type]
        except (TypeError, ValueError):
            seconds = -1.0
        if not seconds >= 0:
            raise InviteInputError(field, "seconds (a number >= 0; 0: never defer)", given)
        return seconds or None

    def execute(self, context: Any) -> list[dict[str, Any]]:
        return self._run(context, Deferrals())

    def resume_after_wait(self, context: Any, event: Any = None) -> list[dict[str, Any]]:
        """Woken by the trigger after a long wait: run the algorithm again (it looks before it writes)."""
        deferrals = Deferrals.of(context)
        spent = deferrals.resumed()
        self.log.info(
            "resumed after %.0f s deferred (round %d; %.0f s deferred in this try): looking again before "
            "any write",
            spent,
            deferrals.rounds,
            deferrals.deferred_s,
        )
        return self._run(context, deferrals)

    def _run(self, context: Any, deferrals: Deferrals) -> list[dict[str, Any]]:
        from airflow_invites.core.http import LongWait

        if self.check_trigger_conf:
            from airflow_invites.params import check_conf

            check_conf(context)
        if self.skip_if_empty and self.users in (None, "", [], "None"):
            raise AirflowSkipException("no person given for this platform")
        if self.approval_task:
            self.check_approval(context)
        hook = self.get_hook()
        stats = RunStats()
        long_wait: LongWait | None = None
        try:
            hook.defer_after = self.defer_threshold(hook)
            outcomes = self.apply(hook, stats, context)
        except LongWait as wait:
            long_wait = wait
        except BaseException as exc:  # a timeout (BaseException) too: the report learns why
            self._push_task_failure(context, hook, stats, deferrals, exc)
            raise
        if long_wait is not None:
            self._defer_or_give_up(context, hook, stats, deferrals, long_wait)
        self.report(hook, outcomes, stats, deferrals)
        hook.remember_pace()
        data = [o.to_dict() for o in outcomes]
        context["ti"].xcom_push(key=OUTCOMES_KEY, value=data)
        self.push_stats(context, hook, stats, people=len(outcomes), deferrals=deferrals)
        if outcomes:
            self.group_url = hook.group_url(outcomes[0].group)
        failed = [o for o in outcomes if o.status is Status.FAILED]
        if failed and self.fail_on_failure:
            first = failed[0]
            raise AirflowFailException(
                f"{hook.platform}: {len(failed)} of {len(outcomes)} people failed; first: {first.person}: "
                f"{first.detail}"
            )
        if outcomes and not parse_bool(self.dry_run_mode, "dry_run"):
            statuses = [o.status.value for o in outcomes]
            add_membership_event(context, self, hook.platform, outcomes[0].group, statuses)
        return data

    def check_approval(self, context: Any) -> None:
        """Go on only if the approval task approved (or no approval was required); else touch nobody."""
        from airflow_invites.approval import decided_by, read_decision

        assert self.approval_task
        decision = read_decision(context, self.approval_task)
        if decision is None:
            why = (
                f"no approval decision: the task {self.approval_task} ended without one (failed, timed out "
                "or marked by hand); nobody was touched"
            )
            failure = InviteOutcome(self.platform, str(self.group), "", Status.FAILED, why, "not_approved")
            context["ti"].xcom_push(key=OUTCOMES_KEY, value=[failure.to_dict()])
            raise AirflowFailException(why)
        if not decision.get("approved"):
            raise AirflowSkipException(f"rejected by {decided_by(decision)}: nobody touched")
        if decision.get("required"):
            self.log.info("approved by %s at %s", decided_by(decision), decision.get("at"))

    def _push_task_failure(
        self, context: Any, hook: InvitesHook, stats: RunStats, deferrals: Deferrals, exc: BaseException
    ) -> None:
        failure = InviteOutcome(
            hook.platform,
            str(self.group),
            "",  # the task as a whole, not one person
            Status.FAILED,
            hook.scrubber.scrub(str(exc)) or type(exc).__name__,
            type(exc).__name__,
        )
        context["ti"].xcom_push(key=OUTCOMES_KEY, value=[failure.to_dict()])
        self.push_stats(context, hook, stats, deferrals=deferrals)

    def _defer_or_give_up(
        self, context: Any, hook: InvitesHook, stats: RunStats, deferrals: Deferrals, wait: LongWait
    ) -> NoReturn:
        """Defer until the platform's wait is over (raises ``TaskDeferred``), or fail past the bounds."""
        seconds = max(1.0, float(wait.retry_after or 0)) * random.uniform(1.0, 1.1)  # spread the wake-ups
        budget = self.max_deferral.total_seconds() - deferrals.deferred_s
        if deferrals.rounds >= MAX_DEFERRAL_ROUNDS or seconds > budget:
            why = (
                f"{deferrals.rounds} rounds deferred already"
                if deferrals.rounds >= MAX_DEFERRAL_ROUNDS
                else f"another {seconds:.0f} s would pass the {self.max_deferral.total_seconds():.0f} s one try "
                f"may spend deferred ({deferrals.deferred_s:.0f} s spent)"
            )
            error = TransientPlatformError(
                f"{hook.scrubber.scrub(str(wait))}; gave up: {why}",
                retry_after=wait.retry_after,
                code=wait.code,
            )
            self._push_task_failure(context, hook, stats, deferrals, error)
            raise error
        http = hook.http_if_used()
        deferrals.rounds += 1
        deferrals.since = time.time()
        deferrals.requests += http.requests_sent if http else 0
        deferrals.retries += http.retries if http else 0
        deferrals.waited_s += http.waited if http else 0.0
        context["ti"].xcom_push(key=DEFERRAL_KEY, value=asdict(deferrals))
        wake = datetime.now(timezone.utc) + timedelta(seconds=seconds)
        self.log.warning(
            "%s; deferring %.0f s (round %d): the worker slot is free meanwhile, the triggerer wakes this "
            "task at %s",
            hook.scrubber.scrub(str(wait)),
            seconds,
            deferrals.rounds,
            wake.isoformat(timespec="seconds"),
        )
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        self.defer(
            trigger=DateTimeTrigger(moment=wake),
            method_name="resume_after_wait",
            timeout=timedelta(seconds=seconds) + DEFERRAL_GRACE,
        )
        raise AssertionError("defer() returned")  # it raises TaskDeferred

    def push_stats(
        self,
        context: Any,
        hook: InvitesHook,
        stats: RunStats,
        people: int | None = None,
        deferrals: Deferrals | None = None,
    ) -> None:
        """XCom ``stats``: what this task cost (read by the reports)."""
        context["ti"].xcom_push(key=STATS_KEY, value=task_stats(hook, stats, self.group, people, deferrals))

    def report(
        self,
        hook: InvitesHook,
        outcomes: list[InviteOutcome],
        stats: RunStats,
        deferrals: Deferrals | None = None,
    ) -> None:
        for outcome in outcomes:
            if outcome.status is Status.FAILED:
                self.log.warning("%s", outcome.line())
            else:
                self.log.info("%s", outcome.line())
        figures = task_stats(hook, stats, self.group, len(outcomes), deferrals)
        by_phase = ", ".join(f"{n} {phase}" for phase, n in figures["requests_by_phase"].items())
        self.log.info("%s: %s", hook.platform, summarize(outcomes))
        self.log.info(
            "%s group %s: %d look-up(s) for %d people, %d requests (%s), %d retries",
            hook.platform,
            figures["group"],
            figures["lookups"],
            len(outcomes),
            figures["requests"],
            by_phase or "none",
            figures["retries"],
        )
        if figures["deferrals"]:
            self.log.info(
                "%s group %s: deferred %d time(s), %.0f s in all, waiting for the platform outside the worker",
                hook.platform,
                figures["group"],
                figures["deferrals"],
                figures["deferred_s"],
            )


def task_stats(
    hook: InvitesHook,
    stats: RunStats,
    group: object,
    people: int | None,
    deferrals: Deferrals | None = None,
) -> dict[str, Any]:
    """The figures of one task: people, look-up rounds, handles, requests (by phase; all rounds),
    retries, seconds waited in the worker and deferred outside it."""
    http = hook.http_if_used()
    try:
        shown_group = hook.normalize_group(group)
    except Exception:
        shown_group = str(group)
    earlier = deferrals or Deferrals()
    return {
        "platform": hook.platform,
        "group": shown_group,
        "people": people,
        "lookups": stats.lookups,
        "handles": stats.handles,
        "requests": (http.requests_sent if http else 0) + earlier.requests,
        "requests_by_phase": dict(http.requests_by_phase) if http else {},
        "retries": (http.retries if http else 0) + earlier.retries,
        "waited_s": round((http.waited if http else 0.0) + earlier.waited_s, 1),
        "deferrals": earlier.rounds,
        "deferred_s": round(earlier.deferred_s, 1),
    }


class GroupInviteOperator(GroupMembershipOperator):
    """Invite people into a group, idempotently (``state="present"``). Subclassed per platform."""

    fixed_state = State.PRESENT


class GroupRemoveOperator(GroupMembershipOperator):
    """Remove people from a group, idempotently (``state="absent"``). Subclassed per platform.

    Members are removed and pending invitations withdrawn (outcomes ``removed``,
    ``invite_cancelled``); people already gone are ``already_absent``. ``max_removals`` defaults to
    25: above it nobody is removed and the task fails naming who would have gone.
    """

    fixed_state = State.ABSENT
    ui_color = "#f4e8e8"

    def __init__(self, *, max_removals: int | None = DEFAULT_MAX_REMOVALS, **kwargs: Any) -> None:
        super().__init__(max_removals=max_removals, **kwargs)
