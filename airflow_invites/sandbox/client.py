"""A small client of the sandbox's admin API (``/_sandbox/...``), for tests, benchmarks and users.

Only ``requests``: importing it does not import the server.
"""

from __future__ import annotations

from typing import Any

import requests


class SandboxClient:
    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(
            method, f"{self.base_url}/_sandbox/{path}", timeout=self.timeout, **kwargs
        )
        response.raise_for_status()
        return response.json()

    def health(self) -> dict[str, Any]:
        return dict(self._call("GET", "health"))

    def env(self) -> dict[str, dict[str, Any]]:
        """Per platform: ``connection`` (Airflow connection JSON), ``group``, ``users``."""
        return dict(self._call("GET", "env"))

    def reset(self) -> None:
        self._call("POST", "reset")

    def invites(self, platform: str | None = None) -> list[dict[str, Any]]:
        return list(
            self._call("GET", "invites", params={"platform": platform} if platform else None)["invites"]
        )

    def requests(self, platform: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        """Requests to the platform APIs, oldest first (from index ``since`` on)."""
        params: dict[str, Any] = {"since": since}
        if platform:
            params["platform"] = platform
        return list(self._call("GET", "requests", params=params)["requests"])

    def request_count(self, platform: str | None = None) -> int:
        params: dict[str, Any] = {"since": 1 << 62}
        if platform:
            params["platform"] = platform
        return int(self._call("GET", "requests", params=params)["total"])

    def people(self, platform: str, count: int, group: str | None = None) -> list[str]:
        """``count`` new people, in no group, or already members of ``group``."""
        return [p["id"] for p in self.people_with_handles(platform, count, group)]

    def people_with_handles(
        self, platform: str, count: int, group: str | None = None, handles: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Like ``people``, each as ``{"id", "handles": {kind: value}}``; ``handles`` set on everyone."""
        body: dict[str, Any] = {"platform": platform, "count": count}
        if group is not None:
            body["group"] = group
        if handles is not None:
            body["handles"] = handles
        return list(self._call("POST", "people", json=body)["people"])

    def members(self, platform: str, group: str) -> dict[str, list[str]]:
        """``{"members": [ids], "invited": [ids]}`` of a group."""
        return dict(self._call("GET", "members", params={"platform": platform, "group": group}))

    def removals(self, platform: str | None = None) -> list[dict[str, Any]]:
        return list(
            self._call("GET", "removals", params={"platform": platform} if platform else None)["removals"]
        )

    def accept(self, platform: str, group: str, user: str) -> None:
        self._call("POST", "accept", json={"platform": platform, "group": group, "user": user})

    def faults(self, platform: str = "*", **plan: Any) -> None:
        """``rate``, ``kinds``, ``latency_ms``, ``seed``, ``timeout_ms``, ``throttle_seconds``."""
        self._call("PUT", "faults", json={"platform": platform, **plan})

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def limits(
        self,
        platform: str = "*",
        scale: float | None = None,
        *,
        rate: float | None = None,
        burst: int | None = None,
    ) -> dict[str, Any]:
        """Rate limits of ``platform`` (or ``"*"``: all).

        ``scale`` multiplies the platform's documented limits (0 turns them off; the default when
        nothing is given is 1). ``rate`` (requests per second) and ``burst`` (requests at once,
        default one second's worth) set a ceiling the hooks are not told, for every request to that
        platform (for ``"*"``: to each platform), answered with the platform's own rate-limit reply;
        ``rate=0`` removes it. Both apply together: a request must pass the ceiling, then the
        (scaled) documented limits. ``reset()`` clears ceilings.
        """
        body: dict[str, Any] = {"platform": platform}
        if scale is not None:
            body["scale"] = scale
        if rate is not None:
            body["rate"] = rate
        if burst is not None:
            body["burst"] = burst
        return dict(self._call("PUT", "limits", json=body))

    def secrets(self) -> list[str]:
        return list(self._call("GET", "secrets")["secrets"])
