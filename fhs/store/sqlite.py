"""The embedded default store: one SQLite file in WAL mode.

All SQLite calls run on one dedicated worker thread that owns the store's single connection, so the
event loop never blocks on disk and calls are serialised without a lock. Several processes may open
the same file: WAL lets readers proceed during a write, ``BEGIN IMMEDIATE`` takes the write lock up
front (no lock upgrades, so no deadlock between two read-then-write batches), and ``busy_timeout``
makes a writer wait for the other process instead of failing at once.
"""

from __future__ import annotations

import asyncio
import builtins
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from fhs.errors import Conflict
from fhs.store import codec
from fhs.store.base import Append, Delete, Document, Expect, LogEntry, Op, Put

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    version    INTEGER NOT NULL,
    PRIMARY KEY (collection, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log_entries (
    log   TEXT NOT NULL,
    seq   INTEGER NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (log, seq)
) WITHOUT ROWID;
"""


class SQLiteStore:
    """A :class:`fhs.store.base.Store` in one SQLite file (created with its parent directory on first use)."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = int(busy_timeout_s * 1000)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # -- plumbing -------------------------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return fn(self._connection())
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise Conflict(
                    "the store is busy (another writer held the lock longer than the busy timeout); retry",
                    store=str(self.path),
                ) from exc
            raise

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if str(self.path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout_ms / 1000)
            try:
                conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
                self._initialise(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _initialise(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL and create the schema; retried because switching the journal mode while another
        process does the same fails at once with "database is locked" instead of waiting."""
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(
                    "PRAGMA synchronous = FULL"
                )  # every commit reaches the disk unless durable=False
                conn.execute("PRAGMA foreign_keys = OFF")
                conn.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    # -- reads ----------------------------------------------------------------------------------------

    async def get(self, collection: str, key: str) -> Document | None:
        """The document at ``collection/key`` or None."""
        codec.check_name("collection", collection)
        codec.check_name("key", key)

        def read(conn: sqlite3.Connection) -> Document | None:
            row = conn.execute(
                "SELECT value, version FROM documents WHERE collection = ? AND key = ?", (collection, key)
            ).fetchone()
            return None if row is None else Document(key, codec.decode_value(row[0]), row[1])

        return await self._run(read)

    async def list(self, collection: str) -> builtins.list[Document]:
        """Every document of ``collection``, ordered by key (Unicode code point order)."""
        codec.check_name("collection", collection)

        def read(conn: sqlite3.Connection) -> builtins.list[Document]:
            rows = conn.execute(
                "SELECT key, value, version FROM documents WHERE collection = ? ORDER BY key", (collection,)
            ).fetchall()
            return [Document(key, codec.decode_value(value), version) for key, value, version in rows]

        return await self._run(read)

    async def read_log(self, log: str, *, after: int = 0, limit: int = 1000) -> builtins.list[LogEntry]:
        """Entries of ``log`` with ``seq > after``, oldest first, at most ``limit``."""
        codec.check_name("log", log)
        after, limit = codec.check_read_window(after, limit)
        if limit == 0:
            return []

        def read(conn: sqlite3.Connection) -> builtins.list[LogEntry]:
            rows = conn.execute(
                "SELECT seq, entry FROM log_entries WHERE log = ? AND seq > ? ORDER BY seq LIMIT ?",
                (log, after, limit),
            ).fetchall()
            return [LogEntry(seq, codec.decode_value(entry)) for seq, entry in rows]

        return await self._run(read)

    async def log_length(self, log: str) -> int:
        """The highest sequence number of ``log`` (0 when empty)."""
        codec.check_name("log", log)

        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM log_entries WHERE log = ?", (log,)
            ).fetchone()
            return int(row[0])

        return await self._run(read)

    # -- writes ---------------------------------------------------------------------------------------

    async def trim_log(self, log: str, *, keep_last: int) -> int:
        """Delete the oldest entries of ``log`` beyond the newest ``keep_last``; return how many went."""
        codec.check_name("log", log)
        keep_last = codec.check_keep_last(keep_last)

        def trim(conn: sqlite3.Connection) -> int:
            conn.execute("PRAGMA synchronous = NORMAL")  # losing a trim on power loss loses nothing
            try:  # one statement, so one atomic transaction: the MAX and the DELETE see the same log
                cursor = conn.execute(
                    "DELETE FROM log_entries WHERE log = ? AND seq <= "
                    "(SELECT COALESCE(MAX(seq), 0) FROM log_entries WHERE log = ?) - ?",
                    (log, log, keep_last),
                )
                return int(cursor.rowcount)
            finally:
                conn.execute("PRAGMA synchronous = FULL")

        return await self._run(trim)

    async def write(self, ops: Sequence[Op], *, durable: bool = True) -> builtins.list[int]:
        """Apply ``ops`` atomically in one ``BEGIN IMMEDIATE`` transaction; return the Append seqs.

        ``durable=False`` commits this transaction with ``synchronous=NORMAL`` (WAL: no fsync per commit).
        """
        checked = codec.validate_ops(ops)
        if not checked:
            return []
        # Serialise before touching the database so a bad value cannot abort a half-done transaction.
        payloads: builtins.list[str | None] = []
        for op in checked:
            if isinstance(op, Put):
                payloads.append(codec.encode_value(op.value, f"{op.collection}/{op.key}"))
            elif isinstance(op, Append):
                payloads.append(codec.encode_value(op.entry, f"log {op.log}"))
            else:
                payloads.append(None)

        def apply(conn: sqlite3.Connection) -> builtins.list[int]:
            if not durable:
                conn.execute("PRAGMA synchronous = NORMAL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    seqs = _apply(conn, checked, payloads)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                if not durable:
                    conn.execute("PRAGMA synchronous = FULL")
            return seqs

        return await self._run(apply)

    # -- lifecycle ------------------------------------------------------------------------------------

    async def ping(self) -> bool:
        """True when the database file can be opened and queried."""
        try:
            return await self._run(lambda conn: conn.execute("SELECT 1").fetchone() == (1,))
        except Exception:
            return False

    async def close(self) -> None:
        """Close the connection and stop the worker thread; further calls raise RuntimeError."""
        if self._closed:
            return

        def shut(_: object = None) -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, shut)
        self._closed = True
        self._executor.shutdown(wait=False)


def _apply(conn: sqlite3.Connection, ops: Sequence[Op], payloads: Sequence[str | None]) -> builtins.list[int]:
    """Apply validated ops in order inside an open transaction (conditions see earlier ops of the batch)."""
    seqs: builtins.list[int] = []
    for index, (op, payload) in enumerate(zip(ops, payloads, strict=True)):
        if isinstance(op, Append):
            row = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM log_entries WHERE log = ?", (op.log,)
            ).fetchone()
            seq = int(row[0]) + 1
            conn.execute("INSERT INTO log_entries (log, seq, entry) VALUES (?, ?, ?)", (op.log, seq, payload))
            seqs.append(seq)
            continue
        row = conn.execute(
            "SELECT version FROM documents WHERE collection = ? AND key = ?", (op.collection, op.key)
        ).fetchone()
        current = 0 if row is None else int(row[0])
        reason = codec.failed_condition(op, current)
        if reason is not None:
            raise codec.conflict(index, op, current, reason)
        if isinstance(op, Put):
            conn.execute(
                "INSERT OR REPLACE INTO documents (collection, key, value, version) VALUES (?, ?, ?, ?)",
                (op.collection, op.key, payload, current + 1),
            )
        elif isinstance(op, Delete):
            conn.execute("DELETE FROM documents WHERE collection = ? AND key = ?", (op.collection, op.key))
        else:
            assert isinstance(op, Expect)
    return seqs
