"""A long-lived client survives connections dropped without a word (by a NAT or a load
balancer that lost its state): the dead connection is noticed and replaced, and a call made
after the drop succeeds within its timeout. Between client and emulator runs a loopback TCP
proxy that can stop forwarding on its open connections without closing them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import grpc.aio
import pytest

import sdm_async
from sdm_async import _rpc
from sdm_async.testing import Emulator

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PING = 6


@dataclass
class Link:
    """One connection through the proxy."""

    dropped: bool = False  # bytes are read and thrown away, both ways
    pings: int = 0  # HTTP/2 PINGs the client sent (acks not counted)
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # the client hung up


class Proxy:
    """A loopback TCP proxy to `target`. `drop()` silences every open connection (nothing
    is forwarded any more, nothing is closed); new connections are forwarded as before."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.target = host, int(port)
        self.links: list[Link] = []
        self.address = ""
        self.changed = asyncio.Condition()  # notified on every ping and hang-up
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await self._server.wait_closed()

    def drop(self) -> None:
        for link in self.links:
            link.dropped = True

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(predicate)

    def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(client_r, client_w))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        link = Link()
        self.links.append(link)
        self._writers.append(client_w)
        server_r, server_w = await asyncio.open_connection(*self.target)
        self._writers.append(server_w)
        back = asyncio.create_task(self._pump(link, server_r, client_w, None))
        try:
            await self._pump(link, client_r, server_w, bytearray())
        finally:
            back.cancel()
            await asyncio.gather(back, return_exceptions=True)
            link.closed.set()
            async with self.changed:
                self.changed.notify_all()

    async def _pump(
        self,
        link: Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        frames: bytearray | None,  # the client's bytes, parsed to count its PINGs
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if frames is not None and self._count_pings(link, frames, data):
                    async with self.changed:
                        self.changed.notify_all()
                if not link.dropped:
                    writer.write(data)
                    await writer.drain()

    @staticmethod
    def _count_pings(link: Link, frames: bytearray, data: bytes) -> bool:
        frames += data
        if frames.startswith(PREFACE):
            del frames[: len(PREFACE)]
        seen = False
        while len(frames) >= 9:  # an HTTP/2 frame: length (3), type, flags, stream id (4)
            size = 9 + int.from_bytes(frames[:3], "big")
            if len(frames) < size:
                break
            if frames[3] == PING and not frames[4] & 1:
                link.pings += 1
                seen = True
            del frames[:size]
        return seen


def _role(name: str) -> sdm_async.Role:
    return sdm_async.Role(name=name)


def _client(emu: Emulator, address: str, **options: Any) -> sdm_async.Client:
    return sdm_async.Client(emu.access_key, emu.secret_key, address, True, **options)


# -- a connection dropped while in use ---------------------------------------------------------


async def test_a_call_after_a_silent_drop_succeeds_within_its_timeout() -> None:
    # The client's own settings: an unanswered ping closes the connection after 10 s (gRPC's
    # default would wait 60 s), and the call is retried on a new one.
    async with Emulator() as emu, Proxy(emu.address) as proxy:
        attempts: list[sdm_async.Attempt] = []
        async with _client(emu, proxy.address, on_attempt=attempts.append) as client:
            await client.roles.create(_role("before"))
            proxy.drop()
            started = time.monotonic()
            made = await client.roles.create(_role("after"), timeout=20)
            took = time.monotonic() - started
        assert made.role.name == "after"
        assert took < 20 + 0.5
        assert len(proxy.links) == 2 and proxy.links[0].closed.is_set()  # replaced
        assert isinstance(attempts[1].error, sdm_async.UnavailableError)  # the dead one
        assert attempts[2].error is None


async def test_shorter_keepalive_through_channel_options() -> None:
    fast = [
        ("grpc.keepalive_time_ms", 200),
        ("grpc.keepalive_timeout_ms", 500),
        ("grpc.http2.ping_timeout_ms", 500),
    ]
    async with Emulator() as emu, Proxy(emu.address) as proxy:
        async with _client(emu, proxy.address, channel_options=fast) as client:
            await client.roles.create(_role("before"))
            proxy.drop()
            started = time.monotonic()
            await client.roles.create(_role("after"), timeout=5)
            took = time.monotonic() - started
        assert took < 5 + 0.5
        assert len(proxy.links) == 2


# -- a connection dropped while idle -----------------------------------------------------------


async def test_an_idle_connection_is_replaced_before_a_call_hangs_on_it() -> None:
    # An idle connection is closed (2 min by default, 0.2 s here), so the call after a long
    # idle spell goes straight to a new connection: one attempt, no wait for a ping.
    idle = [("grpc.client_idle_timeout_ms", 200)]
    async with Emulator() as emu, Proxy(emu.address) as proxy:
        attempts: list[sdm_async.Attempt] = []
        async with _client(
            emu, proxy.address, channel_options=idle, on_attempt=attempts.append
        ) as client:
            await client.roles.create(_role("before"))
            proxy.drop()
            await proxy.wait_for(proxy.links[0].closed.is_set, timeout=10)
            await client.roles.create(_role("after"), timeout=5)
        assert [a.error for a in attempts] == [None, None]
        assert len(proxy.links) == 2


async def test_pings_on_idle_connections_if_the_server_permits_them() -> None:
    # For an API that accepts them: idle connections are pinged, a dead one is noticed.
    pings = [
        ("grpc.keepalive_time_ms", 200),
        ("grpc.keepalive_timeout_ms", 500),
        ("grpc.http2.ping_timeout_ms", 500),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    async with Emulator() as emu, Proxy(emu.address) as proxy:
        async with _client(emu, proxy.address, channel_options=pings) as client:
            await client.roles.create(_role("before"))
            proxy.drop()
            await proxy.wait_for(proxy.links[0].closed.is_set, timeout=10)
            await client.roles.create(_role("after"), timeout=5)
        assert len(proxy.links) == 2


# -- the emulator permits what clients send ----------------------------------------------------


async def test_the_emulator_accepts_frequent_pings_without_calls(
    capfd: pytest.CaptureFixture[str],
) -> None:
    # gRPC servers' defaults answer such pings with GOAWAY "too_many_pings" after 2 strikes,
    # and the client's gRPC logs it as an error.
    pings = [
        ("grpc.keepalive_time_ms", 100),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    async with Emulator() as emu, Proxy(emu.address) as proxy:
        async with _client(emu, proxy.address, channel_options=pings) as client:
            await client.roles.create(_role("r"))
            link = proxy.links[0]
            await proxy.wait_for(lambda: link.pings >= 5 or link.closed.is_set(), timeout=30)
            assert not link.closed.is_set()
            await client.roles.list("").__anext__()
        assert len(proxy.links) == 1
    assert "too_many_pings" not in capfd.readouterr().err


# -- the defaults ------------------------------------------------------------------------------


async def test_keepalive_defaults_and_channel_options_replacing_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[dict[str, Any]] = []
    real = grpc.aio.insecure_channel

    def spy(target: str, options: Any = None, **kw: Any) -> grpc.aio.Channel:
        names = [name for name, _ in options]
        assert len(names) == len(set(names)), names  # each argument once
        made.append(dict(options))
        return real(target, options=options, **kw)

    monkeypatch.setattr(grpc.aio, "insecure_channel", spy)
    async with Emulator() as emu:
        async with _client(emu, emu.address) as client:
            await client.roles.create(_role("a"))
        mine = [("grpc.keepalive_time_ms", 45_000), ("grpc.client_idle_timeout_ms", 1000)]
        async with _client(emu, emu.address, channel_options=mine) as client:
            await client.roles.create(_role("b"))
    default, custom = made
    assert default["grpc.keepalive_time_ms"] == 30_000
    assert default["grpc.keepalive_timeout_ms"] == default["grpc.http2.ping_timeout_ms"] == 10_000
    assert default["grpc.keepalive_permit_without_calls"] == 0
    assert default["grpc.client_idle_timeout_ms"] == 120_000
    assert custom["grpc.keepalive_time_ms"] == 45_000
    assert custom["grpc.client_idle_timeout_ms"] == 1000
    assert custom["grpc.http2.ping_timeout_ms"] == 10_000
    assert dict(_rpc.CHANNEL_OPTIONS)["grpc.enable_retries"] == 0
