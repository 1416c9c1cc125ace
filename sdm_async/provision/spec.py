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
_ENV = re.compile(r"\$\$\{|\$\{([^}]*)\}")  # `$${` is a literal `${`
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
    secrets: frozenset[str] = frozenset()  # attributes never shown: credentials, ${VAR} values
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


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: YAML would silently keep the last one, and a
    password declared twice should not be a guess."""


def _mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


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
        raise SpecError(source, [Problem("", f"{where}not valid YAML: {problem}")]) from None
    return parse(data, source=source, env=env)


def parse(
    data: Any, *, source: str = "<declaration>", env: Mapping[str, str] | None = None
) -> Spec:
    """Validate a declaration already read into Python values (as `yaml.safe_load` gives)."""
    checker = _Checker(os.environ if env is None else env)
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


def _suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Checker:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[Problem] = []
        self.keys: dict[str, dict[str, str]] = {}  # kind name -> casefolded key -> path

    def fail(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

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

    def tags(self, path: str, entry: dict[str, Any]) -> dict[str, str]:
        value = entry.get("tags")
        if value is None:
            return {}
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

    def expand(self, path: str, value: str) -> tuple[str, bool]:
        """`value` with `${VAR}` replaced from the environment; whether it used any."""
        used = False

        def sub(m: re.Match[str]) -> str:
            nonlocal used
            if m.group(0) == "$${":
                return "${"
            name = m.group(1)
            if not _ENV_NAME.fullmatch(name):
                self.fail(  # the text is not shown: it may be a secret written wrongly
                    path,
                    "holds a `${...}` that is not a variable reference (write ${NAME} with "
                    "letters, digits and _, or $${ for a literal ${)",
                )
                return ""
            if name not in self.env:
                self.fail(
                    path,
                    f"environment variable {name} is not set (export it before "
                    "running, or write the value in the file)",
                )
                return ""
            used = True
            return self.env[name]

        return _ENV.sub(sub, value), used

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
        fields = ["email", "first_name", "last_name", "tags"]
        model = _models.User(email=email, first_name=first, last_name=last, tags=tags)
        if "suspended" in entry:
            fields.append("suspended")
            model.suspended = suspended
            model.permission_level = "suspended" if suspended else ""
        return Declared(USER, email, path, model, tuple(fields))

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
        fields = ("name", "tags", "suspended") if "suspended" in entry else ("name", "tags")
        model = _models.Service(name=name, suspended=suspended, tags=tags)
        return Declared(SERVICE, name, path, model, fields)

    def role(self, path: str, entry: dict[str, Any]) -> Declared | None:
        self.unknown(path, entry, _ROLE_KEYS)
        name = self.text(path, entry, "name")
        rules = entry.get("access_rules", [])
        if rules is None:
            rules = []
        if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
            self.fail(
                f"{path}.access_rules",
                "must be a list of mappings, e.g. `- {tags: {env: prod}}` or `- {type: postgres}`",
            )
            rules = []
        try:
            json.dumps(rules)
        except (TypeError, ValueError):
            self.fail(
                f"{path}.access_rules",
                "may hold only strings, numbers, booleans, lists "
                "and mappings (quote dates and times)",
            )
            rules = []
        tags = self.tags(path, entry)
        if not name:
            return None
        self.unique(ROLE, path, name)
        model = _models.Role(name=name, access_rules=rules, tags=tags)
        return Declared(ROLE, name, path, model, ("name", "access_rules", "tags"))

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
                value, from_env = self.expand(where, value)
                if from_env:
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
        model = cls(name=name, tags=tags, **values)
        fields = ("name", "tags", *sorted(values))
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
        value = entry.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                value = None
        if not isinstance(value, datetime.datetime):
            self.fail(f"{path}.{key}", "must be a date and time, e.g. 2030-01-31T18:00:00Z")
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.astimezone(datetime.timezone.utc)
