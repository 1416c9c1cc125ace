"""Access requests and recorded traffic (`Queries`, `Replays`).

The API has no method that makes these: a test records them through the emulator's hooks
(`add_access_request`, `add_access_request_event`, `add_query`). Access requests and their
events are stored objects (tables `AccessRequests` and `AccessRequestEvents`), so that
their lists, filters, `snapshot_at` and histories are the generic engine's and a `--db`
keeps them. Queries live in memory only, like other test hooks' data.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Iterable

from sdm_async.testing import schema
from sdm_async.testing.auth import Key
from sdm_async.testing.schema import Message, Method
from sdm_async.testing.views_base import Handler, Reply, State, set_time

# Tables of objects the API lists but never creates: service -> item message.
STORED = {"AccessRequests": "AccessRequest", "AccessRequestEvents": "AccessRequestEvent"}


def _ns(when: datetime.datetime) -> int:
    if when.tzinfo is None:
        raise ValueError(f"give an aware datetime (with a tzinfo), not {when!r}")
    delta = when - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _must_exist(b: State, service: str, id: str, what: str) -> None:
    if id and id not in b.tables[service].records:
        raise ValueError(f"no {what} has id {id!r}")


def add_access_request(
    b: State,
    resource_id: str,
    account_id: str,
    *,
    reason: str,
    workflow_id: str,
    status: str,
    start_from: datetime.datetime | None,
    duration: datetime.timedelta,
) -> str:
    """Record an access request and its `requested` event; returns its id."""
    if not resource_id:
        raise ValueError("an access request needs the resource_id it asks for")
    _must_exist(b, "Resources", resource_id, "resource")
    _must_exist(b, "Accounts", account_id, "account")
    _must_exist(b, "Workflows", workflow_id, "workflow")
    if duration <= datetime.timedelta(0):
        raise ValueError(f"duration must be positive, not {duration}")
    start = _ns(start_from) if start_from is not None else b.clock()
    until = start + int(duration.total_seconds() * 1_000_000_000)
    request = schema.message_class("AccessRequest")(
        id=schema.id_prefix("AccessRequests") + secrets.token_hex(8),
        resource_id=resource_id,
        account_id=account_id,
        reason=reason,
        workflow_id=workflow_id,
        status=status,
    )
    set_time(request.start_from, start)
    set_time(request.valid_until, until)
    set_time(request.status_at, b.clock())
    request.requestedDuration.FromTimedelta(duration)
    b._commit(b.tables["AccessRequests"], "create", request.id, request, None, account_id)
    add_access_request_event(b, request.id, "requested", account_id, "", None)
    return str(request.id)


def add_access_request_event(
    b: State, request_id: str, type: str, actor_id: str, metadata: str, status: str | None
) -> str:
    """Record an event of an access request (and, with `status`, its new status, as an
    update in the requests' history); returns the event's id."""
    record = b.tables["AccessRequests"].get(request_id)
    if record is None:
        raise ValueError(f"no access request has id {request_id!r}")
    if not type:
        raise ValueError("an access request event needs a type (requested, approved, ...)")
    _must_exist(b, "Accounts", actor_id, "account")
    event = schema.message_class("AccessRequestEvent")(
        id="aqe-" + secrets.token_hex(8),
        request_id=request_id,
        actor_id=actor_id,
        type=type,
        metadata=metadata,
    )
    set_time(event.time, b.clock())
    b._commit(b.tables["AccessRequestEvents"], "create", event.id, event, None, actor_id)
    if status is not None:
        changed = record.msg.__class__()  # `type` is the event type here
        changed.CopyFrom(record.msg)
        changed.status = status
        set_time(changed.status_at, b.clock())
        b._commit(b.tables["AccessRequests"], "update", request_id, changed, None, actor_id)
    return str(event.id)


def add_query(
    b: State,
    fields: dict[str, object],
    replay: Iterable[bytes],
    timestamp: datetime.datetime | None,
    duration: datetime.timedelta,
) -> str:
    """Record a query (and, for a session, its replay: `replay` is its output, one event
    per item, in one chunk); returns the query's id."""
    if duration < datetime.timedelta(0):
        raise ValueError(f"duration must not be negative, not {duration}")
    query = schema.message_class("Query")()
    for name, value in fields.items():
        if name not in query.DESCRIPTOR.fields_by_name:
            raise ValueError(f"Query has no field {name!r}")
        try:
            setattr(query, name, value)
        except (TypeError, AttributeError, ValueError):
            raise ValueError(
                f"Query.{name} takes a plain value (str, int or bool), not {value!r}"
            ) from None
    query.id = query.id or "q-" + secrets.token_hex(8)
    at = _ns(timestamp) if timestamp is not None else b.clock()
    set_time(query.timestamp, at)
    query.duration.FromTimedelta(duration)
    set_time(query.completed_at, at + int(duration.total_seconds() * 1_000_000_000))
    account = b.tables["Accounts"].get(query.account_id)
    if account is not None:
        user = schema.member(account.msg)[1]
        query.account_email = getattr(user, "email", "")
        query.account_first_name = getattr(user, "first_name", "")
        query.account_last_name = getattr(user, "last_name", "")
        query.account_tags.CopyFrom(user.tags)
    resource = b.tables["Resources"].get(query.resource_id)
    if resource is not None:
        kind, driver = schema.member(resource.msg)
        query.resource_name = driver.name
        query.resource_type = query.resource_type or kind
        query.resource_tags.CopyFrom(driver.tags)
    events = [bytes(e) for e in replay]
    chunks = []
    if events:
        query.replayable = True
        chunk = schema.message_class("ReplayChunk")(data=b"".join(events))
        for data in events:
            chunk.events.add(data=data)
        chunks.append(chunk)
    b.extras.queries.append((query, chunks))
    return str(query.id)


def queries(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    return b.derived_page(m, req, [q for q, _ in b.extras.queries])


def replays(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    """`Replays.List`: the filter names queries (`id:q-...`, as the API's examples do);
    the answer is the replay chunks of every query it matches, in order."""
    keep = b._filter(schema.methods()["/v1.Queries/List"], req.filter)
    chunks = [c for q, cs in b.extras.queries if keep is None or keep(q) for c in cs]
    unfiltered = type(req)()  # the filter was about queries, not chunks
    unfiltered.meta.CopyFrom(req.meta)
    return b.derived_page(m, unfiltered, chunks)


HANDLERS: dict[str, Handler] = {"Queries.List": queries, "Replays.List": replays}
