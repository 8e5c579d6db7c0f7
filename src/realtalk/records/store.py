"""The records' SQLite store. Writes go through a bounded queue to one dedicated thread, so
the event loop (and the audio path) never waits on the disk; a failed write or a full queue
is logged and dropped, and the conversation goes on. Reads (the records API) open their own
short connection in a worker thread.
"""

from __future__ import annotations

import glob
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("realtalk.records")

QUEUE_MAX = 10_000
"""Writes waiting for the writer thread; beyond this they are dropped (and counted)."""
PAGE_MAX = 100
"""Most conversations one ``GET /api/conversations`` returns."""

Clock = Callable[[], float]

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    transport TEXT NOT NULL,
    generation TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    end_reason TEXT,
    stages TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS conversations_started ON conversations (started_at);
CREATE TABLE IF NOT EXISTS entries (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
"""


@dataclass(frozen=True)
class _Write:
    sql: str
    params: tuple[Any, ...]


_STOP = object()
_OPEN_LOCK = threading.Lock()
"""Held while a connection opens and sets up the file (see ``RecordStore._connect``)."""


class RecordStore:
    """One SQLite file (``<data_dir>/records.sqlite3``) and its writer thread."""

    def __init__(self, path: Path, *, clock: Clock = time.time) -> None:
        self.path = path
        self.clock = clock
        self.dropped = 0
        """Writes lost to a full queue or a write error."""
        self._queue: queue.Queue[object] = queue.Queue(maxsize=QUEUE_MAX)
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._pending = 0

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread (a store that cannot open its file logs it and drops
        every write; the server runs on)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="realtalk-records", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is None:
            return
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.warning("records: writer queue full at shutdown; pending writes dropped")
        self._thread.join(timeout)
        self._thread = None

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued write is done (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    # ---- writing (any thread, never blocks) ---------------------------------------------
    def write(self, sql: str, *params: Any) -> None:
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait(_Write(sql, params))
        except queue.Full:
            self._done()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("records: writer queue full; %d writes dropped", self.dropped)

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            if not self._pending:
                self._idle.notify_all()

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            db = self._connect()
        except (sqlite3.Error, OSError) as exc:
            log.error(
                "records: cannot open %s (%s); conversations are not recorded", self.path, exc
            )
            db = None
        while True:
            job = self._queue.get()
            if job is _STOP:
                break
            assert isinstance(job, _Write)
            try:
                if db is not None:
                    with db:
                        db.execute(job.sql, job.params)
                else:
                    self.dropped += 1
            except sqlite3.Error as exc:  # a full disk, a locked or broken file
                self.dropped += 1
                log.error("records: write failed (%s); the conversation goes on", exc)
            finally:
                self._done()
        if db is not None:
            db.close()

    def _connect(self) -> sqlite3.Connection:
        """A connection with the schema in place. Opening is serialised: switching a new file
        to WAL and creating its tables from two connections at once (the writer and the
        retention purge at start) fails with "database is locked" without waiting."""
        with _OPEN_LOCK:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA foreign_keys=ON")
                db.executescript(SCHEMA)
            except BaseException:
                db.close()
                raise
        return db

    # ---- the session's writes -----------------------------------------------------------
    def begin(
        self,
        conversation_id: str,
        session_id: str,
        transport: str,
        generation: str,
        stages: dict[str, str],
    ) -> None:
        self.write(
            "INSERT INTO conversations (id, session_id, transport, generation, started_at, "
            "stages) VALUES (?, ?, ?, ?, ?, ?)",
            conversation_id,
            session_id,
            transport,
            generation,
            self.clock(),
            json.dumps(stages),
        )

    def entry(self, conversation_id: str, seq: int, kind: str, data: dict[str, Any]) -> None:
        self.write(
            "INSERT INTO entries (conversation_id, seq, at, kind, data) VALUES (?, ?, ?, ?, ?)",
            conversation_id,
            seq,
            self.clock(),
            kind,
            json.dumps(data, default=str),
        )

    def end(self, conversation_id: str, reason: str) -> None:
        self.write(
            "UPDATE conversations SET ended_at = ?, end_reason = ? WHERE id = ?",
            self.clock(),
            reason,
            conversation_id,
        )

    # ---- reading and deleting (worker threads: call through asyncio.to_thread) ----------
    def _read(self) -> sqlite3.Connection:
        db = self._connect()
        db.row_factory = sqlite3.Row
        return db

    def page(
        self, *, before: float | None = None, after: float | None = None, limit: int = 20
    ) -> list[dict[str, Any]]:
        """Conversations newest first, started before/after the given times."""
        where, params = [], []
        if before is not None:
            where.append("started_at < ?")
            params.append(before)
        if after is not None:
            where.append("started_at > ?")
            params.append(after)
        sql = "SELECT * FROM conversations"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, id DESC LIMIT ?"
        db = self._read()
        try:
            rows = db.execute(sql, (*params, min(limit, PAGE_MAX))).fetchall()
            return [_conversation(r) for r in rows]
        finally:
            db.close()

    def get(self, conversation_id: str) -> dict[str, Any] | None:
        db = self._read()
        try:
            row = db.execute(
                "SELECT * FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            if row is None:
                return None
            body = _conversation(row)
            entries = db.execute(
                "SELECT seq, at, kind, data FROM entries WHERE conversation_id = ? ORDER BY seq",
                (conversation_id,),
            ).fetchall()
            body["entries"] = [
                {"seq": e["seq"], "at": e["at"], "kind": e["kind"], **json.loads(e["data"])}
                for e in entries
            ]
            return body
        finally:
            db.close()

    def delete(self, conversation_id: str) -> bool:
        """Delete a conversation's rows and files; False when there was none."""
        db = self._read()
        try:
            with db:
                db.execute("DELETE FROM entries WHERE conversation_id = ?", (conversation_id,))
                gone = db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
            found = gone.rowcount > 0
        finally:
            db.close()
        for file in self.audio_files(conversation_id):
            file.unlink(missing_ok=True)
            found = True
        return found

    def purge(self, retention_days: int) -> int:
        """Delete the conversations started more than ``retention_days`` ago; how many."""
        cutoff = self.clock() - retention_days * 86_400
        db = self._read()
        try:
            ids = [
                r["id"]
                for r in db.execute("SELECT id FROM conversations WHERE started_at < ?", (cutoff,))
            ]
        finally:
            db.close()
        for conversation_id in ids:
            self.delete(conversation_id)
        return len(ids)

    @property
    def audio_dir(self) -> Path:
        return self.path.parent / "records-audio"

    def audio_files(self, conversation_id: str) -> list[Path]:
        folder = self.audio_dir
        if not folder.is_dir():
            return []
        # Escaped: an id is the client's text, and "*" must not name every conversation.
        return sorted(folder.glob(f"{glob.escape(conversation_id)}.*"))


def _conversation(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "realtime.conversation_record",
        "session_id": row["session_id"],
        "transport": row["transport"],
        "generation": row["generation"],
        "started_at": row["started_at"],
        "ended_at": row["ended_at"],
        "end_reason": row["end_reason"],
        "stages": json.loads(row["stages"]),
    }
