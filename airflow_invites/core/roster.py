"""Keep a group matching a roster: the membership algorithm in both directions, with a guard.

``additive`` (the default) invites the roster's people who are missing; ``authoritative`` also
removes members and withdraws invitations of people not on the roster. Never removed: members the
platform protects (the owner, the connection's own account) and the ``keep`` list. An empty roster
never empties a group, and when more people would go than ``max_removals``, nobody is touched and
the error names them (a truncated or half-read roster looks exactly like that).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from airflow.sdk.exceptions import AirflowFailException

from airflow_invites.core.adapter import InviteRequest, MembershipAdapter
from airflow_invites.core.errors import InviteInputError
from airflow_invites.core.membership import (
    MassRemovalRefused,
    RunStats,
    State,
    apply_prepared,
    apply_state,
    prepare,
)
from airflow_invites.core.outcome import InviteOutcome

#: the default of ``max_removals``: how many people one group may lose in one run
DEFAULT_MAX_REMOVALS = 10


class Mode(str, Enum):
    ADDITIVE = "additive"  # invite the missing; remove nobody
    AUTHORITATIVE = "authoritative"  # also remove whoever is not on the roster


class EmptyRoster(AirflowFailException):
    """An authoritative sync was given nobody for a group: it would empty it, so nothing is done."""


@dataclass
class Drift:
    """What differs between a group and its roster, before anything is done."""

    group: str
    to_add: list[str] = field(default_factory=list)  # on the roster, not a member nor invited
    to_remove: list[str] = field(default_factory=list)  # a member or invited, not on the roster
    protected: list[str] = field(default_factory=list)  # not on the roster, but never removed (why)

    def to_dict(self) -> dict[str, object]:
        return {
            "group": self.group,
            "to_add": self.to_add,
            "to_remove": self.to_remove,
            "protected": self.protected,
        }


def parse_mode(value: object) -> Mode:
    try:
        return Mode(str(value).strip().lower())
    except ValueError:
        raise InviteInputError("mode", "'additive' or 'authoritative'", value) from None


def parse_max_removals(value: object) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit():
        raise InviteInputError("max_removals", "an integer >= 0", value)
    return int(text)


def sync_roster(
    adapter: MembershipAdapter,
    group: object,
    roster: object,
    *,
    mode: Mode = Mode.ADDITIVE,
    keep: object = (),
    max_removals: int = DEFAULT_MAX_REMOVALS,
    request: InviteRequest | None = None,
    dry_run: bool = False,
    stats: RunStats | None = None,
) -> tuple[list[InviteOutcome], Drift]:
    """Bring ``group`` to ``roster``: the outcomes (invites, then removals) and the drift found.

    :param roster: the people who should be in the group (ids or handles)
    :param keep: people never removed although not on the roster (ids or handles)
    :raises EmptyRoster: authoritative with nobody on the roster
    :raises MassRemovalRefused: more than ``max_removals`` would be removed (nothing was done)
    """
    stats = stats if stats is not None else RunStats()
    if mode is Mode.ADDITIVE:
        outcomes = apply_state(
            adapter, State.PRESENT, group, roster, request=request, dry_run=dry_run, stats=stats
        )
        drift = Drift(outcomes[0].group if outcomes else str(group))
        drift.to_add = [o.user for o in outcomes if o.status.value in ("invited", "would_invite")]
        return outcomes, drift
    if roster in (None, "", [], ()):
        raise EmptyRoster(
            f"{adapter.platform} {group}: the roster has nobody for this group; an authoritative sync never "
            "empties a group (check the roster's source, or remove people with the remove operator)"
        )
    wanted = prepare(adapter, group, roster, request=request, stats=stats)
    kept = prepare(adapter, wanted.group, keep, stats=stats) if keep not in (None, "", [], ()) else None
    listing = dict(adapter.list_group(wanted.group))
    on_roster = set(wanted.ids)
    never = set(kept.ids) if kept else set()
    drift = Drift(wanted.group)
    for user, state in listing.items():
        if user in on_roster:
            continue
        if state.protected:
            drift.protected.append(f"{user} ({state.protected})")
        elif user in never:
            drift.protected.append(f"{user} (on the keep list)")
        elif state.presence.value in ("member", "invited"):
            drift.to_remove.append(user)
    drift.to_add = [u for u in wanted.ids if u not in listing]
    if len(drift.to_remove) > max_removals and not dry_run:
        raise MassRemovalRefused(adapter.platform, wanted.group, drift.to_remove, max_removals)
    outcomes = apply_prepared(adapter, State.PRESENT, wanted, dry_run=dry_run, stats=stats)
    if drift.to_remove:
        outcomes += apply_state(
            adapter,
            State.ABSENT,
            wanted.group,
            drift.to_remove,
            dry_run=dry_run,
            max_removals=max_removals,
            stats=stats,
        )
    return outcomes, drift
