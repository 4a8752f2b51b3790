"""``GroupMembershipSensor``: wait until invited people have accepted (are members of the group).

One sensor for every platform: it uses the platform's hook (from the registry) and its ``lookup``.
Deferrable when ``[operators] default_deferrable`` is true (or ``deferrable=True``): after one look-up
in the worker, the waiting happens in the triggerer (``GroupMembershipTrigger``). Otherwise it runs in
``reschedule`` mode: each look-up is a short run of the task, and no worker slot is held in between.
Either way, nobody's days of deciding hold a worker.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, conf
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, AirflowSkipException

from airflow_invites.core.errors import InviteInputError
from airflow_invites.core.membership import as_user_list
from airflow_invites.operators.base import GroupLink, parse_bool
from airflow_invites.platforms import PLATFORMS

#: how long to wait by default: invitations are often accepted within days, not minutes
DEFAULT_TIMEOUT = timedelta(days=7)


class GroupMembershipSensor(BaseSensorOperator):
    """Wait until ``users`` are members of ``group`` on ``platform`` (they accepted the invitation).

    :param platform: a platform name from ``airflow_invites.platforms.PLATFORMS``
    :param group: the group id (templated)
    :param users: one id, a comma-separated string or a list (templated); empty: skip
    :param conn_id: the connection (default ``<platform>_default``) (templated)
    :param poll_interval: seconds between look-ups (templated)
    :param deferrable: wait in the triggerer; False: look up from short task runs in ``reschedule``
        mode (default: ``[operators] default_deferrable``)
    :param wait_while_absent: keep waiting for people who have neither joined nor a pending
        invitation; default False: fail at once, as the invitation was declined or withdrawn
    :param enabled: when it renders false, the task is skipped (templated; e.g. a DAG param)
    :param timeout: seconds (or a timedelta) to wait in total; default 7 days

    Returns (XCom) ``{"status": "member", "platform", "group", "users", "polls"}``.
    """

    template_fields: Sequence[str] = ("group", "users", "conn_id", "poll_interval", "enabled")
    operator_extra_links = (GroupLink(),)
    ui_color = "#e8eef4"

    def __init__(
        self,
        *,
        platform: str,
        group: str | int,
        users: str | int | list[str] | list[int],
        conn_id: str | None = None,
        poll_interval: float | str = 60.0,
        deferrable: bool | None = None,
        wait_while_absent: bool = False,
        enabled: bool | str = True,
        timeout: timedelta | float | None = DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        if platform not in PLATFORMS:
            raise ValueError(f"platform: unknown {platform!r}; expected one of {list(PLATFORMS)}")
        poke = poll_interval if isinstance(poll_interval, (int, float)) else 60.0
        if deferrable is None:
            deferrable = conf.getboolean("operators", "default_deferrable", fallback=False)
        if not deferrable:
            kwargs.setdefault("mode", "reschedule")  # never hold a worker slot for days between looks
        super().__init__(poke_interval=poke, timeout=timeout, **kwargs)
        self.platform = platform
        self.group = group
        self.users = users
        self.conn_id = conn_id or PLATFORMS[platform].default_conn_id
        self.poll_interval = poll_interval
        self.deferrable = deferrable
        self.wait_while_absent = wait_while_absent
        self.enabled = enabled
        self.group_url: str | None = None
        self._normalized: tuple[str, list[str]] | None = None

    @property
    def hook_class_path(self) -> str:
        return PLATFORMS[self.platform].hook

    def _interval(self) -> float:
        try:
            value = float(self.poll_interval)
        except (TypeError, ValueError):
            raise InviteInputError("poll_interval", "seconds (a number > 0)", self.poll_interval) from None
        if value <= 0:
            raise InviteInputError("poll_interval", "seconds (a number > 0)", self.poll_interval)
        return value

    def _hook(self) -> Any:
        from airflow_invites.triggers.membership import hook_from_path

        return hook_from_path(self.hook_class_path, self.conn_id)

    def _targets(self, hook: Any) -> tuple[str, list[str]]:
        """The group and people in the platform's canonical form (validated before any request)."""
        if self._normalized is None:
            group = hook.normalize_group(self.group)
            users = [hook.normalize_user(u) for u in as_user_list(self.users)]
            self._normalized = (group, users)
            self.group_url = hook.group_url(group)
        return self._normalized

    def poke(self, context: Any) -> bool:
        from airflow_invites.triggers.membership import look

        hook = self._hook()
        group, users = self._targets(hook)
        verdict = look(hook, group, users, wait_while_absent=self.wait_while_absent)
        if verdict.failure:
            raise AirflowFailException(f"{self.platform} {group}: {verdict.failure}")
        if not verdict.done:
            self.log.info("%s %s: still waiting for %s", self.platform, group, verdict.waiting)
        return verdict.done

    def execute(self, context: Any) -> dict[str, Any] | None:
        if not parse_bool(self.enabled, "enabled"):
            raise AirflowSkipException("waiting for acceptance is turned off for this run")
        if self.users in (None, "", [], "None"):
            raise AirflowSkipException("no person given for this platform")
        self.poke_interval = self._interval()
        if not self.deferrable:  # reschedule mode: each look-up is a run of this task
            super().execute(context)
            return self._result("member", polls=int(context.get("task_reschedule_count") or 0) + 1)
        if self.poke(context):  # one look-up first: often everyone is already in
            return self._result("member", polls=1)
        from airflow_invites.triggers.membership import GroupMembershipTrigger

        group, users = self._normalized or ("", [])
        self.defer(
            trigger=GroupMembershipTrigger(
                hook_class=self.hook_class_path,
                conn_id=self.conn_id,
                group=group,
                users=users,
                poll_interval=self.poke_interval,
                deadline=time.time() + self.timeout,
                wait_while_absent=self.wait_while_absent,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + 10 * self.poke_interval + 60),
        )
        return None  # not reached: defer raises

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Back from the triggerer: succeed, time out or fail by the event's status."""
        event = event or {"status": "failed", "detail": "the trigger sent no event"}
        status = event.get("status")
        where = f"{self.platform} {event.get('group', self.group)}"
        try:  # this is a new task process: compute the extra link's URL again
            self.group_url = self._hook().group_url(str(event.get("group", self.group)))
        except Exception:  # the link is a convenience; never fail the task for it
            self.group_url = None
        if status == "member":
            self.log.info("%s: %s after %s look-ups", where, event.get("detail"), event.get("polls"))
            return {**event, "platform": self.platform}
        if status == "timeout":
            raise AirflowSensorTimeout(f"{where}: {event.get('detail')}")
        raise AirflowFailException(f"{where}: {event.get('detail')}")

    def _result(self, status: str, polls: int | None) -> dict[str, Any]:
        group, users = self._normalized or (str(self.group), [])
        return {"status": status, "platform": self.platform, "group": group, "users": users, "polls": polls}
