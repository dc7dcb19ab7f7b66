"""People as judges of saved debates: what ``debate-amp eval TRANSCRIPTS --human-judgments FILE`` adds.

The judgments come from judge mode of ``debate-amp serve`` (:mod:`debate_amp.serve.judgments`): per person and
debate, an initial answer to the question given before any argument was shown, and a verdict after the arguments,
each with a confidence (50 to 100%). Over every judged debate among the transcripts read:

- naive accuracy: the initial answer is right (the task's ``question.score(answer) == 1``): the baseline a debate
  has to beat (Khan et al. 2024, "Debating with more persuasive LLMs leads to more truthful answers");
- accuracy after debate: the verdict goes to the side gold supports, by the rule ``debate-amp eval`` scores the
  model judge with (:attr:`~debate_amp.eval.transcripts.Row.correct`): right iff (winner == even) ==
  ``question.opening_claims_gold(arg_0)``;
- seconds per judgment (median), and the mean confidences.

Beside the model judge, over the same debates: those where it gave a verdict (a forfeit's winner is the forfeit
rule's, the judge was not asked; a verdict that did not parse is none), as :func:`~debate_amp.eval.protocols.rejudge`
does; how many judged debates are left out, and why, is reported:

- people's accuracy after debate on those debates;
- agreement with the model judge's recorded verdict;
- the model judge's accuracy.

Proportions of judgments (or, for the model judge, of distinct judged debates) with 95% Wilson intervals. A debate
judged by several people counts once per judgment. A judgment is matched to its debate by the transcript file
(resolved path) and line, and checked against the record's ``question_id``; a judgment whose file was moved is
matched by file name, line and ``question_id`` instead.
"""

from __future__ import annotations

import statistics as stats_lib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from debate_amp.eval.transcripts import Rate, Row, _clean, _interval, _n, _pct, _question, _task
from debate_amp.protocol import EVEN
from debate_amp.serve.judgments import Judgment


def match(rows: Sequence[Row], judgments: Sequence[Judgment]) -> tuple[list[tuple[Judgment, Row]], int]:
    """``(judgment, row)`` for every judgment of a debate among ``rows``, and how many judgments matched none."""
    by_path: dict[tuple[str, int], Row] = {}
    by_name: defaultdict[tuple[str, int, str], list[Row]] = defaultdict(list)
    for r in rows:
        path, line = r.source.rsplit(":", 1)
        by_path[(str(Path(path).resolve()), int(line))] = r
        by_name[(Path(path).name, int(line), r.question_id)].append(r)
    matched, unmatched = [], 0
    for j in judgments:
        row: Row | None = by_path.get((j.transcript, j.line))
        if row is None or row.question_id != j.question_id:
            same = by_name.get((Path(j.transcript).name, j.line, j.question_id), [])
            row = same[0] if len(same) == 1 else None
        if row is None:
            unmatched += 1
        else:
            matched.append((j, row))
    return matched, unmatched


def _naive_right(j: Judgment, row: Row) -> bool | None:
    """Is the initial answer the gold answer? None without gold or when the question does not parse."""
    if row.gold is None:
        return None
    q = _question(_task(row.task), row.question, row.gold)
    return None if q is None else q.score(j.initial_answer) == 1.0


def _median(values: list[float]) -> float | None:
    return stats_lib.median(values) if values else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _model_verdict(row: Row) -> bool:
    """Did the model judge give this debate a verdict? Not after a forfeit (the rule's winner, the judge was not
    asked), nor when its verdict did not parse."""
    return row.winner is not None and not row.forfeit


def human_judge_statistics(rows: Sequence[Row], judgments: Sequence[Judgment]) -> dict[str, Any]:
    """The statistics of the module docstring as one JSON-ready dict (undefined numbers are None)."""
    matched, unmatched = match(rows, judgments)
    naive, after, same_after, agreement = Rate(), Rate(), Rate(), Rate()
    by_person: defaultdict[str, dict[str, Rate]] = defaultdict(lambda: {"naive": Rate(), "after_debate": Rate()})
    debates: dict[str, Row] = {}
    for j, row in matched:
        debates[row.source] = row
        if (right := _naive_right(j, row)) is not None:
            naive.add(right)
            by_person[j.person]["naive"].add(right)
        if row.even_right is not None:
            after.add((j.winner == EVEN) == row.even_right)
            by_person[j.person]["after_debate"].add((j.winner == EVEN) == row.even_right)
        if _model_verdict(row):
            agreement.add(j.winner == row.winner)
            if row.even_right is not None:
                same_after.add((j.winner == EVEN) == row.even_right)
    model = Rate()
    for row in debates.values():
        if row.correct is not None:  # (None after a forfeit or without a verdict, as _model_verdict)
            model.add(row.correct)
    left_out = {"forfeit": 0, "no_verdict": 0}
    for row in debates.values():
        if row.forfeit:
            left_out["forfeit"] += 1
        elif row.winner is None:
            left_out["no_verdict"] += 1
    initial_s = [j.initial_seconds for j, _ in matched]
    verdict_s = [j.verdict_seconds for j, _ in matched]
    return _clean(
        {
            "judgments": len(matched),
            "debates": len(debates),
            "people": len({j.person for j, _ in matched}),
            "unmatched_judgments": unmatched,
            "naive_accuracy": naive.as_dict(),
            "accuracy_after_debate": after.as_dict(),
            # beside the model judge: only the debates it gave a verdict in
            "same_debates": len(debates) - sum(left_out.values()),
            "same_debates_left_out": left_out,
            "accuracy_after_debate_same_debates": same_after.as_dict(),
            "agreement_with_model_judge": agreement.as_dict(),
            "model_judge_accuracy": model.as_dict(),
            "median_seconds": _median([a + b for a, b in zip(initial_s, verdict_s, strict=True)]),
            "median_seconds_initial": _median(initial_s),
            "median_seconds_verdict": _median(verdict_s),
            "mean_initial_confidence": _mean([j.initial_confidence for j, _ in matched]),
            "mean_verdict_confidence": _mean([j.winner_confidence for j, _ in matched]),
            "by_person": {
                person: {name: rate.as_dict() for name, rate in rates.items()}
                for person, rates in sorted(by_person.items())
            },
        }
    )


# (key, label): the proportions the table shows, in order: people's own over every judged debate, then the
# comparison with the model judge over the debates it gave a verdict in.
SHOWN_ALL = (
    ("naive_accuracy", "human naive accuracy (before debate)"),
    ("accuracy_after_debate", "human accuracy after debate"),
)
SHOWN_SAME = (
    ("accuracy_after_debate_same_debates", "human accuracy after debate (same debates)"),
    ("agreement_with_model_judge", "agreement with the model judge (same debates)"),
    ("model_judge_accuracy", "model judge accuracy (same debates)"),
)


def _seconds(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _proportion(s: dict[str, Any], label: str) -> str:
    return f"{label:<46} {_pct(s['value']):>8}  {_interval(s, 'rate'):<18} {_n(s, 'rate'):>9}"


def _left_out(stats: dict[str, Any]) -> str:
    """`` (left out: 2 forfeited, 1 without a verdict)``; empty when none was."""
    n = stats["same_debates_left_out"]
    why = [
        f"{n['forfeit']} forfeited" if n["forfeit"] else "",
        f"{n['no_verdict']} without a verdict" if n["no_verdict"] else "",
    ]
    return f" (left out: {', '.join(w for w in why if w)})" if any(why) else ""


def format_human_judges(stats: dict[str, Any], source: str) -> str:
    """The plain-text section ``debate-amp eval --human-judgments`` prints after the table."""
    people = stats["people"]
    lines = [
        f"human judges ({source}): {stats['judgments']} judgments of {stats['debates']} debates by {people} "
        f"{'person' if people == 1 else 'people'}"
        + (f"; {stats['unmatched_judgments']} judgments of other transcripts" if stats["unmatched_judgments"] else ""),
        f"{'statistic':<46} {'value':>8}  {'95% interval':<18} {'count':>9}",
        f"all {stats['debates']} judged debates:",
        *(_proportion(stats[key], label) for key, label in SHOWN_ALL),
        f"same debates: the {stats['same_debates']} the model judge gave a verdict in{_left_out(stats)}:",
        *(_proportion(stats[key], label) for key, label in SHOWN_SAME),
    ]
    confidence = [stats["mean_initial_confidence"], stats["mean_verdict_confidence"]]
    lines.append(
        f"median seconds per judgment {_seconds(stats['median_seconds'])} (initial answer "
        f"{_seconds(stats['median_seconds_initial'])}, verdict {_seconds(stats['median_seconds_verdict'])}); "
        "mean confidence " + ", ".join(("-" if c is None else f"{c:.0f}%") for c in confidence) + " (initial, verdict)"
    )
    if people > 1:
        for person, rates in stats["by_person"].items():
            naive, after = rates["naive"], rates["after_debate"]
            lines.append(
                f"  {person}: naive {_pct(naive['value'])} (n={naive['n']}), "
                f"after debate {_pct(after['value'])} (n={after['n']})"
            )
    return "\n".join(lines)
