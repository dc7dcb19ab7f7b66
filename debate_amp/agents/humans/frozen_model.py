"""The ``model`` human: a frozen local language model standing in for H (an LLM judge).

It answers what it is posed exactly as the policy would be asked (the same rendered prompt), greedily, with its own
weights, which never train. Its replies are human replies in every respect that matters to the procedure: provenance
``human:model``, one human call each, stored in the label store, counted against the sampler's budget. A question
is worked out and counted once (the store keeps one answer): the same question asked again, in the same wave or
before the first call's answer reached the store, gets that answer as a stored one (``from_store``, no human
call). Point ``human.model_path`` at any local Hugging Face directory, e.g. an instruct model fine-tuned to the
task's formats, or a saved A[0] (``runs/<name>/sft``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

from debate_amp.agents.model_agent import ModelAgent
from debate_amp.protocol import GenerateFn, Posed, Reply, Trace


@dataclass
class ModelHuman:
    generate_fn: GenerateFn
    max_batch: int = 256
    reply_limits: dict[str, int] = field(default_factory=dict)
    name: str = "model"
    calls: int = 0
    _agent: ModelAgent = field(init=False, repr=False)
    _answering: dict[str, asyncio.Task[Reply]] = field(default_factory=dict, init=False, repr=False)
    _answered: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._agent = ModelAgent(self.generate_fn, "human", self.max_batch, self.reply_limits)

    async def __call__(self, posed: Posed) -> Reply:
        key = posed.key()
        if key in self._answered:  # worked out before (its frozen weights answer it the same): no new call
            return Reply(self._answered[key], Trace(f"human:{self.name}", posed, self._answered[key], from_store=True))
        answering = self._answering.get(key)
        if answering is not None:  # the same question, already in this wave: one answer, one human call
            reply = await asyncio.shield(answering)
            return Reply(reply.text, replace(reply.trace, posed=posed, human_calls=0, from_store=True))
        # a task of its own: the calls sharing it get the answer even if the first one is cancelled
        answering = self._answering[key] = asyncio.ensure_future(self._answer(posed, key))
        return await asyncio.shield(answering)

    async def _answer(self, posed: Posed, key: str) -> Reply:
        try:
            reply = await self._agent(posed)
        finally:
            del self._answering[key]
        self._answered[key] = reply.text
        self.calls += 1
        return Reply(reply.text, Trace(f"human:{self.name}", posed, reply.text, human_calls=1))


def load_model_human(
    model_path: str, dtype: str = "float32", max_new_tokens: int = 32, answer_tokens: int = 8, max_batch: int = 256
) -> ModelHuman:
    """The frozen LM in ``model_path`` (greedy decoding, on the GPU when there is one) as H."""
    import torch

    from debate_amp.config import ModelConfig
    from debate_amp.generation import hf_generate_fn
    from debate_amp.models import load_model

    model, tokenizer = load_model(ModelConfig(path=model_path, dtype=dtype))  # type: ignore[arg-type]
    model.requires_grad_(False).eval()
    if torch.cuda.is_available():
        model.to("cuda")  # type: ignore[arg-type]
    generate_fn = hf_generate_fn(model, tokenizer, max_new_tokens, temperature=0.0)
    return ModelHuman(generate_fn, max_batch, {"answer": answer_tokens})
