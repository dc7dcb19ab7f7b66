"""Shared fixtures: offline everywhere, few threads, a tiny model built in memory (never downloaded)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_model_cfg():
    from debate_amp.config import ModelConfig

    return ModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=128)


@pytest.fixture()
def tiny_model(tiny_model_cfg):
    """A fresh (untrained) tiny model and its byte tokenizer."""
    from debate_amp.models import build_tiny_model

    return build_tiny_model(tiny_model_cfg, seed=0)
