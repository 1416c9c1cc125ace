"""`sdm-async SERVICE METHOD`: run as real processes (`python -m sdm_async ...`) against an
emulator served in the test, with the credentials in the environment."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import sdm_async
from sdm_async._generated.services import Services
from sdm_async.commands import methods, parser
from sdm_async.testing import Emulator

SECRET_WORD = "hunter2-not-to-be-shown"


def environ(emu: Emulator, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SDM_API_", "GRPC_"))}
    env.update(
        SDM_API_ACCESS_KEY=emu.access_key,
        SDM_API_SECRET_KEY=emu.secret_key,
        SDM_API_HOST=emu.address,
        COLUMNS="250",
    )
    env.update(extra)
    return env


async def sdm(
    emu: Emulator | None, *argv: str, env: dict[str, str] | None = None, stdin: bytes = b""
) -> tuple[int, str, str]:
    """One `python -m sdm_async ...` process; the emulator keeps serving meanwhile."""
    if env is None:
        env = environ(emu) if emu is not None else dict(os.environ)
    insecure = ("--insecure",) if emu is not None and "--help" not in argv and len(argv) > 1 else ()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sdm_async",
        *argv,
        *insecure,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def one_line_error(err: str, *words: str) -> None:
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, err


async def make_user(client: sdm_async.Client, email: str, **tags: str) -> str:
    resp = await client.accounts.create(
        sdm_async.User(email=email, first_name="A", last_name="B", tags=tags)
    )
    assert resp.account is not None
    return str(resp.account.id)


# -- help ----------------------------------------------------------------------------------


def test_every_method_of_every_service_has_a_command_with_the_official_parameter_names() -> None:
    import inspect

    for service in Services.__annotations__:
        found = methods(service)
        cls = type(getattr(sdm_async.Client("auth-x", "c2VjcmV0", insecure=True), service))
        public = {n for n in dir(cls) if inspect.isfunction(getattr(cls, n)) and n[0] != "_"}
        assert set(found) == public, service
        for name, method in found.items():
            text = parser(method).format_help()
            for p in inspect.signature(getattr(cls, name)).parameters.values():
                if p.name not in ("self", "timeout"):
                    assert p.name in text, (service, name, p.name)


def _inspected(service: str) -> dict[str, tuple[str, tuple[tuple[str, str, bool], ...], str, bool]]:
    """What the client's own class for `service` says of each public method: summary (as
    help shows it), parameters (name, annotation, required), return annotation, and whether
    the class defines `get` itself (an update then reads the object first)."""
    import inspect
    import re

    cls = type(getattr(sdm_async.Client("auth-x", "c2VjcmV0", insecure=True), service))
    order = dict.fromkeys(n for klass in reversed(cls.__mro__) for n in vars(klass))
    out = {}
    for name in order:
        fn = getattr(cls, name)
        if name.startswith("_") or not inspect.isfunction(fn):
            continue
        sig = inspect.signature(fn)
        params = tuple(
            (p.name, str(p.annotation), p.default is p.empty and p.kind is not p.VAR_POSITIONAL)
            for p in list(sig.parameters.values())[1:]
            if p.name != "timeout"
        )
        doc, returns = inspect.getdoc(fn) or "", str(sig.return_annotation)
        rpc = re.search(r"`(\w+\.\w+)`", doc)
        if returns.startswith("AsyncPager[") and rpc:
            summary = f"The matching items, streamed page by page ({rpc.group(0)})"
        else:
            summary = doc.split(". `timeout`")[0].split("\n")[0].strip().rstrip(".")
        out[name] = (summary, params, returns, "get" in cls.__dict__)
    return out


def test_commands_from_the_catalog_match_the_client_classes() -> None:
    """Help reads the generated catalog (no service module, no protobuf); what it says of
    every method is what the client's class for that attribute says, in the same order."""
    for service in Services.__annotations__:
        found = {
            name: (
                m.doc,
                tuple((p.name, p.annotation, p.required) for p in m.params),
                m.returns,
                m.has_get,
            )
            for name, m in methods(service).items()
        }
        expected = _inspected(service)
        assert list(found) == list(expected), service
        assert found == expected, service


async def test_help_at_every_level_lists_what_exists() -> None:
    code, out, _ = await sdm(None, "--help")
    assert code == 0
    for service in Services.__annotations__:
        assert service in out
    code, out, _ = await sdm(None, "account-grants", "--help")
    assert code == 0
    assert all(m in out for m in ("create", "get", "delete", "list"))
    code, out, _ = await sdm(None, "resources", "create", "--help")
    assert code == 0
    assert "resource (Resource)" in out and "postgres" in out and "--set" in out
    code, out, _ = await sdm(None, "nodes", "tcp_probe", "--help")
    assert code == 0
    assert "node_id host port" in " ".join(out.split())
    code, _, err = await sdm(None, "roles")  # a service alone: its methods, as a usage error
    assert code == 2 and "methods of roles" in err


# -- calls and formats ---------------------------------------------------------------------


async def test_create_get_list_in_every_format(emu: Emulator, client: sdm_async.Client) -> None:
    code, out, err = await sdm(
        emu,
        *("accounts", "create", "--set", "type=user", "--set", "email=alice@example.com"),
        *("--set", "first_name=Alice", "--set", "last_name=Smith", "--set", "tags.team=data"),
    )
    assert (code, err) == (0, "")
    created = json.loads(out)  # not a terminal: json by default
    assert created["type"] == "user" and created["tags"] == {"team": "data"}
    uid = created["id"]
    await make_user(client, "bob@example.com")

    code, out, _ = await sdm(emu, "accounts", "get", uid, "-o", "yaml")
    assert code == 0
    assert yaml.safe_load(out)["email"] == "alice@example.com"

    # Options may come between the filter and its values.
    code, out, _ = await sdm(emu, "accounts", "list", "email:?", "-o", "json", "alice@example.com")
    assert code == 0
    assert [a["id"] for a in json.loads(out)] == [uid]

    code, out, _ = await sdm(emu, "accounts", "list", "-o", "yaml", "--fields", "email,tags.team")
    assert yaml.safe_load(out) == [
        {"email": "alice@example.com", "tags.team": "data"},
        {"email": "bob@example.com", "tags.team": None},
    ]

    code, out, _ = await sdm(emu, "accounts", "list", "-o", "csv", "--fields", "id,email,tags")
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["id", "email", "tags"]
    assert rows[1] == [uid, "alice@example.com", '{"team":"data"}']
    assert len(rows) == 3

    code, out, _ = await sdm(emu, "accounts", "list", "-o", "table", "--fields", "id,email")
    assert code == 0
    assert "alice@example.com" in out and "bob@example.com" in out and "┃ id" in out

    code, out, _ = await sdm(emu, "accounts", "list", "email:nobody*")
    assert (code, json.loads(out)) == (0, [])


async def test_delete_and_dashes(emu: Emulator, client: sdm_async.Client) -> None:
    uid = await make_user(client, "carol@example.com")
    role = await client.roles.create(sdm_async.Role(name="data"))
    assert role.role is not None
    code, out, _ = await sdm(
        emu, "account-attachments", "create", "--set", f"account_id={uid}", "--set",
        f"role_id={role.role.id}",
    )  # fmt: skip
    assert code == 0
    code, out, _ = await sdm(emu, "account-attachments", "list", "accountid:?", uid)
    [attachment] = json.loads(out)
    assert attachment["role_id"] == role.role.id
    code, out, _ = await sdm(emu, "roles", "delete", str(role.role.id))
    assert (code, json.loads(out)) == (0, {})
    code, _, err = await sdm(emu, "roles", "get", str(role.role.id))
    assert code == 1
    one_line_error(err, "NotFoundError")


async def test_a_polymorphic_resource_from_a_yaml_file(
    emu: Emulator, client: sdm_async.Client, tmp_path: Path
) -> None:
    path = tmp_path / "pg.yaml"
    path.write_text(
        "type: postgres\nname: pg-main\nhostname: db.internal\nport: 5432\ndatabase: app\n"
        f"username: app\npassword: {SECRET_WORD}\ntags: {{env: prod}}\n"
    )
    code, out, err = await sdm(emu, "resources", "create", "-f", str(path))
    assert (code, err) == (0, "")
    shown = json.loads(out)
    assert (shown["type"], shown["name"], shown["port"]) == ("postgres", "pg-main", 5432)
    got = await client.resources.get(shown["id"])
    assert isinstance(got.resource, sdm_async.Postgres)
    assert (got.resource.hostname, got.resource.tags) == ("db.internal", {"env": "prod"})

    # What get shows can be given back: the same file shape, `type:` first.
    code, out, _ = await sdm(emu, "resources", "get", shown["id"], "-o", "yaml")
    again = yaml.safe_load(out)
    assert again["type"] == "postgres" and again["hostname"] == "db.internal"

    # JSON from stdin too.
    code, out, err = await sdm(
        emu,
        *("resources", "create", "-f", "-"),
        stdin=json.dumps(
            {"type": "redis", "name": "cache", "hostname": "r", "port": 6379}
        ).encode(),
    )
    assert code == 0, err
    assert json.loads(out)["type"] == "redis"


async def test_update_reads_first_and_changes_only_what_it_names(
    emu: Emulator, client: sdm_async.Client, tmp_path: Path
) -> None:
    rules = [{"tags": {"env": "prod"}}]
    resp = await client.roles.create(
        sdm_async.Role(name="ops", access_rules=rules, tags={"a": "1"})
    )
    assert resp.role is not None
    rid = str(resp.role.id)
    code, _, err = await sdm(emu, "roles", "update", rid, "--set", "name=ops2", "--set", "tags.b=2")
    assert (code, err) == (0, "")
    got = await client.roles.get(rid)
    assert got.role is not None
    assert (got.role.name, got.role.access_rules, got.role.tags) == (
        "ops2",
        rules,
        {"a": "1", "b": "2"},
    )
    # The id can come from the file; JSON for a list attribute in --set.
    path = tmp_path / "role.yaml"
    path.write_text(f"id: {rid}\nname: ops3\n")
    code, _, err = await sdm(emu, "roles", "update", "-f", str(path), "--set", "access_rules=[]")
    assert code == 0, err
    got = await client.roles.get(rid)
    assert got.role is not None and (got.role.name, got.role.access_rules) == ("ops3", [])

    pg = await client.resources.create(
        sdm_async.Postgres(
            name="pg", hostname="h", port=5432, database="d", username="u", password="p"
        )
    )
    assert pg.resource is not None
    code, _, err = await sdm(emu, "resources", "update", str(pg.resource.id), "--set", "type=mysql")
    assert code == 2
    one_line_error(err, "cannot change an object's type")


# -- credentials ---------------------------------------------------------------------------


async def test_a_created_tokens_keys_are_in_the_output_only(emu: Emulator) -> None:
    perms = json.dumps([sdm_async.Permission.USER_LIST])
    code, out, err = await sdm(
        emu,
        *("accounts", "create", "--set", "type=token", "--set", "name=ci"),
        *("--set", "account_type=api", "--set", f"permissions={perms}", "-o", "json"),
    )
    assert (code, err) == (0, "")
    shown = json.loads(out)
    assert shown["type"] == "token" and shown["access_key"] and shown["secret_key"]
    # The printed key pair works.
    env = environ(
        emu, SDM_API_ACCESS_KEY=shown["access_key"], SDM_API_SECRET_KEY=shown["secret_key"]
    )
    code, out, err = await sdm(emu, "accounts", "list", "type:token", env=env)
    assert (code, err) == (0, "")
    assert [a["name"] for a in json.loads(out)] == ["ci"]


async def test_credentials_given_are_never_in_errors(
    emu: Emulator, client: sdm_async.Client, tmp_path: Path
) -> None:
    await make_user(client, "dave@example.com")
    base = ("accounts", "create", "--set", "type=user", "--set", f"password={SECRET_WORD}")
    # Refused before any call (a bad attribute beside the password) ...
    calls = emu.stats.calls
    code, _, err = await sdm(emu, *base, "--set", "suspended=maybe")
    assert code == 2 and emu.stats.calls == calls
    one_line_error(err, "suspended must be true or false")
    assert SECRET_WORD not in err
    # ... and by the API (a taken email).
    who = ("--set", "email=dave@example.com", "--set", "first_name=D", "--set", "last_name=E")
    code, out, err = await sdm(emu, *base, *who)
    assert code == 1
    one_line_error(err, "AlreadyExistsError")
    assert SECRET_WORD not in err + out
    # A file whose credential has the wrong type: the path, not the value.
    path = tmp_path / "pg.yaml"
    path.write_text(f"type: postgres\nname: pg\npassword: [{SECRET_WORD}]\n")
    code, _, err = await sdm(emu, "resources", "create", "-f", str(path))
    assert code == 2
    one_line_error(err, "password must be a string")
    assert SECRET_WORD not in err


# -- errors --------------------------------------------------------------------------------


USAGE_CASES: list[tuple[tuple[str, ...], str]] = [
    (("acounts", "list"), "did you mean accounts"),
    (("accounts", "lst"), "did you mean list"),
    (("roles", "get"), "required: id"),
    (("accounts", "list", "email:?"), "one value per '?'"),
    (("accounts", "list", "--fields", "id,emial"), "no field emial"),
    (("accounts", "list", "-o", "xml"), "invalid choice"),
    (("accounts", "create"), "give the account with -f FILE or --set"),
    (("accounts", "create", "--set", "email=x@example.com"), "give the Account's type"),
    (("resources", "create", "--set", "type=postgre"), "did you mean postgres"),
    (("roles", "create", "--set", "nmae=x"), "did you mean name"),
    (("roles", "create", "--set", "name"), "NAME=VALUE"),
    (("roles", "create", "-f", "/nonexistent/role.yaml"), "cannot read it"),
    (("roles", "update", "--set", "name=x"), "give the id of the role"),
    (("nodes", "tcp_probe", "n-1", "h", "eighty"), "invalid int value"),
    (("accounts", "list", "--timeout", "0"), "--timeout"),
    (("roles", "list", "--root-certificates", "/nonexistent/ca.pem"), "cannot read"),
    (("accounts", "create", "--set", "type=user", "--set", "created_at=yesterday"), "ISO 8601"),
]


def test_usage_errors_exit_2_in_one_line_before_any_call(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In this process (the same `main` the command runs), with a host where nothing
    listens: a call would fail with status 1, so 2 says it was refused before any call."""
    from sdm_async.cli import main

    monkeypatch.setenv("SDM_API_ACCESS_KEY", "auth-0123456789abcdef")
    monkeypatch.setenv("SDM_API_SECRET_KEY", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I=")
    monkeypatch.setenv("SDM_API_HOST", "127.0.0.1:9")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    cases = [*USAGE_CASES, (("roles", "create", "-f", str(tmp_path / "list.yaml")), "a mapping")]
    for argv, words in cases:
        code = main([*argv, "--insecure"])
        out, err = capsys.readouterr()
        assert code == 2, (argv, err)
        assert out == ""
        one_line_error(err, words)
    monkeypatch.delenv("SDM_API_SECRET_KEY")
    assert main(["roles", "list", "--insecure"]) == 2
    one_line_error(capsys.readouterr().err, "SDM_API_SECRET_KEY")


async def test_usage_errors_in_a_process(emu: Emulator) -> None:
    calls = emu.stats.calls
    for argv, words in USAGE_CASES[:4]:
        code, out, err = await sdm(emu, *argv)
        assert (code, out) == (2, ""), (argv, err)
        one_line_error(err, words)
    assert emu.stats.calls == calls
    env = {k: v for k, v in environ(emu).items() if k != "SDM_API_SECRET_KEY"}
    code, _, err = await sdm(emu, "roles", "list", env=env)
    assert code == 2
    one_line_error(err, "SDM_API_SECRET_KEY")


async def test_api_errors_exit_1_naming_the_sdk_error(emu: Emulator) -> None:
    code, out, err = await sdm(emu, "accounts", "list", "nosuchfield:x")
    assert (code, out) == (1, "")
    one_line_error(err, "BadRequestError")
    env = environ(emu, SDM_API_SECRET_KEY="d3Jvbmcgc2VjcmV0IHdyb25nIHNlY3JldCEhISEhISE=")
    code, _, err = await sdm(emu, "roles", "list", env=env)
    assert code == 1
    one_line_error(err, "AuthenticationError")


async def test_tls_with_root_certificates(tmp_path: Path) -> None:
    async with Emulator(tls=True) as emu:
        assert emu.root_certificates is not None
        ca = tmp_path / "ca.pem"
        ca.write_bytes(emu.root_certificates)
        env = environ(emu)
        code, out, err = await sdm(None, "roles", "list", "--root-certificates", str(ca), env=env)
        assert (code, out, err) == (0, "[]\n", "")
        code, out, err = await sdm(
            None, "roles", "list", env={**env, "SDM_API_ROOT_CERTIFICATES": str(ca)}
        )
        assert (code, out) == (0, "[]\n")
        code, _, err = await sdm(None, "roles", "list", "--timeout", "5", env=env)
        assert code == 1
        one_line_error(err, "UnavailableError")


# -- a listing streams ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "yaml", "csv"])
async def test_a_pipe_closed_early_stops_the_listing(fmt: str) -> None:
    async with Emulator(page_size=10) as emu:
        assert emu.seed_users(500)
        read_end, write_end = os.pipe()
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "sdm_async", "accounts", "list", "--insecure", "-o", fmt),
            env=environ(emu),
            stdout=write_end,
            stderr=asyncio.subprocess.PIPE,
        )
        os.close(write_end)
        # As `| head -n 3` does: read three lines, then close the pipe.
        loop = asyncio.get_running_loop()
        got = b""
        while got.count(b"\n") < 3:
            chunk = await loop.run_in_executor(None, os.read, read_end, 256)
            assert chunk, "the listing ended before three lines"
            got += chunk
        os.close(read_end)
        assert proc.stderr is not None
        err = (await proc.stderr.read()).decode()
        code = await proc.wait()
        assert err == ""  # no BrokenPipeError traceback, no message
        assert code == 141
        # 51 pages would list everything; it stopped after a few (the page written, the one
        # fetched ahead, and those sent while the reader had not closed yet).
        assert emu.stats.by_method["Accounts.List"] < 10


async def test_a_listing_in_full_ends_with_a_valid_document() -> None:
    async with Emulator(page_size=7) as emu:
        assert emu.seed_users(30)
        code, out, _ = await sdm(emu, "accounts", "list", "--fields", "email")
        assert code == 0
        data: list[dict[str, Any]] = json.loads(out)
        assert len(data) == 30
