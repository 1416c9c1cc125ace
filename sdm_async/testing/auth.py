"""Who may call: API keys, request signatures checked as the real API checks them, and the
permissions of keys made through `Accounts.Create` with a `Token`.

The signature is recomputed over the exact bytes received (never a re-serialization: protobuf
bytes are not canonical) and compared in constant time. A signature made on another UTC date
comes from another day's key and so fails like a wrong secret.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc

from sdm_async._signing import Signer, decode_secret, utc_date
from sdm_async.testing.status import ApiError

# The permission a token needs for each method of the core services (`service.kind`); other
# services are for admin keys only. Names are the API's (`sdm_async.Permission`).
PERMISSIONS: dict[str, str] = {
    "Accounts.list": "user:list",
    "Accounts.get": "user:list",
    "Accounts.create": "user:create",
    "Accounts.update": "user:update",
    "Accounts.delete": "user:delete",
    "AccountsHistory.list": "audit:users",
    "Roles.list": "role:list",
    "Roles.get": "role:list",
    "Roles.create": "role:create",
    "Roles.update": "role:update",
    "Roles.delete": "role:delete",
    "RolesHistory.list": "audit:roles",
    "AccountAttachments.list": "role:list",
    "AccountAttachments.get": "role:list",
    "AccountAttachments.create": "user:assign",
    "AccountAttachments.delete": "user:assign",
    "AccountAttachmentsHistory.list": "audit:roles",
    "AccountGrants.list": "grant:read",
    "AccountGrants.get": "grant:read",
    "AccountGrants.create": "grant:write",
    "AccountGrants.delete": "grant:write",
    "AccountGrantsHistory.list": "audit:accountgrants",
    "Resources.list": "datasource:list",
    "Resources.get": "datasource:list",
    "Resources.create": "datasource:create",
    "Resources.update": "datasource:update",
    "Resources.delete": "datasource:delete",
    "ResourcesHistory.list": "audit:datasources",
    "Nodes.list": "relay:list",
    "Nodes.get": "relay:list",
    "Nodes.create": "relay:create",
    "Nodes.update": "relay:create",
    "Nodes.delete": "relay:create",
    "NodesHistory.list": "audit:nodes",
    "RoleAttachments.list": "role:list",
    "RoleAttachments.get": "role:list",
    "RoleAttachments.create": "role:update",
    "RoleAttachments.delete": "role:update",
    "RoleGrants.list": "role:list",
    "RoleGrants.get": "role:list",
    "RoleGrants.create": "role:update",
    "RoleGrants.delete": "role:update",
    "SecretStores.list": "secretstore:list",
    "SecretStores.get": "secretstore:list",
    "SecretStores.create": "secretstore:create",
    "SecretStores.update": "secretstore:update",
    "SecretStores.delete": "secretstore:delete",
}


@dataclass
class Key:
    access_key: str
    signer: Signer = field(repr=False)
    account_id: str = ""  # the Token account behind a key made through the API
    permissions: frozenset[str] | None = None  # None: an admin key, allowed everything

    def allows(self, service: str, kind: str) -> bool:
        if self.permissions is None:
            return True
        needed = PERMISSIONS.get(f"{service}.{kind}")
        return needed is not None and needed in self.permissions


def check_key_pair(access_key: str, secret_key: str) -> bytes:
    """The secret's bytes, or ValueError when the pair is one a client could not send: the
    same rules as `sdm_async.Client`, so that the emulator never accepts a key the client
    refuses (a secret with a space inside would otherwise decode here and not there)."""
    if not isinstance(access_key, str) or not access_key:
        raise ValueError("the access key must be a non-empty str")
    if not (access_key.isascii() and access_key.isprintable()) or " " in access_key:
        raise ValueError("the access key must be printable ASCII without spaces")
    try:
        return decode_secret(secret_key)
    except (TypeError, ValueError):  # its message names the client's parameter
        raise ValueError("the secret key is not base64: give it as it was issued") from None


def new_key_pair() -> tuple[str, str]:
    """A fresh (access key, base64 secret) in the API's format."""
    return f"auth-{secrets.token_hex(8)}", base64.b64encode(secrets.token_bytes(32)).decode()


class Keys:
    def __init__(self) -> None:
        self._keys: dict[str, Key] = {}
        self.suspended: set[str] = set()  # token account ids whose keys are refused

    def add(
        self,
        access_key: str,
        secret_key: str,
        account_id: str = "",
        permissions: frozenset[str] | None = None,
    ) -> Key:
        key = Key(
            access_key, Signer(check_key_pair(access_key, secret_key)), account_id, permissions
        )
        self._keys[access_key] = key
        return key

    def remove_account(self, account_id: str) -> None:
        for access_key in [k for k, v in self._keys.items() if v.account_id == account_id]:
            del self._keys[access_key]

    def verify(self, method: str, body: bytes, metadata: Mapping[str, str]) -> Key:
        """The key that signed this call, or UNAUTHENTICATED saying what is wrong."""
        access_key = metadata.get("x-sdm-authentication")
        signature = metadata.get("x-sdm-signature")
        if not access_key or not signature:
            missing = "x-sdm-authentication" if not access_key else "x-sdm-signature"
            raise ApiError(
                grpc.StatusCode.UNAUTHENTICATED,
                f"missing {missing} metadata: sign each request with an API key",
            )
        key = self._keys.get(access_key)
        if key is None:
            raise ApiError(grpc.StatusCode.UNAUTHENTICATED, "unknown API access key")
        expected = key.signer.sign(method, body, utc_date())
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise ApiError(
                grpc.StatusCode.UNAUTHENTICATED,
                "invalid request signature: check the API secret, the system clock (UTC date) "
                "and that the signed bytes are the bytes sent",
            )
        if key.account_id in self.suspended:
            raise ApiError(grpc.StatusCode.UNAUTHENTICATED, "the token of this key is suspended")
        return key
