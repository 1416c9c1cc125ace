"""sdm_async: the asyncio twin of the official StrongDM Python SDK.

import sdm_async

async with sdm_async.Client(access_key, secret) as client:
    async for user in client.accounts.list("email:?", "alice@example.com"):
        print(user.email)

Names load on first use (PEP 562): `import sdm_async` imports neither grpc nor protobuf nor
any model; `sdm_async.User` imports the module that defines `User` (and what it refers to),
a client its transport, and each service attribute its service on first access.
"""

import importlib
import typing

from sdm_async import _lazy, errors
from sdm_async._generated import constants as _constants
from sdm_async._generated import models as _models
from sdm_async._generated.constants import *  # noqa: F403
from sdm_async.errors import (
    AlreadyExistsError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    InternalError,
    NotFoundError,
    PermissionError,
    RateLimitError,
    RPCError,
    TimeoutError,
    UnavailableError,
    UnknownError,
)

if typing.TYPE_CHECKING:
    from sdm_async._generated.models import *  # noqa: F403
    from sdm_async._model import Model
    from sdm_async._pagination import AsyncPager
    from sdm_async._retry import RetryPolicy
    from sdm_async._rpc import Attempt, SigningInterceptor
    from sdm_async.bulk import BulkIterator, Outcome
    from sdm_async.client import Client, ClientOptions, EnvClientOptions, SnapshotClient

__version__ = "0.1.0"

__all__ = [
    "AlreadyExistsError",
    "AsyncPager",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
    "BulkIterator",
    "Client",
    "ClientClosedError",
    "ClientOptions",
    "EnvClientOptions",
    "InternalError",
    "Model",
    "NotFoundError",
    "Outcome",
    "PermissionError",
    "RPCError",
    "RateLimitError",
    "RetryPolicy",
    "SigningInterceptor",
    "SnapshotClient",
    "TimeoutError",
    "UnavailableError",
    "UnknownError",
    "errors",
]
# The forms type checkers understand (`__all__ += module.__all__`), so that every model and
# constant counts as exported for mypy and pyright alike.
__all__ += _models.__all__
__all__ += _constants.__all__

# name -> the module (under this package) that defines it, imported on first use of the name
_LAZY = {
    "AsyncPager": "_pagination",
    "Attempt": "_rpc",
    "BulkIterator": "bulk",
    "Client": "client",
    "ClientOptions": "client",
    "EnvClientOptions": "client",
    "Model": "_model",
    "Outcome": "bulk",
    "RetryPolicy": "_retry",
    "SigningInterceptor": "_rpc",
    "SnapshotClient": "client",
    **dict.fromkeys(_models._MODULES, "_generated.models"),
}
_load, __dir__ = _lazy.attach(__name__, _LAZY, globals())


def __getattr__(name: str) -> typing.Any:
    if name in ("provision", "testing"):
        # Subpackages that bring YAML, rich or the emulator: imported when named.
        return importlib.import_module(f"sdm_async.{name}")
    return _load(name)
