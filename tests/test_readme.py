"""The README's promises point at real tests: every `tests/FILE::TEST` it names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def test_every_test_the_readme_names_exists() -> None:
    readme = (ROOT / "README.md").read_text()
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", readme)
    assert len(named) >= 20, "the Guarantees section names its tests"
    missing = [
        f"{file}::{test}"
        for file, test in named
        if not (ROOT / file).exists() or test not in _tests_in(ROOT / file)
    ]
    assert not missing, f"the README names tests that do not exist: {missing}"
