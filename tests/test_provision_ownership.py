"""Provisioning against the real emulator: fields the file leaves out are left alone, other
owners' objects are never taken, one-time tokens reach the user, every conflict or failure
exits 1 and is printed once, and unsuspending gives back the former permission level."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

import sdm_async
from sdm_async import RetryPolicy, provision
from sdm_async.provision.kinds import LEVEL_KEY, RESOURCE, ROLE, USER
from sdm_async.provision.render import plan_table
from sdm_async.testing import Emulator

FAST_RETRY = RetryPolicy(max_retries=10, base_delay=0.001, max_delay=0.01)
WRITES = ("Create", "Update", "Delete")
RULES = [{"tags": {"env": "prod"}}]


CLIENT_RETRY = FAST_RETRY  # the `client` fixture's policy (conftest.py)


def writes(emu: Emulator) -> dict[str, int]:
    return {m: n for m, n in emu.stats.by_method.items() if m.endswith(WRITES)}


def rendered(plan: provision.Plan) -> str:
    console = Console(file=io.StringIO(), width=250)
    console.print(plan_table(plan))
    console.print(plan.summary())
    return str(console.file.getvalue())  # type: ignore[attr-defined]


async def only(pager: sdm_async.AsyncPager[Any]) -> Any:
    [item] = [item async for item in pager]
    return item


def declared(kind: provision.kinds.Kind, model: Any, fields: tuple[str, ...]) -> Any:
    """A declaration stating only `fields`, as the loader makes one for a file that writes
    only those attributes (built directly: the loader is checked in its own tests)."""
    key = str(getattr(model, kind.key))
    return provision.Declared(kind, key, f"{kind.section}[0]", model, fields)


async def run_cli(emu: Emulator, *argv: str, env: dict[str, str] | None = None) -> Any:
    """`python -m sdm_async provision ...` in a real process, against the emulator."""
    environ = {
        **os.environ,
        "SDM_API_ACCESS_KEY": emu.access_key,
        "SDM_API_SECRET_KEY": emu.secret_key,
        "SDM_API_HOST": emu.address,
        "COLUMNS": "250",
        **(env or {}),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sdm_async",
        "provision",
        *argv,
        "--insecure",
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


def write(path: Path, data: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


# -- A: fields the file leaves out ------------------------------------------------------------


async def test_a_role_named_only_to_attach_someone_keeps_its_rules_and_tags(
    emu: Emulator, client: sdm_async.Client
) -> None:
    await client.roles.create(sdm_async.Role(name="dba", access_rules=RULES, tags={"t": "1"}))
    spec = provision.Spec(
        (
            declared(
                USER,
                sdm_async.User(email="n@example.com", first_name="N", last_name="N"),
                ("email", "first_name", "last_name"),
            ),
            declared(ROLE, sdm_async.Role(name="dba"), ("name",)),
            provision.Declared(
                provision.kinds.ATTACHMENT,
                "n@example.com -> dba",
                "attachments[0]",
                sdm_async.AccountAttachment(),
                (),
                ends=(("user", "n@example.com"), ("role", "dba")),
            ),
        )
    )
    plan = await provision.plan(client, spec)
    adopt = next(c for c in plan.changes if c.kind is ROLE)
    assert (adopt.action, adopt.fields) == ("adopt", ("tags",))
    assert adopt.detail() == "exists unmarked: mark it as managed; tags +managed-by=sdm-async"
    result = await provision.apply(client, spec, plan=plan)
    assert result.ok and result.count("adopt") == 1
    role = await only(client.roles.list("name:?", "dba"))
    assert role.access_rules == RULES
    assert role.tags == {"t": "1", "managed-by": "sdm-async"}
    assert (await provision.plan(client, spec)).empty


async def test_objects_declared_without_tags_keep_theirs_on_update(
    emu: Emulator, client: sdm_async.Client
) -> None:
    tags = {"team": "data", "managed-by": "sdm-async"}
    await client.accounts.create(
        sdm_async.User(email="u@example.com", first_name="U", last_name="Old", tags=tags)
    )
    await client.resources.create(sdm_async.Redis(name="cache", hostname="a", port=1, tags=tags))
    await client.roles.create(sdm_async.Role(name="r", access_rules=RULES, tags=tags))
    spec = provision.Spec(
        (
            declared(
                USER,
                sdm_async.User(email="u@example.com", first_name="U", last_name="New"),
                ("email", "first_name", "last_name"),
            ),
            declared(ROLE, sdm_async.Role(name="r", tags={"x": "y"}), ("name", "tags")),
            declared(
                RESOURCE,
                sdm_async.Redis(name="cache", hostname="b", port=2),
                ("name", "hostname", "port"),
            ),
        )
    )
    plan = await provision.plan(client, spec)
    assert {(c.action, c.key, c.fields) for c in plan.changes} == {
        ("update", "u@example.com", ("last_name",)),
        ("update", "r", ("tags",)),  # tags stated: they are the file's; rules are not
        ("update", "cache", ("hostname", "port")),
    }
    assert (await provision.apply(client, spec, plan=plan)).ok
    user = await only(client.accounts.list("email:?", "u@example.com"))
    assert (user.last_name, user.tags) == ("New", tags)
    redis = await only(client.resources.list("name:?", "cache"))
    assert (redis.hostname, redis.port, redis.tags) == ("b", 2, tags)
    role = await only(client.roles.list("name:?", "r"))
    assert role.access_rules == RULES and role.tags == {"x": "y", "managed-by": "sdm-async"}


# -- 1: other owners' objects ------------------------------------------------------------------


def team(owner: str, email: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "owner": owner,
        "users": [{"email": email, "first_name": "F", "last_name": "L"}],
        "roles": [{"name": "shared", "access_rules": rules}],
        "attachments": [{"account": email, "role": "shared"}],
    }


async def test_another_owners_object_is_a_conflict_never_adopted_changed_or_pruned(
    emu: Emulator, client: sdm_async.Client
) -> None:
    assert (await provision.apply(client, provision.parse(team("a", "a@x.io", RULES)))).ok
    b = provision.parse(team("b", "b@x.io", [{"type": "redis"}]))
    plan = await provision.plan(client, b)
    assert [c.split(": ", 1)[0] for c in plan.conflicts] == ["roles[0]"]
    assert "owned by another declaration (tag managed-by: a)" in plan.conflicts[0]
    assert "--take-over a" in plan.conflicts[0]
    assert "1 conflict(s) block apply" in plan.summary()
    assert not any(c.kind is ROLE for c in plan.changes)
    emu.stats.by_method.clear()
    with pytest.raises(provision.ConflictError, match="owned by another declaration"):
        await provision.apply(client, b)
    assert writes(emu) == {}

    # b no longer declares the role and prunes: a's role and a's attachment stay.
    pruned = await provision.apply(client, provision.parse({"owner": "b"}), prune=True)
    assert pruned.ok and writes(emu) == {}
    role = await only(client.roles.list("name:?", "shared"))
    assert role.access_rules == RULES and role.tags == {"managed-by": "a"}
    assert len([a async for a in client.account_attachments.list("roleid:?", role.id)]) == 1

    # Taking over is explicit, and then the object is b's.
    taken = await provision.plan(client, b, take_over=["a"])
    change = next(c for c in taken.changes if c.kind is ROLE)
    assert change.action == "adopt"
    assert change.detail().startswith("owned by 'a': take it over; access rules changed")
    with pytest.raises(ValueError, match="take_over"):
        await provision.apply(client, b, plan=taken)
    calls = emu.stats.calls
    with pytest.raises(TypeError, match=r"a list of owners, e.g. \['a'\]"):
        await provision.plan(client, b, take_over="a")
    assert emu.stats.calls == calls
    assert (await provision.apply(client, b, plan=taken, take_over=["a"])).ok
    role = await only(client.roles.list("name:?", "shared"))
    assert role.tags == {"managed-by": "b"} and role.access_rules == [{"type": "redis"}]


async def test_an_object_another_owner_creates_meanwhile_is_not_adopted(
    emu: Emulator, client: sdm_async.Client
) -> None:
    b = provision.parse(team("b", "b@x.io", [{"type": "redis"}]))
    stale = await provision.plan(client, b)  # the role does not exist yet: create
    assert (await provision.apply(client, provision.parse(team("a", "a@x.io", RULES)))).ok
    result = await provision.apply(client, b, plan=stale)
    assert not result.ok
    [failure] = [f for f in result.failures if f.kind == "role"]
    assert "appeared meanwhile and is owned by another declaration" in failure.error
    role = await only(client.roles.list("name:?", "shared"))
    assert role.access_rules == RULES and role.tags == {"managed-by": "a"}


# -- 2: one-time tokens ------------------------------------------------------------------------

TOKENED: dict[str, Any] = {
    "services": [{"name": "ci"}],
    "nodes": [
        {"name": "gw", "type": "gateway", "listen_address": "gw.example.com:5000"},
        {"name": "relay", "type": "relay"},
    ],
}


async def test_tokens_of_created_services_and_nodes_are_returned_and_masked(
    emu: Emulator, client: sdm_async.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sdm_async")
    spec = provision.parse(TOKENED)
    result = await provision.apply(client, spec)
    assert result.ok and sorted(result.tokens) == ["node/gw", "node/relay", "service/ci"]
    tokens = set(result.tokens.values())
    assert len(tokens) == 3 and all(len(t) > 20 for t in tokens)
    shown = [repr(result), repr(result.tokens), str(result.tokens), caplog.text]
    assert "'service/ci': '***'" in shown[1]
    assert not any(t in text for t in tokens for text in shown)

    # Deleted and declared again: a new token, handed over again.
    service = await only(client.accounts.list("name:?", "ci"))
    await client.accounts.delete(service.id)
    again = await provision.apply(client, spec)
    assert list(again.tokens) == ["service/ci"] and again.tokens["service/ci"] not in tokens


async def test_tokens_outlive_a_cancelled_apply() -> None:
    spec = provision.parse({"services": [{"name": f"svc-{i}"} for i in range(8)]})
    created = 0
    halfway = asyncio.Event()

    def watch(attempt: sdm_async.Attempt) -> None:
        nonlocal created
        if attempt.method == "Accounts.Create" and attempt.error is None:
            created += 1
            if created == 4:
                halfway.set()

    tokens = provision.Tokens()
    async with (
        Emulator(latency=0.004) as emu,
        emu.client(retry=FAST_RETRY, on_attempt=watch) as client,
    ):
        task = asyncio.ensure_future(provision.apply(client, spec, concurrency=1, tokens=tokens))
        await halfway.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # One call at a time, one outcome buffered: the first two are surely handed over.
        assert len(tokens) >= 2
        names = {s.name async for s in client.accounts.list("type:service")}
        assert {key.removeprefix("service/") for key in tokens} <= names


async def test_a_token_lost_with_a_reply_is_reported(
    emu: Emulator, client: sdm_async.Client
) -> None:
    spec = provision.parse({"services": [{"name": "ci"}]})
    stale = await provision.plan(client, spec)
    # What an earlier attempt whose reply was lost leaves: the service, marked, its token gone.
    await client.accounts.create(sdm_async.Service(name="ci", tags={"managed-by": "sdm-async"}))
    result = await provision.apply(client, spec, plan=stale)
    assert result.ok and not result.tokens
    [note] = result.notes
    assert note.startswith("service 'ci' was created by an earlier attempt")
    assert "delete it and apply again" in note


async def test_cli_saves_tokens_with_mode_0600_and_refuses_to_lose_them(
    emu: Emulator, tmp_path: Path
) -> None:
    path = write(tmp_path / "org.yaml", TOKENED)
    secrets = tmp_path / "tokens.json"

    code, out, err = await run_cli(emu, "apply", path)
    assert code == 2 and "whose tokens the API shows only once" in err
    assert "service 'ci', node 'gw', node 'relay'" in err and "--secrets-out" in err
    assert emu.backend.count("Accounts") == emu.backend.count("Nodes") == 0

    secrets.write_text("keep me")
    calls = emu.stats.calls
    code, _, err = await run_cli(emu, "apply", path, "--secrets-out", str(secrets))
    assert code == 2 and "already exists" in err and secrets.read_text() == "keep me"
    assert emu.stats.calls == calls  # refused before any call
    secrets.unlink()

    code, out, err = await run_cli(emu, "apply", path, "--secrets-out", str(secrets))
    assert code == 0, err
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    tokens = json.loads(secrets.read_text())
    assert sorted(tokens) == ["node/gw", "node/relay", "service/ci"]
    assert not any(t in out + err for t in tokens.values())
    assert f"Tokens: 3 written to {secrets}" in out

    # Nothing to create: no token, and no file left behind.
    unused = tmp_path / "unused.json"
    code, out, _ = await run_cli(emu, "apply", path, "--secrets-out", str(unused))
    assert code == 0 and "no changes" in out and not unused.exists()

    # `-`: printed once, on stdout, with a warning on stderr.
    assert emu.backend.count("Nodes") == 2
    async with emu.client() as client:
        relay = await only(client.nodes.list("name:?", "relay"))
        await client.nodes.delete(relay.id)
    code, out, err = await run_cli(emu, "apply", path, "--secrets-out", "-")
    assert code == 0 and "shown this once" in err
    [line] = [line for line in out.splitlines() if line.startswith("token ")]
    assert line.startswith("token node/relay: ") and len(line.split(": ")[1]) > 20


# -- 3 and 7: exit status, failures printed once -----------------------------------------------


async def test_cli_apply_exits_1_when_only_conflicts_remain(
    emu: Emulator, client: sdm_async.Client, tmp_path: Path
) -> None:
    assert (await provision.apply(client, provision.parse(team("a", "a@x.io", RULES)))).ok
    await client.resources.create(sdm_async.SSH(name="box", hostname="h", port=22, username="u"))
    # Plans that hold a conflict and nothing else: another owner's role, a type clash.
    cases: dict[str, dict[str, Any]] = {
        "resource 'box' exists as a ssh": {
            "resources": [{"name": "box", "type": "redis", "hostname": "h"}],
        },
        "role 'shared' is owned by another declaration": {
            "owner": "b",
            "roles": [{"name": "shared", "access_rules": []}],
        },
    }
    emu.stats.by_method.clear()
    for i, (conflict, data) in enumerate(cases.items()):
        path = write(tmp_path / f"{i}.yaml", data)
        for command in ("plan", "apply"):
            code, out, err = await run_cli(emu, command, path)
            assert code == 1, (command, out, err)
            assert f"conflict: {next(iter(data.keys() - {'owner'}))}[0]: {conflict}" in out
        assert "nothing was changed: 1 conflict(s) block it" in err
    assert writes(emu) == {}
    path = str(tmp_path / "1.yaml")
    code, out, _ = await run_cli(emu, "apply", path, "--take-over", "a")
    assert code == 0 and "1 adopted" in out


async def test_cli_prints_each_failure_once_and_exits_1(emu: Emulator, tmp_path: Path) -> None:
    # A key that may read everything and create roles, not users: the user's creation fails.
    reads = {"user:list", "role:list", "datasource:list", "relay:list", "grant:read"}
    access, secret = emu.add_key(frozenset({*reads, "role:create"}))
    data = {
        "users": [{"email": "x@example.com", "first_name": "X", "last_name": "Y"}],
        "roles": [{"name": "r"}],
    }
    path = write(tmp_path / "org.yaml", data)
    code, out, err = await run_cli(
        emu, "apply", path, env={"SDM_API_ACCESS_KEY": access, "SDM_API_SECRET_KEY": secret}
    )
    assert code == 1
    assert (out + err).count("create user 'x@example.com'") == 1, out + err
    assert "failed: create user 'x@example.com': PermissionError" in out
    assert emu.backend.count("Roles") == 1


# -- 4: suspending and unsuspending ------------------------------------------------------------


async def test_unsuspending_gives_back_the_former_permission_level(
    emu: Emulator, client: sdm_async.Client
) -> None:
    user: dict[str, Any] = {"email": "adm@example.com", "first_name": "A", "last_name": "D"}
    assert (await provision.apply(client, provision.parse({"users": [user]}))).ok
    found = await only(client.accounts.list("email:?", "adm@example.com"))
    found.permission_level = "admin"
    await client.accounts.update(found)

    user["suspended"] = True
    plan = await provision.plan(client, provision.parse({"users": [user]}))
    text = rendered(plan)
    assert "permission_level: 'admin' -> 'suspended'" in text
    assert f"+{LEVEL_KEY}=admin" in text and "suspended: False -> True" in text
    assert (await provision.apply(client, provision.parse({"users": [user]}), plan=plan)).ok

    # While suspended, the file's tags change: the remembered level stays.
    user["tags"] = {"team": "ops"}
    assert (await provision.apply(client, provision.parse({"users": [user]}))).ok
    found = await only(client.accounts.list("email:?", "adm@example.com"))
    assert found.suspended and found.tags[LEVEL_KEY] == "admin"

    user["suspended"] = False
    plan = await provision.plan(client, provision.parse({"users": [user]}))
    [change] = plan.changes
    assert set(change.fields) == {"tags", "suspended", "permission_level"}
    detail = change.detail()
    assert "suspended: True -> False" in detail
    assert "permission_level: 'suspended' -> 'admin'" in detail and f"-{LEVEL_KEY}" in detail
    assert (await provision.apply(client, provision.parse({"users": [user]}), plan=plan)).ok
    found = await only(client.accounts.list("email:?", "adm@example.com"))
    assert not found.suspended and found.permission_level == "admin"
    assert found.tags == {"team": "ops", "managed-by": "sdm-async"}

    # Created suspended: the level to give back is the one a new user gets.
    new: dict[str, Any] = {"email": "new@example.com", "first_name": "N", "last_name": "W"}
    new["suspended"] = True
    assert (await provision.apply(client, provision.parse({"users": [user, new]}))).ok
    found = await only(client.accounts.list("email:?", "new@example.com"))
    assert found.suspended and found.tags[LEVEL_KEY] == "user"
    new["suspended"] = False
    assert (await provision.apply(client, provision.parse({"users": [user, new]}))).ok
    found = await only(client.accounts.list("email:?", "new@example.com"))
    assert found.permission_level == "user" and LEVEL_KEY not in found.tags


async def test_a_user_suspended_elsewhere_is_not_unsuspended_to_a_guessed_level(
    emu: Emulator, client: sdm_async.Client
) -> None:
    user: dict[str, Any] = {"email": "s@example.com", "first_name": "S", "last_name": "S"}
    assert (await provision.apply(client, provision.parse({"users": [user]}))).ok
    found = await only(client.accounts.list("email:?", "s@example.com"))
    found.permission_level = "suspended"
    await client.accounts.update(found)

    user["suspended"] = False
    spec = provision.parse({"users": [user]})
    plan = await provision.plan(client, spec)
    [conflict] = plan.conflicts
    assert conflict.startswith("users[0]: user 's@example.com' was suspended outside")
    assert f"tag it `{LEVEL_KEY}: <level>`" in conflict
    emu.stats.by_method.clear()
    with pytest.raises(provision.ConflictError):
        await provision.apply(client, spec)
    assert writes(emu) == {}

    # Told which level, by the tag the conflict names: restored.
    found.tags = {**found.tags, LEVEL_KEY: "auditor"}
    await client.accounts.update(found)
    assert (await provision.apply(client, spec)).ok
    found = await only(client.accounts.list("email:?", "s@example.com"))
    assert found.permission_level == "auditor" and LEVEL_KEY not in found.tags


async def test_tags_the_loader_marks_secret_are_never_shown(
    emu: Emulator, client: sdm_async.Client
) -> None:
    secret = "tag-TOPSECRET-42"
    model = sdm_async.Role(name="r", tags={"key": secret})
    d = provision.Declared(
        ROLE, "r", "roles[0]", model, ("name", "tags"), secrets=frozenset({"tags"})
    )
    spec = provision.Spec((d,))
    texts = [rendered(await provision.plan(client, spec))]
    await client.roles.create(sdm_async.Role(name="r", tags={"key": "old"}))
    plan = await provision.plan(client, spec)
    texts += [rendered(plan), *(c.detail() for c in plan.changes)]
    assert "key=***" in texts[0] and "+key=***" in texts[1]
    assert not any(secret in text for text in texts)
