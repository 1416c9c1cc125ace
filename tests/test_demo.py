"""The demo end to end, as `make demo` runs it, and against an organisation given by the
environment (here an emulator process): read-only unless --write."""

from __future__ import annotations

import os
import subprocess
import sys

from .test_emulator_process import KEY, SECRET, emulator_process

SMALL = ["--users", "30", "--roles", "3", "--resources", "8"]


def _demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SDM_API_")}
    return subprocess.run(
        [sys.executable, "-m", "sdm_async", "demo", *SMALL, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**environment, "COLUMNS": "200", **(env or {})},
    )


def _row(output: str, what: str) -> str:
    line = next(line for line in output.splitlines() if f" {what} " in line)
    return line.split("│")[2].strip()


def test_embedded_demo_provisions_and_reads_back() -> None:
    result = _demo()
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert _row(out, "organisation") == "embedded emulator"
    assert _row(out, "users") == "30" and _row(out, "roles") == "3"
    assert _row(out, "role attachments") == "30" and _row(out, "temporary grants") == "3"
    assert _row(out, "failed calls") == "0"
    assert "not-a-real-password" not in out + result.stderr


def test_demo_on_an_organisation_from_the_environment_is_read_only_by_default() -> None:
    with emulator_process("--access-key", KEY, "--secret-key", SECRET) as (_proc, address):
        env = {"SDM_API_ACCESS_KEY": KEY, "SDM_API_SECRET_KEY": SECRET, "SDM_API_HOST": address}
        read = _demo("--insecure", env=env)
        assert read.returncode == 0, read.stdout + read.stderr
        assert "read-only" in read.stdout and _row(read.stdout, "users") == "0"
        wrote = _demo("--insecure", "--write", env=env)
        assert wrote.returncode == 0, wrote.stdout + wrote.stderr
        assert _row(wrote.stdout, "users") == "30"
