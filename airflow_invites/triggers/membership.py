"""Wait, in the triggerer, until people are members of a group (they accepted their invitation).

Generic over the platforms: the trigger builds the platform's hook from its class path and runs the
hook's own ``lookup(group, users)`` (with its auth, retries and error table) in a thread, every
``poll_interval`` seconds, until everyone's presence is ``MEMBER``, someone is blocked, or the
deadline passes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_invites.core.adapter import ABSENT, Presence, UserState
from airflow_invites.core.errors import (
    InviteInputError,
    PermanentPlatformError,
    PlatformAuthError,
    TransientPlatformError,
)
from airflow_invites.hooks.base import InvitesHook
from airflow_invites.platforms import load_class

#: ``TriggerEvent`` statuses
MEMBER, TIMEOUT, FAILED = "member", "timeout", "failed"


def hook_from_path(class_path: str, conn_id: str) -> InvitesHook:
    """Instantiate a platform hook from its class path (``airflow_invites.hooks.x.XHook``)."""
    hook_class = load_class(class_path)
    if not issubclass(hook_class, InvitesHook):
        raise InviteInputError("hook_class", "the class path of an InvitesHook subclass", class_path)
    return hook_class(conn_id=conn_id)


@dataclass
class Verdict:
    """What one look-up says about the people we wait for."""

    done: bool
    failure: str | None = None
    waiting: dict[str, str] = field(default_factory=dict)  # person -> presence
    absent: bool = False  # the failure is someone in neither listing (worth a second look)


def judge(states: Mapping[str, UserState], users: Sequence[str], *, wait_while_absent: bool) -> Verdict:
    """Everyone a member -> done; someone blocked (or absent, unless allowed) -> failure; else wait."""
    waiting: dict[str, str] = {}
    for user in users:
        state = states.get(user, ABSENT)
        if state.presence is Presence.MEMBER:
            continue
        if state.presence is Presence.BLOCKED:
            return Verdict(False, f"{user}: blocked in the group ({state.detail or 'no detail'})")
        if state.presence is Presence.ABSENT and not wait_while_absent:
            return Verdict(
                False,
                f"{user}: neither a member nor invited (the invitation was declined, withdrawn or "
                "never sent)",
                absent=True,
            )
        waiting[user] = state.presence.value
    return Verdict(not waiting, waiting=waiting)


def look(hook: InvitesHook, group: str, users: Sequence[str], *, wait_while_absent: bool) -> Verdict:
    """``judge`` of one look-up; "neither a member nor invited" only when a second look-up agrees.

    A look-up reads members and invitations in separate requests: someone who accepts between the
    two shows in neither, so one look-up alone cannot tell an acceptance from a withdrawal.
    """
    verdict = judge(hook.lookup(group, users), users, wait_while_absent=wait_while_absent)
    if verdict.absent:
        verdict = judge(hook.lookup(group, users), users, wait_while_absent=wait_while_absent)
    return verdict


class GroupMembershipTrigger(BaseTrigger):
    """Poll ``hook.lookup(group, users)`` until all ``users`` are members of ``group``.

    :param hook_class: class path of the platform's hook
    :param conn_id: the platform connection
    :param group: the group id, already normalized by the hook
    :param users: the people's ids, already normalized by the hook
    :param poll_interval: seconds between look-ups
    :param deadline: epoch seconds after which a ``timeout`` event is sent (None: no deadline)
    :param wait_while_absent: keep waiting for people with no pending invitation
    """

    def __init__(
        self,
        *,
        hook_class: str,
        conn_id: str,
        group: str,
        users: list[str],
        poll_interval: float = 60.0,
        deadline: float | None = None,
        wait_while_absent: bool = False,
    ) -> None:
        super().__init__()
        self.hook_class = hook_class
        self.conn_id = conn_id
        self.group = group
        self.users = list(users)
        self.poll_interval = float(poll_interval)
        self.deadline = deadline
        self.wait_while_absent = wait_while_absent

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "hook_class": self.hook_class,
                "conn_id": self.conn_id,
                "group": self.group,
                "users": self.users,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "wait_while_absent": self.wait_while_absent,
            },
        )

    def _event(self, status: str, polls: int, detail: str = "", **extra: Any) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "group": self.group,
                "users": self.users,
                "polls": polls,
                "detail": detail,
                **extra,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            hook = await asyncio.to_thread(hook_from_path, self.hook_class, self.conn_id)
        except (ImportError, AttributeError, InviteInputError) as exc:
            yield self._event(FAILED, 0, f"cannot build the hook {self.hook_class}: {exc}")
            return
        polls = 0
        waiting: dict[str, str] = dict.fromkeys(self.users, "not looked up yet")
        while True:
            polls += 1
            try:
                verdict = await asyncio.to_thread(
                    look, hook, self.group, self.users, wait_while_absent=self.wait_while_absent
                )
            except TransientPlatformError as exc:
                self.log.warning("look-up %d failed for now, will poll again: %s", polls, exc)
            except (PermanentPlatformError, PlatformAuthError, InviteInputError) as exc:
                yield self._event(FAILED, polls, hook.scrubber.scrub(str(exc)))
                return
            else:
                if verdict.failure:
                    yield self._event(FAILED, polls, verdict.failure)
                    return
                if verdict.done:
                    yield self._event(MEMBER, polls, f"all {len(self.users)} are members")
                    return
                waiting = verdict.waiting
                self.log.info("%s: look-up %d: still waiting for %s", hook.platform, polls, waiting)
            if self.deadline is not None and time.time() + self.poll_interval > self.deadline:
                remaining = max(0.0, self.deadline - time.time())
                if remaining <= 0:
                    yield self._event(TIMEOUT, polls, f"not accepted before the deadline: {waiting}")
                    return
                await asyncio.sleep(remaining)
                self.deadline = time.time()  # one last look-up, then time out
                continue
            await asyncio.sleep(self.poll_interval)
