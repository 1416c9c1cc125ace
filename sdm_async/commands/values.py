"""From the command line to models: `-f FILE` (YAML or JSON) and `--set NAME=VALUE`.

Values are checked against the model's attribute annotations (the generated ones), so that a
mistake is reported by attribute path before any call. Messages never quote a value: it may
be a password or a key.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import difflib
import json
from typing import Any

from sdm_async._generated import catalog
from sdm_async._generated import models as _models
from sdm_async._model import Model

__all__ = [
    "UsageError",
    "attributes",
    "build",
    "model_choices",
    "parse_set",
    "read_file",
    "type_of",
]


class UsageError(Exception):
    """A bad command line or input file: exit status 2, one line, before any call if we can."""


def attributes(cls: type) -> dict[str, str]:
    """attribute -> its annotation as written in the generated model (a string)."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        out.update(getattr(klass, "__annotations__", {}))
    return {f: str(out.get(f, "typing.Any")) for f in getattr(cls, "__slots__", ())}


def model_choices(name: str) -> dict[str, type[Model]] | None:
    """For a polymorphic API type (`Resource`): `type:` value -> class (the oneof field
    names, as provisioning and `type:` filters spell them); None for a plain model."""
    union = catalog.UNIONS.get(name)
    if union is None:
        return None
    return {field: getattr(_models, cls) for field, cls in union[1]}


_TYPE_NAMES: dict[type, str] = {}


def type_of(obj: object) -> str | None:
    """`postgres` for a Postgres, `user` for a User: its `type:`; None if not polymorphic."""
    if not _TYPE_NAMES:
        for name in catalog.UNIONS:
            for field, cls in (model_choices(name) or {}).items():
                _TYPE_NAMES[cls] = field
    return _TYPE_NAMES.get(type(obj))


def _model_class(name: str) -> type[Model] | None:
    cls = getattr(_models, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, Model) else None


def read_file(path: str) -> dict[str, Any]:
    """The mapping in a YAML or JSON file (`-` for stdin)."""
    import sys

    import yaml

    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except OSError as e:
        raise UsageError(f"-f {path}: cannot read it ({e.strerror})") from None
    except UnicodeDecodeError:
        raise UsageError(f"-f {path}: not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"-f {path}: not valid YAML or JSON{where}") from None
    if not isinstance(data, dict):
        raise UsageError(
            f"-f {path}: must hold a mapping of attributes (e.g. `name: web`), not {_what(data)}"
        )
    return data


def parse_set(items: list[str]) -> list[tuple[str, str]]:
    """`--set NAME=VALUE` (also `tags.KEY=VALUE`) -> (name, text) pairs, in order."""
    out = []
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--set {name or item!r}: write NAME=VALUE, e.g. --set name=web")
        out.append((name.strip(), text))
    return out


def build(
    where: str,
    annotation: str,
    data: dict[str, Any],
    sets: list[tuple[str, str]],
    base: Model | None = None,
) -> Model:
    """The model `annotation` names (`Account`, `Role`) from file data and --set pairs, over
    `base` (the current object, for an update) when given."""
    wanted = _wanted_type(data, sets)
    choices = model_choices(annotation)
    if base is not None:
        cls: type[Model] = type(base)
        if wanted is not None and choices is not None and choices.get(wanted) is not cls:
            raise UsageError(
                f"{where}: type: {wanted} does not match the object's type "
                f"({type_of(base)}): an update cannot change an object's type"
            )
    elif choices is not None:
        if wanted is None:
            raise UsageError(
                f"{where}: give the {annotation}'s type (`type: {next(iter(choices))}` in the "
                f"file or --set type=...); one of: {', '.join(choices)}"
            )
        found = choices.get(wanted)
        if found is None:
            raise UsageError(
                f"{where}: unknown {annotation} type {wanted!r}{_hint(wanted, list(choices))}; "
                f"one of: {', '.join(choices)}"
            )
        cls = found
    else:
        plain = _model_class(annotation)
        if plain is None:  # pragma: no cover - the generated signatures name models
            raise UsageError(f"{where}: {annotation} cannot be given on the command line")
        if wanted is not None:
            raise UsageError(f"{where}: type: is only for polymorphic objects, not {annotation}")
        cls = plain
    hints = attributes(cls)
    values: dict[str, Any] = base.to_dict() if base is not None else {}
    for name, raw in data.items():
        if name == "type":
            continue
        _known(where, cls, hints, name)
        values[name] = _convert(hints[name], raw, f"{where}: {name}")
    for name, text in sets:
        if name == "type":
            continue
        field, dot, key = name.partition(".")
        _known(where, cls, hints, field)
        path = f"{where}: --set {name}"
        if dot:
            ann = _strip_none(hints[field])
            if not ann.startswith("dict[str, ") or not key:
                raise UsageError(f"{path}: only a mapping attribute (tags) takes NAME.KEY=VALUE")
            current = values.get(field)
            mapping = dict(current) if isinstance(current, dict) else {}
            mapping[key] = _from_text(ann[len("dict[str, ") : -1], text, path)
            values[field] = mapping
        else:
            values[field] = _from_text(hints[field], text, path)
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:  # pragma: no cover - values are converted above
        raise UsageError(f"{where}: {e}") from None


def _wanted_type(data: dict[str, Any], sets: list[tuple[str, str]]) -> str | None:
    wanted = data.get("type")
    if wanted is not None and not isinstance(wanted, str):
        raise UsageError(f"type: must be a string, not {_what(wanted)}")
    for name, text in sets:
        if name == "type":
            wanted = text
    return wanted


def _known(where: str, cls: type, hints: dict[str, str], name: object) -> None:
    if not isinstance(name, str) or name not in hints:
        shown = name if isinstance(name, str) else repr(name)
        raise UsageError(
            f"{where}: {cls.__name__} has no attribute {shown!r}{_hint(str(name), list(hints))}; "
            f"its attributes: {', '.join(hints)}"
        )


def _hint(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _what(value: object) -> str:
    names = {
        type(None): "nothing",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }
    return names.get(type(value), type(value).__name__)


def _strip_none(ann: str) -> str:
    return ann[: -len(" | None")] if ann.endswith(" | None") else ann


def _utc(value: datetime.datetime) -> datetime.datetime:
    # A time without a zone is UTC here, as YAML reads it (a model would take it as local).
    return value if value.tzinfo is not None else value.replace(tzinfo=datetime.timezone.utc)


def _convert(annotation: str, value: Any, path: str) -> Any:
    """File data (YAML/JSON types) -> the attribute's Python type."""
    if value is None and annotation.endswith(" | None"):
        return None
    ann = _strip_none(annotation)
    if ann == "typing.Any":
        return value
    if ann in ("str", "int", "bool", "float"):
        ok = {
            "str": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "float": isinstance(value, int | float) and not isinstance(value, bool),
        }[ann]
        if not ok:
            want = {"str": "a string", "int": "a whole number", "bool": "true or false"}
            extra = " (quote it)" if ann == "str" and value is not None else ""
            raise UsageError(
                f"{path} must be {want.get(ann, 'a number')}{extra}, not {_what(value)}"
            )
        return value
    if ann == "bytes":
        if not isinstance(value, str):
            raise UsageError(f"{path} must be base64 text, not {_what(value)}")
        return _from_text("bytes", value, path)
    if ann == "datetime.datetime":
        if isinstance(value, datetime.datetime):
            return _utc(value)
        if isinstance(value, str):
            return _from_text(ann, value, path)
        raise UsageError(f"{path} must be a time (ISO 8601), not {_what(value)}")
    if ann == "datetime.timedelta":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.timedelta(seconds=value)
        raise UsageError(f"{path} must be a number of seconds, not {_what(value)}")
    if ann.startswith("list["):
        if not isinstance(value, list):
            raise UsageError(f"{path} must be a list, not {_what(value)}")
        inner = ann[len("list[") : -1]
        return [_convert(inner, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if ann.startswith("dict[str, "):
        if not isinstance(value, dict):
            raise UsageError(f"{path} must be a mapping, not {_what(value)}")
        inner = ann[len("dict[str, ") : -1]
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise UsageError(f"{path}: keys must be strings, not {_what(k)}")
            out[k] = _convert(inner, v, f"{path}.{k}")
        return out
    if model_choices(ann) is not None or _model_class(ann) is not None:
        if not isinstance(value, dict):
            raise UsageError(f"{path} must be a mapping of {ann} attributes, not {_what(value)}")
        nested = {k: v for k, v in value.items() if k != "type"}
        sets = [("type", value["type"])] if isinstance(value.get("type"), str) else []
        return build(path, ann, nested, sets)
    raise UsageError(f"{path}: {ann} cannot be given on the command line")  # pragma: no cover


def _from_text(annotation: str, text: str, path: str) -> Any:
    """A --set value (text) -> the attribute's Python type."""
    ann = _strip_none(annotation)
    if ann == "str":
        return text
    if ann in ("int", "float"):
        try:
            return int(text) if ann == "int" else float(text)
        except ValueError:
            raise UsageError(f"{path} must be a {'whole ' if ann == 'int' else ''}number") from None
    if ann == "bool":
        lowered = text.strip().lower()
        if lowered in ("true", "yes", "1", "on"):
            return True
        if lowered in ("false", "no", "0", "off"):
            return False
        raise UsageError(f"{path} must be true or false")
    if ann == "bytes":
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise UsageError(f"{path} must be base64") from None
    if ann == "datetime.datetime":
        try:
            return _utc(datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00")))
        except ValueError:
            raise UsageError(
                f"{path} must be a time in ISO 8601, e.g. 2026-01-31T12:00:00Z"
            ) from None
    if ann == "datetime.timedelta":
        try:
            return datetime.timedelta(seconds=float(text))
        except ValueError:
            raise UsageError(f"{path} must be a number of seconds") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise UsageError(f"{path} must be JSON here (its type is {ann})") from None
    return _convert(annotation, data, path)
