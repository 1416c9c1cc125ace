"""What every call pays, made cheaper, still does the same: the signer's once-a-day date, the
pacer's clock-free grant, one serialization per call, bulk's spreading of tuples."""

from __future__ import annotations

import datetime
import math
import time
import types
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sdm_async
from sdm_async import _signing, errors
from sdm_async._generated.v1 import spec_pb2
from sdm_async._pacing import Bucket, Pacer
from sdm_async.testing import Emulator

# -- signing --------------------------------------------------------------------------------

MIDNIGHT = datetime.datetime(2026, 11, 24, tzinfo=datetime.timezone.utc).timestamp()


@pytest.mark.parametrize(
    ("now", "date"),
    [
        (MIDNIGHT - 0.001, "2026-11-23"),
        (MIDNIGHT, "2026-11-24"),
        (MIDNIGHT + 86399.999, "2026-11-24"),
        (MIDNIGHT + 86400, "2026-11-25"),
    ],
)
def test_the_signer_signs_with_the_utc_date_of_the_moment_across_midnight(
    monkeypatch: pytest.MonkeyPatch, now: float, date: str
) -> None:
    secret = b"hunter2-key"
    signer = _signing.Signer(secret)
    # The day before, so that the cached date must change.
    monkeypatch.setattr(time, "time", lambda: now - 86400)
    signer.sign("Accounts.Get", b"body")
    monkeypatch.setattr(time, "time", lambda: now)
    got = signer.sign("Accounts.Get", b"body")
    assert got == _signing.sign(secret, "Accounts.Get", b"body", date)


# -- pacing: the clock-free grant is the slow path's --------------------------------------------


def _pacer_with(state: dict[str, Any]) -> Pacer:
    """A pacer whose bucket for `Accounts.Get` is in `state` (an answer named it first)."""
    pacer = Pacer()
    reset = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=30)
    word = types.SimpleNamespace(limit=1000, remaining=999, reset_at=reset, bucket="k")
    pacer.observe("Accounts.Get", word, 0.0)
    bucket = pacer.bucket("k")
    assert bucket is not None
    for name, value in state.items():
        setattr(bucket, name, value)
    return pacer


@given(
    in_flight=st.integers(0, 300),
    # Budget left over the calls in flight: mostly near the edges where grants change (none
    # left, the few units kept for probes, the slow start's cap), sometimes plenty.
    left=st.integers(-3, 40) | st.integers(-3, 5000),
    own=st.integers(0, 300),
    alone=st.booleans(),
    shared=st.booleans(),
)
def test_the_pacers_fast_grant_is_exactly_what_the_slow_path_grants(
    in_flight: int, left: int, own: int, alone: bool, shared: bool
) -> None:
    state = {
        "remaining": max(0, in_flight + left),
        "in_flight": in_flight,
        "own": own,
        "alone": alone,
        "shared": shared,
    }
    fast, slow = _pacer_with(state), _pacer_with(state)
    # The fast path is tried first by take(); _take_slow is what take() used to do alone.
    granted = fast.take("Accounts.Get") is not None
    b = slow.bucket("k")
    assert b is not None
    expected = slow._take_slow(b) is not None
    assert granted == expected, state
    after = fast.bucket("k")
    assert after is not None and after.in_flight == b.in_flight


# -- pacing: the fast observe is the slow path's ------------------------------------------------

_STATE = [s for s in Bucket.__slots__ if s not in ("queue", "timer", "timer_at")]


def _word(remaining: int, reset: float, bucket: str = "k", limit: int = 1000) -> Any:
    """A response's rate-limit metadata, as the transport hands it over (a message)."""
    word = spec_pb2.RateLimitMetadata(bucket=bucket, limit=limit, remaining=remaining)
    seconds = math.floor(reset)
    word.reset_at.seconds = seconds
    word.reset_at.nanos = round((reset - seconds) * 1e9)
    return word


@given(
    in_flight=st.integers(1, 300),
    remaining=st.integers(0, 1100),
    answered=st.integers(-5, 1100),
    own=st.integers(0, 300),
    alone=st.booleans(),
    shared=st.booleans(),
    quiet=st.booleans(),
    # The answer's window: the same (within rounding), a newer one, or one already past.
    shift=st.sampled_from([0.0, 0.0004, -0.0004, 0.002, -0.002, 5.0, -5.0]),
    window=st.sampled_from([0.0, 10.0, 60.0]),
    lo=st.floats(-100, 100),
    width=st.floats(0, 200) | st.just(math.inf),
    rtt=st.floats(0, 2),
    other_bucket=st.booleans(),
    refused=st.booleans(),
    limit=st.sampled_from([1000, 999, 0]),
)
def test_the_pacers_fast_observe_is_exactly_what_the_slow_path_does(
    in_flight: int,
    remaining: int,
    answered: int,
    own: int,
    alone: bool,
    shared: bool,
    quiet: bool,
    shift: float,
    window: float,
    lo: float,
    width: float,
    rtt: float,
    other_bucket: bool,
    refused: bool,
    limit: int,
) -> None:
    state = {
        "remaining": remaining,
        "in_flight": in_flight,
        "own": own,
        "alone": alone,
        "shared": shared,
        "quiet": quiet or not shared,
        "window": window,
        "lo": lo,
        "hi": lo + width,
        "rtt": rtt,
    }
    fast, slow = _pacer_with(state), _pacer_with(state)
    b, twin = slow.bucket("k"), fast.bucket("k")
    assert b is not None and twin is not None
    for k in _STATE:  # made a moment apart: the same times too
        setattr(twin, k, getattr(b, k))
    word = _word(max(answered, 0), b.reset_at + shift, "j" if other_bucket else "k", limit)
    now, perf = time.time(), time.perf_counter()
    with pytest.MonkeyPatch.context() as mp:  # one clock for both
        mp.setattr(time, "time", lambda: now)
        mp.setattr(time, "perf_counter", lambda: perf)
        fast.observe("Accounts.Get", word, perf - 0.003, refused)
        slow._observe_slow("Accounts.Get", word, perf - 0.003, refused)
    for name in ("k", "j"):
        f, s = fast.bucket(name), slow.bucket(name)
        if s is None:
            assert f is None
            continue
        assert f is not None
        got = {k: getattr(f, k) for k in _STATE}
        assert got == {k: getattr(s, k) for k in _STATE}, (name, state)
    assert (fast._last is None) == (slow._last is None)
    assert fast._last is None or slow._last is None or fast._last.name == slow._last.name


def test_the_fast_observe_takes_the_usual_answer_and_leaves_sharing_to_the_slow_path() -> None:
    pacer = _pacer_with(
        {"remaining": 999, "in_flight": 1, "own": 1, "shared": False, "quiet": True}
    )
    b = pacer.bucket("k")
    assert b is not None
    reset = b.reset_at
    # Ours alone: the word falls by our one call.
    pacer.observe("Accounts.Get", _word(998, reset), time.perf_counter())
    assert (b.remaining, b.own, b.shared) == (998, 2, False)
    # 10 calls more than ours counted: someone else spends the budget too.
    pacer.observe("Accounts.Get", _word(987, reset), time.perf_counter())
    assert (b.remaining, b.own, b.shared, b.quiet) == (987, 3, True, False)


def test_the_fast_grant_counts_the_call_in_flight_and_release_gives_it_back() -> None:
    pacer = _pacer_with({"remaining": 10, "in_flight": 0, "own": 1, "shared": False})
    b = pacer.bucket("k")
    assert b is not None and not b.shared
    token = pacer.take("Accounts.Get")
    assert token is b and b.in_flight == 1
    pacer.release(token)
    assert b.in_flight == 0
    # The slow start's cap: max(own + 1, remaining // 16) units in flight at most.
    tokens = [pacer.take("Accounts.Get") for _ in range(3)]
    assert tokens == [b, b, None]


# -- one serialization per call ---------------------------------------------------------------


async def test_a_call_sends_and_signs_the_bytes_it_checked_once(emu: Emulator) -> None:
    seen: list[sdm_async.Attempt] = []
    async with emu.client(on_attempt=seen.append) as client:
        made = await client.accounts.create(
            sdm_async.User(email="once@example.com", first_name="O", last_name="Nce")
        )
        assert made.account is not None
        got = await client.accounts.get(made.account.id)
        assert isinstance(got.account, sdm_async.User)
        assert got.account.email == "once@example.com"
        # A request over the limit is refused before any call, from the same bytes' length.
        big = sdm_async.User(email="big@example.com", first_name="x" * (5 * 1024 * 1024))
        with pytest.raises(errors.BadRequestError, match="over the 4,194,304"):
            await client.accounts.create(big)
    assert [a.method for a in seen] == ["Accounts.Create", "Accounts.Get"]
    assert all(a.error is None and a.waited == 0.0 for a in seen)


async def test_bulk_spreads_tuples_and_reports_failures_per_item(emu: Emulator) -> None:
    async with emu.client() as client:
        made = await client.accounts.create(
            sdm_async.User(email="bulk-t@example.com", first_name="B", last_name="T")
        )
        assert made.account is not None
        items: list[Any] = [(made.account.id, 5.0), made.account.id, "a-nosuchid"]
        outcomes = await client.bulk(client.accounts.get, items)
    assert [o.index for o in outcomes] == [0, 1, 2]
    assert outcomes[0].ok and outcomes[1].ok
    assert outcomes[0].response is not None and outcomes[0].response.account is not None
    assert outcomes[0].response.account.id == made.account.id
    assert isinstance(outcomes[2].error, errors.NotFoundError)
    assert outcomes[2].item == "a-nosuchid"


# -- a response's rate_limit, converted on first read ---------------------------------------------


def test_a_responses_rate_limit_is_converted_on_first_read_as_before() -> None:
    from sdm_async._generated.models.accounts import from_pb_AccountGetResponse
    from sdm_async._generated.models.spec import GetResponseMetadata, RateLimitMetadata
    from sdm_async._generated.v1 import accounts_pb2

    msg = accounts_pb2.AccountGetResponse()
    msg.account.user.id = "a-1"
    word = msg.rate_limit
    word.bucket, word.limit, word.remaining = "auth-k", 1000, 998
    word.reset_at.seconds, word.reset_at.nanos = 1_796_000_000, 250_000_000
    got = from_pb_AccountGetResponse(msg)
    with pytest.raises(AttributeError):
        object.__getattribute__(got, "rate_limit")  # not built until read
    rl = got.rate_limit
    assert rl == RateLimitMetadata(
        bucket="auth-k",
        limit=1000,
        remaining=998,
        reset_at=datetime.datetime(2026, 11, 30, 0, 53, 20, 250000, tzinfo=datetime.timezone.utc),
    )
    assert got.rate_limit is rl  # read once, then a plain slot
    assert got.meta == GetResponseMetadata()
    # An answer without one reads as the defaults, as an eager conversion gave.
    empty = from_pb_AccountGetResponse(accounts_pb2.AccountGetResponse())
    assert empty.rate_limit == RateLimitMetadata()
    assert empty == from_pb_AccountGetResponse(accounts_pb2.AccountGetResponse())
    assert "rate_limit=RateLimitMetadata(bucket='auth-k'" in repr(got)
