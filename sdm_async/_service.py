"""What every generated service class shares: one transport, an optional snapshot time,
and the two ways to call (`_call` for one response, `_pager` for a list)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sdm_async._pagination import AsyncPager
from sdm_async._rpc import MethodInfo, Transport

__all__ = ["MethodInfo", "Service", "_identity", "bad_argument"]

T = TypeVar("T")


class Service:
    __slots__ = ("_page_limit", "_snapshot", "_transport")

    def __init__(self, transport: Transport, page_limit: int = 0, snapshot: Any = None) -> None:
        self._transport = transport
        self._page_limit = page_limit
        self._snapshot = snapshot  # a Timestamp message, or None for the present

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._transport.host}>"

    async def _call(self, method: MethodInfo, request: Any, timeout: float | None) -> Any:
        return await self._transport.call(method, request, timeout)

    def _pager(
        self,
        method: MethodInfo,
        request: Any,
        timeout: float | None,
        field: str,
        convert: Callable[[Any], T],
    ) -> AsyncPager[T]:
        meta = request.meta
        if self._page_limit:
            meta.limit = self._page_limit
        if self._snapshot is not None:
            meta.snapshot_at.CopyFrom(self._snapshot)
        return AsyncPager(self._transport, method, request, timeout, field, convert)


def _identity(x: T) -> T:
    return x


def bad_argument(where: str, params: Sequence[tuple[str, Any]], error: Exception) -> TypeError:
    """A clear error for an argument that cannot be put into the request, naming the
    parameter and, for a model, the attribute at fault. Values are not shown: they may be
    secrets."""
    from sdm_async._model import Model

    for name, value in params:
        if isinstance(value, Model):
            field = _bad_field(value)
            if field is not None:
                return TypeError(f"{where}({name}=...): {field}")
    names = ", ".join(n for n, _ in params)
    return TypeError(f"{where}: cannot use the given {names}: {error}")


_EXPECTED = {"str": str, "bytes": bytes, "bool": bool, "int": int, "float": (int, float)}


def _bad_field(model: Any) -> str | None:
    hints: dict[str, Any] = {}
    for klass in type(model).__mro__:
        hints.update(getattr(klass, "__annotations__", {}))
    for field in model.__slots__:
        expected = _EXPECTED.get(str(hints.get(field, "")))
        value = getattr(model, field, None)
        if expected is not None and not isinstance(value, expected):  # type: ignore[arg-type]
            want = hints[field]
            return f"{type(model).__name__}.{field} must be {want}, not {type(value).__name__}"
    return None
