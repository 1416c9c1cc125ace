"""Every method of every service, called through the official SDK and through `sdm_async`
against the emulator, with a minimal valid request built from the descriptors; each answers
with its documented response type (or, for a list, items of the documented type).

The requests come from `catalog.SERVICES` (methods, request and response messages),
`catalog.REQUIRED` (the fields an object needs) and `catalog.UNIONS` (the kinds of a
polymorphic object): one object of every creatable service is made first, in the order
their references need, and the methods that name an object get one of those.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import sdm_async
from sdm_async._generated import catalog
from sdm_async.testing import Emulator, schema
from sdm_async.testing.cli import not_emulated

# The fields that name another object, and its service (a required one that is missing here
# stops the test, naming it).
REFS = {
    "account_id": "Accounts",
    "role_id": "Roles",
    "resource_id": "Resources",
    "group_id": "Groups",
    "workflow_id": "Workflows",
    "approval_flow_id": "ApprovalWorkflows",
    "approval_step_id": "ApprovalWorkflowSteps",
    "identity_set_id": "IdentitySets",
    "attached_role_id": "Roles",
    "composite_role_id": "Roles",
    "secret_engine_id": "SecretEngines",
    "secret_store_id": "SecretStores",
    "proxy_cluster_id": "Nodes",
    "remote_identity_group_id": "RemoteIdentityGroups",
    "node_id": "Nodes",
}
VALUES = {"approval_mode": "automatic"}  # a string field whose values are words of the API
LEGACY = {"RoleAttachments", "RoleGrants"}  # not in the official SDK 18.x


def _kind(item: Any) -> Any:
    """The message to make for an item: itself, or for a polymorphic one its first kind
    whose required fields hold unconditionally."""
    union = catalog.UNIONS.get(item.name)
    if union is None:
        return item
    for field, _message in union[1]:
        member = item.fields_by_name[field].message_type
        required = catalog.REQUIRED.get(member.name, ())
        options = [schema.field_options(member.fields_by_name[n]) for n in required]
        if not any(o.condition or o.conditions for o in options):
            return member
    raise AssertionError(f"{item.name}: no kind without conditional required fields")


def _creatable() -> list[tuple[str, Any]]:
    """(service, message to make) for every service with a Create, references first."""
    todo = {
        m.service: _kind(m.item)
        for m in schema.methods().values()
        if m.kind == "create" and m.name == "Create" and m.item is not None
    }
    order: list[tuple[str, Any]] = []
    done = {"RemoteIdentityGroups"}  # made with the organisation
    while todo:
        ready = [
            s
            for s, kind in todo.items()
            if all(
                REFS[f] in done
                for f in catalog.REQUIRED.get(kind.name, ())
                if f.endswith("_id") and f != "id"
            )
        ]
        assert ready, f"references that cannot be met (add them to REFS?): {sorted(todo)}"
        for s in ready:
            order.append((s, todo.pop(s)))
            done.add(s)
    return order


def _python_name(svc: Any, method: str) -> str:
    """The SDK's name for an API method (`TCPProbe` -> `tcp_probe`)."""
    names = [n for n in dir(svc) if n.replace("_", "").lower() == method.lower()]
    assert len(names) == 1, f"{type(svc).__name__}.{method}: {names}"
    return names[0]


def _type_names(message: Any) -> set[str]:
    """The porcelain class names a message comes back as (a union: any of its kinds)."""
    union = catalog.UNIONS.get(message.name)
    return {message.name} | ({m for _f, m in union[1]} if union else set())


Invoke = Callable[[Callable[..., Any], list[Any], bool], Awaitable[Any]]


async def call_every_method(sdk: ModuleType, client: Any, invoke: Invoke, emu: Emulator) -> int:
    counter = itertools.count()
    ids: dict[str, str] = {}
    methods = [m for m in schema.methods().values() if hasattr(client, _attr(m.service))]
    skipped = {m.service for m in schema.methods().values()} - {m.service for m in methods}
    assert skipped <= LEGACY, skipped
    called: set[str] = set()

    def value(field: Any) -> Any:
        if field.name in REFS:
            return ids[REFS[field.name]]
        if field.message_type is not None:
            return getattr(sdk, field.message_type.name)()
        if field.type == field.TYPE_STRING:
            return VALUES.get(field.name, f"x{next(counter)}@example.com")
        if field.type == field.TYPE_BOOL:
            return True
        return 1

    def make(kind: Any) -> Any:
        fields = {n: value(kind.fields_by_name[n]) for n in catalog.REQUIRED.get(kind.name, ())}
        return getattr(sdk, kind.name)(**fields)

    async def run(m: schema.Method, args: list[Any]) -> Any:
        svc = getattr(client, _attr(m.service))
        fn = getattr(svc, _python_name(svc, m.name))
        listing = "filter" in inspect.signature(fn).parameters
        answer = await invoke(fn, args, listing)
        if listing:
            assert m.item is not None
            expected = _type_names(m.item)
            got = {type(x).__name__ for x in answer}
            assert got <= expected, f"{m.full_name} gave {got}, not {expected}"
        else:
            name = m.response.DESCRIPTOR.name
            assert type(answer).__name__ == name, f"{m.full_name} gave {type(answer)}"
            assert isinstance(answer, getattr(sdk, name))
        called.add(m.full_name)
        return answer

    def arguments(m: schema.Method) -> list[Any]:
        svc = getattr(client, _attr(m.service))
        fn = getattr(svc, _python_name(svc, m.name))
        args = []
        for p in inspect.signature(fn).parameters.values():
            if p.kind is not p.POSITIONAL_OR_KEYWORD or p.name == "timeout":
                continue
            if p.name == "filter":
                args.append("")
            elif p.name == "id":
                args.append(ids[m.service])
            elif p.name == "role_ids":
                args.append([ids["Roles"]])
            elif p.name == "commit":
                args.append(False)  # a dry run: the role's group may be made by the fixture
            elif p.name == "token":
                args.append("not-a-jwt")
            elif p.name == "host":
                args.append("db.internal")
            else:
                args.append(value(m.request.DESCRIPTOR.fields_by_name[p.name]))
        return args

    by_name = {m.full_name: m for m in methods}
    # 1. One object of every creatable service, references first; what the API lists but
    # never creates is recorded through the emulator's hooks.
    order = [(s, k) for s, k in _creatable() if f"{s}.Create" in by_name]
    groups = await run(by_name["RemoteIdentityGroups.List"], [""])
    ids["RemoteIdentityGroups"] = groups[0].id
    for service, kind in order:
        m = by_name[f"{service}.Create"]
        made = await run(m, [make(kind)])
        ids[service] = getattr(made, m.item_field).id
    ids["AccessRequests"] = emu.add_access_request(ids["Resources"], ids["Accounts"])
    emu.add_query(account_id=ids["Accounts"], resource_id=ids["Resources"], replay=[b"$ ls\n"])
    ids["Activities"] = (await run(by_name["Activities.List"], [""]))[0].id

    # 2. Every method but creates and deletes; an update sends back what a get read.
    for m in methods:
        if m.full_name in called or m.kind == "delete":
            continue
        if m.kind == "update" and m.name == "Update":
            current = await run(by_name[f"{m.service}.Get"], [ids[m.service]])
            await run(m, [getattr(current, m.item_field)])
        else:
            answer = await run(m, arguments(m))
            if m.name == "List" and f"{m.service}.Create" in by_name:
                assert answer, f"{m.full_name} did not list the object made"

    # 3. Deletes, dependents first; a second delete method (ForceDelete) gets its own object.
    for service, kind in reversed(order):
        for n, m in enumerate(x for x in methods if x.service == service and x.kind == "delete"):
            if n:
                create = by_name[f"{service}.Create"]
                ids[service] = getattr(await run(create, [make(kind)]), create.item_field).id
            await run(m, [ids[service]])
    missing = {m.full_name for m in methods} - called
    assert not missing, f"not called: {sorted(missing)}"
    return len(called)


def _attr(service: str) -> str:
    return catalog.SERVICES[service][0]


async def test_sdm_async_calls_every_method_of_the_catalog() -> None:
    async def invoke(fn: Callable[..., Any], args: list[Any], listing: bool) -> Any:
        if listing:
            return [x async for x in fn(*args)]
        return await fn(*args)

    async with Emulator() as emu, emu.client() as client:
        assert await call_every_method(sdm_async, client, invoke, emu) == len(schema.methods())


def test_the_official_sdk_calls_every_method_of_the_catalog() -> None:
    strongdm = pytest.importorskip("strongdm")

    async def invoke(fn: Callable[..., Any], args: list[Any], listing: bool) -> Any:
        answer = fn(*args)  # the official SDK is synchronous; the emulator has its own loop
        return list(answer) if listing else answer

    with Emulator().running_in_thread() as emu:
        client = strongdm.Client(emu.access_key, emu.secret_key, emu.address, True)
        try:
            count = asyncio.run(call_every_method(strongdm, client, invoke, emu))
        finally:
            client.close()
    legacy = sum(len(catalog.SERVICES[s][2]) for s in LEGACY)
    assert count == len(schema.methods()) - legacy


def test_every_method_is_served_and_the_readme_says_so() -> None:
    assert not_emulated() == []
    out = subprocess.run(
        [sys.executable, "-m", "sdm_async", "emulator", "--list-methods"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = out.stdout.splitlines()
    assert len(lines) == len(schema.methods()) and all(x.startswith("yes") for x in lines)
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    assert f"says `yes` to all {len(schema.methods())};" in readme
    assert "not-emulated:start" not in readme


def test_an_unknown_method_name_is_unimplemented() -> None:
    import grpc

    with Emulator().running_in_thread() as emu, grpc.insecure_channel(emu.address) as channel:
        call = channel.unary_unary("/v1.Accounts/Frobnicate")
        with pytest.raises(grpc.RpcError) as e:
            call(b"", timeout=5)
    assert e.value.code() is grpc.StatusCode.UNIMPLEMENTED
