"""When to retry a failed attempt, and how long to wait first.

The schedule is the official SDK's (base 1 s, factor 1.6, cap 120 s, jitter +-20 %, INTERNAL
and UNAVAILABLE up to 3 retries, rate limits retried when enabled) with two changes: a
rate-limited call waits for its window to reset instead of guessing (timed by the pacer, or,
with pacing off, by the server's `reset_at` capped by the backoff step, since that is on the
server's clock), and no wait may end past the call's deadline (the error is raised at once
instead).
"""

from __future__ import annotations

import dataclasses
import datetime
import random
from collections.abc import Callable

from sdm_async import errors

DEFAULT_BASE_DELAY = 1.0
DEFAULT_MAX_DELAY = 120.0
DEFAULT_FACTOR = 1.6
DEFAULT_JITTER = 0.2
DEFAULT_MAX_RETRIES = 3
DEFAULT_MAX_RATE_LIMIT_RETRIES = 20


def never_sent(error: errors.RPCError) -> bool:
    """Whether gRPC reports that the call never left the client (no connection could be
    made), so that sending it again cannot duplicate anything."""
    return isinstance(error, errors.UnavailableError) and "failed to connect" in error.msg.lower()


def tls_refused(error: errors.RPCError) -> bool:
    """Whether the TLS handshake failed (an untrusted or invalid certificate): sending again
    cannot help, so the error is raised at once."""
    return isinstance(error, errors.UnavailableError) and errors.TLS_HINT in error.msg


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How a client retries. Frozen; build a new one with `dataclasses.replace`."""

    max_retries: int = DEFAULT_MAX_RETRIES  # for INTERNAL and UNAVAILABLE
    retry_rate_limit_errors: bool = True
    # False: a Create* call that failed with INTERNAL or UNAVAILABLE after it may have
    # reached the server is not sent again (a lost reply would make the object twice, or
    # fail with ALREADY_EXISTS); the error is raised for the caller to reconcile.
    retry_creates: bool = True
    max_rate_limit_retries: int = DEFAULT_MAX_RATE_LIMIT_RETRIES
    base_delay: float = DEFAULT_BASE_DELAY
    max_delay: float = DEFAULT_MAX_DELAY
    factor: float = DEFAULT_FACTOR
    jitter: float = DEFAULT_JITTER

    def __post_init__(self) -> None:
        for name in ("max_retries", "max_rate_limit_retries"):
            if getattr(self, name) < 0:
                raise ValueError(f"RetryPolicy.{name} must be >= 0")
        for name in ("base_delay", "max_delay", "factor"):
            if getattr(self, name) < 0:
                raise ValueError(f"RetryPolicy.{name} must be >= 0")
        if not 0 <= self.jitter < 1:
            raise ValueError("RetryPolicy.jitter must be in [0, 1)")

    def backoff(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """Wait before the `retry`-th retry (1-based): base * factor**retry, capped, jittered."""
        delay = min(self.base_delay * self.factor**retry, self.max_delay)
        return max(0.0, delay * (1 + self.jitter * (rand() * 2 - 1)))

    def delay(
        self,
        error: errors.RPCError,
        retry: int,
        now: float,
        wall_now: datetime.datetime,
        deadline: float | None,
        rand: Callable[[], float] = random.random,
        paced: float | None = None,
        *,
        creates: bool = False,
    ) -> float | None:
        """Seconds to wait before retry number `retry` (1-based) of a call that failed with
        `error`, or None to give up. `now`/`deadline` are monotonic seconds; `wall_now` is
        compared with the server's `reset_at`. `paced`, with pacing on: how long the pacer
        will hold the retry at least (it times a refusal that says when its window resets,
        as it knows the server's clock and we do not). `creates`: the call makes an object.
        """
        if isinstance(error, errors.RateLimitError):
            if not self.retry_rate_limit_errors or retry > self.max_rate_limit_retries:
                return None
            wait = self.backoff(retry, rand)
            rate_limit = error.rate_limit
            reset_at = rate_limit.reset_at if rate_limit is not None else None
            if paced is not None and rate_limit is not None and rate_limit.limit and reset_at:
                wait = paced
            elif reset_at is not None:
                # `reset_at` is on the server's clock: ours may be seconds off either way.
                # Wait for it by our clock, but no longer than the backoff step (a server
                # ahead costs one more attempt, not its lead), and the step alone when it
                # is already past (a server behind: no spinning); jitter spreads the herd.
                until_reset = (reset_at - wall_now).total_seconds()
                if 0 < until_reset < wait:
                    wait = until_reset + self.base_delay * self.jitter * rand()
        elif isinstance(error, errors.InternalError | errors.UnavailableError):
            if retry > self.max_retries or tls_refused(error):
                return None
            if creates and not self.retry_creates and not never_sent(error):
                return None
            wait = self.backoff(retry, rand)
        else:
            return None
        if deadline is not None and now + wait >= deadline:
            return None  # waiting would outlive the call: report the error now
        return wait
