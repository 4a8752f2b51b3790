"""The Invites web app (FastAPI), mounted at ``/invites`` on the api-server.

Pages:

- ``/``: people x platforms over the recent runs of the Dags the view shows (``store.py``);
- ``/dags/{dag_id}/runs/{run_id}``: the same grid for one run (the "Invites" tab of a Dag run);
- ``/api/grid``: the grid as JSON (``dag_id``, ``run_id``, ``runs`` narrow it).

Every route needs an Airflow login (the UI's ``_token`` cookie or a bearer token) and shows only
Dags whose runs, task instances and XComs the signed-in user may read. No OpenAPI or docs pages.
Person filters run in the browser: names never travel in URLs (which end up in access logs).
"""

from __future__ import annotations

from html import escape
from importlib.resources import files
from typing import TYPE_CHECKING, Annotated

from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, get_user
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_invites.plugins.grid import Grid
from airflow_invites.plugins.plugin import URL_PREFIX
from airflow_invites.plugins.render import render_page
from airflow_invites.plugins.statuses import stylesheet
from airflow_invites.plugins.store import (
    MAX_RUNS_CAP,
    ViewSettings,
    load_grid,
    readable_dag_ids,
    shown_dag_ids,
)

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
    from sqlalchemy.orm import Session

#: the page may load its own script and styles and nothing else; no inline script at all
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
STATIC_TYPES = {"grid.js": "text/javascript", "grid.css": "text/css", "icon.svg": "image/svg+xml"}

RunsParam = Annotated[int | None, Query(ge=1, le=MAX_RUNS_CAP, description="how many recent runs to read")]


def create_app() -> FastAPI:
    app = FastAPI(
        title="Invites",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(get_user)],  # every route, static files included, needs a login
    )
    app.add_exception_handler(StarletteHTTPException, _refusal)  # type: ignore[arg-type]
    static = files("airflow_invites.plugins") / "static"
    assets = {name: (static / name).read_bytes() for name in STATIC_TYPES}
    assets["grid.css"] += stylesheet().encode()

    @app.get("/", response_class=HTMLResponse)
    def overview(
        request: Request,
        user: GetUserDep,
        session: SessionDep,
        dag_id: str | None = None,
        runs: RunsParam = None,
    ) -> Response:
        grid, dags = _recent_grid(user, session, dag_id, runs)
        if not dags:
            scope = "None of the Dags this view shows is one you may read."
        else:
            runs_text = "the one run" if len(grid.runs) == 1 else f"the {len(grid.runs)} most recent runs"
            scope = f"Latest outcome per person and platform, over {runs_text} with outcomes of {', '.join(dags)}."
        empty = "No outcomes yet: no run of these Dags has pushed any (XCom key 'outcomes')."
        return _page(request, grid, "Invites", scope, empty)

    @app.get("/dags/{dag_id}/runs/{run_id:path}", response_class=HTMLResponse)
    def run_view(
        request: Request, user: GetUserDep, session: SessionDep, dag_id: str, run_id: str
    ) -> Response:
        grid = _run_grid(user, session, dag_id, run_id)
        scope = f"Outcomes of run {run_id} of {dag_id}."
        empty = "No task of this run has pushed invite outcomes (XCom key 'outcomes')."
        return _page(request, grid, "Invites in this run", scope, empty)

    @app.get("/api/grid")
    def grid_json(
        user: GetUserDep,
        session: SessionDep,
        dag_id: str | None = None,
        run_id: str | None = None,
        runs: RunsParam = None,
    ) -> JSONResponse:
        if run_id is not None:
            if dag_id is None:
                raise HTTPException(400, "run_id: needs dag_id as well")
            grid, dags = _run_grid(user, session, dag_id, run_id), [dag_id]
        else:
            grid, dags = _recent_grid(user, session, dag_id, runs)
        return JSONResponse({"dag_ids": dags, **grid.to_dict()}, headers={"Cache-Control": "no-store"})

    @app.get("/static/{name}")
    def asset(name: str) -> Response:
        if name not in assets:
            raise HTTPException(404, "Not found")
        return Response(
            assets[name],
            media_type=STATIC_TYPES[name],
            headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    return app


def _recent_grid(
    user: BaseUser, session: Session, dag_id: str | None, runs: int | None
) -> tuple[Grid, list[str]]:
    """The recent runs of the Dags the view shows (or of ``dag_id`` among them) that ``user`` may read."""
    settings = ViewSettings.from_config()
    shown = [d for d in shown_dag_ids(session, settings) if dag_id in (None, d)]
    dags = readable_dag_ids(user, shown, session)
    return load_grid(session, dags, runs or settings.max_runs), dags


def _run_grid(user: BaseUser, session: Session, dag_id: str, run_id: str) -> Grid:
    """One run of any Dag the user may read (the tab shows on every Dag run's page)."""
    if not readable_dag_ids(user, [dag_id], session):
        raise HTTPException(403, "You may not read this Dag's runs")
    grid = load_grid(session, [dag_id], 1, run_id=run_id)
    if not grid.runs:
        raise HTTPException(404, "No such Dag run")
    return grid


def airflow_root(request: Request) -> str:
    """Airflow's base path, from where the api-server mounted this app."""
    return str(request.scope.get("root_path", "")).removesuffix(URL_PREFIX)


def _page(request: Request, grid: Grid, heading: str, scope: str, empty: str) -> Response:
    root = airflow_root(request)
    body = render_page(
        grid=grid, root=root, static=f"{root}{URL_PREFIX}/static", heading=heading, scope=scope, empty=empty
    )
    return HTMLResponse(body, headers=PAGE_HEADERS)


async def _refusal(request: Request, exc: StarletteHTTPException) -> Response:
    """Refusals and errors: JSON for ``/api``, a short page (with no data) for the pages."""
    headers = dict(exc.headers or {})
    if request.url.path.removeprefix(str(request.scope.get("root_path", ""))).startswith("/api/"):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)
    sign_in = ""
    if exc.status_code == 401:
        sign_in = f' <a href="{escape(airflow_root(request))}/" target="_top">Sign in to Airflow</a>.'
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Invites</title></head><body>'
        f"<h1>Invites</h1><p>{escape(str(exc.detail))}.{sign_in}</p></body></html>"
    )
    return HTMLResponse(body, status_code=exc.status_code, headers={**headers, **PAGE_HEADERS})
