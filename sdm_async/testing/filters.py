"""The filter language of List calls, compiled to a predicate over stored protobuf items.

Grammar (whitespace around terms, names and ``:`` is ignored)::

    filter  := ""  |  term (sep term)*          sep is "," or whitespace: AND; empty matches all
    term    := name ":" value
    name    := [A-Za-z0-9_]+                    case-insensitive, underscores ignored
    value   := '"' JSON string body '"'         escapes as in JSON: \\" \\\\ \\n \\uXXXX
             | bare                             up to the next "," or space; no '"' or ':'

A value matches a field's string form (strings as is, ``true``/``false``, decimal integers,
enum names with or without their type prefix, or numbers) over the whole string, ignoring
case; ``*`` matches any run of characters, inside quotes too. A repeated field matches when
any element does.

Names are the item's scalar fields (``firstname``, ``first_name`` and ``FirstName`` all mean
``first_name``; a Python porcelain rename such as User ``suspendedRO`` -> ``suspended`` wins),
plus:

- ``tags``: ``tags:env=prod`` matches a tag pair, ``tags:env`` a pair of any value (any field
  of type ``Tags`` works this way under its own name);
- polymorphic items (Account, Resource, Node, ...: one oneof of messages): the fields of every
  member, looked up in the member that is set, and ``type`` (or the oneof's ``filter_name``
  option, ``cloud`` for Connector) matching the set member's name;
- history records (``activity_id`` plus one wrapped object): the wrapped object's names too.

Timestamps, durations, other messages, bytes and write-only fields (passwords, keys: the API
never returns them, so filtering must not reveal them) are not filterable.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Callable, Iterator
from operator import attrgetter
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, OneofDescriptor
from google.protobuf.message import Message

from sdm_async._generated.v1 import _pool, options_pb2
from sdm_async.testing.schema import field_options as _field_options

__all__ = ["FilterError", "compile_filter", "filter_fields"]

Predicate = Callable[[Message], bool]
_Match = Callable[[str], bool]  # applied to a casefolded string form


class FilterError(ValueError):
    """A filter that cannot be compiled; the message says what is wrong and where."""

    def __init__(self, text: str, problem: str, position: int, hint: str = "") -> None:
        super().__init__(f"filter {_excerpt(text)!r}: {problem} at position {position}{hint}")
        self.text = text
        self.position = position


def _excerpt(text: str, size: int = 200) -> str:
    """`text`, or its start and end when long: the error quotes it, and must stay short."""
    if len(text) <= size:
        return text
    return f"{text[: size * 2 // 3]}...{text[-size // 3 :]}"


def compile_filter(text: str, descriptor: Descriptor) -> Predicate:
    """Parse `text` once into a predicate over messages of type `descriptor`.

    Raises FilterError for malformed text or a name that is unknown or not filterable.
    """
    table = _table(descriptor)
    preds: list[Predicate] = []
    # Terms are resolved as they are parsed, so that the first error in the text is reported.
    for name, pos, value in _parse(text):
        entry = table.get(_norm(name))
        if entry is None:
            known = filter_fields(descriptor)
            close = difflib.get_close_matches(_norm(name), known, n=1)
            hint = f"; did you mean {close[0]!r}? fields: " if close else "; fields: "
            raise FilterError(text, f"unknown field {name!r}", pos, hint + ", ".join(known))
        if isinstance(entry, _Blocked):
            raise FilterError(text, f"field {name!r} {entry.reason} and cannot be filtered", pos)
        preds.append(entry.compile(value, ""))
    if not preds:
        return _always
    if len(preds) == 1:
        return preds[0]

    def all_terms(m: Message) -> bool:
        for p in preds:
            if not p(m):
                return False
        return True

    return all_terms


def filter_fields(descriptor: Descriptor) -> list[str]:
    """The names a filter on `descriptor` items accepts, normalised (``firstname``), sorted."""
    return sorted(k for k, e in _table(descriptor).items() if not isinstance(e, _Blocked))


def _always(m: Message) -> bool:
    return True


def _never(m: Message) -> bool:
    return False


def _norm(name: str) -> str:
    return name.replace("_", "").casefold()


# ---------------------------------------------------------------------------------------------
# Parsing


_NAME = re.compile(r"[A-Za-z0-9_]+")
# Terms are separated by commas or whitespace (the official Terraform provider joins them with
# spaces), so a bare value ends at either; values with spaces must be quoted.
_BARE_END = re.compile(r"[,\s]")
# strict=False lets raw control characters (a literal tab) through, as the text is unambiguous.
_JSON = json.JSONDecoder(strict=False)


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _parse(text: str) -> Iterator[tuple[str, int, str]]:
    """Yield (name, position of the name, unquoted value) for each term, in order."""
    n = len(text)
    i = _skip_ws(text, 0)
    if i == n:
        return
    while True:
        m = _NAME.match(text, i)
        if m is None:
            if i == n or text[i] == ",":
                raise FilterError(text, "empty term", i)
            raise FilterError(text, "expected a field name", i, f" (found {text[i]!r})")
        name, name_pos = m.group(), i
        i = _skip_ws(text, m.end())
        if i == n or text[i] != ":":
            raise FilterError(text, f"expected ':' after {name!r}", i)
        i = _skip_ws(text, i + 1)
        if i < n and text[i] == '"':
            body_end = i + 1
            while body_end < n and text[body_end] != '"':
                body_end += 2 if text[body_end] == "\\" else 1  # an escape covers 2 chars
            if body_end >= n:
                raise FilterError(text, "unterminated quoted value starting", i)
            try:
                value = _JSON.decode(text[i : body_end + 1])
            except json.JSONDecodeError as e:
                raise FilterError(text, "invalid escape in quoted value", i + e.pos) from None
            i = body_end + 1
            if i < n and not (text[i] == "," or text[i].isspace()):
                raise FilterError(text, "expected ',' or a space after the quoted value", i)
        else:
            found = _BARE_END.search(text, i)
            end = n if found is None else found.start()
            raw = text[i:end]
            # A quote or colon in a bare value means a broken quote or a missing separator
            # (`email:a:b`): refuse rather than silently match nothing.
            for bad, advice in (
                ('"', "quote the whole value"),
                (":", "quote the value"),
            ):
                at = raw.find(bad)
                if at >= 0:
                    raise FilterError(text, f"{bad!r} in an unquoted value", i + at, f"; {advice}")
            value = raw.strip()
            if not value:
                hint = '; write "" to match an empty value'
                raise FilterError(text, f"expected a value after '{name}:'", i, hint)
            i = end
        yield name, name_pos, value
        i = _skip_ws(text, i)
        if i == n:
            return
        if text[i] == ",":
            i = _skip_ws(text, i + 1)


# ---------------------------------------------------------------------------------------------
# Values


@functools.lru_cache(maxsize=1024)
def _pattern(value: str) -> _Match:
    """Whole-string, case-insensitive match with `*` wildcards, for casefolded subjects.

    Linear in the subject: never a regular expression, whose backtracking on many `*` takes
    seconds per item and holds up every other call. Cached because a term on a polymorphic
    item compiles the same value once per member.
    """
    v = value.casefold()
    parts = v.split("*")
    if len(parts) == 1:
        return v.__eq__
    head, tail = parts[0], parts[-1]
    middle = [p for p in parts[1:-1] if p]
    if not middle:
        if not head and not tail:
            return lambda s: True
        if not tail:
            return lambda s: s.startswith(head)
        if not head:
            return lambda s: s.endswith(tail)
        size = len(head) + len(tail)
        return lambda s: len(s) >= size and s.startswith(head) and s.endswith(tail)
    if not head and not tail and len(middle) == 1:
        sub = middle[0]
        return lambda s: sub in s
    return functools.partial(_glob, head, tuple(middle), tail)


def _glob(head: str, middle: tuple[str, ...], tail: str, s: str) -> bool:
    """`head*m1*m2*...*tail` over the whole of `s`. Taking each middle part at its leftmost
    place after the previous one is enough: a later place only leaves less room for the rest.
    """
    end = len(s) - len(tail)
    if end < len(head) or not s.startswith(head) or not s.endswith(tail):
        return False
    at = len(head)
    for part in middle:
        found = s.find(part, at, end)
        if found < 0:
            return False
        at = found + len(part)
    return True


def _scalar_str(fd: FieldDescriptor) -> Callable[[Any], str]:
    """How a scalar value of `fd` reads as text, in lower case like the casefolded pattern."""
    if fd.type == FieldDescriptor.TYPE_STRING:
        return str.casefold
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return lambda v: "true" if v else "false"
    return str  # integers in decimal; floats as Python prints them


def _enum_names(fd: FieldDescriptor) -> dict[int, tuple[str, ...]]:
    """Each enum number -> the texts naming it: full name, name without prefix, number."""
    assert fd.enum_type is not None
    values = fd.enum_type.values
    # The `TYPE_NAME_` prefix (AUTHORIZATION_POLICY_STATE_ACTIVE -> ACTIVE): what all names
    # share, which is what the lexicographically first and last share, cut after a '_'.
    first, last = min(v.name for v in values), max(v.name for v in values)
    size = 0
    while size < min(len(first), len(last)) and first[size] == last[size]:
        size += 1
    prefix = first[: first.rfind("_", 0, size) + 1]
    return {
        v.number: (v.name.casefold(), v.name.removeprefix(prefix).casefold(), str(v.number))
        for v in values
    }


# ---------------------------------------------------------------------------------------------
# Field tables: normalised name -> how a term on that name is compiled, built once per type.


class _Entry:
    def compile(self, value: str, prefix: str) -> Predicate:
        """A predicate for `value`; `prefix` is the dotted path from the item to the message
        holding this field ("" for the item itself, "account." in AccountHistory)."""
        raise NotImplementedError


class _Blocked(_Entry):
    """A name that exists but cannot be filtered; `reason` completes "field 'x' ..."."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _Scalar(_Entry):
    """A string, number, bool or enum field, or a repeated one (any element matches)."""

    def __init__(self, fd: FieldDescriptor) -> None:
        self.fd = fd

    def compile(self, value: str, prefix: str) -> Predicate:
        fd, match = self.fd, _pattern(value)
        get = attrgetter(prefix + fd.name)
        repeated = fd.is_repeated
        if fd.type == FieldDescriptor.TYPE_ENUM:
            names = _enum_names(fd)
            # Known numbers are decided now; only numbers outside the enum are matched per item.
            ok = frozenset(n for n, texts in names.items() if any(match(t) for t in texts))

            def enum_ok(v: int) -> bool:
                return v in ok or (v not in names and match(str(v)))

            if repeated:
                return lambda m: any(enum_ok(v) for v in get(m))
            return lambda m: enum_ok(get(m))
        if fd.type == FieldDescriptor.TYPE_BOOL and not repeated:
            on, off = match("true"), match("false")
            if on == off:
                return _always if on else _never
            return lambda m: bool(get(m)) == on
        text = _scalar_str(fd)
        if repeated:
            return lambda m: any(match(text(v)) for v in get(m))
        return lambda m: match(text(get(m)))


class _Tags(_Entry):
    """`name=value` against the pairs of a Tags field; no `=` means any value."""

    def __init__(self, field: str) -> None:
        self.field = field

    def compile(self, value: str, prefix: str) -> Predicate:
        name, eq, val = value.partition("=")
        match_name = _pattern(name.strip())
        get = attrgetter(f"{prefix}{self.field}.pairs")
        if not eq:
            return lambda m: any(match_name(p.name.casefold()) for p in get(m))
        match_value = _pattern(val.strip())
        return lambda m: any(
            match_name(p.name.casefold()) and match_value(p.value.casefold()) for p in get(m)
        )


class _Kind(_Entry):
    """`type:user`: the name of the oneof member that is set (or its message type's name)."""

    def __init__(self, oneof: OneofDescriptor) -> None:
        self.oneof = oneof

    def compile(self, value: str, prefix: str) -> Predicate:
        match = _pattern(_norm(value))
        ok = frozenset(
            f.name
            for f in self.oneof.fields
            if match(_norm(f.name)) or match(_norm(_message_type(f).name))
        )
        name = self.oneof.name
        holder = attrgetter(prefix[:-1]) if prefix else None
        if holder is None:
            return lambda m: m.WhichOneof(name) in ok
        return lambda m: holder(m).WhichOneof(name) in ok


class _Dispatch(_Entry):
    """A name of a polymorphic item: compiled per member, applied in the member that is set."""

    def __init__(self, oneof: OneofDescriptor, members: dict[str, _Entry]) -> None:
        self.oneof = oneof
        self.members = members

    def compile(self, value: str, prefix: str) -> Predicate:
        by_member = {k: e.compile(value, f"{prefix}{k}.") for k, e in self.members.items()}
        name = self.oneof.name
        holder = attrgetter(prefix[:-1]) if prefix else None

        def pred(m: Message) -> bool:
            which = (m if holder is None else holder(m)).WhichOneof(name)
            p = by_member.get(which) if which is not None else None
            return p is not None and p(m)

        return pred


class _Nested(_Entry):
    """A name of the object a history record wraps."""

    def __init__(self, field: str, inner: _Entry) -> None:
        self.field = field
        self.inner = inner

    def compile(self, value: str, prefix: str) -> Predicate:
        return self.inner.compile(value, f"{prefix}{self.field}.")


_ONEOF_OPTIONS = message_factory.GetMessageClass(
    _pool.POOL.FindMessageTypeByName("google.protobuf.OneofOptions")
)
_ONEOF_EXT = options_pb2.DESCRIPTOR.extensions_by_name["oneof_options"]


def _oneof_filter_name(oneof: OneofDescriptor) -> str:
    opts: Any = _ONEOF_OPTIONS.FromString(oneof.GetOptions().SerializeToString())
    ext: options_pb2.OneofOptions = opts.Extensions[_ONEOF_EXT]
    return ext.filter_name


def _message_type(fd: FieldDescriptor) -> Descriptor:
    assert fd.message_type is not None, fd.full_name  # only called on message fields
    return fd.message_type


def _leaf(fd: FieldDescriptor, write_only: bool) -> _Entry:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        msg = _message_type(fd)
        if msg.full_name == "v1.Tags":
            return _Tags(fd.name)
        if msg.GetOptions().map_entry:
            return _Blocked("is a map")
        if fd.is_repeated:
            return _Blocked(f"is a list of {msg.name}")
        return _Blocked(f"is of type {msg.name}")
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return _Blocked("holds bytes")
    if write_only:
        return _Blocked("is write-only")
    return _Scalar(fd)


def _own_fields(d: Descriptor, skip: OneofDescriptor | None) -> dict[str, _Entry]:
    plain: dict[str, _Entry] = {}
    renamed: dict[str, _Entry] = {}
    for fd in d.fields:
        if skip is not None and fd.containing_oneof is skip:
            continue
        opts = _field_options(fd)
        entry = _leaf(fd, opts.write_only)
        plain[_norm(fd.name)] = entry
        python = opts.custom.porcelain_name_override.get("python")
        if python:
            renamed[_norm(python)] = entry
    # The SDK's attribute name wins: User.suspended reads proto `suspendedRO`, not `suspended`.
    return {**plain, **renamed}


def _polymorphic(d: Descriptor) -> OneofDescriptor | None:
    """The oneof that makes `d` a wrapper of alternative messages (Account, Resource, Node)."""
    found = [
        o
        for o in d.oneofs
        if o.fields and all(f.type == FieldDescriptor.TYPE_MESSAGE for f in o.fields)
    ]
    return found[0] if len(found) == 1 else None


def _wrapped(d: Descriptor) -> FieldDescriptor | None:
    """The object a history record wraps: records carry `activity_id` and one message that
    is not a well-known type (AccountHistory.account)."""
    if "activity_id" not in d.fields_by_name:
        return None
    found = [
        f
        for f in d.fields
        if f.type == FieldDescriptor.TYPE_MESSAGE
        and not f.is_repeated
        and not _message_type(f).full_name.startswith("google.protobuf.")
    ]
    return found[0] if len(found) == 1 else None


@functools.cache
def _table(d: Descriptor, history: bool = True) -> dict[str, _Entry]:
    poly = _polymorphic(d)
    table = _own_fields(d, poly)
    if poly is not None:
        per_member = [(f.name, _own_fields(_message_type(f), None)) for f in poly.fields]
        for name in {n for _, fields in per_member for n in fields}:
            if name in table:
                continue
            found = [(k, fields[name]) for k, fields in per_member if name in fields]
            usable = {k: e for k, e in found if not isinstance(e, _Blocked)}
            table[name] = _Dispatch(poly, usable) if usable else found[0][1]
        # The discriminator wins over a member field of that name (secret engines' `type`).
        table[_norm(_oneof_filter_name(poly) or "type")] = _Kind(poly)
    wrapped = _wrapped(d) if history else None
    if wrapped is not None:
        for name, entry in _table(_message_type(wrapped), history=False).items():
            nested = entry if isinstance(entry, _Blocked) else _Nested(wrapped.name, entry)
            table.setdefault(name, nested)
    return table
