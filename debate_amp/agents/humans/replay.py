"""The replay human: answers recorded earlier, from a label store or a JSONL export of one."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from debate_amp.agents.labels import LabelStore
from debate_amp.protocol import Agent, Posed, Reply, Trace


class UnseenQuestion(LookupError):
    """The replay human was asked a question it has no recorded answer for (and has no fallback)."""


def load_jsonl_labels(path: str | Path) -> dict[str, str]:
    """``{key: answer}`` from a JSONL file of ``{"kind", "prompt", "answer"}`` lines; a bad line names file:line."""
    labels: dict[str, str] = {}
    with open(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                key = hashlib.sha256(f"{row['kind']}\x00{row['prompt']}".encode()).hexdigest()
                labels[key] = str(row["answer"])
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{lineno}: not a label line ({type(e).__name__}: {e})") from None
    return labels


@dataclass
class ReplayHuman:
    """Answers from ``labels`` (a store or a ``{key: answer}`` dict). An unseen question goes to ``fallback`` if
    given (whose answer is then a real human call), else raises :class:`UnseenQuestion`."""

    labels: LabelStore | dict[str, str]
    fallback: Agent | None = None
    name: str = "replay"
    misses: int = field(default=0)

    async def __call__(self, posed: Posed) -> Reply:
        key = posed.key()
        answer = self.labels.get(key)
        if answer is not None:
            return Reply(answer, Trace(f"human:{self.name}", posed, answer, from_store=True))
        self.misses += 1
        if self.fallback is None:
            raise UnseenQuestion(
                f"the replay human has no recorded answer to {posed.kind} question "
                f"{posed.render()!r} (configure a fallback human to answer unseen questions)"
            )
        return await self.fallback(posed)
