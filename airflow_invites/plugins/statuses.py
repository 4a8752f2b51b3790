"""How each outcome status looks in the grid: label, colours, meaning, and which one a cell shows first.

Keyed by the status string the operators push to XCom; a status missing here is shown verbatim in grey.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StatusStyle:
    status: str
    label: str
    background: str
    text: str
    meaning: str
    #: lower = shown first when one cell holds several outcomes (several groups in one run)
    rank: int
    dashed: bool = False  # dry runs: nothing was changed

    @property
    def css_class(self) -> str:
        return f"st-{self.status.replace('_', '-')}"


# fmt: off
_TABLE = (
    # status             label               background text       rank meaning
    ("failed",           "failed",           "#c62828", "#ffffff",  0, "the platform refused, or the task could not tell"),
    ("invited",          "invited",          "#1565c0", "#ffffff", 10, "an invitation was sent in this run"),
    ("joined",           "joined",           "#2e7d32", "#ffffff", 11, "their request to join was accepted in this run"),
    ("removed",          "removed",          "#e65100", "#ffffff", 12, "removed from the group in this run"),
    ("invite_cancelled", "invite cancelled", "#ffb74d", "#4e2600", 13, "a pending invitation was withdrawn"),
    ("would_invite",     "would invite",     "#e3f2fd", "#0d47a1", 20, "dry run: would have been invited"),
    ("would_remove",     "would remove",     "#fff3e0", "#8a3300", 21, "dry run: would have been removed"),
    ("already_invited",  "already invited",  "#90caf9", "#0d2f66", 30, "an invitation was pending"),
    ("already_member",   "already member",   "#a5d6a7", "#173d19", 31, "was already in the group"),
    ("kept",             "kept",             "#80cbc4", "#00332c", 32, "on the roster, left in the group"),
    ("already_absent",   "already absent",   "#d7ccc8", "#3e2723", 33, "was not in the group"),
)
# fmt: on
STATUS_STYLES: dict[str, StatusStyle] = {
    status: StatusStyle(status, label, background, text, meaning, rank, dashed=status.startswith("would_"))
    for status, label, background, text, rank, meaning in _TABLE
}

#: any status this table does not know (shown verbatim)
UNKNOWN_STYLE = StatusStyle("unknown", "", "#757575", "#ffffff", "a status this view does not know", 5)


def style_of(status: str) -> StatusStyle:
    return STATUS_STYLES.get(status, UNKNOWN_STYLE)


def label_of(status: str) -> str:
    """The text shown for a status: its label, or the status itself when unknown."""
    style = STATUS_STYLES.get(status)
    return style.label if style else status


def stylesheet() -> str:
    """One CSS rule per status (class names come from this table only, never from data)."""
    rules = []
    for style in (*STATUS_STYLES.values(), UNKNOWN_STYLE):
        border = f"1px dashed {style.text}" if style.dashed else "1px solid transparent"
        rules.append(
            f".{style.css_class}{{background:{style.background};color:{style.text};border:{border}}}"
        )
    return "\n".join(rules) + "\n"
