"""Tasks: questions with known answers, a simulated weak human, and the formats the models read and write."""

from __future__ import annotations

from debate_amp.config import Config
from debate_amp.tasks.perm import PermTask


def make_task(cfg: Config) -> PermTask:
    """The task a recipe names (``task.name``; ``perm`` is the one there is)."""
    t = cfg.task
    return PermTask(t.n_elements, t.max_power, t.balance, t.heldout_fraction)
