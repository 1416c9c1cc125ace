"""A local emulator of the StrongDM API, for tests, demos and benchmarks.

from sdm_async.testing import Emulator

async with Emulator() as emu:
    async with emu.client() as client:
        ...
"""

import importlib
import typing

if typing.TYPE_CHECKING:
    from sdm_async.testing.emulator import Emulator
    from sdm_async.testing.status import StartError

__all__ = ["Emulator", "StartError"]

# Imported on first use, so that `sdm-async emulator --help` loads no server.
_LAZY = {"Emulator": "emulator", "StartError": "status"}


def __getattr__(name: str) -> typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value
