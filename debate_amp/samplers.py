"""Samplers (``Samp`` in ``references/001``): per call, should the real human be asked instead of the model?

A sampler is called as ``sampler(posed, model_reply) -> bool`` (True: ask the human). ``budget`` wraps another
sampler with hard caps on human calls per update and per run; call ``new_update()`` at the start of each update.
"""

from __future__ import annotations

import random
from collections.abc import Callable
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
        if not self.inner(posed, model_reply):
            return False
        if self.per_update is not None and self.update_calls >= self.per_update:
            return False
        if self.per_run is not None and self.run_calls >= self.per_run:
            return False
        self.update_calls += 1
        self.run_calls += 1
        return True

    def state_dict(self) -> dict[str, int]:
        return {"update_calls": self.update_calls, "run_calls": self.run_calls}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.update_calls, self.run_calls = state["update_calls"], state["run_calls"]


def build_sampler(
    kind: str,
    p: float = 0.1,
    threshold: float = -0.5,
    per_update: int | None = None,
    per_run: int | None = None,
    seed: int = 0,
) -> Sampler:
    """The sampler a recipe names; wrapped in :class:`Budget` when either cap is set."""
    builders: dict[str, Callable[[], Sampler]] = {
        "always": lambda: Always(),
        "never": lambda: Never(),
        "bernoulli": lambda: Bernoulli(p, seed),
        "confidence": lambda: Confidence(threshold),
    }
    if kind not in builders:
        raise ValueError(f"unknown sampler {kind!r}; one of {sorted(builders)}")
    sampler: Sampler = builders[kind]()
    if per_update is not None or per_run is not None:
        sampler = Budget(sampler, per_update, per_run)
    return sampler
