"""Lazy start: `import sdm_async` and the `Client` class load no grpc, protobuf or model
module; a name loads the module that defines it (and what that refers to), a client its
transport, a service attribute its service on first access; help loads no client. Each check
that counts modules runs in a fresh interpreter, where nothing else has imported them."""

from __future__ import annotations

import datetime
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sdm_async
from sdm_async._generated import models
from sdm_async._generated.services import SERVICE_ATTRIBUTES, SNAPSHOT_ATTRIBUTES, Services
from sdm_async.testing import Emulator

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "sdm_async" / "_generated"
# Loaded only when used: the transport, protobuf messages, every model and service module,
# and what bulk jobs, provisioning, the emulator and tables need.
HEAVY = re.compile(
    r"^(grpc|google\.protobuf|google\.rpc|anyio|rich|yaml|cryptography)(\.|$)"
    r"|_pb2(_grpc)?$"
    r"|^sdm_async\._generated\.(models|services)\."
    r"|^sdm_async\.(_rpc|_secrets|bulk|_pagination|testing\.emulator|provision\.apply)$"
)


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running `code` (its output ignored)."""
    script = (
        "import sys, json, io, contextlib\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):\n"
        "    try:\n"
        f"        exec({code!r})\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, out.getvalue()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.splitlines()[-1]))


def heavy(loaded: set[str]) -> list[str]:
    return sorted(m for m in loaded if HEAVY.search(m))


def model_modules(loaded: set[str]) -> set[str]:
    prefix = "sdm_async._generated.models."
    return {m.removeprefix(prefix) for m in loaded if m.startswith(prefix)}


def referenced(module: str) -> set[str]:
    """`module` (e.g. "accounts") and every model module it imports, transitively, read
    from the generated source: what using one of its classes must load, and no more."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        text = (GENERATED / "models" / (mod.replace(".", "/") + ".py")).read_text()
        base = mod.rpartition(".")[0]
        for dots, name in re.findall(r"^from (\.+)(\w+) import", text, re.M):
            if len(dots) == 1:
                todo.append(f"{base}.{name}" if base else name)
            elif len(dots) == 2 and base:
                todo.append(name)
    return seen


# -- imports ---------------------------------------------------------------------------------


def test_import_and_the_client_class_load_no_grpc_protobuf_or_model() -> None:
    loaded = modules_after("import sdm_async; sdm_async.Client; sdm_async.errors.NotFoundError")
    assert heavy(loaded) == []
    assert "sdm_async.errors" in loaded


def test_a_model_loads_its_module_and_what_it_refers_to_only() -> None:
    loaded = modules_after("import sdm_async; sdm_async.User")
    assert model_modules(loaded) == referenced("accounts")
    assert "drivers" not in model_modules(loaded)  # the largest, for resources only
    assert [m for m in heavy(loaded) if not m.startswith("sdm_async._generated.models.")] == []

    loaded = modules_after("from sdm_async import Postgres")
    assert model_modules(loaded) == referenced("drivers")


def test_a_client_loads_its_transport_and_each_service_on_first_use() -> None:
    made = "import sdm_async\nc = sdm_async.Client('k', 'c2VjcmV0', 'localhost:1', insecure=True)\n"
    loaded = modules_after(made)
    assert "grpc" in loaded and "sdm_async._rpc" in loaded
    services = {m for m in loaded if m.startswith("sdm_async._generated.services.")}
    assert services == set()
    assert model_modules(loaded) <= referenced("spec")  # rate-limit errors' metadata at most

    loaded = modules_after(made + "c.roles")
    services = {m for m in loaded if m.startswith("sdm_async._generated.services.")}
    assert services == {"sdm_async._generated.services.roles"}
    assert "sdm_async._generated.v1.roles_pb2" in loaded
    assert "drivers" not in model_modules(loaded)


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["accounts", "--help"],
        ["accounts", "list", "--help"],
        ["resources", "create", "--help"],
        ["provision", "--help"],
        ["emulator", "--help"],
    ],
)
def test_help_loads_no_client(argv: list[str]) -> None:
    code = f"from sdm_async.cli import main\nassert main({argv!r}) == 0\n"
    loaded = modules_after(code)
    assert heavy(loaded) == []


# -- names -----------------------------------------------------------------------------------


def test_every_exported_name_resolves_and_is_listed() -> None:
    for name in sdm_async.__all__:
        assert getattr(sdm_async, name) is not None, name
    assert set(sdm_async.__all__) <= set(dir(sdm_async))
    assert set(models.__all__) <= set(dir(models))
    from sdm_async import AccountCreateResponse, Permission, User

    assert sdm_async.User is User is models.User
    assert sdm_async.AccountCreateResponse is AccountCreateResponse
    assert Permission.ROLE_LIST == "role:list"
    assert sdm_async.errors.NotFoundError is sdm_async.NotFoundError
    with pytest.raises(AttributeError, match="no attribute 'Usr'"):
        sdm_async.Usr  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'Usr'"):
        models.Usr  # noqa: B018
    with pytest.raises(ImportError):
        from sdm_async import Usr  # noqa: F401


def test_status_codes_match_grpc() -> None:
    """The error classes carry gRPC's code numbers without importing grpc."""
    import grpc

    from sdm_async import errors

    for name in dir(errors):
        if re.fullmatch(r"_[A-Z_]+", name) and name != "_RATE_LIMIT_TYPE":
            value = getattr(errors, name)
            if isinstance(value, int):
                assert grpc.StatusCode[name[1:]].value[0] == value, name
    assert sdm_async.NotFoundError("x").code == grpc.StatusCode.NOT_FOUND.value[0]


def test_models_pickle_by_their_defining_module_and_unpickle_in_a_fresh_process() -> None:
    user = sdm_async.User(email="a@example.com", tags={"team": "x"})
    data = pickle.dumps(user)
    assert b"sdm_async._generated.models.accounts" in data
    script = (
        "import pickle, sys\n"
        f"obj = pickle.loads({data!r})\n"
        "print(type(obj).__name__, obj.email, 'sdm_async._generated.models.drivers' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["User", "a@example.com", "False"]
    assert pickle.loads(data) == user


# -- service attributes ----------------------------------------------------------------------


async def test_every_service_attribute_binds_on_first_access() -> None:
    async with Emulator() as emu:
        async with emu.client() as client:
            snapshot = client.snapshot_at(datetime.datetime.now(datetime.timezone.utc))
            for owner, attrs in ((client, SERVICE_ATTRIBUTES), (snapshot, SNAPSHOT_ATTRIBUTES)):
                for attr in attrs:
                    assert attr not in vars(owner), attr  # not bound before
                    service = getattr(owner, attr)
                    assert vars(owner)[attr] is service is getattr(owner, attr), attr
                    annotated = type(owner).__annotations__.get(attr) or next(
                        k.__annotations__[attr]
                        for k in type(owner).__mro__
                        if attr in getattr(k, "__annotations__", {})
                    )
                    assert type(service).__name__ == annotated, (attr, annotated)
            assert isinstance(client.managed_secrets, sdm_async._secrets.ManagedSecrets)
            # Bound services work, and their answers are the exported classes.
            resp = await client.accounts.create(
                sdm_async.User(email="lazy@example.com", first_name="L", last_name="S")
            )
            assert isinstance(resp, sdm_async.AccountCreateResponse)
            assert isinstance(resp.account, sdm_async.User)
            later = client.snapshot_at(datetime.datetime.now(datetime.timezone.utc))
            got = [a async for a in later.accounts.list("email:?", "lazy@example.com")]
            assert [type(a) for a in got] == [sdm_async.User]


def test_services_index_lists_every_attribute() -> None:
    assert tuple(Services.__annotations__) == SERVICE_ATTRIBUTES
    assert not any(name in vars(Services) for name in ("_service_args",))


def test_misspelt_service_attribute_is_a_type_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Services bind lazily, yet type checkers see each attribute with its class (and no
    catch-all `__getattr__` that would make any name pass)."""
    from tests.test_typing import run_mypy

    sample = tmp_path / "lazy_attributes.py"
    sample.write_text(
        "import datetime\n"
        "from typing_extensions import assert_type\n"
        "import sdm_async\n"
        "from sdm_async._generated.services.accounts import Accounts\n"
        "from sdm_async._generated.services.roles import SnapshotRoles\n"
        "from sdm_async._secrets import ManagedSecrets\n\n\n"
        "def f(client: sdm_async.Client) -> None:\n"
        "    assert_type(client.accounts, Accounts)\n"
        "    assert_type(client.managed_secrets, ManagedSecrets)\n"
        "    assert_type(client.snapshot_at(datetime.datetime.now()).roles, SnapshotRoles)\n"
        "    assert_type(sdm_async.User(), sdm_async.User)\n"
        "    client.acounts\n"
    )
    output, status = run_mypy(sample, monkeypatch)
    assert status == 1, output
    errors = [line for line in output.splitlines() if "error:" in line]
    assert len(errors) == 1 and "acounts" in errors[0] and "attr-defined" in errors[0], output
