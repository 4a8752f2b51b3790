"""RFC 6238 TOTP codes (6 digits, 30 s, SHA-1), as authenticator apps compute them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time


def _key(secret: str) -> bytes:
    cleaned = secret.replace(" ", "").replace("-", "").upper()
    cleaned += "=" * (-len(cleaned) % 8)
    try:
        return base64.b32decode(cleaned)
    except ValueError as exc:  # binascii.Error is a ValueError
        raise ValueError("TOTP secret: expected a base32 string (A-Z, 2-7)") from exc


def totp_code(secret: str, at: float | None = None, *, step: int = 30, digits: int = 6) -> str:
    """The code for ``secret`` at time ``at`` (now by default)."""
    counter = int((time.time() if at is None else at) // step)
    digest = hmac.new(_key(secret), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**digits).zfill(digits)


def totp_valid(secret: str, code: str, *, window: int = 1, at: float | None = None) -> bool:
    """True if ``code`` matches now or ``window`` steps either side."""
    now = time.time() if at is None else at
    return any(hmac.compare_digest(totp_code(secret, now + i * 30), code) for i in range(-window, window + 1))


def is_base32_secret(secret: str) -> bool:
    try:
        _key(secret)
    except ValueError:
        return False
    return bool(secret.strip())
