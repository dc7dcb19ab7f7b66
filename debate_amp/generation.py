"""Generation: the batched ``generate`` over a Hugging Face causal LM, and the generate functions agents call.

A generate function maps prompts (and optional per-reply token limits) to a ``Generation`` (``protocol.py``, with
``GenerateFn``, so that scripted models need no torch): the replies' texts, token ids and log-probabilities.
``ModelAgent`` (``agents/model_agent.py``) queues prompts into waves and calls one; :func:`hf_generate_fn` builds
one over a model and tokenizer; scripted models (a task's ``perfect_generate``) are plain functions of the same
shape.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedTokenizerBase

from debate_amp.models import prompt_end_ids
from debate_amp.protocol import GenerateFn, Generation


def hf_generate_fn(
    model, tokenizer, max_new_tokens: int = 32, temperature: float = 1.0, top_p: float = 1.0
) -> GenerateFn:
    """A generate function over a Hugging Face causal LM (left padding, KV cache; temperature 0 is greedy)."""

    def run(prompts: list[str], limits: list[int | None] | None = None) -> Generation:
        was_training = model.training
        model.eval()
        row_limits = None
        if limits is not None and any(limit is not None for limit in limits):
            row_limits = [max_new_tokens if limit is None else limit for limit in limits]
        try:
            return generate(
                model,
                tokenizer,
                prompts,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                row_limits=row_limits,
            )
        finally:
            model.train(was_training)

    return run


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


def _positions(model: Any) -> int | None:
    """The longest sequence a model's position table holds (GPT-2's ``n_positions``), or None for one without a
    table to run past (rotary positions)."""
    config = getattr(model, "config", None)
    value = getattr(config, "n_positions", None)
    return value if isinstance(value, int) else None


class _RowsInsideTable(logging.Filter):
    """Drops transformers' warning that a generate call ran past the model's position table. It counts the padded
    batch's width; with left padding each row's positions start at its first token, and :func:`generate` caps every
    row inside the table, so a long prompt beside short ones does not run past it (tests/unit/test_models.py). Not
    applied when a prompt is itself longer than the table: that row does run past it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "exceeded the model's predefined maximum length" not in record.getMessage()


@contextlib.contextmanager
def _rows_inside_table(active: bool) -> Iterator[None]:
    logger = logging.getLogger("transformers.generation.stopping_criteria")
    quiet = _RowsInsideTable()
    if active:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


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

    Prompts are tokenized as :func:`encode_prompts` does (with the tokenizer's special tokens).

    ``row_limits[i]`` below ``max_new_tokens`` caps reply i at that many tokens, its end-of-sequence included. A
    model with a fixed table of positions (the tiny model's 128) also caps each reply where its row would run past
    the table: a long debate prompt gets a shorter reply, and the rest of the batch is not cut short by it.
    """
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=True).to(model.device)
    greedy = temperature == 0.0
    processors = LogitsProcessorList()
    table = _positions(model)
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    if table is not None:
        room = [max(1, table - int(n)) for n in lengths]
        if min(room) < max_new_tokens:
            row_limits = [min(r, limit) for r, limit in zip(room, row_limits or room, strict=True)]
            max_new_tokens = min(max_new_tokens, max(room))
    if row_limits is not None:
        # a row allowed max_new_tokens or more is left alone (no forced end-of-sequence), like an unlimited one
        limits = [max(1, limit) if limit < max_new_tokens else max_new_tokens + 1 for limit in row_limits]
        processors.append(RowLimits(batch["input_ids"].shape[1], limits, tokenizer.eos_token_id))
    with _rows_inside_table(table is not None and max(lengths) < table):
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
            suppress_tokens=prompt_end_ids(tokenizer),  # a reply never ends a prompt
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
