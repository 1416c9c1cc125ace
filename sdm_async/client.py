"""`Client`: options, lifecycle, and one attribute per service of the API."""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

from sdm_async._generated.services import Services, SnapshotServices
from sdm_async._lazy import bound
from sdm_async._model import ts_to_pb
from sdm_async._retry import RetryPolicy
from sdm_async._signing import Signer, decode_secret

if TYPE_CHECKING:
    # Imported where used instead: grpc, protobuf and anyio load when a client is made or a
    # bulk job run, not on `import sdm_async` (annotations are not evaluated at run time).
    from typing_extensions import Unpack

    from sdm_async import bulk as _bulk
    from sdm_async._rpc import Attempt
    from sdm_async._secrets import ManagedSecrets
    from sdm_async.bulk import Outcome

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_IN_FLIGHT",
    "Client",
    "ClientOptions",
    "EnvClientOptions",
    "SnapshotClient",
]

VERSION = "0.1.0"
DEFAULT_HOST = "app.strongdm.com:443"
DEFAULT_MAX_IN_FLIGHT = 64
USER_AGENT = f"sdm-async/{VERSION}"
MAX_PAGE_LIMIT = 1000
I = TypeVar("I")  # noqa: E741 - the item type
R = TypeVar("R")


class ClientOptions(TypedDict, total=False):
    """The options of `Client` after its credentials, host and `insecure`, for helpers that
    pass them on."""

    retry_rate_limit_errors: bool | None
    page_limit: int
    retry: RetryPolicy | None
    max_in_flight: int
    user_agent: str
    channel_options: Sequence[tuple[str, Any]]
    on_attempt: Callable[[Attempt], None] | None
    pace_rate_limits: bool
    root_certificates: bytes | None


class EnvClientOptions(ClientOptions, total=False):
    """`Client.from_env` options: where to connect, and the keyword-only options."""

    host: str
    insecure: bool


def _check_access_key(api_access_key: object) -> str:
    if not isinstance(api_access_key, str):
        raise TypeError(f"api_access_key must be a str, not {type(api_access_key).__name__}")
    key = api_access_key.strip()
    if not key:
        raise ValueError("api_access_key is empty: pass the access key of a StrongDM API key")
    if any(c.isspace() for c in key):
        raise ValueError("api_access_key contains whitespace: pass the access key exactly")
    if not (key.isascii() and key.isprintable()):  # it travels as a gRPC header
        raise ValueError(
            "api_access_key holds characters other than printable ASCII: pass the access key "
            "exactly as StrongDM showed it"
        )
    return key


def _check_root_certificates(pem: object, insecure: bool) -> None:
    if pem is None:
        return
    if not isinstance(pem, bytes):
        raise TypeError(
            f"root_certificates must be PEM bytes, not {type(pem).__name__} "
            "(read the file in binary mode: open(path, 'rb').read())"
        )
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError("root_certificates holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    if insecure:
        raise ValueError("root_certificates is for TLS: it cannot be used with insecure=True")


class Client(Services):
    """An asyncio client of the StrongDM API.

    `Client(api_access_key, api_secret, host, insecure, retry_rate_limit_errors,
    page_limit)` takes the official client's positional arguments; the rest are keyword-only:

    - `retry_rate_limit_errors`: retry RESOURCE_EXHAUSTED (waiting until the window resets).
      Given, it overrides the field of the same name in `retry`; left out (None), the
      policy's value holds (True by default).
    - `page_limit`: items per page for list calls (0: the server's default).
    - `retry`: a `RetryPolicy` for everything else about retries.
    - `max_in_flight`: calls in flight at once across the whole client (bulk jobs included).
    - `user_agent`: sent as `x-sdm-user-agent`.
    - `channel_options`: extra gRPC channel arguments.
    - `on_attempt`: called with an `Attempt` after every attempt (for metrics).
    - `pace_rate_limits`: pace calls to each rate-limit bucket's budget (from the answers'
      `rate_limit`): when it is spent, hold new calls until the window resets and release
      them spread over it, rather than have the server refuse them. False turns it off.
    - `root_certificates`: PEM bytes of the certificate authorities to trust instead of the
      system's (a private CA, a TLS-inspecting proxy, `Emulator(tls=True)`).

    Use `async with Client(...) as client:` or `await client.close()`. Channels are created
    on first use inside the running event loop; each service (its module, models and
    protobuf messages) on first access to its attribute.
    """

    # Secret values are encrypted end to end, which the generated service cannot know.
    managed_secrets: ManagedSecrets = bound("sdm_async._secrets", "ManagedSecrets")

    def __init__(
        self,
        api_access_key: str,
        api_secret: str,
        host: str = DEFAULT_HOST,
        insecure: bool = False,
        retry_rate_limit_errors: bool | None = None,
        page_limit: int = 0,
        *,
        retry: RetryPolicy | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        user_agent: str = USER_AGENT,
        channel_options: Sequence[tuple[str, Any]] = (),
        on_attempt: Callable[[Attempt], None] | None = None,
        pace_rate_limits: bool = True,
        root_certificates: bytes | None = None,
    ) -> None:
        access_key = _check_access_key(api_access_key)
        secret = decode_secret(api_secret)
        if not isinstance(host, str) or not host.strip():
            raise ValueError("host must be 'name:port', e.g. 'app.strongdm.com:443'")
        if isinstance(page_limit, bool) or not isinstance(page_limit, int):
            raise TypeError("page_limit must be an int")
        if not 0 <= page_limit <= MAX_PAGE_LIMIT:
            raise ValueError(f"page_limit must be between 0 (server default) and {MAX_PAGE_LIMIT}")
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
            raise TypeError("max_in_flight must be an int")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        _check_root_certificates(root_certificates, insecure)
        if not isinstance(user_agent, str) or not (
            user_agent.isascii() and user_agent.isprintable()
        ):
            raise ValueError("user_agent must be a str of printable ASCII (it is a gRPC header)")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a sdm_async.RetryPolicy, not {type(retry).__name__}")
        policy = retry or RetryPolicy()
        if retry_rate_limit_errors is not None:  # only a keyword actually given overrides
            if not isinstance(retry_rate_limit_errors, bool):
                raise TypeError("retry_rate_limit_errors must be a bool (or None: the policy's)")
            if policy.retry_rate_limit_errors != retry_rate_limit_errors:
                policy = dataclasses.replace(
                    policy, retry_rate_limit_errors=retry_rate_limit_errors
                )
        self.api_access_key = access_key
        self.host = host.strip()
        self.insecure = insecure
        self.page_limit = page_limit
        from sdm_async._rpc import Transport  # grpc: loaded by the first client, not the import

        self._transport = Transport(
            host=self.host,
            insecure=insecure,
            access_key=access_key,
            signer=Signer(secret),
            user_agent=user_agent,
            retry=policy,
            max_in_flight=max_in_flight,
            channel_options=channel_options,
            on_attempt=on_attempt,
            pace=pace_rate_limits,
            root_certificates=root_certificates,
        )
        self._bind_services(self._transport, page_limit)

    @classmethod
    def from_env(cls, **options: Unpack[EnvClientOptions]) -> Client:
        """A client from SDM_API_ACCESS_KEY, SDM_API_SECRET_KEY and the optional SDM_API_HOST
        and SDM_API_ROOT_CERTIFICATES (the path of a PEM file of CAs to trust)."""
        missing = [v for v in ("SDM_API_ACCESS_KEY", "SDM_API_SECRET_KEY") if not os.environ.get(v)]
        if missing:
            raise ValueError(f"set {' and '.join(missing)} to use Client.from_env()")
        options.setdefault("host", os.environ.get("SDM_API_HOST") or DEFAULT_HOST)
        ca_path = os.environ.get("SDM_API_ROOT_CERTIFICATES")
        if ca_path and "root_certificates" not in options:
            try:
                with open(ca_path, "rb") as f:
                    options["root_certificates"] = f.read()
            except OSError as e:
                raise ValueError(
                    f"SDM_API_ROOT_CERTIFICATES={ca_path!r} cannot be read ({e.strerror}): "
                    "give the path of a PEM file of the certificate authorities to trust"
                ) from None
        return cls(os.environ["SDM_API_ACCESS_KEY"], os.environ["SDM_API_SECRET_KEY"], **options)

    def __repr__(self) -> str:
        return f"<sdm_async.Client host={self.host!r} access_key={self.api_access_key!r}>"

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy in force (`retry_rate_limit_errors` applied)."""
        return self._transport.retry

    @property
    def max_in_flight(self) -> int:
        """The most calls this client has in flight at once, across every service."""
        return self._transport.max_in_flight

    @property
    def retries(self) -> int:
        """Retries made so far by this client."""
        return self._transport.retries

    async def bulk(
        self,
        method: Callable[..., Awaitable[R]],
        items: Iterable[I],
        *,
        concurrency: int | None = None,
        progress: bool = False,
    ) -> list[Outcome[I, R]]:
        """Call `method` (e.g. `client.accounts.create`) once per item, at most `concurrency`
        at once (default: the client's `max_in_flight`), and return one `Outcome` per item
        in input order. A tuple item is spread as positional arguments. A per-item failure
        is in `outcome.error`, never raised; cancelling the caller cancels every call in
        flight and raises. `progress=True` shows a progress bar on a terminal."""
        from sdm_async import bulk as _bulk

        _bulk.check_method(method, self._transport)
        limit = _bulk.check_concurrency(concurrency, self.max_in_flight)
        return await _bulk.bulk(method, items, concurrency=limit, progress=progress)

    def bulk_iter(
        self,
        method: Callable[..., Awaitable[R]],
        items: Iterable[I],
        *,
        concurrency: int | None = None,
        progress: bool = False,
    ) -> _bulk.BulkIterator[I, R]:
        """Like `bulk`, but yields outcomes as they complete (`async for`), reading `items`
        lazily. Use `async with client.bulk_iter(...) as outcomes:` to stop the job when
        leaving the loop early."""
        from sdm_async import bulk as _bulk

        _bulk.check_method(method, self._transport)
        limit = _bulk.check_concurrency(concurrency, self.max_in_flight)
        return _bulk.bulk_iter(method, items, concurrency=limit, progress=progress)

    @property
    def pace_rate_limits(self) -> bool:
        """Whether calls are paced to the servers' rate-limit budgets."""
        return self._transport.pacer is not None

    def snapshot_at(self, snapshot_datetime: datetime.datetime) -> SnapshotClient:
        """A read-only client that sees the organisation as it was at `snapshot_datetime`
        (a naive datetime is read as UTC, as the official SDK reads it)."""
        if not isinstance(snapshot_datetime, datetime.datetime):
            raise TypeError("snapshot_at takes a datetime.datetime")
        return SnapshotClient(self, snapshot_datetime)

    async def close(self) -> None:
        """Close the channels; calls in flight are cancelled. Idempotent."""
        await self._transport.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class SnapshotClient(SnapshotServices):
    """Read-only view of the organisation at a past moment; shares its client's channels."""

    def __init__(self, client: Client, snapshot_datetime: datetime.datetime) -> None:
        self.snapshot_datetime = snapshot_datetime
        if snapshot_datetime.tzinfo is None:
            # The official SDK sends it with Timestamp.FromDatetime, which reads naive as UTC
            # (unlike model fields, which it reads as local time, as we do).
            snapshot_datetime = snapshot_datetime.replace(tzinfo=datetime.timezone.utc)
        from sdm_async._generated.v1 import spec_pb2

        stamp = spec_pb2.GetRequestMetadata().snapshot_at  # the API pool's Timestamp type
        ts_to_pb(snapshot_datetime, stamp)
        self._bind_services(client._transport, client.page_limit, stamp)

    def __repr__(self) -> str:
        return f"<sdm_async.SnapshotClient at {self.snapshot_datetime.isoformat()}>"
