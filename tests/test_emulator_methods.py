"""The emulator's methods beyond CRUD, family by family (views_*.py), against the real
emulator through `sdm_async` (and the official SDK where its shape matters)."""

from __future__ import annotations

import ast
import asyncio
import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import sdm_async
from sdm_async import errors, testing
from sdm_async.testing import Emulator

UTC = datetime.timezone.utc


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(page_size=3) as e:
        yield e


async def items(pager: Any) -> list[Any]:
    return [x async for x in pager]


async def user(client: sdm_async.Client, name: str) -> str:
    made = await client.accounts.create(
        sdm_async.User(email=f"{name}@example.com", first_name=name, last_name="X")
    )
    return str(made.account.id)


async def redis(client: sdm_async.Client, name: str, **tags: str) -> str:
    made = await client.resources.create(sdm_async.Redis(name=name, hostname="h", tags=tags))
    return str(made.resource.id)


async def role(client: sdm_async.Client, name: str, rules: list[dict[str, Any]]) -> str:
    made = await client.roles.create(sdm_async.Role(name=name, access_rules=rules))
    return str(made.role.id)


async def attach(client: sdm_async.Client, account_id: str, role_id: str) -> None:
    await client.account_attachments.create(
        sdm_async.AccountAttachment(account_id=account_id, role_id=role_id)
    )


def test_views_do_not_import_the_backend() -> None:
    # The backend imports the views; no view module imports it back, even for typing.
    views = sorted(Path(testing.__file__).parent.glob("views*.py"))
    assert len(views) > 1
    for path in views:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert "sdm_async.testing.backend" not in names, path.name


async def test_access_requests_are_listed_filtered_and_have_histories(
    emu: Emulator, client: sdm_async.Client
) -> None:
    alice, bob = await user(client, "alice"), await user(client, "bob")
    db = await redis(client, "db")
    first = emu.add_access_request(db, alice, reason="incident 42")
    before_second = datetime.datetime.now(UTC)
    second = emu.add_access_request(db, bob, duration=datetime.timedelta(minutes=30))
    listed = await items(client.access_requests.list(""))
    assert [r.id for r in listed] == [first, second]
    assert listed[0].reason == "incident 42" and listed[0].status == "pending"
    assert listed[1].valid_until - listed[1].start_from == datetime.timedelta(minutes=30)
    assert [r.id for r in await items(client.access_requests.list("accountid:?", bob))] == [second]
    past = client.snapshot_at(before_second)
    assert [r.id for r in await items(past.access_requests.list(""))] == [first]

    emu.add_access_request_event(first, "approved", bob, status="approved")
    assert (await items(client.access_requests.list("id:?", first)))[0].status == "approved"
    history = await items(client.access_requests_history.list("id:?", first))
    assert [h.access_request.status for h in history] == ["pending", "approved"]
    events = await items(client.access_request_events_history.list("requestid:?", first))
    assert [(e.access_request_event.type, e.access_request_event.actor_id) for e in events] == [
        ("requested", alice),
        ("approved", bob),
    ]
    with pytest.raises(ValueError, match="no resource has id"):
        emu.add_access_request("rs-0000000000000000", alice)
    with pytest.raises(ValueError, match="no access request has id"):
        emu.add_access_request_event("aq-0000000000000000", "approved")
    assert len(await items(client.access_requests.list(""))) == 2  # nothing half-recorded


async def test_access_requests_survive_a_restart_on_the_same_db(tmp_path: Any) -> None:
    db = tmp_path / "state.db"
    async with Emulator(db=db) as emu, emu.client() as client:
        resource = await redis(client, "db")
        made = emu.add_access_request(resource, reason="kept")
    async with Emulator(db=db) as emu, emu.client() as client:
        assert [(r.id, r.reason) for r in await items(client.access_requests.list(""))] == [
            (made, "kept")
        ]


async def test_granted_entitlements_follow_grants_attachments_and_rules(
    client: sdm_async.Client,
) -> None:
    alice, bob = await user(client, "alice"), await user(client, "bob")
    prod = await redis(client, "prod", env="prod")
    dev = await redis(client, "dev", env="dev")
    ops = await role(client, "ops", [{"tags": {"env": "prod"}}])
    await attach(client, alice, ops)
    grant = (
        await client.account_grants.create(sdm_async.AccountGrant(account_id=bob, resource_id=dev))
    ).account_grant
    got = await items(client.granted_account_entitlements.list(alice, ""))
    assert [(e.resource_id, e.origin_id) for e in got] == [(prod, ops)]
    got = await items(client.granted_account_entitlements.list(bob, ""))
    assert [(e.resource_id, e.origin_id) for e in got] == [(dev, grant.id)]
    got = await items(client.granted_resource_entitlements.list(prod, ""))
    assert [(e.account_id, e.origin_id) for e in got] == [(alice, ops)]
    got = await items(client.granted_role_entitlements.list(ops, ""))
    assert [e.resource_id for e in got] == [prod]
    assert await items(client.granted_resource_entitlements.list(dev, "accountid:?", alice)) == []


async def test_requestable_entitlements_come_from_enabled_workflows(
    client: sdm_async.Client,
) -> None:
    alice = await user(client, "alice")
    prod = await redis(client, "prod", env="prod")
    await redis(client, "dev", env="dev")
    oncall = await role(client, "oncall", [])
    await attach(client, alice, oncall)
    workflow = (
        await client.workflows.create(
            sdm_async.Workflow(name="break-glass", access_rules=[{"tags": {"env": "prod"}}])
        )
    ).workflow
    await client.workflow_roles.create(
        sdm_async.WorkflowRole(workflow_id=workflow.id, role_id=oncall)
    )
    # A disabled workflow makes nothing requestable.
    assert await items(client.requestable_account_entitlements.list(alice, "")) == []
    workflow.enabled = True
    await client.workflows.update(workflow)
    got = await items(client.requestable_account_entitlements.list(alice, ""))
    assert [(e.resource_id, e.origin_id) for e in got] == [(prod, workflow.id)]
    got = await items(client.requestable_role_entitlements.list(oncall, ""))
    assert [(e.resource_id, e.origin_id) for e in got] == [(prod, workflow.id)]
    got = await items(client.requestable_resource_entitlements.list(prod, ""))
    assert [(e.account_id, e.origin_id) for e in got] == [(alice, workflow.id)]


async def test_entitlement_lists_need_an_existing_scope(client: sdm_async.Client) -> None:
    with pytest.raises(errors.BadRequestError, match="account_id is required"):
        await items(client.granted_account_entitlements.list("", ""))
    with pytest.raises(errors.NotFoundError, match="rs-0000000000000000"):
        await items(client.requestable_resource_entitlements.list("rs-0000000000000000", ""))


async def test_derived_views_honour_snapshot_at(client: sdm_async.Client) -> None:
    # AccountResources, RoleResources and AccountPermissions used to answer with the
    # present whatever the snapshot asked.
    alice = await user(client, "alice")
    prod = await redis(client, "prod", env="prod")
    ops = await role(client, "ops", [{"tags": {"env": "prod"}}])
    before = datetime.datetime.now(UTC)
    await attach(client, alice, ops)
    await client.roles.update(sdm_async.Role(id=ops, name="ops", access_rules=[]))
    await client.roles.update(
        sdm_async.Role(id=ops, name="ops", access_rules=[{"tags": {"env": "prod"}}])
    )
    await client.accounts.create(
        sdm_async.Token(name="ci", account_type="api", permissions=[sdm_async.Permission.ROLE_LIST])
    )
    past = client.snapshot_at(before)
    then = (
        await items(past.account_resources.list("")),
        [r.resource_id for r in await items(past.role_resources.list(""))],
        await items(past.account_permissions.list("")),
    )
    assert then == ([], [prod], [])
    assert await items(past.granted_account_entitlements.list(alice, "")) == []
    assert [r.resource_id for r in await items(client.account_resources.list(""))] == [prod]
    assert len(await items(client.account_permissions.list(""))) == 1


async def test_access_rule_types_match_however_the_kind_is_spelled(
    client: sdm_async.Client,
) -> None:
    aurora = await client.resources.create(
        sdm_async.AuroraMysql(name="aurora", hostname="h", username="u", password="p")
    )
    await redis(client, "cache")
    for spelling in ("aurora_mysql", "aurora-mysql", "AuroraMysql"):
        role_id = await role(client, spelling, [{"type": spelling}])
        got = await items(client.role_resources.list("roleid:?", role_id))
        assert [r.resource_id for r in got] == [aurora.resource.id], spelling


async def test_account_and_role_resources_histories(client: sdm_async.Client) -> None:
    alice = await user(client, "alice")
    prod = await redis(client, "prod", env="prod")
    ops = await role(client, "ops", [{"tags": {"env": "prod"}}])
    await attach(client, alice, ops)
    await client.resources.delete(prod)
    account_history = await items(client.account_resources_history.list(""))
    assert [
        (h.account_resource.account_id, h.account_resource.resource_id, h.deleted_at is not None)
        for h in account_history
    ] == [(alice, prod, False), (alice, prod, True)]
    activity_ids = {a.id for a in await items(client.activities.list(""))}
    assert {h.activity_id for h in account_history} <= activity_ids
    role_history = await items(client.role_resources_history.list("roleid:?", ops))
    assert [(h.role_resource.resource_id, h.deleted_at is None) for h in role_history] == [
        (prod, True),
        (prod, False),
    ]


async def test_health_reflects_what_a_test_sets(emu: Emulator, client: sdm_async.Client) -> None:
    db = await redis(client, "db")
    gw = (
        await client.nodes.create(sdm_async.Gateway(name="gw", listen_address="1.2.3.4:5000"))
    ).node
    store = (
        await client.secret_stores.create(sdm_async.VaultTokenStore(name="v", server_address="v"))
    ).secret_store
    engine = (
        await client.secret_engines.create(
            sdm_async.KeyValueEngine(
                name="kv", secret_store_id=store.id, secret_store_root_path="/"
            )
        )
    ).secret_engine
    [check] = await items(client.health_checks.list(""))
    assert (check.node_id, check.resource_id, check.healthy) == (gw.id, db, True)
    assert (check.node_name, check.resource_name) == ("gw", "db")
    emu.set_health(db, healthy=False, error="connection refused")
    [check] = await items(client.health_checks.list("healthy:false"))
    assert check.error_msg == "connection refused"

    [health] = await items(client.secret_store_healths.list(""))
    assert (health.secret_store_id, health.node_id, health.status) == (store.id, gw.id, "healthy")
    emu.set_health(store.id, healthy=False, error="sealed")
    [health] = await items(client.secret_store_healths.list("secretstoreid:?", store.id))
    assert (health.status, health.error) == ("unhealthy", "sealed")
    await client.secret_store_healths.healthcheck(store.id)
    status = (await client.secret_engines.healthcheck(engine.id)).status
    assert [(s.node_id, s.status) for s in status] == [(gw.id, "unhealthy: sealed")]
    emu.set_health(store.id, healthy=True)
    status = (await client.secret_engines.healthcheck(engine.id)).status
    assert [s.status for s in status] == ["healthy"]
    with pytest.raises(ValueError, match="no resource, node"):
        emu.set_health("rs-0000000000000000", healthy=False)
    with pytest.raises(errors.NotFoundError):
        await client.secret_store_healths.healthcheck("se-0000000000000000")


async def secret(client: sdm_async.Client) -> tuple[str, str]:
    store = (
        await client.secret_stores.create(sdm_async.VaultTokenStore(name="v", server_address="v"))
    ).secret_store
    engine = (
        await client.secret_engines.create(
            sdm_async.KeyValueEngine(
                name="kv", secret_store_id=store.id, secret_store_root_path="/"
            )
        )
    ).secret_engine
    made = await client.managed_secrets.create(
        sdm_async.ManagedSecret(
            name="db",
            secret_engine_id=engine.id,
            value=b"v1",
            policy=sdm_async.ManagedSecretPolicy(),
        )
    )
    return engine.id, made.managed_secret.id


async def test_managed_secret_rotate_and_logs(client: sdm_async.Client) -> None:
    engine_id, secret_id = await secret(client)
    assert (await client.managed_secrets.retrieve(secret_id)).managed_secret.value == b"v1"
    await client.managed_secrets.rotate(secret_id)
    rotated = (await client.managed_secrets.retrieve(secret_id)).managed_secret
    assert rotated.value not in (b"", b"v1") and rotated.last_rotated_at is not None
    rotated.value = b"v3"
    await client.managed_secrets.update(rotated)
    logs = await items(client.managed_secrets.logs("managedsecretid:?", secret_id))
    assert [x.action for x in logs] == ["retrieve", "rotate", "retrieve", "update"]
    assert {(x.secret_engine_id, x.managed_secret_id) for x in logs} == {(engine_id, secret_id)}
    history = await items(client.managed_secrets.list(""))
    assert len(history) == 1
    with pytest.raises(errors.NotFoundError):
        await client.managed_secrets.rotate("ms-0000000000000000")


async def test_generate_keys_replaces_the_engine_key_and_values_stay_readable(
    client: sdm_async.Client,
) -> None:
    engine_id, secret_id = await secret(client)
    before = (await client.secret_engines.get(engine_id)).secret_engine.public_key
    await client.secret_engines.generate_keys(engine_id)
    after = (await client.secret_engines.get(engine_id)).secret_engine.public_key
    assert after != before and after.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert (await client.managed_secrets.retrieve(secret_id)).managed_secret.value == b"v1"
    await client.secret_engines.rotate(engine_id, sdm_async.SecretEnginePasswordPolicy(length=20))
    with pytest.raises(errors.BadRequestError, match="password_policy"):
        await client.secret_engines.rotate(
            engine_id, sdm_async.SecretEnginePasswordPolicy(length=4, num_digits=3, num_symbols=3)
        )


async def test_organisation_history_and_remote_identity_groups(client: sdm_async.Client) -> None:
    [first] = await items(client.organization_history.list(""))
    assert first.organization.name == "emulator" and not first.organization.mfa_enabled
    mfa = (await client.organizations.get_mfa()).mfa
    mfa.enabled, mfa.provider = True, "duo"
    await client.organizations.update_mfa(mfa)
    history = await items(client.organization_history.list(""))
    assert [h.organization.mfa_enabled for h in history] == [False, True]
    assert history[1].timestamp > history[0].timestamp

    [group] = await items(client.remote_identity_groups.list("name:default"))
    assert (await client.remote_identity_groups.get(group.id)).remote_identity_group.name == (
        "default"
    )
    alice = await user(client, "alice")
    identity = sdm_async.RemoteIdentity(
        account_id=alice, remote_identity_group_id=group.id, username="alice"
    )
    await client.remote_identities.create(identity)
    [made] = await items(client.remote_identity_groups_history.list(""))
    assert made.remote_identity_group.id == group.id
    with pytest.raises(errors.NotFoundError):
        await client.remote_identity_groups.get("ig-0000000000000000")


async def test_groups_from_roles(client: sdm_async.Client) -> None:
    alice, bob = await user(client, "alice"), await user(client, "bob")
    ops = await role(client, "ops", [])
    await attach(client, alice, ops)
    await attach(client, bob, ops)
    dry = (await client.groups.create_from_roles([ops], False)).group_from_role
    assert [(g.role.id, g.group.name, g.group.id) for g in dry] == [(ops, "ops", "")]
    assert await items(client.groups.list("")) == []
    [made] = (await client.groups.create_from_roles([ops], True)).group_from_role
    assert made.group.id and {a.id for a in made.accounts} == {alice, bob}
    assert [
        g.role_id for g in await items(client.groups_roles.list("groupid:?", made.group.id))
    ] == [ops]
    members = await items(client.accounts_groups.list("groupid:?", made.group.id))
    assert {m.account_id for m in members} == {alice, bob}
    with pytest.raises(errors.AlreadyExistsError, match="ops"):
        await client.groups.create_from_roles([ops], True)
    with pytest.raises(errors.NotFoundError):
        await client.groups.create_from_roles(["r-0000000000000000"], False)


async def test_queries_and_replays_recorded_by_a_test(
    emu: Emulator, client: sdm_async.Client
) -> None:
    assert await items(client.queries.list("")) == []
    alice = await user(client, "alice")
    db = await redis(client, "db", env="prod")
    session = emu.add_query(
        account_id=alice, resource_id=db, query_body="ssh", replay=[b"$ ls\r\n", b"a b\r\n"]
    )
    emu.add_query(account_id=alice, resource_id=db, query_body="GET k")
    [q] = await items(client.queries.list("id:?", session))
    assert (q.account_email, q.resource_name, q.replayable) == ("alice@example.com", "db", True)
    assert q.resource_tags == {"env": "prod"}
    assert len(await items(client.queries.list("accountid:?", alice))) == 2
    [chunk] = await items(client.replays.list("id:?", session))
    assert chunk.data == b"$ ls\r\na b\r\n"
    assert [e.data for e in chunk.events] == [b"$ ls\r\n", b"a b\r\n"]
    with pytest.raises(ValueError, match="no field 'nope'"):
        emu.add_query(nope="x")
    with pytest.raises(ValueError, match="aware datetime"):
        emu.add_query(timestamp=datetime.datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="plain value"):
        emu.add_query(capture="x")
    assert len(await items(client.queries.list(""))) == 2  # nothing half-recorded


async def test_the_official_sdk_reads_the_new_views(
    emu: Emulator, client: sdm_async.Client
) -> None:
    strongdm = pytest.importorskip("strongdm")
    db = await redis(client, "db")
    alice = await user(client, "alice")
    request_id = emu.add_access_request(db, alice)

    def body() -> None:
        official = strongdm.Client(emu.access_key, emu.secret_key, emu.address, True)
        [request] = list(official.access_requests.list(""))
        assert isinstance(request, strongdm.AccessRequest) and request.id == request_id
        [group] = list(official.remote_identity_groups.list(""))
        assert isinstance(group, strongdm.RemoteIdentityGroup)
        assert list(official.granted_account_entitlements.list(alice, "")) == []

    await asyncio.to_thread(body)
