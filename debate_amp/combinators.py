"""Combinators: agents in, agent out (``references/001``, DESIGN.md section 2).

    Approx(H, M)(Q) = H(Q) if Samp(Q, M(Q)) else M(Q)
    Amp(H', M)(Q)   = H'("What answer would you give to Q given access to M?")
    Amp~(H, M)      = Amp(Approx(H, M), M)
    Amp~^n(H, M)    = Amp(Approx(H, M), Amp~^(n-1)(H, M)),   Amp~^0(H, M) = M

Amp runs the two-subquestion protocol of ``references/000``: the asker is posed a ``step`` question with the
workspace of sub-answers so far and replies with an answer or exactly two subquestions; M answers both (the second
may use the first's answer as ``#1``, and then waits for it); repeat until an answer or ``max_rounds`` rounds of
subquestions, after which the asker is posed the step once more and anything but an answer gives ``?``.

``AdversarialAmp`` is ``references/000``'s amplification with its adversary (``sampler.kind: adversary``): a
question is amplified only where the adversary doubts M's draft answer, the human is posed a step only where it
doubts M's draft step, and at each decomposition the tree works down the one subquestion the adversary (with
Boltzmann exploration) thinks M most likely got wrong, M's answer standing for the other.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from debate_amp.protocol import UNKNOWN, Agent, Answer, Ask, ConsultsDraft, Posed, Reply, Trace
from debate_amp.samplers import Adversarial, Always, Budget, Sampler


async def subanswer(model: Agent, posed: Posed, text: str) -> Reply:
    """``model``'s answer to the subquestion an asker wrote as ``text`` while answering ``posed``; a subquestion
    that does not parse is data, not an error: its answer is ``?``."""
    subquestion = posed.question.subquestion(text)
    if subquestion is None:
        return Reply(UNKNOWN, Trace("unparsed", posed, text))
    return await model(Posed("answer", subquestion))


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
        if isinstance(self.sampler, Always) and not isinstance(self.human, ConsultsDraft):
            return await self.human(posed)  # the sampler never looks at the draft, and nobody is shown it
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
        return await subanswer(self.model, posed, text)

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


@dataclass
class _Doubts:
    """The sampler of the steps at a node of :class:`AdversarialAmp`, ``references/000``'s iteration step for the
    asker (H'_ask, H'_int): the human is posed a step only where the adversary doubts M's draft of it, and while the
    budget has room (each such step one call); elsewhere M's step stands."""

    sampler: Adversarial
    budget: Budget | None

    def __call__(self, posed: Posed, model_reply: Reply) -> bool:
        return self.sampler(posed, model_reply) and (self.budget is None or self.budget.allow())


@dataclass
class AdversarialAmp:
    """Amp~(H, M) with ``references/000``'s adversary, for a posed question Q:

    1. M drafts an answer M(Q). If the adversary is confident in it, Adv(Q, M(Q)) < ``confidence`` (000's
       iteration step, H' = M), M's draft stands, but for the share ``audit`` of such drafts, which are amplified
       all the same (a label for a draft the adversary trusted).
    2. Otherwise Q is amplified. Its asker is 000's H'_ask (and H'_int, the same step question with the sub-answers
       in its workspace): M drafts the step, and the human is posed it only where the adversary doubts that draft
       too and the budget has room (the draft kept as ``replaced``; each human step one call against the budget),
       M's step standing elsewhere. An answer ends the node.
    3. Two subquestions: M answers both, the adversary scores both answers, and the Gumbel-max trick picks i with
       probability softmax(Adv / temperature)_i (000's step 4).
    4. The chosen subquestion is answered by this same procedure (from step 1 with M's answer as the draft: the
       human keeps working down that branch where the adversary still doubts M); M's answer stands for the other.
       When the second subquestion refers to the first (``#1``), it reads the first's answer that is used.
    5. The human is posed the step again with both answers (integration): an answer, or two more subquestions
       (back to 3), up to ``max_rounds`` rounds, as in :class:`Amp`.

    The node's trace is an ``amp`` node whose ``replaced`` is M's draft of step 1 (the amplified answer replaced
    it: the pair labels the adversary), its children the steps and sub-answers in order, as :class:`Amp`'s.
    """

    human: Agent
    model: Agent
    sampler: Adversarial
    budget: Budget | None = None
    max_rounds: int = 2
    max_depth: int = 8
    """How many levels of subquestions below the posed question step 4 may work down; deeper, M's answer stands.
    A model whose steps do not make the question smaller (``5^7`` asked again inside ``5^7``) would otherwise
    recurse without end. :func:`~debate_amp.agents.wiring.recipe_amp` sets it to the task's depth + 1."""

    async def __call__(self, posed: Posed) -> Reply:
        draft = await self.model(posed)
        return await self._node(posed, draft, self.sampler.p_wrong([(posed, draft)])[0], depth=0)

    async def _node(self, posed: Posed, draft: Reply, p_wrong: float, depth: int) -> Reply:
        if depth > self.max_depth or (not self.sampler.doubts(p_wrong) and not self.sampler.audits()):
            return draft
        asker = Approx(self.human, self.model, _Doubts(self.sampler, self.budget))
        workspace: list[str] = []
        children: list[Trace] = []
        for round_ in range(self.max_rounds + 1):
            step_reply = await asker(posed.step(tuple(workspace)))
            children.append(step_reply.trace)
            step = posed.question.parse_step(step_reply.text)
            if isinstance(step, Answer):
                return self._reply(posed, step.text, children, draft)
            if not isinstance(step, Ask) or round_ == self.max_rounds:
                break
            workspace.extend(await self._ask(posed, step, children, depth))
        return self._reply(posed, UNKNOWN, children, draft)

    async def _ask(self, posed: Posed, ask: Ask, children: list[Trace], depth: int) -> list[str]:
        """M answers both subquestions; the human works down the one the Gumbel-max choice picks."""
        refers = "#1" in ask.second
        if refers:
            first = await self._subanswer(posed, ask.first)
            second = await self._subanswer(posed, ask.second.replace("#1", first.text))
        else:
            first, second = await asyncio.gather(self._subanswer(posed, ask.first), self._subanswer(posed, ask.second))
        replies = [first, second]
        open_ = [i for i, r in enumerate(replies) if r.trace.source != "unparsed"]  # nothing to work down otherwise
        if open_:
            scores = self.sampler.p_wrong([(replies[i].trace.posed, replies[i]) for i in open_])
            pick = self.sampler.choose(scores) if len(open_) == 2 else 0
            chosen = open_[pick]
            replies[chosen] = await self._node(replies[chosen].trace.posed, replies[chosen], scores[pick], depth + 1)
            if chosen == 0 and refers and replies[0].text != first.text:  # #1 is the answer that is used
                replies[1] = await self._subanswer(posed, ask.second.replace("#1", replies[0].text))
        children.extend(r.trace for r in replies)
        return [r.text for r in replies]

    async def _subanswer(self, posed: Posed, text: str) -> Reply:
        return await subanswer(self.model, posed, text)

    @staticmethod
    def _reply(posed: Posed, text: str, children: list[Trace], draft: Reply) -> Reply:
        trace = Trace(children[-1].source, posed, text, children=children, op="amp", replaced=draft.trace)
        return Reply(text, trace)
