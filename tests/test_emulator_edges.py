"""The emulator's edges: one emulator per port and per db file, start-up errors as one line
(exit 2, no traceback), keys of deleted tokens that stay dead across restarts, users seeded
once, and filters with many wildcards that cannot hold the emulator up."""

from __future__ import annotations

import asyncio
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import grpc.aio
import pytest

import sdm_async
from sdm_async import RetryPolicy, errors
from sdm_async.testing import Emulator
from sdm_async.testing.auth import new_key_pair
from sdm_async.testing.filters import _pattern
from sdm_async.testing.journal import Journal
from sdm_async.testing.status import StartError
from tests import processes

KEY, SECRET = new_key_pair()
ADMIN = ("--access-key", KEY, "--secret-key", SECRET)
NO_RETRY = RetryPolicy(max_retries=0, retry_rate_limit_errors=False)
PROG = [sys.executable, "-m", "sdm_async", "emulator"]


def emulator_process(*args: str) -> AbstractContextManager[tuple[subprocess.Popen[str], str]]:
    """`sdm-async emulator` with the test's admin key, once it listens: (process, address)."""
    return processes.emulator_process(*ADMIN, *args)


def refused(*args: str) -> str:
    """Run `sdm-async emulator ARGS`, expecting it to refuse to start: exit status 2 and one
    line on stderr (returned), no traceback, nothing served."""
    # A process that starts after all runs until the timeout, which fails the test.
    done = subprocess.run([*PROG, *args], capture_output=True, text=True, timeout=60)
    assert "listening" not in done.stdout
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("sdm-async emulator: "), lines[0]
    assert done.returncode == 2, done
    return lines[0]


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


async def collect(items: AsyncIterator[Any]) -> list[Any]:
    return [x async for x in items]


# -- one emulator per port ---------------------------------------------------------------------


async def test_a_port_in_use_is_refused_and_the_first_emulator_keeps_every_call() -> None:
    async with Emulator() as first:
        second = Emulator(port=first.port)
        try:
            with pytest.raises(StartError, match=rf"port {first.port} on 127\.0\.0\.1 is in use"):
                await second.start()
        finally:
            await second.stop()
        async with first.client(retry=NO_RETRY) as client:
            made = await client.roles.create(sdm_async.Role(name="r"))
            for _ in range(20):  # split connections would answer some of these NOT_FOUND
                async with first.client(retry=NO_RETRY) as fresh:
                    assert (await fresh.roles.get(made.role.id)).role.name == "r"


async def test_a_port_held_with_so_reuseport_is_refused() -> None:
    # A gRPC server with its default options, as a stale emulator from before this check.
    stale = grpc.aio.server()
    port = stale.add_insecure_port("127.0.0.1:0")
    await stale.start()
    try:
        emu = Emulator(port=port)
        with pytest.raises(StartError, match=f"port {port} .* in use"):
            await emu.start()
    finally:
        await stale.stop(None)


async def test_the_command_refuses_a_port_in_use() -> None:
    with emulator_process() as (_, address):
        port = port_of(address)
        line = refused(*ADMIN, "--port", str(port))
        assert f"port {port} on 127.0.0.1 is in use" in line
        async with sdm_async.Client(KEY, SECRET, address, True, retry=NO_RETRY) as client:
            assert await collect(client.roles.list("")) == []


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
@pytest.mark.parametrize("host", ["::1", "[::1]"])
async def test_an_ipv6_host_is_served(host: str) -> None:
    async with Emulator(host=host) as emu, emu.client(retry=NO_RETRY) as client:
        assert emu.address == f"[::1]:{emu.port}"
        assert await collect(client.roles.list("")) == []


# -- one emulator per db file ------------------------------------------------------------------


async def test_a_db_in_use_is_refused_until_its_emulator_stops(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    async with Emulator(db=db) as first, first.client(retry=NO_RETRY) as client:
        await client.roles.create(sdm_async.Role(name="kept"))
        with pytest.raises(StartError, match=rf"db {re.escape(str(db))} is in use"):
            Emulator(db=db)
    async with Emulator(db=db) as again, again.client(retry=NO_RETRY) as client:
        assert [r.name for r in await collect(client.roles.list(""))] == ["kept"]


async def test_a_failed_start_releases_the_db(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    async with Emulator() as busy:
        emu = Emulator(db=db, port=busy.port)
        with pytest.raises(StartError, match="in use"):
            await emu.start()
    async with Emulator(db=db):
        pass


async def test_an_emulator_whose_db_was_closed_does_not_serve_again(tmp_path: Path) -> None:
    emu = Emulator(db=tmp_path / "state.db")
    await emu.start()
    await emu.stop()
    # Served again, it would accept changes it can no longer keep.
    with pytest.raises(StartError, match="make a new Emulator"):
        await emu.start()


def test_the_command_refuses_a_db_in_use_and_a_kill_9_leaves_no_lock(tmp_path: Path) -> None:
    db = str(tmp_path / "state.db")
    with emulator_process("--port", "0", "--db", db) as (proc, _):
        line = refused(*ADMIN, "--port", "0", "--db", db)
        assert f"db {db} is in use by another emulator (process {proc.pid})" in line
        proc.kill()
        proc.wait(10)
    with emulator_process("--port", "0", "--db", db):
        pass


# -- start-up errors ---------------------------------------------------------------------------


def _not_sqlite(tmp: Path) -> str:
    path = tmp / "notes.txt"
    path.write_text("not a database, but some text long enough for SQLite to look at\n" * 20)
    return str(path)


START_UP_ERRORS: dict[str, tuple[Any, str]] = {
    "db in a missing directory": (
        lambda tmp: ["--db", str(tmp / "missing" / "state.db")],
        "no directory",
    ),
    "db is a directory": (lambda tmp: ["--db", str(tmp)], "is a directory"),
    "db is not SQLite": (lambda tmp: ["--db", _not_sqlite(tmp)], "file is not a database"),
    "db of another program": (lambda tmp: ["--db", str(tmp / "other.db")], "cannot read"),
    "port out of range": (lambda tmp: ["--port", "70000"], "between 0 and 65535"),
    "unknown host": (lambda tmp: ["--host", "no-such-host.invalid"], "no-such-host.invalid"),
    "secret not base64": (
        lambda tmp: ["--access-key", KEY, "--secret-key", "s3cr3t-value"],
        "secret key is not base64",
    ),
    "malformed number": (lambda tmp: ["--port", "eighty"], "--port"),
    "negative seed count": (lambda tmp: ["--seed-users", "-3"], "--seed-users"),
    "page size": (lambda tmp: ["--page-size", "0"], "page_size"),
}


@pytest.mark.parametrize("case", sorted(START_UP_ERRORS))
def test_start_up_errors_are_one_line_and_exit_2(case: str, tmp_path: Path) -> None:
    make_args, expected = START_UP_ERRORS[case]
    other = sqlite3.connect(tmp_path / "other.db")  # a SQLite file with another schema
    other.executescript("CREATE TABLE changes (x TEXT); INSERT INTO changes VALUES ('y');")
    other.close()
    args = make_args(tmp_path)
    line = refused("--port", "0", *args)
    assert expected in line
    if "--db" in args:
        assert args[-1] in line  # names the file
    assert "s3cr3t" not in line


# -- keys across restarts ----------------------------------------------------------------------


async def test_a_deleted_tokens_key_stays_refused_after_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    perms = [sdm_async.Permission.USER_LIST]
    async with Emulator(db=db) as emu, emu.client(retry=NO_RETRY) as admin:
        gone = await admin.accounts.create(sdm_async.Token(name="gone", permissions=perms))
        kept = await admin.accounts.create(sdm_async.Token(name="kept", permissions=perms))
        await admin.accounts.delete(gone.account.id)
    async with Emulator(db=db) as emu:
        address = emu.address
        async with sdm_async.Client(
            gone.access_key, gone.secret_key, address, True, retry=NO_RETRY
        ) as token:
            with pytest.raises(errors.AuthenticationError, match="unknown API access key"):
                await token.accounts.get(kept.account.id)
        async with sdm_async.Client(
            kept.access_key, kept.secret_key, address, True, retry=NO_RETRY
        ) as token:
            assert (await token.accounts.get(kept.account.id)).account.name == "kept"


async def test_a_kept_key_whose_token_is_gone_is_refused_and_forgotten(tmp_path: Path) -> None:
    # As a db written before deletes forgot keys: a key row whose token no longer exists.
    db = tmp_path / "state.db"
    key, secret = new_key_pair()
    journal = Journal(db)
    journal.add_key(key, secret, "a-00000000deadbeef", frozenset({"user:list"}))
    journal.close()
    async with Emulator(db=db) as emu:
        async with sdm_async.Client(key, secret, emu.address, True, retry=NO_RETRY) as token:
            with pytest.raises(errors.AuthenticationError, match="unknown API access key"):
                await collect(token.accounts.list(""))
    journal = Journal(db)
    try:
        assert key not in {row[0] for row in journal.keys()}
    finally:
        journal.close()


async def test_a_restart_without_a_key_keeps_the_admin_key_last_given(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    (old, old_secret), (new, new_secret) = new_key_pair(), new_key_pair()
    async with Emulator(db=db, access_key=old, secret_key=old_secret):
        pass
    async with Emulator(db=db, access_key=new, secret_key=new_secret):
        pass
    async with Emulator(db=db) as emu:
        assert (emu.access_key, emu.secret_key) == (new, new_secret)
        async with sdm_async.Client(old, old_secret, emu.address, True, retry=NO_RETRY) as c:
            with pytest.raises(errors.AuthenticationError, match="unknown API access key"):
                await collect(c.roles.list(""))


async def test_a_renamed_objects_old_name_is_free_after_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    async with Emulator(db=db) as emu, emu.client(retry=NO_RETRY) as client:
        role = (await client.roles.create(sdm_async.Role(name="old"))).role
        role.name = "new"
        await client.roles.update(role)
        user = (
            await client.accounts.create(
                sdm_async.User(email="a@x.io", first_name="A", last_name="A")
            )
        ).account
        user.email = "b@x.io"
        await client.accounts.update(user)
    async with Emulator(db=db) as emu, emu.client(retry=NO_RETRY) as client:
        await client.roles.create(sdm_async.Role(name="old"))
        await client.accounts.create(sdm_async.User(email="a@x.io", first_name="A", last_name="A"))
        with pytest.raises(errors.AlreadyExistsError):
            await client.roles.create(sdm_async.Role(name="new"))


# -- seeding -----------------------------------------------------------------------------------


async def test_seed_users_seeds_only_a_fresh_db(tmp_path: Path) -> None:
    db = str(tmp_path / "state.db")
    for restart in (False, True):
        with emulator_process("--port", "0", "--db", db, "--seed-users", "5") as (proc, address):
            async with sdm_async.Client(KEY, SECRET, address, True, retry=NO_RETRY) as client:
                assert len(await collect(client.accounts.list("type:user"))) == 5
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 10) == 0
            assert proc.stderr is not None
            said = f"--seed-users ignored: db {db} already holds an organisation"
            assert (said in proc.stderr.read()) == restart


async def test_seed_users_in_python_seeds_a_fresh_organisation_once() -> None:
    async with Emulator() as emu:
        assert emu.seed_users(3)
        assert not emu.seed_users(3)
        assert emu.backend.count("Accounts") == 3
    async with Emulator() as emu, emu.client(retry=NO_RETRY) as client:
        await client.roles.create(sdm_async.Role(name="r"))
        assert not emu.seed_users(3)  # not a fresh organisation any more
        assert emu.backend.count("Accounts") == 0


# -- wildcards ---------------------------------------------------------------------------------


def test_wildcards_match_as_a_regular_expression_would() -> None:
    rng = random.Random(8)
    for _ in range(20_000):
        pattern = "".join(rng.choice("aAb*") for _ in range(rng.randint(0, 8)))
        subject = "".join(rng.choice("ab") for _ in range(rng.randint(0, 8)))
        parts = pattern.casefold().split("*")
        rx = re.compile(".*".join(re.escape(p) for p in parts), re.DOTALL)
        assert _pattern(pattern)(subject) == (rx.fullmatch(subject) is not None), (
            pattern,
            subject,
        )


async def test_a_filter_with_many_wildcards_does_not_hold_up_the_emulator() -> None:
    # A backtracking matcher takes ~17 s per item on this pattern: the emulator, in its own
    # process, would answer neither this listing nor anyone else's within the bound.
    stuck = "lastname:" + "*a" * 10 + "*b"
    every = "lastname:" + "*a" * 10 + "*"
    with emulator_process("--port", "0") as (_, address):
        async with sdm_async.Client(KEY, SECRET, address, True, retry=NO_RETRY) as client:
            users = [
                sdm_async.User(email=f"u{i}@x.io", first_name="U", last_name="a" * 40)
                for i in range(1000)
            ]
            await client.bulk(client.accounts.create, users, concurrency=16)
            found, other, all_of_them = await asyncio.wait_for(
                asyncio.gather(
                    collect(client.accounts.list(stuck)),
                    collect(client.accounts.list("email:u7@x.io")),
                    collect(client.accounts.list(every)),
                ),
                timeout=5,
            )
    assert found == []
    assert [u.email for u in other] == ["u7@x.io"]
    assert len(all_of_them) == 1000


async def test_errors_that_quote_long_input_still_arrive() -> None:
    # Quoted whole, 100,000 characters of input made a status too big for the trailers: the
    # call never completed.
    long = "x" * 100_000
    async with Emulator() as emu, emu.client(retry=NO_RETRY) as client:
        name = "é" * 50_000
        await client.roles.create(sdm_async.Role(name=name))

        async def calls() -> None:
            with pytest.raises(errors.BadRequestError, match=r"filter 'nosuch:x+\.\.\.x+'"):
                await collect(client.accounts.list("nosuch:" + long))
            with pytest.raises(errors.NotFoundError, match=r"role 'r-x+ \[\.\.\.\] x+' not"):
                await client.roles.get("r-" + long)
            with pytest.raises(errors.AlreadyExistsError, match=r"é+ .* é+ already exists"):
                await client.roles.create(sdm_async.Role(name=name))

        await asyncio.wait_for(calls(), timeout=10)
