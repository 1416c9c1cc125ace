"""What a user writes, checked by `mypy --strict` in `tests/test_typing.py` (never run).

Each `assert_type` fails the check unless mypy infers exactly that type (`Any` included), so
the public API gives editors and type checkers the model types, not `Any`.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import AsyncIterator

from typing_extensions import assert_type

import sdm_async
import sdm_async.errors
from sdm_async import (
    AccountCreateResponse,
    AccountGetResponse,
    AsyncPager,
    Attempt,
    Outcome,
    Postgres,
    RateLimitMetadata,
    Role,
    RoleCreateResponse,
    Service,
    SnapshotClient,
    Token,
    User,
)
from sdm_async.testing import Emulator


async def accounts(client: sdm_async.Client) -> None:
    resp = await client.accounts.create(
        sdm_async.User(email="alice@example.com", first_name="Alice", last_name="Smith")
    )
    assert_type(resp, AccountCreateResponse)
    assert_type(resp.account, User | Service | Token | None)
    assert_type(resp.account, sdm_async.Account | None)
    assert_type(resp.access_key, str)
    assert_type(resp.rate_limit, RateLimitMetadata | None)
    if resp.rate_limit is not None:
        assert_type(resp.rate_limit.reset_at, datetime.datetime | None)
        assert_type(resp.rate_limit.remaining, int)

    account = resp.account
    if isinstance(account, User):
        assert_type(account.email, str)
        assert_type(account.created_at, datetime.datetime | None)
        assert_type(account.tags, dict[str, str])
        assert_type(account.suspended, bool)

    got = await client.accounts.get("a-123", timeout=5.0)
    assert_type(got, AccountGetResponse)

    pager = client.accounts.list("email:?", "alice@example.com")
    assert_type(pager, AsyncPager[User | Service | Token])
    async for a in pager:
        assert_type(a, User | Service | Token)
        assert_type(a.id, str)
        assert_type(a.tags, dict[str, str])

    async for page in client.accounts.list("").pages():
        assert_type(page, list[User | Service | Token])

    async with client.accounts.list("type:user") as users:
        assert_type(users, AsyncPager[User | Service | Token])
        async for u in users:
            assert_type(u, User | Service | Token)
            break
    async with contextlib.aclosing(client.roles.list("")) as roles:
        async for role in roles:
            assert_type(role, Role)


async def resources(client: sdm_async.Client) -> None:
    async for r in client.resources.list("type:postgres"):
        assert_type(r, sdm_async.Resource)
        assert_type(r.name, str)
        assert_type(r.tags, dict[str, str])
        if isinstance(r, Postgres):
            assert_type(r.hostname, str)
            assert_type(r.port, int)

    created = await client.resources.create(
        Postgres(name="db", hostname="db.internal", port=5432, username="u", database="d")
    )
    assert_type(created.resource, sdm_async.Resource | None)


async def roles_and_snapshots(client: sdm_async.Client) -> None:
    created = await client.roles.create(Role(name="engineers", access_rules=[{"tags": {}}]))
    assert_type(created, RoleCreateResponse)
    assert_type(created.role, Role | None)

    snapshot = client.snapshot_at(datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc))
    assert_type(snapshot, SnapshotClient)
    roles = snapshot.roles.list("")
    assert_type(roles, AsyncPager[Role])
    async for role in roles:
        assert_type(role, Role)
        assert_type(role.name, str)


def failed_emails(outcomes: list[Outcome[User, AccountCreateResponse]]) -> list[str]:
    return [o.item.email for o in outcomes if o.error is not None]


async def bulk(client: sdm_async.Client) -> None:
    users = [
        User(email=f"user{i}@example.com", first_name="U", last_name=str(i)) for i in range(10)
    ]
    outcomes = await client.bulk(client.accounts.create, users, concurrency=8)
    # `.item` is checked in pending_bulk_items.py: it is `Any` until `bulk` is generic in it.
    for outcome in outcomes:
        assert_type(outcome.response, AccountCreateResponse | None)
        assert_type(outcome.error, Exception | None)
        assert_type(outcome.ok, bool)
        assert_type(outcome.index, int)
        if outcome.response is not None:
            assert_type(outcome.response.account, sdm_async.Account | None)
    assert_type(failed_emails(outcomes), list[str])

    async with client.bulk_iter(client.accounts.create, users) as stream:
        async for done in stream:
            assert_type(done.response, AccountCreateResponse | None)


async def errors(client: sdm_async.Client) -> None:
    try:
        await client.accounts.get("a-missing")
    except sdm_async.errors.NotFoundError as e:
        assert_type(e.msg, str)
        assert_type(e.code, int)
    except sdm_async.errors.RateLimitError as e:
        assert_type(e.rate_limit, RateLimitMetadata | None)
        if e.rate_limit is not None:
            assert_type(e.rate_limit.reset_at, datetime.datetime | None)
    except sdm_async.RPCError as e:
        assert_type(e.msg, str)


def constants() -> None:
    assert_type(sdm_async.Permission.ROLE_LIST, str)
    assert_type(sdm_async.PermissionLevel.ADMIN, str)


def configuration() -> sdm_async.Client:
    seen: list[Attempt] = []
    client = sdm_async.Client.from_env(
        retry=sdm_async.RetryPolicy(max_retries=5),
        on_attempt=seen.append,
    )
    assert_type(client, sdm_async.Client)
    assert_type(client.retry_policy, sdm_async.RetryPolicy)
    assert_type(client.retries, int)
    assert_type(client.max_in_flight, int)
    for attempt in seen:
        assert_type(attempt.method, str)
        assert_type(attempt.duration, float)
        assert_type(attempt.error, sdm_async.RPCError | None)
    return client


async def main(key: str, secret: str) -> None:
    async with sdm_async.Client(key, secret) as client:
        assert_type(client, sdm_async.Client)
        await accounts(client)
        await resources(client)
        await roles_and_snapshots(client)
        await bulk(client)
        await errors(client)


async def emulated() -> AsyncIterator[User]:
    async with Emulator() as emu:
        assert_type(emu, Emulator)
        assert_type(emu.address, str)
        assert_type(emu.access_key, str)
        async with emu.client() as client:
            assert_type(client, sdm_async.Client)
            async for a in client.accounts.list("type:user"):
                if isinstance(a, User):
                    yield a
