"""Where a listing's time goes: parsing a page, and converting each item into a model, for
`sdm_async` (generated `from_pb_Account`) and the official SDK
(`strongdm.plumbing.convert_account_to_porcelain`), on the same page of 1000 accounts as the
emulator sends it, parsed by each SDK's own protobuf classes.

`sdm_async` converts `created_at` and `tags` on first read, so each SDK is measured twice:
converting alone, and converting then reading those two attributes (`*_read`), which costs
`sdm_async` those conversions and the first reads."""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable
from typing import Any

import grpc.aio
import strongdm.accounts_pb2
import strongdm.plumbing

from benchmarks.contenders import BareAio, Target
from sdm_async._generated.models.accounts import User, from_pb_Account
from sdm_async._generated.v1 import accounts_pb2


async def fetch_page(target: Target, limit: int = 1000) -> bytes:
    """One raw `Accounts.List` response, as bytes."""
    bare = BareAio(target)
    async with grpc.aio.insecure_channel(target.address) as channel:
        mc = channel.unary_unary(
            "/v1.Accounts/List",
            request_serializer=None,
            response_deserializer=None,
            _registered_method=True,
        )
        req = accounts_pb2.AccountListRequest()
        req.meta.limit = limit
        body = req.SerializeToString()
        raw: bytes = await mc(body, metadata=bare.metadata("Accounts.List", body))
    return raw


def _per_item(fn: Callable[[], Any], items: int, repeat: int) -> dict[str, float]:
    times = timeit.repeat(fn, number=1, repeat=repeat)
    return {
        "median_us": statistics.median(times) / items * 1e6,
        "min_us": min(times) / items * 1e6,
    }


def conversion(raw: bytes, repeat: int = 30) -> dict[str, Any]:
    ours = accounts_pb2.AccountListResponse.FromString(raw).accounts
    theirs = strongdm.accounts_pb2.AccountListResponse.FromString(raw).accounts
    n = len(ours)
    convert = strongdm.plumbing.convert_account_to_porcelain
    # Both lists of the same items must convert to the same values.
    mine, official = from_pb_Account(ours[0]), convert(theirs[0])
    assert isinstance(mine, User) and mine.email == official.email
    assert mine.created_at == official.created_at and mine.tags == official.tags
    parse = _per_item(lambda: accounts_pb2.AccountListResponse.FromString(raw), n, repeat)
    result: dict[str, Any] = {
        "items": n,
        "page_bytes": len(raw),
        "parse": parse,
        "sdm_async": _per_item(lambda: [from_pb_Account(a) for a in ours], n, repeat),
        "official": _per_item(lambda: [convert(a) for a in theirs], n, repeat),
        "sdm_async_read": _per_item(lambda: [_read(from_pb_Account(a)) for a in ours], n, repeat),
        "official_read": _per_item(lambda: [_read(convert(a)) for a in theirs], n, repeat),
    }
    result["ratio"] = result["official"]["median_us"] / result["sdm_async"]["median_us"]
    result["ratio_read"] = (
        result["official_read"]["median_us"] / result["sdm_async_read"]["median_us"]
    )
    return result


def _read(account: Any) -> Any:
    return account.created_at, account.tags
