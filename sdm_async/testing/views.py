"""The methods that are not CRUD, gathered from their families: who reaches what
(`views_access`), health (`views_health`), managed secrets and secret engines
(`views_secrets`), the organisation (`views_org`), access requests and recorded traffic
(`views_audit`); and here the audit log, resource tags and the organisation's settings.

`SPECIAL` maps the API's method names to their handlers, `AFTER` to what runs after a
method answered, `STORED` names the tables of objects the API lists but never creates.
The views import nothing of `backend.py` (see `views_base.State`).
"""

from __future__ import annotations

import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sdm_async.testing import (
    schema,
    views_access,
    views_audit,
    views_health,
    views_org,
    views_secrets,
)
from sdm_async.testing.auth import Key
from sdm_async.testing.schema import Message, Method
from sdm_async.testing.status import bad_request, not_found
from sdm_async.testing.tables import Change
from sdm_async.testing.views_base import After, Handler, Reply, State


def enumerate_tags(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
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


def activities(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    """`Activities.List`: the audit log, one activity per change, oldest first."""
    changes = sorted(
        ((service, c) for service, t in b.tables.items() for c in t.history),
        key=lambda sc: sc[1].at,
    )
    return b.derived_page(m, req, [_as_activity(b, s, c) for s, c in changes])


def activity(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    for service, table in b.tables.items():
        for change in table.history:
            if change.activity == req.id:
                resp = m.response()
                resp.activity.CopyFrom(_as_activity(b, service, change))
                return resp
    raise not_found(f"activity {req.id!r} not found")


def _as_activity(b: State, service: str, change: Change) -> Message:
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


def ca_public_key(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
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


def org_url_info(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    base = views_org.BASE_URL
    return m.response(
        base_url=base,
        websites_subdomain="emulator",
        oidc_issuer_url=f"{base}/oidc/emulator",
        saml_metadata_url=f"{base}/saml/emulator/metadata",
    )


def verify_jwt(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    return m.response(valid=False)  # the emulator issues no tokens to verify


def get_mfa(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    resp = m.response()
    resp.mfa.CopyFrom(b.mfa)
    return resp


def update_mfa(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    _check_mfa(m, req.mfa)
    b.mfa.CopyFrom(req.mfa)
    if b.journal is not None:
        b.journal.put_hidden(MFA_JOURNAL_KEY, req.mfa.SerializeToString())
    resp = m.response()
    resp.mfa.CopyFrom(b.mfa)
    return resp


def test_mfa(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    _check_mfa(m, req.mfa)
    return m.response()


def _check_mfa(m: Method, mfa: Message) -> None:
    if mfa.enabled and not mfa.provider:
        raise bad_request(f"{m.full_name}: mfa.provider is required when MFA is enabled")


def healthcheck(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    if req.id not in b.tables["Resources"].records:
        raise not_found(f"resource {req.id!r} not found")
    return m.response()  # the API only schedules the check


def all_of(service: str) -> Handler:
    """A list of every object of `service` (filtered, paged): what an emulator can say of
    lists scoped by the caller or a related object."""

    def handler(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
        return b.derived_page(m, req, [r.msg for r in b.tables[service].records.values()])

    return handler


def tcp_probe(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
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
    "Activities.List": activities,
    "Activities.Get": activity,
    "ControlPanel.GetSSHCAPublicKey": ca_public_key,
    "ControlPanel.GetRDPCAPublicKey": ca_public_key,
    "ControlPanel.GetOrgURLInfo": org_url_info,
    "ControlPanel.VerifyJWT": verify_jwt,
    "Organizations.GetMFA": get_mfa,
    "Organizations.UpdateMFA": update_mfa,
    "Organizations.TestMFA": test_mfa,
    "ManagedSecrets.ListByActor": all_of("ManagedSecrets"),
    "SecretEngines.ListSecretStores": all_of("SecretStores"),
    "Nodes.TCPProbe": tcp_probe,
    **views_access.HANDLERS,
    **views_health.HANDLERS,
    **views_secrets.HANDLERS,
    **views_org.HANDLERS,
    **views_audit.HANDLERS,
}
AFTER: dict[str, After] = {**views_secrets.AFTER, **views_org.AFTER}
STORED = views_audit.STORED
MFA_JOURNAL_KEY = "organization-mfa"  # the journal's key for the MFA settings

_PAST = {"create": "created", "update": "updated", "delete": "deleted"}
