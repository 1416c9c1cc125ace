"""Rate-limit pacing against the emulator's fixed-window limit (a short window, so it is fast)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

import sdm_async

testing = pytest.importorskip("sdm_async.testing")


async def test_bulk_create_of_five_budgets_uses_the_limit_without_refusals(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sdm_async")
    limit, window = 50, 0.5
    users = [
        sdm_async.User(email=f"paced{i}@example.com", first_name="P", last_name=str(i))
        for i in range(5 * limit)
    ]
    async with testing.Emulator(rate_limit=limit, rate_limit_window=window, latency=0.005) as emu:
        async with emu.client(retry=sdm_async.RetryPolicy(base_delay=0.05)) as client:
            # Start just after a window opens: the first window then holds `limit` calls.
            await asyncio.sleep(window - time.time() % window + 0.02)
            started = time.time()
            outcomes = await client.bulk(client.accounts.create, users, concurrency=64)
            elapsed = time.time() - started
        refused = emu.limiter.refused
    assert [o.error for o in outcomes if o.error] == []
    assert refused <= 0.02 * len(users), refused
    # Five budgets need five windows; the last one's calls are spread over it, so the job
    # ends near 5 windows. At 90 % of the allowed rate it would take 5.6; allow a loaded
    # box more, while a blind or burst-and-stall client would take 6+ windows anyway.
    assert elapsed < 7 * window, elapsed
    # Holding is reported at info level, once per spell of waiting rather than per call.
    held = [r for r in caplog.records if "holding calls" in r.getMessage()]
    assert 1 <= len(held) <= 10, len(held)
    assert emu.secret_key not in caplog.text
