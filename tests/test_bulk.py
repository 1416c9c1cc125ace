"""Bulk calls, the client-wide limits (calls in flight, channel pool) and rate-limit pacing,
against loopback grpc.aio servers (the scripted one of conftest, and variants of it)."""

from __future__ import annotations

import asyncio
import collections
import datetime
import functools
import io
import math
import time
import types
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import grpc.aio
import pytest
from rich.console import Console

import sdm_async
from sdm_async import RetryPolicy, bulk, errors
from sdm_async._generated.v1 import accounts_pb2, spec_pb2
from sdm_async._pacing import PROBE_WAIT
from sdm_async._rpc import STREAMS_PER_CHANNEL

from .conftest import Scripted, _Router, accounts_pages, rich_error

FAST = RetryPolicy(base_delay=0.05, max_delay=0.2)
LEARNING = 8  # refused probes while a bucket's reset is learnt, once per bucket (README)


def _create_handler(delay: float = 0.0, fail_emails: tuple[str, ...] = ()) -> Any:
    counter = iter(range(1, 1_000_000))

    async def handler(body: bytes, context: Any) -> bytes:
        req = accounts_pb2.AccountCreateRequest.FromString(body)
        if delay:
            await asyncio.sleep(delay)
        if req.account.user.email in fail_emails:
            raise rich_error(grpc.StatusCode.ALREADY_EXISTS, f"{req.account.user.email} exists")
        resp = accounts_pb2.AccountCreateResponse()
        resp.account.user.CopyFrom(req.account.user)
        resp.account.user.id = f"a-{next(counter):06d}"
        return resp.SerializeToString()

    return handler


def _get_handler(delay: float = 0.0, bucket: str = "", limit: int = 0, slow: float = 1.0) -> Any:
    """Answers Accounts.Get after `delay` (`slow` for id "slow"), with a budget if `limit`."""

    async def handler(body: bytes, context: Any) -> bytes:
        req = accounts_pb2.AccountGetRequest.FromString(body)
        await asyncio.sleep(delay if req.id != "slow" else slow)
        resp = accounts_pb2.AccountGetResponse()
        resp.account.user.id = req.id
        if limit:
            resp.rate_limit.bucket = bucket
            resp.rate_limit.limit = limit
            resp.rate_limit.remaining = limit - 1
            resp.rate_limit.reset_at.FromSeconds(int(time.time()) + 60)
        return resp.SerializeToString()

    return handler


def _users(n: int) -> list[sdm_async.User]:
    return [
        sdm_async.User(email=f"u{i}@example.com", first_name="U", last_name=str(i))
        for i in range(n)
    ]


async def _settle(condition: Any, timeout: float = 2.0) -> bool:
    """Wait until `condition()` holds (cancellations take a few loop turns to land)."""
    loop = asyncio.get_running_loop()
    until = loop.time() + timeout
    while not condition():
        if loop.time() > until:
            return False
        await asyncio.sleep(0.01)
    return True


def _started_since(before: set[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    """Client-side tasks started since `before` and still running. The loopback server's
    own tasks (Cython coroutines inside grpc's server) come and go on their own."""
    return [
        t
        for t in asyncio.all_tasks() - before
        if not t.done() and type(t.get_coro()) is types.CoroutineType
    ]


# -- bulk --------------------------------------------------------------------------------


async def test_outcomes_come_in_input_order_with_per_item_errors(scripted: Scripted) -> None:
    scripted.handlers["Accounts.Create"] = _create_handler(0.001, fail_emails=("u3@example.com",))
    async with scripted.client() as client:
        outcomes = await client.bulk(client.accounts.create, _users(50), concurrency=8)
    assert [o.item.email for o in outcomes] == [f"u{i}@example.com" for i in range(50)]
    assert [o.index for o in outcomes] == list(range(50))
    failed = [o for o in outcomes if o.error]
    assert [o.index for o in failed] == [3]
    assert isinstance(failed[0].error, errors.AlreadyExistsError)
    assert failed[0].response is None
    assert all(o.response.account.email == o.item.email for o in outcomes if o.ok)


async def test_concurrency_bounds_calls_in_flight(scripted: Scripted) -> None:
    scripted.handlers["Accounts.Create"] = _create_handler(0.01)
    async with scripted.client() as client:
        await client.bulk(client.accounts.create, _users(60), concurrency=7)
    assert scripted.max_in_flight == 7


async def test_bulk_iter_yields_in_completion_order_and_tuples_spread(scripted: Scripted) -> None:
    scripted.handlers["Accounts.Get"] = _get_handler()
    async with scripted.client() as client:
        items = [("slow", 5.0), "fast", ("other",)]
        seen = [
            o.response.account.id
            async for o in client.bulk_iter(client.accounts.get, items, concurrency=3)
        ]
    assert seen[-1] == "slow"  # first in, last out: a slow first call blocks nobody
    assert sorted(seen) == ["fast", "other", "slow"]


async def test_bulk_iter_reads_items_lazily_and_reports_a_failing_source(
    scripted: Scripted,
) -> None:
    scripted.handlers["Accounts.Get"] = _get_handler()
    pulled = 0

    def ids() -> Iterator[str]:
        nonlocal pulled
        for i in range(1000):
            pulled += 1
            yield f"a-{i}"

    async with scripted.client() as client:
        async with client.bulk_iter(client.accounts.get, ids(), concurrency=4) as outcomes:
            async for _ in outcomes:
                break
        # Not a thousand: the workers pull as they go, and leaving stopped them.
        assert pulled <= 4 + 4 + 1

        def broken() -> Iterator[str]:
            yield "a-1"
            raise ValueError("the source broke")

        with pytest.raises(ValueError, match="the source broke"):
            [o async for o in client.bulk_iter(client.accounts.get, broken(), concurrency=2)]


async def test_cancelling_the_caller_cancels_everything_in_flight(scripted: Scripted) -> None:
    scripted.handlers["Accounts.Create"] = _create_handler(10)
    async with scripted.client() as client:
        before = asyncio.all_tasks()
        job = asyncio.create_task(client.bulk(client.accounts.create, _users(20), concurrency=5))
        assert await _settle(lambda: scripted.in_flight == 5)
        assert len(_started_since(before)) > 5  # the job, its workers, their calls
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        # Nothing the job started is still running, here or on the server.
        assert await _settle(lambda: not _started_since(before))
        assert await _settle(lambda: scripted.in_flight == 0)
        assert client._transport.in_flight == 0
    assert len(scripted.calls) == 5


async def test_cancelling_a_bulk_iter_consumer_cancels_its_job(scripted: Scripted) -> None:
    scripted.handlers["Accounts.Create"] = _create_handler(10)
    async with scripted.client() as client:
        before = asyncio.all_tasks()

        async def consume() -> None:
            async for _ in client.bulk_iter(client.accounts.create, _users(20), concurrency=4):
                pass

        job = asyncio.create_task(consume())
        assert await _settle(lambda: scripted.in_flight == 4)
        assert len(_started_since(before)) > 4
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        assert await _settle(lambda: not _started_since(before))
        assert await _settle(lambda: scripted.in_flight == 0)


async def test_bulk_checks_its_arguments_before_any_call(scripted: Scripted) -> None:
    async with scripted.client() as a, scripted.client() as b:
        for method in (b.accounts.create, print, "accounts.create", a.accounts):
            with pytest.raises(TypeError, match="bound method of this client"):
                await a.bulk(method, _users(1))  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="bound method of this client"):
                a.bulk_iter(method, _users(1))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="list methods"):
            await a.bulk(a.accounts.list, ["email:x"])  # type: ignore[arg-type]
        for bad in (0, -3):
            with pytest.raises(ValueError, match="concurrency must be at least 1"):
                await a.bulk(a.accounts.create, _users(1), concurrency=bad)
            with pytest.raises(ValueError, match="concurrency must be at least 1"):
                a.bulk_iter(a.accounts.create, _users(1), concurrency=bad)
        with pytest.raises(TypeError, match="concurrency must be an int"):
            await a.bulk(a.accounts.create, _users(1), concurrency=2.5)  # type: ignore[arg-type]
        assert await a.bulk(a.accounts.create, []) == []
    assert scripted.calls == []


async def test_bulk_takes_partials_and_snapshot_methods(scripted: Scripted) -> None:
    scripted.handlers["Accounts.Get"] = _get_handler()
    when = datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc)
    async with scripted.client() as client:
        get = functools.partial(client.accounts.get, timeout=5)
        outcomes = await client.bulk(get, ["a-1", "a-2"])
        snap = await client.bulk(client.snapshot_at(when).accounts.get, ["a-3"])
    assert [o.response.account.id for o in outcomes + snap] == ["a-1", "a-2", "a-3"]
    snapshot_req = accounts_pb2.AccountGetRequest.FromString(scripted.calls[-1][2])
    assert snapshot_req.meta.snapshot_at.seconds == int(when.timestamp())


async def test_progress_bar_only_on_a_terminal(
    scripted: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    scripted.handlers["Accounts.Get"] = _get_handler()
    async with scripted.client() as client:
        await client.bulk(client.accounts.get, ["a-1", "a-2"], progress=True)  # not a tty
        assert capsys.readouterr() == ("", "")
        out = io.StringIO()
        console = Console(file=out, force_terminal=True, width=100)
        await bulk.bulk(
            client.accounts.get, ["a-1", "a-2"], concurrency=2, progress=True, console=console
        )
    assert "Accounts.get" in out.getvalue() and "2/2" in out.getvalue()


# -- client-wide limits ------------------------------------------------------------------


async def test_one_limit_bounds_bulk_jobs_and_lists_together(scripted: Scripted) -> None:
    scripted.handlers["Accounts.Create"] = _create_handler(0.01)
    scripted.handlers["Accounts.List"] = accounts_pages(500, 50, delay=0.01)
    async with scripted.client(max_in_flight=6) as client:

        async def listing() -> int:
            return len([u async for u in client.accounts.list("")])

        first, second, listed = await asyncio.gather(
            client.bulk(client.accounts.create, _users(40), concurrency=8),
            client.bulk(client.accounts.create, _users(40), concurrency=8),
            listing(),
        )
    assert len(first) == len(second) == 40 and listed == 500
    assert scripted.max_in_flight == 6


@pytest.fixture
async def streams_100() -> AsyncIterator[tuple[Scripted, dict[str, int]]]:
    """A scripted server that allows 100 streams per connection (a common server default,
    at which one connection refuses streams beyond 100 with REFUSED_STREAM), and counts the
    calls in flight per connection."""
    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 100)])
    state = Scripted()
    server.add_generic_rpc_handlers([_Router(state)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    state.address = f"127.0.0.1:{port}"
    per_peer: dict[str, int] = collections.Counter()
    peak: dict[str, int] = collections.Counter()

    async def get(body: bytes, context: Any) -> bytes:
        peer = context.peer()
        per_peer[peer] += 1
        peak[peer] = max(peak[peer], per_peer[peer])
        try:
            await asyncio.sleep(0.5)
        finally:
            per_peer[peer] -= 1
        return accounts_pb2.AccountGetResponse().SerializeToString()

    state.handlers["Accounts.Get"] = get
    try:
        yield state, peak
    finally:
        await server.stop(None)


@pytest.mark.parametrize("in_flight", [300, 500])
async def test_hundreds_in_flight_without_a_refused_stream(
    streams_100: tuple[Scripted, dict[str, int]], in_flight: int
) -> None:
    server, peak = streams_100
    failed: list[sdm_async.Attempt] = []
    on_attempt = lambda a: failed.append(a) if a.error else None  # noqa: E731
    async with server.client(max_in_flight=in_flight, on_attempt=on_attempt) as client:
        outcomes = await client.bulk(client.accounts.get, [f"a-{i}" for i in range(in_flight)])
    assert [o.error for o in outcomes if o.error] == []
    assert failed == []  # not even a retried UNAVAILABLE
    # Many more were in flight together than one connection would take...
    assert server.max_in_flight > 2 * STREAMS_PER_CHANNEL, server.max_in_flight
    # ...spread over one connection per channel, none above its share.
    assert len(peak) == math.ceil(in_flight / STREAMS_PER_CHANNEL)
    assert max(peak.values()) <= STREAMS_PER_CHANNEL


# -- rate-limit pacing -------------------------------------------------------------------


class FixedWindow:
    """A server-side limit of `limit` calls per `window` seconds (windows aligned on the
    clock), answering with the API's RateLimitMetadata and refusing calls over it."""

    def __init__(self, limit: int, window: float, bucket: str = "test", offset: float = 0) -> None:
        self.limit, self.window, self.bucket = limit, window, bucket
        self.offset = offset  # the server's clock minus ours
        self.used: dict[int, int] = collections.Counter()
        self.served: list[float] = []
        self.refused = 0

    def handler(self) -> Any:
        async def handle(body: bytes, context: Any) -> bytes:
            now = time.time() + self.offset
            index = math.floor(now / self.window)
            md = spec_pb2.RateLimitMetadata(limit=self.limit, bucket=self.bucket)
            reset = datetime.datetime.fromtimestamp(
                (index + 1) * self.window, datetime.timezone.utc
            )
            md.reset_at.FromDatetime(reset)
            if self.used[index] >= self.limit:
                self.refused += 1
                raise rich_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "rate limited", md)
            self.used[index] += 1
            self.served.append(now)
            md.remaining = self.limit - self.used[index]
            resp = accounts_pb2.AccountCreateResponse()
            resp.account.user.id = f"a-{len(self.served)}"
            resp.rate_limit.CopyFrom(md)
            return resp.SerializeToString()

        return handle

    def full_windows(self) -> list[int]:
        """Calls served in each window that the job spanned from start to end."""
        first = math.floor(self.served[0] / self.window)
        last = math.floor(self.served[-1] / self.window)
        return [self.used[i] for i in range(first + 1, last)]

    def densest(self, span: float, after: float) -> int:
        """The most calls served within `span` seconds, counting from `after` on."""
        times = [t for t in self.served if t >= after]
        return max(
            (sum(1 for u in times[i:] if u < t + span) for i, t in enumerate(times)), default=0
        )


async def _pacing_job(scripted: Scripted, pace: bool) -> tuple[FixedWindow, float]:
    limiter = FixedWindow(limit=40, window=0.5)
    scripted.handlers["Accounts.Create"] = limiter.handler()
    async with scripted.client(retry=FAST, pace_rate_limits=pace) as client:
        # Start just after a window opens, so the first window's burst stays in it.
        await asyncio.sleep(limiter.window - time.time() % limiter.window + 0.02)
        started = time.time()
        outcomes = await client.bulk(client.accounts.create, _users(200), concurrency=32)
        elapsed = time.time() - started
    assert [o.error for o in outcomes if o.error] == []
    return limiter, elapsed


async def test_pacing_uses_the_whole_budget_spread_out_with_few_refusals(
    scripted: Scripted,
) -> None:
    # 200 calls against 40 per 0.5 s: the job spans five windows or so.
    limiter, elapsed = await _pacing_job(scripted, pace=True)
    attempts = len(limiter.served) + limiter.refused
    # Plus the probes that learn, once, when the bucket's window resets by our clock.
    assert limiter.refused <= 0.02 * attempts + LEARNING, (limiter.refused, attempts)
    full = limiter.full_windows()
    assert full, elapsed
    # Every window the job spanned from start to end was (nearly) used up. Generous
    # enough for a loaded CI box; the emulator benchmark measures the real figure.
    assert sum(full) >= 0.85 * limiter.limit * len(full), full
    assert elapsed < 5, elapsed
    # After the first window (a burst is fine while the budget lasts), held calls are
    # released one per window/limit = 12.5 ms, about 4 per 50 ms. A burst at each reset
    # would put all 32 workers' calls into a few milliseconds. Counted from the second
    # reset: on a loaded machine the start may come late in its window, and the first
    # burst's calls then spill into the next window (allowed: its budget is fresh).
    first_reset = (math.floor(limiter.served[0] / limiter.window) + 1) * limiter.window
    densest = limiter.densest(0.05, after=first_reset + limiter.window)
    assert densest <= 12, densest


async def test_without_pacing_the_same_job_is_refused_often(scripted: Scripted) -> None:
    # The control for the test above: the server does refuse a client that is not paced.
    limiter, _ = await _pacing_job(scripted, pace=False)
    assert limiter.refused > 0.1 * len(limiter.served)


async def test_pacing_learns_a_server_clock_behind_ours(scripted: Scripted) -> None:
    # By our clock each window resets 60 ms early: from the answers (and the refused
    # probes) the pacer learns the server's clock is behind and waits longer. (Started
    # mid-window: a job that starts inside the 60 ms overlaps more at first.)
    limiter = FixedWindow(limit=40, window=0.5, offset=-0.06)
    scripted.handlers["Accounts.Create"] = limiter.handler()
    async with scripted.client(retry=FAST) as client:
        await asyncio.sleep(limiter.window - time.time() % limiter.window + 0.2)
        outcomes = await client.bulk(client.accounts.create, _users(160), concurrency=32)
        bucket = client._transport.pacer.bucket("test")
    assert [o.error for o in outcomes if o.error] == []
    assert bucket is not None and bucket.lo <= -0.06 < bucket.hi <= 0, bucket
    assert limiter.refused <= 0.1 * len(limiter.served), limiter.refused


async def test_pacing_can_be_turned_off(scripted: Scripted) -> None:
    async with scripted.client(pace_rate_limits=False) as off, scripted.client() as on:
        assert off.pace_rate_limits is False and off._transport.pacer is None
        assert on.pace_rate_limits is True


async def test_a_slow_first_call_holds_the_others_back_briefly_at_most(
    scripted: Scripted,
) -> None:
    # A client that knows no budget yet lets one call probe and the others wait for its
    # answer, but only PROBE_WAIT: then they go (the client-wide limit bounds the burst).
    scripted.handlers["Accounts.Get"] = _get_handler(0.2, "reads", 1000, slow=2.0)
    async with scripted.client() as client:
        slow = asyncio.create_task(client.accounts.get("slow"))  # answers after 2 s
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        await asyncio.gather(*(client.accounts.get(f"a-{i}") for i in range(20)))
        assert time.perf_counter() - started < PROBE_WAIT + 0.2 + 1.0  # not 2 s
        assert not slow.done()
        assert scripted.max_in_flight == 21
        await slow
        bucket = client._transport.pacer.bucket("reads")
        assert bucket is not None and bucket.in_flight == 0 and bucket.limit == 1000


async def test_a_job_on_a_new_client_opens_with_one_probe_not_a_burst(
    scripted: Scripted,
) -> None:
    # More workers than budget: had they all gone before the first answer, 64 - 10 would
    # have been refused. The probe's answer tells the budget; the rest wait for the reset,
    # which a few refused probes learn (the server's clock may not be ours).
    limiter = FixedWindow(limit=10, window=0.5)
    scripted.handlers["Accounts.Create"] = limiter.handler()
    async with scripted.client(retry=FAST) as client:
        await asyncio.sleep(limiter.window - time.time() % limiter.window + 0.02)
        outcomes = await client.bulk(client.accounts.create, _users(25), concurrency=64)
    assert [o.error for o in outcomes if o.error] == []
    assert limiter.refused <= LEARNING


def _spent(seconds: float, bucket: str = "writes") -> Any:
    """A Create handler whose budget is spent until `seconds` from now."""

    async def handler(body: bytes, context: Any) -> bytes:
        resp = accounts_pb2.AccountCreateResponse()
        resp.rate_limit.bucket = bucket
        resp.rate_limit.limit = 10
        resp.rate_limit.remaining = 0
        reset = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
        resp.rate_limit.reset_at.FromDatetime(reset)
        return resp.SerializeToString()

    return handler


async def test_a_held_call_keeps_its_timeout_and_can_be_cancelled_or_closed(
    scripted: Scripted,
) -> None:
    scripted.handlers["Accounts.Create"] = _spent(30)
    async with scripted.client() as client:
        await client.accounts.create(_users(1)[0])  # the answer: nothing left for 30 s
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(errors.TimeoutError, match="rate limit"):
            await client.accounts.create(_users(1)[0], timeout=0.3)
        assert 0.25 < loop.time() - started < 3
        held = asyncio.create_task(client.accounts.create(_users(1)[0]))
        await asyncio.sleep(0.1)
        held.cancel()
        with pytest.raises(asyncio.CancelledError):
            await held
        pacer = client._transport.pacer
        bucket = pacer.bucket("writes")
        assert bucket is not None and bucket.in_flight == 0 and not bucket.queue
        assert pacer.held == 2
        held = asyncio.create_task(client.accounts.create(_users(1)[0]))
        await asyncio.sleep(0.1)
    with pytest.raises(RuntimeError, match="client is closed"):
        await asyncio.wait_for(held, 1)  # closing fails it at once, not at the reset
    assert len(scripted.calls) == 1  # no held call reached the server


async def test_a_new_method_is_paced_with_the_last_bucket_while_it_probes(
    scripted: Scripted,
) -> None:
    # Accounts.Create and Accounts.Get share one budget (as buckets often are shared):
    # after the creates spend it, the first Get probes and the other Gets wait for the
    # reset with the creates' bucket, instead of going blind into refusals.
    limiter = FixedWindow(limit=10, window=0.5)
    scripted.handlers["Accounts.Create"] = limiter.handler()
    scripted.handlers["Accounts.Get"] = limiter.handler()
    async with scripted.client(retry=FAST) as client:
        await asyncio.sleep(limiter.window - time.time() % limiter.window + 0.02)
        await client.bulk(client.accounts.create, _users(10))
        outcomes = await client.bulk(client.accounts.get, [f"a-{i}" for i in range(10)])
    assert [o.error for o in outcomes if o.error] == []
    assert limiter.refused <= 1 + LEARNING  # the probe, and the reset's, at most


async def test_a_wrong_guess_costs_one_round_trip(scripted: Scripted) -> None:
    # Accounts.Create has spent its bucket for 30 s; Accounts.Get turns out to be in
    # another one: the Gets held with the creates' bucket go as soon as the probe answers.
    scripted.handlers["Accounts.Create"] = _spent(30)
    scripted.handlers["Accounts.Get"] = _get_handler(0.05, bucket="reads", limit=1000)
    async with scripted.client() as client:
        await client.accounts.create(_users(1)[0])
        scripted.max_in_flight = 0
        started = time.perf_counter()
        await asyncio.gather(*(client.accounts.get(f"a-{i}") for i in range(10)))
        elapsed = time.perf_counter() - started
        assert client._transport.pacer.bucket("writes").queue == collections.deque()
    assert scripted.max_in_flight == 9  # the probe alone, then the nine together
    assert elapsed < 2


async def test_a_refused_call_waits_for_the_reset_and_teaches_the_pacer(
    scripted: Scripted,
) -> None:
    # A budget spent by someone else: the first calls are refused and wait for reset_at;
    # the calls behind them queue for a unit instead of being refused too.
    limiter = FixedWindow(limit=5, window=0.5)
    limiter.used[math.floor(time.time() / limiter.window)] = 5  # this window: spent
    scripted.handlers["Accounts.Create"] = limiter.handler()
    async with scripted.client(retry=FAST) as client:
        outcomes = await client.bulk(client.accounts.create, _users(12), concurrency=6)
    assert [o.error for o in outcomes if o.error] == []
    # Only the first wave, sent before any answer told the budget, and the probes that
    # learn the reset were refused: the rest were paced into the next windows, 5 per window.
    assert limiter.refused <= 6 + LEARNING
    assert max(limiter.used.values()) <= 5
