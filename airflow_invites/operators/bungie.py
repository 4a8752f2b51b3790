"""Bungie.net: invite Destiny players into a clan."""

from __future__ import annotations

from airflow_invites.operators.base import GroupInviteOperator


class BungieClanInviteOperator(GroupInviteOperator):
    """Invite Destiny players into a Bungie.net clan (``GroupV2 IndividualInvite``, one call per person).

    ``users`` are Destiny memberships as ``<membershipType>:<membershipId>`` (type by number or name:
    ``3:4611686018467284386``, ``TigerSteam:4611686018467284386``). ``message`` is the invitation text.
    Bungie answers Success to a repeated invite, so the look-up (members, pending invitations) decides
    ``already_member`` / ``already_invited`` and nobody is invited twice. The player must accept in
    the game or on bungie.net; until then the outcome is ``invited``.
    """

    platform = "bungie"
