"""Keep secrets out of logs, XCom and exception texts.

Every secret a hook knows (from the connection) or obtains (tokens, cookies) goes through
``SecretScrubber.add``: it is masked for Airflow's task logs with ``mask_secret`` and removed from
any text we build ourselves (log lines, exception messages) with ``scrub``.
"""

from __future__ import annotations

from urllib.parse import quote, quote_plus

from airflow.sdk.log import mask_secret

MASK = "***"
MIN_SECRET_LENGTH = 4


class SecretScrubber:
    """The set of secret values of one hook."""

    def __init__(self) -> None:
        self._values: set[str] = set()

    def add(self, *values: str | None) -> None:
        for value in values:
            if not value or len(value) < MIN_SECRET_LENGTH:
                continue
            for form in {value, quote(value, safe=""), quote_plus(value)}:
                if form not in self._values:
                    self._values.add(form)
                    mask_secret(form)

    def scrub(self, text: str) -> str:
        # longest first, so that a secret containing another is replaced whole
        for value in sorted(self._values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, MASK)
        return text

    def __contains__(self, value: str) -> bool:
        return value in self._values
