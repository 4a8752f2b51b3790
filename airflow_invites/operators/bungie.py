"""Bungie.net: invite Destiny players into a clan."""

from __future__ import annotations

from airflow_invites.operators.base import GroupInviteOperator, GroupRemoveOperator


class BungieClanInviteOperator(GroupInviteOperator):
    """Invite Destiny players into a Bungie.net clan (``GroupV2 IndividualInvite``, one call per person).

    ``users`` are Destiny memberships as ``<membershipType>:<membershipId>`` (type by number or name:
    ``3:4611686018467284386``, ``TigerSteam:4611686018467284386``). ``message`` is the invitation text.
    Bungie answers Success to a repeated invite, so the look-up (members, pending invitations) decides
    ``already_member`` / ``already_invited`` and nobody is invited twice. The player must accept in
    the game or on bungie.net; until then the outcome is ``invited``.
    """

    platform = "bungie"


class BungieClanRemoveOperator(GroupRemoveOperator):
    """Remove Destiny players from a Bungie.net clan: ``Kick`` for members, ``IndividualInviteCancel`` for pending invitations.

    Outcomes ``removed``, ``invite_cancelled``, ``already_absent``, ``would_remove`` (dry run) or
    ``failed`` (the owner and the connection's own account are never removed).
    """

    platform = "bungie"
