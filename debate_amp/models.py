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
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2Model,
    GPT2PreTrainedModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)
from transformers.pytorch_utils import Conv1D

from debate_amp.config import LoraConfig, ModelConfig
from debate_amp.durable import written_whole

PAD, EOS, UNK, PROMPT_END = "<pad>", "</s>", "<unk>", "<prompt_end>"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer with no merges: 4 special tokens + 256 bytes, no files needed.

    Called with its special tokens (``tokenizer(prompt)``), it ends the text with ``<prompt_end>``: that is how the
    prefix-LM (:class:`PrefixLMForCausalLM`) knows where each row's prompt ends. Completions are tokenized with
    ``add_special_tokens=False``, so prompt + completion is the prompt's tokens followed by the completion's.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = {token: i for i, token in enumerate([PAD, EOS, UNK, PROMPT_END])}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet(), key=ord):
        vocab[char] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.TemplateProcessing(
        single=f"$A {PROMPT_END}", pair=f"$A $B {PROMPT_END}", special_tokens=[(PROMPT_END, vocab[PROMPT_END])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        extra_special_tokens={"prompt_end_token": PROMPT_END},
    )


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: list[str]) -> list[list[int]]:
    """Token ids of prompts, the way every model in the project reads them: with the tokenizer's own special tokens
    (``<prompt_end>`` for the tiny model; e.g. a beginning-of-sequence token for a pretrained model)."""
    return [list(ids) for ids in tokenizer(prompts, add_special_tokens=True, return_attention_mask=False).input_ids]


def prompt_end_ids(tokenizer: PreTrainedTokenizerBase) -> list[int] | None:
    vocab = tokenizer.get_vocab()
    return [vocab[PROMPT_END]] if PROMPT_END in vocab else None


# ---------------------------------------------------------------------------------------------------------------
# The tiny model: GPT-2 that reads its prompt bidirectionally and its reply causally (a prefix-LM)


class PrefixLMConfig(GPT2Config):
    """GPT-2's configuration plus the token that ends a prompt (``prompt_end_token_id``) and whether every block
    shares the first block's weights (``shared_layers``: a looped transformer)."""

    model_type = "debate_amp_prefix_lm"

    def __init__(self, prompt_end_token_id: int | None = None, shared_layers: bool = False, **kwargs: Any) -> None:
        self.prompt_end_token_id = prompt_end_token_id
        self.shared_layers = shared_layers
        super().__init__(**kwargs)


def prefix_lm_mask(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None, prompt_end_token_id: int, past_length: int = 0
) -> torch.Tensor:
    """Which keys each query sees: input_ids [B, Q], attention_mask [B, past_length + Q] -> bool [B, 1, Q, K].

    A row's prompt is everything up to and including its first ``prompt_end_token_id``; a key in the prompt is
    seen by every query of its row (the prompt is read bidirectionally), any other key only by itself and later
    queries (the reply is causal); padding is never seen. A query always sees itself, so a padding row is never
    empty (an empty softmax row would put NaN into the values that later layers mix). A chunk without the prompt
    end (a decoding step after the prompt sits in the cache) is plain causal, which is right for reply tokens.
    """
    batch, q_len = input_ids.shape
    k_len = past_length + q_len
    device = input_ids.device
    keys = torch.arange(k_len, device=device)
    queries = torch.arange(past_length, k_len, device=device)
    is_end = input_ids == prompt_end_token_id
    prompt_length = torch.where(is_end.any(1), past_length + is_end.int().argmax(1) + 1, 0)  # [B]
    causal = keys[None, :] <= queries[:, None]  # [Q, K]
    in_prompt = keys[None, :] < prompt_length[:, None]  # [B, K]
    visible = causal[None] | in_prompt[:, None, :]  # [B, Q, K]
    if attention_mask is not None:
        visible = visible & attention_mask[:, None, -k_len:].bool()
    visible = visible | (keys[None, :] == queries[:, None])[None]
    return visible[:, None]


def positions_from_mask(attention_mask: torch.Tensor, q_len: int) -> torch.Tensor:
    """Absolute positions that skip left padding: [B, K] mask -> [B, q_len] (the last q_len columns)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -q_len:]


class PrefixLMModel(GPT2Model):
    """GPT-2's backbone (learned absolute positions) whose prompt is read bidirectionally and whose reply causally.

    Callers pass ordinary 2-D masks; the 4-D mask is built here, in the backbone, from the ``<prompt_end>`` token
    the tokenizer puts after every prompt (:func:`prefix_lm_mask`), so every path through the model gets it: the
    warm start (TRL calls the backbone itself), ``generate`` (prefill, then cached decoding), the value head and PPO
    scoring. Positions skip left padding, so sigma's values sit at the same positions in every row of a batch. Why:
    a tiny causal model could not compose sigma with itself on a CPU budget; reading the prompt both ways, it can
    (DESIGN.md section 9, docs/perm.md).
    """

    config_class = PrefixLMConfig

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.LongTensor | None = None,
        cache: Any = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        cache = kwargs.pop("past_key_values", cache)
        if input_ids is not None and (attention_mask is None or attention_mask.ndim == 2):
            past_length = cache.get_seq_length() if cache is not None else 0
            if attention_mask is None:
                attention_mask = torch.ones(
                    input_ids.shape[0], past_length + input_ids.shape[1], dtype=torch.long, device=input_ids.device
                )
            if position_ids is None:
                position_ids = positions_from_mask(attention_mask, input_ids.shape[1])  # type: ignore[assignment]
            # A position past the table (a row that ended while the batch goes on; a prompt longer than the model)
            # reads the last one instead of failing: ``generate`` stops every unfinished reply inside the table.
            position_ids = position_ids.clamp(max=self.config.n_positions - 1)  # type: ignore[union-attr,assignment]
            visible = prefix_lm_mask(input_ids, attention_mask, self.config.prompt_end_token_id, past_length)
            if self.config._attn_implementation == "eager":  # eager attention adds the mask to the scores
                attention_mask = torch.zeros(visible.shape, dtype=self.dtype, device=visible.device)
                attention_mask.masked_fill_(~visible, torch.finfo(self.dtype).min)
            else:
                attention_mask = visible
        return super().forward(
            input_ids=input_ids,
            cache=cache,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )


class PrefixLMForCausalLM(GPT2LMHeadModel):
    """GPT-2's language model on :class:`PrefixLMModel`: the prompt read both ways, the reply causally."""

    config_class = PrefixLMConfig

    def __init__(self, config: PrefixLMConfig) -> None:
        GPT2PreTrainedModel.__init__(self, config)
        self.transformer = PrefixLMModel(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.post_init()

    def post_init(self) -> None:
        if self.config.shared_layers and self.config.n_layer > 1:
            # every block is block 0: transformers ties the parameters, and saves and loads them once; each block
            # keeps its own layer index, so the KV cache holds one entry per application
            self._tied_weights_keys = {**self._tied_weights_keys, r"transformer.h.(?!0\.)\d+": "transformer.h.0"}
        super().post_init()

    def _adjust_bias(self, output_embeddings: Any, input_embeddings: Any) -> None:
        # transformers fits an output layer's bias to the embedding it is tied to; a shared block's Conv1D keeps its own
        if not isinstance(output_embeddings, Conv1D):
            super()._adjust_bias(output_embeddings, input_embeddings)


AutoConfig.register(PrefixLMConfig.model_type, PrefixLMConfig)
AutoModelForCausalLM.register(PrefixLMConfig, PrefixLMForCausalLM)


FRESH_STUDENT_SEED = 100
"""A fresh student's initial weights (``trainer.student`` / ``ida.student: fresh``) come from ``run.seed`` plus this
(times the round in the IDA loop: round 1's student and the trainer's fresh M start from the same weights)."""


def build_tiny_model(cfg: ModelConfig, seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The tiny prefix-LM (:class:`PrefixLMForCausalLM`) and its byte tokenizer, built offline from ``cfg``."""
    tokenizer = byte_tokenizer()
    config = PrefixLMConfig(
        prompt_end_token_id=tokenizer.get_vocab()[PROMPT_END],
        shared_layers=cfg.shared_layers,
        vocab_size=len(tokenizer),
        n_embd=cfg.hidden_size,
        n_inner=cfg.intermediate_size,
        n_layer=cfg.num_layers,
        n_head=cfg.num_heads,
        n_positions=cfg.max_positions,
        initializer_range=cfg.block_init_std,
        activation_function="gelu",  # torch's own kernel; GPT-2's tanh approximation is several times slower on CPU
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: Any = PrefixLMForCausalLM(config)
        with torch.no_grad():  # larger embeddings: a digit and a position are told apart from the first step
            nn.init.normal_(model.transformer.wte.weight, std=cfg.embedding_init_std)
            nn.init.normal_(model.transformer.wpe.weight, std=cfg.embedding_init_std)
        model.to(dtype=_DTYPES[cfg.dtype])
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer


class ModelLoadError(ValueError):
    """A model directory that does not load; one line naming it and the reason."""


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
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=_DTYPES[cfg.dtype])
    except Exception as e:  # a bad config, missing or corrupt weights or tokenizer: transformers' many error types
        reason = (str(e).strip().splitlines() or [""])[0][:300]
        raise ModelLoadError(f"{path}: cannot load the model ({type(e).__name__}: {reason})") from e
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


def save_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path, files: dict[str, str] | None = None
) -> None:
    """``save_pretrained`` for both, so the directory loads with :func:`load_model` (or any HF tool), and ``files``
    (name: text) beside them; written whole or not at all (:func:`written_whole`)."""
    with written_whole(path) as partial:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        for name, text in (files or {}).items():
            (partial / name).write_text(text)


def peft_lora_config(cfg: LoraConfig, model: nn.Module) -> Any:
    """peft's ``LoraConfig`` for a recipe's ``model.lora`` (``["all-linear"]``: every linear layer but the head)."""
    from peft import LoraConfig as PeftLoraConfig

    targets = list(cfg.target_modules)
    return PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules="all-linear" if targets == ["all-linear"] else targets,
        fan_in_fan_out=any(isinstance(m, Conv1D) for m in model.modules()),  # GPT-2 stores weights transposed
        task_type="CAUSAL_LM",
    )


def apply_lora(model: PreTrainedModel, cfg: LoraConfig, adapter_name: str = "default") -> nn.Module:
    """Wrap ``model`` with trainable LoRA adapters (peft); the base weights are frozen."""
    from peft import get_peft_model

    with warnings.catch_warnings():  # peft asks transformers a question transformers 5 has renamed
        warnings.filterwarnings(
            "ignore", message=r".*is_gradient_checkpointing.* is deprecated", category=FutureWarning
        )
        return get_peft_model(model, peft_lora_config(cfg, model), adapter_name=adapter_name)


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
