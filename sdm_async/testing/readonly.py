"""The fields the server fills: every `read_only` field of every model, and the few others the
API computes (a token's deadline, an SSH server's key type).

`RULES` names, per model and field, what the API puts there and how the emulator fills it, or
why it stays empty; a read-only field the descriptors add later fails the tests until someone
decides. Values a client sends for a read-only field are ignored, as the API ignores them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from google.protobuf import descriptor

from sdm_async.testing.schema import Message, field_options
from sdm_async.testing.status import bad_request

Find = Callable[[str, str], Message | None]  # (service, id) -> the stored object's member


@dataclass(frozen=True)
class Context:
    now: int  # nanoseconds since the epoch: the time of this write
    find: Find
    old: Message | None  # the stored member before an update; None on create
    new_port: Callable[[], int]  # a local port no resource uses yet


Fill = Callable[[Message, Context], None]


@dataclass(frozen=True)
class Rule:
    text: str  # what the API puts there (for readers and the tests)
    fill: Fill | None = None  # None: it stays empty
    derived: bool = False  # computed again on every write, not only on create
    read_only: bool = True  # False: a field the API computes without the option saying so


def _set_time(msg: Message, name: str, at: int) -> None:
    ts = getattr(msg, name)
    ts.seconds, ts.nanos = divmod(at, 1_000_000_000)


def _port_override(msg: Message, ctx: Context) -> None:
    # "automatically generated if not provided on create and may be re-generated on update
    # by specifying a value of -1"; 0 on update keeps the port.
    if msg.port_override == -1 or (msg.port_override == 0 and ctx.old is None):
        msg.port_override = ctx.new_port()
    elif msg.port_override == 0 and ctx.old is not None:
        msg.port_override = ctx.old.port_override


def _kept_or(name: str, default: str) -> Fill:
    """A computed string: kept when not sent on update, `default` when never given."""

    def fill(msg: Message, ctx: Context) -> None:
        if not getattr(msg, name):
            old = getattr(ctx.old, name) if ctx.old is not None else ""
            setattr(msg, name, old or default)

    fill.__name__ = f"_{name}"
    return fill


def _bind_address(msg: Message, ctx: Context) -> None:
    # "If not provided on create, set to "0.0.0.0:listen_address_port"."
    if not msg.bind_address and ctx.old is None:
        port = msg.listen_address.rpartition(":")[2]
        msg.bind_address = f"0.0.0.0:{port}" if port.isdigit() else ""


def _created_at(msg: Message, ctx: Context) -> None:
    _set_time(msg, "created_at", ctx.now)


def _healthy(msg: Message, ctx: Context) -> None:
    msg.healthy = True


PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# SSH key types the API offers (strongdm.SSHKeyType); an unset key type gets the first.
SSH_KEY_TYPES: dict[str, Callable[[], PrivateKey]] = {
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "rsa-2048": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "rsa-4096": lambda: rsa.generate_private_key(public_exponent=65537, key_size=4096),
    "ecdsa-256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ecdsa-384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "ecdsa-521": lambda: ec.generate_private_key(ec.SECP521R1()),
}


def _ssh_key(msg: Message, ctx: Context) -> None:
    """The key type (kept, or the default), and a key pair of that type of which only the
    public half is kept, in `authorized_keys` form ("ssh-ed25519 AAAA..."): nobody connects
    through the emulator. A new pair only when the type changes."""
    old = ctx.old
    if not msg.key_type:
        msg.key_type = (
            old.key_type if old is not None and old.key_type else next(iter(SSH_KEY_TYPES))
        )
    if msg.key_type not in SSH_KEY_TYPES:
        raise bad_request(
            f"resource.key_type {msg.key_type!r} is not one of {', '.join(SSH_KEY_TYPES)} "
            "(strongdm.SSHKeyType)"
        )
    if old is not None and old.key_type == msg.key_type and old.public_key:
        msg.public_key = old.public_key
        return
    public = SSH_KEY_TYPES[msg.key_type]().public_key()
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    msg.public_key = line.decode()


def _token_deadline(msg: Message, ctx: Context) -> None:
    if msg.HasField("duration") and (msg.duration.seconds or msg.duration.nanos):
        created = msg.created_at.seconds * 1_000_000_000 + msg.created_at.nanos
        length = msg.duration.seconds * 1_000_000_000 + msg.duration.nanos
        _set_time(msg, "deadline", created + length)


def _user_permission(msg: Message, ctx: Context) -> None:
    # A user is suspended through its permission level; `suspended` only reflects it.
    if not msg.permission_levelRW:
        msg.permission_levelRW = "user"
    msg.permission_level = msg.permission_levelRW
    msg.suspendedRO = msg.permission_levelRW == "suspended"


def _resolved_manager(msg: Message, ctx: Context) -> None:
    msg.resolved_manager_id = msg.manager_id


def _node_state(msg: Message, ctx: Context) -> None:
    msg.state = "new"  # strongdm.NodeState.NEW: no process has come online


def _group_role_names(msg: Message, ctx: Context) -> None:
    group, role = ctx.find("Groups", msg.group_id), ctx.find("Roles", msg.role_id)
    msg.group_name = group.name if group is not None else ""
    msg.role_name = role.name if role is not None else ""


_EMPTY_BY_STRONGDM = "empty: managed by StrongDM (strongdm.Provider: an empty string)"
_HISTORY_ONLY = "empty: the API fills it only in the Approval Workflows History API"
_NODE_PROCESS = "empty: uploaded by the node's process when it comes online; none runs here"

# Fields of these names are filled the same way in every model that has them.
GENERIC: dict[str, Rule] = {
    "created_at": Rule("the time of creation", _created_at, read_only=False),
    "healthy": Rule("true: the emulator reaches every host it is given", _healthy),
    # terraform_computed: filled when not given, as the SDK's docstrings say.
    "port_override": Rule(
        "a free local port from 10000 up; -1 on update: a new one", _port_override, True, False
    ),
    "bind_interface": Rule(
        '"127.0.0.1" when never given', _kept_or("bind_interface", "127.0.0.1"), True, False
    ),
    "healthcheck_namespace": Rule(
        '"default" when never given', _kept_or("healthcheck_namespace", "default"), True, False
    ),
}

RULES: dict[str, dict[str, Rule]] = {
    "AccountGrant": {
        "access_request_id": Rule("empty: set only for grants an approved access request made"),
    },
    "ApprovalWorkflowApprover": {"reference": Rule(_HISTORY_ONLY)},
    "ApprovalWorkflowStep": {
        "quantifier": Rule(_HISTORY_ONLY),
        "skip_after": Rule(_HISTORY_ONLY),
        "step_order": Rule(_HISTORY_ONLY),
    },
    "Gateway": {
        "bind_address": Rule(
            '"0.0.0.0:<listen port>" if not given on create', _bind_address, read_only=False
        ),
        "state": Rule('"new" on creation (strongdm.NodeState.NEW)', _node_state),
        "device": Rule(_NODE_PROCESS),
        "location": Rule(_NODE_PROCESS),
        "version": Rule(_NODE_PROCESS),
        "uuid": Rule("empty: private to the Go SDK (targets go_private)"),
    },
    "Relay": {
        "state": Rule('"new" on creation (strongdm.NodeState.NEW)', _node_state),
        "device": Rule(_NODE_PROCESS),
        "location": Rule(_NODE_PROCESS),
        "version": Rule(_NODE_PROCESS),
        "uuid": Rule("empty: private to the Go SDK (targets go_private)"),
    },
    "Group": {"source": Rule(_EMPTY_BY_STRONGDM)},
    "Role": {"managed_by": Rule(_EMPTY_BY_STRONGDM)},
    "GroupRole": {
        "group_name": Rule("the group's name at the time of writing", _group_role_names, True),
        "role_name": Rule("the role's name at the time of writing", _group_role_names, True),
    },
    "ManagedSecret": {
        "secret_store_path": Rule("empty: the emulator keeps values itself, in no store"),
        "last_rotated_at": Rule("empty: no rotation has happened on creation"),
        "expires_at": Rule("empty: the emulator runs no rotation schedule"),
        "config": Rule("empty: the public part of a value the emulator does not interpret"),
    },
    "ProxyClusterKey": {
        "last_used_at": Rule("empty: no proxy authenticates against the emulator"),
    },
    "SSH": {
        "key_type": Rule(
            "kept; ed25519 when never given (terraform_computed)", _ssh_key, True, False
        ),
        "public_key": Rule(
            "a generated public key, authorized_keys form, per key type", _ssh_key, True
        ),
    },
    "Snowflake": {"password": Rule("empty: deprecated, write-only and read-only: never kept")},
    "Token": {
        "deadline": Rule(
            "created_at + duration, when a duration is given", _token_deadline, True, False
        ),
    },
    "User": {
        "permission_level": Rule("the permission level (legacy mirror)", _user_permission, True),
        "suspendedRO": Rule("whether the permission level is suspended", _user_permission, True),
        "managed_by": Rule(_EMPTY_BY_STRONGDM),
        "SCIM": Rule("empty: only users a SCIM provider provisions have SCIM metadata"),
        "resolved_manager_id": Rule(
            "manager_id, on get and list only (not in create/update answers)",
            _resolved_manager,
            True,
        ),
    },
}

# Filled apart from these rules, by the backend, because they need its keys.
FILLED_BY_BACKEND = "a generated RSA public key (PEM) whose private key decrypts values"
for _engine in ("ActiveDirectoryEngine", "KeyValueEngine", "MysqlEngine", "PostgresEngine"):
    RULES[_engine] = {"public_key": Rule(FILLED_BY_BACKEND)}
RULES["SqlserverEngine"] = {"public_key": Rule(FILLED_BY_BACKEND)}

# Only in answers to get and list (the SDK's docstring says so).
READ_ANSWER_ONLY: dict[str, tuple[str, ...]] = {"User": ("resolved_manager_id",)}


@functools.cache
def read_only(item: descriptor.Descriptor) -> tuple[str, ...]:
    return tuple(f.name for f in item.fields if field_options(f).read_only)


def rule(item: descriptor.Descriptor, name: str) -> Rule | None:
    return RULES.get(item.name, {}).get(name) or GENERIC.get(name)


@functools.cache
def _rules(item: descriptor.Descriptor) -> tuple[tuple[str, Rule], ...]:
    names = [f.name for f in item.fields]
    found = [(n, r) for n in names if (r := rule(item, n)) is not None]
    found.sort(key=lambda pair: pair[0] != "created_at")  # others may derive from it
    return tuple(found)


def on_create(inner: Message, ctx: Context) -> None:
    """Ignore what the client sent for read-only fields, then fill every rule's field."""
    for name in read_only(inner.DESCRIPTOR):
        inner.ClearField(name)
    _apply(inner, ctx, every=True)


def on_update(inner: Message, ctx: Context) -> None:
    """Keep the stored read-only values (the server's to set), then compute derived ones."""
    old = ctx.old
    assert old is not None
    for name in read_only(inner.DESCRIPTOR):
        fd = inner.DESCRIPTOR.fields_by_name[name]
        if fd.message_type is not None:
            if old.HasField(name):
                getattr(inner, name).CopyFrom(getattr(old, name))
            else:
                inner.ClearField(name)
        else:
            setattr(inner, name, getattr(old, name))
    if "created_at" in inner.DESCRIPTOR.fields_by_name and old.HasField("created_at"):
        inner.created_at.CopyFrom(old.created_at)
    _apply(inner, ctx, every=False)


def _apply(inner: Message, ctx: Context, *, every: bool) -> None:
    done: set[Fill] = set()
    for _name, r in _rules(inner.DESCRIPTOR):
        if r.fill is None or r.fill in done or not (every or r.derived):
            continue
        done.add(r.fill)
        r.fill(inner, ctx)


def for_write_answer(inner: Message) -> None:
    """Clear what the API shows only on get and list from a create or update answer."""
    for name in READ_ANSWER_ONLY.get(inner.DESCRIPTOR.name, ()):
        inner.ClearField(name)
