"""The scalars an update logs (DESIGN.md section 1, step 6), computed from its records, and their pooling over
processes. Tags are documented in docs/training.md; every tag is written once.

Under ``accelerate launch`` every process logs the run's figure, not an average of the processes' own: a share or
a mean is a :class:`Mean` that keeps its sum and its count, and :func:`gather` divides the sums of both over the
processes (judge accuracy 10/10 on one process and 0/2 on the other is 10/12, not 0.5); counts and throughputs
(:data:`TOTALS`) are summed.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from debate_amp.debate.engine import Debate
from debate_amp.eval.final import parsed_replies
from debate_amp.protocol import EVEN, ODD, UNKNOWN, Reply

# Per-update scalars summed over processes: counts, and the rates of processes that run side by side.
TOTALS = (
    "amp/human_calls",
    "amp/human_timeouts",
    "rehearsal/human_calls",
    "amp/subquestions",
    "amp/targets",
    "debate/count",
    "liar/count",
    "rl/segments",
    "perf/debates_per_s",
    "perf/amp_targets_per_s",
    "perf/tokens_per_s",
)


class Mean(float):
    """A mean over this process's items, total / count (NaN for a count of 0), that keeps ``total`` and ``count``
    so that :func:`gather` pools it over processes: sum(total) / sum(count), every item weighted once wherever it
    was counted. A float subclass: everywhere else it is that number, and callers of :func:`mean` need no change."""

    __slots__ = ("total", "count")
    total: float
    count: float

    def __new__(cls, total: float, count: float) -> Mean:
        self = super().__new__(cls, total / count if count else math.nan)
        self.total, self.count = total, count
        return self

    def __reduce__(self) -> tuple[type[Mean], tuple[float, float]]:  # pickle and copy (float's own would fail)
        return Mean, (self.total, self.count)


def judge_accuracy(debate: Debate) -> float | None:
    """Did the verdict go to the side gold supports (``TaskQuestion.opening_claims_gold``, the
    definition ``debate-amp eval`` uses, docs/eval.md)? None without gold or a verdict, or when a forfeit decided
    (the judge was not asked)."""
    q = debate.question
    if getattr(q, "gold", None) is None or debate.winner is None or debate.winner.value is None:
        return None
    if debate.forfeit is not None:
        return None
    return float((debate.winner.value == "even") == q.opening_claims_gold(debate.turns[0].text))


def record(stats: dict[str, list[float]], **values: torch.Tensor) -> None:
    """Append each minibatch statistic to its list."""
    for key, value in values.items():
        stats.setdefault(key, []).append(float(value.detach()))


def token_mean(stats: dict[str, list[float]]) -> Mean:
    """L_sup over the update: the minibatches' token means weighted by their tokens (one token mean, as the
    constraint's relative baseline is), sum(loss * tokens) / sum(tokens); NaN without a token. Pooled over
    processes by their tokens (:func:`gather`)."""
    tokens = sum(stats.get("sup_tokens", []))
    return Mean(
        sum(loss * n for loss, n in zip(stats.get("sup_loss", []), stats.get("sup_tokens", []), strict=True)), tokens
    )


def mean(values: list[float]) -> Mean:
    """sum(values) / len(values), NaN for none; pooled over processes by the number of values (:func:`gather`)."""
    return Mean(sum(values), len(values))


def parse_counts(debates: list[Debate]) -> dict[str, Mean]:
    """The final table's :func:`~debate_amp.eval.final.parse_rates` as :class:`Mean` values, so that processes pool
    the replies they counted."""
    return {f"parse_rate_{kind}": Mean(sum(ok), len(ok)) for kind, ok in parsed_replies(debates).items()}


def unanswered(replies: list[Reply]) -> Mean:
    """The share of Amp~(H, M)'s answers that are ``?`` (a tree that ended without an answer: M's step did not
    parse, or a subanswer it needed was ``?``), NaN for none. Needs no gold answer: a share that jumps from 0 says M's
    steps broke (one update of ``recipes/pure_amplification.yaml`` went from 0 to 63%, docs/benchmarks.md)."""
    return mean([float(r.text == UNKNOWN) for r in replies])


def debate_metrics(debates: list[Debate]) -> dict[str, float]:
    """``debate/``, ``amp/human_call_fraction`` and ``amp/subquestions``: what this process's debates did. Its
    shares and means are :class:`Mean` values over the debates, turns or judgments they count
    (``amp/human_call_fraction``: human calls over the human and model calls of the debates' trees, NaN for none)."""
    rewards = [d.rewards for d in debates]
    accuracies = [a for a in (judge_accuracy(d) for d in debates) if a is not None]
    human_nodes = model_nodes = subquestions = 0
    for d in debates:
        for trace in d.traces():
            for node in trace.walk():
                if node.op:
                    continue
                human_nodes += node.human_calls
                model_nodes += node.source.startswith("model:")
                subquestions += node.posed.kind == "answer"
    return {
        "objective/reward_even": mean([r["even"] for r in rewards]),
        "objective/reward_odd": mean([r["odd"] for r in rewards]),
        "objective/catastrophe_cost": mean([c.value for d in debates for c in d.costs]),
        "debate/mean_turns": mean([len(d.turns) for d in debates]),
        "debate/continue0_rate": mean([float(bool(d.continues and d.continues[0].value)) for d in debates]),
        "debate/even_win_rate": mean([float(d.winner is not None and d.winner.value == "even") for d in debates]),
        "debate/judge_accuracy": mean(accuracies),
        "debate/forfeit_rate": mean([float(d.forfeit is not None) for d in debates]),
        **{f"debate/{k}": v for k, v in parse_counts(debates).items()},
        "debate/count": float(len(debates)),
        "amp/human_call_fraction": Mean(human_nodes, human_nodes + model_nodes),
        "amp/subquestions": float(subquestions),
    }


def liar_metrics(debates: list[Debate]) -> dict[str, float]:
    """``liar/``: how the update's debates against the scripted liar (``debate.liar_fraction``) went for the side
    Amp~(H, M) argued."""
    honest = [ODD if d.scripted == EVEN else EVEN for d in debates]
    pairs = list(zip(debates, honest, strict=True))
    return {
        "liar/count": float(len(debates)),
        "liar/honest_win_rate": mean([float(d.winner is not None and d.winner.value == side) for d, side in pairs]),
        "liar/honest_forfeit_rate": mean(
            [float(d.forfeit is not None and d.turns[d.forfeit].side == side) for d, side in pairs]
        ),
        "liar/mean_turns": mean([len(d.turns) for d in debates]),
    }


def optimisation_metrics(stats: dict[str, list[float]], scored: Any) -> dict[str, float]:
    """``objective/sup_loss``, ``objective/kl``, ``policy/``, ``loss/``, ``value/``, ``rl/segments`` and
    ``rl/steps``: what the PPO epochs of step 4 did with a :class:`~debate_amp.trainer.loop.ScoredBatch`."""
    explained_variance = float("nan")
    if scored.rl is not None:
        m = scored.rl.action_mask > 0
        returns, values = scored.returns[m], scored.old_values[m]
        var_returns = returns.var()
        explained_variance = float(1 - (returns - values).var() / var_returns) if var_returns > 0 else 0.0
    return {
        "objective/kl": float(scored.kl.sum(1).mean()) if scored.rl is not None else float("nan"),  # not a zero KL
        "objective/sup_loss": token_mean(stats),
        "policy/approx_kl": mean(stats.get("approx_kl", [])),
        "policy/clipfrac": mean(stats.get("clipfrac", [])),
        "policy/entropy": mean(stats.get("entropy", [])),
        "loss/policy": mean(stats.get("pg_loss", [])),
        "loss/value": mean(stats.get("v_loss", [])),
        "loss/total": mean(stats.get("total", [])),
        "value/explained_variance": explained_variance,
        "rl/segments": float(len(scored.segments)),
        "rl/steps": float(len(stats.get("pg_loss", []))),  # optimizer steps that took an RL minibatch, all epochs
    }


def gather(accelerator, metrics: dict[str, float]) -> dict[str, float]:
    """The run's scalars from every process's, once per update (every process gets the same): a :class:`Mean`
    pooled, sum(total) / sum(count) over processes (NaN for a count of 0); :data:`TOTALS` summed (NaN where every
    process has NaN); any other scalar averaged over the processes where it is not NaN. Plain floats, in the order
    given; on one process each value as it is (a :class:`Mean` its own total / count)."""
    if accelerator.num_processes == 1:
        return {k: float(v) for k, v in metrics.items()}
    keys = sorted(metrics)  # the same columns on every process (a tag is a Mean on every process or on none)
    pairs = [(v.total, v.count) if isinstance(v, Mean) else (v, 1.0) for v in (metrics[k] for k in keys)]
    local = torch.tensor(pairs, device=accelerator.device, dtype=torch.float64)  # [keys, 2]
    gathered = accelerator.gather(local.unsqueeze(0))  # [processes, keys, 2]
    pooled = {}
    for i, key in enumerate(keys):
        values, counts = gathered[:, i, 0], gathered[:, i, 1]
        if isinstance(metrics[key], Mean):
            pooled[key] = float(Mean(float(values.sum()), float(counts.sum())))
        elif key in TOTALS:
            pooled[key] = math.nan if bool(values.isnan().all()) else float(values.nansum())
        else:
            pooled[key] = float(values.nanmean())
    return {k: pooled[k] for k in metrics}


def transcript_text(debates: list[Debate]) -> str:
    """A few debates as Markdown, for the trackers' text panel."""
    lines = []
    for d in debates:
        lines.append(f"**{d.question.render()}** (gold {d.question.gold})  ")
        for t, turn in enumerate(d.turns):
            lines.append(f"{t} {turn.side}: `{turn.text}`  ")
        lines.append(f"verdict: {None if d.winner is None else d.winner.value}\n")
    return "\n".join(lines)
