"""Generated code is fresh, and our protos compile to the API's descriptors exactly."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, text_format

from tools.codegen.protoc import run_protoc

from .conftest import reference_file

ROOT = Path(__file__).resolve().parents[1]


def test_generated_code_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.codegen", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _normalized(fdp: descriptor_pb2.FileDescriptorProto, drop_json_name: bool) -> list[str]:
    """Text form with custom options decoded (so option bytes order does not matter)."""
    copy = descriptor_pb2.FileDescriptorProto.FromString(fdp.SerializeToString())
    if drop_json_name:  # protoc adds json_name; the reference leaves it out

        def strip(m: descriptor_pb2.DescriptorProto) -> None:
            for f in m.field:
                f.ClearField("json_name")
            for n in m.nested_type:
                strip(n)

        for m in copy.message_type:
            strip(m)
        for e in copy.extension:
            e.ClearField("json_name")
    return text_format.MessageToString(copy).splitlines()


def test_descriptors_match_the_reference_field_by_field() -> None:
    ref_set = descriptor_pb2.FileDescriptorSet.FromString(
        reference_file("strongdm-api-v1.binpb").read_bytes()
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "py"
        out.mkdir()
        ours_path = Path(tmp) / "ours.binpb"
        run_protoc(ROOT / "protos", out, ours_path)
        ours_set = descriptor_pb2.FileDescriptorSet.FromString(ours_path.read_bytes())
    ref = {f.name: f for f in ref_set.file if not f.name.startswith("google/")}
    ours = {f.name: f for f in ours_set.file if not f.name.startswith("google/")}
    assert sorted(ours) == sorted(ref), "proto file names differ"
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName("options.proto")
    except KeyError:
        pool.Add(ref["options.proto"])  # decode custom options in both sides
    differing = []
    for name in sorted(ref):
        a = _normalized(ref[name], drop_json_name=False)
        b = _normalized(ours[name], drop_json_name=not any("json_name" in x for x in a))
        if a != b:
            differing.append(name)
    assert differing == [], f"{len(differing)} files differ from the reference: {differing}"
    services = sum(len(f.service) for f in ref.values())
    assert services == 75
