"""The emulator accepts what the API accepts, as its descriptors' field options say: table-driven
over every resource, node, account and secret-store type, through `sdm_async` and the official
SDK. `required` fields are refused naming the field; a required field with conditions only
when all its conditions hold (a condition holds when the field it names is set, or for the
negative ones, not set)."""

from __future__ import annotations

import asyncio
import importlib
import itertools
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from google.protobuf import descriptor

import sdm_async._generated.models as sdm_models
from sdm_async import errors
from sdm_async._generated import catalog
from sdm_async.testing import Emulator, schema, validation

strongdm = pytest.importorskip("strongdm")
from strongdm import plumbing as official_plumbing  # noqa: E402

SERVICES = ("Resources", "Nodes", "Accounts", "SecretStores")

# How each condition string is read (see validation.CONDITIONS): the field it names, and
# whether it holds when that field is set (True) or unset (False).
EXPECTED_CONDITIONS = {
    "identity-alias": ("identity_set_id", True),
    "leased-credentials": ("identity_set_id", False),
    "discovery-enabled": ("discovery_enabled", True),
    "discovery-disabled": ("discovery_enabled", False),
}

_serial = itertools.count()


@dataclass(frozen=True)
class Need:
    field: str
    conditions: tuple[str, ...]


def needs(item: descriptor.Descriptor) -> list[Need]:
    """The required fields as the descriptors state them, read here independently."""
    found = []
    for fd in item.fields:
        opts = schema.field_options(fd)
        if opts.required:
            conds = tuple(dict.fromkeys(c for c in (opts.condition, *opts.conditions) if c))
            found.append(Need(fd.name, conds))
    return found


def members(service: str) -> list[descriptor.FieldDescriptor]:
    item = schema.methods()[f"/v1.{service}/Create"].item
    assert item is not None
    oneof = schema.union_of(item)
    assert oneof is not None
    # Types private to the Go SDK (targets "go_private") are in no public client.
    return [
        f
        for f in item.oneofs_by_name[oneof].fields
        if list(schema.field_options(f).targets) != ["go_private"]
    ]


def is_set(msg: Any, name: str) -> bool:
    return bool(getattr(msg, name))  # only scalar fields are required or named by conditions


def holds(msg: Any, condition: str) -> bool:
    field, when_set = EXPECTED_CONDITIONS[condition]
    return is_set(msg, field) == when_set


def put(msg: Any, name: str) -> None:
    fd = msg.DESCRIPTOR.fields_by_name[name]
    if fd.type == descriptor.FieldDescriptor.TYPE_BOOL:
        setattr(msg, name, True)
    elif fd.cpp_type in (descriptor.FieldDescriptor.CPPTYPE_INT32,):
        setattr(msg, name, 5432)
    elif name == "email":
        setattr(msg, name, f"min{next(_serial)}@example.com")
    elif name == "name":
        setattr(msg, name, f"min-{msg.DESCRIPTOR.name.lower()}-{next(_serial)}")
    else:
        setattr(msg, name, f"{name}-value")


def build(
    kind: descriptor.FieldDescriptor, want: dict[str, bool], omit: str | None = None
) -> Any | None:
    """The minimal object of `kind` with the conditions in `want` made to hold or not, every
    field then required filled in, but `omit`; None if the wanted conditions cannot be had."""
    msg = schema.message_class(kind.message_type.name)()
    for cond, hold in want.items():
        field, when_set = EXPECTED_CONDITIONS[cond]
        if hold == when_set:
            put(msg, field)
    changed = True
    while changed:  # filling a field can make a condition hold (an identity set: aliases)
        changed = False
        for need in needs(kind.message_type):
            if need.field == omit or is_set(msg, need.field):
                continue
            if all(holds(msg, c) for c in need.conditions):
                put(msg, need.field)
                changed = True
    if any(holds(msg, c) != hold for c, hold in want.items()):
        return None
    return msg


def wrap(service: str, kind: descriptor.FieldDescriptor, member: Any) -> Any:
    item = schema.methods()[f"/v1.{service}/Create"].item
    assert item is not None
    union = schema.message_class(item.name)()
    getattr(union, kind.name).CopyFrom(member)
    return union


def _from_pb(union_name: str) -> Any:
    for mod in pkgutil.iter_modules(sdm_models.__path__):
        module = importlib.import_module(f"{sdm_models.__name__}.{mod.name}")
        found = getattr(module, f"from_pb_{union_name}", None)
        if found is not None:
            return found
    raise LookupError(union_name)


def as_sdm_async(service: str, union: Any) -> Any:
    return _from_pb(union.DESCRIPTOR.name)(union)


def as_official(union: Any) -> Any:
    name = union.DESCRIPTOR.name
    plumbing = getattr(official_plumbing, name).FromString(union.SerializeToString())
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
    return getattr(official_plumbing, f"convert_{snake}_to_porcelain")(plumbing)


def attribute(service: str) -> str:
    return catalog.SERVICES[service][0]


def test_conditions_are_read_from_the_descriptors_as_documented() -> None:
    # A condition the API adds fails here until someone reads what it refers to.
    assert validation.CONDITIONS == EXPECTED_CONDITIONS
    assert validation.condition_names() == set(EXPECTED_CONDITIONS)
    for item in schema.all_messages():
        for need in needs(item):
            for cond in need.conditions:
                field = EXPECTED_CONDITIONS[cond][0]
                assert field in item.fields_by_name, (item.name, need.field, cond)


def test_every_type_has_a_minimal_valid_object() -> None:
    for service in SERVICES:
        for kind in members(service):
            assert build(kind, {}) is not None, kind.name


@pytest.mark.parametrize("service", SERVICES)
async def test_the_minimal_object_of_every_type_is_accepted_by_both_clients(service: str) -> None:
    failures: list[str] = []
    async with Emulator() as emu:
        async with emu.client() as client:
            sdm_service = getattr(client, attribute(service))
            for kind in members(service):
                member = build(kind, {})
                try:
                    await sdm_service.create(as_sdm_async(service, wrap(service, kind, member)))
                except errors.RPCError as e:
                    failures.append(f"sdm_async {kind.name}: {e}")

        def official_calls() -> None:
            official = strongdm.Client(emu.access_key, emu.secret_key, emu.address, True)
            target = getattr(official, attribute(service))
            for kind in members(service):
                member = build(kind, {})
                try:
                    target.create(as_official(wrap(service, kind, member)))
                except strongdm.errors.RPCError as e:
                    failures.append(f"strongdm {kind.name}: {e}")

        await asyncio.to_thread(official_calls)
    assert not failures, "\n".join(failures)


def _cases(service: str) -> Iterator[tuple[descriptor.FieldDescriptor, Need]]:
    for kind in members(service):
        for need in needs(kind.message_type):
            yield kind, need


@pytest.mark.parametrize("service", SERVICES)
async def test_each_unconditional_required_field_left_out_is_refused_naming_it(
    service: str,
) -> None:
    item_field = schema.methods()[f"/v1.{service}/Create"].item_field
    failures: list[str] = []
    checked = 0
    async with Emulator() as emu, emu.client() as client:
        sdm_service = getattr(client, attribute(service))
        for kind, need in _cases(service):
            if need.conditions:
                continue
            member = build(kind, {}, omit=need.field)
            assert member is not None
            checked += 1
            try:
                await sdm_service.create(as_sdm_async(service, wrap(service, kind, member)))
                failures.append(f"{kind.name} without {need.field}: accepted")
            except errors.BadRequestError as e:
                if f"{item_field}.{need.field}" not in str(e):
                    failures.append(f"{kind.name} without {need.field}: {e}")
    assert checked and not failures, "\n".join(failures)


@pytest.mark.parametrize("service", SERVICES)
async def test_a_conditional_required_field_is_refused_only_when_its_conditions_hold(
    service: str,
) -> None:
    item_field = schema.methods()[f"/v1.{service}/Create"].item_field
    failures: list[str] = []
    checked = 0
    async with Emulator() as emu, emu.client() as client:
        sdm_service = getattr(client, attribute(service))

        async def create(member: Any, kind: descriptor.FieldDescriptor) -> str | None:
            try:
                await sdm_service.create(as_sdm_async(service, wrap(service, kind, member)))
            except errors.BadRequestError as e:
                return str(e)
            return None

        for kind, need in _cases(service):
            if not need.conditions:
                continue
            holding = build(kind, dict.fromkeys(need.conditions, True), omit=need.field)
            assert holding is not None, (kind.name, need)
            checked += 1
            refused = await create(holding, kind)
            if refused is None or f"{item_field}.{need.field}" not in refused:
                failures.append(f"{kind.name} {need}: conditions hold, got {refused!r}")
            for off in need.conditions:
                want = dict.fromkeys(need.conditions, True) | {off: False}
                member = build(kind, want, omit=need.field)
                if member is None:
                    continue  # e.g. "identity-alias" off makes "leased-credentials" hold
                refused = await create(member, kind)
                if refused is not None:
                    failures.append(f"{kind.name} {need}: {off} does not hold, got {refused}")
    if service in ("Resources",):
        assert checked
    assert not failures, "\n".join(failures)


async def test_an_rdp_server_needs_no_identity_alias_username_without_an_identity_set() -> None:
    """The defect: `identity_alias_healthcheck_username` was required unconditionally, so a
    plain Resources.Create of an RDP server (an SSH certificate server, a Kubernetes cluster,
    ...) failed on the emulator and succeeded on the API."""
    async with Emulator() as emu:

        def body() -> None:
            client = strongdm.Client(emu.access_key, emu.secret_key, emu.address, True)
            rdp = strongdm.RDP(name="win", hostname="win.internal", username="u", password="p")
            assert client.resources.create(rdp).resource.id.startswith("rs-")
            cert = strongdm.SSHCert(
                name="web", hostname="web.internal", port=22, identity_set_id="ig-1"
            )
            with pytest.raises(strongdm.errors.BadRequestError) as info:
                client.resources.create(cert)
            assert "identity_alias_healthcheck_username" in str(info.value)
            assert "identity_set_id is set" in str(info.value)
            cert.identity_alias_healthcheck_username = "health"
            client.resources.create(cert)  # no username: with aliases none is leased
            cert.identity_set_id, cert.name = "", "web-leased"
            with pytest.raises(strongdm.errors.BadRequestError, match=r"resource\.username"):
                client.resources.create(cert)

        await asyncio.to_thread(body)


async def test_an_update_need_not_repeat_write_only_required_fields() -> None:
    async with Emulator() as emu, emu.client() as client:
        import sdm_async

        created = await client.resources.create(
            sdm_async.SSHPassword(
                name="pw", hostname="h", port=22, username="u", password="secret-value"
            )
        )
        got = (await client.resources.get(created.resource.id)).resource
        assert got.password == ""  # write-only: never returned
        got.hostname = "h2"
        assert (await client.resources.update(got)).resource.hostname == "h2"
        got.hostname = ""
        with pytest.raises(errors.BadRequestError) as info:
            await client.resources.update(got)
        assert "resource.hostname is required" in str(info.value)
        assert "secret-value" not in str(info.value)
