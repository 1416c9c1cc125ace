"""Fixtures for users' own test suites: an emulator and a connected client per test.

Enable with `pytest_plugins = ["sdm_async.testing.pytest_plugin"]` in a `conftest.py`, then:

    async def test_onboarding(sdm_client):
        await sdm_client.accounts.create(sdm_async.User(...))

    def test_sync_code(sdm_emulator_thread):            # for code on the official SDK
        client = strongdm.Client(sdm_emulator_thread.access_key,
                                 sdm_emulator_thread.secret_key,
                                 sdm_emulator_thread.address, True)

Async fixtures need pytest-asyncio; the emulator and the client live on the test's loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from sdm_async.client import Client
from sdm_async.testing.emulator import Emulator


@pytest_asyncio.fixture
async def sdm_emulator() -> AsyncIterator[Emulator]:
    """A fresh, empty emulator on a free loopback port."""
    async with Emulator() as emu:
        yield emu


@pytest_asyncio.fixture
async def sdm_client(sdm_emulator: Emulator) -> AsyncIterator[Client]:
    """An `sdm_async.Client` connected to `sdm_emulator` with its admin key."""
    async with sdm_emulator.client() as client:
        yield client


@pytest.fixture
def sdm_emulator_thread() -> Iterator[Emulator]:
    """An emulator served from a background thread, for synchronous code under test."""
    with Emulator().running_in_thread() as emu:
        yield emu
