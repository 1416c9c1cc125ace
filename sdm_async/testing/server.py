"""The wire side of the emulator (moto's "responses"): one generic handler per method that
reads the raw request bytes and answers as the real API does.

A call reads top to bottom in `Servicer.handle`: authenticate over the exact bytes received,
check the key's permissions, take from the rate-limit window (a nominal one when limiting is
off), wait the configured latency, maybe fail (before or after the change), let the backend
answer, attach `rate_limit`.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from sdm_async.testing import schema
from sdm_async.testing.backend import Backend
from sdm_async.testing.schema import Method
from sdm_async.testing.status import ApiError

log = logging.getLogger("sdm_async.emulator")

FAULT_CODES = {"UNAVAILABLE": grpc.StatusCode.UNAVAILABLE, "INTERNAL": grpc.StatusCode.INTERNAL}


@dataclass
class Faults:
    """Calls that fail on purpose, so that clients' retry and reconcile logic can be tested.

    `when="after"` applies the change and then loses the reply, as a dropped connection would.
    """

    rate: float = 0.0  # fraction of calls that fail
    code: str = "UNAVAILABLE"
    when: str = "before"  # "before" or "after" the change is applied
    latency: float = 0.0  # seconds added to every call
    jitter: float = 0.0  # plus a random extra in [0, jitter] seconds
    seed: int | None = None
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("fault rate must be between 0 and 1")
        if self.code not in FAULT_CODES:
            raise ValueError(f"fault code must be one of {', '.join(FAULT_CODES)}")
        if self.when not in ("before", "after"):
            raise ValueError("fault timing must be 'before' or 'after'")
        if self.latency < 0 or self.jitter < 0:
            raise ValueError("latency and jitter must be >= 0")
        self.rng = random.Random(self.seed)

    def delay(self) -> float:
        return self.latency + (self.rng.random() * self.jitter if self.jitter else 0.0)

    def strike(self, when: str) -> None:
        if self.rate and self.when == when and self.rng.random() < self.rate:
            raise ApiError(FAULT_CODES[self.code], f"injected fault ({when} the change)")


# The budget every answer carries while limiting is off: it counts down and resets like an
# enforced one but is never enforced, and is so large that a client pacing to `remaining`
# (sdm_async's pacer, anyone's) never holds a call for it.
NOMINAL_LIMIT = 1_000_000_000


class RateLimiter:
    """A fixed window of `limit` calls per `window` seconds for each access key, as the API
    enforces. `limit=0` turns enforcement off: answers then carry a nominal budget of
    `nominal` calls per window, counted the same way and never refused."""

    def __init__(
        self,
        limit: int = 0,
        window: float = 60.0,
        clock: Callable[[], float] = time.time,
        *,
        nominal: int = NOMINAL_LIMIT,
    ) -> None:
        if limit < 0 or window <= 0:
            raise ValueError("rate limit must be >= 0 calls per a window of > 0 seconds")
        if nominal <= 0:
            raise ValueError("the nominal rate limit must be > 0 calls per window")
        self.limit = limit
        self.window = window
        self.clock = clock
        self.nominal = nominal
        self._windows: dict[str, tuple[float, int]] = {}  # key -> (window end, calls used)
        self.refused = 0

    def take(self, access_key: str, rate_limit: Any) -> None:
        """Count one call against the key's window and describe the window in `rate_limit`;
        over an enforced limit, raise RESOURCE_EXHAUSTED carrying the same description."""
        budget = self.limit or self.nominal
        now = self.clock()
        end, used = self._windows.get(access_key, (0.0, 0))
        if now >= end:
            end, used = (now // self.window + 1) * self.window, 0
        refused = bool(self.limit) and used >= budget
        if not refused:
            used += 1
        self._windows[access_key] = (end, used)
        rate_limit.limit = budget
        rate_limit.remaining = max(0, budget - used)
        rate_limit.bucket = access_key
        seconds = int(end)
        rate_limit.reset_at.seconds = seconds
        rate_limit.reset_at.nanos = int((end - seconds) * 1e9)
        if refused:
            self.refused += 1
            reset = datetime.datetime.fromtimestamp(end, datetime.timezone.utc)
            raise ApiError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"rate limit of {self.limit} calls per {self.window:g} s exceeded; "
                f"the window resets at {reset.isoformat()}",
                rate_limit,
            )


@dataclass
class Stats:
    calls: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    by_method: dict[str, int] = field(default_factory=dict)


class Servicer(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self, backend: Backend, limiter: RateLimiter, faults: Faults) -> None:
        self.backend = backend
        self.limiter = limiter
        self.faults = faults
        self.stats = Stats()
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        for path, m in schema.methods().items():
            self._handlers[path] = grpc.unary_unary_rpc_method_handler(self._bind(m))
        self._rate_limit_cls = schema.message_class("RateLimitMetadata")

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._handlers.get(details.method)

    def _bind(self, m: Method) -> Callable[[bytes, grpc.aio.ServicerContext], Any]:
        async def handler(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return await self.handle(m, body, context)

        return handler

    async def handle(self, m: Method, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        stats = self.stats
        stats.calls += 1
        stats.by_method[m.full_name] = stats.by_method.get(m.full_name, 0) + 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        started = time.perf_counter()
        status = "OK"
        try:
            metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
            key = self.backend.keys.verify(m.full_name, body, metadata)
            if not key.allows(m.service, m.kind):
                raise ApiError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"this key may not call {m.full_name}: it lacks the permission",
                )
            rate_limit = self._rate_limit_cls()
            self.limiter.take(key.access_key, rate_limit)
            delay = self.faults.delay()
            if delay:
                await asyncio.sleep(delay)
            self.faults.strike("before")
            try:
                request = m.request.FromString(body)
            except Exception:  # DecodeError, or a string field that is not UTF-8
                raise ApiError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{m.full_name}: malformed request: {len(body)} bytes that are not a valid "
                    f"{m.request.DESCRIPTOR.full_name} (bad protobuf encoding, or a string "
                    "field that is not UTF-8)",
                ) from None
            reply = self.backend.call(m, request, key)
            self.faults.strike("after")
            if "rate_limit" in reply.message.DESCRIPTOR.fields_by_name:
                reply.message.rate_limit.CopyFrom(rate_limit)
            return bytes(reply.message.SerializeToString()) + reply.tail
        except ApiError as e:
            status = e.code.name
            await context.abort_with_status(e.to_status())
            raise  # unreachable: abort raises
        except Exception as e:  # a bug of the emulator's: say so rather than a bare UNKNOWN
            if isinstance(e, grpc.aio.AbortError):
                raise
            status = "INTERNAL"
            log.exception("%s failed", m.full_name)
            error = ApiError(grpc.StatusCode.INTERNAL, f"emulator error in {m.full_name}: {e!r}")
            await context.abort_with_status(error.to_status())
            raise
        finally:
            stats.in_flight -= 1
            if log.isEnabledFor(logging.DEBUG):
                ms = (time.perf_counter() - started) * 1000
                log.debug("%s %s %.1f ms", m.full_name, status, ms)
