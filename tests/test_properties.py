"""Properties, checked on generated values (hypothesis; examples per the profile in
conftest.py): filter quoting keeps every value inside its term, every model survives a round
trip through protobuf, signing equals an implementation written from the reference README,
and listing cursors neither repeat nor skip whatever creates and deletes come between pages."""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import hmac
import inspect
import typing
from typing import Any

import pytest
import strongdm
from google.protobuf import message_factory
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import sdm_async
from sdm_async import _signing
from sdm_async._generated import models as generated_models
from sdm_async._generated.services.accounts import _LIST
from sdm_async._generated.v1 import _pool, accounts_pb2
from sdm_async._pagination import quote_filter_args
from sdm_async.testing import Emulator
from sdm_async.testing.filters import _parse, compile_filter

# -- filter quoting -------------------------------------------------------------------------

# Values that could end a term if quoting let them: quotes, backslashes, separators, colons,
# placeholders, whitespace and control characters, escapes, wildcards, any Unicode.
HOSTILE = st.text(alphabet=st.sampled_from('"\\,: ?\t\n\r\x00*=u{}[]') | st.characters())
# What a stored field can hold (no lone surrogates: they cannot be encoded).
STORABLE = st.text(
    alphabet=st.sampled_from('"\\,: ?\t\n\r\x00*=u{}[]') | st.characters(codec="utf-8")
)
VALUES = st.one_of(HOSTILE, st.integers(), st.floats(), st.booleans(), st.none())


@given(values=st.lists(VALUES, min_size=1, max_size=4))
def test_filter_quoting_keeps_each_value_inside_its_term(values: list[Any]) -> None:
    names = ["email", "firstname", "lastname", "tags"][: len(values)]
    template = ",".join(f"{n}:?" for n in names)
    text = quote_filter_args(template, *values)
    # Exactly one term per placeholder, each holding the whole value and nothing more.
    assert [(n, v) for n, _, v in _parse(text)] == [
        (n, str(v)) for n, v in zip(names, values, strict=True)
    ]
    # The same text as the official SDK writes.
    assert text == strongdm.plumbing.quote_filter_args(template, *values)


@given(value=STORABLE, other=STORABLE)
def test_a_quoted_value_matches_exactly_that_value(value: str, other: str) -> None:
    descriptor = _pool.POOL.FindMessageTypeByName("v1.Account")
    cls = message_factory.GetMessageClass(descriptor)
    match = compile_filter(quote_filter_args("email:?,lastname:?", value, "x"), descriptor)

    def user(email: str, last: str = "x") -> Any:
        item = cls()
        item.user.email, item.user.last_name = email, last
        return item

    assert match(user(value))
    assert not match(user(value, last="y"))  # the second term still applies: nothing escaped
    if "*" not in value and other.casefold() != value.casefold():
        assert not match(user(other))


# -- models through protobuf ----------------------------------------------------------------

MODELS = sorted(
    (
        obj
        for name in generated_models.__all__
        if inspect.isclass(obj := getattr(generated_models, name))
        and issubclass(obj, sdm_async.Model)
    ),
    key=lambda c: c.__name__,
)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    # Lone surrogates cannot travel: the client refuses them (tested in test_hostile_input).
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
ZONES = st.builds(
    datetime.timezone, st.timedeltas(datetime.timedelta(hours=-23), datetime.timedelta(hours=23))
)
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
# Any aware time a Timestamp can hold, but the epoch itself, which the API uses for "unset".
TIMES = st.datetimes(
    min_value=datetime.datetime(2, 1, 1), max_value=datetime.datetime(9998, 12, 31), timezones=ZONES
).filter(lambda t: t != EPOCH)
DURATION_LIMIT = datetime.timedelta(seconds=315_576_000_000)  # Duration's range: 10,000 years
DURATIONS = st.timedeltas(-DURATION_LIMIT, DURATION_LIMIT)


def _strategy(hint: str, module: Any, depth: int) -> st.SearchStrategy[Any]:
    """Values of a model attribute annotated `hint` (as the generated code writes it)."""
    if hint.endswith(" | None"):
        inner = hint.removesuffix(" | None")
        if inner == "datetime.datetime":
            return st.none() | TIMES
        if inner == "datetime.timedelta":
            # No None: the API has no unset duration, and reads one as zero (as the
            # official SDK does), so None comes back as timedelta(0).
            return DURATIONS
        if _members(inner, module):  # a union: None is "no member set"
            return st.none() if depth >= 1 else st.none() | _strategy(inner, module, depth)
        # A nested model: an unset message reads back as an empty model, as in the official
        # SDK, so None does not survive; an empty model does.
        return _strategy(inner, module, depth)
    simple: dict[str, st.SearchStrategy[Any]] = {
        "str": st.text(),
        "bool": st.booleans(),
        "int": st.integers(0, 2**31 - 1),  # fits every integer type of the API
        "bytes": st.binary(),
        "dict[str, str]": st.dictionaries(st.text(), st.text(), max_size=4),
        "list[str]": st.lists(st.text(), max_size=3),
        "list[typing.Any]": st.lists(JSON, max_size=3),
        "dict[str, typing.Any]": st.dictionaries(st.text(), JSON, max_size=3),
    }
    if hint in simple:
        return simple[hint]
    if hint.startswith("list["):
        item = _strategy(hint[5:-1], module, depth)
        return st.just([]) if depth >= 1 else st.lists(item, max_size=2)
    if hint.startswith("dict[str, "):
        value = _strategy(hint[10:-1], module, depth)
        return st.just({}) if depth >= 1 else st.dictionaries(st.text(), value, max_size=2)
    members = _members(hint, module)
    if members:  # a union: one of its member models
        return st.one_of(*(models(cls, depth + 1) for cls in members))
    found = _resolve(hint, module)
    if depth >= 1:  # deep enough: an empty one, as an empty message reads
        pb, _, from_pb = _converters(found)
        return st.builds(lambda: from_pb(pb()))
    return models(found, depth + 1)


def _resolve(name: str, module: Any) -> Any:
    return getattr(module, name, None) or getattr(generated_models, name)


def _members(name: str, module: Any) -> tuple[Any, ...]:
    """The member models of a union alias (`Account = typing.Union[User, ...]`), or ()."""
    found = _resolve(name, module) if name.isidentifier() else None
    return () if found is None or inspect.isclass(found) else typing.get_args(found)


@functools.cache
def models(cls: type[sdm_async.Model], depth: int = 0) -> st.SearchStrategy[Any]:
    module = inspect.getmodule(cls)
    hints: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        hints.update(getattr(klass, "__annotations__", {}))
    fields = {f: _strategy(hints[f], module, depth) for f in cls.__slots__}
    return st.builds(cls, **fields)


def _converters(cls: type) -> tuple[Any, Any, Any]:
    module = inspect.getmodule(cls)
    pb = message_factory.GetMessageClass(_pool.POOL.FindMessageTypeByName(f"v1.{cls.__name__}"))
    return pb, getattr(module, f"to_pb_{cls.__name__}"), getattr(module, f"from_pb_{cls.__name__}")


# Models in groups, each example drawing one of every model of its group: one hypothesis
# test per model would cost more in set-up than in checking.
GROUPS = [MODELS[i::32] for i in range(32)]


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: f"{g[0].__name__}-and-{len(g) - 1}")
@settings(
    max_examples=max(2, settings.default.max_examples // 3),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # shrinking 15 models takes ages
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_every_model_survives_a_round_trip_through_protobuf(
    group: list[type[sdm_async.Model]], data: st.DataObject
) -> None:
    for cls in group:
        pb, to_pb, from_pb = _converters(cls)
        model = data.draw(models(cls), label=cls.__name__)
        message = pb()
        to_pb(model, message)
        wire = pb.FromString(message.SerializeToString())
        assert from_pb(wire) == model


# -- signing, against the reference README ----------------------------------------------------


def reference_signature(secret: bytes, method: str, body: bytes, date: datetime.date) -> str:
    """Written from ../shared/reference/README.md, sharing nothing with sdm_async._signing."""
    k1 = hmac.new(secret, f"{date.year:04d}-{date.month:02d}-{date.day:02d}".encode(), "sha256")
    k2 = hmac.new(k1.digest(), b"sdm_api_v1", "sha256").digest()
    digest = hashlib.sha256((method + "\n").encode("utf-8") + body).digest()
    return base64.b64encode(hmac.new(k2, digest, "sha256").digest()).decode("ascii")


METHOD_NAMES = st.from_regex(r"\A[A-Z][A-Za-z]{0,30}\.[A-Z][A-Za-z]{0,30}\Z") | st.text()
# Years from 1000: the official SDK writes the date with strftime("%Y"), which does not pad
# years below 1000 to four digits; no clock that signs a request reads such a year.
DATES = st.dates(min_value=datetime.date(1000, 1, 1))


@given(
    secret=st.binary(min_size=1, max_size=64),
    calls=st.lists(st.tuples(METHOD_NAMES, st.binary(max_size=256), DATES), min_size=1),
)
def test_signing_equals_the_reference_scheme(
    secret: bytes, calls: list[tuple[str, bytes, datetime.date]]
) -> None:
    signer = _signing.Signer(secret)  # its day-key cache must not leak between dates
    for method, body, date in calls:
        expected = reference_signature(secret, method, body, date)
        assert _signing.sign(secret, method, body, date.isoformat()) == expected
        assert signer.sign(method, body, date.isoformat()) == expected


@given(moment=st.datetimes(min_value=datetime.datetime(1000, 1, 2), timezones=ZONES))
def test_the_signing_date_is_the_utc_calendar_date(moment: datetime.datetime) -> None:
    utc = moment.astimezone(datetime.timezone.utc)
    assert _signing.utc_date(moment) == utc.date().isoformat()


@given(secret=st.binary(min_size=1, max_size=64))
def test_a_secret_survives_base64_as_the_api_hands_it_out(secret: bytes) -> None:
    assert _signing.decode_secret(base64.b64encode(secret).decode()) == secret


# -- cursors under concurrent creates and deletes -------------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.just(0)), st.tuples(st.just("delete"), st.integers(0, 40))
    ),
    max_size=4,
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    initial=st.integers(0, 12),
    limit=st.integers(1, 5),
    between=st.lists(OPS, min_size=1, max_size=12),
)
async def test_cursors_never_repeat_or_skip_under_creates_and_deletes(
    initial: int, limit: int, between: list[list[tuple[str, int]]]
) -> None:
    async with Emulator() as emu, emu.client() as client:
        made: list[str] = []  # every account in creation order, deleted ones included
        alive: set[str] = set()

        async def create() -> None:
            n = len(made)
            resp = await client.accounts.create(
                sdm_async.User(email=f"u{n}@example.com", first_name="U", last_name=str(n))
            )
            assert resp.account is not None
            made.append(resp.account.id)
            alive.add(resp.account.id)

        for _ in range(initial):
            await create()
        seen: list[str] = []
        cursor = ""
        last = -1  # position in `made` of the last account listed
        for page in range(len(between) + 100):
            req = accounts_pb2.AccountListRequest()
            req.meta.limit, req.meta.cursor = limit, cursor
            resp = await client._transport.call(_LIST, req, 10)
            ids = [a.user.id for a in resp.accounts]
            # Exactly the accounts alive now that come after the last one listed, in order.
            later = [i for i in made[last + 1 :] if i in alive]
            assert ids == later[:limit]
            seen += ids
            if ids:
                last = made.index(ids[-1])
            cursor = resp.meta.next_cursor
            if not cursor:
                assert len(later) <= limit
                break
            for op, index in between[page] if page < len(between) else []:
                if op == "create":
                    await create()
                elif made:
                    victim = made[index % len(made)]
                    if victim in alive:
                        await client.accounts.delete(victim)
                        alive.discard(victim)
        assert len(seen) == len(set(seen))  # nothing twice
        assert alive <= set(seen)  # nothing alive at the end was skipped
        assert seen == sorted(seen, key=made.index)  # in creation order
