"""The call path against a real grpc.aio server: errors, retries, deadlines, pagination,
cancellation, limits and client lifecycle."""

from __future__ import annotations

import asyncio
import datetime
import gc
from typing import Any

import grpc
import pytest

import sdm_async
from sdm_async import RetryPolicy, errors
from sdm_async._generated.v1 import accounts_pb2

from .conftest import (
    ACCESS_KEY,
    SECRET,
    Scripted,
    accounts_pages,
    rate_limit_details,
    rich_error,
)

FAST = RetryPolicy(base_delay=0.01, max_delay=0.05)


def _get_response(user_id: str = "a-1") -> bytes:
    resp = accounts_pb2.AccountGetResponse()
    resp.account.user.id = user_id
    resp.account.user.email = "alice@example.com"
    resp.rate_limit.limit = 100
    return resp.SerializeToString()


def failing(*codes: grpc.StatusCode, then: bytes | None = None, details: Any = ()) -> Any:
    """A handler failing with `codes` in turn, then answering `then`."""
    remaining = list(codes)

    async def handler(body: bytes, context: Any) -> bytes:
        if remaining:
            code = remaining.pop(0)
            raise rich_error(code, f"scripted {code.name}", *details)
        assert then is not None
        return then

    return handler


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.NOT_FOUND, errors.NotFoundError),
        (grpc.StatusCode.ALREADY_EXISTS, errors.AlreadyExistsError),
        (grpc.StatusCode.INVALID_ARGUMENT, errors.BadRequestError),
        (grpc.StatusCode.UNAUTHENTICATED, errors.AuthenticationError),
        (grpc.StatusCode.PERMISSION_DENIED, errors.PermissionError),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.RPCError),
    ],
)
async def test_status_codes_map_to_the_official_classes(
    scripted: Scripted, code: grpc.StatusCode, cls: type
) -> None:
    scripted.handlers["Accounts.Get"] = failing(code, code)
    async with scripted.client(retry=FAST) as client:
        with pytest.raises(cls) as info:
            await client.accounts.get("a-1")
    assert info.value.msg == f"scripted {code.name}"
    assert info.value.code == code.value[0]
    assert isinstance(info.value.__cause__, grpc.aio.AioRpcError)
    assert len(scripted.calls) == 1  # none of these is retried


async def test_rate_limit_error_carries_its_metadata(scripted: Scripted) -> None:
    details = rate_limit_details(30)
    scripted.handlers["Accounts.Get"] = failing(
        grpc.StatusCode.RESOURCE_EXHAUSTED, details=[details]
    )
    async with scripted.client(retry_rate_limit_errors=False) as client:
        with pytest.raises(errors.RateLimitError) as info:
            await client.accounts.get("a-1")
    rl = info.value.rate_limit
    assert rl is not None
    assert (rl.limit, rl.remaining, rl.bucket) == (10, 0, "accounts")
    assert rl.reset_at is not None and rl.reset_at.tzinfo is not None


async def test_unavailable_and_internal_are_retried_then_succeed(scripted: Scripted) -> None:
    scripted.handlers["Accounts.Get"] = failing(
        grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, then=_get_response()
    )
    attempts: list[sdm_async.Attempt] = []
    async with scripted.client(retry=FAST, on_attempt=attempts.append) as client:
        resp = await client.accounts.get("a-1")
        assert client.retries == 2
    assert resp.account.email == "alice@example.com"
    assert [a.attempt for a in attempts] == [1, 2, 3]
    assert attempts[-1].error is None
    # Every attempt is signed afresh over the same bytes (the server checks each one).
    assert len({body for _, _, body in scripted.calls}) == 1


async def test_retries_stop_after_three(scripted: Scripted) -> None:
    scripted.handlers["Accounts.Get"] = failing(*[grpc.StatusCode.UNAVAILABLE] * 10)
    async with scripted.client(retry=FAST) as client:
        with pytest.raises(errors.UnavailableError):
            await client.accounts.get("a-1")
    assert len(scripted.calls) == 4  # the try and three retries


async def test_rate_limited_call_waits_for_reset_at_not_the_backoff(scripted: Scripted) -> None:
    # A backoff of 1.6 s would be the guess; the server says the window reopens in 0.3 s.
    # (Unpaced: with pacing on, the pacer times the retry; see test_pacing_skew.py.)
    scripted.handlers["Accounts.Get"] = failing(
        grpc.StatusCode.RESOURCE_EXHAUSTED, then=_get_response(), details=[rate_limit_details(0.3)]
    )
    waits: list[float] = []
    on_attempt = lambda a: waits.append(a.retry_in or 0)  # noqa: E731
    async with scripted.client(on_attempt=on_attempt, pace_rate_limits=False) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await client.accounts.get("a-1")
        elapsed = loop.time() - started
    assert 0.15 < waits[0] < 0.6
    assert elapsed < 1.0


async def test_no_wait_outlives_the_timeout(scripted: Scripted) -> None:
    scripted.handlers["Accounts.Get"] = failing(
        grpc.StatusCode.RESOURCE_EXHAUSTED, then=_get_response(), details=[rate_limit_details(30)]
    )
    async with scripted.client() as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(errors.RateLimitError):
            await client.accounts.get("a-1", timeout=0.5)
        assert loop.time() - started < 0.4  # raised at once, not after sleeping


async def test_timeout_covers_the_whole_call(scripted: Scripted) -> None:
    async def slow(body: bytes, context: Any) -> bytes:
        await asyncio.sleep(5)
        return _get_response()

    scripted.handlers["Accounts.Get"] = slow
    async with scripted.client() as client:
        with pytest.raises(errors.TimeoutError):
            await client.accounts.get("a-1", timeout=0.2)


async def test_cancellation_mid_backoff_propagates_at_once(scripted: Scripted) -> None:
    scripted.handlers["Accounts.Get"] = failing(*[grpc.StatusCode.UNAVAILABLE] * 5)
    slow = RetryPolicy(base_delay=10, jitter=0)
    async with scripted.client(retry=slow) as client:
        task = asyncio.create_task(client.accounts.get("a-1"))
        await asyncio.sleep(0.3)  # the first attempt failed; now asleep before the retry
        assert len(scripted.calls) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 1)
    assert len(scripted.calls) == 1


def test_backoff_schedule_is_the_official_one() -> None:
    policy = RetryPolicy()
    assert policy.backoff(1, rand=lambda: 0.5) == pytest.approx(1.6)
    assert policy.backoff(2, rand=lambda: 0.5) == pytest.approx(2.56)
    assert policy.backoff(1, rand=lambda: 1.0) == pytest.approx(1.6 * 1.2)
    assert policy.backoff(1, rand=lambda: 0.0) == pytest.approx(1.6 * 0.8)
    assert policy.backoff(50, rand=lambda: 0.5) == pytest.approx(120)


async def test_pagination_walks_every_page_in_order(scripted: Scripted) -> None:
    scripted.handlers["Accounts.List"] = accounts_pages(1050, 100)
    async with scripted.client() as client:
        users = [u async for u in client.accounts.list("")]
    assert [u.last_name for u in users] == [str(i) for i in range(1050)]
    assert all(isinstance(u, sdm_async.User) for u in users)
    assert len(scripted.calls) == 11


async def test_page_limit_is_sent(scripted: Scripted) -> None:
    scripted.handlers["Accounts.List"] = accounts_pages(25, 100)
    async with scripted.client(page_limit=10) as client:
        assert len([u async for u in client.accounts.list("")]) == 25
    assert len(scripted.calls) == 3


async def test_the_next_page_is_fetched_while_the_caller_works(scripted: Scripted) -> None:
    scripted.handlers["Accounts.List"] = accounts_pages(300, 100, delay=0.05)
    async with scripted.client() as client:
        pager = client.accounts.list("")
        first = await pager.__anext__()
        assert first.last_name == "0"
        await asyncio.sleep(0.2)  # "work" on page one; page two arrives meanwhile
        assert len(scripted.calls) == 2  # one page ahead, never more
        rest = [u async for u in pager]
    assert len(rest) == 299


async def test_the_next_page_is_sent_before_a_busy_caller_yields(scripted: Scripted) -> None:
    # A caller that converts a whole page without awaiting anything must still overlap the
    # next page's round trip with its work.
    scripted.handlers["Accounts.List"] = accounts_pages(300, 100, delay=0.05)
    async with scripted.client() as client:
        pager = client.accounts.list("")
        await pager.__anext__()
        assert client._transport.in_flight == 1  # page two is already on the wire
        await pager.aclose()


async def test_leaving_a_list_early_cancels_the_fetch_in_flight(scripted: Scripted) -> None:
    scripted.handlers["Accounts.List"] = accounts_pages(10_000, 100, delay=0.2)
    async with scripted.client() as client:
        async for _ in client.accounts.list(""):
            break
        gc.collect()
        await asyncio.sleep(0.05)
        pending = [
            t
            for t in asyncio.all_tasks()
            if "Transport.call" in repr(t.get_coro()) and not t.done()
        ]
        assert pending == []
    assert len(scripted.calls) <= 2


async def test_filter_placeholders_are_quoted_like_the_official_sdk(scripted: Scripted) -> None:
    scripted.handlers["Accounts.List"] = accounts_pages(0, 100)
    async with scripted.client() as client:
        [u async for u in client.accounts.list('name:? tags:"a b",x:?', 'Sam "S"', 5)]
        req = accounts_pb2.AccountListRequest.FromString(scripted.calls[-1][2])
        assert req.filter == 'name:"Sam \\"S\\"" tags:"a b",x:"5"'
        with pytest.raises(errors.BadRequestError, match="placeholder"):
            client.accounts.list("email:?")
    assert len(scripted.calls) == 1  # the bad filter never reached the server


async def test_bad_arguments_fail_before_any_call_and_name_the_field(scripted: Scripted) -> None:
    async with scripted.client() as client:
        with pytest.raises(TypeError, match=r"User\.email must be str, not int"):
            await client.accounts.create(sdm_async.User(email=5))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="Account must be one of User, Service, Token"):
            await client.accounts.create(sdm_async.Role(name="x"))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"accounts\.get"):
            await client.accounts.get(42)  # type: ignore[arg-type]
    assert scripted.calls == []


async def test_snapshot_client_sends_snapshot_at(scripted: Scripted) -> None:
    scripted.handlers["Accounts.Get"] = failing(then=_get_response())
    scripted.handlers["Accounts.List"] = accounts_pages(1, 10)
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    async with scripted.client() as client:
        snap = client.snapshot_at(when)
        await snap.accounts.get("a-1")
        [u async for u in snap.accounts.list("")]
        assert not hasattr(snap.accounts, "create")
    get = accounts_pb2.AccountGetRequest.FromString(scripted.calls[0][2])
    listed = accounts_pb2.AccountListRequest.FromString(scripted.calls[1][2])
    assert get.meta.snapshot_at.seconds == int(when.timestamp())
    assert listed.meta.snapshot_at.seconds == int(when.timestamp())


async def test_client_wide_limit_bounds_calls_in_flight(scripted: Scripted) -> None:
    async def slow(body: bytes, context: Any) -> bytes:
        await asyncio.sleep(0.02)
        return _get_response()

    scripted.handlers["Accounts.Get"] = slow
    async with scripted.client(max_in_flight=5) as client:
        await asyncio.gather(*(client.accounts.get(f"a-{i}") for i in range(40)))
    assert scripted.max_in_flight == 5


async def test_300_in_flight_without_refused_streams(scripted: Scripted) -> None:
    async def slow(body: bytes, context: Any) -> bytes:
        await asyncio.sleep(0.2)
        return _get_response()

    scripted.handlers["Accounts.Get"] = slow
    async with scripted.client(max_in_flight=300) as client:
        results = await asyncio.gather(*(client.accounts.get(f"a-{i}") for i in range(300)))
    assert len(results) == 300
    assert scripted.max_in_flight > 100


async def test_closed_client_refuses_calls_and_close_is_idempotent(scripted: Scripted) -> None:
    client = scripted.client()
    await client.close()
    await client.close()
    with pytest.raises(RuntimeError, match="closed"):
        await client.accounts.get("a-1")


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("", SECRET), {}, "api_access_key is empty"),
        ((ACCESS_KEY, "###"), {}, "not valid base64"),
        ((ACCESS_KEY, "  "), {}, "api_secret is empty"),
        ((ACCESS_KEY, SECRET), {"page_limit": -1}, "page_limit"),
        ((ACCESS_KEY, SECRET), {"max_in_flight": 0}, "max_in_flight"),
    ],
)
def test_bad_configuration_is_refused_at_construction(
    args: tuple[str, str], kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        sdm_async.Client(*args, **kwargs)


def test_secret_never_in_repr_or_errors() -> None:
    client = sdm_async.Client(ACCESS_KEY, SECRET)
    assert SECRET not in repr(client) and SECRET not in repr(client.__dict__)
    with pytest.raises(ValueError) as info:
        sdm_async.Client(ACCESS_KEY, SECRET + "%")
    assert SECRET not in str(info.value)


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SDM_API_ACCESS_KEY", raising=False)
    monkeypatch.delenv("SDM_API_SECRET_KEY", raising=False)
    with pytest.raises(ValueError, match="SDM_API_ACCESS_KEY and SDM_API_SECRET_KEY"):
        sdm_async.Client.from_env()
    monkeypatch.setenv("SDM_API_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("SDM_API_SECRET_KEY", SECRET)
    monkeypatch.setenv("SDM_API_HOST", "127.0.0.1:9")
    assert sdm_async.Client.from_env().host == "127.0.0.1:9"
