"""Samplers (``Samp`` in ``references/001``): per call, should the real human be asked instead of the model?

A sampler is called as ``sampler(posed, model_reply) -> bool`` (True: ask the human). ``budget`` wraps another
sampler with hard caps on human calls per update and per run; call ``new_update()`` at the start of each update.
``adversary`` is ``references/000``'s Samp: a learned predictor of "this draft is wrong" (``debate_amp.adversary``)
decides where the human is skipped, and :func:`gumbel_max` which subquestion the human works down
(``debate_amp.combinators.AdversarialAmp`` runs it).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from debate_amp.protocol import Posed, Reply


class Sampler(Protocol):
    def __call__(self, posed: Posed, model_reply: Reply) -> bool: ...


@dataclass
class Always:
    """Every call goes to the human (pure imitation of H)."""

    def __call__(self, posed: Posed, model_reply: Reply) -> bool:
        return True


@dataclass
class Never:
    """No call goes to the human (the model alone)."""

    def __call__(self, posed: Posed, model_reply: Reply) -> bool:
        return False


@dataclass
class Bernoulli:
    """Each call goes to the human with probability ``p``, from a seeded generator."""

    p: float
    seed: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"bernoulli p must be in [0, 1], got {self.p}")
        self.rng = random.Random(self.seed)

    def __call__(self, posed: Posed, model_reply: Reply) -> bool:
        return self.rng.random() < self.p


@dataclass
class Confidence:
    """Ask the human when the model's reply has mean token log-probability below ``threshold``.

    A reply without log-probabilities (a scripted model) counts as confident.
    """

    threshold: float

    def __call__(self, posed: Posed, model_reply: Reply) -> bool:
        mean = model_reply.trace.mean_logprob()
        return mean is not None and mean < self.threshold


@dataclass
class Budget:
    """``inner``'s decision, capped at ``per_update`` human calls per update and ``per_run`` in the run.

    None means no cap. Counts are of calls routed to the human (a routed call the label store can answer still
    counts: the cap is on what the sampler asks for).
    """

    inner: Sampler
    per_update: int | None = None
    per_run: int | None = None
    update_calls: int = 0
    run_calls: int = 0

    def new_update(self) -> None:
        self.update_calls = 0

    def __call__(self, posed: Posed, model_reply: Reply) -> bool:
        return self.inner(posed, model_reply) and self.allow()

    def has_room(self) -> bool:
        """Is there room for one more human call under both caps (nothing counted)?"""
        return (self.per_update is None or self.update_calls < self.per_update) and (
            self.per_run is None or self.run_calls < self.per_run
        )

    def allow(self) -> bool:
        """One more human call, if there is room for it under both caps: then it is counted."""
        if not self.has_room():
            return False
        self.update_calls += 1
        self.run_calls += 1
        return True

    def state_dict(self) -> dict[str, int]:
        return {"update_calls": self.update_calls, "run_calls": self.run_calls}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.update_calls, self.run_calls = state["update_calls"], state["run_calls"]


class Adversary(Protocol):
    """Adv(q, a) of ``references/000``: for (the posed question as a model reads it, a draft reply), the probability
    that the draft is wrong (``debate_amp.adversary.Adversary`` is the learned one). ``min_logprobs[i]``, where
    given, is draft i's lowest token log-probability under M (None: not known), M's own confidence."""

    def score(
        self, pairs: Sequence[tuple[str, str]], min_logprobs: Sequence[float | None] | None = None
    ) -> list[float]: ...


@dataclass
class Uninformed:
    """An adversary that knows nothing: every draft is wrong with probability ``p_wrong``. What a command without a
    trained adversary uses: every node is doubted (at the default confidence) and each choice is a fair coin."""

    p_wrong: float = 0.5

    def score(
        self, pairs: Sequence[tuple[str, str]], min_logprobs: Sequence[float | None] | None = None
    ) -> list[float]:
        return [self.p_wrong] * len(pairs)


def gumbel_max(scores: Sequence[float], temperature: float, rng: random.Random) -> int:
    """argmax_i (score_i / temperature + g_i) with g_i ~ Gumbel(0, 1) independent: index i with probability
    softmax(scores / temperature)_i (the Gumbel-max trick; Boltzmann exploration, ``references/000``)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    best, best_value = 0, -math.inf
    for i, score in enumerate(scores):
        u = rng.random() or 5e-324  # in (0, 1): -log(-log u) is finite
        value = score / temperature - math.log(-math.log(u))
        if value > best_value:
            best, best_value = i, value
    return best


@dataclass
class Adversarial:
    """``sampler.kind: adversary``, the Samp of ``references/000``'s iteration step: ask the human when the
    adversary's probability that the model's draft is wrong is at least ``confidence`` (where it is below, the
    model's draft stands: H' = M). At a decomposition, :meth:`choose` picks the subquestion the human works down by
    Boltzmann exploration over the adversary's scores of the model's answers, with ``temperature``; its Gumbel
    noise, and the draws of :meth:`audits` (a trusted draft checked all the same with probability ``audit``), come
    from ``rng`` (seeded; checkpoints save it)."""

    adversary: Adversary
    confidence: float = 0.2
    temperature: float = 0.2
    seed: int = 0
    audit: float = 0.0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"adversary confidence must be in [0, 1], got {self.confidence}")
        if not 0.0 <= self.audit <= 1.0:
            raise ValueError(f"adversary audit must be in [0, 1], got {self.audit}")
        if self.temperature <= 0:
            raise ValueError(f"adversary temperature must be > 0, got {self.temperature}")
        self.rng = random.Random(self.seed)

    def p_wrong(self, pairs: Sequence[tuple[Posed, Reply]]) -> list[float]:
        """Adv(q, a) of each (posed question, M's draft reply), as the adversary reads them: the rendered question,
        the draft's text and its lowest token log-probability (where the reply's trace has them)."""
        texts = [(posed.render(), reply.text) for posed, reply in pairs]
        return self.adversary.score(texts, [reply.trace.min_logprob() for _, reply in pairs])

    def doubts(self, p_wrong: float) -> bool:
        """Is the adversary not confident that the draft is right (the human is to be asked)?"""
        return p_wrong >= self.confidence

    def __call__(self, posed: Posed, model_reply: Reply) -> bool:
        return self.doubts(self.p_wrong([(posed, model_reply)])[0])

    def audits(self) -> bool:
        """Is a draft the adversary trusts to be checked all the same (amplified: a label for a trusted draft)? With
        probability ``audit``, drawn from ``rng``."""
        return self.audit > 0 and self.rng.random() < self.audit

    def choose(self, p_wrong: Sequence[float]) -> int:
        """The subquestion the human works down: i with probability softmax(p_wrong / temperature)_i."""
        return gumbel_max(p_wrong, self.temperature, self.rng)


def build_sampler(
    kind: str,
    p: float = 0.1,
    threshold: float = -0.5,
    per_update: int | None = None,
    per_run: int | None = None,
    seed: int = 0,
    *,
    confidence: float = 0.2,
    temperature: float = 0.2,
    adversary: Adversary | None = None,
    audit: float = 0.0,
) -> Sampler:
    """The sampler a recipe names; wrapped in :class:`Budget` when either cap is set. ``adversary`` is the predictor
    of ``kind="adversary"`` (none given: :class:`Uninformed`)."""
    builders: dict[str, Callable[[], Sampler]] = {
        "always": lambda: Always(),
        "never": lambda: Never(),
        "bernoulli": lambda: Bernoulli(p, seed),
        "confidence": lambda: Confidence(threshold),
        "adversary": lambda: Adversarial(adversary or Uninformed(), confidence, temperature, seed, audit),
    }
    if kind not in builders:
        raise ValueError(f"unknown sampler {kind!r}; one of {sorted(builders)}")
    sampler: Sampler = builders[kind]()
    if per_update is not None or per_run is not None:
        sampler = Budget(sampler, per_update, per_run)
    return sampler
