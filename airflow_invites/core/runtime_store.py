"""Where a task keeps what it obtains for the next task: rotated refresh tokens, session cookies.

An Airflow 3 task cannot write a Connection, but it can write a Variable. Keys are
``airflow_invites__<conn_id>__<name>``; every ``name`` used contains ``token``, so Airflow masks the
values in logs and in the UI. Outside a task (plain scripts, unit tests) Variables cannot be written:
the store then keeps values in this process only, and says so once.
"""

from __future__ import annotations

import logging
import threading

from airflow.sdk import Variable

log = logging.getLogger(__name__)

_LOCAL: dict[str, str] = {}
_LOCK = threading.Lock()
_warned = False


def variable_key(conn_id: str, name: str) -> str:
    return f"airflow_invites__{conn_id}__{name}"


class RuntimeStore:
    """Values of one connection that outlive a task."""

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id

    def get(self, name: str) -> str | None:
        key = variable_key(self.conn_id, name)
        with _LOCK:
            if key in _LOCAL:
                return _LOCAL[key]
        try:
            value = Variable.get(key, default=None)
        except Exception:  # no Variable access here (e.g. no metadata DB): only the local copy counts
            return None
        return str(value) if value else None

    def set(self, name: str, value: str) -> None:
        global _warned
        key = variable_key(self.conn_id, name)
        try:
            Variable.set(key, value)
        except Exception:
            with _LOCK:
                _LOCAL[key] = value
            if not _warned:
                _warned = True
                log.warning("not inside an Airflow task: %s is kept in this process only", key)
            return
        with _LOCK:
            _LOCAL.pop(key, None)

    def delete(self, name: str) -> None:
        key = variable_key(self.conn_id, name)
        with _LOCK:
            _LOCAL.pop(key, None)
        try:
            Variable.delete(key)
        except Exception:
            log.debug("could not delete Variable %s", key)
