"""The emulator's state and domain rules, apart from the wire (moto's "backend").

Every CRUD-shaped service (Create/Get/Update/Delete/List) is served by one generic engine
driven by the descriptors: what it accepts is read from their field options
(`validation.py`), and the fields the server fills are filled by `readonly.py`. The rules of
the core objects are data (`UNIQUE`, `REFERENCES`) plus a few hooks (keys for tokens, a token
for nodes, access rules as JSON). `*History` services read the history of the service they
are named after; the methods that are not CRUD live in `views.py` and its family modules
(`views_*.py`), which do not import this one.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sdm_async._secrets import OAEP
from sdm_async.testing import readonly, schema, validation
from sdm_async.testing.auth import Key, Keys, new_key_pair
from sdm_async.testing.filters import FilterError, compile_filter
from sdm_async.testing.schema import Message, Method, nanos
from sdm_async.testing.status import ApiError, already_exists, bad_request, not_found
from sdm_async.testing.tables import Change, Record, Table
from sdm_async.testing.views import AFTER, MFA_JOURNAL_KEY, SPECIAL, STORED
from sdm_async.testing.views_base import Extras, Reply

DEFAULT_PAGE_SIZE = 50
FIRST_PORT = 10000  # resources' port_override are allocated from here up
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

    def remove_keys(self, account_id: str) -> None: ...

    def put_hidden(self, id: str, data: bytes | None) -> None: ...


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


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
        self._last_port: int | None = None  # the highest port_override given; None: not known
        # Secret engines' private keys, and managed secrets' values, kept apart from the
        # objects: the API never returns a value except encrypted for a Retrieve.
        self.engine_keys: dict[str, rsa.RSAPrivateKey] = {}
        self.secret_values: dict[str, bytes] = {}
        self.mfa = schema.message_class("MFAConfig")()  # the organisation's settings
        self.ca_keys: dict[str, str] = {}  # the SSH and RDP certificate authorities' keys
        for m in schema.methods().values():
            if m.kind == "create" and m.item is not None and "id" in _id_fields(m.item):
                item_cls = schema.message_class(m.item.name)
                self.tables[m.service] = Table(m.service, item_cls)
                self._unique[m.service] = {}
        for service, item_name in STORED.items():  # listed by the API, made by tests
            self.tables[service] = Table(service, schema.message_class(item_name))
            self._unique[service] = {}
        self.extras = Extras(started=clock())

    # -- dispatch ---------------------------------------------------------------------------

    def implemented(self, m: Method) -> bool:
        if m.full_name in SPECIAL:
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
        special = SPECIAL.get(m.full_name)
        if special is not None:
            answer = special(self, m, request, caller)
            reply = answer if isinstance(answer, Reply) else Reply(answer)
        elif m.service not in self.tables:
            reply = self._history(m, request)
        else:
            handler: Callable[[Method, Message, Key], Reply] = getattr(self, f"_{m.kind}")
            reply = handler(m, request, caller)
        after = AFTER.get(m.full_name)
        if after is not None:
            after(self, m, request, reply, caller)
        return reply

    # -- the generic engine -----------------------------------------------------------------

    def _create(self, m: Method, req: Message, caller: Key) -> Reply:
        obj = getattr(req, m.item_field)
        kind, inner = self._checked(m, obj, creating=True)
        table = self.tables[m.service]
        for name in schema.write_only_fields(inner.DESCRIPTOR):
            inner.ClearField(name)
        if m.service == "Nodes" and not inner.name:
            inner.name = f"{kind}-{secrets.token_hex(4)}"
        readonly.on_create(inner, readonly.Context(self._now(), self._find, None, self._new_port))
        self._note_port(inner)
        natural = self._natural_key(m.service, kind, inner)
        if natural is not None and natural in self._unique[m.service]:
            raise already_exists(f"{_noun(m)} {_describe(natural)} already exists")
        inner.id = schema.id_prefix(m.service) + secrets.token_hex(8)
        if m.service == "SecretEngines":
            inner.public_key = self._new_engine_key(inner.id)
        if m.service == "ManagedSecrets":
            self._keep_secret_value(inner)
        resp = m.response()
        extra = self._on_create(m.service, kind, inner, resp)
        self._commit(table, "create", inner.id, obj, natural, caller.account_id)
        getattr(resp, m.item_field).CopyFrom(obj)
        readonly.for_write_answer(schema.member(getattr(resp, m.item_field))[1])
        if extra is not None:
            extra()
        return Reply(resp)

    def _get(self, m: Method, req: Message, caller: Key) -> Reply:
        table = self.tables[m.service]
        snapshot = nanos(req.meta.snapshot_at) or None  # zero: the present
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
        readonly.on_update(
            inner, readonly.Context(self._now(), self._find, old_inner, self._new_port)
        )
        self._note_port(inner)
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
        readonly.for_write_answer(schema.member(getattr(resp, m.item_field))[1])
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
        hidden = self.secret_values.pop(id, None), self.engine_keys.pop(id, None)
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
            if self.journal is not None:
                self.journal.remove_keys(id)  # or a restart would accept its key again

    def _list(self, m: Method, req: Message, caller: Key) -> Reply:
        table = self.tables[m.service]
        keep = self._filter(m, req.filter)
        after, limit = self._paging(req.meta)
        snapshot = nanos(req.meta.snapshot_at) or None  # zero: the present
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

    def derived_page(self, m: Method, req: Message, items: list[Message]) -> Reply:
        """A page of a list computed on demand; the cursor is a position in it."""
        keep = self._filter(m, req.filter)
        after, limit = self._paging(req.meta)
        found = [x for x in items if keep is None or keep(x)]
        page = found[after : after + limit]
        more = after + limit if after + limit < len(found) else None
        return self._page_reply(m, [x.SerializeToString() for x in page], more)

    def _new_engine_key(self, engine_id: str) -> bytes:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.engine_keys[engine_id] = key
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
        key = self.engine_keys.get(secret.secret_engine_id)
        if key is not None and value:
            try:
                value = key.decrypt(value, OAEP)
            except ValueError:
                pass  # not encrypted for this engine: taken as given
        self.secret_values[secret.id] = value
        if self.journal is not None:
            self.journal.put_hidden(secret.id, value)
        secret.ClearField("value")

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
        validation.check(m.full_name, m.item_field, inner, creating=creating)
        for name, service in REFERENCES.get(m.service, {}).items():
            ref = getattr(inner, name)
            if ref and ref not in self.tables[service].records:
                raise not_found(f"{m.full_name}: {name} {ref!r}: no such {_singular(service)}")
        if m.service == "Roles" and inner.access_rules:
            _check_access_rules(inner.access_rules)
        if m.service == "AccountGrants":
            # The official SDK sends unset times as zero timestamps: zero means "not set".
            start, until = nanos(inner.start_from), nanos(inner.valid_until)
            if start and until and until <= start:
                raise bad_request(f"{m.full_name}: valid_until must be after start_from")
        return kind, inner

    def _new_port(self) -> int:
        """The next local port for a resource's `port_override`: above every one in use."""
        if self._last_port is None:  # first use since start or a journal replay
            used = (schema.member(r.msg)[1] for r in self.tables["Resources"].records.values())
            self._last_port = max((getattr(m, "port_override", 0) for m in used), default=0)
        self._last_port = max(self._last_port + 1, FIRST_PORT)
        return self._last_port

    def _note_port(self, inner: Message) -> None:
        """A port a client chose is in use too: allocation continues above it."""
        port = getattr(inner, "port_override", 0)
        if self._last_port is not None and port > self._last_port:
            self._last_port = port

    def _find(self, service: str, id: str) -> Message | None:
        """The stored object `id` of `service` (its set member), if any."""
        table = self.tables.get(service)
        record = table.records.get(id) if table is not None else None
        return schema.member(record.msg)[1] if record is not None else None

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
        unique = self._unique[service]
        before = table.records.get(change.id)
        if before is not None:  # an update or a delete: the name it had is free again
            natural = self._natural_key(service, *schema.member(before.msg))
            if natural is not None and unique.get(natural) == change.id:
                del unique[natural]
        table.apply(change)
        self._last_port = None  # recounted from the tables when next needed
        self._seq = max(self._seq, change.seq)
        self._last_at = max(self._last_at, change.at)
        if change.op == "delete":
            old = table.item.FromString(change.data)
        else:
            old = table.records[change.id].msg
        kind, inner = schema.member(old)
        natural = self._natural_key(service, kind, inner)
        if natural is not None and change.op != "delete":
            unique[natural] = change.id
        if service == "Accounts" and kind == "token":  # a suspended token stays shut out
            if change.op != "delete" and inner.suspended:
                self.keys.suspended.add(change.id)
            else:
                self.keys.suspended.discard(change.id)

    def restore_hidden(self, id: str, data: bytes) -> None:
        """Take back an engine key, a secret value or the MFA settings from a journal."""
        if id == MFA_JOURNAL_KEY:
            self.mfa.ParseFromString(data)
        elif id.startswith(schema.id_prefix("SecretEngines")):
            key = serialization.load_pem_private_key(data, password=None)
            assert isinstance(key, rsa.RSAPrivateKey)
            self.engine_keys[id] = key
        else:
            self.secret_values[id] = data

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
            # Only what next_cursor holds: up to 19 decimal digits (int() also takes "-1",
            # " 2" and "1_0", and refuses over 4,300 digits with an error of its own).
            cursor = meta.cursor
            if not (len(cursor) <= 19 and cursor.isascii() and cursor.isdigit()):
                raise bad_request(
                    f"invalid cursor {meta.cursor!r}: pass back a next_cursor unchanged"
                )
            after = int(meta.cursor)
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

    def fresh(self) -> bool:
        """Nothing was ever created, updated or deleted."""
        return not any(t.history for t in self.tables.values())

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
            readonly.on_create(
                user, readonly.Context(self._now(), self._find, None, self._new_port)
            )
            self._commit(
                table, "create", user.id, account, self._natural_key("Accounts", "user", user)
            )


def _id_fields(item: Any) -> set[str]:
    oneof = schema.union_of(item)
    if oneof is None:
        return set(item.fields_by_name)
    return {
        name for f in item.oneofs_by_name[oneof].fields for name in f.message_type.fields_by_name
    }


def _check_access_rules(text: str) -> None:
    try:
        rules = json.loads(text)
    except ValueError as e:
        raise bad_request(f"role.access_rules is not valid JSON: {e}") from None
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise bad_request("role.access_rules must be a JSON list of objects (access rules)")


def _new_activity_id() -> str:
    return "at-" + secrets.token_hex(8)


def _noun(m: Method) -> str:
    return _singular(m.service)


def _singular(service: str) -> str:
    words = {"Accounts": "account", "Roles": "role", "Resources": "resource", "Nodes": "node"}
    return words.get(service, service)


def _describe(natural: str) -> str:
    return natural.partition("|")[2].replace("|", ", ")
