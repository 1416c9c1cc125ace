"""Shared fixtures: a small scripted grpc.aio server on loopback for the client-core tests.

The full emulator (`sdm_async.testing.Emulator`) has its own tests; this server lets the
core tests script exact answers (errors with rich details, pages, delays) per call.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import any_pb2
from google.rpc import status_pb2
from hypothesis import settings

from sdm_async._generated.v1 import accounts_pb2, spec_pb2
from sdm_async._signing import sign, utc_date

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
ACCESS_KEY = "auth-0123456789abcdef"
SECRET = base64.b64encode(os.urandom(32)).decode()


def reference_file(name: str) -> Path:
    path = REFERENCE / name
    if not path.exists():
        pytest.skip(f"{path} is absent: these checks need ../shared/reference beside the repo")
    return path


def rich_error(code: grpc.StatusCode, message: str, *details: Any) -> grpc.aio.AioRpcError:
    """What a handler raises to answer with a status that carries google.rpc.Status details."""
    status = status_pb2.Status(code=code.value[0], message=message)
    for d in details:
        packed = any_pb2.Any()
        packed.Pack(d)
        status.details.append(packed)
    trailer = grpc.aio.Metadata(("grpc-status-details-bin", status.SerializeToString()))
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailer, details=message)


Handler = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]


@dataclass
class Scripted:
    """A loopback server whose methods are plain async functions of (raw bytes, context)."""

    address: str = ""
    handlers: dict[str, Handler] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def client(self, **options: Any) -> Any:
        import sdm_async

        return sdm_async.Client(ACCESS_KEY, SECRET, self.address, True, **options)


class _Router(grpc.GenericRpcHandler):
    def __init__(self, scripted: Scripted) -> None:
        self.scripted = scripted

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        path = details.method
        name = path.lstrip("/").removeprefix("v1.").replace("/", ".")
        scripted = self.scripted

        async def handle(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
            metadata = {k: v for k, v in context.invocation_metadata() or ()}
            scripted.calls.append((name, metadata, body))
            expected = sign(base64.b64decode(SECRET), name, body, utc_date())
            if metadata.get("x-sdm-signature") != expected:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad signature")
            handler = scripted.handlers.get(name)
            if handler is None:
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, name)
            scripted.in_flight += 1
            scripted.max_in_flight = max(scripted.max_in_flight, scripted.in_flight)
            try:
                return await handler(body, context)
            except grpc.aio.AioRpcError as e:
                context.set_trailing_metadata(tuple(e.trailing_metadata() or ()))
                await context.abort(e.code(), e.details() or "")
                raise  # unreachable: abort raises
            finally:
                scripted.in_flight -= 1

        return grpc.unary_unary_rpc_method_handler(handle)


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 1000)])
    state = Scripted()
    server.add_generic_rpc_handlers([_Router(state)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    state.address = f"127.0.0.1:{port}"
    try:
        yield state
    finally:
        await server.stop(None)


def accounts_pages(total: int, page_size: int, delay: float = 0.0) -> Handler:
    """An Accounts.List handler serving `total` users in pages; the cursor is an offset."""

    async def handler(body: bytes, context: Any) -> bytes:
        req = accounts_pb2.AccountListRequest.FromString(body)
        start = int(req.meta.cursor or 0)
        size = req.meta.limit or page_size
        if delay:
            await asyncio.sleep(delay)
        resp = accounts_pb2.AccountListResponse()
        for i in range(start, min(start + size, total)):
            user = resp.accounts.add().user
            user.id = f"a-{i:08x}"
            user.email = f"user{i}@example.com"
            user.first_name = "User"
            user.last_name = str(i)
            user.created_at.seconds = 1_700_000_000 + i
        if start + size < total:
            resp.meta.next_cursor = str(start + size)
        resp.rate_limit.limit = 1000
        resp.rate_limit.remaining = 999
        return resp.SerializeToString()

    return handler


def rate_limit_details(seconds_until_reset: float) -> spec_pb2.RateLimitMetadata:
    md = spec_pb2.RateLimitMetadata(limit=10, remaining=0, bucket="accounts")
    reset = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
        seconds=seconds_until_reset
    )
    md.reset_at.FromDatetime(reset)
    return md


# Property and fuzz tests: few examples by default so that the suite stays quick on CI's two
# cores; HYPOTHESIS_PROFILE=thorough explores much more. No deadline: examples call a server.
settings.register_profile("ci", max_examples=25, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=500, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
async def emu() -> AsyncIterator[Any]:
    """An in-process emulator with default settings."""
    from sdm_async.testing import Emulator

    async with Emulator() as e:
        yield e


@pytest.fixture
async def client(emu: Any, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A client of `emu` with its admin key, retrying as the test module's `CLIENT_RETRY`
    says (the default policy when it has none)."""
    retry = getattr(request.module, "CLIENT_RETRY", None)
    async with emu.client(retry=retry) as c:
        yield c
