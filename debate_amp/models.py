"""Models: the tiny offline model, local Hugging Face model directories, LoRA, the value head, batched generation.

Nothing here contacts a model hub: the tiny model is built from a config with a byte-level tokenizer made in
memory, and directories load with ``local_files_only=True``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from debate_amp.agents.model import Generation
from debate_amp.config import LoraConfig, ModelConfig

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer with no merges: 3 special tokens + 256 bytes, no files needed.

    Unlike ``ByT5Tokenizer`` it adds no end-of-sequence token on its own, so a prompt tokenizes to a prefix of
    prompt + completion (which TRL's SFTTrainer relies on to mask the prompt).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {token: i for i, token in enumerate([PAD, EOS, UNK])}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet(), key=ord):
        vocab[char] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=PAD, eos_token=EOS, unk_token=UNK)


def build_tiny_model(cfg: ModelConfig, seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A small Llama-style causal LM (about 1M parameters at the defaults) and its byte tokenizer."""
    tokenizer = byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_positions,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: Any = LlamaForCausalLM(config)
        model.to(dtype=_DTYPES[cfg.dtype])
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer


def load_model(
    cfg: ModelConfig, path: str | Path | None = None, seed: int = 0
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load ``path`` (or ``cfg.path``) as a local Hugging Face model directory, or build the tiny model if neither."""
    path = path if path is not None else cfg.path
    if path is None:
        return build_tiny_model(cfg, seed=seed)
    path = Path(path)
    if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        return _load_adapter(cfg, path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a Hugging Face model directory (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=_DTYPES[cfg.dtype])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _load_adapter(cfg: ModelConfig, path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A LoRA adapter directory (a LoRA run's ``model/``): its base model with the adapter merged in."""
    import json

    from peft import PeftModel

    base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base or not (Path(base) / "config.json").is_file():
        raise FileNotFoundError(f"{path}: a LoRA adapter whose base model directory is not found ({base!r})")
    model, _ = load_model(cfg, base)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    merged = PeftModel.from_pretrained(model, path).merge_and_unload()
    return merged, tokenizer  # type: ignore[return-value]


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path) -> None:
    """``save_pretrained`` for both, so the directory loads with :func:`load_model` (or any HF tool)."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def apply_lora(model: PreTrainedModel, cfg: LoraConfig, adapter_name: str = "default") -> nn.Module:
    """Wrap ``model`` with trainable LoRA adapters (peft); the base weights are frozen."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    peft_config = PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():  # peft asks transformers a question transformers 5 has renamed
        warnings.filterwarnings(
            "ignore", message=r".*is_gradient_checkpointing.* is deprecated", category=FutureWarning
        )
        return get_peft_model(model, peft_config, adapter_name=adapter_name)


class ValueHead(nn.Module):
    """A scalar value per position from the LM's last hidden state: V_t = w . h_t + b."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.summary.weight)
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """hidden_states [B, T, H] -> values [B, T]"""
        return self.summary(hidden_states.to(self.summary.weight.dtype)).squeeze(-1)


def hidden_size_of(model: nn.Module) -> int:
    config: Any = model.config
    return int(getattr(config, "hidden_size", None) or config.get_text_config().hidden_size)


# ---------------------------------------------------------------------------------------------------------------
# Batched generation


class RowLimits(LogitsProcessor):
    """Ends row i after ``limits[i]`` new tokens by forcing end-of-sequence.

    A batch runs until its longest reply ends; with per-row limits a reply that needs a few tokens (an element)
    does not keep the whole wave waiting on a garbled one that runs to the global limit. The trainer scores a forced
    end-of-sequence like any other token of the reply.
    """

    def __init__(self, prompt_length: int, limits: list[int], eos_token_id: int) -> None:
        self.prompt_length = prompt_length
        self.limits = torch.tensor(limits)
        self.eos_token_id = eos_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        done = (input_ids.shape[1] - self.prompt_length) >= self.limits.to(scores.device) - 1
        if done.any():
            scores[done] = float("-inf")
            scores[done, self.eos_token_id] = 0.0
        return scores


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    top_p: float = 1.0,
    row_limits: list[int] | None = None,
) -> Generation:
    """One batched ``generate`` call over ``prompts`` (left padding, KV cache). ``temperature=0`` is greedy.

    ``row_limits[i]`` below ``max_new_tokens`` caps reply i at that many tokens, its end-of-sequence included.
    """
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    greedy = temperature == 0.0
    processors = LogitsProcessorList()
    if row_limits is not None:
        # a row allowed max_new_tokens or more is left alone (no forced end-of-sequence), like an unlimited one
        limits = [max(1, limit) if limit < max_new_tokens else max_new_tokens + 1 for limit in row_limits]
        processors.append(RowLimits(batch["input_ids"].shape[1], limits, tokenizer.eos_token_id))
    out = model.generate(
        **batch,
        logits_processor=processors,
        max_new_tokens=max_new_tokens,
        do_sample=not greedy,
        temperature=None if greedy else temperature,
        top_p=None if greedy else top_p,
        top_k=None if greedy else 0,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        return_dict_in_generate=True,
        output_scores=True,
    )
    new_tokens = out.sequences[:, batch["input_ids"].shape[1] :]
    scores = torch.stack(out.scores, dim=1).float()  # [B, T_new, V], processed (temperature / top-p) logits
    logprobs = torch.log_softmax(scores, dim=-1).gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)
    texts, token_ids, token_logprobs = [], [], []
    for row, row_logprobs in zip(new_tokens.tolist(), logprobs.tolist(), strict=True):
        n = row.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in row else len(row)
        texts.append(str(tokenizer.decode(row[:n], skip_special_tokens=True)))
        token_ids.append(row[:n])
        token_logprobs.append(row_logprobs[:n])
    return Generation(texts, token_ids, token_logprobs)
