"""Errors raised by sdm_async, with the official SDK's names.

    Exception
     └── RPCError                  .msg, .code (the gRPC status code number)
          ├── AlreadyExistsError   ALREADY_EXISTS
          ├── AuthenticationError  UNAUTHENTICATED
          ├── ClientClosedError    the client was closed under the call (also a RuntimeError)
          ├── BadRequestError      INVALID_ARGUMENT, or bad input caught before any call
          ├── InternalError        INTERNAL
          ├── NotFoundError        NOT_FOUND
          ├── PermissionError      PERMISSION_DENIED (also a builtins.PermissionError)
          ├── RateLimitError       RESOURCE_EXHAUSTED, .rate_limit from the status details
          ├── TimeoutError         DEADLINE_EXCEEDED (also a builtins.TimeoutError)
          ├── UnavailableError     UNAVAILABLE (not in the official SDK, which gives RPCError)
          └── UnknownError         anything else that is not a gRPC status

`from_grpc` is the one place where a gRPC error becomes one of these; the original is kept
as `__cause__`.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import grpc.aio

    from sdm_async._generated.models.spec import RateLimitMetadata

__all__ = [
    "AlreadyExistsError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "InternalError",
    "NotFoundError",
    "PermissionError",
    "RPCError",
    "RateLimitError",
    "TimeoutError",
    "UnavailableError",
    "UnknownError",
    "from_grpc",
]


# gRPC's status code numbers (fixed by the gRPC protocol), so that importing the errors does
# not import grpc; tests check them against grpc.StatusCode.
_CANCELLED = 1
_UNKNOWN = 2
_INVALID_ARGUMENT = 3
_DEADLINE_EXCEEDED = 4
_NOT_FOUND = 5
_ALREADY_EXISTS = 6
_PERMISSION_DENIED = 7
_RESOURCE_EXHAUSTED = 8
_INTERNAL = 13
_UNAVAILABLE = 14
_UNAUTHENTICATED = 16


class RPCError(Exception):
    """An error answered by the API (or found before calling it)."""

    def __init__(self, msg: str, code: int = 2) -> None:
        super().__init__(msg)
        self.msg = msg
        self.code = code

    def __str__(self) -> str:
        return self.msg


class AlreadyExistsError(RPCError):
    """The entity already exists (ALREADY_EXISTS), e.g. a user with that email."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg, _ALREADY_EXISTS)


class AuthenticationError(RPCError):
    """The API key was refused (UNAUTHENTICATED): unknown key, bad signature."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg, _UNAUTHENTICATED)


class BadRequestError(RPCError):
    """The request is invalid (INVALID_ARGUMENT), or bad input caught before any
    call (a filter with the wrong number of arguments, a model of the wrong type)."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg, _INVALID_ARGUMENT)


class InternalError(RPCError):
    """The API failed (INTERNAL); retried by the client's `RetryPolicy`."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg, _INTERNAL)


class NotFoundError(RPCError):
    """No such entity (NOT_FOUND)."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg, _NOT_FOUND)


class PermissionError(RPCError, builtins.PermissionError):
    """The key lacks the permission for this call (PERMISSION_DENIED); also a
    `builtins.PermissionError`."""

    def __init__(self, msg: str) -> None:
        RPCError.__init__(self, msg, _PERMISSION_DENIED)


class ClientClosedError(RPCError, builtins.RuntimeError):
    """The client was closed (`close()`, or leaving `async with`) before the call could
    finish: cut off in flight, or waiting for a slot, the rate limit or a retry, or made
    after the close. A call cut off in flight may still have been carried out by the server.
    Never retried; also a `builtins.RuntimeError`. Not in the official SDK, which has no
    `close()` that interrupts calls."""

    def __init__(self, msg: str) -> None:
        RPCError.__init__(self, msg, _CANCELLED)


class RateLimitError(RPCError):
    """Over the rate limit; `.rate_limit` tells the bucket, its limit and when it resets."""

    def __init__(self, msg: str, rate_limit: RateLimitMetadata | None = None) -> None:
        super().__init__(msg, _RESOURCE_EXHAUSTED)
        self.rate_limit = rate_limit


class TimeoutError(RPCError, builtins.TimeoutError):
    """The call's `timeout` passed (DEADLINE_EXCEEDED), retries and waits included;
    also a `builtins.TimeoutError`."""

    def __init__(self, msg: str = "deadline exceeded") -> None:
        RPCError.__init__(self, msg, _DEADLINE_EXCEEDED)


class UnavailableError(RPCError):
    """The API could not be reached (UNAVAILABLE); retried by the client's
    `RetryPolicy`. The official SDK raises a plain `RPCError` here."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg, _UNAVAILABLE)


class UnknownError(RPCError):
    """An error that is not a gRPC status (the official SDK's name; kept for parity)."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg, _UNKNOWN)


_BY_CODE: dict[int, Any] = {
    _INVALID_ARGUMENT: BadRequestError,
    _NOT_FOUND: NotFoundError,
    _ALREADY_EXISTS: AlreadyExistsError,
    _PERMISSION_DENIED: PermissionError,
    _UNAUTHENTICATED: AuthenticationError,
    _INTERNAL: InternalError,
    _UNAVAILABLE: UnavailableError,
}

_DETAILS_KEY = "grpc-status-details-bin"
TLS_HINT = (
    "TLS handshake failed: the server's certificate is not trusted or not valid for this host; "
    "to trust a private CA pass root_certificates=<PEM bytes> (Client.from_env: "
    "SDM_API_ROOT_CERTIFICATES=<path>); for a plain-text server pass insecure=True"
)
SIZE_HINT = (
    "a message was over gRPC's 4 MiB limit: ask for smaller pages (page_limit=) or send less "
    "at once"
)
_RATE_LIMIT_TYPE = "type.googleapis.com/v1.RateLimitMetadata"


def _status_details(err: grpc.aio.AioRpcError) -> tuple[str | None, list[Any]]:
    """Message and details of the rich status (`google.rpc.Status`), if the server sent one."""
    from google.rpc import status_pb2

    for key, value in err.trailing_metadata() or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            try:
                status = status_pb2.Status.FromString(value)
            except Exception:  # a malformed trailer: fall back to the plain status
                return None, []
            return status.message, list(status.details)
    return None, []


def from_grpc(err: grpc.aio.AioRpcError) -> RPCError:
    """Translate a gRPC error into the SDK's error class for its status code."""
    code = err.code()
    number: int = code.value[0]
    message, details = _status_details(err)
    msg = message if message is not None else (err.details() or code.name)
    if number == _DEADLINE_EXCEEDED:
        return TimeoutError(msg)
    if number == _RESOURCE_EXHAUSTED:
        if "larger than max" in msg and not details:
            # gRPC's own size limit, not a rate limit: asking again gets the same answer.
            return RPCError(f"{msg}\n{SIZE_HINT}", number)
        return RateLimitError(msg, _rate_limit(details))
    if number == _UNAVAILABLE and "handshake failed" in msg.lower():
        return UnavailableError(f"{msg}\n{TLS_HINT}")
    cls = _BY_CODE.get(number)
    if cls is not None:
        return cls(msg)  # type: ignore[no-any-return]
    return RPCError(msg, number)


def _rate_limit(details: list[Any]) -> RateLimitMetadata | None:
    from sdm_async._generated.models.spec import from_pb_RateLimitMetadata
    from sdm_async._generated.v1 import spec_pb2

    for any_msg in details:
        if any_msg.type_url == _RATE_LIMIT_TYPE:
            return from_pb_RateLimitMetadata(spec_pb2.RateLimitMetadata.FromString(any_msg.value))
    return None
