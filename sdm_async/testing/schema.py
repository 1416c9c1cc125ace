"""What the emulator knows of the API's shape, derived once from the descriptors and the
generated catalog: for every service method, its message classes, its kind, and where the
object sits in the request and the response."""

from __future__ import annotations

import functools
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor, message_factory

import sdm_async._generated.v1 as _v1
from sdm_async._generated import catalog
from sdm_async._generated.v1 import _pool, options_pb2

Message = Any  # a generated protobuf message (upb); not precisely typeable


def _import_all() -> None:
    """Import every `*_pb2` module of package v1 (legacy included). The client loads them one
    service at a time; the emulator finds messages by name in the v1 pool, so it needs them
    all there first."""
    for mod in pkgutil.walk_packages(_v1.__path__, f"{_v1.__name__}."):
        if mod.name.endswith("_pb2"):
            importlib.import_module(mod.name)


_import_all()
CRUD = frozenset({"create", "get", "update", "delete", "list"})


@dataclass(frozen=True)
class Method:
    service: str  # "Accounts"
    name: str  # "List"
    kind: str  # create/get/update/delete/list, or the snake name of anything else
    request: type[Message]
    response: type[Message]
    item_field: str  # the object's field ("account"), or the list's field ("accounts")
    item: descriptor.Descriptor | None  # the object's message type

    @property
    def full_name(self) -> str:
        return f"{self.service}.{self.name}"


def message_class(name: str) -> type[Message]:
    cls: type[Message] = message_factory.GetMessageClass(
        _pool.POOL.FindMessageTypeByName(f"v1.{name}")
    )
    return cls


def _item_field(kind: str, request: descriptor.Descriptor, response: descriptor.Descriptor) -> str:
    if kind == "list":
        for f in response.fields:
            if f.is_repeated and f.message_type is not None:
                return str(f.name)
        return ""
    for f in request.fields:
        if f.message_type is not None and f.name != "meta":
            return str(f.name)
    for f in response.fields:
        if f.message_type is not None and f.name not in ("meta", "rate_limit"):
            return str(f.name)
    return ""


@functools.cache
def methods() -> dict[str, Method]:
    """Every method of the API by gRPC path (`/v1.Accounts/List`)."""
    table: dict[str, Method] = {}
    for service, (_attr, _prefix, calls) in catalog.SERVICES.items():
        for name, (req_name, resp_name, kind) in calls.items():
            req, resp = message_class(req_name), message_class(resp_name)
            if kind == "list" and name != "List":
                kind = name.lower()  # ListByActor, Logs, ListSecretStores: not the generic list
            if name == "ForceDelete":
                kind = "delete"  # what it forces past does not exist in an emulator
            field = _item_field(kind, req.DESCRIPTOR, resp.DESCRIPTOR)
            holder = resp.DESCRIPTOR if kind == "list" else req.DESCRIPTOR
            item = (
                holder.fields_by_name[field].message_type
                if field in holder.fields_by_name
                else None
            )
            if item is None and field in resp.DESCRIPTOR.fields_by_name:
                item = resp.DESCRIPTOR.fields_by_name[field].message_type
            table[f"/v1.{service}/{name}"] = Method(service, name, kind, req, resp, field, item)
    return table


def id_prefix(service: str) -> str:
    return catalog.SERVICES[service][1]


def union_of(item: descriptor.Descriptor) -> str | None:
    """The oneof of a polymorphic object (`Account` -> "account"), if it is one."""
    entry = catalog.UNIONS.get(item.name)
    return entry[0] if entry else None


def member(msg: Message) -> tuple[str, Message]:
    """(type name, the set member) of a polymorphic object; ("", msg) for a plain one."""
    oneof = union_of(msg.DESCRIPTOR)
    if oneof is None:
        return "", msg
    which = msg.WhichOneof(oneof)
    return (which or ""), (getattr(msg, which) if which else msg)


def required_fields(msg: Message) -> tuple[str, ...]:
    return catalog.REQUIRED.get(msg.DESCRIPTOR.name, ())


# The API's custom options live in the v1 descriptor pool, apart from the default pool; their
# extensions are read by reparsing each option message with that pool's classes.
_FIELD_OPTIONS = message_factory.GetMessageClass(
    _pool.POOL.FindMessageTypeByName("google.protobuf.FieldOptions")
)
_FIELD_EXT = options_pb2.DESCRIPTOR.extensions_by_name["field_options"]


def field_options(fd: descriptor.FieldDescriptor) -> options_pb2.FieldOptions:
    opts: Any = _FIELD_OPTIONS.FromString(fd.GetOptions().SerializeToString())
    result: options_pb2.FieldOptions = opts.Extensions[_FIELD_EXT]
    return result


@functools.cache
def write_only_fields(item: descriptor.Descriptor) -> tuple[str, ...]:
    """Fields the API accepts but never returns (passwords, keys)."""
    return tuple(f.name for f in item.fields if field_options(f).write_only)


@functools.cache
def all_messages() -> tuple[descriptor.Descriptor, ...]:
    """Every message of package v1, nested ones included."""
    found: list[descriptor.Descriptor] = []

    def walk(d: descriptor.Descriptor) -> None:
        found.append(d)
        for nested in d.nested_types:
            walk(nested)

    for mod in pkgutil.iter_modules(_v1.__path__):
        if mod.name.endswith("_pb2"):
            module = importlib.import_module(f"{_v1.__name__}.{mod.name}")
            for d in module.DESCRIPTOR.message_types_by_name.values():
                walk(d)
    return tuple(found)


def nanos(ts: Any) -> int:
    """A Timestamp as nanoseconds since the epoch; 0 for an unset one."""
    return int(ts.seconds) * 1_000_000_000 + int(ts.nanos)
