"""Permutation powering, after Christiano, Shlegeris & Amodei 2018 ("Supervising strong learners by amplifying weak
experts"): given a permutation sigma of N elements, an element x and a power k, what is sigma^k(x)?

The synthetic weak human can do one lookup (k <= 1). For larger k it decomposes, using the two-subquestion
protocol of ``references/000``: with m = floor(k / 2) and x0 = sigma(x) when k is odd (its one lookup) else x,

    sigma^k(x) = sigma^m(sigma^m(x0))      ask "x=x0 k=m" and "x=#1 k=m", then answer with #2

where ``#1`` stands for the answer to the first subquestion (Amp substitutes it before posing the second). A
debate's claims are the same intermediate values, so a judge that can do one lookup can check a dispute by zooming
into one sub-claim until it is a single lookup.

Every text format of the task lives in the "Text formats" block below: the question, the direct-answer prompt,
the step prompt (with its workspace of sub-answers) and the step replies. The permutation is written as key:value
pairs (``0:3 1:7 2:0 ...``), which makes a lookup content-addressable for a small model; a bare list would force it
to count positions.
"""

from __future__ import annotations

import math
import random
import re
import zlib
from dataclasses import dataclass, field

from debate_amp.agents.model import Generation
from debate_amp.protocol import UNKNOWN, Answer, Ask, Posed, Step, Unparsed

# ---------------------------------------------------------------------------------------------------------------
# Questions


@dataclass(frozen=True)
class PermQuestion:
    """sigma^k(x). ``sigma[i]`` is the image of element i."""

    sigma: tuple[int, ...]
    x: int
    k: int

    @property
    def gold(self) -> int:
        return power(self.sigma, self.x, self.k)

    @property
    def depth(self) -> int:
        """Decomposition depth: 0 for what the human can do itself (k <= 1), else floor(log2 k)."""
        return depth_of(self.k)

    def with_query(self, x: int, k: int) -> PermQuestion:
        """A subquestion: the same permutation (the shared context), another x and k."""
        return PermQuestion(self.sigma, x, k)

    # The ``Question`` protocol of debate_amp.protocol: the text forms live in the block below.
    def render_posed(self, posed: Posed) -> str:
        return render_posed(posed)

    def subquestion(self, text: str) -> PermQuestion | None:
        return parse_subquestion(text, self)

    def parse_step(self, text: str) -> Step:
        return parse_step(text)


def power(sigma: tuple[int, ...], x: int, k: int) -> int:
    for _ in range(k):
        x = sigma[x]
    return x


def depth_of(k: int) -> int:
    return 0 if k <= 1 else int(math.log2(k))


# ---------------------------------------------------------------------------------------------------------------
# Text formats (the only place that knows how the task looks as text)

ANSWER_CUE = " A="
STEP_CUE = " S="
ANSWER_PREFIX = "ans "
ASK_PREFIX = "ask "
SUBQUESTION_SEP = "; "

_QUERY = re.compile(r"^x=(\d+) k=(\d+)$")
_INT = re.compile(r"^\d+$")


def render_question(q: PermQuestion) -> str:
    """``s=0:3 1:7 2:0 ... x=5 k=6``"""
    pairs = " ".join(f"{i}:{v}" for i, v in enumerate(q.sigma))
    return f"s={pairs} {render_query(q.x, q.k)}"


def render_query(x: int | str, k: int) -> str:
    """The part of a question that changes between a question and its subquestions: ``x=5 k=6``."""
    return f"x={x} k={k}"


def answer_prompt(q: PermQuestion) -> str:
    """Posed kind ``answer``: what is sigma^k(x)? The reply is the element, e.g. ``3``."""
    return render_question(q) + ANSWER_CUE


def step_prompt(q: PermQuestion, workspace: list[str] | tuple[str, ...] = ()) -> str:
    """Posed kind ``step``: what to do with q given the answers to the subquestions so far (``#1=7 #2=4``).

    The reply is :func:`format_answer` or :func:`format_ask`.
    """
    ws = "".join(f" #{i + 1}={a}" for i, a in enumerate(workspace))
    return render_question(q) + ws + STEP_CUE


CUES = {"answer": ANSWER_CUE, "argue": " G=", "sufficient": " E=", "winner": " W=", "catastrophe": " C="}


def render_posed(posed: Posed) -> str:
    """Any posed question about a perm question, as a model reads it.

    ``answer`` and ``step`` towards an answer are :func:`answer_prompt` and :func:`step_prompt`. The debate kinds
    append the arguments so far (`` |arg``), the argument asked about (`` @t``) and their cue.
    """
    goal = posed.goal if posed.kind == "step" and posed.goal is not None else posed
    text = render_question(posed.question) + "".join(f" |{a}" for a in goal.context)
    if goal.argument is not None:
        text += f" @{goal.argument}"
    if posed.kind != "step":
        return text + CUES[posed.kind]
    workspace = "".join(f" #{i + 1}={a}" for i, a in enumerate(posed.workspace))
    cue = STEP_CUE if goal.kind == "answer" else f" S{CUES[goal.kind].strip()}"
    return text + workspace + cue


def format_answer(value: int | str) -> str:
    return f"{ANSWER_PREFIX}{value}"


def format_ask(first: str, second: str) -> str:
    return f"{ASK_PREFIX}{first}{SUBQUESTION_SEP}{second}"


def parse_element(text: str, n_elements: int) -> int | None:
    """An answer's element, or None when the text is not one (model output that does not parse is data)."""
    text = text.strip()
    if not _INT.match(text):
        return None
    value = int(text)
    return value if value < n_elements else None


def parse_step(text: str) -> Step:
    text = text.strip()
    if text.startswith(ANSWER_PREFIX):
        return Answer(text[len(ANSWER_PREFIX) :].strip())
    if text.startswith(ASK_PREFIX):
        parts = text[len(ASK_PREFIX) :].split(SUBQUESTION_SEP.strip())
        if len(parts) == 2 and all(p.strip() for p in parts):
            return Ask(parts[0].strip(), parts[1].strip())
    return Unparsed(text)


def parse_subquestion(text: str, parent: PermQuestion) -> PermQuestion | None:
    """``x=5 k=3`` in the context of ``parent`` (same permutation), or None if it does not parse or is out of range.

    ``#i`` references must already be substituted by the caller.
    """
    m = _QUERY.match(text.strip())
    if not m:
        return None
    x, k = int(m.group(1)), int(m.group(2))
    if x >= len(parent.sigma):
        return None
    return parent.with_query(x, k)


def score(answer: str | int | None, q: PermQuestion) -> float:
    """Exact match: 1.0 when the answer is sigma^k(x), else 0.0."""
    if answer is None:
        return 0.0
    value = answer if isinstance(answer, int) else parse_element(answer, len(q.sigma))
    return float(value == q.gold)


# ---------------------------------------------------------------------------------------------------------------
# Generator


@dataclass
class PermTask:
    """A seeded generator of perm questions, with a train / held-out split by permutation.

    A permutation is held out when a stable hash of it falls below ``heldout_fraction``, so the split is the same
    in every process and run, and no training question shares a permutation with an evaluation question.
    ``balance="depth"`` draws the depth floor(log2 k) uniformly (k in {0, 1} is depth 0), then k within it.
    """

    n_elements: int = 8
    max_power: int = 7
    balance: str = "depth"
    heldout_fraction: float = 0.0625

    def is_heldout(self, sigma: tuple[int, ...]) -> bool:
        return zlib.crc32(bytes(sigma)) / 2**32 < self.heldout_fraction

    def sample_k(self, rng: random.Random, max_power: int | None = None) -> int:
        top = self.max_power if max_power is None else max_power
        if self.balance == "uniform":
            return rng.randint(0, top)
        d = rng.randint(0, depth_of(top))
        lo, hi = (0, 1) if d == 0 else (2**d, min(2 ** (d + 1) - 1, top))
        return rng.randint(lo, hi)

    def sample(self, rng: random.Random, heldout: bool = False, k: int | None = None) -> PermQuestion:
        while True:
            sigma = list(range(self.n_elements))
            rng.shuffle(sigma)
            if self.is_heldout(tuple(sigma)) == heldout:
                break
        x = rng.randrange(self.n_elements)
        return PermQuestion(tuple(sigma), x, self.sample_k(rng) if k is None else k)

    def questions(self, n: int, seed: int, heldout: bool = False) -> list[PermQuestion]:
        rng = random.Random(seed)
        return [self.sample(rng, heldout=heldout) for _ in range(n)]

    def eval_questions(self, n: int, seed: int = 12345) -> list[PermQuestion]:
        """Held-out questions with every k in 0..K equally often (so accuracy by k has even support)."""
        rng = random.Random(seed)
        return [self.sample(rng, heldout=True, k=i % (self.max_power + 1)) for i in range(n)]


# ---------------------------------------------------------------------------------------------------------------
# The synthetic weak human


@dataclass
class PermHuman:
    """The simulated weak expert: one lookup at a time, plus decomposition and integration.

    ``answer`` answers directly only k <= 1 (raises otherwise: it is beyond the human's capacity). ``step`` takes a
    question and the answers to its subquestions so far and returns a step reply (:func:`format_answer` or
    :func:`format_ask`). With ``error_rate`` > 0 a lookup is wrong with that probability (a uniformly drawn other
    element). ``calls`` counts every call.
    """

    error_rate: float = 0.0
    seed: int = 0
    calls: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    @staticmethod
    def can_answer(q: PermQuestion) -> bool:
        return q.k <= 1

    def _lookup(self, sigma: tuple[int, ...], x: int, k: int) -> int:
        value = power(sigma, x, k)
        if self.error_rate and self._rng.random() < self.error_rate:
            value = self._rng.choice([v for v in range(len(sigma)) if v != value])
        return value

    def answer(self, q: PermQuestion) -> str:
        self.calls += 1
        if not self.can_answer(q):
            raise ValueError(f"the synthetic human cannot answer k={q.k} directly (capacity: k <= 1)")
        return str(self._lookup(q.sigma, q.x, q.k))

    def respond(self, posed: Posed) -> str:
        """The human's reply to a posed question (the ``SyntheticHuman`` agent calls this; it reads structure only)."""
        q = posed.question
        if posed.kind == "answer":
            if self.can_answer(q):
                return self.answer(q)
            self.calls += 1
            return UNKNOWN  # beyond its capacity when asked directly: it says it does not know
        if posed.kind == "step" and posed.goal is not None and posed.goal.kind == "answer":
            return self.step(q, posed.workspace)
        raise NotImplementedError(
            f"the synthetic perm human has no behaviour yet for {posed.kind!r} questions "
            "(the debate kinds arrive with the debate engine)"
        )

    def step(self, q: PermQuestion, workspace: list[str] | tuple[str, ...] = ()) -> str:
        self.calls += 1
        if self.can_answer(q):
            return format_answer(self._lookup(q.sigma, q.x, q.k))
        if not workspace:
            m = q.k // 2
            x0 = self._lookup(q.sigma, q.x, 1) if q.k % 2 else q.x
            return format_ask(render_query(x0, m), render_query("#1", m))
        # Integrate: sigma^k(x) is the answer to the second subquestion. A sub-answer that is not an element
        # (a model reply that did not parse) leaves the human without an answer.
        last = parse_element(workspace[-1], len(q.sigma))
        return format_answer(UNKNOWN if last is None else last)


# ---------------------------------------------------------------------------------------------------------------
# Imitation data for the warm start A[0]


@dataclass(frozen=True)
class Example:
    """One imitation example: what the human wrote (``completion``) when posed ``prompt``."""

    prompt: str
    completion: str
    kind: str  # "answer" | "step" (fresh question) | "integrate" (step with both sub-answers)
    k: int


def imitation_examples(task: PermTask, human: PermHuman, n: int, seed: int, lookups: float = 0.0) -> list[Example]:
    """Examples of everything the human does itself, on training permutations only.

    For a question it can answer (k <= 1): its direct answer and its ``ans`` step. For a larger k: its
    decomposition (``ask``) and its integration of the two true sub-answers. Errors of a noisy human are kept:
    A[0] imitates the human, mistakes included.
    """
    rng = random.Random(seed)
    examples: list[Example] = []
    while len(examples) < n:
        q = task.sample(rng)
        if lookups and rng.random() < lookups:
            lookup = q.with_query(rng.randrange(len(q.sigma)), 1)
            examples.append(Example(answer_prompt(lookup), human.answer(lookup), "answer", 1))
        if human.can_answer(q):
            examples.append(Example(answer_prompt(q), human.answer(q), "answer", q.k))
            examples.append(Example(step_prompt(q), human.step(q), "step", q.k))
            continue
        ask = human.step(q)
        examples.append(Example(step_prompt(q), ask, "step", q.k))
        parsed = parse_step(ask)
        assert isinstance(parsed, Ask)
        first = parse_subquestion(parsed.first, q)
        assert first is not None
        workspace = [str(first.gold), str(q.gold)]
        examples.append(Example(step_prompt(q, workspace), human.step(q, workspace), "integrate", q.k))
    return examples[:n]


# ---------------------------------------------------------------------------------------------------------------
# A perfect scripted model (for tests and demonstrations without training)

_PROMPT = re.compile(
    r"^s=(?P<sigma>\d+:\d+(?: \d+:\d+)*) x=(?P<x>\d+) k=(?P<k>\d+)(?P<ws>(?: #\d+=\S+)*) (?P<cue>[AS])=$"
)


def perfect_reply(prompt: str) -> str:
    """What an error-free model would reply to a perm prompt: sigma^k(x) for ``answer``, the error-free human's
    step for ``step``. A prompt it does not recognise gets ``?``."""
    m = _PROMPT.match(prompt)
    if not m:
        return UNKNOWN
    sigma = tuple(int(pair.split(":")[1]) for pair in m.group("sigma").split(" "))
    q = PermQuestion(sigma, int(m.group("x")), int(m.group("k")))
    if m.group("cue") == "A":
        return str(q.gold)
    workspace = [item.split("=", 1)[1] for item in m.group("ws").split()]
    return PermHuman().step(q, workspace)


def perfect_generate(prompts: list[str]) -> Generation:
    """A generate function (see ``debate_amp.agents.model``) for the perfect scripted model."""
    texts = [perfect_reply(p) for p in prompts]
    return Generation(texts, [[] for _ in texts], [[] for _ in texts])


def parse_question(text: str) -> PermQuestion:
    """The inverse of :func:`render_question`; raises ValueError naming what is wrong."""
    m = re.match(r"^s=(?P<sigma>\d+:\d+(?: \d+:\d+)*) x=(?P<x>\d+) k=(?P<k>\d+)$", text.strip())
    if not m:
        raise ValueError(f"not a perm question (expected 's=0:3 1:7 ... x=5 k=6'): {text!r}")
    pairs = [tuple(int(v) for v in pair.split(":")) for pair in m.group("sigma").split(" ")]
    if [i for i, _ in pairs] != list(range(len(pairs))) or sorted(v for _, v in pairs) != list(range(len(pairs))):
        raise ValueError(f"s must map 0..N-1 onto 0..N-1 in order, each value once: {m.group('sigma')!r}")
    q = PermQuestion(tuple(v for _, v in pairs), int(m.group("x")), int(m.group("k")))
    if q.x >= len(q.sigma):
        raise ValueError(f"x={q.x} is not an element of a permutation of {len(q.sigma)} elements")
    return q
