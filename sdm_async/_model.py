"""The base of every model class, and the conversions generated converters call.

Listing is the hot path, so converters build models in one pass (`_new` + slot stores) and
convert timestamps with integer arithmetic rather than `Timestamp.ToDatetime()`. The helpers
below run once per listed item: `timedelta` takes positional arguments (keywords cost about a
third more) and tags are filled by a plain loop (cheaper than a comprehension's frame).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_ZERO = datetime.timedelta(0)
_timedelta = datetime.timedelta
_M = TypeVar("_M", bound="Model")

_new = object.__new__


class Model:
    """Common behaviour of the API's models: keyword construction (generated), equality,
    `to_dict()`/`from_dict()`, and a `repr` that masks credential fields."""

    __slots__: tuple[str, ...] = ()
    _secrets: ClassVar[frozenset[str]] = frozenset()

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


def tags_to_pb(value: Mapping[str, str], tags: Any) -> None:
    pairs = tags.pairs
    for name, v in value.items():
        pairs.add(name=name, value=v)


def json_list_from_pb(text: str) -> list[Any]:
    return json.loads(text) if text else []


def json_dict_from_pb(text: str) -> dict[str, Any]:
    return json.loads(text) if text else {}


def json_to_pb(value: Any) -> str:
    # NaN and infinities would make text that is not JSON (json.dumps writes `NaN`).
    return json.dumps(value, allow_nan=False)


def union_error(union: str, value: object, members: Mapping[type, Any]) -> str:
    names = ", ".join(t.__name__ for t in members)
    return f"{union} must be one of {names}; got {type(value).__name__}"
