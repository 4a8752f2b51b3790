"""What a user would write without us: per person, one membership check and one invite, in sequence.

Plain ``requests``, no look-up of pending invites, no batching, no retries. Authentication is taken
from our hook once (it is not what is measured): headers for every call, and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import requests

from airflow_invites.hooks.base import InvitesHook

TIMEOUT = 30


def _session(hook: InvitesHook) -> requests.Session:
    session = requests.Session()
    session.headers.update({"User-Agent": hook.user_agent(), **hook.auth_headers()})
    return session


def rocketchat(hook: InvitesHook, group: str, users: Sequence[str]) -> None:
    session, base = _session(hook), hook.base_url()
    for user in users:
        check = session.get(
            f"{base}/api/v1/rooms.isMember", params={"roomId": group, "userId": user}, timeout=TIMEOUT
        )
        if not check.json().get("isMember"):
            session.post(
                f"{base}/api/v1/groups.invite", json={"roomId": group, "userId": user}, timeout=TIMEOUT
            )


def bungie(hook: InvitesHook, group: str, users: Sequence[str]) -> None:
    session, base = _session(hook), hook.base_url()
    for user in users:
        kind, membership_id = user.split(":")
        check = session.get(f"{base}/GroupV2/User/{kind}/{membership_id}/0/1/", timeout=TIMEOUT)
        groups = (check.json().get("Response") or {}).get("results") or []
        if not any(str(g.get("group", {}).get("groupId")) == group for g in groups):
            session.post(
                f"{base}/GroupV2/{group}/Members/IndividualInvite/{kind}/{membership_id}/",
                json={"message": "Welcome"},
                timeout=TIMEOUT,
            )


def vrchat(hook: InvitesHook, group: str, users: Sequence[str]) -> None:
    session, base = _session(hook), hook.base_url()
    for user in users:
        check = session.get(f"{base}/groups/{group}/members/{user}", timeout=TIMEOUT)
        if check.status_code == 404 or not check.json():
            session.post(f"{base}/groups/{group}/invites", json={"userId": user}, timeout=TIMEOUT)


def playfab(hook: InvitesHook, group: str, users: Sequence[str]) -> None:
    session, base = _session(hook), hook.base_url()
    group_key = {"Id": group, "Type": "group"}
    for user in users:
        kind, _, entity_id = user.rpartition(":")
        entity = {"Id": entity_id, "Type": kind or "title_player_account"}
        check = session.post(
            f"{base}/Group/IsMember", json={"Group": group_key, "Entity": entity}, timeout=TIMEOUT
        )
        if not (check.json().get("data") or {}).get("IsMember"):
            session.post(
                f"{base}/Group/InviteToGroup", json={"Group": group_key, "Entity": entity}, timeout=TIMEOUT
            )


def bitrix24(hook: Any, group: str, users: Sequence[str]) -> None:
    session, base = _session(hook), hook.base_url()
    for user in users:
        check = session.post(
            f"{base}/{hook._method_path('sonet_group.user.get')}", json={"ID": group}, timeout=TIMEOUT
        )
        members = {str(row.get("USER_ID")) for row in check.json().get("result") or []}
        if user not in members:
            session.post(
                f"{base}/{hook._method_path('sonet_group.user.invite')}",
                json={"GROUP_ID": group, "USER_ID": [user]},
                timeout=TIMEOUT,
            )


BASELINES: dict[str, Callable[[Any, str, Sequence[str]], None]] = {
    "rocketchat": rocketchat,
    "bungie": bungie,
    "vrchat": vrchat,
    "playfab": playfab,
    "bitrix24": bitrix24,
}
