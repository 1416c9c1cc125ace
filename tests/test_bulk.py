"""Bulk calls and rate-limit pacing against a loopback server with a fixed-window limit."""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any

import grpc
import pytest

import sdm_async
from sdm_async import RetryPolicy, errors
from sdm_async._generated.v1 import accounts_pb2, spec_pb2

from .conftest import Scripted, rich_error


def _create_handler(delay: float = 0.0, fail_emails: tuple[str, ...] = ()) -> Any:
    counter = iter(range(1, 1_000_000))

    async def handler(body: bytes, context: Any) -> bytes:
        req = accounts_pb2.AccountCreateRequest.FromString(body)
        if delay:
            await asyncio.sleep(delay)
        if req.account.user.email in fail_emails:
            raise rich_error(grpc.StatusCode.ALREADY_EXISTS, f"{req.account.user.email} exists")
        resp = accounts_pb2.AccountCreateResponse()
        resp.account.user.CopyFrom(req.account.user)
        resp.account.user.id = f"a-{next(counter):06d}"
        return resp.SerializeToString()

    return handler


def _users(n: int) -> list[sdm_async.User]:
    return [sdm_async.User(email=f"u{i}@example.com", first_name="U", last_name=str(i)) for i in range(n)]


async def test_outcomes_come_in_input_order_with_per_item_errors(scripted: Scripted) -> None:
    scripted.handlers["Accounts.Create"] = _create_handler(0.001, fail_emails=("u3@example.com",))
    async with scripted.client() as client:
        outcomes = await client.bulk(client.accounts.create, _users(50), concurrency=8)
    assert [o.item.email for o in outcomes] == [f"u{i}@example.com" for i in range(50)]
    failed = [o for o in outcomes if o.error]
    assert [o.index for o in failed] == [3]
    assert isinstance(failed[0].error, errors.AlreadyExistsError)
    assert all(o.response.account.email == o.item.email for o in outcomes if o.ok)


async def test_concurrency_bounds_calls_in_flight(scripted: Scripted) -> None:
    scripted.handlers["Accounts.Create"] = _create_handler(0.01)
    async with scripted.client() as client:
        await client.bulk(client.accounts.create, _users(60), concurrency=7)
    assert scripted.max_in_flight == 7


async def test_bulk_iter_yields_in_completion_order_and_tuples_spread(scripted: Scripted) -> None:
    async def get(body: bytes, context: Any) -> bytes:
        req = accounts_pb2.AccountGetRequest.FromString(body)
        await asyncio.sleep(0.05 if req.id == "slow" else 0)
        resp = accounts_pb2.AccountGetResponse()
        resp.account.user.id = req.id
        return resp.SerializeToString()

    scripted.handlers["Accounts.Get"] = get
    async with scripted.client() as client:
        seen = [
            o.response.account.id
            async for o in client.bulk_iter(client.accounts.get, [("slow", 5.0), "fast"], concurrency=2)
        ]
    assert seen == ["fast", "slow"]


async def test_cancelling_the_caller_cancels_everything_in_flight(scripted: Scripted) -> None:
    scripted.handlers["Accounts.Create"] = _create_handler(10)
    async with scripted.client() as client:
        job = asyncio.create_task(client.bulk(client.accounts.create, _users(20), concurrency=5))
        await asyncio.sleep(0.2)
        assert scripted.in_flight == 5
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        await asyncio.sleep(0.1)
        leftovers = [t for t in asyncio.all_tasks() if "bulk" in repr(t) and not t.done()]
        assert leftovers == []
        assert scripted.in_flight == 0


async def test_bulk_refuses_methods_of_other_clients(scripted: Scripted) -> None:
    async with scripted.client() as a, scripted.client() as b:
        with pytest.raises(TypeError, match="bound method of this client"):
            await a.bulk(b.accounts.create, _users(1))
        with pytest.raises(TypeError, match="bound method of this client"):
            await a.bulk(print, [1])  # type: ignore[arg-type]


class FixedWindow:
    """A server-side limit of `limit` calls per `window` seconds, as the API enforces."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.start = time.time()
        self.used = 0
        self.refused = 0
        self.served = 0

    def metadata(self) -> spec_pb2.RateLimitMetadata:
        now = time.time()
        index = int((now - self.start) // self.window)
        reset = self.start + (index + 1) * self.window
        if index != getattr(self, "_index", -1):
            self._index, self.used = index, 0
        md = spec_pb2.RateLimitMetadata(limit=self.limit, bucket="test")
        md.reset_at.FromDatetime(datetime.datetime.fromtimestamp(reset, datetime.timezone.utc))
        md.remaining = max(0, self.limit - self.used)
        return md

    def handler(self) -> Any:
        async def handle(body: bytes, context: Any) -> bytes:
            md = self.metadata()
            if self.used >= self.limit:
                self.refused += 1
                raise rich_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "rate limited", md)
            self.used += 1
            self.served += 1
            md.remaining = self.limit - self.used
            resp = accounts_pb2.AccountCreateResponse()
            resp.account.user.id = f"a-{self.served}"
            resp.rate_limit.CopyFrom(md)
            return resp.SerializeToString()

        return handle


async def test_pacing_uses_the_budget_with_few_refusals(scripted: Scripted) -> None:
    limiter = FixedWindow(limit=40, window=0.5)
    scripted.handlers["Accounts.Create"] = limiter.handler()
    async with scripted.client(retry=RetryPolicy(base_delay=0.05)) as client:
        started = time.time()
        outcomes = await client.bulk(client.accounts.create, _users(200), concurrency=32)
        elapsed = time.time() - started
    assert all(o.ok for o in outcomes)
    attempts = limiter.served + limiter.refused
    assert limiter.refused <= 0.02 * attempts + 1, (limiter.refused, attempts)
    # 200 calls at 40 per 0.5 s window need 5 windows: about 2 s from the first.
    allowed_rate = 40 / 0.5
    assert 200 / elapsed >= 0.7 * allowed_rate, elapsed
