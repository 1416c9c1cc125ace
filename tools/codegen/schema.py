"""Read the compiled descriptor set into the few facts the emitters need.

Everything the Python surface looks like is decided here, from the API's own options:
which messages are models (`message_options.porcelain`, `targets`), each attribute's name
(`porcelain_name_override["python"]`, else the field name in lower case), how a value is
converted (timestamps, durations, tags, JSON access rules, nested models, oneof unions),
which fields are credentials, and which request fields become method parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message import Message

FDP = descriptor_pb2.FieldDescriptorProto

# The official Python SDK leaves the `type` discriminator of secret engines out of its models.
SKIPPED_FIELDS = {
    ("ActiveDirectoryEngine", "type"),
    ("KeyValueEngine", "type"),
    ("MysqlEngine", "type"),
    ("PostgresEngine", "type"),
    ("SqlserverEngine", "type"),
}

# What a snapshot client offers of each service (official: `SnapshotAccounts.get/list`).
SNAPSHOT_METHODS = ("get", "list")

SCALAR_DEFAULTS = {
    FDP.TYPE_STRING: ("''", "str"),
    FDP.TYPE_BYTES: ("b''", "bytes"),
    FDP.TYPE_BOOL: ("False", "bool"),
    FDP.TYPE_DOUBLE: ("0.0", "float"),
    FDP.TYPE_FLOAT: ("0.0", "float"),
}
for _t in (
    FDP.TYPE_INT32,
    FDP.TYPE_INT64,
    FDP.TYPE_UINT32,
    FDP.TYPE_UINT64,
    FDP.TYPE_SINT32,
    FDP.TYPE_SINT64,
    FDP.TYPE_FIXED32,
    FDP.TYPE_FIXED64,
    FDP.TYPE_SFIXED32,
    FDP.TYPE_SFIXED64,
):
    SCALAR_DEFAULTS[_t] = ("0", "int")


@dataclass
class Field:
    name: str  # Python attribute
    proto: str  # protobuf field name
    kind: str  # scalar | timestamp | duration | tags | json_list | json_dict | model | union | enum
    repeated: bool = False
    target: str = ""  # model, union or enum name for those kinds
    py_type: str = ""
    default: str = "None"
    credential: bool = False
    read_only: bool = False
    required: bool = False
    conditional: bool = False  # required only when its condition(s) hold


@dataclass
class Model:
    name: str
    file: str
    fields: list[Field]
    pb_name: str  # message name inside its _pb2 module


@dataclass
class Union:
    """A message whose porcelain is one of several models (Account: User | Service | Token)."""

    name: str
    file: str
    oneof: str
    members: list[tuple[str, str]]  # (proto field, model name)


@dataclass
class Enum:
    name: str
    file: str
    values: list[tuple[str, str]]  # (python member, proto value name)


@dataclass
class Method:
    service: str
    name: str  # proto method name
    py_name: str
    request: str
    response: str
    params: list[Field]
    is_list: bool
    list_field: str = ""  # repeated field of the response that a list iterates
    item: Field | None = None
    has_get_meta: bool = False  # request.meta is GetRequestMetadata (snapshot-able)
    has_rate_limit: bool = False  # the response carries RateLimitMetadata


@dataclass
class Service:
    name: str
    file: str
    py_attr: str
    methods: list[Method]
    id_prefix: str = ""
    snapshot: bool = True


@dataclass
class Schema:
    files: list[str]
    models: dict[str, Model] = field(default_factory=dict)
    unions: dict[str, Union] = field(default_factory=dict)
    enums: dict[str, Enum] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)
    message_file: dict[str, str] = field(default_factory=dict)


def snake(name: str) -> str:
    """`GetSSHCAPublicKey` -> `get_sshca_public_key`, `VerifyJWT` -> `verify_jwt`."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    return s.lower()


def module_name(proto_file: str) -> str:
    return proto_file.removesuffix(".proto").replace("/", ".")


def targets_python(targets: list[str]) -> bool:
    if not targets:
        return True
    if "!python" in targets:
        return False
    positive = [t for t in targets if not t.startswith("!")]
    return not positive or "*" in positive or "python" in positive


class _Options:
    """Custom options, readable once options.proto is in the default pool."""

    def __init__(self, options_file: descriptor_pb2.FileDescriptorProto) -> None:
        pool = descriptor_pool.Default()
        try:
            pool.FindFileByName("options.proto")
        except KeyError:
            pool.Add(options_file)
        self.field_ext = pool.FindExtensionByName("v1.field_options")
        self.message_ext = pool.FindExtensionByName("v1.message_options")
        self.service_ext = pool.FindExtensionByName("v1.service_options")
        self.method_ext = pool.FindExtensionByName("v1.method_options")

    @staticmethod
    def _ext(options: Message, ext: Any) -> Any:
        parsed: Any = type(options).FromString(options.SerializeToString())
        return parsed.Extensions[ext]

    def field(self, f: FDP) -> Any:
        return self._ext(f.options, self.field_ext)

    def message(self, m: descriptor_pb2.DescriptorProto) -> Any:
        return self._ext(m.options, self.message_ext)

    def service(self, s: descriptor_pb2.ServiceDescriptorProto) -> Any:
        return self._ext(s.options, self.service_ext)

    def method(self, m: descriptor_pb2.MethodDescriptorProto) -> Any:
        return self._ext(m.options, self.method_ext)


def load(descriptor_set: Path) -> Schema:
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    files = [f for f in fds.file if not f.name.startswith("google/")]
    opts = _Options(next(f for f in files if f.name == "options.proto"))
    schema = Schema(files=[f.name for f in files])
    messages: dict[str, tuple[str, descriptor_pb2.DescriptorProto]] = {}
    map_entries: set[str] = set()
    for f in files:
        for m in f.message_type:
            messages[f".v1.{m.name}"] = (f.name, m)
            schema.message_file[m.name] = f.name
            map_entries.update(
                f".v1.{m.name}.{n.name}" for n in m.nested_type if n.options.map_entry
            )
        for e in f.enum_type:
            prefix = snake(e.name).upper() + "_"
            values = [(v.name.removeprefix(prefix), v.name) for v in e.value]
            schema.enums[e.name] = Enum(e.name, f.name, values)

    def is_porcelain(m: descriptor_pb2.DescriptorProto) -> bool:
        mo = opts.message(m)
        return bool(mo.porcelain) and targets_python(list(mo.targets))

    def is_union(m: descriptor_pb2.DescriptorProto) -> bool:
        real = [o for o in m.oneof_decl]
        return (
            len(real) == 1 and all(f.HasField("oneof_index") for f in m.field) and len(m.field) > 1
        )

    for file, m in messages.values():
        if not is_porcelain(m):
            continue
        if is_union(m):
            members = [
                (f.name, f.type_name.rsplit(".", 1)[1])
                for f in m.field
                if is_porcelain(messages[f.type_name][1])  # e.g. go-only node kinds
                and targets_python(list(opts.field(f).targets))
            ]
            schema.unions[m.name] = Union(m.name, file, m.oneof_decl[0].name, members)

    def convert_field(owner: str, f: FDP, force: bool = False) -> Field | None:
        fo = opts.field(f)
        porcelain = force or fo.porcelain
        if not porcelain or not targets_python(list(fo.targets)):
            return None
        custom = fo.custom
        name = custom.porcelain_name_override.get("python") or f.name.lower()
        if (owner, name) in SKIPPED_FIELDS:
            return None
        repeated = f.label == FDP.LABEL_REPEATED
        out = Field(
            name=name,
            proto=f.name,
            kind="scalar",
            repeated=repeated,
            credential=bool(fo.is_credential or fo.write_only or fo.terraform_sensitive),
            read_only=bool(fo.read_only),
            required=bool(fo.required),
            conditional=bool(fo.condition or fo.conditions),
        )
        converter = custom.converter
        if converter == "access_rules":
            out.kind, out.py_type, out.default = "json_list", "list[typing.Any]", "[]"
            return out
        if converter == "access_rule":
            out.kind, out.py_type, out.default = "json_dict", "dict[str, typing.Any]", "{}"
            return out
        if converter:
            raise SystemExit(f"unknown converter {converter!r} on {owner}.{f.name}")
        if f.type in SCALAR_DEFAULTS:
            out.default, out.py_type = SCALAR_DEFAULTS[f.type]
        elif f.type == FDP.TYPE_ENUM:
            enum = f.type_name.rsplit(".", 1)[1]
            out.kind, out.target, out.py_type = "enum", enum, enum
        elif f.type_name == ".google.protobuf.Timestamp":
            out.kind, out.py_type = "timestamp", "datetime.datetime | None"
        elif f.type_name == ".google.protobuf.Duration":
            out.kind, out.py_type = "duration", "datetime.timedelta | None"
        elif f.type_name == ".v1.Tags":
            out.kind, out.py_type, out.default = "tags", "dict[str, str]", "{}"
        elif f.type_name in map_entries:
            out.kind, out.py_type, out.default = "map", "dict[str, str]", "{}"
            out.repeated = False
            return out
        elif opts.message(messages[f.type_name][1]).custom.converter:
            # A message the SDKs show as a dict: {entry.name: model(entry.config)}.
            mconv = opts.message(messages[f.type_name][1]).custom.converter
            if mconv != "log_category_config_map":
                raise SystemExit(f"unknown message converter {mconv!r} on {owner}.{f.name}")
            out.kind, out.target = "config_map", "LogCategoryConfig"
            out.py_type, out.default = "dict[str, LogCategoryConfig]", "{}"
        else:
            target = f.type_name.rsplit(".", 1)[1]
            out.target = target
            out.kind = "union" if target in schema.unions else "model"
            out.py_type = f"{target} | None"
        if repeated:
            item_type = out.py_type.removesuffix(" | None")
            out.py_type, out.default = f"list[{item_type}]", "[]"
        return out

    for file, m in messages.values():
        if not is_porcelain(m) or m.name in schema.unions:
            continue
        fields = [c for f in m.field if (c := convert_field(m.name, f)) is not None]
        fields.sort(key=lambda x: x.proto)  # the official constructors take fields in this order
        schema.models[m.name] = Model(m.name, file, fields, m.name)

    for f in files:
        for s in f.service:
            so = opts.service(s)
            if not targets_python(list(so.targets)):
                continue
            svc = Service(
                name=s.name,
                file=f.name,
                py_attr=snake(s.name),
                methods=[],
                id_prefix=str(so.id_prefix),
                snapshot=not so.disable_snapshot_vertical,
            )
            for md in s.method:
                if not targets_python(list(opts.method(md).targets)):
                    continue
                _, req = messages[md.input_type]
                _, resp = messages[md.output_type]
                meta = next((x for x in req.field if x.name == "meta"), None)
                params = [c for x in req.field if (c := convert_field(req.name, x)) is not None]
                method = Method(
                    service=s.name,
                    name=md.name,
                    py_name=snake(md.name),
                    request=req.name,
                    response=resp.name,
                    params=params,
                    is_list=meta is not None and meta.type_name == ".v1.ListRequestMetadata",
                    has_get_meta=meta is not None and meta.type_name == ".v1.GetRequestMetadata",
                    has_rate_limit=any(x.name == "rate_limit" for x in resp.field),
                )
                if method.is_list:
                    iterable = [x for x in resp.field if opts.field(x).iterable]
                    assert len(iterable) == 1, f"{s.name}.{md.name}: no single iterable field"
                    method.list_field = iterable[0].name
                    method.item = convert_field(resp.name, iterable[0], force=True)
                if method.is_list:  # list(<ids>..., filter, *args): the filter goes last
                    method.params.sort(key=lambda p: p.name == "filter")
                svc.methods.append(method)
            # A snapshot client offers the reads that take a point in time; the legacy
            # services predate snapshots.
            svc.snapshot = (
                svc.snapshot
                and not f.name.startswith("legacy/")
                and any(m.py_name in SNAPSHOT_METHODS for m in svc.methods)
            )
            schema.services.append(svc)
    return schema
