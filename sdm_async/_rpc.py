"""The one choke point for every RPC: deadline, signing, retries, limits, errors, logging.

A call reads top to bottom in `Transport.call`: serialize once, then per attempt take a unit
of the rate-limit budget (`_pacing`), a slot in the client-wide limit and the least busy
channel, sign (over the exact bytes sent), send, tell the pacer what the
answer said, and on failure map the status to an SDK error and ask the retry policy whether
and how long to wait.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import grpc
import grpc.aio

from sdm_async import errors
from sdm_async._pacing import Pacer, Token
from sdm_async._retry import RetryPolicy
from sdm_async._signing import API_VERSION, Signer

log = logging.getLogger("sdm_async")

# Above ~100 streams in flight one HTTP/2 connection refuses new ones (REFUSED_STREAM, seen
# against servers with the common limit of 100), so the client opens one channel per 64 of
# `max_in_flight` and sends each call on the least busy one: no connection carries more.
STREAMS_PER_CHANNEL = 64


class MethodInfo(NamedTuple):
    name: str  # "Accounts.List": what the signature covers
    path: str  # "/v1.Accounts/List": what gRPC routes on
    deserialize: Callable[[bytes], Any]
    rate_limited: bool = True  # the response carries `rate_limit`


@dataclass(frozen=True)
class Attempt:
    """What the `on_attempt` hook receives after each attempt."""

    method: str
    attempt: int  # 1 for the first try
    duration: float  # seconds
    error: errors.RPCError | None
    retry_in: float | None  # seconds until the next attempt, None if none follows


def _serialize(message: Any) -> bytes:
    # Pass-through: the transport hands over bytes it already serialized (and signed).
    if isinstance(message, bytes):
        return message
    body: bytes = message.SerializeToString()
    return body


def method_name(path: str | bytes) -> str:
    """`/v1.Accounts/List` -> `Accounts.List`."""
    text = path.decode() if isinstance(path, bytes) else path
    service, _, method = text.lstrip("/").partition("/")
    return f"{service.removeprefix('v1.')}.{method}"


class SigningInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Adds the four `x-sdm-*` metadata entries, signing the exact bytes that are sent.

    For bare generated stubs (`Client` signs inside `Transport.call` and needs none). It runs
    once per attempt, so every retry is signed afresh. The stub's serializer serializes the
    request again: protobuf output is stable within one process, so the bytes sent are the
    bytes signed. A `bytes` request is passed on as it is (for a pass-through serializer).
    """

    def __init__(self, access_key: str, signer: Signer, user_agent: str) -> None:
        self._access_key = access_key
        self._signer = signer
        self._user_agent = user_agent
        self._names: dict[Any, str] = {}

    def __repr__(self) -> str:
        return f"<SigningInterceptor access_key={self._access_key!r}>"

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        body = _serialize(request)
        path = client_call_details.method
        name = self._names.get(path)
        if name is None:
            name = self._names[path] = method_name(path)
        metadata = grpc.aio.Metadata(
            *(client_call_details.metadata or ()),  # a copy: the caller's object stays as is
            ("x-sdm-authentication", self._access_key),
            ("x-sdm-signature", self._signer.sign(name, body)),
            ("x-sdm-api-version", API_VERSION),
            ("x-sdm-user-agent", self._user_agent),
        )
        return await continuation(client_call_details._replace(metadata=metadata), request)


class Transport:
    """Channels and the call loop shared by every service of one client."""

    def __init__(
        self,
        *,
        host: str,
        insecure: bool,
        access_key: str,
        signer: Signer,
        user_agent: str,
        retry: RetryPolicy,
        max_in_flight: int,
        channel_options: Sequence[tuple[str, Any]] = (),
        on_attempt: Callable[[Attempt], None] | None = None,
        pace: bool = True,
    ) -> None:
        self.host = host
        self.insecure = insecure
        self.retry = retry
        self.max_in_flight = max_in_flight
        self.on_attempt = on_attempt
        self._access_key = access_key
        self._signer = signer
        self._user_agent = user_agent
        self._channel_options = list(channel_options)
        self._channels: list[grpc.aio.Channel] = []
        self._callables: list[dict[str, Any]] = []
        self._loads: list[int] = []  # calls in flight per channel
        self._limit: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.pacer = Pacer() if pace else None
        self.in_flight = 0
        self.retries = 0

    # -- lifecycle ------------------------------------------------------------------------

    def _open(self) -> None:
        """Create the channels, inside the running loop that will use them."""
        if self._closed:
            raise RuntimeError("this client is closed; create a new sdm_async.Client")
        loop = asyncio.get_running_loop()
        count = max(1, math.ceil(self.max_in_flight / STREAMS_PER_CHANNEL))
        base = [
            ("grpc.enable_retries", 0),  # gRPC's own retries would resend stale signatures
            ("grpc.primary_user_agent", "sdm-async"),
            *self._channel_options,
        ]
        for index in range(count):
            # Channels with equal arguments share one connection (and its stream limit): a
            # distinct argument and a local subchannel pool give each channel its own.
            options = [
                *base,
                ("grpc.use_local_subchannel_pool", 1),
                ("sdm_async.channel_index", index),
            ]
            if self.insecure:
                ch = grpc.aio.insecure_channel(self.host, options=options)
            else:
                ch = grpc.aio.secure_channel(
                    self.host,
                    grpc.ssl_channel_credentials(),
                    options=options,
                )
            self._channels.append(ch)
            self._callables.append({})
            self._loads.append(0)
        self._limit = asyncio.Semaphore(self.max_in_flight)
        self._loop = loop

    def _check_loop(self) -> None:
        if self._loop is None:
            self._open()
        elif self._loop is not asyncio.get_running_loop():
            raise RuntimeError(
                "this client was first used in another event loop; grpc.aio channels belong to "
                "the loop that created them: create one client per event loop"
            )

    async def close(self) -> None:
        self._closed = True
        if self.pacer is not None:  # calls held for a window that will not come
            self.pacer.close("this client is closed; create a new sdm_async.Client")
        channels, self._channels = self._channels, []
        self._callables = []
        self._loads = []
        for ch in channels:
            await ch.close()

    # -- the call -------------------------------------------------------------------------

    def _pick_channel(self) -> int:
        """The channel with the fewest calls in flight. The client-wide limit is at most
        STREAMS_PER_CHANNEL per channel, so no channel ever carries more than that."""
        loads = self._loads
        if len(loads) == 1:
            return 0
        if not loads:  # closed while this call waited for its turn
            raise RuntimeError("this client is closed; create a new sdm_async.Client")
        return min(range(len(loads)), key=loads.__getitem__)

    def _callable(self, index: int, method: MethodInfo) -> Any:
        table = self._callables[index]
        mc = table.get(method.path)
        if mc is None:
            mc = table[method.path] = self._channels[index].unary_unary(
                method.path,
                request_serializer=_serialize,
                response_deserializer=method.deserialize,
                _registered_method=True,
            )
        return mc

    async def call(self, method: MethodInfo, request: Any, timeout: float | None) -> Any:
        self._check_loop()
        assert self._limit is not None
        loop = asyncio.get_running_loop()
        name = method.name
        body = request.SerializeToString()  # once per call; signed afresh per attempt
        deadline = None if timeout is None else loop.time() + timeout
        pacer = self.pacer
        attempt = 0
        while True:
            attempt += 1
            token: Token | None = None
            if pacer is not None:
                token = pacer.take(name)
                if token is None:  # the budget is spent: wait for a unit (or the deadline)
                    token = await pacer.wait(name, deadline)
                    if token is None:
                        raise errors.TimeoutError(
                            f"{name}: timed out after {timeout} s waiting for the rate limit"
                        )
            try:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise errors.TimeoutError(f"{name}: timed out after {timeout} s")
                started = time.perf_counter()
                error: errors.RPCError | None = None
                async with self._limit:
                    loads = self._loads  # close() replaces it: keep the list counted in
                    channel = self._pick_channel()
                    self.in_flight += 1
                    loads[channel] += 1
                    # Signed here, per attempt, over the bytes sent: an interceptor would cost
                    # a task and a loop turn per call, and gRPC's own retries are off.
                    metadata = (
                        ("x-sdm-authentication", self._access_key),
                        ("x-sdm-signature", self._signer.sign(name, body)),
                        ("x-sdm-api-version", API_VERSION),
                        ("x-sdm-user-agent", self._user_agent),
                    )
                    try:
                        mc = self._callable(channel, method)
                        response = await mc(body, timeout=remaining, metadata=metadata)
                    except grpc.aio.AioRpcError as e:
                        error = errors.from_grpc(e)
                        cause: BaseException = e
                    finally:
                        self.in_flight -= 1
                        loads[channel] -= 1
                if pacer is not None:
                    if error is None:
                        if method.rate_limited:
                            pacer.observe(name, response.rate_limit, started)
                    elif isinstance(error, errors.RateLimitError) and error.rate_limit:
                        pacer.observe(name, error.rate_limit, started, refused=True)
            finally:
                if token is not None:
                    assert pacer is not None
                    pacer.release(token)
            if error is None:
                if self.on_attempt is not None or log.isEnabledFor(logging.DEBUG):
                    self._report(name, attempt, time.perf_counter() - started, None, None)
                return response
            duration = time.perf_counter() - started
            wait = self.retry.delay(
                error,
                attempt,
                loop.time(),
                datetime.datetime.now(datetime.timezone.utc),
                deadline,
                paced=None if pacer is None else pacer.retry_in(name),
            )
            self._report(name, attempt, duration, error, wait)
            if wait is None:
                raise error from cause
            self.retries += 1
            log.info("%s: %s; retry %d in %.2f s", name, type(error).__name__, attempt, wait)
            await asyncio.sleep(wait)

    def _report(
        self,
        name: str,
        attempt: int,
        duration: float,
        error: errors.RPCError | None,
        wait: float | None,
    ) -> None:
        if log.isEnabledFor(logging.DEBUG):
            status = "OK" if error is None else type(error).__name__
            log.debug("%s attempt=%d %.1f ms %s", name, attempt, duration * 1000, status)
        if self.on_attempt is not None:
            self.on_attempt(Attempt(name, attempt, duration, error, wait))
