"""A local emulator of the StrongDM API, for tests, demos and benchmarks.

from sdm_async.testing import Emulator

async with Emulator() as emu:
    async with emu.client() as client:
        ...
"""

from sdm_async.testing.emulator import Emulator
from sdm_async.testing.status import StartError

__all__ = ["Emulator", "StartError"]
