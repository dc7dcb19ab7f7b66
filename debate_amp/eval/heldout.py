"""Held-out accuracy of a model asked directly (no amplification), by power k.

Three skills, each scored by exact match on held-out permutations:
- ``answer``: sigma^k(x) asked directly (the distilled model; the human itself manages only k <= 1);
- ``step``: the human's first step on a fresh question (its answer for k <= 1, its decomposition otherwise);
- ``integrate``: the human's step once both sub-answers are in the workspace (k >= 2);
- ``debate``: the human's replies inside debates (arguing with the model's help, judging), when given.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from debate_amp.generation import generate
from debate_amp.tasks.perm import (
    Ask,
    Example,
    PermHuman,
    PermQuestion,
    answer_prompt,
    parse_step,
    parse_subquestion,
    score,
    step_prompt,
)

SKILLS = ("answer", "step", "integrate", "debate")


@dataclass
class HeldoutReport:
    """Correct / total counts per (skill, k)."""

    correct: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    total: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))

    def accuracy(self, skill: str, ks: range | list[int] | None = None) -> float:
        keys = [key for key in self.total if key[0] == skill and (ks is None or key[1] in ks)]
        total = sum(self.total[key] for key in keys)
        return sum(self.correct[key] for key in keys) / total if total else float("nan")

    def ks(self) -> list[int]:
        return sorted({k for _, k in self.total})

    def table(self) -> str:
        lines = [f"{'k':>3} {'n':>5} " + " ".join(f"{s:>9}" for s in SKILLS)]
        for k in self.ks():
            cells = []
            for skill in SKILLS:
                n = self.total.get((skill, k), 0)
                cells.append(f"{self.correct[(skill, k)] / n:>9.1%}" if n else f"{'-':>9}")
            lines.append(f"{k:>3} {self.total.get(('answer', k), 0):>5} " + " ".join(cells))
        return "\n".join(lines)

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {
            skill: {str(k): self.correct[(skill, k)] / n for (s, k), n in sorted(self.total.items()) if s == skill}
            for skill in SKILLS
        }


def evaluate_heldout(
    model,
    tokenizer,
    questions: list[PermQuestion],
    batch_size: int = 128,
    max_new_tokens: int = 32,
    progress: bool = True,
    debate_examples: Sequence[Example] = (),
) -> HeldoutReport:
    """Greedy replies to every question in each skill; see the module docstring. ``debate_examples`` (the human's
    replies inside debates on held-out questions) are scored by exact match under ``debate``."""
    reference = PermHuman()  # error-free: the target of the step skills
    items: list[tuple[str, PermQuestion, str, str]] = []  # (skill, q, prompt, expected step text)
    for q in questions:
        items.append(("answer", q, answer_prompt(q), ""))
        items.append(("step", q, step_prompt(q), reference.step(q)))
        parsed = parse_step(reference.step(q))
        if isinstance(parsed, Ask):
            first = parse_subquestion(parsed.first, q)
            assert first is not None
            workspace = [str(first.gold), str(q.gold)]
            items.append(("integrate", q, step_prompt(q, workspace), reference.step(q, workspace)))
    for example in debate_examples:
        assert example.question is not None, "a debate example carries the question it was about"
        items.append(("debate", example.question, example.prompt, example.completion))
    report = HeldoutReport()
    was_training = model.training
    model.eval()
    for start in tqdm(range(0, len(items), batch_size), desc="held-out eval", disable=not progress, leave=False):
        chunk = items[start : start + batch_size]
        replies = generate(model, tokenizer, [p for _, _, p, _ in chunk], max_new_tokens=max_new_tokens).texts
        for (skill, q, _, expected), reply in zip(chunk, replies, strict=True):
            ok = score(reply, q) if skill == "answer" else float(reply.strip() == expected)
            report.total[(skill, q.k)] += 1
            report.correct[(skill, q.k)] += int(ok)
    model.train(was_training)
    return report
