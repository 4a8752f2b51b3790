"""The membership algorithm, written once for both directions (Ansible's ``state: present | absent``).

validate -> resolve handles -> look up -> decide -> act -> classify -> report:

1. every input is checked before any request (``parse_people``);
2. handles (``email:...``) are resolved through the platform, each distinct one once; nobody is
   acted on by a guess: not found and ambiguous handles are failures;
3. one look-up says where each person stands;
4. ``decide`` turns a person's state into the outcome or the write it needs (invite; cancel an
   invitation; remove a member) - protected members (the owner, the connection's own account)
   are never removed, and a removal above ``max_removals`` people removes nobody;
5. the writes go out in chunks of the platform's batch size, ``write_concurrency`` at a time;
6. whatever the platform did not confirm (a lost reply, an answer that names nobody, a removal
   the platform says was not needed) is looked up again and decided again - never re-sent blindly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from airflow.sdk.exceptions import AirflowFailException

from airflow_invites.core.adapter import (
    ABSENT,
    HANDLE_RE,
    Handle,
    InviteRequest,
    MembershipAdapter,
    PersonResult,
    Presence,
    Resolution,
    UserState,
)
from airflow_invites.core.errors import (
    InviteInputError,
    PermanentPlatformError,
    PersonRefused,
    PlatformAuthError,
    TransientPlatformError,
)
from airflow_invites.core.outcome import InviteOutcome, Status
from airflow_invites.core.phases import phase

log = logging.getLogger(__name__)

#: how often unconfirmed writes are looked up and decided again before the task gives up (and retries)
MAX_ROUNDS = 5
#: what an adapter raises on a reply of a shape it did not expect (a proxy's JSON, a changed API)
_SHAPE_ERRORS = (KeyError, IndexError, TypeError, AttributeError, ValueError)
#: where reports send a person who gave an id of the wrong shape
FINDING_PEOPLE = "docs/finding-people.md"


class State(str, Enum):
    """What the caller wants: Ansible's ``state``."""

    PRESENT = "present"  # a member or invited
    ABSENT = "absent"  # neither


class Write(str, Enum):
    INVITE = "invite"
    CANCEL = "cancel"
    REMOVE = "remove"


#: what a write did, once confirmed
_DONE = {Write.INVITE: Status.INVITED, Write.CANCEL: Status.INVITE_CANCELLED, Write.REMOVE: Status.REMOVED}


class MassRemovalRefused(AirflowFailException):
    """More people would be removed than allowed: nobody was removed."""

    def __init__(self, platform: str, group: str, people: list[str], limit: int) -> None:
        self.people = people
        shown = ", ".join(people[:50]) + (f" and {len(people) - 50} more" if len(people) > 50 else "")
        super().__init__(
            f"{platform} {group}: {len(people)} people would be removed, more than max_removals={limit}; "
            f"nobody was removed. Check the roster (empty, truncated, unreadable?) or raise max_removals. "
            f"Would have gone: {shown}"
        )


@dataclass(frozen=True)
class Person:
    """One person as given: ``text`` (an id or a handle), the handle if it is one, else the id."""

    text: str
    handle: Handle | None = None
    user: str | None = None


@dataclass
class RunStats:
    """What one run of the algorithm cost, for reports."""

    lookups: int = 0  # look-ups (one per batch, plus the re-checks)
    rechecks: int = 0  # look-ups after writes the platform did not confirm
    handles: int = 0  # distinct handles resolved
    rounds: int = 0  # write rounds (1 when every write was confirmed at once)


# -- input -----------------------------------------------------------------------------------------


def as_user_list(users: object) -> list[object]:
    """One id, a comma-separated string, or a list of ids -> a list (no validation of the ids)."""
    if isinstance(users, str):
        return [part.strip() for part in users.split(",")] if "," in users else [users]
    if isinstance(users, int) and not isinstance(users, bool):
        return [users]
    if isinstance(users, (list, tuple)):
        return list(users)
    raise InviteInputError(
        "users", "a person's id or a list of ids (or handles such as email:ann@example.com)", users
    )


def parse_bool(value: object, field: str) -> bool:
    """A bool, or a rendered template / connection extra of one ("True", "false", "1", "0")."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", "", "none"):
        return False
    raise InviteInputError(field, "true or false", value)


def handle_forms(adapter: MembershipAdapter) -> str:
    """``email:<...>, username:<...>`` as this platform takes them (empty if none)."""
    return ", ".join(f"{kind}:<{meaning}>" for kind, meaning in adapter.handle_kinds.items())


def parse_person(adapter: MembershipAdapter, raw: object) -> Person:
    """One person: a handle this platform resolves, or a platform id. Raises ``InviteInputError``."""
    if isinstance(raw, str):
        text = raw.strip()
        match = HANDLE_RE.match(text)
        if match:
            kind, value = match.groups()
            if kind not in adapter.handle_kinds:
                forms = handle_forms(adapter)
                takes = f"a {adapter.platform} id or one of {forms}" if forms else f"a {adapter.platform} id"
                raise InviteInputError(
                    "users",
                    f"{takes} ({kind}: is not resolved on {adapter.platform}; see {FINDING_PEOPLE})",
                    raw,
                )
            return Person(text, adapter.normalize_handle(Handle(kind, value)))
        bare = adapter.bare_handle(text)
        if bare is not None:
            return Person(text, adapter.normalize_handle(bare))
    try:
        return Person(str(raw).strip(), user=adapter.normalize_user(raw))
    except InviteInputError as exc:
        raise InviteInputError("users", _teach(adapter, raw, exc.expected), raw) from None


def _teach(adapter: MembershipAdapter, raw: object, expected: str) -> str:
    """The id's expected shape, plus what to do with what looks like a handle."""
    forms = handle_forms(adapter)
    hint = f"; or a handle: {forms}" if forms else ""
    if isinstance(raw, str) and "@" in raw and "email" not in adapter.handle_kinds:
        hint += f"; {adapter.platform} cannot find people by e-mail"
    return f"{expected}{hint} (how to find ids: {FINDING_PEOPLE})"


def parse_people(adapter: MembershipAdapter, users: object) -> list[Person]:
    """Every person checked, none twice; the first bad one raises ``InviteInputError``."""
    raw = as_user_list(users)
    if not raw:
        raise InviteInputError("users", "at least one person's id or handle", users)
    people: list[Person] = []
    seen: set[str] = set()
    for item in raw:
        person = parse_person(adapter, item)
        key = person.user if person.user is not None else str(person.handle)
        if key in seen:
            raise InviteInputError("users", "each person once (given twice)", person.text)
        seen.add(key)
        people.append(person)
    return people


def validate(
    adapter: MembershipAdapter, group: object, users: object, request: InviteRequest | None = None
) -> tuple[str, list[Person], InviteRequest]:
    """Every input checked before any request; the first bad one raises ``InviteInputError``."""
    group_id = adapter.normalize_group(group)
    people = parse_people(adapter, users)
    return group_id, people, adapter.normalize_request(request or InviteRequest())


# -- the algorithm ------------------------------------------------------------------------------------


def invite_people(
    adapter: MembershipAdapter,
    group: object,
    users: object,
    *,
    request: InviteRequest | None = None,
    dry_run: bool = False,
    stats: RunStats | None = None,
) -> list[InviteOutcome]:
    """Invite ``users`` into ``group`` so that each ends up a member or invited, exactly once."""
    return apply_state(adapter, State.PRESENT, group, users, request=request, dry_run=dry_run, stats=stats)


def remove_people(
    adapter: MembershipAdapter,
    group: object,
    users: object,
    *,
    dry_run: bool = False,
    max_removals: int | None = None,
    stats: RunStats | None = None,
) -> list[InviteOutcome]:
    """Remove ``users`` from ``group``: members are removed, pending invitations withdrawn, exactly once.

    :param max_removals: when more people would be removed or uninvited, nobody is and
        ``MassRemovalRefused`` names them (None: no limit)
    """
    return apply_state(
        adapter, State.ABSENT, group, users, dry_run=dry_run, max_removals=max_removals, stats=stats
    )


@dataclass(frozen=True)
class Prepared:
    """People checked and their handles resolved: what the algorithm acts on."""

    group: str
    people: list[Person]
    #: person text -> (the id, or None and the failure that stops them)
    resolved: dict[str, tuple[str | None, PersonResult | None]]
    request: InviteRequest

    @property
    def ids(self) -> list[str]:
        """The distinct ids to act on, in the order given."""
        return list(dict.fromkeys(u for u, _ in self.resolved.values() if u is not None))


def prepare(
    adapter: MembershipAdapter,
    group: object,
    users: object,
    *,
    request: InviteRequest | None = None,
    stats: RunStats | None = None,
) -> Prepared:
    """Validate every input (before any request), then resolve each distinct handle once."""
    group_id, people, req = validate(adapter, group, users, request)
    return Prepared(group_id, people, _resolve(adapter, people, stats or RunStats()), req)


def apply_state(
    adapter: MembershipAdapter,
    state: State,
    group: object,
    users: object,
    *,
    request: InviteRequest | None = None,
    dry_run: bool = False,
    max_removals: int | None = None,
    stats: RunStats | None = None,
) -> list[InviteOutcome]:
    """Bring each person of ``users`` to ``state`` in ``group``; one outcome per person, in order."""
    stats = stats if stats is not None else RunStats()
    prepared = prepare(adapter, group, users, request=request, stats=stats)
    return apply_prepared(adapter, state, prepared, dry_run=dry_run, max_removals=max_removals, stats=stats)


def apply_prepared(
    adapter: MembershipAdapter,
    state: State,
    prepared: Prepared,
    *,
    dry_run: bool = False,
    max_removals: int | None = None,
    stats: RunStats | None = None,
) -> list[InviteOutcome]:
    """``apply_state`` for people already prepared: look up, decide, act, confirm."""
    stats = stats if stats is not None else RunStats()
    group_id, ids = prepared.group, prepared.ids
    try:
        current = _lookup(adapter, group_id, ids, stats) if ids else {}
    except (PermanentPlatformError, PlatformAuthError) as exc:
        failed = PersonResult(Status.FAILED, str(exc), exc.code)
        return outcomes_of(adapter, prepared, dict.fromkeys(ids, failed))
    results: dict[str, PersonResult] = {}
    writes: dict[str, Write] = {}
    for user in ids:
        decision = decide(state, current.get(user, ABSENT))
        if isinstance(decision, Write):
            writes[user] = decision
        else:
            results[user] = decision
    if state is State.ABSENT and max_removals is not None and len(writes) > max_removals and not dry_run:
        raise MassRemovalRefused(adapter.platform, group_id, list(writes), max_removals)
    if dry_run:
        results.update((u, _dry_run(w)) for u, w in writes.items())
    elif writes:
        results.update(_act(adapter, state, group_id, writes, prepared.request, stats))
    return outcomes_of(adapter, prepared, results)


def outcomes_of(
    adapter: MembershipAdapter, prepared: Prepared, results: Mapping[str, PersonResult]
) -> list[InviteOutcome]:
    """One outcome per person given, in order: the result of their id, or why it was not found."""
    made = []
    for person in prepared.people:
        user, unresolved = prepared.resolved[person.text]
        result = unresolved or results[user or ""]
        handle = person.text if person.handle is not None else None
        made.append(
            InviteOutcome(
                adapter.platform,
                prepared.group,
                user or person.text,
                result.status,
                result.detail,
                result.code,
                handle,
            )
        )
    return made


def decide(state: State, current: UserState) -> PersonResult | Write:
    """The outcome a person's state already gives, or the write that brings them to ``state``."""
    presence = current.presence
    if presence is Presence.NOT_FOUND:
        return PersonResult(Status.FAILED, current.detail or "no such person", current.code or "not_found")
    if state is State.PRESENT:
        if presence is Presence.ABSENT:
            return Write.INVITE
        if presence is Presence.MEMBER:
            return PersonResult(Status.ALREADY_MEMBER, current.detail, current.code)
        if presence is Presence.INVITED:
            return PersonResult(Status.ALREADY_INVITED, current.detail, current.code)
        return PersonResult(Status.FAILED, current.detail, current.code)  # BLOCKED
    if presence is Presence.BLOCKED and current.holds is not None:
        presence = current.holds  # e.g. a deactivated member: not invitable, still removable
    if presence is Presence.MEMBER:
        if current.protected:
            return PersonResult(Status.FAILED, f"never removed: {current.protected}", "protected")
        return Write.REMOVE
    if presence is Presence.INVITED:
        return Write.CANCEL
    return PersonResult(Status.ALREADY_ABSENT, current.detail, current.code)  # ABSENT, BLOCKED


def _dry_run(write: Write) -> PersonResult:
    if write is Write.INVITE:
        return PersonResult(Status.WOULD_INVITE, "dry run: no request sent")
    what = "withdraw the pending invitation" if write is Write.CANCEL else "remove the member"
    return PersonResult(Status.WOULD_REMOVE, f"dry run: would {what}; no request sent")


# -- resolution --------------------------------------------------------------------------------------


def _resolve(
    adapter: MembershipAdapter, people: list[Person], stats: RunStats
) -> dict[str, tuple[str | None, PersonResult | None]]:
    """Person text -> (id, None), or (None, the failure) for a handle not resolved to exactly one id."""
    resolved: dict[str, tuple[str | None, PersonResult | None]] = {
        p.text: (p.user, None) for p in people if p.handle is None
    }
    handles = list(dict.fromkeys(p.handle for p in people if p.handle is not None))
    found: dict[Handle, Resolution | PersonResult] = {}
    for chunk in _chunks(handles, adapter.resolve_batch_size):
        stats.handles += len(chunk)
        try:
            with phase("resolve"):
                answers = _guarded(_resolver(adapter, chunk), adapter, maybe_applied=False)
        except PersonRefused as refused:  # the one handle of this chunk is refused
            found.update((h, Resolution.not_found(str(refused))) for h in chunk)
            continue
        except (PermanentPlatformError, PlatformAuthError) as exc:  # the look-up itself is refused
            found.update((h, PersonResult(Status.FAILED, str(exc), exc.code)) for h in chunk)
            continue
        for handle in chunk:
            found[handle] = answers.get(handle) or Resolution.not_found()
    for person in people:
        if person.handle is None:
            continue
        answer = found[person.handle]
        if isinstance(answer, PersonResult):
            resolved[person.text] = (None, answer)
        elif answer.matches == 1 and answer.user:
            resolved[person.text] = (adapter.normalize_user(answer.user), None)
        elif answer.matches == 0:
            why = answer.detail or f"no {adapter.platform} account has this {person.handle.kind}"
            resolved[person.text] = (None, PersonResult(Status.FAILED, why, "not_found"))
        else:
            why = answer.detail or f"{answer.matches} {adapter.platform} accounts match"
            why += ": nobody was acted on; give the id instead"
            resolved[person.text] = (None, PersonResult(Status.FAILED, why, "ambiguous"))
    return resolved


def _resolver(adapter: MembershipAdapter, chunk: list[Handle]) -> Callable[[], Mapping[Handle, Resolution]]:
    return lambda: adapter.resolve(chunk)


# -- look-ups and writes ----------------------------------------------------------------------------------


def _lookup(
    adapter: MembershipAdapter, group: str, users: list[str], stats: RunStats
) -> dict[str, UserState]:
    stats.lookups += 1
    with phase("lookup"):
        return dict(_guarded(lambda: adapter.lookup(group, users), adapter, maybe_applied=False))


def _act(
    adapter: MembershipAdapter,
    state: State,
    group: str,
    writes: dict[str, Write],
    request: InviteRequest,
    stats: RunStats,
) -> dict[str, PersonResult]:
    """Send the writes; look up whatever the platform did not confirm and decide it again."""
    results: dict[str, PersonResult] = {}
    pending = writes
    for _round in range(MAX_ROUNDS):
        stats.rounds += 1
        answered: dict[str, PersonResult] = {}
        lost: list[str] = []
        try:
            for write, users in _by_write(pending).items():
                got, lost_here = _send_all(adapter, write, group, users, request)
                answered.update(got)
                lost += lost_here
        except (PermanentPlatformError, PlatformAuthError) as exc:
            # a refusal of the whole call (group gone, no permission): nobody left can be changed
            failed = PersonResult(Status.FAILED, str(exc), exc.code)
            results.update(answered)
            results.update((u, failed) for u in pending if u not in answered)
            return results
        unconfirmed: dict[str, str] = {u: "lost" for u in lost}
        for user, write in pending.items():
            if user in lost:
                continue
            result = answered.get(user)
            if result is None:
                unconfirmed[user] = "silent"  # answered, but the reply does not say about them
            elif write is not Write.INVITE and result.status is Status.ALREADY_ABSENT:
                unconfirmed[user] = "absent"  # the platform says there was nothing: check it
            else:
                results[user] = result
        if not unconfirmed:
            return results
        stats.rechecks += 1
        now = _lookup(adapter, group, list(unconfirmed), stats)
        pending = {}
        for user, why in unconfirmed.items():
            decision = decide(state, now.get(user, ABSENT))
            previous = writes[user]
            if isinstance(decision, Write):
                if why == "silent" and decision is previous:
                    detail = (
                        adapter.unconfirmed_detail
                        or f"the platform answered but did not {decision.value} them"
                    )
                    results[user] = PersonResult(Status.FAILED, detail, adapter.unconfirmed_code)
                else:
                    pending[user] = decision  # lost: send again; or another write is needed now
            elif decision.status is Status.FAILED or why == "absent":
                results[user] = decision
            else:  # our write took effect although its reply did not say so (or was lost)
                detail = "confirmed by a look-up after a lost reply" if why == "lost" else ""
                results[user] = PersonResult(_DONE[previous], detail)
        if not pending:
            return results
        writes = {**writes, **pending}
        log.warning(
            "%s: %d write(s) not confirmed; sending again after a look-up", adapter.platform, len(pending)
        )
    raise TransientPlatformError(
        f"{adapter.platform}: {len(pending)} write(s) to {group} not confirmed after {MAX_ROUNDS} rounds"
    )


def _by_write(pending: Mapping[str, Write]) -> dict[Write, list[str]]:
    grouped: dict[Write, list[str]] = {}
    for user, write in pending.items():
        grouped.setdefault(write, []).append(user)
    return grouped


def _send_all(
    adapter: MembershipAdapter, write: Write, group: str, users: list[str], request: InviteRequest
) -> tuple[dict[str, PersonResult], list[str]]:
    """One write for ``users`` in chunks (``write_concurrency`` at a time): answers, and who got no reply."""
    size = {
        Write.INVITE: adapter.invite_batch_size,
        Write.CANCEL: adapter.cancel_batch_size,
        Write.REMOVE: adapter.remove_batch_size,
    }[write]
    chunks = list(_chunks(users, size))
    progress = _Progress(adapter.platform, len(users))
    answered: dict[str, PersonResult] = {}
    lost: list[str] = []

    def one(chunk: list[str]) -> tuple[list[str], dict[str, PersonResult] | None]:
        with phase("write"):
            return chunk, _send(adapter, write, group, chunk, request)

    def collect(chunk: list[str], got: dict[str, PersonResult] | None) -> None:
        if got is None:
            lost.extend(chunk)
        else:
            answered.update((u, r) for u, r in got.items() if u in chunk)
        progress.add(len(chunk))

    workers = max(1, min(adapter.write_concurrency, len(chunks)))
    if workers == 1:  # in the task's own thread
        for chunk in chunks:
            collect(*one(chunk))
        return answered, lost
    with ThreadPoolExecutor(workers, thread_name_prefix=f"{write.value}-{adapter.platform}") as pool:
        futures = [pool.submit(one, chunk) for chunk in chunks]
        try:
            for future in as_completed(futures):
                collect(*future.result())
        finally:
            for future in futures:
                future.cancel()
    return answered, lost


def _send(
    adapter: MembershipAdapter, write: Write, group: str, users: list[str], request: InviteRequest
) -> dict[str, PersonResult] | None:
    """One write request's results, or None when its reply was lost (it may have been applied)."""
    calls: dict[Write, Callable[[], Mapping[str, PersonResult]]] = {
        Write.INVITE: lambda: adapter.send_invites(group, users, request),
        Write.CANCEL: lambda: adapter.cancel_invites(group, users),
        Write.REMOVE: lambda: adapter.remove_members(group, users),
    }
    try:
        return dict(_guarded(calls[write], adapter, maybe_applied=True))
    except PersonRefused as refused:
        # a batch refused because someone in it is not there (which one, the reply may not say):
        # ALREADY_ABSENT is never taken on trust, so everyone in it is looked up again
        if len(users) != 1 and refused.status is not Status.ALREADY_ABSENT:
            raise
        return dict.fromkeys(users, PersonResult(refused.status, str(refused), refused.code))
    except TransientPlatformError as exc:
        if not exc.maybe_applied:
            raise
        log.warning(
            "%s: no usable reply to a %s of %d people (%s); looking again before anything is re-sent",
            adapter.platform,
            write.value,
            len(users),
            exc,
        )
        return None


K = TypeVar("K")
V = TypeVar("V")


def _guarded(
    call: Callable[[], Mapping[K, V]], adapter: MembershipAdapter, *, maybe_applied: bool
) -> Mapping[K, V]:
    """``call()``, with a reply of an unexpected shape turned into a clear, retryable error."""
    try:
        return call()
    except InviteInputError:
        raise
    except _SHAPE_ERRORS as exc:
        raise TransientPlatformError(
            f"{adapter.platform}: a reply of an unexpected shape ({type(exc).__name__}: {str(exc)[:100]})",
            maybe_applied=maybe_applied,
        ) from exc


class _Progress:
    """Logs progress of big batches about ten times."""

    def __init__(self, platform: str, total: int) -> None:
        self.platform = platform
        self.total = total
        self.done = 0
        self.step = max(100, total // 10)
        self.next_log = self.step

    def add(self, count: int) -> None:
        self.done += count
        if self.done >= self.next_log and self.done < self.total:
            log.info("%s: %d of %d people handled", self.platform, self.done, self.total)
            self.next_log += self.step


T = TypeVar("T")


def _chunks(items: Sequence[T], size: int) -> Iterable[list[T]]:
    size = max(1, size)
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


__all__ = [
    "MassRemovalRefused",
    "Person",
    "Prepared",
    "RunStats",
    "State",
    "Write",
    "apply_prepared",
    "apply_state",
    "as_user_list",
    "decide",
    "invite_people",
    "parse_bool",
    "parse_people",
    "parse_person",
    "prepare",
    "remove_people",
    "validate",
]
