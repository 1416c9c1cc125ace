"""The emulator's state and domain rules, apart from the wire (moto's "backend").

Every CRUD-shaped service (Create/Get/Update/Delete/List) is served by one generic engine
driven by the descriptors; the rules of the core objects are data (`UNIQUE`, `REFERENCES`)
plus a few hooks (keys for tokens, a token for nodes, access rules as JSON). `*History`
services read the history of the service they are named after.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from sdm_async.testing import schema
from sdm_async.testing.auth import Key, Keys, new_key_pair
from sdm_async.testing.filters import FilterError, compile_filter
from sdm_async.testing.schema import Message, Method
from sdm_async.testing.status import ApiError, already_exists, bad_request, not_found
from sdm_async.testing.tables import Change, Record, Table

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

# Natural keys that must be unique within a service, per type of object ("*": any type).
UNIQUE: dict[str, dict[str, tuple[str, ...]]] = {
    "Accounts": {"user": ("email",), "service": ("name",), "token": ("name",)},
    "Roles": {"*": ("name",)},
    "Resources": {"*": ("name",)},
    "Nodes": {"*": ("name",)},
    "SecretStores": {"*": ("name",)},
    "Groups": {"*": ("name",)},
    "AccountAttachments": {"*": ("account_id", "role_id")},
    "RoleAttachments": {"*": ("composite_role_id", "attached_role_id")},
    "RoleGrants": {"*": ("role_id", "resource_id")},
    "AccountsGroups": {"*": ("account_id", "group_id")},
    "GroupsRoles": {"*": ("group_id", "role_id")},
}

# Fields that name another object: it must exist, and deleting it deletes what refers to it.
REFERENCES: dict[str, dict[str, str]] = {
    "AccountAttachments": {"account_id": "Accounts", "role_id": "Roles"},
    "AccountGrants": {"account_id": "Accounts", "resource_id": "Resources"},
    "RoleAttachments": {"composite_role_id": "Roles", "attached_role_id": "Roles"},
    "RoleGrants": {"role_id": "Roles", "resource_id": "Resources"},
    "AccountsGroups": {"account_id": "Accounts", "group_id": "Groups"},
    "GroupsRoles": {"group_id": "Groups", "role_id": "Roles"},
}


class Journal(Protocol):
    """Where changes go to survive a restart (see `journal.py`); None keeps them in memory."""

    def append(self, service: str, change: Change) -> None: ...

    def add_key(
        self, access_key: str, secret_key: str, account_id: str, permissions: frozenset[str] | None
    ) -> None: ...

    def put_hidden(self, id: str, data: bytes | None) -> None: ...


@dataclass(slots=True)
class Reply:
    message: Message  # the response, without the listed objects
    tail: bytes = b""  # a listing's objects, already in wire form, appended after `message`


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _nanos(ts: Any) -> int:
    return int(ts.seconds) * 1_000_000_000 + int(ts.nanos)


class Backend:
    def __init__(
        self,
        keys: Keys,
        journal: Journal | None = None,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        max_page_size: int = MAX_PAGE_SIZE,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.keys = keys
        self.journal = journal
        self.page_size = page_size
        self.max_page_size = max_page_size
        self.clock = clock
        self.tables: dict[str, Table] = {}
        self._unique: dict[str, dict[str, str]] = {}  # service -> natural key -> id
        self._seq = 0
        self._last_at = 0
        # Secret engines' private keys, and managed secrets' values, kept apart from the
        # objects: the API never returns a value except encrypted for a Retrieve.
        self._engine_keys: dict[str, rsa.RSAPrivateKey] = {}
        self._secret_values: dict[str, bytes] = {}
        self._mfa = schema.message_class("MFAConfig")()  # the organisation's settings
        self._ca_keys: dict[str, str] = {}  # the SSH and RDP certificate authorities' keys
        for m in schema.methods().values():
            if m.kind == "create" and m.item is not None and "id" in _id_fields(m.item):
                item_cls = schema.message_class(m.item.name)
                self.tables[m.service] = Table(m.service, item_cls)
                self._unique[m.service] = {}

    # -- dispatch ---------------------------------------------------------------------------

    def implemented(self, m: Method) -> bool:
        if m.full_name in _SPECIAL:
            return True
        if m.service in self.tables:
            return m.kind in schema.CRUD
        return m.kind == "list" and m.service.removesuffix("History") in self.tables

    def call(self, m: Method, request: Message, caller: Key) -> Reply:
        if not self.implemented(m):
            raise ApiError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{m.full_name} is not emulated (see the README's list of emulated methods)",
            )
        special = _SPECIAL.get(m.full_name)
        if special is not None:
            return getattr(self, special)(m, request)  # type: ignore[no-any-return]
        if m.service not in self.tables:
            return self._history(m, request)
        handler: Callable[[Method, Message, Key], Reply] = getattr(self, f"_{m.kind}")
        return handler(m, request, caller)

    # -- the generic engine -----------------------------------------------------------------

    def _create(self, m: Method, req: Message, caller: Key) -> Reply:
        obj = getattr(req, m.item_field)
        kind, inner = self._checked(m, obj, creating=True)
        table = self.tables[m.service]
        for name in schema.read_only_fields(inner) + schema.write_only_fields(inner.DESCRIPTOR):
            inner.ClearField(name)
        if m.service == "Nodes" and not inner.name:
            inner.name = f"{kind}-{secrets.token_hex(4)}"
        _derive(m.service, kind, inner)
        natural = self._natural_key(m.service, kind, inner)
        if natural is not None and natural in self._unique[m.service]:
            raise already_exists(f"{_noun(m)} {_describe(natural)} already exists")
        inner.id = schema.id_prefix(m.service) + secrets.token_hex(8)
        if m.service == "SecretEngines":
            inner.public_key = self._new_engine_key(inner.id)
        if m.service == "ManagedSecrets":
            self._keep_secret_value(inner)
        if "created_at" in inner.DESCRIPTOR.fields_by_name:
            at = self._now()
            inner.created_at.seconds, inner.created_at.nanos = divmod(at, 1_000_000_000)
        resp = m.response()
        extra = self._on_create(m.service, kind, inner, resp)
        self._commit(table, "create", inner.id, obj, natural, caller.account_id)
        getattr(resp, m.item_field).CopyFrom(obj)
        if extra is not None:
            extra()
        return Reply(resp)

    def _get(self, m: Method, req: Message, caller: Key) -> Reply:
        table = self.tables[m.service]
        snapshot = _nanos(req.meta.snapshot_at) or None  # zero: the present
        record = table.get(req.id) if snapshot is None else table.get_as_of(req.id, snapshot)
        if record is None:
            raise not_found(f"{_noun(m)} {req.id!r} not found")
        resp = m.response()
        getattr(resp, m.item_field).CopyFrom(record.msg)
        return Reply(resp)

    def _update(self, m: Method, req: Message, caller: Key) -> Reply:
        obj = getattr(req, m.item_field)
        kind, inner = self._checked(m, obj, creating=False)
        table = self.tables[m.service]
        for name in schema.write_only_fields(inner.DESCRIPTOR):
            inner.ClearField(name)
        id = inner.id or getattr(req, "id", "")
        old = table.get(id)
        if old is None:
            raise not_found(f"{_noun(m)} {id!r} not found")
        old_kind, old_inner = schema.member(old.msg)
        if old_kind != kind:
            raise bad_request(f"{_noun(m)} {id!r} is a {old_kind}; its type cannot change")
        inner.id = id
        for name in schema.read_only_fields(inner):  # the server's to set: keep them
            if inner.DESCRIPTOR.fields_by_name[name].message_type is not None:
                if old_inner.HasField(name):
                    getattr(inner, name).CopyFrom(getattr(old_inner, name))
                else:
                    inner.ClearField(name)
            else:
                setattr(inner, name, getattr(old_inner, name))
        _derive(m.service, kind, inner)
        natural = self._natural_key(m.service, kind, inner)
        before = self._natural_key(m.service, kind, old_inner)
        if natural is not None and natural != before and natural in self._unique[m.service]:
            raise already_exists(f"{_noun(m)} {_describe(natural)} already exists")
        if before is not None and before != natural:
            self._unique[m.service].pop(before, None)
        if m.service == "ManagedSecrets" and inner.value:  # refused updates keep the old one
            self._keep_secret_value(inner)
        self._commit(table, "update", id, obj, natural, caller.account_id)
        if m.service == "Accounts" and kind == "token":
            suspended = self.keys.suspended
            (suspended.add if inner.suspended else suspended.discard)(id)
        resp = m.response()
        getattr(resp, m.item_field).CopyFrom(obj)
        return Reply(resp)

    def _delete(self, m: Method, req: Message, caller: Key) -> Reply:
        table = self.tables[m.service]
        if req.id not in table.records:
            raise not_found(f"{_noun(m)} {req.id!r} not found")
        self._remove(m.service, req.id, caller.account_id)
        return Reply(m.response())

    def _remove(self, service: str, id: str, actor: str) -> None:
        # What refers to the object goes with it, as attachments go with their account.
        for other, fields in REFERENCES.items():
            targets = [f for f, s in fields.items() if s == service]
            if targets and other in self.tables:
                doomed = [
                    r.msg.id
                    for r in self.tables[other].records.values()
                    if any(getattr(r.msg, f) == id for f in targets)
                ]
                for dependent in doomed:
                    self._remove(other, dependent, actor)
        table = self.tables[service]
        old = table.records[id]
        hidden = self._secret_values.pop(id, None), self._engine_keys.pop(id, None)
        if hidden != (None, None) and self.journal is not None:
            self.journal.put_hidden(id, None)
        kind, inner = schema.member(old.msg)
        natural = self._natural_key(service, kind, inner)
        if natural is not None:
            self._unique[service].pop(natural, None)
        change = Change(old.seq, self._now(), "delete", id, old.data, _new_activity_id(), actor)
        table.apply(change)
        if self.journal is not None:
            self.journal.append(service, change)
        if service == "Accounts" and kind == "token":
            self.keys.remove_account(id)

    def _list(self, m: Method, req: Message, caller: Key) -> Reply:
        table = self.tables[m.service]
        keep = self._filter(m, req.filter)
        after, limit = self._paging(req.meta)
        snapshot = _nanos(req.meta.snapshot_at) or None  # zero: the present
        records, next_seq = table.page(after, limit, keep, snapshot)
        return self._page_reply(m, [r.data for r in records], next_seq)

    def _history(self, m: Method, req: Message) -> Reply:
        """`XHistory.List`: every change to X, oldest first, as history records."""
        source = self.tables[m.service.removesuffix("History")]
        record_cls = schema.message_class(m.item.name) if m.item is not None else None
        assert record_cls is not None
        target = next(
            f.name for f in record_cls.DESCRIPTOR.fields if f.message_type is source.item.DESCRIPTOR
        )
        keep = self._filter(m, req.filter)
        after, limit = self._paging(req.meta)
        found: list[bytes] = []
        next_seq: int | None = None
        for index in range(after, len(source.history)):
            change = source.history[index]
            record = record_cls(activity_id=change.activity)
            record.timestamp.seconds, record.timestamp.nanos = divmod(change.at, 1_000_000_000)
            getattr(record, target).ParseFromString(change.data)
            if change.op == "delete":
                record.deleted_at.CopyFrom(record.timestamp)
            if keep is not None and not keep(record):
                continue
            if len(found) == limit:
                next_seq = index
                break
            found.append(record.SerializeToString())
        return self._page_reply(m, found, next_seq)

    # -- the few methods that are not CRUD -------------------------------------------------

    def _enumerate_tags(self, m: Method, req: Message) -> Reply:
        """Every distinct tag of every resource, sorted, filtered on `name`/`value`."""
        pairs = sorted(
            {
                (p.name, p.value)
                for r in self.tables["Resources"].records.values()
                for p in schema.member(r.msg)[1].tags.pairs
            }
        )
        tag_cls = schema.message_class("Tag")
        return self._derived_page(m, req, [tag_cls(name=n, value=v) for n, v in pairs])

    def _role_resources(self, m: Method, req: Message) -> Reply:
        """`RoleResources.List`: what each role's access rules (and legacy grants) reach."""
        item = schema.message_class("RoleResource")
        found = [
            item(role_id=role_id, resource_id=resource_id)
            for role_id in self.tables["Roles"].records
            for resource_id in self._reach(role_id)
        ]
        return self._derived_page(m, req, found)

    def _account_resources(self, m: Method, req: Message) -> Reply:
        """`AccountResources.List`: direct grants still in force, then what attached roles
        reach."""
        item = schema.message_class("AccountResource")
        now = self.clock()
        found = []
        for grant in self.tables["AccountGrants"].records.values():
            g = grant.msg
            if 0 < _nanos(g.valid_until) <= now:
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
        for attachment in self.tables["AccountAttachments"].records.values():
            a = attachment.msg
            for resource_id in self._reach(a.role_id):
                found.append(
                    item(account_id=a.account_id, resource_id=resource_id, role_id=a.role_id)
                )
        return self._derived_page(m, req, found)

    def _reach(self, role_id: str, seen: frozenset[str] = frozenset()) -> list[str]:
        """Resource ids a role reaches: its access rules, legacy role grants, and the roles
        attached to it (legacy composite roles)."""
        role = self.tables["Roles"].get(role_id)
        if role is None or role_id in seen:
            return []
        rules = json.loads(role.msg.access_rules) if role.msg.access_rules else []
        reached = [
            resource_id
            for resource_id, r in self.tables["Resources"].records.items()
            if any(_rule_matches(rule, resource_id, *schema.member(r.msg)) for rule in rules)
        ]
        reached += [
            g.msg.resource_id
            for g in self.tables["RoleGrants"].records.values()
            if g.msg.role_id == role_id
        ]
        for link in self.tables["RoleAttachments"].records.values():
            if link.msg.composite_role_id == role_id:
                reached += self._reach(link.msg.attached_role_id, seen | {role_id})
        return list(dict.fromkeys(reached))  # once each, in order

    def _activities(self, m: Method, req: Message) -> Reply:
        """`Activities.List`: the audit log, one activity per change, oldest first."""
        changes = sorted(
            ((service, c) for service, t in self.tables.items() for c in t.history),
            key=lambda sc: sc[1].at,
        )
        return self._derived_page(m, req, [self._as_activity(s, c) for s, c in changes])

    def _activity(self, m: Method, req: Message) -> Reply:
        for service, table in self.tables.items():
            for change in table.history:
                if change.activity == req.id:
                    resp = m.response()
                    resp.activity.CopyFrom(self._as_activity(service, change))
                    return Reply(resp)
        raise not_found(f"activity {req.id!r} not found")

    def _as_activity(self, service: str, change: Change) -> Message:
        table = self.tables[service]
        kind, obj = schema.member(table.item.FromString(change.data))
        noun = kind or _words(table.item.DESCRIPTOR.name)
        label = getattr(obj, "email", "") or getattr(obj, "name", "") or change.id
        activity = schema.message_class("Activity")(
            id=change.activity,
            verb=f"{noun} {_PAST[change.op]}",
            description=f"{_PAST[change.op].capitalize()} {noun} {label}.",
        )
        activity.completed_at.seconds, activity.completed_at.nanos = divmod(
            change.at, 1_000_000_000
        )
        entity = activity.entities.add(id=change.id, type=noun)
        entity.name = getattr(obj, "name", "")
        entity.email = getattr(obj, "email", "")
        actor = self.tables["Accounts"].get(change.actor) if change.actor else None
        activity.actor.id = change.actor
        if actor is not None:
            _kind, who = schema.member(actor.msg)
            activity.actor.email = getattr(who, "email", "")
            activity.actor.first_name = getattr(who, "first_name", "")
            activity.actor.last_name = getattr(who, "last_name", "")
        return activity

    def _nothing_recorded(self, m: Method, req: Message) -> Reply:
        """Queries and replays record traffic through gateways, which never reaches an
        emulator: an empty log (the filter is still checked)."""
        return self._derived_page(m, req, [])

    def _ca_public_key(self, m: Method, req: Message) -> Reply:
        """The organisation's SSH or RDP certificate authority key, made on first ask."""
        which = "ssh" if "SSH" in m.name else "rdp"
        if which not in self._ca_keys:
            key = ec.generate_private_key(ec.SECP256R1()).public_key()
            if which == "ssh":
                text = key.public_bytes(
                    serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
                ).decode()
            else:
                text = key.public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                ).decode()
            self._ca_keys[which] = text
        return Reply(m.response(public_key=self._ca_keys[which]))

    def _org_url_info(self, m: Method, req: Message) -> Reply:
        base = "https://emulator.strongdm.test"
        return Reply(
            m.response(
                base_url=base,
                websites_subdomain="emulator",
                oidc_issuer_url=f"{base}/oidc/emulator",
                saml_metadata_url=f"{base}/saml/emulator/metadata",
            )
        )

    def _verify_jwt(self, m: Method, req: Message) -> Reply:
        return Reply(m.response(valid=False))  # the emulator issues no tokens to verify

    def _get_mfa(self, m: Method, req: Message) -> Reply:
        resp = m.response()
        resp.mfa.CopyFrom(self._mfa)
        return Reply(resp)

    def _update_mfa(self, m: Method, req: Message) -> Reply:
        self._check_mfa(m, req.mfa)
        self._mfa.CopyFrom(req.mfa)
        if self.journal is not None:
            self.journal.put_hidden(_MFA, req.mfa.SerializeToString())
        resp = m.response()
        resp.mfa.CopyFrom(self._mfa)
        return Reply(resp)

    def _test_mfa(self, m: Method, req: Message) -> Reply:
        self._check_mfa(m, req.mfa)
        return Reply(m.response())

    def _check_mfa(self, m: Method, mfa: Message) -> None:
        if mfa.enabled and not mfa.provider:
            raise bad_request(f"{m.full_name}: mfa.provider is required when MFA is enabled")

    def _derived_page(self, m: Method, req: Message, items: list[Message]) -> Reply:
        """A page of a list computed on demand; the cursor is a position in it."""
        keep = self._filter(m, req.filter)
        after, limit = self._paging(req.meta)
        found = [x for x in items if keep is None or keep(x)]
        page = found[after : after + limit]
        more = after + limit if after + limit < len(found) else None
        return self._page_reply(m, [x.SerializeToString() for x in page], more)

    def _new_engine_key(self, engine_id: str) -> bytes:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._engine_keys[engine_id] = key
        if self.journal is not None:
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            self.journal.put_hidden(engine_id, pem)
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def _keep_secret_value(self, secret: Message) -> None:
        """Decrypt the value sent for the engine (a client without the engine's key sends it
        as is), keep it apart, and store the secret without it."""
        value = bytes(secret.value)
        key = self._engine_keys.get(secret.secret_engine_id)
        if key is not None and value:
            try:
                value = key.decrypt(value, _oaep())
            except ValueError:
                pass  # not encrypted for this engine: taken as given
        self._secret_values[secret.id] = value
        if self.journal is not None:
            self.journal.put_hidden(secret.id, value)
        secret.ClearField("value")

    def _retrieve_secret(self, m: Method, req: Message) -> Reply:
        """`ManagedSecrets.Retrieve`: the value, encrypted for the caller's public key."""
        record = self.tables["ManagedSecrets"].get(req.id)
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
        value = self._secret_values.get(req.id, b"")
        if value:
            resp.managed_secret.value = key.encrypt(value, _oaep())
        return Reply(resp)

    def _healthcheck(self, m: Method, req: Message) -> Reply:
        if req.id not in self.tables["Resources"].records:
            raise not_found(f"resource {req.id!r} not found")
        return Reply(m.response())  # the API only schedules the check

    # -- helpers ----------------------------------------------------------------------------

    def _checked(self, m: Method, obj: Message, *, creating: bool) -> tuple[str, Message]:
        """The object's type and set member, with its required fields and references checked.

        Write-only fields (credentials) are never returned, so an update need not repeat them.
        """
        kind, inner = schema.member(obj)
        oneof = schema.union_of(obj.DESCRIPTOR)
        if oneof is not None and not kind:
            kinds = ", ".join(f.name for f in obj.DESCRIPTOR.oneofs_by_name[oneof].fields[:5])
            raise bad_request(
                f"{m.full_name}: {m.item_field} has no type: set one of its kinds ({kinds}, ...)"
            )
        skip = () if creating else schema.write_only_fields(inner.DESCRIPTOR)
        for name in schema.required_fields(inner):
            if name in skip:
                continue
            field = inner.DESCRIPTOR.fields_by_name[name]
            present = (
                inner.HasField(name) if field.message_type is not None else getattr(inner, name)
            )
            if not present:
                raise bad_request(f"{m.full_name}: {m.item_field}.{name} is required")
        for name, service in REFERENCES.get(m.service, {}).items():
            ref = getattr(inner, name)
            if ref and ref not in self.tables[service].records:
                raise not_found(f"{m.full_name}: {name} {ref!r}: no such {_singular(service)}")
        if m.service == "Roles" and inner.access_rules:
            _check_access_rules(inner.access_rules)
        if m.service == "AccountGrants":
            # The official SDK sends unset times as zero timestamps: zero means "not set".
            start, until = _nanos(inner.start_from), _nanos(inner.valid_until)
            if start and until and until <= start:
                raise bad_request(f"{m.full_name}: valid_until must be after start_from")
        return kind, inner

    def _natural_key(self, service: str, kind: str, inner: Message) -> str | None:
        rules = UNIQUE.get(service)
        if rules is None:
            return None
        fields = rules.get(kind) or rules.get("*")
        if fields is None:
            return None
        values = [str(getattr(inner, f)).lower() for f in fields]
        if not all(values):
            return None
        tag = kind if "*" not in rules else ""
        return f"{tag}|" + "|".join(f"{f}={v}" for f, v in zip(fields, values, strict=True))

    def _on_create(
        self, service: str, kind: str, inner: Message, resp: Message
    ) -> Callable[[], None] | None:
        """Credentials the API hands out once, on creation: set on the response after commit."""
        if service == "Accounts" and kind == "token":
            access_key, secret_key = new_key_pair()
            permissions = frozenset(inner.permissions)
            account_id = inner.id

            def issue() -> None:
                self.keys.add(access_key, secret_key, account_id, permissions)
                if self.journal is not None:
                    self.journal.add_key(access_key, secret_key, account_id, permissions)
                resp.access_key, resp.secret_key = access_key, secret_key

            return issue
        if (service == "Accounts" and kind == "service") or service == "Nodes":
            token = secrets.token_urlsafe(32)

            def hand_out() -> None:
                resp.token = token

            return hand_out
        return None

    def _commit(
        self, table: Table, op: str, id: str, obj: Message, natural: str | None, actor: str = ""
    ) -> Record | None:
        data = obj.SerializeToString()
        if op == "create":
            self._seq += 1
            seq = self._seq
        else:
            seq = table.records[id].seq
        change = Change(seq, self._now(), op, id, data, _new_activity_id(), actor)
        if self.journal is not None:
            self.journal.append(table.service, change)  # durable before it is acknowledged
        record = table.apply(change, type(obj).FromString(data))
        if natural is not None:
            self._unique[table.service][natural] = id
        return record

    def replay(self, service: str, change: Change) -> None:
        """Apply a change read back from a journal."""
        table = self.tables[service]
        table.apply(change)
        self._seq = max(self._seq, change.seq)
        self._last_at = max(self._last_at, change.at)
        if change.op == "delete":
            old = table.item.FromString(change.data)
        else:
            old = table.records[change.id].msg
        kind, inner = schema.member(old)
        natural = self._natural_key(service, kind, inner)
        if natural is not None:
            if change.op == "delete":
                self._unique[service].pop(natural, None)
            else:
                self._unique[service][natural] = change.id
        if service == "Accounts" and kind == "token":  # a suspended token stays shut out
            if change.op != "delete" and inner.suspended:
                self.keys.suspended.add(change.id)
            else:
                self.keys.suspended.discard(change.id)

    def restore_hidden(self, id: str, data: bytes) -> None:
        """Take back an engine key, a secret value or the MFA settings from a journal."""
        if id == _MFA:
            self._mfa.ParseFromString(data)
        elif id.startswith(schema.id_prefix("SecretEngines")):
            key = serialization.load_pem_private_key(data, password=None)
            assert isinstance(key, rsa.RSAPrivateKey)
            self._engine_keys[id] = key
        else:
            self._secret_values[id] = data

    def _now(self) -> int:
        # Strictly increasing, so that history is ordered even within one clock tick.
        at = max(self.clock(), self._last_at + 1)
        self._last_at = at
        return at

    def _filter(self, m: Method, text: str) -> Callable[[Message], bool] | None:
        if not text.strip():
            return None
        assert m.item is not None
        try:
            return compile_filter(text, m.item)
        except FilterError as e:
            raise bad_request(str(e)) from None

    def _paging(self, meta: Message) -> tuple[int, int]:
        after = 0
        if meta.cursor:
            try:
                after = int(meta.cursor)
            except ValueError:
                raise bad_request(
                    f"invalid cursor {meta.cursor!r}: pass back a next_cursor unchanged"
                ) from None
        if meta.limit < 0:
            raise bad_request("meta.limit must be >= 0")
        limit = min(meta.limit or self.page_size, self.max_page_size)
        return after, limit

    def _page_reply(self, m: Method, items: Iterable[bytes], next_seq: int | None) -> Reply:
        resp = m.response()
        if next_seq is not None:
            resp.meta.next_cursor = str(next_seq)
        number = resp.DESCRIPTOR.fields_by_name[m.item_field].number
        tag = _varint(number << 3 | 2)
        tail = b"".join(tag + _varint(len(d)) + d for d in items)
        return Reply(resp, tail)

    # -- for tests and seeding --------------------------------------------------------------

    def count(self, service: str) -> int:
        return len(self.tables[service])

    def seed_users(self, n: int) -> None:
        """Add `n` users directly (for benchmarks and large demos), as Accounts.Create would."""
        table = self.tables["Accounts"]
        item = table.item
        base = len(table)
        for i in range(base, base + n):
            account = item()
            user = account.user
            user.email = f"user{i:06d}@example.com"
            user.first_name = "User"
            user.last_name = f"{i:06d}"
            user.id = schema.id_prefix("Accounts") + secrets.token_hex(8)
            user.tags.pairs.add(name="team", value=f"team-{i % 20:02d}")
            at = self._now()
            user.created_at.seconds, user.created_at.nanos = divmod(at, 1_000_000_000)
            self._commit(
                table, "create", user.id, account, self._natural_key("Accounts", "user", user)
            )


_SPECIAL = {
    "Resources.EnumerateTags": "_enumerate_tags",
    "Resources.Healthcheck": "_healthcheck",
    "ManagedSecrets.Retrieve": "_retrieve_secret",
    "RoleResources.List": "_role_resources",
    "AccountResources.List": "_account_resources",
    "Activities.List": "_activities",
    "Activities.Get": "_activity",
    "Queries.List": "_nothing_recorded",
    "Replays.List": "_nothing_recorded",
    "ControlPanel.GetSSHCAPublicKey": "_ca_public_key",
    "ControlPanel.GetRDPCAPublicKey": "_ca_public_key",
    "ControlPanel.GetOrgURLInfo": "_org_url_info",
    "ControlPanel.VerifyJWT": "_verify_jwt",
    "Organizations.GetMFA": "_get_mfa",
    "Organizations.UpdateMFA": "_update_mfa",
    "Organizations.TestMFA": "_test_mfa",
}
_MFA = "organization-mfa"  # the journal's key for the MFA settings

_PAST = {"create": "created", "update": "updated", "delete": "deleted"}


def _rule_matches(rule: Any, resource_id: str, kind: str, driver: Message) -> bool:
    """One access rule against one resource: `{"ids": [...]}`, or `type` and/or `tags`."""
    if not isinstance(rule, dict):
        return False
    if "ids" in rule:
        return resource_id in rule["ids"]
    if "type" not in rule and "tags" not in rule:
        return False
    if "type" in rule and str(rule["type"]).replace("_", "").lower() != kind.replace("_", ""):
        return False
    tags = {p.name: p.value for p in driver.tags.pairs}
    return all(tags.get(k) == v for k, v in (rule.get("tags") or {}).items())


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _id_fields(item: Any) -> set[str]:
    oneof = schema.union_of(item)
    if oneof is None:
        return set(item.fields_by_name)
    return {
        name for f in item.oneofs_by_name[oneof].fields for name in f.message_type.fields_by_name
    }


def _derive(service: str, kind: str, inner: Message) -> None:
    """Fields the server computes from others."""
    if service == "Accounts" and kind == "user":
        # A user is suspended through its permission level; `suspended` only reflects it.
        if not inner.permission_levelRW:
            inner.permission_levelRW = "user"
        inner.suspendedRO = inner.permission_levelRW == "suspended"


def _check_access_rules(text: str) -> None:
    try:
        rules = json.loads(text)
    except ValueError as e:
        raise bad_request(f"role.access_rules is not valid JSON: {e}") from None
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise bad_request("role.access_rules must be a JSON list of objects (access rules)")


def _words(name: str) -> str:
    """`AccountAttachment` -> `account attachment`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).lower()


def _new_activity_id() -> str:
    return "at-" + secrets.token_hex(8)


def _noun(m: Method) -> str:
    return _singular(m.service)


def _singular(service: str) -> str:
    words = {"Accounts": "account", "Roles": "role", "Resources": "resource", "Nodes": "node"}
    return words.get(service, service)


def _describe(natural: str) -> str:
    return natural.partition("|")[2].replace("|", ", ")
