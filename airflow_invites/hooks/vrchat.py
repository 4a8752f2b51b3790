"""VRChat groups: look-ups, invites, removals and display names, with VRChat's error table.

The sign-in (User-Agent, Basic login with TOTP, cookies kept between tasks) is ``VRChatSignIn``;
this is the adapter. Every write names one person.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import requests

from airflow_invites.core import errors as err
from airflow_invites.core.adapter import Handle, InviteRequest, PersonResult, Presence, Resolution, UserState
from airflow_invites.core.outcome import Status
from airflow_invites.core.replies import ErrorTable, MessageRule, credentials, group, person, read_reply
from airflow_invites.hooks.vrchat_signin import (
    SESSION_TOKEN,
    VRChatSignIn,
    error_message,
    normalise_message,
)
from airflow_invites.platforms import PLATFORMS

__all__ = ["SESSION_TOKEN", "VRChatHook", "error_message", "normalise_message"]

SPEC = PLATFORMS["vrchat"]
PAGE = 100  # the largest ``n`` VRChat accepts, for group listings and the user search
SEARCH_PAGES = 10  # a name search reads at most this many pages; a name matching more is not resolved
#: what the bot's role needs in the group for each write ("*", the owner's role, has all); inviting
#: needs the bans too: an invite lifts a ban, so banned people must be seen first
NEEDS = {
    "invite": ("group-invites-manage", "group-bans-manage"),
    "cancel": ("group-invites-manage",),
    "remove": ("group-members-remove",),
}
#: listing a group beats asking per person only with these: without ``group-members-viewall``,
#: ``/members`` shows only the bot's friends, so someone missing from it may still be a member
LISTING_NEEDS = ("group-members-viewall", "group-invites-manage", "group-bans-manage")
#: relations a per-person look-up acts on; others (requested, left...) leave the person invitable
RELATIONS_THAT_COUNT = {"member", "invited", "banned", "userblocked"}
TOO_MANY_SESSIONS = (
    "VRChat refuses new logins for this account for now (created too many sessions): do not retry for 30 "
    "minutes to hours, and check that nothing else logs in with this account (sessions are kept between runs)"
)
NOT_IN_GROUP = "the bot account is not a member of this group"
NO_PERMISSION = "the bot account's role lacks a permission here"
WAF = "VRChat's firewall refused the User-Agent; set the connection's extra user_agent to 'name/version contact'"
#: one person's outcome, by (HTTP status, part of the normalised message): status, our code, meaning,
#: and what a look-up naming them learns (None: no such person)
PERSON_REPLIES = {
    (400, "already a member"): (Status.ALREADY_MEMBER, "already-member", "already a member", Presence.MEMBER),
    (400, "already invited"): (Status.ALREADY_INVITED, "already-invited", "invite pending", Presence.INVITED),
    (400, "can't uninvite"): (Status.ALREADY_ABSENT, "not-invited", "no pending invitation", None),
    (403, "can't invite"): (
        Status.FAILED,
        "cannot-invite",
        "VRChat refuses to invite them",
        Presence.BLOCKED,
    ),
    (403, "too many groups"): (Status.FAILED, "too-many-groups", "in too many groups", None),
    (404, "user not found"): (Status.FAILED, "user-not-found", "no such VRChat user", None),
}
#: refusals of the whole call, by (HTTP status, part of the normalised message): our code, meaning
GROUP_REPLIES = {
    (404, "group"): ("group-not-found", "group not found"),
    (403, "not a member"): ("not-a-member", NOT_IN_GROUP),
    (403, "permission"): ("no-permission", NO_PERMISSION),
    (403, "not allowed"): ("no-permission", NO_PERMISSION),
}
#: what VRChat's replies mean (messages normalised: look-alike punctuation, JSON quotes); first match wins
ERRORS = ErrorTable(
    "vrchat",
    codes={13799: group(WAF, code="user-agent-refused")},  # the firewall's ``waf_code``
    messages=[
        *(
            MessageRule(text, person(status, why, presence=seen, code=code), http)
            for (http, text), (status, code, why, seen) in PERSON_REPLIES.items()
        ),
        *(
            MessageRule(text, group(why, code=code), http)
            for (http, text), (code, why) in GROUP_REPLIES.items()
        ),
        MessageRule("too many sessions", credentials(TOO_MANY_SESSIONS), 429),
    ],
    throttle_wait=60.0,  # no Retry-After on a 429: VRChat asks clients to back off for a minute
)
#: on ``DELETE /groups/{id}/members/{userId}``, "not a member" is about the person named
REMOVE_ERRORS = ERRORS.extend(
    messages=[
        MessageRule("not a member", person(Status.ALREADY_ABSENT, "not a member", code="not-a-member"), 403),
        MessageRule("owner", person(Status.FAILED, "VRChat keeps the group's owner", code="protected"), 403),
    ]
)


def name_key(display_name: str) -> str:
    """What two display names must share to be the same: the text, ignoring case (as VRChat's search)."""
    return unicodedata.normalize("NFC", display_name).strip().casefold()


@dataclass(frozen=True)
class GroupFacts:
    """What ``GET /groups/{id}`` says that the look-up and the writes need."""

    owner: str
    me: str
    permissions: frozenset[str]
    member_count: int

    def grants(self, *permissions: str) -> bool:
        return "*" in self.permissions or self.permissions.issuperset(permissions)


class VRChatHook(VRChatSignIn):
    """VRChat API (``api/1``). Connection type ``vrchat``."""

    platform = "vrchat"
    conn_name_attr = "vrchat_conn_id"
    default_conn_name = "vrchat_default"
    conn_type = "vrchat"
    hook_name = "VRChat"
    default_host = "https://api.vrchat.cloud/api/1"
    errors = ERRORS
    # each write and search names one person: POST/DELETE .../invites[/{userId}], DELETE .../members/{userId}
    invite_batch_size = cancel_batch_size = remove_batch_size = resolve_batch_size = 1
    can_cancel_invites = can_remove_members = True
    unconfirmed_detail = "VRChat answered 200, but a new look-up does not show the change"
    adaptive_rate = (2.0, 4)  # VRChat publishes no limit and asks for gentle clients: start slow, learn
    write_concurrency = 4  # round trips overlap; the pacer keeps the rate

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(conn_id, **kwargs)
        self._groups: dict[str, GroupFacts] = {}

    # -- input -----------------------------------------------------------------------------------

    def normalize_group(self, group: object) -> str:
        if not isinstance(group, str) or not SPEC.group_re.fullmatch(group.strip()):
            raise err.InviteInputError("group", "a VRChat group id: grp_<lower-case uuid>", group)
        return group.strip()

    def normalize_user(self, user: object) -> str:
        if not isinstance(user, str) or not SPEC.user_re.fullmatch(user.strip()):
            expected = "VRChat user ids: usr_<lower-case uuid> or a legacy 10-character id"
            raise err.InviteInputError("users", expected, user)
        return user.strip()

    def normalize_request(self, request: InviteRequest) -> InviteRequest:
        override = request.extra.get("confirm_override_block", False)
        if not isinstance(override, bool):
            raise err.InviteInputError("confirm_override_block", "true or false", override)
        return InviteRequest(message=None, extra={"confirm_override_block": override})

    # -- reads -----------------------------------------------------------------------------------

    def resolve(self, handles: Sequence[Handle]) -> Mapping[Handle, Resolution]:
        """``name:`` through ``GET /users?search=`` (fuzzy): the exact display names, ignoring case."""
        [handle] = handles
        wanted, ids, more = name_key(handle.value), dict[str, None](), ""
        for number, page in enumerate(self._pages("users", search=handle.value), 1):
            ids.update((_user_id(u), None) for u in page if name_key(u.get("displayName") or "") == wanted)
            if number == SEARCH_PAGES and len(page) == PAGE:  # more pages follow: other matches may too
                more = f" among the first {SEARCH_PAGES * PAGE:,} accounts VRChat's search lists; more follow"
                break
        if len(ids) == 1 and not more:
            return {handle: Resolution.found(next(iter(ids)))}
        if ids:
            why = f"{len(ids)} VRChat account(s) have this display name{more}"
            return {handle: Resolution.ambiguous(max(len(ids), 2), why)}
        return {handle: Resolution.not_found(f"no VRChat account has this display name{more}")}

    def lookup(self, group: str, users: Sequence[str]) -> Mapping[str, UserState]:
        """The group (is the bot in it, owner, permissions), then each person or the listings, by cost."""
        facts = self._group_facts(group)
        others = [user for user in users if user != facts.me]
        listing_cost = -(-facts.member_count // PAGE) + 2  # + the invites and bans pages
        if len(others) < listing_cost or not facts.grants(*LISTING_NEEDS):
            found = self._lookup_each(group, others)
        else:
            found = self._listed(group, ("members", "invites", "bans"), set(others))
        return _protect(found, facts, me=len(others) < len(users))

    def list_group(self, group: str) -> Mapping[str, UserState]:
        """Members and pending invitations; only for a bot that VRChat shows every member."""
        facts = self._group_facts(group)
        if not facts.grants(*LISTING_NEEDS):
            why = f"vrchat: the bot account's role needs {list(LISTING_NEEDS)} here to see every member"
            raise err.PermanentPlatformError(why, code="no-permission")
        return _protect(self._listed(group, ("members", "invites"), None), facts, me=True)

    def _group_facts(self, group: str) -> GroupFacts:
        info = self.call("GET", f"groups/{group}")
        mine = info.get("myMember") or {}
        if mine.get("membershipStatus") != "member":
            raise err.PermanentPlatformError(f"vrchat: {NOT_IN_GROUP}", code="not-a-member")
        permissions, count = frozenset(mine.get("permissions") or []), int(info.get("memberCount") or 0)
        self._groups[group] = GroupFacts(str(info["ownerId"]), str(mine["userId"]), permissions, count)
        return self._groups[group]

    def _lookup_each(self, group: str, users: Sequence[str]) -> dict[str, UserState]:
        """``GET /groups/{id}/members/{userId}`` per person: any relation (member, invited, banned) or null."""
        found: dict[str, UserState] = {}
        for user in users:
            try:
                record = self.call("GET", f"groups/{group}/members/{user}", person=True)
            except err.PersonRefused as refused:  # e.g. 404 for an id no account has
                found[user] = UserState(refused.presence or Presence.NOT_FOUND, str(refused), refused.code)
                continue
            if isinstance(record, dict) and record.get("membershipStatus") in RELATIONS_THAT_COUNT:
                found[user] = _state("member", record)
        return found

    def _listed(self, group: str, listings: Sequence[str], wanted: set[str] | None) -> dict[str, UserState]:
        """Who the listings show, page by page, until everyone ``wanted`` is found (None: everyone)."""
        found: dict[str, UserState] = {}
        for listing in listings:
            for page in self._pages(f"groups/{group}/{listing}"):
                for item in page:
                    user = str(item.get("userId") or "")
                    if user and (wanted is None or user in wanted) and user not in found:
                        found[user] = _state(listing, item)
                if wanted is not None and wanted <= found.keys():
                    return found
        return found

    def _pages(self, path: str, **params: str) -> Iterator[list[dict[str, Any]]]:
        """The pages of a listing or search, ``n=100`` each (a short page is the last one)."""
        offset = 0
        while True:
            page = self.call("GET", path, params={**params, "n": PAGE, "offset": offset})
            if not isinstance(page, list):
                raise err.TransientPlatformError(f"vrchat: {path.rsplit('/', 1)[-1]} answered no list")
            yield [item for item in page if isinstance(item, dict)]
            if len(page) < PAGE:
                return
            offset += len(page)

    # -- writes ----------------------------------------------------------------------------------

    def send_invites(
        self, group: str, users: Sequence[str], request: InviteRequest
    ) -> dict[str, PersonResult]:
        [user] = users
        body = {"userId": user, "confirmOverrideBlock": bool(request.extra.get("confirm_override_block"))}
        self._write("invite", group, "POST", "invites", json=body)
        return {user: PersonResult(Status.INVITED)}

    def cancel_invites(self, group: str, users: Sequence[str]) -> dict[str, PersonResult]:
        """``DELETE /groups/{id}/invites/{userId}``; "wasn't invited" is ALREADY_ABSENT (checked again)."""
        [user] = users
        self._write("cancel", group, "DELETE", f"invites/{user}")
        return {user: PersonResult(Status.INVITE_CANCELLED)}

    def remove_members(self, group: str, users: Sequence[str]) -> dict[str, PersonResult]:
        """``DELETE /groups/{id}/members/{userId}``; the look-up keeps the owner and the bot from here."""
        [user] = users
        self._write("remove", group, "DELETE", f"members/{user}", errors=REMOVE_ERRORS)
        return {user: PersonResult(Status.REMOVED)}

    def _write(
        self, write: str, group: str, method: str, path: str, errors: ErrorTable = ERRORS, **kw: Any
    ) -> None:
        """A write about one person in ``group``, once the bot's role may (else a refusal naming the
        permission); any 2xx is done (VRChat may answer an empty body); else ``errors`` say what it is."""
        facts = self._groups.get(group) or self._group_facts(group)
        for permission in NEEDS[write]:
            if not facts.grants(permission):
                why = f"vrchat: the bot account's role lacks '{permission}' in this group"
                raise err.PermanentPlatformError(why, code="no-permission")

        def check(response: requests.Response) -> None:
            if not 200 <= response.status_code < 300:
                reply = read_reply(response, self.platform, self.read_envelope, write=True)
                errors.interpret(reply, write=True, person=True)

        self.call(method, f"groups/{group}/{path}", check=check, write=True, **kw)

    def group_url(self, group: str) -> str | None:
        return f"https://vrchat.com/home/group/{group}"


def _state(listing: str, member: Mapping[str, Any]) -> UserState:
    status = member.get("membershipStatus")
    if listing == "bans" or status == "banned":
        return UserState(Presence.BLOCKED, "banned: not invited (an invite would lift the ban)", "banned")
    if status == "userblocked":
        return UserState(Presence.BLOCKED, "the user blocked this group", "userblocked")
    return UserState(Presence.INVITED if listing == "invites" or status == "invited" else Presence.MEMBER)


def _protect(found: dict[str, UserState], facts: GroupFacts, *, me: bool) -> dict[str, UserState]:
    """The look-up's states, with the owner and (if asked about) the bot's own account never removed."""
    if me:
        found[facts.me] = UserState(Presence.MEMBER, protected="the connection's own account")
    owner = found.get(facts.owner)
    if owner is not None and owner.presence is Presence.MEMBER:
        found[facts.owner] = replace(owner, protected="the group's owner")
    return found


def _user_id(found: Mapping[str, Any]) -> str:
    """A search result's id; one of another shape is a reply we do not understand (no guess)."""
    if not SPEC.user_re.fullmatch(user := str(found.get("id", ""))):
        raise ValueError("the user search answered an id of an unexpected shape")
    return user
