"""`sdm-async emulator` as a process: it prints where it listens, serves the official and our
client, stops cleanly on SIGTERM, and with `--db` keeps every acknowledged change across a
kill -9."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

import sdm_async
from sdm_async.testing.auth import new_key_pair
from tests import processes

KEY, SECRET = new_key_pair()


def emulator_process(
    *args: str, env: dict[str, str] | None = None
) -> AbstractContextManager[tuple[subprocess.Popen[str], str]]:
    return processes.emulator_process("--port", "0", *args, env=env)


async def test_serves_until_sigterm_then_exits_0() -> None:
    with emulator_process(env={"SDM_API_ACCESS_KEY": KEY, "SDM_API_SECRET_KEY": SECRET}) as (
        proc,
        address,
    ):
        async with sdm_async.Client(KEY, SECRET, address, True) as client:
            made = await client.roles.create(sdm_async.Role(name="r"))
            assert (await client.roles.get(made.role.id)).role.name == "r"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 10) == 0


async def test_prints_a_key_pair_when_given_none() -> None:
    with emulator_process() as (proc, address):
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(2)]
        values = dict(line.split("=", 1) for line in lines)
        async with sdm_async.Client(
            values["SDM_API_ACCESS_KEY"], values["SDM_API_SECRET_KEY"], address, True
        ) as client:
            assert [r async for r in client.roles.list("")] == []
        proc.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(proc.wait, 10) == 0


async def test_db_keeps_acknowledged_changes_across_kill_9(tmp_path: Path) -> None:
    db = str(tmp_path / "state.db")
    keys = ("--access-key", KEY, "--secret-key", SECRET, "--db", db)
    with emulator_process(*keys) as (proc, address):
        async with sdm_async.Client(KEY, SECRET, address, True) as client:
            made = await client.bulk(
                client.accounts.create,
                [
                    sdm_async.User(email=f"u{i}@x.io", first_name="U", last_name=str(i))
                    for i in range(30)
                ],
                concurrency=8,
            )
            token = await client.accounts.create(
                sdm_async.Token(name="ci", permissions=[sdm_async.Permission.USER_LIST])
            )
            deleted = made[0].response.account.id
            await client.accounts.delete(deleted)
        proc.kill()  # no chance to flush anything
    with emulator_process(*keys) as (proc, address):
        async with sdm_async.Client(KEY, SECRET, address, True) as client:
            ids = {a.id async for a in client.accounts.list("type:user")}
            assert ids == {o.response.account.id for o in made[1:]}
            with_history = [h async for h in client.accounts_history.list("")]
            assert len(with_history) == 30 + 1 + 1
        # The token made through the API still holds its key after the restart.
        async with sdm_async.Client(token.access_key, token.secret_key, address, True) as tc:
            assert len([a async for a in tc.accounts.list("")]) == 30
            async with sdm_async.Client(KEY, SECRET, address, True) as client:
                t = (await client.accounts.get(token.account.id)).account
                t.suspended = True
                await client.accounts.update(t)
        proc.kill()
    with emulator_process(*keys) as (proc, address):
        # ... and a suspended token stays shut out after another restart.
        async with sdm_async.Client(token.access_key, token.secret_key, address, True) as tc:
            with pytest.raises(sdm_async.errors.AuthenticationError, match="suspended"):
                await tc.accounts.get(token.account.id)
