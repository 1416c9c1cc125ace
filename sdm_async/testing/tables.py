"""The objects of one service, in creation order, with every change kept for history and
snapshots.

Listing order is creation order (a sequence number per object), and a cursor is the
sequence number of the last object returned: objects created during a listing come after
every cursor already handed out, and deleted ones simply stop appearing, so a listing never
returns an object twice nor skips one that existed throughout.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Message = Any
Predicate = Callable[[Message], bool]


@dataclass(slots=True)
class Record:
    seq: int  # creation order
    msg: Message  # the stored object
    data: bytes  # its wire form: listings send these bytes as they are


@dataclass(slots=True)
class Change:
    seq: int  # the object's creation order
    at: int  # nanoseconds since the epoch
    op: str  # "create", "update" or "delete"
    id: str
    data: bytes  # the object after the change (for a delete, as it was)
    activity: str
    actor: str = ""  # the account of the token that made it; "" for an admin key


class Table:
    def __init__(self, service: str, item: type[Message]) -> None:
        self.service = service
        self.item = item
        self.records: dict[str, Record] = {}
        self.history: list[Change] = []
        # Creation order with tombstones left by deletes, compacted now and then; bisecting
        # it finds a cursor's place without walking the whole table.
        self._seqs: list[int] = []
        self._ids: list[str] = []

    def __len__(self) -> int:
        return len(self.records)

    def get(self, id: str) -> Record | None:
        return self.records.get(id)

    def apply(self, change: Change, msg: Message | None = None) -> Record | None:
        """Make `change` the current state (also used to replay a journal)."""
        self.history.append(change)
        if change.op == "delete":
            self.records.pop(change.id, None)
            if len(self._seqs) > 1024 and len(self._seqs) > 2 * len(self.records):
                self._compact()
            return None
        if msg is None:
            msg = self.item.FromString(change.data)
        record = Record(change.seq, msg, change.data)
        if change.op == "create":
            self._seqs.append(change.seq)
            self._ids.append(change.id)
        self.records[change.id] = record
        return record

    def _compact(self) -> None:
        live = [(s, i) for s, i in zip(self._seqs, self._ids, strict=True) if self._live(s, i)]
        self._seqs = [s for s, _ in live]
        self._ids = [i for _, i in live]

    def _live(self, seq: int, id: str) -> bool:
        record = self.records.get(id)
        return record is not None and record.seq == seq

    def page(
        self, after: int, limit: int, keep: Predicate | None, at: int | None = None
    ) -> tuple[list[Record], int | None]:
        """Up to `limit` objects created after sequence `after` that `keep` accepts, and the
        cursor of the next page (None when nothing is left). `at` lists a past state."""
        source = self._as_of(at) if at is not None else self._current()
        found: list[Record] = []
        for record in source(after):
            if keep is not None and not keep(record.msg):
                continue
            if len(found) == limit:
                return found, found[-1].seq
            found.append(record)
        return found, None

    def _current(self) -> Callable[[int], Iterator[Record]]:
        def walk(after: int) -> Iterator[Record]:
            records, seqs, ids = self.records, self._seqs, self._ids
            for index in range(bisect.bisect_right(seqs, after), len(seqs)):
                record = records.get(ids[index])
                if record is not None and record.seq == seqs[index]:
                    yield record

        return walk

    def _as_of(self, at: int) -> Callable[[int], Iterator[Record]]:
        state: dict[str, Change] = {}
        for change in self.history:
            if change.at > at:
                break
            if change.op == "delete":
                state.pop(change.id, None)
            else:
                state[change.id] = change
        ordered = sorted(state.values(), key=lambda c: c.seq)

        def walk(after: int) -> Iterator[Record]:
            start = bisect.bisect_right([c.seq for c in ordered], after)
            for c in ordered[start:]:
                yield Record(c.seq, self.item.FromString(c.data), c.data)

        return walk

    def get_as_of(self, id: str, at: int) -> Record | None:
        found: Change | None = None
        for change in self.history:
            if change.at > at:
                break
            if change.id == id:
                found = None if change.op == "delete" else change
        if found is None:
            return None
        return Record(found.seq, self.item.FromString(found.data), found.data)
