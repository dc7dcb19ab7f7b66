"""The Task interface: everything the trainer, the warm start, eval, the CLI and the bench need from a task.

A task is a family of questions with known answers and a simulated weak human who can answer the easiest of them
itself and decomposes the rest into two subquestions (``references/000``'s protocol; DESIGN.md section 1). The
core (protocol, combinators, debate engine, rollout, objectives) only ever sees a task's questions through the
``Question`` protocol of :mod:`debate_amp.protocol`; the rest of the package reaches a task through the two
protocols here and the registry in :mod:`debate_amp.tasks`, and imports no concrete task.

Each question has a *difficulty* (perm: the power k; add: the number of digits) named by the task
(``Task.difficulty_name``: eval tables and tags say ``k`` or ``digits``), and a *depth*: how many levels of
decomposition the human needs (0 for what it answers itself, difficulty <= ``Task.human_max_difficulty``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from debate_amp.protocol import Answer, Ask, Generation, Posed, Question, Step, Unparsed


@runtime_checkable
class TaskQuestion(Question, Protocol):
    """A question of a task: the ``Question`` protocol (how the models read it) plus what scoring needs."""

    @property
    def gold(self) -> Any:
        """The right answer (``str(gold)`` is how a model writes it)."""
        ...

    @property
    def difficulty(self) -> int:
        """perm: the power k; add: the number of digits."""
        ...

    @property
    def depth(self) -> int:
        """Levels of decomposition the human needs: 0 for a question it answers itself."""
        ...

    def render(self) -> str:
        """The question as text (what :meth:`Task.parse_question` reads back), e.g. ``s=37016254 x=5 k=6``."""
        ...

    def describe(self) -> str:
        """The part that changes between a question and its subquestions (``x=5 k=6``): a node's label in a tree."""
        ...

    def score(self, answer: str | None) -> float:
        """1.0 when ``answer`` (a model's or a human's reply text) is the gold answer, else 0.0."""
        ...

    def opening_claims_gold(self, opening: str) -> bool:
        """Does the opening argument arg_0 claim the gold answer to this question itself? A verdict is right when
        it goes to the even side exactly then (the trainer's ``debate/judge_accuracy``, ``debate-amp eval``)."""
        ...


class TaskHuman(Protocol):
    """The task's simulated weak expert. ``respond`` reads a posed question's structure (never its text) and
    replies as the human would; ``calls`` counts every reply; ``rng`` drives its mistakes (checkpoints save it)."""

    calls: int
    rng: random.Random

    def respond(self, posed: Posed) -> str: ...


class Liar(Protocol):
    """A scripted dishonest debater: ``argue(question, arguments so far) -> argument``."""

    def argue(self, q: Any, context: tuple[str, ...]) -> str: ...


@dataclass(frozen=True)
class Example:
    """One imitation example: what the human wrote (``completion``) when posed ``prompt``."""

    prompt: str
    completion: str
    kind: str  # "answer" | "step" (fresh question) | "integrate" (step with both sub-answers) | a debate kind
    difficulty: int
    question: Any = None
    human_calls: int = 1
    """Human calls this example cost: 1 for a reply the human wrote; for an integrated answer, the calls of the two
    subtrees whose answers its workspace holds (:meth:`Task.alone_calls`)."""


Skill = tuple[str, str, str]
"""(skill, prompt, expected reply) for :func:`debate_amp.eval.heldout.evaluate_heldout`: ``step`` and
``integrate``, scored by exact match against the error-free human's reply."""


class Task(Protocol):
    """A seeded generator of questions with a train / held-out split, and everything about them that is not
    structure: the human, the liar, the perfect scripted model, the imitation data and the text formats.

    Questions are typed ``Any`` here (each task returns its own question class, a ``TaskQuestion``), so that a task
    with a concrete question type still is a ``Task`` to a type checker."""

    name: ClassVar[str]
    """The registry key, ``task.name`` in a recipe."""
    difficulty_name: ClassVar[str]
    """How eval tables, tags and ``final.json`` name a question's difficulty (``k``, ``digits``)."""
    human_max_difficulty: ClassVar[int]
    """The hardest question the human answers itself (depth 0); harder ones are beyond the human."""
    synthetic: ClassVar[bool]
    """Whether the task has a synthetic human, a scripted liar and a perfect scripted model (perm, add: questions
    with worked-out answers). Without them (dataset) H is a model or a person, there is no warm start by imitation
    and no liar protocol; those members raise ValueError saying so."""

    @classmethod
    def from_config(cls, cfg: Any) -> Task:
        """The task a recipe's ``task`` section (its own section of ``config.TASK_CONFIGS``) describes."""
        ...

    @property
    def max_difficulty(self) -> int: ...

    @property
    def max_depth(self) -> int: ...

    def sample(
        self,
        rng: random.Random,
        heldout: bool = False,
        difficulty: int | None = None,
        max_depth: int | None = None,
        min_depth: int = 0,
    ) -> Any:
        """A question (a ``TaskQuestion``) from the training (or held-out) split; ``max_depth`` / ``min_depth``
        bound its depth."""
        ...

    def questions(self, n: int, seed: int, heldout: bool = False) -> list[Any]: ...

    def eval_questions(self, n: int, seed: int = 12345) -> list[Any]:
        """Held-out questions with every difficulty equally often (accuracy by difficulty has even support)."""
        ...

    def at_depth(self, rng: random.Random, depth: int, n: int) -> list[Any]:
        """``n`` training questions of exactly ``depth`` (none past :attr:`max_depth`): the curriculum's probe."""
        ...

    def parse_question(self, text: str, gold: str | None = None) -> Any:
        """The inverse of ``TaskQuestion.render``; raises ValueError naming what is wrong. Needs no recipe: a
        default instance of the task reads any of its questions. ``gold``: the answer a transcript recorded, for a
        task whose question text does not determine it (dataset; perm and add ignore it)."""
        ...

    def check_question(self, q: Any) -> str | None:
        """Why a question the user typed does not fit this recipe's task (what the model was trained on), with the
        override that would admit it; None when it fits."""
        ...

    def summary(self) -> str:
        """One line for table headers: the task's size and difficulty range (``k = 0..7, N = 8``)."""
        ...

    def human(self, error_rate: float = 0.0, seed: int = 0) -> TaskHuman: ...

    def liar(self, seed: int = 0) -> Liar: ...

    def perfect_generate(self, prompts: list[str], limits: list[int | None] | None = None) -> Generation:
        """A generate function (``debate_amp.generation``) for an error-free scripted model of this task."""
        ...

    def answer_prompt(self, q: Any) -> str:
        """The direct question (posed kind ``answer``) as a model reads it."""
        ...

    def imitation_examples(
        self, human: Any, n: int, seed: int, lookups: float = 0.0, integrated_answers: bool = False
    ) -> list[Example]:
        """The warm start's examples of what the human does itself (answers, decompositions, integrations), on
        training questions; ``lookups``: the share of extra single-step examples; ``integrated_answers``: each
        integration also taught as the direct answer, charged :meth:`alone_calls` of its two halves."""
        ...

    def alone_calls(self, q: Any) -> int:
        """Human calls of Amp(H, H) on ``q``: the human working the question out alone."""
        ...

    def skills(self, q: Any) -> list[Skill]:
        """The error-free human's own replies about ``q`` (its first step; its integration, once both sub-answers
        are in the workspace), for the held-out skill tables."""
        ...

    def opening_reply(self, q: Any | None, arguments: Sequence[str]) -> str:
        """What the odd side's first argument arg_1 says about arg_0: ``single`` (there is none), ``disagree``,
        ``agree`` or ``other`` (it does not parse, or claims something else). ``q`` is None when the transcript's
        question does not parse."""
        ...


def own_name(task: Task) -> str:
    """The name of the difficulties the human answers itself, in tags and ``final.json`` (perm: ``k_le_1``)."""
    return f"{task.difficulty_name}_le_{task.human_max_difficulty}"


def beyond_name(task: Task) -> str:
    """The name of the difficulties beyond the human (perm: ``k_ge_2``)."""
    return f"{task.difficulty_name}_ge_{task.human_max_difficulty + 1}"


# ---------------------------------------------------------------------------------------------------------------
# The step language every built-in task uses (a task may write its own: it owns ``Question.parse_step``)

ANSWER_PREFIX = "ans "
ASK_PREFIX = "ask "
SUBQUESTION_SEP = ";"


def format_answer(value: int | str) -> str:
    """A step that answers: ``ans 4``."""
    return f"{ANSWER_PREFIX}{value}"


def format_ask(first: str, second: str) -> str:
    """A step that asks two subquestions: ``ask 5^3;#1^3`` (``#1`` stands for the first one's answer)."""
    return f"{ASK_PREFIX}{first}{SUBQUESTION_SEP}{second}"


def parse_step(text: str) -> Step:
    """``ans <answer>`` as ``Answer``, ``ask <first>;<second>`` as ``Ask``, anything else ``Unparsed`` (model
    output that does not parse is data)."""
    text = text.strip()
    if text.startswith(ANSWER_PREFIX):
        return Answer(text[len(ANSWER_PREFIX) :].strip())
    if text.startswith(ASK_PREFIX):
        parts = text[len(ASK_PREFIX) :].split(SUBQUESTION_SEP)
        if len(parts) == 2 and all(p.strip() for p in parts):
            return Ask(parts[0].strip(), parts[1].strip())
    return Unparsed(text)
