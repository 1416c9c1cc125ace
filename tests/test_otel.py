"""`sdm_async.otel` against the emulator, read back with the OpenTelemetry SDK's in-memory
span exporter and metric reader."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import sdm_async
import sdm_async.otel
from sdm_async import errors
from sdm_async.testing import Emulator

FAST = sdm_async.RetryPolicy(base_delay=0.01, max_delay=0.05)
OK, UNAVAILABLE, RESOURCE_EXHAUSTED = 0, 14, 8


@dataclass
class Telemetry:
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def instrument(self, client: sdm_async.Client | None = None) -> sdm_async.otel.Instrumentation:
        return sdm_async.otel.instrument(
            client, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def calls(self) -> list[ReadableSpan]:
        mine = [s for s in self.finished() if _scope(s) == "sdm_async"]
        return [s for s in mine if s.kind is SpanKind.INTERNAL]

    def attempts(self, call: ReadableSpan) -> list[ReadableSpan]:
        found = [s for s in self.finished() if s.parent and s.parent.span_id == _id(call)]
        return sorted(found, key=lambda s: _attr(s, "sdm.attempt"))

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [
            point
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def counts(self, name: str) -> dict[tuple[str, int | None], int]:
        """A counter's value per (method, status code)."""
        return {
            (p.attributes["rpc.method"], p.attributes.get("rpc.grpc.status_code")): p.value
            for p in self.points(name)
            if p.value
        }


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Telemetry(spans, reader, tracer_provider, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


def _scope(span: ReadableSpan) -> str | None:
    return span.instrumentation_scope.name if span.instrumentation_scope else None


def _id(span: ReadableSpan) -> int:
    assert span.context is not None
    span_id: int = span.context.span_id
    return span_id


def _attr(span: ReadableSpan, name: str) -> Any:
    assert span.attributes is not None
    return span.attributes.get(name)


def _times(span: ReadableSpan) -> tuple[int, int]:
    assert span.start_time is not None and span.end_time is not None
    return span.start_time, span.end_time


async def test_a_call_is_a_span_with_its_attempt_as_child(otel: Telemetry) -> None:
    async with Emulator() as emu, emu.client() as client:
        otel.instrument(client)
        await client.roles.create(sdm_async.Role(name="data"))
    [call] = otel.calls()
    [attempt] = otel.attempts(call)
    assert call.name == "Roles.Create" and attempt.name == "v1.Roles/Create"
    assert attempt.kind is SpanKind.CLIENT
    rpc = {"rpc.system": "grpc", "rpc.service": "v1.Roles", "rpc.method": "Create"}
    assert dict(call.attributes or {}) == {**rpc, "rpc.grpc.status_code": OK, "sdm.attempts": 1}
    assert {k: v for k, v in (attempt.attributes or {}).items() if k != "sdm.wait"} == {
        **rpc,
        "rpc.grpc.status_code": OK,
        "sdm.attempt": 1,
    }
    assert call.status.status_code is StatusCode.UNSET
    assert attempt.status.status_code is StatusCode.UNSET
    call_start, call_end = _times(call)
    sent, answered = _times(attempt)
    assert call_start <= sent <= answered <= call_end
    assert sent - call_start == pytest.approx(_attr(attempt, "sdm.wait") * 1e9, abs=1000)
    assert attempt.context is not None and call.context is not None
    assert attempt.context.trace_id == call.context.trace_id
    assert otel.counts("sdm.client.calls") == {("Create", OK): 1}
    assert otel.counts("sdm.client.retries") == {}
    assert otel.counts("sdm.client.refused") == {}
    [wait] = otel.points("sdm.client.attempt.wait")
    assert wait.count == 1
    [duration] = otel.points("sdm.client.call.duration")
    assert duration.count == 1 and duration.sum == pytest.approx((call_end - call_start) / 1e9)
    # Buckets in seconds, not the SDK's default ones for milliseconds (0, 5, 10, ... 10000).
    for histogram in (wait, duration):
        assert histogram.explicit_bounds[0] == 0.005 and histogram.explicit_bounds[-1] == 120


async def test_a_retried_call_has_one_span_per_attempt_and_counts_the_retry(
    otel: Telemetry,
) -> None:
    async with Emulator(fault_rate=1.0, fault_code="UNAVAILABLE") as emu:
        seen: list[sdm_async.Attempt] = []

        def heal(attempt: sdm_async.Attempt) -> None:
            seen.append(attempt)
            emu.faults.rate = 0.0  # the retry succeeds

        async with emu.client(retry=FAST, on_attempt=heal) as client:
            otel.instrument(client)  # chained: the client's own hook still runs
            await client.roles.create(sdm_async.Role(name="data"))
    assert [(a.attempt, a.error is None) for a in seen] == [(1, False), (2, True)]
    [call] = otel.calls()
    first, second = otel.attempts(call)
    assert _attr(first, "rpc.grpc.status_code") == UNAVAILABLE
    assert _attr(first, "error.type") == "UnavailableError"
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "UnavailableError"
    assert _attr(first, "sdm.retry_in") == seen[0].retry_in
    assert _attr(second, "rpc.grpc.status_code") == OK
    assert _attr(second, "sdm.retry_in") is None
    assert _attr(second, "sdm.attempt") == 2
    # The second attempt went after the first one's retry wait.
    assert _times(second)[0] - _times(first)[1] >= seen[0].retry_in * 1e9 - 5e6  # type: ignore[operator]
    assert call.status.status_code is StatusCode.UNSET
    assert _attr(call, "sdm.attempts") == 2 and _attr(call, "rpc.grpc.status_code") == OK
    assert _times(call)[0] <= _times(first)[0] and _times(second)[1] <= _times(call)[1]
    assert otel.counts("sdm.client.retries") == {("Create", UNAVAILABLE): 1}
    assert otel.counts("sdm.client.calls") == {("Create", OK): 1}


async def test_a_call_that_gives_up_is_an_error_span(otel: Telemetry) -> None:
    policy = sdm_async.RetryPolicy(base_delay=0.01, max_delay=0.05, max_retries=1)
    async with Emulator(fault_rate=1.0, fault_code="INTERNAL") as emu:
        async with emu.client(retry=policy, on_attempt=otel.instrument()) as client:
            with pytest.raises(errors.InternalError):
                await client.roles.create(sdm_async.Role(name="data"))
    [call] = otel.calls()
    assert len(otel.attempts(call)) == 2
    assert call.status.status_code is StatusCode.ERROR
    assert _attr(call, "error.type") == "InternalError"
    assert _attr(call, "rpc.grpc.status_code") == 13
    assert otel.counts("sdm.client.calls") == {("Create", 13): 1}
    assert otel.counts("sdm.client.retries") == {("Create", 13): 1}


async def test_a_call_refused_for_the_rate_limit_is_counted(otel: Telemetry) -> None:
    async with Emulator(rate_limit=2, rate_limit_window=60) as emu:
        async with emu.client(
            pace_rate_limits=False, retry_rate_limit_errors=False, on_attempt=otel.instrument()
        ) as client:
            await client.roles.create(sdm_async.Role(name="a"))
            await client.roles.create(sdm_async.Role(name="b"))
            with pytest.raises(errors.RateLimitError):
                await client.roles.create(sdm_async.Role(name="c"))
    assert otel.counts("sdm.client.refused") == {("Create", None): 1}
    assert otel.counts("sdm.client.calls") == {("Create", OK): 2, ("Create", RESOURCE_EXHAUSTED): 1}
    refused = [c for c in otel.calls() if c.status.status_code is StatusCode.ERROR]
    assert [_attr(c, "error.type") for c in refused] == ["RateLimitError"]


async def test_a_wait_for_a_free_slot_is_the_attempts_wait(otel: Telemetry) -> None:
    # One call in flight at a time, each answered after 0.3 s: of two calls made together,
    # one waits for the other's answer before it is sent.
    attempts: list[sdm_async.Attempt] = []
    async with Emulator(latency=0.3) as emu:
        async with emu.client(max_in_flight=1, on_attempt=attempts.append) as client:
            otel.instrument(client)
            called = time.time_ns()
            await asyncio.gather(*(client.roles.create(sdm_async.Role(name=n)) for n in "ab"))
    spans = sorted(
        (span for call in otel.calls() for span in otel.attempts(call)), key=lambda s: _times(s)
    )
    first, second = spans
    assert _times(second)[0] >= _times(first)[1] - 1_000_000  # sent once the slot was free
    for span in spans:
        # `sdm.wait` is the whole time between the call and its send (a little is signing).
        assert _times(span)[0] - _ns(_attr(span, "sdm.wait")) == pytest.approx(called, abs=0.1e9)
    assert _attr(second, "sdm.wait") >= 0.3 - 0.1  # at least the first call's latency
    assert sorted(_attr(s, "sdm.wait") for s in spans) == sorted(a.waited for a in attempts)
    [wait] = otel.points("sdm.client.attempt.wait")
    assert wait.count == 2 and wait.sum == pytest.approx(sum(a.waited for a in attempts))


async def test_pacing_waits_and_refused_probes_are_recorded(otel: Telemetry) -> None:
    # 2 calls per 1 s window: 5 calls in a row are held by the pacer (which may probe the
    # window's end with a call the server refuses, and retries it).
    attempts: list[sdm_async.Attempt] = []
    async with Emulator(rate_limit=2, rate_limit_window=1.0) as emu:
        async with emu.client(on_attempt=attempts.append) as client:
            otel.instrument(client)
            called: list[int] = []
            for i in range(5):
                called.append(time.time_ns())
                await client.roles.create(sdm_async.Role(name=f"r{i}"))
    calls = sorted(otel.calls(), key=lambda s: _times(s)[0])
    assert len(calls) == 5
    spans = [span for call in calls for span in otel.attempts(call)]
    assert [_attr(s, "sdm.wait") for s in spans] == [a.waited for a in attempts]
    for call, t0 in zip(calls, called, strict=True):
        first = otel.attempts(call)[0]
        assert _times(first)[0] - _ns(_attr(first, "sdm.wait")) == pytest.approx(t0, abs=0.1e9)
    refused = sum(isinstance(a.error, errors.RateLimitError) for a in attempts)
    assert otel.counts("sdm.client.refused") == ({("Create", None): refused} if refused else {})
    assert otel.counts("sdm.client.calls") == {("Create", OK): 5}
    [wait] = otel.points("sdm.client.attempt.wait")
    assert wait.count == len(attempts)
    assert wait.sum == pytest.approx(sum(a.waited for a in attempts))


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


async def test_calls_nest_under_the_callers_span_in_every_task(otel: Telemetry) -> None:
    tracer = otel.tracer_provider.get_tracer("app")
    async with Emulator(page_size=2) as emu, emu.client(on_attempt=otel.instrument()) as client:
        for i in range(5):
            made = (await client.roles.create(sdm_async.Role(name=f"r{i}"))).role
        assert made is not None
        otel.spans.clear()
        with tracer.start_as_current_span("job") as job:
            # Pages are fetched by tasks of the pager's own; they start in this context.
            names = [r.name async for r in client.roles.list("")]
            await asyncio.gather(*(client.roles.get(r.id) for r in await _roles(client)))
        await client.roles.get(made.id)  # outside the job: a root span
    assert len(names) == 5
    ctx = job.get_span_context()
    calls = otel.calls()
    inside = [c for c in calls if c.parent is not None]
    assert {c.parent.span_id for c in inside if c.parent} == {ctx.span_id}
    assert {c.context.trace_id for c in inside if c.context} == {ctx.trace_id}
    assert sorted(c.name for c in inside).count("Roles.List") == 3 + 3  # two listings of 5
    assert sorted(c.name for c in inside).count("Roles.Get") == 5
    [outside] = [c for c in calls if c.parent is None]
    assert outside.name == "Roles.Get"


async def _roles(client: sdm_async.Client) -> list[sdm_async.Role]:
    return [r async for r in client.roles.list("")]


async def test_no_secret_or_request_content_in_any_attribute(otel: Telemetry) -> None:
    async with Emulator(fault_rate=0.3, seed=5) as emu:
        async with emu.client(retry=FAST, on_attempt=otel.instrument()) as client:
            made = await client.accounts.create(
                sdm_async.Token(name="robot-7f3a", permissions=[sdm_async.Permission.USER_LIST])
            )
            await client.accounts.create(
                sdm_async.User(email="alice.q@example.com", first_name="Alice", last_name="Q")
            )
            with pytest.raises(errors.AlreadyExistsError, match=r"alice\.q@example\.com"):
                await client.accounts.create(
                    sdm_async.User(email="alice.q@example.com", first_name="A", last_name="Q")
                )
            async with sdm_async.Client(
                made.access_key, made.secret_key, emu.address, True, on_attempt=otel.instrument()
            ) as token:
                with pytest.raises(errors.PermissionError):
                    await token.roles.create(sdm_async.Role(name="project-x"))
        secrets = [emu.secret_key, emu.access_key, made.access_key, made.secret_key]
    assert made.account is not None
    forbidden = [*secrets, "robot-7f3a", "alice.q", "project-x", made.account.id]
    texts: list[str] = []
    for span in otel.finished():
        texts += [span.name, span.status.description or ""]
        texts += [f"{k}={v!r}" for k, v in (span.attributes or {}).items()]
        texts += [f"{k}={v!r}" for e in span.events for k, v in (e.attributes or {}).items()]
    data = otel.reader.get_metrics_data()
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    texts += [f"{k}={v!r}" for k, v in (point.attributes or {}).items()]
    assert len(otel.calls()) == 4 and texts
    leaks = [t for t in texts for word in forbidden if word in t]
    assert leaks == []


async def test_a_call_cancelled_in_its_retry_wait_still_ends_its_span(otel: Telemetry) -> None:
    slow = sdm_async.RetryPolicy(base_delay=30, max_delay=30)
    failed = asyncio.Event()
    async with Emulator(fault_rate=1.0) as emu:
        async with emu.client(retry=slow, on_attempt=lambda a: failed.set()) as client:
            otel.instrument(client)
            task = asyncio.create_task(client.roles.create(sdm_async.Role(name="x")))
            await failed.wait()  # the first attempt failed: the call waits 30 s to retry
            assert otel.calls() == []
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0)  # the task's done-callbacks run in the next loop turn
    [call] = otel.calls()
    assert call.status.status_code is StatusCode.ERROR
    assert _attr(call, "error.type") == "_OTHER"
    assert _attr(call, "rpc.grpc.status_code") == UNAVAILABLE
    assert len(otel.attempts(call)) == 1
    assert otel.counts("sdm.client.calls") == {("Create", UNAVAILABLE): 1}


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is 3.11+")
async def test_a_call_abandoned_in_its_task_is_ended_by_the_next_call(otel: Telemetry) -> None:
    slow = sdm_async.RetryPolicy(base_delay=30, max_delay=30)
    async with Emulator(fault_rate=1.0) as emu:
        async with emu.client(retry=slow, on_attempt=otel.instrument()) as client:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):  # type: ignore[attr-defined]
                    await client.roles.create(sdm_async.Role(name="x"))
            assert otel.calls() == []
            emu.faults.rate = 0.0
            await client.roles.create(sdm_async.Role(name="y"))  # same task, same hook
    first, second = sorted(otel.calls(), key=lambda s: _times(s)[0])
    assert _attr(first, "error.type") == "_OTHER"
    assert _times(first)[1] <= _times(second)[0]
    assert second.status.status_code is StatusCode.UNSET
    assert otel.counts("sdm.client.calls") == {("Create", UNAVAILABLE): 1, ("Create", OK): 1}


async def test_instrument_refuses_bad_input(otel: Telemetry) -> None:
    with pytest.raises(TypeError, match=r"sdm_async\.Client"):
        sdm_async.otel.instrument("client")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tracer_provider"):
        sdm_async.otel.instrument(tracer_provider=otel.meter_provider)  # type: ignore[arg-type]
    async with Emulator() as emu, emu.client(on_attempt=print) as client:
        hook = otel.instrument(client)
        assert hook.chained is print
        with pytest.raises(ValueError, match="already instrumented"):
            otel.instrument(client)


def test_with_the_api_alone_calls_work_and_nothing_is_recorded() -> None:
    # A fresh process: no SDK configured, so the global providers are the API's no-ops.
    code = """if True:
        import asyncio, sdm_async, sdm_async.otel
        from sdm_async.testing import Emulator

        async def main():
            async with Emulator() as emu:
                hook = sdm_async.otel.instrument()
                async with emu.client(on_attempt=hook) as client:
                    made = await client.roles.create(sdm_async.Role(name="data"))
                    print(made.role.name)

        asyncio.run(main())
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "data\n"


def test_import_sdm_async_does_not_import_opentelemetry() -> None:
    code = "import sys, sdm_async; print(sorted(m for m in sys.modules if 'opentelemetry' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_without_opentelemetry_the_import_error_names_the_extra() -> None:
    code = "import sys; sys.modules['opentelemetry'] = None; import sdm_async.otel"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        "ImportError: sdm_async.otel needs the OpenTelemetry API: pip install 'sdm-async[otel]'"
    )
