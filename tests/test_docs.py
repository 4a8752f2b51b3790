"""The docs agree with the code and with each other.

- Figures of ``make bench`` are quoted on one page only, ``docs/performance.md``, which
  ``benchmarks/report.py`` writes from ``benchmarks/results/latest.json``: the page (and its plot) must be
  exactly what the report makes of that file. Other pages link to it instead of quoting figures.
- The site builds (``mkdocs build --strict``) with the architecture diagram drawn by Mermaid, not shown as
  code, and every page is in the navigation.
- The sensor and trigger reference names every argument the classes take.
"""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def test_performance_page_is_the_report_of_the_latest_results(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import report
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    results = json.loads((REPO / "benchmarks/results/latest.json").read_text())
    report.write_docs(results, tmp_path)
    head, marker, tail = (DOCS / "performance.md").read_text().partition(report.KEPT_MARKER)
    assert head.rstrip("\n") == (tmp_path / "performance.md").read_text().rstrip("\n"), (
        "docs/performance.md differs from what benchmarks/report.py makes of latest.json: "
        "run make bench, or do not edit the page by hand"
    )
    # below the marker: the Invites page's figures, as benchmarks/ui_render.py renders its results
    ui = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/ui_render.py"), "--render"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert marker and tail.strip() == ui.stdout.strip()
    assert (DOCS / "images/scale.svg").read_text() == (tmp_path / "images/scale.svg").read_text()


def test_no_other_page_quotes_the_parse_cost():
    parse = json.loads((REPO / "benchmarks/results/latest.json").read_text())["parse"]
    for page in DOCS.rglob("*.md"):
        if page.name == "performance.md":
            continue
        text = page.read_text()
        for row in parse:
            dag = row["file"].removesuffix(".py")
            quoted = re.findall(rf"`{dag}`[^.]{{0,40}}?~?\d+ ms", text)
            assert not quoted, (
                f"{page.relative_to(REPO)} quotes a parse cost: {quoted}; link to performance.md"
            )


def test_site_builds_with_the_diagram_drawn_and_every_page_in_the_nav(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    result = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    architecture = (tmp_path / "architecture/index.html").read_text()
    assert '<div class="mermaid">flowchart' in architecture
    assert "mermaid.min.js" in architecture and "mermaid-init.js" in architecture
    for page in tmp_path.rglob("*.html"):
        assert "language-mermaid" not in page.read_text(), f"{page}: a Mermaid block shown as code"
    nav = (REPO / "mkdocs.yml").read_text()
    for page in DOCS.rglob("*.md"):
        assert f": {page.relative_to(DOCS).as_posix()}" in nav, f"{page.relative_to(REPO)} is not in the nav"


def test_reference_names_every_argument_of_the_sensor_and_the_trigger():
    from airflow_invites.sensors.membership import GroupMembershipSensor
    from airflow_invites.triggers.membership import GroupMembershipTrigger

    text = (DOCS / "reference/sensor-and-trigger.md").read_text()
    for cls in (GroupMembershipSensor, GroupMembershipTrigger):
        for name in inspect.signature(cls.__init__).parameters:
            if name not in ("self", "kwargs"):
                assert f"| `{name}` |" in text, f"{cls.__name__}({name}=...) is not in the reference"
    _, serialized = GroupMembershipTrigger(hook_class="x", conn_id="c", group="g", users=[]).serialize()
    assert all(f"| `{name}` |" in text for name in serialized)
