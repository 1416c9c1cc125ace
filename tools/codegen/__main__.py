"""`python -m tools.codegen [--check]`: regenerate sdm_async/_generated from protos/.

With --check, generate into a temporary folder and fail if anything differs from the
committed files (the freshness test runs this).
"""

from __future__ import annotations

import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from tools.codegen import emit, protoc, schema

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
TARGET = ROOT / "sdm_async" / "_generated"


def generate(target: Path) -> None:
    descriptor_set = protoc.generate(PROTOS, target / "v1")
    try:
        emit.write_all(schema.load(descriptor_set), target)
    finally:
        shutil.rmtree(descriptor_set.parent, ignore_errors=True)


def _differences(a: Path, b: Path) -> list[str]:
    out: list[str] = []
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    out += [f"only in generated: {x}" for x in cmp.left_only]
    out += [f"only in committed: {x}" for x in cmp.right_only]
    out += [f"differs: {x}" for x in cmp.diff_files]
    for sub in cmp.common_dirs:
        out += _differences(a / sub, b / sub)
    return out


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp) / "_generated"
            generate(fresh)
            diffs = _differences(fresh, TARGET)
        if diffs:
            print("sdm_async/_generated is stale; run `make generate`:", *diffs, sep="\n  ")
            return 1
        print("sdm_async/_generated is up to date")
        return 0
    generate(TARGET)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
