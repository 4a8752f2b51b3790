"""Turn a benchmark run into Markdown tables, docs/performance.md and an SVG plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def bulk_table(results: dict[str, Any]) -> str:
    rows = [
        [
            r["platform"],
            f"{r['ours_requests_per_person']:.3f}",
            f"{r['baseline_requests_per_person']:.2f}",
            f"{r['ours_wall_s']:.1f}",
            f"{r['baseline_wall_s']:.1f}",
            f"{r['wall_ratio']:.2f}",
            "yes" if not r["failure"] and r["ours_ok"] == r["people"] else f"no: {r['failure']}",
        ]
        for r in results.get("bulk", [])
    ]
    return _table(
        [
            "platform",
            "requests/person (ours)",
            "requests/person (baseline)",
            "wall s (ours)",
            "wall s (baseline)",
            "wall ratio",
            "all invited",
        ],
        rows,
    )


def lookup_table(results: dict[str, Any]) -> str:
    rows = [
        [
            r["platform"],
            f"{r['group_size']:,}",
            f"{r['people']:,}",
            str(r["lookup_requests"]),
            str(r["requests"]),
            f"{r['wall_s']:.2f}",
        ]
        for r in results.get("lookup", [])
    ]
    return _table(
        ["platform", "group size", "people to invite", "look-up and auth requests", "all requests", "wall s"],
        rows,
    )


def rate_table(results: dict[str, Any]) -> str:
    rows = []
    for r in results.get("rate", []):
        fraction = (
            "n/a (no limit for the bot)"
            if r["fraction_of_ceiling"] is None
            else f"{r['fraction_of_ceiling']:.2f}"
        )
        rows.append(
            [
                r["platform"],
                str(r["people"]),
                f"{r['wall_s']:.1f}",
                f"{r['requests_per_s']:.1f}",
                f"{r['invites_per_s']:.1f}",
                fraction,
                str(r["throttle_replies"]),
                str(r["throttles_reaching_failure"]),
            ]
        )
    return _table(
        [
            "platform",
            "people",
            "wall s",
            "requests/s",
            "invites/s",
            "fraction of ceiling",
            "throttle replies",
            "throttles reaching a failure",
        ],
        rows,
    )


def parse_table(results: dict[str, Any]) -> str:
    rows = [
        [
            r["file"],
            f"{r['dag_ms']:.0f}",
            f"{r['sdk_ms']:.0f}",
            str(r["modules_added"]),
            ", ".join(r["server_modules"]) or "none",
        ]
        for r in results.get("parse", [])
    ]
    return _table(
        ["DAG file", "ms over airflow.sdk", "airflow.sdk import ms", "modules added", "server modules"], rows
    )


def scale_table(results: dict[str, Any]) -> str:
    rows = [
        [
            r["platform"],
            str(r["people"]),
            f"{r['wall_s']:.1f}",
            str(r["requests"]),
            f"{r['requests'] / r['people']:.3f}",
        ]
        for r in results.get("scale", [])
    ]
    return _table(["platform", "people", "wall s", "requests", "requests/person"], rows)


def render(results: dict[str, Any]) -> str:
    parts = [
        f"## Bulk invite of 1,000 people ({results['latency_ms']} ms latency, limits off)\n\n{bulk_table(results)}",
        f"## Look-up cost that fits the group\n\n{lookup_table(results)}" if results.get("lookup") else "",
        f"## At each platform's documented rate limit (scale 1)\n\n{rate_table(results)}",
        f"## DAG parse cost\n\n{parse_table(results)}",
        f"## Scale\n\n{scale_table(results)}",
        f"Total run: {results['total_s']:.0f} s",
    ]
    return "\n\n".join(p for p in parts if p)


def scale_svg(results: dict[str, Any]) -> str:
    """Wall time against people, log-log, one line per platform (no plotting library needed)."""
    rows = results.get("scale", [])
    width, height, pad = 560, 340, 60
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    xs = [r["people"] for r in rows] or [1]
    ys = [max(r["wall_s"], 0.01) for r in rows] or [1]
    x0, x1 = math.log10(min(xs)), math.log10(max(xs)) or 1
    y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    y1 = max(y1, y0 + 1)

    def px(x: float) -> float:
        return pad + (math.log10(x) - x0) / max(x1 - x0, 1e-9) * (width - 2 * pad)

    def py(y: float) -> float:
        return height - pad - (math.log10(y) - y0) / (y1 - y0) * (height - 2 * pad)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    out.append(
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>'
    )
    out.append(f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>')
    for x in sorted(set(xs)):
        out.append(f'<text x="{px(x):.0f}" y="{height - pad + 18}" text-anchor="middle">{x:,}</text>')
    for exp in range(y0, y1 + 1):
        y = 10.0**exp
        out.append(f'<text x="{pad - 8}" y="{py(y) + 4:.0f}" text-anchor="end">{y:g} s</text>')
        out.append(f'<line x1="{pad}" y1="{py(y):.0f}" x2="{width - pad}" y2="{py(y):.0f}" stroke="#ddd"/>')
    out.append(f'<text x="{width / 2:.0f}" y="{height - 12}" text-anchor="middle">people invited</text>')
    out.append(
        f'<text x="{width / 2:.0f}" y="20" text-anchor="middle">Wall time against people (log-log)</text>'
    )
    for i, platform in enumerate(sorted({r["platform"] for r in rows})):
        points = sorted((r["people"], max(r["wall_s"], 0.01)) for r in rows if r["platform"] == platform)
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        colour = colours[i % len(colours)]
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{width - pad + 4}" y="{pad + 16 * i}" fill="{colour}">{platform}</text>')
    out.append("</svg>")
    return "\n".join(out)


INTRO = """# Performance

Figures from the last `make bench` run (`benchmarks/run.py`, results in `benchmarks/results/latest.json`).
The sandbox runs as its own process on loopback and adds {latency} ms to every request, so wall times are
dominated by round trips, as against a real API. Machine: 2 cores.

How to reproduce: `make bench` (under 10 minutes; it prints these tables and rewrites this page).

What the figures mean and what limits them:

- **Bulk**: 1,000 new people into one group. *Ours* is the operator (one look-up of the group per batch,
  lists where the platform takes them, concurrent requests where allowed). *Baseline* is what a user would
  write with plain `requests`: per person one membership check and one invite, in sequence
  (`benchmarks/baselines.py`). Sandbox rate limits and our client-side pacing are off here, so the
  comparison is about requests and round trips.
- **Look-up cost**: a group of 50,000 members and 3 people to invite: the hooks check those people one by
  one instead of listing the whole group, where the platform has a per-person check.
- **Rate limit**: the sandbox enforces each platform's documented limit (scale 1) and our hooks pace
  themselves by default. *Fraction of ceiling* = requests sent / requests the limit allows in that time
  (burst included; Bungie: its sustained 25/s). Rocket.Chat's limiter does not apply to a user with the
  `bot` role. VRChat publishes no limit: the sandbox assumes 10/s with bursts of 120, while our hook
  paces itself at 2/s by default because VRChat asks for gentle clients; the second VRChat row shows the
  same pacing set to the sandbox's limit (`max_requests_per_second: 10`, `burst: 120`). PlayFab publishes
  no numbers either (the sandbox assumes 100/s, bursts of 1,000) and our hook does not pace it: it
  honours `retryAfterSeconds` instead, so a few throttle replies are expected and none reaches a task.
- **Parse cost**: each DAG file imported over a bare `import airflow.sdk`, median of 5 fresh processes;
  server modules (FastAPI, uvicorn, Starlette, the sandbox) must not appear.
- **Scale**: wall time and requests for 100, 1,000 and 10,000 people (limits off).
"""


#: what follows this line in docs/performance.md is written by other benchmarks (ui_render.py): kept
KEPT_MARKER = "<!-- below: written by other benchmarks, kept by make bench -->"


def write_docs(results: dict[str, Any], docs: Path) -> None:
    (docs / "images").mkdir(parents=True, exist_ok=True)
    (docs / "images" / "scale.svg").write_text(scale_svg(results))
    body = INTRO.format(latency=results["latency_ms"]) + "\n" + render(results)
    body += "\n\n![Wall time against people](images/scale.svg)\n"
    page = docs / "performance.md"
    if page.exists() and KEPT_MARKER in page.read_text():
        body += f"\n{KEPT_MARKER}{page.read_text().split(KEPT_MARKER, 1)[1]}"
    page.write_text(body)
