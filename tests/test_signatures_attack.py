"""Signatures under attack, on the raw wire against the emulator: every forged, replayed,
moved, cut or padded signature and every unknown or deleted key is refused with
UNAUTHENTICATED, compared in constant time, and leaves the emulator's state as it was."""

from __future__ import annotations

import base64
import datetime
import hmac
from typing import Any

import grpc
import grpc.aio
import pytest

import sdm_async
from sdm_async import errors
from sdm_async._generated.v1 import accounts_pb2
from sdm_async._signing import sign, utc_date
from sdm_async.testing import Emulator, auth


def state(emu: Emulator) -> Any:
    """Everything a call could change: every table's objects and history, the unique
    names, and the keys the emulator accepts."""
    b = emu.backend
    tables = {
        name: (sorted((i, r.data) for i, r in t.records.items()), len(t.history))
        for name, t in b.tables.items()
    }
    uniques = {k: dict(v) for k, v in b._unique.items()}
    return tables, uniques, sorted(b.keys._keys), sorted(b.keys.suspended)


def create_body(email: str) -> bytes:
    req = accounts_pb2.AccountCreateRequest()
    req.account.user.email = email
    req.account.user.first_name = "Mallory"
    req.account.user.last_name = "Attacker"
    return req.SerializeToString()


def headers(access_key: str, signature: str) -> list[tuple[str, str]]:
    return [
        ("x-sdm-authentication", access_key),
        ("x-sdm-signature", signature),
        ("x-sdm-api-version", "2025-04-14"),
    ]


async def raw(emu: Emulator, path: str, body: bytes, metadata: list[tuple[str, str]]) -> bytes:
    async with grpc.aio.insecure_channel(emu.address) as channel:
        result: bytes = await channel.unary_unary(path)(body, metadata=metadata, timeout=10)
        return result


def secret(emu: Emulator) -> bytes:
    return base64.b64decode(emu.secret_key)


def today_signature(emu: Emulator, method: str, body: bytes) -> str:
    return sign(secret(emu), method, body, utc_date())


async def refused(emu: Emulator, path: str, body: bytes, metadata: list[tuple[str, str]]) -> str:
    """Send the call; it must be refused with UNAUTHENTICATED and change nothing."""
    before = state(emu)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await raw(emu, path, body, metadata)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, info.value.details()
    assert state(emu) == before
    return info.value.details() or ""


async def test_the_genuine_call_goes_through(emu: Emulator) -> None:
    # The control: the same construction with nothing forged creates the account.
    body = create_body("genuine@example.com")
    await raw(
        emu,
        "/v1.Accounts/Create",
        body,
        headers(emu.access_key, today_signature(emu, "Accounts.Create", body)),
    )
    assert emu.backend.count("Accounts") == 1


@pytest.mark.parametrize("days", [-1, 1, -365])
async def test_a_signature_made_for_another_utc_date_is_refused(emu: Emulator, days: int) -> None:
    body = create_body("replay@example.com")
    other = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)
    signature = sign(secret(emu), "Accounts.Create", body, utc_date(other))
    details = await refused(emu, "/v1.Accounts/Create", body, headers(emu.access_key, signature))
    assert "invalid request signature" in details


@pytest.mark.parametrize("how", ["other email", "one bit flipped", "byte appended", "emptied"])
async def test_a_tampered_body_is_refused(emu: Emulator, how: str) -> None:
    signed = create_body("alice@example.com")
    sent = {
        "other email": create_body("mallory@example.com"),
        "one bit flipped": signed[:-1] + bytes([signed[-1] ^ 1]),
        "byte appended": signed + b"\x00",  # unknown field 0 is still a different body
        "emptied": b"",
    }[how]
    signature = today_signature(emu, "Accounts.Create", signed)
    details = await refused(emu, "/v1.Accounts/Create", sent, headers(emu.access_key, signature))
    assert "invalid request signature" in details


async def test_a_signature_moved_to_another_method_is_refused(emu: Emulator) -> None:
    async with emu.client() as client:
        resp = await client.accounts.create(
            sdm_async.User(email="victim@example.com", first_name="V", last_name="Ictim")
        )
    assert resp.account is not None
    # AccountGetRequest and AccountDeleteRequest have the same fields: the bytes of a read
    # are the bytes of a delete, and only the method name in the signature tells them apart.
    body = accounts_pb2.AccountGetRequest(id=resp.account.id).SerializeToString()
    read = today_signature(emu, "Accounts.Get", body)
    await raw(emu, "/v1.Accounts/Get", body, headers(emu.access_key, read))
    details = await refused(emu, "/v1.Accounts/Delete", body, headers(emu.access_key, read))
    assert "invalid request signature" in details
    # Same method name in another service: Roles.Delete is not Accounts.Delete.
    moved = today_signature(emu, "Roles.Delete", body)
    await refused(emu, "/v1.Accounts/Delete", body, headers(emu.access_key, moved))
    assert emu.backend.count("Accounts") == 1


def _reshaped(good: str, how: str) -> str:
    return {
        "truncated by one": good[:-1],
        "padding dropped": good.rstrip("="),
        "half": good[: len(good) // 2],
        "empty-looking": "=",
        "doubled": good + good,
        "padded with base64": good + "A" * 1000,
        "4 KiB": good + "A" * 4096,
        "case swapped": good.swapcase(),
        "raw digest in hex": base64.b64decode(good).hex(),
        "trailing space": good + " ",
    }[how]


@pytest.mark.parametrize(
    "how",
    [
        "truncated by one",
        "padding dropped",
        "half",
        "empty-looking",
        "doubled",
        "padded with base64",
        "4 KiB",
        "case swapped",
        "raw digest in hex",
        "trailing space",
    ],
)
async def test_a_cut_or_oversized_signature_is_refused(emu: Emulator, how: str) -> None:
    body = create_body("cut@example.com")
    signature = _reshaped(today_signature(emu, "Accounts.Create", body), how)
    await refused(emu, "/v1.Accounts/Create", body, headers(emu.access_key, signature))


async def test_a_signature_over_the_metadata_limit_is_refused_and_the_emulator_serves_on(
    emu: Emulator,
) -> None:
    # Headers past gRPC's hard metadata limit (16 KiB) are refused by gRPC itself before any
    # handler runs, with RESOURCE_EXHAUSTED as any gRPC server does; nothing changes.
    body = create_body("huge@example.com")
    signature = today_signature(emu, "Accounts.Create", body) + "A" * 64 * 1024
    before = state(emu)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await raw(emu, "/v1.Accounts/Create", body, headers(emu.access_key, signature))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert state(emu) == before
    async with emu.client() as client:
        assert [a async for a in client.accounts.list("")] == []


async def test_an_unknown_key_is_refused(emu: Emulator) -> None:
    body = create_body("unknown@example.com")
    # Signed correctly with the admin secret, but sent under a key the emulator never issued.
    signature = today_signature(emu, "Accounts.Create", body)
    details = await refused(
        emu, "/v1.Accounts/Create", body, headers("auth-0000000000000000", signature)
    )
    assert details == "unknown API access key"


async def test_a_deleted_tokens_key_is_refused_at_once(emu: Emulator) -> None:
    async with emu.client() as admin:
        made = await admin.accounts.create(
            sdm_async.Token(name="ci", permissions=[sdm_async.Permission.USER_CREATE])
        )
        assert made.account is not None
        body = create_body("token@example.com")
        token_secret = base64.b64decode(made.secret_key)
        signature = sign(token_secret, "Accounts.Create", body, utc_date())
        # The key works while its token exists ...
        await raw(emu, "/v1.Accounts/Create", body, headers(made.access_key, signature))
        assert emu.backend.count("Accounts") == 2
        await admin.accounts.delete(made.account.id)
    # ... and not once it is deleted, even with a signature it made while it was valid.
    details = await refused(emu, "/v1.Accounts/Create", body, headers(made.access_key, signature))
    assert details == "unknown API access key"


async def test_signatures_are_compared_in_constant_time(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What matters is that the check goes through hmac.compare_digest with the signature
    # received, never `==` (which returns at the first differing byte).
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    body = create_body("timing@example.com")
    good = today_signature(emu, "Accounts.Create", body)
    forged = base64.b64encode(bytes(32)).decode()  # as long as a real one, all zeros
    await refused(emu, "/v1.Accounts/Create", body, headers(emu.access_key, forged))
    assert seen == [(good.encode(), forged.encode())]


async def test_the_client_reports_a_refused_key_once_without_retrying(emu: Emulator) -> None:
    wrong = base64.b64encode(b"not the secret, but 32 bytes long").decode()
    before = state(emu)
    async with sdm_async.Client(emu.access_key, wrong, emu.address, True) as client:
        with pytest.raises(errors.AuthenticationError, match="invalid request signature"):
            await client.accounts.create(
                sdm_async.User(email="x@example.com", first_name="X", last_name="Y"), timeout=10
            )
    assert emu.stats.calls == 1  # UNAUTHENTICATED is final: asking again cannot help
    assert state(emu) == before
    assert wrong not in repr(client)
