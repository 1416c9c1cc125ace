"""Answers as records (plain dicts) and the four output formats.

json, yaml and csv write each listed item as it arrives and flush it, so a listing streams
and `| head` ends it early; a table is aligned, so it is printed once the listing is over.
"""

from __future__ import annotations

import base64
import datetime
import json
import sys
from typing import Any, TextIO

from sdm_async._model import Model
from sdm_async.commands.values import type_of

__all__ = ["FORMATS", "Writer", "plain", "record", "select", "writer"]

FORMATS = ("table", "json", "yaml", "csv")
# Response fields that describe the call, not the answer.
_CALL_FIELDS = ("meta", "rate_limit")


def plain(value: Any) -> Any:
    """A model's value as JSON-like data; a polymorphic object leads with its `type`, so the
    output of `get` can be given back to `create`/`update -f`."""
    if isinstance(value, Model):
        out: dict[str, Any] = {}
        kind = type_of(value)
        if kind is not None:
            out["type"] = kind
        for f in value.__slots__:
            out[f] = plain(getattr(value, f))
        return out
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
        return int(seconds) if seconds.is_integer() else seconds
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def record(response: Model) -> dict[str, Any]:
    """A single answer (get, create, ...) as one record: the object it carries, with the
    answer's other non-empty fields beside it (a created token's `access_key` and
    `secret_key`); the whole answer when it carries no single object."""
    fields = {f: getattr(response, f) for f in response.__slots__ if f not in _CALL_FIELDS}
    objects = [f for f, v in fields.items() if isinstance(v, Model)]
    if len(objects) == 1:
        out = plain(fields[objects[0]])
        extra = {f: v for f, v in fields.items() if f != objects[0] and v not in ("", None)}
        if isinstance(out, dict) and not set(extra) & set(out):
            out.update(plain(extra))
            return out
    result: dict[str, Any] = plain(fields)
    return result


def select(rec: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """The chosen fields, in the order given; `a.b` reaches into a nested object."""
    if not fields:
        return rec
    out = {}
    for name in fields:
        value: Any = rec
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        out[name] = value
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


class Writer:
    """One format; `item` per listed item, `one` for a single answer, `close` at the end."""

    def __init__(self, out: TextIO, fields: list[str] | None) -> None:
        self.out = out
        self.fields = fields
        self.count = 0

    def item(self, rec: dict[str, Any]) -> None:
        raise NotImplementedError

    def one(self, rec: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self, listing: bool) -> None:
        """Called only when no error cut the output short."""

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


class _Json(Writer):
    def item(self, rec: dict[str, Any]) -> None:
        body = json.dumps(select(rec, self.fields), indent=2, ensure_ascii=False)
        lead = "[\n" if not self.count else ",\n"
        self.count += 1
        self._write(lead + "\n".join("  " + line for line in body.splitlines()))

    def one(self, rec: dict[str, Any]) -> None:
        self._write(json.dumps(select(rec, self.fields), indent=2, ensure_ascii=False) + "\n")

    def close(self, listing: bool) -> None:
        if listing:
            self._write("\n]\n" if self.count else "[]\n")


class _Yaml(Writer):
    def _dump(self, data: Any) -> str:
        import yaml

        text: str = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        return text

    def item(self, rec: dict[str, Any]) -> None:
        self.count += 1
        self._write(self._dump([select(rec, self.fields)]))

    def one(self, rec: dict[str, Any]) -> None:
        self._write(self._dump(select(rec, self.fields)))

    def close(self, listing: bool) -> None:
        if listing and not self.count:
            self._write("[]\n")


class _Csv(Writer):
    columns: list[str]

    def _row(self, values: list[str]) -> None:
        import csv
        import io

        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        self._write(buf.getvalue())

    def item(self, rec: dict[str, Any]) -> None:
        if not self.count:
            # The columns are --fields, or the first item's (a polymorphic listing's later
            # items show those of its fields; --fields chooses others).
            self.columns = self.fields or list(rec)
            self._row(self.columns)
        self.count += 1
        chosen = select(rec, self.columns)
        self._row([_cell(chosen[c]) for c in self.columns])

    def one(self, rec: dict[str, Any]) -> None:
        self.item(rec)


class _Table(Writer):
    def __init__(self, out: TextIO, fields: list[str] | None) -> None:
        super().__init__(out, fields)
        self.rows: list[dict[str, Any]] = []

    def item(self, rec: dict[str, Any]) -> None:
        self.rows.append(select(rec, self.fields))

    def one(self, rec: dict[str, Any]) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table("field", "value", show_header=False)
        for name, value in select(rec, self.fields).items():
            table.add_row(name, _cell(value))
        if table.row_count:
            Console(file=self.out).print(table)

    def close(self, listing: bool) -> None:
        if not listing:
            return
        from rich.console import Console
        from rich.table import Table

        if self.fields:
            columns = list(self.fields)
        else:
            # Every field seen, in order, less those empty in every row: a table of users
            # should not spend its width on twenty blank columns.
            seen: dict[str, None] = {}
            for row in self.rows:
                seen.update(dict.fromkeys(row))
            columns = [
                c for c in seen if any(row.get(c) not in ("", None, {}, []) for row in self.rows)
            ]
        table = Table(*columns)
        for row in self.rows:
            table.add_row(*(_cell(row.get(c)) for c in columns))
        console = Console(file=self.out)
        console.print(table if self.rows else "(none)", markup=False, highlight=False)


def writer(fmt: str | None, fields: list[str] | None, out: TextIO | None = None) -> Writer:
    """The writer for `-o fmt`; without one, a table on a terminal and JSON otherwise."""
    stream = sys.stdout if out is None else out
    if fmt is None:
        fmt = "table" if stream.isatty() else "json"
    kinds: dict[str, type[Writer]] = {"table": _Table, "json": _Json, "yaml": _Yaml, "csv": _Csv}
    return kinds[fmt](stream, fields)
