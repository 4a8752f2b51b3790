"""The membership operators: run the one algorithm with a platform's hook, report outcomes to XCom.

``GroupMembershipOperator(platform=..., state="present"|"absent")`` serves every platform (Ansible's
``state``); each platform module adds its invite and remove operators as thin subclasses with
the platform's own options.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, BaseOperatorLink
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_invites.core.adapter import InviteRequest
from airflow_invites.core.membership import RunStats, State, apply_state, parse_bool
from airflow_invites.core.outcome import InviteOutcome, Status, summarize
from airflow_invites.platforms import PLATFORMS

if TYPE_CHECKING:  # hooks (and requests) load when a task runs, not when a DAG file is parsed
    from airflow_invites.hooks.base import InvitesHook

OUTCOMES_KEY = "outcomes"
#: XCom key of the figures of one task (people, look-ups, requests by phase, retries)
STATS_KEY = "stats"
#: the default limit of a remove operator: more removals than this and nobody is removed
DEFAULT_MAX_REMOVALS = 25


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
    """

    #: the platform's name in ``airflow_invites.platforms.PLATFORMS``
    platform: str
    #: the state a subclass stands for (None: the ``state`` argument decides)
    fixed_state: State | None = None
    template_fields: Sequence[str] = ("group", "users", "message", "dry_run_mode", "conn_id", "state")
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
        **kwargs: Any,
    ) -> None:
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

    def execute(self, context: Any) -> list[dict[str, Any]]:
        if self.check_trigger_conf:
            from airflow_invites.params import check_conf

            check_conf(context)
        if self.skip_if_empty and self.users in (None, "", [], "None"):
            raise AirflowSkipException("no person given for this platform")
        hook = self.get_hook()
        stats = RunStats()
        try:
            outcomes = self.apply(hook, stats, context)
        except BaseException as exc:  # a timeout (BaseException) too: the report learns why
            failure = InviteOutcome(
                hook.platform,
                str(self.group),
                "",  # the task as a whole, not one person
                Status.FAILED,
                hook.scrubber.scrub(str(exc)) or type(exc).__name__,
                type(exc).__name__,
            )
            context["ti"].xcom_push(key=OUTCOMES_KEY, value=[failure.to_dict()])
            self.push_stats(context, hook, stats)
            raise
        self.report(hook, outcomes, stats)
        hook.remember_pace()
        data = [o.to_dict() for o in outcomes]
        context["ti"].xcom_push(key=OUTCOMES_KEY, value=data)
        self.push_stats(context, hook, stats, people=len(outcomes))
        if outcomes:
            self.group_url = hook.group_url(outcomes[0].group)
        failed = [o for o in outcomes if o.status is Status.FAILED]
        if failed and self.fail_on_failure:
            first = failed[0]
            raise AirflowFailException(
                f"{hook.platform}: {len(failed)} of {len(outcomes)} people failed; first: {first.person}: "
                f"{first.detail}"
            )
        return data

    def push_stats(self, context: Any, hook: InvitesHook, stats: RunStats, people: int | None = None) -> None:
        """XCom ``stats``: what this task cost (read by the bulk report)."""
        context["ti"].xcom_push(key=STATS_KEY, value=task_stats(hook, stats, self.group, people))

    def report(self, hook: InvitesHook, outcomes: list[InviteOutcome], stats: RunStats) -> None:
        for outcome in outcomes:
            if outcome.status is Status.FAILED:
                self.log.warning("%s", outcome.line())
            else:
                self.log.info("%s", outcome.line())
        figures = task_stats(hook, stats, self.group, len(outcomes))
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


def task_stats(hook: InvitesHook, stats: RunStats, group: object, people: int | None) -> dict[str, Any]:
    """The figures of one task: people, look-up rounds, handles, requests (by phase), retries."""
    http = hook.http_if_used()
    try:
        shown_group = hook.normalize_group(group)
    except Exception:
        shown_group = str(group)
    return {
        "platform": hook.platform,
        "group": shown_group,
        "people": people,
        "lookups": stats.lookups,
        "handles": stats.handles,
        "requests": http.requests_sent if http else 0,
        "requests_by_phase": dict(http.requests_by_phase) if http else {},
        "retries": http.retries if http else 0,
        "waited_s": round(http.waited, 1) if http else 0.0,
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
