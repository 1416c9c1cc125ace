"""Applying a plan: creates and updates in dependency order (accounts, roles, resources, nodes,
then attachments and grants), deletes in reverse, each step one `client.bulk` call; then the
organisation is read again to verify, and what is still missing is done in another round.

Every step is safe to repeat, which is what makes an interrupted apply resumable:

- objects are found by natural key before they are created, and created already marked, so
  a second run finds what the first one made, reply or not;
- a create refused with ALREADY_EXISTS (a retried create whose first reply was lost, or a
  concurrent writer) adopts the existing object: it is looked up and updated if it differs
  (unless another owner's mark is on it: then it is a failure, as in a plan's conflicts);
- a delete answered NOT_FOUND is done (it went with a cascade, or an earlier attempt);
- duplicate links, which a retried create can leave since the API does not refuse them, are
  found by the verifying read and deleted in the next round.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sdm_async.bulk import Outcome
from sdm_async.errors import AlreadyExistsError, NotFoundError, RPCError
from sdm_async.provision.diff import (
    ACTIONS,
    Change,
    Plan,
    conflict,
    desired,
    differing,
    owners,
)
from sdm_async.provision.diff import plan as make_plan
from sdm_async.provision.kinds import (
    ATTACHMENT,
    LINKS,
    NODE,
    OBJECTS,
    SERVICE,
    Kind,
    is_managed,
    type_name,
)
from sdm_async.provision.org import gather, lookup
from sdm_async.provision.spec import Declared, Ref, Spec

if TYPE_CHECKING:
    from sdm_async.client import Client

__all__ = ["DONE", "TOKEN_KINDS", "ConflictError", "Failure", "Result", "Tokens", "apply"]

# Kinds whose creation returns a token the API shows only once (a service account's, to
# authenticate as it; a gateway's or relay's, to start it).
TOKEN_KINDS = (SERVICE, NODE)

DONE = {
    "create": "created",
    "adopt": "adopted",
    "update": "updated",
    "replace": "replaced",
    "delete": "deleted",
}

log = logging.getLogger("sdm_async.provision")


class ConflictError(ValueError):
    """The organisation holds objects that the declaration cannot take over; nothing was
    changed. `conflicts` says which, and what to do."""

    def __init__(self, conflicts: Sequence[str]) -> None:
        self.conflicts = tuple(conflicts)
        lines = "\n".join(f"  {c}" for c in conflicts)
        super().__init__(f"{len(conflicts)} conflict(s) block the apply:\n{lines}")


@dataclass(frozen=True)
class Failure:
    action: str
    kind: str
    key: str
    error: str  # the error's class and the server's message, which names fields, not values

    def __str__(self) -> str:
        return f"{self.action} {self.kind} {self.key!r}: {self.error}"


class Tokens(Mapping[str, str]):
    """Tokens handed out by the creations of one apply, by `kind/name` (`service/ci-deployer`,
    `node/gw-eu-1`). The API never shows them again: save them. Masked in repr."""

    def __init__(self) -> None:
        self._tokens: dict[str, str] = {}

    def __getitem__(self, key: str) -> str:
        return self._tokens[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def __repr__(self) -> str:
        return "Tokens({" + ", ".join(f"{k!r}: '***'" for k in self._tokens) + "})"

    def add(self, kind: Kind, key: str, token: str) -> None:
        self._tokens[f"{kind.name}/{key}"] = token


@dataclass
class Result:
    """What an apply did: changes made per (kind, action), failures, and whether a final
    read found the organisation matching the declaration (`converged`). `tokens`: the
    one-time tokens of the services and nodes created; `notes`: what needs a person's eye
    but is not a failure (a token that could not be had)."""

    done: Counter[tuple[str, str]] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    tokens: Tokens = field(default_factory=Tokens)
    notes: list[str] = field(default_factory=list)
    rounds: int = 0  # rounds of changes made (a verifying read follows each)
    converged: bool = False
    remaining: Plan | None = None  # what was still to do after the last round, if anything
    plan: Plan | None = field(default=None, repr=False)  # the first round's plan

    @property
    def ok(self) -> bool:
        return self.converged and not self.failures

    def count(self, action: str | None = None, kind: str | None = None) -> int:
        return sum(
            n
            for (k, a), n in self.done.items()
            if (action is None or a == action) and (kind is None or k == kind)
        )

    def summary(self) -> str:
        parts = [f"{self.count(a)} {DONE[a]}" for a in ACTIONS if self.count(a)]
        text = ", ".join(parts) if parts else "nothing to do"
        if self.failures:
            text += f"; {len(self.failures)} failed"
        if self.remaining is not None and not self.remaining.empty:
            text += f"; not converged after {self.rounds} rounds: {self.remaining.summary()}"
        return text


async def apply(
    client: Client,
    spec: Spec,
    *,
    prune: bool = False,
    plan: Plan | None = None,
    concurrency: int | None = None,
    progress: bool = False,
    max_rounds: int = 3,
    rewrite_secrets: bool = False,
    take_over: Collection[str] = (),
    tokens: Tokens | None = None,
) -> Result:
    """Make the organisation match `spec`. Deletes managed objects that are no longer
    declared only with `prune`. `plan` (from `plan(client, spec, prune=prune)`) saves the
    first read. Per-item failures are in the result, never raised; ConflictError is raised
    before any change when the declaration cannot be applied. `rewrite_secrets`: see `plan`
    (only the first round sends credentials again; the verifying reads cannot see them).
    `take_over`: see `plan`. The tokens of created services and nodes are in
    `result.tokens`, and nowhere else: the API shows them once. Pass `tokens` to have them
    gathered there as they come, so that they outlive a cancelled or failed apply."""
    if max_rounds < 1:
        raise ValueError("max_rounds must be at least 1")
    taking = owners(take_over)
    if plan is None:
        plan = await make_plan(
            client, spec, prune=prune, rewrite_secrets=rewrite_secrets, take_over=taking
        )
    current = plan
    if current.prune != prune:
        raise ValueError("the plan was made with another prune setting than this apply")
    if current.take_over != taking:
        raise ValueError("the plan was made with another take_over setting than this apply")
    result = Result(plan=current, tokens=Tokens() if tokens is None else tokens)
    while True:
        if current.conflicts:
            raise ConflictError(current.conflicts)
        if current.empty:
            result.converged = True
            return result
        if result.rounds == max_rounds:
            result.remaining = current
            return result
        result.rounds += 1
        await _Round(client, current, result, concurrency, progress).run()
        if result.failures:
            return result
        current = await make_plan(client, spec, prune=prune, take_over=taking)


def _describe(error: BaseException) -> str:
    message = error.msg if isinstance(error, RPCError) else str(error)
    return f"{type(error).__name__}: {message}"


class _Round:
    def __init__(
        self, client: Client, plan: Plan, result: Result, concurrency: int | None, progress: bool
    ) -> None:
        self.client = client
        self.plan = plan
        self.result = result
        self.concurrency = concurrency
        self.progress = progress
        self.ids: dict[Ref, str] = plan.org.ids()

    async def run(self) -> None:
        changes = self.plan.changes
        for kind in OBJECTS:
            await self.objects(kind, [c for c in changes if c.kind is kind])
        for kind in LINKS:
            await self.links(kind, [c for c in changes if c.kind is kind])
        for kind in reversed((*OBJECTS, *LINKS)):
            await self.delete(kind, [c for c in changes if c.kind is kind])

    # -- bookkeeping ----------------------------------------------------------------------

    def done(self, change: Change, action: str | None = None) -> None:
        self.result.done[(change.kind.name, action or change.action)] += 1

    def fail(self, change: Change, error: BaseException | str) -> None:
        text = error if isinstance(error, str) else _describe(error)
        failure = Failure(change.action, change.kind.name, change.key, text)
        # Debug only: failures are in the result, which callers show; a warning would also
        # reach stderr through logging's last-resort handler, and be printed twice.
        log.debug("%s", failure)
        self.result.failures.append(failure)

    async def bulk(
        self,
        method: Callable[..., Awaitable[Any]],
        items: list[Any],
        each: Callable[[Outcome[Any, Any]], None] | None = None,
    ) -> list[Outcome[Any, Any]]:
        """One outcome per item, in order; `each` sees every outcome as soon as it is in,
        so that what it keeps (a one-time token) outlives a cancelled apply."""
        outcomes: list[Any] = [None] * len(items)
        if not items:
            return outcomes
        job = self.client.bulk_iter(
            method, items, concurrency=self.concurrency, progress=self.progress
        )
        async with job as done:
            async for o in done:
                outcomes[o.index] = o
                if each is not None:
                    each(o)
        return outcomes

    def service(self, kind: Kind) -> Any:
        return getattr(self.client, kind.service)

    # -- objects --------------------------------------------------------------------------

    async def objects(self, kind: Kind, changes: list[Change]) -> None:
        replaces = [c for c in changes if c.action == "replace"]
        # The old object goes first: it holds the natural key the new one needs.
        cleared = await self.remove(kind, replaces, count=False)
        creates = [c for c in changes if c.action == "create"] + cleared
        retry = await self.create(kind, creates)
        updates = [c for c in changes if c.action in ("update", "adopt")] + retry
        await self.update(kind, updates)

    async def create(self, kind: Kind, changes: list[Change]) -> list[Change]:
        """Create; returns updates for objects that turned out to exist already."""
        log.info("create %d %s(s)", len(changes), kind.name)
        service = self.service(kind)

        def keep_token(o: Outcome[Any, Any]) -> None:
            token = getattr(o.response, "token", "") if kind in TOKEN_KINDS else ""
            if o.error is None and token:
                self.result.tokens.add(kind, _d(changes[o.index]).key, token)

        items = [desired(_d(c)) for c in changes]
        outcomes = await self.bulk(service.create, items, keep_token)
        existing: list[Change] = []
        for c, o in zip(changes, outcomes, strict=True):
            if o.error is None:
                self.ids[_d(c).ref] = getattr(o.response, kind.reply).id
                self.done(c)
            elif isinstance(o.error, AlreadyExistsError):
                existing.append(c)
            else:
                self.fail(c, o.error)
        return await self.adopt(kind, existing)

    async def adopt(self, kind: Kind, changes: list[Change]) -> list[Change]:
        async def find(c: Change) -> Any:
            try:
                return await lookup(self.client, kind, c.key)
            except RPCError as e:
                return e

        found = await gather([functools.partial(find, c) for c in changes])
        updates: list[Change] = []
        for c, obj in zip(changes, found, strict=True):
            d = _d(c)
            if isinstance(obj, RPCError):
                self.fail(c, obj)
            elif obj is None:
                self.fail(c, f"already exists, but no {kind.name} has this {kind.key}")
            elif type_name(obj) != type_name(d.model):
                self.fail(c, f"a {type_name(obj)} of this name appeared meanwhile; plan again")
            elif problem := conflict(d, obj, d.owner, self.plan.take_over):
                self.fail(c, f"appeared meanwhile and {problem}")
            else:
                self.ids[d.ref] = obj.id
                fields = differing(d, obj)
                if kind in TOKEN_KINDS and is_managed(obj, d.owner):
                    self.result.notes.append(
                        f"{kind.name} {c.key!r} was created by an earlier attempt whose reply "
                        f"was lost: its token is unknown; delete it and apply again for a new one"
                    )
                if is_managed(obj, d.owner) and not fields:
                    self.done(c)  # made by an earlier attempt whose reply was lost
                else:
                    action = "update" if is_managed(obj, d.owner) else "adopt"
                    updates.append(Change(action, kind, c.key, d, obj, fields))
        return updates

    async def update(self, kind: Kind, changes: list[Change]) -> None:
        log.info("update %d %s(s)", len(changes), kind.name)
        items = [desired(_d(c), c.current) for c in changes]
        outcomes = await self.bulk(self.service(kind).update, items)
        for c, o in zip(changes, outcomes, strict=True):
            if o.error is None:
                self.done(c)
            else:
                self.fail(c, o.error)

    # -- links ----------------------------------------------------------------------------

    async def links(self, kind: Kind, changes: list[Change]) -> None:
        replaces = [c for c in changes if c.action == "replace"]
        cleared = await self.remove(kind, replaces, count=False)
        todo: list[Change] = []
        items = []
        for c in [c for c in changes if c.action == "create"] + cleared:
            d = _d(c)
            assert d.ends is not None
            missing = [ref for ref in d.ends if ref not in self.ids]
            if missing:
                names = " and ".join(f"{k} {key!r}" for k, key in missing)
                self.fail(c, f"skipped: {names} does not exist (see the failures above)")
                continue
            link: Any = desired(d)
            link.account_id = self.ids[d.ends[0]]
            if kind is ATTACHMENT:
                link.role_id = self.ids[d.ends[1]]
            else:
                link.resource_id = self.ids[d.ends[1]]
            todo.append(c)
            items.append(link)
        log.info("create %d %s(s)", len(items), kind.name)
        outcomes = await self.bulk(self.service(kind).create, items)
        for c, o in zip(todo, outcomes, strict=True):
            # ALREADY_EXISTS: the link is there (an earlier attempt's reply was lost).
            if o.error is None or isinstance(o.error, AlreadyExistsError):
                self.done(c)
            else:
                self.fail(c, o.error)

    # -- deletes --------------------------------------------------------------------------

    async def delete(self, kind: Kind, changes: list[Change]) -> None:
        await self.remove(kind, [c for c in changes if c.action == "delete"], count=True)

    async def remove(self, kind: Kind, changes: list[Change], *, count: bool) -> list[Change]:
        """Delete the current objects of `changes`; returns the changes whose object is gone."""
        if changes:
            log.info("delete %d %s(s)", len(changes), kind.name)
        outcomes = await self.bulk(self.service(kind).delete, [c.current.id for c in changes])
        gone = []
        for c, o in zip(changes, outcomes, strict=True):
            # NOT_FOUND: gone already, with a cascade or an earlier attempt.
            if o.error is None or isinstance(o.error, NotFoundError):
                gone.append(c)
                if count:
                    self.done(c)
            else:
                self.fail(c, o.error)
        return gone


def _d(change: Change) -> Declared:
    """The declaration of a change that has one (every change but a delete)."""
    assert change.declared is not None
    return change.declared
