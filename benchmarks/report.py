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
            f"{r['ours_wall_s']:.1f}",
            "yes" if not r["failure"] and r["ours_ok"] == r["people"] else f"no: {r['failure']}",
        ]
        for r in results.get("bulk", [])
    ]
    return _table(["platform", "requests/person", "wall s", "all invited"], rows)


def client_name(results: dict[str, Any], row: dict[str, Any]) -> str:
    if row["client"] == "ours":
        return "**airflow-invites**"
    version = results.get("peer_clients", {}).get(row["client"], "")
    return f"{row['client']} {version}: {row['label']}"


def peers_table(results: dict[str, Any]) -> str:
    rows = []
    for r in results.get("peers", []):
        again = r["rerun"]
        rows.append(
            [
                r["platform"],
                client_name(results, r),
                r["limits"],
                f"{r['wall_s']:.2f}",
                str(r["requests"]),
                str(r.get("sign_in_requests", "")),
                str(r["throttle_replies"]),
                str(r["applied"]),
                str(r["not_invited"]),
                f"{again['wall_s']:.2f}",
                str(again["requests"]),
                str(again["applied"]),
                str(again["not_invited"]),
            ]
        )
    return _table(
        [
            "platform",
            "client: how it is driven",
            "limits",
            "wall s",
            "requests",
            "of which sign-in",
            "throttled",
            "applied",
            "not invited",
            "re-run wall s",
            "re-run requests",
            "re-run applied",
            "not invited after re-run",
        ],
        rows,
    )


#: why a client can be faster than ours, by (platform or "*", form); ``{ours_rate}`` is our
#: requests per second in the same run, so the reason follows the hooks' pacing as it changes
WHY_FASTER = {
    ("*", "bulk"): "one request carries every person and nothing is read first; ours reads the group "
    "first (its look-up requests are counted in the table) so that it can report who was already "
    "there and never send to them again, then sends the invites in calls of its own batch size",
    ("bitrix24", "batch"): "every invite rides in a few batch requests and nothing is read first; ours "
    "reads the group first (its look-up requests are counted in the table)",
    ("bungie", "gather"): "bungio sends every invite at once (up to 100 in flight; its own limiter "
    "allows 240 per 10 s) and reads nothing first; ours reads the group first and paced itself at "
    "{ours_rate:.1f} requests/s, although Bungie averages its 25 requests/s over 10 s",
    ("bungie", "loop"): "a sequential loop of this size stays under Bungie's 250 requests per 10 s "
    "without pacing; ours paced itself at {ours_rate:.1f} requests/s from the first request",
    ("vrchat", "loop"): "one request per person, unpaced and without retries; ours paces itself where "
    "VRChat publishes no limit ({ours_rate:.1f} requests/s in this run), so it is slower, while the "
    "unpaced client loses invites to throttle replies once limits are on (see *not invited*)",
    ("*", "loop"): "one request per person in sequence and nothing read first",
}


def per_person_table(results: dict[str, Any]) -> str:
    """Our first run per platform (limits off): requests per person, with and without signing in."""
    rows = []
    for r in results.get("peers", []):
        if r["client"] != "ours" or r["limits"] != "off":
            continue
        sign_in = r.get("sign_in_requests", 0)
        rows.append(
            [
                r["platform"],
                str(r["people"]),
                str(r["requests"]),
                str(sign_in),
                f"{r['requests'] / r['people']:.3f}",
                f"{(r['requests'] - sign_in) / r['people']:.3f}",
            ]
        )
    headers = ["platform", "people", "requests", "of which sign-in", "per person", "per person, signed in"]
    return _table(headers, rows)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def why_faster(row: dict[str, Any], ours: dict[str, Any]) -> str:
    reason = WHY_FASTER.get((row["platform"], row["form"])) or WHY_FASTER.get(("*", row["form"]))
    return (reason or "see the table").format(ours_rate=ours["requests"] / ours["wall_s"])


def faster_peers(results: dict[str, Any]) -> str:
    """Every (platform, limits) where a client's first run beat ours, with the figures and why."""
    rows = results.get("peers", [])
    ours = {(r["platform"], r["limits"]): r for r in rows if r["client"] == "ours"}
    lines = []
    for r in rows:
        mine = ours.get((r["platform"], r["limits"]))
        if r["client"] == "ours" or mine is None or r["wall_s"] >= mine["wall_s"]:
            continue
        lines.append(
            f"- **{r['platform']}, {client_name(results, r)}, limits {r['limits']}**: "
            f"{mine['wall_s'] / r['wall_s']:.1f}x faster ({r['wall_s']:.2f} s against our "
            f"{mine['wall_s']:.2f} s; {_count(r['requests'], 'request')} against our {mine['requests']}; "
            f"{r['not_invited']} not invited against our {mine['not_invited']}; its re-run sends "
            f"{_count(r['rerun']['requests'], 'request')} against our {mine['rerun']['requests']}). "
            f"Why: {why_faster(r, mine)}."
        )
    return "\n".join(lines) or "No client was faster than ours in this run."


def ceiling_table(results: dict[str, Any]) -> str:
    rows = [
        [
            r["platform"],
            f"{r['rate']:g}/s, burst {r['burst']}",
            str(r["people"]),
            f"{r['wall_s']:.1f}",
            f"{r['accepted_per_s']:.1f}",
            f"{r['fraction_of_ceiling']:.2f}",
            str(r["throttle_replies"]),
            str(r["not_invited"]),
        ]
        for r in results.get("ceiling", [])
    ]
    return _table(
        [
            "platform",
            "hidden ceiling",
            "people",
            "wall s",
            "accepted requests/s",
            "fraction of ceiling",
            "throttle replies",
            "not invited",
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


def render(results: dict[str, Any], images: bool = False) -> str:
    people = results["peers"][0]["people"] if results.get("peers") else 0
    peers_plot = "\n\n![Wall time of each client](images/peers.svg)" if images else ""
    scale_plot = "\n\n![Wall time against people](images/scale.svg)" if images else ""
    parts = [
        f"## Beside the official clients ({people} new people, {results['latency_ms']} ms latency)"
        f"\n\n{peers_table(results)}{peers_plot}\n\nWhere a client was faster than ours:\n\n"
        f"{faster_peers(results)}\n\nOur requests per person in that first run (limits off). *Signed in*: "
        "without the sign-in requests. VRChat's session and Bitrix24's access token are kept between "
        "runs (in Variables), so a deployment's later runs make none; PlayFab and Bungie get a token "
        "once per task:\n\n"
        f"{per_person_table(results)}"
        if results.get("peers")
        else "",
        f"## At a ceiling the hooks are not told\n\n{ceiling_table(results)}"
        if results.get("ceiling")
        else "",
        f"## Bulk invite of 1,000 people ({results['latency_ms']} ms latency, limits off)\n\n{bulk_table(results)}",
        f"## Look-up cost that fits the group\n\n{lookup_table(results)}" if results.get("lookup") else "",
        f"## At each platform's documented rate limit (scale 1)\n\n{rate_table(results)}",
        f"## DAG parse cost\n\n{parse_table(results)}",
        f"## Scale\n\n{scale_table(results)}{scale_plot}",
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


def peers_svg(results: dict[str, Any]) -> str:
    """First-run wall time of every client form, limits off and on (log scale), one row each."""
    rows = results.get("peers", [])
    keys = list(dict.fromkeys((r["platform"], r["client"], r["form"]) for r in rows))
    wall = {(r["platform"], r["client"], r["form"], r["limits"]): max(r["wall_s"], 0.01) for r in rows}
    missed = {(r["platform"], r["client"], r["form"], r["limits"]): r["not_invited"] for r in rows}
    label_w, bar_w, row_h, top = 330, 420, 26, 50
    width, height = label_w + bar_w + 130, top + row_h * len(keys) + 50
    low = 0.01
    high = 10 ** math.ceil(math.log10(max([*wall.values(), 1.0])))

    def px(seconds: float) -> float:
        return label_w + math.log10(seconds / low) / math.log10(high / low) * bar_w

    colours = {"off": "#1f77b4", "on": "#ff7f0e"}
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2:.0f}" y="18" text-anchor="middle">Wall time of the first run, '
        f"{rows[0]['people'] if rows else 0} new people (log scale)</text>",
    ]
    for i, limits in enumerate(("off", "on")):
        out.append(
            f'<rect x="{label_w + 150 * i}" y="28" width="12" height="12" fill="{colours[limits]}"/>'
            f'<text x="{label_w + 150 * i + 16}" y="38">sandbox limits {limits}</text>'
        )
    exp = math.log10(low)
    while 10**exp <= high * 1.001:
        x = px(10**exp)
        bottom = top + row_h * len(keys)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{10**exp:g} s</text>')
        exp += 1
    for n, (platform, client, form) in enumerate(keys):
        y = top + row_h * n
        name = "airflow-invites" if client == "ours" else f"{client} ({form})"
        weight = ' font-weight="bold"' if client == "ours" else ""
        out.append(
            f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end"{weight}>{platform}: {name}</text>'
        )
        for i, limits in enumerate(("off", "on")):
            seconds = wall.get((platform, client, form, limits))
            if seconds is None:
                continue
            out.append(
                f'<rect x="{label_w}" y="{y + 3 + 10 * i}" width="{px(seconds) - label_w:.1f}" height="9" '
                f'fill="{colours[limits]}"/>'
            )
            lost = missed[(platform, client, form, limits)]
            note = f"{seconds:.2f} s" + (f", {lost} not invited" if lost else "")
            out.append(f'<text x="{px(seconds) + 4:.1f}" y="{y + 11 + 10 * i}" font-size="9">{note}</text>')
    out.append("</svg>")
    return "\n".join(out)


INTRO = """# Performance

Figures from the last `make bench` run (`benchmarks/run.py`, results in `benchmarks/results/latest.json`).
The sandbox runs as its own process on loopback and adds {latency} ms to every request, so wall times are
dominated by round trips, as against a real API. Machine: 2 cores.

How to reproduce: `make bench` (about 10 minutes; it prints these tables and rewrites this page). The
first run also creates `benchmarks/peers/.venv` with the official clients; `--no-peers` leaves them out.

What the figures mean and what limits them:

- **Beside the official clients**: per platform, in the same run, our hook (`invite_people` with the
  platform's hook and the connection's defaults, as a task runs it) and that platform's official or
  most-used Python client (pinned in `benchmarks/peers/requirements.txt`), driven the way its users
  write it (`benchmarks/peers/drive.py`): a loop of invites that counts the client's "already" errors as
  done, and the client's bulk form where it has one. Each platform has its own sandbox process and the
  five run side by side; every client and form starts from a freshly reset sandbox with new people,
  then runs once more over the same people (*re-run*, a second run of the same script or DAG), with
  the sandbox's documented rate limits off and on (scale 1). *Requests*: every request the sandbox
  logged for that run, log-ins and look-ups included; *throttled*: the platform's rate-limit replies
  among them; *applied*: invitations or memberships the sandbox created; *not invited*: people with
  neither after the run, whatever the client reported. Wall time includes the client's set-up and
  log-in, not interpreter start-up or imports. Where a client hard-codes its host (b24pysdk, bungio),
  the override is described at the top of `drive.py`; every client talked to the sandbox unchanged
  otherwise.
- **At a ceiling the hooks are not told**: the sandbox's documented limits off and an explicit ceiling
  (`PUT /_sandbox/limits` with `rate` and `burst`, see [the sandbox](sandbox.md)) on one platform; new
  people invited with our hook's defaults. *Fraction of ceiling* = requests the ceiling let through /
  requests it allows in that time (burst + rate x wall time). The VRChat and PlayFab hooks' adaptive
  pacing (start gently, climb while clean, step down on a throttle reply) decides this row.
- **The minimum for 200 new people**: the invite calls (one per person on PlayFab, Bungie and
  VRChat, whose invite names one person; one call on Rocket.Chat and Bitrix24), plus what must be read
  first so that nobody is invited twice or on a guess: PlayFab 2 (members, invitations), Bungie 2
  (members, pending invitations), VRChat 4 (the group, to see the bot's permissions and size; members;
  invitations; bans, because an invite lifts a ban), Rocket.Chat 3 and Bitrix24 1; plus signing in.
- **Bulk**: 1,000 new people into one group with our operator (one look-up of the group, lists where
  the platform takes them, concurrent requests where allowed). Sandbox rate limits and our client-side
  pacing are off here, so it is about requests and round trips.
- **Look-up cost**: a group of 50,000 members and 3 people to invite: the hooks check those people one by
  one instead of listing the whole group, where the platform has a per-person check.
- **Rate limit**: the sandbox enforces each platform's documented limit (scale 1) and our hooks pace
  themselves by default. *Fraction of ceiling* = requests sent / requests the limit allows in that time
  (burst included; Bungie: its sustained 25/s). Rocket.Chat's limiter does not apply to a user with the
  `bot` role. VRChat publishes no limit: the sandbox assumes 10/s with bursts of 120, while our hook
  starts at 2/s because VRChat asks for gentle clients and climbs while replies are clean (the first
  VRChat row is too short to climb far); the second VRChat row caps the pacing at the sandbox's limit
  (`max_requests_per_second: 10`, `burst: 120`). PlayFab publishes no numbers either (the sandbox assumes
  100/s, bursts of 1,000): our hook starts at 20/s and learns the ceiling from its throttle replies
  (honouring `retryAfterSeconds`), so a few throttle replies are expected and none reaches a task. The
  gentle start costs PlayFab a few seconds on short runs (the PlayFab rows of the peer table); the
  learned rate is kept for the connection's next run.
- **Parse cost**: each DAG file imported over a bare `import airflow.sdk`, median of 5 fresh processes;
  server modules (FastAPI, uvicorn, Starlette, the sandbox) must not appear.
- **Scale**: wall time and requests for 100, 1,000 and 10,000 people (limits off).
"""


#: what follows this line in docs/performance.md is written by other benchmarks (ui_render.py): kept
KEPT_MARKER = "<!-- below: written by other benchmarks, kept by make bench -->"


def write_docs(results: dict[str, Any], docs: Path) -> None:
    (docs / "images").mkdir(parents=True, exist_ok=True)
    (docs / "images" / "scale.svg").write_text(scale_svg(results))
    if results.get("peers"):
        (docs / "images" / "peers.svg").write_text(peers_svg(results))
    body = INTRO.format(latency=results["latency_ms"]) + "\n" + render(results, images=True) + "\n"
    page = docs / "performance.md"
    if page.exists() and KEPT_MARKER in page.read_text():
        body += f"\n{KEPT_MARKER}{page.read_text().split(KEPT_MARKER, 1)[1]}"
    page.write_text(body)
