"""make bench: our hooks beside each platform's official client, hidden ceilings, requests per
person, rate limits, parse cost, scale.

Runs the sandbox as its own process (one per platform for the peer comparison) with 20 ms latency
per request and prints Markdown tables; writes benchmarks/results/latest.json, docs/performance.md,
docs/images/peers.svg and docs/images/scale.svg.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW_HOME", str(REPO / ".airflow-bench"))

from airflow_invites.platforms import PLATFORMS as REGISTRY  # noqa: E402
from benchmarks import parse_cost, report  # noqa: E402
from benchmarks.peers import compare  # noqa: E402
from benchmarks.sandbox_process import SandboxProcess  # noqa: E402

LATENCY_MS = 20
PLATFORMS = ("rocketchat", "bitrix24", "playfab", "bungie", "vrchat")


@dataclass(frozen=True)
class Limit:
    """A platform's documented rate limit as the sandbox enforces it (requests)."""

    rate: float  # sustained requests per second; 0 = none for our bot
    burst: int  # requests allowed at once
    window_s: float = 0.0  # fixed window (Bungie: 250 per 10 s) instead of a bucket

    def allowed(self, seconds: float) -> float:
        if self.rate <= 0:
            return math.inf
        if self.window_s:
            return self.burst * math.ceil(seconds / self.window_s)
        return self.burst + self.rate * seconds


LIMITS = {
    "rocketchat": Limit(0, 0),  # the bot role bypasses Rocket.Chat's limiter
    "bitrix24": Limit(2.0, 50),
    "playfab": Limit(100.0, 1000),
    "bungie": Limit(
        25.0, 0
    ),  # 25/s averaged over 10 s: the sustained ceiling (the sandbox counts 250 per 10 s)
    "vrchat": Limit(10.0, 120),
}
#: rate-limit runs: (label, platform, people, connection extras); about 20 s of work at each limit
RATE_RUNS: tuple[tuple[str, str, int, dict[str, Any]], ...] = (
    ("rocketchat", "rocketchat", 5000, {}),
    ("bitrix24", "bitrix24", 5000, {}),
    ("playfab", "playfab", 3000, {}),
    ("bungie", "bungie", 500, {}),
    ("vrchat (adaptive pacing from 2/s)", "vrchat", 40, {}),
    ("vrchat (paced at the sandbox's 10/s)", "vrchat", 300, {"max_requests_per_second": 10, "burst": 120}),
)


class XComSink:
    """Stands in for the task instance: keeps what the operator pushes."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.values[key] = value


def set_connection(sandbox: SandboxProcess, platform: str, **extra: Any) -> None:
    sandbox.set_connection(platform, f"{platform}_default", **extra)


def run_operator(sandbox: SandboxProcess, platform: str, group: str, people: list[str]) -> dict[str, Any]:

    operator = REGISTRY[platform].operator_class(task_id=f"bench_{platform}", group=group, users=people)
    sink = XComSink()
    before = sandbox.request_count(platform)
    started = time.perf_counter()
    failure = ""
    try:
        operator.execute({"ti": sink})
    except Exception as exc:  # a throttle that reached the task would show here
        failure = f"{type(exc).__name__}: {exc}"[:200]
    wall = time.perf_counter() - started
    requests = sandbox.request_count(platform) - before
    outcomes = sink.values.get("outcomes", [])
    done = sum(
        1 for o in outcomes if o["status"] in ("invited", "already_member", "already_invited", "joined")
    )
    return {"wall_s": wall, "requests": requests, "done": done, "failure": failure}


def bench_bulk(sandbox: SandboxProcess, platforms: list[str], people: int) -> list[dict[str, Any]]:
    """1,000 new people with our operator; limits and client pacing off, 20 ms latency."""
    sandbox.reset()
    sandbox.limits("*", 0)
    sandbox.faults("*", rate=0, latency_ms=LATENCY_MS)
    rows = []
    for platform in platforms:
        set_connection(sandbox, platform, max_requests_per_second=0)
        group = sandbox.env()[platform]["group"]
        ours = timed(
            f"bulk ours {platform}",
            lambda p=platform, g=group: run_operator(sandbox, p, g, sandbox.people(p, people)),
        )
        rows.append(
            {
                "platform": platform,
                "people": people,
                "ours_requests_per_person": ours["requests"] / people,
                "ours_wall_s": ours["wall_s"],
                "ours_ok": ours["done"],
                "failure": ours["failure"],
            }
        )
    return rows


#: the biggest group each platform allows (Bungie clans: 100 members; PlayFab groups: 1,000)
BIG_GROUP = {"rocketchat": 50_000, "vrchat": 50_000, "bitrix24": 50_000, "bungie": 100, "playfab": 1000}


def bench_lookup(sandbox: SandboxProcess, platform: str) -> list[dict[str, Any]]:
    """A big group: 3 people to invite (per-person checks pay) and 1,000 (a full listing pays)."""
    rows = []
    for people in (3, 600):
        sandbox.reset()
        sandbox.limits("*", 0)
        sandbox.faults("*", rate=0, latency_ms=LATENCY_MS)
        set_connection(sandbox, platform, max_requests_per_second=0)
        group = sandbox.env()[platform]["group"]
        room = BIG_GROUP[platform] - len(sandbox.people(platform, 1, group=group)) - 10
        while room > 0:
            room -= len(sandbox.people(platform, min(room, 20_000), group=group))
        before = sandbox.request_count(platform)
        ours = run_operator(sandbox, platform, group, sandbox.people(platform, people))
        log = sandbox.requests(platform, since=before)
        writes = sum(1 for r in log if r["method"] == "POST" and "invite" in r["path"].lower())
        rows.append(
            {
                "platform": platform,
                "group_size": BIG_GROUP[platform],
                "people": people,
                "requests": ours["requests"],
                "lookup_requests": ours["requests"] - writes,
                "wall_s": ours["wall_s"],
            }
        )
    return rows


def bench_rate(
    sandbox: SandboxProcess, label: str, platform: str, people: int, extra: dict[str, Any]
) -> dict[str, Any]:
    """At the documented limit (scale 1), with our default client pacing (or the given extras)."""
    sandbox.reset()
    sandbox.limits("*", 1)
    sandbox.faults("*", rate=0, latency_ms=LATENCY_MS)
    set_connection(sandbox, platform, **extra)
    group = sandbox.env()[platform]["group"]
    people_ids = sandbox.people(platform, people)
    before = sandbox.request_count(platform)
    ours = run_operator(sandbox, platform, group, people_ids)
    log = sandbox.requests(platform, since=before)
    throttled = sum(1 for r in log if r["status"] in (429, 503))
    limit = LIMITS[platform]
    allowed = limit.allowed(ours["wall_s"])
    return {
        "platform": label,
        "people": people,
        "wall_s": ours["wall_s"],
        "invites_per_s": ours["done"] / ours["wall_s"],
        "requests_per_s": ours["requests"] / ours["wall_s"],
        "fraction_of_ceiling": None if math.isinf(allowed) else ours["requests"] / allowed,
        "throttle_replies": throttled,
        "throttles_reaching_failure": 1 if ours["failure"] else 0,
        "failure": ours["failure"],
    }


def bench_scale(sandbox: SandboxProcess, platform: str, sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        sandbox.reset()
        sandbox.limits("*", 0)
        sandbox.faults("*", rate=0, latency_ms=LATENCY_MS)
        set_connection(sandbox, platform, max_requests_per_second=0)
        group = sandbox.env()[platform]["group"]
        ours = run_operator(sandbox, platform, group, sandbox.people(platform, size))
        rows.append(
            {"platform": platform, "people": size, "wall_s": ours["wall_s"], "requests": ours["requests"]}
        )
    return rows


def timed(label: str, action: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    print(f"... {label}", file=sys.stderr, flush=True)
    result = action()
    print(f"    {label}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--platforms", default=",".join(PLATFORMS), help="comma-separated (default: all)")
    parser.add_argument(
        "--no-docs", action="store_true", help="print only; leave docs/performance.md as it is"
    )
    parser.add_argument("--no-peers", action="store_true", help="leave out the official clients")
    args = parser.parse_args()
    chosen = args.platforms.split(",")
    started = time.perf_counter()
    results: dict[str, Any] = {"latency_ms": LATENCY_MS}
    with SandboxProcess() as sandbox:
        available = [p for p in PLATFORMS if p in sandbox.health()["platforms"] and p in chosen]
    if not args.no_peers:
        results.update(timed("peers and hidden ceilings", lambda: compare.bench_all(available, LATENCY_MS)))
    with SandboxProcess() as sandbox:
        results["bulk"] = bench_bulk(sandbox, available, 1000)
        results["lookup"] = [
            row for p in available for row in timed(f"look-up {p}", lambda p=p: bench_lookup(sandbox, p))
        ]
        results["rate"] = [
            timed(f"rate {label}", lambda run=run: bench_rate(sandbox, *run))
            for run in RATE_RUNS
            if run[1] in available
            for label in (run[0],)
        ]
        results["scale"] = [
            row
            for p in ("rocketchat", "playfab")
            if p in available
            for row in timed(f"scale {p}", lambda p=p: bench_scale(sandbox, p, (100, 1000, 10000)))
        ]
    results["parse"] = timed("parse cost", lambda: parse_cost.measure_all(runs=5))
    results["total_s"] = time.perf_counter() - started
    (REPO / "benchmarks" / "results").mkdir(exist_ok=True)
    (REPO / "benchmarks" / "results" / "latest.json").write_text(json.dumps(results, indent=2))
    text = report.render(results)
    print(text)
    if not args.no_docs:
        report.write_docs(results, REPO / "docs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
