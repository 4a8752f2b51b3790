"""The one registry of platforms: names, classes, id formats, connection form fields.

Pure data (no imports of hooks or Airflow at import time), so provider info, the DAG files and the
trigger form read it cheaply. ``get_provider_info()`` is built from it; hooks, operators, params and
validation take their id patterns from it; ``load_class`` is the one place a class path becomes a
class.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from importlib import import_module
from typing import Any

COMMON_CONN_FIELDS: dict[str, dict[str, Any]] = {
    "timeout": {
        "label": "Timeout (s)",
        "description": "Seconds to wait for each HTTP reply.",
        "schema": {"type": ["number", "null"], "minimum": 0.1, "maximum": 600, "default": 30},
    },
    "max_requests_per_second": {
        "label": "Max requests per second",
        "description": "Client-side pacing. Empty: the platform's documented limit; 0: no pacing.",
        "schema": {"type": ["number", "null"], "minimum": 0},
    },
    "burst": {
        "label": "Burst",
        "description": "Requests allowed at once before pacing starts. Empty: the platform's documented burst.",
        "schema": {"type": ["integer", "null"], "minimum": 1},
    },
    "defer_after": {
        "label": "Defer waits longer than (s)",
        "description": "When the platform asks to wait longer than this, the task waits in the triggerer "
        "(its worker slot freed) instead of sleeping. Empty: 30; 0: never defer.",
        "schema": {"type": ["number", "null"], "minimum": 0, "maximum": 86400},
    },
    "verify_ssl": {
        "label": "Verify TLS",
        "description": "Verify the server's TLS certificate. Turn off only for a test server.",
        "schema": {"type": "boolean", "default": True},
    },
}


def _secret(label: str, description: str) -> dict[str, Any]:
    return {
        "label": label,
        "description": description,
        "schema": {"type": ["string", "null"], "format": "password"},
    }


def _text(label: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"label": label, "description": description, "schema": {"type": ["string", "null"], **schema}}


def load_class(path: str) -> type:
    """The class at ``package.module.ClassName``, imported on first use."""
    module_path, _, name = path.rpartition(".")
    found = getattr(import_module(module_path), name, None)
    if not isinstance(found, type):
        raise ImportError(f"{path} is not a class")
    return found


@dataclass(frozen=True)
class PlatformSpec:
    """One platform: its names, classes (by path, imported on first use), id formats and forms.

    ``user_pattern``/``group_pattern`` are the shapes of a platform id and a group id; the hook's
    checks, the trigger form and the bulk planner all use them.
    """

    name: str
    display: str
    hook: str  # class path
    operator: str  # class path of the invite operator
    remove_operator: str  # class path of the remove operator
    user_description: str
    user_pattern: str
    group_description: str
    group_pattern: str
    conn_fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    ui_field_behaviour: dict[str, Any] = field(default_factory=dict)
    #: handle kind -> what it is on this platform (``email:``, ``username:``, ``name:``); the hook resolves these
    handle_kinds: dict[str, str] = field(default_factory=dict)
    #: a regular expression of the handles accepted without their ``kind:`` prefix (None: none)
    bare_handle_pattern: str | None = None

    @property
    def conn_type(self) -> str:
        return self.name

    @property
    def default_conn_id(self) -> str:
        return f"{self.name}_default"

    @cached_property
    def user_re(self) -> re.Pattern[str]:
        return re.compile(self.user_pattern)

    @cached_property
    def group_re(self) -> re.Pattern[str]:
        return re.compile(self.group_pattern)

    @property
    def hook_class(self) -> Any:
        """The hook class (an ``InvitesHook`` subclass)."""
        return load_class(self.hook)

    @property
    def operator_class(self) -> Any:
        return load_class(self.operator)

    @property
    def remove_operator_class(self) -> Any:
        return load_class(self.remove_operator)

    @property
    def person_forms(self) -> str:
        """How the trigger form and errors say what this platform takes for a person."""
        forms = [f"{kind}:<{meaning}>" for kind, meaning in self.handle_kinds.items()]
        return "; or ".join([self.user_description.rstrip("."), *forms])

    @property
    def person_pattern(self) -> str:
        """A person on this platform: an id, a ``kind:`` handle it resolves, or a bare handle."""
        parts = [self.user_pattern]
        if self.handle_kinds:
            parts.append(rf"^({'|'.join(self.handle_kinds)}):\S.*$")
        if self.bare_handle_pattern:
            parts.append(self.bare_handle_pattern)
        return "|".join(f"(?:{p})" for p in parts)

    def hook_for(self, conn_id: str | None = None) -> Any:
        """A hook on ``conn_id`` (default ``<platform>_default``)."""
        return self.hook_class(conn_id=conn_id or self.default_conn_id)


PLATFORMS: dict[str, PlatformSpec] = {
    spec.name: spec
    for spec in (
        PlatformSpec(
            name="bungie",
            display="Bungie.net",
            hook="airflow_invites.hooks.bungie.BungieHook",
            operator="airflow_invites.operators.bungie.BungieClanInviteOperator",
            remove_operator="airflow_invites.operators.bungie.BungieClanRemoveOperator",
            user_description="Destiny membership as <membershipType>:<membershipId>, e.g. 3:4611686018467284386 "
            "(type by number or name: TigerXbox=1, TigerPsn=2, TigerSteam=3, TigerEgs=6), or a Bungie Name: "
            "name:Guardian#0042 (its cross-save primary membership).",
            user_pattern=r"^\s*([A-Za-z]+|[0-9]{1,3})\s*:\s*[1-9][0-9]{0,18}\s*$",
            group_description="Clan (group) id, digits only, e.g. 4107840.",
            group_pattern=r"^[1-9][0-9]{0,18}$",
            conn_fields={
                "api_key": _secret(
                    "API key",
                    "X-API-Key of your Bungie.net application (https://www.bungie.net/en/Application).",
                ),
                "refresh_token": _secret(
                    "Refresh token",
                    "First OAuth refresh token of a clan founder (Confidential client, AdminGroups scope). "
                    "Bungie rotates it on every refresh: the newest is kept in the Variable "
                    "airflow_invites__<conn_id>__refresh_token. Put a new one here to re-authorise.",
                ),
            },
            handle_kinds={"name": "a Bungie Name, e.g. Guardian#1234"},
            bare_handle_pattern=r"^[^#:]{1,26}#[0-9]{1,4}$",
            ui_field_behaviour={
                "hidden-fields": ["schema", "port"],
                "relabeling": {
                    "login": "OAuth client id",
                    "password": "OAuth client secret",
                    "host": "API root",
                },
                "placeholders": {"host": "https://www.bungie.net/Platform", "login": "33107"},
            },
        ),
        PlatformSpec(
            name="vrchat",
            display="VRChat",
            hook="airflow_invites.hooks.vrchat.VRChatHook",
            operator="airflow_invites.operators.vrchat.VRChatGroupInviteOperator",
            remove_operator="airflow_invites.operators.vrchat.VRChatGroupRemoveOperator",
            user_description="VRChat user id: usr_<uuid> (lower-case), or a legacy 10-character id.",
            user_pattern=r"^(usr_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[A-Za-z0-9]{10})$",
            group_description="VRChat group id: grp_<uuid> (lower-case).",
            group_pattern=r"^grp_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
            conn_fields={
                "totp_secret": _secret(
                    "TOTP secret",
                    "Base32 seed of the account's authenticator app (2FA); codes are computed at run time.",
                ),
                "auth_cookie": _secret(
                    "auth cookie",
                    "Optional ready 'auth' cookie (authcookie_...), used before logging in. "
                    "Session cookies obtained later are kept in a masked Variable.",
                ),
                "user_agent": _text(
                    "User-Agent",
                    "VRChat requires a descriptive one: name/version contact (your e-mail or URL).",
                    default="airflow-invites/0.1.0 (+https://github.com/airflow-invites/airflow-invites)",
                ),
            },
            handle_kinds={
                "name": "a VRChat display name, matched whole (case ignored); not unique, it may change"
            },
            ui_field_behaviour={
                "hidden-fields": ["schema", "port"],
                "relabeling": {"login": "Username or e-mail", "password": "Password", "host": "API root"},
                "placeholders": {"host": "https://api.vrchat.cloud/api/1", "login": "my-invites-bot"},
            },
        ),
        PlatformSpec(
            name="playfab",
            display="PlayFab",
            hook="airflow_invites.hooks.playfab.PlayFabHook",
            operator="airflow_invites.operators.playfab.PlayFabGroupInviteOperator",
            remove_operator="airflow_invites.operators.playfab.PlayFabGroupRemoveOperator",
            user_description="Entity id of a title_player_account (16 upper-case hex), "
            "or <type>:<id> with type title_player_account or character.",
            user_pattern=r"^((title_player_account|character):)?[0-9A-F]{16}$",
            group_description="Group entity id (16 upper-case hex).",
            group_pattern=r"^[0-9A-F]{16}$",
            conn_fields={},
            handle_kinds={
                "email": "the e-mail of the player's PlayFab account",
                "username": "the account's PlayFab username (3-20 letters and digits)",
            },
            bare_handle_pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
            ui_field_behaviour={
                "hidden-fields": ["schema", "port"],
                "relabeling": {"login": "Title id", "password": "Title secret key", "host": "API base URL"},
                "placeholders": {"host": "https://<titleId>.playfabapi.com", "login": "A1B2C"},
            },
        ),
        PlatformSpec(
            name="bitrix24",
            display="Bitrix24",
            hook="airflow_invites.hooks.bitrix24.Bitrix24Hook",
            operator="airflow_invites.operators.bitrix24.Bitrix24GroupInviteOperator",
            remove_operator="airflow_invites.operators.bitrix24.Bitrix24GroupRemoveOperator",
            user_description="Bitrix24 user id: a positive integer.",
            user_pattern=r"^[1-9][0-9]{0,9}$",
            group_description="Workgroup id: a positive integer.",
            group_pattern=r"^[1-9][0-9]{0,9}$",
            conn_fields={
                "auth_type": {
                    "label": "Auth type",
                    "description": "webhook: inbound webhook (user id + code); oauth: an OAuth application.",
                    "schema": {"type": "string", "enum": ["webhook", "oauth"], "default": "webhook"},
                },
                "webhook_user_id": _text(
                    "Webhook user id", "The user id in the webhook URL.", pattern=r"^[0-9]*$"
                ),
                "webhook_code": _secret("Webhook code", "The secret code in the webhook URL."),
                "client_id": _text("OAuth client id", "OAuth application's client id (local.xxxx)."),
                "client_secret": _secret("OAuth client secret", "OAuth application's client secret."),
                "refresh_token": _secret(
                    "Refresh token", "First OAuth refresh token; rotated ones go to a Variable."
                ),
                "oauth_server": _text(
                    "OAuth server",
                    "Where tokens are refreshed: https://oauth.bitrix.info (.com portals) or "
                    "https://oauth.bitrix24.tech (.ru portals).",
                    default="https://oauth.bitrix.info",
                ),
                "allow_http": {
                    "label": "Allow plain HTTP",
                    "description": "Only for a test server (the sandbox in a container). Loopback needs no flag.",
                    "schema": {"type": "boolean", "default": False},
                },
            },
            handle_kinds={"email": "the e-mail address of the person's Bitrix24 account"},
            bare_handle_pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
            ui_field_behaviour={
                "hidden-fields": ["schema", "port", "login", "password"],
                "relabeling": {"host": "Portal URL"},
                "placeholders": {"host": "https://yourcompany.bitrix24.com"},
            },
        ),
        PlatformSpec(
            name="rocketchat",
            display="Rocket.Chat",
            hook="airflow_invites.hooks.rocketchat.RocketChatHook",
            operator="airflow_invites.operators.rocketchat.RocketChatGroupInviteOperator",
            remove_operator="airflow_invites.operators.rocketchat.RocketChatGroupRemoveOperator",
            user_description="Rocket.Chat user id (17 characters, e.g. nSYqWzZ4GsKTX4dyK).",
            user_pattern=r"^[A-Za-z0-9._-]{1,64}$",
            group_description="Private group id or name (e.g. ByehQjC44FwMeiLbX, onboarding).",
            group_pattern=r"^[A-Za-z0-9._-]{1,64}$",
            conn_fields={
                "auth_type": {
                    "label": "Auth type",
                    "description": "token: personal access token (login = user id); "
                    "password: username/password login (login = username).",
                    "schema": {"type": "string", "enum": ["token", "password"], "default": "token"},
                },
                "totp_secret": _secret(
                    "TOTP secret", "Base32 seed for two-factor login (password auth only)."
                ),
            },
            handle_kinds={
                "username": "the account's username, exactly as Rocket.Chat stores it (a leading @ is dropped)",
                "email": "the account's e-mail address (Rocket.Chat 8.4 or later; the bot needs "
                "view-full-other-user-info)",
            },
            bare_handle_pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
            ui_field_behaviour={
                "hidden-fields": ["schema", "port"],
                "relabeling": {
                    "host": "Server URL",
                    "login": "User id (token) or username (password)",
                    "password": "Personal access token or password",
                },
                "placeholders": {"host": "https://chat.example.org", "login": "aobEdbYhXfu5hkeqG"},
            },
        ),
    )
}
