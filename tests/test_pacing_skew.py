"""Rate-limit waits when the server's clock is not ours (`reset_at` is on the server's clock),
and calls of a method whose bucket is not known yet, against the loopback scripted server."""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any

import pytest

from sdm_async import RetryPolicy, errors
from sdm_async._generated.models.spec import RateLimitMetadata
from sdm_async._pacing import PROBE_WAIT

from .conftest import Scripted
from .test_bulk import FAST, LEARNING, FixedWindow, _get_handler, _spent, _users

LIMIT, WINDOW, JOB = 10, 0.5, 60  # six windows' budget at 20 calls/s
# The server's rate allows: five full windows, then the last window's calls spread over it.
ALLOWED = (JOB / LIMIT - 1) * WINDOW + WINDOW * (LIMIT - 1) / LIMIT


async def _skewed_job(scripted: Scripted, offset: float, pace: bool) -> tuple[FixedWindow, Any]:
    """A job of JOB creates against LIMIT per WINDOW on a server whose clock is `offset`
    seconds ahead of ours, started as the server's window opens; returns the limiter and
    (elapsed seconds, the pacer's bucket)."""
    limiter = FixedWindow(limit=LIMIT, window=WINDOW, offset=offset)
    scripted.handlers["Accounts.Create"] = limiter.handler()
    async with scripted.client(retry=FAST, pace_rate_limits=pace) as client:
        await asyncio.sleep(WINDOW - (time.time() + offset) % WINDOW + 0.02)
        started = time.time()
        outcomes = await client.bulk(client.accounts.create, _users(JOB), concurrency=16)
        elapsed = time.time() - started
        pacer = client._transport.pacer
        bucket = pacer.bucket("test") if pacer is not None else None
    assert [o.error for o in outcomes if o.error] == []
    return limiter, (elapsed, bucket)


@pytest.mark.parametrize("offset", [-10.0, -3.0, 0.0, 3.0, 10.0])
async def test_a_paced_job_keeps_the_allowed_rate_whatever_the_servers_clock(
    scripted: Scripted, offset: float
) -> None:
    # Waiting for `reset_at` by our clock took 4x to 10x as long with the server ahead and,
    # with it behind, sent calls into refusals until they failed. The pacer learns the
    # offset from the answers themselves: a few refused probes, then the allowed rate.
    limiter, (elapsed, bucket) = await _skewed_job(scripted, offset, pace=True)
    assert limiter.refused <= LEARNING, limiter.refused
    assert elapsed <= 1.3 * ALLOWED, (elapsed, ALLOWED)
    # What it learnt: the offset within a release spacing, and the window.
    assert bucket is not None
    assert bucket.lo <= offset < bucket.hi, bucket
    assert bucket.hi - bucket.lo <= WINDOW / LIMIT + 0.02, bucket
    assert bucket.window == pytest.approx(WINDOW, abs=0.002)


@pytest.mark.parametrize("offset", [-10.0, 10.0])
async def test_without_pacing_a_skewed_clock_costs_retries_not_failures_or_waits(
    scripted: Scripted, offset: float
) -> None:
    # Behind: `reset_at` is already past by our clock; the retry waited 0 s and spun into
    # RateLimitError. Ahead: each refusal waited the clock difference on top of the window.
    # Now a refusal waits until `reset_at` or the backoff step, whichever is shorter.
    _, (elapsed, _) = await _skewed_job(scripted, offset, pace=False)
    assert elapsed <= 2 * ALLOWED, (elapsed, ALLOWED)


def _refusal(reset_in: float, limit: int = 10) -> errors.RateLimitError:
    reset = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=reset_in)
    md = RateLimitMetadata(bucket="b", limit=limit, remaining=0, reset_at=reset)
    return errors.RateLimitError("rate limited", md)


def test_an_unpaced_retry_waits_for_reset_at_capped_by_the_backoff_step() -> None:
    policy = RetryPolicy(jitter=0)  # backoff(1) = 1.6 s, backoff(2) = 2.56 s
    now = datetime.datetime.now(datetime.timezone.utc)
    # By our clock the window resets in 0.3 s: wait that (the base jitter is 0 here).
    assert policy.delay(_refusal(0.3), 1, 0.0, now, None) == pytest.approx(0.3, abs=0.05)
    # Already past by our clock (a server behind ours): the backoff step, not 0 s.
    assert policy.delay(_refusal(-10), 1, 0.0, now, None) == pytest.approx(1.6)
    assert policy.delay(_refusal(-10), 2, 0.0, now, None) == pytest.approx(2.56)
    # Far ahead (a server ahead of ours): the step, then another attempt.
    assert policy.delay(_refusal(30), 1, 0.0, now, None) == pytest.approx(1.6)
    # Paced: the pacer's hold, whatever reset_at says; no wait outlives the deadline.
    assert policy.delay(_refusal(30), 1, 0.0, now, None, paced=0.2) == 0.2
    assert policy.delay(_refusal(30), 1, 0.0, now, 0.1, paced=0.2) is None
    assert policy.delay(_refusal(-10), 1, 0.0, now, 1.0) is None
    # A refusal that names no budget is not the pacer's: the backoff schedule.
    assert policy.delay(_refusal(30, limit=0), 1, 0.0, now, None, paced=0.0) == 1.6


async def test_a_slow_first_call_does_not_time_out_the_others_on_a_server_without_limits(
    scripted: Scripted,
) -> None:
    # No answer carries a budget. While the first Get is out (2 s), calls with a timeout
    # shorter than PROBE_WAIT timed out "waiting for the rate limit" without being sent.
    scripted.handlers["Accounts.Get"] = _get_handler(0.01, slow=2.0)
    async with scripted.client() as client:
        slow = asyncio.create_task(client.accounts.get("slow"))
        await asyncio.sleep(0.05)
        timeout = PROBE_WAIT / 2
        got = await asyncio.gather(
            *(client.accounts.get(f"a-{i}", timeout=timeout) for i in range(5))
        )
        assert [r.account.id for r in got] == [f"a-{i}" for i in range(5)]
        assert not slow.done()
        await slow


async def test_a_budget_another_method_spent_does_not_time_out_a_new_methods_calls(
    scripted: Scripted,
) -> None:
    # Creates spent their bucket for 30 s; Accounts.Get (no budget at all) is new and its
    # first call is slow. The other Gets were held with the creates' bucket as a guess
    # until their deadline, and failed without being sent.
    scripted.handlers["Accounts.Create"] = _spent(30)
    scripted.handlers["Accounts.Get"] = _get_handler(0.01, slow=2.0)
    async with scripted.client() as client:
        await client.accounts.create(_users(1)[0])
        slow = asyncio.create_task(client.accounts.get("slow"))
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        got = await asyncio.gather(*(client.accounts.get(f"a-{i}", timeout=1.0) for i in range(5)))
        assert [r.account.id for r in got] == [f"a-{i}" for i in range(5)]
        # Held PROBE_WAIT at most (the guess may be right), then sent.
        assert loop.time() - started < PROBE_WAIT + 0.5
        # The creates' own bucket still holds creates until their deadline.
        with pytest.raises(errors.TimeoutError, match="rate limit"):
            await client.accounts.create(_users(1)[0], timeout=0.2)
        assert not slow.done()
        await slow


async def test_a_refused_retry_is_timed_by_the_pacer_not_by_our_clock(
    scripted: Scripted,
) -> None:
    # The server is 10 s behind: every refusal says the window reset 9.5 s ago by our
    # clock. A retry timed by `reset_at - now` went at once, again and again, until the
    # call failed; the pacer holds it until a probe finds the window reset.
    limiter = FixedWindow(limit=2, window=0.5, offset=-10)
    scripted.handlers["Accounts.Create"] = limiter.handler()
    attempts: list[Any] = []
    async with scripted.client(retry=FAST, on_attempt=attempts.append) as client:
        await asyncio.sleep(0.5 - (time.time() - 10) % 0.5 + 0.02)
        for user in _users(6):
            await client.accounts.create(user)
    assert limiter.refused <= LEARNING, limiter.refused
    assert max(a.attempt for a in attempts) <= LEARNING


async def test_pacing_relearns_when_the_servers_clock_steps(scripted: Scripted) -> None:
    # After 40 calls the server's clock jumps 2.3 s ahead: what the pacer learnt no longer
    # holds (the answers contradict it), so it learns again instead of trusting it.
    limiter = FixedWindow(limit=LIMIT, window=WINDOW)
    served = limiter.handler()

    async def handler(body: bytes, context: Any) -> bytes:
        if len(limiter.served) == 40:
            limiter.offset = 2.3
        return await served(body, context)

    scripted.handlers["Accounts.Create"] = handler
    async with scripted.client(retry=FAST) as client:
        await asyncio.sleep(WINDOW - time.time() % WINDOW + 0.02)
        outcomes = await client.bulk(client.accounts.create, _users(100), concurrency=16)
        bucket = client._transport.pacer.bucket("test")
    assert [o.error for o in outcomes if o.error] == []
    assert limiter.refused <= 2 * LEARNING, limiter.refused
    assert bucket is not None and bucket.lo <= 2.3 < bucket.hi, bucket


# A server 0.3 s behind needs about 8 probes in a 0.5 s window, the whole reserve: one
# refusal was seen under load. A tenth of a second leaves the reserve a margin.
@pytest.mark.parametrize("offset", [0.0, 0.1, -0.1])
async def test_a_sole_client_with_a_clock_close_to_the_servers_is_never_refused(
    scripted: Scripted, offset: float
) -> None:
    # Learning when a new bucket's window resets took about five probes, sent after its
    # budget was spent: each was refused (0.4 % of a 1,200-call job). The probes are now
    # answered from units of the first window kept back for them.
    limiter = FixedWindow(limit=80, window=0.5, offset=offset)
    scripted.handlers["Accounts.Create"] = limiter.handler()
    async with scripted.client(retry=FAST) as client:
        await asyncio.sleep(0.5 - (time.time() + offset) % 0.5 + 0.02)
        outcomes = await client.bulk(client.accounts.create, _users(400), concurrency=16)
        bucket = client._transport.pacer.bucket("test")
    assert [o.error for o in outcomes if o.error] == []
    assert limiter.refused == 0, (limiter.refused, bucket)
    # It did learn the bounds, and from the answers alone.
    assert bucket is not None and bucket.lo <= offset < bucket.hi, bucket
    assert bucket.hi - bucket.lo <= 0.5 / 80 + 0.02, bucket
