"""What the API accepts of an object, read from the field options of the descriptors.

`required` fields must be set; a required field with `condition`/`conditions` must be set only
when every condition it names holds. A condition string names a field of the same message (or
its absence): `CONDITIONS` says which, so that a new condition in the API is noticed by the
tests rather than guessed at. Read-only fields are the server's (see `readonly.py`); write-only
ones are never returned, so an update need not repeat them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from google.protobuf import descriptor

from sdm_async.testing.schema import Message, all_messages, field_options
from sdm_async.testing.status import bad_request

# condition -> (field, holds when that field is set?). Read from the descriptors: every field
# whose condition is "identity-alias" sits beside `identity_set_id` (the identity set whose
# aliases clients connect with); "leased-credentials" marks the shared `username` of the same
# types, needed only when no identity set is given; the discovery pair sits beside
# `discovery_enabled`.
CONDITIONS: dict[str, tuple[str, bool]] = {
    "identity-alias": ("identity_set_id", True),
    "leased-credentials": ("identity_set_id", False),
    "discovery-enabled": ("discovery_enabled", True),
    "discovery-disabled": ("discovery_enabled", False),
}


@dataclass(frozen=True)
class Required:
    field: str
    conditions: tuple[str, ...]  # all must hold for the field to be required; () always
    write_only: bool


def is_set(msg: Message, name: str) -> bool:
    fd = msg.DESCRIPTOR.fields_by_name[name]
    if fd.message_type is not None and not fd.is_repeated:
        return bool(msg.HasField(name))
    return bool(getattr(msg, name))


def holds(msg: Message, condition: str) -> bool:
    """Whether `condition` holds for `msg`; an unknown one never does (nothing is refused on
    a guess)."""
    rule = CONDITIONS.get(condition)
    if rule is None or rule[0] not in msg.DESCRIPTOR.fields_by_name:
        return False
    field, when_set = rule
    return is_set(msg, field) == when_set


def describe(condition: str) -> str:
    field, when_set = CONDITIONS[condition]
    return f"{field} is {'set' if when_set else 'not set'}"


@functools.cache
def required(item: descriptor.Descriptor) -> tuple[Required, ...]:
    found = []
    for fd in item.fields:
        opts = field_options(fd)
        if not opts.required:
            continue
        names = ([opts.condition] if opts.condition else []) + list(opts.conditions)
        conditions = tuple(dict.fromkeys(names))  # `condition` repeats one of `conditions`
        found.append(Required(fd.name, conditions, opts.write_only))
    return tuple(found)


@functools.cache
def condition_names() -> frozenset[str]:
    """Every condition string the descriptors use (for the tests)."""
    names: set[str] = set()
    for item in all_messages():
        for fd in item.fields:
            opts = field_options(fd)
            names.update(c for c in (opts.condition, *opts.conditions) if c)
    return frozenset(names)


def missing(inner: Message, *, creating: bool) -> list[str]:
    """The required fields `inner` leaves unset, each with the condition that requires it."""
    out = []
    for rule in required(inner.DESCRIPTOR):
        if rule.write_only and not creating:
            continue  # never returned, so an update need not repeat it
        if not all(holds(inner, c) for c in rule.conditions):
            continue
        if not is_set(inner, rule.field):
            why = " and ".join(describe(c) for c in rule.conditions)
            out.append(rule.field + (f" (required when {why})" if why else ""))
    return out


def check(method: str, item_field: str, inner: Message, *, creating: bool) -> None:
    """Refuse `inner` as the API does, naming every missing field (never a value)."""
    absent = missing(inner, creating=creating)
    if absent:
        fields = ", ".join(f"{item_field}.{name}" for name in absent)
        verb = "is" if len(absent) == 1 else "are"
        raise bad_request(f"{method}: {fields} {verb} required")
