"""Every answer with a `rate_limit` field carries a budget, as the API's do. With limiting off
(the default) it is a nominal one: `NOMINAL_LIMIT` calls per window per key, counted down and
reset like an enforced one, never refused, and too large for a pacing client to hold a call."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

import sdm_async
from sdm_async.testing import Emulator, schema
from sdm_async.testing.server import NOMINAL_LIMIT, RateLimiter

strongdm = pytest.importorskip("strongdm")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_nominal_budget_counts_down_resets_and_never_refuses() -> None:
    clock = Clock(1000.5)
    limiter = RateLimiter(0, 60.0, clock, nominal=3)
    seen = []
    for _ in range(5):  # more calls than the nominal limit in one window
        rl = schema.message_class("RateLimitMetadata")()
        limiter.take("auth-k", rl)
        seen.append((rl.limit, rl.remaining, rl.bucket, rl.reset_at.seconds))
    assert seen == [(3, 2, "auth-k", 1020), (3, 1, "auth-k", 1020)] + [(3, 0, "auth-k", 1020)] * 3
    assert limiter.refused == 0
    clock.now = 1020.0  # the window's end: a fresh one
    rl = schema.message_class("RateLimitMetadata")()
    limiter.take("auth-k", rl)
    assert (rl.remaining, rl.reset_at.seconds) == (2, 1080)
    other = schema.message_class("RateLimitMetadata")()
    limiter.take("auth-other", other)  # per key
    assert (other.remaining, other.bucket) == (2, "auth-other")
    with pytest.raises(ValueError, match="nominal"):
        RateLimiter(nominal=0)


async def test_every_answer_carries_the_nominal_budget_when_limiting_is_off() -> None:
    async with Emulator() as emu:
        start = time.time()
        emu.limiter.clock = lambda: start  # one window throughout: exact counts
        async with emu.client() as client:
            made = await client.roles.create(sdm_async.Role(name="a"))
            got = await client.roles.get(made.role.id)
            gone = await client.roles.delete(made.role.id)
        budgets = [made.rate_limit, got.rate_limit, gone.rate_limit]
        assert [b.limit for b in budgets] == [NOMINAL_LIMIT] * 3
        assert [b.remaining for b in budgets] == [NOMINAL_LIMIT - n for n in (1, 2, 3)]
        assert {b.bucket for b in budgets} == {emu.access_key}
        assert all(start < b.reset_at.timestamp() <= start + 60 for b in budgets)

        def official() -> None:
            c = strongdm.Client(emu.access_key, emu.secret_key, emu.address, True)
            resp = c.roles.create(strongdm.Role(name="b"))
            assert resp.rate_limit.limit == NOMINAL_LIMIT
            assert resp.rate_limit.remaining == NOMINAL_LIMIT - 4
            assert resp.rate_limit.bucket == emu.access_key

        await asyncio.to_thread(official)


async def test_a_big_job_runs_unpaced_and_unrefused_on_a_default_emulator(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # More calls than any budget the API is known to give a key per window (and than the
    # 1000 the emulator's enforced examples use), with pacing on: nothing is held.
    caplog.set_level(logging.INFO, logger="sdm_async")
    n = 1200
    roles = [sdm_async.Role(name=f"r{i}") for i in range(n)]
    async with Emulator() as emu, emu.client() as client:
        # One call first: a method's first answer names its bucket (until then concurrent
        # calls wait briefly for it, whatever the budget; that is not pacing).
        await client.roles.create(sdm_async.Role(name="first"))
        pacer = client._transport.pacer
        assert pacer is not None
        held = pacer.held
        outcomes = await client.bulk(client.roles.create, roles, concurrency=64)
        assert [o.error for o in outcomes if o.error] == []
        assert pacer.held == held
        answers = [o.response for o in outcomes if o.response is not None]
        last = await client.roles.get(answers[0].role.id)
    assert emu.limiter.refused == 0
    assert not [r for r in caplog.records if "holding calls" in r.getMessage()]
    # The budget counted every call (unless the window turned over meanwhile).
    if all(a.rate_limit.reset_at == last.rate_limit.reset_at for a in answers):
        assert last.rate_limit.remaining == NOMINAL_LIMIT - n - 2


async def test_more_calls_than_a_small_nominal_limit_are_never_refused() -> None:
    async with Emulator() as emu:
        emu.limiter.nominal = 5
        emu.limiter.clock = lambda: 1000.0  # one window throughout
        async with emu.client(pace_rate_limits=False) as client:
            answers = [await client.roles.create(sdm_async.Role(name=f"s{i}")) for i in range(8)]
    assert [a.rate_limit.remaining for a in answers] == [4, 3, 2, 1, 0, 0, 0, 0]
    assert {a.rate_limit.limit for a in answers} == {5}
    assert emu.limiter.refused == 0


async def test_an_enforced_limit_still_refuses() -> None:
    async with Emulator(rate_limit=2, rate_limit_window=60) as emu:
        async with emu.client(pace_rate_limits=False, retry_rate_limit_errors=False) as client:
            first = await client.roles.create(sdm_async.Role(name="a"))
            await client.roles.create(sdm_async.Role(name="b"))
            with pytest.raises(sdm_async.errors.RateLimitError):
                await client.roles.create(sdm_async.Role(name="c"))
    assert (first.rate_limit.limit, first.rate_limit.remaining) == (2, 1)
