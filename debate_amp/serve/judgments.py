"""Human judgments of saved debates: judge mode of ``debate-amp serve`` (DESIGN.md section 3, ``docs/humans.md``).

A person judges a debate in two steps, after the naive baseline of Khan et al. 2024 ("Debating with more persuasive
LLMs leads to more truthful answers"): first they answer the question themselves, with a confidence from 50 to 100%,
before any argument is shown; then they read the arguments in order and name the winner (even / odd), again with a
confidence. ``debate-amp eval TRANSCRIPTS --human-judgments FILE`` scores both (``debate_amp.eval.human_judges``).

:class:`JudgmentStore` is SQLite in WAL mode with ``synchronous=FULL``, like the label store: every step is committed
before the page confirms it. The initial answer is committed as soon as it is given (table ``started``), so a person
who has seen the arguments can never answer the question afresh; the verdict then moves the debate into
``judgments`` in one transaction. A debate is offered to one person at a time (a lease, table ``leases``), each
person judges each debate at most once, and several people may judge the same debate. A debate is named by its
transcript file (the resolved path) and line number; its ``question_id`` and ``update`` are kept beside them.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from debate_amp.agents.labels import check_sqlite_store
from debate_amp.debate.transcript import TranscriptError
from debate_amp.eval.transcripts import iter_records, to_row, transcript_files
from debate_amp.protocol import EVEN, ODD

DEFAULT_NAME = "human_judgments.sqlite"  # beside the first transcript file, unless --store says otherwise
CONFIDENCE_RANGE = (50.0, 100.0)  # percent: 50 is a coin flip between two answers, 100 is certainty

DebateKey = tuple[str, int]  # (transcript file, resolved; line number, from 1)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS judgments (
    transcript TEXT NOT NULL,
    line INTEGER NOT NULL,
    question_id TEXT NOT NULL,
    "update" INTEGER NOT NULL,
    person TEXT NOT NULL,
    initial_answer TEXT NOT NULL,
    initial_confidence REAL NOT NULL,
    winner TEXT NOT NULL,
    winner_confidence REAL NOT NULL,
    initial_seconds REAL NOT NULL,
    verdict_seconds REAL NOT NULL,
    shown REAL NOT NULL,
    initial_at REAL NOT NULL,
    judged_at REAL NOT NULL,
    PRIMARY KEY (transcript, line, person)
);
CREATE TABLE IF NOT EXISTS started (
    transcript TEXT NOT NULL,
    line INTEGER NOT NULL,
    person TEXT NOT NULL,
    shown REAL NOT NULL,
    initial_answer TEXT,
    initial_confidence REAL,
    initial_at REAL,
    PRIMARY KEY (transcript, line, person)
);
CREATE TABLE IF NOT EXISTS leases (
    transcript TEXT NOT NULL,
    line INTEGER NOT NULL,
    person TEXT NOT NULL,
    lease_until REAL NOT NULL,
    PRIMARY KEY (transcript, line)
)
"""
_COLUMNS = [
    "transcript",
    "line",
    "question_id",
    "update",
    "person",
    "initial_answer",
    "initial_confidence",
    "winner",
    "winner_confidence",
    "initial_seconds",
    "verdict_seconds",
    "shown",
    "initial_at",
    "judged_at",
]
_COLUMN_LIST = ", ".join(f'"{c}"' for c in _COLUMNS)  # quoted: "update" is an SQL keyword
_SELECT = f"SELECT {_COLUMN_LIST} FROM judgments"


class JudgmentStoreError(ValueError):
    """A judgment store that cannot be used: one line naming the file and what is wrong with it."""


@dataclass(frozen=True)
class Judgment:
    """One person's judgment of one saved debate. Confidences are percentages (50 to 100); times are time.time()
    (``shown``: the question was first shown; ``initial_at``: the initial answer was committed, and the arguments
    shown; ``judged_at``: the verdict was committed)."""

    transcript: str  # the transcript file, resolved
    line: int
    question_id: str
    update: int
    person: str
    initial_answer: str
    initial_confidence: float
    winner: str  # "even" or "odd"
    winner_confidence: float
    initial_seconds: float  # initial_at - shown
    verdict_seconds: float  # judged_at - initial_at
    shown: float
    initial_at: float
    judged_at: float


@dataclass(frozen=True)
class Started:
    """A debate a person has been shown and not yet judged; ``initial_*`` are None until they answered it."""

    shown: float
    initial_answer: str | None
    initial_confidence: float | None
    initial_at: float | None


def check_confidence(value: float) -> float:
    """``value`` when it is a percentage from 50 to 100; ValueError (saying so) otherwise."""
    lo, hi = CONFIDENCE_RANGE
    if not lo <= value <= hi:  # NaN fails too
        raise ValueError(f"a confidence from {lo:g} to {hi:g}%, not {value:g}")
    return value


def _check_file(path: Path) -> None:
    """Raise :class:`JudgmentStoreError` unless ``path`` is absent or a judgment store that opens and passes
    SQLite's integrity check (reads only)."""
    check_sqlite_store(path, "judgments", _COLUMNS, "judgment store", JudgmentStoreError)


class JudgmentStore:
    def __init__(self, path: str | Path) -> None:
        """Open (or create, with its folder) the store at ``path``; :class:`JudgmentStoreError` when it is not a
        usable store."""
        self.path = Path(path)
        _check_file(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # one connection shared by a server's threads, behind a lock (as the label store)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as e:
            raise JudgmentStoreError(f"{self.path}: cannot open the judgment store ({e})") from None

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the lock (``ROLLBACK`` on an exception): a read-then-write is
        atomic across threads and processes, and committed on exit."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def claim(
        self, person: str, debates: Sequence[DebateKey], lease_s: float = 300.0, now: float | None = None
    ) -> DebateKey | None:
        """The debate of ``debates`` that ``person`` should judge now, leased to them for ``lease_s`` seconds: the one
        they hold (its lease renewed), else the first they have started (given an initial answer to) and not
        judged, else the first they have not judged; never one another person's lease still holds, nor one they
        judged. None when nothing is left for them. The first claim of a debate records when it was shown."""
        now = time.time() if now is None else now
        with self._transaction():
            held = self._keys("SELECT transcript, line FROM leases WHERE person = ? AND lease_until > ?", person, now)
            busy = self._keys("SELECT transcript, line FROM leases WHERE person != ? AND lease_until > ?", person, now)
            judged = self._keys("SELECT transcript, line FROM judgments WHERE person = ?", person)
            answered = self._keys(
                "SELECT transcript, line FROM started WHERE person = ? AND initial_answer IS NOT NULL", person
            )
            candidates = [d for d in debates if d not in judged and d not in busy]
            choice = next(
                (d for d in candidates if d in held),
                next((d for d in candidates if d in answered), candidates[0] if candidates else None),
            )
            if choice is None:
                return None
            transcript, line = choice
            self._db.execute("DELETE FROM leases WHERE person = ?", (person,))  # one debate at a time
            self._db.execute(
                "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?)", (transcript, line, person, now + lease_s)
            )
            self._db.execute(
                "INSERT OR IGNORE INTO started (transcript, line, person, shown) VALUES (?, ?, ?, ?)",
                (transcript, line, person, now),
            )
        return transcript, int(line)

    def _keys(self, sql: str, *parameters: Any) -> set[DebateKey]:
        return {(str(t), int(line)) for t, line in self._db.execute(sql, parameters)}

    def judged(self, person: str) -> set[DebateKey]:
        """The debates ``person`` has judged."""
        with self._lock:
            return self._keys("SELECT transcript, line FROM judgments WHERE person = ?", person)

    def started(self, debate: DebateKey, person: str) -> Started | None:
        """Where ``person`` is with ``debate``: shown, initial answer; None when never shown (or already judged)."""
        with self._lock:
            row = self._db.execute(
                "SELECT shown, initial_answer, initial_confidence, initial_at FROM started "
                "WHERE transcript = ? AND line = ? AND person = ?",
                (*debate, person),
            ).fetchone()
        return None if row is None else Started(*row)

    def give_initial(
        self, debate: DebateKey, person: str, answer: str, confidence: float, now: float | None = None
    ) -> bool:
        """Commit ``person``'s own answer to ``debate``'s question (before the arguments). True when stored; False
        when they had already answered it (the first answer stays: they may have seen the arguments since).
        ValueError for an empty answer, a confidence outside 50 to 100, or a debate never shown to them."""
        answer = " ".join(answer.split())
        if not answer:
            raise ValueError("an empty answer")
        check_confidence(confidence)
        now = time.time() if now is None else now
        with self._transaction():
            row = self._db.execute(
                "SELECT initial_answer FROM started WHERE transcript = ? AND line = ? AND person = ?",
                (*debate, person),
            ).fetchone()
            if row is None:
                if self.judgment(debate, person) is not None:
                    return False
                raise ValueError("this debate was not shown to you")
            if row[0] is not None:
                return False
            self._db.execute(
                "UPDATE started SET initial_answer = ?, initial_confidence = ?, initial_at = ? "
                "WHERE transcript = ? AND line = ? AND person = ?",
                (answer, confidence, now, *debate, person),
            )
        return True

    def judge(
        self,
        debate: DebateKey,
        person: str,
        winner: str,
        confidence: float,
        *,
        question_id: str,
        update: int,
        now: float | None = None,
    ) -> bool:
        """Commit ``person``'s verdict on ``debate`` with their initial answer as one :class:`Judgment`, and let the
        debate go (lease) in the same transaction. True when stored; False when they had already judged it (the
        first judgment stays). ValueError for a winner other than even / odd, a confidence outside 50 to 100, or no
        initial answer yet."""
        if winner not in (EVEN, ODD):
            raise ValueError(f"the winner is {EVEN} or {ODD}, not {winner!r}")
        check_confidence(confidence)
        now = time.time() if now is None else now
        with self._transaction():
            if self.judgment(debate, person) is not None:
                return False
            row = self._db.execute(
                "SELECT shown, initial_answer, initial_confidence, initial_at FROM started "
                "WHERE transcript = ? AND line = ? AND person = ?",
                (*debate, person),
            ).fetchone()
            if row is None or row[1] is None:
                raise ValueError("give your own answer to the question first")
            shown, initial_answer, initial_confidence, initial_at = row
            self._db.execute(
                f"INSERT INTO judgments ({_COLUMN_LIST}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                (
                    *debate,
                    question_id,
                    update,
                    person,
                    initial_answer,
                    initial_confidence,
                    winner,
                    confidence,
                    initial_at - shown,
                    now - initial_at,
                    shown,
                    initial_at,
                    now,
                ),
            )
            self._db.execute("DELETE FROM started WHERE transcript = ? AND line = ? AND person = ?", (*debate, person))
            self._db.execute("DELETE FROM leases WHERE transcript = ? AND line = ? AND person = ?", (*debate, person))
        return True

    def judgment(self, debate: DebateKey, person: str) -> Judgment | None:
        with self._lock:
            row = self._db.execute(f"{_SELECT} WHERE transcript = ? AND line = ? AND person = ?", (*debate, person))
            found = row.fetchone()
        return None if found is None else Judgment(*found)

    def judgments(self) -> list[Judgment]:
        """Every judgment, in the order they were given."""
        with self._lock:
            rows = self._db.execute(f"{_SELECT} ORDER BY judged_at, rowid").fetchall()
        return [Judgment(*row) for row in rows]

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def read_judgments(path: str | Path) -> list[Judgment]:
    """Every judgment in the store at ``path``, read-only (nothing created or written); :class:`JudgmentStoreError`
    naming the file when it is missing or not a judgment store."""
    path = Path(path)
    if not path.is_file():
        raise JudgmentStoreError(f"{path}: no such judgment store")
    _check_file(path)
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = db.execute(f"{_SELECT} ORDER BY judged_at, rowid").fetchall()
        finally:
            db.close()
    except sqlite3.Error as e:
        raise JudgmentStoreError(f"{path}: not a judgment store ({e})") from None
    return [Judgment(*row) for row in rows]


# ---------------------------------------------------------------------------------------------------------------
# The debates a judge session offers


@dataclass(frozen=True)
class SavedDebate:
    """A saved debate as a human judge sees it: the question (the task's rendering, without gold) and the arguments
    in order. Not the model judge's verdict, not gold, not who argued."""

    transcript: str  # the transcript file, resolved
    line: int
    question_id: str
    update: int
    task: str
    question: str  # the question's text form, as recorded
    view: dict[str, Any]  # how a person sees the question: {"text", optional "table": {"header", "rows"}}
    arguments: tuple[str, ...]

    @property
    def key(self) -> DebateKey:
        return self.transcript, self.line


def _question_view(task_name: str, text: str) -> dict[str, Any]:
    """The task's own rendering of the question (parsed without gold); its text when the task cannot parse it."""
    from debate_amp.agents.humans.people import question_view
    from debate_amp.tasks import task_named

    try:
        return question_view(task_named(task_name).parse_question(text, None))
    except (ValueError, KeyError, TypeError):
        return {"text": text}


def saved_debates(paths: Sequence[str | Path]) -> list[SavedDebate]:
    """Every debate (with at least one argument) in the transcripts under ``paths`` (files or run directories), in
    file order. A missing path raises FileNotFoundError, a malformed line :class:`TranscriptError`, each naming it."""
    files = list(dict.fromkeys(f.resolve() for p in paths for f in transcript_files(p)))
    debates = []
    for source, record in iter_records(files):
        path, line = source.rsplit(":", 1)
        try:
            row = to_row(record, source)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            raise TranscriptError(f"{source}: malformed record ({type(e).__name__}: {e})") from None
        if row.arguments:
            debates.append(
                SavedDebate(
                    path,
                    int(line),
                    row.question_id,
                    row.update,
                    row.task,
                    row.question,
                    _question_view(row.task, row.question),
                    row.arguments,
                )
            )
    return debates


@dataclass
class JudgeSession:
    """Judge mode of ``debate-amp serve``: the saved debates offered, in order, and the store their judgments go
    to (by default ``human_judgments.sqlite`` in the folder of the first transcript file)."""

    debates: list[SavedDebate]
    store: JudgmentStore

    @classmethod
    def from_transcripts(cls, paths: Sequence[str | Path], store: str | Path | None = None) -> JudgeSession:
        """Read the debates under ``paths`` and open the judgment store. FileNotFoundError / TranscriptError /
        :class:`JudgmentStoreError` / ValueError (no debate to judge), each one line naming what is wrong."""
        debates = saved_debates(paths)
        if not debates:
            raise ValueError(f"{', '.join(map(str, paths))}: no debate to judge (no record with an argument)")
        path = Path(debates[0].transcript).parent / DEFAULT_NAME if store is None else Path(store)
        return cls(debates, JudgmentStore(path))

    def __post_init__(self) -> None:
        self._by_key = {d.key: d for d in self.debates}

    def claim(self, person: str, lease_s: float = 300.0) -> SavedDebate | None:
        """The debate ``person`` should judge now (leased to them), or None when none is left for them."""
        key = self.store.claim(person, list(self._by_key), lease_s)
        return None if key is None else self._by_key[key]

    def debate(self, transcript: str, line: int) -> SavedDebate | None:
        return self._by_key.get((transcript, line))

    def judged_by(self, person: str) -> int:
        """How many of this session's debates ``person`` has judged."""
        return len(self.store.judged(person) & self._by_key.keys())
