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
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from sdm_async.testing.auth import Keys, new_key_pair
from sdm_async.testing.backend import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Backend
from sdm_async.testing.journal import Journal
from sdm_async.testing.server import Faults, RateLimiter, Servicer, Stats

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from sdm_async.client import Client, ClientOptions


class Emulator:
    """A local StrongDM API. Options (all keyword-only):

    - `host`, `port`: where to listen (port 0 picks a free one; see `address`).
    - `access_key`, `secret_key`: the admin API key it accepts; made up when not given.
    - `rate_limit`, `rate_limit_window`: calls per window of seconds per key (0: no limit).
    - `latency`, `latency_jitter`: seconds added to each call (fixed, plus random up to).
    - `fault_rate`, `fault_code` (UNAVAILABLE or INTERNAL), `fault_when` ("before" or "after"
      the change is applied): calls that fail on purpose.
    - `db`: a SQLite file that keeps the state across restarts (in memory when None).
    - `page_size`, `max_page_size`: list page sizes (default when the request sets no limit,
      and the most it may ask for).
    - `seed`: seeds the fault and latency randomness.
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
    ) -> None:
        if (access_key is None) != (secret_key is None):
            raise ValueError("give both access_key and secret_key, or neither")
        if not 1 <= page_size <= max_page_size:
            raise ValueError("page_size must be between 1 and max_page_size")
        self.host = host
        self.port = port
        self.faults = Faults(fault_rate, fault_code, fault_when, latency, latency_jitter, seed)
        self.limiter = RateLimiter(rate_limit, rate_limit_window)
        self.keys = Keys()
        self.journal = Journal(db) if db is not None else None
        self.backend = Backend(
            self.keys, self.journal, page_size=page_size, max_page_size=max_page_size
        )
        self._restore()
        if access_key is None or secret_key is None:
            stored = self._stored_admin_key()
            access_key, secret_key = stored or new_key_pair()
        self.access_key = access_key
        self.secret_key = secret_key
        self.keys.add(access_key, secret_key)
        if self.journal is not None:
            self.journal.add_key(access_key, secret_key, "", None)
        self.servicer = Servicer(self.backend, self.limiter, self.faults)
        self._max_streams = max_concurrent_streams
        self._server: grpc.aio.Server | None = None

    def __repr__(self) -> str:
        return f"<Emulator {self.address or 'not started'} access_key={self.access_key!r}>"

    def _restore(self) -> None:
        if self.journal is None:
            return
        for access_key, secret_key, account_id, permissions in self.journal.keys():
            if account_id or permissions is not None:
                self.keys.add(access_key, secret_key, account_id, permissions)
        for service, change in self.journal.changes():
            self.backend.replay(service, change)
        for id, data in self.journal.hidden():
            self.backend.restore_hidden(id, data)

    def _stored_admin_key(self) -> tuple[str, str] | None:
        if self.journal is None:
            return None
        for access_key, secret_key, account_id, permissions in self.journal.keys():
            if not account_id and permissions is None:
                return access_key, secret_key
        return None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}" if self._server is not None else ""

    @property
    def stats(self) -> Stats:
        """Calls served, and the most that were in flight at once."""
        return self.servicer.stats

    async def start(self) -> None:
        options: list[tuple[str, Any]] = []
        if self._max_streams is not None:
            options.append(("grpc.max_concurrent_streams", self._max_streams))
        server = grpc.aio.server(options=options)
        server.add_generic_rpc_handlers([self.servicer])
        self.port = server.add_insecure_port(f"{self.host}:{self.port}")
        await server.start()
        self._server = server

    async def stop(self, grace: float | None = None) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)
        if self.journal is not None:
            self.journal.close()
            self.journal = None

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

    def client(self, **options: Unpack[ClientOptions]) -> Client:
        """An `sdm_async.Client` connected to this emulator with its admin key."""
        from sdm_async.client import Client

        if self._server is None:
            raise RuntimeError("start the emulator first (async with Emulator() as emu: ...)")
        return Client(self.access_key, self.secret_key, self.address, True, **options)

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

    def add_key(self, permissions: frozenset[str] | None = None) -> tuple[str, str]:
        """Register another API key (admin when `permissions` is None); returns it."""
        access_key, secret_key = new_key_pair()
        self.keys.add(access_key, secret_key, "", permissions)
        return access_key, secret_key
