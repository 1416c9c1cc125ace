"""The benchmark runs end to end (at its smallest size): every case measured, no errors.

It never fails on timing: targets met or missed are the benchmark's report, not this test's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.report import markdown

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "list-1000",
    "list-default",
    "get",
    "create",
    "bulk-64",
    "bulk-256",
    "rate-limit",
    "shared-key",
    "startup",
}


def test_smoke_run_measures_every_case_without_errors(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert {c["id"] for c in doc["cases"]} == CASES
    for case in doc["cases"]:
        for label, result in case["contenders"].items():
            where = f"{case['id']} / {label}"
            assert result["runs"], f"{where}: not measured"
            assert result["errors"] == 0, f"{where}: {result['runs'][0]['first_error']}"
            assert all(r["done"] > 0 and r["wall"] > 0 for r in result["runs"]), where
        assert case["checks"], f"{case['id']}: no targets"
    assert doc["conversion"]["sdm_async"]["median_us"] > 0
    assert doc["conversion"]["official"]["median_us"] > 0
    assert [r["n"] for r in doc["memory"]["tracemalloc"]] == doc["memory"]["n"]
    assert [r["n"] for r in doc["memory"]["rss"]] == doc["memory"]["n"]
    assert "Targets" in done.stdout
    table = markdown(doc)  # the README's form
    assert all(f"| {case['title']} |" in table for case in doc["cases"])
