"""Rollout -> tensors: what the trainer learns from a batch of debates (DESIGN.md section 1).

- RL segments: every generation the policy sampled while computing arg_t and that was used (a draft the human's
  answer replaced was not), with its side's reward minus catastrophe_coef * cost_t.
- Supervised examples: the posed question -> the amplified output, for every argument, every continue decision
  and the winner (distillation of the Amp tree into one direct call), plus every posed question the human
  answered inside the trees (M learns the human's steps and decompositions); and the same for the answers of
  Amp~(H, M) to training questions (``amp.questions_per_update``: amplification as in Christiano et al. 2018).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from debate_amp.debate.engine import Debate, Judgment
from debate_amp.models import encode_prompts
from debate_amp.protocol import UNKNOWN, Agent, Posed, Reply, Trace


@dataclass
class Segment:
    """One policy generation inside an argument: the unit of RL."""

    prompt: str
    response_ids: list[int]
    reward: float  # side reward - catastrophe_coef * cost of the argument (terminal)
    debate: int
    turn: int
    side: str


@dataclass
class SupervisedExample:
    prompt: str
    completion: str
    kind: str  # the posed kind (argue, sufficient, winner, step, ...)


def used_nodes(trace: Trace) -> Iterator[Trace]:
    """Every node whose answer was used: the tree without the model drafts a human answer replaced."""
    yield trace
    for child in trace.children:
        yield from used_nodes(child)


def policy_segments(debates: list[Debate], catastrophe_coef: float, skip_uncontested: bool = True) -> list[Segment]:
    """RL segments of every argument. A debate stopped by force after one argument (pure amplification) has no
    opponent and so no reward signal: with ``skip_uncontested`` its argument contributes no segment."""
    segments = []
    for d, debate in enumerate(debates):
        if skip_uncontested and debate.continues and debate.continues[0].forced:
            continue
        rewards = debate.rewards
        for t, turn in enumerate(debate.turns):
            cost = debate.costs[t].value if t < len(debate.costs) else 0.0
            reward = rewards[turn.side] - catastrophe_coef * float(cost)
            for node in used_nodes(turn.trace):
                if node.source == "model:policy" and not node.op and node.token_ids:
                    segments.append(Segment(node.posed.render(), list(node.token_ids), reward, d, t, turn.side))
    return segments


def _human_answered(node: Trace) -> bool:
    return node.source.startswith("human:") and not node.op


def human_answers(trace: Trace) -> list[SupervisedExample]:
    """Every question the human answered inside a tree, as imitation examples (M learns its steps and lookups)."""
    return [SupervisedExample(n.posed.render(), n.text, n.posed.kind) for n in used_nodes(trace) if _human_answered(n)]


def replaced_steps(trace: Trace) -> list[tuple[SupervisedExample, str]]:
    """The steps inside a tree that the human answered in place of a model's draft (the sampler handed it the call):
    each with the human's reply, and the draft it replaced; where a drafter's steps are checked without gold
    (``trainer.student: fresh``'s takeover). None where the human makes every step (``sampler.kind: always``: no
    draft to replace)."""
    return [
        (SupervisedExample(n.posed.render(), n.text, n.posed.kind), n.replaced.text)
        for n in used_nodes(trace)
        if _human_answered(n) and n.replaced is not None and n.posed.kind == "step"
    ]


def amplified(trace: Trace) -> bool:
    """Did amplification add anything to this answer: a human answered somewhere in its tree, or the asker used
    subquestions? A tree that is one model step is M's own direct reply, and distilling it would only teach M what
    it already says (its mistakes included); so is one whose subquestions were none (they did not parse, their
    answers ``?``), whatever the kind of question."""
    return any(_human_answered(node) for node in used_nodes(trace)) or any(
        child.posed.kind == "answer" and child.source != "unparsed" for child in trace.children
    )


def supervised_examples(debates: list[Debate], imitate_human: bool = True) -> list[SupervisedExample]:
    """L_sup's examples: d(winner, M(""winner)) + sum_t d(arg_t, M(""arg_t)) + d(continue_t, M(""continue_t)),
    for each output that amplification made (:func:`amplified`), plus every human answer inside the trees
    (``imitate_human``: ``trainer.imitate_human``)."""
    examples = []
    for debate in debates:
        judged: list[Judgment] = [j for j in (*debate.continues, debate.winner) if j is not None and j.trace]
        for turn in debate.turns:
            if amplified(turn.trace):
                examples.append(SupervisedExample(turn.trace.posed.render(), turn.text, "argue"))
        for judgment in judged:
            assert judgment.trace is not None
            if amplified(judgment.trace):
                examples.append(
                    SupervisedExample(judgment.trace.posed.render(), judgment.text, judgment.trace.posed.kind)
                )
        if imitate_human:
            for trace in debate.traces():
                examples += human_answers(trace)
    return examples


def amplify(questions: list[Any], amp: Agent) -> list[Reply]:
    """Amp~(H, M)(Q) for every question, all under one event loop (each wave of model calls is one batch)."""

    async def all_questions() -> list[Reply]:
        return list(await asyncio.gather(*(amp(Posed("answer", q)) for q in questions)))

    return asyncio.run(all_questions())


def amplification_examples(
    replies: list[Reply], imitate_human: bool = True, balance_rng: random.Random | None = None
) -> list[SupervisedExample]:
    """Distillation of Amp~(H, M)(Q) into M(""Q): the question -> the amplified answer (a tree that ended without
    one, ``?``, or that amplification added nothing to, teaches nothing), plus, with ``imitate_human``, every human
    answer in the trees (its steps: what M must draft for Approx(H, M)).

    With amplification applied n > 1 times (``amp.levels``) the subquestions inside a tree were answered by
    Amp~^(n-1)(H, M): each of those answers is an amplified answer to its own subquestion and is distilled too, at
    no extra model call. With ``balance_rng`` (``amp.balance_depths``) the amplified answers are subsampled with it
    so that no depth has more than the deepest depth among them (:func:`balanced_by_depth`)."""
    examples: list[SupervisedExample] = []
    depths: list[int | None] = []  # the amplified answers' question depths; None: a human answer
    for reply in replies:
        for node in used_nodes(reply.trace):
            if node.op == "amp" and node.posed.kind == "answer" and node.text != UNKNOWN and amplified(node):
                examples.append(SupervisedExample(node.posed.render(), node.text, "amplified"))
                depths.append(node.posed.question.depth)
        if imitate_human:
            human = human_answers(reply.trace)
            examples += human
            depths += [None] * len(human)
    if balance_rng is None:
        return examples
    return [examples[i] for i in balanced_by_depth(depths, balance_rng)]


def balanced_by_depth(depths: list[int | None], rng: random.Random) -> list[int]:
    """The indices kept, in order: at every depth as many as the deepest depth has (drawn with ``rng`` where there
    are more), and every None (an example that is not an amplified answer)."""
    by_depth: dict[int, list[int]] = {}
    for i, depth in enumerate(depths):
        if depth is not None:
            by_depth.setdefault(depth, []).append(i)
    if not by_depth:
        return list(range(len(depths)))
    cap = len(by_depth[max(by_depth)])
    kept = {i for depth in sorted(by_depth) for i in rng.sample(by_depth[depth], min(cap, len(by_depth[depth])))}
    return [i for i, depth in enumerate(depths) if depth is None or i in kept]


# ---------------------------------------------------------------------------------------------------------------
# Tensors


@dataclass
class Batch:
    """Token tensors for prompt + response sequences, right-padded. Per-action tensors are aligned with
    ``input_ids[:, 1:]``: position j scores token j + 1.

    input_ids [S, L], attention_mask [S, L], action_mask [S, L-1] (1 where token j+1 is a response token).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    action_mask: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.action_mask.to(device))

    def __getitem__(self, index: torch.Tensor | slice) -> Batch:
        return Batch(self.input_ids[index], self.attention_mask[index], self.action_mask[index])

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def trimmed(self) -> Batch:
        """Without the trailing columns that are padding in every row (right padding)."""
        width = max(2, int(self.attention_mask.sum(1).max()))
        return Batch(self.input_ids[:, :width], self.attention_mask[:, :width], self.action_mask[:, : width - 1])


def make_batch(tokenizer, prompts: list[str], responses: list[list[int]], pad_id: int) -> Batch:
    """Prompt tokens (as :func:`~debate_amp.models.encode_prompts` reads them, the way they were sampled) followed
    by the response token ids, right-padded."""
    rows, masks = [], []
    for prompt_ids, response in zip(encode_prompts(tokenizer, prompts), responses, strict=True):
        rows.append(prompt_ids + response)
        masks.append([0] * (len(prompt_ids) - 1) + [1] * len(response))
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    action_mask = torch.zeros((len(rows), width - 1), dtype=torch.float32)
    for i, (row, mask) in enumerate(zip(rows, masks, strict=True)):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
        action_mask[i, : len(mask)] = torch.tensor(mask, dtype=torch.float32)
    return Batch(input_ids, attention_mask, action_mask)


def supervised_batch(tokenizer, examples: list[SupervisedExample]) -> Batch:
    """Supervised examples as a Batch: the completion plus end-of-sequence is what is scored."""
    responses = [
        tokenizer(e.completion, add_special_tokens=False).input_ids + [tokenizer.eos_token_id] for e in examples
    ]
    return make_batch(tokenizer, [e.prompt for e in examples], responses, tokenizer.pad_token_id)
