"""The user's own questions (``task.name: dataset``): rows ``{question, answer?}`` read from disk.

Rows come from JSONL / JSON, CSV or parquet files, or a folder written by ``datasets.Dataset.save_to_disk``, loaded
with the ``datasets`` library (offline: nothing is fetched). The answer column is optional; gold answers, where a
row has one, are used for evaluation only (held-out accuracy, judge accuracy), never shown to a model or to H.

There is no synthetic human, no scripted liar and no perfect model for questions nobody has worked out: H is a
frozen local model (``human.kind: model``: an LLM judge) or recorded human answers (``replay``), and the warm start
by imitation is off (``Task.synthetic`` is False; the recipe checks say so in one line). Every posed question is
rendered by a template of the recipe (``task.templates``), so a large instruct model can read full sentences and
the tiny default model short cues; the same text is what the policy and a model H read. A subquestion an asker
writes is a new question about the same row (its text is the row's question, a separator and the subquestion), so
the model answering it still sees what it is about.

Held-out split: a row is held out when a hash of its question text falls below ``task.heldout_fraction``.
Evaluation uses held-out rows that have an answer.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from debate_amp.protocol import Generation, Posed, Step
from debate_amp.tasks.base import Example, Skill, parse_step

Row = tuple[str, str | None]
"""(question, answer or None)."""

SUB = " >> "
"""Between a row's question and a subquestion about it, in a subquestion's text."""

DEFAULT_TEMPLATES = {
    "answer": "{question} A=",
    "step": "{goal}{workspace} S{cue}",
    "argue": "{question}{arguments} G=",
    "sufficient": "{question}{arguments} @{argument} E=",
    "winner": "{question}{arguments} W=",
    "catastrophe": "{question}{arguments} @{argument} C=",
}
"""Compact cues, as the built-in tasks use (what the tiny default model can read within its 128 positions). Fields:
``{question}`` (the question's text), ``{arguments}`` (the arguments so far, each as `` |text``), ``{argument}``
(the index of the argument asked about), ``{workspace}`` (the sub-answers so far, each as `` #i=text``) and
``{goal}`` and ``{cue}`` (a step's goal rendered by its own template, without its trailing cue such as ``A=``, and
that cue)."""


def normalize(text: str) -> str:
    """How answers are compared: case-folded, surrounding whitespace and a final full stop dropped, inner whitespace
    collapsed."""
    return " ".join(text.strip().rstrip(".").casefold().split())


def claimed_answer(argument: str) -> str:
    """The answer an argument claims: its first line, up to ``because`` (arguments may give reasons after it)."""
    first = argument.strip().split("\n", 1)[0]
    return normalize(_BECAUSE.split(first, maxsplit=1)[0])


_BECAUSE = re.compile(r"\s+because\b|^because\b")


@dataclass(frozen=True)
class DatasetQuestion:
    """A row's question (``text``) with its gold answer when the row has one. Difficulty and depth are the same for
    every row (the task knows no finer split): 1 and 1, beyond what the human is assumed to answer alone."""

    text: str
    answer: str | None = None
    templates: tuple[tuple[str, str], ...] = field(default=tuple(DEFAULT_TEMPLATES.items()), repr=False)
    max_chars: int = 0

    @property
    def gold(self) -> str | None:
        return self.answer

    @property
    def difficulty(self) -> int:
        return 1

    @property
    def depth(self) -> int:
        return 1

    def render(self) -> str:
        return self.text

    def describe(self) -> str:
        return self.text if len(self.text) <= 40 else self.text[:37] + "..."

    def score(self, answer: str | None) -> float:
        if answer is None or self.answer is None:
            return 0.0
        return float(normalize(answer) == normalize(self.answer))

    def opening_claims_gold(self, opening: str) -> bool:
        return self.answer is not None and claimed_answer(opening) == normalize(self.answer)

    # The ``Question`` protocol
    def render_posed(self, posed: Posed) -> str:
        return render_posed(posed, dict(self.templates), self.max_chars)

    def subquestion(self, text: str) -> DatasetQuestion | None:
        text = text.strip()
        if not text:
            return None
        root = self.text.split(SUB, 1)[0]
        return DatasetQuestion(f"{root}{SUB}{text}", None, self.templates, self.max_chars)

    def parse_step(self, text: str) -> Step:
        return parse_step(text)

    def is_argument(self, text: str) -> bool:
        return bool(text.strip())


def _fields(posed: Posed, arguments: Sequence[str]) -> dict[str, Any]:
    return {
        "question": posed.question.text,
        "arguments": "".join(f" |{a}" for a in arguments),
        "argument": "" if posed.argument is None else posed.argument,
        "workspace": "",
        "goal": "",
        "cue": "",
    }


def render_posed(posed: Posed, templates: dict[str, str], max_chars: int = 0) -> str:
    """A posed question through its template. With ``max_chars`` > 0 a prompt longer than that many UTF-8 bytes
    drops the oldest arguments first (an ``@t`` index keeps pointing at the same argument: earlier ones are replaced
    by ``|...``), then keeps the prompt's end (the cue and the latest arguments), so that a small model's positions
    are never exceeded."""
    goal = posed.goal if posed.kind == "step" and posed.goal is not None else posed
    context = list(goal.context)
    dropped = 0
    while True:
        shown = ["..."] * dropped + context[dropped:]
        values = _fields(goal, shown)
        if posed.kind == "step":
            values["goal"], values["cue"] = _split_cue(templates[goal.kind].format(**values))
            values["workspace"] = "".join(f" #{i + 1}={a}" for i, a in enumerate(posed.workspace))
            text = templates["step"].format(**values)
        else:
            text = templates[posed.kind].format(**values)
        if not max_chars or _size(text) <= max_chars or dropped >= len(context):
            break
        dropped += 1
    while max_chars and _size(text) > max_chars:
        text = text[max(1, (_size(text) - max_chars) // 4) :]  # cut the start, a character at a time or faster
    return text


def _size(text: str) -> int:
    """UTF-8 bytes: the tiny model's tokens (a byte tokenizer), at least the characters of any other."""
    return len(text.encode())


_CUE = re.compile(r"\s*(\S*=)\s*$")


def _split_cue(text: str) -> tuple[str, str]:
    """A goal's rendering without its trailing cue (`` W=``), and the cue (``W=``; empty for a template that ends
    otherwise), for the step template that wraps it: ``{goal}{workspace} S{cue}`` reads ``... SW=``."""
    m = _CUE.search(text)
    return (text[: m.start()], m.group(1)) if m else (text, "")


@functools.lru_cache(maxsize=4)
def load_rows(paths: tuple[str, ...], question_field: str, answer_field: str | None) -> tuple[Row, ...]:
    """(question, answer or None) for every row of the files or saved folders in ``paths``, in order. Raises
    ValueError naming the path and what is wrong (a missing column, an empty question, an unreadable file). Cached:
    the recipe's check and the task read the files once."""
    import datasets

    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # "Generating train split" for every file: not this library's progress
    try:
        return _read(paths, question_field, answer_field)
    finally:
        if bars:
            datasets.enable_progress_bars()


def _read(paths: tuple[str, ...], question_field: str, answer_field: str | None) -> tuple[Row, ...]:
    import datasets

    rows: list[Row] = []
    for raw in paths:
        path = Path(raw)
        try:
            if path.is_dir():
                data: Any = datasets.load_from_disk(str(path))
                if isinstance(data, datasets.DatasetDict):
                    data = datasets.concatenate_datasets(list(data.values()))
            else:
                builder = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}.get(path.suffix)
                if builder is None:
                    raise ValueError("expected a .jsonl, .json, .csv or .parquet file, or a saved datasets folder")
                data = datasets.load_dataset(builder, data_files=str(path), split="train")
        except (OSError, ValueError, datasets.exceptions.DatasetGenerationError) as e:
            raise ValueError(f"{path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        columns = set(data.column_names)
        if question_field not in columns:
            raise ValueError(f"{path}: no column {question_field!r} (columns: {', '.join(sorted(columns))})")
        answers = data[answer_field] if answer_field in columns else [None] * len(data)
        for i, (question, answer) in enumerate(zip(data[question_field], answers, strict=True)):
            if question is None or not str(question).strip():
                raise ValueError(f"{path}: row {i + 1} has an empty {question_field!r}")
            rows.append((str(question).strip(), None if answer is None else str(answer).strip()))
    return tuple(rows)


@dataclass
class DatasetTask:
    """A task of recorded questions (module docstring). ``rows`` are loaded from ``paths`` when the task is built
    from a recipe; a task with no rows still reads and scores questions (as transcripts need)."""

    paths: tuple[str, ...] = ()
    question_field: str = "question"
    answer_field: str | None = "answer"
    heldout_fraction: float = 0.0625
    templates: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TEMPLATES))
    max_prompt_chars: int = 0
    rows: tuple[Row, ...] = field(default=(), repr=False)

    name: ClassVar[str] = "dataset"
    difficulty_name: ClassVar[str] = "difficulty"
    human_max_difficulty: ClassVar[int] = 0
    synthetic: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.paths and not self.rows:
            self.rows = load_rows(self.paths, self.question_field, self.answer_field)
        self.train_rows = [r for r in self.rows if not self.is_heldout(r[0])]
        self.heldout_rows = [r for r in self.rows if self.is_heldout(r[0])]

    @classmethod
    def from_config(cls, cfg: Any) -> DatasetTask:
        """The task a recipe's ``task`` section (``config.DatasetConfig``) describes: its rows are read now."""
        return cls(
            tuple(cfg.paths),
            cfg.question_field,
            cfg.answer_field,
            cfg.heldout_fraction,
            {**DEFAULT_TEMPLATES, **cfg.templates},
            cfg.max_prompt_chars,
        )

    def is_heldout(self, text: str) -> bool:
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") / 2**32 < self.heldout_fraction

    def _question(self, row: Row) -> DatasetQuestion:
        return DatasetQuestion(row[0], row[1], tuple(self.templates.items()), self.max_prompt_chars)

    @property
    def max_difficulty(self) -> int:
        return 1

    @property
    def max_depth(self) -> int:
        return 1

    def sample(
        self,
        rng: random.Random,
        heldout: bool = False,
        difficulty: int | None = None,
        max_depth: int | None = None,
        min_depth: int = 0,
    ) -> DatasetQuestion:
        pool = self.heldout_rows if heldout else self.train_rows
        if not pool:
            split = "held-out" if heldout else "training"
            raise ValueError(
                f"the dataset has no {split} rows ({len(self.rows)} rows, heldout_fraction {self.heldout_fraction})"
            )
        return self._question(pool[rng.randrange(len(pool))])

    def questions(self, n: int, seed: int, heldout: bool = False) -> list[DatasetQuestion]:
        rng = random.Random(seed)
        return [self.sample(rng, heldout=heldout) for _ in range(n)]

    def eval_questions(self, n: int, seed: int = 12345) -> list[DatasetQuestion]:
        """Up to ``n`` held-out rows that have an answer, in a seeded order (each at most once)."""
        graded = [r for r in self.heldout_rows if r[1] is not None]
        random.Random(seed).shuffle(graded)
        return [self._question(r) for r in graded[:n]]

    def at_depth(self, rng: random.Random, depth: int, n: int) -> list[DatasetQuestion]:
        return [self.sample(rng) for _ in range(n)] if depth == 1 else []

    def parse_question(self, text: str, gold: str | None = None) -> DatasetQuestion:
        if not text.strip():
            raise ValueError("an empty question")
        return DatasetQuestion(text.strip(), gold, tuple(self.templates.items()), self.max_prompt_chars)

    def check_question(self, q: DatasetQuestion) -> str | None:
        return None

    def summary(self) -> str:
        graded = sum(answer is not None for _, answer in self.rows)
        return f"{len(self.rows)} rows ({graded} with answers) from {', '.join(self.paths) or 'no files'}"

    def human(self, error_rate: float = 0.0, seed: int = 0) -> Any:
        raise ValueError(NO_SYNTHETIC)

    def liar(self, seed: int = 0) -> Any:
        raise ValueError("the dataset task has no scripted liar (nobody has worked its questions out)")

    def perfect_generate(self, prompts: list[str], limits: list[int | None] | None = None) -> Generation:
        raise ValueError("the dataset task has no perfect model (subquestions have no known answers)")

    def answer_prompt(self, q: DatasetQuestion) -> str:
        return Posed("answer", q).render()

    def imitation_examples(
        self, human: Any, n: int, seed: int, lookups: float = 0.0, integrated_answers: bool = False
    ) -> list[Example]:
        raise ValueError(NO_SYNTHETIC)

    def alone_calls(self, q: DatasetQuestion) -> int:
        return 1

    def skills(self, q: DatasetQuestion) -> list[Skill]:
        return []  # no reference human to score steps against

    def opening_reply(self, q: DatasetQuestion | None, arguments: Sequence[str]) -> str:
        """``agree`` when arg_1 is ``agree`` or claims the same answer, ``disagree`` when it starts with ``no`` or
        claims another answer; there is no ``other`` for free text that is not empty."""
        if len(arguments) < 2:
            return "single"
        reply = arguments[1].strip()
        if not reply:
            return "other"
        if normalize(reply) == "agree" or claimed_answer(reply) == claimed_answer(arguments[0]):
            return "agree"
        return "disagree"


NO_SYNTHETIC = (
    "the dataset task has no synthetic human: set human.kind=model (a frozen local model, human.model_path) or "
    "human.kind=replay (recorded answers), and trainer.warm_start=false"
)
