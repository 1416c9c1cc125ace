"""Arguments a method needs do not admit `None`; optional ones still do (checked by
`tests/test_typing.py` with `mypy --strict`, whose `warn_unused_ignores` fails the check if
any `ignore` below stops being needed, i.e. if `None` became acceptable again)."""

from __future__ import annotations

import datetime

import sdm_async
from sdm_async import SecretEnginePasswordPolicy


async def required(client: sdm_async.Client) -> None:
    await client.accounts.create(None)  # type: ignore[arg-type]
    await client.accounts.update(None)  # type: ignore[arg-type]
    await client.roles.create(None)  # type: ignore[arg-type]
    await client.roles.update(None)  # type: ignore[arg-type]
    await client.resources.create(None)  # type: ignore[arg-type]
    await client.account_attachments.create(None)  # type: ignore[arg-type]
    await client.organizations.update_mfa(None)  # type: ignore[arg-type]
    await client.accounts.get(None)  # type: ignore[arg-type]
    await client.accounts.delete(None)  # type: ignore[arg-type]
    snapshot = client.snapshot_at(datetime.datetime.now(datetime.timezone.utc))
    await snapshot.accounts.get(None)  # type: ignore[arg-type]
    await client.secret_engines.rotate(None, None)  # type: ignore[arg-type]


async def optional(client: sdm_async.Client, policy: SecretEnginePasswordPolicy | None) -> None:
    await client.accounts.get("a-1", timeout=None)
    await client.secret_engines.rotate("se-1", None)  # None: the engine's own policy
    await client.secret_engines.rotate("se-1", policy)
    async for _ in client.accounts.list("", timeout=None):
        pass
