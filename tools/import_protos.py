"""Write `.proto` sources from a FileDescriptorSet.

The wire contract of the StrongDM API is published as a descriptor set (no comments, no
source). This tool turns it back into `.proto` files whose compiled descriptors are identical
to the input, so that `protos/` can be reviewed, diffed and compiled like any source tree.
It runs only when the reference changes (`make import-protos`); `tests/test_descriptors.py`
proves the round trip field by field.

    python -m tools.import_protos REFERENCE.binpb OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, text_format
from google.protobuf.message import Message

FDP = descriptor_pb2.FieldDescriptorProto

_SCALARS = {
    FDP.TYPE_DOUBLE: "double",
    FDP.TYPE_FLOAT: "float",
    FDP.TYPE_INT64: "int64",
    FDP.TYPE_UINT64: "uint64",
    FDP.TYPE_INT32: "int32",
    FDP.TYPE_FIXED64: "fixed64",
    FDP.TYPE_FIXED32: "fixed32",
    FDP.TYPE_BOOL: "bool",
    FDP.TYPE_STRING: "string",
    FDP.TYPE_BYTES: "bytes",
    FDP.TYPE_UINT32: "uint32",
    FDP.TYPE_SFIXED32: "sfixed32",
    FDP.TYPE_SFIXED64: "sfixed64",
    FDP.TYPE_SINT32: "sint32",
    FDP.TYPE_SINT64: "sint64",
}

_GOOGLE_PREFIX = "google/protobuf/"


def _reparse(options: Message) -> Message:
    """Parse options again so that custom extensions (unknown until options.proto is in the
    default pool) become readable fields."""
    return type(options).FromString(options.SerializeToString())


def _option_value(fd: object, value: object) -> str:
    from google.protobuf.descriptor import FieldDescriptor

    assert isinstance(fd, FieldDescriptor)
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        assert isinstance(value, Message)
        return "{ " + text_format.MessageToString(value, as_one_line=True) + " }"
    if fd.type == FieldDescriptor.TYPE_STRING:
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return "true" if value else "false"
    if fd.type == FieldDescriptor.TYPE_ENUM:
        assert fd.enum_type is not None
        return str(fd.enum_type.values_by_number[int(str(value))].name)
    return str(value)


def _options(options: Message, skip: tuple[str, ...] = ()) -> list[str]:
    """`name = value` strings for every set option, custom extensions in parentheses."""
    out: list[str] = []
    for fd, value in _reparse(options).ListFields():
        if fd.name in skip:
            continue
        name = f"({fd.full_name})" if fd.is_extension else fd.name
        if fd.is_repeated and not fd.is_extension:
            out.extend(f"{name} = {_option_value(fd, v)}" for v in value)
        else:
            out.append(f"{name} = {_option_value(fd, value)}")
    return out


class _Writer:
    def __init__(self, file: descriptor_pb2.FileDescriptorProto) -> None:
        self.file = file
        self.lines: list[str] = []
        # Map entry types are written as map<K, V>; remember them by full name.
        self.maps: dict[str, descriptor_pb2.DescriptorProto] = {}
        for m in file.message_type:
            self._collect_maps("." + file.package, m)

    def _collect_maps(self, scope: str, m: descriptor_pb2.DescriptorProto) -> None:
        name = f"{scope}.{m.name}"
        for n in m.nested_type:
            if n.options.map_entry:
                self.maps[f"{name}.{n.name}"] = n
            self._collect_maps(name, n)

    def emit(self, indent: int, text: str) -> None:
        self.lines.append("  " * indent + text if text else "")

    def type_name(self, f: descriptor_pb2.FieldDescriptorProto) -> str:
        if f.type in _SCALARS:
            return _SCALARS[f.type]
        return f.type_name  # fully qualified with a leading dot: unambiguous to protoc

    def field(self, indent: int, f: descriptor_pb2.FieldDescriptorProto, in_oneof: bool) -> None:
        entry = self.maps.get(f.type_name) if f.type == FDP.TYPE_MESSAGE else None
        if entry is not None:
            key, value = entry.field[0], entry.field[1]
            decl = f"map<{self.type_name(key)}, {self.type_name(value)}>"
        else:
            decl = self.type_name(f)
            if f.label == FDP.LABEL_REPEATED:
                decl = "repeated " + decl
            elif f.proto3_optional:
                decl = "optional " + decl
            elif f.label == FDP.LABEL_REQUIRED:
                decl = "required " + decl
            elif self.file.syntax != "proto3" and not in_oneof:
                decl = "optional " + decl
        opts = _options(f.options) if f.HasField("options") else []
        if f.HasField("default_value"):
            opts.insert(0, f"default = {f.default_value}")
        if f.HasField("json_name"):
            opts.insert(0, f'json_name = "{f.json_name}"')
        suffix = f" [{', '.join(opts)}]" if opts else ""
        self.emit(indent, f"{decl} {f.name} = {f.number}{suffix};")

    def enum(self, indent: int, e: descriptor_pb2.EnumDescriptorProto) -> None:
        self.emit(indent, f"enum {e.name} {{")
        for opt in _options(e.options) if e.HasField("options") else []:
            self.emit(indent + 1, f"option {opt};")
        for v in e.value:
            opts = _options(v.options) if v.HasField("options") else []
            suffix = f" [{', '.join(opts)}]" if opts else ""
            self.emit(indent + 1, f"{v.name} = {v.number}{suffix};")
        for r in e.reserved_range:
            self.emit(indent + 1, f"reserved {r.start} to {r.end};")
        self.emit(indent, "}")

    def message(self, indent: int, m: descriptor_pb2.DescriptorProto) -> None:
        self.emit(indent, f"message {m.name} {{")
        for opt in _options(m.options, skip=("map_entry",)) if m.HasField("options") else []:
            self.emit(indent + 1, f"option {opt};")
        for n in m.nested_type:
            if not n.options.map_entry:
                self.message(indent + 1, n)
        for e in m.enum_type:
            self.enum(indent + 1, e)
        written_oneofs: set[int] = set()
        for f in m.field:
            if f.HasField("oneof_index") and not f.proto3_optional:
                idx = f.oneof_index
                if idx in written_oneofs:
                    continue
                written_oneofs.add(idx)
                decl = m.oneof_decl[idx]
                self.emit(indent + 1, f"oneof {decl.name} {{")
                if decl.HasField("options"):
                    for opt in _options(decl.options):
                        self.emit(indent + 2, f"option {opt};")
                for member in m.field:
                    if member.HasField("oneof_index") and member.oneof_index == idx:
                        self.field(indent + 2, member, in_oneof=True)
                self.emit(indent + 1, "}")
            else:
                self.field(indent + 1, f, in_oneof=False)
        for r in m.reserved_range:
            self.emit(indent + 1, f"reserved {r.start} to {r.end - 1};")
        for name in m.reserved_name:
            self.emit(indent + 1, f'reserved "{name}";')
        self.emit(indent, "}")

    def service(self, s: descriptor_pb2.ServiceDescriptorProto) -> None:
        self.emit(0, f"service {s.name} {{")
        for opt in _options(s.options) if s.HasField("options") else []:
            self.emit(1, f"option {opt};")
        for m in s.method:
            cs = "stream " if m.client_streaming else ""
            ss = "stream " if m.server_streaming else ""
            head = f"rpc {m.name}({cs}{m.input_type}) returns ({ss}{m.output_type})"
            opts = _options(m.options) if m.HasField("options") else []
            if opts:
                self.emit(1, head + " {")
                for opt in opts:
                    self.emit(2, f"option {opt};")
                self.emit(1, "}")
            else:
                self.emit(1, head + ";")
        self.emit(0, "}")

    def render(self) -> str:
        f = self.file
        self.emit(0, "// Generated from the API's descriptor set by tools/import_protos.py.")
        self.emit(0, f'syntax = "{f.syntax or "proto2"}";')
        self.emit(0, "")
        self.emit(0, f"package {f.package};")
        self.emit(0, "")
        for i, dep in enumerate(f.dependency):
            kind = (
                "public " if i in f.public_dependency else "weak " if i in f.weak_dependency else ""
            )
            self.emit(0, f'import {kind}"{dep}";')
        self.emit(0, "")
        for opt in _options(f.options) if f.HasField("options") else []:
            self.emit(0, f"option {opt};")
        for ext in f.extension:
            self.emit(0, "")
            self.emit(0, f"extend {ext.extendee} {{")
            self.field(1, ext, in_oneof=False)
            self.emit(0, "}")
        for m in f.message_type:
            self.emit(0, "")
            self.message(0, m)
        for e in f.enum_type:
            self.emit(0, "")
            self.enum(0, e)
        for s in f.service:
            self.emit(0, "")
            self.service(s)
        return "\n".join(self.lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    source, out_dir = Path(argv[0]), Path(argv[1])
    fds = descriptor_pb2.FileDescriptorSet.FromString(source.read_bytes())
    pool = descriptor_pool.Default()
    for file in fds.file:
        if file.name == "options.proto":
            pool.Add(file)  # makes the custom options readable in every other file
    written = 0
    for file in fds.file:
        if file.name.startswith(_GOOGLE_PREFIX):
            continue
        target = out_dir / file.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_Writer(file).render())
        written += 1
    print(f"wrote {written} .proto files to {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
