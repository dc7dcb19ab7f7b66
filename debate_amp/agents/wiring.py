"""Amp~(H, M) as a recipe wires it: M as a batched agent, the sampler with its budgets, and the combinator.

The trainer, the CLI, the final evaluation and the bench build their agents here, so that they read the same recipe
keys the same way (``generation.*``, ``sampler.*`` with its budgets, ``amp.max_batch``, ``amp.max_rounds``).
``sampler.kind: adversary`` wires ``references/000``'s adversarial amplification (:class:`AdversarialAmp`) instead.
"""

from __future__ import annotations

from typing import Any

from debate_amp.agents.model_agent import ModelAgent
from debate_amp.combinators import AdversarialAmp, Amp, amp_approx
from debate_amp.config import Config
from debate_amp.protocol import Agent, GenerateFn
from debate_amp.samplers import Adversarial, Adversary, Budget, Sampler, build_sampler
from debate_amp.tasks import make_task


def recipe_generate_fn(cfg: Config, model: Any, tokenizer: Any, temperature: float, top_p: float = 1.0) -> GenerateFn:
    """A batched ``generate`` of ``model`` with the recipe's reply length, at ``temperature`` (0: greedy)."""
    from debate_amp.generation import hf_generate_fn  # torch: only where a real model runs

    return hf_generate_fn(model, tokenizer, cfg.generation.max_new_tokens, temperature, top_p)


def recipe_model_agent(cfg: Config, generate_fn: GenerateFn, role: str) -> ModelAgent:
    """M as an agent (``role``: ``policy`` or ``target``), its calls batched up to ``amp.max_batch``, an ``answer``
    reply cut at ``generation.max_answer_tokens``."""
    return ModelAgent(generate_fn, role, cfg.amp.max_batch, {"answer": cfg.generation.max_answer_tokens})


def recipe_sampler(cfg: Config, seed: int, adversary: Adversary | None = None) -> Sampler:
    """The recipe's sampler (``sampler.kind``), wrapped in its budgets when ``per_update`` or ``per_run`` is set.
    ``adversary``: the predictor of ``kind: adversary`` (the trainer's learned one; none: an uninformed one)."""
    s = cfg.sampler
    return build_sampler(
        s.kind,
        s.p,
        s.threshold,
        s.per_update,
        s.per_run,
        seed=seed,
        confidence=s.confidence,
        temperature=s.temperature,
        adversary=adversary,
        audit=s.adversary_audit,
    )


def recipe_amp(cfg: Config, human: Agent, model: Agent, sampler: Sampler, levels: int = 1) -> Amp | AdversarialAmp:
    """Amp~(H, M) with the recipe's ``amp.max_rounds`` (``levels`` > 1: amplification applied that many times); with
    an adversary's sampler (``sampler.kind: adversary``), :class:`AdversarialAmp` (``levels`` does not apply: the
    human works down the tree as deep as the adversary doubts M, at most the task's depth + 1 levels below the
    question: one more than the human's own decomposition takes)."""
    budget = sampler if isinstance(sampler, Budget) else None
    inner = budget.inner if budget is not None else sampler
    if isinstance(inner, Adversarial):
        max_depth = make_task(cfg).max_depth + 1
        return AdversarialAmp(human, model, inner, budget, cfg.amp.max_rounds, max_depth)
    return amp_approx(human, model, sampler, cfg.amp.max_rounds, levels)
