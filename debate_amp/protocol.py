"""The agent protocol: every box of the procedure in DESIGN.md section 1 is an ``Agent``.

    Amp(H', M)(Q)  = H'("What answer would you give to Q given access to M?")
    Approx(H, M)(Q) = H(Q) if Samp(Q, M(Q)) else M(Q)
    Amp~(H, M)     = Amp(Approx(H, M), M)

A ``Posed`` question is structured: humans read its fields, models read ``render()``. A ``Reply`` carries the
text and a ``Trace``, the provenance tree the trainer and the transcripts use. No torch here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

Kind = Literal["answer", "step", "argue", "sufficient", "winner", "catastrophe"]
KINDS: tuple[str, ...] = ("answer", "step", "argue", "sufficient", "winner", "catastrophe")


@runtime_checkable
class Question(Protocol):
    """A task's structured question (e.g. ``PermQuestion``). The task owns every text format."""

    def render_posed(self, posed: Posed) -> str:
        """The text a language model reads for ``posed`` (whose ``question`` is self)."""
        ...

    def subquestion(self, text: str) -> Question | None:
        """A subquestion written by an asker (references like ``#1`` already substituted), or None."""
        ...

    def parse_step(self, text: str) -> Step:
        """A step reply as ``Answer``, ``Ask`` or ``Unparsed``."""
        ...

    def is_argument(self, text: str) -> bool:
        """Is ``text`` a debate argument in the task's format (a move at all, right or wrong)?"""
        ...


@dataclass(frozen=True)
class Posed:
    """A posed question.

    - ``answer``: what is the answer to ``question``?
    - ``step``: what do you do with the posed question ``goal`` (an ``answer``, ``argue``, ... question), given the
      answers ``workspace`` to the subquestions asked so far? Reply: an answer, or exactly two subquestions.
    - ``argue`` / ``sufficient`` / ``winner`` / ``catastrophe``: the debate's questions about the arguments
      ``context`` (S); ``argument`` indexes the argument asked about.
    """

    kind: Kind
    question: Any
    context: tuple[str, ...] = ()
    workspace: tuple[str, ...] = ()
    goal: Posed | None = None
    argument: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown posed kind {self.kind!r}; one of {KINDS}")
        if self.kind == "step" and self.goal is None:
            raise ValueError("a step posed question needs the goal it is a step towards")

    def render(self) -> str:
        return str(self.question.render_posed(self))

    def step(self, workspace: tuple[str, ...] = ()) -> Posed:
        """The step question about this posed question: what to do with it, given ``workspace``."""
        goal = self.goal if self.kind == "step" else self
        return Posed("step", self.question, self.context, tuple(workspace), goal)

    def key(self) -> str:
        """Stable identity (the label store's key): a hash of the kind and the full text."""
        return hashlib.sha256(f"{self.kind}\x00{self.render()}".encode()).hexdigest()


UNKNOWN = "?"
"""The answer when there is none: an asker that never answers, a step or subquestion that does not parse."""

# The debate's judgments are answered in these words (any task): sufficient -> yes / no, winner -> even / odd;
# a catastrophe judgment is a number in [0, 1].
YES, NO, EVEN, ODD = "yes", "no", "even", "odd"


@dataclass(frozen=True)
class Answer:
    """A step reply that answers the question."""

    text: str


@dataclass(frozen=True)
class Ask:
    """A step reply that asks two subquestions; ``second`` may refer to the first's answer as ``#1``."""

    first: str
    second: str


@dataclass(frozen=True)
class Unparsed:
    """A step reply that is neither an answer nor two subquestions: data, not an error. Amp answers ``?``."""

    text: str


Step = Answer | Ask | Unparsed


@dataclass
class Trace:
    """Who answered a posed question, and how.

    ``source`` is ``human:<name>``, ``model:policy`` or ``model:target``. ``children`` are the calls made while
    answering (Amp's steps and subquestions). For policy generations ``token_ids`` / ``logprobs`` are the sampled
    reply tokens and their sampling log-probabilities. When Approx routed a call to the human, ``replaced`` is the
    model's draft the human's answer replaced (both kept: the pair is training data). ``human_calls`` counts real
    human calls at this node (0 when the answer came from the label store).
    """

    source: str
    posed: Posed
    text: str
    children: list[Trace] = field(default_factory=list)
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    replaced: Trace | None = None
    human_calls: int = 0
    from_store: bool = False
    timed_out: bool = False
    op: str = ""  # "amp" for a node Amp built from its children; "" for a leaf call

    @property
    def who(self) -> str:
        """``human``, ``policy`` or ``target``."""
        return "human" if self.source.startswith("human") else self.source.removeprefix("model:")

    def walk(self):
        """This node and every descendant, depth first (the replaced drafts included)."""
        yield self
        if self.replaced is not None:
            yield from self.replaced.walk()
        for child in self.children:
            yield from child.walk()

    def total_human_calls(self) -> int:
        return sum(node.human_calls for node in self.walk())

    def mean_logprob(self) -> float | None:
        if not self.logprobs:
            return None
        return sum(self.logprobs) / len(self.logprobs)

    def min_logprob(self) -> float | None:
        """The lowest of the reply's token log-probabilities (its end-of-sequence token included): the model's own
        confidence in it. None without them (a scripted model, a human)."""
        return min(self.logprobs or [], default=None)

    def with_children(self, children: list[Trace]) -> Trace:
        return replace(self, children=children)


@dataclass
class Reply:
    text: str
    trace: Trace


class Agent(Protocol):
    """Anything that answers posed questions: a model, a human, or a combinator of them."""

    async def __call__(self, posed: Posed) -> Reply: ...


@runtime_checkable
class ConsultsDraft(Protocol):
    """A human who is shown the model's draft when Approx hands them a call (a real person: as a default answer,
    and the answer used when they do not reply in time)."""

    async def consult(self, posed: Posed, draft: Reply) -> Reply: ...


@dataclass
class Generation:
    """One batch of a language model's replies. ``token_ids[i]`` and ``logprobs[i]`` cover the generated tokens of
    reply i, up to and including its end-of-sequence token when it emitted one; logprobs are under the sampling
    distribution (empty for a scripted model)."""

    texts: list[str]
    token_ids: list[list[int]]
    logprobs: list[list[float]]

    def min_logprobs(self) -> list[float | None]:
        """Each reply's lowest token log-probability (``Trace.min_logprob`` of what it becomes); None without them."""
        return [min(lps, default=None) for lps in self.logprobs]


# generate_fn(prompts, limits): ``limits[i]`` caps reply i in tokens (None: the function's own limit). A Hugging Face
# model's is ``generation.hf_generate_fn`` (torch); a task's scripted model is a plain function of the same shape.
GenerateFn = Callable[[list[str], list[int | None]], Generation]
