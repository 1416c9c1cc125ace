"""The organisation itself: `OrganizationHistory`, its remote identity groups, and
`Groups.CreateFromRoles`.

The organisation exists from the first thing recorded (or the emulator's start): its
history holds that creation, then one record per `Organizations.UpdateMFA` since the
emulator started. It has one remote identity group, `default`, made with it.
"""

from __future__ import annotations

from sdm_async.testing import schema
from sdm_async.testing.auth import Key
from sdm_async.testing.schema import Message, Method, nanos
from sdm_async.testing.status import already_exists, bad_request, not_found
from sdm_async.testing.views_base import After, Handler, Reply, State, set_time, stable_id

ORG_NAME = "emulator"
BASE_URL = "https://emulator.strongdm.test"
DEFAULT_GROUP = "default"


def created_at(b: State) -> int:
    """When the organisation came to be: its first recorded change, or the start."""
    firsts = [t.history[0].at for t in b.tables.values() if t.history]
    return min([b.extras.started, *firsts])


def organization(b: State, at: int, mfa: bytes) -> Message:
    org = schema.message_class("Organization")(
        id=stable_id("o-", ORG_NAME),
        name=ORG_NAME,
        kind="organization",
        websites_subdomain="emulator",
        saml_metadata_url=f"{BASE_URL}/saml/emulator/metadata",
    )
    set_time(org.created_at, created_at(b))
    set_time(org.updated_at, at)
    settings = schema.message_class("MFAConfig").FromString(mfa)
    org.mfa_enabled = settings.enabled
    org.mfa_provider = str(settings.provider) if settings.provider else ""
    return org


def organization_history(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    record_cls = schema.message_class("OrganizationHistoryRecord")
    start = created_at(b)
    changes = [(start, stable_id("at-", "organization", str(start)), b"")]
    changes += b.extras.org_changes
    records = []
    for at, activity, mfa in changes:
        record = record_cls(activity_id=activity, organization=organization(b, at, mfa))
        set_time(record.timestamp, at)
        records.append(record)
    return b.derived_page(m, req, records)


def record_mfa_change(b: State, m: Method, req: Message, reply: Reply, caller: Key) -> None:
    at = b.clock()
    mfa = reply.message.mfa.SerializeToString()
    b.extras.org_changes.append((at, stable_id("at-", "mfa", str(at)), mfa))


def _groups(b: State, at: int | None) -> list[Message]:
    """The remote identity groups (there is one), as of `at` (None: now)."""
    start = created_at(b)
    if at is not None and at < start:
        return []
    group = schema.message_class("RemoteIdentityGroup")(
        id=stable_id("ig-", DEFAULT_GROUP), name=DEFAULT_GROUP
    )
    return [group]


def remote_identity_groups(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    return b.derived_page(m, req, _groups(b, nanos(req.meta.snapshot_at) or None))


def remote_identity_group(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    for group in _groups(b, nanos(req.meta.snapshot_at) or None):
        if group.id == req.id:
            resp = m.response()
            resp.remote_identity_group.CopyFrom(group)
            return resp
    raise not_found(f"remote identity group {req.id!r} not found")


def remote_identity_groups_history(
    b: State, m: Method, req: Message, caller: Key
) -> Message | Reply:
    record_cls = schema.message_class("RemoteIdentityGroupHistory")
    start = created_at(b)
    records = []
    for group in _groups(b, None):
        record = record_cls(activity_id=stable_id("at-", "organization", str(start)))
        record.remote_identity_group.CopyFrom(group)
        set_time(record.timestamp, start)
        records.append(record)
    return b.derived_page(m, req, records)


def create_from_roles(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    """`Groups.CreateFromRoles`: per role, a group of the same name holding the users
    attached to the role, linked to the role (`GroupsRoles`). With `commit` false nothing
    is made and the groups come back without ids; `approval_flows` is always empty (the
    emulator's approval workflows do not name roles)."""
    if not req.role_ids:
        raise bad_request(f"{m.full_name}: role_ids is required (the roles to turn into groups)")
    roles = []
    for role_id in dict.fromkeys(req.role_ids):
        record = b.tables["Roles"].get(role_id)
        if record is None:
            raise not_found(f"{m.full_name}: role {role_id!r} not found")
        roles.append(record.msg)
    names = {schema.member(r.msg)[1].name.lower() for r in b.tables["Groups"].records.values()}
    for role in roles:  # all checked before anything is made
        if role.name.lower() in names:
            raise already_exists(f"{m.full_name}: a group named {role.name!r} already exists")
    methods = {x.full_name: x for x in schema.methods().values()}
    resp = m.response()
    for role in roles:
        out = resp.group_from_role.add()
        out.role.CopyFrom(role)
        out.group.name = role.name
        out.group.description = f"Made from role {role.name}"
        out.group.tags.CopyFrom(role.tags)
        for attachment in b.tables["AccountAttachments"].records.values():
            if attachment.msg.role_id != role.id:
                continue
            account = b.tables["Accounts"].get(attachment.msg.account_id)
            if account is not None and account.msg.WhichOneof("account") == "user":
                out.accounts.add().CopyFrom(account.msg.user)
        if not req.commit:
            continue
        create = methods["Groups.Create"]
        made = b.call(create, create.request(group=out.group), caller).message.group
        out.group.CopyFrom(made)
        link = methods["GroupsRoles.Create"]
        b.call(link, link.request(group_role={"group_id": made.id, "role_id": role.id}), caller)
        join = methods["AccountsGroups.Create"]
        for user in out.accounts:
            request = join.request(account_group={"account_id": user.id, "group_id": made.id})
            b.call(join, request, caller)
    return resp


HANDLERS: dict[str, Handler] = {
    "OrganizationHistory.List": organization_history,
    "RemoteIdentityGroups.List": remote_identity_groups,
    "RemoteIdentityGroups.Get": remote_identity_group,
    "RemoteIdentityGroupsHistory.List": remote_identity_groups_history,
    "Groups.CreateFromRoles": create_from_roles,
}
AFTER: dict[str, After] = {"Organizations.UpdateMFA": record_mfa_change}
