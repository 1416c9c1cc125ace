"""Request signing, as the StrongDM API checks it (a scheme modelled on AWS SigV4).

    k1        = HMAC-SHA256(secret, "YYYY-MM-DD")      # the UTC date of signing
    k2        = HMAC-SHA256(k1, "sdm_api_v1")
    digest    = SHA256("Service.Method" + "\\n" + serialized request)
    signature = base64(HMAC-SHA256(k2, digest))

The secret never travels; the date bounds replay. `k2` only changes at UTC midnight, so
`Signer` derives it once a day instead of twice per request.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import time

API_VERSION = "2025-04-14"
_UTC = datetime.timezone.utc


def derive_key(secret: bytes, date: str) -> bytes:
    """The per-day signing key for `date` (`YYYY-MM-DD`, UTC)."""
    k1 = hmac.new(secret, date.encode(), hashlib.sha256).digest()
    return hmac.new(k1, b"sdm_api_v1", hashlib.sha256).digest()


def sign_with_key(key: bytes, method: str, body: bytes) -> str:
    digest = hashlib.sha256(method.encode() + b"\n" + body).digest()
    # One-shot HMAC (OpenSSL's, in C) and base64 without the `base64` module's wrappers:
    # the same bytes as hmac.new(...).digest() and base64.b64encode, for less per call.
    mac = hmac.digest(key, digest, "sha256")
    return binascii.b2a_base64(mac, newline=False).decode()


def sign(secret: bytes, method: str, body: bytes, date: str) -> str:
    """Signature of `body` sent to `method` (`Accounts.List`, not the gRPC path) on `date`."""
    return sign_with_key(derive_key(secret, date), method, body)


def utc_date(now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d")


def decode_secret(api_secret: str) -> bytes:
    """The secret as the API hands it out (base64) -> raw bytes, with a clear error if not."""
    if not isinstance(api_secret, str):
        raise TypeError(f"api_secret must be a str, not {type(api_secret).__name__}")
    text = api_secret.strip()
    if not text:
        raise ValueError("api_secret is empty: pass the secret key shown when the API key was made")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "api_secret is not valid base64: pass the secret key exactly as StrongDM showed it"
        ) from None
    if not raw:
        raise ValueError("api_secret decodes to nothing: pass the full secret key")
    return raw


class Signer:
    """Signs requests for one API secret, caching the day's derived key."""

    __slots__ = ("_date", "_day", "_key", "_secret", "_today")

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._date = ""
        self._key = b""
        self._day = -1  # the UTC day number (POSIX time // 86400) that `_today` names
        self._today = ""

    def __repr__(self) -> str:
        return "<Signer secret=***>"

    def key_for(self, date: str) -> bytes:
        if date != self._date:
            self._key = derive_key(self._secret, date)
            self._date = date
        return self._key

    def sign(self, method: str, body: bytes, date: str | None = None) -> str:
        if not date:
            # POSIX time has no leap seconds: its day number changes at UTC midnight, so the
            # date string is formatted once a day, not per call (strftime costs microseconds).
            day = int(time.time() // 86400)
            if day != self._day:
                self._today = utc_date(datetime.datetime.fromtimestamp(day * 86400, _UTC))
                self._day = day
            date = self._today
        return sign_with_key(self.key_for(date), method, body)
