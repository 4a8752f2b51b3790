"""One run of a platform's official Python client against the sandbox, written as its users write it.

Runs inside the peers virtual environment (``benchmarks/peers/requirements.txt``), never imports
airflow_invites. Reads a JSON job on stdin::

    {"platform": "vrchat", "form": "loop", "connection": {...}, "group": "...", "people": [...]}

(``connection`` is the sandbox's Airflow connection for that platform, from ``/_sandbox/env``) and
prints one JSON line: ``wall_s`` (client set-up and log-in included, interpreter start-up not),
``ok``/``already`` (people the client reports done / already there), ``errors`` (label -> count)
and ``example`` (one error text). Requests and applied invites are counted by the caller from
the sandbox's own logs.

Pointing each client at the sandbox (least invasive override the client allows):

- rocketchat_API: ``server_url`` (a constructor argument).
- vrchatapi: ``Configuration(host=...)``; ``ApiClient.user_agent`` set as VRChat requires.
- playfab: ``PlayFabSettings.ProductionEnvironmentURL`` (used verbatim when it starts with http).
- b24pysdk: hard-codes ``https://{domain}/rest``; the property that builds it
  (``_MethodCaller._base_url``) is replaced with the same string over ``http://`` (the sandbox
  serves plain HTTP). Nothing else is touched.
- bungio: hard-codes ``https://www.bungie.net/Platform``: ``bungio.http.route.BASE_ROUTE`` is
  replaced (read when a route is built), and the OAuth token URL, a literal in
  ``HttpClient.refresh_access_token``, through bungio's own ``Client(http_client_class=...)`` hook.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

USER_AGENT = "airflow-invites-bench/1.0 bench@airflow-invites.dev"


class Tally:
    """What the client told its user, person by person."""

    def __init__(self) -> None:
        self.ok = 0
        self.already = 0
        self.errors: Counter[str] = Counter()
        self.example = ""

    def error(self, label: str, text: str) -> None:
        self.errors[label] += 1
        self.example = self.example or text[:300]

    def result(self, wall_s: float) -> dict[str, Any]:
        return {
            "wall_s": wall_s,
            "ok": self.ok,
            "already": self.already,
            "errors": dict(self.errors),
            "example": self.example,
        }


# -- Rocket.Chat: rocketchat_API ------------------------------------------------------------------


def rocketchat(job: dict[str, Any], tally: Tally) -> None:
    from rocketchat_API.APIExceptions.RocketExceptions import (
        RocketApiException,
        RocketBadStatusCodeException,
    )
    from rocketchat_API.rocketchat import RocketChat

    conn = job["connection"]
    rocket = RocketChat(user_id=conn["login"], auth_token=conn["password"], server_url=conn["host"])
    people, group = job["people"], job["group"]
    calls: list[tuple[list[str], Callable[[], Any]]]
    if job["form"] == "bulk":  # one groups.invite with every id (userIds)
        calls = [(people, lambda: rocket.call_api_post("groups.invite", roomId=group, userIds=people))]
    else:  # groups.invite per person; a person already in the group is a success, not an error
        calls = [([u], lambda u=u: rocket.groups_invite(group, u)) for u in people]
    for who, call in calls:
        try:
            call()
            tally.ok += len(who)
        except (RocketApiException, RocketBadStatusCodeException) as exc:
            for _ in who:
                tally.error(str(exc.status_code), str(exc))


# -- Bitrix24: b24pysdk ---------------------------------------------------------------------------


def bitrix24(job: dict[str, Any], tally: Tally) -> None:
    from b24pysdk import BitrixWebhook, Client
    from b24pysdk.api.callers.call_method import _MethodCaller
    from b24pysdk.errors import BitrixSDKException

    # the SDK builds https://{domain}/rest; the sandbox speaks plain http
    _MethodCaller._base_url = property(lambda self: f"http://{self._domain}/rest")  # type: ignore[method-assign,assignment]
    conn = job["connection"]
    extra = conn["extra"]
    domain = conn["host"].split("://", 1)[1]  # "127.0.0.1:PORT/bitrix24"
    token = BitrixWebhook(domain=domain, webhook_token=f"{extra['webhook_user_id']}/{extra['webhook_code']}")
    client = Client(token)
    group = int(job["group"])
    people = [int(u) for u in job["people"]]
    invite = client.sonet_group.user.invite
    try:
        if job["form"] == "bulk":  # sonet_group.user.invite takes a list of USER_IDs
            _ = invite(group, people).result  # the request runs when its result is read
            tally.ok += len(people)
        elif job["form"] == "batch":  # one invite per person, 50 to a batch request
            batches = client.call_batches({str(u): invite(group, u) for u in people}).result
            for key in batches.result_error:
                tally.error("result_error", str(batches.result_error[key]))
            tally.ok += len(people) - len(batches.result_error)
        else:  # an invite per person; Bitrix24 skips people already in the group (no error)
            for person in people:
                try:
                    _ = invite(group, person).result
                    tally.ok += 1
                except BitrixSDKException as exc:
                    tally.error(type(exc).__name__, str(exc))
    except BitrixSDKException as exc:
        for _ in people:
            tally.error(type(exc).__name__, str(exc))


# -- PlayFab: the PlayFab Python SDK --------------------------------------------------------------

ALREADY_MEMBER = 1359  # EntityIsAlreadyMember


def playfab(job: dict[str, Any], tally: Tally) -> None:
    from playfab import PlayFabAuthenticationAPI, PlayFabGroupsAPI, PlayFabSettings

    conn = job["connection"]
    PlayFabSettings.TitleId = conn["login"]
    PlayFabSettings.DeveloperSecretKey = conn["password"]
    PlayFabSettings.ProductionEnvironmentURL = conn["host"]  # used verbatim: it starts with http
    failures: list[Any] = []
    PlayFabAuthenticationAPI.GetEntityToken(
        {}, lambda result, error: failures.append(error) if error else None
    )
    if failures:
        raise RuntimeError(f"GetEntityToken failed: {failures[0]}")
    group = {"Id": job["group"], "Type": "group"}

    def done(result: Any, error: Any) -> None:
        if error is None:
            tally.ok += 1
        elif isinstance(error, dict) and error.get("errorCode") == ALREADY_MEMBER:
            tally.already += 1
        elif isinstance(error, dict):
            tally.error(str(error.get("error")), str(error.get("errorMessage")))
        else:  # the SDK's own error object for a non-JSON or non-200 reply
            tally.error(f"HTTP {getattr(error, 'HttpCode', '?')}", str(vars(error)))

    for person in job["people"]:
        entity = {"Id": person, "Type": "title_player_account"}
        PlayFabGroupsAPI.InviteToGroup({"Group": group, "Entity": entity}, done)


# -- Bungie.net: bungio ---------------------------------------------------------------------------

CLAN_INVITE_ALREADY_MEMBER = 676


def bungie(job: dict[str, Any], tally: Tally) -> None:
    asyncio.run(_bungie(job, tally))


async def _bungie(job: dict[str, Any], tally: Tally) -> None:
    import datetime

    import bungio.http.route
    from bungio import Client
    from bungio.error import BungieException, BungIOException
    from bungio.http import HttpClient
    from bungio.models import AuthData, GroupApplicationRequest

    conn = job["connection"]
    root = conn["host"]  # ".../bungie/Platform"
    bungio.http.route.BASE_ROUTE = root

    class SandboxHttpClient(HttpClient):  # type: ignore[misc]
        async def refresh_access_token(self, auth: AuthData) -> dict[str, Any]:
            form = {"grant_type": "refresh_token", "refresh_token": auth.refresh_token}
            return dict(
                await self._request(
                    route=f"{root}/App/OAuth/token/",
                    method="POST",
                    form_data=form,
                    headers=self._bungie_auth_headers,
                    use_ratelimiter=False,
                )
            )

    client = Client(
        bungie_client_id=conn["login"],
        bungie_client_secret=conn["password"],
        bungie_token=conn["extra"]["api_key"],
        http_client_class=SandboxHttpClient,
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    # what a bot stores between runs: the refresh token (the access token is long expired)
    auth = AuthData(
        token="expired",
        token_expiry=now - datetime.timedelta(days=1),
        refresh_token=conn["extra"]["refresh_token"],
        refresh_token_expiry=now + datetime.timedelta(days=80),
        membership_type=254,
        membership_id=0,  # only a key for bungio's per-user token lock
        bungie_name=None,
    )
    group = int(job["group"])

    async def invite(person: str) -> None:
        kind, membership_id = person.split(":")
        try:
            await client.api.individual_group_invite(
                data=GroupApplicationRequest(message="Welcome"),
                group_id=group,
                membership_id=int(membership_id),
                membership_type=int(kind),
                auth=auth,
            )
            tally.ok += 1
        except BungieException as exc:
            if exc.code == CLAN_INVITE_ALREADY_MEMBER:
                tally.already += 1
            else:
                tally.error(exc.error, exc.message)
        except BungIOException as exc:
            tally.error(type(exc).__name__, repr(exc))

    if job["form"] == "gather":  # bungio is async: all at once, its own limiter and semaphore pace it
        await asyncio.gather(*(invite(p) for p in job["people"]))
    else:
        for person in job["people"]:
            await invite(person)
    await client.http.session.close()


# -- VRChat: vrchatapi ----------------------------------------------------------------------------


def vrchat(job: dict[str, Any], tally: Tally) -> None:
    import pyotp
    import vrchatapi
    from vrchatapi.api import authentication_api, groups_api
    from vrchatapi.exceptions import ApiException, UnauthorizedException
    from vrchatapi.models import CreateGroupInviteRequest, TwoFactorAuthCode

    conn = job["connection"]
    configuration = vrchatapi.Configuration(
        host=f"{conn['host']}/api/1", username=conn["login"], password=conn["password"]
    )
    with vrchatapi.ApiClient(configuration) as api_client:
        api_client.user_agent = USER_AGENT
        auth = authentication_api.AuthenticationApi(api_client)
        try:
            auth.get_current_user()
        except UnauthorizedException as exc:
            if exc.status != 200:
                raise
            code = pyotp.TOTP(conn["extra"]["totp_secret"]).now()
            auth.verify2_fa(two_factor_auth_code=TwoFactorAuthCode(code=code))
            auth.get_current_user()
        groups = groups_api.GroupsApi(api_client)
        for person in job["people"]:
            request = CreateGroupInviteRequest(user_id=person, confirm_override_block=True)
            try:
                groups.create_group_invite(job["group"], request)
                tally.ok += 1
            except ApiException as exc:
                body = str(exc.body or "")
                if exc.status == 400 and "already" in body.lower():
                    tally.already += 1
                else:
                    tally.error(str(exc.status), body)


CLIENTS: dict[str, Callable[[dict[str, Any], Tally], None]] = {
    "rocketchat": rocketchat,
    "bitrix24": bitrix24,
    "playfab": playfab,
    "bungie": bungie,
    "vrchat": vrchat,
}


#: imported before the clock starts (a long-running script pays this once, not per run)
PRELOAD = {
    "rocketchat": ["rocketchat_API.rocketchat"],
    "bitrix24": ["b24pysdk"],
    "playfab": ["playfab.PlayFabAuthenticationAPI", "playfab.PlayFabGroupsAPI"],
    "bungie": ["bungio", "bungio.http", "bungio.models"],
    "vrchat": ["vrchatapi", "vrchatapi.api.groups_api", "pyotp"],
}


def main() -> int:
    job = json.load(sys.stdin)
    for module in PRELOAD[job["platform"]]:
        importlib.import_module(module)
    tally = Tally()
    started = time.perf_counter()
    try:
        CLIENTS[job["platform"]](job, tally)
    except Exception as exc:  # the client gave up as a whole (log-in failed, ...): nobody counted is done
        left = len(job["people"]) - tally.ok - tally.already - sum(tally.errors.values())
        for _ in range(max(left, 0)):
            tally.error(f"aborted: {type(exc).__name__}", str(exc))
    print(json.dumps(tally.result(time.perf_counter() - started)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
