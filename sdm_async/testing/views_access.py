"""Who reaches what: `AccountResources`, `RoleResources`, their histories, and the granted
and requestable entitlements of accounts, roles and resources.

All are computed from one picture of the stored objects (`state_at`), the present one or
the one at a request's `snapshot_at`:

- an account reaches a resource through a direct grant still in force (origin: the grant)
  or through a role attached to it (origin: the role);
- a role reaches what its access rules match, its legacy role grants, and what the roles
  attached to it reach;
- a resource is requestable by the roles of an enabled workflow (`WorkflowRoles`) when the
  workflow's access rules match it, and by the accounts attached to those roles (origin:
  the workflow).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

from sdm_async.testing import schema
from sdm_async.testing.auth import Key
from sdm_async.testing.schema import Message, Method, nanos
from sdm_async.testing.status import bad_request, not_found
from sdm_async.testing.tables import Change
from sdm_async.testing.views_base import Handler, Reply, State, set_time

# The stored objects these views read.
SOURCES = (
    "Accounts",
    "Roles",
    "Resources",
    "AccountGrants",
    "AccountAttachments",
    "RoleGrants",
    "RoleAttachments",
    "Workflows",
    "WorkflowRoles",
)
Picture = dict[str, dict[str, Message]]  # service -> id -> the object (its set member)


def state_at(b: State, at: int | None) -> Picture:
    """The objects of `SOURCES` now (`at` None) or as they were at `at`, in creation order."""
    picture: Picture = {}
    for service in SOURCES:
        table = b.tables[service]
        if at is None:
            picture[service] = {id: schema.member(r.msg)[1] for id, r in table.records.items()}
            continue
        alive: dict[str, Change] = {}
        for change in table.history:
            if change.at > at:
                break
            if change.op == "delete":
                alive.pop(change.id, None)
            else:
                alive[change.id] = change
        ordered = sorted(alive.values(), key=lambda c: c.seq)
        picture[service] = {c.id: schema.member(table.item.FromString(c.data))[1] for c in ordered}
    return picture


def snapshot(req: Message) -> int | None:
    return nanos(req.meta.snapshot_at) or None  # zero: the present


def reach(p: Picture, role_id: str, seen: frozenset[str] = frozenset()) -> list[str]:
    """Resource ids a role reaches, once each, in order."""
    role = p["Roles"].get(role_id)
    if role is None or role_id in seen:
        return []
    reached = _matching(p, role.access_rules)
    reached += [g.resource_id for g in p["RoleGrants"].values() if g.role_id == role_id]
    for link in p["RoleAttachments"].values():
        if link.composite_role_id == role_id:
            reached += reach(p, link.attached_role_id, seen | {role_id})
    return list(dict.fromkeys(reached))


def _matching(p: Picture, access_rules: str) -> list[str]:
    rules = json.loads(access_rules) if access_rules else []
    return [
        resource_id
        for resource_id, r in p["Resources"].items()
        if any(rule_matches(rule, resource_id, _kind(r), r) for rule in rules)
    ]


def _kind(resource: Message) -> str:
    return str(resource.DESCRIPTOR.name)


def rule_matches(rule: Any, resource_id: str, kind: str, driver: Message) -> bool:
    """One access rule against one resource: `{"ids": [...]}`, or `type` and/or `tags`.

    `type` names the resource's kind as the API does in access rules (`postgres`,
    `amazon_eks`, ...): compared without underscores or case, so the message name
    (`AmazonEKS`) matches too."""
    if not isinstance(rule, dict):
        return False
    if "ids" in rule:
        return resource_id in rule["ids"]
    if "type" not in rule and "tags" not in rule:
        return False
    if "type" in rule and _flat(str(rule["type"])) not in {_flat(kind), _flat(_field(driver))}:
        return False
    tags = {p.name: p.value for p in driver.tags.pairs}
    return all(tags.get(k) == v for k, v in (rule.get("tags") or {}).items())


def _flat(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def _field(driver: Message) -> str:
    """The name of the Resource oneof member that holds this driver message."""
    return _members().get(driver.DESCRIPTOR.name, "")


@functools.cache
def _members() -> dict[str, str]:
    fields = schema.message_class("Resource").DESCRIPTOR.fields
    return {f.message_type.name: f.name for f in fields if f.message_type is not None}


def account_resources_of(p: Picture, now: int) -> list[Message]:
    """Direct grants in force at `now`, then what the attached roles reach."""
    item = schema.message_class("AccountResource")
    found = []
    for g in p["AccountGrants"].values():
        if 0 < nanos(g.valid_until) <= now:
            continue
        found.append(
            item(
                account_id=g.account_id,
                resource_id=g.resource_id,
                account_grant_id=g.id,
                granted_at=g.start_from,
                expires_at=g.valid_until,
            )
        )
    for a in p["AccountAttachments"].values():
        for resource_id in reach(p, a.role_id):
            found.append(item(account_id=a.account_id, resource_id=resource_id, role_id=a.role_id))
    return found


def role_resources_of(p: Picture) -> list[Message]:
    item = schema.message_class("RoleResource")
    return [
        item(role_id=role_id, resource_id=resource_id)
        for role_id in p["Roles"]
        for resource_id in reach(p, role_id)
    ]


def requestable_of(p: Picture) -> Iterator[tuple[str, str, str, str]]:
    """(account id or "", role id, resource id, workflow id) for what may be requested."""
    for workflow_id, w in p["Workflows"].items():
        if not w.enabled:
            continue
        resources = _matching(p, w.access_rules)
        for link in p["WorkflowRoles"].values():
            if link.workflow_id != workflow_id:
                continue
            for resource_id in resources:
                yield "", link.role_id, resource_id, workflow_id
            for a in p["AccountAttachments"].values():
                if a.role_id == link.role_id:
                    for resource_id in resources:
                        yield a.account_id, link.role_id, resource_id, workflow_id


def account_resources(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    at = snapshot(req)
    return b.derived_page(m, req, account_resources_of(state_at(b, at), at or b.clock()))


def role_resources(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    return b.derived_page(m, req, role_resources_of(state_at(b, snapshot(req))))


def _derived_history(b: State, m: Method, req: Message, account: bool) -> Message | Reply:
    """`AccountResourcesHistory`/`RoleResourcesHistory.List`: replay the changes to the
    sources in time order; each change that makes an entry appear or go is recorded with
    that change's activity and time (a grant that expires with time is no change)."""
    record_cls = schema.message_class(m.item.name if m.item is not None else "")
    target = "account_resource" if account else "role_resource"
    changes = sorted(
        ((s, c) for s in SOURCES for c in b.tables[s].history), key=lambda sc: sc[1].at
    )
    picture: Picture = {s: {} for s in SOURCES}
    before: dict[bytes, Message] = {}
    records = []
    for service, change in changes:
        if change.op == "delete":
            picture[service].pop(change.id, None)
        else:
            item = b.tables[service].item.FromString(change.data)
            picture[service][change.id] = schema.member(item)[1]
        entries = (
            account_resources_of(picture, change.at) if account else role_resources_of(picture)
        )
        now = {e.SerializeToString(deterministic=True): e for e in entries}
        for key, entry in now.items():
            if key not in before:
                records.append(_history_record(record_cls, target, change, entry, deleted=False))
        for key, entry in before.items():
            if key not in now:
                records.append(_history_record(record_cls, target, change, entry, deleted=True))
        before = now
    return b.derived_page(m, req, records)


def _history_record(
    cls: Any, target: str, change: Change, entry: Message, *, deleted: bool
) -> Message:
    record = cls(activity_id=change.activity)
    set_time(record.timestamp, change.at)
    getattr(record, target).CopyFrom(entry)
    if deleted:
        record.deleted_at.CopyFrom(record.timestamp)
    return record


def account_resources_history(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    return _derived_history(b, m, req, account=True)


def role_resources_history(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    return _derived_history(b, m, req, account=False)


def _scope(m: Method, req: Message, p: Picture, field: str, service: str) -> str:
    """The id a scoped list is about: required, and of an object that exists (then)."""
    id = str(getattr(req, field))
    if not id:
        raise bad_request(f"{m.full_name}: {field} is required")
    if id not in p[service]:
        raise not_found(f"{m.full_name}: {field} {id!r}: no such {service[:-1].lower()}")
    return id


SERVICE_OF = {"account_id": "Accounts", "resource_id": "Resources", "role_id": "Roles"}


def granted(scope: str, other: str) -> Handler:
    """`Granted{Account,Resource}Entitlements.List`: the `other` end of every reach of the
    scoped account or resource, with the grant or role it comes through (then)."""
    service = SERVICE_OF[scope]

    def handler(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
        at = snapshot(req)
        p = state_at(b, at)
        id = _scope(m, req, p, scope, service)
        item = schema.message_class(m.item.name if m.item is not None else "")
        found = [
            item(**{other: getattr(e, other)}, origin_id=e.account_grant_id or e.role_id)
            for e in account_resources_of(p, at or b.clock())
            if getattr(e, scope) == id
        ]
        return b.derived_page(m, req, found)

    return handler


def granted_role(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    p = state_at(b, snapshot(req))
    role_id = _scope(m, req, p, "role_id", "Roles")
    item = schema.message_class("GrantedRoleEntitlement")
    return b.derived_page(m, req, [item(resource_id=r) for r in reach(p, role_id)])


def requestable(scope: str) -> Handler:
    """`Requestable{Account,Resource,Role}Entitlements.List`, scoped by `scope`."""
    service = SERVICE_OF[scope]

    def handler(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
        p = state_at(b, snapshot(req))
        id = _scope(m, req, p, scope, service)
        item = schema.message_class(m.item.name if m.item is not None else "")
        seen: set[tuple[str, str]] = set()
        found = []
        for account_id, role_id, resource_id, workflow_id in requestable_of(p):
            if scope == "account_id" and account_id == id:
                key, entry = (resource_id, workflow_id), item(resource_id=resource_id)
            elif scope == "role_id" and not account_id and role_id == id:
                key, entry = (resource_id, workflow_id), item(resource_id=resource_id)
            elif scope == "resource_id" and account_id and resource_id == id:
                key, entry = (account_id, workflow_id), item(account_id=account_id)
            else:
                continue
            if key not in seen:
                seen.add(key)
                entry.origin_id = workflow_id
                found.append(entry)
        return b.derived_page(m, req, found)

    return handler


def account_permissions(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    """`AccountPermissions.List`: the permissions of every token, as granted (then)."""
    item = schema.message_class("AccountPermission")
    found = []
    for token in state_at(b, snapshot(req))["Accounts"].values():
        if token.DESCRIPTOR.name == "Token":
            for permission in token.permissions:
                found.append(
                    item(account_id=token.id, permission=permission, granted_at=token.created_at)
                )
    return b.derived_page(m, req, found)


HANDLERS: dict[str, Handler] = {
    "AccountResources.List": account_resources,
    "RoleResources.List": role_resources,
    "AccountResourcesHistory.List": account_resources_history,
    "RoleResourcesHistory.List": role_resources_history,
    "AccountPermissions.List": account_permissions,
    "GrantedAccountEntitlements.List": granted("account_id", "resource_id"),
    "GrantedResourceEntitlements.List": granted("resource_id", "account_id"),
    "GrantedRoleEntitlements.List": granted_role,
    "RequestableAccountEntitlements.List": requestable("account_id"),
    "RequestableResourceEntitlements.List": requestable("resource_id"),
    "RequestableRoleEntitlements.List": requestable("role_id"),
}
