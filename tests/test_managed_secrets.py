"""Managed secrets are encrypted end to end, as the official SDK does it: the value travels
encrypted for the secret engine on create/update, and for the caller's own key on retrieve.
Checked on the wire against the emulator, with our client and with the official one."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import sdm_async
from sdm_async import _secrets
from sdm_async._generated.v1 import managed_secrets_pb2, secret_engines_pb2
from sdm_async._secrets import OAEP
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


# -- one deadline, one key pair per client, never a value in clear -----------------------------


async def _secret(client: sdm_async.Client, engine_id: str, name: str = "db") -> str:
    secret = sdm_async.ManagedSecret(
        name=name,
        secret_engine_id=engine_id,
        value=PLAINTEXT,
        policy=sdm_async.ManagedSecretPolicy(),
    )
    return (await client.managed_secrets.create(secret)).managed_secret.id


def _retrieve_keys(seen: list[tuple[str, bytes, bytes]]) -> list[bytes]:
    """The public keys that the Retrieve requests seen carried."""
    return [
        managed_secrets_pb2.ManagedSecretRetrieveRequest.FromString(body).public_key
        for name, body, _ in seen
        if name == "ManagedSecrets.Retrieve"
    ]


def _intercept(emu: Emulator, reject: Callable[[str, bytes], str | None]) -> None:
    """Make the emulator refuse (INVALID_ARGUMENT) a call for which `reject(method, body)`
    gives a reason, as the API would."""
    serve = emu.servicer.handle

    async def handle(m: Any, body: bytes, context: Any) -> bytes:
        reason = reject(m.full_name, body)
        if reason is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, reason)
        return await serve(m, body, context)

    emu.servicer.handle = handle  # type: ignore[method-assign]


async def test_concurrent_retrieves_on_a_fresh_client_make_one_key_pair() -> None:
    async with Emulator() as emu:
        async with emu.client() as admin:
            secret_id = await _secret(admin, await _engine(admin))
        seen = _spy(emu)
        async with emu.client() as client:
            got = await asyncio.gather(
                *(client.managed_secrets.retrieve(secret_id) for _ in range(16))
            )
            again = await client.managed_secrets.retrieve(secret_id)
    assert [r.managed_secret.value for r in [*got, again]] == [PLAINTEXT] * 17
    keys = _retrieve_keys(seen)
    assert len(keys) == 17 and len(set(keys)) == 1  # one key pair for the whole client


async def test_a_retrieve_out_of_time_while_the_key_is_made_leaves_it_to_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with Emulator() as emu:
        async with emu.client() as admin:
            secret_id = await _secret(admin, await _engine(admin))
        # The client's key generation is held until the test lets it go (engines' keys,
        # made by the emulator, are 2048-bit and pass).
        started, release = threading.Event(), threading.Event()
        generate = rsa.generate_private_key

        def held(*args: Any, **kwargs: Any) -> rsa.RSAPrivateKey:
            if kwargs.get("key_size") == 4096:
                started.set()
                release.wait(30)
            return generate(*args, **kwargs)

        monkeypatch.setattr(rsa, "generate_private_key", held)
        seen = _spy(emu)
        try:
            async with emu.client() as client:
                patient = asyncio.create_task(client.managed_secrets.retrieve(secret_id))
                assert await asyncio.to_thread(started.wait, 10)
                cancelled = asyncio.create_task(client.managed_secrets.retrieve(secret_id))
                loop = asyncio.get_running_loop()
                began = loop.time()
                with pytest.raises(sdm_async.errors.TimeoutError, match="key pair"):
                    await asyncio.wait_for(
                        client.managed_secrets.retrieve(secret_id, timeout=0.2), 5
                    )
                assert loop.time() - began < 0.2 + 0.5
                cancelled.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await cancelled
                assert not patient.done()  # neither the timeout nor the cancel stopped it
                release.set()
                got = await asyncio.wait_for(patient, 30)
                assert got.managed_secret.value == PLAINTEXT
                # Later retrieves use the same key pair.
                assert (await client.managed_secrets.retrieve(secret_id, timeout=10)).managed_secret
        finally:
            release.set()
    keys = _retrieve_keys(seen)
    assert len(keys) == 2 and len(set(keys)) == 1  # the timed-out and cancelled sent nothing


@pytest.mark.parametrize("verb", ["create", "update"])
async def test_create_and_update_fetch_the_key_and_call_within_one_timeout(verb: str) -> None:
    # Every call takes 0.4 s: the engine's key and the call fit 0.6 s each, not together.
    async with Emulator(latency=0.4) as emu:
        async with emu.client() as admin:
            engine_id = await _engine(admin)
            secret_id = await _secret(admin, engine_id)
        secret = sdm_async.ManagedSecret(
            id=secret_id if verb == "update" else None,
            name="db" if verb == "update" else "other",
            secret_engine_id=engine_id,
            value=b"new value",
            policy=sdm_async.ManagedSecretPolicy(),
        )
        async with emu.client() as client:  # a fresh client: the engine's key is not cached
            method = getattr(client.managed_secrets, verb)
            loop = asyncio.get_running_loop()
            began = loop.time()
            with pytest.raises(sdm_async.errors.TimeoutError):
                await method(secret, timeout=0.6)
            assert loop.time() - began < 0.6 + 0.5
            # With time for both, the call goes through (a create under another name, in case
            # the one that ran out of time was made all the same).
            if verb == "create":
                secret.name = "another"
            await method(secret, timeout=5)


async def test_no_value_is_sent_in_clear_when_the_engine_key_cannot_be_had() -> None:
    async with Emulator() as emu, emu.client(retry=sdm_async.RetryPolicy(max_retries=0)) as client:
        engine_id = await _engine(client)
        seen = _spy(emu)

        def secret(engine: str) -> sdm_async.ManagedSecret:
            return sdm_async.ManagedSecret(
                name="db",
                secret_engine_id=engine,
                value=PLAINTEXT,
                policy=sdm_async.ManagedSecretPolicy(),
            )

        # No engine named: refused before any call.
        with pytest.raises(sdm_async.errors.BadRequestError, match="secret_engine_id") as bad:
            await client.managed_secrets.create(secret(""))
        assert seen == []
        # An engine that does not exist: the fetch fails, and so does the create.
        unknown = "se-0000000000000000"
        with pytest.raises(sdm_async.errors.NotFoundError) as missing:
            await client.managed_secrets.create(secret(unknown))
        assert unknown in str(missing.value) and "not sent" in str(missing.value)

        # An engine whose key cannot be used (the API's answer rewritten: the emulator always
        # gives one).
        serve = emu.servicer.handle

        async def keyless(m: Any, body: bytes, context: Any) -> bytes:
            answer = await serve(m, body, context)
            if m.full_name != "SecretEngines.Get":
                return answer
            resp = secret_engines_pb2.SecretEngineGetResponse.FromString(answer)
            resp.secret_engine.key_value.public_key = b""
            return bytes(resp.SerializeToString())

        emu.servicer.handle = keyless  # type: ignore[method-assign]
        with pytest.raises(sdm_async.errors.RPCError, match="has no public key") as keyless_err:
            await client.managed_secrets.create(secret(engine_id))
        assert keyless_err.value.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        emu.servicer.handle = serve  # type: ignore[method-assign]

        # A value longer than the engine's key can encrypt: refused, nothing sent.
        too_long = secret(engine_id)
        too_long.value = b"x" * 191  # the emulator's engines have 2048-bit keys: 190 at most
        with pytest.raises(sdm_async.errors.BadRequestError, match="190 bytes") as long_err:
            await client.managed_secrets.create(too_long)

    assert "ManagedSecrets.Create" not in [name for name, _, _ in seen]
    for _name, request, answer in seen:
        assert PLAINTEXT not in request and PLAINTEXT not in answer
    for e in (bad, missing, keyless_err, long_err):
        assert PLAINTEXT.decode() not in str(e.value) and "x" * 191 not in str(e.value)


async def test_a_failed_key_fetch_is_not_kept_and_a_rotated_key_is_fetched_again() -> None:
    async with Emulator() as emu, emu.client(retry=sdm_async.RetryPolicy(max_retries=0)) as client:
        engine_id = await _engine(client)
        fail_next_get = [True]

        def reject(method: str, body: bytes) -> str | None:
            if method == "SecretEngines.Get" and fail_next_get[0]:
                fail_next_get[0] = False
                return "engine store unreachable"
            request = {
                "ManagedSecrets.Create": managed_secrets_pb2.ManagedSecretCreateRequest,
                "ManagedSecrets.Update": managed_secrets_pb2.ManagedSecretUpdateRequest,
            }.get(method)
            if request is not None:
                # As the API would: a value not encrypted for the engine's current key.
                sent = request.FromString(body)
                try:
                    emu.backend.engine_keys[engine_id].decrypt(sent.managed_secret.value, OAEP)
                except ValueError:
                    return "value is not encrypted with the secret engine's key"
            return None

        _intercept(emu, reject)
        secret = sdm_async.ManagedSecret(
            name="db",
            secret_engine_id=engine_id,
            value=PLAINTEXT,
            policy=sdm_async.ManagedSecretPolicy(),
        )
        with pytest.raises(sdm_async.errors.BadRequestError, match="could not be fetched"):
            await client.managed_secrets.create(secret)
        made = (await client.managed_secrets.create(secret)).managed_secret  # fetched again
        assert (await client.managed_secrets.retrieve(made.id)).managed_secret.value == PLAINTEXT

        # The engine's key changes on the server.
        new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        emu.backend.engine_keys[engine_id] = new_key
        record = emu.backend.tables["SecretEngines"].get(engine_id)
        assert record is not None
        record.msg.key_value.public_key = new_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        made.value = b"after rotation"
        with pytest.raises(sdm_async.errors.BadRequestError):
            await client.managed_secrets.update(made)  # sent with the key it had
        await client.managed_secrets.update(made)  # the refusal made it fetch the new one
        got = await client.managed_secrets.retrieve(made.id)
        assert got.managed_secret.value == b"after rotation"


async def test_a_managed_secret_must_be_given() -> None:
    for verb in ("create", "update"):
        method = getattr(_secrets.ManagedSecrets, verb)
        annotation = inspect.signature(method).parameters["managed_secret"].annotation
        assert annotation == "ManagedSecret", annotation  # not Optional
    async with Emulator() as emu, emu.client() as client:
        seen = _spy(emu)
        for bad in (None, {"name": "db"}):
            for verb in ("create", "update"):
                with pytest.raises(TypeError, match=r"managed_secret must be a ManagedSecret"):
                    await getattr(client.managed_secrets, verb)(bad)
        secret = sdm_async.ManagedSecret(name="db", secret_engine_id="se-1", value=PLAINTEXT)
        with pytest.raises(TypeError, match="timeout"):
            await client.managed_secrets.create(secret, timeout="5")  # type: ignore[arg-type]
        secret.value = 12  # type: ignore[assignment]
        with pytest.raises(TypeError, match=r"ManagedSecret\.value must be bytes"):
            await client.managed_secrets.create(secret)
    assert seen == []  # all refused before any call
