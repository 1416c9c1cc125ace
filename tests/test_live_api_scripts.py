"""StrongDM's own example programs (`tests/live_api_scripts/`, each changed only where it builds
its client) run with the official SDK against the emulator, and do there what they do on the
live API: each test runs one on a fresh organisation and checks the state it leaves."""

from __future__ import annotations

import datetime
import importlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

strongdm = pytest.importorskip("strongdm")

from sdm_async.testing import Emulator  # noqa: E402

SCRIPTS = Path(__file__).resolve().parent / "live_api_scripts"
ROOT = SCRIPTS.parents[1]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator().running_in_thread() as e:
        yield e


def client_for(emu: Emulator) -> Any:
    return strongdm.Client(emu.access_key, emu.secret_key, emu.address, True)


def run(name: str, emu: Emulator, capsys: pytest.CaptureFixture[str]) -> tuple[Any, str]:
    """Run the script's `main` with an official client on the emulator; returns a client for
    the checks and what the script printed."""
    client = client_for(emu)
    importlib.import_module(f"tests.live_api_scripts.{name}").main(client)
    return client, capsys.readouterr().out


def printed(out: str, label: str) -> str:
    """The value of the last `\t<label>: value` line the script printed."""
    found = re.findall(rf"^\t{re.escape(label)}: (.*)$", out, re.M)
    assert found, f"{label!r} not printed in:\n{out}"
    return str(found[-1])


def only(items: Any) -> Any:
    got = list(items)
    assert len(got) == 1, got
    return got[0]


def check_create_datasource(c: Any, out: str, emu: Emulator) -> None:
    pg = c.resources.get(printed(out, "ID")).resource
    assert isinstance(pg, strongdm.Postgres)
    assert (pg.name, pg.hostname, pg.port, pg.port_override, pg.database) == (
        "Example Postgres Datasource for Python",
        "example.strongdm.com",
        5432,
        19300,
        "example",
    )
    assert pg.password == ""  # write-only: never returned


def check_create_ssh_server(c: Any, out: str, emu: Emulator) -> None:
    ssh = c.resources.get(printed(out, "ID")).resource
    assert isinstance(ssh, strongdm.SSH) and ssh.port == 22
    # The key the example prints for authorized_keys is there, in that form.
    key = printed(out, "Public Key")
    assert re.fullmatch(r"ssh-ed25519 AAAA[0-9A-Za-z+/=]+", key) and key == ssh.public_key


def check_create_rdp_server(c: Any, out: str, emu: Emulator) -> None:
    rdp = c.resources.get(printed(out, "ID")).resource
    assert isinstance(rdp, strongdm.RDP)
    assert (rdp.port, rdp.port_override, rdp.username) == (3389, 19301, "example")


def check_create_eks_cluster(c: Any, out: str, emu: Emulator) -> None:
    eks = c.resources.get(printed(out, "ID")).resource
    assert isinstance(eks, strongdm.AmazonEKS)
    assert (eks.cluster_name, eks.region, eks.healthcheck_namespace) == (
        "example",
        "us-east-1",
        "default",
    )
    assert eks.access_key == "AKIAIOSFODNN7EXAMPLE"
    # write-only (options.proto): kept, never returned
    assert eks.secret_access_key == eks.certificate_authority == ""


def check_create_user(c: Any, out: str, emu: Emulator) -> None:
    user = c.accounts.get(printed(out, "ID")).account
    assert user.email == "create-user-example@example.com"
    assert user.permission_level == strongdm.PermissionLevel.TEAM_LEADER


def check_create_service_account(c: Any, out: str, emu: Emulator) -> None:
    svc = c.accounts.get(printed(out, "ID")).account
    assert isinstance(svc, strongdm.Service) and svc.name == "example service account"
    assert printed(out, "Token")


def check_create_token(c: Any, out: str, emu: Emulator) -> None:
    tok = c.accounts.get(printed(out, "ID")).account
    assert isinstance(tok, strongdm.Token) and tok.permissions == [strongdm.Permission.ROLE_LIST]
    assert tok.deadline - tok.created_at == datetime.timedelta(hours=1)
    # The printed key works, within its permission.
    own = strongdm.Client(printed(out, "Access Key"), printed(out, "Secret Key"), emu.address, True)
    assert list(own.roles.list("")) == []
    with pytest.raises(strongdm.errors.PermissionError):
        list(own.accounts.list(""))


def check_rotate_token(c: Any, out: str, emu: Emulator) -> None:
    assert "more than one or no results" not in out
    tok = only(c.accounts.list("type:token"))
    assert tok.name == "python-test-rotate-token" and out.count("\tID: ") == 2
    assert tok.id == re.findall(r"^\tID: (.*)$", out, re.M)[1]  # the new one is left


def check_grant_temp_access(c: Any, out: str, emu: Emulator) -> None:
    grant = c.account_grants.get(printed(out, "ID")).account_grant
    user = only(c.accounts.list("email:?", "temp-grant-example@example.com"))
    assert grant.account_id == user.id
    left = grant.valid_until - datetime.datetime.now(datetime.timezone.utc)
    # The example's naive local now() + 10 min, read as UTC by the official SDK.
    skew = datetime.datetime.now().astimezone().utcoffset() or datetime.timedelta(0)
    assert abs(left - skew - datetime.timedelta(minutes=10)) < datetime.timedelta(minutes=1)
    assert [r.resource_id for r in c.account_resources.list("account_id:?", user.id)] == [
        grant.resource_id
    ]


def check_revoke_temp_access(c: Any, out: str, emu: Emulator) -> None:
    assert list(c.account_grants.list("")) == []
    with pytest.raises(strongdm.errors.NotFoundError):
        c.account_grants.get(printed(out, "ID"))


def check_assign_accounts_to_roles(c: Any, out: str, emu: Emulator) -> None:
    link = only(c.account_attachments.list(""))
    assert link.id == re.findall(r"^\tID: (.*)$", out, re.M)[-1]
    assert c.roles.get(link.role_id).role.name == "example role"
    assert c.accounts.get(link.account_id).account.email == "assign-example@example.com"


def check_role_grant_migration(c: Any, out: str, emu: Emulator) -> None:
    roles = list(c.roles.list(""))
    resources = [r.id for r in c.resources.list("")]
    assert len(roles) == 3 and len(resources) == 5
    # Role 1 was given resource 2 too; role 2 lost resource 2; role 3 has one, printed.
    assert [r.access_rules for r in roles] == [
        [{"ids": resources[0:2]}],
        [{"ids": resources[2:3]}],
        [{"ids": resources[4:5]}],
    ]
    assert out.strip() == repr([resources[4]])


def check_create_gateway(c: Any, out: str, emu: Emulator) -> None:
    gw = c.nodes.get(printed(out, "ID")).node
    assert isinstance(gw, strongdm.Gateway) and gw.listen_address == "gateway.example.com:5555"
    assert gw.bind_address == "0.0.0.0:5555" and printed(out, "Token")


def check_create_relay(c: Any, out: str, emu: Emulator) -> None:
    relay = c.nodes.get(printed(out, "ID")).node
    assert isinstance(relay, strongdm.Relay) and relay.name == "example-relay"
    assert printed(out, "Token")


def check_update_gateway(c: Any, out: str, emu: Emulator) -> None:
    gw = only(c.nodes.list(""))
    assert gw.name == "example-gateway-updated" and gw.listen_address.endswith(":5555")


def check_audit_resource(c: Any, out: str, emu: Emulator) -> None:
    assert list(c.resources.list("")) == []
    assert out.count("does not exist at time") == 2
    assert re.findall(r"^Resource had name (\S+)", out, re.M) == [
        "example-redis",
        "example-redis-renamed",
        "example-redis",
        "example-redis-renamed",
        "example-redis-renamed",
    ]
    assert re.findall(r"^\t(\w+) redis", out, re.M) == ["Created", "Updated", "Deleted"]


def setup_ssh_replay(c: Any, emu: Emulator) -> None:
    """What a live organisation would have: an `example-ssh` server used by someone."""
    ssh = strongdm.SSH(name="example-ssh", hostname="203.0.113.23", username="u", port=22)
    rid = c.resources.create(ssh).resource.id
    who = strongdm.User(email="alice@example.com", first_name="A", last_name="L")
    aid = c.accounts.create(who).account.id
    emu.add_query(account_id=aid, resource_id=rid, query_body=json.dumps({"command": "uptime"}))
    emu.add_query(account_id=aid, resource_id=rid, replayable=True, replay=[b"$ ls\r\n", b"x\n"])


def check_ssh_replay(c: Any, out: str, emu: Emulator) -> None:
    lines = out.splitlines()
    assert lines[0] == "Queries made against example-ssh"
    assert re.fullmatch(r"Command run by alice@example\.com at \S+ \S+: uptime", lines[1])
    assert lines[2].startswith("Replaying query made by alice@example.com at ")
    assert lines[3:] == ["$ ls", "", "x", ""]  # each event printed with a newline of its own


def check_create_manual_workflow(c: Any, out: str, emu: Emulator) -> None:
    wf = c.workflows.get(printed(out, "ID")).workflow
    assert wf.name == "Create Manual Workflow Python Example"
    assert wf.access_rules == [{"tags": {"env": "dev"}}]


def check_manual_approval_workflow(c: Any, out: str, emu: Emulator) -> None:
    assert re.findall(r"Num Approval Steps: (\d)", out) == ["2", "2", "3"]
    assert "New Approval Mode: automatic" in out
    assert list(c.approval_workflows.list("")) == []
    history = [h.approval_workflow for h in c.approval_workflows_history.list("")]
    assert [h.approval_mode for h in history] == ["manual", "manual", "automatic", "automatic"]


def check_crud_policy(c: Any, out: str, emu: Emulator) -> None:
    assert list(c.policies.list("")) == []
    names = [h.policy.name for h in c.policies_history.list("")]
    assert names == ["forbid-everything", "forbid-one-thing", "forbid-one-thing"]


def check_assign_manager_to_users(c: Any, out: str, emu: Emulator) -> None:
    manager, worker = (
        only(c.accounts.list("email:?", e))
        for e in ("create-user-example@example.com", "create-user2@example.com")
    )
    assert re.findall(r"^\tResolvedManagerID: (.*)$", out, re.M) == [manager.id]
    assert re.findall(r"^\tManagerID: (.*)$", out, re.M) == [manager.id, manager.id, ""]
    assert worker.manager_id == worker.resolved_manager_id == ""


def check_suspend_account(c: Any, out: str, emu: Emulator) -> None:
    user = c.accounts.get(printed(out, "ID")).account
    assert user.suspended and user.permission_level == strongdm.PermissionLevel.SUSPENDED
    assert printed(out, "Suspended") == "True"


def check_find_policy(c: Any, out: str, emu: Emulator) -> None:
    assert re.findall(r"\tName:(\S+)$", out, re.M) == [
        "permit-sql-select-policy",
        "forbid-sql-delete-policy",
        "default-forbid-policy",
        "forbid-connect-policy",
        "forbid-sql-delete-policy",
    ]
    assert list(c.policies.list("")) == []


def check_create_auto_grant_workflow(c: Any, out: str, emu: Emulator) -> None:
    wf = only(c.workflows.list(""))
    assert wf.auto_grant and wf.enabled and wf.access_rules == [{"tags": {"env": "dev"}}]
    link = c.workflow_roles.get(printed(out, "ID")).workflow_role
    assert link.workflow_id == wf.id
    # What the workflow's rules match becomes requestable through the role it is linked to.
    dev = strongdm.Redis(name="dev-cache", hostname="cache", tags={"env": "dev"})
    rid = c.resources.create(dev).resource.id
    c.resources.create(strongdm.Redis(name="prod-cache", hostname="cache"))
    got = list(c.requestable_role_entitlements.list(link.role_id, ""))
    assert [(e.resource_id, e.origin_id) for e in got] == [(rid, wf.id)]


Check = Callable[[Any, str, Emulator], None]
CHECKS: dict[str, Check] = {
    name.removeprefix("check_"): fn
    for name, fn in sorted(globals().items())
    if name.startswith("check_") and callable(fn)
}
SETUPS: dict[str, Callable[[Any, Emulator], None]] = {"ssh_replay": setup_ssh_replay}


def test_every_script_is_checked() -> None:
    scripts = {p.stem for p in SCRIPTS.glob("*.py") if p.stem != "__init__"}
    assert scripts == set(CHECKS), "a script without a check, or a check without its script"


@pytest.mark.filterwarnings("ignore:datetime.datetime.utcnow:DeprecationWarning")
@pytest.mark.parametrize("name", sorted(CHECKS))
def test_script_runs_unchanged(
    name: str, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = SETUPS.get(name)
    if setup is not None:
        setup(client_for(emu), emu)
    client, out = run(name, emu, capsys)
    CHECKS[name](client, out, emu)


def test_a_script_run_as_a_program_takes_its_host_from_the_environment(emu: Emulator) -> None:
    env = dict(
        os.environ,
        SDM_API_ACCESS_KEY=emu.access_key,
        SDM_API_SECRET_KEY=emu.secret_key,
        SDM_API_HOST=emu.address,
        SDM_API_INSECURE="1",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tests.live_api_scripts.create_datasource"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    rid = printed(proc.stdout, "ID")
    assert client_for(emu).resources.get(rid).resource.port_override == 19300
