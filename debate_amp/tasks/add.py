"""Multi-digit addition, after the algorithmic tasks of Christiano, Shlegeris & Amodei 2018 ("Supervising strong
learners by amplifying weak experts"): given two operands a and b of n digits each and a carry-in c, what are the
digits of a + b + c?

The synthetic weak human adds one digit pair with a carry (n = 1). For more digits it decomposes, using the
two-subquestion protocol of ``references/000``, into a low half (the low m = ceil(n / 2) digits, with the
question's carry-in) and a high half (the other digits, whose carry-in is the low half's carry-out):

    digits lo..hi, carry-in c  =  digits mid..hi, carry-in #1   then the digits of   digits lo..mid-1, carry-in c
    (mid = lo + ceil(n / 2); for 0..3: ask "0-1+0;2-3+#1", then answer with #2 followed by #1 without its carry)

where ``#1`` stands for the low half's answer, carry-out first (Amp substitutes it before posing the second
subquestion, and the subquestion reads its first digit as the carry-in). Integration concatenates. A debate's claims
are the same halves, so a judge that can add one digit pair can check a dispute by zooming into one half until it
is a single digit pair.

Every text format of the task lives in the "Text formats" block below (docs/add.md shows them all). Digit positions
are counted from the least significant digit, starting at 0, and ranges are inclusive: ``0-1`` are the units and the
tens. An answer is the carry-out followed by the range's sum digits: ``a=4821 b=3907 c=0`` is ``08728``.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from debate_amp.protocol import EVEN, NO, ODD, UNKNOWN, YES, Answer, Generation, Posed, Step
from debate_amp.tasks.base import Example, Skill, format_answer, format_ask, parse_step

# ---------------------------------------------------------------------------------------------------------------
# Questions


@dataclass(frozen=True)
class AddQuestion:
    """Digits ``lo``..``hi`` of a + b plus the carry-in ``carry``: the carry-out, then those hi - lo + 1 digits.

    ``a`` and ``b`` are digit strings of the same length, most significant first, leading zeros kept (the shared
    context of a question and its subquestions, as sigma is for perm). Positions count from the least significant
    digit, from 0, inclusive; ``hi`` = -1 (the default) is the top digit, so ``AddQuestion("4821", "3907", 0)`` is
    the whole sum.
    """

    a: str
    b: str
    carry: int
    lo: int = 0
    hi: int = -1

    def __post_init__(self) -> None:
        if self.hi == -1:
            object.__setattr__(self, "hi", len(self.a) - 1)

    @property
    def n_digits(self) -> int:
        """Digits in each operand (of the whole question, not of this range)."""
        return len(self.a)

    @property
    def is_whole(self) -> bool:
        return self.lo == 0 and self.hi == self.n_digits - 1

    @property
    def gold(self) -> str:
        return add_range(self.a, self.b, self.lo, self.hi, self.carry)

    @property
    def difficulty(self) -> int:
        """Digits to add: hi - lo + 1."""
        return self.hi - self.lo + 1

    @property
    def depth(self) -> int:
        """Decomposition depth: 0 for what the human adds itself (one digit pair), else ceil(log2 digits)."""
        return depth_of(self.difficulty)

    def with_range(self, lo: int, hi: int, carry: int) -> AddQuestion:
        """A subquestion: the same operands (the shared context), another digit range and carry-in."""
        return AddQuestion(self.a, self.b, carry, lo, hi)

    def halves(self, low_carry_out: int) -> tuple[AddQuestion, AddQuestion]:
        """The low half (the low ceil(n / 2) digits, this carry-in) and the high half (carry-in ``low_carry_out``)."""
        mid = self.lo + split(self.difficulty)
        return self.with_range(self.lo, mid - 1, self.carry), self.with_range(mid, self.hi, low_carry_out)

    # The ``Question`` protocol of debate_amp.protocol: the text forms live in the block below.
    def render_posed(self, posed: Posed) -> str:
        return render_posed(posed)

    def subquestion(self, text: str) -> AddQuestion | None:
        return parse_subquestion(text, self)

    def parse_step(self, text: str) -> Step:
        return parse_step(text)

    def is_argument(self, text: str) -> bool:
        return parse_argument(text, self.n_digits) is not None

    # The rest of ``tasks.base.TaskQuestion``.
    def render(self) -> str:
        return render_question(self)

    def describe(self) -> str:
        return render_query(self.lo, self.hi, self.carry)

    def score(self, answer: str | None) -> float:
        return score(answer, self)

    def opening_claims_gold(self, opening: str) -> bool:
        return opening_claims_gold(self, opening)

    def people_view(self) -> dict[str, Any]:
        """How a person is shown the question (``debate-amp serve``, the terminal): the operands digit by digit."""
        positions = list(range(self.n_digits - 1, -1, -1))
        return {
            "text": f"digits {self.lo}..{self.hi} of a + b + {self.carry} (carry-out first): {self.render()}",
            "table": {"header": ["position", *positions], "rows": [["a", *self.a], ["b", *self.b]]},
        }


def add_range(a: str, b: str, lo: int, hi: int, carry: int) -> str:
    """Digits lo..hi of a + b plus ``carry``, digit pair by digit pair from the least significant (the human's own
    algorithm; no int() of the whole operand, whatever its length): the carry-out, then hi - lo + 1 digits."""
    n = len(a)
    out = []
    for x, y in zip(reversed(a[n - 1 - hi : n - lo]), reversed(b[n - 1 - hi : n - lo]), strict=True):
        total = int(x) + int(y) + carry
        out.append(str(total % 10))
        carry = total // 10
    return str(carry) + "".join(reversed(out))


def split(n: int) -> int:
    """Digits in the low half of an n-digit range: ceil(n / 2)."""
    return (n + 1) // 2


def depth_of(n: int) -> int:
    """ceil(log2 n): 0 for one digit pair, 1 for 2 digits, 2 for 3-4, 3 for 5-8, 4 for 9-16."""
    return 0 if n <= 1 else math.ceil(math.log2(n))


def digits_at_depth(depth: int, top: int) -> tuple[int, int]:
    """The fewest and most digits (at most ``top``) of a question of decomposition ``depth``."""
    return (1, 1) if depth == 0 else (2 ** (depth - 1) + 1, min(2**depth, top))


# ---------------------------------------------------------------------------------------------------------------
# Text formats (the only place that knows how the task looks as text)

ANSWER_CUE = " A="
STEP_CUE = " S="

# Positions are at most 4 digits (operands are at most a few dozen digits): int() of a longer run of digits that
# a model wrote could raise, and model output that does not parse is data.
_QUESTION = re.compile(r"^a=(?P<a>[0-9]+) b=(?P<b>[0-9]+)(?: r=(?P<lo>[0-9]{1,4})-(?P<hi>[0-9]{1,4}))? c=(?P<c>[01])$")
_SUBQUESTION = re.compile(r"^(?P<lo>[0-9]{1,4})-(?P<hi>[0-9]{1,4})\+(?P<c>[01])[0-9]*$")


def render_question(q: AddQuestion) -> str:
    """``a=4821 b=3907 c=0`` for the whole sum; ``a=4821 b=3907 r=2-3 c=1`` for digits 2..3 (a subquestion).

    Both operands are written in full, most significant digit first: a digit of a is always the character at the
    same offset from ``a=`` (and of b from ``b=``), whatever range is asked, so a digit pair is found by position.
    The range is left out for the whole sum to keep debate prompts short (4 arguments fit in 128 positions).
    """
    rng = "" if q.is_whole else f" r={q.lo}-{q.hi}"
    return f"a={q.a} b={q.b}{rng} c={q.carry}"


def render_query(lo: int, hi: int, carry: int | str) -> str:
    """The part of a question that changes between a question and its subquestions: ``r=0-3 c=0``."""
    return f"r={lo}-{hi} c={carry}"


def render_subquestion(lo: int, hi: int, carry: int | str) -> str:
    """A subquestion as an asker writes it, about the same operands: ``0-1+0`` (digits 0..1, carry-in 0), ``2-3+#1``.

    The carry-in is the first digit after ``+``; any digits after it are ignored, so ``2-3+#1`` with the low half's
    answer ``028`` substituted for ``#1`` reads as ``2-3+028``: carry-in 0, the low half's carry-out.
    """
    return f"{lo}-{hi}+{carry}"


def answer_prompt(q: AddQuestion) -> str:
    """Posed kind ``answer``: what are the digits? The reply is the carry-out then the digits, e.g. ``08728``."""
    return render_question(q) + ANSWER_CUE


def step_prompt(q: AddQuestion, workspace: list[str] | tuple[str, ...] = ()) -> str:
    """Posed kind ``step``: what to do with q given the answers to the subquestions so far (``#1=028 #2=087``).

    The reply is :func:`format_answer` or :func:`format_ask`.
    """
    ws = "".join(f" #{i + 1}={a}" for i, a in enumerate(workspace))
    return render_question(q) + ws + STEP_CUE


CUES = {"answer": ANSWER_CUE, "argue": " G=", "sufficient": " E=", "winner": " W=", "catastrophe": " C="}


def render_posed(posed: Posed) -> str:
    """Any posed question about an add question, as a model reads it (perm's scheme).

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


# Debate arguments. A claim "0-3+0=08728 via 0" says digits 0..3 with carry-in 0 sum to 08728 because the low half
# "0-1+0" is 0 followed by the value's low digits (028: its carry-out is the via) and the high half "2-3+0" (carry-in:
# the via) is the value's top part (087). Only the low half's carry-out is written after "via": its digits are the
# value's own low digits, so a claim cannot contradict itself, and 4 arguments fit in the model's 128 positions.
# "2-2+1=18" is a single digit pair (no via). A dispute "no ..." contradicts one sub-claim of the previous argument
# with its own value (and via); "agree" concedes.
AGREE = "agree"
_ARGUMENT = re.compile(
    r"^(?P<no>no )?(?P<lo>[0-9]{1,4})-(?P<hi>[0-9]{1,4})\+(?P<c>[01])=(?P<value>[0-9]+)(?: via (?P<via>[01]))?$"
)


@dataclass(frozen=True)
class Claim:
    """Digits lo..hi of a + b with carry-in ``carry`` sum to ``value`` (carry-out first)."""

    lo: int
    hi: int
    carry: int
    value: str

    @property
    def digits(self) -> int:
        return self.hi - self.lo + 1


@dataclass(frozen=True)
class Argument:
    lo: int = 0
    hi: int = 0
    carry: int = 0
    value: str = ""
    via: int | None = None
    no: bool = False
    agree: bool = False

    @property
    def digits(self) -> int:
        return self.hi - self.lo + 1

    @property
    def claim(self) -> Claim:
        return Claim(self.lo, self.hi, self.carry, self.value)

    def subclaims(self) -> tuple[Claim, Claim]:
        """The two claims a decomposed claim rests on: the low half (this carry-in) is ``via`` then the value's low
        digits; the high half (carry-in ``via``) is the rest of the value."""
        assert self.via is not None and self.digits >= 2
        m = split(self.digits)
        low = Claim(self.lo, self.lo + m - 1, self.carry, f"{self.via}{self.value[-m:]}")
        return low, Claim(self.lo + m, self.hi, self.via, self.value[:-m])


def render_claim(lo: int, hi: int, carry: int, value: str, via: int | str | None = None, no: bool = False) -> str:
    return f"{'no ' if no else ''}{lo}-{hi}+{carry}={value}" + (f" via {via}" if via is not None else "")


def parse_argument(text: str, n_digits: int | None = None) -> Argument | None:
    """An argument's structure, or None when it is not one (model output that does not parse is data).

    The range must run upwards (lo <= hi) and, given ``n_digits``, lie within the operands; the value must be a
    carry-out (0 or 1) and one digit per position of the range. A claim about 2 digits or more needs its ``via``;
    one about a single digit pair must not have one.
    """
    text = text.strip()
    if text == AGREE:
        return Argument(agree=True)
    m = _ARGUMENT.match(text)
    if not m:
        return None
    via = None if m["via"] is None else int(m["via"])
    arg = Argument(int(m["lo"]), int(m["hi"]), int(m["c"]), m["value"], via, bool(m["no"]))
    if arg.lo > arg.hi or (n_digits is not None and arg.hi >= n_digits):
        return None
    if parse_value(arg.value, arg.digits) is None or (arg.digits >= 2) != (arg.via is not None):
        return None
    return arg


def parse_value(text: str, digits: int) -> str | None:
    """An answer about a range of ``digits`` digits (a carry-out 0 or 1, then that many digits), or None when the
    text is not one (model output that does not parse is data)."""
    text = text.strip()
    return text if len(text) == digits + 1 and re.fullmatch(r"[01][0-9]*", text) else None


def parse_subquestion(text: str, parent: AddQuestion) -> AddQuestion | None:
    """``2-3+0`` in the context of ``parent`` (same operands), or None if it does not parse or is out of range.

    ``#i`` references must already be substituted by the caller. The carry-in is the first digit after ``+`` and
    the digits after it are ignored: ``2-3+#1`` becomes ``2-3+028`` once the low half's answer ``028`` is put in,
    and its carry-in is that answer's carry-out, 0. A substituted answer that is not a carry then digits (``?``,
    ``228``) leaves the subquestion unparsed.
    """
    m = _SUBQUESTION.match(text.strip())
    if not m:
        return None
    lo, hi = int(m["lo"]), int(m["hi"])
    if lo > hi or hi >= parent.n_digits:
        return None
    return parent.with_range(lo, hi, int(m["c"]))


def score(answer: str | None, q: AddQuestion) -> float:
    """Exact match: 1.0 when the answer is the carry-out and digits of the sum, else 0.0."""
    if answer is None:
        return 0.0
    return float(parse_value(answer, q.difficulty) == q.gold)


def opening_claims_gold(q: AddQuestion, opening: str) -> bool:
    """Does the opening argument arg_0 claim the gold answer to the question itself (a claim about the question's own
    range and carry-in, not a dispute or ``agree``, of the sum's value)? A verdict is right when it goes to the even
    side exactly then: the trainer's ``debate/judge_accuracy`` and ``debate-amp eval`` both score judges this way."""
    claim = parse_argument(opening, q.n_digits)
    return (
        claim is not None
        and not (claim.agree or claim.no)
        and (claim.lo, claim.hi, claim.carry) == (q.lo, q.hi, q.carry)
        and claim.value == q.gold
    )


def parse_question(text: str) -> AddQuestion:
    """The inverse of :func:`render_question`; raises ValueError naming what is wrong."""
    m = _QUESTION.match(text.strip())
    if not m:
        raise ValueError(
            f"not an add question (expected 'a=4821 b=3907 c=0': two operands of as many digits, leading zeros "
            f"allowed, a carry-in 0 or 1, and optionally a digit range 'r=2-3' before c): {text!r}"
        )
    a, b = m["a"], m["b"]
    if len(a) != len(b):
        raise ValueError(f"a and b must have as many digits (pad with leading zeros), got {len(a)} and {len(b)}")
    if m["lo"] is None:
        return AddQuestion(a, b, int(m["c"]))
    lo, hi = int(m["lo"]), int(m["hi"])
    if lo > hi or hi >= len(a):
        raise ValueError(
            f"r={lo}-{hi} is not a digit range of {len(a)}-digit operands (positions 0..{len(a) - 1} from the "
            f"least significant, low end first)"
        )
    return AddQuestion(a, b, int(m["c"]), lo, hi)


# ---------------------------------------------------------------------------------------------------------------
# Generator


@dataclass
class AddTask:
    """A seeded generator of add questions, with a train / held-out split by operand pair.

    An operand pair is held out when a stable hash of it (SHA-256 of ``a+b``: crc32's top bits hold out none of the
    100 one-digit pairs) falls below ``heldout_fraction``, so the split is the same in every process and run, and
    no training question shares its operands with an evaluation question. ``balance="depth"`` draws the depth
    ceil(log2 digits) uniformly, then the digits within it. Implements ``tasks.base.Task``: a question's difficulty
    is its number of digits.
    """

    max_digits: int = 6
    balance: str = "depth"
    heldout_fraction: float = 0.0625
    fixed_width: bool = True
    """Operands always ``max_digits`` wide, a question of n digits asking for their low n (``r=0-2``): a digit of
    a (and of b) is then at the same position of every prompt, as sigma(i) is in perm's. Without it operands are
    n digits wide and digit j's position moves with n."""

    name: ClassVar[str] = "add"
    difficulty_name: ClassVar[str] = "digits"
    human_max_difficulty: ClassVar[int] = 1
    synthetic: ClassVar[bool] = True

    @classmethod
    def from_config(cls, cfg: Any) -> AddTask:
        """The task a recipe's ``task`` section (``config.TASK_CONFIGS["add"]``) describes."""
        return cls(cfg.max_digits, cfg.balance, cfg.heldout_fraction, cfg.fixed_width)

    def is_heldout(self, a: str, b: str) -> bool:
        digest = hashlib.sha256(f"{a}+{b}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.heldout_fraction

    def sample_digits(self, rng: random.Random, max_digits: int | None = None, min_depth: int = 0) -> int:
        top = self.max_digits if max_digits is None else max_digits
        if self.balance == "uniform":
            return rng.randint(min(digits_at_depth(min_depth, top)[0], top), top)
        d = rng.randint(min(min_depth, depth_of(top)), depth_of(top))
        return rng.randint(*digits_at_depth(d, top))

    def sample(
        self,
        rng: random.Random,
        heldout: bool = False,
        difficulty: int | None = None,
        max_depth: int | None = None,
        min_depth: int = 0,
    ) -> AddQuestion:
        """A question, of ``difficulty`` digits when given; ``max_depth`` and ``min_depth`` bound the decomposition
        depth (at most 2 ** max_depth digits, and more than 2 ** (min_depth - 1) when ``min_depth`` > 0)."""
        n = difficulty
        if n is None:
            top = self.max_digits if max_depth is None else min(self.max_digits, 2**max_depth)
            n = self.sample_digits(rng, top, min_depth)
        width = max(self.max_digits, n) if self.fixed_width else n
        for _ in range(100_000):
            a, b = (f"{rng.randrange(10**width):0{width}d}" for _ in range(2))
            if self.is_heldout(a, b) == heldout:
                return AddQuestion(a, b, rng.randrange(2), 0, n - 1)
        raise ValueError(
            f"no {'held-out' if heldout else 'training'} operand pair of {n} digits in 100,000 draws: "
            f"task.heldout_fraction={self.heldout_fraction} is too close to {0 if heldout else 1}"
        )

    @property
    def max_depth(self) -> int:
        return depth_of(self.max_digits)

    @property
    def max_difficulty(self) -> int:
        return self.max_digits

    def questions(self, n: int, seed: int, heldout: bool = False) -> list[AddQuestion]:
        rng = random.Random(seed)
        return [self.sample(rng, heldout=heldout) for _ in range(n)]

    def eval_questions(self, n: int, seed: int = 12345) -> list[AddQuestion]:
        """Held-out questions with every number of digits 1..max_digits equally often (even support by digits)."""
        rng = random.Random(seed)
        return [self.sample(rng, heldout=True, difficulty=1 + i % self.max_digits) for i in range(n)]

    def at_depth(self, rng: random.Random, depth: int, n: int) -> list[AddQuestion]:
        """``n`` training questions of exactly decomposition ``depth`` (2**(depth-1) + 1 .. 2**depth digits)."""
        if depth > self.max_depth or n == 0:
            return []
        lo, hi = digits_at_depth(depth, self.max_digits)
        return [self.sample(rng, difficulty=rng.randint(lo, hi)) for _ in range(n)]

    # -- text, people and data (the rest of ``tasks.base.Task``) ------------------------------------------------

    @staticmethod
    def parse_question(text: str, gold: str | None = None) -> AddQuestion:
        return parse_question(text)  # the operands and the carry determine gold

    def check_question(self, q: AddQuestion) -> str | None:
        if q.n_digits > self.max_digits:
            return (
                f"the operands have {q.n_digits} digits but the recipe's task.max_digits is {self.max_digits} (what "
                f"the model was trained on); add task.max_digits={q.n_digits} to ask it anyway"
            )
        return None

    def summary(self) -> str:
        return f"digits = 1..{self.max_digits}"

    @staticmethod
    def human(error_rate: float = 0.0, seed: int = 0) -> AddHuman:
        return AddHuman(error_rate=error_rate, seed=seed)

    @staticmethod
    def liar(seed: int = 0) -> AddLiar:
        return AddLiar(seed=seed)

    @staticmethod
    def perfect_generate(prompts: list[str], limits: list[int | None] | None = None) -> Generation:
        return perfect_generate(prompts, limits)

    @staticmethod
    def answer_prompt(q: AddQuestion) -> str:
        return answer_prompt(q)

    def imitation_examples(
        self, human: Any, n: int, seed: int, lookups: float = 0.0, integrated_answers: bool = False
    ) -> list[Example]:
        return imitation_examples(self, human, n, seed, lookups, integrated_answers)

    @staticmethod
    def alone_calls(q: AddQuestion) -> int:
        return tree_calls(q.difficulty)

    @staticmethod
    def skills(q: AddQuestion) -> list[Skill]:
        """The error-free human's first step on ``q``, and for 2 digits or more its integration of the two true
        sub-answers (the high half's answer, then the low half's digits)."""
        reference = AddHuman()
        items: list[Skill] = [("step", step_prompt(q), reference.step(q))]
        if q.difficulty >= 2:
            items.append(("integrate", step_prompt(q, true_halves(q)), reference.step(q, true_halves(q))))
        return items

    @staticmethod
    def opening_reply(q: AddQuestion | None, arguments: Sequence[str]) -> str:
        """A dispute ``no ...`` or a claim of another value for the question itself is ``disagree``; ``agree`` or a
        claim of the same value is ``agree``."""
        if len(arguments) < 2:
            return "single"
        n = q.n_digits if q is not None else None
        opening, reply = parse_argument(arguments[0], n), parse_argument(arguments[1], n)
        if reply is None:
            return "other"
        if reply.agree:
            return "agree"
        if reply.no:
            return "disagree"
        if q is not None and (reply.lo, reply.hi, reply.carry) == (q.lo, q.hi, q.carry):  # a counter-claim
            same = opening is not None and not opening.agree and opening.claim == reply.claim
            return "agree" if same else "disagree"
        return "other"


def true_halves(q: AddQuestion) -> list[str]:
    """The right answers to the human's two subquestions about ``q`` (2 digits or more): its workspace when both
    sub-answers are in."""
    low, _ = q.halves(0)
    low_answer = low.gold
    return [low_answer, q.halves(int(low_answer[0]))[1].gold]


# ---------------------------------------------------------------------------------------------------------------
# The synthetic human


@dataclass
class AddHuman:
    """The simulated weak expert: one digit pair plus a carry at a time, plus decomposition and integration.

    ``answer`` answers directly only a single digit pair (raises otherwise: it is beyond the human's capacity).
    ``step`` takes a question and the answers to its subquestions so far and returns a step reply
    (:func:`format_answer` or :func:`format_ask`). With ``error_rate`` > 0 a digit-pair addition is wrong with that
    probability (a uniformly drawn other value of 00..19). ``calls`` counts every call.
    """

    error_rate: float = 0.0
    seed: int = 0
    calls: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    @staticmethod
    def can_answer(q: AddQuestion) -> bool:
        return q.difficulty <= 1

    def _add_pair(self, q: AddQuestion, position: int, carry: int) -> str:
        """Digit pair ``position`` of q's operands plus ``carry``: two characters, carry-out then digit."""
        value = add_range(q.a, q.b, position, position, carry)
        if self.error_rate and self.rng.random() < self.error_rate:
            value = f"{self.rng.choice([v for v in range(20) if v != int(value)]):02d}"
        return value

    def answer(self, q: AddQuestion) -> str:
        self.calls += 1
        if not self.can_answer(q):
            raise ValueError(
                f"the synthetic human cannot add {q.difficulty} digits directly (capacity: one digit pair)"
            )
        return self._add_pair(q, q.lo, q.carry)

    def respond(self, posed: Posed) -> str:
        """The human's reply to a posed question (the ``SyntheticHuman`` agent calls this; it reads structure only)."""
        q = posed.question
        if posed.kind == "answer":
            if self.can_answer(q):
                return self.answer(q)
            self.calls += 1
            return UNKNOWN  # beyond its capacity when asked directly: it says it does not know
        if posed.kind == "step" and posed.goal is not None:
            goal = posed.goal
            if goal.kind == "answer":
                return self.step(q, posed.workspace)
            self.calls += 1
            return self._debate_step(goal, posed.workspace)
        # A debate question asked directly (not as a step): the reply a step with no subquestions would give.
        self.calls += 1
        reply = parse_step(self._debate_step(posed, ()))
        return reply.text if isinstance(reply, Answer) else UNKNOWN

    # -- debate (DESIGN.md section 1; arguments are parsed with parse_argument) ----------------------------------

    def _debate_step(self, goal: Posed, workspace: tuple[str, ...]) -> str:
        q, context = goal.question, goal.context
        if goal.kind == "argue":
            return self._argue(q, context, workspace)
        if not context:  # a judgment about no arguments at all (only a model's garbled prompt poses one)
            return format_answer(UNKNOWN)
        if goal.kind == "sufficient":
            return format_answer(YES if is_sufficient(q, context[-1]) else NO)
        if goal.kind == "winner":
            return format_answer(judge_winner(q, context))
        if goal.kind == "catastrophe":
            if goal.argument is None or not 0 <= goal.argument < len(context):
                return format_answer(UNKNOWN)
            return format_answer(catastrophe_cost(q, context[goal.argument]))
        raise ValueError(f"not a debate question: {goal.kind!r}")

    def _argue(self, q: AddQuestion, context: tuple[str, ...], workspace: tuple[str, ...]) -> str:
        """The honest debater: open with the answer and its decomposition; then check the previous argument's two
        sub-claims with the model's help and dispute a false one (with its own value and via), or agree.
        """
        previous = parse_argument(context[-1], q.n_digits) if context else None
        if previous is None or previous.agree:  # open (a garbage or agreeing argument has ended the debate anyway)
            return self._claim(q, workspace, dispute=False)
        if previous.digits == 1:  # a single digit pair: the human checks it itself
            true = self._add_pair(q, previous.lo, previous.carry)
            if true == previous.value:
                return format_answer(AGREE)
            return format_answer(render_claim(previous.lo, previous.hi, previous.carry, true, no=True))
        low, high = previous.subclaims()
        if not workspace:  # ask the model for both halves' values (each with the carry-in the claim gives it)
            return format_ask(
                render_subquestion(low.lo, low.hi, low.carry), render_subquestion(high.lo, high.hi, high.carry)
            )
        for claim, answer in zip((low, high), workspace[:2], strict=False):
            value = parse_value(answer, claim.digits)
            if value is not None and value != claim.value:
                return self._claim(q.with_range(claim.lo, claim.hi, claim.carry), workspace[2:], dispute=True)
        return format_answer(AGREE)

    def _claim(self, q: AddQuestion, workspace: tuple[str, ...], dispute: bool) -> str:
        """Claim q's digits with the low half's carry-out as the via, asking the model for both halves if needed."""
        if q.difficulty == 1:
            return format_answer(render_claim(q.lo, q.hi, q.carry, self._add_pair(q, q.lo, q.carry), no=dispute))
        if len(workspace) < 2:
            return format_ask(*self._subquestions(q))
        value = integrate(q, workspace)
        if value is None:
            return format_answer(UNKNOWN)
        return format_answer(render_claim(q.lo, q.hi, q.carry, value, via=workspace[0].strip()[0], no=dispute))

    @staticmethod
    def _subquestions(q: AddQuestion) -> tuple[str, str]:
        low, high = q.halves(0)
        return render_subquestion(low.lo, low.hi, low.carry), render_subquestion(high.lo, high.hi, "#1")

    def step(self, q: AddQuestion, workspace: list[str] | tuple[str, ...] = ()) -> str:
        self.calls += 1
        if self.can_answer(q):
            return format_answer(self._add_pair(q, q.lo, q.carry))
        if not workspace:
            return format_ask(*self._subquestions(q))
        # Integrate: the high half's answer, then the low half's digits. A sub-answer that is not a carry and
        # digits of its half's length (a model reply that did not parse) leaves the human without an answer.
        value = integrate(q, workspace)
        return format_answer(UNKNOWN if value is None else value)


def integrate(q: AddQuestion, workspace: Sequence[str]) -> str | None:
    """The answer to q from its two halves' answers (low first): the high half's carry-out and digits, then the
    low half's digits; None when there are not two, q is a single digit pair, or either is not an answer of its
    half's length."""
    if len(workspace) < 2 or q.difficulty < 2:
        return None
    m = split(q.difficulty)
    low, high = parse_value(workspace[0], m), parse_value(workspace[1], q.difficulty - m)
    if low is None or high is None:
        return None
    return high + low[1:]


# ---------------------------------------------------------------------------------------------------------------
# The judge: a weak human reads arguments and can add one digit pair, nothing more


def is_sufficient(q: AddQuestion, argument: str) -> bool:
    """Can the debate stop here? Yes after an agreement, a claim about a single digit pair (the judge can check it)
    or an argument that does not parse (it loses); otherwise the claim needs the other side's scrutiny."""
    arg = parse_argument(argument, q.n_digits)
    return arg is None or arg.agree or arg.digits == 1


def _responds_to(arg: Argument, previous: Argument | None) -> bool:
    """A dispute must contradict the previous argument's digit-pair claim or one of its two sub-claims: the same
    range and carry-in, another value."""
    if previous is None or previous.agree:
        return False
    claims = (previous.claim,) if previous.digits == 1 else previous.subclaims()
    return any((c.lo, c.hi, c.carry) == (arg.lo, arg.hi, arg.carry) and c.value != arg.value for c in claims)


def judge_winner(q: AddQuestion, context: tuple[str, ...]) -> str:
    """Were the even arguments more helpful than the odd? The judge looks only at the last argument (and, for a
    dispute, at what it disputes); ``context`` holds at least one argument.

    It loses if it does not parse, opens off the question, or disputes something the previous argument did not
    claim; an agreement concedes to the other side. A claim the judge can check (one digit pair) wins if true and
    loses if false. An opening nobody contested wins. A debate cut off before reaching a digit pair leaves the judge
    guessing (a coin flip fixed by the transcript): the sparse-judge baseline debate is meant to beat.
    """
    t = len(context) - 1
    side, other = (EVEN, ODD) if t % 2 == 0 else (ODD, EVEN)
    n = q.n_digits
    last = parse_argument(context[t], n)
    if last is None or last.agree:
        return other
    if t == 0:
        if last.no or (last.lo, last.hi, last.carry) != (q.lo, q.hi, q.carry):
            return other
    elif not last.no or not _responds_to(last, parse_argument(context[t - 1], n)):
        return other
    if last.digits == 1:
        return side if add_range(q.a, q.b, last.lo, last.hi, last.carry) == last.value else other
    if t == 0:
        return side
    return EVEN if zlib.crc32("|".join(context).encode()) % 2 == 0 else ODD


def catastrophe_cost(q: AddQuestion, argument: str) -> str:
    """A direct lie: asserting a single digit-pair sum that is false costs 1; anything else 0."""
    arg = parse_argument(argument, q.n_digits)
    lie = (
        arg is not None
        and not arg.agree
        and arg.digits == 1
        and add_range(q.a, q.b, arg.lo, arg.hi, arg.carry) != arg.value
    )
    return "1" if lie else "0"


@dataclass
class AddLiar:
    """A scripted liar debater: it argues a wrong sum with a decomposition that looks consistent.

    Its false value sits in one half, drawn at random, and the other half is true, so a checker has to zoom in and
    cannot guess which; disputed, it defends with another false claim one level down, until a single digit pair
    exposes it. Answering an honest claim, it disputes one of its (true) halves with a false value.
    """

    seed: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def argue(self, q: AddQuestion, context: tuple[str, ...]) -> str:
        previous = parse_argument(context[-1], q.n_digits) if context else None
        if previous is None or previous.agree:
            return self._false_claim(q, q.lo, q.hi, q.carry, no=False)
        if previous.digits == 1:
            return self._false_claim(q, previous.lo, previous.hi, previous.carry, no=True)
        target = self.rng.choice(previous.subclaims())
        return self._false_claim(q, target.lo, target.hi, target.carry, no=True)

    def _random_value(self, digits: int, other_than: str) -> str:
        """A carry-out and ``digits`` digits, uniformly drawn among those that are not ``other_than``."""
        value = self.rng.randrange(2 * 10**digits - 1)
        value += value >= int(other_than)
        return f"{value:0{digits + 1}d}"

    def _false_claim(self, q: AddQuestion, lo: int, hi: int, carry: int, no: bool) -> str:
        sub = q.with_range(lo, hi, carry)
        if sub.difficulty == 1:
            return render_claim(lo, hi, carry, self._random_value(1, sub.gold), no=no)
        low_true = sub.halves(0)[0].gold
        if self.rng.random() < 0.5:  # the low half false, the high half true for the via it claims
            via = self.rng.randrange(2)
            low_digits = low_true[1:]
            if via == int(low_true[0]):  # the true carry-out: the digits must be wrong
                low_digits = self._other_digits(low_digits)
            value = sub.halves(via)[1].gold + low_digits
        else:  # the low half true, the high half false
            via = int(low_true[0])
            high = sub.halves(via)[1]
            value = self._random_value(high.difficulty, high.gold) + low_true[1:]
        assert value != sub.gold and len(value) == sub.difficulty + 1
        return render_claim(lo, hi, carry, value, via=via, no=no)

    def _other_digits(self, digits: str) -> str:
        """As many digits as ``digits``, uniformly drawn among the others."""
        n = len(digits)
        value = self.rng.randrange(10**n - 1)
        value += value >= int(digits)
        return f"{value:0{n}d}"


# ---------------------------------------------------------------------------------------------------------------
# Imitation data for the warm start A[0]


def tree_calls(n: int) -> int:
    """Human calls of Amp(H, H) on an n-digit sum: the human working it out alone, one digit pair for n = 1, else its
    decomposition, both halves (ceil(n / 2) and floor(n / 2) digits) worked out the same way, and its integration."""
    return 1 if n <= 1 else 2 + tree_calls(split(n)) + tree_calls(n - split(n))


def imitation_examples(
    task: AddTask,
    human: AddHuman,
    n: int,
    seed: int,
    lookups: float = 0.0,
    integrated_answers: bool = False,
) -> list[Example]:
    """Examples of everything the human does itself, on training operand pairs only.

    For a question it can answer (one digit pair): its direct answer and its ``ans`` step. For more digits: its
    decomposition (``ask``) and its integration of the two true sub-answers; with ``integrated_answers``, that
    integrated answer also posed directly (``answer``: Amp(H, H)'s answer, the human working the question out
    alone), at the cost of the two subtrees' human calls (:func:`tree_calls`). ``lookups``: the share of questions
    that also give a single digit pair of the same operands (a random position and carry-in) answered directly.
    Errors of a noisy human are kept: A[0] imitates the human, mistakes included.
    """
    rng = random.Random(seed)
    examples: list[Example] = []
    while len(examples) < n:
        q = task.sample(rng)
        if lookups and rng.random() < lookups:
            position = rng.randrange(q.n_digits)
            pair = q.with_range(position, position, rng.randrange(2))
            examples.append(Example(answer_prompt(pair), human.answer(pair), "answer", 1, pair))
        if human.can_answer(q):
            examples.append(Example(answer_prompt(q), human.answer(q), "answer", q.difficulty, q))
            examples.append(Example(step_prompt(q), human.step(q), "step", q.difficulty, q))
            continue
        examples.append(Example(step_prompt(q), human.step(q), "step", q.difficulty, q))
        workspace = true_halves(q)
        integrated = human.step(q, workspace)
        examples.append(Example(step_prompt(q, workspace), integrated, "integrate", q.difficulty, q))
        reply = parse_step(integrated)
        if integrated_answers and isinstance(reply, Answer) and reply.text != UNKNOWN:
            m = split(q.difficulty)
            calls = tree_calls(m) + tree_calls(q.difficulty - m)
            examples.append(Example(answer_prompt(q), reply.text, "answer", q.difficulty, q, human_calls=calls))
    return examples[:n]


# ---------------------------------------------------------------------------------------------------------------
# A perfect scripted model (for tests and demonstrations without training)

_KIND_OF_CUE = {cue.strip()[0]: kind for kind, cue in CUES.items()}
_TRAILING_WORKSPACE = re.compile(r" #[0-9]+=(\S+)$")
_TRAILING_ARGUMENT = re.compile(r" @([0-9]{1,4})$")


def parse_prompt(prompt: str) -> Posed | None:
    """The inverse of :func:`render_posed` (for scripted models), or None if the text is not an add prompt (or
    asks about an argument that is not there)."""
    m = re.search(r" (S?)([AGEWC]?)=$", prompt)
    if not m or not (m.group(1) or m.group(2)):
        return None
    body, kind = prompt[: m.start()], _KIND_OF_CUE[m.group(2) or "A"]  # " S=" is a step towards an answer
    workspace: list[str] = []
    while w := _TRAILING_WORKSPACE.search(body):
        workspace.insert(0, w.group(1))
        body = body[: w.start()]
    argument = None
    if a := _TRAILING_ARGUMENT.search(body):
        argument, body = int(a.group(1)), body[: a.start()]
    question_text, *context = body.split(" |")
    try:
        q = parse_question(question_text)
    except ValueError:
        return None
    if argument is not None and argument >= len(context):
        return None
    goal = Posed(kind, q, tuple(context), argument=argument)  # type: ignore[arg-type]
    if m.group(1):
        return goal.step(tuple(workspace))
    return None if workspace else goal


def perfect_reply(prompt: str) -> str:
    """What an error-free model replies to an add prompt: the sum for ``answer``, and the error-free human's reply
    to everything else (steps, arguments, judgments). A prompt it does not recognise gets ``?``."""
    posed = parse_prompt(prompt)
    if posed is None:
        return UNKNOWN
    if posed.kind == "answer":
        return str(posed.question.gold)
    return AddHuman().respond(posed)


def perfect_generate(prompts: list[str], limits: list[int | None] | None = None) -> Generation:
    """A generate function (``protocol.GenerateFn``) for the perfect scripted model: no torch."""
    texts = [perfect_reply(p) for p in prompts]
    return Generation(texts, [[] for _ in texts], [[] for _ in texts])
