"""A bounded, crash-safe FIFO of outgoing MQTT messages in one SQLite table (WAL mode)."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebot.errors import SinkError
from edgebot.statefiles import prepare_private_file, private_dir

logger = logging.getLogger(__name__)

__all__ = ["DiskQueue", "QueuedMessage"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    topic   TEXT    NOT NULL,
    payload BLOB    NOT NULL,
    qos     INTEGER NOT NULL DEFAULT 1,
    retain  INTEGER NOT NULL DEFAULT 0,
    created REAL    NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One message waiting in the queue; ``id`` grows with every ``put`` and is never reused."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created: float


def _is_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL" or "full" in str(exc)


class DiskQueue:
    """Bounded first-in first-out queue on disk, shared by a producer and a sender thread.

    Messages are kept until acknowledged with ``ack`` (for MQTT: when the broker's PUBACK
    arrives), so a message put before a crash or a power cut of the process is still there
    after a restart. The database runs in WAL mode with ``synchronous=NORMAL``: a process
    crash loses nothing; an OS crash or power cut may lose the last few puts.

    Bounds and drops (drops are counted in ``dropped``, never raised):

    - ``max_messages`` / ``max_bytes`` (sum of payload sizes): when a new message would
      exceed a bound, the **oldest** messages are dropped to make room. For incidents the
      newest state of an attack is what an operator needs, and a later ``update``/``end``
      of the same incident supersedes the dropped ones.
    - a full disk (SQLite ``database or disk is full``, also reached through
      ``max_db_pages``): the **new** message is dropped and the queue keeps working;
      acknowledging messages frees room again.

    The database and its ``-wal``/``-shm`` files are private (mode 0600; the queue holds host
    addresses and incidents), in a directory created 0700 (:mod:`edgebot.statefiles`).

    Parameters
    ----------
    path : str or os.PathLike
        The SQLite file; its directory is created (mode 0700) if missing.
    max_messages : int
        At most this many messages are kept.
    max_bytes : int, optional
        At most this many payload bytes are kept.
    max_db_pages : int, optional
        Hard cap on the database file in pages (SQLite ``PRAGMA max_page_count``, pages of
        4 KiB); reaching it behaves exactly like a full disk. Use it to bound the space the
        queue may take on an SD card, or to test the full-disk path.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_messages: int = 10_000,
        max_bytes: int | None = None,
        max_db_pages: int | None = None,
        own_dir: bool = False,
    ) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, got {max_messages}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be positive or None, got {max_bytes}")
        self.path = Path(path)
        self.max_messages = int(max_messages)
        self.max_bytes = max_bytes
        self.max_db_pages = max_db_pages
        self._lock = threading.Lock()
        self._full_logged = False
        self.dropped = 0
        self.dropped_overflow = 0
        self.dropped_disk_full = 0
        self.errors = 0
        try:
            private_dir(self.path.parent, tighten=own_dir)
            prepare_private_file(self.path)  # SQLite gives its -wal and -shm files the database's mode
            for suffix in ("-wal", "-shm"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    prepare_private_file(side)
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                         timeout=10.0)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA journal_size_limit=1048576")  # keep the WAL file small
            self._conn.execute(_SCHEMA)
            if max_db_pages is not None:
                self._conn.execute(f"PRAGMA max_page_count={int(max_db_pages)}")
            count, size = self._conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM messages").fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise SinkError(f"cannot open the message queue {self.path}: {exc}; "
                            "set mqtt.queue_path to a writable file") from exc
        self._count = int(count)
        self._bytes = int(size)
        self._closed = False

    # -- producer side --------------------------------------------------------------------
    def put(self, payload: bytes | str, topic: str, *, qos: int = 1, retain: bool = False) -> int | None:
        """Append a message; make room by dropping the oldest if a bound is reached.

        Returns
        -------
        int or None
            The new message's id, or None if it was dropped (disk full, or larger than
            ``max_bytes`` on its own).
        """
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        size = len(data)
        with self._lock:
            self._check_open()
            if self.max_bytes is not None and size > self.max_bytes:
                self._drop_new(f"a {size}-byte message is larger than max_bytes={self.max_bytes}")
                return None
            try:
                try:
                    evicted, evicted_bytes, new_id = self._insert(data, topic, qos, retain)
                except sqlite3.OperationalError as exc:
                    if not _is_full(exc):
                        raise
                    # On a full disk the WAL is what grew: fold it into the database (which
                    # reuses the pages of acknowledged messages), truncate it, try once more.
                    self._rollback()
                    self._checkpoint()
                    evicted, evicted_bytes, new_id = self._insert(data, topic, qos, retain)
            except sqlite3.Error as exc:
                self._rollback()
                if _is_full(exc):
                    self.dropped_disk_full += 1
                    self._drop_new(f"the queue database is full ({exc})")
                else:
                    self.errors += 1
                    self._drop_new(f"SQLite error {exc}")
                return None
            self._full_logged = False
            self._count += 1 - evicted
            self._bytes += size - evicted_bytes
            if evicted:
                self.dropped += evicted
                self.dropped_overflow += evicted
                logger.debug("queue full: dropped the %d oldest message(s)", evicted)
            return new_id

    def _insert(self, data: bytes, topic: str, qos: int, retain: bool) -> tuple[int, int, int]:
        """One transaction: evict what the bounds require, insert. Returns (evicted, bytes, id)."""
        self._conn.execute("BEGIN IMMEDIATE")
        evicted, evicted_bytes = self._make_room(len(data))
        cur = self._conn.execute(
            "INSERT INTO messages (topic, payload, qos, retain, created) VALUES (?, ?, ?, ?, ?)",
            (topic, data, int(qos), int(bool(retain)), time.time()))
        self._conn.execute("COMMIT")
        row_id = cur.lastrowid
        assert row_id is not None  # set by every successful INSERT
        return evicted, evicted_bytes, int(row_id)

    def _checkpoint(self) -> None:
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            logger.debug("WAL checkpoint of %s failed: %s", self.path, exc)

    def _make_room(self, size: int) -> tuple[int, int]:
        """Delete the oldest rows until one more message of ``size`` bytes fits (in a transaction)."""
        n_excess = max(0, self._count + 1 - self.max_messages)
        evicted = evicted_bytes = 0
        if n_excess:
            evicted, evicted_bytes = self._delete_oldest(n_excess)
        if self.max_bytes is not None:
            while self._bytes - evicted_bytes + size > self.max_bytes and self._count - evicted > 0:
                n, b = self._delete_oldest(1)
                if n == 0:
                    break
                evicted += n
                evicted_bytes += b
        return evicted, evicted_bytes

    def _delete_oldest(self, n: int) -> tuple[int, int]:
        rows = self._conn.execute(
            "SELECT id, LENGTH(payload) FROM messages ORDER BY id LIMIT ?", (n,)).fetchall()
        if rows:
            self._conn.execute("DELETE FROM messages WHERE id <= ?", (rows[-1][0],))
        return len(rows), sum(r[1] for r in rows)

    def _drop_new(self, why: str) -> None:
        self.dropped += 1
        if not self._full_logged:
            self._full_logged = True
            logger.warning("dropping new messages for %s: %s (logged once until a put succeeds)",
                           self.path, why)

    # -- consumer side --------------------------------------------------------------------
    def peek(self, n: int, after_id: int = 0) -> list[QueuedMessage]:
        """The oldest ``n`` messages with an id greater than ``after_id``, oldest first."""
        with self._lock:
            self._check_open()
            rows = self._conn.execute(
                "SELECT id, topic, payload, qos, retain, created FROM messages "
                "WHERE id > ? ORDER BY id LIMIT ?", (int(after_id), int(n))).fetchall()
        return [QueuedMessage(r[0], r[1], bytes(r[2]), r[3], bool(r[4]), r[5]) for r in rows]

    def ack(self, ids: Iterable[int]) -> int:
        """Delete delivered messages; unknown ids (already dropped) are ignored.

        Returns
        -------
        int
            How many messages were deleted.
        """
        id_list = [int(i) for i in ids]
        if not id_list:
            return 0
        with self._lock:
            self._check_open()
            try:
                try:
                    removed, removed_bytes = self._delete(id_list)
                except sqlite3.OperationalError as exc:
                    if not _is_full(exc):
                        raise
                    self._rollback()
                    self._checkpoint()  # even a DELETE needs WAL space: make some, retry once
                    removed, removed_bytes = self._delete(id_list)
            except sqlite3.Error as exc:
                self._rollback()
                self.errors += 1
                logger.warning("could not remove %d delivered message(s) from %s: %s; "
                               "they may be sent again", len(id_list), self.path, exc)
                return 0
            self._count -= removed
            self._bytes -= removed_bytes
            return removed

    def _delete(self, id_list: list[int]) -> tuple[int, int]:
        removed = removed_bytes = 0
        self._conn.execute("BEGIN IMMEDIATE")
        for start in range(0, len(id_list), 500):
            chunk = id_list[start:start + 500]
            marks = ",".join("?" * len(chunk))
            n, b = self._conn.execute(
                f"SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM messages "
                f"WHERE id IN ({marks})", chunk).fetchone()
            self._conn.execute(f"DELETE FROM messages WHERE id IN ({marks})", chunk)
            removed += n
            removed_bytes += b
        self._conn.execute("COMMIT")
        return removed, removed_bytes

    # -- bookkeeping ----------------------------------------------------------------------
    def __len__(self) -> int:
        return self._count

    @property
    def bytes(self) -> int:
        """Sum of the payload sizes of the queued messages."""
        return self._bytes

    def stats(self) -> dict[str, Any]:
        """``queued``, ``queued_bytes``, ``dropped`` (and why), ``errors``, ``path``."""
        return {
            "queued": self._count,
            "queued_bytes": self._bytes,
            "dropped": self.dropped,
            "dropped_overflow": self.dropped_overflow,
            "dropped_disk_full": self.dropped_disk_full,
            "errors": self.errors,
            "path": str(self.path),
        }

    def close(self) -> None:
        """Checkpoint the WAL and close the database. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._checkpoint()
            self._conn.close()

    def _check_open(self) -> None:
        if self._closed:
            raise SinkError(f"the message queue {self.path} is closed")

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def __enter__(self) -> DiskQueue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
