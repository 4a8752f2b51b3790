"""Bungie.net Platform API (GroupV2 clans + OAuth), as ``shared/platforms/bungie.md`` describes it.

Served under ``/bungie``: ``/bungie/Platform/GroupV2/{groupId}/Members/IndividualInvite/...`` etc.
Every /Platform reply is the platform envelope; errors come with a non-200 status (500 by
default, 429 for throttles, 503 for maintenance). The token endpoint answers plain JSON.
Inferred behaviour (marked [I] in the notes) is kept in the tables at the top of this file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import random
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from airflow_invites.sandbox.core import FixedWindowLimiter, PlatformEnv, SandboxPlatform

ACCESS_TOKEN_LIFETIME_S = 3600
REFRESH_TOKEN_LIFETIME_S = 7_776_000
RATE_CALLS, RATE_WINDOW_S = 250, 10.0  # 25 requests/s averaged over 10 s, per client IP
INVITED_PAGE, MEMBERS_PAGE = 50, 100
MAX_CLAN_MEMBERS = 100
INT64_RE = re.compile(r"-?[0-9]{1,19}")
INT64_MAX = 2**63 - 1
DESTINY_TYPES = {1, 2, 3, 5, 6}  # the types a clan invite may name
TYPE_NAMES = {
    1: "TigerXbox",
    2: "TigerPsn",
    3: "TigerSteam",
    5: "TigerStadia",
    6: "TigerEgs",
    254: "BungieNext",
}
FOUNDER, ACTING_FOUNDER, ADMIN, MEMBER = 5, 4, 3, 2
EPOCH = datetime(2019, 10, 1, tzinfo=timezone.utc)

#: ErrorCode -> (ErrorStatus, Message). Texts marked [C] in the notes are Bungie's; others [I].
ERRORS: dict[int, tuple[str, str]] = {
    1: ("Success", "Ok"),
    3: ("UnhandledException", "We've encountered an error, please try again later."),
    5: ("SystemDisabled", "This system is temporarily disabled for maintenance."),
    7: ("ParameterParseFailure", "Unable to parse your parameters.  Please correct them, and try again."),
    8: (
        "ParameterInvalidRange",
        "One or more parameters are outside the range of valid values.  Please correct them, and try again.",
    ),
    12: ("InsufficientPrivileges", "You lack the privileges to read or write this data."),
    26: ("MissingPostBody", "A post body was expected but not found."),
    30: ("JsonDeserializationError", "The JSON in the request body could not be read."),
    51: ("PerEndpointRequestThrottleExceeded", "Too many platform requests per second."),
    99: ("WebAuthRequired", "Please sign-in to continue."),
    623: ("GroupMemberBanned", "The user is banned from this group."),
    667: ("ClanMaximumMembershipReached", "The Clan has reached its maximum number of members."),
    676: ("ClanInviteAlreadyMember", "The user is already a member of this Clan."),
    686: ("ClanNotFound", "The Clan could not be found."),
    695: ("ClanTargetDisallowsInvites", "The user does not accept Clan invitations."),
    1601: (
        "DestinyAccountNotFound",
        "We were unable to find your Destiny account information.  If you have a valid Destiny "
        "Account, let us know.",
    ),
    2101: ("ApiInvalidOrExpiredKey", "The given Platform API Key is invalid."),
    2102: ("ApiKeyMissingFromRequest", "An API key is required for this request."),
    2111: ("AccessTokenHasExpired", "Access token has expired."),
}
#: HTTP status of a non-Success envelope (500 unless listed)
ERROR_HTTP_STATUS = {5: 503, 51: 429}


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def envelope(
    code: int = 1,
    response: Any = None,
    *,
    throttle_seconds: int = 0,
    message_data: dict[str, str] | None = None,
) -> JSONResponse:
    """The Platform envelope; int64 values are strings in ``response`` already."""
    status, message = ERRORS[code]
    body: dict[str, Any] = {}
    if code == 1:
        body["Response"] = response
    body.update(
        ErrorCode=code,
        ThrottleSeconds=throttle_seconds,
        ErrorStatus=status,
        Message=message,
        MessageData=message_data or {},
    )
    return JSONResponse(body, status_code=200 if code == 1 else ERROR_HTTP_STATUS.get(code, 500))


def oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


@dataclass
class Account:
    """A Destiny account (one platform) and the Bungie.net account it belongs to."""

    membership_type: int
    membership_id: str
    name: str
    name_code: int
    bungie_id: str
    allows_invites: bool = True

    @property
    def key(self) -> str:
        return f"{self.membership_type}:{self.membership_id}"

    def destiny_info(self) -> dict[str, Any]:
        return {
            "LastSeenDisplayName": self.name,
            "LastSeenDisplayNameType": self.membership_type,
            "iconPath": "/img/theme/bungienet/icons/steamLogo.png",
            "crossSaveOverride": 0,
            "applicableMembershipTypes": [self.membership_type],
            "isPublic": True,
            "membershipType": self.membership_type,
            "membershipId": self.membership_id,
            "displayName": self.name,
            "bungieGlobalDisplayName": self.name,
            "bungieGlobalDisplayNameCode": self.name_code,
        }

    def bungie_info(self) -> dict[str, Any]:
        return {
            "supplementalDisplayName": f"{self.name}#{self.name_code:04d}",
            "iconPath": "/img/profile/avatars/default_avatar.gif",
            "crossSaveOverride": 0,
            "isPublic": False,
            "membershipType": 254,
            "membershipId": self.bungie_id,
            "displayName": self.name,
            "bungieGlobalDisplayName": self.name,
            "bungieGlobalDisplayNameCode": self.name_code,
        }


@dataclass
class Clan:
    group_id: str
    name: str
    founder: str  # account key
    created: datetime
    members: dict[str, tuple[int, datetime]] = field(default_factory=dict)  # key -> (memberType, joined)
    invited: dict[str, tuple[datetime, str]] = field(default_factory=dict)  # key -> (created, message)
    banned: set[str] = field(default_factory=set)
    maximum_members: int = MAX_CLAN_MEMBERS
    invite_permission_override: bool = False


@dataclass
class AccessToken:
    bungie_id: str
    expires: float  # time.monotonic()


class BungieSandbox(SandboxPlatform):
    name = "bungie"

    def reset(self) -> None:
        self.rng = random.Random("bungie-seed")
        self.clock = EPOCH
        self.api_key = self.rng.randbytes(16).hex()
        self.client_id = str(self.rng.randint(20000, 59999))
        self.client_secret = self._b64(32).rstrip("=")
        self.redirect_url = "https://airflow.example.test/bungie/callback"
        self.access_token_lifetime = ACCESS_TOKEN_LIFETIME_S
        self.accounts: dict[str, Account] = {}  # key -> account
        self.clans: dict[str, Clan] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        #: refresh tokens are self-contained and signed with a key derived from the seed, so a token
        #: printed by ``--print-env`` in another process is accepted; single use is enforced here
        self.token_key = hashlib.sha256(b"bungie-seed refresh tokens").digest()
        self.spent_refresh_tokens: set[str] = set()
        self.auth_codes: dict[str, str] = {}  # code -> bungie id (single use)
        self.revoked: set[str] = set()  # bungie ids whose consent was withdrawn
        self.issued: list[str] = []
        self.limiter = FixedWindowLimiter(RATE_CALLS, RATE_WINDOW_S)
        self.people_made = 0

        founder = self._account("Marc Anp", 3)
        self.founder_bungie_id = founder.bungie_id
        clan = self._clan("Airflow Invites", founder)
        self.group_id = clan.group_id
        for index, name in enumerate(("Grace Hopper", "Ken Thompson", "Barbara Liskov", "Edsger Dijkstra")):
            member = self._account(name, (1, 2, 3, 6)[index])
            clan.members[member.key] = (MEMBER, self._tick())
        self.admin = self._account("Rita Admin", 2)
        clan.members[self.admin.key] = (ADMIN, self._tick())
        self.newcomers = [
            self._account(name, (3, 1, 2, 6, 3, 3)[index]).key
            for index, name in enumerate(
                (
                    "Ada Lovelace",
                    "Alan Turing",
                    "Margaret Hamilton",
                    "Frances Allen",
                    "John Backus",
                    "Jean Bartik",
                )
            )
        ]
        banned = self._account("Mallory Banned", 3)
        clan.banned.add(banned.key)
        self.banned = banned.key
        private = self._account("Pat Private", 2, allows_invites=False)
        self.disallows_invites = private.key
        # a second clan of the same founder (other platform account), full at 100 members
        full = self._clan("Full House", self._account("Marc Anp", 1, bungie_id=founder.bungie_id))
        while len(full.members) < full.maximum_members:
            filler = self._account(f"Filler {len(full.members)}", 3)
            full.members[filler.key] = (MEMBER, self._tick())
        self.full_group_id = full.group_id

    # -- seeding ---------------------------------------------------------------------------------

    def _tick(self) -> datetime:
        self.clock += timedelta(hours=7, minutes=self.rng.randint(0, 59))
        return self.clock

    def _b64(self, size: int) -> str:
        return base64.b64encode(self.rng.randbytes(size)).decode()

    def _account(
        self, name: str, membership_type: int, *, bungie_id: str | None = None, allows_invites: bool = True
    ) -> Account:
        while True:
            membership_id = str(4611686018400000000 + self.rng.randint(0, 99_999_999))
            if all(a.membership_id != membership_id for a in self.accounts.values()):
                break
        account = Account(
            membership_type=membership_type,
            membership_id=membership_id,
            name=name,
            name_code=self.rng.randint(1, 9999),
            bungie_id=bungie_id or str(self.rng.randint(1_000_000, 39_999_999)),
            allows_invites=allows_invites,
        )
        self.accounts[account.key] = account
        return account

    def _clan(self, name: str, founder: Account) -> Clan:
        clan = Clan(str(self.rng.randint(1_000_000, 5_999_999)), name, founder.key, self._tick())
        clan.members[founder.key] = (FOUNDER, clan.created)
        self.clans[clan.group_id] = clan
        return clan

    def mint_refresh_token(self, bungie_id: str | None = None) -> str:
        """A fresh single-use refresh token of ``bungie_id`` (default: the clan founder)."""
        head = secrets.token_bytes(48) + int(bungie_id or self.founder_bungie_id).to_bytes(8, "big")
        head += int(time.time()).to_bytes(8, "big")
        token = base64.b64encode(head + hmac.new(self.token_key, head, "sha256").digest()[:16]).decode()
        self.issued.append(token)
        return token

    def refresh_token_owner(self, token: str) -> str | None:
        """The Bungie.net id a refresh token belongs to, if it is genuine, unspent and not expired."""
        try:
            raw = base64.b64decode(token, validate=True)
        except ValueError:
            return None
        head, mac = raw[:64], raw[64:]
        if len(raw) != 80 or not hmac.compare_digest(
            mac, hmac.new(self.token_key, head, "sha256").digest()[:16]
        ):
            return None
        if token in self.spent_refresh_tokens:
            return None
        if int.from_bytes(head[56:64], "big") + REFRESH_TOKEN_LIFETIME_S < time.time():
            return None
        if token not in self.issued:  # printed by another process (``--print-env``)
            self.issued.append(token)
        return str(int.from_bytes(head[48:56], "big"))

    def is_spent(self, token: str) -> bool:
        return token in self.spent_refresh_tokens

    def _mint_access_token(self, bungie_id: str) -> str:
        token = "CKWqAx" + self._b64(120)
        self.access_tokens[token] = AccessToken(bungie_id, time.monotonic() + self.access_token_lifetime)
        self.issued.append(token)
        return token

    # -- switches for tests (not part of Bungie's API) --------------------------------------------

    def expire_access_tokens(self) -> None:
        """Every access token issued so far expires now (as after an hour)."""
        for token in self.access_tokens.values():
            token.expires = time.monotonic() - 1

    def revoke_consent(self, bungie_id: str | None = None) -> None:
        """The user withdraws the app's authorisation: the next refresh is refused."""
        self.revoked.add(bungie_id or self.founder_bungie_id)

    # -- admin hooks -----------------------------------------------------------------------------

    def env(self, base_url: str) -> PlatformEnv:
        connection = {
            "conn_type": "bungie",
            "host": f"{base_url}/Platform",
            "login": self.client_id,
            "password": self.client_secret,
            "extra": {"api_key": self.api_key, "refresh_token": self.mint_refresh_token()},
        }
        return PlatformEnv(connection=connection, group=self.group_id, users=list(self.newcomers[:5]))

    def add_people(self, count: int, group: str | None = None) -> list[str]:
        clan = self.clans[group] if group is not None else None
        if clan is not None and len(clan.members) + count > clan.maximum_members:
            raise ValueError(f"a clan holds at most {clan.maximum_members} members")
        made = []
        for _ in range(count):
            self.people_made += 1
            made.append(self._account(f"Person {self.people_made}", (3, 1, 2, 6)[self.people_made % 4]).key)
            if clan is not None:
                clan.members[made[-1]] = (MEMBER, self._tick())
        return made

    def accept(self, group: str, user: str) -> bool:
        clan = self.clans.get(group)
        if clan is None or user not in clan.invited:
            return False
        del clan.invited[user]
        clan.members[user] = (MEMBER, datetime.now(timezone.utc))
        return True

    def secrets(self) -> list[str]:
        return [self.api_key, self.client_secret, *self.issued, *self.auth_codes]

    def throttle_response(self, request: Request) -> Response:
        return envelope(51, throttle_seconds=max(1, math.ceil(self.fault_wait())))

    def server_error_response(self, request: Request) -> Response:
        return envelope(3)

    # -- checks shared by the routes ---------------------------------------------------------------

    def _gate(self, request: Request, *, bearer: bool) -> tuple[str | None, Response | None]:
        """Rate limit, then X-API-Key, then (if required) the bearer token: (bungie id, refusal)."""
        ip = request.client.host if request.client else "?"
        wait = self.limiter.hit(ip, self.limit_scale())
        if wait is not None:
            return None, envelope(51, throttle_seconds=max(1, math.ceil(wait)))
        key = request.headers.get("x-api-key")
        if not key:
            return None, envelope(2102)
        if key != self.api_key:
            return None, envelope(2101)
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        token = self.access_tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            return None, envelope(99) if bearer else None
        if token.expires <= time.monotonic():
            return None, envelope(2111) if bearer else None
        return token.bungie_id, None

    def _caller_level(self, clan: Clan, bungie_id: str) -> int:
        levels = [
            level for key, (level, _) in clan.members.items() if self.accounts[key].bungie_id == bungie_id
        ]
        return max(levels, default=0)

    def _may_invite(self, clan: Clan, bungie_id: str) -> bool:
        level = self._caller_level(clan, bungie_id)
        return level >= ACTING_FOUNDER or (level == ADMIN and clan.invite_permission_override)

    def _clan_of(self, key: str) -> Clan | None:
        return next((c for c in self.clans.values() if key in c.members), None)

    # -- views -----------------------------------------------------------------------------------

    def _member_row(self, clan: Clan, key: str) -> dict[str, Any]:
        level, joined = clan.members[key]
        account = self.accounts[key]
        return {
            "memberType": level,
            "isOnline": False,
            "lastOnlineStatusChange": str(int(joined.timestamp())),
            "groupId": clan.group_id,
            "destinyUserInfo": account.destiny_info(),
            "bungieNetUserInfo": account.bungie_info(),
            "joinDate": iso(joined),
        }

    def _invite_row(self, clan: Clan, key: str) -> dict[str, Any]:
        created, message = clan.invited[key]
        account = self.accounts[key]
        return {
            "groupId": clan.group_id,
            "creationDate": iso(created),
            "resolveState": 0,
            "resolveDate": None,
            "resolvedByMembershipId": None,
            "requestMessage": message,
            "resolveMessage": None,
            "destinyUserInfo": account.destiny_info(),
            "bungieNetUserInfo": account.bungie_info(),
        }

    def _group_view(self, clan: Clan, bungie_id: str | None) -> dict[str, Any]:
        founder = self.accounts[clan.founder]
        detail = {
            "groupId": clan.group_id,
            "name": clan.name,
            "groupType": 1,
            "membershipIdCreated": founder.bungie_id,
            "creationDate": iso(clan.created),
            "modificationDate": iso(clan.created),
            "about": "",
            "tags": [],
            "memberCount": len(clan.members),
            "isPublic": True,
            "isPublicTopicAdminOnly": False,
            "motto": "",
            "allowChat": True,
            "isDefaultPostPublic": False,
            "chatSecurity": 0,
            "locale": "en",
            "avatarImageIndex": 0,
            "homepage": 0,
            "membershipOption": 0,
            "defaultPublicity": 2,
            "theme": "Group_Community1",
            "bannerPath": "/img/Themes/Group_Community1/struct_images/group_top_banner.jpg",
            "avatarPath": "/img/profile/avatars/group/defaultGroup.png",
            "conversationId": str(int(clan.group_id) * 7),
            "enableInvitationMessagingForAdmins": False,
            "banExpireDate": "2001-01-01T00:00:00Z",
            "features": {
                "maximumMembers": clan.maximum_members,
                "maximumMembershipsOfGroupType": 1,
                "capabilities": 31,
                "membershipTypes": [1, 2, 3, 5, 6],
                "invitePermissionOverride": clan.invite_permission_override,
                "updateCulturePermissionOverride": False,
                "hostGuidedGamePermissionOverride": 1,
                "updateBannerPermissionOverride": False,
                "joinLevel": 1,
            },
            "clanInfo": {
                "d2ClanProgressions": {},
                "clanCallsign": clan.name[:4].upper(),
                "clanBannerData": {},
            },
        }
        view: dict[str, Any] = {
            "detail": detail,
            "founder": self._member_row(clan, clan.founder),
            "alliedIds": [],
            "allianceStatus": 0,
            "groupJoinInviteCount": len(clan.invited),
            "currentUserMembershipsInactiveForDestiny": False,
            "currentUserMemberMap": {},
            "currentUserPotentialMemberMap": {},
        }
        if bungie_id:
            view["currentUserMemberMap"] = {
                str(self.accounts[k].membership_type): self._member_row(clan, k)
                for k in clan.members
                if self.accounts[k].bungie_id == bungie_id
            }
        return view

    # -- routes ----------------------------------------------------------------------------------

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.post("/Platform/App/OAuth/token/")
        async def token(request: Request) -> Response:
            raw = await request.body()
            return self._token(request, raw)

        @router.get("/en/OAuth/Authorize")
        async def authorize(request: Request) -> Response:
            query = request.query_params
            if query.get("client_id") != self.client_id or query.get("response_type") != "code":
                return JSONResponse({"error": "invalid_request"}, status_code=400)
            code = self.rng.randbytes(16).hex()
            self.auth_codes[code] = self.founder_bungie_id
            target = {"code": code, **({"state": query["state"]} if "state" in query else {})}
            return RedirectResponse(f"{self.redirect_url}?{urlencode(target)}", status_code=302)

        @router.get("/Platform/Settings/")
        async def settings(request: Request) -> Response:
            _, refusal = self._gate(request, bearer=False)
            if refusal:
                return refusal
            systems = {name: {"enabled": True, "parameters": {}} for name in ("Destiny2", "Clans", "Groups")}
            return envelope(1, {"systems": systems, "destiny2CoreSettings": {}, "emailSettings": {}})

        @router.get("/Platform/User/GetMembershipsForCurrentUser/")
        async def memberships(request: Request) -> Response:
            bungie_id, refusal = self._gate(request, bearer=True)
            if refusal:
                return refusal
            mine = [a for a in self.accounts.values() if a.bungie_id == bungie_id]
            user = mine[0].bungie_info()
            return envelope(
                1,
                {
                    "destinyMemberships": [a.destiny_info() for a in mine],
                    "primaryMembershipId": mine[0].membership_id,
                    "bungieNetUser": {
                        "membershipId": bungie_id,
                        "uniqueName": user["supplementalDisplayName"],
                        "displayName": user["displayName"],
                        "firstAccess": iso(EPOCH),
                        "locale": "en",
                    },
                },
            )

        @router.get("/Platform/GroupV2/User/{membership_type}/{membership_id}/{group_filter}/{group_type}/")
        async def groups_for_member(
            request: Request, membership_type: str, membership_id: str, group_filter: str, group_type: str
        ) -> Response:
            _, refusal = self._gate(request, bearer=False)
            if refusal:
                return refusal
            return self._groups_for_member(membership_type, membership_id, group_filter, potential=False)

        @router.get(
            "/Platform/GroupV2/User/Potential/{membership_type}/{membership_id}/{group_filter}/{group_type}/"
        )
        async def potential_groups(
            request: Request, membership_type: str, membership_id: str, group_filter: str, group_type: str
        ) -> Response:
            _, refusal = self._gate(request, bearer=False)
            if refusal:
                return refusal
            return self._groups_for_member(membership_type, membership_id, group_filter, potential=True)

        @router.get("/Platform/GroupV2/{group_id}/")
        async def get_group(request: Request, group_id: str) -> Response:
            bungie_id, refusal = self._gate(request, bearer=False)
            if refusal:
                return refusal
            clan, error = self._find_clan(group_id)
            if error:
                return error
            assert clan is not None
            return envelope(1, self._group_view(clan, bungie_id))

        @router.get("/Platform/GroupV2/{group_id}/Members/")
        async def members(request: Request, group_id: str) -> Response:
            _, refusal = self._gate(request, bearer=False)
            if refusal:
                return refusal
            clan, error = self._find_clan(group_id)
            if error:
                return error
            assert clan is not None
            keys = sorted(clan.members, key=lambda k: (-clan.members[k][0], clan.members[k][1]))
            member_type = request.query_params.get("memberType")
            if member_type and member_type.isdigit() and int(member_type) > 0:
                keys = [k for k in keys if clan.members[k][0] == int(member_type)]
            search = (request.query_params.get("nameSearch") or "").lower()
            if search:
                keys = [k for k in keys if self.accounts[k].name.lower().startswith(search)]
            return self._page(request, keys, MEMBERS_PAGE, lambda k: self._member_row(clan, k))

        @router.get("/Platform/GroupV2/{group_id}/Members/InvitedIndividuals/")
        async def invited(request: Request, group_id: str) -> Response:
            return self._admin_list(request, group_id, kind="invited")

        @router.get("/Platform/GroupV2/{group_id}/Members/Pending/")
        async def pending(request: Request, group_id: str) -> Response:
            return self._admin_list(request, group_id, kind="pending")

        @router.get("/Platform/GroupV2/{group_id}/Banned/")
        async def banned(request: Request, group_id: str) -> Response:
            return self._admin_list(request, group_id, kind="banned")

        @router.post(
            "/Platform/GroupV2/{group_id}/Members/IndividualInvite/{membership_type}/{membership_id}/"
        )
        async def invite(
            request: Request, group_id: str, membership_type: str, membership_id: str
        ) -> Response:
            raw = await request.body()
            return self._invite(request, group_id, membership_type, membership_id, raw)

        @router.post(
            "/Platform/GroupV2/{group_id}/Members/IndividualInviteCancel/{membership_type}/{membership_id}/"
        )
        async def cancel(
            request: Request, group_id: str, membership_type: str, membership_id: str
        ) -> Response:
            bungie_id, refusal = self._gate(request, bearer=True)
            if refusal:
                return refusal
            assert bungie_id is not None
            clan, error = self._find_clan(group_id)
            if error:
                return error
            assert clan is not None
            key, error = self._account_key(membership_type, membership_id)
            if error:
                return error
            if not self._may_invite(clan, bungie_id):
                return envelope(12)
            clan.invited.pop(key or "", None)
            return envelope(1, {"resolution": 3})

        @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
        async def unknown(request: Request, rest: str) -> Response:
            if not rest.endswith("/"):  # Bungie redirects to the slashed path (dropping Authorization)
                location = f"{request.url.path}/" + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(location, status_code=301)
            return JSONResponse(
                {
                    "ErrorCode": 7,
                    "ThrottleSeconds": 0,
                    "ErrorStatus": "ParameterParseFailure",
                    "Message": "No endpoint matches this path.",
                    "MessageData": {},
                },
                status_code=404,
            )

        return router

    # -- route bodies (no awaits: read and write state in one go) -------------------------------

    def _token(self, request: Request, raw: bytes) -> Response:
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            return oauth_error("invalid_request", "Missing required parameter grant_type")
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                client_id, _, client_secret = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return oauth_error("invalid_request", "Cannot parse client_id")
        if "grant_type" not in form:
            return oauth_error("invalid_request", "Missing required parameter grant_type")
        if not client_id or not client_id.isdigit():
            return oauth_error("invalid_request", "Cannot parse client_id")
        if client_id != self.client_id or client_secret != self.client_secret:
            return oauth_error("invalid_client", "InvalidClient", status=401)
        grant = form["grant_type"]
        if grant == "refresh_token":
            presented = form.get("refresh_token", "")
            owner = self.refresh_token_owner(presented)
            if owner is None:
                return oauth_error("invalid_request", "ProvidedTokenNotValidRefreshToken")
            self.spent_refresh_tokens.add(presented)  # single use: every refresh returns a new one
            bungie_id = owner
        elif grant == "authorization_code":
            bungie_id = self.auth_codes.pop(form.get("code", ""), "")
            if not bungie_id:
                return oauth_error("invalid_grant", "AuthorizationCodeInvalid")
        else:
            return oauth_error("unsupported_grant_type", "UnsupportedGrantType")
        if bungie_id in self.revoked:
            return oauth_error("server_error", "AuthorizationRecordRevoked")
        return JSONResponse(
            {
                "access_token": self._mint_access_token(bungie_id),
                "token_type": "Bearer",
                "expires_in": self.access_token_lifetime,
                "refresh_token": self.mint_refresh_token(bungie_id),
                "refresh_expires_in": REFRESH_TOKEN_LIFETIME_S,
                "membership_id": bungie_id,
            }
        )

    def _find_clan(self, group_id: str) -> tuple[Clan | None, Response | None]:
        if not _is_int64(group_id):
            return None, envelope(7)
        clan = self.clans.get(str(int(group_id)))
        return (clan, None) if clan else (None, envelope(686))

    def _account_key(self, membership_type: str, membership_id: str) -> tuple[str | None, Response | None]:
        if not re.fullmatch(r"-?[0-9]{1,5}", membership_type) or not _is_int64(membership_id):
            return None, envelope(7)
        if int(membership_type) not in DESTINY_TYPES:
            return None, envelope(8)
        return f"{int(membership_type)}:{int(membership_id)}", None

    def _page(self, request: Request, keys: list[str], size: int, row: Any) -> Response:
        page_text = next((v for k, v in request.query_params.items() if k.lower() == "currentpage"), "1")
        if not re.fullmatch(r"-?[0-9]{1,9}", page_text):
            return envelope(7)
        page = int(page_text)
        if page < 1:
            return envelope(8)
        chunk = keys[(page - 1) * size : page * size]
        return envelope(
            1,
            {
                "results": [row(k) for k in chunk],
                "totalResults": len(keys),
                "hasMore": page * size < len(keys),
                "query": {"itemsPerPage": size, "currentPage": page},
                "useTotalResults": True,
            },
        )

    def _admin_list(self, request: Request, group_id: str, *, kind: str) -> Response:
        bungie_id, refusal = self._gate(request, bearer=True)
        if refusal:
            return refusal
        assert bungie_id is not None
        clan, error = self._find_clan(group_id)
        if error:
            return error
        assert clan is not None
        if self._caller_level(clan, bungie_id) < ADMIN:
            return envelope(12)
        if kind == "invited":
            keys = sorted(clan.invited, key=lambda k: clan.invited[k][0])
            return self._page(request, keys, INVITED_PAGE, lambda k: self._invite_row(clan, k))
        if kind == "pending":
            return self._page(request, [], INVITED_PAGE, lambda k: {})

        def ban_row(key: str) -> dict[str, Any]:
            account = self.accounts[key]
            return {
                "groupId": clan.group_id,
                "lastModifiedBy": self.accounts[clan.founder].bungie_info(),
                "createdBy": self.accounts[clan.founder].bungie_info(),
                "dateBanned": iso(clan.created),
                "dateExpires": "2100-01-01T00:00:00Z",
                "comment": "",
                "bungieNetUserInfo": account.bungie_info(),
                "destinyUserInfo": account.destiny_info(),
            }

        return self._page(request, sorted(clan.banned), INVITED_PAGE, ban_row)

    def _groups_for_member(
        self, membership_type: str, membership_id: str, group_filter: str, *, potential: bool
    ) -> Response:
        key, error = self._account_key(membership_type, membership_id)
        if error:
            return error
        if key not in self.accounts:
            return envelope(1601)
        results: list[dict[str, Any]] = []
        inactive: dict[str, bool] = {}
        for clan in self.clans.values():
            if potential:
                if key not in clan.invited:
                    continue
                member = {
                    "potentialStatus": 2,
                    "groupId": clan.group_id,
                    "destinyUserInfo": self.accounts[key].destiny_info(),
                    "bungieNetUserInfo": self.accounts[key].bungie_info(),
                    "joinDate": iso(clan.invited[key][0]),
                }
            else:
                if key not in clan.members:
                    continue
                founded = clan.members[key][0] == FOUNDER
                if (group_filter == "1" and not founded) or (group_filter == "2" and founded):
                    continue
                member = self._member_row(clan, key)
            inactive[clan.group_id] = False
            results.append({"member": member, "group": self._group_view(clan, None)["detail"]})
        return envelope(
            1,
            {
                "areAllMembershipsInactive": inactive,
                "results": results,
                "totalResults": len(results),
                "hasMore": False,
                "query": {"itemsPerPage": 100, "currentPage": 1},
                "useTotalResults": True,
            },
        )

    def _invite(
        self, request: Request, group_id: str, membership_type: str, membership_id: str, raw: bytes
    ) -> Response:
        bungie_id, refusal = self._gate(request, bearer=True)
        if refusal:
            return refusal
        assert bungie_id is not None
        clan, error = self._find_clan(group_id)
        if error:
            return error
        assert clan is not None
        key, error = self._account_key(membership_type, membership_id)
        if error:
            return error
        assert key is not None
        self.invite_requested(clan.group_id, key)
        if not raw.strip():
            return envelope(26)
        try:
            body = json.loads(raw)
        except ValueError:
            return envelope(30)
        message = body.get("message") if isinstance(body, dict) else None
        if message is not None and not isinstance(message, str):
            return envelope(30)
        if not self._may_invite(clan, bungie_id):
            return envelope(12)
        account = self.accounts.get(key)
        if account is None:
            return envelope(1601)
        if key in clan.banned:
            return envelope(623)
        if key in clan.members:
            return envelope(676)
        if not account.allows_invites:
            return envelope(695)
        if len(clan.members) >= clan.maximum_members:
            return envelope(667)
        if key not in clan.invited:  # a second invite is Success again, still one invitation
            clan.invited[key] = (datetime.now(timezone.utc), message or "")
            self.invite_applied(clan.group_id, key)
        return envelope(1, {"resolution": 0})


def _is_int64(text: str) -> bool:
    return bool(INT64_RE.fullmatch(text)) and 0 < int(text) <= INT64_MAX


PLATFORM = BungieSandbox
