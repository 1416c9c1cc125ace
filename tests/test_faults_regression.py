"""Faults and load as regression tests: provisioning and bulk jobs end exact through calls that
fail before or after the change is committed and through a kill -9 of an emulator with `--db`
(every object once, nothing extra, every item's outcome reported); 10,000 calls keep memory,
descriptors and tasks bounded; cancelled jobs and listings leave nothing running; and none of
it logs "Task was destroyed but it is pending" (warnings are errors in this suite already)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

import sdm_async
from sdm_async import RetryPolicy, errors, provision
from sdm_async.provision.apply import Tokens
from sdm_async.testing import Emulator
from sdm_async.testing.auth import new_key_pair
from tests import processes

KEY, SECRET = new_key_pair()
FAST_RETRY = RetryPolicy(max_retries=10, base_delay=0.001, max_delay=0.01)
# Against a killed emulator: give up soon, so that the job ends with every item's outcome.
SHORT_RETRY = RetryPolicy(max_retries=2, base_delay=0.001, max_delay=0.01)
SECRET_ENV = {"PG_PASSWORD": "pw-4711"}


# -- no task destroyed while pending ----------------------------------------------------------


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(autouse=True)
def no_destroyed_tasks() -> Iterator[None]:
    """asyncio logs (it does not warn) a task collected while pending: fail on it."""
    handler = _Records()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    try:
        yield
        gc.collect()  # a pending task is reported when collected
    finally:
        logger.removeHandler(handler)
    assert not [m for m in handler.messages if "destroyed but it is pending" in m]


# -- helpers ----------------------------------------------------------------------------------


def users(n: int, prefix: str = "u") -> list[sdm_async.User]:
    return [
        sdm_async.User(email=f"{prefix}{i}@example.com", first_name="U", last_name=str(i))
        for i in range(n)
    ]


def declaration(n_users: int, n_resources: int) -> dict[str, Any]:
    """Every kind: users, a service, roles, resources, nodes, attachments and grants."""
    return {
        "users": [
            {"email": f"user{i}@example.com", "first_name": "U", "last_name": str(i)}
            for i in range(n_users)
        ],
        "services": [{"name": "ci-bot"}],
        "roles": [{"name": f"team-{t}", "access_rules": [{"tags": {"t": str(t)}}]} for t in (0, 1)],
        "resources": [
            {
                "name": f"pg-{i}",
                "type": "postgres",
                "hostname": "db.internal",
                "port": 5432,
                "database": "app",
                "username": "app",
                "password": "${PG_PASSWORD}",
            }
            for i in range(n_resources)
        ],
        "nodes": [
            {"name": "gw-1", "type": "gateway", "listen_address": "gw-1.example.com:5000"},
            {"name": "relay-1", "type": "relay"},
        ],
        "attachments": [
            *({"account": f"user{i}@example.com", "role": f"team-{i % 2}"} for i in range(n_users)),
            {"account": "ci-bot", "role": "team-0"},
        ],
        "grants": [
            {"account": f"user{i}@example.com", "resource": f"pg-{i % n_resources}"}
            for i in range(n_users)
        ],
    }


def expected(data: dict[str, Any]) -> dict[str, int]:
    return {
        "Accounts": len(data["users"]) + len(data["services"]),
        "Roles": len(data["roles"]),
        "Resources": len(data["resources"]),
        "Nodes": len(data["nodes"]),
        "AccountAttachments": len(data["attachments"]),
        "AccountGrants": len(data["grants"]),
    }


SERVICES = {
    "Accounts": "accounts",
    "Roles": "roles",
    "Resources": "resources",
    "Nodes": "nodes",
    "AccountAttachments": "account_attachments",
    "AccountGrants": "account_grants",
}


async def collect(items: AsyncIterator[Any]) -> list[Any]:
    return [x async for x in items]


async def counts_through(client: sdm_async.Client) -> dict[str, int]:
    """Objects per service, read through the API (works for an emulator in another process)."""
    return {
        name: len(await collect(getattr(client, attr).list(""))) for name, attr in SERVICES.items()
    }


def tokens_for(data: dict[str, Any]) -> set[str]:
    return {"service/ci-bot", *(f"node/{n['name']}" for n in data["nodes"])}


def token_kinds(tokens: Tokens, result: provision.Result, tokens_for_all: set[str]) -> set[str]:
    """Every created service and node: its token, or a note saying why there is none."""
    named = set(tokens)
    for note in result.notes:
        named |= {k for k in tokens_for_all if "{} {!r}".format(*k.split("/")) in note}
    return named


def other_tasks() -> set[asyncio.Task[Any]]:
    """The tasks running besides this test's, leaving out the in-process emulator's (gRPC's
    server keeps one waiting for the next call, and one per call it serves)."""
    return {
        t
        for t in asyncio.all_tasks()
        if t is not asyncio.current_task()
        and t.get_name() != "rpc_task"
        and not t.get_name().startswith("HandleExceptions[")
        and "aio/server.pyx" not in repr(t)
        and "AioServer" not in repr(t.get_coro())
    }


async def server_idle(emu: Emulator) -> None:
    """Until the calls cancelled on the client have ended on the server too (no event
    tells; bounded)."""
    for _ in range(400):
        if emu.stats.in_flight == 0:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{emu.stats.in_flight} calls still running on the server")


# -- provisioning through faults --------------------------------------------------------------


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("code", ["UNAVAILABLE", "INTERNAL"])
async def test_provisioning_through_faults_ends_exact(when: str, code: str) -> None:
    data = declaration(n_users=20, n_resources=6)
    spec = provision.parse(data, env=SECRET_ENV)
    async with Emulator(fault_rate=0.3, fault_when=when, fault_code=code, seed=7) as emu:
        async with emu.client(retry=FAST_RETRY) as client:
            tokens = Tokens()
            result = await provision.apply(client, spec, max_rounds=5, tokens=tokens)
            assert result.ok, (result.failures, result.summary())
            assert client.retries > 0  # faults happened and were retried
            assert {s: emu.backend.count(s) for s in SERVICES} == expected(data)
            # Every declared object was reported done once (created, or found and adopted).
            assert result.count() >= sum(expected(data).values())
            if when == "before":
                # A refused call changed nothing, so every create's reply, with its token, came.
                assert set(tokens) == tokens_for(data)
            else:
                # A lost reply loses its one-time token: then a note says so, never silence.
                assert token_kinds(tokens, result, tokens_for(data)) == tokens_for(data)
            emu.stats.by_method.clear()
            again = await provision.apply(client, spec)
            assert again.ok and again.rounds == 0
            assert not [
                m for m in emu.stats.by_method if m.endswith(("Create", "Update", "Delete"))
            ]


# -- bulk jobs through faults -----------------------------------------------------------------


@pytest.mark.parametrize("when", ["before", "after"])
async def test_bulk_through_faults_reports_every_item_and_makes_each_once(when: str) -> None:
    items = users(150)
    async with Emulator(fault_rate=0.3, fault_when=when, seed=11) as emu:
        async with emu.client(retry=FAST_RETRY) as client:
            outcomes = await client.bulk(client.accounts.create, items, concurrency=32)
            assert [o.index for o in outcomes] == list(range(len(items)))
            assert [o.item for o in outcomes] == items
            refused = [o for o in outcomes if o.error is not None]
            if when == "before":
                assert not refused
            else:
                # A create whose reply was lost is retried and found made: AlreadyExists, named
                # on its item; no item is silently dropped nor made twice.
                assert refused and all(
                    isinstance(o.error, errors.AlreadyExistsError) for o in refused
                )
            made = [a.email async for a in client.accounts.list("type:user")]
            assert sorted(made) == sorted(u.email for u in items)  # each once, nothing extra
            ids = {o.response.account.id for o in outcomes if o.ok}
            assert len(ids) == len(items) - len(refused)


# -- kill -9 of an emulator with --db ---------------------------------------------------------


def emulator_process(
    db: Path | None, *extra: str
) -> AbstractContextManager[tuple[subprocess.Popen[str], str]]:
    """`sdm-async emulator` in its own process (state in `db` when given) and its address."""
    kept = ("--db", str(db)) if db is not None else ()
    keys = ("--access-key", KEY, "--secret-key", SECRET)
    return processes.emulator_process("--port", "0", *kept, *keys, *extra)


async def test_bulk_across_a_kill_9_reports_every_item_and_a_rerun_ends_exact(
    tmp_path: Path,
) -> None:
    db = tmp_path / "state.db"
    items = users(200)
    with emulator_process(db) as (proc, address):
        made = 0

        def kill_midway(attempt: sdm_async.Attempt) -> None:
            nonlocal made
            if attempt.method == "Accounts.Create" and attempt.error is None:
                made += 1
                if made == 60:
                    proc.kill()  # no chance to flush anything

        async with sdm_async.Client(
            KEY, SECRET, address, True, retry=SHORT_RETRY, on_attempt=kill_midway
        ) as client:
            outcomes = await client.bulk(client.accounts.create, items, concurrency=8)
        assert len(outcomes) == len(items) and all(o is not None for o in outcomes)
        ok = {o.item.email: o.response.account.id for o in outcomes if o.ok}
        failed = [o for o in outcomes if not o.ok]
        assert len(ok) >= 60 and failed  # the kill came mid-job, and was reported per item
        assert all(isinstance(o.error, errors.RPCError) for o in failed)
    with emulator_process(db) as (proc, address):
        async with sdm_async.Client(KEY, SECRET, address, True, retry=FAST_RETRY) as client:
            kept = {a.email: a.id async for a in client.accounts.list("type:user")}
            assert kept.items() >= ok.items()  # every acknowledged create survived the kill
            again = await client.bulk(client.accounts.create, [o.item for o in failed])
            # Those the kill cut off either go now or turn out to be made already.
            assert all(o.ok or isinstance(o.error, errors.AlreadyExistsError) for o in again)
            final = [a.email async for a in client.accounts.list("type:user")]
            assert sorted(final) == sorted(u.email for u in items)


async def test_provisioning_across_a_kill_9_ends_exact_after_a_rerun(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    data = declaration(n_users=30, n_resources=8)
    spec = provision.parse(data, env=SECRET_ENV)
    tokens = Tokens()
    with emulator_process(db) as (proc, address):
        made = 0

        def kill_midway(attempt: sdm_async.Attempt) -> None:
            nonlocal made
            if attempt.method.endswith(".Create") and attempt.error is None:
                made += 1
                if made == 40:  # past the accounts, among the resources
                    proc.kill()

        async with sdm_async.Client(
            KEY, SECRET, address, True, retry=SHORT_RETRY, on_attempt=kill_midway
        ) as client:
            result = await provision.apply(client, spec, tokens=tokens)
        assert not result.ok and result.failures  # each cut-off change is named
        assert made >= 40
    with emulator_process(db) as (proc, address):
        async with sdm_async.Client(KEY, SECRET, address, True, retry=FAST_RETRY) as client:
            rerun = await provision.apply(client, spec, tokens=tokens)
            assert rerun.ok, (rerun.failures, rerun.summary())
            assert await counts_through(client) == expected(data)
            assert set(tokens) == tokens_for(data)  # made before or after the kill: all kept
            assert (await provision.apply(client, spec)).rounds == 0


# -- load: 10,000 calls -----------------------------------------------------------------------


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_ten_thousand_calls_keep_memory_descriptors_and_tasks_bounded() -> None:
    async with Emulator() as emu, emu.client() as client:
        role = (await client.roles.create(sdm_async.Role(name="r"))).role
        ids = [role.id] * 1_000
        await client.bulk(client.roles.get, ids, concurrency=100)  # warm: connections, caches
        await collect(client.roles.list(""))
        gc.collect()
        before = (rss_bytes(), fds(), len(gc.get_objects()), len(other_tasks()))
        for _ in range(10):  # 10,000 calls at 100 in flight, plus a listing per thousand
            outcomes = await client.bulk(client.roles.get, ids, concurrency=100)
            assert all(o.ok for o in outcomes)
            del outcomes  # what the caller keeps is not the client's to free
            await collect(client.roles.list(""))
        gc.collect()
        after = (rss_bytes(), fds(), len(gc.get_objects()), len(other_tasks()))
        print(f"10,000 calls: (rss, fds, objects, tasks) {before} -> {after}")
        # Generous bounds (allocator noise, gRPC's pools): a leak of a few hundred bytes per
        # call, one object per call or one descriptor per thousand calls would break them.
        assert after[0] - before[0] < 24 * 2**20, (before, after)
        assert after[1] - before[1] <= 4, (before, after)
        assert after[2] - before[2] < 5_000, (before, after)
        assert after[3] == before[3], (before, after)
        assert emu.stats.calls >= 11_000


# -- cancellation -----------------------------------------------------------------------------


async def test_a_cancelled_bulk_job_leaves_nothing_running() -> None:
    started = asyncio.Event()
    done = 0

    def watch(attempt: sdm_async.Attempt) -> None:
        nonlocal done
        done += 1
        if done == 20:
            started.set()

    async with (
        Emulator(latency=0.005) as emu,
        emu.client(on_attempt=watch) as client,
    ):
        baseline = other_tasks()
        job = asyncio.ensure_future(client.bulk(client.accounts.create, users(400), concurrency=16))
        await started.wait()
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        assert other_tasks() <= baseline  # no call of the job still running here
        await server_idle(emu)  # and none on the server once it has seen the cancels
        made = emu.backend.count("Accounts")
        assert 20 <= made < 400
        # Nothing sent after the cancel arrives later: a fresh round trip sees the same count.
        assert [r async for r in client.roles.list("")] == []
        assert emu.backend.count("Accounts") == made


async def test_cancelled_and_abandoned_listings_and_bulk_iter_leave_nothing_running() -> None:
    async with Emulator(page_size=5, latency=0.002) as emu, emu.client() as client:
        await client.bulk(client.accounts.create, users(60))
        baseline = other_tasks()

        # A listing left after its first item.
        async for _ in client.accounts.list(""):
            break
        # A listing cancelled midway.
        first = asyncio.Event()

        async def read() -> None:
            async for _ in client.accounts.list(""):
                first.set()  # the pages after the first are still to come (60 in pages of 5)

        reading = asyncio.ensure_future(read())
        await first.wait()
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        # A bulk_iter left early cancels the rest.
        async with client.bulk_iter(client.accounts.get, [f"a-{i}" for i in range(50)]) as it:
            async for _ in it:
                break
        gc.collect()
        assert other_tasks() <= baseline
        await server_idle(emu)
        # The client still works after all of it.
        assert len(await collect(client.accounts.list(""))) == 60
