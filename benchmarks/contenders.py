"""The three clients measured, each doing the same jobs against the same emulator:

- `sdm_async`: this SDK, used as its README shows.
- `official`: the official sync `strongdm` SDK (one call at a time, or from a thread pool).
- `grpc.aio`: bare generated-style multicallables with the four signed `x-sdm-*` entries and
  no model conversion: the floor under any asyncio SDK's overhead.

Every job returns a `Run`: what was done, wall time, and the client process's CPU time over
the measured block (`time.process_time()`: every thread of this process, gRPC's included; the
emulator runs in another process). Set-up and a warm-up call stay outside the block.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import anyio
import grpc
import grpc.aio
import strongdm

import sdm_async
from sdm_async._generated.v1 import accounts_pb2
from sdm_async._rpc import STREAMS_PER_CHANNEL
from sdm_async._signing import API_VERSION, Signer, decode_secret

SDM = "sdm_async"
OFFICIAL = "official"
BARE = "grpc.aio"


@dataclass
class Run:
    """One measured job of one contender."""

    done: int  # items listed or calls answered
    wall: float  # seconds
    cpu: float  # client process CPU seconds
    errors: int = 0  # items or calls that failed for good
    attempts: int = 0  # calls sent, retries included (counted where it matters)
    refused: int = 0  # attempts refused with RESOURCE_EXHAUSTED
    first_error: str = ""
    rss: int = 0  # a launched process's maximum resident set size, bytes (start-up case)

    @property
    def rate(self) -> float:
        return self.done / self.wall if self.wall > 0 else 0.0

    @property
    def cpu_us(self) -> float:
        """Client CPU per item or call, microseconds."""
        return self.cpu / self.done * 1e6 if self.done else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rate": self.rate, "cpu_us": self.cpu_us}


@dataclass
class Clock:
    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def measured() -> Iterator[Clock]:
    clock = Clock()
    w0, c0 = time.perf_counter(), time.process_time()
    try:
        yield clock
    finally:
        clock.wall = time.perf_counter() - w0
        clock.cpu = time.process_time() - c0


@dataclass(frozen=True)
class Target:
    """Where and as whom the contenders call."""

    address: str
    access_key: str
    secret_key: str


@dataclass(frozen=True)
class NewUser:
    email: str
    first_name: str
    last_name: str


def new_users(tag: str, n: int) -> list[NewUser]:
    return [NewUser(f"{tag}-{i}@bench.example.com", "Bench", f"{tag}-{i}") for i in range(n)]


def _error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:300]


# -- sdm_async ------------------------------------------------------------------------------


class SdmAsync:
    name = SDM

    def __init__(self, target: Target) -> None:
        self.target = target

    def use(self, target: Target) -> None:
        """Call as another API key from now on."""
        self.target = target

    def client(self, **options: Any) -> sdm_async.Client:
        t = self.target
        return sdm_async.Client(t.access_key, t.secret_key, t.address, True, **options)

    async def list_all(self, page_limit: int, warm_id: str) -> Run:
        async with self.client(page_limit=page_limit) as c:
            await c.accounts.get(warm_id)
            n = 0
            with measured() as clock:
                async for a in c.accounts.list(""):
                    a.id  # noqa: B018 - a consumer reads each item (every contender does)
                    n += 1
        return Run(n, clock.wall, clock.cpu)

    async def get_each(self, ids: Sequence[str]) -> Run:
        async with self.client() as c:
            await c.accounts.get(ids[0])
            get = c.accounts.get
            with measured() as clock:
                for id in ids:
                    await get(id)
        return Run(len(ids), clock.wall, clock.cpu)

    async def create_each(self, users: Sequence[NewUser]) -> Run:
        models = _sdm_users(users[1:])
        async with self.client() as c:
            await c.accounts.create(_sdm_users(users[:1])[0])
            create = c.accounts.create
            with measured() as clock:
                for m in models:
                    await create(m)
        return Run(len(models), clock.wall, clock.cpu)

    async def bulk_create(
        self, users: Sequence[NewUser], concurrency: int, *, warm: bool = True, count: bool = False
    ) -> Run:
        """`client.bulk(client.accounts.create, ...)` at `concurrency`, with a client whose
        limit on calls in flight is the same; `count`: count attempts and refusals (an
        `on_attempt` hook, which costs a report per attempt that the bare contender, counting
        nothing, does not pay: only the cases that report refusals count)."""
        models = _sdm_users(users[1:] if warm else users)
        attempts = refused = 0

        def on_attempt(a: sdm_async.Attempt) -> None:
            nonlocal attempts, refused
            attempts += 1
            if isinstance(a.error, sdm_async.RateLimitError):
                refused += 1

        hook = on_attempt if count else None
        async with self.client(max_in_flight=concurrency, on_attempt=hook) as c:
            if warm:
                await c.accounts.create(_sdm_users(users[:1])[0])
                attempts = refused = 0
            with measured() as clock:
                outcomes = await c.bulk(c.accounts.create, models, concurrency=concurrency)
        failed = [o.error for o in outcomes if o.error is not None]
        first = _error_text(failed[0]) if failed else ""
        done = len(outcomes) - len(failed)
        return Run(done, clock.wall, clock.cpu, len(failed), attempts, refused, first)


def _sdm_users(users: Sequence[NewUser]) -> list[sdm_async.User]:
    return [
        sdm_async.User(email=u.email, first_name=u.first_name, last_name=u.last_name) for u in users
    ]


# -- the official SDK -----------------------------------------------------------------------


class Official:
    """The official client is synchronous: its jobs run on this thread (blocking the event
    loop, which has nothing else to do meanwhile) or on a thread pool."""

    name = OFFICIAL

    def __init__(self, target: Target) -> None:
        self.target = target

    def use(self, target: Target) -> None:
        """Call as another API key from now on."""
        self.target = target

    def client(self, **options: Any) -> Any:
        t = self.target
        return strongdm.Client(t.access_key, t.secret_key, t.address, True, **options)

    async def list_all(self, page_limit: int, warm_id: str) -> Run:
        c = self.client(page_limit=page_limit)
        try:
            c.accounts.get(warm_id)
            n = 0
            with measured() as clock:
                for a in c.accounts.list(""):
                    a.id  # noqa: B018
                    n += 1
        finally:
            c.close()
        return Run(n, clock.wall, clock.cpu)

    async def get_each(self, ids: Sequence[str]) -> Run:
        c = self.client()
        try:
            c.accounts.get(ids[0])
            get = c.accounts.get
            with measured() as clock:
                for id in ids:
                    get(id)
        finally:
            c.close()
        return Run(len(ids), clock.wall, clock.cpu)

    async def create_each(self, users: Sequence[NewUser]) -> Run:
        models = _official_users(users[1:])
        c = self.client()
        try:
            c.accounts.create(_official_users(users[:1])[0])
            create = c.accounts.create
            with measured() as clock:
                for m in models:
                    create(m)
        finally:
            c.close()
        return Run(len(models), clock.wall, clock.cpu)

    async def threaded(self, users: Sequence[NewUser], threads: int, *, warm: bool = True) -> Run:
        """`accounts.create` from a pool of `threads` threads (the official SDK's way to go
        faster), counting the rate-limit refusals its retry loop swallows."""
        models = _official_users(users[1:] if warm else users)
        c = self.client()
        counts = {"refused": 0, "retried": 0}
        should_retry = c.shouldRetry

        def counting(retries: int, err: BaseException, deadline: float | None = None) -> bool:
            if isinstance(err, grpc.RpcError) and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                counts["refused"] += 1  # a lost update under threads is possible but harmless
            again: bool = should_retry(retries, err, deadline)
            counts["retried"] += again
            return again

        c.shouldRetry = counting  # the generated methods call self.parent.shouldRetry
        errors: list[BaseException] = []

        def one(m: Any) -> bool:
            try:
                c.accounts.create(m)
                return True
            except Exception as e:
                errors.append(e)
                return False

        try:
            if warm:
                c.accounts.create(_official_users(users[:1])[0])
                counts.update(refused=0, retried=0)
            with ThreadPoolExecutor(threads) as pool:
                pool.submit(lambda: None).result()  # the threads exist before the clock starts
                with measured() as clock:
                    done = sum(pool.map(one, models))
        finally:
            c.close()
        first = _error_text(errors[0]) if errors else ""
        attempts = len(models) + counts["retried"]
        return Run(done, clock.wall, clock.cpu, len(errors), attempts, counts["refused"], first)


def _official_users(users: Sequence[NewUser]) -> list[Any]:
    return [
        strongdm.User(email=u.email, first_name=u.first_name, last_name=u.last_name) for u in users
    ]


# -- bare grpc.aio --------------------------------------------------------------------------


class BareAio:
    """Multicallables made as generated stubs make them (`_registered_method=True`), sent
    bytes serialized once and signed by `sdm_async._signing.Signer`. Responses stay
    protobuf messages: no models, no retries, no limits."""

    name = BARE

    def __init__(self, target: Target) -> None:
        self.use(target)

    def use(self, target: Target) -> None:
        """Call as another API key from now on."""
        self.target = target
        self.signer = Signer(decode_secret(target.secret_key))

    def metadata(self, method: str, body: bytes) -> tuple[tuple[str, str], ...]:
        return (
            ("x-sdm-authentication", self.target.access_key),
            ("x-sdm-signature", self.signer.sign(method, body)),
            ("x-sdm-api-version", API_VERSION),
            ("x-sdm-user-agent", "bench-grpc-aio"),
        )

    def _callable(self, channel: grpc.aio.Channel, name: str, response: Any) -> Any:
        return channel.unary_unary(
            f"/v1.Accounts/{name}",
            request_serializer=None,
            response_deserializer=response.FromString,
            _registered_method=True,
        )

    def _get(self, channel: grpc.aio.Channel) -> Callable[[str], Awaitable[Any]]:
        mc = self._callable(channel, "Get", accounts_pb2.AccountGetResponse)
        metadata = self.metadata

        async def get(id: str) -> Any:
            req = accounts_pb2.AccountGetRequest()
            req.id = id
            body = req.SerializeToString()
            return await mc(body, metadata=metadata("Accounts.Get", body))

        return get

    def _create(self, channel: grpc.aio.Channel) -> Callable[[NewUser], Awaitable[Any]]:
        mc = self._callable(channel, "Create", accounts_pb2.AccountCreateResponse)
        metadata = self.metadata

        async def create(u: NewUser) -> Any:
            req = accounts_pb2.AccountCreateRequest()
            user = req.account.user
            user.email = u.email
            user.first_name = u.first_name
            user.last_name = u.last_name
            body = req.SerializeToString()
            return await mc(body, metadata=metadata("Accounts.Create", body))

        return create

    async def list_all(self, page_limit: int, warm_id: str) -> Run:
        async with grpc.aio.insecure_channel(self.target.address) as channel:
            await self._get(channel)(warm_id)
            mc = self._callable(channel, "List", accounts_pb2.AccountListResponse)
            n = 0
            with measured() as clock:
                req = accounts_pb2.AccountListRequest()
                if page_limit:
                    req.meta.limit = page_limit
                while True:
                    body = req.SerializeToString()
                    resp = await mc(body, metadata=self.metadata("Accounts.List", body))
                    for a in resp.accounts:
                        getattr(a, a.WhichOneof("account")).id  # noqa: B018
                        n += 1
                    if not resp.meta.next_cursor:
                        break
                    req.meta.cursor = resp.meta.next_cursor
        return Run(n, clock.wall, clock.cpu)

    async def get_each(self, ids: Sequence[str]) -> Run:
        async with grpc.aio.insecure_channel(self.target.address) as channel:
            get = self._get(channel)
            await get(ids[0])
            with measured() as clock:
                for id in ids:
                    await get(id)
        return Run(len(ids), clock.wall, clock.cpu)

    async def create_each(self, users: Sequence[NewUser]) -> Run:
        async with grpc.aio.insecure_channel(self.target.address) as channel:
            create = self._create(channel)
            await create(users[0])
            with measured() as clock:
                for u in users[1:]:
                    await create(u)
        return Run(len(users) - 1, clock.wall, clock.cpu)

    async def concurrent(self, users: Sequence[NewUser], concurrency: int) -> Run:
        """`concurrency` calls in flight: workers that share one iterator, on as many
        channels (connections) as `sdm_async` opens for it: one per STREAMS_PER_CHANNEL
        calls in flight, since a server refuses more streams than its limit on one
        connection (the API's is 100). Worker i sends on channel i % channels."""
        errors: list[BaseException] = []
        count = max(1, math.ceil(concurrency / STREAMS_PER_CHANNEL))
        channels = [
            grpc.aio.insecure_channel(
                self.target.address,
                # Channels with equal arguments would share one connection.
                options=[("grpc.use_local_subchannel_pool", 1), ("bench.channel_index", i)],
            )
            for i in range(count)
        ]
        try:
            creates = [self._create(channel) for channel in channels]
            await creates[0](users[0])
            for channel in channels[1:]:
                await channel.channel_ready()  # connected before the clock starts
            source = iter(enumerate(users[1:]))
            # Every response kept, in input order, as `client.bulk` keeps its outcomes: the
            # two hold the same results when the clock stops.
            responses: list[Any] = [None] * (len(users) - 1)

            async def worker(create: Callable[[NewUser], Awaitable[Any]]) -> None:
                for index, u in source:
                    try:
                        responses[index] = await create(u)
                    except grpc.aio.AioRpcError as e:
                        errors.append(e)

            with measured() as clock:
                async with anyio.create_task_group() as tg:
                    for i in range(concurrency):
                        tg.start_soon(worker, creates[i % count])
        finally:
            for channel in channels:
                await channel.close()
        first = _error_text(errors[0]) if errors else ""
        done = len(users) - 1 - len(errors)
        return Run(done, clock.wall, clock.cpu, len(errors), first_error=first)
