"""State that survives a restart: every change and every API key, in SQLite.

The emulator's state is its history: replaying the changes in order rebuilds every table, so
the journal is the only thing written. Each change is committed (WAL, synchronous=FULL)
before the call that made it is answered, so nothing acknowledged is lost if the process is
killed.

One emulator writes a file at a time: two would hand out the same sequence numbers and
accept the same unique names. The first holds an exclusive lock on `<db>.lock` (flock, so
the OS drops it when the process dies, even by kill -9); a second refuses to start.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from sdm_async.testing.status import StartError
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
        if self.path.is_dir():
            raise StartError(f"db {self.path} is a directory: give the path of a file")
        self._lock = _lock(self.path)
        try:
            self._db = _open(self.path)
        except sqlite3.Error as e:
            self._lock.close()
            raise StartError(
                f"cannot use db {self.path}: {e} (give an emulator's SQLite file, "
                "or a new file in a writable directory)"
            ) from None

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

    def remove_keys(self, account_id: str) -> None:
        """Forget the keys of a token that was deleted, so that a restart cannot revive them."""
        self._db.execute("DELETE FROM keys WHERE account_id = ?", (account_id,))

    def set_admin_key(self, access_key: str, secret_key: str) -> None:
        """Keep `access_key` as the one admin key: a restart without keys reuses the last
        one given, and an admin key given before no longer works."""
        with self.transaction():
            self._db.execute("DELETE FROM keys WHERE account_id = '' AND permissions IS NULL")
            self.add_key(access_key, secret_key, "", None)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Changes made inside are written together, or not at all if the process dies."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

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
        rows = self._db.execute(
            "SELECT access_key, secret_key, account_id, permissions FROM keys ORDER BY rowid"
        )
        return [
            (a, s, acc, None if p is None else frozenset(filter(None, p.split("\n"))))
            for a, s, acc, p in rows
        ]

    def close(self) -> None:
        self._db.close()
        self._lock.close()  # after SQLite is done with the file


def _open(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
    except sqlite3.Error:
        db.close()
        raise
    return db


def _lock(db: Path) -> IO[bytes]:
    """An exclusive lock on `<db>.lock`, held while the file stays open; StartError if another
    emulator holds it. The lock file names the holder's process id, for the message."""
    path = db.with_name(db.name + ".lock")
    try:
        f = open(path, "a+b")  # held open (and so locked) for the journal's lifetime
    except OSError as e:
        if not path.parent.is_dir():
            raise StartError(f"cannot use db {db}: no directory {path.parent}") from None
        raise StartError(f"cannot use db {db}: cannot create {path}: {e.strerror}") from None
    if sys.platform != "win32":  # no flock on Windows: one writer per file is then up to you
        import fcntl

        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read(20).decode(errors="replace").strip()
            f.close()
            who = f" (process {holder})" if holder.isdigit() else ""
            raise StartError(
                f"db {db} is in use by another emulator{who}: one emulator per file; "
                "stop the other one or give another --db"
            ) from None
    f.truncate(0)
    f.write(str(os.getpid()).encode())
    f.flush()
    return f
