"""Signing: the published vectors, the per-day key cache, and the interceptor on the wire."""

from __future__ import annotations

import base64
import json

import pytest

from sdm_async import _signing
from sdm_async._generated.v1 import accounts_pb2

from .conftest import ACCESS_KEY, Scripted, accounts_pages, reference_file


def test_every_reference_vector() -> None:
    data = json.loads(reference_file("signing-vectors.json").read_text())
    assert data["vectors"], "no vectors to check"
    for v in data["vectors"]:
        secret = base64.b64decode(v["secret"])
        body = bytes.fromhex(v["request_hex"])
        assert _signing.sign(secret, v["method"], body, v["date_utc"]) == v["signature"], v
        signer = _signing.Signer(secret)
        assert signer.sign(v["method"], body, v["date_utc"]) == v["signature"]


def test_signer_caches_the_day_key_and_changes_it_at_midnight() -> None:
    signer = _signing.Signer(b"hunter2-key")
    k1 = signer.key_for("2026-11-23")
    assert signer.key_for("2026-11-23") is k1
    assert signer.key_for("2026-11-24") != k1
    assert "hunter2" not in repr(signer)


@pytest.mark.parametrize("bad", ["", "   ", "not base64!", "YQ", 123])
def test_bad_secrets_are_refused_with_a_clear_message(bad: object) -> None:
    with pytest.raises((ValueError, TypeError), match="api_secret"):
        _signing.decode_secret(bad)  # type: ignore[arg-type]


async def test_each_call_carries_the_four_entries_and_a_valid_signature(
    scripted: Scripted,
) -> None:
    scripted.handlers["Accounts.List"] = accounts_pages(3, 10)
    async with scripted.client() as client:
        users = [u async for u in client.accounts.list("email:?", "user1@example.com")]
    assert len(users) == 3
    name, metadata, body = scripted.calls[-1]
    assert name == "Accounts.List"
    assert metadata["x-sdm-authentication"] == ACCESS_KEY
    assert metadata["x-sdm-api-version"] == _signing.API_VERSION
    assert metadata["x-sdm-user-agent"].startswith("sdm-async/")
    # The server in conftest rejects bad signatures; check the signed body is the request.
    req = accounts_pb2.AccountListRequest.FromString(body)
    assert req.filter == 'email:"user1@example.com"'
