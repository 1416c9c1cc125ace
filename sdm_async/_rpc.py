"""The one choke point for every RPC: deadline, signing, retries, limits, errors, logging.

A call reads top to bottom in `Transport.call`: serialize once, then per attempt take a unit
of the rate-limit budget (`_pacing`), a slot in the client-wide limit and the least busy
channel, sign (over the exact bytes sent), send, tell the pacer what the
answer said, and on failure map the status to an SDK error and ask the retry policy whether
and how long to wait.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
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


# Default gRPC channel arguments; `Client(channel_options=...)` overrides any of them.
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.enable_retries", 0),  # gRPC's own retries would resend stale signatures
    ("grpc.primary_user_agent", "sdm-async"),
    # A client may live for days (a web app's). A connection that a NAT or load balancer
    # dropped without a word must be noticed, not waited on until each call's deadline:
    # - with calls in flight, a ping after 30 s without news, and any ping unanswered for
    #   10 s (gRPC's flow-control pings too, 60 s by default) closes the connection: its
    #   calls fail with UNAVAILABLE and are retried on a new one;
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.ping_timeout_ms", 10_000),
    # - no pings on idle connections (servers refuse them by default, with a GOAWAY
    #   "too_many_pings"): a connection idle for 2 min is closed instead, before the usual
    #   NAT and load balancer idle timeouts (4 min and more) drop it; the next call opens a
    #   new one.
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.client_idle_timeout_ms", 120_000),
)


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
    waited: float = 0.0  # seconds it waited for the rate limit and a free slot before sending


def _serialize(message: Any) -> bytes:
    # Pass-through for a `bytes` request (a stub made with a pass-through serializer).
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


CLOSED = "this client is closed; create a new sdm_async.Client"


class Slots:
    """The client-wide limit on calls in flight: a count and a FIFO of waiting calls.

    Unlike `asyncio.Semaphore`, a wait ends at the call's deadline (the call's `timeout`
    covers its wait for a slot) or when the client closes, and a slot freed while calls
    wait is handed straight to the first of them (no overtaking by new calls)."""

    __slots__ = ("free", "waiters")

    def __init__(self, size: int) -> None:
        self.free = size
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def take_now(self) -> bool:
        if self.free > 0 and not self.waiters:
            self.free -= 1
            return True
        return False

    async def take(self, deadline: float | None) -> bool:
        """Wait for a slot; False if the loop-time `deadline` comes first."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self.waiters.append(fut)
        timer = None if deadline is None else loop.call_at(deadline, _expire, fut)
        try:
            await fut
        except builtins.TimeoutError:
            return False
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.give()  # handed a slot just as we were cancelled: pass it on
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return True

    def give(self) -> None:
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():  # skip calls that timed out or were cancelled while waiting
                fut.set_result(None)
                return
        self.free += 1

    def close(self) -> None:
        """Fail every waiting call with ClientClosedError."""
        waiters, self.waiters = self.waiters, collections.deque()
        for fut in waiters:
            if not fut.done():
                fut.set_exception(errors.ClientClosedError(CLOSED))


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(builtins.TimeoutError())


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _creates(name: str) -> bool:
    """Whether method `name` ("Accounts.Create") makes something: resending it after a
    reply that was lost would make it twice (or fail with ALREADY_EXISTS)."""
    return name.partition(".")[2].startswith("Create")


def _cancel_requested() -> bool:
    """Whether the current task itself was asked to cancel (rather than an await inside it
    raising CancelledError because grpc.aio cancelled the call when its channel closed)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+; 3.10 cannot tell
    return cancelling is not None and cancelling() > 0


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
        root_certificates: bytes | None = None,
    ) -> None:
        self.host = host
        self.insecure = insecure
        self.retry = retry
        self.max_in_flight = max_in_flight
        self.on_attempt = on_attempt
        self._access_key = access_key
        self._signer = signer
        self._user_agent = user_agent
        # The metadata entries that are the same on every call, made once.
        self._authentication = ("x-sdm-authentication", access_key)
        self._api_version = ("x-sdm-api-version", API_VERSION)
        self._user_agent_entry = ("x-sdm-user-agent", user_agent)
        self._channel_options = list(channel_options)
        self._root_certificates = root_certificates
        self._channels: list[grpc.aio.Channel] = []
        self._callables: list[dict[str, Any]] = []
        self._loads: list[int] = []  # calls in flight per channel
        self._slots: Slots | None = None
        self._sleeping: set[asyncio.Future[None]] = set()  # calls waiting to retry
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.pacer = Pacer() if pace else None
        self.in_flight = 0
        self.retries = 0

    # -- lifecycle ------------------------------------------------------------------------

    def _open(self) -> None:
        """Create the channels, inside the running loop that will use them."""
        if self._closed:
            raise errors.ClientClosedError(CLOSED)
        loop = asyncio.get_running_loop()
        count = max(1, math.ceil(self.max_in_flight / STREAMS_PER_CHANNEL))
        # The caller's channel_options replace the defaults of the same name.
        base = dict(CHANNEL_OPTIONS)
        base.update(self._channel_options)
        for index in range(count):
            # Channels with equal arguments share one connection (and its stream limit): a
            # distinct argument and a local subchannel pool give each channel its own.
            options = [
                *base.items(),
                ("grpc.use_local_subchannel_pool", 1),
                ("sdm_async.channel_index", index),
            ]
            if self.insecure:
                ch = grpc.aio.insecure_channel(self.host, options=options)
            else:
                ch = grpc.aio.secure_channel(
                    self.host,
                    grpc.ssl_channel_credentials(root_certificates=self._root_certificates),
                    options=options,
                )
            self._channels.append(ch)
            self._callables.append({})
            self._loads.append(0)
        self._slots = Slots(self.max_in_flight)
        self._loop = loop

    def _check_loop(self) -> None:
        if self._closed:
            raise errors.ClientClosedError(CLOSED)
        if self._loop is None:
            self._open()
        elif self._loop is not asyncio.get_running_loop():
            raise RuntimeError(
                "this client was first used in another event loop; grpc.aio channels belong to "
                "the loop that created them: create one client per event loop"
            )

    async def close(self) -> None:
        """Close the channels. Every call not yet answered fails with ClientClosedError:
        those in flight (grpc.aio cancels them), and those waiting for a slot, the rate
        limit or a retry."""
        self._closed = True
        if self.pacer is not None:  # calls held for a window that will not come
            self.pacer.close(CLOSED)
        if self._slots is not None:
            self._slots.close()
        sleeping, self._sleeping = self._sleeping, set()
        for fut in sleeping:
            if not fut.done():
                fut.set_exception(errors.ClientClosedError(CLOSED))
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
            raise errors.ClientClosedError(CLOSED)
        return loads.index(min(loads))  # C calls only: no key function called per channel

    def _callable(self, index: int, method: MethodInfo) -> Any:
        table = self._callables[index]
        mc = table.get(method.path)
        if mc is None:
            mc = table[method.path] = self._channels[index].unary_unary(
                method.path,
                request_serializer=None,  # `call` sends the bytes it signed
                response_deserializer=method.deserialize,
                _registered_method=True,
            )
        return mc

    async def call(self, method: MethodInfo, request: Any, timeout: float | None) -> Any:
        """Call `method` with `request` (a message, or the bytes it serializes to)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._closed:
            self._check_loop()  # opens the channels on first use, else raises
        name = method.name
        # Serialized once per call (signed afresh per attempt); `Service._call` hands over
        # the bytes it already made to check the request's size.
        body = request if type(request) is bytes else request.SerializeToString()
        deadline = None if timeout is None else loop.time() + timeout
        pacer = self.pacer
        slots = self._slots
        assert slots is not None
        attempt = 0
        while True:
            queued = 0.0  # set when the attempt has to wait: its waits count from there
            attempt += 1
            token: Token | None = None
            if pacer is not None:
                token = pacer.take(name)
                if token is None:  # the budget is spent: wait for a unit (or the deadline)
                    queued = time.perf_counter()
                    token = await pacer.wait(name, deadline)
                    if token is None:
                        raise errors.TimeoutError(
                            f"{name}: timed out after {timeout} s waiting for the rate limit"
                        )
            try:
                # The deadline covers the wait for a slot too: `timeout` is for the whole call.
                if not slots.take_now():
                    if not queued:
                        queued = time.perf_counter()
                    if not await slots.take(deadline):
                        raise errors.TimeoutError(
                            f"{name}: timed out after {timeout} s waiting for a free slot "
                            f"(max_in_flight={self.max_in_flight} calls already in flight)"
                        )
                try:
                    remaining = None
                    if deadline is not None:
                        remaining = deadline - loop.time()
                        if remaining <= 0:
                            raise errors.TimeoutError(f"{name}: timed out after {timeout} s")
                    loads = self._loads  # close() replaces it: keep the list counted in
                    channel = self._pick_channel()
                    mc = self._callable(channel, method)
                    self.in_flight += 1
                    loads[channel] += 1
                    started = time.perf_counter()
                    waited = started - queued if queued else 0.0
                    error: errors.RPCError | None = None
                    # Signed here, per attempt, over the bytes sent: an interceptor would cost
                    # a task and a loop turn per call, and gRPC's own retries are off.
                    metadata = (
                        self._authentication,
                        ("x-sdm-signature", self._signer.sign(name, body)),
                        self._api_version,
                        self._user_agent_entry,
                    )
                    try:
                        response = await mc(body, timeout=remaining, metadata=metadata)
                    except grpc.aio.AioRpcError as e:
                        error = errors.from_grpc(e)
                        cause: BaseException | None = e
                    except asyncio.CancelledError:
                        # grpc.aio cancels the calls of a channel being closed: unless this
                        # task itself was cancelled, that is close() cutting the call off.
                        if not self._closed or _cancel_requested():
                            raise
                        error = errors.ClientClosedError(
                            f"{name}: the client was closed while the call was in flight "
                            "(the server may have carried it out)"
                        )
                        cause = None
                    finally:
                        self.in_flight -= 1
                        loads[channel] -= 1
                finally:
                    slots.give()
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
                    self._report(name, attempt, time.perf_counter() - started, None, None, waited)
                return response
            duration = time.perf_counter() - started
            wait = self.retry.delay(
                error,
                attempt,
                loop.time(),
                datetime.datetime.now(datetime.timezone.utc),
                deadline,
                paced=None if pacer is None else pacer.retry_in(name),
                creates=_creates(name),
            )
            self._report(name, attempt, duration, error, wait, waited)
            if wait is None:
                raise error from cause
            self.retries += 1
            log.info("%s: %s; retry %d in %.2f s", name, type(error).__name__, attempt, wait)
            await self._sleep(wait)

    async def _sleep(self, seconds: float) -> None:
        """Wait before a retry; close() ends the wait with ClientClosedError."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _wake, fut)
        self._sleeping.add(fut)
        try:
            await fut
        finally:
            timer.cancel()
            self._sleeping.discard(fut)

    def _report(
        self,
        name: str,
        attempt: int,
        duration: float,
        error: errors.RPCError | None,
        wait: float | None,
        waited: float,
    ) -> None:
        if log.isEnabledFor(logging.DEBUG):
            status = "OK" if error is None else type(error).__name__
            log.debug("%s attempt=%d %.1f ms %s", name, attempt, duration * 1000, status)
        if self.on_attempt is not None:
            self.on_attempt(Attempt(name, attempt, duration, error, wait, waited))
