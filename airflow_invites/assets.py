"""Asset events of the membership tasks: ``invites://<platform>/<group>``, one per platform and group.

A membership task declares the alias ``invites:<platform>`` as its outlet and, when it succeeds (not
on a dry run), adds one event for the group it handled, with counts (never people) in the extra::

    {"platform": "rocketchat", "group": "ByehQjC44FwMeiLbX", "people": 3, "changed": 2,
     "invited": 2, "already_member": 1}

A company DAG runs on "someone joined group X" with ``schedule=[Asset(membership_uri("rocketchat",
"ByehQjC44FwMeiLbX"))]`` (its ``triggering_asset_events`` carry the extra). The group is known only
when the task runs, hence the alias.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any
from urllib.parse import SplitResult, quote, unquote

from airflow_invites.platforms import PLATFORMS

SCHEME = "invites"


def membership_uri(platform: str, group: str) -> str:
    """``invites://<platform>/<group>`` (the group percent-encoded)."""
    return f"{SCHEME}://{platform}/{quote(str(group), safe='')}"


def alias_name(platform: str) -> str:
    """The name of the asset alias a platform's membership tasks declare as their outlet."""
    return f"{SCHEME}:{platform}"


def membership_alias(platform: str) -> Any:
    from airflow.sdk import AssetAlias

    return AssetAlias(alias_name(platform))


def normalize_uri(parts: SplitResult) -> SplitResult:
    """Airflow's URI handler of the ``invites`` scheme (provider info ``asset-uris``): a known platform
    and one non-empty group segment; the platform is lower-cased, a query or fragment refused."""
    platform = parts.netloc.lower()
    if platform not in PLATFORMS:
        raise ValueError(
            f"{SCHEME} asset URI: expected {SCHEME}://<platform>/<group> with a platform of "
            f"{list(PLATFORMS)}, got host {parts.netloc!r}"
        )
    group = parts.path.strip("/")
    if not group or "/" in group or not unquote(group).strip():
        raise ValueError(
            f"{SCHEME} asset URI: expected {SCHEME}://{platform}/<group> with one group id "
            f"(percent-encoded), got path {parts.path!r}"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"{SCHEME} asset URI: no query or fragment expected, got {parts.geturl()!r}")
    return parts._replace(netloc=platform, path=f"/{group}")


def event_extra(platform: str, group: str, statuses: Iterable[str]) -> dict[str, Any]:
    """The counts an event carries: people, changed, and one count per status met."""
    from airflow_invites.core.outcome import CHANGED

    counts = Counter(statuses)
    changed = sum(n for status, n in counts.items() if status in {s.value for s in CHANGED})
    return {
        "platform": platform,
        "group": str(group),
        "people": sum(counts.values()),
        "changed": changed,
        **dict(sorted(counts.items())),
    }


def add_membership_event(context: Any, task: Any, platform: str, group: str, statuses: Iterable[str]) -> bool:
    """Add the event of ``group`` to ``task``'s ``invites:<platform>`` alias; False if it has no such outlet
    (or the context carries no outlet events: a task run outside Airflow)."""
    from airflow.sdk import Asset

    name = alias_name(platform)
    alias = next((o for o in getattr(task, "outlets", None) or [] if getattr(o, "name", None) == name), None)
    if alias is None or type(alias).__name__ != "AssetAlias" or "outlet_events" not in context:
        return False
    uri = membership_uri(platform, group)
    context["outlet_events"][alias].add(
        Asset(uri=uri, name=uri), extra=event_extra(platform, group, statuses)
    )
    return True
