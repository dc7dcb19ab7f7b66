"""The durable label store: every human answer, committed before it is used (DESIGN.md section 3).

SQLite in WAL mode with ``synchronous=FULL``: an answer returned by :meth:`LabelStore.put` is on disk, so a
process killed at any point (SIGKILL included) loses no answer it had used. Keyed by ``Posed.key()``, a hash of
the posed question's kind and text; a repeated question is served from the store and costs no human call.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from debate_amp.protocol import Agent, Posed, Reply, Trace

_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    prompt TEXT NOT NULL,
    answer TEXT NOT NULL,
    human TEXT NOT NULL,
    created REAL NOT NULL
)
"""


class LabelStoreError(ValueError):
    """A label store that cannot be used: one line naming the file and what is wrong with it."""


def check_label_store(path: str | Path) -> None:
    """Raise :class:`LabelStoreError` unless ``path`` is absent or a label store that opens and passes SQLite's
    integrity check; reads only (opens the file read-only, writes nothing, creates nothing)."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_file():
        raise LabelStoreError(f"{path}: not a label store (not a file)")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            verdict = db.execute("PRAGMA quick_check").fetchone()
            columns = [row[1] for row in db.execute("PRAGMA table_info(labels)")]
        finally:
            db.close()
    except sqlite3.Error as e:
        raise LabelStoreError(f"{path}: not a readable label store ({e})") from None
    if verdict is None or verdict[0] != "ok":
        raise LabelStoreError(f"{path}: the label store is damaged (SQLite integrity check: {verdict})")
    if columns and columns != ["key", "kind", "prompt", "answer", "human", "created"]:
        raise LabelStoreError(f"{path}: a SQLite file, but its labels table is not a label store's ({columns})")


@dataclass(frozen=True)
class Label:
    key: str
    kind: str
    prompt: str
    answer: str
    human: str


class LabelStore:
    def __init__(self, path: str | Path, *, create_parents: bool = True) -> None:
        """Open (or create) the store at ``path``; :class:`LabelStoreError` when it is not a usable store, or when
        its folder is missing and ``create_parents`` is false."""
        self.path = Path(path)
        check_label_store(self.path)
        if not self.path.parent.is_dir():
            if not create_parents:
                raise LabelStoreError(f"{self.path}: no such folder: {self.path.parent}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: each put is its own transaction
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as e:
            raise LabelStoreError(f"{self.path}: cannot open the label store ({e})") from None

    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT answer FROM labels WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, posed: Posed, answer: str, human: str) -> None:
        """Record ``answer`` to ``posed``; returns once it is committed. The first answer to a question stays."""
        self._db.execute(
            "INSERT OR IGNORE INTO labels VALUES (?, ?, ?, ?, ?, ?)",
            (posed.key(), posed.kind, posed.render(), answer, human, time.time()),
        )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM labels").fetchone()[0])

    def __iter__(self) -> Iterator[Label]:
        for row in self._db.execute("SELECT key, kind, prompt, answer, human FROM labels ORDER BY rowid"):
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
        self._db.close()


@dataclass
class LabeledHuman:
    """A human behind the label store: a stored answer is reused (no human call); a new one is stored first."""

    human: Agent
    store: LabelStore
    name: str = "synthetic"

    async def __call__(self, posed: Posed) -> Reply:
        stored = self.store.get(posed.key())
        if stored is not None:
            return Reply(stored, Trace(f"human:{self.name}", posed, stored, from_store=True))
        reply = await self.human(posed)
        self.store.put(posed, reply.text, self.name)
        return reply
