"""The sandbox server: every platform under its prefix, the admin API under ``/_sandbox``.

Faults are injected by an ASGI middleware in front of the platforms, so that a platform module
holds nothing but that platform.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import pkgutil
import random
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airflow_invites.sandbox import platforms as platforms_pkg
from airflow_invites.sandbox.core import (
    FAULT_KINDS,
    HOSTILE_KINDS,
    DuplicateHandle,
    FaultPlan,
    Ledger,
    PlatformEnv,
    SandboxPlatform,
)

MAX_PEOPLE = 20_000


class ConnectionDropped(Exception):
    """Raised after a partial reply so that the server closes the connection."""


def discover_platforms(ledger: Ledger) -> dict[str, SandboxPlatform]:
    found: dict[str, SandboxPlatform] = {}
    for info in sorted(pkgutil.iter_modules(platforms_pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{platforms_pkg.__name__}.{info.name}")
        platform_class = getattr(module, "PLATFORM", None)
        if platform_class is not None:
            platform = platform_class(ledger)
            found[platform.name] = platform
    return found


class Sandbox:
    """The whole emulator: state, platforms, app."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.platforms = discover_platforms(self.ledger)

    def reset(self) -> None:
        self.ledger.clear()
        for platform in self.platforms.values():
            platform.reset()

    def env(self, base_url: str) -> dict[str, PlatformEnv]:
        return {name: p.env(f"{base_url.rstrip('/')}{p.prefix}") for name, p in self.platforms.items()}

    def platform(self, name: str) -> SandboxPlatform:
        if name not in self.platforms:
            raise HTTPException(404, f"unknown platform {name!r}; known: {sorted(self.platforms)}")
        return self.platforms[name]

    def platform_of_path(self, path: str) -> SandboxPlatform | None:
        first = path.lstrip("/").split("/", 1)[0]
        return self.platforms.get(first)


class FaultMiddleware:
    """Logs every platform request and injects the configured faults and latency."""

    def __init__(self, app: ASGIApp, sandbox: Sandbox) -> None:
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        platform = self.sandbox.platform_of_path(scope["path"])
        if platform is None:
            await self.app(scope, receive, send)
            return
        ledger = self.sandbox.ledger
        plan = ledger.fault_plan(platform.name) or FaultPlan()
        status_box = {"status": 0}
        log_entry = (platform.name, scope["method"], scope["path"])

        async def logged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box["status"] = message["status"]
            await send(message)

        if plan.latency_ms:
            await asyncio.sleep(plan.latency_ms / 1000)
        over_ceiling = ledger.ceiling_wait(platform.name)
        fault = None if over_ceiling is not None else plan.draw()
        try:
            if over_ceiling is not None:
                reply = platform.ceiling_response(Request(scope, receive), over_ceiling)
                await reply(scope, receive, logged_send)
            elif fault in ("throttle", "server_error"):
                request = Request(scope, receive)
                make = platform.throttle_response if fault == "throttle" else platform.server_error_response
                await make(request)(scope, receive, logged_send)
            elif fault == "reset":
                await _drop(send)
            elif fault == "timeout":
                await asyncio.sleep(plan.timeout_ms / 1000)
                await self.app(scope, receive, logged_send)
            elif fault in ("truncated", "lost_response"):
                messages = await _collect(self.app, scope, receive)
                status_box["status"] = messages[0].get("status", 0) if messages else 0
                if fault == "truncated":
                    await _truncate(messages, send)
                else:
                    await _drop(send)
            elif fault in ("empty", "malformed"):
                await _collect(self.app, scope, receive)  # applied; the reply is replaced
                body = b"" if fault == "empty" else MALFORMED_BODY
                await _reply(logged_send, 200, body, b"application/json")
            elif fault == "html":
                await _reply(logged_send, 502, HTML_ERROR_PAGE, b"text/html")
            elif fault == "redirect":
                location = plan.redirect_to.rstrip("/") + scope["path"]
                await _reply(logged_send, 302, b"", b"text/html", [(b"location", location.encode())])
            elif fault == "huge":
                await _huge(logged_send, plan.huge_bytes)
            else:
                await self.app(scope, receive, logged_send)
        finally:
            ledger.log_request(*log_entry, status_box["status"])


#: a proxy's error page, as a load balancer in front of the API sends it
HTML_ERROR_PAGE = (
    b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
)
#: valid JSON, but no platform's envelope
MALFORMED_BODY = b'{"unexpected": ["not", "the", "envelope"]}'
HUGE_CHUNK = 1024 * 1024


async def _reply(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    start_headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": start_headers + (headers or [])})
    await send({"type": "http.response.body", "body": body})


async def _huge(send: Send, size: int) -> None:
    """A 200 whose JSON body never ends before ``size`` bytes (a runaway reply)."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(size).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    head = b'{"data": "'
    await send({"type": "http.response.body", "body": head, "more_body": True})
    left = size - len(head)
    chunk = b"x" * HUGE_CHUNK
    while left > 0:
        part = chunk[: min(left, HUGE_CHUNK)]
        left -= len(part)
        await send({"type": "http.response.body", "body": part, "more_body": left > 0})


async def _collect(app: ASGIApp, scope: Scope, receive: Receive) -> list[Message]:
    messages: list[Message] = []

    async def keep(message: Message) -> None:
        messages.append(message)

    await app(scope, receive, keep)
    return messages


async def _drop(send: Send) -> None:
    """Start a reply, then close the connection: the client gets no usable answer."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4096")]})
    raise ConnectionDropped("sandbox fault: connection dropped")


async def _truncate(messages: list[Message], send: Send) -> None:
    """The real status and headers, but only the first half of the body (a cut JSON reply)."""
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    start = next(m for m in messages if m["type"] == "http.response.start")
    cut = body[: len(body) // 2]
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(cut)).encode()))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": cut})


def _number(value: Any, field: str, expected: str) -> float:
    """A finite number >= 0 (numeric strings as before), or 422 naming the field."""
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not 0 <= number < math.inf:
        raise HTTPException(422, f"{field}: expected {expected}, got {value!r}")
    return number


def _ceiling(body: dict[str, Any]) -> tuple[float, int]:
    """``rate`` (requests per second, 0 = no ceiling) and ``burst`` (default: one second's worth)."""
    rate = _number(body["rate"], "rate", "requests per second, a number >= 0 (0 removes the ceiling)")
    burst = body.get("burst", max(1, math.ceil(rate)))
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise HTTPException(422, f"burst: expected an integer >= 1 (requests at once), got {burst!r}")
    return rate, burst


def create_app(sandbox: Sandbox | None = None) -> FastAPI:
    sandbox = sandbox or Sandbox()
    app = FastAPI(
        title="airflow-invites sandbox", docs_url="/_sandbox/docs", openapi_url="/_sandbox/openapi.json"
    )
    app.state.sandbox = sandbox

    for platform in sandbox.platforms.values():
        app.include_router(platform.router(), prefix=platform.prefix)

    @app.get("/_sandbox/health")
    async def health() -> dict[str, Any]:
        return {"ok": True, "platforms": sorted(sandbox.platforms)}

    @app.get("/_sandbox/invites")
    async def invites(platform: str | None = None) -> dict[str, Any]:
        rows = [
            {"platform": p, "group": g, "user": u, "applied": c.applied, "requests": c.requests}
            for (p, g, u), c in sandbox.ledger.invites.items()
            if platform in (None, p)
        ]
        return {"invites": rows}

    @app.get("/_sandbox/removals")
    async def removals(platform: str | None = None) -> dict[str, Any]:
        rows = [
            {"platform": p, "group": g, "user": u, "applied": c.applied, "requests": c.requests}
            for (p, g, u), c in sandbox.ledger.removals.items()
            if platform in (None, p)
        ]
        return {"removals": rows}

    @app.get("/_sandbox/members")
    async def members(platform: str, group: str) -> dict[str, Any]:
        target = sandbox.platform(platform)
        try:
            return target.members(group)
        except KeyError:
            raise HTTPException(404, f"group: no group {group!r} on {target.name}") from None

    @app.get("/_sandbox/requests")
    async def requests_log(platform: str | None = None, since: int = 0) -> dict[str, Any]:
        rows = [r for r in sandbox.ledger.requests if platform in (None, r["platform"])]
        return {"total": len(rows), "requests": rows[max(0, since) :]}

    @app.post("/_sandbox/people")
    async def people(body: dict[str, Any]) -> dict[str, Any]:
        target = sandbox.platform(str(body.get("platform")))
        count = body.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_PEOPLE:
            raise HTTPException(422, f"count: expected an integer from 1 to {MAX_PEOPLE}")
        group = body.get("group")
        handles = body.get("handles")
        if handles is not None and (
            not isinstance(handles, dict) or not all(isinstance(v, str) and v for v in handles.values())
        ):
            raise HTTPException(422, "handles: expected an object of handle kind -> non-empty text")
        try:
            people = target.create_people(count, None if group is None else str(group), handles)
        except KeyError:
            raise HTTPException(404, f"group: no group {group!r} on {target.name}") from None
        except DuplicateHandle as exc:
            raise HTTPException(409, f"handles: {exc}") from None
        except ValueError as exc:
            raise HTTPException(422, f"group: {exc}") from None
        return {"users": [p["id"] for p in people], "people": people}

    @app.post("/_sandbox/accept")
    async def accept(body: dict[str, Any]) -> dict[str, Any]:
        target = sandbox.platform(str(body.get("platform")))
        if not target.accept(str(body.get("group")), str(body.get("user"))):
            raise HTTPException(404, "no pending invite for that person in that group")
        return {"accepted": True}

    @app.put("/_sandbox/faults")
    async def set_faults(body: dict[str, Any]) -> dict[str, Any]:
        name = str(body.get("platform", "*"))
        if name != "*":
            sandbox.platform(name)
        kinds = tuple(body.get("kinds") or FAULT_KINDS)
        unknown = set(kinds) - set(FAULT_KINDS) - set(HOSTILE_KINDS)
        if unknown:
            known = [*FAULT_KINDS, *HOSTILE_KINDS]
            raise HTTPException(422, f"kinds: unknown {sorted(unknown)}; known: {known}")
        rate = float(body.get("rate", 0.0))
        if not 0.0 <= rate <= 1.0:
            raise HTTPException(422, "rate: expected a number from 0 to 1")
        sandbox.ledger.faults[name] = FaultPlan(
            rate=rate,
            kinds=kinds,
            latency_ms=float(body.get("latency_ms", 0.0)),
            timeout_ms=float(body.get("timeout_ms", 3000.0)),
            throttle_seconds=float(body.get("throttle_seconds", 1.0)),
            huge_bytes=int(float(body.get("huge_mb", 50)) * 1024 * 1024),
            redirect_to=str(body.get("redirect_to") or FaultPlan.redirect_to),
            rng=random.Random(body.get("seed", 1)),
        )
        return {"platform": name, "rate": rate, "kinds": list(kinds)}

    @app.delete("/_sandbox/faults")
    async def clear_faults() -> dict[str, Any]:
        sandbox.ledger.faults.clear()
        return {"faults": "off"}

    @app.put("/_sandbox/limits")
    async def set_limits(body: dict[str, Any]) -> dict[str, Any]:
        name = str(body.get("platform", "*"))
        if name != "*":
            sandbox.platform(name)
        ledger = sandbox.ledger
        if "burst" in body and "rate" not in body:
            raise HTTPException(422, "burst: only with rate (requests per second)")
        ceiling = _ceiling(body) if "rate" in body else None
        if "scale" in body or ceiling is None:
            expected = "a number >= 0 (0 turns the limits off)"
            ledger.limit_scale[name] = _number(body.get("scale", 1.0), "scale", expected)
        answer: dict[str, Any] = {"platform": name, "scale": ledger.scale(name)}
        if ceiling is not None:
            rate, burst = ceiling
            for target in sorted(sandbox.platforms) if name == "*" else [name]:
                ledger.set_ceiling(target, rate, burst)
            answer.update(rate=rate, burst=burst if rate > 0 else None)
        return answer

    @app.get("/_sandbox/secrets")
    async def secrets() -> dict[str, Any]:
        values: list[str] = []
        for platform in sandbox.platforms.values():
            values.extend(v for v in platform.secrets() if v)
        return {"secrets": sorted(set(values))}

    @app.get("/_sandbox/env")
    async def env(request: Request) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/")
        return {name: vars(e) for name, e in sandbox.env(base).items()}

    @app.post("/_sandbox/reset")
    async def reset() -> dict[str, Any]:
        sandbox.reset()
        return {"reset": True}

    app.add_middleware(FaultMiddleware, sandbox=sandbox)
    return app
