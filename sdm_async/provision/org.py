"""Reading the part of the organisation a declaration concerns.

What is read:

- the objects carrying the mark: one filtered listing per service (`tags:managed-by=...`;
  users and services share one);
- declared objects not among them (first run, or an object to adopt): looked up one by one
  by natural key (`email:?`, `name:?`) when few, else the kind is listed in full, whichever
  costs fewer calls in the common cases;
- links (attachments, grants) of the roles and resources found, per role or resource when
  few, else in one listing filtered on this side.

In a steady state (everything declared is marked) a plan costs one listing per service plus
the links, however large the rest of the organisation is. Filters have a single term: the
API separates terms with spaces (as the Terraform provider writes them), the emulator with
commas.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from sdm_async.provision.kinds import (
    ATTACHMENT,
    GRANT,
    MARK_KEY,
    NODE,
    OBJECTS,
    RESOURCE,
    ROLE,
    SERVICE,
    USER,
    Kind,
)
from sdm_async.provision.spec import Ref, Spec

if TYPE_CHECKING:
    from sdm_async.client import Client
if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ["LOOKUP_LIMIT", "Org", "gather", "lookup", "read"]

# Up to this many keys (or ids) are looked up one call each; beyond it, one full listing is
# likely cheaper (pages hold 50 to 1000 items).
LOOKUP_LIMIT = 32
T = TypeVar("T")


@dataclass
class Org:
    """Objects found, by kind name and casefolded natural key; links between them."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    links: dict[str, list[Any]] = field(default_factory=dict)

    def get(self, ref: Ref) -> Any:
        return self.objects.get(ref[0], {}).get(ref[1])

    def refs_by_id(self, *kinds: Kind) -> dict[str, Ref]:
        return {
            obj.id: (kind.name, ident)
            for kind in kinds
            for ident, obj in self.objects.get(kind.name, {}).items()
        }

    def ids(self) -> dict[Ref, str]:
        return {
            (kind, ident): obj.id
            for kind, found in self.objects.items()
            for ident, obj in found.items()
        }


async def gather(calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run `calls` concurrently (the client bounds how many are in flight); results in order.
    A failure cancels the others and is raised."""
    results: list[Any] = [None] * len(calls)

    async def one(i: int, call: Callable[[], Awaitable[T]]) -> None:
        results[i] = await call()

    try:
        async with anyio.create_task_group() as tg:
            for i, call in enumerate(calls):
                tg.start_soon(one, i, call)
    except BaseExceptionGroup as group:
        # The failure itself, not the task group's wrapper: callers catch the SDK's errors
        # (RPCError) as from a single call, and the command line prints one line.
        raise _first(group) from None
    return results


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    inner = group.exceptions[0]
    return _first(inner) if isinstance(inner, BaseExceptionGroup) else inner


def _service(client: Client, kind: Kind) -> Any:
    return getattr(client, kind.service)


async def lookup(client: Client, kind: Kind, key: str) -> Any:
    """The object of `kind` whose natural key is `key` (case-insensitive), or None."""
    ident = key.casefold()
    async for obj in _service(client, kind).list(f"{kind.key}:?", key):
        # The filter matches `*` as a wildcard, and `name` also matches tokens: check.
        if kind.holds(obj) and kind.ident(obj) == ident:
            return obj
    return None


async def _read_marked(
    client: Client, kinds: tuple[Kind, ...], owner: str
) -> dict[str, dict[str, Any]]:
    """The objects of `kinds` (which share one service) marked as `owner`'s, by kind and
    natural key."""
    found: dict[str, dict[str, Any]] = {k.name: {} for k in kinds}
    async for obj in _service(client, kinds[0]).list("tags:?", f"{MARK_KEY}={owner}"):
        for kind in kinds:
            if kind.holds(obj):
                found[kind.name][kind.ident(obj)] = obj
    return found


async def _read_missing(client: Client, kind: Kind, missing: list[str]) -> dict[str, Any]:
    """Objects of `kind` with the natural keys `missing`, those that exist."""
    found: dict[str, Any] = {}
    if len(missing) > LOOKUP_LIMIT:
        wanted = set(missing)
        async for obj in _service(client, kind).list(kind.listing):
            if kind.holds(obj) and kind.ident(obj) in wanted:
                found[kind.ident(obj)] = obj
    elif missing:
        results = await gather([functools.partial(lookup, client, kind, k) for k in missing])
        found = {k: obj for k, obj in zip(missing, results, strict=True) if obj is not None}
    return found


async def _read_links(
    client: Client, kind: Kind, filter: str, ids: Iterable[str], keep: Callable[[Any], bool]
) -> list[Any]:
    """Links of the objects with `ids` (filtered by `filter`, one `?`), those `keep` accepts."""
    service = _service(client, kind)
    wanted = sorted(set(ids))
    if not wanted:
        return []
    if len(wanted) > LOOKUP_LIMIT:
        return [link async for link in service.list("") if keep(link)]

    async def of(id: str) -> list[Any]:
        return [link async for link in service.list(filter, id) if keep(link)]

    pages = await gather([functools.partial(of, id) for id in wanted])
    return [link for page in pages for link in page]


async def read(client: Client, spec: Spec) -> Org:
    """The objects the declaration names or the mark claims, and the links between them."""
    org = Org()
    groups = [(USER, SERVICE), (ROLE,), (RESOURCE,), (NODE,)]  # one listing per service
    for found in await gather(
        [functools.partial(_read_marked, client, g, spec.owner) for g in groups]
    ):
        org.objects.update(found)
    missing = [
        [d.ident for d in spec.of(kind) if d.ident not in org.objects[kind.name]]
        for kind in OBJECTS
    ]
    extra = await gather(
        [
            functools.partial(_read_missing, client, k, m)
            for k, m in zip(OBJECTS, missing, strict=True)
        ]
    )
    for kind, found_ in zip(OBJECTS, extra, strict=True):
        org.objects[kind.name].update(found_)
    accounts = org.refs_by_id(USER, SERVICE)
    roles = org.refs_by_id(ROLE)
    resources = org.refs_by_id(RESOURCE)
    attachments, grants = await gather(
        [
            lambda: _read_links(
                client,
                ATTACHMENT,
                "roleid:?",
                roles,
                lambda a: a.account_id in accounts and a.role_id in roles,
            ),
            lambda: _read_links(
                client,
                GRANT,
                "resourceid:?",
                resources,
                lambda g: g.account_id in accounts and g.resource_id in resources,
            ),
        ]
    )
    org.links[ATTACHMENT.name] = attachments
    org.links[GRANT.name] = grants
    return org
