"""The emulator through sdm_async and raw gRPC: domain rules, auth, permissions, history and
snapshots, cursors under concurrent writes, rate limits and faults."""

from __future__ import annotations

import asyncio
import base64
import datetime
from typing import Any

import grpc
import grpc.aio
import pytest

import sdm_async
from sdm_async import RetryPolicy, errors
from sdm_async._generated.v1 import accounts_pb2
from sdm_async._signing import sign, utc_date
from sdm_async.testing import Emulator, schema

NO_RETRY = RetryPolicy(max_retries=0, retry_rate_limit_errors=False)


CLIENT_RETRY = NO_RETRY  # the `client` fixture's policy (conftest.py)


def user(i: int | str, **kw: Any) -> sdm_async.User:
    return sdm_async.User(email=f"u{i}@example.com", first_name="U", last_name=str(i), **kw)


async def test_account_crud_and_natural_keys(client: sdm_async.Client) -> None:
    created = await client.accounts.create(user(1, tags={"team": "a"}))
    a = created.account
    assert a.id.startswith("a-") and a.created_at is not None
    assert (await client.accounts.get(a.id)).account == a
    with pytest.raises(errors.AlreadyExistsError, match=r"u1@example\.com"):
        await client.accounts.create(user(1))  # emails are unique, case-insensitively
    with pytest.raises(errors.AlreadyExistsError):
        await client.accounts.create(
            sdm_async.User(email="U1@Example.com", first_name="x", last_name="y")
        )
    assert a.permission_level == sdm_async.PermissionLevel.USER and not a.suspended
    a.last_name = "Renamed"
    a.permission_level = sdm_async.PermissionLevel.SUSPENDED  # how the API suspends a user
    updated = (await client.accounts.update(a)).account
    assert updated.last_name == "Renamed" and updated.suspended
    assert updated.created_at == a.created_at  # read-only: kept by the server
    suspended = [x async for x in client.accounts.list("")]
    assert [x.id for x in suspended] == [a.id]  # suspended accounts stay listable
    await client.accounts.delete(a.id)
    with pytest.raises(errors.NotFoundError, match=a.id):
        await client.accounts.get(a.id)
    with pytest.raises(errors.NotFoundError):
        await client.accounts.delete(a.id)


@pytest.mark.parametrize(
    ("model", "field"),
    [
        (sdm_async.User(email="x@example.com", first_name="X"), "last_name"),
        (sdm_async.Service(), "name"),
        (sdm_async.Role(), "name"),
        (sdm_async.Postgres(name="pg", hostname="h", username="u", password="p"), "database"),
        (sdm_async.Gateway(name="gw"), "listen_address"),
    ],
)
async def test_required_fields_are_named(client: sdm_async.Client, model: Any, field: str) -> None:
    service = {
        sdm_async.User: client.accounts,
        sdm_async.Service: client.accounts,
        sdm_async.Role: client.roles,
        sdm_async.Postgres: client.resources,
        sdm_async.Gateway: client.nodes,
    }[type(model)]
    with pytest.raises(errors.BadRequestError, match=rf"\.{field} is required"):
        await service.create(model)


async def test_references_are_checked_and_deletes_cascade(client: sdm_async.Client) -> None:
    alice = (await client.accounts.create(user("alice"))).account
    role = (await client.roles.create(sdm_async.Role(name="dba"))).role
    pg = (
        await client.resources.create(
            sdm_async.Postgres(
                name="pg", hostname="db", database="app", username="u", password="p", port=5432
            )
        )
    ).resource
    with pytest.raises(errors.NotFoundError, match="role_id"):
        await client.account_attachments.create(
            sdm_async.AccountAttachment(account_id=alice.id, role_id="r-missing")
        )
    with pytest.raises(errors.NotFoundError, match="account_id"):
        await client.account_grants.create(
            sdm_async.AccountGrant(account_id="a-missing", resource_id=pg.id)
        )
    att = (
        await client.account_attachments.create(
            sdm_async.AccountAttachment(account_id=alice.id, role_id=role.id)
        )
    ).account_attachment
    with pytest.raises(errors.AlreadyExistsError):
        await client.account_attachments.create(
            sdm_async.AccountAttachment(account_id=alice.id, role_id=role.id)
        )
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    grant = (
        await client.account_grants.create(
            sdm_async.AccountGrant(
                account_id=alice.id,
                resource_id=pg.id,
                start_from=now,
                valid_until=now + datetime.timedelta(hours=1),
            )
        )
    ).account_grant
    assert grant.valid_until == now + datetime.timedelta(hours=1)
    assert (await client.account_grants.get(grant.id)).account_grant.start_from == now
    assert [x.id async for x in client.account_attachments.list("accountid:?", alice.id)] == [
        att.id
    ]
    await client.accounts.delete(alice.id)
    assert [x async for x in client.account_attachments.list("")] == []
    assert [x async for x in client.account_grants.list("")] == []
    assert (await client.roles.get(role.id)).role.name == "dba"  # the role itself stays


async def test_legacy_role_attachments_and_grants(client: sdm_async.Client) -> None:
    parent = (await client.roles.create(sdm_async.Role(name="parent"))).role
    child = (await client.roles.create(sdm_async.Role(name="child"))).role
    redis = (await client.resources.create(sdm_async.Redis(name="r", hostname="h"))).resource
    ra = await client.role_attachments.create(
        sdm_async.RoleAttachment(composite_role_id=parent.id, attached_role_id=child.id)
    )
    rg = await client.role_grants.create(
        sdm_async.RoleGrant(role_id=child.id, resource_id=redis.id)
    )
    assert ra.role_attachment.id.startswith("ra-") and rg.role_grant.id.startswith("rg-")
    with pytest.raises(errors.NotFoundError, match="resource_id"):
        await client.role_grants.create(sdm_async.RoleGrant(role_id=child.id, resource_id="rs-x"))
    await client.roles.delete(child.id)
    assert [x async for x in client.role_attachments.list("")] == []
    assert [x async for x in client.role_grants.list("")] == []


async def test_role_access_rules_are_validated_json(client: sdm_async.Client) -> None:
    rules = [{"tags": {"env": "prod"}}, {"type": "postgres"}]
    role = (await client.roles.create(sdm_async.Role(name="r", access_rules=rules))).role
    assert (await client.roles.get(role.id)).role.access_rules == rules
    request = spec_request_with_bad_rules()
    with pytest.raises(errors.BadRequestError, match="access_rules"):
        await client._transport.call(request[0], request[1], 5)


def spec_request_with_bad_rules() -> tuple[Any, Any]:
    from sdm_async._generated.services.roles import _CREATE
    from sdm_async._generated.v1 import roles_pb2

    req = roles_pb2.RoleCreateRequest()
    req.role.name = "broken"
    req.role.access_rules = "[{not json"
    return _CREATE, req


async def test_tokens_get_keys_limited_to_their_permissions(
    emu: Emulator, client: sdm_async.Client
) -> None:
    made = await client.accounts.create(
        sdm_async.Token(name="ci", permissions=[sdm_async.Permission.USER_LIST])
    )
    assert made.access_key.startswith("auth-") and made.secret_key
    assert "secret_key='***'" in repr(made)
    await client.accounts.create(user(1))
    async with sdm_async.Client(made.access_key, made.secret_key, emu.address, True) as token:
        assert len([a async for a in token.accounts.list("type:user")]) == 1
        with pytest.raises(errors.PermissionError, match=r"Roles\.Create"):
            await token.roles.create(sdm_async.Role(name="nope"))
        with pytest.raises(errors.PermissionError):
            await token.accounts.create(user(2))
        # Suspending the token shuts its key out; deleting it forgets the key.
        t = made.account
        t.suspended = True
        await client.accounts.update(t)
        with pytest.raises(errors.AuthenticationError, match="suspended"):
            await token.accounts.get(t.id)
        await client.accounts.delete(t.id)
        with pytest.raises(errors.AuthenticationError, match="unknown"):
            await token.accounts.get(t.id)


async def test_nodes_and_service_accounts_get_a_token(client: sdm_async.Client) -> None:
    gw = await client.nodes.create(sdm_async.Gateway(name="gw", listen_address="10.0.0.1:5000"))
    relay = await client.nodes.create(sdm_async.Relay(name="relay-1"))
    svc = await client.accounts.create(sdm_async.Service(name="deployer"))
    assert gw.token and relay.token and svc.token
    assert gw.node.id.startswith("n-") and isinstance(relay.node, sdm_async.Relay)
    names = sorted([n.name async for n in client.nodes.list("type:gateway")])
    assert names == ["gw"]
    with pytest.raises(errors.AlreadyExistsError):
        await client.nodes.create(sdm_async.Relay(name="relay-1"))


async def test_every_resource_type_can_be_stored_and_listed(client: sdm_async.Client) -> None:
    kinds = schema.message_class("Resource").DESCRIPTOR.oneofs_by_name["resource"].fields
    creates = []
    for i, f in enumerate(kinds):
        resource = schema.message_class("Resource")()
        driver = getattr(resource, f.name)
        for name in schema.required_fields(driver):
            field = driver.DESCRIPTOR.fields_by_name[name]
            if field.type == field.TYPE_STRING:
                setattr(driver, name, "x")
            elif field.type == field.TYPE_BOOL:
                setattr(driver, name, True)
            elif field.message_type is None:
                setattr(driver, name, 1)
            else:
                getattr(driver, name).SetInParent()
        driver.name = f"res-{i}"
        creates.append((f.name, resource))
    from sdm_async._generated.services.resources import _CREATE
    from sdm_async._generated.v1 import resources_pb2

    for _name, resource in creates:
        req = resources_pb2.ResourceCreateRequest()
        req.resource.CopyFrom(resource)
        await client._transport.call(_CREATE, req, 5)
    listed = [r async for r in client.resources.list("")]
    assert len(listed) == len(kinds) > 100
    assert {type(r).__name__ for r in listed} >= {"Postgres", "Redis", "SSH", "Mysql"}


async def test_history_records_every_change_and_snapshots_see_the_past(
    client: sdm_async.Client,
) -> None:
    a = (await client.accounts.create(user(1))).account
    before_update = datetime.datetime.now(datetime.timezone.utc)
    await asyncio.sleep(0.01)
    a.first_name = "Changed"
    await client.accounts.update(a)
    b = (await client.accounts.create(user(2))).account
    await client.accounts.delete(a.id)
    history = [h async for h in client.accounts_history.list("")]
    assert [(h.account.id, h.deleted_at is not None) for h in history] == [
        (a.id, False),
        (a.id, False),
        (b.id, False),
        (a.id, True),
    ]
    assert [h.timestamp for h in history] == sorted(h.timestamp for h in history)
    assert history[1].account.first_name == "Changed"
    past = client.snapshot_at(before_update)
    assert [x.id async for x in past.accounts.list("")] == [a.id]
    assert (await past.accounts.get(a.id)).account.first_name == "U"
    with pytest.raises(errors.NotFoundError):
        await past.accounts.get(b.id)
    assert [x.id async for x in client.accounts.list("")] == [b.id]


async def test_filters_reach_the_emulator_and_bad_ones_say_where(
    client: sdm_async.Client,
) -> None:
    await client.bulk(client.accounts.create, [user(i, tags={"n": str(i % 2)}) for i in range(6)])
    await client.accounts.create(
        sdm_async.User(email="sam.o'neil@example.com", first_name="Sam", last_name="O'Neil")
    )
    assert len([a async for a in client.accounts.list("tags:n=1")]) == 3
    assert [
        a.first_name async for a in client.accounts.list("email:?", "sam.o'neil@example.com")
    ] == ["Sam"]
    assert len([a async for a in client.accounts.list("firstname:u,lastname:?", "3")]) == 1
    with pytest.raises(errors.BadRequestError, match="emial"):
        [a async for a in client.accounts.list("emial:x")]


async def test_pagination_honours_limits_and_cursors_survive_writes(emu: Emulator) -> None:
    async with emu.client(page_limit=7) as client:
        ids = [(await client.accounts.create(user(i))).account.id for i in range(40)]
        seen: list[str] = []
        deleted: set[str] = set()
        pages = 0
        async for page in client.accounts.list("").pages():
            pages += 1
            assert len(page) <= 7
            seen += [a.id for a in page]
            if pages == 2:  # write while listing: delete ahead, create more
                for victim in ids[30:33]:
                    await client.accounts.delete(victim)
                    deleted.add(victim)
                await client.accounts.create(user("late"))
        assert len(seen) == len(set(seen))  # nothing twice
        survivors = [i for i in ids if i not in deleted]
        assert [i for i in seen if i in set(ids)] == survivors  # nothing skipped, in order
        assert pages >= 6
    emu.backend.seed_users(2500)
    async with emu.client(page_limit=1000) as client:
        sizes = [len(p) async for p in client.accounts.list("").pages()]
    assert sizes[0] == 1000 and sum(sizes) == 2500 + 38


async def test_bad_cursor_and_limits(client: sdm_async.Client, emu: Emulator) -> None:
    from sdm_async._generated.services.accounts import _LIST

    req = accounts_pb2.AccountListRequest()
    req.meta.cursor = "not-a-cursor"
    with pytest.raises(errors.BadRequestError, match="cursor"):
        await client._transport.call(_LIST, req, 5)
    emu.backend.seed_users(60)
    resp = await client._transport.call(_LIST, accounts_pb2.AccountListRequest(), 5)
    assert len(resp.accounts) == 50 and resp.meta.next_cursor  # the default page size


# -- authentication, on the raw wire -------------------------------------------------------


async def _raw_call(emu: Emulator, metadata: list[tuple[str, str]], body: bytes) -> Any:
    async with grpc.aio.insecure_channel(emu.address) as channel:
        call = channel.unary_unary("/v1.Accounts/List")
        return await call(body, metadata=metadata)


def _signed(
    emu: Emulator, body: bytes, secret: str | None = None, date: str | None = None
) -> list[tuple[str, str]]:
    sig = sign(
        base64.b64decode(secret or emu.secret_key), "Accounts.List", body, date or utc_date()
    )
    return [
        ("x-sdm-authentication", emu.access_key),
        ("x-sdm-signature", sig),
        ("x-sdm-api-version", "2025-04-14"),
    ]


async def test_a_correctly_signed_raw_call_is_answered(emu: Emulator) -> None:
    body = accounts_pb2.AccountListRequest().SerializeToString()
    answer = accounts_pb2.AccountListResponse.FromString(
        await _raw_call(emu, _signed(emu, body), body)
    )
    assert not answer.accounts and answer.rate_limit.bucket == emu.access_key


@pytest.mark.parametrize(
    "case", ["missing", "unknown key", "wrong secret", "tampered", "other date"]
)
async def test_auth_failures_are_unauthenticated_with_a_reason(emu: Emulator, case: str) -> None:
    body = accounts_pb2.AccountListRequest(filter="").SerializeToString()
    metadata = _signed(emu, body)
    sent = body
    expected = "signature"
    if case == "missing":
        metadata, expected = metadata[:1], "missing x-sdm-signature"
    elif case == "unknown key":
        metadata[0] = ("x-sdm-authentication", "auth-0000000000000000")
        expected = "unknown API access key"
    elif case == "wrong secret":
        metadata = _signed(emu, body, secret=base64.b64encode(b"wrong" * 6).decode())
    elif case == "tampered":
        sent = accounts_pb2.AccountListRequest(filter="email:*").SerializeToString()
    elif case == "other date":
        yesterday = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
        metadata = _signed(emu, body, date=utc_date(yesterday))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _raw_call(emu, metadata, sent)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert expected in (info.value.details() or "")


# -- every method answers ------------------------------------------------------------------


async def test_every_method_answers_or_says_it_is_not_emulated(client: sdm_async.Client) -> None:
    from sdm_async._rpc import MethodInfo

    unimplemented = []
    for path, m in schema.methods().items():
        info = MethodInfo(m.full_name, path, m.response.FromString)
        try:
            await client._transport.call(info, m.request(), 5)
        except errors.RPCError as e:
            assert e.code in (
                grpc.StatusCode.UNIMPLEMENTED.value[0],
                grpc.StatusCode.INVALID_ARGUMENT.value[0],
                grpc.StatusCode.NOT_FOUND.value[0],
            ), (path, e)
            if e.code == grpc.StatusCode.UNIMPLEMENTED.value[0]:
                assert m.full_name in e.msg
                unimplemented.append(m.full_name)
    assert "Accounts.List" not in unimplemented and "Groups.Create" not in unimplemented
    assert len(unimplemented) < len(schema.methods()) / 2


async def test_a_generic_service_is_fully_crud(client: sdm_async.Client) -> None:
    g = (await client.groups.create(sdm_async.Group(name="eng"))).group
    assert g.id.startswith("group-")
    g.name = "engineering"
    await client.groups.update(g)
    assert (await client.groups.get(g.id)).group.name == "engineering"
    assert [x.name async for x in client.groups.list("name:eng*")] == ["engineering"]
    await client.groups.delete(g.id)
    assert [x async for x in client.groups.list("")] == []


# -- rate limits and faults ----------------------------------------------------------------


async def test_rate_limit_window_is_reported_and_enforced() -> None:
    async with Emulator(rate_limit=3, rate_limit_window=30) as emu:
        async with emu.client(retry_rate_limit_errors=False, pace_rate_limits=False) as client:
            seen = [(await client.accounts.create(user(i))).rate_limit for i in range(3)]
            assert [r.remaining for r in seen] == [2, 1, 0]
            assert {r.limit for r in seen} == {3} and seen[0].bucket == emu.access_key
            with pytest.raises(errors.RateLimitError) as info:
                await client.accounts.create(user(9))
            rl = info.value.rate_limit
            assert rl is not None and rl.limit == 3 and rl.remaining == 0
            assert rl.reset_at == seen[0].reset_at > datetime.datetime.now(datetime.timezone.utc)
        assert emu.backend.count("Accounts") == 3


async def test_faults_before_the_change_leave_nothing_behind() -> None:
    async with Emulator(fault_rate=1.0, fault_code="INTERNAL") as emu:
        async with emu.client(retry=NO_RETRY) as client:
            with pytest.raises(errors.InternalError, match="injected"):
                await client.accounts.create(user(1))
        assert emu.backend.count("Accounts") == 0


async def test_faults_after_the_change_lose_only_the_reply() -> None:
    async with Emulator(fault_rate=1.0, fault_when="after") as emu:
        async with emu.client(retry=NO_RETRY) as client:
            with pytest.raises(errors.UnavailableError):
                await client.accounts.create(user(1))
        assert emu.backend.count("Accounts") == 1
        # A retry of the same create meets the first one: the caller must reconcile.
        emu.faults.rate = 0.0
        async with emu.client(retry=NO_RETRY) as client:
            with pytest.raises(errors.AlreadyExistsError):
                await client.accounts.create(user(1))


async def test_latency_is_added() -> None:
    async with Emulator(latency=0.05) as emu:
        async with emu.client() as client:
            loop = asyncio.get_running_loop()
            started = loop.time()
            await asyncio.gather(*(client.accounts.create(user(i)) for i in range(10)))
            elapsed = loop.time() - started
    assert elapsed >= 0.05  # concurrent calls each wait, but not one after another
    assert emu.stats.max_in_flight > 1


async def test_credentials_are_accepted_but_never_returned(client: sdm_async.Client) -> None:
    pg = sdm_async.Postgres(
        name="pg", hostname="db", database="d", username="app", password="s3cret", port=5432
    )
    made = (await client.resources.create(pg)).resource
    assert made.password == "" and made.username == "app"  # write-only, as in the API
    assert [r.password async for r in client.resources.list("")] == [""]
    made.hostname = "db2"  # an update need not repeat the credential it cannot read
    assert (await client.resources.update(made)).resource.hostname == "db2"
    history = [h async for h in client.resources_history.list("")]
    assert all(b"s3cret" not in repr(h).encode() for h in history)


async def test_resource_tags_are_enumerated_and_healthchecks_accepted(
    client: sdm_async.Client,
) -> None:
    for i, env in enumerate(["prod", "dev", "prod"]):
        r = sdm_async.Redis(name=f"r{i}", hostname="h", tags={"env": env, "team": "core"})
        made = (await client.resources.create(r)).resource
    tags = [(t.name, t.value) async for t in client.resources.enumerate_tags("")]
    assert tags == [("env", "dev"), ("env", "prod"), ("team", "core")]
    assert [t.value async for t in client.resources.enumerate_tags("name:env")] == ["dev", "prod"]
    await client.resources.healthcheck(made.id)
    with pytest.raises(errors.NotFoundError):
        await client.resources.healthcheck("rs-0000000000000000")


async def test_the_signing_interceptor_signs_bare_generated_stubs(emu: Emulator) -> None:
    from sdm_async._generated.v1 import accounts_pb2_grpc
    from sdm_async._signing import Signer
    from sdm_async.client import USER_AGENT

    signer = Signer(base64.b64decode(emu.secret_key))
    interceptor = sdm_async.SigningInterceptor(emu.access_key, signer, USER_AGENT)
    assert emu.secret_key not in repr(interceptor)
    async with grpc.aio.insecure_channel(emu.address, interceptors=[interceptor]) as channel:
        stub = accounts_pb2_grpc.AccountsStub(channel)
        made = await stub.Create(accounts_pb2.AccountCreateRequest(account=user_pb(1)))
        got = await stub.Get(accounts_pb2.AccountGetRequest(id=made.account.user.id))
    assert got.account.user.email == "u1@example.com"


def user_pb(i: int) -> Any:
    account = accounts_pb2.Account()
    account.user.email, account.user.first_name, account.user.last_name = (
        f"u{i}@example.com",
        "U",
        str(i),
    )
    return account


async def test_who_can_reach_what_is_derived_from_rules_grants_and_attachments(
    client: sdm_async.Client,
) -> None:
    def redis(name: str, **tags: str) -> sdm_async.Redis:
        return sdm_async.Redis(name=name, hostname="h", tags=tags)

    prod = (await client.resources.create(redis("prod-cache", env="prod"))).resource
    dev = (await client.resources.create(redis("dev-cache", env="dev"))).resource
    pg = (
        await client.resources.create(
            sdm_async.Postgres(name="pg", hostname="h", database="d", username="u", password="p")
        )
    ).resource
    ops = (
        await client.roles.create(
            sdm_async.Role(
                name="ops", access_rules=[{"tags": {"env": "prod"}}, {"type": "postgres"}]
            )
        )
    ).role
    devs = (
        await client.roles.create(sdm_async.Role(name="devs", access_rules=[{"ids": [dev.id]}]))
    ).role
    alice = (await client.accounts.create(user("alice"))).account
    bob = (await client.accounts.create(user("bob"))).account
    await client.account_attachments.create(
        sdm_async.AccountAttachment(account_id=alice.id, role_id=ops.id)
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    grant = (
        await client.account_grants.create(
            sdm_async.AccountGrant(
                account_id=bob.id,
                resource_id=prod.id,
                valid_until=now + datetime.timedelta(hours=1),
            )
        )
    ).account_grant
    await client.account_grants.create(  # expired: no access any more
        sdm_async.AccountGrant(
            account_id=bob.id,
            resource_id=dev.id,
            start_from=now - datetime.timedelta(hours=2),
            valid_until=now - datetime.timedelta(hours=1),
        )
    )
    by_role = {(r.role_id, r.resource_id) async for r in client.role_resources.list("")}
    assert by_role == {(ops.id, prod.id), (ops.id, pg.id), (devs.id, dev.id)}
    reach = [r async for r in client.account_resources.list("")]
    assert {(r.account_id, r.resource_id, r.role_id, r.account_grant_id) for r in reach} == {
        (bob.id, prod.id, "", grant.id),
        (alice.id, prod.id, ops.id, ""),
        (alice.id, pg.id, ops.id, ""),
    }
    assert [r.resource_id async for r in client.account_resources.list("accountid:?", bob.id)] == [
        prod.id
    ]


async def test_activities_record_every_change_and_who_made_it(
    emu: Emulator, client: sdm_async.Client
) -> None:
    role = (await client.roles.create(sdm_async.Role(name="auditors"))).role
    made = await client.accounts.create(
        sdm_async.Token(name="robot", permissions=[sdm_async.Permission.USER_CREATE])
    )
    async with sdm_async.Client(made.access_key, made.secret_key, emu.address, True) as robot:
        await robot.accounts.create(user("by-robot"))
    await client.roles.delete(role.id)
    log = [a async for a in client.activities.list("")]
    assert [a.verb for a in log] == [
        "role created",
        "token created",
        "user created",
        "role deleted",
    ]
    by_robot = log[2]
    assert (
        by_robot.actor.id == made.account.id
        and by_robot.entities[0].email == "uby-robot@example.com"
    )
    assert log[0].actor.id == ""  # the admin key is no account
    assert [a.id async for a in client.activities.list("verb:?", "role *")] == [
        log[0].id,
        log[3].id,
    ]
    assert (await client.activities.get(log[1].id)).activity.description == "Created token robot."
    history = [h async for h in client.roles_history.list("")]
    assert [h.activity_id for h in history] == [log[0].id, log[3].id]  # the same activity ids
    with pytest.raises(errors.NotFoundError):
        await client.activities.get("at-0000000000000000")


async def test_organisation_settings_and_control_panel(client: sdm_async.Client) -> None:
    ssh = (await client.control_panel.get_sshca_public_key()).public_key
    assert ssh.startswith("ecdsa-sha2-nistp256 ")
    assert (await client.control_panel.get_sshca_public_key()).public_key == ssh  # stable
    rdp = (await client.control_panel.get_rdpca_public_key()).public_key
    assert rdp.startswith("-----BEGIN PUBLIC KEY-----")
    urls = await client.control_panel.get_org_url_info()
    assert urls.base_url.startswith("https://") and urls.saml_metadata_url.startswith(urls.base_url)
    assert not (await client.control_panel.verify_jwt("not.a.jwt")).valid
    assert not (await client.organizations.get_mfa()).mfa.enabled
    with pytest.raises(errors.BadRequestError, match="provider"):
        await client.organizations.test_mfa(sdm_async.MFAConfig(enabled=True))
    on = sdm_async.MFAConfig(enabled=True, provider="duo")
    await client.organizations.test_mfa(on)
    updated = (await client.organizations.update_mfa(on)).mfa
    assert updated is not None and (updated.enabled, updated.provider) == (True, "duo")
    got = (await client.organizations.get_mfa()).mfa
    assert got is not None and (got.enabled, got.provider) == (True, "duo")
    assert [q async for q in client.queries.list("")] == []  # no traffic reaches an emulator
    with pytest.raises(errors.BadRequestError):
        [r async for r in client.replays.list("nosuchfield:x")]


async def test_permissions_probes_and_scoped_lists(client: sdm_async.Client) -> None:
    token = await client.accounts.create(
        sdm_async.Token(name="ro", permissions=[sdm_async.Permission.USER_LIST, "role:list"])
    )
    await client.accounts.create(user(1))  # users carry no explicit permissions
    perms = [p async for p in client.account_permissions.list("")]
    assert sorted(p.permission for p in perms) == ["role:list", "user:list"]
    assert {p.account_id for p in perms} == {token.account.id}
    only = [p.permission async for p in client.account_permissions.list("permission:role*")]
    assert only == ["role:list"]
    relay = (await client.nodes.create(sdm_async.Relay(name="r1"))).node
    probe = await client.nodes.tcp_probe(relay.id, "db.internal", 5432)
    assert not probe.succeeded and "network" in probe.error
    with pytest.raises(errors.NotFoundError):
        await client.nodes.tcp_probe("n-0000000000000000", "db.internal", 5432)
    store = (
        await client.secret_stores.create(sdm_async.VaultTokenStore(name="v", server_address="v"))
    ).secret_store
    assert [s.id async for s in client.secret_engines.list_secret_stores("")] == [store.id]


async def test_extra_keys_can_be_registered(emu: Emulator) -> None:
    access, secret = emu.add_key(frozenset({sdm_async.Permission.ROLE_LIST}))
    async with sdm_async.Client(access, secret, emu.address, True) as limited:
        assert [r async for r in limited.roles.list("")] == []
        with pytest.raises(errors.PermissionError):
            await limited.roles.create(sdm_async.Role(name="nope"))
