"""sdm_async: the asyncio twin of the official StrongDM Python SDK.

import sdm_async

async with sdm_async.Client(access_key, secret) as client:
    async for user in client.accounts.list("email:?", "alice@example.com"):
        print(user.email)
"""

from sdm_async import errors
from sdm_async._generated import constants as _constants
from sdm_async._generated import models as _models
from sdm_async._generated.constants import *  # noqa: F403
from sdm_async._generated.models import *  # noqa: F403
from sdm_async._model import Model
from sdm_async._pagination import AsyncPager
from sdm_async._retry import RetryPolicy
from sdm_async._rpc import Attempt, SigningInterceptor
from sdm_async.bulk import BulkIterator, Outcome
from sdm_async.client import Client, ClientOptions, EnvClientOptions, SnapshotClient
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


def __getattr__(name: str) -> object:
    # `sdm_async.provision` and `sdm_async.testing` without importing them (and YAML, rich,
    # the emulator) on every `import sdm_async`.
    if name in ("provision", "testing"):
        import importlib

        return importlib.import_module(f"sdm_async.{name}")
    raise AttributeError(f"module 'sdm_async' has no attribute {name!r}")
