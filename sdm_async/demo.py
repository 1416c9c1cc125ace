"""The demo: provision a realistic organisation through the bulk helpers, read it back with
filters and `async for`, and print a summary.

    python -m sdm_async demo [--users N] [--roles N] [--resources N]

By default it runs against an emulator started in-process. With SDM_API_ACCESS_KEY and
SDM_API_SECRET_KEY set (and SDM_API_HOST, default app.strongdm.com:443) it reads a real
organisation instead, and writes to it only with `--write`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import sdm_async
from sdm_async.bulk import Outcome
from sdm_async.testing import Emulator

TEAM = "team-{:02d}"


def _resource(i: int, teams: int) -> Any:
    tags = {"team": TEAM.format(i % teams), "demo": "sdm-async"}
    kinds: list[Callable[[], Any]] = [
        lambda: sdm_async.Postgres(
            name=f"pg-{i:03d}",
            hostname=f"pg-{i:03d}.db.internal",
            port=5432,
            database="app",
            username="app",
            password="not-a-real-password",
            tags=tags,
        ),
        lambda: sdm_async.Redis(
            name=f"redis-{i:03d}", hostname="cache.internal", port=6379, tags=tags
        ),
        lambda: sdm_async.SSH(
            name=f"ssh-{i:03d}",
            hostname=f"host-{i:03d}.internal",
            port=22,
            username="ops",
            tags=tags,
        ),
        lambda: sdm_async.Mysql(
            name=f"mysql-{i:03d}",
            hostname="mysql.internal",
            port=3306,
            database="shop",
            username="shop",
            password="not-a-real-password",
            tags=tags,
        ),
    ]
    return kinds[i % len(kinds)]()


def _ids(outcomes: Sequence[Outcome[Any, Any]], attr: str) -> list[str]:
    """Ids of what the calls created (the response's `attr`), in input order."""
    return [getattr(o.response, attr).id for o in outcomes if o.response is not None]


def _failed(outcomes: Sequence[Outcome[Any, Any]]) -> int:
    for o in outcomes:
        if o.error is not None:
            print(f"  failed: {o.error}")
            break
    return sum(1 for o in outcomes if o.error is not None)


async def provision(
    client: sdm_async.Client, users: int, roles: int, resources: int
) -> dict[str, Any]:
    """Create the organisation; returns what the summary reports."""
    role_outcomes = await client.bulk(
        client.roles.create,
        [
            sdm_async.Role(
                name=TEAM.format(i),
                access_rules=[{"tags": {"team": TEAM.format(i)}}, {"type": "redis"}],
                tags={"demo": "sdm-async"},
            )
            for i in range(roles)
        ],
        progress=True,
    )
    user_outcomes = await client.bulk(
        client.accounts.create,
        [
            sdm_async.User(
                email=f"user{i:04d}@example.com",
                first_name="User",
                last_name=f"{i:04d}",
                tags={"team": TEAM.format(i % roles), "demo": "sdm-async"},
            )
            for i in range(users)
        ],
        progress=True,
    )
    resource_outcomes = await client.bulk(
        client.resources.create, [_resource(i, roles) for i in range(resources)], progress=True
    )
    role_ids = _ids(role_outcomes, "role")
    user_ids = _ids(user_outcomes, "account")
    resource_ids = _ids(resource_outcomes, "resource")
    attachments = await client.bulk(
        client.account_attachments.create,
        [
            sdm_async.AccountAttachment(account_id=uid, role_id=role_ids[i % len(role_ids)])
            for i, uid in enumerate(user_ids)
        ],
        progress=True,
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    grants = await client.bulk(
        client.account_grants.create,
        [
            sdm_async.AccountGrant(
                account_id=uid,
                resource_id=resource_ids[i % len(resource_ids)],
                start_from=now,
                valid_until=now + datetime.timedelta(hours=8),  # temporary access
            )
            for i, uid in enumerate(user_ids[: max(1, users // 10)])
        ],
        progress=True,
    )
    steps: list[Sequence[Outcome[Any, Any]]] = [
        role_outcomes,
        user_outcomes,
        resource_outcomes,
        attachments,
        grants,
    ]
    return {
        "calls": sum(len(s) for s in steps),
        "failed": sum(_failed(s) for s in steps),
        "last": grants[-1].response if grants and grants[-1].response else None,
    }


async def read_back(client: sdm_async.Client, teams: int) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    counts["users"] = sum([1 async for _ in client.accounts.list("type:user")])
    counts[f"users in {TEAM.format(0)}"] = sum(
        [1 async for _ in client.accounts.list("tags:?", f"team={TEAM.format(0)}")]
    )
    counts["roles"] = sum([1 async for _ in client.roles.list("")])
    kinds: dict[str, int] = {}
    async for r in client.resources.list(""):
        kinds[type(r).__name__] = kinds.get(type(r).__name__, 0) + 1
    counts["resources"] = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "0"
    counts["role attachments"] = sum([1 async for _ in client.account_attachments.list("")])
    counts["temporary grants"] = sum([1 async for _ in client.account_grants.list("")])
    return counts


async def run(args: argparse.Namespace) -> dict[str, Any]:
    live = bool(os.environ.get("SDM_API_ACCESS_KEY") and os.environ.get("SDM_API_SECRET_KEY"))
    if live:
        async with sdm_async.Client.from_env(insecure=args.insecure) as client:
            return await _session(client, args, write=args.write, where=client.host)
    # A rate limit like a real organisation's, generous enough for the demo's ~2,500 calls.
    async with Emulator(rate_limit=10_000, rate_limit_window=60) as emu:
        async with emu.client() as client:
            return await _session(client, args, write=True, where="embedded emulator")


async def _session(
    client: sdm_async.Client, args: argparse.Namespace, *, write: bool, where: str
) -> dict[str, Any]:
    summary: dict[str, Any] = {"organisation": where}
    started = time.perf_counter()
    if write:
        done = await provision(client, args.users, args.roles, args.resources)
        elapsed = time.perf_counter() - started
        summary["provisioning calls"] = done["calls"]
        summary["failed calls"] = done["failed"]
        summary["provisioning time (s)"] = round(elapsed, 2)
        summary["calls/s"] = round(done["calls"] / elapsed) if elapsed else "-"
        last = done["last"]
        if last is not None and last.rate_limit is not None and last.rate_limit.limit:
            summary["rate-limit budget left"] = (
                f"{last.rate_limit.remaining}/{last.rate_limit.limit}"
            )
    else:
        summary["mode"] = "read-only (pass --write to provision)"
    summary.update(await read_back(client, args.roles))
    summary["retries"] = client.retries
    summary["wall time (s)"] = round(time.perf_counter() - started, 2)
    return summary


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sdm-async demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--roles", type=int, default=20)
    parser.add_argument("--resources", type=int, default=200)
    parser.add_argument(
        "--write", action="store_true", help="provision into a real organisation too"
    )
    parser.add_argument(
        "--insecure", action="store_true", help="plain-text gRPC to SDM_API_HOST (an emulator)"
    )
    args = parser.parse_args(argv)
    if min(args.users, args.roles, args.resources) < 1:
        parser.error("--users, --roles and --resources must be at least 1")
    summary = asyncio.run(run(args))
    from rich.console import Console
    from rich.table import Table

    table = Table(title="sdm_async demo")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        table.add_row(key, str(value))
    Console().print(table)
    return 1 if summary.get("failed calls") else 0
