"""Managed secrets are encrypted end to end, as the official SDK does it: the value travels
encrypted for the secret engine on create/update, and for the caller's own key on retrieve.
Checked on the wire against the emulator, with our client and with the official one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import sdm_async
from sdm_async.testing import Emulator

PLAINTEXT = b"correct horse battery staple"


def _spy(emu: Emulator) -> list[tuple[str, bytes, bytes]]:
    """Record (method, request bytes, response bytes) of every call the emulator serves."""
    seen: list[tuple[str, bytes, bytes]] = []
    serve = emu.servicer.handle

    async def handle(m: Any, body: bytes, context: Any) -> bytes:
        answer = await serve(m, body, context)
        seen.append((m.full_name, body, answer))
        return answer

    emu.servicer.handle = handle  # type: ignore[method-assign]
    return seen


async def _engine(client: sdm_async.Client) -> str:
    store = (
        await client.secret_stores.create(
            sdm_async.VaultTokenStore(name="vault", server_address="v")
        )
    ).secret_store
    engine = sdm_async.KeyValueEngine(
        name="kv", secret_store_id=store.id, secret_store_root_path="/kv"
    )
    made = (await client.secret_engines.create(engine)).secret_engine
    assert made.public_key.startswith(b"-----BEGIN PUBLIC KEY-----")
    return made.id


async def test_values_never_travel_in_clear() -> None:
    async with Emulator() as emu, emu.client() as client:
        engine_id = await _engine(client)
        seen = _spy(emu)
        secret = sdm_async.ManagedSecret(
            name="db",
            secret_engine_id=engine_id,
            value=PLAINTEXT,
            policy=sdm_async.ManagedSecretPolicy(),
        )
        made = (await client.managed_secrets.create(secret)).managed_secret
        assert secret.value == PLAINTEXT  # the caller's object is left as it was
        assert made.value == b""  # the API never hands a value back in clear
        got = (await client.managed_secrets.retrieve(made.id)).managed_secret
        assert got.value == PLAINTEXT
        made.value = b"rotated by hand"
        await client.managed_secrets.update(made)
        again = await client.managed_secrets.retrieve(made.id)
        assert again.managed_secret.value == b"rotated by hand"
        assert "value='***'" in repr(again)
        listed = [s async for s in client.managed_secrets.list("")]
        assert [s.value for s in listed] == [b""]
        assert [s.id async for s in client.managed_secrets.list_by_actor("")] == [made.id]
        assert (await client.managed_secrets.validate(made.id)).valid
        await client.managed_secrets.force_delete(made.id)
        with pytest.raises(sdm_async.errors.NotFoundError):
            await client.managed_secrets.retrieve(made.id)
    methods = [name for name, _, _ in seen]
    assert "ManagedSecrets.Create" in methods and "ManagedSecrets.Retrieve" in methods
    for _name, request, answer in seen:
        assert PLAINTEXT not in request and PLAINTEXT not in answer
        assert b"rotated by hand" not in request and b"rotated by hand" not in answer


async def test_retrieve_of_an_unknown_secret_is_not_found() -> None:
    async with Emulator() as emu, emu.client() as client:
        with pytest.raises(sdm_async.errors.NotFoundError):
            await client.managed_secrets.retrieve("ms-0000000000000000")


async def test_the_official_sdk_and_ours_read_each_others_secrets() -> None:
    strongdm = pytest.importorskip("strongdm")
    async with Emulator() as emu, emu.client() as client:
        engine_id = await _engine(client)
        ours = sdm_async.ManagedSecret(
            name="ours",
            secret_engine_id=engine_id,
            value=b"from sdm_async",
            policy=sdm_async.ManagedSecretPolicy(),
        )
        ours_id = (await client.managed_secrets.create(ours)).managed_secret.id

        def official_side() -> tuple[bytes, str]:
            official = strongdm.Client(emu.access_key, emu.secret_key, emu.address, True)
            theirs = strongdm.ManagedSecret(
                name="theirs",
                secret_engine_id=engine_id,
                value=b"from strongdm",
                policy=strongdm.ManagedSecretPolicy(),
            )
            made = official.managed_secrets.create(theirs).managed_secret
            return official.managed_secrets.retrieve(ours_id).managed_secret.value, made.id

        read_by_official, theirs_id = await asyncio.to_thread(official_side)
        assert read_by_official == b"from sdm_async"
        got = await client.managed_secrets.retrieve(theirs_id)
        assert got.managed_secret.value == b"from strongdm"


async def test_secrets_survive_a_restart_with_db(tmp_path: Any) -> None:
    db = tmp_path / "state.db"
    async with Emulator(db=db) as emu, emu.client() as client:
        engine_id = await _engine(client)
        made = await client.managed_secrets.create(
            sdm_async.ManagedSecret(
                name="kept",
                secret_engine_id=engine_id,
                value=PLAINTEXT,
                policy=sdm_async.ManagedSecretPolicy(),
            )
        )
        keys = emu.access_key, emu.secret_key
    async with Emulator(db=db) as emu, emu.client() as client:
        assert (emu.access_key, emu.secret_key) == keys  # the generated admin key is kept too
        got = await client.managed_secrets.retrieve(made.managed_secret.id)
        assert got.managed_secret.value == PLAINTEXT
        again = sdm_async.ManagedSecret(
            name="after",
            secret_engine_id=engine_id,
            value=b"new",
            policy=sdm_async.ManagedSecretPolicy(),
        )
        second = (await client.managed_secrets.create(again)).managed_secret
        assert (await client.managed_secrets.retrieve(second.id)).managed_secret.value == b"new"
        await client.managed_secrets.delete(second.id)
