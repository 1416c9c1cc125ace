"""FastAPI integration (the `sdm-async[fastapi]` extra): one shared client per app, a
dependency that hands it to handlers, and SDK errors answered as HTTP errors.

    from fastapi import FastAPI
    from sdm_async.fastapi import ClientDep, install

    app = FastAPI()
    install(app)  # Client.from_env() on startup, closed on shutdown; errors -> HTTP

    @app.get("/users/{id}")
    async def get_user(id: str, client: ClientDep) -> dict[str, str]:
        resp = await client.accounts.get(id)  # NotFoundError -> 404
        ...

Or the same in pieces: `FastAPI(lifespan=lifespan(), exception_handlers=exception_handlers())`,
or `open_client(app)` inside a lifespan of your own.

The client is made inside the server's event loop (grpc.aio channels belong to the loop
that creates them) and stored as `app.state.sdm_client`.

The key is the app's, not the HTTP client's: StrongDM refusing it, or it lacking a permission,
is the server's failure (502), never a 401/403. Only the API's words about the request (400,
404, 409) reach the HTTP client; other errors get a plain message and are logged in full.
"""

from __future__ import annotations

import datetime
import inspect
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

try:
    from fastapi import Depends, FastAPI
    from fastapi.requests import HTTPConnection, Request
    from fastapi.responses import JSONResponse, Response
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("sdm_async.fastapi needs FastAPI: pip install 'sdm-async[fastapi]'") from e

from sdm_async import errors
from sdm_async.client import Client

__all__ = [
    "PASSED_ON",
    "PUBLIC_MESSAGES",
    "STATE_KEY",
    "STATUS_CODES",
    "ClientDep",
    "ClientFactory",
    "error_response",
    "exception_handlers",
    "get_client",
    "install",
    "lifespan",
    "open_client",
    "public_message",
    "retry_after",
    "rpc_error_handler",
    "status_code_for",
]

STATE_KEY = "sdm_client"  # the shared client is `app.state.sdm_client`

ClientFactory = Callable[[], Client | Awaitable[Client]]
"""Makes the shared client: a function or coroutine function taking no argument."""

STATUS_CODES: Mapping[type[errors.RPCError], int] = {
    errors.BadRequestError: 400,
    errors.NotFoundError: 404,
    errors.AlreadyExistsError: 409,
    errors.RateLimitError: 429,
    # The app's own API key refused, or lacking a permission: the server's fault, which the
    # HTTP client cannot fix with other credentials, hence not 401/403.
    errors.AuthenticationError: 502,
    errors.PermissionError: 502,
    errors.UnavailableError: 503,
    errors.ClientClosedError: 503,  # the app is shutting down under the request
    errors.TimeoutError: 504,
}
"""The HTTP status for each SDK error class; any other `RPCError` is 502 (Bad Gateway)."""

BAD_GATEWAY = 502

PASSED_ON: tuple[type[errors.RPCError], ...] = (
    errors.BadRequestError,
    errors.NotFoundError,
    errors.AlreadyExistsError,
)
"""Errors whose message goes to the HTTP client as it is: the API's own words about the
request ("first_name is required", "user ... already exists"), useful to the client."""

PUBLIC_MESSAGES: Mapping[type[errors.RPCError], str] = {
    errors.AuthenticationError: "the StrongDM API refused this server's API key",
    errors.PermissionError: "this server's StrongDM API key is not permitted to do this",
    errors.RateLimitError: "this server's StrongDM API rate limit is spent; retry later",
    errors.UnavailableError: "the StrongDM API is unavailable; retry later",
    errors.ClientClosedError: "this server is shutting down; retry later",
    errors.TimeoutError: "the StrongDM API did not answer in time",
}
"""What the HTTP client reads instead of the SDK's message for the other errors, whose
messages may carry upstream addresses and gRPC internals (those go to the log)."""

UPSTREAM_FAILED = "the StrongDM API failed"

log = logging.getLogger("sdm_async")


# -- the shared client ----------------------------------------------------------------------


@asynccontextmanager
async def open_client(
    app: FastAPI, client_factory: ClientFactory | None = None
) -> AsyncIterator[Client]:
    """Make the shared client (default: `Client.from_env()`), store it on `app.state` for
    `get_client`, and close it on exit. For use inside a lifespan of your own."""
    made = (client_factory or Client.from_env)()
    client = await made if inspect.isawaitable(made) else made
    if not isinstance(client, Client):
        raise TypeError(f"client_factory must return an sdm_async.Client, not {type(client)!r}")
    setattr(app.state, STATE_KEY, client)
    try:
        yield client
    finally:
        setattr(app.state, STATE_KEY, None)
        await client.close()


def lifespan(
    client_factory: ClientFactory | None = None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A lifespan for `FastAPI(lifespan=...)` that opens the shared client on startup and
    closes it on shutdown."""

    @asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_client(app, client_factory):
            yield

    return _lifespan


def get_client(conn: HTTPConnection) -> Client:
    """The dependency: the app's shared client (use `ClientDep` in a handler's signature)."""
    client = getattr(conn.app.state, STATE_KEY, None)
    if not isinstance(client, Client):
        raise RuntimeError(
            "no sdm_async client on this app: call sdm_async.fastapi.install(app) or pass "
            "lifespan=sdm_async.fastapi.lifespan(), and run the app's lifespan"
        )
    return client


ClientDep = Annotated[Client, Depends(get_client)]
"""`client: ClientDep` in a handler's parameters receives the shared `sdm_async.Client`."""


# -- errors ---------------------------------------------------------------------------------


def status_code_for(exc: errors.RPCError) -> int:
    """The HTTP status answering `exc` (see `STATUS_CODES`)."""
    code: int | None = _lookup(STATUS_CODES, exc)
    return BAD_GATEWAY if code is None else code


def retry_after(exc: errors.RateLimitError, now: datetime.datetime | None = None) -> int | None:
    """Whole seconds until the rate-limit window resets (rounded up, at least 0), or None
    when the error does not say when."""
    reset_at = exc.rate_limit.reset_at if exc.rate_limit is not None else None
    if reset_at is None:
        return None
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return max(0, math.ceil((reset_at - now).total_seconds()))


def _lookup(table: Mapping[type[errors.RPCError], Any], exc: errors.RPCError) -> Any:
    for cls in type(exc).__mro__:
        found = table.get(cls)
        if found is not None:
            return found
    return None


def public_message(exc: errors.RPCError) -> str:
    """The message the HTTP client reads: the SDK's for `PASSED_ON` errors, else a plain one
    from `PUBLIC_MESSAGES` (or "the StrongDM API failed")."""
    if isinstance(exc, PASSED_ON):
        return exc.msg
    message: str | None = _lookup(PUBLIC_MESSAGES, exc)
    return message or UPSTREAM_FAILED


def error_response(exc: errors.RPCError) -> JSONResponse:
    """The JSON answer to an SDK error: `{"detail": public_message(exc), "error": class
    name}`, with `Retry-After` for a rate limit. Nothing else of the error (no key, no bucket,
    no upstream address) is sent."""
    headers: dict[str, str] = {}
    if isinstance(exc, errors.RateLimitError):
        seconds = retry_after(exc)
        if seconds is not None:
            headers["Retry-After"] = str(seconds)
    body = {"detail": public_message(exc), "error": type(exc).__name__}
    return JSONResponse(body, status_code=status_code_for(exc), headers=headers)


async def rpc_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """The exception handler for `sdm_async.errors.RPCError` and its subclasses. An error
    whose message the HTTP client does not see is logged (logger `sdm_async`, warning)."""
    if not isinstance(exc, errors.RPCError):
        raise exc
    response = error_response(exc)
    if not isinstance(exc, PASSED_ON):
        log.warning(
            "%s %s: answered %d for %s (code %d): %s",
            request.method,
            request.url.path,
            response.status_code,
            type(exc).__name__,
            exc.code,
            exc.msg,
        )
    return response


def exception_handlers() -> dict[
    int | type[Exception], Callable[[Request, Any], Coroutine[Any, Any, Response]]
]:
    """Handlers for `FastAPI(exception_handlers=...)`: one for `RPCError`, which covers its
    subclasses; a handler you register for a subclass takes precedence."""
    return {errors.RPCError: rpc_error_handler}


# -- all at once ----------------------------------------------------------------------------


def install(app: FastAPI, client_factory: ClientFactory | None = None) -> None:
    """Open the shared client around the app's own lifespan (so that it can use the client)
    and add the exception handlers. `client_factory` defaults to `Client.from_env`."""
    if getattr(app.state, "_sdm_async_installed", False):
        raise RuntimeError("sdm_async.fastapi is already installed on this app")
    app.state._sdm_async_installed = True
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def _lifespan(app_: Any) -> AsyncIterator[Any]:
        async with open_client(app_, client_factory), inner(app_) as state:
            yield state

    app.router.lifespan_context = _lifespan
    for cls, handler in exception_handlers().items():
        app.add_exception_handler(cls, handler)
