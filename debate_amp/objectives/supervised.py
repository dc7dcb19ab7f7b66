"""The supervised (imitation) loss L_sup."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from debate_amp.objectives.masking import masked_mean

__all__ = ["supervised_nll"]


def supervised_nll(logits: Tensor, labels: Tensor, ignore_index: int = -100) -> tuple[Tensor, Tensor]:
    """Token-level negative log-likelihood ``nll_t = -log_softmax(logits[:, t])[labels[:, t]]``.

    ``mean_nll = sum_{t not ignored} nll_t / #not ignored`` over the whole batch (a token mean, so long sequences
    weigh more); ``per_sequence_nll[b]`` is the same mean within sequence ``b``, 0 if it has no labelled token.
    No causal shift is applied: the caller aligns ``logits[:, t]`` with ``labels[:, t]``.

    Shapes: ``logits [B, T, V]``, ``labels [B, T]`` (int, ``ignore_index`` for unlabelled positions); returns
    ``(mean_nll [], per_sequence_nll [B])`` in float32 or wider.
    """
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            f"expected logits [B, T, V] and labels [B, T], got {tuple(logits.shape)}, {tuple(labels.shape)}"
        )
    batch, length, vocab = logits.shape
    # Upcast half precision (bf16 keeps ~3 significant digits, too few for a log-sum-exp over a large vocabulary);
    # float64 stays float64.
    token_nll = F.cross_entropy(
        logits.to(torch.promote_types(logits.dtype, torch.float32)).reshape(batch * length, vocab),
        labels.reshape(batch * length),
        ignore_index=ignore_index,
        reduction="none",
    ).reshape(batch, length)
    labelled = labels != ignore_index
    return masked_mean(token_nll, labelled), masked_mean(token_nll, labelled, dim=-1)
