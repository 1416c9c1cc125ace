"""State that survives a restart: every change and every API key, in SQLite.

The emulator's state is its history: replaying the changes in order rebuilds every table, so
the journal is the only thing written. Each change is committed (WAL, synchronous=FULL)
before the call that made it is answered, so nothing acknowledged is lost if the process is
killed.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sdm_async.testing.tables import Change

_SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    n INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    op TEXT NOT NULL,
    id TEXT NOT NULL,
    data BLOB NOT NULL,
    activity TEXT NOT NULL,
    actor TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS hidden (
    id TEXT PRIMARY KEY,  -- a secret engine's private key, or a managed secret's value
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    access_key TEXT PRIMARY KEY,
    secret_key TEXT NOT NULL,
    account_id TEXT NOT NULL,
    permissions TEXT  -- NULL for an admin key, else newline-separated
);
"""


class Journal:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"<Journal {self.path}>"

    def append(self, service: str, change: Change) -> None:
        self._db.execute(
            "INSERT INTO changes (service, seq, at, op, id, data, activity, actor) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                service,
                change.seq,
                change.at,
                change.op,
                change.id,
                change.data,
                change.activity,
                change.actor,
            ),
        )

    def add_key(
        self, access_key: str, secret_key: str, account_id: str, permissions: frozenset[str] | None
    ) -> None:
        perms = None if permissions is None else "\n".join(sorted(permissions))
        self._db.execute(
            "INSERT OR REPLACE INTO keys VALUES (?, ?, ?, ?)",
            (access_key, secret_key, account_id, perms),
        )

    def put_hidden(self, id: str, data: bytes | None) -> None:
        """Keep (or, with None, forget) what the objects do not show: engine keys, values."""
        if data is None:
            self._db.execute("DELETE FROM hidden WHERE id = ?", (id,))
        else:
            self._db.execute("INSERT OR REPLACE INTO hidden VALUES (?, ?)", (id, data))

    def hidden(self) -> list[tuple[str, bytes]]:
        return list(self._db.execute("SELECT id, data FROM hidden"))

    def changes(self) -> list[tuple[str, Change]]:
        rows = self._db.execute(
            "SELECT service, seq, at, op, id, data, activity, actor FROM changes ORDER BY n"
        )
        return [(row[0], Change(*row[1:])) for row in rows]

    def keys(self) -> list[tuple[str, str, str, frozenset[str] | None]]:
        rows = self._db.execute("SELECT access_key, secret_key, account_id, permissions FROM keys")
        return [
            (a, s, acc, None if p is None else frozenset(filter(None, p.split("\n"))))
            for a, s, acc, p in rows
        ]

    def close(self) -> None:
        self._db.close()
