"""The synthetic human as an ``Agent``: a task's simulated weak expert (``Task.human``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from debate_amp.protocol import Posed, Reply, Trace


class Expert(Protocol):
    calls: int

    def respond(self, posed: Posed) -> str: ...


@dataclass
class SyntheticHuman:
    """Answers from the expert's structured reading of the posed question; every answer is one human call."""

    expert: Expert
    name: str = "synthetic"

    @property
    def calls(self) -> int:
        return self.expert.calls

    async def __call__(self, posed: Posed) -> Reply:
        text = self.expert.respond(posed)
        return Reply(text, Trace(f"human:{self.name}", posed, text, human_calls=1))
