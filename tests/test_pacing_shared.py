"""Several clients on one key share one budget: each paces to its share of what the server
says is left, with no word between them (in-process emulator, one event loop)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import sdm_async

testing = pytest.importorskip("sdm_async.testing")

LIMIT, WINDOW = 40, 0.5
PER_CLIENT = 80  # three clients: six windows' budget


def _users(tag: str, n: int) -> list[sdm_async.User]:
    return [
        sdm_async.User(email=f"{tag}-{i}@example.com", first_name="S", last_name=str(i))
        for i in range(n)
    ]


async def _jobs(delays: list[float]) -> tuple[int, int, list[sdm_async.Client]]:
    """One client per delay, each starting its job that many windows after a window opens;
    returns the attempts, the refusals (as the server counted them) and the clients."""
    attempts = 0

    def count(a: sdm_async.Attempt) -> None:
        nonlocal attempts
        attempts += 1

    retry = sdm_async.RetryPolicy(base_delay=0.05, max_delay=0.2)
    async with testing.Emulator(rate_limit=LIMIT, rate_limit_window=WINDOW) as emu:
        clients = [emu.client(retry=retry, on_attempt=count) for _ in delays]

        async def job(i: int, client: sdm_async.Client, delay: float) -> None:
            async with client:
                await asyncio.sleep(delay * WINDOW)
                users = _users(f"c{i}", PER_CLIENT)
                outcomes = await client.bulk(client.accounts.create, users, concurrency=64)
                assert [o.error for o in outcomes if o.error] == []

        await asyncio.sleep(WINDOW - time.time() % WINDOW + 0.01)
        await asyncio.gather(
            *(job(i, c, d) for i, (c, d) in enumerate(zip(clients, delays, strict=True)))
        )
        return attempts, emu.limiter.refused, clients


def _bucket(client: sdm_async.Client) -> dict[str, Any]:
    pacer = client._transport.pacer
    assert pacer is not None
    (bucket,) = pacer._buckets.values()
    return {
        "in_flight": bucket.in_flight,
        "queued": len(bucket.queue),
        "alone": bucket.alone,
        "shared": bucket.shared,
        "others": bucket.others,
    }


def _run(delays: list[float]) -> tuple[int, int, list[dict[str, Any]]]:
    """`_jobs` in a process of its own: pacing is about time, and a suite's event loop busy
    with what earlier tests left (collections, threads) skews it."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.test_pacing_shared", json.dumps(delays)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr
    attempts, refused, buckets = json.loads(done.stdout.splitlines()[-1])
    return attempts, refused, buckets


@pytest.mark.parametrize(
    "delays",
    [[0.0, 0.0, 0.0], [0.0, 0.0, 1.4]],
    ids=["together", "one-joins-mid-window"],
)
def test_clients_sharing_a_key_converge_on_the_budget_with_few_refusals(
    delays: list[float],
) -> None:
    # Each client counted only its own calls against `remaining`: three of them each took
    # the budget for theirs, then each went for the reset's budget at the full rate, so
    # a sixth to a quarter of the attempts were refused. Now what `remaining` falls by
    # beyond a client's own calls is the others' rate, and each paces to its share.
    attempts, refused, buckets = _run(delays)
    assert attempts == 3 * PER_CLIENT + refused
    # A fresh start costs a few refusals per client (its first window, learning the
    # server's clock); the benchmark measures the steady figure (README, Benchmarks).
    assert refused <= 0.05 * attempts, (refused, attempts)
    for bucket in buckets:
        assert bucket["in_flight"] == 0 and bucket["queued"] == 0, bucket


def test_a_client_alone_on_its_key_keeps_the_sole_users_pace() -> None:
    # The control: one client sees no one else's calls and, after its first window, is
    # paced as before (bursts while the budget lasts, held calls spread over the window).
    _, refused, (bucket,) = _run([0.0])
    assert refused <= 8, refused  # the learning cost of one bucket (README)
    assert bucket["alone"] and not bucket["shared"] and bucket["others"] == 0, bucket


async def _main(delays: list[float]) -> None:
    attempts, refused, clients = await _jobs(delays)
    print(json.dumps([attempts, refused, [_bucket(c) for c in clients]]))


if __name__ == "__main__":
    asyncio.run(_main(json.loads(sys.argv[1])))
