"""Bulk calls: one call of a service method per item, with bounded concurrency.

`client.bulk(...)` returns one `Outcome` per item in input order; `client.bulk_iter(...)`
yields them as they complete. A failing item is reported in its outcome, never raised;
cancelling the caller cancels what is in flight and raises. Bulk calls go through the same
transport as every other call, so they share the client-wide limit on calls in flight and
its rate-limit pacing.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable, Iterable, Sized
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio
import anyio.abc

I = TypeVar("I")  # noqa: E741 - the item type
R = TypeVar("R")

__all__ = ["BulkIterator", "Outcome", "bulk", "bulk_iter"]


@dataclass(frozen=True, slots=True)
class Outcome(Generic[I, R]):
    """What happened to one item: `response` on success, else `error`."""

    index: int
    item: I
    response: R | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def check_method(method: Any, transport: Any) -> None:
    owner = getattr(method, "__self__", None)
    service = getattr(owner, "_service", owner)  # snapshot services wrap a service
    if getattr(service, "_transport", None) is not transport:
        raise TypeError(
            "bulk() takes a bound method of this client's services, "
            f"e.g. client.accounts.create; got {method!r}"
        )


async def _one(method: Callable[..., Awaitable[Any]], index: int, item: Any) -> Outcome[Any, Any]:
    args = item if isinstance(item, tuple) else (item,)
    try:
        return Outcome(index, item, response=await method(*args))
    except Exception as e:  # a per-item failure: reported, not raised
        return Outcome(index, item, error=e)


class _Progress:
    """A progress bar on a terminal (rich), nothing elsewhere."""

    def __init__(self, enabled: bool, label: str, total: int | None) -> None:
        self._bar: Any = None
        if enabled and sys.stderr.isatty():
            from rich.progress import Progress

            self._bar = Progress(transient=False)
            self._task = self._bar.add_task(label, total=total)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


class BulkIterator(Generic[R]):
    """Outcomes in completion order (`async for`). Items are read lazily, so a generator of
    millions is fine; at most `concurrency` calls (and as many pending outcomes) exist at
    once. Leaving the loop early, `aclose()`, or cancelling the caller cancels every call in
    flight."""

    def __init__(
        self,
        method: Callable[..., Awaitable[R]],
        items: Iterable[Any],
        concurrency: int,
        progress: bool,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._method = method
        self._items = items
        self._concurrency = concurrency
        self._progress = progress
        self._send, self._receive = anyio.create_memory_object_stream[Outcome[Any, R]](
            concurrency
        )
        self._runner: asyncio.Task[None] | None = None

    def __aiter__(self) -> BulkIterator[R]:
        return self

    async def _run(self) -> None:
        total = len(self._items) if isinstance(self._items, Sized) else None
        source = iter(enumerate(self._items))
        method = self._method
        workers = self._concurrency if total is None else max(1, min(self._concurrency, total))
        label = getattr(method, "__qualname__", "bulk")

        async def worker(out: Any) -> None:
            async with out:
                for index, item in source:  # workers share one iterator: each item once
                    await out.send(await _one(method, index, item))

        with _Progress(self._progress, label, total) as bar:
            self._bar = bar
            async with anyio.create_task_group() as tg, self._send:
                for _ in range(workers):
                    tg.start_soon(worker, self._send.clone())

    async def __anext__(self) -> Outcome[Any, R]:
        if self._runner is None:
            self._runner = asyncio.ensure_future(self._run())
        try:
            outcome = await self._receive.receive()
        except anyio.EndOfStream:
            await self._runner  # surfaces an unexpected failure of the runner itself
            raise StopAsyncIteration from None
        except BaseException:
            await self.aclose()
            raise
        self._bar.advance()
        return outcome

    async def aclose(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None and not runner.done():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        self._receive.close()

    def __del__(self) -> None:
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()


def bulk_iter(
    method: Callable[..., Awaitable[R]],
    items: Iterable[Any],
    *,
    concurrency: int,
    progress: bool = False,
) -> BulkIterator[R]:
    """Outcomes in completion order."""
    return BulkIterator(method, items, concurrency, progress)


async def bulk(
    method: Callable[..., Awaitable[R]],
    items: Iterable[Any],
    *,
    concurrency: int,
    progress: bool = False,
) -> list[Outcome[Any, R]]:
    """One outcome per item, in input order."""
    materialized = list(items)
    results: list[Outcome[Any, R] | None] = [None] * len(materialized)
    outcomes = BulkIterator(method, materialized, concurrency, progress)
    try:
        async for outcome in outcomes:
            results[outcome.index] = outcome
    finally:
        await outcomes.aclose()
    return [r for r in results if r is not None]
