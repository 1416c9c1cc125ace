"""Health: `HealthChecks`, `SecretStoreHealths` and `SecretEngines.Healthcheck`.

Every node is taken to serve every resource and secret store (an emulator has no network to
route). Everything is healthy until a test says otherwise with `set_health` (on a resource,
node, secret store or secret engine): a link is healthy when both of its ends are, and its
error is the first unhealthy end's.
"""

from __future__ import annotations

from sdm_async.testing import schema
from sdm_async.testing.auth import Key
from sdm_async.testing.schema import Message, Method, nanos
from sdm_async.testing.status import not_found
from sdm_async.testing.views_base import Handler, Health, Reply, State, set_time, stable_id

HEALTH_OF = ("Resources", "Nodes", "SecretStores", "SecretEngines")


def set_health(b: State, id: str, healthy: bool, error: str) -> None:
    """What `Emulator.set_health` does: `ValueError` for an id that is none of these."""
    if not any(id in b.tables[s].records for s in HEALTH_OF):
        raise ValueError(
            f"set_health: no resource, node, secret store or secret engine has id {id!r}"
        )
    if healthy and error:
        raise ValueError("set_health: an error is only for healthy=False")
    b.extras.health[id] = Health(healthy, "" if healthy else error or "unhealthy", b.clock())


def _health(b: State, id: str) -> Health:
    """The health of one object: as set by a test, or healthy since its creation."""
    set_ = b.extras.health.get(id)
    if set_ is not None:
        return set_
    for service in HEALTH_OF:
        record = b.tables[service].get(id)
        if record is not None:
            created = schema.member(record.msg)[1]
            if "created_at" in created.DESCRIPTOR.fields_by_name:
                return Health(True, "", nanos(created.created_at))
    return Health(True, "", b.extras.started)


def _link(b: State, *ids: str) -> Health:
    ends = [_health(b, id) for id in ids]
    broken = [h for h in ends if not h.healthy]
    at = max(h.at for h in ends)
    return Health(not broken, broken[0].error if broken else "", at)


def _named(b: State, service: str) -> list[tuple[str, str]]:
    return [(id, schema.member(r.msg)[1].name) for id, r in b.tables[service].records.items()]


def health_checks(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    """`HealthChecks.List`: one per node and resource."""
    item = schema.message_class("Healthcheck")
    found = []
    for node_id, node_name in _named(b, "Nodes"):
        for resource_id, resource_name in _named(b, "Resources"):
            link = _link(b, node_id, resource_id)
            check = item(
                id=stable_id("hc-", node_id, resource_id),
                node_id=node_id,
                node_name=node_name,
                resource_id=resource_id,
                resource_name=resource_name,
                healthy=link.healthy,
                error_msg=link.error,
            )
            set_time(check.timestamp, link.at)
            found.append(check)
    return b.derived_page(m, req, found)


def secret_store_healths(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    """`SecretStoreHealths.List`: one per secret store and node; `status` is "healthy" or
    "unhealthy", `error` the test's error, `checked_at` the last `Healthcheck` asked."""
    item = schema.message_class("SecretStoreHealth")
    found = []
    for store_id in b.tables["SecretStores"].records:
        for node_id in b.tables["Nodes"].records:
            link = _link(b, node_id, store_id)
            health = item(
                secret_store_id=store_id,
                node_id=node_id,
                status="healthy" if link.healthy else "unhealthy",
                error=link.error,
            )
            set_time(health.changed_at, link.at)
            set_time(health.checked_at, max(link.at, b.extras.checked.get(store_id, 0)))
            found.append(health)
    return b.derived_page(m, req, found)


def secret_store_healthcheck(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    """`SecretStoreHealths.Healthcheck`: the check is done at once (nothing to reach)."""
    if req.secret_store_id not in b.tables["SecretStores"].records:
        raise not_found(f"{m.full_name}: secret store {req.secret_store_id!r} not found")
    b.extras.checked[req.secret_store_id] = b.clock()
    return m.response()


def secret_engine_healthcheck(b: State, m: Method, req: Message, caller: Key) -> Message | Reply:
    """`SecretEngines.Healthcheck`: per node, "healthy" when the node, the engine and its
    secret store are, else "unhealthy: <error>"."""
    record = b.tables["SecretEngines"].get(req.secret_engine_id)
    if record is None:
        raise not_found(f"{m.full_name}: secret engine {req.secret_engine_id!r} not found")
    engine = schema.member(record.msg)[1]
    resp = m.response()
    for node_id in b.tables["Nodes"].records:
        link = _link(b, node_id, engine.id, engine.secret_store_id)
        status = "healthy" if link.healthy else f"unhealthy: {link.error}"
        resp.status.add(node_id=node_id, status=status)
    return resp


HANDLERS: dict[str, Handler] = {
    "HealthChecks.List": health_checks,
    "SecretStoreHealths.List": secret_store_healths,
    "SecretStoreHealths.Healthcheck": secret_store_healthcheck,
    "SecretEngines.Healthcheck": secret_engine_healthcheck,
}
