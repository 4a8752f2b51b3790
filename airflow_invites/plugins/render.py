"""The grid as one HTML page (server-rendered; ``static/grid.js`` only filters and opens links).

Every piece of data goes through ``html.escape`` (names may hold ``<``, quotes, ``|`` or newlines), and
the page's Content-Security-Policy allows no inline script, so data cannot become code.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from urllib.parse import quote

from airflow_invites import __version__
from airflow_invites.platforms import PLATFORMS
from airflow_invites.plugins.grid import Cell, Grid, Outcome
from airflow_invites.plugins.statuses import STATUS_STYLES, label_of, style_of


def airflow_link(root: str, dag_id: str, run_id: str, task_id: str | None = None, map_index: int = -1) -> str:
    """The Airflow UI page of a run, or of one of its task instances."""
    url = f"{root}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
    if task_id is not None:
        url += f"/tasks/{quote(task_id, safe='')}"
        if map_index >= 0:
            url += f"/mapped/{map_index}"
    return url


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def tooltip(person: str, platform: str, cell: Cell) -> str:
    """Hover text: per outcome (one per group) status, group, detail, code, run and task."""
    blocks = []
    for outcome in _ordered(cell):
        lines = [f"{person} on {platform}: {label_of(outcome.status)}"]
        if outcome.handle and outcome.user and outcome.user != outcome.handle:
            lines.append(f"user id: {outcome.user}")
        lines.append(f"group: {outcome.group}")
        if outcome.detail:
            lines.append(f"detail: {outcome.detail}")
        if outcome.code:
            lines.append(f"code: {outcome.code}")
        lines.append(f"run: {outcome.run.dag_id} / {outcome.run.run_id} ({when(outcome.run.run_after)})")
        mapped = f" [map index {outcome.map_index}]" if outcome.map_index >= 0 else ""
        lines.append(f"task: {outcome.task_id}{mapped}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _ordered(cell: Cell) -> list[Outcome]:
    primary = cell.primary
    return [primary, *(o for o in cell.outcomes if o is not primary)]


def render_page(*, grid: Grid, root: str, static: str, heading: str, scope: str, empty: str) -> str:
    """The whole page. ``root``: Airflow's base path; ``static``: where grid.css and grid.js are."""
    platforms = grid.platforms
    people = grid.people
    counts = grid.status_counts()
    unknown = sorted(s for s in counts if s not in STATUS_STYLES)
    out: list[str] = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(heading)}</title>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<link rel="stylesheet" href="{escape(static)}/grid.css?v={__version__}">',
        f'<script src="{escape(static)}/grid.js?v={__version__}" defer></script>',
        "</head><body>",
        f'<header><h1>{escape(heading)}</h1><p class="scope">{escape(scope)}</p></header>',
    ]
    if not people:
        out.append(f'<p class="empty" id="empty">{escape(empty)}</p>')
    else:
        out.append(_filters(platforms, unknown, len(people)))
        out.append(_legend(counts, unknown))
        out.append(_table(grid, people, platforms, root, last_seen=len(grid.runs) > 1))
    if grid.unreadable:
        out.append(
            f'<p class="note">{grid.unreadable} XCom values or items were not outcome records and are '
            "left out.</p>"
        )
    out.append("</body></html>")
    return "".join(out)


def _filters(platforms: list[str], unknown: list[str], total: int) -> str:
    platform_options = "".join(
        f'<option value="{escape(p)}">{escape(_platform_title(p))}</option>' for p in platforms
    )
    status_options = "".join(
        f'<option value="{escape(s)}">{escape(label_of(s))}</option>' for s in [*STATUS_STYLES, *unknown]
    )
    return (
        '<form class="filters" role="search" id="filters">'
        '<label>Person <input id="f-person" type="search" autocomplete="off" spellcheck="false"></label>'
        f'<label>Platform <select id="f-platform"><option value="">all</option>{platform_options}</select></label>'
        f'<label>Status <select id="f-status"><option value="">any</option>{status_options}</select></label>'
        f'<span id="shown" aria-live="polite" data-total="{total}">{total} people</span>'
        "</form>"
    )


def _legend(counts: dict[str, int], unknown: list[str]) -> str:
    """Every status with its colour and how many cells show it (a click filters by it)."""
    items = []
    for status in [*STATUS_STYLES, *unknown]:
        style = style_of(status)
        items.append(
            f'<li title="{escape(style.meaning)}" data-status="{escape(status)}">'
            f'<span class="chip {style.css_class}">{escape(label_of(status))}</span>'
            f' <span class="count">{counts.get(status, 0)}</span></li>'
        )
    return f'<ul class="legend" aria-label="Statuses">{"".join(items)}</ul>'


def _platform_title(platform: str) -> str:
    spec = PLATFORMS.get(platform)
    return spec.display if spec else platform


def _table(grid: Grid, people: list[str], platforms: list[str], root: str, last_seen: bool) -> str:
    """The grid; ``last_seen``: a column with the date of each person's newest run (not for one run)."""
    head = "".join(
        f'<th scope="col" data-platform="{escape(p)}">{escape(_platform_title(p))}</th>' for p in platforms
    )
    rows = []
    for person in people:
        cells = grid.row(person, platforms)
        newest = min(cells.values(), key=lambda c: c.run.rank).run
        person_html = escape(person)
        tds = []
        for platform in platforms:
            cell = cells.get(platform)
            if cell is None:
                tds.append(f'<td data-platform="{escape(platform)}"></td>')
                continue
            primary = cell.primary
            more = f" <small>+{len(cell.outcomes) - 1}</small>" if len(cell.outcomes) > 1 else ""
            href = airflow_link(
                root, primary.run.dag_id, primary.run.run_id, primary.task_id, primary.map_index
            )
            tds.append(
                f'<td data-platform="{escape(platform)}" data-status="{escape(primary.status)}">'
                f'<a class="cell {style_of(primary.status).css_class}" href="{escape(href)}" target="_top" '
                f'title="{escape(tooltip(person, platform, cell))}">{escape(label_of(primary.status))}{more}</a></td>'
            )
        run_href = airflow_link(root, newest.dag_id, newest.run_id)
        rows.append(
            f'<tr><th scope="row"><a class="person" href="{escape(run_href)}" target="_top" '
            f'title="{escape(f"newest run: {newest.dag_id} / {newest.run_id}")}">{person_html}</a></th>'
            f"{_when_cell(newest.run_after) if last_seen else ''}{''.join(tds)}</tr>"
        )
    when_th = '<th scope="col">Last seen</th>' if last_seen else ""
    return (
        '<table class="grid" id="grid"><thead><tr><th scope="col">Person</th>'
        f"{when_th}{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _when_cell(moment: datetime | None) -> str:
    return f'<td class="when">{escape(when(moment))}</td>'
