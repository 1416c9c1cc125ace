"""The methods that are not CRUD: views derived from the state (who reaches what, the audit
log, resource tags), managed secrets' retrieval, and the organisation's own settings.

Each handler takes the backend, the method and the request, and returns the response (or a
`Reply` for a list page); `SPECIAL` maps the API's method names to them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sdm_async._secrets import OAEP
from sdm_async.testing import schema
from sdm_async.testing.schema import Message, Method, nanos
from sdm_async.testing.status import bad_request, not_found
from sdm_async.testing.tables import Change

if TYPE_CHECKING:
    from sdm_async.testing.backend import Backend, Reply

Handler = Callable[["Backend", Method, Message], "Message | Reply"]


def enumerate_tags(b: Backend, m: Method, req: Message) -> Message | Reply:
    """Every distinct tag of every resource, sorted, filtered on `name`/`value`."""
    pairs = sorted(
        {
            (p.name, p.value)
            for r in b.tables["Resources"].records.values()
            for p in schema.member(r.msg)[1].tags.pairs
        }
    )
    tag_cls = schema.message_class("Tag")
    return b.derived_page(m, req, [tag_cls(name=n, value=v) for n, v in pairs])


def role_resources(b: Backend, m: Method, req: Message) -> Message | Reply:
    """`RoleResources.List`: what each role's access rules (and legacy grants) reach."""
    item = schema.message_class("RoleResource")
    found = [
        item(role_id=role_id, resource_id=resource_id)
        for role_id in b.tables["Roles"].records
        for resource_id in _reach(b, role_id)
    ]
    return b.derived_page(m, req, found)


def account_resources(b: Backend, m: Method, req: Message) -> Message | Reply:
    """`AccountResources.List`: direct grants still in force, then what attached roles
    reach."""
    item = schema.message_class("AccountResource")
    now = b.clock()
    found = []
    for grant in b.tables["AccountGrants"].records.values():
        g = grant.msg
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
    for attachment in b.tables["AccountAttachments"].records.values():
        a = attachment.msg
        for resource_id in _reach(b, a.role_id):
            found.append(item(account_id=a.account_id, resource_id=resource_id, role_id=a.role_id))
    return b.derived_page(m, req, found)


def _reach(b: Backend, role_id: str, seen: frozenset[str] = frozenset()) -> list[str]:
    """Resource ids a role reaches: its access rules, legacy role grants, and the roles
    attached to it (legacy composite roles)."""
    role = b.tables["Roles"].get(role_id)
    if role is None or role_id in seen:
        return []
    rules = json.loads(role.msg.access_rules) if role.msg.access_rules else []
    reached = [
        resource_id
        for resource_id, r in b.tables["Resources"].records.items()
        if any(_rule_matches(rule, resource_id, *schema.member(r.msg)) for rule in rules)
    ]
    reached += [
        g.msg.resource_id
        for g in b.tables["RoleGrants"].records.values()
        if g.msg.role_id == role_id
    ]
    for link in b.tables["RoleAttachments"].records.values():
        if link.msg.composite_role_id == role_id:
            reached += _reach(b, link.msg.attached_role_id, seen | {role_id})
    return list(dict.fromkeys(reached))  # once each, in order


def activities(b: Backend, m: Method, req: Message) -> Message | Reply:
    """`Activities.List`: the audit log, one activity per change, oldest first."""
    changes = sorted(
        ((service, c) for service, t in b.tables.items() for c in t.history),
        key=lambda sc: sc[1].at,
    )
    return b.derived_page(m, req, [_as_activity(b, s, c) for s, c in changes])


def activity(b: Backend, m: Method, req: Message) -> Message | Reply:
    for service, table in b.tables.items():
        for change in table.history:
            if change.activity == req.id:
                resp = m.response()
                resp.activity.CopyFrom(_as_activity(b, service, change))
                return resp
    raise not_found(f"activity {req.id!r} not found")


def _as_activity(b: Backend, service: str, change: Change) -> Message:
    table = b.tables[service]
    kind, obj = schema.member(table.item.FromString(change.data))
    noun = kind or _words(table.item.DESCRIPTOR.name)
    label = getattr(obj, "email", "") or getattr(obj, "name", "") or change.id
    activity = schema.message_class("Activity")(
        id=change.activity,
        verb=f"{noun} {_PAST[change.op]}",
        description=f"{_PAST[change.op].capitalize()} {noun} {label}.",
    )
    activity.completed_at.seconds, activity.completed_at.nanos = divmod(change.at, 1_000_000_000)
    entity = activity.entities.add(id=change.id, type=noun)
    entity.name = getattr(obj, "name", "")
    entity.email = getattr(obj, "email", "")
    actor = b.tables["Accounts"].get(change.actor) if change.actor else None
    activity.actor.id = change.actor
    if actor is not None:
        _kind, who = schema.member(actor.msg)
        activity.actor.email = getattr(who, "email", "")
        activity.actor.first_name = getattr(who, "first_name", "")
        activity.actor.last_name = getattr(who, "last_name", "")
    return activity


def nothing_recorded(b: Backend, m: Method, req: Message) -> Message | Reply:
    """Queries and replays record traffic through gateways, which never reaches an
    emulator: an empty log (the filter is still checked)."""
    return b.derived_page(m, req, [])


def ca_public_key(b: Backend, m: Method, req: Message) -> Message | Reply:
    """The organisation's SSH or RDP certificate authority key, made on first ask."""
    which = "ssh" if "SSH" in m.name else "rdp"
    if which not in b.ca_keys:
        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        if which == "ssh":
            text = key.public_bytes(
                serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
            ).decode()
        else:
            text = key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode()
        b.ca_keys[which] = text
    return m.response(public_key=b.ca_keys[which])


def org_url_info(b: Backend, m: Method, req: Message) -> Message | Reply:
    base = "https://emulator.strongdm.test"
    return m.response(
        base_url=base,
        websites_subdomain="emulator",
        oidc_issuer_url=f"{base}/oidc/emulator",
        saml_metadata_url=f"{base}/saml/emulator/metadata",
    )


def verify_jwt(b: Backend, m: Method, req: Message) -> Message | Reply:
    return m.response(valid=False)  # the emulator issues no tokens to verify


def get_mfa(b: Backend, m: Method, req: Message) -> Message | Reply:
    resp = m.response()
    resp.mfa.CopyFrom(b.mfa)
    return resp


def update_mfa(b: Backend, m: Method, req: Message) -> Message | Reply:
    _check_mfa(m, req.mfa)
    b.mfa.CopyFrom(req.mfa)
    if b.journal is not None:
        b.journal.put_hidden(MFA_JOURNAL_KEY, req.mfa.SerializeToString())
    resp = m.response()
    resp.mfa.CopyFrom(b.mfa)
    return resp


def test_mfa(b: Backend, m: Method, req: Message) -> Message | Reply:
    _check_mfa(m, req.mfa)
    return m.response()


def _check_mfa(m: Method, mfa: Message) -> None:
    if mfa.enabled and not mfa.provider:
        raise bad_request(f"{m.full_name}: mfa.provider is required when MFA is enabled")


def retrieve_secret(b: Backend, m: Method, req: Message) -> Message | Reply:
    """`ManagedSecrets.Retrieve`: the value, encrypted for the caller's public key."""
    record = b.tables["ManagedSecrets"].get(req.id)
    if record is None:
        raise not_found(f"managed secret {req.id!r} not found")
    try:
        key = serialization.load_pem_public_key(req.public_key)
    except ValueError:
        raise bad_request(
            "ManagedSecrets.Retrieve: public_key must be a PEM public key (RSA) to "
            "encrypt the value for"
        ) from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise bad_request("ManagedSecrets.Retrieve: public_key must be an RSA key")
    resp = m.response()
    resp.managed_secret.CopyFrom(record.msg)
    value = b.secret_values.get(req.id, b"")
    if value:
        resp.managed_secret.value = key.encrypt(value, OAEP)
    return resp


def healthcheck(b: Backend, m: Method, req: Message) -> Message | Reply:
    if req.id not in b.tables["Resources"].records:
        raise not_found(f"resource {req.id!r} not found")
    return m.response()  # the API only schedules the check


def account_permissions(b: Backend, m: Method, req: Message) -> Message | Reply:
    """`AccountPermissions.List`: the permissions of every token, as granted."""
    item = schema.message_class("AccountPermission")
    found = []
    for record in b.tables["Accounts"].records.values():
        kind, token = schema.member(record.msg)
        if kind == "token":
            for permission in token.permissions:
                found.append(
                    item(account_id=token.id, permission=permission, granted_at=token.created_at)
                )
    return b.derived_page(m, req, found)


def all_of(service: str) -> Handler:
    """A list of every object of `service` (filtered, paged): what an emulator can say of
    lists scoped by the caller or a related object."""

    def handler(b: Backend, m: Method, req: Message) -> Message | Reply:
        return b.derived_page(m, req, [r.msg for r in b.tables[service].records.values()])

    return handler


def validate_secret(b: Backend, m: Method, req: Message) -> Message | Reply:
    if b.tables["ManagedSecrets"].get(req.id) is None:
        raise not_found(f"managed secret {req.id!r} not found")
    return m.response(valid=True)


def tcp_probe(b: Backend, m: Method, req: Message) -> Message | Reply:
    """`Nodes.TCPProbe`: the node must exist; the probe itself cannot happen here."""
    if b.tables["Nodes"].get(req.node_id) is None:
        raise not_found(f"node {req.node_id!r} not found")
    return m.response(succeeded=False, error="the emulator does not reach the network")


def _words(name: str) -> str:
    """`AccountAttachment` -> `account attachment`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).lower()


SPECIAL: dict[str, Handler] = {
    "Resources.EnumerateTags": enumerate_tags,
    "Resources.Healthcheck": healthcheck,
    "ManagedSecrets.Retrieve": retrieve_secret,
    "RoleResources.List": role_resources,
    "AccountResources.List": account_resources,
    "Activities.List": activities,
    "Activities.Get": activity,
    "Queries.List": nothing_recorded,
    "Replays.List": nothing_recorded,
    "ControlPanel.GetSSHCAPublicKey": ca_public_key,
    "ControlPanel.GetRDPCAPublicKey": ca_public_key,
    "ControlPanel.GetOrgURLInfo": org_url_info,
    "ControlPanel.VerifyJWT": verify_jwt,
    "Organizations.GetMFA": get_mfa,
    "Organizations.UpdateMFA": update_mfa,
    "Organizations.TestMFA": test_mfa,
    "AccountPermissions.List": account_permissions,
    "ManagedSecrets.ListByActor": all_of("ManagedSecrets"),
    "ManagedSecrets.Validate": validate_secret,
    "SecretEngines.ListSecretStores": all_of("SecretStores"),
    "Nodes.TCPProbe": tcp_probe,
}
MFA_JOURNAL_KEY = "organization-mfa"  # the journal's key for the MFA settings

_PAST = {"create": "created", "update": "updated", "delete": "deleted"}


def _rule_matches(rule: Any, resource_id: str, kind: str, driver: Message) -> bool:
    """One access rule against one resource: `{"ids": [...]}`, or `type` and/or `tags`."""
    if not isinstance(rule, dict):
        return False
    if "ids" in rule:
        return resource_id in rule["ids"]
    if "type" not in rule and "tags" not in rule:
        return False
    if "type" in rule and str(rule["type"]).replace("", "").lower() != kind.replace("", ""):
        return False
    tags = {p.name: p.value for p in driver.tags.pairs}
    return all(tags.get(k) == v for k, v in (rule.get("tags") or {}).items())
