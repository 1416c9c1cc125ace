"""Compile protos/ with protoc and make the output importable as `sdm_async._generated.v1`.

protoc writes top-level imports (`import options_pb2`) and registers every file in the
process-wide default descriptor pool. Two rewrites fix that:

- imports between our files become relative, so the modules live inside the package;
- the files go into a private pool (`_pool.POOL`), so `sdm_async` and the official `strongdm`
  package, which registers the same file names, can be imported side by side.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc_tools  # type: ignore[import-untyped]

PROTO_INCLUDE = Path(grpc_tools.__file__).parent / "_proto"

POOL_MODULE = '''\
# DO NOT EDIT: written by `make generate` (tools/codegen/protoc.py).
"""The descriptor pool of the v1 API, apart from the process-wide default pool."""

from google.protobuf import descriptor_pb2, descriptor_pool, duration_pb2, timestamp_pb2

POOL = descriptor_pool.DescriptorPool()
for _wkt in (descriptor_pb2, duration_pb2, timestamp_pb2):
    POOL.AddSerializedFile(_wkt.DESCRIPTOR.serialized_pb)
'''


def proto_files(proto_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(proto_dir)) for p in proto_dir.rglob("*.proto"))


def run_protoc(proto_dir: Path, out_dir: Path, descriptor_set: Path) -> None:
    """Generate messages, grpc stubs and .pyi, and the compiled descriptor set."""
    bin_dir = str(Path(sys.executable).parent)  # protoc-gen-mypy lives beside the interpreter
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{proto_dir}",
        f"-I{PROTO_INCLUDE}",
        f"--python_out={out_dir}",
        f"--mypy_out=quiet:{out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--descriptor_set_out={descriptor_set}",
        "--include_imports",
        *proto_files(proto_dir),
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    errors = [line for line in result.stderr.splitlines() if "is unused" not in line]
    if result.returncode != 0 or any("error" in line.lower() for line in errors):
        raise SystemExit("protoc failed:\n" + result.stderr)


def _relative(module_depth: int, target: str) -> str:
    """`legacy.role_grants_pb2` seen from a module `depth` folders deep -> `from .. import x`."""
    parts = target.split(".")
    package = "." * (module_depth + 1) + ".".join(parts[:-1])
    return f"from {package} import {parts[-1]}"


def _rewrite(text: str, depth: int, own: set[str]) -> str:
    out = []
    for line in text.splitlines():
        m = re.match(r"^import (\w+_pb2) as (\w+)$", line)
        if m and m.group(1) in own:
            line = f"{_relative(depth, m.group(1))} as {m.group(2)}"
        m = re.match(r"^from ([\w.]+) import (\w+_pb2) as (\w+)$", line)
        if m and f"{m.group(1)}.{m.group(2)}" in own:
            line = f"{_relative(depth, m.group(1) + '.' + m.group(2))} as {m.group(3)}"
        if "_descriptor_pool.Default().AddSerializedFile" in line:
            line = line.replace("_descriptor_pool.Default()", "_pool.POOL")
        out.append(line)
        if line.startswith("from google.protobuf.internal import builder as _builder"):
            out.append(_relative(depth, "_pool") + "")
    return "\n".join(out) + "\n"


def generate(proto_dir: Path, package_dir: Path) -> Path:
    """Write `package_dir` (sdm_async/_generated/v1) afresh; return the descriptor set path
    (inside a temp dir the caller owns through the returned path's parent)."""
    tmp = Path(tempfile.mkdtemp(prefix="sdm-codegen-"))
    raw = tmp / "raw"
    raw.mkdir()
    descriptor_set = tmp / "v1.binpb"
    run_protoc(proto_dir, raw, descriptor_set)
    own = {
        str(p.relative_to(raw).with_suffix("")).replace(os.sep, ".") for p in raw.rglob("*_pb2.py")
    }
    if package_dir.exists():
        shutil.rmtree(package_dir)
    for src in sorted(raw.rglob("*")):
        if src.is_dir() or src.suffix not in (".py", ".pyi"):
            continue
        rel = src.relative_to(raw)
        dest = package_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        depth = len(rel.parts) - 1
        dest.write_text(_rewrite(src.read_text(), depth, own))
    for folder in [package_dir, *[p for p in package_dir.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").write_text("# DO NOT EDIT: written by `make generate`.\n")
    (package_dir / "_pool.py").write_text(POOL_MODULE)
    return descriptor_set
