"""Pure objective math for the PPO trainer: tensors in, tensors out, no configuration objects.

Sequences are right-padded with ``mask [B, T]`` (float or bool, nonzero = real token). The only stateful objects
are the two KL coefficient controllers.
"""

from __future__ import annotations

from debate_amp.objectives.kl import AdaptiveKLController, FixedKLController, KLKind, kl_penalty
from debate_amp.objectives.masking import masked_mean, masked_var, whiten
from debate_amp.objectives.mixing import (
    combine_constrained,
    combine_weighted,
    fold_supervised_into_reward,
    lagrange_update,
)
from debate_amp.objectives.ppo import gae, policy_loss, token_rewards, value_loss
from debate_amp.objectives.supervised import supervised_nll

__all__ = [
    "AdaptiveKLController",
    "FixedKLController",
    "KLKind",
    "combine_constrained",
    "combine_weighted",
    "fold_supervised_into_reward",
    "gae",
    "kl_penalty",
    "lagrange_update",
    "masked_mean",
    "masked_var",
    "policy_loss",
    "supervised_nll",
    "token_rewards",
    "value_loss",
    "whiten",
]
