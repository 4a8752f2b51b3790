"""What the view reads from Airflow's metadata DB, in two queries: the recent runs, then their outcomes.

Which Dags: ``[invites] ui_dag_ids`` (comma-separated; default ``onboard_user, scheduled_onboarding,
offboard_user``) plus every Dag tagged ``[invites] ui_dag_tag`` (default ``invites``; empty: none).
How far back: ``[invites] ui_max_runs`` runs with outcomes (default 50). Of those Dags, a user sees
only the ones whose runs, task instances and XComs the auth manager lets them read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.configuration import conf
from airflow.models.dag import DagModel, DagTag
from airflow.models.dagrun import DagRun
from airflow.models.xcom import XComModel
from sqlalchemy import exists, select

from airflow_invites.plugins.grid import OUTCOMES_KEY, Grid, RunRef

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
    from sqlalchemy.orm import Session

DEFAULT_DAG_IDS = ("onboard_user", "scheduled_onboarding", "offboard_user")
DEFAULT_TAG = "invites"
DEFAULT_MAX_RUNS = 50
#: the most runs one page reads, whatever the config or the request asks
MAX_RUNS_CAP = 500
#: what a user must be allowed to read on a Dag to see it here: the Dag, its runs, tasks and XComs
READ_ENTITIES = (None, DagAccessEntity.RUN, DagAccessEntity.TASK_INSTANCE, DagAccessEntity.XCOM)


@dataclass(frozen=True)
class ViewSettings:
    dag_ids: tuple[str, ...] = DEFAULT_DAG_IDS
    tag: str = DEFAULT_TAG
    max_runs: int = DEFAULT_MAX_RUNS

    @classmethod
    def from_config(cls) -> ViewSettings:
        """The ``[invites]`` section of the Airflow config (read on each request: cheap)."""
        ids = conf.get("invites", "ui_dag_ids", fallback=",".join(DEFAULT_DAG_IDS)) or ""
        tag = conf.get("invites", "ui_dag_tag", fallback=DEFAULT_TAG) or ""
        max_runs = conf.getint("invites", "ui_max_runs", fallback=DEFAULT_MAX_RUNS)
        return cls(
            dag_ids=tuple(d.strip() for d in ids.split(",") if d.strip()),
            tag=tag.strip(),
            max_runs=max(1, min(max_runs, MAX_RUNS_CAP)),
        )


def shown_dag_ids(session: Session, settings: ViewSettings) -> list[str]:
    ids = set(settings.dag_ids)
    if settings.tag:
        ids.update(session.scalars(select(DagTag.dag_id).where(DagTag.name == settings.tag)))
    return sorted(ids)


def readable_dag_ids(user: BaseUser, dag_ids: Iterable[str], session: Session) -> list[str]:
    """The Dags of ``dag_ids`` whose runs, task instances and XComs ``user`` may read."""
    wanted = list(dag_ids)
    teams = DagModel.get_dag_id_to_team_name_mapping(wanted, session=session)
    auth = get_auth_manager()
    readable = []
    for dag_id in wanted:
        details = DagDetails(id=dag_id, team_name=teams.get(dag_id))
        requests: list[Any] = [
            {"method": "GET", "access_entity": entity, "details": details} for entity in READ_ENTITIES
        ]
        if auth.batch_is_authorized_dag(requests, user=user):
            readable.append(dag_id)
    return readable


def load_grid(session: Session, dag_ids: list[str], max_runs: int, run_id: str | None = None) -> Grid:
    """The newest ``max_runs`` runs of ``dag_ids`` with outcomes (or the one run ``run_id``), folded."""
    if not dag_ids:
        return Grid()
    runs_query = select(DagRun.id, DagRun.dag_id, DagRun.run_id, DagRun.run_after, DagRun.state).where(
        DagRun.dag_id.in_(dag_ids)
    )
    if run_id is not None:
        runs_query = runs_query.where(DagRun.run_id == run_id)
    else:
        runs_query = runs_query.where(
            exists().where(XComModel.dag_run_id == DagRun.id, XComModel.key == OUTCOMES_KEY)
        )
    runs_query = runs_query.order_by(DagRun.run_after.desc(), DagRun.id.desc()).limit(max_runs)
    refs = {
        row.id: RunRef(rank, row.dag_id, row.run_id, row.run_after, row.state)
        for rank, row in enumerate(session.execute(runs_query))
    }
    grid = Grid(runs=list(refs.values()))
    if not refs:
        return grid
    outcomes_query = (
        select(XComModel.dag_run_id, XComModel.task_id, XComModel.map_index, XComModel.value)
        .join(DagRun, DagRun.id == XComModel.dag_run_id)
        .where(XComModel.dag_run_id.in_(list(refs)), XComModel.key == OUTCOMES_KEY)
        .order_by(DagRun.run_after.desc(), DagRun.id.desc())  # newest first: the grid skips the rest
        .execution_options(yield_per=25)  # one value is a whole group's people: stream them
    )
    for row in session.execute(outcomes_query):
        grid.add(refs[row.dag_run_id], row.task_id, row.map_index, row.value)
    return grid
