"""Provisioning against the real emulator: plan, apply, idempotence, updates, resuming after a
cancelled run and after lost replies, prune, adoption, conflicts, validation, secrets, CLI."""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import sdm_async
from sdm_async import RetryPolicy, provision
from sdm_async.cli import main as cli_main
from sdm_async.provision.render import plan_table, result_table
from sdm_async.testing import Emulator

SECRET = "pw-TOPSECRET-4711"
HOST_SECRET = "host-TOPSECRET-0815"
ENV = {"PG_PASSWORD": SECRET, "DB_HOST": HOST_SECRET}
FAST_RETRY = RetryPolicy(max_retries=10, base_delay=0.001, max_delay=0.01)
WRITES = ("Create", "Update", "Delete")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "provision" / "org.yaml"


def declaration(users: int = 6, resources: int = 4, grants: int = 4) -> dict[str, Any]:
    """An organisation: users in two teams, a service, two roles, postgres and redis
    resources (the first password from the environment), a gateway and a relay, one
    attachment per account, and grants."""
    data: dict[str, Any] = {
        "users": [
            {
                "email": f"user{i}@example.com",
                "first_name": "User",
                "last_name": str(i),
                "tags": {"team": f"team-{i % 2}"},
            }
            for i in range(users)
        ],
        "services": [{"name": "ci-bot", "tags": {"team": "team-0"}}],
        "roles": [
            {"name": f"team-{t}", "access_rules": [{"tags": {"team": f"team-{t}"}}]}
            for t in range(2)
        ],
        "resources": [
            {
                "name": f"pg-{i}",
                "type": "postgres",
                "hostname": "db.internal",
                "port": 5432,
                "database": "app",
                "username": "app",
                "password": "${PG_PASSWORD}",
            }
            if i % 2 == 0
            else {"name": f"redis-{i}", "type": "redis", "hostname": "cache", "port": 6379}
            for i in range(resources)
        ],
        "nodes": [
            {"name": "gw-1", "type": "gateway", "listen_address": "gw-1.example.com:5000"},
            {"name": "relay-1", "type": "relay", "tags": {"zone": "eu"}},
        ],
        "attachments": [
            *({"account": f"user{i}@example.com", "role": f"team-{i % 2}"} for i in range(users)),
            {"account": "ci-bot", "role": "team-0"},
        ],
        "grants": [
            {
                "account": f"user{i}@example.com",
                "resource": f"pg-{2 * (i % (resources // 2))}",
                "start_from": datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc),
                "valid_until": "2030-01-01T00:00:00Z",
            }
            for i in range(grants)
        ],
    }
    return data


def spec_of(data: dict[str, Any], env: dict[str, str] | None = None) -> provision.Spec:
    return provision.parse(data, env=ENV if env is None else env)


def counts(emu: Emulator) -> dict[str, int]:
    services = ("Accounts", "Roles", "Resources", "Nodes", "AccountAttachments", "AccountGrants")
    return {s: emu.backend.count(s) for s in services}


def expected(data: dict[str, Any]) -> dict[str, int]:
    return {
        "Accounts": len(data["users"]) + len(data["services"]),
        "Roles": len(data["roles"]),
        "Resources": len(data["resources"]),
        "Nodes": len(data["nodes"]),
        "AccountAttachments": len(data["attachments"]),
        "AccountGrants": len(data["grants"]),
    }


def writes(emu: Emulator) -> dict[str, int]:
    return {m: n for m, n in emu.stats.by_method.items() if m.endswith(WRITES)}


async def first(pager: sdm_async.AsyncPager[Any]) -> Any:
    items = [item async for item in pager]  # read to the end: no page fetch left behind
    return items[0]


def rendered(plan: provision.Plan) -> str:
    console = Console(file=io.StringIO(), width=200)
    console.print(plan_table(plan))
    console.print(plan.summary())
    return console.file.getvalue()  # type: ignore[attr-defined]


CLIENT_RETRY = FAST_RETRY  # the `client` fixture's policy (conftest.py)


async def test_plan_on_an_empty_org_only_reads(emu: Emulator, client: sdm_async.Client) -> None:
    data = declaration()
    plan = await provision.plan(client, spec_of(data))
    assert plan.counts() == {"create": sum(expected(data).values())}
    assert not plan.orphans and not plan.conflicts and plan.unchanged == 0
    assert writes(emu) == {}
    assert all(m.endswith(".List") for m in emu.stats.by_method)
    text = rendered(plan)
    assert "user0@example.com -> team-0" in text and "pg-0" in text
    assert "26 to create (0 unchanged)" in text


async def test_apply_then_a_second_apply_changes_nothing(
    emu: Emulator, client: sdm_async.Client
) -> None:
    data = declaration()
    result = await provision.apply(client, spec_of(data))
    assert result.ok and result.rounds == 1 and not result.failures
    assert counts(emu) == expected(data)
    assert writes(emu) == {
        "Accounts.Create": 7,
        "Roles.Create": 2,
        "Resources.Create": 4,
        "Nodes.Create": 2,
        "AccountAttachments.Create": 7,
        "AccountGrants.Create": 4,
    }
    assert result.count("create") == 26 and result.count("create", "user") == 6
    users = [u async for u in client.accounts.list("type:user")]
    assert all(u.tags["managed-by"] == "sdm-async" for u in users)
    grant = await first(client.account_grants.list(""))
    assert grant.valid_until == datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)

    emu.stats.by_method.clear()
    again = await provision.apply(client, spec_of(data))
    assert again.ok and again.rounds == 0 and not again.done
    assert writes(emu) == {}
    assert counts(emu) == expected(data)


async def test_changed_fields_are_updated_in_place(emu: Emulator, client: sdm_async.Client) -> None:
    data = declaration()
    await provision.apply(client, spec_of(data))
    data["users"][1]["first_name"] = "Renamed"
    data["users"][2]["suspended"] = True
    data["users"][3]["tags"] = {"team": "team-1", "site": "paris"}
    data["roles"][0]["access_rules"].append({"type": "redis"})
    data["resources"][1]["port"] = 6380
    data["nodes"][0]["listen_address"] = "gw-1.example.com:5001"
    emu.stats.by_method.clear()

    plan = await provision.plan(client, spec_of(data))
    fields = {(c.kind.name, c.key): tuple(sorted(c.fields)) for c in plan.changes}
    assert fields == {
        ("user", "user1@example.com"): ("first_name",),
        # Suspending writes the level too, and remembers the former one in a tag.
        ("user", "user2@example.com"): ("permission_level", "suspended", "tags"),
        ("user", "user3@example.com"): ("tags",),
        ("role", "team-0"): ("access_rules",),
        ("resource", "redis-1"): ("port",),
        ("node", "gw-1"): ("listen_address",),
    }
    assert {c.action for c in plan.changes} == {"update"}
    text = rendered(plan)
    assert "first_name: 'User' -> 'Renamed'" in text and "+site=paris" in text
    assert "port: 6379 -> 6380" in text

    result = await provision.apply(client, spec_of(data), plan=plan)
    assert result.ok and result.count("update") == 6
    assert writes(emu) == {
        "Accounts.Update": 3,
        "Roles.Update": 1,
        "Resources.Update": 1,
        "Nodes.Update": 1,
    }
    users = {u.email: u async for u in client.accounts.list("type:user")}
    assert users["user1@example.com"].first_name == "Renamed"
    assert users["user2@example.com"].suspended
    assert users["user3@example.com"].tags == {
        "team": "team-1",
        "site": "paris",
        "managed-by": "sdm-async",
    }
    redis = await first(client.resources.list("name:?", "redis-1"))
    assert redis.port == 6380 and redis.hostname == "cache"

    data["users"][2]["suspended"] = False  # unsuspending restores the plain user level
    await provision.apply(client, spec_of(data))
    users = {u.email: u async for u in client.accounts.list("type:user")}
    assert not users["user2@example.com"].suspended
    assert users["user2@example.com"].permission_level == "user"


async def test_a_cancelled_apply_resumes_and_converges() -> None:
    data = declaration(users=10, resources=12, grants=6)
    created = 0
    halfway = asyncio.Event()

    def watch(attempt: sdm_async.Attempt) -> None:
        nonlocal created
        if attempt.method == "Resources.Create" and attempt.error is None:
            created += 1
            if created == 4:
                halfway.set()

    async with (
        Emulator(latency=0.004) as emu,
        emu.client(retry=FAST_RETRY, on_attempt=watch) as client,
    ):
        task = asyncio.ensure_future(provision.apply(client, spec_of(data), concurrency=2))
        await halfway.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.05)  # calls cancelled in flight end on the server too
        before = counts(emu)
        assert before["Accounts"] == 11 and before["Roles"] == 2
        assert 0 < before["Resources"] < 12
        assert before["Nodes"] == before["AccountAttachments"] == before["AccountGrants"] == 0

        emu.stats.by_method.clear()
        result = await provision.apply(client, spec_of(data))
        assert result.ok
        assert counts(emu) == expected(data)  # every object exactly once
        assert writes(emu) == {
            "Resources.Create": 12 - before["Resources"],
            "Nodes.Create": 2,
            "AccountAttachments.Create": 11,
            "AccountGrants.Create": 6,
        }
        emu.stats.by_method.clear()
        assert (await provision.apply(client, spec_of(data))).rounds == 0
        assert writes(emu) == {}


async def test_lost_replies_leave_no_duplicates() -> None:
    data = declaration(users=12, resources=6, grants=12)
    async with Emulator(fault_rate=0.3, fault_when="after", seed=1) as emu:
        async with emu.client(retry=FAST_RETRY) as client:
            result = await provision.apply(client, spec_of(data), max_rounds=5)
            assert result.ok, result.failures
            assert client.retries > 0  # replies were lost and calls retried
            assert counts(emu) == expected(data)
            emu.stats.by_method.clear()
            again = await provision.apply(client, spec_of(data))
            assert again.ok and again.rounds == 0 and writes(emu) == {}


async def test_reading_costs_one_listing_per_service_in_a_steady_state(
    emu: Emulator, client: sdm_async.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = declaration()
    await provision.apply(client, spec_of(data))
    for limit, links in ((32, {"AccountAttachments.List": 2, "AccountGrants.List": 4}), (0, {})):
        # Up to the limit, links are read per role and per resource; beyond, in one listing.
        monkeypatch.setattr(provision.org, "LOOKUP_LIMIT", limit)
        emu.stats.by_method.clear()
        assert (await provision.plan(client, spec_of(data))).empty
        assert emu.stats.by_method == {
            "Accounts.List": 1,  # marked users and services
            "Roles.List": 1,
            "Resources.List": 1,
            "Nodes.List": 1,
            "AccountAttachments.List": 1,
            "AccountGrants.List": 1,
            **links,
        }
    # Declared objects that are not marked yet: beyond the limit, one full listing per kind.
    emu.stats.by_method.clear()
    bigger = declaration(users=8)
    plan = await provision.plan(client, spec_of(bigger))
    assert [c.key for c in plan.changes if c.action == "create"] == [
        "user6@example.com",
        "user7@example.com",
        "user6@example.com -> team-0",
        "user7@example.com -> team-1",
    ]
    assert emu.stats.by_method["Accounts.List"] == 2


async def test_duplicate_links_are_removed(emu: Emulator, client: sdm_async.Client) -> None:
    data = declaration()
    await provision.apply(client, spec_of(data))
    grant = await first(client.account_grants.list(""))
    grant.id = ""
    await client.account_grants.create(grant)  # what a retried create can leave behind
    plan = await provision.plan(client, spec_of(data))
    assert [(c.action, c.kind.name, c.reason) for c in plan.changes] == [
        ("delete", "grant", "duplicate")
    ]
    assert (await provision.apply(client, spec_of(data))).ok
    assert counts(emu) == expected(data)


async def test_prune_deletes_only_managed_objects_no_longer_declared(
    emu: Emulator, client: sdm_async.Client
) -> None:
    data = declaration()
    await provision.apply(client, spec_of(data))
    outsider = (
        await client.accounts.create(
            sdm_async.User(email="outsider@example.com", first_name="O", last_name="S")
        )
    ).account
    legacy = sdm_async.Redis(name="legacy-cache", hostname="old", port=6379)
    await client.resources.create(legacy)
    team1 = await first(client.roles.list("name:?", "team-1"))
    await client.account_attachments.create(
        sdm_async.AccountAttachment(account_id=outsider.id, role_id=team1.id)
    )

    smaller = declaration()
    smaller["users"] = smaller["users"][:4]
    gone = ("user4@example.com", "user5@example.com")
    smaller["attachments"] = [a for a in smaller["attachments"] if a["account"] not in gone]
    smaller["nodes"] = smaller["nodes"][:1]
    emu.stats.by_method.clear()

    kept = await provision.apply(client, spec_of(smaller))
    assert kept.ok and kept.rounds == 0 and writes(emu) == {}  # nothing deleted without prune
    assert kept.plan is not None
    orphans = {(c.kind.name, c.key) for c in kept.plan.orphans}
    assert orphans == {
        ("user", "user4@example.com"),
        ("user", "user5@example.com"),
        ("node", "relay-1"),
        ("attachment", "user4@example.com -> team-0"),
        ("attachment", "user5@example.com -> team-1"),
    }
    assert "(with --prune)" in rendered(kept.plan)

    pruned = await provision.apply(client, spec_of(smaller), prune=True)
    assert pruned.ok and pruned.count("delete") == 5
    assert writes(emu) == {
        "AccountAttachments.Delete": 2,
        "Nodes.Delete": 1,
        "Accounts.Delete": 2,
    }
    emails = {u.email async for u in client.accounts.list("type:user")}
    assert "outsider@example.com" in emails and "user5@example.com" not in emails
    assert [r.name async for r in client.resources.list("type:redis,hostname:old")] == [
        "legacy-cache"
    ]
    attached = [a async for a in client.account_attachments.list("accountid:?", outsider.id)]
    assert len(attached) == 1  # links with an unmanaged end are not ours
    assert counts(emu)["Accounts"] == 4 + 1 + 1


async def test_separate_owners_never_prune_each_other(
    emu: Emulator, client: sdm_async.Client
) -> None:
    data = {
        "owner": "team-data",
        "users": [{"email": "d@example.com", "first_name": "D", "last_name": "A"}],
        "roles": [{"name": "data"}],
    }
    other = {
        "owner": "team-web",
        "users": [{"email": "w@example.com", "first_name": "W", "last_name": "E"}],
        "roles": [{"name": "web"}],
    }
    assert (await provision.apply(client, spec_of(data))).ok
    assert (await provision.apply(client, spec_of(other))).ok
    user = await first(client.accounts.list("email:?", "d@example.com"))
    assert user.tags == {"managed-by": "team-data"}
    emu.stats.by_method.clear()
    # team-web declares nothing any more and prunes: only its own objects go.
    emptied = await provision.apply(client, spec_of({"owner": "team-web"}), prune=True)
    assert emptied.ok and writes(emu) == {"Accounts.Delete": 1, "Roles.Delete": 1}
    assert sorted([r.name async for r in client.roles.list("")]) == ["data"]
    assert [u.email async for u in client.accounts.list("")] == ["d@example.com"]
    with pytest.raises(provision.SpecError, match=r"owner: must be a short name"):
        spec_of({"owner": "team data!"})


async def test_a_declared_unmarked_object_is_adopted(
    emu: Emulator, client: sdm_async.Client
) -> None:
    await client.accounts.create(
        sdm_async.User(email="Old@Example.com", first_name="Old", last_name="Timer")
    )
    data = {"users": [{"email": "old@example.com", "first_name": "Old", "last_name": "Timer"}]}
    plan = await provision.plan(client, spec_of(data))
    # `tags` is not declared: the email is compared, and the plan shows the tags changing
    # only by the mark that adopting adds.
    assert [(c.action, c.fields) for c in plan.changes] == [("adopt", ("email", "tags"))]
    assert (await provision.apply(client, spec_of(data), plan=plan)).count("adopt") == 1
    user = await first(client.accounts.list(""))
    assert user.email == "old@example.com" and user.tags == {"managed-by": "sdm-async"}
    assert counts(emu)["Accounts"] == 1


async def test_type_changes_replace_managed_objects_and_refuse_others(
    emu: Emulator, client: sdm_async.Client
) -> None:
    data = declaration(users=2, resources=2, grants=2)
    await provision.apply(client, spec_of(data))
    data["resources"][0] = {"name": "pg-0", "type": "redis", "hostname": "now-redis"}
    plan = await provision.plan(client, spec_of(data))
    assert sorted((c.action, c.kind.name) for c in plan.changes) == [
        ("create", "grant"),
        ("create", "grant"),
        ("replace", "resource"),
    ]
    emu.stats.by_method.clear()
    assert (await provision.apply(client, spec_of(data), plan=plan)).ok
    assert writes(emu) == {
        "Resources.Delete": 1,
        "Resources.Create": 1,
        "AccountGrants.Create": 2,
    }
    assert counts(emu) == expected(data)

    await client.resources.create(sdm_async.SSH(name="box", hostname="h", port=22, username="u"))
    data["resources"].append({"name": "box", "type": "redis", "hostname": "h"})
    emu.stats.by_method.clear()
    with pytest.raises(provision.ConflictError, match=r"resources\[2\]: resource 'box' exists"):
        await provision.apply(client, spec_of(data))
    assert writes(emu) == {}


async def test_a_changed_grant_window_replaces_the_grant(
    emu: Emulator, client: sdm_async.Client
) -> None:
    data = declaration(users=2, resources=2, grants=1)
    await provision.apply(client, spec_of(data))
    data["grants"][0]["valid_until"] = "2031-06-01T12:00:00+02:00"
    plan = await provision.plan(client, spec_of(data))
    assert [(c.action, c.kind.name, c.fields) for c in plan.changes] == [
        ("replace", "grant", ("valid_until",))
    ]
    emu.stats.by_method.clear()
    assert (await provision.apply(client, spec_of(data), plan=plan)).ok
    assert writes(emu) == {"AccountGrants.Delete": 1, "AccountGrants.Create": 1}
    grant = await first(client.account_grants.list(""))
    assert grant.valid_until == datetime.datetime(2031, 6, 1, 10, tzinfo=datetime.timezone.utc)


INVALID = """\
version: 2
user: []
users:
  - email: alice@example.com
    first_name: Alice
  - email: not-an-email
    first_name: B
    last_name: C
    tags: {managed-by: me, team: 7}
roles:
  - name: a
  - name: b
    access_rules: [{since: 2024-01-01}]
  - name: c
    access_rules: {tags: {env: prod}}
resources:
  - name: db
    type: postgress
  - name: db2
    type: postgres
    hostname: h
    prot: 5432
    password: ${NOT_SET_ANYWHERE}
nodes:
  - name: gw
    type: gateway
attachments:
  - {account: alice@example.com, role: nope}
grants:
  - {account: alice@example.com, resource: db2, valid_until: someday}
"""


def test_invalid_declarations_name_every_problem_by_path(tmp_path: Path) -> None:
    path = tmp_path / "org.yaml"
    path.write_text(INVALID)
    with pytest.raises(provision.SpecError) as caught:
        provision.load(path, env={})
    problems = {p.path: p.message for p in caught.value.problems}
    assert set(problems) == {
        "version",
        "user",
        "users[0].last_name",
        "users[1].email",
        "users[1].tags.managed-by",
        "users[1].tags.team",
        "roles[1].access_rules",
        "roles[2].access_rules",
        "resources[0].type",
        "resources[1].prot",
        "resources[1].password",
        "resources[1].database",
        "resources[1].username",
        "nodes[0].listen_address",
        "attachments[0].role",
        "grants[0].valid_until",
    }
    assert problems["roles[2].access_rules"].startswith("must be a list of mappings")
    assert "did you mean 'users'" in problems["user"]
    assert "did you mean 'postgres'" in problems["resources[0].type"]
    assert "did you mean 'port'" in problems["resources[1].prot"]
    assert "${NOT_SET_ANYWHERE} is not set" in problems["resources[1].password"]
    assert "is required for a postgres resource" in problems["resources[1].username"]
    assert "quote it" in problems["users[1].tags.team"]
    assert "quote dates and times" in problems["roles[1].access_rules"]
    message = str(caught.value)
    assert message.startswith(f"{path}: 16 problems in the declaration:")
    assert "  roles[2].access_rules: must be a list of mappings" in message


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("users:\n  - email: a@b.c\n    email: b@c.d\n", "duplicate key 'email'"),
        ("users: [\n", "line 2, column 1: not valid YAML"),
        ("- just a list\n", "must be a mapping of sections"),
        ("roles:\n  - {name: r}\n  - {name: R}\n", "roles[1].name: role 'R' is already declared"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "org.yaml"
    path.write_text(text)
    with pytest.raises(provision.SpecError, match=error.replace("[", r"\[").replace("]", r"\]")):
        provision.load(path)


async def test_secrets_are_never_shown(
    emu: Emulator, client: sdm_async.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sdm_async")
    data = declaration(users=2, resources=2, grants=1)
    data["resources"][0]["hostname"] = "${DB_HOST}"  # from the environment: secret too
    spec = spec_of(data)
    plan = await provision.plan(client, spec)
    texts = [rendered(plan), repr(plan), repr(spec), *(c.detail() for c in plan.changes)]
    assert "password=***" in texts[0] and "hostname=***" in texts[0]
    result = await provision.apply(client, spec)
    console = Console(file=io.StringIO(), width=200)
    console.print(result_table(result))
    texts.append(console.file.getvalue())  # type: ignore[attr-defined]

    # The API does not return passwords: a rotated one is sent again only when asked to.
    rotated = spec_of(data, {"PG_PASSWORD": "pw-TOPSECRET-rotated", "DB_HOST": HOST_SECRET})
    assert (await provision.plan(client, rotated)).empty
    update = await provision.plan(client, rotated, rewrite_secrets=True)
    assert [(c.action, c.fields) for c in update.changes] == [("update", ("password",))]
    texts += [rendered(update), repr(update), update.changes[0].detail()]
    assert "password sent again (secret)" in texts[-1]
    emu.stats.by_method.clear()
    again = await provision.apply(client, rotated, rewrite_secrets=True)
    assert again.ok and again.rounds == 1 and writes(emu) == {"Resources.Update": 1}
    texts.append(caplog.text)
    for text in texts:
        assert SECRET not in text and HOST_SECRET not in text and "rotated" not in text


async def test_cli_plan_apply_and_errors(
    emu: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SDM_API_ACCESS_KEY", emu.access_key)
    monkeypatch.setenv("SDM_API_SECRET_KEY", emu.secret_key)
    monkeypatch.setenv("SDM_API_HOST", emu.address)
    monkeypatch.setenv("PG_APP_PASSWORD", SECRET)
    monkeypatch.setenv("COLUMNS", "200")  # rich's width when not on a terminal
    example = EXAMPLE

    async def run(*argv: str) -> tuple[int, str, str]:
        # The command runs its own event loop: in a thread, while the emulator serves here.
        code = await asyncio.to_thread(cli_main, ["provision", *argv])
        out, err = capsys.readouterr()
        assert SECRET not in out + err
        return code, out, err

    code, out, _ = await run("plan", str(example), "--insecure")
    assert code == 0 and "Plan: 15 to create (0 unchanged)" in out
    assert "alice@example.com -> data-readers" in out and "password=***" in out
    assert emu.backend.count("Accounts") == 0

    # The example creates a service and nodes: their one-time tokens need somewhere to go.
    tokens = tmp_path / "tokens.json"
    code, out, _ = await run("apply", str(example), "--insecure", "--secrets-out", str(tokens))
    assert code == 0 and "Applied: 15 created" in out
    assert set(json.loads(tokens.read_text())) == {
        "service/ci-deployer",
        "node/gw-eu-1",
        "node/relay-eu-1",
    }
    assert emu.backend.count("Accounts") == 4 and emu.backend.count("AccountGrants") == 1

    code, out, _ = await run("apply", str(example), "--insecure")
    assert code == 0 and "Plan: no changes (15 unchanged)" in out

    bad = tmp_path / "bad.yaml"
    bad.write_text(INVALID)
    calls = emu.stats.calls
    code, _, err = await run("plan", str(bad), "--insecure")
    assert code == 2 and "roles[2].access_rules: must be a list of mappings" in err
    assert emu.stats.calls == calls  # nothing reached the API

    monkeypatch.delenv("SDM_API_SECRET_KEY")
    code, _, err = await run("plan", str(example), "--insecure")
    assert code == 2 and "SDM_API_SECRET_KEY" in err


async def test_a_value_from_the_environment_is_compared_like_any_other(
    client: sdm_async.Client,
) -> None:
    # Only credentials go unreturned by the API; a non-credential field taken from the
    # environment is returned, so an empty one on the server is written, not skipped.
    await client.resources.create(
        sdm_async.Redis(name="cache", hostname="h", port=6379, tags={"managed-by": "sdm-async"})
    )
    data = {
        "resources": [
            {"name": "cache", "type": "redis", "hostname": "h", "port": 6379,
             "egress_filter": "${FILTER}"}
        ]
    }  # fmt: skip
    spec = provision.parse(data, env={"FILTER": "tags:env=prod"})
    plan = await provision.plan(client, spec)
    assert [(c.action, c.fields) for c in plan.changes] == [("update", ("egress_filter",))]
    assert "tags:env=prod" not in plan.changes[0].detail()  # still never shown
    await provision.apply(client, spec, plan=plan)
    resource = await first(client.resources.list("name:cache"))
    assert resource.egress_filter == "tags:env=prod"
    assert (await provision.plan(client, spec)).empty
