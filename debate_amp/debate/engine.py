"""The debate engine: the episode loop of DESIGN.md section 1 (``references/001``).

    S = []
    for t = 0, 1, 2, ...:
        arg_t      = Amp~(H, M)       ("What is the next argument you would give on Q in context S?")
        S.append(arg_t, trace_t)
        sufficient = Amp~(H, M_target)("Is arg_t a sufficient answer to Q in context S?")
        continue_t = not sufficient
        if not continue_t or t + 1 == max_turns: break
    winner = Amp~(H, M_target)("Were the even arguments in S more helpful than the odd arguments in answering Q?")
    cost_t = Amp~(H, M_target)("How catastrophic is arg_t?")

Every debate of a batch runs concurrently under one event loop, so their model calls share batched waves.
``force_stop_p`` forces continue_0 = false with that probability (1.0 is pure imitative amplification).

With ``forfeit_unparsed`` an argument that is not an argument in the task's format (``question.is_argument``)
forfeits: the debate ends there, the other side wins, and the judge is not asked for the verdict (the judge's own
first rule, applied by the engine). Without it the judge is asked about the garbage too, and an unparsed verdict
gives both sides 0, which a losing debater can learn to reach by writing garbage that the model judge does not
read as a loss (docs/training.md measures it).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from debate_amp.protocol import EVEN, NO, ODD, YES, Agent, Posed, Reply, Trace

SIDES = (EVEN, ODD)


@dataclass
class Judgment:
    """A judgment by Amp~(H, M_target): its reply text, the value read from it, and its trace.

    ``parsed`` is False when the reply was not one of the expected words (the value is then the default stated
    where it is read). A forced continue_0 has no reply and no trace; nor have the verdict of a forfeited debate
    and the cost of its forfeiting argument (``forced`` too).
    """

    value: Any
    text: str = ""
    trace: Trace | None = None
    parsed: bool = True
    forced: bool = False


@dataclass
class Turn:
    side: str  # "even" or "odd"
    text: str
    trace: Trace


@dataclass
class Debate:
    question: Any
    turns: list[Turn] = field(default_factory=list)
    continues: list[Judgment] = field(default_factory=list)
    winner: Judgment | None = None
    costs: list[Judgment] = field(default_factory=list)
    forfeit: int | None = None
    """The argument that forfeited the debate (not an argument in the task's format), if one did."""
    scripted: str | None = None
    """The side a scripted debater (:class:`ScriptedDebater`, e.g. the task's liar) argued, if one did."""

    @property
    def rewards(self) -> dict[str, float]:
        """Zero-sum side rewards: +1 to the winner, -1 to the loser; 0 each when the verdict did not parse."""
        side = None if self.winner is None else self.winner.value
        if side not in SIDES:
            return {EVEN: 0.0, ODD: 0.0}
        return {EVEN: 1.0 if side == EVEN else -1.0, ODD: 1.0 if side == ODD else -1.0}

    def traces(self) -> list[Trace]:
        out = [turn.trace for turn in self.turns]
        out += [j.trace for j in (*self.continues, *self.costs) if j.trace is not None]
        if self.winner is not None and self.winner.trace is not None:
            out.append(self.winner.trace)
        return out

    def human_calls(self) -> int:
        """The real human calls made anywhere in this debate: its arguments' and its judgments' trees."""
        return sum(trace.total_human_calls() for trace in self.traces())


def read_sufficient(reply: Reply) -> Judgment:
    """``yes`` / ``no``; anything else stops the debate (counted as unparsed)."""
    text = reply.text.strip().lower()
    return Judgment(text != NO, reply.text, reply.trace, parsed=text in (YES, NO))


def read_winner(reply: Reply) -> Judgment:
    """``even`` / ``odd``; anything else is no verdict (both sides get 0)."""
    text = reply.text.strip().lower()
    return Judgment(text if text in SIDES else None, reply.text, reply.trace, parsed=text in SIDES)


def read_cost(reply: Reply) -> Judgment:
    """A number in [0, 1]; anything else costs 0 (counted as unparsed)."""
    try:
        value = float(reply.text.strip())
    except ValueError:
        return Judgment(0.0, reply.text, reply.trace, parsed=False)
    if not 0.0 <= value <= 1.0:
        return Judgment(0.0, reply.text, reply.trace, parsed=False)
    return Judgment(value, reply.text, reply.trace)


async def run_debate(
    question: Any,
    debaters: tuple[Agent, Agent],
    judge: Agent,
    max_turns: int,
    forced_stop: bool = False,
    forfeit_unparsed: bool = False,
) -> Debate:
    """One debate on ``question``: ``debaters`` argue for even and odd turns, ``judge`` is Amp~(H, M_target)."""
    scripted = [side for side, agent in zip(SIDES, debaters, strict=True) if isinstance(agent, ScriptedDebater)]
    debate = Debate(question, scripted=scripted[0] if len(scripted) == 1 else None)
    context: tuple[str, ...] = ()
    for t in range(max_turns):
        argument = await debaters[t % 2](Posed("argue", question, context))
        context = (*context, argument.text)
        debate.turns.append(Turn(SIDES[t % 2], argument.text, argument.trace))
        if forfeit_unparsed and not question.is_argument(argument.text):
            debate.forfeit = t
        if t == 0 and forced_stop:
            debate.continues.append(Judgment(False, forced=True))
            break
        if debate.forfeit is not None:
            break
        judgment = read_sufficient(await judge(Posed("sufficient", question, context, argument=t)))
        judgment.value = not judgment.value  # continue_t = not sufficient
        debate.continues.append(judgment)
        if not judgment.value:
            break
    if debate.forfeit is not None:  # no verdict to ask for; the forfeited argument's cost is moot (it lost)
        judged = [t for t in range(len(context)) if t != debate.forfeit]
        costs = await asyncio.gather(*(judge(Posed("catastrophe", question, context, argument=t)) for t in judged))
        by_turn = dict(zip(judged, (read_cost(cost) for cost in costs), strict=True))
        debate.winner = Judgment(SIDES[(debate.forfeit + 1) % 2], forced=True)
        debate.costs = [by_turn.get(t, Judgment(0.0, forced=True)) for t in range(len(context))]
        return debate
    winner, *costs = await asyncio.gather(
        judge(Posed("winner", question, context)),
        *(judge(Posed("catastrophe", question, context, argument=t)) for t in range(len(context))),
    )
    debate.winner = read_winner(winner)
    debate.costs = [read_cost(cost) for cost in costs]
    return debate


def run_debates(
    questions: list[Any],
    amp_policy: Agent,
    amp_target: Agent,
    max_turns: int,
    force_stop_p: float = 0.0,
    seed: int = 0,
    even: Agent | None = None,
    odd: Agent | None = None,
    forfeit_unparsed: bool = False,
    sides: Sequence[tuple[Agent | None, Agent | None]] | None = None,
) -> list[Debate]:
    """Debate every question concurrently (self-play by ``amp_policy`` unless ``even`` / ``odd`` replace a side,
    e.g. with a scripted liar; ``sides`` replaces them per question instead), judged by ``amp_target``. Whether
    continue_0 is forced false is drawn per debate from ``seed``, and never for a debate with a replaced side (a
    scripted opponent is there to be debated); ``forfeit_unparsed`` as in the module docstring."""
    rng = random.Random(seed)
    forced = [rng.random() < force_stop_p for _ in questions]
    pairs = list(sides) if sides is not None else [(even, odd)] * len(questions)
    debaters = [(e or amp_policy, o or amp_policy) for e, o in pairs]
    forced = [stop and e is None and o is None for stop, (e, o) in zip(forced, pairs, strict=True)]

    async def all_debates() -> list[Debate]:
        return list(
            await asyncio.gather(
                *(
                    run_debate(q, pair, amp_target, max_turns, stop, forfeit_unparsed)
                    for q, pair, stop in zip(questions, debaters, forced, strict=True)
                )
            )
        )

    return asyncio.run(all_debates())


@dataclass
class ScriptedDebater:
    """A scripted debater (e.g. a task's liar, ``Task.liar``) as an agent: ``argue(question, context) -> argument``."""

    script: Any
    name: str = "liar"

    async def __call__(self, posed: Posed) -> Reply:
        text = self.script.argue(posed.question, posed.context)
        return Reply(text, Trace(f"scripted:{self.name}", posed, text))
