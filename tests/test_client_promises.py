"""The client's promises at their edges, against the emulator: a call cut off by `close()`,
a deadline reached while waiting for a slot, options given or left out, naive snapshot times,
creates that must not be sent twice."""

from __future__ import annotations

import asyncio
import datetime
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

import sdm_async
from sdm_async import errors
from sdm_async._rpc import Slots
from sdm_async.testing import Emulator

FAST = sdm_async.RetryPolicy(base_delay=0.01, max_delay=0.05)


def _users(n: int, prefix: str = "u") -> list[sdm_async.User]:
    return [
        sdm_async.User(email=f"{prefix}{i}@example.com", first_name="F", last_name=str(i))
        for i in range(n)
    ]


# -- close() under calls ---------------------------------------------------------------------


async def test_closing_the_client_under_a_bulk_job_reports_every_item() -> None:
    answered: list[sdm_async.Attempt] = []
    eight = asyncio.Event()

    def seen(attempt: sdm_async.Attempt) -> None:
        answered.append(attempt)
        if len(answered) == 8:
            eight.set()

    async with Emulator(latency=0.2) as emu:
        client = emu.client(on_attempt=seen)
        job = asyncio.create_task(client.bulk(client.accounts.create, _users(60), concurrency=8))
        await eight.wait()  # the first eight are done...
        await asyncio.sleep(0.05)  # ...and the next eight in flight
        await client.close()
        outcomes = await job  # the job ends: nothing raised, nothing cancelled
        made = emu.backend.count("Accounts")
    assert not job.cancelled()
    assert len(outcomes) == 60 and all(o is not None for o in outcomes)
    ok = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    assert ok and failed
    assert all(isinstance(o.error, errors.ClientClosedError) for o in failed), failed[:3]
    # Calls cut off in flight may have been carried out; nothing answered ok was lost.
    assert len(ok) <= made
    assert [o.index for o in outcomes] == list(range(60))


async def test_a_call_cut_off_by_close_raises_a_clear_error_not_a_cancellation() -> None:
    async with Emulator(latency=0.5) as emu:
        client = emu.client()
        user = (await client.accounts.create(_users(1)[0])).account
        call = asyncio.create_task(client.accounts.get(user.id))
        await asyncio.sleep(0.1)  # in flight at the server
        await client.close()
        with pytest.raises(errors.ClientClosedError, match="closed while the call was in flight"):
            await call
        assert not call.cancelled()
        # Calls after close fail the same way, at once and without any traffic.
        with pytest.raises(errors.ClientClosedError):
            await client.accounts.get(user.id)
        assert isinstance(errors.ClientClosedError("x"), RuntimeError)


async def test_cancelling_a_call_is_still_a_cancellation() -> None:
    async with Emulator(latency=0.5) as emu, emu.client() as client:
        call = asyncio.create_task(client.accounts.list("").__anext__())
        await asyncio.sleep(0.1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert call.cancelled()


async def test_close_ends_a_wait_for_a_retry_at_once() -> None:
    slow_retry = sdm_async.RetryPolicy(base_delay=30, max_delay=30)
    async with Emulator(fault_rate=1.0, fault_code="UNAVAILABLE") as emu:
        client = emu.client(retry=slow_retry)
        waits: list[float | None] = []
        failed = asyncio.Event()

        def seen(attempt: sdm_async.Attempt) -> None:
            waits.append(attempt.retry_in)
            failed.set()

        client._transport.on_attempt = seen
        call = asyncio.create_task(client.accounts.get("a-1"))
        await failed.wait()
        assert waits[0] is not None and waits[0] > 10  # now sleeping before its retry
        started = time.monotonic()
        await client.close()
        with pytest.raises(errors.ClientClosedError):
            await call
        assert time.monotonic() - started < 2


async def test_close_fails_calls_waiting_for_a_slot() -> None:
    async with Emulator(latency=0.3) as emu:
        client = emu.client(max_in_flight=1)
        first = asyncio.create_task(client.accounts.list("").__anext__())
        await asyncio.sleep(0.05)
        second = asyncio.create_task(client.accounts.get("a-1"))
        await asyncio.sleep(0.05)
        await client.close()
        results = await asyncio.gather(first, second, return_exceptions=True)
    assert [type(r) for r in results] == [errors.ClientClosedError] * 2, results


# -- timeout covers every wait ---------------------------------------------------------------


async def test_timeout_covers_the_wait_for_a_slot() -> None:
    async with Emulator(latency=1.0) as emu, emu.client(max_in_flight=1) as client:
        busy = asyncio.create_task(client.accounts.create(_users(1)[0]))
        await asyncio.sleep(0.05)  # holds the only slot for a second
        started = time.monotonic()
        with pytest.raises(errors.TimeoutError, match="waiting for a free slot"):
            await client.accounts.get("a-1", timeout=0.2)
        elapsed = time.monotonic() - started
        assert 0.15 < elapsed < 0.6, elapsed
        await busy
        # The timed-out waiter left no trace: the slot is free again and calls go through.
        assert client._transport._slots.free == 1
        await client.accounts.get(busy.result().account.id, timeout=5)


async def test_a_slot_handed_to_a_cancelled_waiter_passes_on() -> None:
    slots = Slots(1)
    assert slots.take_now() and not slots.take_now()
    first = asyncio.create_task(slots.take(None))
    second = asyncio.create_task(slots.take(None))
    await asyncio.sleep(0)
    slots.give()  # handed to `first`...
    first.cancel()  # ...which is cancelled before it runs: the slot must reach `second`
    assert await second is True
    with pytest.raises(asyncio.CancelledError):
        await first
    slots.give()
    assert slots.free == 1 and not slots.waiters


async def test_a_slot_wait_ends_at_its_deadline() -> None:
    slots = Slots(1)
    assert slots.take_now()
    loop = asyncio.get_running_loop()
    assert await slots.take(loop.time() + 0.05) is False
    slots.give()
    assert slots.free == 1  # the expired waiter was skipped, not handed the slot


# -- options ---------------------------------------------------------------------------------


def test_retry_rate_limit_errors_overrides_the_policy_only_when_given() -> None:
    key, secret = "auth-0123456789abcdef", "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"
    off = sdm_async.RetryPolicy(retry_rate_limit_errors=False)
    assert sdm_async.Client(key, secret, retry=off).retry_policy.retry_rate_limit_errors is False
    assert sdm_async.Client(key, secret).retry_policy.retry_rate_limit_errors is True
    given = sdm_async.Client(key, secret, retry=off, retry_rate_limit_errors=True)
    assert given.retry_policy.retry_rate_limit_errors is True
    # The official client's positional order: host, insecure, retry_rate_limit_errors, page_limit.
    positional = sdm_async.Client(key, secret, "localhost:1", True, False, 100)
    assert positional.retry_policy.retry_rate_limit_errors is False
    assert positional.page_limit == 100 and positional.insecure is True
    with pytest.raises(TypeError, match="retry_rate_limit_errors must be a bool"):
        sdm_async.Client(key, secret, retry_rate_limit_errors="no")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"retry must be a sdm_async\.RetryPolicy"):
        sdm_async.Client(key, secret, retry={"max_retries": 1})  # type: ignore[arg-type]


async def test_a_policy_without_rate_limit_retries_is_obeyed() -> None:
    off = sdm_async.RetryPolicy(retry_rate_limit_errors=False)
    async with Emulator(rate_limit=1, rate_limit_window=60) as emu:
        async with emu.client(retry=off, pace_rate_limits=False) as client:
            user = (await client.accounts.create(_users(1)[0])).account
            started = time.monotonic()
            with pytest.raises(errors.RateLimitError):
                await client.accounts.get(user.id)
            assert time.monotonic() - started < 1  # refused, not waited out
        assert emu.limiter.refused == 1


# -- naive snapshot times --------------------------------------------------------------------


@pytest.fixture
def far_from_utc() -> Iterator[None]:
    """Local time 5 hours behind UTC, so that reading naive as local time shows."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "EST+05"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


async def test_a_naive_snapshot_time_is_read_as_utc(far_from_utc: None) -> None:
    async with Emulator() as emu, emu.client() as client:
        role = (await client.roles.create(sdm_async.Role(name="before"))).role
        await asyncio.sleep(0.05)
        naive_utc = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        await asyncio.sleep(0.05)
        await client.roles.delete(role.id)
        then: list[Any] = [r.name async for r in client.snapshot_at(naive_utc).roles.list("")]
        aware = naive_utc.replace(tzinfo=datetime.timezone.utc)
        same: list[Any] = [r.name async for r in client.snapshot_at(aware).roles.list("")]
    assert then == same == ["before"]


# -- creates that may have reached the server ------------------------------------------------


async def test_creates_are_resent_by_default_and_meet_their_own_object() -> None:
    # The reply is lost after the change is made: the resent create finds the user made.
    async with Emulator(fault_rate=1.0, fault_when="after", fault_code="INTERNAL") as emu:
        async with emu.client(retry=FAST) as client:
            with pytest.raises(errors.AlreadyExistsError):
                await client.accounts.create(_users(1)[0])
        assert emu.backend.count("Accounts") == 1


async def test_retry_creates_false_does_not_resend_a_create_that_may_have_landed() -> None:
    policy = sdm_async.RetryPolicy(base_delay=0.01, retry_creates=False)
    async with Emulator(fault_rate=1.0, fault_when="after", fault_code="UNAVAILABLE") as emu:
        attempts: list[sdm_async.Attempt] = []
        async with emu.client(retry=policy, on_attempt=attempts.append) as client:
            with pytest.raises(errors.UnavailableError):
                await client.accounts.create(_users(1)[0])
            assert [a.attempt for a in attempts] == [1]
            # Reads are still retried: resending them changes nothing.
            attempts.clear()
            with pytest.raises(errors.UnavailableError):
                await client.accounts.list("").__anext__()
            assert [a.attempt for a in attempts] == [1, 2, 3, 4]
        assert emu.backend.count("Accounts") == 1


async def test_retry_creates_false_still_resends_a_create_that_never_left() -> None:
    policy = sdm_async.RetryPolicy(base_delay=0.01, max_delay=0.02, retry_creates=False)
    attempts: list[sdm_async.Attempt] = []
    key, secret = "auth-0123456789abcdef", "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"
    # Nothing listens on port 1: the connection is refused before anything is sent.
    client = sdm_async.Client(
        key, secret, "127.0.0.1:1", True, retry=policy, on_attempt=attempts.append
    )
    async with client:
        with pytest.raises(errors.UnavailableError, match=r"(?i)failed to connect"):
            await client.accounts.create(_users(1)[0], timeout=10)
    assert [a.attempt for a in attempts] == [1, 2, 3, 4]
