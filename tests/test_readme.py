"""The shell blocks of README.md and docs/first-dag.md run verbatim, in order, in a fresh shell.

Each document runs in its own copy of this checkout (the files git tracks or would track, as a fresh
clone has them), as one ``bash -e -o pipefail`` script, in a fresh environment: ``HOME`` is an empty
temp dir, ``PATH`` starts with this checkout's ``.venv/bin`` (what ``pip install -e ".[sandbox]"`` gave
it), ``INVITES_SANDBOX_PORT`` is a free port (so that runs in parallel never meet on 8765), and nothing
else of the test process (no ``AIRFLOW_*``) gets in. Afterwards the sandbox's port must be free again:
the documents stop what they start.

Markers, an HTML comment on the last non-blank line before a fence (invisible on the rendered page):

- ``<!-- docs-test: skip (why) -->``: this ```` ```bash ```` block is not run; the reason is required
  (e.g. ``pip install`` into the reader's environment, or commands that CI runs itself).
- ``<!-- docs-test: save-as PATH -->``: this block (any language) is written to ``PATH``, relative to
  the checkout, when the run reaches it; the text around it tells the reader to save it there.

Every ```` ```bash ```` / ```` ```sh ```` block without ``skip`` runs; other blocks (``python``,
``text``, ...) only with ``save-as``. ``make try`` (scripts/try.sh) is run here too, with commands on
its standard input.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = ["README.md", "docs/first-dag.md"]
SHELLS = {"bash", "sh", "shell"}
MARKER = re.compile(r"^<!--\s*docs-test:\s*(?P<verb>[\w-]+)\s*(?P<arg>.*?)\s*-->$")
FENCE = re.compile(r"^(?P<fence>```+)\s*(?P<lang>[\w-]*)")
RUN_TIMEOUT_S = 420


@dataclass
class Block:
    document: str
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    skip: str | None = None  # the reason
    save_as: str | None = None


def blocks(document: str) -> list[Block]:
    """The fenced blocks of ``document``, with their markers; a malformed marker is an error."""
    found: list[Block] = []
    lines = (REPO / document).read_text().splitlines()
    marker: re.Match[str] | None = None
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        fence = FENCE.match(line)
        if fence:
            end = next((j for j in range(index + 1, len(lines)) if lines[j].strip() == fence["fence"]), None)
            assert end is not None, f"{document}:{index + 1}: unclosed fence"
            block = Block(document, index + 1, fence["lang"], "\n".join(lines[index + 1 : end]) + "\n")
            if marker:
                verb, arg = marker["verb"], marker["arg"]
                where = f"{document}:{index}"
                if verb == "skip":
                    assert re.fullmatch(r"\(.+\)", arg), f"{where}: docs-test: skip needs a (reason)"
                    assert block.lang in SHELLS, f"{where}: only shell blocks run, no need to skip"
                    block.skip = arg[1:-1]
                elif verb == "save-as":
                    assert arg and not arg.startswith("/") and ".." not in arg, f"{where}: bad path {arg!r}"
                    block.save_as = arg
                else:
                    raise AssertionError(f"{where}: unknown marker docs-test: {verb}")
            found.append(block)
            marker, index = None, end + 1
            continue
        if line:
            marker = MARKER.match(line)
            if marker is None:
                assert "docs-test" not in line, f"{document}:{index + 1}: malformed marker {line!r}"
        index += 1
    return found


def script(document: str) -> str:
    """One bash script: each block that runs, preceded by where it comes from."""
    parts = []
    for block in blocks(document):
        where = f"{block.document}:{block.line}"
        if block.save_as:
            assert "DOCS_TEST_EOF" not in block.text
            parts.append(
                f"echo '### {where}: save as {block.save_as}'\n"
                f"mkdir -p \"$(dirname '{block.save_as}')\"\n"
                f"cat > '{block.save_as}' <<'DOCS_TEST_EOF'\n{block.text}DOCS_TEST_EOF\n"
            )
        elif block.lang in SHELLS and not block.skip:
            parts.append(f"echo '### {where}'\n{block.text}")
    return "\n".join(parts)


def checkout_copy(target: Path) -> Path:
    """This checkout's files as a fresh clone has them (tracked, or new and not ignored)."""
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, names):
        source = REPO / os.fsdecode(name)
        if source.is_file():
            (target / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / os.fsdecode(name))
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def fresh_env(home: Path, port: int) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "INVITES_SANDBOX_PORT": str(port),
    }


def run_in_own_group(args: list[str], cwd: Path, env: dict[str, str], stdin: str = "") -> tuple[int, str]:
    """Run ``args``; then end whatever it left running (its process group), and say so.

    Output goes to a file, not a pipe: a process left in the background would hold a pipe open.
    """
    log = Path(env["HOME"]) / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
        try:
            proc.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return -1, log.read_text() + f"\n[timed out after {RUN_TIMEOUT_S} s]"
    deadline = time.monotonic() + 10  # a process told to stop may take a moment to exit
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not _group_alive(proc.pid):
        return proc.returncode, log.read_text()
    os.killpg(proc.pid, signal.SIGKILL)  # e.g. a background sandbox the document forgot to stop
    return (
        proc.returncode or 99,
        log.read_text() + "\n[processes still running 10 s after the end: ended them]",
    )


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_every_shell_block_runs_or_says_why_not():
    for document in DOCUMENTS:
        found = blocks(document)
        shells = [b for b in found if b.lang in SHELLS]
        assert [b for b in shells if not b.skip], f"{document}: no shell block runs"
    readme = blocks("README.md")
    assert readme[0].skip and "make demo" in readme[0].text and "make test" in readme[0].text
    assert any(b.save_as for b in readme)  # the "your own DAG" file is written and run


def test_malformed_markers_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    for text, message in [
        ("<!-- docs-test: skip -->\n```bash\nls\n```\n", "needs a (reason)"),
        ("<!-- docs-test: skipp (x) -->\n```bash\nls\n```\n", "unknown marker"),
        ("<!-- docs-test: save-as ../x.py -->\n```python\n```\n", "bad path"),
    ]:
        (tmp_path / "doc.md").write_text(text)
        with pytest.raises(AssertionError, match=re.escape(message)):
            blocks("doc.md")


@pytest.mark.parametrize("document", DOCUMENTS)
def test_shell_blocks_run_verbatim_in_a_fresh_shell(document, tmp_path):
    clone = checkout_copy(tmp_path / "clone")
    port = free_port()
    (tmp_path / "docs.sh").write_text(script(document))
    code, output = run_in_own_group(
        ["bash", "-e", "-o", "pipefail", str(tmp_path / "docs.sh")], clone, fresh_env(tmp_path / "home", port)
    )
    tail = "\n".join(output.splitlines()[-80:])
    assert code == 0, f"{document}: exit {code}\n{tail}"
    assert port_is_free(port), f"{document}: the sandbox still listens on {port}\n{tail}"


def test_make_try_opens_a_shell_with_the_sandbox_and_stops_it_on_exit(tmp_path):
    port = free_port()
    commands = (
        'test "$(airflow variables get invites_rocketchat_group)" = "$INVITES_SANDBOX_ROCKETCHAT_GROUP"'
        " && echo VARIABLE-OK\n"
        'curl -fs "http://127.0.0.1:$INVITES_SANDBOX_PORT/_sandbox/health" && echo\n'
        "airflow connections get rocketchat_default -o json | grep -c rocketchat\n"
        "exit\n"
    )
    env = fresh_env(tmp_path / "home", port)
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"  # scripts/try.sh finds .venv itself
    code, output = run_in_own_group(["bash", "scripts/try.sh"], REPO, env, stdin=commands)
    assert code == 0, output
    assert "VARIABLE-OK" in output and '"ok":true' in output, output
    assert port_is_free(port), output
