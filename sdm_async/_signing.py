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

API_VERSION = "2025-04-14"


def derive_key(secret: bytes, date: str) -> bytes:
    """The per-day signing key for `date` (`YYYY-MM-DD`, UTC)."""
    k1 = hmac.new(secret, date.encode(), hashlib.sha256).digest()
    return hmac.new(k1, b"sdm_api_v1", hashlib.sha256).digest()


def sign_with_key(key: bytes, method: str, body: bytes) -> str:
    digest = hashlib.sha256(method.encode() + b"\n" + body).digest()
    return base64.b64encode(hmac.new(key, digest, hashlib.sha256).digest()).decode()


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

    __slots__ = ("_date", "_key", "_secret")

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._date = ""
        self._key = b""

    def __repr__(self) -> str:
        return "<Signer secret=***>"

    def key_for(self, date: str) -> bytes:
        if date != self._date:
            self._key = derive_key(self._secret, date)
            self._date = date
        return self._key

    def sign(self, method: str, body: bytes, date: str | None = None) -> str:
        return sign_with_key(self.key_for(date or utc_date()), method, body)
