"""A local emulator of the StrongDM API, for tests, demos and benchmarks.

from sdm_async.testing import Emulator

async with Emulator() as emu:
    async with emu.client() as client:
        ...
"""

import typing

from sdm_async._lazy import attach

if typing.TYPE_CHECKING:
    from sdm_async.testing.emulator import Emulator
    from sdm_async.testing.status import StartError

__all__ = ["Emulator", "StartError"]

# Imported on first use, so that `sdm-async emulator --help` loads no server.
_LAZY = {"Emulator": "emulator", "StartError": "status"}

__getattr__, __dir__ = attach(__name__, _LAZY, globals())
