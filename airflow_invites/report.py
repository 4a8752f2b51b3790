"""What the report tasks share: safe Markdown table cells and the states of the tasks they report on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def cell(value: object) -> str:
    """Text safe inside a Markdown table cell: no row or column can be forged from it."""
    text = " ".join(str(value if value is not None else "").split())  # newlines and tabs become spaces
    return text.replace("\\", "\\\\").replace("|", "\\|")


def task_states(context: Any, task_ids: Sequence[str]) -> dict[str, str | None]:
    """task id -> its state in this run (None: never ran), as the metadata database has it."""
    if not task_ids:
        return {}
    ti = context["ti"]
    run_id = context["run_id"]
    found = ti.get_task_states(dag_id=ti.dag_id, task_ids=list(task_ids), run_ids=[run_id]).get(run_id, {})
    return {task_id: found.get(task_id) for task_id in task_ids}
