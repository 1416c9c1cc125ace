"""What every generated service class shares: one transport, an optional snapshot time,
and the two ways to call (`_call` for one response, `_pager` for a list)."""

from __future__ import annotations

import linecache
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from types import FrameType
from typing import Any, TypeVar

from google.protobuf.descriptor import FieldDescriptor

from sdm_async import errors
from sdm_async._pagination import AsyncPager
from sdm_async._rpc import MethodInfo, Transport

__all__ = ["MAX_REQUEST_BYTES", "MethodInfo", "Service", "_identity", "bad_argument"]

T = TypeVar("T")

# gRPC servers refuse larger messages by default (RESOURCE_EXHAUSTED, which reads like a rate
# limit), and the API does not document a larger limit: refuse them here, before any call.
MAX_REQUEST_BYTES = 4 * 1024 * 1024


class Service:
    __slots__ = ("_page_limit", "_snapshot", "_transport")

    def __init__(self, transport: Transport, page_limit: int = 0, snapshot: Any = None) -> None:
        self._transport = transport
        self._page_limit = page_limit
        self._snapshot = snapshot  # a Timestamp message, or None for the present

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._transport.host}>"

    def _call(self, method: MethodInfo, request: Any, timeout: float | None) -> Awaitable[Any]:
        """The transport's call, to be awaited; bad arguments raise here, before any call.
        A plain function, not a coroutine: one frame less for every call to resume."""
        if timeout is not None:
            _check_timeout(method, timeout)
        # Serialized here once: its length is the size checked, and the transport sends and
        # signs these very bytes (no second pass over the message).
        body = request.SerializeToString()
        if len(body) > MAX_REQUEST_BYTES:
            raise _too_big(method, len(body))
        return self._transport.call(method, body, timeout)

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
        _check_timeout(method, timeout)  # at `list()`, not at the first page's request
        _check_size(method, request)
        return AsyncPager(self._transport, method, request, timeout, field, convert)


def _check_timeout(method: MethodInfo, timeout: object) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"{method.name}: timeout must be a number of seconds or None, "
            f"not {type(timeout).__name__}"
        )
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"{method.name}: timeout must be >= 0 seconds, got {timeout}")


def _check_size(method: MethodInfo, request: Any) -> None:
    size = request.ByteSize()
    if size > MAX_REQUEST_BYTES:
        raise _too_big(method, size)


def _too_big(method: MethodInfo, size: int) -> errors.BadRequestError:
    return errors.BadRequestError(
        f"{method.name}: the request is {size:,} bytes, over the {MAX_REQUEST_BYTES:,} a "
        "gRPC server accepts: send less at once (fewer or shorter tags, a shorter filter, "
        "smaller values)"
    )


def _identity(x: T) -> T:
    return x


def bad_argument(where: str, params: Sequence[tuple[str, Any]], error: Exception) -> TypeError:
    """A clear error for an argument that cannot be put into the request, naming the
    parameter and, for a model, the attribute at fault, and saying what it must be. Values
    are not shown: they may be secrets.

    The generated code converts one attribute per line (`m.port = o.port` in `to_pb_X`,
    `req.id = id` in the method), so the failing line of the traceback names the attribute.
    """
    located = _locate(error)
    if located is not None:
        return TypeError(f"{where}{located}")
    from sdm_async._model import Model

    for name, value in params:
        if isinstance(value, Model):
            field = _bad_field(value)
            if field is not None:
                return TypeError(f"{where}({name}=...): {field}")
    names = ", ".join(n for n, _ in params) or "filter"
    return TypeError(f"{where}: cannot use the given {names}: {type(error).__name__}")


_ATTR = re.compile(r"\bo\.(\w+)")
_FIELD = re.compile(r"\b(?:m|req)\.(\w+)")
_PARAM = re.compile(r"^(?:req\.\w+ = (\w+)|req\.\w+\.extend\((\w+)\)|\w+\((\w+), req\.\w+\))$")
_FILTER = "req.filter = quote_filter_args(filter, *args)"
_RANGES = {"int32": 31, "sint32": 31, "sfixed32": 31, "int64": 63, "sint64": 63, "sfixed64": 63}
_URANGES = {"uint32": 32, "fixed32": 32, "uint64": 64, "fixed64": 64}


def _frames(error: BaseException) -> list[tuple[FrameType, str]]:
    out = []
    tb = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        line = linecache.getline(frame.f_code.co_filename, tb.tb_lineno).strip()
        out.append((frame, line))
        tb = tb.tb_next
    return out


def _locate(error: BaseException) -> str | None:
    """`(account=...): User.created_at must be datetime, not str` (or `: id must be str, not
    int`), read from the generated code's failing lines; None when the traceback does not say."""
    frames = [(f, line) for f, line in _frames(error) if "_generated" in f.f_code.co_filename]
    if not frames:
        return None
    method_frame, method_line = frames[0]
    if method_line == _FILTER:
        param, hint = "filter", "str"
    else:
        m = _PARAM.match(method_line)
        if m is None:
            return None
        param = next(g for g in m.groups() if g)
        hint = _method_hint(method_frame, param)
    subject = f": {param}"
    value: Any = method_frame.f_locals.get(param)
    holder: Any = method_frame.f_locals.get("req")
    field = _FIELD.search(method_line)
    for frame, line in frames[1:]:
        name = frame.f_code.co_name
        if not name.startswith("to_pb_") or "o" not in frame.f_locals:
            continue
        o = frame.f_locals["o"]
        expected = frame.f_globals.get(name[len("to_pb_") :])
        if isinstance(expected, type) and not isinstance(o, expected):
            where = subject if o is value else f"({param}=...): {type(value).__name__}"
            return f"{where} must be a {expected.__name__}, not {type(o).__name__}"
        attr = _ATTR.search(line)
        if attr is None:  # a union's dispatch line: the member's frame follows
            continue
        subject = f"({param}=...): {type(o).__name__}.{attr.group(1)}"
        value = getattr(o, attr.group(1), None)
        hint = _annotation(type(o), attr.group(1))
        holder, field = frame.f_locals.get("m"), _FIELD.search(line)
    if frames[-1][1].startswith("raise TypeError(union_error("):
        return f"{subject}: {error}"  # names the members the union takes
    if isinstance(error, UnicodeError):
        return (
            f"{subject} is not valid text: it holds a lone surrogate, which UTF-8 cannot "
            "encode (decode bytes with errors='replace', or fix the value's source)"
        )
    if "JSON" in str(error):  # json.dumps: a type name or "out of range float", no value
        return f"{subject} must hold JSON values only: {error}"
    if "out of range" in str(error) and holder is not None and field is not None:
        return f"{subject} is out of range: {_range(holder, field.group(1))}"
    if hint:
        shown = hint.removesuffix(" | None").replace("datetime.", "").replace("typing.", "")
        got = type(value).__name__
        if shown.startswith(got + "["):
            return f"{subject} must be {shown}: one of its items is not"
        return f"{subject} must be {shown}, not {got}"
    return None


def _method_hint(frame: FrameType, param: str) -> str:
    service = frame.f_locals.get("self")
    method = getattr(type(service), frame.f_code.co_name, None)
    return str(getattr(method, "__annotations__", {}).get(param, ""))


def _annotation(cls: type, attr: str) -> str:
    for klass in cls.__mro__:
        hint = getattr(klass, "__annotations__", {}).get(attr)
        if hint is not None:
            return str(hint)
    return ""


def _range(message: Any, field: str) -> str:
    fd = message.DESCRIPTOR.fields_by_name.get(field)
    kinds = {
        v: k.removeprefix("TYPE_").lower()
        for k, v in vars(FieldDescriptor).items()
        if k.startswith("TYPE_")
    }
    kind = kinds.get(getattr(fd, "type", None), "")
    if kind in _RANGES:
        bits = _RANGES[kind]
        return f"the API's {kind} field takes {-(2**bits)} to {2**bits - 1}"
    if kind in _URANGES:
        return f"the API's {kind} field takes 0 to {2 ** _URANGES[kind] - 1}"
    return "the API's field cannot hold it"


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
