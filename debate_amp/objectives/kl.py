"""KL to the reference model: per-token estimators and the penalty coefficient's controllers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor

__all__ = ["AdaptiveKLController", "FixedKLController", "KLKind", "kl_penalty"]

KLKind = Literal["k1", "k3", "abs", "mse"]


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor, kind: KLKind = "k1") -> Tensor:
    """Per-token estimate of KL(policy || reference) from the sampled tokens' log-probabilities.

    With ``d = logprobs - ref_logprobs``: ``k1 = d`` (unbiased, can be negative); ``k3 = (r - 1) - log r`` with
    ``r = exp(ref_logprobs - logprobs)`` (Schulman's estimator, http://joschu.net/blog/kl-approx.html: unbiased and
    >= 0); ``abs = |d|``; ``mse = 0.5 * d^2``.

    Shapes: ``logprobs [B, T]``, ``ref_logprobs [B, T]``; returns ``[B, T]``. No masking here: the caller zeroes or
    drops padding.
    """
    d = logprobs - ref_logprobs
    if kind == "k1":
        return d
    if kind == "k3":
        # expm1(-d) + d is (r - 1) - log r without the cancellation of exp(-d) - 1 when d is tiny.
        return torch.expm1(-d) + d
    if kind == "abs":
        return d.abs()
    if kind == "mse":
        return 0.5 * d**2
    raise ValueError(f"unknown KL estimator {kind!r}; expected one of k1, k3, abs, mse")


class FixedKLController:
    """A constant KL coefficient ``beta``; ``update`` is a no-op so it swaps with ``AdaptiveKLController``."""

    def __init__(self, coef: float) -> None:
        if coef < 0:
            raise ValueError(f"KL coefficient must be >= 0, got {coef}")
        self.value = float(coef)

    def update(self, current_kl: float | Tensor, n_steps: int) -> None:
        """Leave ``value`` unchanged (same signature as ``AdaptiveKLController.update``)."""

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """Adaptive KL coefficient of Ziegler et al. 2019 ("Fine-Tuning Language Models from Human Preferences").

    ``proportional_error = clip(current_kl / target - 1, -0.2, 0.2)``;
    ``value <- value * (1 + proportional_error * n_steps / horizon)``.

    The coefficient rises when the measured KL is above ``target`` and falls when below, at a rate of at most 20 % per
    ``horizon`` steps. ``target`` and ``horizon`` are hyperparameters, not state: ``state_dict`` holds ``value``
    only, so a resumed run takes them from its configuration.
    """

    def __init__(self, init_coef: float, target: float, horizon: float) -> None:
        if init_coef < 0:
            raise ValueError(f"KL coefficient must be >= 0, got {init_coef}")
        if target <= 0 or horizon <= 0:
            raise ValueError(f"target and horizon must be > 0, got target={target}, horizon={horizon}")
        self.value = float(init_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float | Tensor, n_steps: int) -> None:
        """Move ``value`` by the formula above. ``current_kl`` is the measured KL in the same units as ``target``
        (here nats per sequence); ``n_steps`` is the number of samples the measurement covers (TRL passes the batch
        size)."""
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        proportional_error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        mult = 1.0 + proportional_error * n_steps / self.horizon
        # Only reachable with n_steps >= 5 * horizon; a sign flip would reward drifting from the reference.
        if mult <= 0:
            raise ValueError(f"n_steps={n_steps} is too large for horizon={self.horizon}: the coefficient would flip")
        self.value *= mult

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.value = float(state["value"])
