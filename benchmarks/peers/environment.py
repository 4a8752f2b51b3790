"""The peers' own virtual environment: ``benchmarks/peers/.venv`` with ``requirements.txt``.

Created on first use and re-installed when the requirements change; the package's own
environment never gets these clients.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
VENV = HERE / ".venv"
DRIVER = HERE / "drive.py"


def python() -> Path:
    return VENV / "bin" / "python"


def ensure() -> Path:
    """The peers' interpreter, installing the pinned clients first if needed."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]
    stamp = VENV / f".installed-{digest}"
    if stamp.exists():
        return python()
    print("... creating the peers' environment (benchmarks/peers/.venv)", file=sys.stderr, flush=True)
    if not python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    for old in VENV.glob(".installed-*"):
        old.unlink()
    stamp.touch()
    return python()


def versions() -> dict[str, str]:
    """Client name -> pinned version, as in requirements.txt."""
    pins = {}
    for line in REQUIREMENTS.read_text().splitlines():
        spec = line.split("#", 1)[0].strip()
        if "==" in spec:
            name, version = spec.split("==")
            pins[name.strip()] = version.strip()
    return pins
