"""Invite operators: one generic base, one thin subclass per platform."""
