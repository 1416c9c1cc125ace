"""Precision still missing, checked by a strict xfail in `tests/test_typing.py`: when this
passes mypy, move these lines into sample_usage.py and drop the xfail.

`client.bulk` and `client.bulk_iter` take `items: Iterable[Any]` (sdm_async/client.py and
sdm_async/bulk.py), so an outcome's `.item` is `Any`; with a type variable for the items
(`items: Iterable[I]` -> `list[Outcome[I, R]]`, `BulkIterator[I, R]`) it is the item's type.
"""

from __future__ import annotations

from typing_extensions import assert_type

import sdm_async
from sdm_async import AccountCreateResponse, Outcome, User


async def bulk_items(client: sdm_async.Client, users: list[User]) -> None:
    outcomes = await client.bulk(client.accounts.create, users, concurrency=8)
    for outcome in outcomes:
        assert_type(outcome, Outcome[User, AccountCreateResponse])
        assert_type(outcome.item, User)
        assert_type(outcome.item.email, str)

    async with client.bulk_iter(client.accounts.create, users) as stream:
        async for done in stream:
            assert_type(done.item, User)
