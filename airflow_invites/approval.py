"""Approval before acting: a dry-run preview, a person approves or rejects it, then the real run.

``add_approval`` wires, inside a DAG or task group::

    approval_gate (only when the option is a template) -> preview_<platform>... -> approve -> the real tasks

- ``approval_gate`` renders the option (e.g. ``{{ params.require_approval }}``) and, when it is false,
  skips the previews without running them;
- ``preview_<platform>`` is the platform's own task with ``dry_run=True`` (nobody touched);
- ``approve`` (Airflow's ``ApprovalOperator``) shows the would-invite / would-remove table (Markdown)
  and waits in the ``awaiting_input`` state, holding no worker, until someone answers in the UI's
  Required Actions page (or the response times out: the default is Reject). Its XCom ``decision``
  says who decided and what. On Reject it skips every task after it but the report;
- each real task reads that decision before any request and acts only when approved (or when no
  approval was required): an approval task that failed or was marked by hand lets nobody through.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator

from airflow_invites.core.membership import parse_bool
from airflow_invites.report import cell, task_states

#: XCom key of the approval task's decision: {"required", "approved", "by", "at"}
DECISION_KEY = "decision"
APPROVE_TASK, GATE_TASK = "approve", "approval_gate"
#: how long an approval request waits for an answer before it counts as rejected
DEFAULT_APPROVAL_TIMEOUT = timedelta(days=3)
#: rows of the table shown to the approver (the rest is counted, and in the preview tasks' logs)
MAX_ROWS = 100
_WOULD = {"would_invite": "invite", "would_remove": "remove"}


def preview_task(platform: str) -> str:
    return f"preview_{platform}"


def approval_required(required: object) -> bool:
    """The gate's condition (``ShortCircuitOperator``): the rendered option as a yes/no."""
    return parse_bool(required, "require_approval")


def read_decision(context: Any, approval_task: str) -> dict[str, Any] | None:
    """The decision the approval task recorded in this run (None: it recorded none)."""
    found = context["ti"].xcom_pull(task_ids=approval_task, key=DECISION_KEY, map_indexes=-1)
    return found if isinstance(found, dict) else None


def decided_by(decision: Mapping[str, Any]) -> str:
    return str(decision.get("by") or "nobody (the request timed out)")


class MembershipApprovalOperator(ApprovalOperator):
    """Ask a person to approve the previews' changes; on Reject skip everything after it but ``keep``.

    :param previews: preview task id -> platform (their XCom ``outcomes`` make the table)
    :param mapped_previews: preview task id -> the task whose output it is mapped over (its length
        is the number of map indexes), for mapped previews
    :param keep: task ids never skipped on Reject (the report)
    :param required: when it renders false, approve at once without asking (templated)
    :param response_timeout: how long to wait for an answer; then Reject (default 3 days)
    """

    template_fields = (*ApprovalOperator.template_fields, "required")
    ui_color = "#f6efd9"

    def __init__(
        self,
        *,
        previews: Mapping[str, str],
        mapped_previews: Mapping[str, str] | None = None,
        keep: Sequence[str] = (),
        required: bool | str = True,
        subject: str = "Approve these membership changes",
        response_timeout: timedelta | None = DEFAULT_APPROVAL_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(subject=subject, defaults="Reject", response_timeout=response_timeout, **kwargs)
        self.previews = dict(previews)
        self.mapped_previews = dict(mapped_previews or {})
        self.keep = list(keep)
        self.required = required

    def execute(self, context: Any) -> Any:
        if not approval_required(self.required):
            decision = {"required": False, "approved": True, "by": None, "at": None}
            context["ti"].xcom_push(key=DECISION_KEY, value=decision)
            self.log.info("approval not required for this run: going on")
            return decision
        rows, failed_previews = self.preview_rows(context)
        self.body = approval_body(rows, failed_previews)
        self.log.info("asking for approval:\n%s\n", self.body)
        return super().execute(context)

    def preview_rows(self, context: Any) -> tuple[list[dict[str, Any]], list[str]]:
        """Every preview outcome, and the previews that ended without outcomes (crashed)."""
        from airflow_invites.operators.base import OUTCOMES_KEY

        ti = context["ti"]
        states = task_states(context, list(self.previews))
        rows: list[dict[str, Any]] = []
        failed: list[str] = []
        for task_id, platform in self.previews.items():
            if task_id in self.mapped_previews:
                count = len(ti.xcom_pull(task_ids=self.mapped_previews[task_id]) or [])
                found = ti.xcom_pull(task_ids=task_id, key=OUTCOMES_KEY, map_indexes=list(range(count)))
                outcomes = [o for batch in found or [] for o in batch or []]
            else:
                outcomes = ti.xcom_pull(task_ids=task_id, key=OUTCOMES_KEY, map_indexes=-1) or []
            if not outcomes and states.get(task_id) not in ("skipped", "success"):
                failed.append(f"{platform} ({task_id} ended {states.get(task_id) or 'without running'})")
            rows += outcomes
        return rows, failed

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        result = HITLOperator.execute_complete(self, context=context, event=event)
        chosen = result["chosen_options"][0]
        user = result.get("responded_by_user") or {}
        at = result.get("responded_at")
        decision = {
            "required": True,
            "approved": chosen == self.APPROVE,
            "by": user.get("name") or user.get("id"),
            "at": at.isoformat() if hasattr(at, "isoformat") else at,
        }
        context["ti"].xcom_push(key=DECISION_KEY, value=decision)  # before any skip (no return value then)
        if decision["approved"]:
            self.log.info("approved by %s: going on", decided_by(decision))
            return result
        skipped = [
            t for t in context["task"].get_flat_relatives(upstream=False) if t.task_id not in self.keep
        ]
        self.log.info(
            "rejected by %s: nobody is touched; skipping %d task(s)", decided_by(decision), len(skipped)
        )
        self.skip(ti=context["ti"], tasks=skipped)
        return result


def approval_body(rows: Sequence[Mapping[str, Any]], failed_previews: Sequence[str] = ()) -> str:
    """The Markdown shown to the approver: counts, then one row per person (removals first)."""
    counts = Counter(row["status"] for row in rows)
    changes = [f"{counts[s]} would be {v}d" for s, v in _WOULD.items() if counts[s]]
    others = [f"{n} {s.replace('_', ' ')}" for s, n in sorted(counts.items()) if s not in _WOULD]
    lines = [
        "**"
        + ("; ".join(changes) or "nobody would be changed")
        + "**"
        + (f" ({', '.join(others)})" if others else "")
        + ". Nobody is touched unless you approve; a dry run found this:",
        "",
    ]
    if failed_previews:
        lines += [
            f"**The preview failed on {', '.join(failed_previews)}**: see its log before approving.",
            "",
        ]
    order = {"would_remove": 0, "failed": 1, "would_invite": 2}
    shown = sorted(rows, key=lambda r: order.get(r["status"], 3))
    lines += ["| platform | group | person | would | detail |", "|---|---|---|---|---|"]
    for row in shown[:MAX_ROWS]:
        person = row.get("handle") or row["user"] or "(the whole task)"
        if row.get("handle") and row["user"] != row["handle"]:
            person = f"{row['handle']} ({row['user']})"
        would = _WOULD.get(row["status"], row["status"].replace("_", " "))
        detail = "" if row["status"] in _WOULD else row.get("detail", "")  # not "dry run: no request sent"
        lines.append(
            f"| {cell(row['platform'])} | {cell(row['group'])} | {cell(person)} | {cell(would)} | {cell(detail)} |"
        )
    if len(shown) > MAX_ROWS:
        lines += ["", f"... and {len(shown) - MAX_ROWS} more (see the preview tasks' logs)."]
    return "\n".join(lines) + "\n"


def add_approval(
    *,
    required: bool | str,
    previews: Mapping[Any, str],
    keep: Sequence[str],
    mapped_previews: Mapping[str, str] | None = None,
    timeout: timedelta | None = DEFAULT_APPROVAL_TIMEOUT,
    notifiers: Sequence[Any] | None = None,
    subject: str = "Approve these membership changes",
    **kwargs: Any,
) -> MembershipApprovalOperator:
    """The approval task after ``previews`` (preview task -> platform, already built), with a gate before
    them when ``required`` is a template. Returns the approval task; the caller puts the real tasks
    after it and may extend its ``keep`` (task ids a Reject does not skip)."""
    from airflow.providers.standard.operators.python import ShortCircuitOperator
    from airflow.sdk import TriggerRule

    approve = MembershipApprovalOperator(
        task_id=APPROVE_TASK,
        previews={t.task_id: p for t, p in previews.items()},
        mapped_previews=mapped_previews,
        keep=keep,
        required=required,
        subject=subject,
        response_timeout=timeout,
        notifiers=list(notifiers or []),
        trigger_rule=TriggerRule.ALL_DONE,  # a crashed preview is shown to the approver, not hidden
        **kwargs,
    )
    upstream = list(previews)
    for preview in upstream:
        preview >> approve
    if isinstance(required, str):
        gate = ShortCircuitOperator(
            task_id=GATE_TASK,
            python_callable=approval_required,
            op_kwargs={"required": required},
            ignore_downstream_trigger_rules=False,  # skips the previews only; approve runs and lets the rest go
        )
        gate >> (upstream or approve)
    return approve
