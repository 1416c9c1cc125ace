"""Several clients on one key share one budget: each paces to its share of what the server
says is left, with no word between them (in-process emulator, one event loop)."""

from __future__ import annotations

import asyncio
import time

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


@pytest.mark.parametrize(
    "delays",
    [[0.0, 0.0, 0.0], [0.0, 0.0, 1.4]],
    ids=["together", "one-joins-mid-window"],
)
async def test_clients_sharing_a_key_converge_on_the_budget_with_few_refusals(
    delays: list[float],
) -> None:
    # Each client counted only its own calls against `remaining`: three of them each took
    # the budget for theirs, then each went for the reset's budget at the full rate, so
    # a sixth to a quarter of the attempts were refused. Now what `remaining` falls by
    # beyond a client's own calls is the others' rate, and each paces to its share.
    attempts, refused, clients = await _jobs(delays)
    assert attempts == 3 * PER_CLIENT + refused
    # A fresh start costs a few refusals per client (its first window, learning the
    # server's clock); the benchmark measures the steady figure (README, Benchmarks).
    assert refused <= 0.05 * attempts, (refused, attempts)
    for client in clients:
        pacer = client._transport.pacer
        assert pacer is not None
        (bucket,) = pacer._buckets.values()
        assert bucket.in_flight == 0 and not bucket.queue, bucket


async def test_a_client_alone_on_its_key_keeps_the_sole_users_pace() -> None:
    # The control: one client sees no one else's calls and, after its first window, is
    # paced as before (bursts while the budget lasts, held calls spread over the window).
    _, refused, (client,) = await _jobs([0.0])
    assert refused <= 8, refused  # the learning cost of one bucket (README)
    pacer = client._transport.pacer
    assert pacer is not None
    (bucket,) = pacer._buckets.values()
    assert bucket.alone and not bucket.shared and bucket.others == 0, bucket
