"""Hostile and malformed input: the client refuses what it can check with a clear error
before any call (types, text that cannot be encoded, values no field can hold, requests over
the size a gRPC server accepts), leaves the rest to the server, and the emulator answers
everything else with INVALID_ARGUMENT and never breaks: a fuzz test sends random bytes and
random well-formed messages to every method and checks its state after each round."""

from __future__ import annotations

import base64
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sdm_async
from sdm_async import RetryPolicy, errors
from sdm_async._generated.v1 import accounts_pb2, roles_pb2
from sdm_async._signing import sign, utc_date
from sdm_async.testing import Emulator, schema
from sdm_async.testing.backend import REFERENCES

MAX_REQUEST_BYTES = 4 * 1024 * 1024  # what a gRPC server accepts by default
SECRET = base64.b64encode(b"s" * 32).decode()
NO_RETRY = RetryPolicy(max_retries=0, retry_rate_limit_errors=False)


CLIENT_RETRY = NO_RETRY  # the `client` fixture's policy (conftest.py)


def user(name: str, **kw: Any) -> sdm_async.User:
    return sdm_async.User(email=f"{name}@example.com", first_name="A", last_name="B", **kw)


# -- keys and secrets ---------------------------------------------------------------------


@pytest.mark.parametrize("key", ["auth-é", "auth-\x01", "auth-\x7f", "auth-\u200b"])
def test_an_access_key_a_header_cannot_carry_is_refused_at_construction(key: str) -> None:
    # It used to pass, and every call then failed inside gRPC (ExecuteBatchError).
    with pytest.raises(ValueError, match="api_access_key holds characters other than printable"):
        sdm_async.Client(key, base64.b64encode(b"s" * 32).decode(), "127.0.0.1:1", True)


def test_a_user_agent_a_header_cannot_carry_is_refused_at_construction() -> None:
    secret = base64.b64encode(b"s" * 32).decode()
    with pytest.raises(ValueError, match="user_agent must be a str of printable ASCII"):
        sdm_async.Client("auth-1", secret, "127.0.0.1:1", True, user_agent="app/\u00e9")


@pytest.mark.parametrize(
    ("access_key", "secret", "problem"),
    [
        ("auth-1", "abcd efgh", "not base64"),  # b64decode used to drop the space
        ("auth-1", "YWJj\nZGVm", "not base64"),
        ("auth-1", "not base64!", "not base64"),
        ("auth é", "YWJj", "printable ASCII"),
        ("", "YWJj", "non-empty"),
    ],
)
def test_the_emulator_refuses_a_key_pair_the_client_would_refuse(
    access_key: str, secret: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        Emulator(access_key=access_key, secret_key=secret)
    if problem == "not base64":
        with pytest.raises(ValueError, match="api_secret"):
            sdm_async.Client(access_key, secret, "127.0.0.1:1", True)


# -- arguments: refused before any call ---------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.roles.create(user("x")), r"roles\.create: role must be a Role, not User"),
        (lambda c: c.roles.create("x"), r"roles\.create: role must be a Role, not str"),
        (
            lambda c: c.accounts.create(sdm_async.Role(name="x")),
            r"accounts\.create: account: Account must be one of User, Service, Token; got Role",
        ),
        (lambda c: c.accounts.get(123), r"accounts\.get: id must be str, not int"),
        (
            lambda c: c.resources.create(
                sdm_async.Postgres(name="p", hostname="h", port=2**40, database="d")
            ),
            r"Postgres\.port is out of range: the API's int32 field takes -2147483648 to "
            r"2147483647",
        ),
        (
            lambda c: c.roles.create(sdm_async.Role(name="r", access_rules=[{"x": float("nan")}])),
            r"Role\.access_rules must hold JSON values only: Out of range float",
        ),
        (
            lambda c: c.roles.create(sdm_async.Role(name="r", access_rules=[{1, 2}])),
            r"Role\.access_rules must hold JSON values only: Object of type set",
        ),
        (
            lambda c: c.accounts.create(user("t", tags={"team": 1})),
            r"User\.tags must be dict\[str, str\]: one of its items is not",
        ),
        (
            lambda c: c.accounts.create(user("t", tags=["team"])),
            r"User\.tags must be dict\[str, str\], not list",
        ),
        (
            lambda c: c.accounts.create(user("t", created_at="2024-01-01")),
            r"User\.created_at must be datetime, not str",
        ),
        (
            lambda c: c.account_grants.create(
                sdm_async.AccountGrant(account_id="a", resource_id="r", valid_until="tomorrow")
            ),
            r"AccountGrant\.valid_until must be datetime, not str",
        ),
        (
            lambda c: c.accounts.create(sdm_async.User(email="a\ud800@example.com")),
            r"User\.email is not valid text: it holds a lone surrogate",
        ),
        (lambda c: c.accounts.get("\udcff"), r"accounts\.get: id is not valid text"),
        (lambda c: c.accounts.list("email:\ud800"), r"accounts\.list: filter is not valid text"),
        (
            lambda c: c.accounts.get("a-1", timeout="3"),
            r"Accounts\.Get: timeout must be a number of seconds or None, not str",
        ),
    ],
)
async def test_bad_arguments_say_what_is_wrong_before_any_call(
    emu: Emulator, client: sdm_async.Client, call: Any, message: str
) -> None:
    with pytest.raises((TypeError, ValueError)) as info:
        result = call(client)
        if hasattr(result, "__await__"):
            await result
    assert info.match(message)
    assert emu.stats.calls == 0


async def test_errors_about_a_credential_do_not_show_its_value(client: sdm_async.Client) -> None:
    secret_text = "hunter2-\ud800"
    with pytest.raises(TypeError) as info:
        await client.accounts.create(user("p", password=secret_text))
    assert "password" in str(info.value) and "hunter2" not in str(info.value)
    with pytest.raises(TypeError) as info:
        await client.resources.create(
            sdm_async.Postgres(name="p", hostname="h", password=2**70, port=1, database="d")
        )
    assert "Postgres.password must be str, not int" in str(info.value)
    assert str(2**70) not in str(info.value)


async def test_wrong_placeholder_counts_are_refused_before_any_call(
    emu: Emulator, client: sdm_async.Client
) -> None:
    for text, args in [("email:?", ()), ("email:?", ("a", "b")), ("name:?,email:?", ("a",))]:
        with pytest.raises(errors.BadRequestError, match="placeholder"):
            client.accounts.list(text, *args)
    with pytest.raises(errors.BadRequestError) as info:  # quotes a long filter's ends only
        client.accounts.list("email:?" + "x" * 100_000)
    assert len(str(info.value)) < 500
    assert emu.stats.calls == 0


# -- sizes ----------------------------------------------------------------------------------


async def test_requests_over_the_size_limit_are_refused_before_any_call(
    emu: Emulator, client: sdm_async.Client
) -> None:
    # A gRPC server answers these RESOURCE_EXHAUSTED, which the client used to take for a
    # rate limit and retry until the deadline.
    big_tags = {f"tag{i}": "v" * 100 for i in range(40_000)}
    with pytest.raises(errors.BadRequestError, match="over the 4,194,304 a gRPC server accepts"):
        await client.accounts.create(user("big", tags=big_tags), timeout=30)
    with pytest.raises(errors.BadRequestError, match="over the 4,194,304"):
        client.accounts.list("email:?", "x" * MAX_REQUEST_BYTES)
    assert emu.stats.calls == 0
    # Just under the limit is sent, and the emulator keeps all of it.
    tags = {f"tag{i:05}": "v" * 90 for i in range(30_000)}
    resp = await client.accounts.create(user("large", tags=tags), timeout=30)
    assert resp.account is not None
    got = await client.accounts.get(resp.account.id, timeout=30)
    assert got.account is not None and got.account.tags == tags


async def test_a_page_over_the_size_limit_fails_at_once_with_what_to_do(emu: Emulator) -> None:
    # Two users of 3 MB each: one page of both is over the 4 MiB a gRPC client accepts.
    # That is RESOURCE_EXHAUSTED from the client's own gRPC, not a rate limit: it used to be
    # retried as one until the deadline.
    async with emu.client() as client:
        tags = {f"tag{i:05}": "v" * 100 for i in range(28_000)}
        for name in ("big1", "big2"):
            await client.accounts.create(user(name, tags=tags), timeout=30)
        calls = emu.stats.calls
        with pytest.raises(errors.RPCError, match=r"ask for smaller pages \(page_limit=\)") as info:
            [a async for a in client.accounts.list("", timeout=60)]
        assert not isinstance(info.value, errors.RateLimitError)
        assert emu.stats.calls == calls + 1  # not retried
    async with emu.client(page_limit=1) as client:
        assert len([a async for a in client.accounts.list("", timeout=60)]) == 2


@pytest.mark.parametrize("limit", [-1, 1001, 10**6])
def test_page_limits_out_of_range_are_refused_at_construction(limit: int) -> None:
    with pytest.raises(ValueError, match="page_limit must be between 0"):
        sdm_async.Client(
            "auth-1", base64.b64encode(b"s" * 32).decode(), "h:1", True, page_limit=limit
        )


# -- the emulator, on the raw wire ----------------------------------------------------------


async def raw(emu: Emulator, path: str, body: bytes) -> bytes:
    name = path.lstrip("/").removeprefix("v1.").replace("/", ".")
    signature = sign(base64.b64decode(emu.secret_key), name, body, utc_date())
    metadata = [("x-sdm-authentication", emu.access_key), ("x-sdm-signature", signature)]
    async with grpc.aio.insecure_channel(emu.address) as channel:
        result: bytes = await channel.unary_unary(path)(body, metadata=metadata, timeout=10)
        return result


async def raw_error(emu: Emulator, path: str, body: bytes) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await raw(emu, path, body)
    return info.value


async def test_invalid_utf8_in_a_string_field_is_a_clear_bad_request(emu: Emulator) -> None:
    good = accounts_pb2.AccountGetRequest(id="a-\u00e9").SerializeToString()
    bad = good.replace("\u00e9".encode(), b"\xff\xfe")
    error = await raw_error(emu, "/v1.Accounts/Get", bad)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid v1.AccountGetRequest" in (error.details() or "")
    assert "not UTF-8" in (error.details() or "")


@pytest.mark.parametrize("cursor", ["-1", "-5", " 1", "1_0", "+1", "\u0661", "9" * 5000, "x"])
@pytest.mark.parametrize("path", ["/v1.Accounts/List", "/v1.AccountsHistory/List"])
async def test_cursors_that_no_listing_hands_out_are_refused(
    emu: Emulator, path: str, cursor: str
) -> None:
    # "-1" on a history with no change used to fail inside the emulator (IndexError:
    # INTERNAL); on others it listed from the end, and "1_0" read as 10.
    req = accounts_pb2.AccountListRequest()
    req.meta.cursor = cursor
    error = await raw_error(emu, path, req.SerializeToString())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid cursor" in (error.details() or "")


async def test_page_limits_out_of_range_on_the_wire(emu: Emulator) -> None:
    emu.backend.seed_users(1100)
    req = accounts_pb2.AccountListRequest()
    req.meta.limit = -1
    error = await raw_error(emu, "/v1.Accounts/List", req.SerializeToString())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    req.meta.limit = 2**31 - 1  # capped at the largest page
    resp = accounts_pb2.AccountListResponse.FromString(
        await raw(emu, "/v1.Accounts/List", req.SerializeToString())
    )
    assert len(resp.accounts) == 1000 and resp.meta.next_cursor


@pytest.mark.parametrize(
    ("rules", "problem"),
    [
        ("not json", "not valid JSON"),
        ("NaN", "must be a JSON list of objects"),
        ('{"tags": {}}', "must be a JSON list of objects"),
        ("[1]", "must be a JSON list of objects"),
    ],
)
async def test_access_rules_that_are_not_a_json_list_of_rules_are_refused(
    emu: Emulator, rules: str, problem: str
) -> None:
    req = roles_pb2.RoleCreateRequest()
    req.role.name = "r"
    req.role.access_rules = rules
    error = await raw_error(emu, "/v1.Roles/Create", req.SerializeToString())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert problem in (error.details() or "")
    assert emu.backend.count("Roles") == 0


# -- fuzz: random bytes and random well-formed messages to every method ---------------------

METHODS = sorted(schema.methods().items())
# What the API answers to a bad request; INTERNAL or UNKNOWN would be an emulator bug.
FINE = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
}
WORDS = ["", "*", "a", "x" * 300, "[]", "[{}]", '[{"tags":{"a":"b"}}]', "null", "{", "-1", "ü"]
_INTS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_ENUM: (-5, 1000),
}


def _scalar(data: st.DataObject, fd: FieldDescriptor, ids: list[str]) -> Any:
    t = fd.type
    if t == FieldDescriptor.TYPE_STRING:
        # An existing object's id by position, so that the draws do not depend on the ids.
        value = data.draw(
            st.one_of(st.sampled_from(WORDS), st.text(max_size=20), st.integers(0, 63))
        )
        return value if isinstance(value, str) else (ids[value % len(ids)] if ids else "")
    if t == FieldDescriptor.TYPE_BYTES:
        return data.draw(st.binary(max_size=16))
    if t == FieldDescriptor.TYPE_BOOL:
        return data.draw(st.booleans())
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return data.draw(st.floats(width=32 if t == FieldDescriptor.TYPE_FLOAT else 64))
    low, high = _INTS[t]
    return data.draw(st.one_of(st.sampled_from([0, 1, low, high]), st.integers(low, high)))


def fill(message: Any, data: st.DataObject, ids: list[str], depth: int = 0) -> None:
    """Set a random selection of `message`'s fields, nested messages included."""
    for fd in message.DESCRIPTOR.fields:
        if not data.draw(st.booleans()):
            continue
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= 3:
                continue
            assert fd.message_type is not None
            target = getattr(message, fd.name)
            if fd.message_type.GetOptions().map_entry:
                key_fd, value_fd = fd.message_type.fields
                if value_fd.type != FieldDescriptor.TYPE_MESSAGE:
                    target[_scalar(data, key_fd, ids)] = _scalar(data, value_fd, ids)
            elif fd.is_repeated:
                for _ in range(data.draw(st.integers(0, 2))):
                    fill(target.add(), data, ids, depth + 1)
            else:
                target.SetInParent()  # a oneof member or an empty message is set too
                fill(target, data, ids, depth + 1)
        elif fd.is_repeated:
            getattr(message, fd.name).extend(
                _scalar(data, fd, ids) for _ in range(data.draw(st.integers(0, 2)))
            )
        else:
            setattr(message, fd.name, _scalar(data, fd, ids))


def check_consistent(emu: Emulator) -> None:
    """The emulator's state obeys its own rules after whatever it was sent."""
    b = emu.backend
    for name, table in b.tables.items():
        for id, record in table.records.items():
            assert schema.member(record.msg)[1].id == id, (name, id)
            assert table.item.FromString(record.data) == record.msg, (name, id)
    for service, fields in REFERENCES.items():
        for record in b.tables[service].records.values():
            for field, target in fields.items():
                assert getattr(record.msg, field) in b.tables[target].records, (service, field)
    for service, index in b._unique.items():
        records = b.tables[service].records
        assert all(id in records for id in index.values()), service
        assert len(set(index.values())) == len(index), service
    accounts = b.tables["Accounts"].records
    for key in b.keys._keys.values():
        assert not key.account_id or key.account_id in accounts


def _ids(emu: Emulator) -> list[str]:
    return sorted(i for t in emu.backend.tables.values() for i in t.records)[:50]


# Each example calls every method (about 215 calls): a third of the profile's examples.
@settings(
    max_examples=max(3, settings.default.max_examples // 3),
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
async def test_fuzz_every_method_with_random_bytes_and_random_messages(
    data: st.DataObject,
) -> None:
    # A fresh emulator per example, so that a failure replays from the example alone.
    async with Emulator() as emu:
        emu.backend.seed_users(5)
        await _fuzz(emu, data)


async def _fuzz(emu: Emulator, data: st.DataObject) -> None:
    secret = base64.b64decode(emu.secret_key)
    async with grpc.aio.insecure_channel(emu.address) as channel:
        for path, m in METHODS:
            if data.draw(st.booleans(), label="random bytes"):
                body = data.draw(st.binary(max_size=64), label=f"{m.full_name} bytes")
            else:
                request = m.request()
                fill(request, data, _ids(emu))
                body = request.SerializeToString()
            metadata = [
                ("x-sdm-authentication", emu.access_key),
                ("x-sdm-signature", sign(secret, m.full_name, body, utc_date())),
            ]
            try:
                await channel.unary_unary(path)(body, metadata=metadata, timeout=10)
            except grpc.aio.AioRpcError as e:
                assert e.code() in FINE, (m.full_name, e.code(), e.details())
        check_consistent(emu)
        # And it still serves an ordinary call, in agreement with its state.
        async with emu.client() as client:
            listed = [a async for a in client.accounts.list("", timeout=30)]
        assert len(listed) == emu.backend.count("Accounts")
