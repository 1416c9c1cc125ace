"""Paginated lists: one async iterator for every `list` method.

Pages are fetched as the caller consumes them; while the caller works through one page the
next is already on its way (at most one page ahead).

Every `async for` over a pager (and every `pages()`) runs on its own small iterator object,
which lives exactly as long as the loop: leaving the loop early (`break`, `return`, an
exception) drops it, and that cancels the page being fetched even while the pager itself is
still referenced. The pager remembers where it stopped: a later loop picks up at the next
item and fetches that page again if needed. `aclose()` (or `async with pager`, or
`contextlib.aclosing(pager)`) ends the listing for good.

A fetch that fails makes the pager fail: the error is raised when the consumer reaches it,
and again by every later iteration, so a listing never ends quietly with part of its items.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sdm_async import errors

if TYPE_CHECKING:
    from sdm_async._rpc import MethodInfo, Transport

T = TypeVar("T")


def quote_filter_args(filter: str, *args: object) -> str:
    """Replace each `?` in `filter` with the next argument, JSON-quoted, as the official
    SDK does (`email:?` with `a@b.c` -> `email:"a@b.c"`)."""
    if not isinstance(filter, str):
        raise errors.BadRequestError(f"filter must be a str, got {type(filter).__name__}")
    parts = filter.split("?")
    if len(parts) != len(args) + 1:
        shown = filter if len(filter) <= 200 else f"{filter[:130]}...{filter[-60:]}"
        raise errors.BadRequestError(
            f"filter {shown!r} has {len(parts) - 1} '?' placeholder(s) but {len(args)} "
            "argument(s) were given: pass one argument per '?'"
        )
    out = [parts[0]]
    for arg, part in zip(args, parts[1:], strict=True):
        out.append(json.dumps(str(arg)))
        out.append(part)
    return "".join(out)


class AsyncPager(Generic[T]):
    """`async for item in client.accounts.list(...)`: items of every page, in order.

    `pages()` iterates whole pages (lists of items) instead. Leaving a loop early cancels the
    page being fetched; a later loop resumes where the last one stopped. `aclose()`,
    `async with pager:` or `contextlib.aclosing(pager)` end the listing. A failed listing
    raises its error again on every later iteration.
    """

    __slots__ = (
        "_convert",
        "_deadline",
        "_error",
        "_field",
        "_index",
        "_items",
        "_loops",
        "_method",
        "_next",
        "_pending",
        "_request",
        "_started",
        "_timeout",
        "_transport",
        "_waiting",
    )

    def __init__(
        self,
        transport: Transport,
        method: MethodInfo,
        request: Any,
        timeout: float | None,
        field: str,
        convert: Callable[[Any], T],
    ) -> None:
        self._transport = transport
        self._method = method
        self._request = request
        self._field = field
        self._convert = convert
        self._timeout = timeout
        self._deadline: float | None = None
        self._items: Any = ()
        self._index = 0
        # The page after the current one: `_pending` is its request (None: no more pages),
        # `_next` the fetch in flight or done (None: not asked for yet).
        self._pending: Any = request
        self._next: asyncio.Task[Any] | None = None
        self._error: tuple[BaseException, TracebackType | None] | None = None
        self._started = False
        self._waiting = False  # a consumer awaits `_next`: it must not be taken away
        self._loops = 0  # loops started; a loop that ends stops the fetch unless a newer runs

    def __repr__(self) -> str:
        return f"<AsyncPager {self._method.name}>"

    def __aiter__(self) -> AsyncIterator[T]:
        self._loops += 1
        return _Items(self, self._loops)

    async def __anext__(self) -> T:
        while self._index >= len(self._items):
            if not await self._advance():
                raise StopAsyncIteration
        item = self._items[self._index]
        self._index += 1
        return self._convert(item)

    def pages(self) -> AsyncIterator[list[T]]:
        """Whole pages, converted, as they arrive (after what is left of the current page,
        when items were taken one by one first)."""
        self._loops += 1
        return _Pages(self, self._loops)

    async def __aenter__(self) -> AsyncPager[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """End the listing: cancel the page being fetched, if any. Iterating a closed pager
        yields nothing more."""
        self._pending = None
        self._items = ()
        self._index = 0
        task, self._next = self._next, None
        if task is None:
            return
        if task.done():
            _retrieve(task)
        else:
            task.cancel()
            if not self._waiting:  # a waiting consumer sees the cancellation itself
                await asyncio.wait((task,))

    def __del__(self) -> None:
        task = getattr(self, "_next", None)  # None when __init__ refused its arguments
        if task is not None:
            if task.done():
                _retrieve(task)
            else:
                _soon(task, _stop, task)

    def _left(self, loop: int) -> None:
        """A loop over the pager ended (its iterator was dropped): stop the fetch in flight
        unless another consumer took over. The page is fetched again if it is asked for."""
        task = self._next
        if task is None or task.done() or self._waiting or loop != self._loops:
            return
        self._next = None
        task.cancel()

    def _fetch(self, request: Any) -> asyncio.Task[Any]:
        if self._deadline is None:
            call = self._transport.call(self._method, request, None)
        else:
            call = self._get(request, self._deadline)
        # A fetch is always awaited, cancelled, or read by `_retrieve` when the pager lets
        # go of it, so asyncio never logs "Task exception was never retrieved". (Not a
        # done-callback: that costs a loop turn per page.)
        return asyncio.ensure_future(call)

    async def _get(self, request: Any, deadline: float) -> Any:
        """One page within what is left of the listing's timeout."""
        try:
            return await self._transport.call(self._method, request, max(0.0, deadline - _now()))
        except errors.TimeoutError as e:
            if _now() < deadline - 0.01:
                raise  # the server's own deadline, not the listing's
            raise errors.TimeoutError(
                f"{self._method.name}: the listing did not finish within its timeout of "
                f"{self._timeout} s (the timeout bounds the whole listing, from its first "
                "request)"
            ) from e

    async def _advance(self) -> bool:
        """Move to the next page; False when there is none."""
        if self._error is not None:
            error, traceback = self._error
            raise error.with_traceback(traceback)
        if self._waiting:
            raise RuntimeError(
                f"{self!r}: another task is already waiting for the next page; a listing "
                "has one consumer at a time"
            )
        if not self._started:
            self._started = True
            # `timeout` bounds the whole listing, from its first fetch.
            if self._timeout is not None:
                self._deadline = _now() + self._timeout
        task = self._next
        if task is None:
            if self._pending is None:
                return False
            task = self._next = self._fetch(self._pending)
        self._waiting = True
        try:
            response = await task
        except asyncio.CancelledError:
            if self._next is task:
                self._next = None  # the consumer was cancelled: fetched again if asked for
            elif self._pending is None and not _cancelling():
                return False  # aclose() from another task while this one waited
            raise
        except Exception as e:
            self._error = (e, e.__traceback__)
            self._next = self._pending = None
            raise
        finally:
            self._waiting = False
        # The page is kept before the loop turns below: a consumer cancelled in them
        # resumes with it.
        self._items = getattr(response, self._field)
        self._index = 0
        cursor = response.meta.next_cursor
        if cursor:
            following = type(self._request)()
            following.CopyFrom(self._request)
            following.meta.cursor = cursor
            self._pending = following
            self._next = self._fetch(following)  # prefetch while the caller works
            # The caller may take a whole page without yielding to the loop, so let the
            # request reach the wire now: the fetch task and then gRPC's invocation task
            # must each run before it is sent (one more turn in case the transport waits).
            for _ in range(3):
                await asyncio.sleep(0)
        else:
            self._pending = self._next = None
        return True


class _Items(Generic[T]):
    """One `async for` over a pager; dropping it (the loop ended) stops the prefetch."""

    __slots__ = ("_loop", "_pager")

    def __init__(self, pager: AsyncPager[T], loop: int) -> None:
        self._pager = pager
        self._loop = loop

    def __aiter__(self) -> _Items[T]:
        return self

    async def __anext__(self) -> T:
        p = self._pager
        i = p._index
        items = p._items
        if i < len(items):  # the fast path, inlined: this runs once per listed item
            p._index = i + 1
            return p._convert(items[i])
        return await p.__anext__()

    def __del__(self) -> None:
        _leave(self._pager, self._loop)


class _Pages(Generic[T]):
    """One `async for` over `pager.pages()`; dropping it stops the prefetch."""

    __slots__ = ("_loop", "_pager")

    def __init__(self, pager: AsyncPager[T], loop: int) -> None:
        self._pager = pager
        self._loop = loop

    def __aiter__(self) -> _Pages[T]:
        return self

    async def __anext__(self) -> list[T]:
        p = self._pager
        if p._index >= len(p._items) and not await p._advance():
            raise StopAsyncIteration
        convert = p._convert
        page = [convert(x) for x in p._items[p._index :]]
        p._index = len(p._items)
        return page

    def __del__(self) -> None:
        _leave(self._pager, self._loop)


def _leave(pager: AsyncPager[Any], loop: int) -> None:
    task = pager._next
    if task is not None and not task.done():
        _soon(task, pager._left, loop)


def _soon(task: asyncio.Task[Any], callback: Callable[..., object], *args: object) -> None:
    """Run `callback` on the task's event loop: `__del__` may run in another thread (the
    garbage collector's) or after the loop closed (then there is nothing left to stop)."""
    loop = task.get_loop()
    try:
        if asyncio.get_running_loop() is loop:
            loop.call_soon(callback, *args)
            return
    except RuntimeError:
        pass
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        pass


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a finished fetch's error as seen: nobody will await it any more."""
    if not task.cancelled():
        task.exception()


def _stop(task: asyncio.Task[Any]) -> None:
    if task.done():
        _retrieve(task)
    else:
        task.cancel()


def _cancelling() -> bool:
    """Whether the current task is being cancelled (Python 3.11+; False before)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if cancelling is not None else False


def _now() -> float:
    return asyncio.get_running_loop().time()
