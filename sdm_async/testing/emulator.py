"""`Emulator`: a real grpc.aio server on loopback that speaks the StrongDM API.

    async with Emulator() as emu:
        async with emu.client() as client:
            await client.accounts.create(sdm_async.User(...))

The official `strongdm.Client(emu.access_key, emu.secret_key, emu.address, True)` works
against it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import errno
import socket
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from sdm_async.testing import views_audit, views_health
from sdm_async.testing.auth import Keys, check_key_pair, new_key_pair
from sdm_async.testing.backend import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Backend
from sdm_async.testing.journal import Journal
from sdm_async.testing.server import Faults, RateLimiter, Servicer, Stats
from sdm_async.testing.status import StartError
from sdm_async.testing.tls import Certificate, load_pair, make_certificate

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from sdm_async.client import Client, ClientOptions


# Seconds `stop()` lets calls in flight finish (and clients hang up) by default.
_STOP_GRACE = 1.0


class Emulator:
    """A local StrongDM API. Options (all keyword-only):

    - `host`, `port`: where to listen (port 0 picks a free one; see `address`). A port in
      use, by another emulator or anything else, is a `StartError` from `start()`.
    - `access_key`, `secret_key`: the admin API key it accepts; made up when not given.
    - `rate_limit`, `rate_limit_window`: calls per window of seconds per key (0: no limit).
    - `latency`, `latency_jitter`: seconds added to each call (fixed, plus random up to).
    - `fault_rate`, `fault_code` (UNAVAILABLE or INTERNAL), `fault_when` ("before" or "after"
      the change is applied): calls that fail on purpose.
    - `db`: a SQLite file that keeps the state across restarts (in memory when None); one
      emulator at a time per file (`StartError` otherwise), until `stop()`.
    - `page_size`, `max_page_size`: list page sizes (default when the request sets no limit,
      and the most it may ask for).
    - `seed`: seeds the fault and latency randomness.
    - `tls`: serve TLS with a certificate made for localhost, 127.0.0.1 and `host`
      (`root_certificates` is its PEM, which `client()` trusts); or give `tls_cert` and
      `tls_key` (PEM bytes) to serve your own.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        access_key: str | None = None,
        secret_key: str | None = None,
        rate_limit: int = 0,
        rate_limit_window: float = 60.0,
        latency: float = 0.0,
        latency_jitter: float = 0.0,
        fault_rate: float = 0.0,
        fault_code: str = "UNAVAILABLE",
        fault_when: str = "before",
        db: str | Path | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        max_page_size: int = MAX_PAGE_SIZE,
        seed: int | None = None,
        max_concurrent_streams: int | None = None,
        tls: bool = False,
        tls_cert: bytes | None = None,
        tls_key: bytes | None = None,
    ) -> None:
        if (access_key is None) != (secret_key is None):
            raise ValueError("give both access_key and secret_key, or neither")
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("give both tls_cert and tls_key (PEM bytes), or neither")
        if not 1 <= page_size <= max_page_size:
            raise ValueError("page_size must be between 1 and max_page_size")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be between 0 and 65535 (0 picks a free one), not {port}")
        if max_concurrent_streams is not None and max_concurrent_streams < 1:
            raise ValueError("max_concurrent_streams must be at least 1")
        if access_key is not None and secret_key is not None:
            check_key_pair(access_key, secret_key)
        self.host = host.strip("[]")  # an IPv6 address may come bracketed or not
        self.port = port
        if tls_cert is not None and tls_key is not None:
            self._tls: Certificate | None = load_pair(tls_cert, tls_key)
        elif tls:
            names = dict.fromkeys(("localhost", "127.0.0.1", self.host))  # ordered, no repeats
            self._tls = make_certificate(tuple(names))
        else:
            self._tls = None
        self.faults = Faults(fault_rate, fault_code, fault_when, latency, latency_jitter, seed)
        self.limiter = RateLimiter(rate_limit, rate_limit_window)
        self.keys = Keys()
        self.journal = Journal(db) if db is not None else None
        self.backend = Backend(
            self.keys, self.journal, page_size=page_size, max_page_size=max_page_size
        )
        stored = self._restore()
        if access_key is None or secret_key is None:
            access_key, secret_key = stored or new_key_pair()
        self.access_key = access_key
        self.secret_key = secret_key
        self.keys.add(access_key, secret_key)
        if self.journal is not None and (access_key, secret_key) != stored:
            self.journal.set_admin_key(access_key, secret_key)
        self.servicer = Servicer(self.backend, self.limiter, self.faults)
        self._max_streams = max_concurrent_streams
        self._server: grpc.aio.Server | None = None
        self._closed = False  # stop() closed the db: serving again would not keep changes

    def __repr__(self) -> str:
        return f"<Emulator {self.address or 'not started'} access_key={self.access_key!r}>"

    def _restore(self) -> tuple[str, str] | None:
        """Rebuild the state from the db; returns the admin key kept there, if any."""
        journal = self.journal
        if journal is None:
            return None
        try:
            return self._replay(journal)
        except Exception as e:  # whatever the file holds: name it rather than a traceback
            journal.close()
            self.journal = None
            raise StartError(
                f"cannot read the state in db {journal.path} ({type(e).__name__}: {e}): "
                "is it a file written by this version of the emulator?"
            ) from None

    def _replay(self, journal: Journal) -> tuple[str, str] | None:
        for service, change in journal.changes():
            self.backend.replay(service, change)
        for id, data in journal.hidden():
            self.backend.restore_hidden(id, data)
        admin = None
        accounts = self.backend.tables["Accounts"].records
        for access_key, secret_key, account_id, permissions in journal.keys():
            if not account_id and permissions is None:
                admin = access_key, secret_key
            elif account_id and account_id not in accounts:
                # The token was deleted (by a version that kept its key): it stays shut out.
                journal.remove_keys(account_id)
            else:
                self.keys.add(access_key, secret_key, account_id, permissions)
        return admin

    @property
    def address(self) -> str:
        return _host_port(self.host, self.port) if self._server is not None else ""

    @property
    def stats(self) -> Stats:
        """Calls served, and the most that were in flight at once."""
        return self.servicer.stats

    async def start(self) -> None:
        """Listen and serve; `StartError` when the address cannot be had (the db, if any, is
        then released, as by `stop()`)."""
        if self._closed:
            raise StartError("this emulator was stopped and its db closed: make a new Emulator")
        if self._server is not None:
            raise RuntimeError("the emulator is already started")
        # No SO_REUSEPORT: with it a second server binds a port in use and the two split the
        # connections between them.
        options: list[tuple[str, Any]] = [
            ("grpc.so_reuseport", 0),
            # Keepalive pings at any rate, on idle connections too, whatever a client is set
            # to send (the live API's limits are unknown): by default gRPC answers a third
            # ping within 5 min (2 h when idle) with a GOAWAY "too_many_pings".
            ("grpc.http2.max_ping_strikes", 0),
        ]
        if self._max_streams is not None:
            options.append(("grpc.max_concurrent_streams", self._max_streams))
        try:
            _check_can_listen(self.host, self.port)
            server = grpc.aio.server(options=options)
            server.add_generic_rpc_handlers([self.servicer])
            try:
                where = _host_port(self.host, self.port)
                if self._tls is None:
                    port = server.add_insecure_port(where)
                else:
                    pair = [(self._tls.key_pem, self._tls.cert_pem)]
                    port = server.add_secure_port(where, grpc.ssl_server_credentials(pair))
            except RuntimeError:  # most likely lost a race for the port since the check
                raise StartError(
                    f"cannot listen on {_host_port(self.host, self.port)}: gRPC could not bind "
                    "it (in use?)"
                ) from None
            await server.start()
        except BaseException:
            await self.stop()
            raise
        self.port = port
        self._server = server

    async def stop(self, grace: float | None = None) -> None:
        """Stop serving. Calls in flight get `grace` seconds to finish (None: 1 s), then
        fail with UNAVAILABLE; 0 cuts them off at once."""
        server, self._server = self._server, None
        if server is not None:
            # Cutting calls off makes gRPC tear every open connection down with an error
            # GOAWAY, which each client's gRPC core logs on stderr ("Got goaway [2]"), idle
            # or closing connections included. A graceful stop sends a plain GOAWAY, on which
            # idle clients hang up at once: it ends as soon as the calls in flight are done.
            await server.stop(_STOP_GRACE if grace is None else grace or None)
        if self.journal is not None:
            self.journal.close()
            self.journal = None
            self._closed = True

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def root_certificates(self) -> bytes | None:
        """The PEM certificate it serves TLS with (what a client trusts), None in plain text."""
        return None if self._tls is None else self._tls.cert_pem

    def client(self, **options: Unpack[ClientOptions]) -> Client:
        """An `sdm_async.Client` connected to this emulator with its admin key (trusting
        its certificate when it serves TLS)."""
        from sdm_async.client import Client

        if self._server is None:
            raise RuntimeError("start the emulator first (async with Emulator() as emu: ...)")
        if self._tls is None:
            return Client(self.access_key, self.secret_key, self.address, True, **options)
        options.setdefault("root_certificates", self._tls.cert_pem)
        return Client(self.access_key, self.secret_key, self.address, False, **options)

    @contextlib.contextmanager
    def running_in_thread(self) -> Iterator[Emulator]:
        """Serve from a background thread with its own event loop, for synchronous code
        such as the official SDK: `with Emulator().running_in_thread() as emu: ...`.

        Not for use beside grpc.aio clients on another loop of the same process: grpc.aio
        shares one completion queue per process and several loops in one process misbehave.
        """
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as e:  # reported to the caller's thread below
                failure.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())

        thread = threading.Thread(target=serve, name="sdm-async-emulator", daemon=True)
        thread.start()
        ready.wait()
        try:
            if failure:
                raise failure[0]
            yield self
        finally:
            if not failure:
                loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    def seed_users(self, n: int) -> bool:
        """Add `n` users if the organisation is fresh (nothing recorded yet, as on a new db)
        and say whether it did: a restart on the same db does not add them again."""
        if n < 0:
            raise ValueError("the number of users to seed must be >= 0")
        if not n or not self.backend.fresh():
            return False
        with self.journal.transaction() if self.journal else contextlib.nullcontext():
            self.backend.seed_users(n)  # all or none, if the process dies on the way
        return True

    def add_key(self, permissions: frozenset[str] | None = None) -> tuple[str, str]:
        """Register another API key (admin when `permissions` is None); returns it. It lasts
        as long as this emulator: it is not kept in the db."""
        access_key, secret_key = new_key_pair()
        self.keys.add(access_key, secret_key, "", permissions)
        return access_key, secret_key

    # Test hooks for what the API lists but offers no method to make. Each raises ValueError
    # for an id that names nothing (or bad values), before recording anything. Call them
    # between calls (from the test), as with seed_users: they change the state directly.

    def add_access_request(
        self,
        resource_id: str,
        account_id: str = "",
        *,
        reason: str = "",
        workflow_id: str = "",
        status: str = "pending",
        start_from: datetime.datetime | None = None,
        duration: datetime.timedelta = datetime.timedelta(hours=1),
    ) -> str:
        """Record an access request by `account_id` for `resource_id` (valid from
        `start_from`, now by default, for `duration`), with its `requested` event; returns
        its id. It is listed by `AccessRequests`, with its history, and kept in the db."""
        return views_audit.add_access_request(
            self.backend,
            resource_id,
            account_id,
            reason=reason,
            workflow_id=workflow_id,
            status=status,
            start_from=start_from,
            duration=duration,
        )

    def add_access_request_event(
        self,
        request_id: str,
        type: str,
        actor_id: str = "",
        *,
        metadata: str = "",
        status: str | None = None,
    ) -> str:
        """Record an event (`approved`, `denied`, ...) of an access request; with `status`,
        the request takes that status too. Returns the event's id."""
        return views_audit.add_access_request_event(
            self.backend, request_id, type, actor_id, metadata, status
        )

    def set_health(self, id: str, *, healthy: bool, error: str = "") -> None:
        """Make a resource, node, secret store or secret engine healthy or not, as
        `HealthChecks`, `SecretStoreHealths` and `SecretEngines.Healthcheck` report it
        (everything is healthy until set; kept in memory only)."""
        views_health.set_health(self.backend, id, healthy, error)

    def add_query(
        self,
        *,
        replay: Iterable[bytes] = (),
        timestamp: datetime.datetime | None = None,
        duration: datetime.timedelta = datetime.timedelta(0),
        **fields: str | int | bool,
    ) -> str:
        """Record a query as a gateway would (`account_id=`, `resource_id=`,
        `query_body=`, any plain field of `Query`), and for a session its `replay`: the
        output, one event per item, listed by `Replays` under `id:<query id>`. The account's
        and resource's names and tags are filled in. Returns the query's id; kept in
        memory only."""
        return views_audit.add_query(self.backend, dict(fields), replay, timestamp, duration)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _in_use(host: str, port: int) -> str:
    return (
        f"port {port} on {host} is in use (another emulator?): stop what holds it, "
        "or pick another port (0 picks a free one)"
    )


def _check_can_listen(host: str, port: int) -> None:
    """Say clearly why `host:port` cannot be listened on, before gRPC tries (it would only
    raise "Failed to bind" and log lines of its own)."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise StartError(f"cannot listen on {_host_port(host, port)}: {e.strerror}") from None
    failures: list[OSError] = []
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            # As gRPC does: connections of a previous run in TIME_WAIT do not hold the port.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise StartError(_in_use(host, port)) from None
                failures.append(e)
    if failures and len(failures) == len(addresses):  # gRPC needs one address that binds
        raise StartError(f"cannot listen on {_host_port(host, port)}: {failures[0].strerror}")
