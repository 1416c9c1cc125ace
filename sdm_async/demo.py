"""The demo: provision an organisation on an embedded emulator, then read it back.

python -m sdm_async demo [--users N] [--roles N] [--resources N]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import time
from collections.abc import Awaitable
from typing import Any

import sdm_async
from sdm_async.testing import Emulator


async def _gather(label: str, calls: list[Awaitable[Any]]) -> list[Any]:
    """Run calls concurrently (the client bounds how many are in flight) with a progress bar."""
    from rich.progress import Progress

    results: list[Any] = []
    with Progress(transient=True) as progress:
        task = progress.add_task(label, total=len(calls))

        async def one(call: Awaitable[Any]) -> Any:
            result = await call
            progress.advance(task)
            return result

        results = await asyncio.gather(*(one(c) for c in calls))
    return results


async def run(users: int, roles: int, resources: int) -> dict[str, Any]:
    async with Emulator() as emu:
        async with emu.client(max_in_flight=64) as client:
            started = time.perf_counter()
            role_resps = await _gather(
                "roles",
                [
                    client.roles.create(
                        sdm_async.Role(
                            name=f"team-{i:02d}",
                            access_rules=[{"tags": {"team": f"team-{i:02d}"}}],
                        )
                    )
                    for i in range(roles)
                ],
            )
            user_resps = await _gather(
                "users",
                [
                    client.accounts.create(
                        sdm_async.User(
                            email=f"user{i:04d}@example.com",
                            first_name="User",
                            last_name=f"{i:04d}",
                            tags={"team": f"team-{i % roles:02d}"},
                        )
                    )
                    for i in range(users)
                ],
            )
            kinds = [
                lambda i: sdm_async.Postgres(
                    name=f"pg-{i}",
                    hostname="db.internal",
                    port=5432,
                    database="app",
                    username="app",
                    password="not-shown",
                    tags={"team": f"team-{i % roles:02d}"},
                ),
                lambda i: sdm_async.Redis(name=f"redis-{i}", hostname="cache.internal", port=6379),
                lambda i: sdm_async.SSH(
                    name=f"ssh-{i}", hostname="bastion", port=22, username="ops"
                ),
            ]
            res_resps = await _gather(
                "resources",
                [client.resources.create(kinds[i % len(kinds)](i)) for i in range(resources)],
            )
            await _gather(
                "attachments",
                [
                    client.account_attachments.create(
                        sdm_async.AccountAttachment(
                            account_id=u.account.id, role_id=role_resps[i % roles].role.id
                        )
                    )
                    for i, u in enumerate(user_resps)
                ],
            )
            now = datetime.datetime.now(datetime.timezone.utc)
            await _gather(
                "grants",
                [
                    client.account_grants.create(
                        sdm_async.AccountGrant(
                            account_id=user_resps[i].account.id,
                            resource_id=res_resps[i % resources].resource.id,
                            start_from=now,
                            valid_until=now + datetime.timedelta(hours=8),
                        )
                    )
                    for i in range(min(users, 100))
                ],
            )
            provisioned = time.perf_counter() - started
            listed = [u async for u in client.accounts.list("type:user")]
            team0 = [u async for u in client.accounts.list("tags:?", "team=team-00")]
            postgres = [r async for r in client.resources.list("type:postgres")]
            total = time.perf_counter() - started
            calls = roles + users + resources + users + min(users, 100)
            return {
                "users": len(listed),
                "team-00 users": len(team0),
                "roles": roles,
                "resources": resources,
                "postgres resources": len(postgres),
                "provisioning calls": calls,
                "calls/s": round(calls / provisioned),
                "wall time (s)": round(total, 2),
                "retries": client.retries,
                "rate limit left": user_resps[-1].rate_limit.remaining,
            }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sdm-async demo")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--roles", type=int, default=20)
    parser.add_argument("--resources", type=int, default=200)
    args = parser.parse_args(argv)
    summary = asyncio.run(run(args.users, args.roles, args.resources))
    from rich.console import Console
    from rich.table import Table

    table = Table(title="sdm_async demo (embedded emulator)")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        table.add_row(key, str(value))
    Console().print(table)
    return 0
