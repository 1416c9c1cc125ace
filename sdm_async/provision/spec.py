"""Loading and validating a declaration, entirely offline.

Every problem in the file is collected (not just the first) and reported with its path in
the file (`roles[2].access_rules`) and how to fix it, before any call reaches the network.
Values are never quoted in problems: they may be secrets.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sdm_async._generated import models as _models
from sdm_async._model import Model
from sdm_async.provision.kinds import (
    ATTACHMENT,
    GRANT,
    LINKS,
    MARK_KEY,
    MARK_VALUE,
    NODE,
    NODE_TYPES,
    OBJECTS,
    RESOURCE,
    RESOURCE_TYPES,
    ROLE,
    SERVICE,
    USER,
    Kind,
    required_fields,
    settable_fields,
)

__all__ = ["Declared", "Problem", "Spec", "SpecError", "load", "parse"]

SECTIONS = tuple(k.section for k in (*OBJECTS, *LINKS))
# `$${` is a literal `${`; a `${` with no `}` is an error, not silently literal
_ENV = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]{0,62}")

Ref = tuple[str, str]  # (kind name, natural key casefolded): one end of a link


@dataclass(frozen=True)
class Declared:
    """One declared object or link, ready to be compared with the organisation."""

    kind: Kind
    key: str  # as written: an email, a name, or "alice@example.com -> dba" for a link
    path: str  # where it is declared: "users[3]"
    model: Model = field(repr=False)  # what to create; links get their ends' ids on apply
    fields: tuple[str, ...] = ()  # attributes the file sets: compared, and written on update
    # Attributes never shown: credentials, and attributes that took a ${VAR} (keys, tags and
    # link ends are shown all the same: they say which object a change is about).
    secrets: frozenset[str] = frozenset()
    ends: tuple[Ref, Ref] | None = None  # links only: (account, role or resource)
    owner: str = MARK_VALUE  # the value of the mark tag on what this declaration manages

    @property
    def ident(self) -> str:
        return self.key.casefold()

    @property
    def ref(self) -> Ref:
        return (self.kind.name, self.ident)


@dataclass(frozen=True)
class Spec:
    """A validated declaration: objects and links in creation order, by kind."""

    declared: tuple[Declared, ...]
    source: str = "<declaration>"
    owner: str = MARK_VALUE  # `owner:` in the file: separate declarations never prune each other

    def of(self, kind: Kind) -> tuple[Declared, ...]:
        return tuple(d for d in self.declared if d.kind is kind)

    def __len__(self) -> int:
        return len(self.declared)


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(ValueError):
    """The declaration is invalid; `problems` lists every problem found."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        noun = "problem" if len(problems) == 1 else "problems"
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} {noun} in the declaration:\n{lines}")


# -- loading ----------------------------------------------------------------------------------

_MERGE_TAG = "tag:yaml.org,2002:merge"
_VALUE_TAG = "tag:yaml.org,2002:value"  # YAML 1.1's `=` key: a plain string here
_MAX_VALUES = 1_000_000  # values in the file once aliases are expanded ("billion laughs")
_MAX_DEPTH = 20  # a declaration is a few levels deep; more is a mistake or a loop


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that a declaration cannot hold: said without "not valid YAML"."""


class _Loader(yaml.SafeLoader):
    """SafeLoader (plain values only) that refuses duplicate and non-string keys: YAML would
    silently keep the last of two keys, and a password declared twice should not be a guess.
    Merge keys (`<<: *anchor`) follow YAML 1.1: keys written in the mapping win over merged
    ones, and earlier merged mappings over later ones."""


def _undefined(loader: _Loader, node: yaml.Node) -> Any:
    raise _Refused(
        None,
        None,
        f"the tag {node.tag!r} is not allowed: a declaration holds plain values only "
        "(strings, numbers, booleans, dates, lists and mappings)",
        node.start_mark,
    )


def _what(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    names = {dict: "a mapping", list: "a list", int: "a number", float: "a number"}
    return names.get(type(value), "a date" if isinstance(value, datetime.date) else "a value")


def _key(loader: _Loader, node: yaml.Node) -> str:
    if node.tag == _VALUE_TAG:
        return str(node.value)
    # Checked before hashing: `? [a, b]` is a list, which no dict can hold.
    key = loader.construct_object(node, deep=True)
    if not isinstance(key, str):
        raise _Refused(
            None,
            None,
            f'a key must be a string, not {_what(key)} (quote it: `"1": ...`, `"yes": ...`)',
            node.start_mark,
        )
    return key


def _merged(loader: _Loader, node: yaml.Node) -> dict[str, Any]:
    """The keys a `<<` brings in: from one mapping, or from a list of them (earlier wins)."""
    sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
    out: dict[str, Any] = {}
    for source in sources:
        if not isinstance(source, yaml.MappingNode):
            raise _Refused(
                None,
                None,
                "`<<` merges mappings: write `<<: *anchor` or `<<: [*one, *two]`",
                source.start_mark,
            )
        for key, value in loader.construct_object(source, deep=True).items():
            out.setdefault(key, value)
    return out


def _mapping(loader: _Loader, node: yaml.MappingNode) -> dict[str, Any]:
    # Duplicates are looked for among the keys written here, before merging: a key that
    # overrides a merged one is what `<<` is for.
    written: dict[str, Any] = {}
    merged: dict[str, Any] | None = None
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE_TAG and merged is None:
            merged = _merged(loader, value_node)
            continue
        key = "<<" if key_node.tag == _MERGE_TAG else _key(loader, key_node)
        if key in written or (key == "<<" and merged is not None):
            raise _Refused(
                None,
                None,
                f"duplicate key {key!r}: a key may appear once in a mapping (to change a "
                "value merged in with `<<`, write the key once next to the `<<`)",
                key_node.start_mark,
            )
        written[key] = loader.construct_object(value_node, deep=True)
    return {**(merged or {}), **written}


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(None, _undefined)  # any other tag: !!python/object, !custom, ...


def load(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Spec:
    """Read and validate a YAML declaration; `${VAR}` references are read from `env`
    (default: the process environment). Raises SpecError, or OSError if unreadable."""
    source = str(path)
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader: builds plain values only
    except yaml.YAMLError as e:
        where = ""
        mark = getattr(e, "problem_mark", None)
        if mark is not None:
            where = f"line {mark.line + 1}, column {mark.column + 1}: "
        problem = getattr(e, "problem", None) or str(e)
        if problem.startswith("found unconstructable recursive"):  # PyYAML's wording
            problem = "an alias (*name) is used inside the value it names: it would never end"
        elif not isinstance(e, _Refused):
            problem = f"not valid YAML: {problem}"
        raise SpecError(source, [Problem("", where + problem)]) from None
    except RecursionError:  # the YAML composer recurses once per level of nesting
        problem = f"nested too deeply (a declaration is at most {_MAX_DEPTH} levels deep)"
        raise SpecError(source, [Problem("", problem)]) from None
    return parse(data, source=source, env=env)


def parse(
    data: Any, *, source: str = "<declaration>", env: Mapping[str, str] | None = None
) -> Spec:
    """Validate a declaration already read into Python values (as `yaml.safe_load` gives);
    `${VAR}` references are read from `env` (default: the process environment)."""
    checker = _Checker(os.environ if env is None else env)
    try:
        data = checker.resolve(data)
    except _TooLarge as e:
        raise SpecError(source, [Problem("", str(e))]) from None
    declared = checker.spec(data)
    owner = checker.owner(data)
    if checker.problems:
        raise SpecError(source, checker.problems)
    return Spec(tuple(dataclasses.replace(d, owner=owner) for d in declared), source, owner)


# -- validation -------------------------------------------------------------------------------

_USER_KEYS = ("email", "first_name", "last_name", "suspended", "tags")
_SERVICE_KEYS = ("name", "suspended", "tags")
_ROLE_KEYS = ("name", "access_rules", "tags")
_ATTACHMENT_KEYS = ("account", "role")
_GRANT_KEYS = ("account", "resource", "start_from", "valid_until")


class _TooLarge(Exception):
    pass


def _stated(entry: dict[str, Any], *keys: str) -> tuple[str, ...]:
    """The `keys` the entry writes: only those are compared and written on update."""
    return tuple(k for k in keys if k in entry)


def _suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Checker:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[Problem] = []
        self.keys: dict[str, dict[str, str]] = {}  # kind name -> casefolded key -> path
        self.from_env: set[str] = set()  # paths of values that took a ${VAR}
        self.unset: set[str] = set()  # paths of values whose ${VAR} failed
        self.values = 0

    def fail(self, path: str, message: str) -> None:
        if path in self.unset:
            return  # already reported: its ${VAR}; what else fails there follows from it
        self.problems.append(Problem(path, message))

    # -- ${VAR} -------------------------------------------------------------------------------

    def resolve(self, data: Any, path: str = "", depth: int = 0, names: bool = False) -> Any:
        """A copy of `data` with `${VAR}` expanded in every string, and in tag names (`names`).
        A copy, so that objects shared through YAML aliases are not shared by declarations;
        bounded, so that aliases of aliases ("billion laughs") or a list holding itself
        cannot make it endless."""
        self.values += 1
        if self.values > _MAX_VALUES:
            raise _TooLarge(
                f"the declaration holds more than {_MAX_VALUES:,} values once its aliases "
                "(*name) are expanded: write the file without aliases of aliases, or split it"
            )
        if depth > _MAX_DEPTH:
            self.fail(path, f"is nested more than {_MAX_DEPTH} levels deep (an alias in itself?)")
            return None
        if isinstance(data, str):
            return self.expand(path, data)
        if isinstance(data, list):
            return [self.resolve(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(data)]
        if not isinstance(data, dict):
            return data
        out: dict[Any, Any] = {}
        for key, value in data.items():
            where = f"{path}.{key}" if path else str(key)
            if names and isinstance(key, str):
                key = self.expand(where, key)
                if where in self.unset:
                    continue  # reported; an empty tag name would be reported again
                if key in out:
                    self.fail(where, "names the same tag as another once ${VAR} is expanded")
            out[key] = self.resolve(value, where, depth + 1, names=key == "tags")
        return out

    def expand(self, path: str, value: str) -> str:
        """`value` with `${VAR}` replaced from the environment (`$${` is a literal `${`)."""

        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$${":
                return "${"
            name = m.group(1)
            if name is None or not _ENV_NAME.fullmatch(name):
                # The text is not shown: it may be a secret written wrongly.
                message = (
                    "holds a `${` that is not a variable reference (write ${NAME} with "
                    "letters, digits and _, or $${ for a literal ${)"
                )
            elif name not in self.env:
                message = (
                    f"${{{name}}} is not set (export {name} before running, or write the "
                    "value in the file)"
                )
            else:
                self.from_env.add(path)
                return self.env[name]
            self.problems.append(Problem(path, message))  # every one, even on one path
            self.unset.add(path)
            return ""

        return _ENV.sub(sub, value)

    def spec(self, data: Any) -> tuple[Declared, ...]:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.fail("", "the declaration must be a mapping of sections: " + ", ".join(SECTIONS))
            return ()
        for key in data:
            if key == "version":
                if data[key] != 1:
                    self.fail("version", "must be 1 (the only format so far), or left out")
            elif key == "owner":
                continue  # checked by `owner`
            elif key not in SECTIONS:
                hint = _suggest(str(key), SECTIONS)
                self.fail(str(key), f"unknown section{hint} (sections: {', '.join(SECTIONS)})")
        out: list[Declared] = []
        checks = {
            USER: self.user,
            SERVICE: self.service,
            ROLE: self.role,
            RESOURCE: self.resource,
            NODE: self.node,
            ATTACHMENT: self.attachment,
            GRANT: self.grant,
        }
        for kind, check in checks.items():
            for path, entry in self.entries(data, kind.section):
                declared = check(path, entry)
                if declared is not None:
                    out.append(declared)
        return tuple(out)

    def entries(self, data: dict[str, Any], section: str) -> list[tuple[str, dict[str, Any]]]:
        items = data.get(section)
        if items is None:
            return []
        if not isinstance(items, list):
            self.fail(section, "must be a list (each entry starts with `- `)")
            return []
        found = []
        for i, entry in enumerate(items):
            path = f"{section}[{i}]"
            if isinstance(entry, dict):
                found.append((path, entry))
            else:
                self.fail(path, "must be a mapping of fields (`key: value` lines)")
        return found

    # -- fields -------------------------------------------------------------------------------

    def unknown(self, path: str, entry: dict[str, Any], allowed: tuple[str, ...]) -> None:
        for key in entry:
            if key not in allowed:
                hint = _suggest(str(key), allowed)
                self.fail(f"{path}.{key}", f"unknown field{hint} (fields: {', '.join(allowed)})")

    def text(self, path: str, entry: dict[str, Any], key: str) -> str:
        """A required string field."""
        value = entry.get(key)
        if value is None:
            self.fail(f"{path}.{key}", "is required")
            return ""
        if not isinstance(value, str) or not value.strip():
            self.fail(
                f"{path}.{key}",
                "must be a non-empty string (quote it if YAML reads it "
                "as a number, a date or a boolean)",
            )
            return ""
        return value

    def flag(self, path: str, entry: dict[str, Any], key: str) -> bool:
        value = entry.get(key, False)
        if not isinstance(value, bool):
            self.fail(f"{path}.{key}", "must be true or false")
            return False
        return value

    def owner(self, data: Any) -> str:
        """The declaration's owner: the value of the mark tag on what it manages."""
        if not isinstance(data, dict) or data.get("owner") is None:
            return MARK_VALUE
        owner = data["owner"]
        if not isinstance(owner, str) or not _OWNER.fullmatch(owner):
            self.fail(
                "owner",
                "must be a short name of letters, digits and - _ . / (e.g. `team-data`): it "
                "tags every object this declaration manages, so that separate declarations "
                "never prune each other's objects",
            )
            return MARK_VALUE
        return owner

    def tags(self, path: str, entry: dict[str, Any]) -> dict[str, str] | None:
        """The tags the entry states; None when it leaves `tags` out (they are kept)."""
        if "tags" not in entry:
            return None
        value = entry["tags"]
        if value is None:  # `tags:` and nothing: clearing them should be written out
            self.fail(
                f"{path}.tags",
                "is empty: write `tags: {}` to remove every tag, or leave the line out "
                "to keep the tags the object has",
            )
            return None
        if not isinstance(value, dict):
            self.fail(f"{path}.tags", "must be a mapping of tag names to values (`team: data`)")
            return {}
        tags: dict[str, str] = {}
        for name, tag in value.items():
            if not isinstance(name, str) or not name:
                self.fail(f"{path}.tags", "tag names must be non-empty strings")
            elif name == MARK_KEY:
                self.fail(
                    f"{path}.tags.{name}",
                    "is reserved: sdm-async marks the objects it "
                    "manages with this tag; remove it from the file",
                )
            elif not isinstance(tag, str):
                self.fail(f"{path}.tags.{name}", 'must be a string (quote it: `"1"`, `"true"`)')
            else:
                tags[name] = tag
        return tags

    def unique(self, kind: Kind, path: str, key: str) -> None:
        seen = self.keys.setdefault(kind.name, {})
        ident = key.casefold()
        if ident in seen:
            self.fail(
                f"{path}.{kind.key}",
                f"{kind.name} {key!r} is already declared at "
                f"{seen[ident]} (natural keys are case-insensitive)",
            )
        else:
            seen[ident] = path

    # -- sections -----------------------------------------------------------------------------

    def user(self, path: str, entry: dict[str, Any]) -> Declared | None:
        self.unknown(path, entry, _USER_KEYS)
        email = self.text(path, entry, "email")
        if email and "@" not in email:
            self.fail(f"{path}.email", "must be an email address (name@domain)")
        first = self.text(path, entry, "first_name")
        last = self.text(path, entry, "last_name")
        suspended = self.flag(path, entry, "suspended")
        tags = self.tags(path, entry)
        if not email:
            return None
        self.unique(USER, path, email)
        fields = ["email", "first_name", "last_name"]  # required: always stated
        model = _models.User(email=email, first_name=first, last_name=last, tags=tags or {})
        if tags is not None:
            fields.append("tags")
        if "suspended" in entry:
            fields.append("suspended")
            model.suspended = suspended
            model.permission_level = "suspended" if suspended else ""
        secrets = {f for f in ("first_name", "last_name") if f"{path}.{f}" in self.from_env}
        return Declared(USER, email, path, model, tuple(fields), frozenset(secrets))

    def service(self, path: str, entry: dict[str, Any]) -> Declared | None:
        self.unknown(path, entry, _SERVICE_KEYS)
        name = self.text(path, entry, "name")
        suspended = self.flag(path, entry, "suspended")
        tags = self.tags(path, entry)
        if not name:
            return None
        if name.casefold() in self.keys.get(USER.name, {}):
            self.fail(f"{path}.name", "is also a user's email: links could not tell them apart")
        self.unique(SERVICE, path, name)
        fields = ("name", *_stated(entry, "tags", "suspended"))
        model = _models.Service(name=name, suspended=suspended, tags=tags or {})
        return Declared(SERVICE, name, path, model, fields)

    def role(self, path: str, entry: dict[str, Any]) -> Declared | None:
        self.unknown(path, entry, _ROLE_KEYS)
        name = self.text(path, entry, "name")
        rules = self.rules(f"{path}.access_rules", entry.get("access_rules", []))
        tags = self.tags(path, entry)
        if not name:
            return None
        self.unique(ROLE, path, name)
        model = _models.Role(name=name, access_rules=rules, tags=tags or {})
        return Declared(ROLE, name, path, model, ("name", *_stated(entry, "access_rules", "tags")))

    def rules(self, path: str, rules: Any) -> list[Any]:
        if rules is None:  # `access_rules:` and nothing: cutting everyone off is written out
            self.fail(
                path,
                "is empty: write `access_rules: []` to remove every rule, or leave the line "
                "out to keep the rules the role has",
            )
            return []
        if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
            self.fail(
                path,
                "must be a list of mappings, e.g. `- {tags: {env: prod}}` or `- {type: postgres}`",
            )
            return []
        try:
            json.dumps(rules)
        except (TypeError, ValueError):
            self.fail(
                path,
                "may hold only strings, numbers, booleans, lists "
                "and mappings (quote dates and times)",
            )
            return []
        return rules

    def resource(self, path: str, entry: dict[str, Any]) -> Declared | None:
        return self.typed(RESOURCE, RESOURCE_TYPES, path, entry)

    def node(self, path: str, entry: dict[str, Any]) -> Declared | None:
        return self.typed(NODE, NODE_TYPES, path, entry)

    def typed(
        self, kind: Kind, types: dict[str, type[Any]], path: str, entry: dict[str, Any]
    ) -> Declared | None:
        """A resource or node: `type` picks the model class, whose attributes are the fields."""
        name = self.text(path, entry, "name")
        type_ = entry.get("type")
        cls = types.get(type_) if isinstance(type_, str) else None
        if cls is None:
            examples = (
                "gateway or relay"
                if kind is NODE
                else "the API's names, e.g. postgres, mysql, redis, ssh, http_basic_auth"
            )
            if type_ is None:
                self.fail(f"{path}.type", f"is required: the {kind.name}'s type ({examples})")
            else:
                hint = _suggest(str(type_), list(types))
                self.fail(f"{path}.type", f"unknown {kind.name} type{hint} ({examples})")
            return None
        allowed = settable_fields(cls)
        self.unknown(path, entry, ("name", "type", "tags", *sorted(allowed)))
        values: dict[str, Any] = {}
        secrets = set(cls._secrets)
        for key, value in entry.items():
            if key not in allowed:
                continue
            want = allowed[key]
            where = f"{path}.{key}"
            if want is str and isinstance(value, str):
                if where in self.from_env:
                    secrets.add(key)
            elif want is int and (isinstance(value, bool) or not isinstance(value, int)):
                self.fail(where, "must be a whole number")
                continue
            elif want is bool and not isinstance(value, bool):
                self.fail(where, "must be true or false")
                continue
            elif want is str and not isinstance(value, str):
                self.fail(
                    where,
                    "must be a string (quote it if YAML reads it as a number, a date or a boolean)",
                )
                continue
            values[key] = value
        for key in required_fields(cls):
            if key not in entry:
                self.fail(f"{path}.{key}", f"is required for a {type_} {kind.name}")
        tags = self.tags(path, entry)
        if not name:
            return None
        self.unique(kind, path, name)
        model = cls(name=name, tags=tags or {}, **values)
        fields = ("name", *_stated(entry, "tags"), *sorted(values))
        return Declared(kind, name, path, model, fields, frozenset(secrets))

    def account_ref(self, path: str, name: str) -> tuple[str, str] | None:
        ident = name.casefold()
        for kind in (USER, SERVICE):
            if ident in self.keys.get(kind.name, {}):
                return (kind.name, ident)
        self.fail(
            path,
            "names no declared account: give the email of a user in `users` or "
            "the name of a service in `services`",
        )
        return None

    def target_ref(self, path: str, kind: Kind, name: str) -> tuple[str, str] | None:
        ident = name.casefold()
        if ident in self.keys.get(kind.name, {}):
            return (kind.name, ident)
        self.fail(path, f"names no declared {kind.name}: give the name of one in `{kind.section}`")
        return None

    def link(
        self, kind: Kind, target: Kind, path: str, entry: dict[str, Any], allowed: tuple[str, ...]
    ) -> tuple[str, tuple[Ref, Ref]] | None:
        self.unknown(path, entry, allowed)
        account = self.text(path, entry, "account")
        other = self.text(path, entry, target.name)
        a = self.account_ref(f"{path}.account", account) if account else None
        b = self.target_ref(f"{path}.{target.name}", target, other) if other else None
        if a is None or b is None:
            return None
        key = f"{account} -> {other}"
        seen = self.keys.setdefault(kind.name, {})
        pair = f"{a[0]}:{a[1]}|{b[1]}"
        if pair in seen:
            self.fail(path, f"{kind.name} {key!r} is already declared at {seen[pair]}")
            return None
        seen[pair] = path
        return key, (a, b)

    def attachment(self, path: str, entry: dict[str, Any]) -> Declared | None:
        found = self.link(ATTACHMENT, ROLE, path, entry, _ATTACHMENT_KEYS)
        if found is None:
            return None
        key, ends = found
        return Declared(ATTACHMENT, key, path, _models.AccountAttachment(), (), ends=ends)

    def grant(self, path: str, entry: dict[str, Any]) -> Declared | None:
        found = self.link(GRANT, RESOURCE, path, entry, _GRANT_KEYS)
        start = self.moment(path, entry, "start_from")
        until = self.moment(path, entry, "valid_until")
        if start and until and until <= start:
            self.fail(f"{path}.valid_until", "must be after start_from")
            return None
        if found is None:
            return None
        key, ends = found
        fields = tuple(f for f, v in (("start_from", start), ("valid_until", until)) if v)
        model = _models.AccountGrant(start_from=start, valid_until=until)
        return Declared(GRANT, key, path, model, fields, ends=ends)

    def moment(self, path: str, entry: dict[str, Any], key: str) -> datetime.datetime | None:
        """A point in time; without a zone it is taken as UTC (not local time: the same file
        must mean the same thing on every machine)."""
        if key not in entry:
            return None
        value = entry[key]
        if isinstance(value, str):
            try:
                value = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                value = None
        if not isinstance(value, datetime.datetime):
            self.fail(
                f"{path}.{key}", "must be a date and time, e.g. 2030-01-31T18:00:00Z, or left out"
            )
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.astimezone(datetime.timezone.utc)
