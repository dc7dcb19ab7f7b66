"""The durable label store: every human answer, committed before it is used (DESIGN.md section 3).

SQLite in WAL mode: an answer returned by :meth:`LabelStore.put` is committed, so a process killed at any point
(SIGKILL included) loses no answer it had used. With ``fsync`` (``synchronous=FULL``, the default and the store of
people's answers) each answer is also on the disk itself, so a power cut or an OS crash loses none either; without
it (``synchronous=NORMAL``: the trainer's store when the human is a machine, whose answers can be asked again) the
last answers before a power cut or an OS crash may roll back. Keyed by ``Posed.key()``, a hash of
the posed question's kind and text; a repeated question is served from the store and costs no human call.

The store is also the queue between a trainer and real people (``human.kind: web`` / ``terminal``): a trainer
posts a question as pending (:meth:`~LabelStore.post`) with the view a person is shown; a person's client claims
one (:meth:`~LabelStore.claim`: a lease, nobody else is offered it until the lease runs out) and answers it
(:meth:`~LabelStore.answer`), which moves it from the queue into the labels in one transaction (stored once, the
first answer stays); the trainer, polling :meth:`~LabelStore.label`, finds it there. Several processes (trainers,
servers, terminals) may share one store: each opens its own connection, SQLite serialises the writes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from debate_amp.protocol import Agent, Posed, Reply, Trace

_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    prompt TEXT NOT NULL,
    answer TEXT NOT NULL,
    human TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pending (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    prompt TEXT NOT NULL,
    view TEXT NOT NULL,
    created REAL NOT NULL,
    leased_to TEXT,
    lease_until REAL NOT NULL DEFAULT 0
)
"""


class LabelStoreError(ValueError):
    """A label store that cannot be used: one line naming the file and what is wrong with it."""


def check_sqlite_store(path: str | Path, table: str, columns: list[str], what: str, error: type[ValueError]) -> None:
    """Raise ``error`` (one line naming the file) unless ``path`` is absent or a SQLite file that opens, passes
    SQLite's integrity check and whose ``table``, if it has one, has ``columns``: the check of a ``what`` (a label
    store, a judgment store) before it is used. Reads only (opens the file read-only, writes nothing, creates
    nothing)."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_file():
        raise error(f"{path}: not a {what} (not a file)")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            verdict = db.execute("PRAGMA quick_check").fetchone()
            found = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
        finally:
            db.close()
    except sqlite3.Error as e:
        raise error(f"{path}: not a readable {what} ({e})") from None
    if verdict is None or verdict[0] != "ok":
        raise error(f"{path}: the {what} is damaged (SQLite integrity check: {verdict})")
    if found and found != columns:
        raise error(f"{path}: a SQLite file, but its {table} table is not a {what}'s ({found})")


def check_label_store(path: str | Path) -> None:
    """Raise :class:`LabelStoreError` unless ``path`` is absent or a label store that opens and passes SQLite's
    integrity check; reads only."""
    columns = ["key", "kind", "prompt", "answer", "human", "created"]
    check_sqlite_store(path, "labels", columns, "label store", LabelStoreError)


@dataclass(frozen=True)
class Label:
    key: str
    kind: str
    prompt: str
    answer: str
    human: str


@dataclass(frozen=True)
class PendingQuestion:
    """A question waiting for a person. ``view`` is what they are shown (built by the poster: the posed kind, the
    task's rendering, the arguments, the model's draft where allowed); ``leased_to`` / ``lease_until`` say who holds
    it and until when (a time.time())."""

    key: str
    kind: str
    prompt: str
    view: dict[str, Any]
    created: float
    leased_to: str | None
    lease_until: float


class LabelStore:
    def __init__(self, path: str | Path, *, create_parents: bool = True, fsync: bool = True) -> None:
        """Open (or create) the store at ``path``; :class:`LabelStoreError` when it is not a usable store, or when
        its folder is missing and ``create_parents`` is false. ``fsync``: every answer flushed to the disk before
        :meth:`put` returns (SQLite ``synchronous=FULL``), which survives a power cut; False (``synchronous=NORMAL``)
        commits it to the write-ahead log only, which survives the process being killed (SIGKILL included) but not
        necessarily a power cut or an OS crash, at a fraction of the cost: the trainer's choice for a synthetic or
        model human (about 7,000 answers an update in the fresh-student recipe, where the fsyncs took 1.3 s of an
        update's 2.4 s of amplification; docs/humans.md)."""
        self.path = Path(path)
        check_label_store(self.path)
        if not self.path.parent.is_dir():
            if not create_parents:
                raise LabelStoreError(f"{self.path}: no such folder: {self.path.parent}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # one connection, shared by the threads of a server behind a lock; other processes open their own
        self._lock = threading.RLock()
        try:
            # autocommit (each put is its own transaction); wait up to 30 s for another process's write
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as e:
            raise LabelStoreError(f"{self.path}: cannot open the label store ({e})") from None

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT answer FROM labels WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def label(self, key: str) -> Label | None:
        """The stored label for ``key`` (with who gave it), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT key, kind, prompt, answer, human FROM labels WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else Label(*row)

    def labels(self, keys: list[str]) -> dict[str, Label]:
        """The stored labels among ``keys`` (one query per 500 keys)."""
        found: dict[str, Label] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT key, kind, prompt, answer, human FROM labels WHERE key IN ({marks})"
                found.update((row[0], Label(*row)) for row in self._db.execute(query, chunk))
        return found

    def put(self, posed: Posed, answer: str, human: str) -> None:
        """Record ``answer`` to ``posed``; returns once it is committed. The first answer to a question stays."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO labels VALUES (?, ?, ?, ?, ?, ?)",
                (posed.key(), posed.kind, posed.render(), answer, human, time.time()),
            )

    # -- the queue of questions waiting for people ------------------------------------------------------------

    def post(self, posed: Posed, view: dict[str, Any]) -> bool:
        """Queue ``posed`` for a person, shown as ``view`` (JSON-serialisable); committed on return. False (nothing
        queued) when it is already answered or already queued."""
        key = posed.key()
        with self._lock, self._transaction():
            if self._db.execute("SELECT 1 FROM labels WHERE key = ?", (key,)).fetchone():
                return False
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO pending (key, kind, prompt, view, created) VALUES (?, ?, ?, ?, ?)",
                (key, posed.kind, posed.render(), json.dumps(view), time.time()),
            )
            return cursor.rowcount == 1

    def claim(self, person: str, lease_s: float = 300.0, now: float | None = None) -> PendingQuestion | None:
        """The question ``person`` should answer now, leased to them for ``lease_s`` seconds: the one they already
        hold if its lease is still running, else the oldest that nobody holds (or whose lease ran out). None when
        the queue has nothing for them. Two people claiming at once never get the same question."""
        now = time.time() if now is None else now
        with self._lock, self._transaction():
            row = self._db.execute(
                "SELECT key FROM pending WHERE leased_to = ? AND lease_until > ? ORDER BY created, rowid LIMIT 1",
                (person, now),
            ).fetchone()
            if row is None:
                row = self._db.execute(
                    "SELECT key FROM pending WHERE leased_to IS NULL OR lease_until <= ? ORDER BY created, rowid LIMIT 1",
                    (now,),
                ).fetchone()
            if row is None:
                return None
            self._db.execute(
                "UPDATE pending SET leased_to = ?, lease_until = ? WHERE key = ?", (person, now + lease_s, row[0])
            )
        return self.pending_question(row[0])

    def release(self, key: str, person: str) -> None:
        """Give a claimed question back to the queue (``person`` skipped it)."""
        with self._lock:
            self._db.execute(
                "UPDATE pending SET leased_to = NULL, lease_until = 0 WHERE key = ? AND leased_to = ?", (key, person)
            )

    def skip(self, key: str, person: str) -> None:
        """``person`` skips the question they hold: it goes back to the queue, behind every other question, so their
        next claim offers them another."""
        with self._lock:
            self._db.execute(
                "UPDATE pending SET leased_to = NULL, lease_until = 0, created = ? WHERE key = ? AND leased_to = ?",
                (time.time(), key, person),
            )

    def withdraw(self, key: str) -> bool:
        """Take ``key`` off the queue unless someone holds a running lease on it (their answer may still come, and
        is then stored). True when it was withdrawn."""
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM pending WHERE key = ? AND (leased_to IS NULL OR lease_until <= ?)", (key, time.time())
            )
        return cursor.rowcount == 1

    def answer(self, key: str, answer: str, person: str) -> bool:
        """Store ``person``'s ``answer`` to the pending question ``key`` and take it off the queue, in one
        transaction committed before this returns. True when this answer is the one stored; False when the question
        was already answered (the first answer stays). KeyError when ``key`` was never queued nor answered."""
        with self._lock, self._transaction():
            row = self._db.execute("SELECT kind, prompt FROM pending WHERE key = ?", (key,)).fetchone()
            if row is None:
                if self._db.execute("SELECT 1 FROM labels WHERE key = ?", (key,)).fetchone():
                    return False
                raise KeyError(key)
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO labels VALUES (?, ?, ?, ?, ?, ?)",
                (key, row[0], row[1], answer, person, time.time()),
            )
            self._db.execute("DELETE FROM pending WHERE key = ?", (key,))
            return cursor.rowcount == 1

    def pending_question(self, key: str) -> PendingQuestion | None:
        with self._lock:
            row = self._db.execute(
                "SELECT key, kind, prompt, view, created, leased_to, lease_until FROM pending WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else _pending(row)

    def pending(self) -> list[PendingQuestion]:
        """Every queued question, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, kind, prompt, view, created, leased_to, lease_until FROM pending ORDER BY created, rowid"
            ).fetchall()
        return [_pending(row) for row in rows]

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM labels").fetchone()[0])

    def __iter__(self) -> Iterator[Label]:
        with self._lock:
            rows = self._db.execute("SELECT key, kind, prompt, answer, human FROM labels ORDER BY rowid").fetchall()
        for row in rows:
            yield Label(*row)

    def export_jsonl(self, path: str | Path) -> int:
        """Write every label as a JSON line (``kind``, ``prompt``, ``answer``, ``human``); returns the count."""
        n = 0
        with open(path, "w") as f:
            for label in self:
                f.write(
                    json.dumps(
                        {"kind": label.kind, "prompt": label.prompt, "answer": label.answer, "human": label.human}
                    )
                    + "\n"
                )
                n += 1
        return n

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _pending(row: tuple[Any, ...]) -> PendingQuestion:
    key, kind, prompt, view, created, leased_to, lease_until = row
    return PendingQuestion(key, kind, prompt, json.loads(view), created, leased_to, lease_until)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on an exception): takes the write lock at the start, so a
    read-then-write (claim, answer) is atomic across processes."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type is not None else "COMMIT")


@dataclass
class LabeledHuman:
    """A human behind the label store: a stored answer is reused (no human call); a new one is stored first."""

    human: Agent
    store: LabelStore
    name: str = "synthetic"

    async def __call__(self, posed: Posed) -> Reply:
        stored = self.store.label(posed.key())
        if stored is not None:
            return Reply(stored.answer, Trace(f"human:{stored.human}", posed, stored.answer, from_store=True))
        reply = await self.human(posed)
        self.store.put(posed, reply.text, self.name)
        return reply
