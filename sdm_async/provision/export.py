"""Writing a declaration from an organisation: `sdm-async provision export`.

The file follows the schema `plan` and `apply` read, so that an organisation can be adopted
the way Terraform imports one: export it under an owner, set the variables the header lists,
`plan` (every object is only to be marked), `apply`, and from then on edit the file.

- Objects (users, services, roles, resources, nodes) and the links between them (attachments,
  grants), each under its natural key; a link is written only when both its ends are.
- `owner`: the file's `owner:`. Unmarked objects and those marked as `owner`'s are written;
  those another declaration owns (tag `managed-by: <other>`) are left out, named in the
  header: they are that declaration's to manage.
- Credentials are never written, not even those the API returns (a postgres `username`):
  where the object has one, or needs one to be created, a `${VAR}` named after the object and
  the field (`${PG_APP_PASSWORD}`) stands for it, and the header lists them.
- Attributes at their default value or at the value the API assigns when none is given
  (`port_override`, `bind_interface`, a `healthcheck_namespace` of `default`, a gateway's
  `bind_address` from its listen address), read-only ones (ids, timestamps, health), the
  `managed-by` tag (which `owner:` means) and the `level-before-suspension` bookkeeping tag
  are left out.
- Entries are sorted by natural key, keys within an entry in a fixed order, and nothing varies
  between runs (no date, no host): the same organisation gives the same text.
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from sdm_async.provision.kinds import (
    ATTACHMENT,
    GRANT,
    LEVEL_KEY,
    LINKS,
    MARK_KEY,
    MARK_VALUE,
    NODE,
    OBJECTS,
    RESOURCE,
    ROLE,
    SERVICE,
    USER,
    Kind,
    owner_of,
    required_fields,
    settable_fields,
    type_name,
)
from sdm_async.provision.org import _read_links, gather
from sdm_async.provision.spec import _OWNER, SECTIONS

if TYPE_CHECKING:
    from sdm_async.client import Client

__all__ = ["check_owner", "export", "parse_tags", "sections"]

_KINDS = {k.section: k for k in (*OBJECTS, *LINKS)}
# Which sections a link's ends come from: a link is written only with both of its ends.
_ENDS = {ATTACHMENT: ((USER, SERVICE), ROLE), GRANT: ((USER, SERVICE), RESOURCE)}
_HIDDEN_TAGS = (MARK_KEY, LEVEL_KEY)


def sections(only: Iterable[str] | None) -> tuple[Kind, ...]:
    """The kinds `--only` selects (all when None), checked before any call."""
    if only is None:
        return (*OBJECTS, *LINKS)
    if isinstance(only, str):
        only = only.split(",")
    wanted = [s.strip() for s in only if s.strip()]
    unknown = [s for s in wanted if s not in _KINDS]
    if unknown or not wanted:
        raise ValueError(
            f"--only takes sections separated by commas ({', '.join(SECTIONS)}); "
            + (f"unknown: {', '.join(unknown)}" if unknown else "none was given")
        )
    kinds = tuple(k for k in (*OBJECTS, *LINKS) if k.section in wanted)
    for link, (accounts, target) in _ENDS.items():
        if link in kinds and (target not in kinds or not set(accounts) & set(kinds)):
            raise ValueError(
                f"--only {link.section} needs the sections of both ends, which the file "
                f"names: add {target.section} and users or services (e.g. --only "
                f"users,{target.section},{link.section})"
            )
    return kinds


def check_owner(owner: str) -> str:
    """`owner` if it can be a declaration's `owner:`, checked before any call."""
    if not isinstance(owner, str) or not _OWNER.fullmatch(owner):
        raise ValueError(
            "--owner must be a short name of letters, digits and - _ . / (e.g. team-data): "
            "the value of the managed-by tag on what the declaration manages"
        )
    return owner


def parse_tags(tags: Iterable[str]) -> dict[str, str]:
    """`--tag team=data` (repeatable) as a mapping, checked before any call."""
    out: dict[str, str] = {}
    for tag in tags:
        name, sep, value = tag.partition("=")
        if not sep or not name:
            raise ValueError(f"--tag takes NAME=VALUE (e.g. --tag team=data), not {tag!r}")
        if name in out and out[name] != value:
            raise ValueError(f"--tag {name} is given twice with different values")
        out[name] = value
    return out


@dataclass
class _Found:
    """What was read, and what was left out of the file and why (for the header)."""

    objects: dict[str, list[Any]] = field(default_factory=dict)
    links: dict[str, list[Any]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


async def export(
    client: Client,
    *,
    only: Iterable[str] | None = None,
    tags: Mapping[str, str] | None = None,
    owner: str = MARK_VALUE,
) -> str:
    """The organisation as a declaration (YAML text) owned by `owner`.

    `only`: the sections to write (`["users", "roles"]`; links need their ends' sections);
    `tags`: write only the objects carrying every one of these tags (links: both ends). Bad
    arguments raise ValueError before any call."""
    kinds = sections(only)
    wanted = dict(tags or {})
    found = await _read(client, kinds, wanted, check_owner(owner))
    return _render(found, kinds, wanted, owner)


# -- reading ----------------------------------------------------------------------------------


def _selected(obj: Any, tags: Mapping[str, str]) -> bool:
    have = getattr(obj, "tags", None) or {}
    return all(have.get(k) == v for k, v in tags.items())


async def _list(client: Client, service: str) -> list[Any]:
    return [obj async for obj in getattr(client, service).list("")]


async def _read(
    client: Client, kinds: tuple[Kind, ...], tags: Mapping[str, str], owner: str
) -> _Found:
    found = _Found()
    services = sorted({k.service for k in kinds if k in OBJECTS})
    listed = dict(
        zip(
            services,
            await gather([functools.partial(_list, client, s) for s in services]),
            strict=True,
        )
    )
    others: dict[str, int] = {}
    for kind in OBJECTS:
        if kind not in kinds:
            continue
        chosen: dict[str, Any] = {}
        for obj in sorted(listed[kind.service], key=lambda o: o.id):
            if not kind.holds(obj) or not _selected(obj, tags):
                continue
            holder = owner_of(obj)
            if holder not in (None, owner):
                others[holder] = others.get(holder, 0) + 1
                continue
            ident = kind.ident(obj)
            clash = chosen.get(ident)
            if clash is not None:  # a declaration names each object once
                found.skipped.append(
                    f"{kind.name} {obj.id}: same {kind.key} as {clash.id} "
                    f"({getattr(obj, kind.key)!r})"
                )
                continue
            if kind is SERVICE and ident in {
                u.email.casefold() for u in found.objects.get("user", [])
            }:
                found.skipped.append(f"service {obj.id}: its name is also a user's email")
                continue
            chosen[ident] = obj
        found.objects[kind.name] = sorted(chosen.values(), key=kind.ident)
    for holder, n in sorted(others.items()):
        found.skipped.append(f"{n} object(s) of the declaration with owner {holder!r}")
    unsupported = [
        type_name(obj)
        for objs in listed.values()
        for obj in objs
        if not any(k.holds(obj) for k in OBJECTS) and _selected(obj, tags)
    ]
    for name in sorted(set(unsupported)):
        found.skipped.append(
            f"{unsupported.count(name)} {name} object(s): a declaration cannot hold them"
        )
    accounts = {o.id: o for k in (USER, SERVICE) for o in found.objects.get(k.name, [])}
    for link in (k for k in LINKS if k in kinds):
        target = ROLE if link is ATTACHMENT else RESOURCE
        ends = {o.id: o for o in found.objects.get(target.name, [])}
        side = "role_id" if link is ATTACHMENT else "resource_id"

        def keep(x: Any, ends: dict[str, Any] = ends, side: str = side) -> bool:
            return x.account_id in accounts and getattr(x, side) in ends

        filter = "roleid:?" if link is ATTACHMENT else "resourceid:?"
        read = await _read_links(client, link, filter, ends, keep)
        found.links[link.name] = sorted(read, key=lambda x: x.id)
    return found


# -- writing ----------------------------------------------------------------------------------


def _escaped(value: Any, names: bool = False) -> Any:
    """`value` as the file must say it: `${` in a string is written `$${`, or loading would
    read it as a variable. Mirrors where the loader expands (every string; tag names)."""
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    if isinstance(value, dict):
        return {
            (_escaped(k) if names else k): _escaped(v, names=k == "tags")
            for k, v in sorted(value.items())
        }
    return value


def _tags(obj: Any) -> dict[str, str]:
    return {k: v for k, v in (obj.tags or {}).items() if k not in _HIDDEN_TAGS}


def _variable(name: str, field_: str, taken: dict[str, str], what: str) -> str:
    """A variable name for a credential: `PG_APP_PASSWORD` for pg-app's password; unique."""
    base = re.sub(r"[^A-Za-z0-9]+", "_", f"{name}_{field_}").strip("_").upper()
    if not base or base[0].isdigit():
        base = f"_{base}"
    var, n = base, 1
    while var in taken:
        n += 1
        var = f"{base}_{n}"
    taken[var] = what
    return var


# Attributes the API assigns when a declaration leaves them out (a local port and interface
# for clients): written, they would copy one organisation's allocation into another.
ASSIGNED = frozenset({"port_override", "bind_interface"})


def _assigned_default(obj: Any, f: str, value: Any) -> bool:
    """Whether `value` is what the API fills in for `f` when it is not given."""
    if f in ASSIGNED:
        return True
    if f == "healthcheck_namespace":
        return bool(value == "default")
    if f == "bind_address":  # a gateway's: every interface, the listen address's port
        port = str(getattr(obj, "listen_address", "")).rpartition(":")[2]
        return bool(value == f"0.0.0.0:{port}")
    return False


def _typed(kind: Kind, obj: Any, taken: dict[str, str]) -> dict[str, Any]:
    """A resource or node entry: name, type, the attributes not at their default, tags."""
    cls = type(obj)
    blank = cls()
    required = set(required_fields(cls))
    entry: dict[str, Any] = {"name": _escaped(obj.name), "type": type_name(obj)}
    for f in sorted(settable_fields(cls)):
        value = getattr(obj, f)
        if f in cls._secrets:
            # Never its value: a placeholder where the object has one or needs one.
            if value or f in required:
                var = _variable(obj.name, f, taken, f"{kind.name} {obj.name!r}: {f}")
                entry[f] = f"${{{var}}}"
        elif f in required or (value != getattr(blank, f) and not _assigned_default(obj, f, value)):
            entry[f] = _escaped(value)
    return entry


def _moment(value: datetime.datetime) -> str:
    return value.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def _entries(found: _Found, kinds: tuple[Kind, ...], taken: dict[str, str]) -> dict[str, Any]:
    out: dict[str, list[dict[str, Any]]] = {}
    for user in found.objects.get(USER.name, []):
        entry: dict[str, Any] = {
            "email": _escaped(user.email),
            "first_name": _escaped(user.first_name),
            "last_name": _escaped(user.last_name),
        }
        if user.suspended:
            entry["suspended"] = True
        out.setdefault(USER.section, []).append(entry)
    for service in found.objects.get(SERVICE.name, []):
        entry = {"name": _escaped(service.name)}
        if service.suspended:
            entry["suspended"] = True
        out.setdefault(SERVICE.section, []).append(entry)
    for role in found.objects.get(ROLE.name, []):
        entry = {"name": _escaped(role.name)}
        if role.access_rules:
            entry["access_rules"] = _escaped(role.access_rules)
        out.setdefault(ROLE.section, []).append(entry)
    for kind in (RESOURCE, NODE):
        for obj in found.objects.get(kind.name, []):
            out.setdefault(kind.section, []).append(_typed(kind, obj, taken))
    for kind in OBJECTS:  # tags last in every entry, so that entries read alike
        for obj, entry in zip(
            found.objects.get(kind.name, []), out.get(kind.section, []), strict=True
        ):
            tags = _tags(obj)
            if tags:
                entry["tags"] = _escaped(tags, names=True)
    keys = _keys(found)
    links: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for link in found.links.get(ATTACHMENT.name, []):
        pair = (keys[link.account_id], keys[link.role_id])
        links.setdefault(ATTACHMENT.section, {})[_fold(pair)] = {
            "account": pair[0],
            "role": pair[1],
        }
    for link in found.links.get(GRANT.name, []):
        if link.access_request_id:
            found.skipped.append(f"grant {link.id}: made by an access request")
            continue
        pair = (keys[link.account_id], keys[link.resource_id])
        entry = {"account": pair[0], "resource": pair[1]}
        if link.start_from is not None:
            entry["start_from"] = _moment(link.start_from)
        if link.valid_until is not None:
            entry["valid_until"] = _moment(link.valid_until)
        grants = links.setdefault(GRANT.section, {})
        if _fold(pair) in grants:  # one grant per pair in a declaration
            found.skipped.append(f"grant {link.id}: another grant of {pair[0]!r} to {pair[1]!r}")
            continue
        grants[_fold(pair)] = entry
    for section, by_pair in links.items():
        out[section] = [by_pair[p] for p in sorted(by_pair)]
    return {s: out[s] for s in (k.section for k in kinds) if s in out}


def _fold(pair: tuple[str, str]) -> tuple[str, str]:
    return (pair[0].casefold(), pair[1].casefold())


def _keys(found: _Found) -> dict[str, str]:
    """Object id -> natural key, for the ends of links."""
    return {
        obj.id: _escaped(str(getattr(obj, kind.key)))
        for kind in OBJECTS
        for obj in found.objects.get(kind.name, [])
    }


class _Dumper(yaml.SafeDumper):
    """Block style, lists indented under their key, as the examples are written."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _render(found: _Found, kinds: tuple[Kind, ...], tags: Mapping[str, str], owner: str) -> str:
    taken: dict[str, str] = {}
    body = _entries(found, kinds, taken)
    what = ", ".join(k.section for k in kinds)
    head = [
        "Written by `sdm-async provision export`: read with `sdm-async provision plan|apply`.",
        f"Sections: {what}."
        + (f" Tags: {', '.join(f'{k}={v}' for k, v in sorted(tags.items()))}." if tags else ""),
    ]
    if taken:
        head.append("The API never returns credentials: export these variables before plan")
        head.append("or apply (a resource's credentials are needed to create it again):")
        width = max(map(len, taken))
        head += [f"  {var.ljust(width)}  {what}" for var, what in sorted(taken.items())]
    if RESOURCE in kinds:
        head.append("Optional credentials (keys, certificates) are not written: nothing says")
        head.append("whether a resource has one. Add those your resources use.")
    if found.skipped:
        head.append("Not exported:")
        head += [f"  {reason}" for reason in found.skipped]
    data: dict[str, Any] = {"version": 1, "owner": owner, **body}
    text = yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1_000_000,  # a long value stays on one line: the file diffs line by line
    )
    return "".join(f"# {_printable(line)}\n" for line in head) + text


def _printable(text: str) -> str:
    """`text` on one comment line: a name holding a line break must not end the comment."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
