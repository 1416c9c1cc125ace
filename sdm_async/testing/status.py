"""How the emulator refuses a call: an `ApiError` raised anywhere below the servicer becomes a
gRPC status with a `google.rpc.Status` in `grpc-status-details-bin`, as the real API sends
(the official SDK reads its message from there, and a rate limit's `RateLimitMetadata`).

`StartError` is the other kind of refusal: the emulator cannot start at all."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import status_pb2
from grpc_status import rpc_status


class ApiError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, *details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_status(self) -> grpc.Status:
        status = status_pb2.Status(code=self.code.value[0], message=self.message)
        for detail in self.details:
            packed = any_pb2.Any()
            packed.Pack(detail)
            status.details.append(packed)
        return rpc_status.to_status(status)


class StartError(RuntimeError):
    """The emulator cannot start (port in use, `db` file unusable or held by another
    emulator, ...); the message names what and says what to do, in one line."""


def bad_request(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.NOT_FOUND, message)


def already_exists(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.ALREADY_EXISTS, message)
