"""What the view modules (`views*.py`) need of the backend, so that they import nothing of
`backend.py`: the backend imports the views, never the other way round.

`State` is the backend as the views see it; `Extras` holds what only views keep (health set
by tests, recorded queries, managed-secret logs, organisation changes). `Extras` lives in
memory only: like `Emulator.add_key`, it is not kept in a `--db` file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import rsa

from sdm_async.testing.auth import Key
from sdm_async.testing.schema import Message, Method
from sdm_async.testing.tables import Record, Table


@dataclass(slots=True)
class Reply:
    message: Message  # the response, without the listed objects
    tail: bytes = b""  # a listing's objects, already in wire form, appended after `message`


@dataclass(slots=True)
class Health:
    healthy: bool
    error: str
    at: int  # when it was set, nanoseconds since the epoch


@dataclass
class Extras:
    started: int  # when this backend was made: the organisation exists from then at least
    health: dict[str, Health] = field(default_factory=dict)  # set by tests; healthy otherwise
    checked: dict[str, int] = field(default_factory=dict)  # secret store -> last check asked
    queries: list[tuple[Message, list[Message]]] = field(default_factory=list)  # with replay
    secret_logs: list[Message] = field(default_factory=list)  # ManagedSecretLog, oldest first
    org_changes: list[tuple[int, str, bytes]] = field(default_factory=list)  # at, activity, MFA


class HiddenStore(Protocol):
    def put_hidden(self, id: str, data: bytes | None) -> None: ...


class State(Protocol):
    """The backend, as views read and change it."""

    @property
    def tables(self) -> dict[str, Table]: ...
    @property
    def clock(self) -> Callable[[], int]: ...
    @property
    def journal(self) -> HiddenStore | None: ...
    @property
    def mfa(self) -> Message: ...
    @property
    def ca_keys(self) -> dict[str, str]: ...
    @property
    def secret_values(self) -> dict[str, bytes]: ...
    @property
    def engine_keys(self) -> dict[str, rsa.RSAPrivateKey]: ...
    @property
    def extras(self) -> Extras: ...

    def call(self, m: Method, request: Message, caller: Key) -> Reply: ...
    def derived_page(self, m: Method, req: Message, items: list[Message]) -> Reply: ...
    def _filter(self, m: Method, text: str) -> Callable[[Message], bool] | None: ...
    def _commit(
        self, table: Table, op: str, id: str, obj: Message, natural: str | None, actor: str = ""
    ) -> Record | None: ...
    def _now(self) -> int: ...
    def _new_engine_key(self, engine_id: str) -> bytes: ...


# A method's handler: the backend, the method, the request and the caller's key; it returns
# the response, or a `Reply` for a list page.
Handler = Callable[[State, Method, Message, Key], "Message | Reply"]
# Run after a method has answered (generic or not), to record what it did.
After = Callable[[State, Method, Message, Reply, Key], None]


def stable_id(prefix: str, *parts: str) -> str:
    """An id that is the same every time it is derived from the same parts."""
    return prefix + hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def set_time(ts: Message, at: int) -> None:
    """Set a Timestamp from nanoseconds since the epoch."""
    ts.seconds, ts.nanos = divmod(at, 1_000_000_000)
