"""Managed secrets, encrypted end to end as the API expects (and as the official SDK does).

- `create`/`update`: a secret's `value` is encrypted with its secret engine's public key
  (RSA-OAEP, SHA-256) before it leaves the process; the key comes from `SecretEngines.Get`
  and is cached per engine. If the engine's key cannot be had, the value goes as given,
  as the official SDK sends it.
- `retrieve`: the client sends a public key of its own (RSA 4096, made once per client) and
  decrypts the value that comes back encrypted for it.

The RSA work runs in a worker thread: making a 4096-bit key takes long enough to stall the
event loop.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sdm_async import errors
from sdm_async._generated.models.managed_secrets import (
    ManagedSecret,
    ManagedSecretCreateResponse,
    ManagedSecretRetrieveResponse,
    ManagedSecretUpdateResponse,
    from_pb_ManagedSecretRetrieveResponse,
)
from sdm_async._generated.services import managed_secrets as _generated
from sdm_async._generated.services.secret_engines import SecretEngines
from sdm_async._generated.v1 import managed_secrets_pb2

log = logging.getLogger("sdm_async")

OAEP = padding.OAEP(
    mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)
CLIENT_KEY_BITS = 4096


class ManagedSecrets(_generated.ManagedSecrets):
    """The `ManagedSecrets` service, with values encrypted end to end."""

    def __init__(self, transport: Any, page_limit: int = 0, snapshot: Any = None) -> None:
        super().__init__(transport, page_limit, snapshot)
        self._engine_keys: dict[str, rsa.RSAPublicKey] = {}
        self._private_key: rsa.RSAPrivateKey | None = None

    async def create(
        self, managed_secret: ManagedSecret | None, timeout: float | None = None
    ) -> ManagedSecretCreateResponse:
        """`ManagedSecrets.Create`, the value encrypted for its secret engine."""
        sealed = await self._sealed(managed_secret, timeout)
        return await super().create(sealed, timeout)

    async def update(
        self, managed_secret: ManagedSecret | None, timeout: float | None = None
    ) -> ManagedSecretUpdateResponse:
        """`ManagedSecrets.Update`, the value encrypted for its secret engine."""
        sealed = await self._sealed(managed_secret, timeout)
        return await super().update(sealed, timeout)

    async def retrieve(
        self, id: str, timeout: float | None = None
    ) -> ManagedSecretRetrieveResponse:
        """`ManagedSecrets.Retrieve`: the secret with its value decrypted."""
        if not isinstance(id, str):
            raise TypeError(
                f"managed_secrets.retrieve(id=...): id must be a str, not {type(id).__name__}"
            )
        key = await self._client_key()
        req = managed_secrets_pb2.ManagedSecretRetrieveRequest(id=id)
        req.public_key = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        resp = await self._call(_generated._RETRIEVE, req, timeout)
        secret = resp.managed_secret
        if secret.value:
            try:
                secret.value = await asyncio.to_thread(key.decrypt, secret.value, OAEP)
            except ValueError:
                raise errors.UnknownError(
                    f"managed secret {id!r}: the value could not be decrypted with this "
                    "client's key"
                ) from None
        return from_pb_ManagedSecretRetrieveResponse(resp)

    async def _sealed(self, secret: ManagedSecret | None, timeout: float | None) -> Any:
        if not isinstance(secret, ManagedSecret) or not secret.value:
            return secret  # nothing to seal (bad input is reported by the generated method)
        key = await self._engine_key(secret.secret_engine_id, timeout)
        if key is None:
            return secret
        value = secret.value.encode() if isinstance(secret.value, str) else secret.value
        sealed = copy.copy(secret)  # the caller's object keeps its plaintext
        sealed.value = await asyncio.to_thread(key.encrypt, value, OAEP)
        return sealed

    async def _engine_key(self, engine_id: str, timeout: float | None) -> rsa.RSAPublicKey | None:
        key = self._engine_keys.get(engine_id)
        if key is not None or not engine_id:
            return key
        try:
            engine = (await SecretEngines(self._transport).get(engine_id, timeout)).secret_engine
            pem = getattr(engine, "public_key", b"")
            loaded = serialization.load_pem_public_key(pem) if pem else None
        except (errors.RPCError, ValueError) as e:
            log.info("secret engine %s: no public key (%s); value sent as given", engine_id, e)
            return None
        if not isinstance(loaded, rsa.RSAPublicKey):
            return None
        self._engine_keys[engine_id] = loaded
        return loaded

    async def _client_key(self) -> rsa.RSAPrivateKey:
        if self._private_key is None:
            self._private_key = await asyncio.to_thread(
                rsa.generate_private_key, public_exponent=65537, key_size=CLIENT_KEY_BITS
            )
        return self._private_key
