"""The adversary of ``references/000``: Adv(q, a), the probability that a draft answer a to a posed question q is wrong.

A small byte-level transformer encoder of its own, apart from the policy (policy training is untouched):

    x      = bytes(q.render())[-room:] + [SEP] + bytes(a)[:max_len // 2]      the prompt's start is cut to fit
    c      = [1, log(1 - min_t logp_M(a_t))]  (or [0, 0] unknown)            M's own confidence in its draft
    h      = TransformerEncoder(embed(x) + pos + [j = SEP] C c)               [B, L, width]
    logit  = w . mean_{j >= SEP, x_j not PAD}(h_j) + v . c + b,      p_wrong = sigmoid(logit)

c is the draft's lowest token log-probability under M when it was drafted (``Trace.logprobs``): M's own confidence,
which alone ranked M's wrong drafts at AUC 0.80-0.96 where the bytes alone gave 0.73-0.92
(docs/adversarial_ida.md); C and v start at zero, and a draft whose log-probabilities are unknown (a scripted model,
a human's text, a state saved before them) reads c = 0, the bytes alone.

It learns online, by binary cross-entropy, from every node of the trees where both M's draft and the human's (or
the amplified) answer are known (``Trace.replaced``): the label is wrong = draft.strip() != answer.strip()
(:func:`labelled_nodes`). One node in five, by a hash of its prompt, is held out and never trained on; the
held-out AUC and expected calibration error (:func:`auc`, :func:`ece`) are logged each update. The sampler that uses
it is ``debate_amp.samplers.Adversarial``; the tree it steers is ``debate_amp.combinators.AdversarialAmp``.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from debate_amp.protocol import UNKNOWN, Trace

PAD, SEP = 256, 257
VOCAB = 258
HELDOUT_EVERY = 5
HELDOUT_SIZE = 512
"""Held-out nodes kept: the latest, so that the held-out AUC and ECE are of M's recent drafts. M changes under the
adversary: with 2,048 (about ten of the bench's updates) the set was mostly drafts from updates ago, when M was
wrong on whole depths it has since learned (docs/adversarial_ida.md, 2026-12-02)."""


# ---------------------------------------------------------------------------------------------------------------
# Metrics (pure)


def auc(p_wrong: Sequence[float], wrong: Sequence[bool]) -> float:
    """Area under the ROC curve of ``p_wrong`` for "the draft is wrong": the probability that a wrong draft scores
    above a right one, ties counting one half (the Mann-Whitney U statistic over n_wrong * n_right). NaN when either
    class is missing."""
    pos = [p for p, w in zip(p_wrong, wrong, strict=True) if w]
    neg = [p for p, w in zip(p_wrong, wrong, strict=True) if not w]
    if not pos or not neg:
        return float("nan")
    # ranks of the pooled scores, tied scores sharing their mean rank (1-based)
    order = sorted(range(len(p_wrong)), key=lambda i: p_wrong[i])
    ranks = [0.0] * len(order)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and p_wrong[order[j + 1]] == p_wrong[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, w in zip(ranks, wrong, strict=True) if w)
    u = rank_sum - len(pos) * (len(pos) + 1) / 2
    return u / (len(pos) * len(neg))


def ece(p_wrong: Sequence[float], wrong: Sequence[bool], bins: int = 10) -> float:
    """Expected calibration error: sum_b (n_b / n) |mean_{i in b} wrong_i - mean_{i in b} p_i| over ``bins`` equal
    bins of [0, 1] (p = 1 in the last). NaN for no examples."""
    if not p_wrong:
        return float("nan")
    count = [0] * bins
    total_p = [0.0] * bins
    total_wrong = [0.0] * bins
    for p, w in zip(p_wrong, wrong, strict=True):
        b = min(int(p * bins), bins - 1)
        count[b] += 1
        total_p[b] += p
        total_wrong[b] += float(w)
    n = len(p_wrong)
    return sum(abs(total_wrong[b] - total_p[b]) / n for b in range(bins) if count[b])


# ---------------------------------------------------------------------------------------------------------------
# Labels


@dataclass(frozen=True)
class AdversaryExample:
    """A labelled node: the posed question as a model reads it, M's draft, whether the draft was wrong, and the
    draft's lowest token log-probability under M when it was drafted (None: not known)."""

    prompt: str
    draft: str
    wrong: bool
    min_logprob: float | None = None


def confidence_features(min_logprobs: Sequence[float | None]) -> torch.Tensor:
    """[n, 2]: (1, log(1 - min logprob)) for a known lowest log-probability (0 for a certain draft, growing with
    M's doubt: log1p keeps a sampled -12 within reach of a greedy -0.01), (0, 0) for an unknown one."""
    rows = [[0.0, 0.0] if lp is None else [1.0, math.log1p(-min(0.0, lp))] for lp in min_logprobs]
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), 2)


def labelled_nodes(trace: Trace) -> list[AdversaryExample]:
    """Every node of a tree whose answer was used and where M's draft is known beside it: a human's answer that
    replaced M's draft (Approx), or an amplified answer that replaced M's direct one (AdversarialAmp). A node whose
    answer is ``?`` (no answer) labels nothing."""
    examples = []
    stack = [trace]
    while stack:  # the used nodes (not the drafts themselves), as debate_amp.trainer.rollout.used_nodes
        node = stack.pop()
        stack.extend(reversed(node.children))
        answered = node.source.startswith("human:") or node.op == "amp"
        if node.replaced is None or not answered or node.text.strip() == UNKNOWN:
            continue
        draft = node.replaced.text.strip()
        wrong = draft != node.text.strip()
        examples.append(AdversaryExample(node.posed.render(), draft, wrong, node.replaced.min_logprob()))
    return examples


def is_heldout(prompt: str, every: int = HELDOUT_EVERY) -> bool:
    """One prompt in ``every``, by a hash of its text: the same question is always on the same side."""
    return int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16) % every == 0


def encode(prompt: str, draft: str, max_len: int) -> list[int]:
    """Bytes of ``prompt`` (its start cut to fit), SEP, bytes of ``draft`` (at most half of ``max_len``)."""
    answer = list(draft.encode()[: max_len // 2])
    room = max_len - 1 - len(answer)
    question = list(prompt.encode()[-room:]) if room > 0 else []
    return question + [SEP] + answer


# ---------------------------------------------------------------------------------------------------------------
# The model


@dataclass(frozen=True)
class AdversaryShape:
    width: int = 64
    layers: int = 2
    heads: int = 4
    max_len: int = 192


CONFIDENCE_KEYS = ("confidence.weight", "confidence_head.weight")
"""The weights that read M's confidence (added 2026-12-02): a state or file saved before them loads with them at
zero, which scores as it did."""


class AdversaryNet(nn.Module):
    """Bytes and M's confidence -> one logit of "the draft is wrong": embeddings and learned positions (the
    confidence features projected onto SEP's), a pre-norm transformer encoder (bidirectional), mean pooling over
    SEP and the draft, a linear head, plus a linear term in the confidence features."""

    def __init__(self, shape: AdversaryShape) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, shape.width)
        self.pos = nn.Embedding(shape.max_len, shape.width)
        layer = nn.TransformerEncoderLayer(
            shape.width, shape.heads, 4 * shape.width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, shape.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(shape.width)
        self.head = nn.Linear(shape.width, 1)
        # no biases: unknown confidence (features 0) adds exactly nothing
        self.confidence = nn.Linear(2, shape.width, bias=False)
        self.confidence_head = nn.Linear(2, 1, bias=False)
        for emb in (self.embed, self.pos):
            nn.init.normal_(emb.weight, std=0.1)
        for linear in (self.confidence, self.confidence_head):
            nn.init.zeros_(linear.weight)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, confidence: torch.Tensor | None = None) -> torch.Tensor:
        """ids [B, L] (PAD where mask is 0), mask [B, L] bool, confidence [B, 2] (:func:`confidence_features`;
        None: all unknown) -> logits [B]. The pool is over SEP and the draft: the draft's positions, having read
        the question, carry the verdict (a mean over the whole prompt dilutes it: on perm the plain mean sat at AUC
        0.5 several times longer)."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.embed(ids) + self.pos(positions)
        if confidence is not None:
            x = x + (ids == SEP).unsqueeze(-1) * self.confidence(confidence).unsqueeze(1)
        h = self.encoder(x, src_key_padding_mask=~mask)
        pool = mask & (torch.cumsum((ids == SEP).long(), dim=1) > 0)
        h = self.norm(h) * pool.unsqueeze(-1)
        pooled = h.sum(1) / pool.sum(1, keepdim=True).clamp(min=1)
        logits = self.head(pooled).squeeze(-1)
        if confidence is not None:
            logits = logits + self.confidence_head(confidence).squeeze(-1)
        return logits

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        """Load ``weights``; those of :data:`CONFIDENCE_KEYS` may be missing (saved before them): they are zeroed."""
        missing, unexpected = self.load_state_dict(weights, strict=False)
        if unexpected or set(missing) - set(CONFIDENCE_KEYS):
            raise RuntimeError(f"adversary weights do not match: missing {missing}, unexpected {unexpected}")
        for key in missing:
            nn.init.zeros_(self.get_parameter(key))


# ---------------------------------------------------------------------------------------------------------------
# The adversary: scoring, online learning, held-out evaluation, state


class Adversary:
    """Adv(q, a) with its optimizer and its labelled nodes (the last ``buffer_size`` for training, the last
    ``heldout_size`` held out). ``rng`` draws the minibatches (checkpoints save it with the run's generators)."""

    def __init__(
        self,
        shape: AdversaryShape = AdversaryShape(),
        *,
        learning_rate: float = 1e-3,
        batch_size: int = 64,
        steps: int = 16,
        buffer_size: int = 8192,
        heldout_size: int = HELDOUT_SIZE,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.shape = shape
        self.batch_size, self.steps = batch_size, steps
        self.device = torch.device(device)
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # the same initial weights on every process, whatever the global generator drew
        self.net = AdversaryNet(shape).to(self.device)
        torch.random.set_rng_state(generator_state)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=learning_rate, weight_decay=0.01)
        self.train_buffer: deque[AdversaryExample] = deque(maxlen=buffer_size)
        self.heldout: deque[AdversaryExample] = deque(maxlen=heldout_size)
        self.rng = random.Random(seed)

    # -- scoring -------------------------------------------------------------------------------------------------

    def _batch(
        self, pairs: Sequence[tuple[str, str]], min_logprobs: Sequence[float | None] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = [encode(prompt, draft, self.shape.max_len) for prompt, draft in pairs]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), PAD, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        ids = ids.to(self.device)
        confidence = confidence_features([None] * len(rows) if min_logprobs is None else min_logprobs)
        return ids, ids != PAD, confidence.to(self.device)

    @torch.no_grad()
    def score(
        self, pairs: Sequence[tuple[str, str]], min_logprobs: Sequence[float | None] | None = None, chunk: int = 512
    ) -> list[float]:
        """p_wrong of each (prompt, draft), no gradient; ``min_logprobs[i]``: draft i's lowest token log-probability
        under M (``Trace.min_logprob``; None or absent: not known)."""
        if not pairs:
            return []
        if min_logprobs is not None and len(min_logprobs) != len(pairs):
            raise ValueError(f"{len(min_logprobs)} min_logprobs for {len(pairs)} pairs")
        was_training = self.net.training
        self.net.eval()
        out: list[float] = []
        for start in range(0, len(pairs), chunk):
            part = None if min_logprobs is None else min_logprobs[start : start + chunk]
            ids, mask, confidence = self._batch(pairs[start : start + chunk], part)
            out += torch.sigmoid(self.net(ids, mask, confidence).float()).tolist()
        self.net.train(was_training)
        return out

    def score_examples(self, examples: Sequence[AdversaryExample]) -> list[float]:
        """p_wrong of labelled nodes, each with its own draft's confidence."""
        return self.score([(e.prompt, e.draft) for e in examples], [e.min_logprob for e in examples])

    # -- learning ------------------------------------------------------------------------------------------------

    def update(self, examples: Sequence[AdversaryExample], steps: int | None = None) -> float:
        """``steps`` (default ``self.steps``) AdamW steps of binary cross-entropy, each on a minibatch drawn from
        ``examples`` with replacement; -> the mean loss (NaN without examples)."""
        if not examples:
            return float("nan")
        self.net.train()
        losses = []
        for _ in range(self.steps if steps is None else steps):
            part = [examples[self.rng.randrange(len(examples))] for _ in range(min(self.batch_size, len(examples)))]
            ids, mask, confidence = self._batch([(e.prompt, e.draft) for e in part], [e.min_logprob for e in part])
            labels = torch.tensor([float(e.wrong) for e in part], device=self.device)
            loss = F.binary_cross_entropy_with_logits(self.net(ids, mask, confidence).float(), labels)
            self.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
            self.optimizer.step()
            losses.append(float(loss.detach()))
        return sum(losses) / len(losses)

    def learn(self, examples: Iterable[AdversaryExample], steps: int | None = None) -> dict[str, float]:
        """One update's online learning: the new labelled nodes split (held out or not, by :func:`is_heldout`) into
        the buffers, ``steps`` (default ``self.steps``) on the training buffer, then the held-out metrics. ->
        ``adversary/`` scalars; ``adversary/confidence_auc`` is M's own confidence alone (minus the lowest token
        log-probability) on the held-out nodes that have it, the baseline the adversary should beat."""
        new = list(examples)
        for e in new:
            (self.heldout if is_heldout(e.prompt) else self.train_buffer).append(e)
        loss = self.update(list(self.train_buffer), steps)
        heldout = list(self.heldout)
        scores = self.score_examples(heldout)
        labels = [e.wrong for e in heldout]
        known = [e for e in heldout if e.min_logprob is not None]
        return {
            "adversary/loss": loss,
            "adversary/auc": auc(scores, labels),
            "adversary/confidence_auc": auc([-(e.min_logprob or 0.0) for e in known], [e.wrong for e in known]),
            "adversary/ece": ece(scores, labels),
            "adversary/examples": float(len(new)),
            "adversary/wrong_rate": sum(e.wrong for e in new) / len(new) if new else float("nan"),
            "adversary/heldout": float(len(heldout)),
        }

    # -- state ---------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The weights, the optimizer's state dict and the buffers (checkpoints split tensors from the rest)."""
        return {
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "train": [asdict(e) for e in self.train_buffer],
            "heldout": [asdict(e) for e in self.heldout],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s state; one saved before the confidence weights (:data:`CONFIDENCE_KEYS`)
        restores the rest, those weights at zero with fresh optimizer moments."""
        self.net.load_weights(state["net"])
        optimizer = state["optimizer"]
        current = self.optimizer.state_dict()
        saved_params = sum(len(group["params"]) for group in optimizer["param_groups"])
        current_params = sum(len(group["params"]) for group in current["param_groups"])
        if saved_params < current_params:  # saved before the confidence weights: theirs are the last parameters
            (group,) = optimizer["param_groups"]
            optimizer = {
                "state": optimizer["state"],
                "param_groups": [{**group, "params": list(range(current_params))}],
            }
        self.optimizer.load_state_dict(optimizer)
        self.train_buffer.clear()
        self.train_buffer.extend(AdversaryExample(**e) for e in state["train"])
        self.heldout.clear()
        self.heldout.extend(AdversaryExample(**e) for e in state["heldout"])

    def save(self, path: str | Path) -> None:
        """The weights (safetensors, the shape in its metadata): ``RUN/adversary.safetensors`` at the end of a run."""
        from safetensors.torch import save_file

        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.net.state_dict().items()}
        save_file(tensors, str(path), metadata={k: str(v) for k, v in asdict(self.shape).items()})

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu", **kwargs: Any) -> Adversary:
        """An adversary with the weights :meth:`save` wrote (a fresh optimizer and empty buffers); ``kwargs`` as for
        the constructor (``steps``, ``seed``, ...)."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        shape = AdversaryShape(**{k: int(v) for k, v in metadata.items() if k in AdversaryShape.__dataclass_fields__})
        adversary = cls(shape, device=device, **kwargs)
        adversary.net.load_weights(load_file(str(path), device=str(adversary.device)))
        return adversary
