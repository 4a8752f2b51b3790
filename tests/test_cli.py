"""``airflow-invites sandbox`` as a user runs it: a separate process, real sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import requests

from airflow_invites.cli import EXIT_CANNOT_LISTEN


def _sandbox(*args: str, port_env: str | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "INVITES_SANDBOX_PORT"}
    if port_env is not None:
        env["INVITES_SANDBOX_PORT"] = port_env
    return subprocess.Popen(
        [sys.executable, "-m", "airflow_invites.cli", "sandbox", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_a_taken_port_fails_before_the_banner_naming_the_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _sandbox("--port", str(port))
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_CANNOT_LISTEN
    assert out == ""  # no "airflow-invites sandbox on http://..." banner
    assert f"port {port} on 127.0.0.1 is already in use" in err
    assert "--port N" in err and "Traceback" not in err


def test_the_port_comes_from_the_environment_and_the_banner_means_it_answers():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = _sandbox(port_env=str(port))
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()  # blocks until printed
        assert banner.startswith(f"airflow-invites sandbox on http://127.0.0.1:{port} ")
        # the socket listens before the banner: the first request is queued, not refused
        assert requests.get(f"http://127.0.0.1:{port}/_sandbox/health", timeout=30).json()["ok"] is True
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_a_bad_port_variable_is_a_clear_error():
    proc = _sandbox("--print-env", port_env="eighty")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "INVITES_SANDBOX_PORT: expected a port number, got 'eighty'" in err


def test_print_env_uses_the_port_from_the_environment():
    proc = _sandbox("--print-env", port_env="18999")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "http://127.0.0.1:18999/rocketchat" in out
