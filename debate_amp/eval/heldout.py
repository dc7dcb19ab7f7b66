"""Held-out accuracy of a model asked directly (no amplification), by difficulty (perm: the power k).

Skills, each scored by exact match on held-out questions:
- ``answer``: the question asked directly (the distilled model; the human itself manages only the easiest);
- ``step``: the human's first step on a fresh question (its answer at depth 0, its decomposition otherwise);
- ``integrate``: the human's step once both sub-answers are in the workspace (beyond depth 0);
- ``debate``: the human's replies inside debates (arguing with the model's help, judging), when given.

Where the task's questions name a ``shortcut`` (perm: sigma^(k mod 2)(x), the best answer without composing lookups),
the report also counts how often a wrong direct answer is that shortcut: the plateau a model sits on before it
composes, which accuracy alone does not tell from noise.

The task supplies the questions, the error-free human's replies (``Task.skills``) and the name of the difficulty.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from debate_amp.generation import generate
from debate_amp.tasks.base import Example, Task, beyond_name, own_name

SKILLS = ("answer", "step", "integrate", "debate")
__all__ = ["SKILLS", "HeldoutReport", "beyond_name", "evaluate_heldout", "own_name"]


@dataclass
class HeldoutReport:
    """Correct / total counts per (skill, difficulty), and per difficulty the direct answers that gave the question's
    shortcut where the shortcut is wrong."""

    difficulty_name: str = "k"
    human_max_difficulty: int = 1
    correct: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    total: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    shortcut_given: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    shortcut_wrong: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    def record(self, skill: str, q: Any, reply: str, expected: str = "") -> None:
        """Score one reply: a direct answer (``answer``) by the question, any other skill by exact match."""
        ok = q.score(reply) if skill == "answer" else float(reply.strip() == expected)
        self.total[(skill, q.difficulty)] += 1
        self.correct[(skill, q.difficulty)] += int(ok)
        shortcut = getattr(q, "shortcut", None) if skill == "answer" else None
        if shortcut is not None and str(shortcut) != str(q.gold):
            self.shortcut_wrong[q.difficulty] += 1
            self.shortcut_given[q.difficulty] += int(reply.strip() == str(shortcut))

    def accuracy(self, skill: str, difficulties: range | list[int] | None = None) -> float:
        keys = [key for key in self.total if key[0] == skill and (difficulties is None or key[1] in difficulties)]
        total = sum(self.total[key] for key in keys)
        return sum(self.correct[key] for key in keys) / total if total else float("nan")

    def difficulties(self) -> list[int]:
        return sorted({d for _, d in self.total})

    def own(self, skill: str = "answer") -> float:
        """Accuracy on the questions the human answers itself (perm: k <= 1)."""
        return self.accuracy(skill, [d for d in self.difficulties() if d <= self.human_max_difficulty])

    def beyond(self, skill: str = "answer") -> float:
        """Accuracy on the questions beyond the human (perm: k >= 2): what amplification is for."""
        return self.accuracy(skill, [d for d in self.difficulties() if d > self.human_max_difficulty])

    def shortcut_rate(self) -> float:
        """Of the direct answers beyond the human whose question's shortcut is wrong, the share that gave it (perm:
        0.72-0.93 for warm starts on the one-lookup plateau, 0 once M composes); nan where the task names no
        shortcut."""
        beyond = [d for d in self.shortcut_wrong if d > self.human_max_difficulty]
        total = sum(self.shortcut_wrong[d] for d in beyond)
        return sum(self.shortcut_given[d] for d in beyond) / total if total else float("nan")

    def table(self) -> str:
        name = self.difficulty_name
        width = max(3, len(name))
        lines = [f"{name:>{width}} {'n':>5} " + " ".join(f"{s:>9}" for s in SKILLS)]
        for d in self.difficulties():
            cells = []
            for skill in SKILLS:
                n = self.total.get((skill, d), 0)
                cells.append(f"{self.correct[(skill, d)] / n:>9.1%}" if n else f"{'-':>9}")
            lines.append(f"{d:>{width}} {self.total.get(('answer', d), 0):>5} " + " ".join(cells))
        return "\n".join(lines)

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {
            skill: {str(d): self.correct[(skill, d)] / n for (s, d), n in sorted(self.total.items()) if s == skill}
            for skill in SKILLS
        }


def evaluate_heldout(
    model,
    tokenizer,
    task: Task,
    questions: Sequence[Any],
    batch_size: int = 128,
    max_new_tokens: int = 32,
    progress: bool = True,
    debate_examples: Sequence[Example] = (),
    skills: Collection[str] = SKILLS,
) -> HeldoutReport:
    """Greedy replies to every question in each of ``skills``; see the module docstring. ``debate_examples`` (the
    human's replies inside debates on held-out questions) are scored by exact match under ``debate``. A learning
    curve, or a model never taught the human's steps (the supervised baseline), asks for ``("answer",)`` alone:
    the steps are most of the generated tokens (4.8 s against 0.3 s for 900 questions, N = 5, one thread)."""
    items: list[tuple[str, Any, str, str]] = []  # (skill, q, prompt, expected step text)
    for q in questions:
        if "answer" in skills:
            items.append(("answer", q, task.answer_prompt(q), ""))
        items += [(skill, q, prompt, expected) for skill, prompt, expected in task.skills(q) if skill in skills]
    for example in debate_examples if "debate" in skills else ():
        assert example.question is not None, "a debate example carries the question it was about"
        items.append(("debate", example.question, example.prompt, example.completion))
    report = HeldoutReport(task.difficulty_name, task.human_max_difficulty)
    was_training = model.training
    model.eval()
    for start in tqdm(range(0, len(items), batch_size), desc="held-out eval", disable=not progress, leave=False):
        chunk = items[start : start + batch_size]
        replies = generate(model, tokenizer, [p for _, _, p, _ in chunk], max_new_tokens=max_new_tokens).texts
        for (skill, q, _, expected), reply in zip(chunk, replies, strict=True):
            report.record(skill, q, reply, expected)
    model.train(was_training)
    return report
