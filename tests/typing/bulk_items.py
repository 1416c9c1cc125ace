"""Bulk outcomes know the type of their item as well as of their response (checked by
`tests/test_typing.py`)."""

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
