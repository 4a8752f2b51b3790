"""Keep secrets out of logs, XCom and exception texts.

Every secret a hook knows (from the connection) or obtains (tokens, cookies) goes through
``SecretScrubber.add``: it is masked for Airflow's task logs with ``mask_secret`` and removed from
any text we build ourselves (log lines, exception messages) with ``scrub``.
"""

from __future__ import annotations

import logging
import weakref
from urllib.parse import quote, quote_plus

from airflow.sdk.log import mask_secret

MASK = "***"
MIN_SECRET_LENGTH = 4


#: libraries that log whole request URLs (urllib3 at DEBUG: path and query)
LIBRARY_LOGGERS = ("urllib3.connectionpool",)


class _LibraryLogScrubber(logging.Filter):
    """Scrubs every live hook's secrets from the log lines of the HTTP libraries."""

    def __init__(self) -> None:
        super().__init__()
        self.scrubbers: weakref.WeakSet[SecretScrubber] = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.scrubbers:
            return True
        try:
            text = record.getMessage()
        except Exception:
            return True
        clean = text
        for scrubber in list(self.scrubbers):
            clean = scrubber.scrub(clean)
        if clean != text:
            record.msg, record.args = clean, ()
        return True


_LIBRARY_FILTER = _LibraryLogScrubber()


class SecretScrubber:
    """The set of secret values of one hook."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        _LIBRARY_FILTER.scrubbers.add(self)
        for name in LIBRARY_LOGGERS:
            logger = logging.getLogger(name)
            if _LIBRARY_FILTER not in logger.filters:
                logger.addFilter(_LIBRARY_FILTER)

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
