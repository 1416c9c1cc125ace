"""Read-only fields are filled as the API fills them. The table below names every read-only
field of the API's descriptors and what goes there; a read-only field the API adds fails
`test_every_read_only_field_has_a_rule` until someone decides."""

from __future__ import annotations

import asyncio
import datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

import sdm_async
from sdm_async import errors
from sdm_async.testing import Emulator, readonly, schema

strongdm = pytest.importorskip("strongdm")

# (model, field) -> what fills it: a rule's name, or "empty" (with the reason in the rule).
EXPECTED: dict[tuple[str, str], str] = {
    ("AccountGrant", "access_request_id"): "empty",
    ("ApprovalWorkflowApprover", "reference"): "empty",
    ("ApprovalWorkflowStep", "quantifier"): "empty",
    ("ApprovalWorkflowStep", "skip_after"): "empty",
    ("ApprovalWorkflowStep", "step_order"): "empty",
    ("Gateway", "state"): "_node_state",
    ("Gateway", "device"): "empty",
    ("Gateway", "location"): "empty",
    ("Gateway", "version"): "empty",
    ("Gateway", "uuid"): "empty",
    ("Relay", "state"): "_node_state",
    ("Relay", "device"): "empty",
    ("Relay", "location"): "empty",
    ("Relay", "version"): "empty",
    ("Relay", "uuid"): "empty",
    ("Group", "source"): "empty",
    ("GroupRole", "group_name"): "_group_role_names",
    ("GroupRole", "role_name"): "_group_role_names",
    ("ManagedSecret", "secret_store_path"): "empty",
    ("ManagedSecret", "last_rotated_at"): "empty",
    ("ManagedSecret", "expires_at"): "empty",
    ("ManagedSecret", "config"): "empty",
    ("ProxyClusterKey", "created_at"): "_created_at",
    ("ProxyClusterKey", "last_used_at"): "empty",
    ("Role", "managed_by"): "empty",
    ("SSH", "public_key"): "_ssh_key",
    ("Snowflake", "password"): "empty",
    ("Service", "created_at"): "_created_at",
    ("Token", "created_at"): "_created_at",
    ("User", "permission_level"): "_user_permission",
    ("User", "managed_by"): "empty",
    ("User", "suspendedRO"): "_user_permission",
    ("User", "SCIM"): "empty",
    ("User", "resolved_manager_id"): "_resolved_manager",
    ("User", "created_at"): "_created_at",
    # Secret engines' keys are made by the backend, which keeps the private half.
    ("ActiveDirectoryEngine", "public_key"): "empty",
    ("KeyValueEngine", "public_key"): "empty",
    ("MysqlEngine", "public_key"): "empty",
    ("PostgresEngine", "public_key"): "empty",
    ("SqlserverEngine", "public_key"): "empty",
}
HEALTHY = "_healthy"  # every resource type's `healthy`


def test_every_read_only_field_has_a_rule() -> None:
    found: dict[tuple[str, str], str] = {}
    for item in schema.all_messages():
        for name in readonly.read_only(item):
            rule = readonly.rule(item, name)
            assert rule is not None, (
                f"{item.name}.{name}: read-only, and no rule says what fills it"
            )
            assert rule.text, (item.name, name)
            found[(item.name, name)] = rule.fill.__name__ if rule.fill else "empty"
    healthy = {key for key, fill in found.items() if key[1] == "healthy"}
    assert len(healthy) > 100 and all(found[key] == HEALTHY for key in healthy)
    assert {k: v for k, v in found.items() if k not in healthy} == EXPECTED
    # The rules name no field the descriptors do not have.
    by_name = {item.name: item for item in schema.all_messages()}
    for model, fields in readonly.RULES.items():
        assert set(fields) <= set(by_name[model].fields_by_name), model


async def test_ssh_public_key_is_generated_in_authorized_keys_form_and_kept() -> None:
    async with Emulator() as emu, emu.client() as client:
        made = await client.resources.create(
            sdm_async.SSH(name="web", hostname="web.internal", port=22, username="deploy")
        )
        ssh = made.resource
        assert ssh.key_type == "ed25519"
        assert ssh.public_key.startswith("ssh-ed25519 ")
        assert isinstance(load_ssh_public_key(ssh.public_key.encode()), ed25519.Ed25519PublicKey)
        got = (await client.resources.get(ssh.id)).resource
        assert got.public_key == ssh.public_key
        got.hostname, got.public_key = "web2.internal", "ssh-ed25519 AAAAforged"
        updated = (await client.resources.update(got)).resource
        assert updated.public_key == ssh.public_key  # the server's, and the same key
        rsa_made = await client.resources.create(
            sdm_async.SSH(name="old", hostname="h", port=22, username="u", key_type="rsa-2048")
        )
        key = load_ssh_public_key(rsa_made.resource.public_key.encode())
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
        with pytest.raises(errors.BadRequestError, match="key_type 'dsa'"):
            await client.resources.create(
                sdm_async.SSH(name="bad", hostname="h", port=22, username="u", key_type="dsa")
            )

        def official() -> None:
            c = strongdm.Client(emu.access_key, emu.secret_key, emu.address, True)
            created = c.resources.create(
                strongdm.SSH(name="ops", hostname="ops.internal", port=22, username="ops")
            ).resource
            assert created.public_key.startswith("ssh-ed25519 ")
            assert c.resources.get(created.id).resource.public_key == created.public_key

        await asyncio.to_thread(official)


async def test_resolved_manager_id_is_derived_from_manager_id_on_get_and_list() -> None:
    async with Emulator() as emu, emu.client() as client:
        boss = (
            await client.accounts.create(
                sdm_async.User(email="boss@example.com", first_name="B", last_name="Oss")
            )
        ).account
        made = await client.accounts.create(
            sdm_async.User(
                email="e@example.com", first_name="E", last_name="Mp", manager_id=boss.id
            )
        )
        # "only populated for get and list" (the official SDK's docstring)
        assert made.account.resolved_manager_id == ""
        got = (await client.accounts.get(made.account.id)).account
        assert got.resolved_manager_id == boss.id
        listed = [a async for a in client.accounts.list("email:?", "e@example.com")]
        assert [a.resolved_manager_id for a in listed] == [boss.id]
        got.manager_id = ""
        assert (await client.accounts.update(got)).account.resolved_manager_id == ""
        assert (await client.accounts.get(got.id)).account.resolved_manager_id == ""


async def test_a_token_created_with_a_duration_gets_its_deadline() -> None:
    async with Emulator() as emu, emu.client() as client:
        hour = datetime.timedelta(hours=1)
        token = (await client.accounts.create(sdm_async.Token(name="ci", duration=hour))).account
        assert token.created_at is not None and token.deadline == token.created_at + hour
        got = (await client.accounts.get(token.id)).account
        assert got.deadline == token.deadline
        got.duration = 2 * hour
        assert (await client.accounts.update(got)).account.deadline == token.created_at + 2 * hour
        plain = (await client.accounts.create(sdm_async.Token(name="forever"))).account
        assert plain.deadline is None


async def test_timestamps_states_and_derived_names() -> None:
    async with Emulator() as emu, emu.client() as client:
        before = datetime.datetime.now(datetime.timezone.utc)
        user = (
            await client.accounts.create(
                sdm_async.User(
                    email="u@example.com", first_name="U", last_name="S", managed_by="okta"
                )
            )
        ).account
        assert user.created_at is not None and user.created_at >= before - datetime.timedelta(1)
        assert user.managed_by == ""  # read-only: what a client sends is ignored
        assert user.permission_level == "user" and user.suspended is False
        relay = (await client.nodes.create(sdm_async.Relay(name="r1"))).node
        assert relay.state == "new"
        resource = (
            await client.resources.create(
                sdm_async.RawTCP(name="tcp", hostname="h", port=1, healthy=False)
            )
        ).resource
        assert resource.healthy is True
        group = (await client.groups.create(sdm_async.Group(name="eng"))).group
        role = (await client.roles.create(sdm_async.Role(name="ops"))).role
        link = (
            await client.groups_roles.create(
                sdm_async.GroupRole(group_id=group.id, role_id=role.id)
            )
        ).group_role
        stored = schema.member(emu.backend.tables["GroupsRoles"].records[link.id].msg)[1]
        assert (stored.group_name, stored.role_name) == ("eng", "ops")


async def test_computed_fields_are_filled_when_not_given() -> None:
    async with Emulator() as emu, emu.client() as client:
        a = (
            await client.resources.create(sdm_async.RawTCP(name="a", hostname="h", port=1))
        ).resource
        b = (
            await client.resources.create(sdm_async.RawTCP(name="b", hostname="h", port=1))
        ).resource
        assert a.port_override >= 10000 and b.port_override > a.port_override
        assert a.bind_interface == "127.0.0.1"
        mine = sdm_async.RawTCP(
            name="c", hostname="h", port=1, port_override=15000, bind_interface="127.0.0.2"
        )
        c = (await client.resources.create(mine)).resource
        assert (c.port_override, c.bind_interface) == (15000, "127.0.0.2")
        a.hostname, a.port_override = "h2", 0
        assert (await client.resources.update(a)).resource.port_override == b.port_override - 1
        a.port_override = -1  # "may be re-generated on update by specifying a value of -1"
        assert (await client.resources.update(a)).resource.port_override == 15001
        k8s = sdm_async.Kubernetes(name="k", hostname="h", port=443)
        assert (await client.resources.create(k8s)).resource.healthcheck_namespace == "default"
        gw = sdm_async.Gateway(name="gw", listen_address="gw.example.com:5000")
        assert (await client.nodes.create(gw)).node.bind_address == "0.0.0.0:5000"
