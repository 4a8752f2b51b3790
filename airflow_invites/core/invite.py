"""The one invite algorithm: validate -> look up -> decide -> invite -> classify -> report."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from airflow_invites.core.adapter import (
    ABSENT,
    InviteAdapter,
    InviteRequest,
    InviteResult,
    Presence,
    UserState,
)
from airflow_invites.core.errors import (
    InviteInputError,
    PermanentPlatformError,
    PlatformAuthError,
    TransientPlatformError,
)
from airflow_invites.core.outcome import InviteOutcome, Status

log = logging.getLogger(__name__)

#: how often one chunk is re-checked and re-sent after replies that were lost
MAX_AMBIGUOUS_ROUNDS = 5

#: what an adapter raises on a reply of a shape it did not expect (a proxy's JSON, a changed API)
_SHAPE_ERRORS = (KeyError, IndexError, TypeError, AttributeError, ValueError)

_FROM_PRESENCE = {
    Presence.MEMBER: Status.ALREADY_MEMBER,
    Presence.INVITED: Status.ALREADY_INVITED,
    Presence.BLOCKED: Status.FAILED,
}


def as_user_list(users: object) -> list[object]:
    """One id, a comma-separated string, or a list of ids -> a list (no validation of the ids)."""
    if isinstance(users, str):
        return [part.strip() for part in users.split(",")] if "," in users else [users]
    if isinstance(users, int) and not isinstance(users, bool):
        return [users]
    if isinstance(users, (list, tuple)):
        return list(users)
    raise InviteInputError("users", "a person's id or a list of ids", users)


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


def validate(
    adapter: InviteAdapter, group: object, users: object, request: InviteRequest
) -> tuple[str, list[str], InviteRequest]:
    """Every input checked before any request; the first bad one raises ``InviteInputError``."""
    group_id = adapter.normalize_group(group)
    raw = as_user_list(users)
    if not raw:
        raise InviteInputError("users", "at least one person's id", users)
    ids: list[str] = []
    for user in raw:
        user_id = adapter.normalize_user(user)
        if user_id in ids:
            raise InviteInputError("users", "each person once (duplicate id)", user_id)
        ids.append(user_id)
    return group_id, ids, adapter.normalize_request(request)


def invite_people(
    adapter: InviteAdapter,
    group: object,
    users: object,
    *,
    request: InviteRequest | None = None,
    dry_run: bool = False,
) -> list[InviteOutcome]:
    """Invite ``users`` into ``group`` so that each ends up a member or invited, exactly once."""
    group_id, ids, req = validate(adapter, group, users, request or InviteRequest())
    results: dict[str, InviteResult] = {}
    try:
        state = _lookup(adapter, group_id, ids)
    except (PermanentPlatformError, PlatformAuthError) as exc:
        failed = InviteResult(Status.FAILED, str(exc), exc.code)
        return [
            InviteOutcome(adapter.platform, group_id, u, failed.status, failed.detail, failed.code)
            for u in ids
        ]
    to_invite: list[str] = []
    for user in ids:
        current = state.get(user, ABSENT)
        if current.presence is Presence.ABSENT:
            to_invite.append(user)
        else:
            results[user] = InviteResult(_FROM_PRESENCE[current.presence], current.detail, current.code)
    if dry_run:
        results.update((u, InviteResult(Status.WOULD_INVITE, "dry run: no request sent")) for u in to_invite)
    elif to_invite:
        results.update(_invite_all(adapter, group_id, to_invite, req))
    return [
        InviteOutcome(adapter.platform, group_id, u, results[u].status, results[u].detail, results[u].code)
        for u in ids
    ]


def _invite_all(
    adapter: InviteAdapter, group: str, to_invite: list[str], request: InviteRequest
) -> dict[str, InviteResult]:
    """Invite everyone absent, chunk by chunk (``invite_concurrency`` chunks at a time)."""
    chunks = list(_chunks(to_invite, adapter.invite_batch_size))
    results: dict[str, InviteResult] = {}
    progress = _Progress(adapter.platform, len(to_invite))
    workers = max(1, min(adapter.invite_concurrency, len(chunks)))
    try:
        if workers == 1:  # in the task's own thread
            for chunk in chunks:
                chunk_results = _invite_chunk(adapter, group, chunk, request)
                results.update(chunk_results)
                progress.add(len(chunk_results))
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix=f"invite-{adapter.platform}") as pool:
                futures = [pool.submit(_invite_chunk, adapter, group, chunk, request) for chunk in chunks]
                try:
                    for future in as_completed(futures):
                        chunk_results = future.result()
                        results.update(chunk_results)
                        progress.add(len(chunk_results))
                finally:
                    for future in futures:
                        future.cancel()
    except (PermanentPlatformError, PlatformAuthError) as exc:
        # a refusal of the whole call (group gone, no permission): nobody left can be invited
        failed = InviteResult(Status.FAILED, str(exc), exc.code)
        results.update((u, failed) for u in to_invite if u not in results)
    return results


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


def _invite_chunk(
    adapter: InviteAdapter, group: str, chunk: list[str], request: InviteRequest
) -> dict[str, InviteResult]:
    """Invite one chunk; after a lost reply look again and re-send only to those still absent."""
    results: dict[str, InviteResult] = {}
    remaining = chunk
    for _round in range(MAX_AMBIGUOUS_ROUNDS):
        try:
            results.update(_send(adapter, group, remaining, request))
            return results
        except TransientPlatformError as exc:
            if not exc.maybe_applied:
                raise
            log.warning(
                "%s: no usable reply to an invite of %d people (%s); looking again before re-sending",
                adapter.platform,
                len(remaining),
                exc,
            )
        state = _lookup(adapter, group, remaining)
        still_absent = []
        for user in remaining:
            current: UserState = state.get(user, ABSENT)
            if current.presence is Presence.ABSENT:
                still_absent.append(user)
            elif current.presence is Presence.BLOCKED:
                results[user] = InviteResult(Status.FAILED, current.detail, current.code)
            else:  # our invite took effect although its reply was lost
                results[user] = InviteResult(Status.INVITED, "confirmed by a look-up after a lost reply")
        if not still_absent:
            return results
        remaining = still_absent
    raise TransientPlatformError(
        f"{adapter.platform}: invites to {len(remaining)} people got no usable reply "
        f"{MAX_AMBIGUOUS_ROUNDS} times in a row"
    )


def _lookup(adapter: InviteAdapter, group: str, users: list[str]) -> dict[str, UserState]:
    try:
        return dict(adapter.lookup(group, users))
    except InviteInputError:
        raise
    except _SHAPE_ERRORS as exc:
        raise _unexpected_shape(adapter, exc, maybe_applied=False) from exc


def _send(
    adapter: InviteAdapter, group: str, users: list[str], request: InviteRequest
) -> dict[str, InviteResult]:
    try:
        return dict(adapter.send_invites(group, users, request))
    except InviteInputError:
        raise
    except _SHAPE_ERRORS as exc:  # the invite may have been applied: look again before re-sending
        raise _unexpected_shape(adapter, exc, maybe_applied=True) from exc


def _unexpected_shape(
    adapter: InviteAdapter, exc: Exception, *, maybe_applied: bool
) -> TransientPlatformError:
    """A clear, retryable error instead of a crash when a reply is not what the platform sends."""
    return TransientPlatformError(
        f"{adapter.platform}: a reply of an unexpected shape ({type(exc).__name__}: {str(exc)[:100]})",
        maybe_applied=maybe_applied,
    )


def _chunks(items: Sequence[str], size: int) -> Iterable[list[str]]:
    size = max(1, size)
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
