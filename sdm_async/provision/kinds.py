"""The kinds of object a declaration holds, and how each one maps onto the API.

Objects (users, services, roles, resources, nodes) have a natural key and tags, so they can
be found by name and carry the ownership mark. Links (attachments, grants) have neither:
they are identified by their two ends, and owned when both ends are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdm_async._generated import catalog
from sdm_async._generated import models as _models
from sdm_async._model import Model

__all__ = [
    "ATTACHMENT",
    "GRANT",
    "LEVEL_KEY",
    "LINKS",
    "MARK_KEY",
    "MARK_VALUE",
    "NODE",
    "NODE_TYPES",
    "OBJECTS",
    "RESOURCE",
    "RESOURCE_TYPES",
    "ROLE",
    "SERVICE",
    "USER",
    "Kind",
    "is_managed",
    "owner_of",
    "required_fields",
    "settable_fields",
    "type_name",
]

# The mark of the objects this tool owns. Only marked objects are ever updated without being
# declared, or deleted (and only with prune); everything else in the organisation is left alone.
MARK_KEY = "managed-by"
MARK_VALUE = "sdm-async"
# The permission level a user had when the declaration suspended it: the API suspends through
# the level itself, so without this the level to restore on unsuspending would be lost.
LEVEL_KEY = "level-before-suspension"


@dataclass(frozen=True)
class Kind:
    name: str  # "user": singular, as plans show it
    section: str  # "users": the declaration's section
    service: str  # "accounts": the client's attribute
    reply: str  # "account": the object's attribute on create and update responses
    key: str  # "email": the natural key's attribute ("" for links)
    listing: str  # "type:user": a filter selecting this kind within its service ("" for all)
    classes: tuple[type[Model], ...]  # the model classes of this kind

    def __repr__(self) -> str:
        return f"<Kind {self.name}>"

    def holds(self, obj: object) -> bool:
        return isinstance(obj, self.classes)

    def ident(self, obj: Any) -> str:
        """The object's natural key as the API compares it (case-insensitively)."""
        return str(getattr(obj, self.key)).casefold()


def _union(name: str) -> dict[str, type[Any]]:
    """oneof field name -> model class, for one polymorphic API type (`Resource`)."""
    return {field: getattr(_models, cls) for field, cls in catalog.UNIONS[name][1]}


# A resource's `type` in a declaration is its field name in the API's Resource oneof, which is
# also what `type:` filters match: postgres, mysql, redis, ssh, http_basic_auth, ...
RESOURCE_TYPES: dict[str, type[Any]] = _union("Resource")
NODE_TYPES: dict[str, type[Any]] = {
    k: v for k, v in _union("Node").items() if k in ("gateway", "relay")
}
_TYPE_NAMES: dict[type[Any], str] = {
    cls: name for name, cls in {**RESOURCE_TYPES, **NODE_TYPES}.items()
}

USER = Kind("user", "users", "accounts", "account", "email", "type:user", (_models.User,))
SERVICE = Kind(
    "service", "services", "accounts", "account", "name", "type:service", (_models.Service,)
)
ROLE = Kind("role", "roles", "roles", "role", "name", "", (_models.Role,))
RESOURCE = Kind(
    "resource", "resources", "resources", "resource", "name", "", tuple(RESOURCE_TYPES.values())
)
NODE = Kind("node", "nodes", "nodes", "node", "name", "", tuple(NODE_TYPES.values()))
ATTACHMENT = Kind(
    "attachment",
    "attachments",
    "account_attachments",
    "account_attachment",
    "",
    "",
    (_models.AccountAttachment,),
)
GRANT = Kind("grant", "grants", "account_grants", "account_grant", "", "", (_models.AccountGrant,))

OBJECTS = (USER, SERVICE, ROLE, RESOURCE, NODE)  # in creation order; deleted in reverse
LINKS = (ATTACHMENT, GRANT)


def type_name(obj: object) -> str:
    """`postgres` for a Postgres, `gateway` for a Gateway; the class name otherwise."""
    return _TYPE_NAMES.get(type(obj), type(obj).__name__)


def is_managed(obj: object, owner: str = MARK_VALUE) -> bool:
    """Whether `obj` carries the mark of `owner` (a declaration's `owner:`)."""
    tags = getattr(obj, "tags", None)
    return isinstance(tags, dict) and tags.get(MARK_KEY) == owner


def owner_of(obj: object) -> str | None:
    """The owner whose mark `obj` carries, or None when it is unmarked."""
    tags = getattr(obj, "tags", None)
    return tags.get(MARK_KEY) if isinstance(tags, dict) else None


def _attribute(cls: type[Model], proto_name: str) -> str | None:
    """The model attribute of a proto field name from the catalog (`SCIM` -> `scim`)."""
    if proto_name in cls.__slots__:
        return proto_name
    lowered = proto_name.lower()
    return lowered if lowered in cls.__slots__ else None


def settable_fields(cls: type[Model]) -> dict[str, type]:
    """Attributes a declaration may set on a typed object (resource, node), with their
    value type. Left out: id, name and tags (declared apart), what the server sets
    (read-only), and structured values (lists, nested models) that a flat file cannot hold."""
    fields = _SETTABLE.get(cls)
    if fields is not None:
        return fields
    read_only = {_attribute(cls, f) for f in catalog.READ_ONLY.get(cls.__name__, ())}
    blank = cls()
    fields = _SETTABLE[cls] = {}
    for name in cls.__slots__:
        if name in ("id", "name", "tags") or name in read_only:
            continue
        default = getattr(blank, name)
        if isinstance(default, bool | int | str):
            fields[name] = type(default)
    return fields


def required_fields(cls: type[Model]) -> tuple[str, ...]:
    """Attributes the API requires on creation whatever else is set, other than the name
    (declared apart). Those it requires only under a condition (`identity_set_id` set or
    not, ...) are left to the API to check."""
    conditional = catalog.CONDITIONAL.get(cls.__name__, ())
    required = (f for f in catalog.REQUIRED.get(cls.__name__, ()) if f not in conditional)
    found = (_attribute(cls, f) for f in required)
    return tuple(f for f in found if f is not None and f != "name")


_SETTABLE: dict[type[Model], dict[str, type]] = {}
