"""``ModelAgent``: a causal LM (the policy or the target) as an ``Agent``, with wave batching.

Per-question code is plain async code that mirrors the math; every concurrent call to a ``ModelAgent`` queues its
prompt. When the event loop has nothing else to run (every debate or Amp tree is waiting on a model), the wave is
flushed: one batched ``generate`` per model for everything pending (DESIGN.md section 2, "Batching").
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field

from debate_amp.protocol import GenerateFn, Posed, Reply, Trace


class _Waves:
    """One per event loop: flushes every batcher with pending prompts once nothing else can run."""

    def __init__(self) -> None:
        self.batchers: list[Batcher] = []
        self.flusher: asyncio.Task[None] | None = None

    def wake(self, batcher: Batcher) -> None:
        if batcher not in self.batchers:
            self.batchers.append(batcher)
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.get_running_loop().create_task(self._flush_when_idle())

    async def _flush_when_idle(self) -> None:
        loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)  # CPython's queue of runnable callbacks
        spins = 0
        while True:
            await asyncio.sleep(0)
            spins += 1
            # Idle: no other callback is runnable, so every caller is parked on a model (or on real I/O).
            # A loop without a visible ready queue gets a fixed number of spins instead.
            if (ready is not None and not ready) or (ready is None and spins >= 16):
                break
        batchers, self.batchers = self.batchers, []
        self.flusher = None
        for batcher in batchers:
            batcher.flush()


_WAVES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Waves] = weakref.WeakKeyDictionary()


@dataclass
class Batcher:
    """Queues prompts and answers a whole wave with batched calls of at most ``max_batch`` prompts."""

    generate_fn: GenerateFn
    max_batch: int = 256
    generate_calls: int = 0
    waves: int = 0
    prompts_seen: int = 0
    _pending: list[tuple[str, int | None, asyncio.Future[tuple[str, list[int], list[float]]]]] = field(
        default_factory=list
    )

    async def submit(self, prompt: str, limit: int | None = None) -> tuple[str, list[int], list[float]]:
        """Queue ``prompt`` (its reply capped at ``limit`` tokens if given) and wait for the wave's answer."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[str, list[int], list[float]]] = loop.create_future()
        self._pending.append((prompt, limit, future))
        _WAVES.setdefault(loop, _Waves()).wake(self)
        return await future

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        self.waves += 1
        for start in range(0, len(pending), self.max_batch):
            chunk = pending[start : start + self.max_batch]
            self.generate_calls += 1
            self.prompts_seen += len(chunk)
            try:
                out = self.generate_fn([prompt for prompt, _, _ in chunk], [limit for _, limit, _ in chunk])
            except Exception as e:  # every caller in the wave sees the failure
                for _, _, future in chunk:
                    if not future.done():
                        future.set_exception(e)
                continue
            for i, (_, _, future) in enumerate(chunk):
                if not future.done():
                    future.set_result((out.texts[i], list(out.token_ids[i]), list(out.logprobs[i])))


@dataclass
class ModelAgent:
    """The policy or the target as an agent. ``role`` is ``policy`` or ``target`` (the trace's provenance)."""

    generate_fn: GenerateFn
    role: str = "policy"
    max_batch: int = 256
    reply_limits: dict[str, int] = field(default_factory=dict)  # posed kind -> longest reply, in tokens
    batcher: Batcher = field(init=False)

    def __post_init__(self) -> None:
        self.batcher = Batcher(self.generate_fn, self.max_batch)

    async def __call__(self, posed: Posed) -> Reply:
        text, token_ids, logprobs = await self.batcher.submit(posed.render(), self.reply_limits.get(posed.kind))
        trace = Trace(f"model:{self.role}", posed, text, token_ids=token_ids, logprobs=logprobs)
        return Reply(text.strip(), trace)
