"""Pools that hold each platform's rate limit across DAG runs: ``invites_<platform>``.

``python -m airflow_invites.pools > pools.json && airflow pools import pools.json``
"""

from __future__ import annotations

import json

from airflow_invites.platforms import PLATFORMS

#: concurrent invite tasks per platform, across all DAG runs
DEFAULT_SLOTS = 2


def pool_name(platform: str) -> str:
    return f"invites_{platform}"


def pools_json(slots: int = DEFAULT_SLOTS) -> dict[str, dict[str, object]]:
    return {
        pool_name(name): {
            "slots": slots,
            "description": f"{spec.display} invites: shares the platform's rate limit across DAG runs",
            "include_deferred": False,
        }
        for name, spec in PLATFORMS.items()
    }


if __name__ == "__main__":
    print(json.dumps(pools_json(), indent=2))
