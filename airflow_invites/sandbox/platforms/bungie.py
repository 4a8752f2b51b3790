"""Bungie.net Platform API (GroupV2 clans, Bungie Names, OAuth), as a real client sees it.

Served under ``/bungie``: ``/bungie/Platform/GroupV2/{groupId}/Members/IndividualInvite/...`` etc.
Every /Platform reply is the platform envelope; errors come with a non-200 status (500 by
default, 429 for throttles, 503 for maintenance). The token endpoint answers plain JSON.
Behaviour Bungie does not document (which code a refusal gets) is kept in the tables at the top.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from airflow_invites.sandbox.core import (
    DuplicateHandle,
    FixedWindowLimiter,
    PlatformEnv,
    Route,
    SandboxError,
    SandboxPlatform,
)

ACCESS_TOKEN_LIFETIME_S = 3600
REFRESH_TOKEN_LIFETIME_S = 7_776_000
RATE_CALLS, RATE_WINDOW_S = 250, 10.0  # 25 requests/s averaged over 10 s, per client IP
INVITED_PAGE, MEMBERS_PAGE = 50, 100
MAX_CLAN_MEMBERS = 100
INT64_RE = re.compile(r"-?[0-9]{1,19}")
INT64_MAX = 2**63 - 1
DESTINY_TYPES = {1, 2, 3, 5, 6}  # the types a clan invite may name
ALL_TYPES = -1
FOUNDER, ACTING_FOUNDER, ADMIN, MEMBER = 5, 4, 3, 2
RESCINDED = 3
EPOCH = datetime(2019, 10, 1, tzinfo=timezone.utc)
BUNGIE_NAME_RE = re.compile(r"([^#]+)#([0-9]{1,4})")

#: ErrorCode -> (ErrorStatus, Message). Messages Bungie is known to send, else a plausible text.
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
    611: ("GroupMembershipNotFound", "GroupMembershipNotFound"),
    623: ("GroupMemberBanned", "The user is banned from this group."),
    667: ("ClanMaximumMembershipReached", "The Clan has reached its maximum number of members."),
    676: ("ClanInviteAlreadyMember", "The user is already a member of this Clan."),
    686: ("ClanNotFound", "The Clan could not be found."),
    687: (
        "ClanMembershipLevelDoesNotPermitThatAction",
        "Your clan membership level does not permit that action.",
    ),
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
#: what Bungie does not document, chosen here: kicking the founder, or someone of the caller's rank or
#: above, is 687; kicking someone who is not a member is 611 (seen in the wild on Kick)
KICK_OUTRANKED, KICK_NOT_A_MEMBER = 687, 611


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def envelope(code: int = 1, response: Any = None, *, throttle_seconds: int = 0) -> JSONResponse:
    """The Platform envelope; int64 values are strings in ``response`` already."""
    status, message = ERRORS[code]
    body: dict[str, Any] = {"Response": response} if code == 1 else {}
    body.update(
        ErrorCode=code, ThrottleSeconds=throttle_seconds, ErrorStatus=status, Message=message, MessageData={}
    )
    return JSONResponse(body, status_code=200 if code == 1 else ERROR_HTTP_STATUS.get(code, 500))


def refused(code: int, *, throttle_seconds: int = 0) -> SandboxError:
    return SandboxError(envelope(code, throttle_seconds=throttle_seconds))


def oauth_error(error: str, description: str, status: int = 400) -> SandboxError:
    return SandboxError(JSONResponse({"error": error, "error_description": description}, status_code=status))


@dataclass
class Account:
    """A Destiny account (one platform) and the Bungie.net account (and Bungie Name) it belongs to.

    ``cross_save`` is the type of the person's cross-save primary (0: cross save off).
    """

    membership_type: int
    membership_id: str
    name: str
    name_code: int
    bungie_id: str
    allows_invites: bool = True
    cross_save: int = 0

    @property
    def key(self) -> str:
        return f"{self.membership_type}:{self.membership_id}"

    @property
    def bungie_name(self) -> str:
        return f"{self.name}#{self.name_code:04d}"

    def bungie_info(self) -> dict[str, Any]:
        return {
            "supplementalDisplayName": self.bungie_name,
            "iconPath": "/img/profile/avatars/default_avatar.gif",
            "crossSaveOverride": self.cross_save,
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
        self.people: dict[str, list[Account]] = {}  # bungie id -> their Destiny accounts
        self.bungie_names: set[str] = set()  # casefolded Bungie Names (unique with their code)
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
        clan = self._new_clan("Airflow Invites", founder)
        self.group_id = clan.group_id
        for index, name in enumerate(("Grace Hopper", "Ken Thompson", "Barbara Liskov", "Edsger Dijkstra")):
            member = self._account(name, (1, 2, 3, 6)[index])
            clan.members[member.key] = (MEMBER, self._tick())
        self.admin = self._account("Rita Admin", 2)
        clan.members[self.admin.key] = (ADMIN, self._tick())
        names = (
            "Ada Lovelace",
            "Alan Turing",
            "Margaret Hamilton",
            "Frances Allen",
            "John Backus",
            "Jean Bartik",
        )
        self.newcomers = [self._account(name, (3, 1, 2, 6, 3, 3)[i]).key for i, name in enumerate(names)]
        banned = self._account("Mallory Banned", 3)
        clan.banned.add(banned.key)
        self.banned = banned.key
        self.disallows_invites = self._account("Pat Private", 2, allows_invites=False).key
        # a second clan of the same founder (their Xbox membership), full at 100 members
        full = self._new_clan("Full House", self._account("Marc Anp", 1, owner=founder))
        while len(full.members) < full.maximum_members:
            filler = self._account(f"Filler {len(full.members)}", 3)
            full.members[filler.key] = (MEMBER, self._tick())
        self.full_group_id = full.group_id
        # the newcomers play on a second platform too, with cross save on (their seeded one is primary)
        for key in self.newcomers:
            primary = self.accounts[key]
            self._account(primary.name, 2 if primary.membership_type != 2 else 1, owner=primary)
            self._cross_save(primary)
        # one person on two platforms without cross save: their Bungie Name names two memberships
        two = self._account("Sam Twoplatforms", 1)
        self.two_platforms = [two.key, self._account(two.name, 3, owner=two).key]

    # -- seeding ---------------------------------------------------------------------------------

    def _tick(self) -> datetime:
        self.clock += timedelta(hours=7, minutes=self.rng.randint(0, 59))
        return self.clock

    def _b64(self, size: int) -> str:
        return base64.b64encode(self.rng.randbytes(size)).decode()

    def _account(
        self,
        name: str,
        membership_type: int,
        *,
        owner: Account | None = None,
        code: int | None = None,
        allows_invites: bool = True,
    ) -> Account:
        """A Destiny account: of a new person (Bungie Name ``name#code``), or ``owner``'s on another platform."""
        while True:
            membership_id = str(4611686018400000000 + self.rng.randint(0, 99_999_999))
            if f"{membership_type}:{membership_id}" not in self.accounts:
                break
        name_code, bungie_id = self.rng.randint(1, 9999), str(self.rng.randint(1_000_000, 39_999_999))
        if owner is not None:
            name, name_code, bungie_id = owner.name, owner.name_code, owner.bungie_id
        name_code = code or name_code
        while owner is None and f"{name}#{name_code:04d}".casefold() in self.bungie_names:
            name_code = self.rng.randint(1, 9999)
        account = Account(membership_type, membership_id, name, name_code, bungie_id, allows_invites)
        self.accounts[account.key] = account
        self.people.setdefault(bungie_id, []).append(account)
        self.bungie_names.add(account.bungie_name.casefold())
        return account

    def _cross_save(self, primary: Account) -> None:
        for account in self.people[primary.bungie_id]:
            account.cross_save = primary.membership_type

    def _new_clan(self, name: str, founder: Account) -> Clan:
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
        users = list(self.newcomers[:5])
        handles = [f"name:{self.accounts[key].bungie_name}" for key in users]
        return PlatformEnv(connection=connection, group=self.group_id, users=users, handles=handles)

    def create_people(
        self, count: int, group: str | None = None, handles: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """People with a Bungie Name and two Destiny memberships, cross save on; ``id`` is the primary."""
        clan = self.clans[group] if group is not None else None
        if clan is not None and len(clan.members) + count > clan.maximum_members:
            raise ValueError(f"a clan holds at most {clan.maximum_members} members")
        if set(handles or {}) - {"bungie_name"}:
            raise ValueError("handles: Bungie.net people have a bungie_name (Name#1234) only")
        wanted = (handles or {}).get("bungie_name")
        name: str | None = None
        code: int | None = None
        if wanted is not None:
            match = BUNGIE_NAME_RE.fullmatch(wanted)
            if match is None:
                raise ValueError("handles: bungie_name is Name#1234")
            name, code = match[1], int(match[2])
            if count > 1 or f"{name}#{code:04d}".casefold() in self.bungie_names:
                raise DuplicateHandle(f"Bungie Names are unique with their code: {wanted} is taken")
        made = []
        for _ in range(count):
            self.people_made += 1
            kind = (3, 1, 2, 6)[self.people_made % 4]
            primary = self._account(name or f"Person {self.people_made}", kind, code=code)
            self._account(primary.name, 2 if kind != 2 else 3, owner=primary)
            self._cross_save(primary)
            if clan is not None:
                clan.members[primary.key] = (MEMBER, self._tick())
            made.append({"id": primary.key, "handles": {"bungie_name": primary.bungie_name}})
        return made

    def members(self, group: str) -> dict[str, list[str]]:
        clan = self.clans[group]
        founders = [k for k, (level, _) in clan.members.items() if level == FOUNDER]
        return {"members": list(clan.members), "invited": list(clan.invited), "protected": founders}

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

    def _caller(self, request: Request, *, bearer: bool) -> str | None:
        """The one gate: rate limit, X-API-Key, then the bearer token if required; the caller's Bungie.net id."""
        ip = request.client.host if request.client else "?"
        wait = self.limiter.hit(ip, self.limit_scale())
        if wait is not None:
            raise refused(51, throttle_seconds=max(1, math.ceil(wait)))
        key = request.headers.get("x-api-key")
        if not key:
            raise refused(2102)
        if key != self.api_key:
            raise refused(2101)
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        token = self.access_tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if token is None or token.expires <= time.monotonic():
            if bearer:
                raise refused(99 if token is None else 2111)
            return None
        return token.bungie_id

    def _clan(self, request: Request) -> Clan:
        group_id = request.path_params["group_id"]
        if not _is_int64(group_id):
            raise refused(7)
        clan = self.clans.get(str(int(group_id)))
        if clan is None:
            raise refused(686)
        return clan

    def _target(self, request: Request) -> str:
        """The account key a path names by ``{membership_type}/{membership_id}``."""
        membership_type, membership_id = (
            request.path_params["membership_type"],
            request.path_params["membership_id"],
        )
        if not re.fullmatch(r"-?[0-9]{1,5}", membership_type) or not _is_int64(membership_id):
            raise refused(7)
        if int(membership_type) not in DESTINY_TYPES:
            raise refused(8)
        return f"{int(membership_type)}:{int(membership_id)}"

    def _caller_level(self, clan: Clan, bungie_id: str | None) -> int:
        mine = {a.key for a in self.people.get(bungie_id or "", [])}
        return max((level for key, (level, _) in clan.members.items() if key in mine), default=0)

    def _may_invite(self, clan: Clan, bungie_id: str | None) -> bool:
        level = self._caller_level(clan, bungie_id)
        return level >= ACTING_FOUNDER or (level == ADMIN and clan.invite_permission_override)

    @staticmethod
    def _json_body(raw: bytes) -> dict[str, Any]:
        if not raw.strip():
            raise refused(26)
        try:
            body = json.loads(raw)
        except ValueError:
            raise refused(30) from None
        if not isinstance(body, dict):
            raise refused(30)
        return body

    # -- views -----------------------------------------------------------------------------------

    def _card(self, account: Account) -> dict[str, Any]:
        """A UserInfoCard: with cross save, the primary applies to all its types, the others to none."""
        own = [account.membership_type]
        if account.cross_save:
            everyone = [a.membership_type for a in self.people[account.bungie_id]]
            own = everyone if account.cross_save == account.membership_type else []
        return {
            "LastSeenDisplayName": account.name,
            "LastSeenDisplayNameType": account.membership_type,
            "iconPath": "/img/theme/bungienet/icons/steamLogo.png",
            "crossSaveOverride": account.cross_save,
            "applicableMembershipTypes": own,
            "isPublic": True,
            "membershipType": account.membership_type,
            "membershipId": account.membership_id,
            "displayName": account.name,
            "bungieGlobalDisplayName": account.name,
            "bungieGlobalDisplayNameCode": account.name_code,
        }

    def _member_row(self, clan: Clan, key: str) -> dict[str, Any]:
        level, joined = clan.members[key]
        account = self.accounts[key]
        return {
            "memberType": level,
            "isOnline": False,
            "lastOnlineStatusChange": str(int(joined.timestamp())),
            "groupId": clan.group_id,
            "destinyUserInfo": self._card(account),
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
            "destinyUserInfo": self._card(account),
            "bungieNetUserInfo": account.bungie_info(),
        }

    def _ban_row(self, clan: Clan, key: str) -> dict[str, Any]:
        founder = self.accounts[clan.founder].bungie_info()
        return {
            "groupId": clan.group_id,
            "lastModifiedBy": founder,
            "createdBy": founder,
            "dateBanned": iso(clan.created),
            "dateExpires": "2100-01-01T00:00:00Z",
            "comment": "",
            "bungieNetUserInfo": self.accounts[key].bungie_info(),
            "destinyUserInfo": self._card(self.accounts[key]),
        }

    def _group_detail(self, clan: Clan) -> dict[str, Any]:
        return {
            "groupId": clan.group_id,
            "name": clan.name,
            "groupType": 1,
            "membershipIdCreated": self.accounts[clan.founder].bungie_id,
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

    def _page(self, request: Request, keys: list[str], size: int, row: Callable[[str], Any]) -> Response:
        page_text = next((v for k, v in request.query_params.items() if k.lower() == "currentpage"), "1")
        if not re.fullmatch(r"-?[0-9]{1,9}", page_text):
            raise refused(7)
        page = int(page_text)
        if page < 1:
            raise refused(8)
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

    # -- routes ----------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        p, g, who = "/Platform", "/Platform/GroupV2/{group_id}", "{membership_type}/{membership_id}"
        table = [
            Route("POST", f"{p}/App/OAuth/token/", self._token),
            Route("GET", "/en/OAuth/Authorize", self._authorize),
            Route("GET", f"{p}/Settings/", self._settings),
            Route("GET", f"{p}/User/GetMembershipsForCurrentUser/", self._memberships),
            Route("POST", f"{p}/Destiny2/SearchDestinyPlayerByBungieName/{{membership_type}}/", self._search),
            Route("GET", f"{p}/GroupV2/User/{who}/{{group_filter}}/{{group_type}}/", self._groups_for_member),
            Route(
                "GET", f"{p}/GroupV2/User/Potential/{who}/{{group_filter}}/{{group_type}}/", self._potential
            ),
            Route("GET", f"{g}/", self._get_group),
            Route("GET", f"{g}/Members/", self._members),
            Route("GET", f"{g}/Members/InvitedIndividuals/", self._invited),
            Route("GET", f"{g}/Members/Pending/", self._pending),
            Route("GET", f"{g}/Banned/", self._banned),
            Route("POST", f"{g}/Members/IndividualInvite/{who}/", self._invite),
            Route("POST", f"{g}/Members/IndividualInviteCancel/{who}/", self._cancel),
            Route("POST", f"{g}/Members/{who}/Kick/", self._kick),
        ]
        return table + [
            Route(m, "/{rest:path}", self._unknown) for m in ("GET", "POST", "PUT", "DELETE", "PATCH")
        ]

    async def _token(self, request: Request) -> Response:
        raw = await request.body()
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            raise oauth_error("invalid_request", "Missing required parameter grant_type")
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                client_id, _, client_secret = base64.b64decode(value).decode().partition(":")
            except ValueError:
                raise oauth_error("invalid_request", "Cannot parse client_id") from None
        if "grant_type" not in form:
            raise oauth_error("invalid_request", "Missing required parameter grant_type")
        if not client_id or not client_id.isdigit():
            raise oauth_error("invalid_request", "Cannot parse client_id")
        if client_id != self.client_id or client_secret != self.client_secret:
            raise oauth_error("invalid_client", "InvalidClient", status=401)
        grant = form["grant_type"]
        if grant == "refresh_token":
            presented = form.get("refresh_token", "")
            bungie_id = self.refresh_token_owner(presented) or ""
            if not bungie_id:
                raise oauth_error("invalid_request", "ProvidedTokenNotValidRefreshToken")
            self.spent_refresh_tokens.add(presented)  # single use: every refresh returns a new one
        elif grant == "authorization_code":
            bungie_id = self.auth_codes.pop(form.get("code", ""), "")
            if not bungie_id:
                raise oauth_error("invalid_grant", "AuthorizationCodeInvalid")
        else:
            raise oauth_error("unsupported_grant_type", "UnsupportedGrantType")
        if bungie_id in self.revoked:
            raise oauth_error("server_error", "AuthorizationRecordRevoked")
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

    async def _authorize(self, request: Request) -> Response:
        query = request.query_params
        if query.get("client_id") != self.client_id or query.get("response_type") != "code":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = self.rng.randbytes(16).hex()
        self.auth_codes[code] = self.founder_bungie_id
        target = {"code": code, **({"state": query["state"]} if "state" in query else {})}
        return RedirectResponse(f"{self.redirect_url}?{urlencode(target)}", status_code=302)

    async def _settings(self, request: Request) -> Response:
        self._caller(request, bearer=False)
        systems = {name: {"enabled": True, "parameters": {}} for name in ("Destiny2", "Clans", "Groups")}
        return envelope(1, {"systems": systems, "destiny2CoreSettings": {}, "emailSettings": {}})

    async def _memberships(self, request: Request) -> Response:
        bungie_id = self._caller(request, bearer=True) or ""
        mine = self.people[bungie_id]
        primary = next((a for a in mine if a.cross_save == a.membership_type), mine[0])
        return envelope(
            1,
            {
                "destinyMemberships": [self._card(a) for a in mine],
                "primaryMembershipId": primary.membership_id,
                "bungieNetUser": {
                    "membershipId": bungie_id,
                    "uniqueName": primary.bungie_name,
                    "displayName": primary.name,
                    "firstAccess": iso(EPOCH),
                    "locale": "en",
                },
            },
        )

    async def _search(self, request: Request) -> Response:
        """SearchDestinyPlayerByBungieName: every membership of that name (the overridden ones too)."""
        raw = await request.body()
        self._caller(request, bearer=False)
        body = self._json_body(raw)
        type_text = request.path_params["membership_type"]
        if not re.fullmatch(r"-?[0-9]{1,5}", type_text):
            raise refused(7)
        wanted = int(type_text)
        if wanted != ALL_TYPES and wanted not in DESTINY_TYPES:
            raise refused(8)
        name, code = body.get("displayName"), body.get("displayNameCode")
        if not isinstance(name, str) or isinstance(code, bool) or not isinstance(code, int):
            raise refused(30)
        found = [
            a
            for a in self.accounts.values()
            if a.name.casefold() == name.casefold()
            and a.name_code == code
            and wanted in (ALL_TYPES, a.membership_type)
        ]
        return envelope(1, [self._card(a) for a in sorted(found, key=lambda a: a.membership_type)])

    async def _groups_for_member(self, request: Request) -> Response:
        self._caller(request, bearer=False)
        return self._groups_of(request, potential=False)

    async def _potential(self, request: Request) -> Response:
        self._caller(request, bearer=False)
        return self._groups_of(request, potential=True)

    def _groups_of(self, request: Request, *, potential: bool) -> Response:
        key = self._target(request)
        if key not in self.accounts:
            raise refused(1601)
        group_filter = request.path_params["group_filter"]
        results: list[dict[str, Any]] = []
        for clan in self.clans.values():
            if potential and key in clan.invited:
                member = {
                    "potentialStatus": 2,
                    "groupId": clan.group_id,
                    "destinyUserInfo": self._card(self.accounts[key]),
                    "bungieNetUserInfo": self.accounts[key].bungie_info(),
                    "joinDate": iso(clan.invited[key][0]),
                }
            elif not potential and key in clan.members:
                founded = clan.members[key][0] == FOUNDER
                if (group_filter == "1" and not founded) or (group_filter == "2" and founded):
                    continue
                member = self._member_row(clan, key)
            else:
                continue
            results.append({"member": member, "group": self._group_detail(clan)})
        return envelope(
            1,
            {
                "areAllMembershipsInactive": {r["group"]["groupId"]: False for r in results},
                "results": results,
                "totalResults": len(results),
                "hasMore": False,
                "query": {"itemsPerPage": 100, "currentPage": 1},
                "useTotalResults": True,
            },
        )

    async def _get_group(self, request: Request) -> Response:
        bungie_id = self._caller(request, bearer=False)
        clan = self._clan(request)
        mine = [k for k in clan.members if self.accounts[k].bungie_id == bungie_id] if bungie_id else []
        return envelope(
            1,
            {
                "detail": self._group_detail(clan),
                "founder": self._member_row(clan, clan.founder),
                "alliedIds": [],
                "allianceStatus": 0,
                "groupJoinInviteCount": len(clan.invited),
                "currentUserMembershipsInactiveForDestiny": False,
                "currentUserMemberMap": {
                    str(self.accounts[k].membership_type): self._member_row(clan, k) for k in mine
                },
                "currentUserPotentialMemberMap": {},
            },
        )

    async def _members(self, request: Request) -> Response:
        self._caller(request, bearer=False)
        clan = self._clan(request)
        keys = sorted(clan.members, key=lambda k: (-clan.members[k][0], clan.members[k][1]))
        member_type = request.query_params.get("memberType")
        if member_type and member_type.isdigit() and int(member_type) > 0:
            keys = [k for k in keys if clan.members[k][0] == int(member_type)]
        search = (request.query_params.get("nameSearch") or "").lower()
        if search:
            keys = [k for k in keys if self.accounts[k].name.lower().startswith(search)]
        return self._page(request, keys, MEMBERS_PAGE, lambda k: self._member_row(clan, k))

    def _admin_clan(self, request: Request) -> Clan:
        """The clan of an admin listing (AdminGroups; Admin or above)."""
        bungie_id = self._caller(request, bearer=True)
        clan = self._clan(request)
        if self._caller_level(clan, bungie_id) < ADMIN:
            raise refused(12)
        return clan

    async def _invited(self, request: Request) -> Response:
        clan = self._admin_clan(request)
        keys = sorted(clan.invited, key=lambda k: clan.invited[k][0])
        return self._page(request, keys, INVITED_PAGE, lambda k: self._invite_row(clan, k))

    async def _pending(self, request: Request) -> Response:
        self._admin_clan(request)
        return self._page(request, [], INVITED_PAGE, lambda k: {})

    async def _banned(self, request: Request) -> Response:
        clan = self._admin_clan(request)
        return self._page(request, sorted(clan.banned), INVITED_PAGE, lambda k: self._ban_row(clan, k))

    async def _invite(self, request: Request) -> Response:
        raw = await request.body()
        bungie_id = self._caller(request, bearer=True)
        clan = self._clan(request)
        key = self._target(request)
        self.invite_requested(clan.group_id, key)
        message = self._json_body(raw).get("message")
        if message is not None and not isinstance(message, str):
            raise refused(30)
        if not self._may_invite(clan, bungie_id):
            raise refused(12)
        account = self.accounts.get(key)
        if account is None:
            raise refused(1601)
        if key in clan.banned:
            raise refused(623)
        if key in clan.members:
            raise refused(676)
        if not account.allows_invites:
            raise refused(695)
        if len(clan.members) >= clan.maximum_members:
            raise refused(667)
        if key not in clan.invited:  # a second invite is Success again, still one invitation
            clan.invited[key] = (datetime.now(timezone.utc), message or "")
            self.invite_applied(clan.group_id, key)
        return envelope(1, {"resolution": 0})

    async def _cancel(self, request: Request) -> Response:
        """IndividualInviteCancel: Success/Rescinded, also when nobody was invited."""
        bungie_id = self._caller(request, bearer=True)
        clan = self._clan(request)
        key = self._target(request)
        self.removal_requested(clan.group_id, key)
        if not self._may_invite(clan, bungie_id):
            raise refused(12)
        if clan.invited.pop(key, None) is not None:
            self.removal_applied(clan.group_id, key)
        return envelope(1, {"resolution": RESCINDED})

    async def _kick(self, request: Request) -> Response:
        """Kick: an Admin or above removes a member of lower rank; GroupMemberLeaveResult."""
        bungie_id = self._caller(request, bearer=True)
        clan = self._clan(request)
        key = self._target(request)
        self.removal_requested(clan.group_id, key)
        level = self._caller_level(clan, bungie_id)
        if level < ADMIN:
            raise refused(12)
        if key not in clan.members:
            raise refused(KICK_NOT_A_MEMBER)
        if clan.members[key][0] >= level:  # the founder outranks everyone
            raise refused(KICK_OUTRANKED)
        del clan.members[key]
        self.removal_applied(clan.group_id, key)
        return envelope(1, {"group": self._group_detail(clan), "groupDeleted": False})

    async def _unknown(self, request: Request) -> Response:
        if not request.url.path.endswith(
            "/"
        ):  # Bungie redirects to the slashed path (dropping Authorization)
            location = f"{request.url.path}/" + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(location, status_code=301)
        body = {
            "ErrorCode": 7,
            "ThrottleSeconds": 0,
            "ErrorStatus": "ParameterParseFailure",
            "Message": "No endpoint matches this path.",
            "MessageData": {},
        }
        return JSONResponse(body, status_code=404)


def _is_int64(text: str) -> bool:
    return bool(INT64_RE.fullmatch(text)) and 0 < int(text) <= INT64_MAX


PLATFORM = BungieSandbox
