"""The emulator's filter language (sdm_async.testing.filters) against real v1 messages."""

from __future__ import annotations

import json
from typing import cast

import pytest
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from sdm_async._generated.v1 import (
    accounts_history_pb2,
    accounts_pb2,
    authorization_policies_pb2,
    discovery_connectors_pb2,
    drivers_pb2,
    nodes_pb2,
    queries_pb2,
    roles_pb2,
    secret_engine_types_pb2,
    tags_pb2,
)
from sdm_async.testing.filters import FilterError, compile_filter, filter_fields

Account = accounts_pb2.Account
Resource = drivers_pb2.Resource
Node = nodes_pb2.Node


def tags(**pairs: str) -> tags_pb2.Tags:
    return tags_pb2.Tags(pairs=[tags_pb2.Tags.Pair(name=k, value=v) for k, v in pairs.items()])


def user(email: str = "sam@example.com", **kw: object) -> Account:
    kw.setdefault("first_name", "Sam")
    kw.setdefault("last_name", "Smith")
    return Account(user=accounts_pb2.User(id="a-1", email=email, **kw))  # type: ignore[arg-type]


def matches(text: str, item: Message) -> bool:
    return compile_filter(text, cast(Descriptor, item.DESCRIPTOR))(item)


def pick(text: str, items: dict[str, Message]) -> set[str]:
    """The keys of the items that `text` keeps, compiled once for all of them."""
    descriptor = cast(Descriptor, next(iter(items.values())).DESCRIPTOR)
    keep = compile_filter(text, descriptor)
    return {k for k, item in items.items() if keep(item)}


# --- terms, names, whitespace -----------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_empty_filter_matches_everything(text: str) -> None:
    assert matches(text, user())
    assert matches(text, Account())  # even an item with nothing set


@pytest.mark.parametrize(
    "name", ["firstname", "first_name", "FirstName", "FIRST_NAME", "first__name"]
)
def test_field_names_ignore_case_and_underscores(name: str) -> None:
    assert matches(f"{name}:sam", user())
    assert not matches(f"{name}:bob", user())


def test_terms_are_anded() -> None:
    sam = user(first_name="Sam", last_name="Smith")
    assert matches("firstname:sam,lastname:smith", sam)
    assert not matches("firstname:sam,lastname:jones", sam)
    assert not matches("firstname:bob,lastname:smith", sam)


def test_whitespace_around_terms_and_colons_is_ignored() -> None:
    assert matches("  firstname : sam ,  lastname:\tsmith  ", user())
    assert not matches("  firstname : sam ,  lastname:\tjones  ", user())


def test_whitespace_separates_terms_like_commas() -> None:
    # The official Terraform provider joins terms with spaces: `type:? email:? `.
    u = user(email="a@b.c", last_name="Van Der Berg")
    assert matches('type:user email:"a@b.c" ', u)
    assert not matches("type:user email:x@b.c", u)
    assert matches('lastname:"van der berg"', u)  # a value with spaces is quoted
    with pytest.raises(FilterError, match="expected ':' after 'der'"):
        matches("lastname:van der Berg", u)


# --- matching ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("sam@example.com", True),
        ("SAM@EXAMPLE.COM", True),  # case-insensitive
        ("sam@example", False),  # whole string, not a prefix
        ("am@example.com", False),  # nor a suffix
        ("sam*", True),
        ("*@example.com", True),
        ("*example*", True),
        ("s*@*.com", True),
        ("s*m@e*e.c*m", True),
        ("sam@example.com*", True),  # '*' matches the empty run
        ("*sam@example.com", True),
        ("*", True),
        ("**", True),
        ("*@other.com", False),
        ("sam@example*example.com", False),  # head and tail may not overlap
        ("x*", False),
        ("*example", False),
        ("s*z*", False),
        ("sam?example.com", False),  # '?' is not a wildcard
        ("sam.example.com", False),  # nor is '.'
    ],
)
def test_wildcards_and_case(pattern: str, expected: bool) -> None:
    assert matches(f"email:{pattern}", user("Sam@Example.com")) is expected


def test_star_matches_an_empty_field_but_not_text() -> None:
    assert matches("managedby:*", user())
    assert matches('managedby:""', user())
    assert not matches('managedby:""', user(managed_by="scim"))


def test_wildcard_pattern_with_regex_characters_is_literal() -> None:
    item = user(external_id="a.b+c(d)[e]$")
    assert matches("externalid:a.b+c(d)[e]$", item)
    assert matches("externalid:*(d)*$", item)
    assert not matches("externalid:a*b+c(d)[e]x", item)


@pytest.mark.parametrize(
    "value",
    [
        "a@b.c",
        "Foo Bar",
        "comma, inside",
        "colon: inside",
        'quote " inside',
        "back\\slash",
        "new\nline",
        "ünïcödé",
        "emoji \U0001f600",
        "",
    ],
)
def test_quoted_values_as_the_official_sdk_builds_them(value: str) -> None:
    # The SDK substitutes `?` with json.dumps(str(arg)).
    text = f"lastname:{json.dumps(value)}"
    assert matches(text, user(last_name=value))
    assert not matches(text, user(last_name=value + "x"))


def test_star_inside_quotes_is_still_a_wildcard() -> None:
    assert matches('lastname:"van *"', user(last_name="Van Der Berg"))
    assert not matches('lastname:"der *"', user(last_name="Van Der Berg"))


def test_quoted_value_with_unicode_escape() -> None:
    assert matches('lastname:"\\u00e9t\\u00E9"', user(last_name="été"))


# --- value kinds ------------------------------------------------------------------------------


def test_bools_match_true_and_false() -> None:
    items: dict[str, Message] = {
        "on": Account(service=accounts_pb2.Service(name="a", suspended=True)),
        "off": Account(service=accounts_pb2.Service(name="b", suspended=False)),
    }
    assert pick("suspended:true", items) == {"on"}
    assert pick("suspended:TRUE", items) == {"on"}
    assert pick("suspended:false", items) == {"off"}
    assert pick("suspended:t*", items) == {"on"}
    assert pick("suspended:*", items) == {"on", "off"}
    assert pick("suspended:1", items) == set()


def test_user_suspended_reads_the_porcelain_field() -> None:
    # The SDK's User.suspended is proto `suspendedRO`; the proto `suspended` is not exposed.
    item = user(suspendedRO=True, suspended=False)
    assert matches("suspended:true", item)
    assert not matches("suspended:false", item)
    assert matches("permissionlevel:admin", user(permission_levelRW="admin"))


def test_integers_match_in_decimal() -> None:
    pg = Resource(postgres=drivers_pb2.Postgres(name="pg", port=5432))
    assert matches("port:5432", pg)
    assert matches("port:54*", pg)
    assert not matches("port:543", pg)
    assert not matches("port:05432", pg)


def test_enums_match_by_name_short_name_or_number() -> None:
    policy = authorization_policies_pb2.AuthorizationPolicy
    active = policy(state=authorization_policies_pb2.AUTHORIZATION_POLICY_STATE_ACTIVE)
    inactive = policy(state=authorization_policies_pb2.AUTHORIZATION_POLICY_STATE_INACTIVE)
    items: dict[str, Message] = {"active": active, "inactive": inactive}
    assert pick("state:AUTHORIZATION_POLICY_STATE_ACTIVE", items) == {"active"}
    assert pick("state:active", items) == {"active"}
    assert pick("state:1", items) == {"active"}
    assert pick("state:*active", items) == {"active", "inactive"}
    assert pick("state:unspecified", items) == set()
    # A number outside the enum (proto3 keeps it) still matches by number.
    unknown = policy()
    unknown.state = 7  # type: ignore[assignment]
    assert matches("state:7", unknown)
    assert not matches("state:active", unknown)


def test_repeated_scalars_match_when_any_element_does() -> None:
    token = Account(token=accounts_pb2.Token(name="t", permissions=["role:list", "user:read"]))
    assert matches('permissions:"user:read"', token)
    assert matches('permissions:"role:*"', token)
    assert not matches('permissions:"user:write"', token)
    assert not matches("permissions:*", Account(token=accounts_pb2.Token(name="none")))


# --- tags -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tags:env=prod", True),
        ("tags:ENV=Prod", True),
        ("tags:env", True),  # any value
        ("tags:env=*", True),
        ("tags:e*=p*", True),
        ("tags:*=prod", True),
        ("tags:team=*", False),
        ("tags:env=dev", False),
        ("tags:env=pro", False),
        ("tags:team", False),
        ('tags:"owner=Jane Doe"', True),
        ('tags:"owner=jane*"', True),
        ('tags:"owner="', False),  # an empty value must be empty
        ('tags:"empty="', True),
        ("tags:env=prod,tags:owner", True),
    ],
)
def test_tags(text: str, expected: bool) -> None:
    role = roles_pb2.Role(name="r", tags=tags(env="prod", owner="Jane Doe", empty=""))
    assert matches(text, role) is expected


def test_a_value_equal_sign_belongs_to_the_tag_value() -> None:
    role = roles_pb2.Role(tags=tags(expr="a=b"))
    assert matches('tags:"expr=a=b"', role)


def test_tags_on_an_item_without_tags() -> None:
    assert not matches("tags:*", roles_pb2.Role(name="r"))


def test_any_tags_field_filters_by_its_own_name() -> None:
    query = queries_pb2.Query(resource_tags=tags(env="prod"), account_tags=tags(team="db"))
    assert matches("resourcetags:env=prod", query)
    assert matches("account_tags:team", query)
    assert not matches("resourcetags:team", query)


# --- polymorphic items ------------------------------------------------------------------------


def test_account_type_and_member_fields() -> None:
    items: dict[str, Message] = {
        "user": user("sam@example.com"),
        "service": Account(service=accounts_pb2.Service(name="ci-bot", suspended=True)),
        "token": Account(token=accounts_pb2.Token(name="deploy", account_type="api")),
        "unset": Account(),
    }
    assert pick("type:user", items) == {"user"}
    assert pick("type:SERVICE", items) == {"service"}
    assert pick("type:t*", items) == {"token"}
    assert pick("type:*", items) == {"user", "service", "token"}
    # A member without the field does not match.
    assert pick("email:*", items) == {"user"}
    assert pick("name:*", items) == {"service", "token"}
    assert pick("name:ci-*", items) == {"service"}
    assert pick("accounttype:api", items) == {"token"}
    assert pick("type:service,name:deploy", items) == set()


def test_resource_type_and_member_fields() -> None:
    items: dict[str, Message] = {
        "pg": Resource(
            postgres=drivers_pb2.Postgres(
                name="orders-db",
                hostname="db.internal",
                port=5432,
                username="app",
                tags=tags(env="prod"),
            )
        ),
        "redis": Resource(redis=drivers_pb2.Redis(name="cache", hostname="db.internal", port=6379)),
        "ssh": Resource(
            ssh=drivers_pb2.SSH(name="bastion", hostname="ssh.internal", port_forwarding=True)
        ),
        "unset": Resource(),
    }
    assert pick("type:postgres", items) == {"pg"}
    assert pick("type:Redis", items) == {"redis"}
    assert pick("type:ssh", items) == {"ssh"}
    assert pick("type:*", items) == {"pg", "redis", "ssh"}
    assert pick("hostname:db.internal", items) == {"pg", "redis"}
    assert pick("name:*", items) == {"pg", "redis", "ssh"}
    assert pick("port:6379", items) == {"redis"}
    assert pick("portforwarding:true", items) == {"ssh"}  # only SSH has the field
    assert pick("username:app", items) == {"pg"}  # readable credentials are filterable
    assert pick("tags:env=prod,type:postgres", items) == {"pg"}
    assert pick("type:postgres,hostname:ssh.*", items) == set()


def test_node_type_and_member_fields() -> None:
    items: dict[str, Message] = {
        "gateway": Node(gateway=nodes_pb2.Gateway(name="gw", listen_address="1.2.3.4:5000")),
        "relay": Node(relay=nodes_pb2.Relay(name="rl", tags=tags(region="eu"))),
        "cluster": Node(proxy_cluster=nodes_pb2.ProxyCluster(name="pc", address="pc.local:443")),
    }
    assert pick("type:gateway", items) == {"gateway"}
    assert pick("type:relay", items) == {"relay"}
    # Member names compare without underscores, like field names.
    assert pick("type:proxy_cluster", items) == {"cluster"}
    assert pick("type:proxycluster", items) == {"cluster"}
    assert pick("type:ProxyCluster", items) == {"cluster"}
    assert pick("type:proxy", items) == set()
    assert pick('listenaddress:"1.2.3.4:*"', items) == {"gateway"}
    assert pick("address:*", items) == {"cluster"}
    assert pick("tags:region=eu", items) == {"relay"}


def test_discriminator_wins_over_a_member_field_named_type() -> None:
    engine = secret_engine_types_pb2.SecretEngine(
        key_value=secret_engine_types_pb2.KeyValueEngine(name="kv", type="custom")
    )
    assert matches("type:keyvalue", engine)
    assert matches("type:key_value", engine)
    assert not matches("type:custom", engine)


def test_oneof_filter_name_option_names_the_discriminator() -> None:
    # Connector's oneof says filter_name: "cloud".
    aws = discovery_connectors_pb2.Connector(
        aws=discovery_connectors_pb2.AWSConnector(name="scan", services=["ec2", "rds"])
    )
    assert matches("cloud:aws", aws)
    assert not matches("cloud:gcp", aws)
    assert matches("services:rds", aws)
    assert "cloud" in filter_fields(aws.DESCRIPTOR)


# --- history records --------------------------------------------------------------------------


def test_history_record_fields_and_wrapped_object() -> None:
    history = accounts_history_pb2.AccountHistory
    items: dict[str, Message] = {
        "u": history(activity_id="at-1", account=user("sam@example.com")),
        "s": history(activity_id="at-2", account=Account(service=accounts_pb2.Service(name="ci"))),
    }
    assert pick("activityid:at-1", items) == {"u"}
    assert pick("activity_id:at-*", items) == {"u", "s"}
    assert pick("type:user", items) == {"u"}
    assert pick("email:*@example.com", items) == {"u"}
    assert pick("name:ci,activityid:at-2", items) == {"s"}
    with pytest.raises(FilterError, match="field 'timestamp' is of type Timestamp"):
        compile_filter("timestamp:x", history.DESCRIPTOR)


# --- what cannot be filtered ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("createdat:x", "field 'createdat' is of type Timestamp and cannot be filtered"),
        ("password:x", "field 'password' is write-only and cannot be filtered"),
    ],
)
def test_unfilterable_account_fields(text: str, problem: str) -> None:
    with pytest.raises(FilterError, match=problem):
        compile_filter(text, Account.DESCRIPTOR)


def test_unfilterable_message_field_of_a_plain_item() -> None:
    with pytest.raises(FilterError, match="field 'scope' is of type RoleScope"):
        compile_filter("scope:x", roles_pb2.Role.DESCRIPTOR)


def test_filter_fields_lists_accepted_names_only() -> None:
    fields = filter_fields(Account.DESCRIPTOR)
    assert fields == sorted(fields)
    assert {"email", "firstname", "name", "suspended", "tags", "type"} <= set(fields)
    assert not {"createdat", "password", "first_name"} & set(fields)
    assert filter_fields(roles_pb2.Role.DESCRIPTOR) == [
        "accessrules",
        "id",
        "managedby",
        "name",
        "tags",
    ]


# --- errors -----------------------------------------------------------------------------------


def test_unknown_field_names_it_and_lists_the_known_ones() -> None:
    with pytest.raises(FilterError) as info:
        compile_filter("emial:x", Account.DESCRIPTOR)
    message = str(info.value)
    assert message.startswith("filter 'emial:x': unknown field 'emial' at position 0;")
    assert "did you mean 'email'?" in message
    assert message.endswith("fields: " + ", ".join(filter_fields(Account.DESCRIPTOR)))
    assert info.value.position == 0
    assert isinstance(info.value, ValueError)


def test_unknown_field_in_a_later_term_reports_its_position() -> None:
    with pytest.raises(FilterError, match=r"unknown field 'nmae' at position 14;"):
        compile_filter("type:service, nmae:x", Account.DESCRIPTOR)


@pytest.mark.parametrize(
    ("text", "problem", "position"),
    [
        ("email", "expected ':' after 'email'", 5),
        ("email x", "expected ':' after 'email'", 6),
        ('name:"abc', "unterminated quoted value starting", 5),
        ('name:"abc\\"', "unterminated quoted value starting", 5),
        ('name:"a\\qb"', "invalid escape in quoted value", 7),
        ('name:"a"b', "expected ',' or a space after the quoted value", 8),
        ('name:a"b"', "'\"' in an unquoted value", 6),
        ("email:a:b", "':' in an unquoted value", 7),
        ("email:", "expected a value after 'email:'", 6),
        ("email: ,name:x", "expected a value after 'email:'", 7),
        ("email:a,,name:b", "empty term", 8),
        ("email:a,", "empty term", 8),
        (",email:a", "empty term", 0),
        (":a", "expected a field name", 0),
        ("e-mail:a", "expected ':' after 'e'", 1),
    ],
)
def test_malformed_text_says_what_and_where(text: str, problem: str, position: int) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(text, Account.DESCRIPTOR)
    assert str(info.value).startswith(f"filter {text!r}: {problem} at position {position}")
    assert info.value.position == position


def test_errors_are_raised_at_compile_time_in_text_order() -> None:
    # Both terms are wrong; the first one in the text is reported.
    with pytest.raises(FilterError, match="unknown field 'bogus' at position 0"):
        compile_filter('bogus:x,name:"open', Account.DESCRIPTOR)


def test_one_compiled_predicate_serves_many_items() -> None:
    keep = compile_filter("email:u1*@example.com,type:user", Account.DESCRIPTOR)
    items = [user(f"u{i}@example.com") for i in range(2000)]
    items += [Account(service=accounts_pb2.Service(name=f"u1{i}")) for i in range(100)]
    kept = [a.user.email for a in items if keep(a)]
    assert len(kept) == 1 + 10 + 100 + 1000  # u1, u10-u19, u100-u199, u1000-u1999
    assert all(e.startswith("u1") for e in kept)
