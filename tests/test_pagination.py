"""Listings against the emulator: leaving a loop stops the page being fetched, a pager
resumes where it stopped, a failed pager keeps failing, and the listing `timeout` bounds the
whole listing."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from google.protobuf.message import Message

import sdm_async
from sdm_async import errors
from sdm_async.testing import Emulator

USERS = 23  # seeded; with the admin's own account and pages of 5 that is several pages
PAGE = 5
NO_RETRY = sdm_async.RetryPolicy(max_retries=0)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(page_size=PAGE) as e:
        e.backend.seed_users(USERS)
        yield e


async def everyone(client: sdm_async.Client) -> list[str]:
    return [a.id async for a in client.accounts.list("")]


def slow(emu: Emulator, seconds: float = 5.0) -> None:
    """Every later call takes `seconds` at the server: a prefetch stays in flight."""
    emu.faults.latency = seconds


def prefetch(pager: sdm_async.AsyncPager[Any]) -> asyncio.Task[Any]:
    """The fetch of the next page (a private detail, looked at to see it stop)."""
    task = pager._next
    assert task is not None and not task.done(), "no page is being fetched"
    return task


async def waits_for_a_page(pager: sdm_async.AsyncPager[Any]) -> None:
    """Let the task just started run its first step: it asks for a page and waits for it."""
    await asyncio.sleep(0)
    assert getattr(pager, "_waiting", True)  # (a private flag)


async def stopped(task: asyncio.Task[Any]) -> None:
    """Wait for the fetch to end, and check that it was cancelled, not answered."""
    done, _ = await asyncio.wait((task,), timeout=2.0)
    assert done, "the page fetch still runs after the loop was left"
    assert task.cancelled()


# --- leaving a loop early -----------------------------------------------------------------


async def test_break_stops_the_prefetch_while_the_pager_is_referenced(emu: Emulator) -> None:
    async with emu.client() as client:
        ids = await everyone(client)
        pager = client.accounts.list("")
        first = None
        async for account in pager:
            first = account.id
            slow(emu)
            task = prefetch(pager)
            break
        await stopped(task)
        assert client._transport.in_flight == 0
        # The pager is still usable: a later loop resumes after the item taken and fetches
        # the cancelled page again.
        slow(emu, 0.0)
        rest = [a.id async for a in pager]
        assert [first, *rest] == ids


async def test_an_exception_in_the_loop_body_stops_the_prefetch(emu: Emulator) -> None:
    async with emu.client() as client:
        pager = client.accounts.list("")
        with pytest.raises(LookupError):
            async for _ in pager:
                slow(emu)
                task = prefetch(pager)
                raise LookupError("the caller's own error")
        await stopped(task)


async def test_async_with_and_aclosing_end_the_listing(emu: Emulator) -> None:
    async with emu.client() as client:
        async with client.accounts.list("") as pager:
            async for _ in pager:
                slow(emu)
                task = prefetch(pager)
                break
        assert task.cancelled()  # aclose() waits for the fetch to end
        assert [a async for a in pager] == []  # a closed pager yields nothing more

        slow(emu, 0.0)
        async with contextlib.aclosing(client.accounts.list("")) as pager:
            async for _ in pager:
                slow(emu)
                task = prefetch(pager)
                break
        assert task.cancelled()
        assert client._transport.in_flight == 0


async def test_leaving_pages_early_stops_the_prefetch_and_resumes(emu: Emulator) -> None:
    async with emu.client() as client:
        ids = await everyone(client)
        pager = client.accounts.list("")
        async for page in pager.pages():
            first = [a.id for a in page]
            slow(emu)
            task = prefetch(pager)
            break
        await stopped(task)
        slow(emu, 0.0)
        rest = [a.id async for p in pager.pages() for a in p]
        assert first + rest == ids


async def test_items_then_pages_lose_nothing(emu: Emulator) -> None:
    async with emu.client() as client:
        ids = await everyone(client)
        pager = client.accounts.list("")
        taken = [(await pager.__anext__()).id for _ in range(2)]
        pages = [[a.id for a in p] async for p in pager.pages()]
        assert pages[0] == ids[2:PAGE]  # the rest of the page the items came from
        assert taken + [i for p in pages for i in p] == ids


async def test_a_cancelled_consumer_can_resume(emu: Emulator) -> None:
    async with emu.client() as client:
        ids = await everyone(client)
        pager = client.accounts.list("")
        slow(emu)
        waiting = asyncio.ensure_future(pager.__anext__())
        await waits_for_a_page(pager)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        slow(emu, 0.0)
        assert [a.id async for a in pager] == ids


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Task.cancelling() tells the cases apart")
async def test_aclose_from_another_task_ends_the_waiting_loop(emu: Emulator) -> None:
    async with emu.client() as client:
        pager = client.accounts.list("")
        slow(emu)
        consumer = asyncio.ensure_future(_collect(pager))
        await waits_for_a_page(pager)
        await pager.aclose()
        assert await asyncio.wait_for(consumer, 2.0) == []  # ended, not cancelled


async def _collect(pager: sdm_async.AsyncPager[Any]) -> list[Any]:
    return [a async for a in pager]


async def test_one_consumer_at_a_time(emu: Emulator) -> None:
    async with emu.client() as client:
        pager = client.accounts.list("")
        first = asyncio.ensure_future(pager.__anext__())
        await waits_for_a_page(pager)
        with pytest.raises(RuntimeError, match="one consumer at a time"):
            await pager.__anext__()
        assert (await first).id  # the first consumer is unaffected


@pytest.mark.parametrize("timeout", [None, 30.0])
async def test_the_next_page_is_sent_before_a_page_is_handed_out(
    emu: Emulator, timeout: float | None
) -> None:
    """A consumer that works through a page without yielding still overlaps the next page's
    round trip with its work, with or without a listing timeout."""
    async with emu.client() as client:
        pager = client.accounts.list("", timeout=timeout)
        await pager.__anext__()
        assert client._transport.in_flight == 1  # page two is already on its way
        await pager.aclose()


# --- failures --------------------------------------------------------------------------------


async def test_a_failed_listing_raises_again_on_every_later_iteration(emu: Emulator) -> None:
    async with emu.client(retry=NO_RETRY) as client:
        pager = client.accounts.list("")
        seen = [await pager.__anext__()]
        # Page two is on its way (sent before page one was handed out); make it fail.
        emu.faults.code, emu.faults.rate = "INTERNAL", 1.0
        with pytest.raises(errors.InternalError) as first:
            async for account in pager:
                seen.append(account)
        assert len(seen) == PAGE  # page one in full, then the error
        for again in (_collect(pager), _pages(pager), pager.__anext__()):
            with pytest.raises(errors.InternalError) as later:
                await again
            assert later.value is first.value


async def _pages(pager: sdm_async.AsyncPager[Any]) -> list[Any]:
    return [p async for p in pager.pages()]


@pytest.mark.parametrize("leave", ["drop", "aclose", "break"])
async def test_a_prefetch_failing_after_the_consumer_left_logs_nothing(
    emu: Emulator, leave: str
) -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        attempts: list[sdm_async.Attempt] = []
        async with emu.client(retry=NO_RETRY, on_attempt=attempts.append) as client:
            pager = client.accounts.list("")
            if leave == "break":
                async for _ in pager:
                    task = await _failed_prefetch(emu, pager)
                    break
            else:
                await pager.__anext__()  # taken by hand: no loop ends, nothing is cancelled
                task = await _failed_prefetch(emu, pager)
                if leave == "aclose":
                    await pager.aclose()
            assert isinstance(attempts[-1].error, errors.InternalError)
            del pager, task  # the consumer walked away from a failed fetch
            gc.collect()
            await asyncio.sleep(0)  # (a callback the pager left behind would run now)
    finally:
        loop.set_exception_handler(None)
    assert [c.get("message") for c in reported] == []


async def _failed_prefetch(emu: Emulator, pager: sdm_async.AsyncPager[Any]) -> asyncio.Task[Any]:
    emu.faults.code, emu.faults.rate = "INTERNAL", 1.0
    task = prefetch(pager)
    await asyncio.wait((task,))  # (reading its outcome here would hide the defect)
    return task


# --- the listing timeout ---------------------------------------------------------------------


async def test_the_timeout_bounds_the_whole_listing(emu: Emulator) -> None:
    emu.faults.latency = 0.15  # each page alone is well within the timeout
    async with emu.client() as client:
        pager = client.accounts.list("", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(errors.TimeoutError, match="listing") as raised:
            async for _ in pager:
                pass
        assert time.monotonic() - started < 0.5 + 0.5
        assert "0.5 s" in str(raised.value)
        with pytest.raises(errors.TimeoutError):
            await pager.__anext__()


async def test_a_bad_timeout_fails_at_list_before_any_call(emu: Emulator) -> None:
    async with emu.client() as client:
        calls = emu.stats.calls
        with pytest.raises(TypeError, match="timeout must be a number of seconds"):
            client.accounts.list("", timeout="5")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="timeout must be >= 0"):
            client.accounts.list("", timeout=-1)
        assert emu.stats.calls == calls


async def test_a_consumer_cancelled_as_a_page_arrives_loses_no_item(emu: Emulator) -> None:
    """Cancelled in the loop turns the pager gives the next page's request to reach the wire
    (after the page came in, before it is handed out), the consumer resumes with that page."""
    async with emu.client() as client:
        ids = await everyone(client)
        pager = client.accounts.list("")
        first = asyncio.ensure_future(pager.__anext__())
        for _ in range(10_000):  # step the loop until page one is in and page two is sent
            await asyncio.sleep(0)
            if pager._next is not None and pager._pending is not pager._request:
                break
        assert not first.done()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert [a.id async for a in pager] == ids


# --- what a listed item holds ---------------------------------------------------------------


def protobuf_reachable(roots: list[Any]) -> list[str]:
    """Protobuf objects (messages, containers) reachable from `roots` through models,
    tuples, lists, dicts and sets. Any of them would keep the page it came from alive:
    protobuf's wrappers hold the whole page's memory (its arena), not only their part."""
    found = []
    seen: set[int] = set()
    todo = list(roots)
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, Message) or type(obj).__module__.startswith("google."):
            found.append(type(obj).__name__)
        elif isinstance(obj, (sdm_async.Model, tuple, list, dict, set, frozenset)):
            todo.extend(gc.get_referents(obj))  # slots (`_raw` included), items, keys
    return found


async def test_a_held_item_keeps_no_page_alive(emu: Emulator) -> None:
    async with emu.client() as client:
        held = [a async for a in client.accounts.list("")]
        held += [a async for page in client.accounts.list("").pages() for a in page]
    assert len(held) > 4 * PAGE
    for account in held[::2]:  # read or not, the lazily converted fields hold no message
        assert account.created_at is not None and account.tags is not None
    assert protobuf_reachable(held) == []
    # The check can fail: a model that kept a piece of its page is found.
    from sdm_async._generated.v1 import accounts_pb2

    page = accounts_pb2.AccountListResponse()
    page.accounts.add().user.id = "a-1"
    leaky = copy.copy(held[0])
    leaky._raw = (page.accounts[0].user.created_at,)
    assert protobuf_reachable([leaky]) == ["Timestamp"]
    leaky._raw = ([page.accounts],)
    assert protobuf_reachable([leaky]) == ["RepeatedCompositeContainer"]
