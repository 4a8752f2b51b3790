"""The Airflow plugin: an "Invites" page in the navigation and an "Invites" tab on every Dag run.

Registered in the ``airflow.plugins`` entry point group, so installing the package is enough. Every
Airflow component imports this module (scheduler, workers, triggerer...): it imports nothing beyond
Airflow's plugin base class. The web app behind the pages is built on the api-server at its first
request (``LazyApp``); see ``app.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, MutableMapping
from importlib import import_module
from typing import Any

from airflow.sdk.plugins_manager import AirflowPlugin

#: where the api-server mounts the app (also the start of the pages' URLs)
URL_PREFIX = "/invites"
#: the same place as the UI links to it: relative, so that the page's ``<base href>`` (Airflow's
#: ``[api] base_url``) comes first; "/invites/" would miss an Airflow served under a sub-path
VIEW_PREFIX = URL_PREFIX.removeprefix("/")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class LazyApp:
    """An ASGI app that imports and builds ``module:factory()`` when the first request comes in."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._app: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None
        self._lock = threading.Lock()

    def build(self) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        with self._lock:
            if self._app is None:
                module, _, factory = self.target.partition(":")
                self._app = getattr(import_module(module), factory)()
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app or self.build()
        await app(scope, receive, send)


class InvitesPlugin(AirflowPlugin):
    name = "airflow_invites"
    fastapi_apps = [
        {
            "app": LazyApp("airflow_invites.plugins.app:create_app"),
            "url_prefix": URL_PREFIX,
            "name": "Invites",
        }
    ]
    external_views = [
        {
            "name": "Invites",
            "href": f"{VIEW_PREFIX}/",
            "url_route": "invites",
            "destination": "nav",
            "nav_top_level": True,
            "icon": f"{VIEW_PREFIX}/static/icon.svg",
        },
        {
            "name": "Invites",
            "href": f"{VIEW_PREFIX}/dags/{{DAG_ID}}/runs/{{RUN_ID}}",
            "url_route": "invites_run",
            "destination": "dag_run",
        },
    ]
