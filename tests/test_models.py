"""Every model converts to protobuf and back without losing a field."""

from __future__ import annotations

import copy
import datetime
import inspect
import pickle
from typing import Any

import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor

import sdm_async
from sdm_async._generated import models as generated_models
from sdm_async._generated.v1 import _pool


def _model_classes() -> list[type[sdm_async.Model]]:
    return [
        obj
        for name in generated_models.__all__
        if inspect.isclass(obj := getattr(generated_models, name))
        and issubclass(obj, sdm_async.Model)
    ]


def _fill(msg: Any, depth: int = 0) -> None:
    """Set every field of `msg` to a non-default value (nested messages a few levels deep)."""
    desc: Descriptor = msg.DESCRIPTOR
    for f in desc.fields:
        oneof = f.containing_oneof
        if oneof is not None and oneof.fields[0] is not f:
            continue  # one member per oneof: the first (a python-visible kind)
        if f.message_type is not None:
            if f.message_type.GetOptions().map_entry:
                getattr(msg, f.name)["k"] = "v" if f.message_type.fields[1].type == 9 else None
                continue
            if depth > 3:
                continue
            if f.message_type.full_name == "google.protobuf.Timestamp":
                target = getattr(msg, f.name).add() if f.is_repeated else getattr(msg, f.name)
                target.seconds, target.nanos = 1_700_000_123, 456_789_000
            elif f.message_type.full_name == "google.protobuf.Duration":
                target = getattr(msg, f.name).add() if f.is_repeated else getattr(msg, f.name)
                target.seconds, target.nanos = 90, 5_000
            else:
                target = getattr(msg, f.name).add() if f.is_repeated else getattr(msg, f.name)
                _fill(target, depth + 1)
            continue
        value: Any = {
            FieldDescriptor.TYPE_STRING: '{"k": "v"}',  # valid JSON, for access-rule fields
            FieldDescriptor.TYPE_BYTES: b"\x01\x02",
            FieldDescriptor.TYPE_BOOL: True,
            FieldDescriptor.TYPE_DOUBLE: 1.5,
            FieldDescriptor.TYPE_FLOAT: 1.5,
            FieldDescriptor.TYPE_ENUM: 1,
        }.get(f.type, 7)
        if f.is_repeated:
            getattr(msg, f.name).append(value)
        else:
            setattr(msg, f.name, value)


def _converters(cls: type) -> tuple[Any, Any]:
    module = __import__(cls.__module__, fromlist=["_"])
    return getattr(module, f"from_pb_{cls.__name__}"), getattr(module, f"to_pb_{cls.__name__}")


def _empty(value: Any) -> bool:
    return value is None or (value in ("", b"", 0, False, [], {}) and not isinstance(value, float))


MODELS = _model_classes()


def test_there_are_as_many_models_as_the_official_sdk_plus_legacy() -> None:
    assert len(MODELS) >= 448


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_round_trip_through_protobuf(cls: type[sdm_async.Model]) -> None:
    desc = _pool.POOL.FindMessageTypeByName(f"v1.{cls.__name__}")
    pb_cls = message_factory.GetMessageClass(desc)
    original = pb_cls()
    _fill(original)
    from_pb, to_pb = _converters(cls)
    model = from_pb(original)
    for field in cls.__slots__:
        assert not _empty(getattr(model, field)), f"{cls.__name__}.{field} was not converted"
    back = pb_cls()
    to_pb(model, back)
    again = from_pb(back)
    assert again == model
    assert repr(again) == repr(model)
    assert cls.from_dict(model.to_dict()) == model


def test_timestamps_are_aware_and_exact() -> None:
    created = datetime.datetime(2026, 11, 24, 12, 30, 1, 123456, tzinfo=datetime.timezone.utc)
    user = sdm_async.User(email="a@example.com", created_at=created)
    from sdm_async._generated.models.accounts import from_pb_User, to_pb_User
    from sdm_async._generated.v1 import accounts_pb2

    msg = accounts_pb2.User()
    to_pb_User(user, msg)
    assert msg.created_at.seconds == int(created.timestamp())
    assert msg.created_at.nanos == 123456000
    back = from_pb_User(msg)
    assert back.created_at == created and back.created_at.tzinfo is not None
    assert from_pb_User(accounts_pb2.User()).created_at is None  # unset -> None


def test_durations_round_trip_including_negative() -> None:
    from sdm_async._model import dur_from_pb, dur_to_pb

    msg = _pool.POOL.FindMessageTypeByName("google.protobuf.Duration")
    cls = message_factory.GetMessageClass(msg)
    for td in (
        datetime.timedelta(hours=2, microseconds=7),
        datetime.timedelta(seconds=-1, microseconds=500),
    ):
        d = cls()
        dur_to_pb(td, d)
        assert dur_from_pb(d) == td


def test_repr_never_shows_credentials() -> None:
    secrets = [
        (sdm_async.User(password="hunter2"), "hunter2"),
        (sdm_async.Postgres(password="pg-secret-pw", username="bob"), "pg-secret-pw"),
        (sdm_async.AccountCreateResponse(secret_key="s3cr3t-key", token="tok-1"), "s3cr3t-key"),
        (sdm_async.AccountCreateResponse(token="tok-123"), "tok-123"),
        (sdm_async.NodeCreateResponse(token="node-token-xyz"), "node-token-xyz"),
        (sdm_async.AKSServiceAccount(token="k8s-token-abc"), "k8s-token-abc"),
    ]
    for model, secret in secrets:
        assert secret not in repr(model), type(model).__name__
        assert "***" in repr(model)


def test_models_compare_by_value_and_take_keywords() -> None:
    a = sdm_async.Role(name="dbas", access_rules=[{"tags": {"env": "prod"}}])
    b = sdm_async.Role(name="dbas", access_rules=[{"tags": {"env": "prod"}}])
    assert a == b and a != sdm_async.Role(name="other")
    assert sdm_async.User().tags == {} and sdm_async.User().tags is not sdm_async.User().tags


# --- listed models: some fields are converted on first read ----------------------------------


def _listed_and_built() -> tuple[sdm_async.User, sdm_async.User]:
    """The same user, converted from a message (as a listing does) and built by keywords."""
    from sdm_async._generated.models.accounts import from_pb_Account
    from sdm_async._generated.v1 import accounts_pb2

    created = datetime.datetime(2026, 11, 24, 12, 30, 1, 123456, tzinfo=datetime.timezone.utc)
    tags = {"team": "db", "é": "ünïcode " * 40, "": "", "empty": ""}  # a long value, empty ones
    msg = accounts_pb2.Account()
    msg.user.id = "a-1"
    msg.user.email = "alice@example.com"
    msg.user.password = "hunter2"
    msg.user.suspendedRO = True
    msg.user.created_at.seconds = int(created.timestamp())
    msg.user.created_at.nanos = 123456789  # below a microsecond is dropped, as by the SDK
    for name, value in tags.items():
        msg.user.tags.pairs.add(name=name, value=value)
    listed = from_pb_Account(accounts_pb2.Account.FromString(msg.SerializeToString()))
    built = sdm_async.User(
        id="a-1",
        email="alice@example.com",
        password="hunter2",
        suspended=True,
        created_at=created,
        tags=dict(tags),
    )
    assert isinstance(listed, sdm_async.User)
    return listed, built


def test_a_listed_model_equals_the_model_built_by_keywords() -> None:
    listed, built = _listed_and_built()
    assert listed == built and built == listed
    assert repr(listed) == repr(built) and "hunter2" not in repr(listed)
    assert listed.to_dict() == built.to_dict()
    assert sdm_async.User.from_dict(listed.to_dict()) == built
    assert dir(listed) == dir(built)
    assert listed.created_at is not None and listed.created_at.tzinfo is datetime.timezone.utc
    assert type(listed.tags) is dict and listed.tags["é"].startswith("ünïcode")


def test_a_listed_model_pickles_and_copies_as_one_built_by_keywords() -> None:
    for read_first in (False, True):
        listed, built = _listed_and_built()
        if read_first:
            assert listed.tags == built.tags
        assert listed.__getstate__() == built.__getstate__()
        again = pickle.loads(pickle.dumps(listed))
        assert type(again) is sdm_async.User and again == built
        assert b"_raw" not in pickle.dumps(listed)
        assert copy.copy(listed) == built and copy.deepcopy(listed) == built
        assert copy.deepcopy(listed).tags is not listed.tags


def test_setting_a_field_of_a_listed_model_before_reading_it_keeps_the_value() -> None:
    listed, built = _listed_and_built()
    listed.tags = {"new": "tags"}
    listed.created_at = None
    assert listed.tags == {"new": "tags"} and listed.created_at is None
    assert listed != built
    assert pickle.loads(pickle.dumps(listed)).tags == {"new": "tags"}
    listed, _ = _listed_and_built()
    assert listed.tags == built.tags  # read, then set: the set value wins too
    listed.tags["more"] = "x"
    assert listed.tags["more"] == "x"  # the dict read is the one kept, not a new one


def test_an_unknown_attribute_is_an_attribute_error_naming_it() -> None:
    listed, built = _listed_and_built()
    for model in (listed, built):
        with pytest.raises(AttributeError, match="'User' object has no attribute 'emial'"):
            model.emial  # type: ignore[attr-defined]  # noqa: B018
        assert not hasattr(model, "emial") and hasattr(model, "tags")
    del built.tags
    with pytest.raises(AttributeError, match="no attribute 'tags'"):
        built.tags  # noqa: B018


def test_tags_read_from_their_bytes_equal_protobufs_reading() -> None:
    """The short-form reader of serialized tags (lengths under 128 bytes), and the fallback
    to protobuf for anything longer, against protobuf's own parsing."""
    from sdm_async._generated.v1 import tags_pb2
    from sdm_async._model import _tags_lazy, _tags_short, tags_from_pb

    cases = [
        {},
        {"a": "b"},
        {"": ""},
        {"k": ""},
        {"": "v"},
        {"x" * 61: "y" * 61},  # a pair of 126 bytes: still short
        {"x" * 62: "y" * 62},  # a pair of 128 bytes: its length takes 2 bytes
        {"long": "v" * 300},
        {f"k{i}": f"v{i}" for i in range(50)},
        {"ünï": "cödé 🙂", "\x00": "\n"},
    ]
    for tags in cases:
        msg = tags_pb2.Tags()
        for name, value in tags.items():
            msg.pairs.add(name=name, value=value)
        data = msg.SerializeToString()
        assert _tags_lazy((data,), 0) == tags == tags_from_pb(tags_pb2.Tags.FromString(data))
        short = _tags_short(data)
        assert short is None or short == tags
    assert _tags_short(b"\x0a\x05\x0a\x02ab") is None  # a truncated pair: protobuf decides
    assert _tags_short(b"\x12\x00") is None  # not field 1
