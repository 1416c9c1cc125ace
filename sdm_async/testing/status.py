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

# A status travels in the trailers twice (grpc-message, percent-encoded, and inside
# grpc-status-details-bin, base64), and clients cap trailers (8 KiB by default in gRPC): a
# longer one never arrives and the call breaks. Messages that quote the caller's input are
# cut in the middle to fit.
TRAILER_BUDGET = 6000  # bytes, leaving room for the rest of the trailers


class ApiError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, *details: Any) -> None:
        message = _fit(message)
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


def _fit(message: str) -> str:
    if _trailer_size(message) <= TRAILER_BUDGET:
        return message
    keep = TRAILER_BUDGET // 3
    while True:
        cut = f"{message[: keep * 2 // 3]} [...] {message[-keep // 3 :]}"
        if _trailer_size(cut) <= TRAILER_BUDGET:
            return cut
        keep = keep * 3 // 4


def _trailer_size(message: str) -> int:
    data = message.encode()
    encoded = sum(1 if 0x20 <= b < 0x7F and b != 0x25 else 3 for b in data)
    return encoded + len(data) * 4 // 3


def bad_request(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.NOT_FOUND, message)


def already_exists(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.ALREADY_EXISTS, message)
