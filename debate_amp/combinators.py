"""Combinators: agents in, agent out (``references/001``, DESIGN.md section 2).

    Approx(H, M)(Q) = H(Q) if Samp(Q, M(Q)) else M(Q)
    Amp(H', M)(Q)   = H'("What answer would you give to Q given access to M?")
    Amp~(H, M)      = Amp(Approx(H, M), M)
    Amp~^n(H, M)    = Amp(Approx(H, M), Amp~^(n-1)(H, M)),   Amp~^0(H, M) = M

Amp runs the two-subquestion protocol of ``references/000``: the asker is posed a ``step`` question with the
workspace of sub-answers so far and replies with an answer or exactly two subquestions; M answers both (the second
may use the first's answer as ``#1``, and then waits for it); repeat until an answer or ``max_rounds`` rounds of
subquestions, after which the asker is posed the step once more and anything but an answer gives ``?``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from debate_amp.protocol import UNKNOWN, Agent, Answer, Ask, ConsultsDraft, Posed, Reply, Trace
from debate_amp.samplers import Sampler


@dataclass
class Approx:
    """The model answers; the sampler, seeing the question and the model's reply, may hand the call to the human.

    When it does, the human's reply replaces the model's and the trace keeps both (``trace.replaced`` is the model's
    draft): the pair is training data. A human who consults the draft (a real person, ``ConsultsDraft``) is shown
    it; if they do not answer in time the draft stands, its trace marked ``timed_out``.
    """

    human: Agent
    model: Agent
    sampler: Sampler

    async def __call__(self, posed: Posed) -> Reply:
        draft = await self.model(posed)
        if not self.sampler(posed, draft):
            return draft
        if isinstance(self.human, ConsultsDraft):
            reply = await self.human.consult(posed, draft)
            if reply.trace.timed_out:  # nobody answered: the model's draft, as the model's
                return reply
        else:
            reply = await self.human(posed)
        return Reply(reply.text, replace(reply.trace, replaced=draft.trace))


@dataclass
class Amp:
    """``asker`` answers ``posed`` with access to ``model``, one step at a time (see the module docstring)."""

    asker: Agent
    model: Agent
    max_rounds: int = 2

    async def __call__(self, posed: Posed) -> Reply:
        workspace: list[str] = []
        children: list[Trace] = []
        for round_ in range(self.max_rounds + 1):
            step_reply = await self.asker(posed.step(tuple(workspace)))
            children.append(step_reply.trace)
            step = posed.question.parse_step(step_reply.text)
            if isinstance(step, Answer):
                return self._reply(posed, step.text, children)
            if not isinstance(step, Ask) or round_ == self.max_rounds:
                break
            answers = await self._ask(posed, step, children)
            workspace.extend(answers)
        return self._reply(posed, UNKNOWN, children)

    async def _ask(self, posed: Posed, ask: Ask, children: list[Trace]) -> list[str]:
        """The model answers both subquestions; concurrently unless the second refers to the first (``#1``)."""
        if "#1" in ask.second:
            first = await self._subanswer(posed, ask.first)
            second = await self._subanswer(posed, ask.second.replace("#1", first.text))
        else:
            first, second = await asyncio.gather(self._subanswer(posed, ask.first), self._subanswer(posed, ask.second))
        children.extend([first.trace, second.trace])
        return [first.text, second.text]

    async def _subanswer(self, posed: Posed, text: str) -> Reply:
        subquestion = posed.question.subquestion(text)
        if subquestion is None:  # an asker's subquestion that does not parse is data: its answer is "?"
            return Reply(UNKNOWN, Trace("unparsed", posed, text))
        return await self.model(Posed("answer", subquestion))

    @staticmethod
    def _reply(posed: Posed, text: str, children: list[Trace]) -> Reply:
        # The node's provenance is whoever wrote the final step; its children are the whole tree below.
        return Reply(text, Trace(children[-1].source, posed, text, children=children, op="amp"))


def amp_approx(human: Agent, model: Agent, sampler: Sampler, max_rounds: int = 2, levels: int = 1) -> Amp:
    """Amp~(H, M) = Amp(Approx(H, M), M); with ``levels`` = n, amplification applied n times, Amp~^n(H, M): the
    subquestions are answered by Amp~^(n-1)(H, M) instead of M, down to M itself. Every asker step at every level is
    still Approx(H, M)'s (M, or the human where the sampler says). ``levels`` = 1 is Christiano et al. 2018's
    Amp(H, X); more levels cost more model calls per answer and rest on M's answers only n levels down."""
    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}")
    asker, answerer = Approx(human, model, sampler), model
    for _ in range(levels):
        answerer = Amp(asker, answerer, max_rounds)
    assert isinstance(answerer, Amp)
    return answerer
