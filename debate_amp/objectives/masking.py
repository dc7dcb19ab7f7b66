"""Masked reductions over right-padded sequences.

A ``mask [B, T]`` is float or bool; nonzero marks a real token. Padding may hold anything, including ``inf`` and
``nan``: entries are selected with ``torch.where`` rather than multiplied by the mask, because ``0 * inf = nan``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["masked_mean", "masked_var", "whiten"]


def _as_bool_mask(mask: Tensor) -> Tensor:
    """The mask as bool: ``mask != 0``. Shape unchanged."""
    return mask if mask.dtype == torch.bool else mask != 0


def masked_mean(x: Tensor, mask: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """Mean of ``x`` over the real tokens: ``sum(x * m) / sum(m)``, over all entries or along ``dim``.

    Shapes: ``x [B, T]`` (any shape), ``mask`` broadcastable to ``x``; returns a scalar when ``dim`` is None,
    otherwise ``x``'s shape without ``dim`` (e.g. ``[B]`` for ``dim=-1``). An empty selection gives 0, not nan, so
    one sequence without tokens cannot poison a whole batch's loss.
    """
    m = _as_bool_mask(mask)
    selected = torch.where(m, x, 0.0)
    count = m.expand(selected.shape)
    if dim is None:
        return selected.sum() / count.sum().clamp(min=1)
    return selected.sum(dim) / count.sum(dim).clamp(min=1)


def masked_var(x: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """Variance of ``x`` over all real tokens: ``mean_m((x - mean_m(x))^2)``, times ``n / (n - 1)`` if unbiased.

    Shapes: ``x [B, T]`` (any shape), ``mask`` broadcastable to ``x``; returns a scalar. ``n`` is the number of real
    tokens; raises ValueError when ``n < 2`` and unbiased (the Bessel factor would be infinite or undefined).
    """
    m = _as_bool_mask(mask)
    x = torch.where(m, x, 0.0)  # padding may hold inf / nan: out before any arithmetic, or its gradient is nan
    mean = masked_mean(x, m)
    var = masked_mean((x - mean) ** 2, m)
    if unbiased:
        n = m.expand(torch.broadcast_shapes(m.shape, x.shape)).sum()
        if n < 2:
            raise ValueError(f"unbiased masked_var needs at least 2 real tokens, got {int(n)}")
        var = var * n / (n - 1)
    return var


def whiten(x: Tensor, mask: Tensor, shift_mean: bool = True) -> Tensor:
    """Normalise over the real tokens: ``(x - mean_m(x)) / sqrt(var_m(x) + 1e-8)``; ``+ mean_m(x)`` if not shift_mean.

    The variance is the unbiased ``masked_var`` (as in TRL). Shapes: ``x [B, T]``, ``mask [B, T]``; returns
    ``[B, T]`` with padding set to 0; raises ValueError with fewer than 2 real tokens. ``shift_mean=False``
    rescales without centring, e.g. for rewards whose sign carries meaning.
    """
    m = _as_bool_mask(mask)
    x = torch.where(m, x, 0.0)  # as in masked_var: padding never reaches the arithmetic
    mean = masked_mean(x, m)
    whitened = (x - mean) * torch.rsqrt(masked_var(x, m) + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(m, whitened, 0.0)
