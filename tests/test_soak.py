"""A 60-second soak: one client against an emulator process that fails 5 % of calls, creating,
listing, reading and deleting users in bulk and leaving bulk jobs early, over and over. After a
warm-up its memory, descriptors, objects and tasks do not grow.

`make test` runs it once; `-m "not soak"` leaves it out while working."""

from __future__ import annotations

import gc
import os
import time

import pytest

import sdm_async
from sdm_async import RetryPolicy, errors
from tests.test_faults_regression import (
    KEY,
    SECRET,
    emulator_process,
    fds,
    no_destroyed_tasks,  # noqa: F401 (autouse here too)
    other_tasks,
    rss_bytes,
)

SOAK_SECONDS = float(os.environ.get("SDM_SOAK_SECONDS", "60"))
WARM_UP = 0.2  # of the soak, before the baseline is taken
RETRY = RetryPolicy(max_retries=10, base_delay=0.001, max_delay=0.01)


def sample() -> tuple[int, int, int, int]:
    gc.collect()
    return rss_bytes(), fds(), len(gc.get_objects()), len(other_tasks())


async def cycle(client: sdm_async.Client, n: int) -> None:
    users = [
        sdm_async.User(email=f"soak{n}-{i}@example.com", first_name="S", last_name=str(i))
        for i in range(100)
    ]
    made = await client.bulk(client.accounts.create, users, concurrency=32)
    # A create retried after a lost reply may find its user made: then it is listed below.
    assert all(o.ok or isinstance(o.error, errors.AlreadyExistsError) for o in made)
    listed = [a async for a in client.accounts.list("type:user")]
    assert sorted(a.email for a in listed) == sorted(u.email for u in users)  # type: ignore[union-attr]
    ids = [a.id for a in listed]
    got = await client.bulk(client.accounts.get, ids, concurrency=32)
    assert all(o.ok for o in got)
    async with client.bulk_iter(client.accounts.get, ids, concurrency=8) as early:
        async for _ in early:
            break  # leaving early cancels the rest
    gone = await client.bulk(client.accounts.delete, ids, concurrency=32)
    # A delete retried after a lost reply may find its user gone already.
    assert all(o.ok or isinstance(o.error, errors.NotFoundError) for o in gone)


@pytest.mark.soak
async def test_a_minute_of_load_through_faults_does_not_grow() -> None:
    args = ("--fault-rate", "0.05", "--fault-when", "after", "--seed", "5")
    with emulator_process(None, *args) as (_, address):
        async with sdm_async.Client(KEY, SECRET, address, True, retry=RETRY) as client:
            start = time.monotonic()
            samples: list[tuple[float, tuple[int, int, int, int]]] = []
            baseline: tuple[int, int, int, int] | None = None
            n = 0
            while (elapsed := time.monotonic() - start) < SOAK_SECONDS:
                await cycle(client, n)
                n += 1
                if baseline is None and elapsed >= WARM_UP * SOAK_SECONDS:
                    baseline = sample()
                elif baseline is not None and n % 5 == 0:
                    samples.append((elapsed, sample()))
            samples.append((time.monotonic() - start, sample()))
            retries = client.retries
    assert baseline is not None and len(samples) >= 2, (n, samples)
    print(f"soak: {n} cycles, {retries} retries, baseline {baseline}, last {samples[-1]}")
    for _, s in samples:
        # Generous bounds (allocator noise, gRPC's pools): a leak per call, per cycle or per
        # retry over a minute would exceed them.
        assert s[0] - baseline[0] < 24 * 2**20, (baseline, samples)
        assert s[1] - baseline[1] <= 4, (baseline, samples)
        assert s[2] - baseline[2] < 5_000, (baseline, samples)
        assert s[3] == baseline[3], (baseline, samples)
