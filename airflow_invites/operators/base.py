"""The invite operator: runs the one algorithm with a platform's hook, reports outcomes to XCom."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, BaseOperatorLink
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_invites.core.adapter import InviteRequest
from airflow_invites.core.invite import invite_people, parse_bool
from airflow_invites.core.outcome import InviteOutcome, Status, summarize
from airflow_invites.platforms import PLATFORMS

if TYPE_CHECKING:  # hooks (and requests) load when a task runs, not when a DAG file is parsed
    from airflow_invites.hooks.base import InvitesHook

OUTCOMES_KEY = "outcomes"


class GroupLink(BaseOperatorLink):
    """Extra link from an invite task to the group's page on its platform."""

    name = "Group"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        return str(getattr(operator, "group_url", "") or "")


class _HookClass:
    """``Operator.hook_class``: the platform's hook class from the registry, imported on first use."""

    def __get__(
        self, instance: GroupInviteOperator | None, owner: type[GroupInviteOperator]
    ) -> type[InvitesHook]:
        platform = instance.platform if instance is not None else owner.platform
        module_path, _, name = PLATFORMS[platform].hook.rpartition(".")
        return getattr(import_module(module_path), name)  # type: ignore[no-any-return]


class GroupInviteOperator(BaseOperator):
    """Invite one person or many into a group, idempotently.

    :param group: the group's id on the platform (templated)
    :param users: one id, a comma-separated string or a list of ids (templated)
    :param message: invitation text, where the platform takes one (templated)
    :param dry_run: look up and report ``would_invite``; send no write
    :param conn_id: the connection (default ``<platform>_default``)
    :param fail_on_failure: fail the task if any person's outcome is ``failed`` (outcomes are
        pushed to XCom key ``outcomes`` first, so a report task still sees them)
    :param skip_if_empty: skip the task (instead of failing on bad input) when ``users`` renders empty
    """

    #: the platform's name in ``airflow_invites.platforms.PLATFORMS``
    platform: str
    hook_class = _HookClass()
    template_fields: Sequence[str] = ("group", "users", "message", "dry_run_mode", "conn_id")
    operator_extra_links = (GroupLink(),)
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        group: str | int,
        users: str | int | list[str] | list[int],
        message: str | None = None,
        dry_run: bool | str = False,
        conn_id: str | None = None,
        fail_on_failure: bool = True,
        skip_if_empty: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.group = group
        self.users = users
        self.message = message
        self.dry_run_mode = dry_run  # BaseOperator.dry_run is a method
        self.conn_id = conn_id or PLATFORMS[self.platform].default_conn_id
        self.fail_on_failure = fail_on_failure
        self.skip_if_empty = skip_if_empty
        self.group_url: str | None = None

    def get_hook(self) -> InvitesHook:
        return self.hook_class(conn_id=self.conn_id)

    def invite_request(self) -> InviteRequest:
        """The platform options of this invite; subclasses add theirs to ``extra``."""
        return InviteRequest(message=self.message or None)

    def execute(self, context: Any) -> list[dict[str, Any]]:
        if self.skip_if_empty and self.users in (None, "", [], "None"):
            raise AirflowSkipException("no person given for this platform")
        hook = self.get_hook()
        try:
            dry_run = parse_bool(self.dry_run_mode, "dry_run")
            outcomes = invite_people(
                hook, self.group, self.users, request=self.invite_request(), dry_run=dry_run
            )
        except Exception as exc:
            # the report task still learns why this platform failed
            failure = InviteOutcome(
                hook.platform,
                str(self.group),
                str(self.users),
                Status.FAILED,
                hook.scrubber.scrub(str(exc)),
                type(exc).__name__,
            )
            context["ti"].xcom_push(key=OUTCOMES_KEY, value=[failure.to_dict()])
            raise
        self.report(hook, outcomes)
        data = [o.to_dict() for o in outcomes]
        context["ti"].xcom_push(key=OUTCOMES_KEY, value=data)
        if outcomes:
            self.group_url = hook.group_url(outcomes[0].group)
        failed = [o for o in outcomes if o.status is Status.FAILED]
        if failed and self.fail_on_failure:
            first = failed[0]
            raise AirflowFailException(
                f"{hook.platform}: {len(failed)} of {len(outcomes)} people failed; first: {first.user}: "
                f"{first.detail}"
            )
        return data

    def report(self, hook: InvitesHook, outcomes: list[InviteOutcome]) -> None:
        for outcome in outcomes:
            if outcome.status is Status.FAILED:
                self.log.warning("%s", outcome.line())
            else:
                self.log.info("%s", outcome.line())
        self.log.info(
            "%s: %s (%d requests, %d retries)",
            hook.platform,
            summarize(outcomes),
            hook.http.requests_sent if "http" in vars(hook) else 0,
            hook.http.retries if "http" in vars(hook) else 0,
        )
