"""OpenTelemetry traces and metrics for a client, built on `on_attempt`.

    import sdm_async.otel

    client = sdm_async.Client(key, secret, on_attempt=sdm_async.otel.instrument())
    sdm_async.otel.instrument(other_client)  # or: keeps the client's own hook, called after

Each call is an INTERNAL span named like the method (`Accounts.List`), a child of the span
current where the call was made, with one CLIENT span per attempt (`v1.Accounts/List`) as its
children. `on_attempt` runs in the calling task after each attempt, so a call's span is started
when its first attempt is reported (with the attempt's real start time) and ended when its last
one is. Attributes name the method, attempt, status and waits, never request content or a
message (error messages may quote the request).

Needs the `otel` extra (`pip install 'sdm-async[otel]'`): the OpenTelemetry API alone; the
application installs the SDK and exporters. Without them the API records nothing.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

try:
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "sdm_async.otel needs the OpenTelemetry API: pip install 'sdm-async[otel]'"
    ) from e

from sdm_async._rpc import Attempt
from sdm_async.client import VERSION, Client

__all__ = ["Instrumentation", "instrument"]

SCOPE = "sdm_async"
RESOURCE_EXHAUSTED = 8
# A call that ended between two attempts (cancelled, its client closed, or out of time while
# waiting to send) reports no last attempt: its span is ended when the task makes another
# call through the same hook, or ends.
ABANDONED = "_OTHER"
# Seconds, from a fast call on loopback to rate-limit windows and retries that take minutes
# (the SDK's default buckets are for milliseconds: every value would land in the first).
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass
class _Call:
    """A call whose last attempt is not reported yet."""

    span: trace.Span
    method: str
    attempt: int  # the last reported
    start: int  # ns, when its first attempt began waiting to be sent
    resume_by: int  # ns, when its next attempt was due
    code: int  # status of the last reported attempt


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _rpc_attributes(method: str) -> dict[str, Any]:
    service, _, name = method.partition(".")
    return {"rpc.system": "grpc", "rpc.service": f"v1.{service}", "rpc.method": name}


class Instrumentation:
    """The `on_attempt` hook that `instrument()` returns: records spans and metrics for
    each `Attempt`, then calls the hook it chains with, if any."""

    def __init__(
        self,
        tracer: trace.Tracer,
        meter: metrics.Meter,
        chained: Callable[[Attempt], None] | None = None,
    ) -> None:
        self.chained = chained
        self._tracer = tracer
        self._calls = meter.create_counter(
            "sdm.client.calls", "{call}", "Calls finished, by method and status"
        )
        self._duration = meter.create_histogram(
            "sdm.client.call.duration",
            "s",
            "Calls' time, every wait and retry included",
            explicit_bucket_boundaries_advisory=SECONDS,
        )
        self._retries = meter.create_counter(
            "sdm.client.retries", "{retry}", "Attempts sent again, by the status that failed"
        )
        self._refused = meter.create_counter(
            "sdm.client.refused",
            "{attempt}",
            "Attempts the server refused for its rate limit (RESOURCE_EXHAUSTED)",
        )
        self._wait = meter.create_histogram(
            "sdm.client.attempt.wait",
            "s",
            "Time each attempt waited for the rate limit (pacing) and a free slot",
            explicit_bucket_boundaries_advisory=SECONDS,
        )
        self._attributes: dict[str, dict[str, Any]] = {}
        self._pending: weakref.WeakKeyDictionary[object, _Call] = weakref.WeakKeyDictionary()
        self._watched: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"<sdm_async.otel.Instrumentation chained={self.chained!r}>"

    def __call__(self, attempt: Attempt) -> None:
        self._record(attempt)
        if self.chained is not None:
            self.chained(attempt)

    def _record(self, a: Attempt) -> None:
        end = time.time_ns()  # reported right after the attempt's answer
        sent = end - _ns(a.duration)
        queued = sent - _ns(a.waited)
        base = self._attributes.get(a.method)
        if base is None:
            base = self._attributes[a.method] = _rpc_attributes(a.method)
        code = 0 if a.error is None else a.error.code
        task = _current_task()
        key: object = self if task is None else task
        call = self._pending.pop(key, None)
        if call is not None and (call.method != a.method or a.attempt != call.attempt + 1):
            self._abandon(call, min(call.resume_by, queued))
            call = None
        if call is None:
            span = self._tracer.start_span(
                a.method, kind=SpanKind.INTERNAL, attributes=base, start_time=queued
            )
            call = _Call(span, a.method, a.attempt, queued, end, code)
        call.attempt, call.code = a.attempt, code

        attrs = {**base, "rpc.grpc.status_code": code, "sdm.attempt": a.attempt}
        attrs["sdm.wait"] = a.waited
        if a.retry_in is not None:
            attrs["sdm.retry_in"] = a.retry_in
        if a.error is not None:
            attrs["error.type"] = type(a.error).__name__
        span = self._tracer.start_span(
            f"v1.{a.method.replace('.', '/')}",
            context=trace.set_span_in_context(call.span),
            kind=SpanKind.CLIENT,
            attributes=attrs,
            start_time=sent,
        )
        if a.error is not None:
            span.set_status(Status(StatusCode.ERROR, type(a.error).__name__))
        span.end(end_time=end)

        self._wait.record(a.waited, base)
        if code == RESOURCE_EXHAUSTED:
            self._refused.add(1, base)
        if a.retry_in is not None and a.error is not None:
            self._retries.add(1, {**base, "rpc.grpc.status_code": code})
            call.resume_by = end + _ns(a.retry_in)
            self._pending[key] = call
            if task is not None and task not in self._watched:
                # A call cancelled during its retry wait reports nothing more.
                self._watched.add(task)
                task.add_done_callback(self._task_done)
            return
        self._finish(call, None if a.error is None else type(a.error).__name__, end)

    def _finish(self, call: _Call, kind: str | None, end: int) -> None:
        """End the call's span and count it; `kind`: the error type, None for success."""
        attrs = {**self._attributes[call.method], "rpc.grpc.status_code": call.code}
        span = call.span
        span.set_attribute("rpc.grpc.status_code", call.code)
        span.set_attribute("sdm.attempts", call.attempt)
        if kind is not None:
            attrs["error.type"] = kind
            span.set_attribute("error.type", kind)
            span.set_status(Status(StatusCode.ERROR, kind))
        span.end(end_time=end)
        self._calls.add(1, attrs)
        self._duration.record((end - call.start) / 1e9, attrs)

    def _abandon(self, call: _Call, end: int) -> None:
        # The status is its last attempt's; the error type says the end is unknown.
        self._finish(call, ABANDONED, max(end, call.start))

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._watched.discard(task)
        call = self._pending.pop(task, None)
        if call is not None:
            self._abandon(call, min(call.resume_by, time.time_ns()))


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop: a hook called by hand
        return None


def instrument(
    client: Client | None = None,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> Instrumentation:
    """An `on_attempt` hook that records OpenTelemetry spans and metrics.

    `instrument()` returns it, for `Client(..., on_attempt=...)`. `instrument(client)` also
    installs it on `client`, chained with the client's own `on_attempt` (called after it
    records, as before).
    The providers default to the global ones (`opentelemetry.trace.set_tracer_provider`, ...).
    """
    if client is not None and not isinstance(client, Client):
        raise TypeError(
            f"instrument() takes an sdm_async.Client (or nothing), not {type(client).__name__}"
        )
    for value, name, cls in (
        (tracer_provider, "tracer_provider", trace.TracerProvider),
        (meter_provider, "meter_provider", metrics.MeterProvider),
    ):
        if value is not None and not isinstance(value, cls):
            raise TypeError(
                f"{name} must be an opentelemetry {cls.__name__}, not {type(value).__name__}"
            )
    chained = None
    if client is not None:
        chained = client._transport.on_attempt
        link: Any = chained
        while link is not None:  # twice would record every call twice
            if isinstance(link, Instrumentation):
                raise ValueError("this client is already instrumented")
            link = getattr(link, "chained", None)
    hook = Instrumentation(
        trace.get_tracer(SCOPE, VERSION, tracer_provider=tracer_provider),
        metrics.get_meter(SCOPE, VERSION, meter_provider=meter_provider),
        chained,
    )
    if client is not None:
        client._transport.on_attempt = hook
    return hook
