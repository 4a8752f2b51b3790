"""Pools that hold each platform's rate limit across DAG runs: ``invites_<platform>``; and the watch
that says so when a task waits for a pool that is missing (or busy).

Create them once per deployment (the pool file holds every platform)::

    python -m airflow_invites.pools > pools.json && airflow pools import pools.json

A task whose pool does not exist is never started: Airflow keeps it ``scheduled`` and only the
scheduler's log says why. A task cannot look pools up (Airflow 3 gives tasks no pool API and no
database), so the task groups add ``watch_pools``, a sensor in the default pool that reads the states
of this run's pooled tasks and fails, naming the pools and how to create them, when one of them has
been waiting ``pool_wait`` seconds for a slot (a missing pool, or one whose slots all stayed busy).
It runs in reschedule mode (no worker held between its looks) and stops once every pool has let a
task through.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow.sdk import BaseSensorOperator

from airflow_invites.platforms import PLATFORMS

#: concurrent invite tasks per platform, across all DAG runs
DEFAULT_SLOTS = 2
#: how long a task may wait for a pool slot before the watch fails (a deployment may set the
#: Variable ``invites_pool_wait_seconds``)
DEFAULT_POOL_WAIT = 600
POOL_WAIT_TEMPLATE = f"{{{{ var.value.get('invites_pool_wait_seconds', {DEFAULT_POOL_WAIT}) }}}}"
WATCH_TASK = "watch_pools"
#: the store key of when each task was first seen waiting
SINCE_KEY = "scheduled_since"
#: states of a task that has not been given a slot yet (None: its upstream has not finished)
NOT_STARTED = (None, "none", "scheduled")


def pool_name(platform: str) -> str:
    return f"invites_{platform}"


def pools_json(slots: int = DEFAULT_SLOTS) -> dict[str, dict[str, object]]:
    return {
        pool_name(name): {
            "slots": slots,
            "description": f"{spec.display} invites: shares the platform's rate limit across DAG runs",
            "include_deferred": False,  # a task deferred on a long throttle frees its slot
        }
        for name, spec in PLATFORMS.items()
    }


HOW_TO_CREATE = (
    "create the pools: python -m airflow_invites.pools > pools.json && airflow pools import pools.json "
    "(or Admin > Pools in the UI)"
)


@dataclass
class PoolVerdict:
    """What one look at the states says: who waits since when, who waited too long, whether to stop."""

    since: dict[str, float]
    stuck: dict[str, float] = field(default_factory=dict)  # state key -> seconds waited
    done: bool = False


def judge_pools(
    states: Mapping[str, str | None],
    watched: Mapping[str, str],
    since: Mapping[str, float],
    now: float,
    pool_wait: float,
) -> PoolVerdict:
    """Judge the states of the watched tasks (``task_id`` or ``task_id_<map index>`` -> state).

    A task in ``scheduled`` waits for a slot since it was first seen so; past ``pool_wait`` it is
    stuck. The watch is done when every pool has had a task started (it exists and has slots), or
    when no watched task can still start.
    """
    waiting: dict[str, float] = {}
    proven: set[str] = set()
    pending: set[str] = set()
    for key, state in states.items():
        task_id = _task_of(key, watched)
        if task_id is None:
            continue
        pool = watched[task_id]
        if state == "scheduled":
            waiting[key] = since.get(key, now)
        elif state not in NOT_STARTED and state not in ("skipped", "upstream_failed", "removed"):
            proven.add(pool)  # queued, running, deferred, success, failed...: the pool let it through
        if state in NOT_STARTED:
            pending.add(pool)
    stuck = {key: now - t for key, t in waiting.items() if now - t >= pool_wait}
    done = not stuck and (set(watched.values()) <= proven or not pending - proven)
    return PoolVerdict(since=waiting, stuck=stuck, done=done)


def _task_of(key: str, watched: Mapping[str, str]) -> str | None:
    if key in watched:
        return key
    base, _, index = key.rpartition("_")
    return base if index.isdigit() and base in watched else None


def in_dag_test() -> bool:
    """True under ``airflow dags test`` / ``dag.test()``, which run every task at once, ignoring pools."""
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:
        return False
    return type(getattr(task_runner, "SUPERVISOR_COMMS", None)).__name__ == "InProcessSupervisorComms"


class PoolWatchSensor(BaseSensorOperator):
    """Fail, naming the pools, when a task of this run waits longer than ``pool_wait`` for a pool slot.

    :param watched: task id -> pool of the tasks to watch (a mapped task's indexes are watched too)
    :param pool_wait: seconds a task may wait in ``scheduled`` (templated)
    """

    template_fields = ("pool_wait",)
    ui_color = "#eeeeee"

    def __init__(
        self,
        *,
        watched: Mapping[str, str],
        pool_wait: float | str = POOL_WAIT_TEMPLATE,
        poke_interval: float = 30,
        **kwargs: Any,
    ) -> None:
        from datetime import timedelta

        kwargs.setdefault("timeout", timedelta(days=7))
        kwargs.setdefault("max_wait", timedelta(minutes=5))
        super().__init__(mode="reschedule", poke_interval=poke_interval, exponential_backoff=True, **kwargs)
        self.watched = dict(watched)
        self.pool_wait = pool_wait

    def poke(self, context: Any) -> bool:
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_invites.core.errors import InviteInputError

        if in_dag_test():
            self.log.info("dags test runs every task at once and ignores pools: nothing to watch")
            return True
        try:
            pool_wait = float(self.pool_wait)
        except (TypeError, ValueError):
            raise InviteInputError("pool_wait", "seconds (a number)", self.pool_wait) from None
        ti = context["ti"]
        found = ti.get_task_states(dag_id=ti.dag_id, task_ids=list(self.watched), run_ids=[context["run_id"]])
        states = found.get(context["run_id"], {})
        store = context["task_state_store"]
        verdict = judge_pools(states, self.watched, store.get(SINCE_KEY) or {}, time.time(), pool_wait)
        if verdict.since:
            store.set(SINCE_KEY, verdict.since)
        if verdict.stuck:
            pools = sorted({self.watched[_task_of(k, self.watched) or k] for k in verdict.stuck})
            waited = ", ".join(f"{k} ({s / 60:.0f} min)" for k, s in sorted(verdict.stuck.items()))
            raise AirflowFailException(
                f"waiting for a slot in pool(s) {', '.join(pools)} longer than {pool_wait:.0f} s: {waited}. "
                f"The pool does not exist, or all its slots stayed busy. To {HOW_TO_CREATE}; the tasks "
                "start as soon as it exists."
            )
        if verdict.since:
            self.log.info("waiting for a pool slot: %s", ", ".join(sorted(verdict.since)))
        return verdict.done


if __name__ == "__main__":
    print(json.dumps(pools_json(), indent=2))
