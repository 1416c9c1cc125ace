"""Bulk calls: one call of a service method per item, with bounded concurrency.

`client.bulk(...)` returns one `Outcome` per item in input order; `client.bulk_iter(...)`
yields them as they complete. A failing item is reported in its outcome, never raised;
cancelling the caller cancels what is in flight and raises. Bulk calls go through the same
transport as every other call, so they share the client-wide limit on calls in flight and
its rate-limit pacing.

A fixed set of `concurrency` workers pulls items from one shared iterator (an anyio task
group), so a job of a million items holds `concurrency` calls, not a million tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sized
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

I = TypeVar("I")  # noqa: E741 - the item type
R = TypeVar("R")

__all__ = ["BulkIterator", "Outcome", "bulk", "bulk_iter", "check_concurrency", "check_method"]


@dataclass(frozen=True, slots=True)
class Outcome(Generic[I, R]):
    """What happened to one item: `response` on success, else `error` (the exception)."""

    index: int  # the item's position in the input
    item: I
    response: R | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        """True when the call succeeded."""
        return self.error is None


def check_method(method: Any, transport: Any) -> None:
    """Raise TypeError unless `method` is a coroutine method of a service bound to
    `transport` (a `functools.partial` of one is fine, e.g. to pass `timeout=`)."""
    target = method
    while isinstance(target, functools.partial):
        target = target.func
    owner = getattr(target, "__self__", None)
    service = getattr(owner, "_service", owner)  # snapshot services wrap a service
    if owner is None or getattr(service, "_transport", None) is not transport:
        raise TypeError(
            "bulk() takes a bound method of this client's services, "
            f"e.g. client.accounts.create; got {method!r}"
        )
    if not inspect.iscoroutinefunction(target):
        raise TypeError(
            f"bulk() takes a method that returns a coroutine; {target.__qualname__} does not "
            "(list methods return an async iterator: iterate them instead)"
        )


def check_concurrency(concurrency: Any, default: int) -> int:
    """`concurrency` as a positive int (`default` for None)."""
    if concurrency is None:
        return default
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        raise TypeError(f"concurrency must be an int or None, not {type(concurrency).__name__}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    return concurrency


async def _one(method: Callable[..., Awaitable[Any]], index: int, item: Any) -> Outcome[Any, Any]:
    args = item if isinstance(item, tuple) else (item,)
    try:
        return Outcome(index, item, response=await method(*args))
    except Exception as e:  # a per-item failure: reported, not raised
        return Outcome(index, item, error=e)


def _label(method: Any) -> str:
    while isinstance(method, functools.partial):
        method = method.func
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", "call")
    return f"{type(owner).__name__}.{name}" if owner is not None else name


class _Progress:
    """A progress bar (rich) when enabled and on a terminal; nothing otherwise."""

    def __init__(self, enabled: bool, label: str, total: int | None, console: Any = None) -> None:
        self._bar: Any = None
        self._failed = 0
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        console = console if console is not None else Console(stderr=True)
        if not console.is_terminal:
            return
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self._label = label
        self._task = self._bar.add_task(label, total=total, failed="")

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def advance(self, outcome: Outcome[Any, Any]) -> None:
        if self._bar is None:
            return
        if outcome.error is not None:
            self._failed += 1
            self._bar.update(self._task, advance=1, failed=f"{self._failed} failed")
        else:
            self._bar.advance(self._task)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


async def bulk(
    method: Callable[..., Awaitable[R]],
    items: Iterable[I],
    *,
    concurrency: int,
    progress: bool = False,
    console: Any = None,
) -> list[Outcome[I, R]]:
    """One outcome per item, in input order (`items` is read in full first)."""
    todo = list(items)
    results: list[Any] = [None] * len(todo)
    if not todo:
        return []
    source = iter(enumerate(todo))

    with _Progress(progress, _label(method), len(todo), console) as bar:

        async def worker() -> None:
            for index, item in source:  # workers share one iterator: each item once
                outcome = await _one(method, index, item)
                results[index] = outcome
                bar.advance(outcome)

        # Cancelling the caller cancels the group: every worker, hence every call in flight.
        async with anyio.create_task_group() as tg:
            for _ in range(min(concurrency, len(todo))):
                tg.start_soon(worker)
    return results


class BulkIterator(Generic[I, R]):
    """Outcomes in completion order (`async for`). Items are read lazily, so a generator of
    millions is fine: at most `concurrency` calls (and as many unread outcomes) exist at once.

    Leaving the loop early does not stop the job by itself: use `async with` (or
    `aclose()`), which cancels every call in flight. Cancelling the consumer does the same.
    """

    def __init__(
        self,
        method: Callable[..., Awaitable[R]],
        items: Iterable[I],
        concurrency: int,
        progress: bool,
        console: Any = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self._method = method
        self._items = items
        self._concurrency = concurrency
        self._progress = progress
        self._console = console
        self._receive: MemoryObjectReceiveStream[Outcome[I, R]] | None = None
        self._send: MemoryObjectSendStream[Outcome[I, R]]
        self._runner: asyncio.Task[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<BulkIterator {_label(self._method)} concurrency={self._concurrency}>"

    def __aiter__(self) -> BulkIterator[I, R]:
        return self

    async def __aenter__(self) -> BulkIterator[I, R]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _start(self) -> MemoryObjectReceiveStream[Outcome[I, R]]:
        # The streams are made on first use, so an iterator never iterated leaves none open.
        send, receive = anyio.create_memory_object_stream[Outcome[I, R]](self._concurrency)
        self._send, self._receive = send, receive
        self._runner = asyncio.ensure_future(self._run(send))
        return receive

    async def _run(self, send: MemoryObjectSendStream[Outcome[I, R]]) -> None:
        items = self._items
        total = len(items) if isinstance(items, Sized) else None
        source: Iterator[tuple[int, Any]] = iter(enumerate(items))
        method = self._method
        workers = self._concurrency if total is None else min(self._concurrency, total)
        failure: list[BaseException] = []

        with _Progress(self._progress, _label(method), total, self._console) as bar:

            async def worker(out: MemoryObjectSendStream[Outcome[I, R]]) -> None:
                async with out:
                    while True:
                        try:
                            index, item = next(source)  # one shared iterator: each item once
                        except StopIteration:
                            return
                        except Exception as e:  # the items themselves failed: stop the job
                            failure.append(e)
                            tg.cancel_scope.cancel()
                            return
                        outcome = await _one(method, index, item)
                        bar.advance(outcome)
                        await out.send(outcome)

            async with send, anyio.create_task_group() as tg:
                for _ in range(workers):
                    tg.start_soon(worker, send.clone())
        if failure:
            raise failure[0]

    async def __anext__(self) -> Outcome[I, R]:
        if self._closed:
            raise StopAsyncIteration
        receive = self._receive if self._receive is not None else self._start()
        try:
            return await receive.receive()
        except anyio.EndOfStream:
            runner, self._runner = self._runner, None
            self._close_streams()
            if runner is not None:
                await runner  # done or about to be; raises if reading the items failed
            raise StopAsyncIteration from None
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Stop: cancel every call in flight and wait until they are gone. Idempotent."""
        runner, self._runner = self._runner, None
        self._close_streams()
        if runner is None:
            return
        if not runner.done():
            runner.cancel()
        with contextlib.suppress(BaseException):  # a failure nobody asked for any more
            await runner

    def _close_streams(self) -> None:
        self._closed = True
        if self._receive is not None:
            self._receive.close()
            self._send.close()  # in case the runner was cancelled before it started

    def __del__(self) -> None:
        runner = self._runner
        if runner is not None and not runner.done():
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                runner.cancel()
        if getattr(self, "_receive", None) is not None:
            self._close_streams()


def bulk_iter(
    method: Callable[..., Awaitable[R]],
    items: Iterable[I],
    *,
    concurrency: int,
    progress: bool = False,
    console: Any = None,
) -> BulkIterator[I, R]:
    """Outcomes in completion order."""
    return BulkIterator(method, items, concurrency, progress, console)
