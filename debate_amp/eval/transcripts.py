"""Statistics of saved debates: what ``debate-amp eval`` prints. It reads only transcript records (DESIGN.md
section 6, ``debate_amp.debate.transcript``); every definition is in ``docs/eval.md``.

Reading drops the trace trees at once and keeps one small :class:`Row` per debate, so 10,000 debates fit in a few
megabytes and the statistics are one pass of plain Python. Intervals are 95%:

- a proportion of debates: Wilson score interval (Wilson 1927);
- a ratio of counts pooled over debates (human-call fraction, catastrophe rate per argument): the ratio estimator
  R = sum(y) / sum(x) with a normal interval R +- z se, se^2 = sum((y_i - R x_i)^2) / (n (n - 1) mean(x)^2)
  (the delta method with debates as clusters: calls and arguments of one debate are not independent);
- a mean (turns): mean +- z sd / sqrt(n);
- ``compare`` (B - A): Newcombe's hybrid score interval for a difference of proportions (Newcombe 1998, method
  10, from the two Wilson intervals); normal approximation (Welch standard error) for a difference of means and
  of ratios.
"""

from __future__ import annotations

import functools
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from debate_amp.debate.transcript import TranscriptError, parse_record, record_task
from debate_amp.protocol import EVEN, ODD
from debate_amp.tasks import TASKS, Task, task_named

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal

# How the odd side's first argument (arg_1) relates to the even opening (arg_0); see Row.opening_reply.
OPENING_REPLIES = ("single", "disagree", "agree", "other")

# ---------------------------------------------------------------------------------------------------------------
# Intervals


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion: (c -+ h) / (1 + z^2/n), c = p + z^2/2n, h = z sqrt(p(1-p)/n + z^2/4n^2).

    (nan, nan) for n = 0.
    """
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


def newcombe(x_a: int, n_a: int, x_b: int, n_b: int, z: float = Z95) -> tuple[float, float, float]:
    """Difference of proportions d = p_b - p_a with Newcombe's hybrid score interval (method 10):

        lo = d - sqrt((p_b - l_b)^2 + (u_a - p_a)^2),   hi = d + sqrt((u_b - p_b)^2 + (p_a - l_a)^2)

    where (l, u) are the Wilson intervals of each proportion. nan when either n is 0.
    """
    if n_a == 0 or n_b == 0:
        return math.nan, math.nan, math.nan
    p_a, p_b = x_a / n_a, x_b / n_b
    (l_a, u_a), (l_b, u_b) = wilson(x_a, n_a, z), wilson(x_b, n_b, z)
    d = p_b - p_a
    return d, d - math.hypot(p_b - l_b, u_a - p_a), d + math.hypot(u_b - p_b, p_a - l_a)


@dataclass
class Rate:
    """A proportion of debates: ``successes`` of ``n``, with its Wilson interval."""

    successes: int = 0
    n: int = 0

    def add(self, success: bool) -> None:
        self.successes += int(success)
        self.n += 1

    @property
    def value(self) -> float:
        return self.successes / self.n if self.n else math.nan

    def as_dict(self) -> dict[str, Any]:
        lo, hi = wilson(self.successes, self.n)
        return _clean({"value": self.value, "lo": lo, "hi": hi, "successes": self.successes, "n": self.n})


@dataclass
class Ratio:
    """sum(y) / sum(x) over debates (y_i of x_i per debate), with a delta-method interval clustered by debate."""

    ys: list[float] = field(default_factory=list)
    xs: list[float] = field(default_factory=list)

    def add(self, y: float, x: float) -> None:
        self.ys.append(y)
        self.xs.append(x)

    @property
    def value(self) -> float:
        total = sum(self.xs)
        return sum(self.ys) / total if total else math.nan

    def se(self) -> float:
        n, r = len(self.xs), self.value
        if n < 2 or math.isnan(r):
            return math.nan
        mean_x = sum(self.xs) / n
        return math.sqrt(sum((y - r * x) ** 2 for y, x in zip(self.ys, self.xs, strict=True)) / (n * (n - 1))) / mean_x

    def as_dict(self) -> dict[str, Any]:
        r, se = self.value, self.se()
        lo, hi = (max(0.0, r - Z95 * se), min(1.0, r + Z95 * se)) if not math.isnan(se) else (math.nan, math.nan)
        return _clean({"value": r, "lo": lo, "hi": hi, "successes": sum(self.ys), "n": sum(self.xs)})


@dataclass
class Mean:
    """A mean over debates with a normal interval mean +- z sd / sqrt(n)."""

    values: list[float] = field(default_factory=list)

    @property
    def value(self) -> float:
        return sum(self.values) / len(self.values) if self.values else math.nan

    def sd(self) -> float:
        n, m = len(self.values), self.value
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (n - 1)) if n > 1 else math.nan

    def as_dict(self) -> dict[str, Any]:
        m, half = self.value, Z95 * self.sd() / math.sqrt(max(1, len(self.values)))
        return _clean({"value": m, "lo": m - half, "hi": m + half, "sd": self.sd(), "n": len(self.values)})


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    """NaN is not JSON: undefined numbers are None."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in d.items()}


# ---------------------------------------------------------------------------------------------------------------
# Reading


@dataclass(slots=True)
class Row:
    """One debate, reduced to what the statistics need (the trace trees are dropped on reading).

    ``even_right``: the even opening arg_0 claims the gold answer to the question itself (the task's
    ``opening_claims_gold``: for perm a claim about the question's own x and k, not a dispute or ``agree``, whose
    value is gold); None when gold is unknown or the question does not parse. ``opening_reply``: what the odd
    side's first argument arg_1 says about arg_0 (the task's ``opening_reply``): ``single`` (there is none: the
    debate stopped after arg_0), ``disagree`` (a dispute ``no ...``, or a claim of another value for the
    question), ``agree`` (``agree``, or a claim of the same value), ``other`` (does not parse, or claims something
    else, or the record names a task that is not registered).
    """

    source: str  # file:line
    run: str
    update: int
    question_id: str
    task: str  # the registered task's name (``perm`` for a schema-1 record)
    question: str
    gold: str | None
    difficulty: int | None  # perm: the power k, parsed from the question by the task; None if it does not parse
    arguments: tuple[str, ...]
    continues: tuple[bool, ...]  # continue_t as recorded
    forced_stop: bool  # continue_0 was forced false by force_stop_p (no judgment was asked)
    winner: str | None  # "even", "odd", or None (the verdict did not parse)
    forfeit: bool  # an argument that did not parse ended the debate; the winner is the rule's, not the judge's
    even_right: bool | None
    opening_reply: str
    human_calls: int
    model_calls: int
    costs: tuple[float, ...]

    @property
    def correct(self) -> bool | None:
        """Did the verdict go to the side gold supports? None without gold, without a verdict, or after a forfeit
        (the judge was not asked)."""
        if self.even_right is None or self.winner is None or self.forfeit:
            return None
        return (self.winner == EVEN) == self.even_right


def _question(task: Task | None, text: str, gold: str | None) -> Any | None:
    if task is None:
        return None
    try:
        return task.parse_question(text, gold)
    except ValueError:
        return None


@functools.lru_cache(maxsize=16)
def _task(name: str) -> Task | None:
    """The registered task a record names (None for a name no longer registered: its rows keep what needs no task)."""
    try:
        return task_named(name)
    except ValueError:
        return None


def difficulty_name(rows: Iterable[Row]) -> str:
    """What the rows' task calls a question's difficulty (``k``, ``digits``); ``difficulty`` for several tasks."""
    names = {getattr(TASKS.get(r.task), "difficulty_name", "difficulty") for r in rows}
    return names.pop() if len(names) == 1 else "difficulty"


def to_row(record: dict[str, Any], source: str) -> Row:
    """A validated record as a :class:`Row` (raises KeyError / TypeError / ValueError on a malformed inner field)."""
    arguments = tuple(str(turn["text"]) for turn in record["turns"])
    continues = record["continues"]
    gold = record["gold"]
    task = _task(record_task(record))
    q = _question(task, record["question"], gold)
    even_right = q.opening_claims_gold(arguments[0]) if gold is not None and q is not None else None
    winner = record["winner"]["side"]
    return Row(
        source=source,
        run=record["run"],
        update=record["update"],
        question_id=record["question_id"],
        task=record_task(record),
        question=record["question"],
        gold=gold,
        difficulty=None if q is None else q.difficulty,
        arguments=arguments,
        continues=tuple(bool(c["continue"]) for c in continues),
        forced_stop=bool(continues and continues[0].get("forced")),
        winner=winner if winner in (EVEN, ODD) else None,
        forfeit=bool(record["winner"].get("forced")),
        even_right=even_right,
        opening_reply=task.opening_reply(q, arguments) if task else ("single" if len(arguments) < 2 else "other"),
        human_calls=int(record["human_calls"]),
        model_calls=int(record["model_calls"]),
        costs=tuple(float(c["cost"]) for c in record["costs"]),
    )


def transcript_files(path: str | Path) -> list[Path]:
    """The JSONL files of ``path``: a file as given; a run directory: its ``transcripts/*.jsonl``; a folder: its
    ``*.jsonl``. Raises FileNotFoundError naming the path when there is nothing to read."""
    p = Path(path)
    if p.is_dir():
        folder = p / "transcripts" if (p / "transcripts").is_dir() else p
        files = sorted(folder.glob("*.jsonl"))
        if not files:
            raise FileNotFoundError(f"{path}: no transcripts (a .jsonl file, or a run directory with transcripts/)")
        return files
    if not p.is_file():
        raise FileNotFoundError(f"{path}: no such transcript file or run directory")
    return [p]


def iter_records(
    files: Iterable[Path], skip_bad: bool = False, on_skip: Callable[[str], None] | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(file:line, record)`` for every valid line. A bad line raises :class:`TranscriptError` naming file:line,
    or with ``skip_bad`` is passed to ``on_skip`` (its message) and skipped."""
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:  # bytes that are not UTF-8 fail as bad JSON
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    yield f"{path}:{lineno}", parse_record(line, f"{path}:{lineno}")
                except TranscriptError as e:
                    if not skip_bad:
                        raise
                    if on_skip is not None:
                        on_skip(str(e))


@dataclass
class Transcripts:
    """The debates read from some paths, and the bad lines skipped (their messages)."""

    rows: list[Row]
    files: list[Path]
    skipped: list[str] = field(default_factory=list)


def load(paths: Sequence[str | Path], skip_bad: bool = False) -> Transcripts:
    """Read every record under ``paths`` (files or run directories) as rows.

    A malformed line (bad JSON, unknown schema_version, a missing or ill-typed field) raises
    :class:`TranscriptError` naming ``file:line``; with ``skip_bad`` it is counted in ``skipped`` instead.
    """
    files = [f for p in paths for f in transcript_files(p)]
    out = Transcripts([], files)
    for source, record in iter_records(files, skip_bad, out.skipped.append):
        try:
            out.rows.append(to_row(record, source))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            message = f"{source}: malformed record ({type(e).__name__}: {e})"
            if not skip_bad:
                raise TranscriptError(message) from None
            out.skipped.append(message)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Statistics


def _trend(update: int, rows: list[Row]) -> dict[str, Any]:
    """The few numbers per update (point estimates)."""
    correct = [r.correct for r in rows if r.correct is not None]
    arguments = sum(len(r.costs) for r in rows)
    calls = sum(r.human_calls + r.model_calls for r in rows)
    return _clean(
        {
            "update": update,
            "debates": len(rows),
            "judge_accuracy": sum(correct) / len(correct) if correct else math.nan,
            "even_win_rate": sum(r.winner == EVEN for r in rows) / len(rows),
            "mean_turns": sum(len(r.arguments) for r in rows) / len(rows),
            "continue0_rate": sum(bool(r.continues and r.continues[0]) for r in rows) / len(rows),
            "human_call_fraction": sum(r.human_calls for r in rows) / calls if calls else math.nan,
            "catastrophe_rate": sum(c > 0 for r in rows for c in r.costs) / arguments if arguments else math.nan,
        }
    )


def statistics(rows: Sequence[Row]) -> dict[str, Any]:
    """Every statistic of ``docs/eval.md`` as one JSON-ready dict (undefined numbers are None)."""
    accuracy = Rate()
    by_difficulty: defaultdict[str, Rate] = defaultdict(Rate)
    by_reply = {reply: Rate() for reply in OPENING_REPLIES}
    wins = {EVEN: Rate(), ODD: Rate(), "none": Rate()}
    continue0, forced, turns = Rate(), Rate(), Mean()
    human_fraction, catastrophe = Ratio(), Ratio()
    turn_counts: Counter[int] = Counter()
    replies: Counter[str] = Counter()
    by_update: dict[int, list[Row]] = defaultdict(list)
    human_calls = model_calls = 0
    cost_sum = 0.0
    for r in rows:
        correct = r.correct
        if correct is not None:
            accuracy.add(correct)
            by_difficulty["?" if r.difficulty is None else str(r.difficulty)].add(correct)
            by_reply[r.opening_reply].add(correct)
        for side, rate in wins.items():
            rate.add(r.winner == side if side != "none" else r.winner is None)
        continue0.add(bool(r.continues and r.continues[0]))
        forced.add(r.forced_stop)
        turns.values.append(len(r.arguments))
        turn_counts[len(r.arguments)] += 1
        replies[r.opening_reply] += 1
        human_calls += r.human_calls
        model_calls += r.model_calls
        human_fraction.add(r.human_calls, r.human_calls + r.model_calls)
        catastrophe.add(sum(c > 0 for c in r.costs), len(r.costs))
        cost_sum += sum(r.costs)
        by_update[r.update].append(r)
    n = len(rows)
    arguments = sum(catastrophe.xs)
    return {
        "debates": n,
        "judge_accuracy": accuracy.as_dict(),
        "difficulty_name": difficulty_name(rows),
        "judge_accuracy_by_difficulty": {
            d: by_difficulty[d].as_dict()
            for d in sorted(by_difficulty, key=lambda d: (d == "?", int(d) if d != "?" else 0))
        },
        "judge_accuracy_by_opening_reply": {reply: by_reply[reply].as_dict() for reply in OPENING_REPLIES},
        "opening_reply": {reply: replies[reply] for reply in OPENING_REPLIES},
        "even_win_rate": wins[EVEN].as_dict(),
        "odd_win_rate": wins[ODD].as_dict(),
        "no_verdict_rate": wins["none"].as_dict(),
        "mean_turns": turns.as_dict(),
        "turns": {str(t): turn_counts[t] for t in sorted(turn_counts)},
        "continue0_rate": continue0.as_dict(),
        "forced_stop_rate": forced.as_dict(),
        "human_calls": human_calls,
        "model_calls": model_calls,
        "human_calls_per_debate": human_calls / n if n else None,
        "human_call_fraction": human_fraction.as_dict(),
        "catastrophe_rate": catastrophe.as_dict(),
        "mean_cost": cost_sum / arguments if arguments else None,
        "updates": [_trend(u, by_update[u]) for u in sorted(by_update)],
    }


# (key, label, kind): the statistics ``compare`` differences and the tables show, in order.
COMPARED = (
    ("judge_accuracy", "judge accuracy", "rate"),
    ("judge_accuracy_disagree", "  when the sides disagree", "rate"),
    ("even_win_rate", "even wins", "rate"),
    ("odd_win_rate", "odd wins", "rate"),
    ("no_verdict_rate", "no verdict", "rate"),
    ("continue0_rate", "continue_0 = true", "rate"),
    ("forced_stop_rate", "  continue_0 forced false", "rate"),
    ("mean_turns", "mean turns", "mean"),
    ("human_call_fraction", "human-call fraction", "ratio"),
    ("catastrophe_rate", "catastrophe rate (per argument)", "ratio"),
)


def _pick(stats: dict[str, Any], key: str) -> dict[str, Any]:
    if key == "judge_accuracy_disagree":
        return dict(stats["judge_accuracy_by_opening_reply"]["disagree"])
    return dict(stats[key])


def compare(a: Sequence[Row], b: Sequence[Row]) -> dict[str, Any]:
    """B - A for each statistic of :data:`COMPARED`, with a 95% interval: Newcombe's hybrid score interval for a
    proportion of debates; normal approximation with the two standard errors added in quadrature for a mean or a
    ratio (each se as in :func:`statistics`)."""
    stats_a, stats_b = statistics(a), statistics(b)
    turns_a, turns_b = Mean([len(r.arguments) for r in a]), Mean([len(r.arguments) for r in b])
    ratios = {
        "human_call_fraction": lambda rows: _ratio(rows, lambda r: (r.human_calls, r.human_calls + r.model_calls)),
        "catastrophe_rate": lambda rows: _ratio(rows, lambda r: (sum(c > 0 for c in r.costs), len(r.costs))),
    }
    out: dict[str, Any] = {}
    for key, _, kind in COMPARED:
        sa, sb = _pick(stats_a, key), _pick(stats_b, key)
        if kind == "rate":
            d, lo, hi = newcombe(sa["successes"], sa["n"], sb["successes"], sb["n"])
            method = "newcombe"
        else:
            if kind == "mean":
                se_a, se_b = (m.sd() / math.sqrt(max(1, len(m.values))) for m in (turns_a, turns_b))
                va, vb = turns_a.value, turns_b.value
            else:
                ra, rb = ratios[key](a), ratios[key](b)
                se_a, se_b, va, vb = ra.se(), rb.se(), ra.value, rb.value
            d = vb - va
            half = Z95 * math.hypot(se_a, se_b)
            lo, hi, method = d - half, d + half, "normal"
        out[key] = _clean({"a": sa["value"], "b": sb["value"], "difference": d, "lo": lo, "hi": hi, "method": method})
    return {"a": stats_a, "b": stats_b, "differences": out}


def _ratio(rows: Sequence[Row], yx: Callable[[Row], tuple[float, float]]) -> Ratio:
    ratio = Ratio()
    for r in rows:
        ratio.add(*yx(r))
    return ratio


# ---------------------------------------------------------------------------------------------------------------
# Text


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _cell(s: dict[str, Any], kind: str) -> str:
    if s["value"] is None:
        return "-"
    return f"{s['value']:.2f}" if kind == "mean" else _pct(s["value"])


def _interval(s: dict[str, Any], kind: str) -> str:
    if s["lo"] is None:
        return ""
    if kind == "mean":
        return f"[{s['lo']:.2f}, {s['hi']:.2f}]"
    return f"[{_pct(s['lo'])}, {_pct(s['hi'])}]"


def _n(s: dict[str, Any], kind: str) -> str:
    if kind == "rate":
        return f"{s['successes']}/{s['n']}"
    if kind == "ratio":
        return f"{s['successes']:g}/{s['n']:g}"
    return str(s["n"])


def format_table(stats: dict[str, Any]) -> str:
    """The plain-text table ``debate-amp eval`` prints."""
    lines = [f"{'statistic':<34} {'value':>8}  {'95% interval':<18} {'count':>11}"]
    for key, label, kind in COMPARED:
        s = _pick(stats, key)
        lines.append(f"{label:<34} {_cell(s, kind):>8}  {_interval(s, kind):<18} {_n(s, kind):>11}")
    per_debate = stats["human_calls_per_debate"]
    lines.append(
        f"human calls {stats['human_calls']} ({'-' if per_debate is None else f'{per_debate:.2f}'} per debate), "
        f"model calls {stats['model_calls']}"
    )
    replies = stats["opening_reply"]
    lines.append(
        "the odd side's first reply to the even opening: "
        + ", ".join(f"{reply} {replies[reply]}" for reply in OPENING_REPLIES)
    )
    lines.append(
        "judge accuracy by that reply: "
        + ", ".join(
            f"{reply} {_pct(s['value'])} (n={s['n']})" for reply, s in stats["judge_accuracy_by_opening_reply"].items()
        )
    )
    total = max(1, stats["debates"])
    lines.append("turns: " + "  ".join(f"{t}: {c} ({c / total:.0%})" for t, c in stats["turns"].items()))
    lines.append("")
    name = stats["difficulty_name"]
    width = max(3, len(name))
    lines.append(f"judge accuracy by {name}\n{name:>{width}} {'n':>6} {'accuracy':>9}  95% interval")
    for d, s in stats["judge_accuracy_by_difficulty"].items():
        lines.append(f"{d:>{width}} {s['n']:>6} {_pct(s['value']):>9}  {_interval(s, 'rate')}")
    lines.append("")
    lines.append("per update")
    lines.append(
        f"{'update':>6} {'debates':>7} {'judge acc':>9} {'even wins':>9} {'turns':>6} {'cont_0':>7} "
        f"{'human frac':>10} {'catastr.':>8}"
    )
    for u in stats["updates"]:
        lines.append(
            f"{u['update']:>6} {u['debates']:>7} {_pct(u['judge_accuracy']):>9} {_pct(u['even_win_rate']):>9} "
            f"{u['mean_turns']:>6.2f} {_pct(u['continue0_rate']):>7} {_pct(u['human_call_fraction']):>10} "
            f"{_pct(u['catastrophe_rate']):>8}"
        )
    return "\n".join(lines)


def format_compare(result: dict[str, Any], name_a: str, name_b: str) -> str:
    """A and B side by side with B - A and its 95% interval."""
    lines = [
        f"A = {name_a} ({result['a']['debates']} debates)   B = {name_b} ({result['b']['debates']} debates)",
        f"{'statistic':<34} {'A':>8} {'B':>8} {'B - A':>8}  {'95% interval':<18} method",
    ]
    for key, label, kind in COMPARED:
        d = result["differences"][key]
        if kind == "mean":
            cells = [("-" if d[x] is None else f"{d[x]:.2f}") for x in ("a", "b", "difference")]
            interval = "" if d["lo"] is None else f"[{d['lo']:+.2f}, {d['hi']:+.2f}]"
        else:
            cells = [_pct(d["a"]), _pct(d["b"]), "-" if d["difference"] is None else f"{d['difference']:+.1%}"]
            interval = "" if d["lo"] is None else f"[{d['lo']:+.1%}, {d['hi']:+.1%}]"
        lines.append(f"{label:<34} {cells[0]:>8} {cells[1]:>8} {cells[2]:>8}  {interval:<18} {d['method']}")
    return "\n".join(lines)
