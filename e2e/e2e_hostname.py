"""``[core] hostname_callable`` for the e2e Celery workers: two workers on one machine, told apart.

Each worker is started with ``E2E_WORKER_NAME``; the task instance's ``hostname`` then says which
worker ran it (the REST API shows it), which is how the e2e check sees tasks spread across workers.
"""

from __future__ import annotations

import os
import socket


def worker_hostname() -> str:
    return os.environ.get("E2E_WORKER_NAME") or socket.getfqdn()
