"""The plan: what must change for the organisation to match a declaration.

Rules, per object:

- declared, absent: create (marked);
- declared, present and marked: update the declared attributes that differ (attributes the
  file does not state are left alone; tags are the file's tags plus the mark when the file
  states `tags`, else the object's own tags plus the mark);
- declared, present and not marked: adopt (update it as declared, and mark it);
- declared, present and marked by another owner: a conflict that blocks apply, unless that
  owner is in `take_over` (then it is adopted: updated as declared and marked as ours);
- declared, present with another type (a redis where a postgres is declared): replace it if
  it is marked as ours, else a conflict;
- marked, not declared: delete with prune, else only reported.

Links (attachments, grants) are owned when both ends are ours (marked or declared);
duplicates of a declared link (left by a retried create whose reply was lost) are deleted.

A user suspended by a declaration keeps the level it had in the tag `LEVEL_KEY`, which
unsuspending restores; a user suspended otherwise cannot be unsuspended by a declaration (a
conflict says what to do), since the API keeps no trace of its former level.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sdm_async._generated.constants import PermissionLevel
from sdm_async._generated.models import User
from sdm_async._model import Model
from sdm_async.provision.kinds import (
    LEVEL_KEY,
    LINKS,
    MARK_KEY,
    OBJECTS,
    RESOURCE,
    ROLE,
    SERVICE,
    USER,
    Kind,
    is_managed,
    owner_of,
    type_name,
)
from sdm_async.provision.org import Org, read
from sdm_async.provision.spec import Declared, Ref, Spec

if TYPE_CHECKING:
    from sdm_async.client import Client

__all__ = [
    "ACTIONS",
    "Change",
    "Plan",
    "conflict",
    "desired",
    "diff",
    "differing",
    "owners",
    "plan",
    "restored_level",
]

ACTIONS = ("create", "adopt", "update", "replace", "delete")


@dataclass(frozen=True)
class Change:
    """One call or two (replace: delete, then create) to make."""

    action: str  # one of ACTIONS
    kind: Kind
    key: str  # the natural key, as declared or as found
    declared: Declared | None = field(default=None, repr=False)
    current: Any = field(default=None, repr=False)  # the object as it is now
    fields: tuple[str, ...] = ()  # attributes that differ (update, adopt)
    reason: str = ""  # why, when not obvious: "not declared", "duplicate", "type ..."

    def detail(self) -> str:
        """What changes, for people: secret values are never shown."""
        d, cur = self.declared, self.current
        if self.action == "delete":
            return self.reason
        if self.action in ("create", "replace") and d is not None:
            text = _summary(d)
            return f"{self.reason}; {text}" if self.reason and text else self.reason or text
        if d is None or cur is None:
            return self.reason
        want = desired(d, cur)
        parts = [_field_change(f, d, cur, want) for f in self.fields]
        if self.action == "adopt":
            holder = owner_of(cur)
            parts.insert(
                0,
                f"owned by {holder!r}: take it over"
                if holder
                else "exists unmarked: mark it as managed",
            )
        return "; ".join(p for p in parts if p)


@dataclass(frozen=True)
class Plan:
    """Changes in the order apply makes them; conflicts block apply."""

    changes: tuple[Change, ...]
    prune: bool
    unchanged: int = 0
    orphans: tuple[Change, ...] = ()  # deletes that only prune would make
    conflicts: tuple[str, ...] = ()
    org: Org = field(default_factory=Org, repr=False)  # what the plan was computed from
    take_over: frozenset[str] = frozenset()  # other owners whose declared objects become ours

    @property
    def empty(self) -> bool:
        return not self.changes

    def counts(self) -> Counter[str]:
        """Changes per action."""
        return Counter(c.action for c in self.changes)

    def summary(self) -> str:
        counts = self.counts()
        parts = [f"{counts[a]} to {a}" for a in ACTIONS if counts[a]]
        text = ", ".join(parts) if parts else "no changes"
        text += f" ({self.unchanged} unchanged)"
        if self.orphans:
            text += (
                f"; {len(self.orphans)} managed object(s) no longer declared"
                " (apply --prune deletes them)"
            )
        if self.conflicts:
            text += f"; {len(self.conflicts)} conflict(s) block apply"
        return text


async def plan(
    client: Client,
    spec: Spec,
    *,
    prune: bool = False,
    rewrite_secrets: bool = False,
    take_over: Collection[str] = (),
) -> Plan:
    """Read the organisation and compare it with `spec`. Makes no change.

    The API does not return credentials (passwords, keys), so a credential changed only in
    the file cannot be seen; `rewrite_secrets` plans an update of every declared object
    whose credentials cannot be compared, to send them again (after rotating a password).
    `take_over`: owners (values of the mark) whose objects this declaration may adopt; any
    other owner's declared object is a conflict."""
    taking = owners(take_over)  # checked before any call
    org = await read(client, spec)
    return diff(spec, org, prune=prune, rewrite_secrets=rewrite_secrets, take_over=taking)


def diff(
    spec: Spec,
    org: Org,
    *,
    prune: bool = False,
    rewrite_secrets: bool = False,
    take_over: Collection[str] = (),
) -> Plan:
    taking = owners(take_over)
    changes: list[Change] = []
    deletes: list[Change] = []
    conflicts: list[str] = []
    unchanged = 0
    replaced: set[Ref] = set()
    ours: set[Ref] = set()  # marked or declared: after apply, marked
    for kind in OBJECTS:
        found = org.objects.get(kind.name, {})
        declared = {d.ident: d for d in spec.of(kind)}
        for d in declared.values():
            cur = found.get(d.ident)
            problem = conflict(d, cur, spec.owner, taking)
            if problem:
                conflicts.append(f"{d.path}: {kind.name} {d.key!r} {problem}")
                continue  # not ours: its links are not ours either
            ours.add(d.ref)
            if cur is None:
                changes.append(Change("create", kind, d.key, d))
            elif type(cur) is not type(d.model):
                change = f"type {type_name(cur)} -> {type_name(d.model)}"
                changes.append(Change("replace", kind, d.key, d, cur, reason=change))
                replaced.add(d.ref)
            else:
                fields = differing(d, cur, rewrite_secrets)
                if not is_managed(cur, spec.owner):
                    changes.append(Change("adopt", kind, d.key, d, cur, fields))
                elif fields:
                    changes.append(Change("update", kind, d.key, d, cur, fields))
                else:
                    unchanged += 1
        for ident, cur in found.items():
            if ident in declared or not is_managed(cur, spec.owner):
                continue
            ours.add((kind.name, ident))
            deletes.append(
                Change("delete", kind, getattr(cur, kind.key), current=cur, reason="not declared")
            )
    links, link_deletes, same = _diff_links(spec, org, ours, replaced)
    changes.extend(links)
    unchanged += same
    # Deletes go last, links first: the reverse of creation order.
    order = {k.name: i for i, k in enumerate((*OBJECTS, *LINKS))}
    objects = sorted(deletes, key=lambda c: -order[c.kind.name])
    if prune:
        changes.extend([*link_deletes, *objects])
        orphans: list[Change] = []
    else:
        duplicates = [c for c in link_deletes if c.reason == "duplicate"]
        changes.extend(duplicates)
        orphans = [*(c for c in link_deletes if c.reason != "duplicate"), *objects]
    return Plan(tuple(changes), prune, unchanged, tuple(orphans), tuple(conflicts), org, taking)


def owners(take_over: Collection[str]) -> frozenset[str]:
    """`take_over` as a set; a lone string would be taken letter by letter: refused."""
    if isinstance(take_over, str):
        raise TypeError(f"take_over takes a list of owners, e.g. [{take_over!r}]")
    return frozenset(take_over)


def conflict(d: Declared, cur: Any, owner: str, take_over: frozenset[str]) -> str:
    """Why the declaration cannot have `cur` as its object ("" when it can)."""
    if cur is None:
        return ""
    holder = owner_of(cur)
    if holder is not None and holder != owner and holder not in take_over:
        return (
            f"is owned by another declaration (tag {MARK_KEY}: {holder}): it is never "
            f"adopted, changed or deleted from here; remove it from this file, or take it "
            f"over with --take-over {holder} (Python: take_over=[{holder!r}])"
        )
    if type(cur) is not type(d.model):
        if holder == owner:
            return ""  # ours: replaced
        return (
            f"exists as a {type_name(cur)} that this declaration does not manage; rename "
            f"the declared one, or delete or rename the existing one"
        )
    if (
        isinstance(cur, User)
        and isinstance(d.model, User)
        and "suspended" in d.fields
        and not d.model.suspended
        and cur.permission_level == PermissionLevel.SUSPENDED
        and restored_level(d, cur) is None
    ):
        return (
            "was suspended outside this declaration, so the permission level to give back "
            "is unknown (the API keeps none): restore the user with the admin UI or the API, "
            f"or tag it `{LEVEL_KEY}: <level>` (e.g. user, admin) and apply again"
        )
    return ""


def _diff_links(
    spec: Spec, org: Org, ours: set[Ref], replaced: set[Ref]
) -> tuple[list[Change], list[Change], int]:
    """(creates and replaces, deletes, unchanged count) for attachments and grants."""
    changes: list[Change] = []
    deletes: list[Change] = []
    unchanged = 0
    accounts = org.refs_by_id(USER, SERVICE)
    for kind, targets in zip(LINKS, (org.refs_by_id(ROLE), org.refs_by_id(RESOURCE)), strict=True):
        target_field = "role_id" if kind.name == "attachment" else "resource_id"
        existing: dict[tuple[Ref, Ref], list[Any]] = {}
        for link in org.links.get(kind.name, []):
            pair = (accounts[link.account_id], targets[getattr(link, target_field)])
            existing.setdefault(pair, []).append(link)
        declared = {d.ends: d for d in spec.of(kind) if d.ends is not None}
        for pair, d in declared.items():
            # A replaced end takes its links with it (cascading delete): start afresh.
            current = [] if replaced & set(pair) else existing.get(pair, [])
            keep = next((c for c in current if not differing(d, c)), None)
            if keep is not None:
                unchanged += 1
            elif current:
                keep = current[0]
                fields = differing(d, keep)
                changes.append(Change("replace", kind, d.key, d, keep, fields, "window changes"))
            else:
                changes.append(Change("create", kind, d.key, d))
            for extra in current:
                if extra is not keep:
                    deletes.append(Change("delete", kind, d.key, current=extra, reason="duplicate"))
        for pair, found in existing.items():
            if pair in declared or not set(pair) <= ours or replaced & set(pair):
                continue
            key = f"{_key_of(org, pair[0])} -> {_key_of(org, pair[1])}"
            for link in found:
                deletes.append(Change("delete", kind, key, current=link, reason="not declared"))
    deletes.sort(key=lambda c: -LINKS.index(c.kind))
    return changes, deletes, unchanged


def _key_of(org: Org, ref: Ref) -> str:
    obj = org.get(ref)
    kind = next(k for k in OBJECTS if k.name == ref[0])
    return str(getattr(obj, kind.key)) if obj is not None else ref[1]


# -- comparing --------------------------------------------------------------------------------


def _same_moment(a: datetime.datetime | None, b: datetime.datetime | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b


def wanted_tags(d: Declared, cur: Any = None) -> dict[str, str]:
    """The tags to write: the file's when it states `tags`, else the object's own; plus the
    mark, and the remembered level of a suspended user (see `desired`)."""
    have = dict(getattr(cur, "tags", None) or {})
    tags = dict(getattr(d.model, "tags", None) or {}) if "tags" in d.fields else dict(have)
    if LEVEL_KEY in have:
        tags[LEVEL_KEY] = have[LEVEL_KEY]
    tags[MARK_KEY] = d.owner
    return tags


def is_secret(d: Declared, f: str) -> bool:
    """Never shown: a credential, or a value taken from the environment."""
    return f in d.secrets or is_credential(d, f)


def is_credential(d: Declared, f: str) -> bool:
    """A credential field: the API never returns it, so it cannot be compared."""
    return f in type(d.model)._secrets


def _written(d: Declared) -> tuple[str, ...]:
    """The attributes apply writes: those the file states, the tags (for the mark), and the
    permission level of a user whose suspension is declared (the API suspends through it)."""
    out = list(d.fields)
    if hasattr(d.model, "tags") and "tags" not in out:
        out.append("tags")
    if isinstance(d.model, User) and "suspended" in out and "permission_level" not in out:
        out.append("permission_level")
    return tuple(out)


def differing(d: Declared, cur: Any, rewrite_secrets: bool = False) -> tuple[str, ...]:
    """The attributes apply would change in `cur`. A credential the API did not return
    cannot be compared: it differs only if `rewrite_secrets`. (A value from the environment
    in any other field is compared as usual: the API returns it.)"""
    want = desired(d, cur)
    out = []
    for f in _written(d):
        new, have = getattr(want, f), getattr(cur, f)
        if is_credential(d, f) and not have:
            same = not rewrite_secrets or not new
        elif isinstance(new, datetime.datetime):
            same = _same_moment(new, have)
        else:
            same = new == have
        if not same:
            out.append(f)
    return tuple(out)


_LEVELS = frozenset(
    v for k, v in vars(PermissionLevel).items() if k.isupper() and isinstance(v, str)
) - {PermissionLevel.SUSPENDED, PermissionLevel.EMPTY}


def restored_level(d: Declared, cur: Any) -> str | None:
    """The permission level to give a suspended user back: the file's, else the one
    remembered when the declaration suspended it; None when unknown."""
    if "permission_level" in d.fields and isinstance(d.model, User):
        return d.model.permission_level
    level = (getattr(cur, "tags", None) or {}).get(LEVEL_KEY)
    return level if level in _LEVELS else None


def desired(d: Declared, cur: Any = None) -> Model:
    """What to send: `cur` (or a new object) with the declared attributes and the mark."""
    model: Model = d.model if cur is None else cur
    out = type(model).from_dict(model.to_dict())
    for f in d.fields:
        value = getattr(d.model, f)
        setattr(out, f, dict(value) if isinstance(value, dict) else value)
    if hasattr(out, "tags"):
        out.tags = wanted_tags(d, cur)
    if isinstance(out, User) and "suspended" in d.fields:
        # The API suspends a user through its permission level, which it then forgets: the
        # level is remembered in a tag while suspended, and given back when unsuspended.
        before = cur.permission_level if cur is not None else PermissionLevel.USER
        if out.suspended:
            if before != PermissionLevel.SUSPENDED:
                out.tags[LEVEL_KEY] = before or PermissionLevel.USER
            out.permission_level = PermissionLevel.SUSPENDED
        elif before == PermissionLevel.SUSPENDED:
            level = restored_level(d, cur)
            if level is not None:  # else a conflict (see `diff`): left suspended
                out.permission_level = level
                out.tags.pop(LEVEL_KEY, None)
    return out


# -- showing ----------------------------------------------------------------------------------


def _show(d: Declared, f: str, value: Any) -> str:
    if is_secret(d, f):
        return "***"
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return repr(value)


def _summary(d: Declared) -> str:
    model = d.model
    parts: list[str] = []
    if d.kind.name in ("resource", "node"):
        parts.append(type_name(model))
    for f in d.fields:
        if f in ("name", "email", "tags"):
            continue
        value = getattr(model, f)
        if f == "access_rules":
            parts.append(f"{len(value)} access rule(s)")
        else:
            parts.append(f"{f}={_show(d, f, value)}")
    tags = getattr(model, "tags", None) if "tags" in d.fields else None
    if tags:
        parts.append("tags " + ",".join(f"{k}={_tag(d, v)}" for k, v in sorted(tags.items())))
    return " ".join(parts)


def _tag(d: Declared, value: str) -> str:
    """A tag's value, unless the file's tags hold a secret (a `${VAR}` the loader hides)."""
    return "***" if is_secret(d, "tags") else value


def _field_change(f: str, d: Declared, cur: Any, new: Model) -> str:
    want, have = getattr(new, f), getattr(cur, f)
    if f == "tags":
        added = [f"+{k}={_tag(d, v)}" for k, v in sorted(want.items()) if have.get(k) != v]
        removed = [f"-{k}" for k in sorted(have) if k not in want]
        return "tags " + " ".join(added + removed)
    if is_secret(d, f):
        return f"{f} changed (secret)" if have else f"{f} sent again (secret)"
    if f == "access_rules":
        return "access rules changed"
    return f"{f}: {_show(d, f, have)} -> {_show(d, f, want)}"
