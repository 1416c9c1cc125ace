"""The plan: what must change for the organisation to match a declaration.

Rules, per object:

- declared, absent: create (marked);
- declared, present and marked: update the declared attributes that differ (attributes the
  file does not set are left alone; tags are the file's tags plus the mark);
- declared, present and not marked: adopt (update it as declared, and mark it);
- declared, present with another type (a redis where a postgres is declared): replace it if
  it is marked, else a conflict that blocks apply;
- marked, not declared: delete with prune, else only reported.

Links (attachments, grants) are owned when both ends are marked or declared; duplicates of
a declared link (left by a retried create whose reply was lost) are deleted.
"""

from __future__ import annotations

import datetime
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sdm_async._generated.constants import PermissionLevel
from sdm_async._generated.models import User
from sdm_async._model import Model
from sdm_async.provision.kinds import (
    LINKS,
    MARK_KEY,
    OBJECTS,
    RESOURCE,
    ROLE,
    SERVICE,
    USER,
    Kind,
    is_managed,
    type_name,
)
from sdm_async.provision.org import Org, read
from sdm_async.provision.spec import Declared, Ref, Spec

if TYPE_CHECKING:
    from sdm_async.client import Client

__all__ = ["ACTIONS", "Change", "Plan", "desired", "diff", "differing", "plan"]

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
        parts = [_field_change(f, d, cur) for f in self.fields]
        if self.action == "adopt":
            parts.insert(0, "exists unmarked: mark it as managed")
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
        return text


async def plan(
    client: Client, spec: Spec, *, prune: bool = False, rewrite_secrets: bool = False
) -> Plan:
    """Read the organisation and compare it with `spec`. Makes no change.

    The API does not return credentials (passwords, keys), so a credential changed only in
    the file cannot be seen; `rewrite_secrets` plans an update of every declared object
    whose credentials cannot be compared, to send them again (after rotating a password)."""
    return diff(spec, await read(client, spec), prune=prune, rewrite_secrets=rewrite_secrets)


def diff(spec: Spec, org: Org, *, prune: bool = False, rewrite_secrets: bool = False) -> Plan:
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
            ours.add(d.ref)
            if cur is None:
                changes.append(Change("create", kind, d.key, d))
            elif type(cur) is not type(d.model):
                change = f"type {type_name(cur)} -> {type_name(d.model)}"
                if is_managed(cur, spec.owner):
                    changes.append(Change("replace", kind, d.key, d, cur, reason=change))
                    replaced.add(d.ref)
                else:
                    conflicts.append(
                        f"{d.path}: {kind.name} {d.key!r} exists as a {type_name(cur)} that "
                        f"sdm-async does not manage; rename the declared one, or delete or "
                        f"rename the existing one"
                    )
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
    return Plan(tuple(changes), prune, unchanged, tuple(orphans), tuple(conflicts), org)


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


def wanted_tags(d: Declared) -> dict[str, str]:
    tags = dict(getattr(d.model, "tags", {}))
    tags[MARK_KEY] = d.owner
    return tags


def is_secret(d: Declared, f: str) -> bool:
    return f in d.secrets or f in type(d.model)._secrets


def differing(d: Declared, cur: Any, rewrite_secrets: bool = False) -> tuple[str, ...]:
    """The declared attributes whose value in `cur` differs. A credential the API did not
    return cannot be compared: it differs only if `rewrite_secrets`."""
    out = []
    for f in d.fields:
        want, have = getattr(d.model, f), getattr(cur, f)
        if f == "tags":
            same = wanted_tags(d) == have
        elif is_secret(d, f) and not have:
            same = not rewrite_secrets or not want
        elif isinstance(want, datetime.datetime):
            same = _same_moment(want, have)
        else:
            same = want == have
        if not same:
            out.append(f)
    return tuple(out)


def desired(d: Declared, cur: Any = None) -> Model:
    """What to send: `cur` (or a new object) with the declared attributes and the mark."""
    model: Model = d.model if cur is None else cur
    out = type(model).from_dict(model.to_dict())
    for f in d.fields:
        value = getattr(d.model, f)
        setattr(out, f, dict(value) if isinstance(value, dict) else value)
    if hasattr(out, "tags"):
        out.tags = wanted_tags(d)
    if isinstance(out, User) and "suspended" in d.fields:
        # The API suspends a user through its permission level; `suspended` only mirrors it.
        if out.suspended:
            out.permission_level = PermissionLevel.SUSPENDED
        elif out.permission_level == PermissionLevel.SUSPENDED:
            out.permission_level = PermissionLevel.USER
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
    tags = getattr(model, "tags", None)
    if tags:
        parts.append("tags " + ",".join(f"{k}={v}" for k, v in sorted(tags.items())))
    return " ".join(parts)


def _field_change(f: str, d: Declared, cur: Any) -> str:
    want, have = getattr(d.model, f), getattr(cur, f)
    if f == "tags":
        want = wanted_tags(d)
        added = [f"+{k}={v}" for k, v in sorted(want.items()) if have.get(k) != v]
        removed = [f"-{k}" for k in sorted(have) if k not in want]
        return "tags " + " ".join(added + removed)
    if is_secret(d, f):
        return f"{f} changed (secret)" if have else f"{f} sent again (secret)"
    if f == "access_rules":
        return "access rules changed"
    return f"{f}: {_show(d, f, have)} -> {_show(d, f, want)}"
