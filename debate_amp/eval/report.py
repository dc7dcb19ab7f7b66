"""``debate-amp report``: one self-contained HTML page for a run directory.

First what a researcher looks for: the final table (``final.json``) and one figure of held-out accuracy by difficulty
(perm: k) across updates (against A[0] and the supervised baseline where known), judge accuracy and debate length;
for a ``debate-amp ida`` run, its per-round table and held-out accuracy by difficulty across rounds. Then training
curves from ``metrics.jsonl`` (matplotlib, Agg, embedded as base64 PNGs, one figure per tag group of DESIGN.md
section 7), the ``debate-amp eval`` table of its transcripts, and a transcript browser: each debate's
arguments with their amplification trees (who answered each node: human / policy / target), the continue_t
decisions and the verdict, as collapsible ``<details>``. Every text is escaped; nothing is loaded from outside the
file. The inline script (filters, expand / collapse) marks ``#js-status`` with ``data-state="ok"`` once it has run,
which the headless-browser test checks.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from collections import Counter, defaultdict
from html import escape
from pathlib import Path
from typing import Any

from debate_amp.debate.transcript import TranscriptError
from debate_amp.eval.transcripts import format_table, iter_records, load, statistics, to_row, transcript_files
from debate_amp.tasks import Task, task_named
from debate_amp.tasks.base import beyond_name

GROUPS = ("objective", "loss", "debate", "amp", "policy", "value", "constraint", "target", "perf")


# ---------------------------------------------------------------------------------------------------------------
# Curves


def read_metrics(path: Path) -> list[dict[str, float]]:
    """``metrics.jsonl`` rows (a line that does not parse is skipped: curves are a convenience, not a record)."""
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():  # binary bytes: lines to skip
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "update" in row:
            rows.append(row)
    return rows


def curve_figures(rows: list[dict[str, float]]) -> list[tuple[str, str]]:
    """``(group, base64 PNG)`` per tag group: one small panel per tag against the update."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tags: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        for tag, value in row.items():
            group = tag.split("/", 1)[0]
            if "/" in tag and isinstance(value, int | float) and tag not in tags[group]:
                tags[group].append(tag)
    figures = []
    for group in [*GROUPS, *sorted(set(tags) - set(GROUPS))]:
        series = []
        for tag in tags.get(group, []):
            points = [
                (row["update"], float(row[tag]))
                for row in rows
                if isinstance(row.get(tag), int | float) and not math.isnan(float(row[tag]))
            ]
            if points:
                series.append((tag, points))
        if not series:
            continue
        ncols = min(4, len(series))
        nrows = math.ceil(len(series) / ncols)
        fig = Figure(figsize=(3.3 * ncols, 2.5 * nrows), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, (tag, points) in zip(axes, series, strict=False):
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2)
            ax.set_title(tag, fontsize=9)
            ax.set_xlabel("update", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        for ax in axes[len(series) :]:
            ax.set_visible(False)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=90)
        figures.append((group, base64.b64encode(buffer.getvalue()).decode("ascii")))
    return figures


def run_task(run_dir: Path) -> Task:
    """The task of a run directory, from its ``config.yaml`` (perm when there is none, or it names no task that is
    registered: the report still shows what needs no task)."""
    import yaml

    try:
        name = yaml.safe_load((run_dir / "config.yaml").read_text())["task"]["name"]
        return task_named(str(name))
    except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError):
        return task_named("perm")


def heldout_json_beyond(heldout: Path, task: Task) -> float | None:
    """Mean held-out accuracy of direct answers beyond the human (perm: k >= 2) in a ``heldout.json`` (A[0]'s or a
    baseline's); None where it does not read."""
    try:
        answers = json.loads(heldout.read_text()).get("answer", {})
        values = [float(v) for d, v in answers.items() if int(d) > task.human_max_difficulty]
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    return sum(values) / len(values) if values else None


def references(run_dir: Path, task: Task) -> dict[str, float]:
    """Held-out accuracy beyond the human (perm: k >= 2) of what a run is compared with, where known: its A[0]
    (``sft/heldout.json``) and the supervised baseline (``runs/supervised_baseline`` or the bench's
    ``runs/bench/supervised``)."""
    found = {}
    candidates = {
        "A[0] (warm start)": [run_dir / "sft" / "heldout.json"],
        "supervised baseline": [
            run_dir.parent / "supervised_baseline" / "sft" / "heldout.json",
            run_dir.parent / "bench" / "supervised" / "sft" / "heldout.json",
            run_dir.parent / "supervised" / "sft" / "heldout.json",
        ],
    }
    for name, paths in candidates.items():
        for path in paths:
            if path.is_file() and (value := heldout_json_beyond(path, task)) is not None:
                found[name] = value
                break
    return found


def headline_figure(rows: list[dict[str, float]], refs: dict[str, float], task: Task) -> str | None:
    """What a researcher looks at first, as one base64 PNG: held-out accuracy by difficulty across updates (A[0] and
    the supervised baseline as lines), judge accuracy, and debate length."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def series(tag: str) -> list[tuple[float, float]]:
        return [
            (row["update"], float(row[tag]))
            for row in rows
            if isinstance(row.get(tag), int | float) and not math.isnan(float(row[tag]))
        ]

    name, beyond = task.difficulty_name, f"{task.difficulty_name}>={task.human_max_difficulty + 1}"
    by_difficulty = re.compile(rf"^eval/answer_accuracy_{re.escape(name)}(\d+)$")
    difficulties = sorted({int(m[1]) for row in rows for t in row if (m := by_difficulty.match(t))})
    lines = [(f"{name}={d}", series(f"eval/answer_accuracy_{name}{d}")) for d in difficulties]
    lines.append((beyond, series(f"eval/answer_accuracy_{beyond_name(task)}")))
    panels = [
        ("held-out questions asked directly", lines),
        ("judge accuracy (debate/judge_accuracy)", [("", series("debate/judge_accuracy"))]),
        ("arguments per debate (debate/mean_turns)", [("", series("debate/mean_turns"))]),
    ]
    if not any(points for _, lines in panels for _, points in lines):
        return None
    fig = Figure(figsize=(13, 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    for ax, (title, lines) in zip(axes, panels, strict=True):
        for label, points in lines:
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, label=label or None)
        if title.startswith("held-out"):
            for (name, value), style in zip(refs.items(), ("--", ":"), strict=False):
                ax.axhline(value, linestyle=style, color="k", linewidth=1, label=f"{name}, {beyond}")
            ax.set_ylim(0, 1.02)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, ncols=2)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("update", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def final_html(run_dir: Path, refs: dict[str, float], task: Task) -> str:
    """The final table of ``final.json`` as HTML (empty when the run has none yet)."""
    from debate_amp.eval.final import PLAIN_FIGURES, final_rows, read_final

    try:
        final = read_final(run_dir)
    except (OSError, ValueError):
        final = None
    if not isinstance(final, dict):
        return "<p>no final.json yet (written when training finishes)</p>"
    cells = []
    for key, label in final_rows(task):
        value = final.get(key)
        shown = "-"
        if isinstance(value, int | float):
            shown = f"{value:.2f}" if key in PLAIN_FIGURES else f"{value:.1%}"
        cells.append(f"<tr><td>{escape(label)}</td><td>{escape(shown)}</td></tr>")
    beyond = f"{escape(task.difficulty_name)} &ge; {task.human_max_difficulty + 1}"
    cells += [f"<tr><td>{escape(name)}: held-out {beyond}</td><td>{v:.1%}</td></tr>" for name, v in refs.items()]
    stage = final.get("pretrain")
    if isinstance(stage, dict):  # pretrain.recipe: the run A[0] started from
        its = stage.get(f"heldout_{beyond_name(task)}")
        label = escape(
            f"pretrained by {stage.get('recipe')} ({stage.get('updates')} updates, "
            f"{stage.get('human_calls')} human calls): its M, held-out "
        )
        shown = f"{its:.1%}" if isinstance(its, int | float) else "-"
        cells.append(f"<tr><td>{label}{beyond}</td><td>{shown}</td></tr>")
    return f'<table class="final">{"".join(cells)}</table>'


# ---------------------------------------------------------------------------------------------------------------
# The alpha dial

SWEEP_PANELS = (
    ("heldout_k_ge_2", "held-out k >= 2"),
    ("mean_turns", "arguments per debate"),
    ("continue0_rate", "continue_0"),
)


def alpha_sweep_figure(results: dict[str, dict[str, Any]], highlight: str | None = None) -> bytes:
    """``examples/alpha_sweep.py``'s figure as PNG bytes: one bar per run (pure amplification, hybrid, pure
    debate) for held-out k >= 2, arguments per debate and the continue_0 rate; ``highlight`` outlines one run."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3), layout="constrained")
    FigureCanvasAgg(fig)
    names = list(results)
    colours = ["#2471a3", "#7d3c98", "#c0392b", "#239b56", "#b9770e"]
    for ax, (key, title) in zip(fig.subplots(1, 3), SWEEP_PANELS, strict=True):
        values = [float(results[n].get(key, math.nan)) for n in names]
        bars = ax.bar(range(len(names)), values, color=[colours[i % len(colours)] for i in range(len(names))])
        for name, bar in zip(names, bars, strict=True):
            if name == highlight:
                bar.set_edgecolor("k")
                bar.set_linewidth(2)
        ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def alpha_sweep_html(run_dir: Path) -> str:
    """The alpha dial section, when the run is one of an ``examples/alpha_sweep.py`` sweep (an
    ``alpha_sweep.json`` beside the run directory, or in it): a table and the figure, this run outlined."""
    for path in (run_dir / "alpha_sweep.json", run_dir.parent / "alpha_sweep.json"):
        if path.is_file():
            break
    else:
        return ""
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(results, dict) or not all(isinstance(r, dict) for r in results.values()):
            raise ValueError("not an object of runs")
    except (OSError, ValueError) as e:
        return f"<h2>The alpha dial</h2><p>{escape(str(path))} does not parse: {escape(str(e))}</p>"
    here = run_dir.resolve().name
    marked = ' class="this-run"'
    head = "<tr><th>run</th><th>alpha</th><th>force_stop_p</th>" + "".join(
        f"<th>{escape(title)}</th>" for _, title in SWEEP_PANELS
    )

    def span(value: Any) -> str:
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
            return f"{float(value[0]):.2f} &rarr; {float(value[1]):.2f}"
        return "-"

    def cell(key: str, value: Any) -> str:
        if not isinstance(value, int | float):
            return "-"
        return f"{value:.2f}" if key == "mean_turns" else f"{value:.1%}"

    rows = [
        f"<tr{marked if name == here else ''}><td>{escape(name)}</td><td>{span(r.get('alpha'))}</td>"
        f"<td>{span(r.get('force_stop_p'))}</td>"
        + "".join(f"<td>{cell(key, r.get(key))}</td>" for key, _ in SWEEP_PANELS)
        + "</tr>"
        for name, r in results.items()
    ]
    png = base64.b64encode(alpha_sweep_figure(results, highlight=here)).decode("ascii")
    return (
        f"<h2>The alpha dial ({escape(path.name)})</h2>"
        "<p>The same A[0] trained on the same budget at three points between pure amplification and pure debate "
        "(examples/alpha_sweep.py); this run is outlined.</p>"
        f'<table class="final" id="alpha-sweep">{head}</tr>{"".join(rows)}</table>'
        f'<img class="curve" alt="alpha sweep" src="data:image/png;base64,{png}">'
    )


def sweep_curve(result: dict[str, Any], unit: str) -> list[list[float]]:
    """One seed's curve of an ``examples/seed_sweep.py`` sweep as (x, accuracy) points: against seconds of training
    (its points are (update or step, seconds, accuracy)), or for a sweep of IDA runs (``unit`` "round") against the
    round, A[0] at round 0."""
    points = [point for point in result.get("curve", []) if isinstance(point, list) and len(point) == 3]
    if unit != "round":
        return [[point[1], point[2]] for point in points]
    a0 = result.get("a0")
    return ([[0, a0]] if isinstance(a0, int | float) else []) + [[point[0], point[2]] for point in points]


def seed_sweep_html(run_dir: Path) -> str:
    """The seed lottery section, when the run is one seed of an ``examples/seed_sweep.py`` sweep (its
    ``seed_sweep.json`` two levels up, ``OUT_DIR/seed<S>/<run.name>``): each seed's A[0], first update (or step, for
    a sweep of ``debate-amp sft`` runs; round, for ``debate-amp ida``) at the target and final accuracy, and the
    curves, this seed outlined."""
    path = run_dir.resolve().parent.parent / "seed_sweep.json"
    if not path.is_file():
        return ""
    try:
        sweep = json.loads(path.read_text(encoding="utf-8"))
        seeds, target = sweep["seeds"], float(sweep["target"])
        if not isinstance(seeds, dict) or not all(isinstance(r, dict) for r in seeds.values()):
            raise ValueError("its seeds are not an object of runs")
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"<h2>The seed lottery</h2><p>{escape(str(path))} does not parse: {escape(str(e))}</p>"
    here = run_dir.resolve().parent.name.removeprefix("seed")
    unit = sweep.get("unit") if sweep.get("unit") in ("step", "round") else "update"  # sft runs by step, ida by round
    against = sweep.get("against")  # a supervised sweep the seeds' wall times were divided by (--against)

    def percent(value: Any) -> str:
        return f"{value:.1%}" if isinstance(value, int | float) else "-"

    rows = []
    for seed, r in seeds.items():
        first = r.get("first_at_target")
        reached = f"{unit} {first[0]} ({first[1]:.0f} s)" if isinstance(first, list) and len(first) == 2 else "not"
        cells = [escape(seed), percent(r.get("a0")), percent(r.get("a0_shortcut")), reached, percent(r.get("final"))]
        if r.get("returncode"):
            cells[3:] = [f"failed (exit {escape(str(r['returncode']))})", "-"]
        if against:
            ratio = r.get("wall_ratio")
            cells.append(f"{ratio:.2f}" if isinstance(ratio, int | float) else "-")
        marked = ' class="this-run"' if seed == here else ""
        rows.append(f"<tr{marked}>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    curves = {f"seed {seed}": sweep_curve(r, unit) for seed, r in seeds.items()}
    figure = curves_figure(
        curves,
        target,
        xlabel=str(sweep.get("xlabel", "seconds of training")),  # the sweep says which clock its curves are on
        ylabel="held-out accuracy beyond the human",
        target_label=f"target {target:.0%}",
        highlight=f"seed {here}",
        integer_x=unit == "round",
    )
    png = base64.b64encode(figure).decode("ascii")
    n_reached = sum(isinstance(r.get("first_at_target"), list) for r in seeds.values())
    return (
        f"<h2>The seed lottery ({escape(path.name)})</h2>"
        f"<p>{escape(str(sweep.get('recipe', 'the recipe')))} trained once per seed (examples/seed_sweep.py): "
        f"{target:.0%} reached on {n_reached} of {len(seeds)} seeds; this seed is outlined.</p>"
        '<table class="final" id="seed-sweep"><tr><th>seed</th><th>A[0] beyond the human</th>'
        f"<th>A[0] shortcut rate</th><th>first at {target:.0%}</th><th>final</th>"
        + (f"<th>wall ratio against {escape(str(against))}</th>" if against else "")
        + f"</tr>{''.join(rows)}</table>"
        f'<img class="curve" alt="seed sweep" src="data:image/png;base64,{png}">'
    )


# ---------------------------------------------------------------------------------------------------------------
# The IDA outer loop


def ida_html(run_dir: Path, refs: dict[str, float], task: Task) -> str:
    """The IDA section, when the run is a ``debate-amp ida`` run (``ida/a0.json``): the per-round table the command
    prints (A[0] .. A[T]: examples, human calls, distillation loss, minutes, held-out accuracy of direct answers by
    difficulty) and those accuracies across rounds, A[0] at round 0, the supervised baseline dashed where known."""
    from debate_amp.trainer.ida import IdaResult, format_rounds, load_rounds

    path = run_dir / "ida" / "a0.json"
    if not path.is_file():
        return ""
    name, beyond = task.difficulty_name, beyond_name(task)
    try:
        a0, rounds = json.loads(path.read_text(encoding="utf-8")), load_rounds(run_dir)
        table = format_rounds(IdaResult(run_dir, a0, rounds, name, beyond))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return f"<h2>IDA rounds</h2><p>{escape(str(path.parent))} does not parse: {escape(str(e))}</p>"
    models = [a0, *rounds]
    answers = [(row["round"], row["heldout"].get("answer", {})) for row in models]
    difficulties = sorted({int(d) for _, answer in answers for d in answer})
    curves = {f"{name}={d}": [[r, answer[str(d)]] for r, answer in answers if str(d) in answer] for d in difficulties}
    label = beyond.replace("_ge_", ">=")
    curves[label] = [[row["round"], row["heldout_beyond"]] for row in models]
    supervised = refs.get("supervised baseline")
    figure = curves_figure(
        curves,
        supervised,
        xlabel="round (A[0]: the warm start; A[r] = Distill(Amp~(H, A[r-1])))",
        ylabel="held-out accuracy, asked directly",
        target_label=f"supervised baseline, {label}",
        highlight=label,
        integer_x=True,
    )
    png = base64.b64encode(figure).decode("ascii")
    return (
        f"<h2>IDA rounds (ida/a0.json, ida/rounds.jsonl)</h2><p>{len(rounds)} finished round(s) of the IDA outer loop "
        "(docs/ida.md); held-out accuracy of direct answers by difficulty.</p>"
        f"<pre>{escape(table)}</pre>"
        f'<img class="curve" alt="IDA rounds" src="data:image/png;base64,{png}">'
    )


# ---------------------------------------------------------------------------------------------------------------
# Human efficiency


def curves_figure(
    curves: dict[str, list[list[float]]],
    target: float | None,
    *,
    xlabel: str,
    ylabel: str,
    target_label: str,
    highlight: str | None = None,
    integer_x: bool = False,
) -> bytes:
    """Accuracy curves as PNG bytes: one line per name ((x, accuracy) points), the target dashed (none when None),
    ``highlight`` drawn thicker; ``integer_x`` ticks whole numbers only (rounds)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for name, points in curves.items():
        if points:
            xs, ys = zip(*points, strict=True)
            thick = name == highlight
            ax.plot(xs, ys, marker="o", markersize=4 if thick else 3, linewidth=3 if thick else 1.2, label=name)
    if target is not None:
        ax.axhline(target, linestyle="--", color="k", linewidth=1, label=target_label)
    ax.set_ylim(0, 1.02)
    if integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def human_efficiency_figure(curves: dict[str, list[list[float]]], target: float, highlight: str | None = None) -> bytes:
    """``python -m debate_amp.bench --human-efficiency``'s figure as PNG bytes: held-out accuracy (k >= 2, asked
    directly) against cumulative human calls, one line per sampler, the target dashed; ``highlight`` drawn thicker."""
    return curves_figure(
        curves,
        target,
        xlabel="cumulative human calls (warm start not counted)",
        ylabel="held-out accuracy, k >= 2",
        target_label=f"target {target:.1%} (95% of supervised)",
        highlight=highlight,
    )


def _count(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, int | float) else "-"


_REPLAYED = ", nor those of the rehearsal and the adversary&#39;s warm-up that replay its labels"


def human_efficiency_html(run_dir: Path) -> str:
    """The human-efficiency section, when the run is one of ``python -m debate_amp.bench --human-efficiency``'s
    (``runs/bench/human_efficiency_<sampler>``) or the bench directory itself: a ``results.json`` holding
    ``human_efficiency_curves`` in the run directory or beside it. A table per sampler and the figure, this run
    in bold."""
    for path in (run_dir / "results.json", run_dir.parent / "results.json"):
        if not path.is_file():
            continue
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(results, dict) or "human_efficiency_curves" not in results:
                continue  # some other results.json, or a bench run without --human-efficiency
            curves, target = results["human_efficiency_curves"], results.get("human_efficiency_target")
            if not isinstance(curves, dict) or not all(
                isinstance(c, list)
                and all(isinstance(p, list) and len(p) == 2 and all(isinstance(v, int | float) for v in p) for p in c)
                for c in curves.values()
            ):
                raise ValueError("human_efficiency_curves is not an object of [[human calls, accuracy], ...]")
            if not isinstance(target, int | float):
                raise ValueError("human_efficiency_target is not a number")
        except (OSError, ValueError) as e:
            return f"<h2>Human efficiency</h2><p>{escape(str(path))} does not parse: {escape(str(e))}</p>"
        break
    else:
        return ""
    here = run_dir.resolve().name
    highlight = next((name for name in curves if here == f"human_efficiency_{name}"), None)
    marked = ' class="this-run"'
    to_target = results.get("human_calls_to_target")
    to_target = to_target if isinstance(to_target, dict) else {}
    minutes = results.get("human_efficiency_minutes_cap")
    cap = f", at most {minutes:g} minutes each" if isinstance(minutes, int | float) else ""
    rehearsed = results.get("human_efficiency_rehearsal_calls")  # benches since 2026-12-02 rehearse A[0]'s labels
    rehearsed = rehearsed if isinstance(rehearsed, dict) else None
    titles = ["sampler", "human calls (last point)", "best held-out k >= 2 (at human calls)", "last held-out k >= 2"]
    titles += ["human calls to target"] + (
        ["warm-start labels replayed (not counted)"] if rehearsed is not None else []
    )
    head = "".join(f"<th>{escape(title)}</th>" for title in titles)

    def reached(name: str) -> str:
        if name not in to_target:
            return "-"
        n = to_target[name]
        return f"{n:,}" if isinstance(n, int | float) else "not reached"

    rows = []
    for name, points in curves.items():
        if points:
            best = max(points, key=lambda p: p[1])
            cells = [f"{int(points[-1][0]):,}", f"{best[1]:.1%} ({int(best[0]):,})", f"{points[-1][1]:.1%}"]
        else:
            cells = ["-", "-", "-"]
        rows.append(
            f"<tr{marked if name == highlight else ''}><td>{escape(name)}</td>"
            + "".join(f"<td>{cell}</td>" for cell in cells)
            + f"<td>{reached(name)}</td>"
            + ("" if rehearsed is None else f"<td>{_count(rehearsed.get(name))}</td>")
            + "</tr>"
        )
    png = base64.b64encode(human_efficiency_figure(curves, float(target), highlight=highlight)).decode("ascii")
    return (
        f"<h2>Human efficiency ({escape(path.name)})</h2>"
        "<p>The same A[0] trained by pure amplification once per sampler (python -m debate_amp.bench "
        f"--human-efficiency{escape(cap)}, the warm start&#39;s human calls not counted"
        f"{_REPLAYED if rehearsed is not None else ''}); "
        "the target is 95% of the "
        f"supervised baseline&#39;s held-out accuracy on k &ge; 2 ({float(target):.1%})"
        f"{'; this run is in bold' if highlight else ''}.</p>"
        f'<table class="final" id="human-efficiency"><tr>{head}</tr>{"".join(rows)}</table>'
        f'<img class="curve" alt="human efficiency" src="data:image/png;base64,{png}">'
    )


# ---------------------------------------------------------------------------------------------------------------
# Transcripts


def _answered(node: dict[str, Any]) -> Counter[str]:
    """Who answered the calls of a tree whose answers were used (a replaced draft was not)."""
    counts: Counter[str] = Counter()
    if not node.get("op"):
        counts[str(node.get("who", "?"))] += 1
    for child in node.get("children", []):
        counts += _answered(child)
    return counts


def _who(node: dict[str, Any] | None) -> str:
    if node is None:
        return "no one"
    return ", ".join(f"{who} {n}" for who, n in _answered(node).most_common())


def _badge(who: str) -> str:
    kind = who.split(":", 1)[0] if who.startswith("scripted") else who
    return f'<span class="who who-{escape(kind)}">{escape(who)}</span>'


def _tree(node: dict[str, Any]) -> str:
    """A trace tree as nested lists: who, kind, reply, prompt; a human answer shows the model draft it replaced."""
    who = "human (label store)" if node.get("from_store") else str(node.get("who", "?"))
    parts = [
        _badge("Amp" if node.get("op") else who),
        f'<span class="kind">{escape(str(node.get("kind", "")))}</span>',
        f"&rarr; <code>{escape(str(node.get('text', '')).strip())}</code>",
    ]
    if node.get("op"):
        parts.append(f'<span class="note">last step by {escape(who)}</span>')
    if node.get("human_calls"):
        parts.append(f'<span class="note">human calls {int(node["human_calls"])}</span>')
    replaced = node.get("replaced")
    if isinstance(replaced, dict):
        parts.append(
            f'<span class="note">replacing {escape(str(replaced.get("who", "?")))}&#39;s '
            f"<code>{escape(str(replaced.get('text', '')).strip())}</code></span>"
        )
    parts.append(f'<div class="prompt">{escape(str(node.get("prompt", "")))}</div>')
    children = "".join(_tree(child) for child in node.get("children", []) if isinstance(child, dict))
    return f"<li>{' '.join(parts)}{f'<ul>{children}</ul>' if children else ''}</li>"


def _difficulty_name(task: str) -> str:
    try:
        return task_named(task).difficulty_name
    except ValueError:
        return "difficulty"


def _debate(record: dict[str, Any], source: str) -> str:
    row = to_row(record, source)
    correct = row.correct
    verdict = record["winner"]
    mark = {True: "judge right", False: "judge wrong", None: "accuracy n/a"}[correct]
    summary = (
        f"{escape(row.question_id)} &middot; {escape(_difficulty_name(row.task))}="
        f"{'?' if row.difficulty is None else row.difficulty} &middot; "
        f"{len(row.arguments)} argument{'s' if len(row.arguments) != 1 else ''} &middot; "
        f"verdict {escape(str(row.winner or 'none'))} &middot; "
        f'<span class="mark-{"na" if correct is None else int(correct)}">{mark}</span>'
    )
    continues = {c.get("t"): c for c in record["continues"] if isinstance(c, dict)}
    turns = []
    for t, turn in enumerate(record["turns"]):
        trace = turn.get("trace") if isinstance(turn.get("trace"), dict) else None
        who = "scripted liar" if trace and str(trace.get("source", "")).startswith("scripted") else _who(trace)
        item = f"<b>[{t}] {escape(str(turn['side']))}</b> <code>{escape(str(turn['text']))}</code> ({escape(who)})"
        c = continues.get(t)
        if c is not None:
            how = (
                "forced (force_stop_p)"
                if c.get("forced")
                else f"judge said sufficient={escape(repr(c.get('text', '')))} ({escape(_who(c.get('trace')))})"
            )
            item += f'<div class="continue">continue_{t} = {str(bool(c.get("continue"))).lower()}: {how}</div>'
        if trace is not None:
            item += f'<details class="tree"><summary>amplification tree</summary><ul>{_tree(trace)}</ul></details>'
        turns.append(f"<li>{item}</li>")
    costs = " ".join(f"{float(c.get('cost', 0.0)):g}" for c in record["costs"] if isinstance(c, dict))
    rewards = ", ".join(f"{escape(str(side))} {float(r):+g}" for side, r in record["rewards"].items())
    verdict_trace = verdict.get("trace") if isinstance(verdict.get("trace"), dict) else None
    verdict_html = (
        f"verdict: <b>{escape(str(row.winner or 'none'))}</b> (judge said {escape(repr(verdict.get('text', '')))}, "
        f"{escape(_who(verdict_trace))})"
    )
    if verdict_trace is not None:
        verdict_html += (
            f'<details class="tree"><summary>judgment tree</summary><ul>{_tree(verdict_trace)}</ul></details>'
        )
    return (
        f'<details class="debate" data-correct="{"" if correct is None else int(correct)}" '
        f'data-reply="{escape(row.opening_reply)}"><summary>{summary}</summary>'
        f"<p>question <code>{escape(row.question)}</code> &middot; gold {escape(str(row.gold))} &middot; "
        f'{escape(source)}</p><ul class="turns">{"".join(turns)}</ul><p>{verdict_html}</p>'
        f"<p>catastrophe costs: {escape(costs)} &middot; rewards: {rewards} &middot; human calls "
        f"{int(record['human_calls'])}, model calls {int(record['model_calls'])}</p></details>"
    )


def transcript_browser(files: list[Path], per_update: int, skip_bad: bool) -> tuple[str, int]:
    """One ``<details>`` per transcript file with its first ``per_update`` debates; and how many were shown."""
    sections, shown = [], 0
    for path in files:
        debates: list[str] = []
        total = 0
        for source, record in iter_records([path], skip_bad):
            total += 1
            if len(debates) < per_update:
                try:
                    debates.append(_debate(record, source))
                except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
                    if not skip_bad:
                        raise TranscriptError(f"{source}: malformed record ({type(e).__name__}: {e})") from None
        shown += len(debates)
        sections.append(
            f'<details class="update"><summary>{escape(path.name)}: showing {len(debates)} of {total} debates'
            f"</summary>{''.join(debates)}</details>"
        )
    return "".join(sections), shown


# ---------------------------------------------------------------------------------------------------------------
# The page

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 12px; }
img.curve { max-width: 100%; display: block; margin: 0.5em 0 1em; border: 1px solid #eee; }
details { margin: 0.2em 0; } details.update { margin: 0.5em 0; }
details.update > summary { font-weight: 600; cursor: pointer; }
details.debate { margin-left: 1.2em; border-left: 3px solid #ccc; padding-left: 0.5em; }
details.debate > summary { cursor: pointer; font-size: 0.95em; }
details.tree { margin-left: 1em; font-size: 0.9em; }
ul { margin: 0.2em 0; padding-left: 1.3em; } ul.turns { list-style: none; padding-left: 0.3em; }
code { background: #f2f2f2; padding: 0 0.2em; }
.prompt { color: #777; font-family: monospace; font-size: 11px; }
.note { color: #555; font-size: 0.9em; } .continue { color: #444; font-size: 0.9em; margin-left: 1em; }
.who { border-radius: 3px; padding: 0 0.35em; font-size: 0.85em; color: #fff; background: #888; }
.who-human { background: #c0392b; } .who-policy { background: #2471a3; } .who-target { background: #7d3c98; }
.who-scripted { background: #b7950b; } .who-Amp { background: #555; }
.mark-1 { color: #1e8449; } .mark-0 { color: #c0392b; font-weight: 600; } .mark-na { color: #888; }
#controls button { margin-right: 0.4em; }
table.final { border-collapse: collapse; } tr.this-run { font-weight: bold; } table.final td { padding: 0.15em 0.8em; border-bottom: 1px solid #eee; }
"""

_JS = """
(function () {
  "use strict";
  var debates = Array.prototype.slice.call(document.querySelectorAll("details.debate"));
  var count = document.getElementById("shown-count");
  function show(filter) {
    var n = 0;
    debates.forEach(function (d) {
      var keep = filter === "all" || (filter === "wrong" && d.dataset.correct === "0") ||
        (filter === "disagree" && d.dataset.reply === "disagree");
      d.hidden = !keep;
      if (keep) { n += 1; }
    });
    count.textContent = n + " of " + debates.length + " debates shown";
  }
  function expand(open) {
    document.querySelectorAll("details.update, details.debate").forEach(function (d) { d.open = open; });
  }
  document.querySelectorAll("#controls button[data-filter]").forEach(function (b) {
    b.addEventListener("click", function () { show(b.dataset.filter); });
  });
  document.getElementById("expand").addEventListener("click", function () { expand(true); });
  document.getElementById("collapse").addEventListener("click", function () { expand(false); });
  show("all");
  var status = document.getElementById("js-status");
  status.dataset.state = "ok";
  status.dataset.debates = String(debates.length);
  function images() {
    var ok = 0;
    Array.prototype.forEach.call(document.images, function (img) {
      if (img.complete && img.naturalWidth > 0) { ok += 1; }
    });
    status.dataset.images = String(ok);
    status.textContent = "script ran; " + ok + " of " + document.images.length + " plots decoded";
  }
  if (document.readyState === "complete") { images(); } else { window.addEventListener("load", images); }
})();
"""


def render_report(run_dir: Path, per_update: int = 16, skip_bad: bool = False) -> str:
    """The report page as one HTML string (see the module docstring)."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.jsonl"
    rows = read_metrics(metrics_path) if metrics_path.is_file() else []
    figures = curve_figures(rows)
    task = run_task(run_dir)
    refs = references(run_dir, task)
    headline = headline_figure(rows, refs, task)
    has_transcripts = (run_dir / "transcripts").is_dir() and any((run_dir / "transcripts").glob("*.jsonl"))
    if has_transcripts:
        transcripts = load([run_dir], skip_bad=skip_bad)
        table = format_table(statistics(transcripts.rows))
        if transcripts.skipped:
            table = f"skipped {len(transcripts.skipped)} bad lines (first: {transcripts.skipped[0]})\n\n" + table
        browser, shown = transcript_browser(transcript_files(run_dir), per_update, skip_bad)
        n_debates = len(transcripts.rows)
    else:
        table, browser, shown, n_debates = "no transcripts in this run directory", "", 0, 0
    config = run_dir / "config.yaml"
    config_html = (
        f"<details><summary>config.yaml (the resolved recipe)</summary><pre>{escape(config.read_text())}</pre></details>"
        if config.is_file()
        else ""
    )
    curves = "".join(
        f'<h3>{escape(group)}/</h3><img class="curve" alt="{escape(group)} curves" src="data:image/png;base64,{png}">'
        for group, png in figures
    )
    name = escape(run_dir.resolve().name)
    ida = ida_html(run_dir, refs, task)
    top = f"""<h2>Final table (final.json)</h2>
{final_html(run_dir, refs, task)}
{f'<img class="curve" alt="headline curves" src="data:image/png;base64,{headline}">' if headline else ""}"""
    if ida and not (run_dir / "final.json").is_file():  # an IDA run: its rounds are what a researcher looks for first
        top, ida = ida, ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>debate-amp report: {name}</title>
<style>{_CSS}</style></head>
<body>
<h1>debate-amp report: {name}</h1>
<p>{escape(str(run_dir))} &middot; {n_debates} debates &middot; statistics defined in docs/eval.md</p>
{top}
{config_html}
{ida}
{alpha_sweep_html(run_dir)}
{seed_sweep_html(run_dir)}
{human_efficiency_html(run_dir)}
<h2>Training curves (metrics.jsonl)</h2>
{curves or "<p>no metrics.jsonl in this run directory</p>"}
<h2>Eval (debate-amp eval)</h2>
<pre>{escape(table)}</pre>
<h2>Transcripts</h2>
<p>Each argument shows who answered the calls of its amplification tree (human / policy / target); each
continue_t whether it was forced or what the judge Amp~(H, M_target) said; then the verdict.</p>
<div id="controls"><button type="button" data-filter="all">all</button>
<button type="button" data-filter="wrong">judge wrong</button>
<button type="button" data-filter="disagree">sides disagree</button>
<button type="button" id="expand">expand all</button><button type="button" id="collapse">collapse all</button>
<span id="shown-count">{shown} debates</span></div>
{browser}
<p id="js-status" data-state="not-run">the inline script has not run</p>
<script>{_JS}</script>
</body></html>
"""


def write_report(
    run_dir: str | Path, out: str | Path | None = None, per_update: int = 16, skip_bad: bool = False
) -> Path:
    """Write the report (default ``RUN_DIR/report.html``) and return its path."""
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(Path(run_dir), per_update, skip_bad), encoding="utf-8")
    return path
