"""Managed secrets, encrypted end to end as the API expects (and as the official SDK does).

- `create`/`update`: a secret's `value` is encrypted with its secret engine's public key
  (RSA-OAEP, SHA-256) before it leaves the process; the key comes from `SecretEngines.Get`.
  A value is never sent in clear: when the engine's key cannot be had, the call fails
  with an SDK error and nothing is sent.
- `retrieve`: the client sends a public key of its own (RSA 4096, made once per client) and
  decrypts the value that comes back encrypted for it.

`timeout` bounds the whole operation: key fetch, key generation, the call and decryption
share one deadline. Making a 4096-bit key and decrypting run in a worker thread: they take
long enough to stall the event loop.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any, NamedTuple, TypeVar

import grpc
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sdm_async import errors
from sdm_async._generated.models.managed_secrets import (
    ManagedSecret,
    ManagedSecretCreateResponse,
    ManagedSecretRetrieveResponse,
    ManagedSecretUpdateResponse,
    from_pb_ManagedSecretCreateResponse,
    from_pb_ManagedSecretRetrieveResponse,
    from_pb_ManagedSecretUpdateResponse,
    to_pb_ManagedSecret,
)
from sdm_async._generated.services import managed_secrets as _generated
from sdm_async._generated.services.secret_engines import SecretEngines
from sdm_async._generated.v1 import managed_secrets_pb2
from sdm_async._rpc import MethodInfo
from sdm_async._service import bad_argument

OAEP = padding.OAEP(
    mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)
OAEP_OVERHEAD = 2 * 32 + 2  # bytes of an RSA block that OAEP with SHA-256 takes for itself
CLIENT_KEY_BITS = 4096
ENGINE_KEY_TTL = 300.0  # seconds an engine's public key is reused before it is fetched again

T = TypeVar("T")


class _ClientKey(NamedTuple):
    private: rsa.RSAPrivateKey
    public_pem: bytes


def _new_client_key() -> _ClientKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=CLIENT_KEY_BITS)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _ClientKey(key, pem)


class _Deadline:
    """One deadline for a whole operation, on the loop's clock; each step gets what is left."""

    __slots__ = ("_at", "_loop", "_timeout", "_what")

    def __init__(self, what: str, timeout: float | None) -> None:
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float))
        ):
            raise TypeError(
                f"{what}: timeout must be seconds (a number) or None, not {type(timeout).__name__}"
            )
        self._what = what
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._at = None if timeout is None else self._loop.time() + timeout

    def left(self, step: str) -> float | None:
        """Seconds left for `step`; TimeoutError when none are."""
        if self._at is None:
            return None
        left = self._at - self._loop.time()
        if left <= 0:
            raise self.expired(step)
        return left

    def expired(self, step: str) -> errors.TimeoutError:
        return errors.TimeoutError(f"{self._what}: timed out after {self._timeout} s ({step})")

    async def wait(self, step: str, future: asyncio.Future[T]) -> T:
        """The future's result, waited for until the deadline at most. The future is shielded:
        other callers may be waiting for it too."""
        if future.done():
            return future.result()
        left = self.left(step)
        try:
            return await asyncio.wait_for(asyncio.shield(future), left)
        except asyncio.TimeoutError:
            raise self.expired(step) from None


def _reworded(error: errors.RPCError, msg: str) -> errors.RPCError:
    """`error` with another message, of the same class (an `except NotFoundError` still
    catches it; a rate limit keeps its `rate_limit`)."""
    again = copy.copy(error)
    again.msg = msg
    again.args = (msg,)
    return again


class ManagedSecrets(_generated.ManagedSecrets):
    """The `ManagedSecrets` service, with values encrypted end to end."""

    def __init__(self, transport: Any, page_limit: int = 0, snapshot: Any = None) -> None:
        super().__init__(transport, page_limit, snapshot)
        # engine id -> (public key, loop time it was fetched); only good keys are kept
        self._engine_keys: dict[str, tuple[rsa.RSAPublicKey, float]] = {}
        # One generation per client, awaited by every retrieve that needs the key.
        self._client_key_future: asyncio.Future[_ClientKey] | None = None

    async def create(
        self, managed_secret: ManagedSecret, timeout: float | None = None
    ) -> ManagedSecretCreateResponse:
        """`ManagedSecrets.Create`, the value encrypted for its secret engine. `timeout`
        bounds the whole call, the engine's key fetch included."""
        req = managed_secrets_pb2.ManagedSecretCreateRequest()
        resp = await self._send("create", _generated._CREATE, req, managed_secret, timeout)
        return from_pb_ManagedSecretCreateResponse(resp)

    async def update(
        self, managed_secret: ManagedSecret, timeout: float | None = None
    ) -> ManagedSecretUpdateResponse:
        """`ManagedSecrets.Update`, the value encrypted for its secret engine. `timeout`
        bounds the whole call, the engine's key fetch included."""
        req = managed_secrets_pb2.ManagedSecretUpdateRequest()
        resp = await self._send("update", _generated._UPDATE, req, managed_secret, timeout)
        return from_pb_ManagedSecretUpdateResponse(resp)

    async def retrieve(
        self, id: str, timeout: float | None = None
    ) -> ManagedSecretRetrieveResponse:
        """`ManagedSecrets.Retrieve`: the secret with its value decrypted. `timeout` bounds
        the whole call, making the client's key and decrypting included."""
        if not isinstance(id, str):
            raise TypeError(
                f"managed_secrets.retrieve(id=...): id must be a str, not {type(id).__name__}"
            )
        deadline = _Deadline("ManagedSecrets.Retrieve", timeout)
        key = await deadline.wait("making the client's key pair", self._client_key())
        req = managed_secrets_pb2.ManagedSecretRetrieveRequest(id=id, public_key=key.public_pem)
        resp = await self._call(_generated._RETRIEVE, req, deadline.left("sending the call"))
        secret = resp.managed_secret
        if secret.value:
            loop = asyncio.get_running_loop()
            decrypting = loop.run_in_executor(None, key.private.decrypt, secret.value, OAEP)
            try:
                secret.value = await deadline.wait("decrypting the value", decrypting)
            except ValueError:
                raise errors.UnknownError(
                    f"managed secret {id!r}: the value could not be decrypted with this "
                    "client's key"
                ) from None
        return from_pb_ManagedSecretRetrieveResponse(resp)

    # -- helpers --------------------------------------------------------------------------

    async def _send(
        self,
        verb: str,
        method: MethodInfo,
        req: Any,
        secret: ManagedSecret,
        timeout: float | None,
    ) -> Any:
        """Check `secret` (before any call), encrypt its value, send `req`, all within one
        deadline."""
        where = f"managed_secrets.{verb}"
        deadline = _Deadline(method.name, timeout)
        if not isinstance(secret, ManagedSecret):
            got = "None" if secret is None else type(secret).__name__
            raise TypeError(f"{where}: managed_secret must be a ManagedSecret, not {got}")
        model = secret
        if isinstance(secret.value, str):  # text is sent as UTF-8
            model = copy.copy(secret)  # the caller's object is left as it was
            model.value = secret.value.encode()
        try:
            to_pb_ManagedSecret(model, req.managed_secret)
        except (TypeError, ValueError, AttributeError) as e:
            raise bad_argument(where, [("managed_secret", model)], e) from None
        sealed = req.managed_secret
        engine_id = sealed.secret_engine_id
        if sealed.value:
            if not engine_id:
                raise errors.BadRequestError(
                    f"{where}: ManagedSecret.secret_engine_id is empty; the value is "
                    "encrypted with its secret engine's public key, so name the engine"
                )
            key = await self._engine_key(where, engine_id, deadline)
            limit = key.key_size // 8 - OAEP_OVERHEAD
            if len(sealed.value) > limit:
                raise errors.BadRequestError(
                    f"{where}: ManagedSecret.value is {len(sealed.value)} bytes; the RSA "
                    f"{key.key_size}-bit key of secret engine {engine_id!r} encrypts at most "
                    f"{limit} bytes (RSA-OAEP, SHA-256); nothing was sent"
                )
            sealed.value = key.encrypt(sealed.value, OAEP)  # microseconds: no thread needed
        left = deadline.left("sending the call")
        try:
            return await self._call(method, req, left)
        except errors.RPCError:
            # The engine's key may have changed on the server: fetch it again next time.
            self._engine_keys.pop(engine_id, None)
            raise

    async def _engine_key(
        self, where: str, engine_id: str, deadline: _Deadline
    ) -> rsa.RSAPublicKey:
        """The engine's public key, from the cache while it is fresh, else from the API.
        Any failure raises (nothing is cached): a value is never sent unencrypted."""
        now = asyncio.get_running_loop().time()
        cached = self._engine_keys.get(engine_id)
        if cached is not None and now - cached[1] < ENGINE_KEY_TTL:
            return cached[0]
        unsent = f"{where}: the value was not sent: secret engine {engine_id!r}"
        try:
            got = await SecretEngines(self._transport).get(
                engine_id, deadline.left("fetching the secret engine's public key")
            )
        except errors.RPCError as e:
            msg = f"{unsent}: its public key could not be fetched: {e.msg}"
            raise _reworded(e, msg) from e
        pem = getattr(got.secret_engine, "public_key", b"")
        try:
            key = serialization.load_pem_public_key(pem) if pem else None
        except (ValueError, UnsupportedAlgorithm):
            key = None
        if not isinstance(key, rsa.RSAPublicKey):
            why = "has no public key" if not pem else "has a public key that is not RSA PEM"
            raise errors.RPCError(
                f"{unsent} {why} to encrypt it with",
                grpc.StatusCode.FAILED_PRECONDITION.value[0],
            )
        self._engine_keys[engine_id] = (key, now)
        return key

    def _client_key(self) -> asyncio.Future[_ClientKey]:
        """The client's key pair, made once (in a worker thread) and shared: concurrent
        retrieves await the same generation; a failed one is tried again by the next."""
        future = self._client_key_future
        if future is None or (
            future.done() and (future.cancelled() or future.exception() is not None)
        ):
            loop = asyncio.get_running_loop()
            future = self._client_key_future = loop.run_in_executor(None, _new_client_key)
        return future
