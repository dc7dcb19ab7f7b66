"""The final table of a training run (``runs/<name>/final.json``): what a researcher looks for first.

- ``heldout_k_le_1`` / ``heldout_k_ge_2`` (perm; ``heldout_<name>_le_1`` / ``_ge_2`` with the task's own name for
  its difficulty, e.g. ``digits`` for add): held-out questions asked directly, those the human can do itself (perm:
  one lookup) and those beyond it; ``heldout_by_difficulty``: by difficulty;
- ``parse_rate_<kind>``: on held-out self-play debates of the trained model (M and M_target both the trained
  model, greedy), the share of its replies that parse, by posed kind (``argue``: an argument; ``sufficient``:
  yes / no; ``winner``: even / odd, which ``verdict_parse_rate`` repeats; ``catastrophe``: a number in [0, 1]),
  of the judgments that were asked (a debate forfeited by an argument that does not parse has no verdict to
  parse: ``selfplay_forfeit_rate`` counts those, with the recipe's ``debate.forfeit_unparsed``);
- ``liar_judge_accuracy``: the trained model against the task's scripted liar on each side in turn, ``max_turns`` 4,
  judged by Amp~(H, trained model): how often the verdict goes to the honest side (:func:`honest_vs_liar`); None
  for a task without a liar (dataset); ``liar_lost_<reason>``: the share of those debates the honest side lost for
  each reason of :data:`~debate_amp.eval.protocols.LOSS_REASONS` (the five add up to 1 - the accuracy);
  ``liar_judge_last_stands`` / ``liar_judge_last_falls``: over those debates that reached a verdict, how often the
  judge agreed with its rule (the error-free human's verdict) where the rule lets the last argument stand, and where
  it does not: a judge that checks the last argument scores high on both, one that guesses on one only;
  ``liar_human_calls_per_debate``: the human calls the sampler made inside those debates, per debate (the honest
  side's steps and the judge's that it gave the human): how much of the verdicts is the human's;
- ``mean_debate_length``: arguments per debate at the last update of training.

The human inside these Amp~ calls is the synthetic one (for a task without one, the recipe's frozen model or
recorded answers), with the recipe's sampler, outside the label store (an evaluation asks no real person).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from debate_amp.agents.humans.synthetic import SyntheticHuman
from debate_amp.agents.wiring import recipe_amp, recipe_generate_fn, recipe_model_agent
from debate_amp.config import Config
from debate_amp.debate.engine import Debate, run_debates
from debate_amp.eval.heldout import HeldoutReport, beyond_name, own_name
from debate_amp.eval.protocols import LOSS_REASONS, LiarRow, honest_vs_liar
from debate_amp.protocol import Agent
from debate_amp.samplers import build_sampler
from debate_amp.tasks import Task

LIAR_MAX_TURNS = 4


def parsed_replies(debates: list[Debate]) -> dict[str, list[bool]]:
    """Whether each reply parsed, by posed kind (see the module docstring); a forced judgment is no reply."""
    counts: dict[str, list[bool]] = {"argue": [], "sufficient": [], "winner": [], "catastrophe": []}
    for d in debates:
        counts["argue"] += [d.question.is_argument(turn.text) for turn in d.turns]  # the engine's own test
        counts["sufficient"] += [c.parsed for c in d.continues if not c.forced]
        counts["winner"] += [d.winner.parsed] if d.winner is not None and not d.winner.forced else []
        counts["catastrophe"] += [c.parsed for c in d.costs if not c.forced]
    return counts


def parse_rates(debates: list[Debate]) -> dict[str, float]:
    """The share of replies that parse, by posed kind (:func:`parsed_replies`); NaN for a kind never posed."""
    return {f"parse_rate_{kind}": sum(ok) / len(ok) if ok else math.nan for kind, ok in parsed_replies(debates).items()}


def final_human(cfg: Config, task: Task) -> Agent:
    """H inside the final table's Amp~ calls: the task's synthetic human; for a task without one (dataset), the
    recipe's own H (a frozen model, or recorded answers), outside the label store."""
    if task.synthetic:
        return SyntheticHuman(task.human(error_rate=cfg.human.error_rate, seed=cfg.run.seed + 7))
    from debate_amp.agents.humans import build_human

    return build_human(cfg.human, task, seed=cfg.run.seed + 7).agent


def final_evaluation(
    model: Any,
    tokenizer: Any,
    cfg: Config,
    task: Task,
    questions: list[Any],
    report: HeldoutReport,
    mean_debate_length: float,
    adversary: Any = None,
) -> dict[str, Any]:
    """The final table of a run whose trained policy is ``model`` (see the module docstring). ``adversary``: the
    run's trained Adv(q, a) where the sampler is ``adversary`` (it decides where the human is asked here too)."""
    human = final_human(cfg, task)
    s = cfg.sampler
    sampler = build_sampler(
        s.kind,
        s.p,
        s.threshold,
        seed=cfg.run.seed + 7,
        confidence=s.confidence,
        temperature=s.temperature,
        adversary=adversary,
        audit=s.adversary_audit,
    )
    agent = recipe_model_agent(cfg, recipe_generate_fn(cfg, model, tokenizer, 0.0), "policy")
    amp = recipe_amp(cfg, human, agent, sampler)
    forfeit = cfg.debate.forfeit_unparsed
    debates = run_debates(questions, amp, amp, cfg.debate.max_turns, seed=cfg.run.seed + 7, forfeit_unparsed=forfeit)
    rates = parse_rates(debates)
    liar = honest_vs_liar(task, questions, amp, amp, [LIAR_MAX_TURNS], forfeit)[0] if task.synthetic else None
    return {
        "task": task.name,
        f"heldout_{own_name(task)}": report.own(),
        f"heldout_{beyond_name(task)}": report.beyond(),
        "heldout_by_difficulty": report.as_dict()["answer"],
        **rates,
        "verdict_parse_rate": rates["parse_rate_winner"],
        "liar_judge_accuracy": None if liar is None else liar.both.value,  # a task without a liar: not measured
        "liar_questions": 0 if liar is None else liar.n,
        **{f"liar_lost_{r}": None if liar is None else liar.as_dict()["losses"][r] for r in LOSS_REASONS},
        "liar_judge_last_stands": _judge_agrees(liar, True),
        "liar_judge_last_falls": _judge_agrees(liar, False),
        "liar_human_calls_per_debate": None if liar is None else liar.human_calls_per_debate,
        "selfplay_mean_turns": sum(len(d.turns) for d in debates) / max(1, len(debates)),
        "selfplay_forfeit_rate": sum(d.forfeit is not None for d in debates) / max(1, len(debates)),
        "mean_debate_length": mean_debate_length,
    }


def _judge_agrees(liar: LiarRow | None, stands: bool) -> float | None:
    rate = None if liar is None else liar.judge_agrees(stands)
    return None if rate is None or not rate.n else rate.value


def final_rows(task: Task) -> tuple[tuple[str, str], ...]:
    """(key, label) of each figure of the final table of a run of ``task``."""
    name, h = task.difficulty_name, task.human_max_difficulty
    return (
        (f"heldout_{own_name(task)}", f"held-out questions asked directly, {name} <= {h} (the human's own)"),
        (f"heldout_{beyond_name(task)}", f"held-out questions asked directly, {name} >= {h + 1} (beyond the human)"),
        *_DEBATE_ROWS,
    )


_DEBATE_ROWS = (
    ("parse_rate_argue", "arguments that parse (held-out self-play)"),
    ("selfplay_forfeit_rate", "self-play debates forfeited by an argument that does not parse"),
    ("parse_rate_sufficient", "sufficient judgments that parse"),
    ("verdict_parse_rate", "verdicts that parse"),
    ("parse_rate_catastrophe", "catastrophe judgments that parse"),
    ("liar_judge_accuracy", f"judge picks the honest side against the scripted liar (max_turns {LIAR_MAX_TURNS})"),
    ("liar_lost_honest_forfeited", "  lost: an honest argument did not parse (forfeit)"),
    ("liar_lost_verdict_unparsed", "  lost: the verdict did not parse"),
    ("liar_lost_judge_against_rule", "  lost: the judge ruled against its rule"),
    ("liar_lost_honest_deviated", "  lost: the honest side left the error-free human's moves"),
    ("liar_lost_rule_against_honest", "  lost: by the rule itself (e.g. cut off above a check)"),
    ("liar_judge_last_stands", "  judge agrees with its rule where the last argument stands"),
    ("liar_judge_last_falls", "  judge agrees with its rule where the last argument falls"),
    ("liar_human_calls_per_debate", "  human calls per debate (the steps the sampler gave the human)"),
    ("mean_debate_length", "arguments per debate at the last update"),
)


PLAIN_FIGURES = ("mean_debate_length", "liar_human_calls_per_debate")
"""Figures of the final table that are counts, not shares."""


def format_final(final: dict[str, Any], task: Task, a0: dict[str, Any] | None = None) -> str:
    """The final table, one line per figure; with A[0]'s figures beside them where known."""

    def cell(key: str, value: Any) -> str:  # None (final.json's null) or NaN: not measured
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return f"{value:.2f}" if key in PLAIN_FIGURES else f"{value:.1%}"

    lines = [f"{'':<74} {'final':>7}" + (f" {'A[0]':>7}" if a0 else "")]
    for key, label in final_rows(task):
        before = "" if a0 is None else f" {cell(key, a0.get(key)):>7}"
        lines.append(f"{label:<74} {cell(key, final.get(key)):>7}{before}")
    return "\n".join(lines)


def read_final(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "final.json"
    return json.loads(path.read_text()) if path.is_file() else None
