"""Closing a client and an in-process emulator, in either order, prints nothing on stderr.

gRPC's core logs (at INFO, on stderr, by default) every GOAWAY that carries an error code,
in the process that receives it: a server stopped with `stop(None)` sends one to each open
connection, idle ones and ones being closed included. Each check runs in a fresh process
with gRPC's logging left at its defaults (GRPC_VERBOSITY and GRPC_TRACE removed), and
repeats its rounds because whether a closing client still reads the GOAWAY is a race.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

import pytest

import sdm_async
from sdm_async import errors
from sdm_async.testing import Emulator

ROUNDS = 6

SCRIPT = textwrap.dedent(
    """
    import asyncio
    import sys

    import sdm_async
    from sdm_async.testing import Emulator

    FAST = sdm_async.RetryPolicy(base_delay=0.01, max_delay=0.02)


    async def round(client_first: bool, **options: object) -> None:
        emu = Emulator(**options)
        await emu.start()
        client = emu.client(retry=FAST)
        user = sdm_async.User(email="a@example.com", first_name="A", last_name="B")
        try:
            await client.accounts.create(user)
            async for _ in client.accounts.list(""):
                pass
        except sdm_async.RPCError:
            pass  # the injected faults: what matters is what closing prints
        if client_first:
            await client.close()
            await emu.stop()
        else:
            await emu.stop()
            await client.close()


    async def main(rounds: int, options: dict[str, object]) -> None:
        for _ in range(rounds):
            for client_first in (True, False):
                await round(client_first, **options)
        print("done")


    asyncio.run(main(int(sys.argv[1]), eval(sys.argv[2])))
    """
)


def run_quietly(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GRPC_VERBOSITY", "GRPC_TRACE")}
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize(
    "options",
    [
        "{}",
        # Every reply lost after the change: the calls fail (and are retried) before closing.
        "dict(fault_rate=1.0, fault_when='after', fault_code='INTERNAL')",
    ],
    ids=["plain", "failing-calls"],
)
def test_closing_client_and_emulator_in_either_order_prints_nothing(options: str) -> None:
    done = run_quietly(SCRIPT, str(ROUNDS), options)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"
    assert done.stderr == ""


def test_the_official_sdk_against_a_threaded_emulator_closes_quietly() -> None:
    script = textwrap.dedent(
        """
        import sys

        import strongdm

        from sdm_async.testing import Emulator

        for client_first in (True, False) * int(sys.argv[1]):
            with Emulator().running_in_thread() as emu:
                client = strongdm.Client(emu.access_key, emu.secret_key, emu.address, True)
                client.accounts.create(
                    strongdm.User(email="a@example.com", first_name="A", last_name="B")
                )
                if client_first:
                    client.close()
            if not client_first:
                client.close()
        print("done")
        """
    )
    done = run_quietly(script, str(ROUNDS))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"
    assert done.stderr == ""


# -- what stopping does to calls in flight ----------------------------------------------------

NO_RETRY = sdm_async.RetryPolicy(max_retries=0)


async def _stop_under_a_call(grace: float | None) -> asyncio.Task[object]:
    reached = asyncio.Event()

    def delay() -> float:  # the handler asks how long to wait: the call has reached it
        reached.set()
        return 0.3

    async with Emulator() as emu, emu.client(retry=NO_RETRY) as client:
        emu.faults.delay = delay  # type: ignore[method-assign]
        user = sdm_async.User(email="a@example.com", first_name="A", last_name="B")
        call: asyncio.Task[object] = asyncio.create_task(client.accounts.create(user))
        await reached.wait()
        await emu.stop(grace)
        await asyncio.wait([call], timeout=5)
    return call


async def test_stop_lets_a_call_in_flight_finish() -> None:
    call = await _stop_under_a_call(None)
    assert call.done() and call.exception() is None


async def test_stop_0_cuts_a_call_in_flight_off() -> None:
    call = await _stop_under_a_call(0)
    assert call.done() and isinstance(call.exception(), errors.UnavailableError)
