"""Explicit rate ceilings (``PUT /_sandbox/limits`` with ``rate``/``burst``), over real HTTP."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from airflow_invites.core.membership import invite_people
from airflow_invites.core.outcome import Status
from airflow_invites.platforms import PLATFORMS as REGISTRY

PLATFORMS = ("bungie", "vrchat", "playfab", "bitrix24", "rocketchat")
USER_AGENT = "invites-tests/1.0 ops@airflow-invites.dev"


def probe(sandbox: Any, platform: str) -> requests.Response:
    """One cheap request to ``platform``'s API (no credentials: a refusal counts like any request)."""
    base = sandbox.base_url
    if platform == "rocketchat":
        return requests.get(f"{base}/rocketchat/api/info", timeout=10)
    if platform == "vrchat":
        return requests.get(f"{base}/vrchat/api/1/config", headers={"User-Agent": USER_AGENT}, timeout=10)
    if platform == "playfab":
        return requests.post(f"{base}/playfab/Group/IsMember", json={}, timeout=10)
    if platform == "bungie":
        return requests.get(f"{base}/bungie/Platform/GroupV2/1/", timeout=10)
    return requests.post(f"{base}/bitrix24/rest/1/wrong/profile", timeout=10)


def signature(response: requests.Response) -> tuple[int, Any]:
    """Status and error identity of a reply, without the parts that carry the wait."""
    body = response.json()
    if isinstance(body.get("error"), dict):  # VRChat
        return response.status_code, body["error"]["message"]
    for key in ("errorCode", "ErrorCode", "error"):
        if key in body:
            value = body[key]
            return response.status_code, value.split(".")[0] if isinstance(value, str) else value
    return response.status_code, sorted(body)


def wait_hint(platform: str, response: requests.Response) -> float | None:
    """The wait the platform's throttle reply asks for, read as that platform's clients read it."""
    if platform in ("vrchat", "playfab"):
        return float(response.headers["Retry-After"])
    if platform == "bungie":
        return float(response.json()["ThrottleSeconds"])
    if platform == "rocketchat":
        return float(response.json()["error"].split("You must wait ")[1].split(" ")[0])
    return None  # Bitrix24's QUERY_LIMIT_EXCEEDED carries no hint


def fault_throttle(sandbox: Any, platform: str) -> requests.Response:
    """The platform's own rate-limit reply, as the ``throttle`` fault gives it."""
    sandbox.faults(platform, rate=1.0, kinds=["throttle"])
    try:
        return probe(sandbox, platform)
    finally:
        sandbox.clear_faults()


@pytest.mark.parametrize("platform", PLATFORMS)
def test_over_the_ceiling_gets_the_platforms_own_throttle_reply(sandbox, platform):
    own = fault_throttle(sandbox, platform)
    sandbox.limits(platform, rate=0.2, burst=3)  # 3 at once, then one every 5 s
    first = [probe(sandbox, platform) for _ in range(3)]
    over = probe(sandbox, platform)
    assert all(signature(r) != signature(own) for r in first)
    assert signature(over) == signature(own)
    log = sandbox.requests(platform)
    assert [r["status"] for r in log[-4:]] == [r.status_code for r in [*first, over]]


@pytest.mark.parametrize("platform", ["vrchat", "playfab", "bungie", "rocketchat"])
def test_the_wait_hint_is_the_buckets_own(sandbox, platform):
    sandbox.limits(platform, rate=0.25, burst=1)  # room again 4 s after the first request
    probe(sandbox, platform)
    hint = wait_hint(platform, probe(sandbox, platform))
    assert hint in (3, 4)  # 4 s less the time since the first request, rounded as the platform does


def test_bitrix24_over_the_ceiling_is_query_limit_exceeded(sandbox):
    sandbox.limits("bitrix24", rate=0.2, burst=1)
    probe(sandbox, "bitrix24")
    over = probe(sandbox, "bitrix24")
    assert over.status_code == 503
    assert over.json()["error"] == "QUERY_LIMIT_EXCEEDED"


def test_the_bucket_refills_at_the_rate(sandbox):
    sandbox.limits("rocketchat", rate=2, burst=1)
    assert probe(sandbox, "rocketchat").status_code == 200
    assert probe(sandbox, "rocketchat").status_code == 429
    time.sleep(0.6)
    assert probe(sandbox, "rocketchat").status_code == 200


def test_a_ceiling_holds_one_platform_only_and_star_sets_each(sandbox):
    sandbox.limits("rocketchat", rate=0.2, burst=1)
    statuses = [probe(sandbox, "playfab").status_code for _ in range(5)]
    assert 429 not in statuses
    sandbox.limits("rocketchat", rate=0)
    sandbox.limits("*", rate=0.2, burst=2)
    for platform in ("rocketchat", "playfab"):  # each platform its own bucket of 2
        assert probe(sandbox, platform).status_code != 429
        assert probe(sandbox, platform).status_code != 429
        assert probe(sandbox, platform).status_code == 429


def test_rate_zero_and_reset_remove_the_ceiling(sandbox):
    sandbox.limits("rocketchat", rate=0.2, burst=1)
    probe(sandbox, "rocketchat")
    assert probe(sandbox, "rocketchat").status_code == 429
    assert sandbox.limits("rocketchat", rate=0) == {
        "platform": "rocketchat",
        "scale": 1.0,
        "rate": 0.0,
        "burst": None,
    }
    assert probe(sandbox, "rocketchat").status_code == 200
    sandbox.limits("rocketchat", rate=0.2, burst=1)
    probe(sandbox, "rocketchat")
    sandbox.reset()
    assert [probe(sandbox, "rocketchat").status_code for _ in range(3)] == [200] * 3


def test_scale_and_ceiling_combine_independently(sandbox):
    # scale 0 turns the documented limits off; the ceiling still holds, unscaled
    assert sandbox.limits("rocketchat", 0, rate=0.2, burst=2) == {
        "platform": "rocketchat",
        "scale": 0.0,
        "rate": 0.2,
        "burst": 2,
    }
    assert [probe(sandbox, "rocketchat").status_code for _ in range(3)] == [200, 200, 429]
    # a body with only a rate leaves the scale as it was; one with only a scale leaves the ceiling
    assert sandbox.limits("rocketchat", rate=0.2, burst=2)["scale"] == 0.0  # a fresh bucket of 2
    assert probe(sandbox, "rocketchat").status_code == 200
    assert sandbox.limits("rocketchat", 5) == {"platform": "rocketchat", "scale": 5.0}
    assert [probe(sandbox, "rocketchat").status_code for _ in range(2)] == [200, 429]


def test_a_hook_not_told_the_ceiling_still_invites_everyone(sandbox):
    """The point of a hidden ceiling: the hook meets throttle replies it was not told about."""
    sandbox.limits("playfab", rate=10, burst=2)
    group = sandbox.env()["playfab"]["group"]
    people = sandbox.people("playfab", 6)
    before = sandbox.request_count("playfab")
    outcomes = invite_people(REGISTRY["playfab"].hook_for(), group, people)
    assert {o.status for o in outcomes} == {Status.INVITED}
    statuses = [r["status"] for r in sandbox.requests("playfab", since=before)]
    assert 429 in statuses
    assert sum(r["applied"] for r in sandbox.invites("playfab")) == 6


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"platform": "vrchat", "rate": -1}, "rate"),
        ({"platform": "vrchat", "rate": "fast"}, "rate"),
        ({"platform": "vrchat", "rate": True}, "rate"),
        ({"platform": "vrchat", "rate": 5, "burst": 0}, "burst"),
        ({"platform": "vrchat", "rate": 5, "burst": 2.5}, "burst"),
        ({"platform": "vrchat", "burst": 5}, "burst"),
        ({"platform": "vrchat", "scale": -1}, "scale"),
    ],
)
def test_bad_limits_are_422_naming_the_field(sandbox, body, field):
    response = requests.put(f"{sandbox.base_url}/_sandbox/limits", json=body, timeout=10)
    assert response.status_code == 422
    assert response.json()["detail"].startswith(f"{field}:")
    assert [probe(sandbox, "vrchat").status_code for _ in range(3)] == [200] * 3  # nothing was set


def test_unknown_platform_is_404(sandbox):
    response = requests.put(
        f"{sandbox.base_url}/_sandbox/limits", json={"platform": "myspace", "rate": 1}, timeout=10
    )
    assert response.status_code == 404
