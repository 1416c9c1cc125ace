"""Rate-limit pacing: use the whole budget without being refused.

Every response says how much of its bucket's budget is left (`rate_limit`: limit, remaining,
reset_at, bucket). The pacer keeps the newest word per bucket and, before each attempt, takes
one unit of it:

- A unit is free while `remaining - in_flight > 0`. Counting every call in flight against
  the newest `remaining` is conservative (some of them were already counted by the server),
  so a job spends the whole budget and is never refused by its own overlap.
- When nothing is free, calls queue (FIFO) until answers free a unit or the window resets.
  While calls queue they are released one per `window / limit` seconds, so a held job
  restarts spread over the window at exactly the allowed rate, not as a burst.
- `reset_at` is on the server's clock, which may be seconds ahead of ours or behind it, so
  the pacer never compares it with our clock directly. Per bucket it learns bounds on the
  offset (server clock - ours) from what the answers imply: a call answered from the window
  ending at R was handled before R, so offset < R - sent; and after the previous window
  ended, so offset >= R - window - received (`window`: the shortest step seen between two
  `reset_at`). Held calls go when the window has reset by those bounds. While the bounds are
  wider than a release spacing (a new bucket, or a clock that jumped), one call at a time
  probes before the release: a probe answered from the old window (or refused) raises the
  earliest possible reset, one answered from the next window proves the reset and narrows
  the bounds. Probes start with doubling gaps (bisection once both bounds are known), about
  five of them with clocks that agree, and an eighth of the window's budget (at most
  `PROBE_KEEP` units) is kept for them while the reset is unknown: learning a bucket costs
  a few units of its first window, and a refusal only once those are spent (a server clock
  far behind ours, or other clients taking them). In steady state the calls spread over
  each window keep the bounds narrow and none is refused.
- Several clients may share one budget (processes or hosts on one key). `remaining` counts
  every client's calls, so what it falls by beyond our own answered and in-flight calls is
  the others' (a lower bound: none is ever counted that was not). Once any is seen, the
  bucket is `shared`: `remaining` is discounted by the others' rate since the answer, and
  every call (not only held ones) goes one `spacing` after the last, where our rate is what
  is left spread over the time to the reset less the others' rate. When each client does
  this, the sum is what is left over the time left: together they spend each window
  without being refused, each estimating the rest from the answers alone. A window with no
  one else's call makes the bucket `alone` again (the sole user's pacing above); until a
  bucket's first window has passed, at most a sixteenth of its budget goes at once, or one
  call more than were answered (others may be starting too: a fresh window's first calls
  are the one place where clients that know nothing of each other can overlap).
- A method's bucket is learnt from its first answer. Until then one call probes and the
  others are paced against the bucket answered last (methods often share one; a wrong
  guess costs one round trip), or, on a client that knows no budget yet, wait for the
  probe's answer; either at most `PROBE_WAIT` and half of their time left, then they go: a
  slow first call does not hold a job back, and no call times out for a budget that its own
  method never reported.

The hot path (`take`, `observe`, `release`) is a dict look-up and a few float operations;
only a call that has to wait creates a future.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import logging
import math
import sys
import time
from typing import Any

from sdm_async import errors

log = logging.getLogger("sdm_async")

PROBE_WAIT = 0.25  # seconds a call waits for a probe's answer before going anyway
PROBE_KEEP = 8  # units of a window kept for probes while its reset is unknown (<= 1/8)
SAME_WINDOW = 0.001  # reset_at values closer than this are one window (pb vs datetime rounding)
MIN_GAP = 0.01  # seconds: the shortest gap between probes, and the coarsest trusted model
OTHERS_DT = 0.05  # seconds of a window's answers before its rate of others' calls is trusted
SLOW_START = 16  # a new bucket's first burst: at most this fraction of its budget (1/16)
SHARE_FLOOR = 16  # a sharing client goes at least this fraction of the fair rate (1/16)
INF = math.inf


class Bucket:
    """What the pacer knows of one server-side budget."""

    __slots__ = (
        "alone",
        "base",
        "hi",
        "in_flight",
        "limit",
        "lo",
        "mark_at",
        "name",
        "next_release",
        "others",
        "own",
        "probing",
        "queue",
        "quiet",
        "remaining",
        "reset_at",
        "rtt",
        "seen",
        "shared",
        "spacing",
        "timer",
        "timer_at",
        "window",
        "word_at",
    )

    def __init__(self, name: str, remaining: int = 0) -> None:
        self.name = name
        self.limit = 0
        self.remaining = remaining  # per the newest answer in the current window
        self.reset_at = 0.0  # when the current window ends, on the server's clock
        self.window = 0.0  # the window's length from above: the shortest reset_at step seen
        self.lo = -INF  # the server's clock minus ours is in [lo, hi)
        self.hi = INF
        self.rtt = INF  # the quickest answer seen: how tight the bounds can get
        self.seen = 0.0  # our time of the first answer from the current window
        self.in_flight = 0  # calls sent against this bucket and not yet answered
        self.queue: collections.deque[asyncio.Future[None]] = collections.deque()
        self.next_release = 0.0  # wall time before which no queued call may go
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        # Sharing the budget with other clients (other processes on the same key):
        self.alone = False  # a window passed with no call but ours: pace as its sole user
        self.shared = False  # others' calls seen: pace to our share of what is left
        self.quiet = True  # no one else's call seen in the current window so far
        self.own = 0  # our calls answered (not refused) from the current window
        self.base = 0  # others' calls in the window by `mark_at`, when their rate was last sampled
        self.mark_at = 0.0
        self.others = 0.0  # their rate, calls per second, as the newest estimate says
        self.word_at = 0.0  # our time of the newest `remaining`
        self.spacing = 0.0  # our share's release spacing, last computed (0: the window's)
        self.probing = False  # `available` last granted a probe, not a unit of a known budget

    def __repr__(self) -> str:
        return (
            f"<Bucket {self.name!r} limit={self.limit} remaining={self.remaining} "
            f"in_flight={self.in_flight} queued={len(self.queue)} window={self.window:.3g}s "
            f"offset=[{self.lo:.3g}, {self.hi:.3g})s others={self.others:.3g}/s"
            f"{' alone' if self.alone else ''}>"
        )

    def opens(self) -> float:
        """Our time at which the current window has surely reset (or, where the bounds allow
        it, reset by our own clock); INF while the bounds are too wide to say: probe."""
        lo, hi = self.lo, self.hi
        spacing = self.window / self.limit if self.limit else 0.0
        # Sharing, our own calls are further apart (so are the bounds they give): a reset
        # known within our own spacing costs at most one of our releases, so it will do.
        spacing = max(spacing, min(self.spacing, self.window / 4))
        if hi - lo > max(spacing, 2 * self.rtt, MIN_GAP):
            return INF
        return self.reset_at - (lo if hi <= 0 else max(lo, 0.0))

    def probe_at(self) -> float:
        """When the next probe may go, while `opens()` cannot say."""
        early = self.reset_at - self.hi  # our time of the last send known inside the window
        if self.lo > -INF:
            return (early + self.reset_at - self.lo) / 2  # bisect the interval left
        # Gaps double (a refusal moves `early` to its send) from a sixteenth of the window
        # as our clock sees it: a few probes before our own clock's reset, which is one of
        # them as it is the likeliest, then doubling again from there.
        reset, seen = self.reset_at, self.seen
        gap = max(MIN_GAP, (reset - seen) / 16)
        if early < reset:
            return min(reset, early + max(gap, early - seen))
        return early + max(gap, early - max(seen, reset))

    def available(self, now: float) -> int:
        left = self._available(now)
        if not self.alone and not self.shared:
            # Not known to be alone yet: others may be starting just as we do, so not the
            # whole budget at once; a sixteenth of it, or one more call in flight than
            # answered, until the answers show whether others spend it too (slow start).
            cap = max(self.own + 1, self.remaining // SLOW_START)
            left = min(left, cap - self.in_flight)
        return left

    def _available(self, now: float) -> int:
        self.probing = False
        left = self.remaining - self.in_flight
        if self.shared:
            if now >= self.opens():  # a new window: its budget, less what others took of it
                since = now - max(self.reset_at - self.hi, self.word_at)
                return math.floor(self.limit - self.in_flight - self.others * since)
            # What the others took since the newest word is gone too.
            left = math.floor(left - self.others * (now - self.word_at))
        opens = self.opens()
        if opens == INF and left > 0:
            # When this window resets is not known yet: keep a few of its units for the
            # probes that find out, so that they are answered from it rather than refused.
            keep = min(PROBE_KEEP, self.limit // PROBE_KEEP)
            if left > keep:
                return left - keep
        elif left > 0 or now < self.reset_at - self.hi:  # budget left, or surely not reset
            return left
        elif now >= opens:  # the window has reset: a full budget
            return self.limit - self.in_flight
        # Not sure: one probe at a time (after the old window's answers), at its time.
        self.probing = not self.in_flight and now >= self.probe_at()
        return 1 if self.probing else 0

    def share_spacing(self, now: float, units: int) -> float:
        """Our release spacing while others share the budget: the `units` left spread over
        the time to the reset is what all of us may spend, less the others' rate. When
        every client does this they converge on even shares that spend the window."""
        reset = self.reset_at
        if now >= self.opens():
            reset += self.window
        off = min(max(self.lo, 0.0), self.hi)  # our clock's reading where the bounds allow
        left = max(reset - off - now, MIN_GAP)
        fair = units / left
        rate = max(fair - self.others, fair / SHARE_FLOOR)
        # Never past the reset: the next window's budget is a new share.
        self.spacing = min(1 / rate, left)
        return self.spacing

    def wake_at(self, now: float) -> float | None:
        """When the clock alone may free a unit that `available(now)` did not; None when only
        an answer can."""
        opens = self.opens()
        if opens < INF:
            return opens if now < opens else None  # else: the new window's units are all out
        return None if self.in_flight else self.probe_at()


# Methods whose answers carry no budget: always free, never queued.
UNPACED = Bucket("\0unpaced", remaining=sys.maxsize)  # a name no server bucket has
UNPACED.alone = True  # nothing to share: the fast path


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
            # The fast path: a unit is free by the newest word alone, so no clock read. For an
            # unshared bucket with more budget left than the units kept for probes (alone, or
            # within the slow start's cap), `_take_slow` grants one whatever the clock says.
            # It must grant nothing `_take_slow` would not: tests/test_percall.py checks.
            if (
                not b.shared
                and not b.queue
                and b.remaining - b.in_flight > PROBE_KEEP
                and (b.alone or max(b.own + 1, b.remaining // SLOW_START) > b.in_flight)
            ):
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
        if b.queue:
            return None
        now = time.time()
        if b.shared and now < b.next_release:  # sharing, every call keeps our spacing
            return None
        units = b.available(now)
        if units <= 0:
            return None
        b.in_flight += 1
        if b.shared:
            self._advance(b, now, units)
        return b

    async def wait(self, method: str, deadline: float | None) -> Token | None:
        """Wait for a unit; None if the loop-time `deadline` comes first. Only a bucket that
        answers of `method` itself named can hold a call until its deadline: while the
        method's bucket is unknown, a call waits for the probe's answer (paced against the
        guessed bucket, if any) `PROBE_WAIT` and half its time left at most, then goes."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        patience = PROBE_WAIT if deadline is None else min(PROBE_WAIT, (deadline - now) / 2)
        until = now + patience
        self.held += 1
        while True:
            token = self.take(method)
            if token is not None:
                return token
            b = self._by_method.get(method)
            if b is not None:
                return b if await self._queue(b, deadline, loop) else None
            unknown = self._unknown[method]
            probe = unknown.probe
            assert probe is not None
            if loop.time() >= until:  # no budget of this method's is known to be spent: go
                unknown.in_flight += 1
                return unknown
            guess = self._last
            if guess is not None:
                if await self._queue(guess, until, loop, probe):
                    return guess
                continue  # the probe answered, or patience ran out: look again
            await asyncio.wait((probe,), timeout=until - loop.time())

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
            units = b.available(now)
            if units <= 0:
                # Spent for this window: look again at the reset or the next probe (or
                # sooner, if an answer frees a unit); else only an answer can free a unit.
                at = b.wake_at(now)
                if at is not None:
                    self._wake(b, at)
                return
            b.in_flight += 1
            queue.popleft().set_result(None)
            self._advance(b, now, units)
        if b.timer is not None:
            b.timer.cancel()
            b.timer = None

    def _advance(self, b: Bucket, now: float, units: int) -> None:
        """A unit of `b` was just granted: when may the next go?"""
        if b.shared:
            if b.probing:  # one unit of a budget not known: the probe's answer will pace us
                return
            spacing = b.share_spacing(now, units)
            floor = now - spacing  # others fill our idle slots: catch up by one at most
        else:
            spacing = b.window / b.limit if b.limit else 0.0
            # After a late timer catch up by a few at most.
            floor = now - 4 * spacing
        # Never with slots from before a reset (that would be the burst we avoid).
        opened = b.opens()
        if opened <= now and opened > floor:
            floor = opened
        b.next_release = max(b.next_release, floor) + spacing

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

    def retry_in(self, method: str) -> float:
        """Seconds until the clock alone may free a unit of `method`'s bucket (0: now, or as
        soon as an answer frees one): how long a refused call will be held at least."""
        b = self._by_method.get(method)
        if b is None:
            return 0.0
        now = time.time()
        if b.available(now) > 0:
            return 0.0
        at = b.wake_at(now)
        return 0.0 if at is None else max(0.0, at - now)

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

    def observe(self, method: str, rate_limit: Any, started: float, refused: bool = False) -> None:
        """Take the server's word from a response's rate-limit metadata, or a refusal's
        (`refused`); `started` is the `time.perf_counter()` at which the call was sent."""
        b = self._by_method.get(method)
        if b is not None and not refused and not b.shared:
            # The fast path, for the usual answer: from the window we know, of a bucket no one
            # else is seen to spend, to a call of ours. It does exactly what `_observe_slow`
            # does there (tests/test_percall.py checks), without its calls and branches.
            ts = rate_limit.reset_at
            if ts is not None and not isinstance(ts, datetime.datetime):
                reset = ts.seconds + ts.nanos * 1e-9
                prev = b.reset_at
                limit = rate_limit.limit
                if (
                    prev - SAME_WINDOW < reset <= prev + SAME_WINDOW
                    and limit
                    and reset > 0
                    and b.name == rate_limit.bucket
                ):
                    own = b.own + 1
                    remaining = rate_limit.remaining
                    low = remaining if remaining < b.remaining else b.remaining
                    # No call beyond ours counted (`_others` finds none): stays unshared.
                    if limit - low - own - b.in_flight + 1 <= 0:
                        b.limit = limit
                        self._last = b
                        now = time.time()
                        rtt = time.perf_counter() - started
                        if rtt < b.rtt:
                            b.rtt = rtt
                        b.own = own
                        if remaining < b.remaining:
                            b.remaining = remaining
                            b.word_at = now
                        _narrow(b, reset, now - rtt, now)
                        if b.queue:
                            self._pump(b)
                        return
        self._observe_slow(method, rate_limit, started, refused)

    def _observe_slow(
        self, method: str, rate_limit: Any, started: float, refused: bool = False
    ) -> None:
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
        now = time.time()
        rtt = time.perf_counter() - started
        sent = now - rtt  # on the wall clock, which the bounds compare with reset_at
        if rtt < b.rtt:
            b.rtt = rtt
        if reset > b.reset_at + SAME_WINDOW:  # a newer window
            if b.reset_at:
                if not b.window or reset - b.reset_at < b.window:
                    b.window = reset - b.reset_at  # windows are fixed: the shortest step is one
                if b.quiet:  # the window we leave showed no one else's calls
                    b.alone, b.shared, b.others, b.spacing = True, False, 0.0, 0.0
            b.reset_at = reset
            b.remaining = 0 if refused else rate_limit.remaining
            b.seen = b.word_at = now
            b.own = 0 if refused else 1
            b.quiet = True
            b.base = 0 if refused else self._others(b, b.limit)
            b.mark_at = now
        elif reset > b.reset_at - SAME_WINDOW:  # the same window: the lowest word is newest
            if refused:
                b.remaining = 0
                b.word_at = now
            else:
                b.own += 1
                if rate_limit.remaining < b.remaining:
                    b.remaining = rate_limit.remaining
                    b.word_at = now
                seen = self._others(b, b.limit)
                dt = now - b.mark_at
                if dt >= OTHERS_DT and b.shared:
                    # Their rate lately, smoothed: it follows them starting and stopping
                    # within a window, not only from one window to the next.
                    b.others = (b.others + max(0, seen - b.base) / dt) / 2
                    b.base, b.mark_at = seen, now
        # else: an answer from a window already past; only its bounds still count.
        _narrow(b, reset, sent, now)
        if b.queue:
            self._pump(b)

    @staticmethod
    def _others(b: Bucket, limit: int) -> int:
        """Others' calls in the current window, at least, by the newest word: the server
        counted `limit - remaining`, of which ours are those answered and, at most, those
        still in flight (this answer's call among them). Any at all: we share."""
        seen = limit - b.remaining - b.own - (b.in_flight - 1)
        if seen > 0 and b.quiet:
            b.quiet = False
            if not b.shared:
                # Their rate is not measured yet: assume they take what is left at the
                # fair rate (by our clock) and start at the least share until it is.
                b.others = b.remaining / max(b.reset_at - time.time(), MIN_GAP)
            b.shared, b.alone = True, False
        return max(seen, 0)

    def _link(self, method: str, b: Bucket) -> Bucket:
        self._by_method[method] = b
        unknown = self._unknown.pop(method, None)
        if unknown is not None:
            unknown.bucket = b  # its calls in flight now count against b
            b.in_flight += unknown.in_flight
            if unknown.probe is not None and not unknown.probe.done():
                unknown.probe.set_result(None)
        return b


def _narrow(b: Bucket, reset: float, sent: float, now: float) -> None:
    """The bounds on the server's clock that an answer from the window ending at `reset`
    implies: the server handled the call after it was `sent` and before the window ended,
    and after the window began, by the time (`now`) the answer came back."""
    hi = reset - sent
    if hi < b.hi:
        b.hi = hi
        if hi <= b.lo:  # contradicts older evidence (a clock stepped): learn again
            b.lo = -INF
    if b.window:
        lo = reset - b.window - now
        if lo > b.lo:
            b.lo = lo
            if lo >= b.hi:
                b.hi = INF


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())
