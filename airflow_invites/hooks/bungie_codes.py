"""Bungie.net's codes and rules as data: what each ``ErrorCode`` means (for the Platform API, for the endpoints
where a code means something else, for the OAuth token endpoint), the membership types, and which of
a Bungie Name's memberships is the one to act on.

Every Platform reply is an envelope ``{"Response", "ErrorCode", "ErrorStatus", "Message",
"ThrottleSeconds"}``; errors come with a non-200 status, 500 by default, so the code decides, never
the status alone. Sources: https://bungie-net.github.io/multi/schema_Exceptions-PlatformErrorCodes.html
and https://github.com/Bungie-net/api/wiki/OAuth-Documentation.
"""

from __future__ import annotations

import re
from typing import Any, cast

from airflow_invites.core import replies as r
from airflow_invites.core.adapter import Presence, Resolution
from airflow_invites.core.credentials import oauth_errors
from airflow_invites.core.outcome import Status
from airflow_invites.core.replies import ErrorTable, MessageRule

THROTTLED = 51  # PerEndpointRequestThrottleExceeded: what a reply with ThrottleSeconds > 0 is read as
POTENTIAL_INVITEE = 2  # GroupPotentialMemberStatus.Invitee
FOUNDER = 5  # RuntimeGroupMemberType.Founder: Bungie lets nobody kick them
RESCINDED = 3  # GroupApplicationResolveState.Rescinded: IndividualInviteCancel's answer
#: Destiny platforms a clan invite may name (BungieMembershipType)
INVITABLE_TYPES = {"TigerXbox": 1, "TigerPsn": 2, "TigerSteam": 3, "TigerEgs": 6}
TYPE_ALIASES = {"xbox": 1, "psn": 2, "playstation": 2, "steam": 3, "egs": 6, "epic": 6}
#: types that exist but cannot be invited, with the reason
NOT_INVITABLE = {
    0: "None is not a platform",
    4: "TigerBlizzard accounts moved to Steam in 2019: use the Steam membership (3)",
    5: "TigerStadia ended in 2023: use the account's cross-save platform",
    10: "TigerDemon is an internal platform",
    20: "GoliathGame is not a Destiny platform",
    254: "BungieNext is the Bungie.net account, not a Destiny membership",
}
REAUTHORISE = (
    "Re-authorise this connection: have a clan founder open the app's Authorize URL, exchange the code "
    "for a refresh token and put it in the connection's refresh_token field (see "
    "docs/connections/bungie.md)."
)
_KEY = "Check the connection's api_key and the application at https://www.bungie.net/en/Application"
_FAILED, _MEMBER, _GONE = Status.FAILED, Presence.MEMBER, Presence.NOT_FOUND

#: ErrorCode -> what it means. The one place Bungie's envelope errors are interpreted.
ERRORS = ErrorTable(
    "bungie",
    codes={
        99: r.expired("not signed in (WebAuthRequired)"),
        22: r.expired("token not accepted (WebAuthModuleAsyncFailed)"),
        2111: r.expired("access token expired"),
        2115: r.expired("access token not valid"),
        **dict.fromkeys(range(2117, 2122), r.credentials(f"the authorisation is not valid. {REAUTHORISE}")),
        2122: r.credentials(f"the authorisation code is stale. {REAUTHORISE}"),
        2123: r.credentials(f"the authorisation expired (consent ends after about a year). {REAUTHORISE}"),
        2124: r.credentials(f"the authorisation was revoked by the user. {REAUTHORISE}"),
        2101: r.credentials(f"the API key is invalid or disabled. {_KEY}"),
        2102: r.credentials(f"the API key is missing from the request. {_KEY}"),
        2107: r.credentials(f"the Origin header does not match the API key's settings. {_KEY}"),
        2108: r.credentials(f"the application lacks the AdminGroups scope. {_KEY}"),
        **dict.fromkeys((31, 35, 36, 37, THROTTLED, 54, 55, 56, 57, 694, 1672), r.throttle("throttled")),
        3: r.transient("Bungie-side error (UnhandledException)"),
        5: r.transient("Bungie is down for maintenance (SystemDisabled)", applied=False),
        1618: r.transient("Destiny unexpected error"),
        1626: r.transient("Destiny internal error"),
        1643: r.transient("Destiny service failure"),
        **dict.fromkeys(
            (676, 642, 632),
            r.person(Status.ALREADY_MEMBER, "already a member of this clan", presence=_MEMBER),
        ),
        695: r.person(_FAILED, "the player's privacy settings refuse clan invitations"),
        623: r.person(_FAILED, "banned from this clan", presence=Presence.BLOCKED),
        1601: r.person(_FAILED, "no Destiny account with this membership type and id", presence=_GONE),
        630: r.person(_FAILED, "no Destiny account on a platform this clan allows"),
        608: r.person(_FAILED, "membership id not valid", presence=_GONE),
        609: r.person(_FAILED, "membership type not valid", presence=_GONE),
        8: r.person(_FAILED, "membership type or id outside the valid range", presence=_GONE),
        7: r.person(_FAILED, "membership type or id could not be parsed", presence=_GONE),
        611: r.person(_FAILED, "membership not found (does the type match the id?)", presence=_GONE),
        **dict.fromkeys((667, 629), r.group("the clan is full")),
        12: r.group(
            "the connection's account may not invite into this clan (Founder or ActingFounder, or an Admin "
            "when the founder enabled invitePermissionOverride)"
        ),
        603: r.group("the connection's account lacks privileges in this clan"),
        687: r.group("the connection's account's clan rank does not permit inviting"),
        686: r.group("clan not found"),
        622: r.group("group not found"),
        607: r.group("group id not valid"),
        654: r.group("the clan is not enabled for this platform"),
    },
    throttle_wait=1.0,
    unlisted=r.group("Bungie refused the call"),
)
#: Kick: "not a member" is 611 GroupMembershipNotFound (688 ClanMemberNotFound also exists)
KICK_ERRORS = ERRORS.extend(
    codes={
        **dict.fromkeys((611, 688), r.person(Status.ALREADY_ABSENT, "not a member of this clan")),
        12: r.group("the connection's account may not remove members of this clan (Admin or above)"),
        687: r.person(_FAILED, "the connection's clan rank does not permit removing this member"),
    }
)
CANCEL_ERRORS = ERRORS.extend(
    codes={12: r.group("the connection's account may not withdraw this clan's invitations (Admin or above)")}
)
#: SearchDestinyPlayerByBungieName: an unknown name is an empty list, or 217 UserCannotResolveCentralAccount
SEARCH_ERRORS = ERRORS.extend(
    codes={217: r.person(_FAILED, "no Bungie.net account has this Bungie Name", presence=_GONE)}
)
#: the token endpoint: plain JSON with RFC 6749 errors, or a Platform envelope (throttle, maintenance)
TOKEN_ERRORS = oauth_errors("bungie").extend(
    codes={
        **cast("dict[str | int, r.Rule]", ERRORS.codes),
        "invalid_client": r.credentials(
            "the OAuth client id/secret were refused (invalid_client): check the connection's login "
            "(client_id) and password (client_secret)"
        ),
    },
    messages=[
        MessageRule("SystemDisabled", r.transient("Bungie is down for maintenance", applied=False)),
        MessageRule(
            "client_id", r.credentials("the OAuth client_id was refused: check the connection's login")
        ),
        # a spent, unknown, revoked or expired refresh token: invalid_request or server_error, not invalid_grant
        MessageRule("", r.token_refused(), http_status=400),
    ],
    statuses={200: r.transient("the token endpoint answered 200 without an access_token")},
)


def membership_type(text: str) -> int | None:
    """A Destiny membership type a clan may invite, by number or name (``3``, ``TigerSteam``, ``steam``)."""
    if text.isdigit():
        number = int(text)
        return number if number in INVITABLE_TYPES.values() else None
    lowered = text.lower()
    for name, number in INVITABLE_TYPES.items():
        if lowered in (name.lower(), name.lower().removeprefix("tiger")):
            return number
    return TYPE_ALIASES.get(lowered)


def choose_membership(cards: list[dict[str, Any]]) -> Resolution:
    """The cross-save primary (its type is every card's ``crossSaveOverride``), else the only card."""
    chosen = [
        c for c in cards if c.get("crossSaveOverride") and c.get("membershipType") == c["crossSaveOverride"]
    ]
    chosen = chosen or cards
    if not chosen:
        return Resolution.not_found()
    if len(chosen) > 1:
        types = ", ".join(sorted(str(c.get("membershipType")) for c in chosen))
        return Resolution.ambiguous(
            len(chosen),
            f"this Bungie Name has {len(chosen)} Destiny memberships (types {types}) and no cross-save primary",
        )
    card = chosen[0]
    user = f"{card.get('membershipType')}:{card.get('membershipId')}"
    if card.get("membershipType") not in INVITABLE_TYPES.values():
        return Resolution.not_found(
            f"its only Destiny membership, {user}, is on a platform clans no longer take"
        )
    return Resolution.found(user)


CLIENT_ID_RE = re.compile(r"[1-9][0-9]{0,9}")
API_KEY_RE = re.compile(r"[A-Za-z0-9]{16,64}")
ANY_RE = re.compile(r".+", re.DOTALL)
#: connection fields checked before any request: (where, shape, what is expected)
SETTINGS = {
    "api_key": (
        "extra",
        API_KEY_RE,
        "the X-API-Key of your application (https://www.bungie.net/en/Application)",
    ),
    "refresh_token": (
        "extra",
        ANY_RE,
        "the first OAuth refresh token of a founder/admin (AdminGroups scope)",
    ),
    "login": ("field", CLIENT_ID_RE, "the application's OAuth client_id (digits)"),
    "password": (
        "field",
        ANY_RE,
        "the OAuth client_secret of a Confidential application (they get refresh tokens)",
    ),
}
#: a Bungie Name: the global display name, ``#`` and its numeric code (shown with 4 digits)
BUNGIE_NAME_RE = re.compile(r"(?P<name>[^#]+)#(?P<code>[0-9]{1,4})")
