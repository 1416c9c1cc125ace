"""Plans and results as rich tables. Cells are `Text`, never markup: names come from the
organisation and `[bold]` in a name must print as itself. Secrets never reach a cell:
`Change.detail()` masks them."""

from __future__ import annotations

from itertools import groupby

from rich.table import Table
from rich.text import Text

from sdm_async.provision.apply import DONE, Result
from sdm_async.provision.diff import ACTIONS, Change, Plan
from sdm_async.provision.kinds import LINKS, OBJECTS

__all__ = ["plan_table", "result_table"]

STYLES = {
    "create": ("+", "green"),
    "adopt": ("&", "cyan"),
    "update": ("~", "yellow"),
    "replace": ("-/+", "magenta"),
    "delete": ("-", "red"),
}


def _rows(table: Table, changes: list[Change], limit: int, note: str = "") -> None:
    for (kind, action), group in groupby(changes, key=lambda c: (c.kind.name, c.action)):
        items = list(group)
        sign, style = STYLES[action]
        for c in items[:limit]:
            label = f"{action} {note}".strip()
            detail = c.detail()
            table.add_row(
                Text(sign, style=style),
                Text(label, style="dim" if note else style),
                Text(kind),
                Text(c.key),
                Text(detail, style="dim" if note else ""),
            )
        if len(items) > limit:
            more = f"... and {len(items) - limit} more {kind} {action}s"
            table.add_row("", "", Text(kind), Text(more, style="dim"), "")


def _grouped(changes: tuple[Change, ...]) -> list[Change]:
    """By kind and action, in the order apply goes: creations by kind, then deletions in
    reverse (a stable sort keeps the file's order within a group)."""
    kinds = [k.name for k in (*OBJECTS, *LINKS)]

    def order(c: Change) -> tuple[bool, int, int]:
        index = kinds.index(c.kind.name)
        deleting = c.action == "delete"
        return deleting, -index if deleting else index, ACTIONS.index(c.action)

    return sorted(changes, key=order)


def plan_table(plan: Plan, *, limit: int = 50) -> Table:
    """The plan's changes, in the order apply makes them; at most `limit` rows per kind and
    action. Managed objects that only prune would delete follow, dimmed."""
    table = Table(title="Plan", title_justify="left", expand=False)
    table.add_column("", no_wrap=True)
    table.add_column("action", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("name")
    table.add_column("details")
    _rows(table, _grouped(plan.changes), limit)
    _rows(table, _grouped(plan.orphans), limit, note="(with --prune)")
    return table


def result_table(result: Result) -> Table:
    """Changes made per kind of object, and failures."""
    table = Table(title="Applied", title_justify="left")
    table.add_column("kind")
    actions = [a for a in ACTIONS if result.count(a)]
    for action in actions:
        table.add_column(DONE[action], justify="right")
    table.add_column("failed", justify="right")
    failed: dict[str, int] = {}
    for f in result.failures:
        failed[f.kind] = failed.get(f.kind, 0) + 1
    for kind in (*OBJECTS, *LINKS):
        counts = [result.count(a, kind.name) for a in actions]
        if any(counts) or failed.get(kind.name):
            cells = [Text(str(n)) for n in counts]
            bad = failed.get(kind.name, 0)
            table.add_row(Text(kind.section), *cells, Text(str(bad), style="red" if bad else ""))
    return table
