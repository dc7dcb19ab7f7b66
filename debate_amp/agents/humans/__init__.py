"""Humans: every one is an ``Agent`` (DESIGN.md section 3). ``build_human`` maps a recipe's ``human`` section to one."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from debate_amp.agents.humans.people import QueuedHuman, TerminalHuman
from debate_amp.agents.humans.replay import ReplayHuman, load_jsonl_labels
from debate_amp.agents.humans.synthetic import SyntheticHuman
from debate_amp.agents.labels import LabeledHuman, LabelStore
from debate_amp.config import HumanConfig
from debate_amp.protocol import Agent
from debate_amp.tasks.base import Task, TaskHuman

if TYPE_CHECKING:  # the frozen model human needs torch: imported only where a recipe asks for it
    from debate_amp.agents.humans.frozen_model import ModelHuman


class HumanSetupError(ValueError):
    """A recipe's human that cannot be built here (one line, for the CLI)."""


@dataclass
class _Uncalled:
    """The source of a replay human without a fallback: nobody is ever called."""

    calls: int = 0


@dataclass
class Human:
    """H as a recipe builds it. ``agent`` answers posed questions (through the label store when there is one);
    ``source`` is what actually works them out and counts them: its ``calls`` are the real human calls (the
    synthetic human's or the frozen model's; a ``replay`` human without a fallback never calls it)."""

    agent: Agent
    source: TaskHuman | ModelHuman | QueuedHuman | _Uncalled

    @property
    def calls(self) -> int:
        return self.source.calls

    @property
    def timeouts(self) -> int:
        """Questions real people did not answer in time (the model's draft stood in); 0 for other humans."""
        return getattr(self.source, "timeouts", 0)

    @property
    def rng(self) -> random.Random | None:
        """The generator behind the source's noise (``human.error_rate``), which checkpoints save."""
        return getattr(self.source, "rng", None)


def build_human(cfg: HumanConfig, task: Task, seed: int = 0, store: LabelStore | None = None) -> Human:
    """The human a recipe names for ``task`` (whose synthetic human it is, or falls back to), behind ``store`` when
    given (every new answer recorded before use). A task without a synthetic human (``Task.synthetic`` False) is
    only asked for one when the recipe names it, which the recipe's checks refuse. Real people (``web``,
    ``terminal``) answer through ``human.store`` if the recipe names one, else ``store``: one of them is needed."""
    if cfg.people:
        if cfg.store is not None:
            store = LabelStore(cfg.store)
        if store is None:
            raise HumanSetupError(
                f"human.kind={cfg.kind} needs a label store to queue the questions for people in: set human.store=PATH "
                "(and answer them with debate-amp serve PATH)"
            )
        people: QueuedHuman
        if cfg.kind == "terminal":
            people = TerminalHuman(store, task.name, cfg.timeout_s, cfg.show_draft, person=cfg.person or _user())
        else:
            people = QueuedHuman(store, task.name, cfg.timeout_s, cfg.show_draft)
        return Human(people, people)
    source: TaskHuman | ModelHuman | QueuedHuman | _Uncalled = _Uncalled()
    agent: Agent | None = None
    if cfg.kind == "synthetic" or (cfg.kind == "replay" and cfg.fallback == "synthetic"):
        synthetic = task.human(error_rate=cfg.error_rate, seed=seed)
        source, agent = synthetic, SyntheticHuman(synthetic)
    if cfg.kind == "model":
        from debate_amp.agents.humans.frozen_model import load_model_human

        assert cfg.model_path is not None
        agent = source = load_model_human(cfg.model_path)
    if cfg.kind == "replay":
        assert cfg.replay_from is not None
        path = Path(cfg.replay_from)
        labels = load_jsonl_labels(path) if path.suffix == ".jsonl" else LabelStore(path)
        agent = ReplayHuman(labels, fallback=agent)
    assert agent is not None
    if store is not None:
        agent = LabeledHuman(agent, store, name=cfg.kind)
    return Human(agent, source)


def _user() -> str:
    return os.environ.get("USER") or "terminal"
