"""Bungie.net: invite Destiny players into a clan."""

from __future__ import annotations

from airflow_invites.operators.base import GroupInviteOperator, GroupRemoveOperator


class BungieClanInviteOperator(GroupInviteOperator):
    """Invite Destiny players into a Bungie.net clan (``GroupV2 IndividualInvite``, one call per person).

    ``users`` are Destiny memberships as ``<membershipType>:<membershipId>`` (type by number or name:
    ``3:4611686018467284386``, ``TigerSteam:4611686018467284386``) or Bungie Names (``name:Guardian#0042``
    or bare ``Guardian#0042``: the cross-save primary membership). ``message`` is the invitation text.
    Bungie answers Success to a repeated invite, so the look-up (members, pending invitations) decides
    ``already_member`` / ``already_invited`` and nobody is invited twice. The player must accept in
    the game or on bungie.net; until then the outcome is ``invited``.
    """

    platform = "bungie"


class BungieClanRemoveOperator(GroupRemoveOperator):
    """Remove Destiny players from a Bungie.net clan: ``Kick`` for members, ``IndividualInviteCancel`` for pending invitations.

    Only people the look-up lists get a request: ``IndividualInviteCancel`` answers Success even for
    nobody invited, and ``Kick`` answers 611 for someone already gone (re-checked, then ``already_absent``).
    Outcomes ``removed``, ``invite_cancelled``, ``already_absent``, ``would_remove`` (dry run) or
    ``failed`` (the clan's founder and the connection's own account are never removed).
    """

    platform = "bungie"
