"""The official `strongdm` SDK against the emulator: proof that it speaks the real protocol.

The official client is synchronous, so each test body runs in a worker thread while the
emulator serves on the test's event loop.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

strongdm = pytest.importorskip("strongdm")

from sdm_async.testing import Emulator  # noqa: E402


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(page_size=5) as e:
        yield e


async def in_thread(fn: Callable[[], Any]) -> Any:
    return await asyncio.to_thread(fn)


def official(emu: Emulator, **options: Any) -> Any:
    return strongdm.Client(emu.access_key, emu.secret_key, emu.address, True, **options)


async def test_accounts_crud_filters_and_pages(emu: Emulator) -> None:
    def body() -> None:
        client = official(emu)
        ids = []
        for i in range(12):
            user = strongdm.User(
                email=f"user{i}@example.com",
                first_name="User",
                last_name=str(i),
                tags={"i": str(i)},
            )
            resp = client.accounts.create(user)
            assert resp.account.id.startswith("a-")
            ids.append(resp.account.id)
        got = client.accounts.get(ids[3]).account
        assert got.email == "user3@example.com" and got.tags == {"i": "3"}
        got.last_name = "Three"
        assert client.accounts.update(got).account.last_name == "Three"
        # 12 users at 5 per page: the official generator follows the cursors.
        assert [a.id for a in client.accounts.list("")] == ids
        assert [a.email for a in client.accounts.list("email:?", "user7@example.com")] == [
            "user7@example.com"
        ]
        assert len(list(client.accounts.list("lastname:?,type:user", "1*"))) == 3  # 1, 10, 11
        client.accounts.delete(ids[0])
        with pytest.raises(strongdm.errors.NotFoundError):
            client.accounts.get(ids[0])

    await in_thread(body)


async def test_service_accounts_and_tokens(emu: Emulator) -> None:
    def body() -> None:
        client = official(emu)
        svc = client.accounts.create(strongdm.Service(name="deployer"))
        assert svc.token and isinstance(svc.account, strongdm.Service)
        tok = client.accounts.create(
            strongdm.Token(
                name="ci",
                account_type="api",
                permissions=[strongdm.Permission.ROLE_LIST],
                duration=datetime.timedelta(days=1),
            )
        )
        assert tok.access_key and tok.secret_key
        limited = strongdm.Client(tok.access_key, tok.secret_key, emu.address, True)
        assert list(limited.roles.list("")) == []
        with pytest.raises(strongdm.errors.PermissionError):
            limited.roles.create(strongdm.Role(name="nope"))

    await in_thread(body)


async def test_roles_attachments_grants_nodes_and_resources(emu: Emulator) -> None:
    def body() -> None:
        client = official(emu)
        role = client.roles.create(
            strongdm.Role(name="engineers", access_rules=[{"tags": {"env": "dev"}}])
        ).role
        assert client.roles.get(role.id).role.access_rules == [{"tags": {"env": "dev"}}]
        user = client.accounts.create(
            strongdm.User(email="e@example.com", first_name="E", last_name="E")
        ).account
        att = client.account_attachments.create(
            strongdm.AccountAttachment(account_id=user.id, role_id=role.id)
        ).account_attachment
        assert client.account_attachments.get(att.id).account_attachment.role_id == role.id
        resources = [
            strongdm.Postgres(
                name="pg", hostname="db", port=5432, database="d", username="u", password="p"
            ),
            strongdm.Redis(name="cache", hostname="redis", port=6379),
            strongdm.SSH(name="bastion", hostname="b", port=22, username="ops"),
            strongdm.HTTPBasicAuth(
                name="web", url="http://web", healthcheck_path="/", subdomain="web"
            ),
        ]
        made = [client.resources.create(r).resource for r in resources]
        assert [type(r).__name__ for r in made] == ["Postgres", "Redis", "SSH", "HTTPBasicAuth"]
        assert [r.name for r in client.resources.list("type:redis")] == ["cache"]
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        grant = client.account_grants.create(
            strongdm.AccountGrant(
                account_id=user.id,
                resource_id=made[0].id,
                start_from=now,
                valid_until=now + datetime.timedelta(hours=2),
            )
        ).account_grant
        assert client.account_grants.get(grant.id).account_grant.valid_until == now + (
            datetime.timedelta(hours=2)
        )
        gw = client.nodes.create(strongdm.Gateway(name="gw", listen_address="1.2.3.4:5000"))
        relay = client.nodes.create(strongdm.Relay(name="relay"))
        assert gw.token and relay.token
        assert sorted(n.name for n in client.nodes.list("")) == ["gw", "relay"]
        client.roles.delete(role.id)
        assert list(client.account_attachments.list("")) == []

    await in_thread(body)


async def test_error_classes(emu: Emulator) -> None:
    def body() -> None:
        client = official(emu)
        with pytest.raises(strongdm.errors.NotFoundError, match="not found"):
            client.roles.get("r-0000000000000000")
        client.roles.create(strongdm.Role(name="dup"))
        with pytest.raises(strongdm.errors.AlreadyExistsError, match="dup"):
            client.roles.create(strongdm.Role(name="dup"))
        with pytest.raises(strongdm.errors.BadRequestError, match="email is required"):
            client.accounts.create(strongdm.User(first_name="A", last_name="B"))
        with pytest.raises(strongdm.errors.BadRequestError, match="unknown field"):
            list(client.accounts.list("nosuchfield:x"))
        wrong = strongdm.Client(
            emu.access_key, base64.b64encode(b"x" * 32).decode(), emu.address, True
        )
        with pytest.raises(strongdm.errors.AuthenticationError, match="signature"):
            wrong.roles.get("r-1")

    await in_thread(body)


async def test_rate_limit_error_carries_metadata() -> None:
    async with Emulator(rate_limit=2, rate_limit_window=60) as emu:

        def body() -> None:
            client = official(emu, retry_rate_limit_errors=False)
            first = client.roles.create(strongdm.Role(name="a"))
            assert first.rate_limit.limit == 2 and first.rate_limit.remaining == 1
            client.roles.create(strongdm.Role(name="b"))
            with pytest.raises(strongdm.errors.RateLimitError) as info:
                client.roles.create(strongdm.Role(name="c"))
            rl = info.value.rate_limit
            assert rl.limit == 2 and rl.remaining == 0 and rl.bucket == emu.access_key
            assert rl.reset_at > datetime.datetime.now(datetime.timezone.utc)

        await in_thread(body)


async def test_snapshot_client(emu: Emulator) -> None:
    def body() -> datetime.datetime:
        client = official(emu)
        client.roles.create(strongdm.Role(name="old"))
        return datetime.datetime.now(datetime.timezone.utc)

    moment = await in_thread(body)
    await asyncio.sleep(0.01)

    def later() -> None:
        client = official(emu)
        client.roles.create(strongdm.Role(name="new"))
        past = client.snapshot_at(moment)
        assert [r.name for r in past.roles.list("")] == ["old"]
        assert sorted(r.name for r in client.roles.list("")) == ["new", "old"]
        history = list(client.roles_history.list(""))
        assert [h.role.name for h in history] == ["old", "new"]

    await in_thread(later)


def _objects() -> list[tuple[str, Callable[[], Any], str, Callable[[Any], None]]]:
    """(service attribute, a new object, its response field, a change to make) per type."""

    def rename(obj: Any) -> None:
        obj.name = obj.name + "-renamed"

    def retitle(obj: Any) -> None:
        obj.last_name = "Renamed"

    return [
        (
            "accounts",
            lambda: strongdm.User(email="crud@x.io", first_name="C", last_name="R"),
            "account",
            retitle,
        ),
        ("accounts", lambda: strongdm.Service(name="svc"), "account", rename),
        ("accounts", lambda: strongdm.Token(name="tok", account_type="api"), "account", rename),
        ("roles", lambda: strongdm.Role(name="role"), "role", rename),
        (
            "nodes",
            lambda: strongdm.Gateway(name="gw", listen_address="1.2.3.4:5000"),
            "node",
            rename,
        ),
        ("nodes", lambda: strongdm.Relay(name="relay"), "node", rename),
        (
            "resources",
            lambda: strongdm.Postgres(
                name="pg", hostname="h", port=5432, database="d", username="u", password="p"
            ),
            "resource",
            rename,
        ),
        (
            "resources",
            lambda: strongdm.Redis(name="redis", hostname="h", port=6379),
            "resource",
            rename,
        ),
        (
            "resources",
            lambda: strongdm.SSH(name="ssh", hostname="h", port=22, username="u"),
            "resource",
            rename,
        ),
    ]


@pytest.mark.parametrize(
    ("service", "make", "field", "change"),
    _objects(),
    ids=["user", "service", "token", "role", "gateway", "relay", "postgres", "redis", "ssh"],
)
async def test_crud_of_every_core_type(
    emu: Emulator, service: str, make: Callable[[], Any], field: str, change: Callable[[Any], None]
) -> None:
    def body() -> None:
        svc = getattr(official(emu), service)
        made = getattr(svc.create(make()), field)
        assert type(made) is type(make()) and made.id
        got = getattr(svc.get(made.id), field)
        assert got.id == made.id
        change(got)
        updated = getattr(svc.update(got), field)
        assert updated.to_dict() == getattr(svc.get(made.id), field).to_dict()
        assert updated.to_dict() != made.to_dict()  # the change took
        assert [x.id for x in svc.list("id:?", made.id)] == [made.id]
        svc.delete(made.id)
        with pytest.raises(strongdm.errors.NotFoundError):
            svc.get(made.id)
        assert list(svc.list("id:?", made.id)) == []

    await in_thread(body)


async def test_attachments_and_grants_create_get_list_delete(emu: Emulator) -> None:
    def body() -> None:
        client = official(emu)
        user = client.accounts.create(strongdm.User(email="l@x.io", first_name="L", last_name="L"))
        role = client.roles.create(strongdm.Role(name="linked")).role
        redis = client.resources.create(strongdm.Redis(name="r", hostname="h", port=1)).resource
        att = client.account_attachments.create(
            strongdm.AccountAttachment(account_id=user.account.id, role_id=role.id)
        ).account_attachment
        grant = client.account_grants.create(
            strongdm.AccountGrant(account_id=user.account.id, resource_id=redis.id)
        ).account_grant
        assert (
            client.account_attachments.get(att.id).account_attachment.account_id == user.account.id
        )
        assert [g.id for g in client.account_grants.list("resourceid:?", redis.id)] == [grant.id]
        client.account_attachments.delete(att.id)
        client.account_grants.delete(grant.id)
        assert list(client.account_attachments.list("")) == []
        assert list(client.account_grants.list("")) == []
        with pytest.raises(strongdm.errors.NotFoundError):
            client.account_grants.get(grant.id)

    await in_thread(body)
