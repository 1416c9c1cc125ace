"""The declaration loader: `${VAR}` in every string, YAML merge keys and aliases, refused
YAML, and `Declared.fields` listing exactly what the file states."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import sdm_async
from sdm_async import provision
from sdm_async.provision.render import plan_table
from sdm_async.testing import Emulator

FIRST = "First-FROMENV-1234"  # a value from the environment in a non-key field


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> provision.Spec:
    path = tmp_path / "org.yaml"
    path.write_text(text)
    return provision.load(path, env={} if env is None else env)


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(provision.SpecError) as caught:
        load(tmp_path, text, env)
    return [str(p) for p in caught.value.problems]


def by_key(spec: provision.Spec) -> dict[str, provision.Declared]:
    return {d.key: d for d in spec.declared}


def rendered(plan: provision.Plan) -> str:
    console = Console(file=io.StringIO(), width=250)
    console.print(plan_table(plan))
    return console.file.getvalue()  # type: ignore[attr-defined]


# -- ${VAR} everywhere --------------------------------------------------------------------------

EVERYWHERE = """
owner: ${OWNER}
users:
  - email: ${ALICE_EMAIL}
    first_name: ${FIRST}
    last_name: Smith
    tags: {team: "${TEAM}", "${TAG_NAME}": fixed}
services:
  - name: ${SERVICE}
roles:
  - name: ${ROLE}
    access_rules: [{tags: {env: "${STAGE}"}}, {type: postgres}]
    tags: {team: "${TEAM}"}
resources:
  - name: ${DB}
    type: ${DB_TYPE}
    hostname: ${DB_HOST}
    port: 5432
    database: app
    username: app
    password: ${DB_PASSWORD}
nodes:
  - name: ${GATEWAY}
    type: gateway
    listen_address: "${GATEWAY}.example.com:5000"
attachments:
  - {account: "${ALICE_EMAIL}", role: "${ROLE}"}
  - {account: "${SERVICE}", role: "${ROLE}"}
grants:
  - {account: "${ALICE_EMAIL}", resource: "${DB}", valid_until: "${UNTIL}"}
"""
ENV = {
    "OWNER": "team-data",
    "ALICE_EMAIL": "alice@example.com",
    "FIRST": FIRST,
    "TEAM": "data",
    "TAG_NAME": "cost-centre",
    "SERVICE": "ci-bot",
    "ROLE": "data-readers",
    "STAGE": "prod",
    "DB": "pg-app",
    "DB_TYPE": "postgres",
    "DB_HOST": "db-FROMENV.internal",
    "DB_PASSWORD": "pw-FROMENV-4711",
    "GATEWAY": "gw-eu-1",
    "UNTIL": "2030-01-01T00:00:00Z",
}


def test_env_is_expanded_in_every_string(tmp_path: Path) -> None:
    spec = load(tmp_path, EVERYWHERE, ENV)
    d = by_key(spec)
    assert spec.owner == "team-data" and {x.owner for x in spec.declared} == {"team-data"}
    alice = d["alice@example.com"].model
    assert alice.first_name == FIRST
    assert alice.tags == {"team": "data", "cost-centre": "fixed"}
    assert d["ci-bot"].kind.name == "service"
    role = d["data-readers"].model
    assert role.access_rules == [{"tags": {"env": "prod"}}, {"type": "postgres"}]
    assert role.tags == {"team": "data"}
    pg = d["pg-app"].model
    assert (pg.hostname, pg.password) == ("db-FROMENV.internal", "pw-FROMENV-4711")
    assert d["gw-eu-1"].model.listen_address == "gw-eu-1.example.com:5000"
    assert d["alice@example.com -> data-readers"].ends == (
        ("user", "alice@example.com"),
        ("role", "data-readers"),
    )
    assert d["ci-bot -> data-readers"].ends == (("service", "ci-bot"), ("role", "data-readers"))
    grant = d["alice@example.com -> pg-app"]
    assert grant.model.valid_until.isoformat() == "2030-01-01T00:00:00+00:00"
    # Values from the environment are never printed, except where they name an object.
    assert d["alice@example.com"].secrets == {"first_name"}
    assert {"hostname", "password"} <= d["pg-app"].secrets
    assert "listen_address" in d["gw-eu-1"].secrets


def test_every_unset_variable_is_reported_by_path_in_one_error(tmp_path: Path) -> None:
    found = problems(tmp_path, EVERYWHERE + "    # ${COMMENTS_ARE_NOT_READ}\n", {"FIRST": "x"})
    unset = " is not set (export {} before running, or write the value in the file)"
    expected = [
        ("owner", "OWNER"),
        ("users[0].email", "ALICE_EMAIL"),
        ("users[0].tags.team", "TEAM"),
        ("users[0].tags.${TAG_NAME}", "TAG_NAME"),
        ("services[0].name", "SERVICE"),
        ("roles[0].name", "ROLE"),
        ("roles[0].access_rules[0].tags.env", "STAGE"),
        ("roles[0].tags.team", "TEAM"),
        ("resources[0].name", "DB"),
        ("resources[0].type", "DB_TYPE"),
        ("resources[0].hostname", "DB_HOST"),
        ("resources[0].password", "DB_PASSWORD"),
        ("nodes[0].name", "GATEWAY"),
        ("nodes[0].listen_address", "GATEWAY"),
        ("attachments[0].account", "ALICE_EMAIL"),
        ("attachments[0].role", "ROLE"),
        ("attachments[1].account", "SERVICE"),
        ("attachments[1].role", "ROLE"),
        ("grants[0].account", "ALICE_EMAIL"),
        ("grants[0].resource", "DB"),
        ("grants[0].valid_until", "UNTIL"),
    ]
    # Every one, and nothing that only follows from them ("is required", "names no ...").
    assert found == [f"{path}: ${{{name}}}{unset.format(name)}" for path, name in expected]


def test_two_unset_variables_in_one_string_are_both_reported(tmp_path: Path) -> None:
    text = "resources: [{name: r, type: redis, hostname: '${A}.${B}.internal', port: 1}]\n"
    found = problems(tmp_path, text, {})
    assert [p.split(" is not set")[0] for p in found] == [
        "resources[0].hostname: ${A}",
        "resources[0].hostname: ${B}",
    ]


def test_bad_references_are_reported_without_showing_the_text(tmp_path: Path) -> None:
    text = (
        "resources:\n"
        "  - {name: r, type: redis, port: 1, hostname: 'h',\n"
        "     username: 'pw-${TOPSECRET', password: '${TOP SECRET}'}\n"
    )
    found = problems(tmp_path, text)
    assert [p.split(":")[0] for p in found] == ["resources[0].username", "resources[0].password"]
    assert all("not a variable reference" in p and "TOP" not in p for p in found)


def test_a_literal_dollar_brace_and_values_expanded_once(tmp_path: Path) -> None:
    text = "users: [{email: a@b.c, first_name: '$${LITERAL}', last_name: '${LAST}'}]\n"
    model = load(tmp_path, text, {"LAST": "${NOT_EXPANDED_AGAIN}"}).declared[0].model
    assert (model.first_name, model.last_name) == ("${LITERAL}", "${NOT_EXPANDED_AGAIN}")


async def test_env_values_reach_the_org_and_stay_masked_in_plans(
    emu: Emulator, client: sdm_async.Client, tmp_path: Path
) -> None:
    spec = load(tmp_path, EVERYWHERE, ENV)
    plan = await provision.plan(client, spec)
    text = rendered(plan) + "".join(c.detail() for c in plan.changes) + repr(plan)
    assert "first_name=***" in text and "hostname=***" in text and "password=***" in text
    for secret in (FIRST, "db-FROMENV", "pw-FROMENV"):
        assert secret not in text
    # Shown: what names an object or labels it, and times (they say what changes).
    assert "alice@example.com -> data-readers" in text and "cost-centre=fixed,team=data" in text
    assert "valid_until=2030-01-01T00:00:00+00:00" in text and "gw-eu-1" in text
    result = await provision.apply(client, spec)
    assert result.ok, result.failures
    users = [u async for u in client.accounts.list("type:user")]
    assert [(u.email, u.first_name, u.tags) for u in users] == [
        (
            "alice@example.com",
            FIRST,
            {"team": "data", "cost-centre": "fixed", "managed-by": "team-data"},
        )
    ]
    roles = [r async for r in client.roles.list("")]
    assert [(r.name, r.access_rules) for r in roles] == [
        ("data-readers", [{"tags": {"env": "prod"}}, {"type": "postgres"}])
    ]
    assert (await provision.plan(client, spec)).empty


# -- YAML: merge keys, aliases, keys, tags, size ------------------------------------------------

PG = """
resources:
  - &pg
    name: db-a
    type: postgres
    hostname: a.internal
    port: 5432
    database: app
    username: app
    password: pw
"""


def test_a_merge_key_with_an_override(tmp_path: Path) -> None:
    spec = load(tmp_path, PG + "  - <<: *pg\n    name: db-b\n    hostname: b.internal\n")
    d = by_key(spec)
    assert (d["db-a"].model.hostname, d["db-b"].model.hostname) == ("a.internal", "b.internal")
    assert d["db-b"].model.database == "app" and d["db-b"].fields == d["db-a"].fields


def test_a_merge_of_a_list_of_maps_earlier_wins_written_wins_over_all(tmp_path: Path) -> None:
    text = (
        "users:\n"
        "  - &a {email: a@example.com, first_name: A, last_name: Ay, tags: {from: a}}\n"
        "  - &b {email: b@example.com, first_name: B, last_name: Be, suspended: true}\n"
        "  - <<: [*a, *b]\n"
        "    email: c@example.com\n"
    )
    c = by_key(load(tmp_path, text))["c@example.com"]
    assert (c.model.first_name, c.model.last_name, c.model.tags) == ("A", "Ay", {"from": "a"})
    assert c.model.suspended is True and "suspended" in c.fields  # only b had it


@pytest.mark.parametrize(
    ("text", "error"),
    [
        # A duplicate written next to a merge, or inside the merged mapping.
        (
            PG + "  - <<: *pg\n    name: db-b\n    name: db-c\n",
            "line 13, column 5: duplicate key 'name'",
        ),
        (
            "roles:\n  - &r {name: a, name: b}\n  - <<: *r\n",
            "line 2, column 18: duplicate key 'name'",
        ),
        ("users: [{<<: {email: a@b.c}, <<: {first_name: x}}]\n", "duplicate key '<<'"),
        ("users: [{<<: 3}]\n", "`<<` merges mappings: write `<<: *anchor` or `<<: [*one, *two]`"),
        ("users: [{<<: [{email: a@b.c}, x]}]\n", "`<<` merges mappings"),
        # Keys that are not strings: a clear error, not a TypeError.
        ("users: [{? [a, b] : 1}]\n", "line 1, column 12: a key must be a string, not a list"),
        ("users: [{? {a: b} : 1}]\n", "a key must be a string, not a mapping"),
        ("users: [{email: a@b.c, tags: {1: one}}]\n", "a key must be a string, not a number"),
        ("users: [{email: a@b.c, tags: {on: call}}]\n", "a key must be a string, not true"),
        ("users: [{~: x}]\n", "a key must be a string, not null"),
        # Only plain values: no Python objects, no custom tags.
        ("users: !!python/object:os.PathLike {}\n", "the tag 'tag:yaml.org,2002:python/object"),
        ("users: [!custom {email: a@b.c}]\n", "the tag '!custom' is not allowed"),
        # An alias inside what it names.
        ("roles: &r [*r]\n", "an alias (*name) is used inside the value it names"),
        ("roles: [&r {name: a, access_rules: [*r]}]\n", "an alias (*name) is used inside"),
    ],
)
def test_refused_yaml_says_where_and_why(tmp_path: Path, text: str, error: str) -> None:
    found = problems(tmp_path, text)
    assert len(found) == 1 and error in found[0], found


def test_python_tags_are_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = f"users: !!python/object/apply:os.system ['touch {marker}']\n"
    assert "is not allowed: a declaration holds plain values only" in problems(tmp_path, text)[0]
    assert not marker.exists()


def test_aliases_elsewhere_are_copies(tmp_path: Path) -> None:
    text = (
        "roles:\n"
        "  - {name: a, access_rules: &rules [{tags: {env: prod}}], tags: &tags {team: data}}\n"
        "  - {name: b, access_rules: *rules, tags: *tags}\n"
    )
    d = by_key(load(tmp_path, text))
    a, b = d["a"].model, d["b"].model
    assert a.access_rules == b.access_rules == [{"tags": {"env": "prod"}}]
    assert a.tags == b.tags == {"team": "data"}
    a.access_rules[0]["tags"]["env"] = "dev"
    a.tags["team"] = "ops"
    assert b.access_rules == [{"tags": {"env": "prod"}}] and b.tags == {"team": "data"}


def test_billion_laughs_is_refused_in_bounded_time(tmp_path: Path) -> None:
    lines = ["roles:", "  - name: r", "    access_rules:", "      - &l0 {x: [lol, lol, lol]}"]
    for i in range(1, 10):  # 3 * 10**9 strings once expanded
        lines.append(f"      - &l{i} {{x: [" + ", ".join([f"*l{i - 1}"] * 10) + "]}")
    started = time.monotonic()
    found = problems(tmp_path, "\n".join(lines) + "\n")
    elapsed = time.monotonic() - started
    assert found == [
        "the declaration holds more than 1,000,000 values once its aliases (*name) are "
        "expanded: write the file without aliases of aliases, or split it"
    ]
    assert elapsed < 60  # a correctness bound: it stops, it does not expand 10**9 values


def test_nesting_is_bounded(tmp_path: Path) -> None:
    deep = "roles: [{name: r, access_rules: [" + "{a: [" * 30 + "]}" * 30 + "]}]\n"
    assert problems(tmp_path, deep)[0].endswith(
        "is nested more than 20 levels deep (an alias in itself?)"
    )
    assert "nested too deeply" in problems(tmp_path, "users: " + "[" * 5000 + "]" * 5000)[0]
    loop: list[Any] = []
    loop.append(loop)  # parse() takes Python values too
    with pytest.raises(provision.SpecError, match="nested more than 20 levels deep"):
        provision.parse({"roles": [{"name": "r", "access_rules": loop}]}, env={})


# -- Declared.fields: what the file states, nothing else ----------------------------------------

MINIMAL = """
users:
  - {email: a@example.com, first_name: A, last_name: Ay}
  - {email: b@example.com, first_name: B, last_name: Be, suspended: false, tags: {}}
services:
  - {name: svc}
  - {name: svc-2, suspended: true, tags: {team: x}}
roles:
  - {name: named-only}
  - {name: no-rules, access_rules: [], tags: {}}
resources:
  - {name: cache, type: redis, hostname: cache.internal, port: 6379}
  - {name: web, type: http_basic_auth, url: "https://x", healthcheck_path: /, subdomain: w,
     tags: {team: x}}
nodes:
  - {name: relay, type: relay}
  - {name: gw, type: gateway, listen_address: "gw:5000", tags: {zone: eu}}
attachments:
  - {account: a@example.com, role: named-only}
grants:
  - {account: a@example.com, resource: cache}
  - {account: svc, resource: cache, valid_until: 2030-01-01T00:00:00Z}
"""


def test_fields_are_what_the_file_states(tmp_path: Path) -> None:
    fields = {d.key: d.fields for d in load(tmp_path, MINIMAL).declared}
    assert fields == {
        "a@example.com": ("email", "first_name", "last_name"),
        "b@example.com": ("email", "first_name", "last_name", "tags", "suspended"),
        "svc": ("name",),
        "svc-2": ("name", "tags", "suspended"),
        "named-only": ("name",),
        "no-rules": ("name", "access_rules", "tags"),
        "cache": ("name", "hostname", "port"),
        "web": ("name", "tags", "healthcheck_path", "subdomain", "url"),
        "relay": ("name",),
        "gw": ("name", "tags", "listen_address"),
        "a@example.com -> named-only": (),
        "a@example.com -> cache": (),
        "svc -> cache": ("valid_until",),
    }


def test_an_empty_tags_or_rules_line_is_not_a_guess(tmp_path: Path) -> None:
    text = (
        "users: [{email: a@b.c, first_name: A, last_name: B, tags: }]\n"
        "roles: [{name: r, access_rules: }]\n"
        "resources: [{name: c, type: redis, hostname: h, port: 1}]\n"
        "grants: [{account: a@b.c, resource: c, valid_until: }]\n"
    )
    assert problems(tmp_path, text) == [
        "users[0].tags: is empty: write `tags: {}` to remove every tag, or leave the line out "
        "to keep the tags the object has",
        "roles[0].access_rules: is empty: write `access_rules: []` to remove every rule, or "
        "leave the line out to keep the rules the role has",
        "grants[0].valid_until: must be a date and time, e.g. 2030-01-31T18:00:00Z, or left out",
    ]


async def test_naming_a_role_to_attach_someone_keeps_its_rules(
    emu: Emulator, client: sdm_async.Client, tmp_path: Path
) -> None:
    rules = [{"tags": {"env": "prod"}}]
    await client.roles.create(sdm_async.Role(name="named-only", access_rules=rules))
    spec = load(tmp_path, MINIMAL)
    result = await provision.apply(client, spec)
    assert result.ok, result.failures
    roles = {r.name: r.access_rules async for r in client.roles.list("")}
    assert roles == {"named-only": rules, "no-rules": []}


async def test_a_field_required_only_under_a_condition_is_left_to_the_api() -> None:
    # An RDP server's identity-alias health-check username is required only with an identity
    # set: a plain RDP server declares without it, and the emulator (as the API) takes it.
    data = {
        "owner": "o",
        "resources": [
            {"type": "rdp", "name": "win", "hostname": "h", "port": 3389,
             "username": "u", "password": "p"}
        ],
    }  # fmt: skip
    spec = provision.parse(data, env={})
    async with Emulator() as emu, emu.client() as client:
        result = await provision.apply(client, spec)
        assert result.ok, result.failures
        assert emu.backend.count("Resources") == 1
