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


@pytest.fixture()
def local_llama_dir(tmp_path):
    """A small Llama-style model saved like a downloaded Hugging Face directory: a user's own model, with causal
    attention and rotary positions (what ``model.path`` points at)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from debate_amp.models import byte_tokenizer, save_model

    tokenizer = byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    save_model(LlamaForCausalLM(config), tokenizer, tmp_path / "local_model")
    return tmp_path / "local_model"


@pytest.fixture()
def freeze_counts(monkeypatch):
    """``watch(module, name)`` wraps ``module.name`` so that each call first records ``gc.get_freeze_count()``
    (how many objects are hidden from the collector's full passes) into the list it returns."""
    import gc

    def watch(module, name: str) -> list[int]:
        counts: list[int] = []
        inner = getattr(module, name)

        def recording(*args, **kwargs):
            counts.append(gc.get_freeze_count())
            return inner(*args, **kwargs)

        monkeypatch.setattr(module, name, recording)
        return counts

    return watch
