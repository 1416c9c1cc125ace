"""Paginated lists: one async iterator for every `list` method.

Pages are fetched as the caller consumes them; while the caller works through one page the
next is already on its way (at most one page ahead). Leaving the loop early, or `aclose()`,
cancels the fetch in flight.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
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
        raise errors.BadRequestError(
            f"filter {filter!r} has {len(parts) - 1} '?' placeholder(s) but {len(args)} "
            "argument(s) were given: pass one argument per '?'"
        )
    out = [parts[0]]
    for arg, part in zip(args, parts[1:], strict=True):
        out.append(json.dumps(str(arg)))
        out.append(part)
    return "".join(out)


class AsyncPager(Generic[T]):
    """`async for item in client.accounts.list(...)`: items of every page, in order.

    Single use. `pages()` iterates whole pages (lists of items) instead.
    """

    __slots__ = (
        "_convert",
        "_deadline",
        "_done",
        "_field",
        "_index",
        "_items",
        "_method",
        "_next",
        "_request",
        "_started",
        "_timeout",
        "_transport",
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
        self._next: asyncio.Task[Any] | None = None
        self._done = False
        self._started = False

    def __repr__(self) -> str:
        return f"<AsyncPager {self._method.name}>"

    def __aiter__(self) -> AsyncPager[T]:
        return self

    async def __anext__(self) -> T:
        while self._index >= len(self._items):
            if not await self._advance():
                raise StopAsyncIteration
        item = self._items[self._index]
        self._index += 1
        return self._convert(item)

    async def pages(self) -> AsyncIterator[list[T]]:
        """Whole pages, converted, as they arrive."""
        try:
            while await self._advance():
                convert = self._convert
                yield [convert(x) for x in self._items]
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop: cancel the page being fetched, if any."""
        self._done = True
        task, self._next = self._next, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except BaseException:
                pass

    def __del__(self) -> None:
        task = self._next
        if task is not None and not task.done():
            task.cancel()

    def _fetch(self, request: Any) -> asyncio.Task[Any]:
        timeout = None if self._deadline is None else max(0.0, self._deadline - _now())
        return asyncio.ensure_future(self._transport.call(self._method, request, timeout))

    async def _advance(self) -> bool:
        """Move to the next page; False when there is none."""
        if self._done:
            return False
        if not self._started:
            self._started = True
            # `timeout` bounds the whole listing, from its first fetch.
            if self._timeout is not None:
                self._deadline = _now() + self._timeout
            self._next = self._fetch(self._request)
        task = self._next
        if task is None:
            self._done = True
            return False
        try:
            response = await task
        except BaseException:
            self._next = None
            self._done = True
            raise
        cursor = response.meta.next_cursor
        if cursor:
            following = type(self._request)()
            following.CopyFrom(self._request)
            following.meta.cursor = cursor
            self._next = self._fetch(following)  # prefetch while the caller works
            # The caller may take a whole page without yielding to the loop, so let the
            # request reach the wire now: it passes through three tasks (this fetch, the
            # signing interceptor, gRPC's invocation) before it is sent.
            for _ in range(3):
                await asyncio.sleep(0)
        else:
            self._next = None
        self._items = getattr(response, self._field)
        self._index = 0
        return True


def _now() -> float:
    return asyncio.get_running_loop().time()
