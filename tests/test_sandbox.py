"""The sandbox's admin API contract (GET/POST/PUT/DELETE /_sandbox/...), over HTTP."""

from __future__ import annotations

import pytest
import requests

from airflow_invites.core.membership import invite_people
from airflow_invites.core.outcome import Status
from airflow_invites.platforms import PLATFORMS

NAMES = ("bungie", "vrchat", "playfab", "bitrix24", "rocketchat")


def test_health_lists_all_five(sandbox):
    assert sorted(sandbox.health()["platforms"]) == sorted(NAMES)


@pytest.mark.parametrize("platform", NAMES)
def test_env_gives_five_people_outside_the_group(sandbox, platform):
    env = sandbox.env()[platform]
    assert env["connection"]["conn_type"] == platform
    assert len(env["users"]) >= 5


@pytest.mark.parametrize("platform", NAMES)
def test_people_seeded_into_a_group_are_members_not_invites(sandbox, platform):
    group = sandbox.env()[platform]["group"]
    members = sandbox.people(platform, 3, group=group)
    hook = PLATFORMS[platform].hook_for()
    outcomes = invite_people(hook, group, members)
    assert {o.status for o in outcomes} == {Status.ALREADY_MEMBER}
    assert sandbox.invites(platform) == []


def test_people_into_an_unknown_group_is_404(sandbox):
    response = requests.post(
        f"{sandbox.base_url}/_sandbox/people",
        json={"platform": "rocketchat", "count": 1, "group": "nope"},
        timeout=10,
    )
    assert response.status_code == 404
    assert "group" in response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"platform": "rocketchat", "count": 0},
        {"platform": "rocketchat", "count": 20_001},
        {"platform": "x", "count": 1},
    ],
)
def test_people_rejects_bad_bodies(sandbox, body):
    response = requests.post(f"{sandbox.base_url}/_sandbox/people", json=body, timeout=10)
    assert response.status_code in (404, 422)


def test_faults_and_limits_validate_and_reset_clears(sandbox):
    bad = requests.put(f"{sandbox.base_url}/_sandbox/faults", json={"kinds": ["nope"]}, timeout=10)
    assert bad.status_code == 422
    sandbox.faults("*", rate=1.0, kinds=["server_error"])
    assert requests.get(f"{sandbox.base_url}/rocketchat/api/info", timeout=10).status_code == 500
    sandbox.reset()
    assert requests.get(f"{sandbox.base_url}/rocketchat/api/info", timeout=10).status_code == 200
    assert sandbox.requests() == [sandbox.requests()[0]]  # only the call just made: reset cleared the log
    sandbox.limits("*", 0)


def test_requests_since_and_count(sandbox):
    for _ in range(3):
        requests.get(f"{sandbox.base_url}/rocketchat/api/info", timeout=10)
    assert sandbox.request_count("rocketchat") == 3
    assert len(sandbox.requests("rocketchat", since=2)) == 1


def test_secrets_lists_credentials(sandbox):
    secrets = sandbox.secrets()
    for platform in PLATFORMS:
        conn = sandbox.env()[platform]["connection"]
        if conn.get("password"):
            assert conn["password"] in secrets, platform
