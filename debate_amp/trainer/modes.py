"""The objective's three modes (DESIGN.md section 1, step 4): how L_rl and L_sup make one loss.

Each mode anneals one parameter over training (``objective.anneal``), called ``weight`` in the loop:

- ``weighted``:    loss = alpha * L_rl + (1 - alpha) * L_sup; ``weight`` is alpha.
- ``constrained``: Lagrangian constrained PPO: min L_rl subject to L_sup <= limit, the multiplier lambda moved by dual
                   ascent after each update; ``weight`` is the limit (times L_sup before the first update when
                   ``limit_kind`` is relative).
- ``reward``:      the imitation distance folded into the reward, r <- r - c * d(arg_t, M(""arg_t)); the loss is
                   L_rl alone; ``weight`` is c.

The loop picks one with :func:`objective_mode` and never branches on the mode's name; the math lives in
:mod:`debate_amp.objectives`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from debate_amp.config import ObjectiveConfig
from debate_amp.objectives import combine_constrained, combine_weighted, fold_supervised_into_reward, lagrange_update

if TYPE_CHECKING:
    from debate_amp.trainer.state import TrainState


class ObjectiveMode:
    """The shared shape; a mode overrides what it changes."""

    name = ""
    folds_reward = False  # does the terminal reward need the arguments' supervised distances?

    def __init__(self, objective: ObjectiveConfig) -> None:
        self.objective = objective

    def start(self) -> float:
        """The annealed parameter's value at the start of training."""
        raise NotImplementedError

    def reward(self, terminal: torch.Tensor, distances: Callable[[], torch.Tensor], weight: float) -> torch.Tensor:
        """Each RL segment's terminal reward; ``distances()`` gives d(arg_t, M(""arg_t)) per segment."""
        return terminal

    def limit(self, state: TrainState, sup_loss: Callable[[], float | None], weight: float) -> float:
        """The constraint's limit on L_sup this update (NaN where there is none); ``sup_loss()`` measures L_sup
        (None without supervised examples)."""
        return math.nan

    def loss(self, rl_loss: torch.Tensor, sup_loss: torch.Tensor, weight: float, state: TrainState) -> torch.Tensor:
        raise NotImplementedError

    def sup_weight(self, weight: float, state: TrainState) -> float:
        """L_sup's weight in this update's loss: where it is 0, a step without an RL minibatch has nothing to learn
        and is not taken (AdamW's momentum would carry the RL steps on through it)."""
        raise NotImplementedError

    def after_update(self, state: TrainState, sup_loss: float, limit: float) -> None:
        """Move what the mode learns (the Lagrange multiplier) on the update's averaged L_sup."""

    def tags(self, weight: float, limit: float, sup_loss: float) -> dict[str, float]:
        """The mode's scalars for the trackers (NaN for another mode's, which the trackers leave out)."""
        return {
            "objective/alpha": math.nan,
            "objective/reward_coef": math.nan,
            "constraint/limit": math.nan,
            "constraint/violation": 0.0,
        }

    def transcript_fields(self, weight: float, lagrange_multiplier: float) -> dict[str, Any]:
        """What each saved transcript records of the objective: the values in force while its update ran (the
        multiplier before the update moved it)."""
        return {"alpha": None, "lagrange_multiplier": None}


class Weighted(ObjectiveMode):
    name = "weighted"

    def start(self) -> float:
        return self.objective.alpha

    def loss(self, rl_loss, sup_loss, weight, state):
        return combine_weighted(rl_loss, sup_loss, weight)

    def sup_weight(self, weight, state):
        return 1.0 - weight

    def tags(self, weight, limit, sup_loss):
        return super().tags(weight, limit, sup_loss) | {"objective/alpha": weight}

    def transcript_fields(self, weight, lagrange_multiplier):
        return {"alpha": weight, "lagrange_multiplier": None}


class Constrained(ObjectiveMode):
    """Lagrangian constrained PPO (first-order PPO-Lagrangian; not CPO, see ``lagrange_update``)."""

    name = "constrained"

    def start(self) -> float:
        return self.objective.limit

    def limit(self, state, sup_loss, weight):
        if self.objective.limit_kind == "absolute":
            return weight
        if state.sup_baseline is None:  # relative to L_sup before the first update (kept in checkpoints)
            state.sup_baseline = sup_loss()
        return weight if state.sup_baseline is None else weight * state.sup_baseline

    def loss(self, rl_loss, sup_loss, weight, state):
        return combine_constrained(rl_loss, sup_loss, state.lagrange_multiplier)

    def sup_weight(self, weight, state):
        return state.lagrange_multiplier / (1.0 + state.lagrange_multiplier)

    def after_update(self, state, sup_loss, limit):
        if not math.isnan(sup_loss):
            state.lagrange_multiplier = lagrange_update(
                state.lagrange_multiplier, sup_loss, limit, self.objective.lagrange_lr
            )

    def tags(self, weight, limit, sup_loss):
        return super().tags(weight, limit, sup_loss) | {
            "constraint/limit": limit,
            "constraint/violation": sup_loss - limit,
        }

    def transcript_fields(self, weight, lagrange_multiplier):
        return {"alpha": None, "lagrange_multiplier": lagrange_multiplier}


class Reward(ObjectiveMode):
    name = "reward"
    folds_reward = True

    def start(self) -> float:
        return self.objective.reward_coef

    def reward(self, terminal, distances, weight):
        return fold_supervised_into_reward(terminal, distances(), weight)

    def loss(self, rl_loss, sup_loss, weight, state):
        return rl_loss

    def sup_weight(self, weight, state):
        return 0.0

    def tags(self, weight, limit, sup_loss):
        return super().tags(weight, limit, sup_loss) | {"objective/reward_coef": weight}


OBJECTIVE_MODES: dict[str, type[ObjectiveMode]] = {mode.name: mode for mode in (Weighted, Constrained, Reward)}


def objective_mode(objective: ObjectiveConfig) -> ObjectiveMode:
    """The recipe's mode (``objective.mode``)."""
    return OBJECTIVE_MODES[objective.mode](objective)
