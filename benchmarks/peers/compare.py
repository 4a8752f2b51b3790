"""Our hooks side by side with each platform's official Python client, and at hidden ceilings.

Each platform gets its own sandbox process (so one platform's rate limits and request log never
touch another's) and its own thread; the hidden-ceiling runs get theirs too. Inside a platform,
every client and form runs against a freshly reset sandbox with 200 new people, then once more
over the same people (the re-run), with the sandbox's documented limits off and then on (scale 1).
Requests and applied invites come from the sandbox's own logs, not from what a client says.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from benchmarks.peers import environment
from benchmarks.sandbox_process import SandboxProcess

PEOPLE = 200
CEILING_PEOPLE = 500
THROTTLED = (429, 503)  # every platform's rate-limit status (Bitrix24: 503 QUERY_LIMIT_EXCEEDED)
#: the requests that sign in (a deployment keeps the session or token between runs): VRChat's login
#: and 2FA, PlayFab's entity token, Bungie's and Bitrix24's OAuth token, Rocket.Chat's login
SIGN_IN = re.compile(
    r"/auth/user$|/auth/twofactorauth/|/Authentication/GetEntityToken$|/OAuth/token/?$|/oauth/token/?$|/api/v1/login$"
)


@dataclass(frozen=True)
class Form:
    """One way of inviting: ours, or a client driven as its users write it."""

    client: str  # "ours" or the PyPI name in requirements.txt
    form: str  # what drive.py runs ("loop", "bulk", ...); "operator" for ours
    label: str


OURS = Form("ours", "operator", "airflow-invites (invite_people with the hook, defaults)")
FORMS: dict[str, tuple[Form, ...]] = {
    "rocketchat": (
        OURS,
        Form("rocketchat_API", "loop", "groups_invite per person"),
        Form("rocketchat_API", "bulk", "one groups.invite with all userIds"),
    ),
    "bitrix24": (
        OURS,
        Form("b24pysdk", "loop", "sonet_group.user.invite per person"),
        Form("b24pysdk", "bulk", "one sonet_group.user.invite with all ids"),
        Form("b24pysdk", "batch", "call_batches of per-person invites (50 a batch)"),
    ),
    "playfab": (
        OURS,
        Form("playfab", "loop", "InviteToGroup per person"),
    ),
    "bungie": (
        OURS,
        Form("bungio", "loop", "await individual_group_invite per person"),
        Form("bungio", "gather", "asyncio.gather of all invites"),
    ),
    "vrchat": (
        OURS,
        Form("vrchatapi", "loop", "create_group_invite per person"),
    ),
}
#: hidden ceilings (requests per second, burst) the hooks are not told; documented limits off
CEILINGS: tuple[tuple[str, float, int], ...] = (("vrchat", 7.0, 7), ("playfab", 40.0, 40))


def applied_by_person(sandbox: SandboxProcess, platform: str, people: set[str]) -> dict[str, int]:
    return {r["user"]: r["applied"] for r in sandbox.invites(platform) if r["user"] in people}


def measured(
    sandbox: SandboxProcess, platform: str, people: list[str], run: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """One run: wall time, requests and throttle replies from the log, applied and not-invited from
    the ledger (``not_invited``: people with no applied invite at all after this run)."""
    wanted = set(people)
    before_requests = sandbox.request_count(platform)
    before = applied_by_person(sandbox, platform, wanted)
    started = time.perf_counter()
    reported = run()
    wall = reported.pop("wall_s", None) or time.perf_counter() - started
    log = sandbox.requests(platform, since=before_requests)
    after = applied_by_person(sandbox, platform, wanted)
    return {
        "wall_s": wall,
        "requests": len(log),
        "sign_in_requests": sum(1 for r in log if SIGN_IN.search(r["path"].split("?")[0])),
        "accepted_requests": sum(1 for r in log if r["status"] not in THROTTLED),
        "throttle_replies": sum(1 for r in log if r["status"] in THROTTLED),
        "applied": sum(after.values()) - sum(before.values()),
        "not_invited": sum(1 for p in people if not after.get(p)),
        "client_errors": reported.get("errors", {}),
        "example_error": scrubbed(sandbox, reported.get("example", "")),
    }


def scrubbed(sandbox: SandboxProcess, text: str) -> str:
    """``text`` without any credential the sandbox holds (an error may quote a URL or a header)."""
    for secret in sandbox.secrets() if text else ():
        text = text.replace(secret, "***")
    return text


def run_ours(platform: str, conn_id: str, group: str, people: list[str]) -> dict[str, Any]:
    from airflow_invites.core.membership import invite_people
    from airflow_invites.core.outcome import Status
    from airflow_invites.platforms import PLATFORMS

    hook = PLATFORMS[platform].hook_for(conn_id)  # a new task: a new hook
    started = time.perf_counter()
    try:
        outcomes = invite_people(hook, group, people)
    except Exception as exc:  # nothing should get here; if it does, every person counts as failed
        return {"errors": {type(exc).__name__: len(people)}, "example": str(exc)[:300]}
    failed = [o for o in outcomes if o.status is Status.FAILED]
    return {
        "wall_s": time.perf_counter() - started,
        "errors": {"failed": len(failed)} if failed else {},
        "example": failed[0].detail[:300] if failed else "",
    }


def run_peer(python: str, job: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [python, str(environment.DRIVER)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        raise RuntimeError(f"{job['platform']} {job['form']}: the driver failed:\n{done.stderr[-2000:]}")
    return dict(json.loads(lines[-1]))


def prepare(sandbox: SandboxProcess, limits_on: bool, latency_ms: int) -> None:
    sandbox.reset()
    sandbox.faults("*", rate=0, latency_ms=latency_ms)
    sandbox.limits("*", 1 if limits_on else 0)


def run_form(
    sandbox: SandboxProcess,
    python: str,
    form: Form,
    platform: str,
    conn_id: str,
    group: str,
    people: list[str],
) -> dict[str, Any]:
    if form.client == "ours":
        return run_ours(platform, conn_id, group, people)
    # the connection as a script would hold it (Bungie: the latest refresh token)
    connection = sandbox.env()[platform]["connection"]
    job = {"platform": platform, "form": form.form, "connection": connection}
    return run_peer(python, {**job, "group": group, "people": people})


def bench_platform(platform: str, python: str, latency_ms: int) -> list[dict[str, Any]]:
    """Every form of ``platform``, limits off then on, each against a fresh sandbox state."""
    rows = []
    with SandboxProcess(default_connections=False) as sandbox:
        for limits_on in (False, True):
            limits = "on" if limits_on else "off"
            for form in FORMS[platform]:
                prepare(sandbox, limits_on, latency_ms)
                group = sandbox.env()[platform]["group"]
                people = sandbox.people(platform, PEOPLE)
                conn_id = f"bench_peers_{platform}_{limits}"
                if form.client == "ours":
                    sandbox.set_connection(platform, conn_id)
                run = partial(run_form, sandbox, python, form, platform, conn_id, group, people)
                first = measured(sandbox, platform, people, run)
                again = measured(sandbox, platform, people, run)
                rows.append(
                    {
                        "platform": platform,
                        "client": form.client,
                        "form": form.form,
                        "label": form.label,
                        "limits": limits,
                        "people": PEOPLE,
                        **first,
                        "rerun": again,
                    }
                )
                print(
                    f"    peers {platform} {form.client} {form.form} limits {limits}: "
                    f"{first['wall_s']:.1f} s, re-run {again['wall_s']:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
    return rows


def bench_ceiling(platform: str, rate: float, burst: int, latency_ms: int) -> dict[str, Any]:
    """500 new people with our hook's defaults, under a ceiling it is not told (documented limits off)."""
    with SandboxProcess(default_connections=False) as sandbox:
        sandbox.reset()
        sandbox.faults("*", rate=0, latency_ms=latency_ms)
        sandbox.limits("*", 0)
        sandbox.limits(platform, 0, rate=rate, burst=burst)
        conn_id = f"bench_ceiling_{platform}"
        sandbox.set_connection(platform, conn_id)
        group = sandbox.env()[platform]["group"]
        people = sandbox.people(platform, CEILING_PEOPLE)
        run = measured(sandbox, platform, people, lambda: run_ours(platform, conn_id, group, people))
    allowed = burst + rate * run["wall_s"]
    return {
        "platform": platform,
        "rate": rate,
        "burst": burst,
        "people": CEILING_PEOPLE,
        **run,
        "accepted_per_s": run["accepted_requests"] / run["wall_s"],
        "fraction_of_ceiling": run["accepted_requests"] / allowed,
    }


def bench_all(platforms: list[str], latency_ms: int) -> dict[str, Any]:
    """The peer table and the hidden-ceiling rows, every platform and ceiling side by side."""
    python = str(environment.ensure())
    ceilings = [c for c in CEILINGS if c[0] in platforms]
    with ThreadPoolExecutor(len(platforms) + len(ceilings)) as pool:
        tables = [pool.submit(bench_platform, p, python, latency_ms) for p in platforms]
        limits = [pool.submit(bench_ceiling, *c, latency_ms) for c in ceilings]
        return {
            "peer_clients": environment.versions(),
            "peers": [row for future in tables for row in future.result()],
            "ceiling": [future.result() for future in limits],
        }
