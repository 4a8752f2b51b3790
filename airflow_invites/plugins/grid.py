"""The grid: people x platforms, each cell the outcomes of the newest run in which that pair appears.

Pure logic over what the tasks pushed to XCom (key ``outcomes``: a list of dicts with ``platform``,
``group``, ``user``, ``status``, ``detail``, ``code`` and, when the person was given by handle,
``handle``). A person is their ``handle`` if present, else their ``user`` id. Values that are not such
lists are counted as unreadable and left out; nothing here raises on odd data.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airflow_invites.platforms import PLATFORMS
from airflow_invites.plugins.statuses import style_of

#: the XCom key every membership task pushes its outcomes under
OUTCOMES_KEY = "outcomes"


@dataclass(frozen=True)
class RunRef:
    """A Dag run the grid read; ``rank`` 0 is the newest."""

    rank: int
    dag_id: str
    run_id: str
    run_after: datetime | None = None
    state: str | None = None


@dataclass(frozen=True)
class Outcome:
    person: str
    platform: str
    user: str
    handle: str | None
    group: str
    status: str
    detail: str
    code: str | None
    run: RunRef
    task_id: str
    map_index: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "person": self.person,
            "platform": self.platform,
            "user": self.user,
            "handle": self.handle,
            "group": self.group,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            "dag_id": self.run.dag_id,
            "run_id": self.run.run_id,
            "task_id": self.task_id,
            "map_index": self.map_index,
        }


@dataclass
class Cell:
    """One person on one platform: every outcome of the newest run that has one (one per group)."""

    outcomes: list[Outcome]

    @property
    def run(self) -> RunRef:
        return self.outcomes[0].run

    @property
    def primary(self) -> Outcome:
        """The outcome the cell shows: failures first, then changes, dry runs, no-ops."""
        return min(self.outcomes, key=lambda o: (style_of(o.status).rank, o.group, o.task_id, o.map_index))


@dataclass
class Grid:
    runs: list[RunRef] = field(default_factory=list)
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    #: XCom values or items that were not outcome lists / dicts (left out)
    unreadable: int = 0

    def add(self, run: RunRef, task_id: str, map_index: int, value: Any) -> None:
        """Fold one XCom value in. Any order of calls gives the same grid (the newer run wins by
        rank); newest first is the fast one: older records are then skipped before being built."""
        items = _as_list(value)
        if items is None:
            self.unreadable += 1
            return
        for item in items:
            key = _key(item)
            if key is None:
                self.unreadable += 1
                continue
            cell = self.cells.get(key)
            if cell is not None and cell.run.rank < run.rank:
                continue
            outcome = _outcome(item, key, run, task_id, map_index)
            if cell is None or run.rank < cell.run.rank:
                self.cells[key] = Cell([outcome])
            else:
                cell.outcomes.append(outcome)

    @property
    def people(self) -> list[str]:
        return sorted({person for person, _ in self.cells}, key=lambda p: (p.casefold(), p))

    @property
    def platforms(self) -> list[str]:
        seen = {platform for _, platform in self.cells}
        known = [p for p in PLATFORMS if p in seen]
        return known + sorted(seen - set(known))

    def row(self, person: str, platforms: list[str]) -> dict[str, Cell]:
        return {p: c for p in platforms if (c := self.cells.get((person, p))) is not None}

    def status_counts(self) -> Counter[str]:
        """How many cells show each status."""
        return Counter(cell.primary.status for cell in self.cells.values())

    def to_dict(self) -> dict[str, Any]:
        platforms = self.platforms
        return {
            "runs": [
                {
                    "dag_id": r.dag_id,
                    "run_id": r.run_id,
                    "run_after": r.run_after.isoformat() if r.run_after else None,
                    "state": r.state,
                }
                for r in self.runs
            ],
            "platforms": platforms,
            "people": [
                {
                    "person": person,
                    "cells": {
                        platform: {
                            "status": cell.primary.status,
                            "outcomes": [o.to_dict() for o in cell.outcomes],
                        }
                        for platform, cell in self.row(person, platforms).items()
                    },
                }
                for person in self.people
            ],
            "unreadable": self.unreadable,
        }


def _as_list(value: Any) -> list[Any] | None:
    if isinstance(value, (str, bytes)):  # stored as serialized JSON text by some paths
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, list) else None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _key(item: Any) -> tuple[str, str] | None:
    """(person, platform) of one outcome record, or None if it is not one."""
    if not isinstance(item, dict) or not item.get("status"):
        return None
    person, platform = item.get("handle") or item.get("user"), item.get("platform")
    if not person or not platform:
        return None
    return str(person), str(platform)


def _outcome(
    item: dict[str, Any], key: tuple[str, str], run: RunRef, task_id: str, map_index: int
) -> Outcome:
    code = item.get("code")
    return Outcome(
        person=key[0],
        platform=key[1],
        user=_text(item.get("user")),
        handle=_text(item.get("handle")) or None,
        group=_text(item.get("group")),
        status=_text(item.get("status")),
        detail=_text(item.get("detail")),
        code=None if code is None else str(code),
        run=run,
        task_id=task_id,
        map_index=map_index,
    )
