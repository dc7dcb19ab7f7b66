"""How the RL loss L_rl and the supervised loss L_sup combine: modes ``weighted``, ``constrained`` and ``reward``."""

from __future__ import annotations

from torch import Tensor

__all__ = ["combine_constrained", "combine_weighted", "fold_supervised_into_reward", "lagrange_update"]


def lagrange_update(lagrange_multiplier: float, constraint_value: float | Tensor, limit: float, lr: float) -> float:
    """Projected dual ascent on the multiplier: ``lambda <- max(0, lambda + lr * (constraint_value - limit))``.

    The multiplier grows while the constraint ``L_sup <= limit`` is violated and shrinks (down to 0) while it holds.
    This is first-order PPO-Lagrangian (Lagrangian constrained PPO, as in Ray, Achiam & Amodei 2019's safety
    baselines), NOT Achiam et al. 2017's second-order Constrained Policy Optimization (CPO), and unrelated to TRL's
    ``CPOTrainer`` (Contrastive Preference Optimization). Scalars in, float out.
    """
    return max(0.0, float(lagrange_multiplier) + lr * (float(constraint_value) - limit))


def combine_weighted(rl_loss: Tensor, sup_loss: Tensor, alpha: float) -> Tensor:
    """``alpha * L_rl + (1 - alpha) * L_sup`` with ``alpha`` in [0, 1]. Scalars (or equal shapes) in and out."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return alpha * rl_loss + (1.0 - alpha) * sup_loss


def combine_constrained(rl_loss: Tensor, sup_loss: Tensor, lagrange_multiplier: float) -> Tensor:
    """The Lagrangian, rescaled: ``(L_rl + lambda * L_sup) / (1 + lambda)`` with ``lambda >= 0``.

    Dividing by ``1 + lambda`` keeps the gradient scale bounded as the multiplier grows, so the learning rate need
    not track it. This equals ``combine_weighted`` with ``alpha = 1 / (1 + lambda)``; in particular ``lambda = 0``
    is ``combine_weighted`` with ``alpha = 1`` (pure RL). Scalars (or equal shapes) in and out.
    """
    if lagrange_multiplier < 0:
        raise ValueError(f"lagrange_multiplier must be >= 0, got {lagrange_multiplier}")
    return (rl_loss + lagrange_multiplier * sup_loss) / (1.0 + lagrange_multiplier)


def fold_supervised_into_reward(rewards: Tensor, sup_distance: Tensor, coef: float) -> Tensor:
    """The ``reward`` mode: ``r <- r - coef * d``, with ``d`` the distance to the supervised target.

    Shapes: ``rewards [B]`` or ``[B, T]``; ``sup_distance [B]`` or the same shape as ``rewards``; returns
    ``rewards``' shape. A ``[B]`` distance against ``[B, T]`` rewards is aligned on the batch dimension (``d[:, None]``)
    rather than torch's trailing-dimension rule, which would silently mix sequences when B == T. It is then charged
    at every token, so the return carries it once per token; to charge it once per sequence, pass a ``[B, T]``
    distance that is nonzero only at the last real token.
    """
    if sup_distance.dim() > rewards.dim():
        raise ValueError(f"sup_distance {tuple(sup_distance.shape)} has more dims than rewards {tuple(rewards.shape)}")
    if sup_distance.shape[:1] != rewards.shape[:1]:
        raise ValueError(
            f"batch sizes differ: rewards {tuple(rewards.shape)}, sup_distance {tuple(sup_distance.shape)}"
        )
    d = sup_distance.reshape(sup_distance.shape + (1,) * (rewards.dim() - sup_distance.dim()))
    return rewards - coef * d
