"""Rate-limit pacing: use the whole budget without being refused.

Every response says how much of its bucket's budget is left (`rate_limit`: limit, remaining,
reset_at, bucket). The pacer keeps the newest word per bucket and, before each attempt, takes
one unit of it:

- A unit is free while `remaining - in_flight > 0`. Counting every call in flight against
  the newest `remaining` is conservative (some of them were already counted by the server),
  so a job spends the whole budget and is never refused by its own overlap.
- When nothing is free, calls queue (FIFO) until answers free a unit or the window resets
  (`reset_at`). While calls queue they are released one per `window / limit` seconds, so a
  held job restarts spread over the window at exactly the allowed rate, not as a burst.
- A method's bucket is learnt from its first answer. Until then one call probes and the
  others are paced against the bucket answered last (methods often share one; a wrong
  guess costs one round trip), or, on a client that knows no budget yet, wait for the
  probe's answer `PROBE_WAIT` at most: a slow first call does not hold a job back, and a
  job with more workers than budget does not open with a burst of refusals.

The hot path (`take`, `observe`, `release`) is a dict look-up and a few integer operations;
only a call that has to wait creates a future.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import logging
import sys
import time
from typing import Any

from sdm_async import errors

log = logging.getLogger("sdm_async")

PROBE_WAIT = 0.25  # seconds a call waits for a probe's answer before going anyway
SAME_WINDOW = 0.001  # reset_at values closer than this are one window (pb vs datetime rounding)
MAX_SKEW = 5.0  # seconds of clock difference with the server the pacer will learn


class Bucket:
    """What the pacer knows of one server-side budget."""

    __slots__ = (
        "behind",
        "in_flight",
        "limit",
        "name",
        "next_release",
        "queue",
        "remaining",
        "reset_at",
        "skew",
        "timer",
        "timer_at",
        "window",
    )

    def __init__(self, name: str, remaining: int = 0) -> None:
        self.name = name
        self.limit = 0
        self.remaining = remaining  # per the newest answer in the current window
        self.reset_at = 0.0  # wall-clock seconds at which the server's window resets
        self.window = 0.0  # the window's length, estimated from below
        self.skew = 0.0  # how far the server's clock is seen behind ours, seconds
        self.behind = False  # refused after our clock's reset: the server has not reset yet
        self.in_flight = 0  # calls sent against this bucket and not yet answered
        self.queue: collections.deque[asyncio.Future[None]] = collections.deque()
        self.next_release = 0.0  # wall time before which no queued call may go
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0

    def __repr__(self) -> str:
        return (
            f"<Bucket {self.name!r} limit={self.limit} remaining={self.remaining} "
            f"in_flight={self.in_flight} queued={len(self.queue)} window={self.window:.3g}s>"
        )

    def available(self, now: float) -> int:
        if now >= self.reset_at + self.skew:  # the window has reset: a full budget
            # ...unless the server said otherwise: then one call at a time finds out when.
            return (1 if self.behind else self.limit) - self.in_flight
        return self.remaining - self.in_flight


# Methods whose answers carry no budget: always free, never queued.
UNPACED = Bucket("\0unpaced", remaining=sys.maxsize)  # a name no server bucket has


class _Unknown:
    """Calls of one method sent before its bucket is known."""

    __slots__ = ("bucket", "in_flight", "probe")

    def __init__(self) -> None:
        self.in_flight = 0
        self.bucket: Bucket | None = None  # set when the first answer names it
        self.probe: asyncio.Future[None] | None = None  # resolved by the probe's answer


Token = Bucket | _Unknown  # what a call holds from `take`/`wait` until `release`


class Pacer:
    """Per-bucket budgets shared by every call of one client. Not thread-safe: one loop."""

    def __init__(self) -> None:
        self._buckets: dict[str, Bucket] = {}
        self._by_method: dict[str, Bucket] = {}
        self._unknown: dict[str, _Unknown] = {}
        self._last: Bucket | None = None  # the bucket answered last: the guess for a new method
        self.held = 0  # calls that had to wait (for reports and tests)

    def __repr__(self) -> str:
        return f"<Pacer buckets={list(self._buckets.values())!r} held={self.held}>"

    def bucket(self, name: str) -> Bucket | None:
        """The state of bucket `name`, if an answer has named it."""
        return self._buckets.get(name)

    # -- before a call --------------------------------------------------------------------

    def take(self, method: str) -> Token | None:
        """Take a unit for one attempt of `method` if one is free now; None: `await wait()`."""
        b = self._by_method.get(method)
        if b is not None:
            if b.remaining > b.in_flight and not b.queue:  # the common case: no clock read
                b.in_flight += 1
                return b
            return self._take_slow(b)
        unknown = self._unknown.get(method)
        if unknown is None:
            unknown = self._unknown[method] = _Unknown()
        probe = unknown.probe
        if probe is None or probe.done():
            # This call probes: it goes now, and its answer names the method's bucket.
            unknown.probe = asyncio.get_running_loop().create_future()
            unknown.in_flight += 1
            return unknown
        # While the probe is out, pace against the bucket answered last: methods often
        # share one, and a wrong guess costs one round trip (`wait` looks again).
        guess = self._last
        return self._take_slow(guess) if guess is not None else None

    def _take_slow(self, b: Bucket) -> Bucket | None:
        if not b.queue and b.available(time.time()) > 0:
            b.in_flight += 1
            return b
        return None

    async def wait(self, method: str, deadline: float | None) -> Token | None:
        """Wait for a unit; None if the loop-time `deadline` comes first."""
        loop = asyncio.get_running_loop()
        probe_until = loop.time() + PROBE_WAIT
        self.held += 1
        while True:
            token = self.take(method)
            if token is not None:
                return token
            b = self._by_method.get(method)
            if b is not None:
                return b if await self._queue(b, deadline, loop) else None
            probe = self._unknown[method].probe
            assert probe is not None
            guess = self._last
            if guess is not None:
                granted = await self._queue(guess, deadline, loop, probe)
                if granted is None:
                    continue  # the probe answered first: look again
                return guess if granted else None
            # No budget known at all: wait for the probe's answer, but not for long (a slow
            # first call must not hold a whole job back).
            until = probe_until if deadline is None else min(probe_until, deadline)
            now = loop.time()
            if now >= until:
                if deadline is not None and now >= deadline:
                    return None
                unknown = self._unknown[method]
                unknown.in_flight += 1
                return unknown
            await asyncio.wait((probe,), timeout=until - now)

    async def _queue(
        self,
        b: Bucket,
        deadline: float | None,
        loop: asyncio.AbstractEventLoop,
        probe: asyncio.Future[None] | None = None,
    ) -> bool | None:
        """Queue for a unit of `b`: True when granted, False at the deadline, None when
        `probe` resolved first."""
        fut: asyncio.Future[None] = loop.create_future()
        if not b.queue:  # once per spell of waiting, not once per held call
            log.info(
                "rate limit: bucket %r has %d of %d left with %d in flight; holding calls",
                b.name,
                b.remaining,
                b.limit,
                b.in_flight,
            )
        b.queue.append(fut)
        expire = None if deadline is None else loop.call_at(deadline, _expire, fut)
        self._pump(b)
        try:
            if probe is None:
                await fut
            else:
                await asyncio.wait((fut, probe), return_when=asyncio.FIRST_COMPLETED)
                if not fut.done():
                    fut.cancel()
                    return None
                fut.result()
        except TimeoutError:
            return False
        except asyncio.CancelledError:
            if not fut.done():
                fut.cancel()
            elif not fut.cancelled() and fut.exception() is None:
                self.release(b)  # granted as we were cancelled: give the unit back
            raise
        finally:
            if expire is not None:
                expire.cancel()
            self._tidy(b)
        return True

    def close(self, message: str) -> None:
        """The client is closing: fail every waiting call with ClientClosedError(message)."""
        for b in self._buckets.values():
            for fut in b.queue:
                if not fut.done():
                    fut.set_exception(errors.ClientClosedError(message))
            b.queue.clear()
            if b.timer is not None:
                b.timer.cancel()
                b.timer = None
        for unknown in self._unknown.values():
            if unknown.probe is not None and not unknown.probe.done():
                unknown.probe.set_result(None)

    def _tidy(self, b: Bucket) -> None:
        """Drop futures of calls that left the queue (cancelled, timed out, or gone to
        another bucket) from its head, and the timer when nobody is left."""
        queue = b.queue
        while queue and queue[0].done():
            queue.popleft()
        if not queue and b.timer is not None:
            b.timer.cancel()
            b.timer = None

    def _pump(self, b: Bucket) -> None:
        """Release queued calls as far as the budget and the spacing allow."""
        queue = b.queue
        now = time.time()
        while queue:
            if queue[0].done():  # cancelled or timed out while queued
                queue.popleft()
                continue
            if now < b.next_release:
                self._wake(b, b.next_release)
                return
            if b.available(now) <= 0:
                opens = b.reset_at + b.skew
                if now < opens:
                    # Spent for this window: look again at the reset (or sooner, if an
                    # answer frees a unit), and spread from there.
                    self._wake(b, opens)
                # Else every unit of the fresh window is in flight: a release pumps.
                return
            b.in_flight += 1
            queue.popleft().set_result(None)
            spacing = b.window / b.limit if b.limit else 0.0
            # One release per spacing. After a late timer catch up by a few at most, and
            # never with slots from before a reset (that would be the burst we avoid).
            floor = now - 4 * spacing
            opened = b.reset_at + b.skew
            if opened <= now and opened > floor:
                floor = opened
            b.next_release = max(b.next_release, floor) + spacing
        if b.timer is not None:
            b.timer.cancel()
            b.timer = None

    def _wake(self, b: Bucket, when: float) -> None:
        if b.timer is not None:
            if b.timer_at == when:
                return
            b.timer.cancel()
        loop = asyncio.get_running_loop()
        b.timer_at = when
        b.timer = loop.call_at(loop.time() + max(0.0, when - time.time()), self._on_timer, b)

    def _on_timer(self, b: Bucket) -> None:
        b.timer = None
        self._pump(b)

    # -- after a call ---------------------------------------------------------------------

    def release(self, token: Token) -> None:
        """The attempt that took `token` is over (answered, failed or cancelled). Call it
        after `observe`, so that the queue is pumped with the newest word."""
        if type(token) is Bucket:
            token.in_flight -= 1
            if token.queue:
                self._pump(token)
            return
        assert isinstance(token, _Unknown)
        token.in_flight -= 1
        if token.probe is not None and not token.probe.done():
            token.probe.set_result(None)  # any answer ends the probe
        b = token.bucket
        if b is not None:
            b.in_flight -= 1
            if b.queue:
                self._pump(b)

    def observe(self, method: str, rate_limit: Any, refused_sent: float | None = None) -> None:
        """Take the server's word from a response's rate-limit metadata, or a refusal's
        (`refused_sent`: the wall time at which the refused call was sent)."""
        limit = rate_limit.limit
        ts = rate_limit.reset_at
        if ts is None:
            reset = 0.0
        elif isinstance(ts, datetime.datetime):  # from an error's model
            reset = ts.timestamp()
        else:  # a response's Timestamp message
            reset = ts.seconds + ts.nanos * 1e-9
        if not limit or reset <= 0:
            # No budget, or none that can be paced without knowing when it resets.
            if method not in self._by_method:
                self._link(method, UNPACED)
            return
        b = self._by_method.get(method)
        if b is None or b.name != rate_limit.bucket:
            name = rate_limit.bucket
            found = self._buckets.get(name)
            if found is None:
                found = self._buckets[name] = Bucket(name)
            b = self._link(method, found)
        b.limit = limit
        self._last = b
        if reset > b.reset_at + SAME_WINDOW:  # a newer window
            b.behind = False
            now = time.time()
            if reset - now > b.window:
                b.window = reset - now  # answered right after a reset: about one window
            b.reset_at = reset
            b.remaining = rate_limit.remaining
        elif reset > b.reset_at - SAME_WINDOW:  # the same window: the lowest word is newest
            if rate_limit.remaining < b.remaining:
                b.remaining = rate_limit.remaining
        # else: an answer from a window already past; it says nothing about this one
        if refused_sent is not None:
            if refused_sent >= reset + b.skew and reset > b.reset_at - SAME_WINDOW:
                # Sent after the reset by our clock (skew included), yet refused by that
                # window: the server's clock is further behind ours than we thought. Grow
                # the estimate (doubling: few refusals to learn it) and, until an answer
                # shows the new window, send one call at a time. The send time, not the
                # answer's, bounds it: a busy loop may read the answer much later.
                b.skew = min(MAX_SKEW, max(refused_sent - reset + 0.01, 2 * b.skew))
                b.behind = True
            if reset > b.reset_at - SAME_WINDOW:
                b.remaining = 0
        if b.queue:
            self._pump(b)

    def _link(self, method: str, b: Bucket) -> Bucket:
        self._by_method[method] = b
        unknown = self._unknown.pop(method, None)
        if unknown is not None:
            unknown.bucket = b  # its calls in flight now count against b
            b.in_flight += unknown.in_flight
            if unknown.probe is not None and not unknown.probe.done():
                unknown.probe.set_result(None)
        return b


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())
