"""Managed secrets and secret engines beyond CRUD: `Retrieve`, `Validate`, `Rotate`, `Logs`
of managed secrets; `GenerateKeys` and `Rotate` of secret engines.

Values are kept apart from the objects (the API returns one only encrypted, for a
Retrieve). Each retrieve, update and rotate of a managed secret leaves a `ManagedSecretLog`
(action `retrieve`, `update` or `rotate`, by the caller's account).
"""

from __future__ import annotations

import secrets

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sdm_async._secrets import OAEP
from sdm_async.testing import schema
from sdm_async.testing.auth import Key
from sdm_async.testing.schema import Message, Method
from sdm_async.testing.status import bad_request, not_found
from sdm_async.testing.views_base import After, Handler, Reply, State, set_time


def _secret(b: State, m: Method, id: str) -> Message:
    record = b.tables["ManagedSecrets"].get(id)
    if record is None:
        raise not_found(f"{m.full_name}: managed secret {id!r} not found")
    return record.msg


def _log(b: State, secret: Message, action: str, caller: Key) -> None:
    log = schema.message_class("ManagedSecretLog")(
        id="msl-" + secrets.token_hex(8),
        managed_secret_id=secret.id,
        secret_engine_id=secret.secret_engine_id,
        account_id=caller.account_id,
        action=action,
    )
    set_time(log.created_at, b.clock())
    b.extras.secret_logs.append(log)


def retrieve_secret(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    """`ManagedSecrets.Retrieve`: the value, encrypted for the caller's public key."""
    secret = _secret(b, m, req.id)
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
    resp.managed_secret.CopyFrom(secret)
    value = b.secret_values.get(req.id, b"")
    if value:
        resp.managed_secret.value = key.encrypt(value, OAEP)
    _log(b, secret, "retrieve", caller)
    return resp


def validate_secret(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    _secret(b, m, req.id)
    return m.response(valid=True)


def rotate_secret(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    """`ManagedSecrets.Rotate`: a new random value (32 URL-safe characters) and
    `last_rotated_at` now, recorded as an update in the history."""
    secret = _secret(b, m, req.id)
    value = secrets.token_urlsafe(24).encode()
    b.secret_values[secret.id] = value
    if b.journal is not None:
        b.journal.put_hidden(secret.id, value)
    rotated = type(secret)()
    rotated.CopyFrom(secret)
    set_time(rotated.last_rotated_at, b.clock())
    b._commit(b.tables["ManagedSecrets"], "update", secret.id, rotated, None, caller.account_id)
    _log(b, rotated, "rotate", caller)
    return m.response()


def secret_logs(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    return b.derived_page(m, req, list(b.extras.secret_logs))


def log_update(b: State, m: Method, req: Message, reply: Reply, caller: Key) -> None:
    _log(b, reply.message.managed_secret, "update", caller)


def _engine(b: State, m: Method, id: str) -> Message:
    record = b.tables["SecretEngines"].get(id)
    if record is None:
        raise not_found(f"{m.full_name}: secret engine {id!r} not found")
    return record.msg


def generate_keys(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    """`SecretEngines.GenerateKeys`: a new key pair; the engine's `public_key` is the new
    public key (an update in its history). Values already stored stay readable."""
    engine = type(_engine(b, m, req.secret_engine_id))()
    engine.CopyFrom(_engine(b, m, req.secret_engine_id))
    _kind, inner = schema.member(engine)
    inner.public_key = b._new_engine_key(inner.id)
    b._commit(b.tables["SecretEngines"], "update", inner.id, engine, None, caller.account_id)
    return m.response()


def rotate_engine(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    """`SecretEngines.Rotate`: the engine's own credentials are write-only, so a rotation
    shows nothing but success; the password policy is checked for sense."""
    _engine(b, m, req.id)
    policy = req.password_policy
    if policy.length and policy.num_digits + policy.num_symbols > policy.length:
        raise bad_request(
            f"{m.full_name}: password_policy asks for more digits and symbols than its length"
        )
    return m.response()


HANDLERS: dict[str, Handler] = {
    "ManagedSecrets.Retrieve": retrieve_secret,
    "ManagedSecrets.Validate": validate_secret,
    "ManagedSecrets.Rotate": rotate_secret,
    "ManagedSecrets.Logs": secret_logs,
    "SecretEngines.GenerateKeys": generate_keys,
    "SecretEngines.Rotate": rotate_engine,
}
AFTER: dict[str, After] = {"ManagedSecrets.Update": log_update}
