"""Rate-limit pacing: use the whole budget without being refused.

Every response says how much of its bucket's budget is left (`rate_limit`: limit, remaining,
reset_at, bucket). The pacer keeps that per bucket and, before each attempt, reserves one
unit of it. When the budget is spent it holds new calls until the window resets, then lets
them go spread over the window (ticket k waits k/limit of a window) rather than as a burst.

The state is a local estimate between answers: `remaining` comes from the newest answer and
`reserved` counts calls sent since, so many concurrent callers do not all spend the same unit.
"""

from __future__ import annotations

import asyncio
import datetime
from dataclasses import dataclass
from typing import Any

_UTC = datetime.timezone.utc
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=_UTC)


def _wall() -> float:
    return datetime.datetime.now(_UTC).timestamp()


@dataclass
class Bucket:
    name: str
    limit: int = 0
    remaining: int = 0
    reset_at: float = 0.0  # wall-clock seconds
    window: float = 0.0  # estimated length of one window, seconds
    reserved: int = 0  # calls sent against the current window, not yet answered
    waiting: int = 0  # calls holding for a later window


PROBE = Bucket("probe")  # the token of a method's first call, sent before any budget is known


class Pacer:
    """Per-bucket budgets shared by every call of one client."""

    def __init__(self) -> None:
        self._buckets: dict[str, Bucket] = {}
        self._by_method: dict[str, Bucket] = {}
        # Until a method's first answer tells its budget, one call probes and the rest wait:
        # a burst sent blind could overrun a budget that is already mostly spent.
        self._probes: dict[str, asyncio.Event] = {}
        self.held = 0  # calls that had to wait for a window (for reporting)

    def bucket(self, name: str) -> Bucket | None:
        return self._buckets.get(name)

    async def acquire(self, method: str) -> Bucket | None:
        """Reserve one unit of `method`'s bucket, waiting for a window if it is spent."""
        b = self._by_method.get(method)
        if b is None:
            probe = self._probes.get(method)
            if probe is None:
                self._probes[method] = asyncio.Event()
                return PROBE
            await probe.wait()
            b = self._by_method.get(method)
            if b is None:
                return None  # the answer carried no budget: nothing to pace
        if b.limit <= 0:
            return None
        ticket = -1
        while True:
            now = _wall()
            if now >= b.reset_at:
                self._roll(b, now)
            if b.remaining - b.reserved > 0 and (ticket < 0 or ticket == 0):
                b.reserved += 1
                if ticket >= 0:
                    b.waiting -= 1
                return b
            if ticket < 0:
                ticket = b.waiting
                b.waiting += 1
                self.held += 1
            # Spread the held calls over the next window instead of releasing a burst.
            spread = b.window / max(b.limit, 1)
            wake = b.reset_at + (ticket % b.limit) * spread + (ticket // b.limit) * b.window
            await asyncio.sleep(max(0.0, wake - now) + 0.001)
            if _wall() >= wake:
                ticket = 0  # my turn has come: compete normally for the fresh window

    def _roll(self, b: Bucket, now: float) -> None:
        """The server's window has passed: assume a full budget until it says otherwise."""
        windows = 1 + int((now - b.reset_at) // b.window) if b.window > 0 else 1
        b.reset_at += windows * b.window if b.window > 0 else max(1.0, now - b.reset_at)
        b.remaining = b.limit
        b.reserved = 0

    def release(self, method: str, b: Bucket | None) -> None:
        """An attempt that reserved a unit has been answered (or failed); call it after
        `observe` so that the calls waiting on a probe see what it learnt."""
        if b is PROBE:
            self._probes[method].set()
        elif b is not None and b.reserved > 0:
            b.reserved -= 1

    def observe(self, method: str, rate_limit: Any) -> None:
        """Take the server's word from a response's (or error's) RateLimitMetadata."""
        name = rate_limit.bucket
        limit = rate_limit.limit
        if not limit:
            return
        ts = rate_limit.reset_at
        if isinstance(ts, datetime.datetime):
            reset_at = ts.timestamp()
        else:
            reset_at = ts.seconds + ts.nanos / 1e9
        b = self._buckets.get(name)
        if b is None:
            b = self._buckets[name] = Bucket(name)
            b.window = max(0.0, reset_at - _wall())  # at most a window: refined below
        self._by_method[method] = b
        if reset_at > b.reset_at + 1e-6:
            if b.reset_at:
                b.window = max(b.window, reset_at - b.reset_at)
            b.reset_at = reset_at
            b.remaining = rate_limit.remaining
        else:
            b.remaining = min(b.remaining, rate_limit.remaining)
        b.limit = limit
