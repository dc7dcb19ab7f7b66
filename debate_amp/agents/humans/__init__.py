"""Humans: every one is an ``Agent`` (DESIGN.md section 3). ``build_human`` maps a recipe's ``human`` section to one."""

from __future__ import annotations

from pathlib import Path

from debate_amp.agents.humans.model import ModelHuman
from debate_amp.agents.humans.replay import ReplayHuman, load_jsonl_labels
from debate_amp.agents.humans.synthetic import SyntheticHuman
from debate_amp.agents.labels import LabeledHuman, LabelStore
from debate_amp.config import HumanConfig
from debate_amp.protocol import Agent
from debate_amp.tasks.perm import PermHuman


def build_human(
    cfg: HumanConfig, seed: int = 0, store: LabelStore | None = None
) -> tuple[Agent, PermHuman | ModelHuman]:
    """The human a recipe names, behind ``store`` when given (every new answer recorded before use).

    Returns the agent and the expert that counts real human calls (for ``replay`` with no fallback the synthetic
    expert is never called; for ``model`` the frozen LM is both).
    """
    expert = PermHuman(error_rate=cfg.error_rate, seed=seed)
    human: Agent = SyntheticHuman(expert)
    if cfg.kind == "model":
        from debate_amp.agents.humans.model import load_model_human

        assert cfg.model_path is not None
        human = expert = load_model_human(cfg.model_path)  # type: ignore[assignment]
    if cfg.kind == "replay":
        assert cfg.replay_from is not None
        path = Path(cfg.replay_from)
        labels = load_jsonl_labels(path) if path.suffix == ".jsonl" else LabelStore(path)
        human = ReplayHuman(labels, fallback=human if cfg.fallback == "synthetic" else None)
    if store is not None:
        human = LabeledHuman(human, store, name=cfg.kind)
    return human, expert
