"""``RocketChatNotifier``: Airflow notifications posted to a Rocket.Chat room.

Through the provider's Rocket.Chat hook and connection (``chat.postMessage``). Use it as a task's
``on_failure_callback`` / ``on_success_callback`` or in an approval task's ``notifiers``; DAG-level
callbacks run in the DAG processor instead (and fail under ``airflow dags test``).

A notification is best effort: with no room configured nothing is sent and the task log says so;
a refusal or an outage is logged, never raised (an approval request still waits for its answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseNotifier

#: the room: the run's ``notify_room`` param, else the Variable ``invites_notify_room``
DEFAULT_ROOM = "{{ params.get('notify_room') or var.value.get('invites_notify_room', '') }}"


class RocketChatNotifier(BaseNotifier):
    """Post ``text`` to ``room`` on Rocket.Chat.

    :param text: the message (templated; Rocket.Chat renders Markdown)
    :param room: a room id, ``#channel`` or ``@username`` (templated); empty: nothing is sent.
        Default: the param ``notify_room``, else the Variable ``invites_notify_room``
    :param conn_id: the Rocket.Chat connection (templated)
    :param approval_link: in an approval task, append the link to its Required Actions page
        (needs ``[api] base_url``)
    """

    template_fields: Sequence[str] = ("text", "room", "conn_id")

    def __init__(
        self,
        *,
        text: str,
        room: str | None = DEFAULT_ROOM,
        conn_id: str = "rocketchat_default",
        approval_link: bool = True,
    ) -> None:
        super().__init__()
        self.text = text
        self.room = room
        self.conn_id = conn_id
        self.approval_link = approval_link

    def notify(self, context: Any) -> None:
        room = str(self.room or "").strip()
        if room in ("", "None"):
            self.log.info(
                "no Rocket.Chat room configured (param notify_room or Variable invites_notify_room): "
                "notification not sent"
            )
            return
        text = str(self.text).strip() + self._link(context)
        from airflow_invites.hooks.rocketchat import RocketChatHook

        hook = RocketChatHook(conn_id=self.conn_id)
        try:
            message = hook.post_message(room, text)
        except Exception as exc:  # best effort: a chat outage must not fail the task or block an approval
            self.log.warning(
                "Rocket.Chat notification to %s not sent: %s", room, hook.scrubber.scrub(str(exc))
            )
            return
        self.log.info("Rocket.Chat notification posted to %s (message %s)", room, message.get("_id"))

    def _link(self, context: Any) -> str:
        from airflow.providers.standard.operators.hitl import HITLOperator

        if not self.approval_link or not isinstance(context.get("task"), HITLOperator):
            return ""
        try:
            return f"\nAnswer in Airflow: {HITLOperator.generate_link_to_ui_from_context(context=context)}"
        except ValueError:  # no [api] base_url
            return ""


def approval_needed(what: str) -> RocketChatNotifier:
    """ "Approval needed: <what> ..." for an approval task's ``notifiers`` (no personal data)."""
    return RocketChatNotifier(
        text=f"Approval needed: {what} ({{{{ dag.dag_id }}}}, run {{{{ run_id }}}}): {{{{ task.subject }}}}."
    )


def failed_on(what: str) -> RocketChatNotifier:
    """ "<what> failed on <platforms> ..." for a report task's ``on_failure_callback`` (no personal data)."""
    platforms = "{{ (ti.xcom_pull(task_ids=task.task_id, key='failed_platforms') or ['(see the report)']) | join(', ') }}"
    return RocketChatNotifier(
        text=f"{what} failed on {platforms} ({{{{ dag.dag_id }}}}, run {{{{ run_id }}}})."
    )
