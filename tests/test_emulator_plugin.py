"""The ready-made fixtures for users' own suites, run as a user would run them: pytest on a
fresh test file, in a separate process (one for async code, one for synchronous code)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ASYNC_SUITE = """
import pytest
import sdm_async

pytest_plugins = ["sdm_async.testing.pytest_plugin"]

@pytest.mark.asyncio
async def test_onboarding(sdm_client, sdm_emulator):
    await sdm_client.accounts.create(
        sdm_async.User(email="new@example.com", first_name="N", last_name="E"))
    assert [a.email async for a in sdm_client.accounts.list("")] == ["new@example.com"]
    assert sdm_emulator.backend.count("Accounts") == 1
"""

SYNC_SUITE = """
import strongdm

pytest_plugins = ["sdm_async.testing.pytest_plugin"]

def test_code_on_the_official_sdk(sdm_emulator_thread):
    emu = sdm_emulator_thread
    client = strongdm.Client(emu.access_key, emu.secret_key, emu.address, True)
    client.roles.create(strongdm.Role(name="ops"))
    assert [r.name for r in client.roles.list("")] == ["ops"]
"""


def _run_suite(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_user_suite.py").write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user_suite.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_async_fixtures(tmp_path: Path) -> None:
    result = _run_suite(tmp_path, ASYNC_SUITE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_thread_fixture_for_synchronous_code(tmp_path: Path) -> None:
    result = _run_suite(tmp_path, SYNC_SUITE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
