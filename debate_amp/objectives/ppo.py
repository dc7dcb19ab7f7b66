"""PPO pieces: generalised advantage estimation and the clipped policy and value losses.

Sequences are right-padded with ``mask [B, T]`` (nonzero = real token). Padding entries are replaced by 0 before
any arithmetic, so garbage there (``-inf`` log-probabilities, ``nan`` values) changes neither the results nor the
gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

from debate_amp.objectives.masking import _as_bool_mask, masked_mean

__all__ = ["gae", "policy_loss", "value_loss"]


def token_rewards(terminal: Tensor, kl: Tensor, mask: Tensor, kl_coef: float) -> Tensor:
    """Per-token rewards of a sequence-level reward with a KL penalty (Ziegler et al. 2019):
    ``r_t = -kl_coef * kl_t`` at every real token, plus ``terminal`` at the sequence's last real token.

    Shapes: ``terminal [B]``, ``kl [B, T]``, ``mask [B, T]``; returns ``[B, T]`` with padding 0 (whatever ``kl``
    holds there). A row without real tokens gets no reward.
    """
    m = _as_bool_mask(mask).expand(kl.shape)
    last = (m.cumsum(1) == m.sum(1, keepdim=True)) & m
    penalty = torch.where(m, -kl_coef * torch.where(m, kl, 0.0), 0.0)
    return penalty + torch.where(last, terminal[:, None].to(kl.dtype), 0.0)


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, gae_lambda: float) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016), per right-padded sequence.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` with ``V = 0`` beyond the last real token (the episode ends there);
    ``A_t = delta_t + gamma * gae_lambda * A_{t+1}``; ``returns_t = A_t + V_t``.

    Shapes: ``rewards [B, T]``, ``values [B, T]``, ``mask [B, T]``; returns ``(advantages [B, T], returns [B, T])``
    with padding set to 0. The mask must be a prefix of ones per row (right padding); a hole in the middle would be
    read as zero reward and zero value, not skipped. Pass detached inputs: these are targets, not losses.
    """
    m = _as_bool_mask(mask)
    # Zeroing padding is what makes V beyond the last real token 0 and keeps the recursion at 0 inside the padding.
    r = torch.where(m, rewards, 0.0)
    v = torch.where(m, values, 0.0)
    next_v = torch.cat([v[:, 1:], torch.zeros_like(v[:, :1])], dim=1)
    deltas = r + gamma * next_v - v
    advantages = torch.zeros_like(deltas)
    running = torch.zeros_like(deltas[:, 0])
    for t in reversed(range(deltas.shape[1])):
        running = deltas[:, t] + gamma * gae_lambda * running
        advantages[:, t] = running
    returns = torch.where(m, advantages + v, 0.0)
    return torch.where(m, advantages, 0.0), returns


def policy_loss(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, clip_range: float
) -> tuple[Tensor, Tensor, Tensor]:
    """PPO clipped surrogate loss (Schulman et al. 2017), as a loss to minimise.

    ``ratio = exp(logprobs - old_logprobs)``;
    ``pg_loss = mean_m(max(-A * ratio, -A * clip(ratio, 1 - clip_range, 1 + clip_range)))``;
    ``clipfrac = mean_m[-A * clip(ratio) > -A * ratio]`` (the clipped term was strictly chosen);
    ``approx_kl = mean_m(0.5 * (logprobs - old_logprobs)^2)``, the estimator TRL's PPOTrainer (and OpenAI
    baselines' ppo2) log. CleanRL logs Schulman's k3, ``mean((ratio - 1) - log ratio)``, instead.

    Shapes: ``logprobs [B, T]``, ``old_logprobs [B, T]``, ``advantages [B, T]``, ``mask [B, T]``; returns three
    scalars. ``old_logprobs`` and ``advantages`` are constants of the update and are detached here, so a caller
    cannot leak gradient into the value head or the rollout; ``clipfrac`` and ``approx_kl`` are detached diagnostics.
    """
    m = _as_bool_mask(mask)
    log_ratio = torch.where(m, logprobs - old_logprobs.detach(), 0.0)
    adv = torch.where(m, advantages.detach(), 0.0)
    ratio = torch.exp(log_ratio)
    pg_losses = -adv * ratio
    pg_losses_clipped = -adv * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    # The max is the pessimistic bound: clipping may remove the incentive to move further, never add one.
    pg_loss = masked_mean(torch.maximum(pg_losses, pg_losses_clipped), m)
    with torch.no_grad():
        clipfrac = masked_mean((pg_losses_clipped > pg_losses).to(ratio.dtype), m)
        approx_kl = masked_mean(0.5 * log_ratio**2, m)
    return pg_loss, clipfrac, approx_kl


def value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip_range_value: float
) -> tuple[Tensor, Tensor]:
    """PPO clipped value loss.

    ``v_clipped = old_values + clip(values - old_values, -clip_range_value, clip_range_value)``;
    ``v_loss = 0.5 * mean_m(max((values - returns)^2, (v_clipped - returns)^2))``;
    ``v_clipfrac = mean_m[(v_clipped - returns)^2 > (values - returns)^2]``.

    Shapes: ``values [B, T]``, ``old_values [B, T]``, ``returns [B, T]``, ``mask [B, T]``; returns two scalars.
    ``old_values`` and ``returns`` are targets and are detached here; ``v_clipfrac`` is a detached diagnostic.
    """
    m = _as_bool_mask(mask)
    v = torch.where(m, values, 0.0)
    old = torch.where(m, old_values.detach(), 0.0)
    ret = torch.where(m, returns.detach(), 0.0)
    v_clipped = old + torch.clamp(v - old, -clip_range_value, clip_range_value)
    v_losses = (v - ret) ** 2
    v_losses_clipped = (v_clipped - ret) ** 2
    v_loss = 0.5 * masked_mean(torch.maximum(v_losses, v_losses_clipped), m)
    with torch.no_grad():
        v_clipfrac = masked_mean((v_losses_clipped > v_losses).to(v_losses.dtype), m)
    return v_loss, v_clipfrac
