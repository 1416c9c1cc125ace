"""`provision export` against the real emulator: round trips (export -> plan shows no change;
export -> apply to an empty emulator -> export gives the same text), adopting an unmarked
organisation under an owner, filters, credentials never written, every resource type, the
command line in a real process."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import sdm_async
from sdm_async import RetryPolicy, provision
from sdm_async._generated import models
from sdm_async.provision.export import ASSIGNED
from sdm_async.provision.kinds import RESOURCE_TYPES, required_fields, settable_fields
from sdm_async.testing import Emulator

FAST_RETRY = RetryPolicy(max_retries=10, base_delay=0.001, max_delay=0.01)
PASSWORD = "pw-TOPSECRET-4711"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "provision" / "org.yaml"
# The example's credentials: its password from the environment, usernames in the file.
EXAMPLE_ENV = {
    "PG_APP_PASSWORD": PASSWORD,
    "PG_APP_USERNAME": "app",
    "BASTION_USERNAME": "ops",
}


CLIENT_RETRY = FAST_RETRY  # the `client` fixture's policy (conftest.py)


def variables(text: str) -> dict[str, str]:
    """The variables the header lists: name -> what it stands for."""
    found = {}
    for line in text.splitlines():
        m = re.fullmatch(r"#   ([A-Z_][A-Z0-9_]*)\s+(\S.*)", line)
        if m:
            found[m.group(1)] = m.group(2)
    return found


def load(tmp_path: Path, text: str, env: dict[str, str]) -> provision.Spec:
    path = tmp_path / "export.yaml"
    path.write_text(text)
    return provision.load(path, env=env)


async def applied_example(client: sdm_async.Client) -> None:
    spec = provision.load(EXAMPLE, env={"PG_APP_PASSWORD": PASSWORD})
    result = await provision.apply(client, spec)
    assert result.ok and result.count("create") == 15


async def test_export_then_plan_shows_no_change(
    emu: Emulator, client: sdm_async.Client, tmp_path: Path
) -> None:
    await applied_example(client)
    text = await provision.export(client, owner="platform-team")
    assert PASSWORD not in text
    assert variables(text) == {
        "BASTION_USERNAME": "resource 'bastion': username",
        "PG_APP_PASSWORD": "resource 'pg-app': password",
        "PG_APP_USERNAME": "resource 'pg-app': username",
    }
    data = yaml.safe_load(text)
    assert data["owner"] == "platform-team"
    assert [u["email"] for u in data["users"]] == [
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
    ]
    pg = next(r for r in data["resources"] if r["name"] == "pg-app")
    assert pg == {
        "name": "pg-app",
        "type": "postgres",
        "database": "app",
        "hostname": "db.internal",
        "password": "${PG_APP_PASSWORD}",
        "port": 5432,
        "username": "${PG_APP_USERNAME}",
        "tags": {"team": "data"},
    }
    # Defaults, read-only fields and the mark are left out.
    assert "healthy" not in text and "port_override" not in text and " id:" not in text
    assert "managed-by" not in text and "level-before-suspension" not in text
    carol = next(u for u in data["users"] if u["email"] == "carol@example.com")
    assert carol == {
        "email": "carol@example.com",
        "first_name": "Carol",
        "last_name": "White",
        "suspended": True,
    }
    assert data["grants"] == [
        {
            "account": "bob@example.com",
            "resource": "pg-app",
            "start_from": "2025-01-01T00:00:00Z",
            "valid_until": "2030-01-01T00:00:00Z",
        }
    ]

    calls = dict(emu.stats.by_method)
    plan = await provision.plan(client, load(tmp_path, text, EXAMPLE_ENV))
    assert plan.empty and not plan.conflicts and not plan.orphans, plan.summary()
    assert plan.unchanged == 15
    assert all(m.endswith(".List") for m in emu.stats.by_method if m not in calls)


async def test_export_applied_to_an_empty_emulator_exports_the_same_text(
    client: sdm_async.Client, tmp_path: Path
) -> None:
    await applied_example(client)
    text = await provision.export(client, owner="platform-team")
    async with Emulator() as other, other.client(retry=FAST_RETRY) as fresh:
        result = await provision.apply(fresh, load(tmp_path, text, EXAMPLE_ENV))
        assert result.ok and result.count("create") == 15
        assert await provision.export(fresh, owner="platform-team") == text


async def test_adopting_an_unmarked_organisation(client: sdm_async.Client, tmp_path: Path) -> None:
    """Terraform's import: export under an owner, plan (only marks), apply, then nothing."""
    alice = (
        await client.accounts.create(
            models.User(email="alice@example.com", first_name="A", last_name="S")
        )
    ).account
    role = (
        await client.roles.create(models.Role(name="dba", access_rules=[{"type": "postgres"}]))
    ).role
    await client.account_attachments.create(
        models.AccountAttachment(account_id=alice.id, role_id=role.id)
    )
    await client.accounts.create(models.Service(name="old-bot", suspended=True))
    suspended = models.User(email="gone@example.com", first_name="G", last_name="O")
    suspended.permission_level = "suspended"
    await client.accounts.create(suspended)
    # Another declaration's object: never in this one's file.
    await client.roles.create(models.Role(name="theirs", tags={"managed-by": "other-team"}))

    text = await provision.export(client, owner="data-team")
    data = yaml.safe_load(text)
    assert [r["name"] for r in data["roles"]] == ["dba"]
    assert data["attachments"] == [{"account": "alice@example.com", "role": "dba"}]
    assert data["services"] == [{"name": "old-bot", "suspended": True}]
    assert data["users"][1] == {
        "email": "gone@example.com",
        "first_name": "G",
        "last_name": "O",
        "suspended": True,
    }
    assert "#   1 object(s) of the declaration with owner 'other-team'" in text
    spec = load(tmp_path, text, {})
    plan = await provision.plan(client, spec)
    assert {(c.action, c.key, c.fields) for c in plan.changes} == {
        ("adopt", "alice@example.com", ("tags",)),
        ("adopt", "dba", ("tags",)),
        ("adopt", "gone@example.com", ("tags",)),
        ("adopt", "old-bot", ("tags",)),
    }
    assert not plan.conflicts
    result = await provision.apply(client, spec)
    assert result.ok
    assert (await provision.plan(client, spec)).empty
    assert await provision.export(client, owner="data-team") == text


def values_for(cls: type[Any], n: int) -> dict[str, Any]:
    """Every settable attribute of `cls` away from its default (ints distinct per type)."""
    out: dict[str, Any] = {}
    for f, kind in settable_fields(cls).items():
        if kind is bool:
            out[f] = True
        elif kind is int:
            out[f] = 1000 + n
        elif f == "key_type":  # an SSH key type the API knows
            out[f] = "rsa-2048"
        else:
            out[f] = f"SECRET-{n}-{f}" if f in cls._secrets else f"{f}-{n}"
    return out


async def test_every_resource_type_is_exported_and_round_trips(
    client: sdm_async.Client, tmp_path: Path
) -> None:
    created: dict[str, dict[str, Any]] = {}
    for n, (name, cls) in enumerate(sorted(RESOURCE_TYPES.items())):
        values = values_for(cls, n)
        created[f"r-{name}"] = values
        await client.resources.create(cls(name=f"r-{name}", **values))
    # One with only what its type requires: the rest is at its default and left out.
    pg_required = {f: "x" for f in required_fields(models.Postgres)}
    await client.resources.create(models.Postgres(name="bare", **pg_required))

    text = await provision.export(client, only=["resources"])
    data = yaml.safe_load(text)
    by_name = {r["name"]: r for r in data["resources"]}
    assert {by_name[f"r-{t}"]["type"] for t in RESOURCE_TYPES} == set(RESOURCE_TYPES)
    assert "SECRET-" not in text  # no credential, returned by the API or not
    assert by_name["bare"] == {
        "name": "bare",
        "type": "postgres",
        "database": "x",
        "hostname": "x",
        "password": "${BARE_PASSWORD}",
        "username": "${BARE_USERNAME}",
    }
    returned = {r.name: r async for r in client.resources.list("")}
    for name, cls in RESOURCE_TYPES.items():
        entry = by_name[f"r-{name}"]
        required = required_fields(cls)
        for f in settable_fields(cls):
            if f in ASSIGNED:  # the API's allocation: left for it to assign again
                assert f not in entry, (name, f)
            elif f not in cls._secrets:
                assert entry[f] == created[f"r-{name}"][f], (name, f)
            elif f in required or getattr(returned[f"r-{name}"], f):
                # A placeholder where the resource has a credential, or needs one.
                assert entry[f] == f"${{{f'R_{name}_{f}'.upper()}}}", (name, f)
            else:
                # An optional credential the API does not return: nothing says it is set.
                assert f not in entry, (name, f)

    # The variables name the values they stand for; with them set, nothing differs.
    env = {}
    for var, what in variables(text).items():
        m = re.fullmatch(r"resource '(.+)': (\w+)", what)
        assert m, what
        env[var] = created.get(m.group(1), pg_required).get(m.group(2), "x")
    spec = load(tmp_path, text, env)
    plan = await provision.plan(client, spec)
    assert {c.action for c in plan.changes} == {"adopt"}
    assert all(c.fields == ("tags",) for c in plan.changes)

    async with Emulator() as other, other.client(retry=FAST_RETRY) as fresh:
        result = await provision.apply(fresh, spec)
        assert result.ok and result.count("create") == len(RESOURCE_TYPES) + 1
        assert await provision.export(fresh, only=["resources"]) == text


async def test_only_and_tag_filters(emu: Emulator, client: sdm_async.Client) -> None:
    await applied_example(client)
    text = await provision.export(client, only=["users", "roles"], owner="platform-team")
    data = yaml.safe_load(text)
    assert set(data) == {"version", "owner", "users", "roles"}
    assert "# Sections: users, roles." in text

    # Links need their ends: a service's attachment is not written without services.
    text = await provision.export(
        client, only=["users", "roles", "attachments"], owner="platform-team"
    )
    assert [a["account"] for a in yaml.safe_load(text)["attachments"]] == [
        "alice@example.com",
        "bob@example.com",
    ]

    text = await provision.export(client, tags={"team": "data"}, owner="platform-team")
    data = yaml.safe_load(text)
    assert [u["email"] for u in data["users"]] == ["alice@example.com"]
    assert [r["name"] for r in data["roles"]] == ["data-readers"]
    assert [r["name"] for r in data["resources"]] == ["pg-app"]
    assert data["attachments"] == [{"account": "alice@example.com", "role": "data-readers"}]
    assert "services" not in data and "nodes" not in data and "grants" not in data
    assert "Tags: team=data." in text

    # A filter's text is shown in a comment, on one line whatever it holds.
    text = await provision.export(client, tags={"team": "x\nusers: []"})
    assert "# Sections: users, services, roles, resources, nodes, attachments, grants." in text
    assert "Tags: team=x\\nusers: []." in text
    assert set(yaml.safe_load(text)) == {"version", "owner"}

    # Another owner sees nothing of platform-team's.
    data = yaml.safe_load(await provision.export(client))
    assert set(data) == {"version", "owner"} and data["owner"] == "sdm-async"

    calls = emu.stats.calls
    bad: list[dict[str, Any]] = [
        {"only": ["users", "rols"]},
        {"only": []},
        {"only": ["users", "grants"]},
        {"owner": "two words"},
    ]
    for kwargs in bad:
        with pytest.raises(ValueError):
            await provision.export(client, **kwargs)
    assert emu.stats.calls == calls  # refused before any call


async def test_literal_dollar_braces_are_escaped(client: sdm_async.Client, tmp_path: Path) -> None:
    """A value holding `${` is written `$${`, so that loading gives the value back rather than
    reading a variable."""
    odd = "a${HOME}b$${c"
    await client.roles.create(
        models.Role(
            name=f"role-{odd}",
            access_rules=[{"tags": {odd: odd}}],
            tags={odd: odd},
        )
    )
    await client.resources.create(models.Redis(name="cache", hostname=odd, port=6379))
    text = await provision.export(client)
    assert "HOME" not in variables(text)
    spec = load(tmp_path, text, {})  # no variable is needed: none is read
    role = spec.of(provision.kinds.ROLE)[0].model
    assert role.name == f"role-{odd}" and role.tags == {odd: odd}
    assert role.access_rules == [{"tags": {odd: odd}}]
    assert spec.of(provision.kinds.RESOURCE)[0].model.hostname == odd


async def test_link_oddities_are_named_in_the_header(client: sdm_async.Client) -> None:
    """Two grants of one account to one resource: a declaration holds one; the other is
    named, not silently dropped."""
    user = (
        await client.accounts.create(
            models.User(email="u@example.com", first_name="U", last_name="U")
        )
    ).account
    pg = (await client.resources.create(models.Redis(name="c", hostname="h", port=1))).resource
    ids = []
    for _ in range(2):
        grant = models.AccountGrant(account_id=user.id, resource_id=pg.id)
        ids.append((await client.account_grants.create(grant)).account_grant.id)
    text = await provision.export(client)
    assert len(yaml.safe_load(text)["grants"]) == 1
    assert f"#   grant {max(ids)}: another grant of 'u@example.com' to 'c'" in text


async def run_cli(
    emu: Emulator,
    *argv: str,
    env: dict[str, str] | None = None,
    stdout: int = asyncio.subprocess.PIPE,
) -> Any:
    """`python -m sdm_async provision export ...` in a real process, against the emulator."""
    environ = {
        **os.environ,
        "SDM_API_ACCESS_KEY": emu.access_key,
        "SDM_API_SECRET_KEY": emu.secret_key,
        "SDM_API_HOST": emu.address,
        **(env or {}),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sdm_async",
        "provision",
        "export",
        *argv,
        env=environ,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode, (out or b"").decode(), err.decode()


async def test_cli_export(emu: Emulator, client: sdm_async.Client, tmp_path: Path) -> None:
    await applied_example(client)
    want = await provision.export(client, owner="platform-team")
    code, out, err = await run_cli(emu, "--insecure", "--owner", "platform-team")
    assert (code, err) == (0, "") and out == want

    target = tmp_path / "org.yaml"
    code, out, _ = await run_cli(
        emu, "--insecure", "--owner", "platform-team", "--only", "users,roles", "-o", str(target)
    )
    assert code == 0 and out == ""
    assert set(yaml.safe_load(target.read_text())) == {"version", "owner", "users", "roles"}

    code, out, _ = await run_cli(
        emu, "--insecure", "--owner", "platform-team", "--tag", "team=data"
    )
    assert code == 0 and [u["email"] for u in yaml.safe_load(out)["users"]] == ["alice@example.com"]

    calls = emu.stats.calls
    for argv, message in [
        (("--only", "users,rols"), "unknown: rols"),
        (("--only", "grants"), "--only grants needs the sections of both ends"),
        (("--tag", "team"), "--tag takes NAME=VALUE"),
        (("--owner", "a b"), "--owner must be a short name"),
        (("-o", str(tmp_path / "missing" / "x.yaml")), "no such directory"),
    ]:
        code, out, err = await run_cli(emu, "--insecure", *argv)
        assert code == 2 and message in err and out == "", (argv, err)
        assert "Traceback" not in err
    assert emu.stats.calls == calls  # nothing reached the API

    # A reader that stops early (`| head -1`) gets its line, and no traceback is printed.
    read, write = os.pipe()
    os.close(read)
    code, _, err = await run_cli(emu, "--insecure", "--owner", "platform-team", stdout=write)
    os.close(write)
    assert code == 0 and err == ""

    code, _, err = await run_cli(emu, "--insecure", env={"SDM_API_SECRET_KEY": ""})
    assert code == 2 and "SDM_API_SECRET_KEY" in err
    code, _, err = await run_cli(emu, "--insecure", env={"SDM_API_ACCESS_KEY": "auth-0000"})
    assert code == 1 and err.startswith("sdm-async provision: ") and "Traceback" not in err


async def test_an_api_error_during_concurrent_reads_is_raised_as_itself(
    emu: Emulator, tmp_path: Path
) -> None:
    """Reads run concurrently in a task group: its failure is the SDK's error, not the group
    wrapping it, so that `except RPCError` catches it and the command line prints one line
    (plan and apply read the same way as export)."""
    async with sdm_async.Client(
        "auth-0000", emu.secret_key, emu.address, insecure=True, retry=FAST_RETRY
    ) as bad:
        with pytest.raises(sdm_async.AuthenticationError):
            await provision.export(bad)
        with pytest.raises(sdm_async.AuthenticationError):
            await provision.plan(bad, provision.load(EXAMPLE, env={"PG_APP_PASSWORD": "x"}))

    environ = {
        **os.environ,
        "SDM_API_ACCESS_KEY": "auth-0000",
        "SDM_API_SECRET_KEY": emu.secret_key,
        "SDM_API_HOST": emu.address,
        "PG_APP_PASSWORD": "x",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sdm_async",
        "provision",
        "plan",
        str(EXAMPLE),
        "--insecure",
        env=environ,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 1
    assert err.decode() == "sdm-async provision: AuthenticationError: unknown API access key\n"


def readme_export() -> str:
    """The export the README shows."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    return readme.split("--tag team=data --insecure`):\n\n```yaml\n", 1)[1].split("```")[0]


async def test_the_readme_shows_real_output(client: sdm_async.Client) -> None:
    shown = readme_export()
    await applied_example(client)
    text = await provision.export(client, owner="platform-team", tags={"team": "data"})
    assert text == shown
