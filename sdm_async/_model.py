"""The base of every model class, and the conversions generated converters call.

Listing is the hot path, so converters build models in one pass (`_new` + slot stores) and
convert timestamps with integer arithmetic rather than `Timestamp.ToDatetime()`. The helpers
below run once per listed item: `timedelta` takes positional arguments (keywords cost about a
third more) and tags are filled by a plain loop (cheaper than a comprehension's frame).

Fields that cost most to convert (timestamps, durations, tags, JSON text, a response's
`rate_limit`) are converted on first read instead: the converter keeps their plain values
(seconds and nanos as ints, tags and `rate_limit` as their serialized bytes, JSON as its
text) in the private `_raw` tuple and leaves the slot
unset; `Model.__getattr__`, which Python calls only for an unset slot, converts the value and
stores it in the slot, so later reads are plain slot reads. `_raw` holds no protobuf object: a
listed model never keeps its page's message alive.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_ZERO = datetime.timedelta(0)
_timedelta = datetime.timedelta
_M = TypeVar("_M", bound="Model")

_new = object.__new__


class Model:
    """Common behaviour of the API's models: keyword construction (generated), equality,
    `to_dict()`/`from_dict()`, and a `repr` that masks credential fields."""

    __slots__: tuple[str, ...] = ("_raw",)
    _secrets: ClassVar[frozenset[str]] = frozenset()
    # Attributes converted on first read: name -> (conversion, index of its values in `_raw`).
    # Generated classes give the conversion's kind ("timestamp", ...); see __init_subclass__.
    _lazy: ClassVar[dict[str, tuple[Any, int]]] = {}
    _raw: tuple[Any, ...]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        lazy = cls.__dict__.get("_lazy")
        if lazy:
            cls._lazy = {name: (_LAZY[kind], i) for name, (kind, i) in lazy.items()}

    if not TYPE_CHECKING:  # a __getattr__ would make mypy accept any attribute name

        def __getattr__(self, name: str) -> Any:
            # Only reached when the slot is unset: a listed model's field not yet converted.
            lazy = type(self)._lazy.get(name)
            if lazy is not None:
                try:
                    raw = self._raw
                except AttributeError:  # built by keywords (no `_raw`), then deleted
                    pass
                else:
                    convert, i = lazy
                    value = convert(raw, i)
                    setattr(self, name, value)
                    return value
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}", name=name, obj=self
            )

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        # As object's default for slots, with every field converted and without `_raw`.
        state = {}
        for f in self.__slots__:
            try:
                state[f] = getattr(self, f)
            except AttributeError:
                pass
        return None, state

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the official models

    def __repr__(self) -> str:
        parts = []
        for f in self.__slots__:
            value = getattr(self, f, None)
            shown = "'***'" if f in self._secrets and value else repr(value)
            parts.append(f"{f}={shown}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        """The attributes as a dict (nested models stay models, as in the official SDK)."""
        return {f: getattr(self, f) for f in self.__slots__}

    @classmethod
    def from_dict(cls: type[_M], d: Mapping[str, Any]) -> _M:
        """A model from the attributes in `d` (missing ones take their defaults)."""
        return cls(**{f: d.get(f) for f in cls.__slots__})


def ts_from_pb(ts: Any) -> datetime.datetime | None:
    """Timestamp -> aware UTC datetime; the zero timestamp means "not set" (None)."""
    seconds, nanos = ts.seconds, ts.nanos
    if not seconds and not nanos:
        return None
    return _EPOCH + _timedelta(0, seconds, nanos // 1000)


def _ts_lazy(raw: tuple[Any, ...], i: int) -> datetime.datetime | None:
    seconds, nanos = raw[i], raw[i + 1]
    if not seconds and not nanos:
        return None
    return _EPOCH + _timedelta(0, seconds, nanos // 1000)


def ts_to_pb(value: datetime.datetime, ts: Any) -> None:
    if value.tzinfo is None:  # naive means local time, as datetime.timestamp() assumes
        value = value.astimezone(datetime.timezone.utc)
    delta = value - _EPOCH
    ts.seconds = delta.days * 86400 + delta.seconds
    ts.nanos = delta.microseconds * 1000


def dur_from_pb(d: Any) -> datetime.timedelta:
    seconds, nanos = d.seconds, d.nanos
    if not seconds and not nanos:
        return _ZERO
    return _timedelta(0, seconds, nanos // 1000)


def _dur_lazy(raw: tuple[Any, ...], i: int) -> datetime.timedelta:
    seconds, nanos = raw[i], raw[i + 1]
    if not seconds and not nanos:
        return _ZERO
    return _timedelta(0, seconds, nanos // 1000)


def dur_to_pb(value: datetime.timedelta, d: Any) -> None:
    micros = (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
    seconds = int(micros / 1_000_000)  # truncate toward zero: seconds and nanos share a sign
    d.seconds = seconds
    d.nanos = (micros - seconds * 1_000_000) * 1000


def tags_from_pb(tags: Any) -> dict[str, str]:
    out = {}
    for p in tags.pairs:
        out[p.name] = p.value
    return out


def _tags_lazy(raw: tuple[Any, ...], i: int) -> dict[str, str]:
    data = raw[i]  # the `Tags` message, serialized
    if not data:
        return {}
    tags = _tags_short(data)
    if tags is None:
        tags = tags_from_pb(_tags_message().FromString(data))
    return tags


def _tags_short(data: bytes) -> dict[str, str] | None:
    """Serialized `Tags` (`repeated Pair pairs = 1`, `Pair {string name = 1; string value =
    2}`) read directly when every length fits in one byte, as with almost all tags; None
    for anything else, which protobuf then parses. About a third of the cost of parsing."""
    out: dict[str, str] = {}
    i, end = 0, len(data)
    try:
        while i < end:
            size = data[i + 1]
            if data[i] != 0x0A or size > 0x7F:
                return None
            i += 2
            stop = i + size
            name = value = ""  # proto3 leaves empty strings out
            while i < stop:
                tag, n = data[i], data[i + 1]
                if n > 0x7F:
                    return None
                text = data[i + 2 : i + 2 + n].decode()
                if tag == 0x0A:
                    name = text
                elif tag == 0x12:
                    value = text
                else:
                    return None
                i += 2 + n
            if i != stop:
                return None
            out[name] = value
    except (IndexError, UnicodeDecodeError):
        return None
    return out


def _tags_message() -> Any:
    global _Tags
    if _Tags is None:
        # Imported on first use: the generated package imports this module.
        from sdm_async._generated.v1.tags_pb2 import Tags

        _Tags = Tags
    return _Tags


_Tags: Any = None


def _rate_limit_lazy(raw: tuple[Any, ...], i: int) -> Any:
    """A response's `rate_limit`, from its serialized message."""
    global _RateLimit
    if _RateLimit is None:
        # Imported on first use: the generated package imports this module.
        from sdm_async._generated.models.spec import from_pb_RateLimitMetadata
        from sdm_async._generated.v1.spec_pb2 import RateLimitMetadata

        _RateLimit = (RateLimitMetadata.FromString, from_pb_RateLimitMetadata)
    parse, convert = _RateLimit
    return convert(parse(raw[i]))


_RateLimit: Any = None


def tags_to_pb(value: Mapping[str, str], tags: Any) -> None:
    pairs = tags.pairs
    for name, v in value.items():
        pairs.add(name=name, value=v)


def json_list_from_pb(text: str) -> list[Any]:
    return json.loads(text) if text else []


def json_dict_from_pb(text: str) -> dict[str, Any]:
    return json.loads(text) if text else {}


def _json_list_lazy(raw: tuple[Any, ...], i: int) -> list[Any]:
    return json_list_from_pb(raw[i])


def _json_dict_lazy(raw: tuple[Any, ...], i: int) -> dict[str, Any]:
    return json_dict_from_pb(raw[i])


def json_to_pb(value: Any) -> str:
    # NaN and infinities would make text that is not JSON (json.dumps writes `NaN`).
    return json.dumps(value, allow_nan=False)


def union_error(union: str, value: object, members: Mapping[type, Any]) -> str:
    names = ", ".join(t.__name__ for t in members)
    return f"{union} must be one of {names}; got {type(value).__name__}"


# The conversions of `Model._lazy`, by the kind generated classes name.
_LAZY = {
    "timestamp": _ts_lazy,
    "duration": _dur_lazy,
    "tags": _tags_lazy,
    "json_list": _json_list_lazy,
    "json_dict": _json_dict_lazy,
    "rate_limit": _rate_limit_lazy,
}
