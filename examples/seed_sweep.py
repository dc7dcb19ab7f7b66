"""The seed lottery, measured: one recipe trained from scratch on several seeds, a few at a time.

    .venv/bin/python examples/seed_sweep.py recipes/pure_amplification.yaml [OUT_DIR] [--seeds 0-7] [--updates 10]
        [--jobs 2] [--target 0.97] [key=value ...]       # 8 seeds of that recipe, 2 at a time: ~30 min on 2 cores
    .venv/bin/python examples/seed_sweep.py recipes/supervised_baseline.yaml SUP_DIR --sft  # the baseline's
    .venv/bin/python examples/seed_sweep.py recipes/amplification_fresh_student.yaml OUT_DIR --updates 40 \
        --against SUP_DIR/seed_sweep.json     # and each seed's wall ratio against the baseline's same seed
    .venv/bin/python examples/seed_sweep.py recipes/ida_fresh_student.yaml OUT_DIR --ida  # IDA rounds, by round
    .venv/bin/python examples/seed_sweep.py recipes/pure_amplification.yaml OUT_DIR --tiny   # untrained tiny model

Whether the tiny model leaves a plateau, and when, depends on the seed (docs/perm.md, docs/benchmarks.md): one run
says little about a recipe. This trains the recipe once per seed, warm start A[0] included (each seed its own: that
is where the lottery is drawn), ``--jobs`` runs at a time, each a ``debate-amp train`` process with its share of the
CPU threads (``run.torch_threads``), every update evaluated (``trainer.eval_every=1``), and prints a line per seed:
A[0]'s held-out accuracy beyond the human (perm: k >= 2) and how often its wrong answers are the one-lookup
shortcut, the accuracy after each update, and the first update at ``--target`` with its seconds of training
(``perf/train_s``: the warm start's included, the clock of ``make bench``); then on how many seeds the target was
reached. ``--sft`` runs ``debate-amp sft`` instead (the supervised baseline, or a warm start alone): each seed's
curve is its held-out evaluation every ``sft.eval_every_steps``, so the first point at the target is a step (the
seconds are the curve's, training only), and the recipe's own length stands (``--updates`` is not used). ``--ida``
runs ``debate-amp ida`` (the IDA outer loop, docs/ida.md): each seed's curve is A[1], A[2], ... by round (the
held-out evaluation after each round; the seconds are the rounds', the warm start's not included), A[0] is the warm
start, and ``ida.rounds`` is the recipe's. It writes ``seed_sweep.json``, ``seed_sweep.png`` (the curves against
seconds of training, or by round for ``--ida``; the target dashed) and each seed's run into OUT_DIR
(``seed<S>/<run.name>``, its output in ``seed<S>.log``; an earlier sweep's runs there are replaced). ``key=value``
overrides go to every seed's run, after the sweep's own. ``--against`` a supervised sweep's ``seed_sweep.json``
(``--sft``, the same seeds, target and threads a run) prints each seed's wall ratio as ``make bench``'s
``amp_wall_ratio`` reads it on one seed: this run's seconds of training to the target, its warm start's included,
over the supervised run's of the same seed (the model's initialisation comes from ``run.seed`` in both), and their
median where both reached it; the ratios go into ``seed_sweep.json`` and the report's sweep table. ``--tiny`` shows
the mechanics on an untrained tiny model (two small updates a seed, under a minute).
Last seen (2026-12-05, recipes/pure_amplification.yaml, seeds 0-7, 10 updates, two at a time on one thread each,
2-core x86_64; measured by hand the same way, which this script reproduced to the figure on seeds 0 and 1): 97%
within 10 updates on 1 of 8 seeds (seed 0, update 4); seeds 1-6 ended at 53-59% (k = 2, 3 learned, k >= 4 still the
shortcut), seed 7 at 44% (k = 2 only); docs/benchmarks.md, "The lottery over eight seeds". Within 30 updates (the
same runs resumed): 3 of 8 (seeds 0, 6, 1). The supervised baseline on the same seeds (as ``--sft`` runs it): 5 of 8,
at 64,000-136,000 examples; seeds 5 and 7 ended at 56-57%, seed 6 at 90% ("Thirty updates over eight seeds").
Those updates were of 2,048 questions; the recipe's are of 1,024 since 2026-12-06 (``--updates 20`` for the same
questions: from the same A[0]s seed 1 reached 97% within them, seeds 2-7 did not; seed 0, from the bench's A[0],
at update 7; docs/benchmarks.md, "Smaller, more frequent updates"). With ``--against`` (2026-12-07, the same
machine and load): recipes/amplification_fresh_student.yaml reached 97% on 7 of 8 seeds within 40 updates, at wall
ratios of 0.98, 1.70, 3.16 and 3.78 on the four seeds where the supervised baseline composed too (median 2.43).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from debate_amp.config import TINY_OVERRIDES, ConfigError, load_config
from debate_amp.eval.report import curves_figure, heldout_json_beyond, sweep_curve
from debate_amp.tasks import make_task
from debate_amp.tasks.base import beyond_name
from debate_amp.trainer.ida import load_rounds

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
TINY = [*TINY_OVERRIDES, "sampler.kind=bernoulli"]  # mechanics only (as examples/alpha_sweep.py --tiny)
# --ida --tiny: two rounds of a few questions, the human asked at every step (as tests/integration/test_ida.py)
TINY_IDA = [
    *("ida.rounds=2", "ida.questions_per_round=24", "ida.epochs=1", "task.eval_size=16", "sampler.kind=always"),
    "amp.levels=1",
]


def seeds_from(text: str) -> list[int]:
    """'0-7' or '0,2,5' -> the seeds; raises ValueError naming what is wrong."""
    seeds: list[int] = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise ValueError(f"--seeds: expected seeds like 0-7 or 0,2,5, got {text!r}")
        seeds += range(int(first), int(last or first) + 1)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: expected distinct seeds like 0-7 or 0,2,5, got {text!r}")
    return seeds


def summarise(cfg, target: float, mode: str) -> dict:
    """One seed's run: A[0]'s accuracy beyond the human and shortcut rate (when it trained one), (seconds of
    training, accuracy) after each evaluated update, and the first update at ``target``. With mode ``sft`` the run
    is the warm start alone: its held-out curve by step, and its final evaluation. With ``ida`` the curve is by
    round (``ida/rounds.jsonl``: A[r]'s held-out accuracy, the rounds' seconds summed) and A[0] is
    ``ida/a0.json``'s."""
    task = make_task(cfg)
    beyond = beyond_name(task)
    heldout = cfg.run_dir / cfg.sft.output_subdir / "heldout.json"  # A[0]'s, or the sft run's own
    a0 = a0_shortcut = None
    if mode == "sft":
        points = json.loads(heldout.read_text()).get("curve") or []
        curve = [(p["step"], p["seconds"], p[f"answer_{beyond}"]) for p in points]
        final = heldout_json_beyond(heldout, task)
    elif mode == "ida":
        ida = cfg.run_dir / "ida"
        rows = load_rounds(cfg.run_dir)
        seconds = [sum(r["wall_s"] for r in rows[: i + 1]) for i in range(len(rows))]
        curve = [(r["round"], s, r["heldout_beyond"]) for r, s in zip(rows, seconds, strict=True)]
        final = curve[-1][2] if curve else None
        a0 = json.loads((ida / "a0.json").read_text()).get("heldout_beyond")
        if heldout.is_file():  # the warm start's (A[0] is model.path or an untrained model without one)
            a0_shortcut = json.loads(heldout.read_text()).get(f"shortcut_{beyond}")
    else:
        tag = f"eval/answer_accuracy_{beyond}"
        lines = (cfg.run_dir / "metrics.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
        curve = [(r["update"], r["perf/train_s"], r[tag]) for r in rows if tag in r]
        final = curve[-1][2] if curve else None
        if heldout.is_file():  # the mean over difficulties beyond the human, as the report's A[0] reference
            a0 = heldout_json_beyond(heldout, task)
            a0_shortcut = json.loads(heldout.read_text()).get(f"shortcut_{beyond}")
    first = next(([u, s] for u, s, acc in curve if acc >= target), None)
    return {
        "a0": a0,
        "a0_shortcut": a0_shortcut,
        "curve": [list(point) for point in curve],
        "first_at_target": first,
        "final": final,
    }


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def read_against(path: Path, mode: str, target: float, threads: int) -> dict:
    """A supervised sweep to compare this one with (``--against``): its seed_sweep.json, checked to be a ``--sft``
    sweep at the same target and with as many threads a run (seconds on other clocks would not compare); raises
    ValueError naming what is wrong."""
    if mode != "train":
        raise ValueError(
            "--against: compares a sweep of `debate-amp train` runs (not --sft or --ida) with a supervised one"
        )
    try:
        against = json.loads(path.read_text(encoding="utf-8"))
        seeds = against["seeds"]
        if not isinstance(seeds, dict):
            raise TypeError("its seeds are not an object of runs")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"--against: {path}: not a seed_sweep.json ({e})") from None
    if against.get("unit") != "step":
        raise ValueError(f"--against: {path} is not a sweep of the supervised baseline (run with --sft)")
    if against.get("target") != target:
        raise ValueError(f"--against: {path} counted {against.get('target')} as reached, this sweep --target {target}")
    if against.get("threads", threads) != threads:
        raise ValueError(
            f"--against: {path} ran {against['threads']} thread(s) a run, this sweep {threads}: the clocks differ"
        )
    return against


def wall_ratios(results: dict[int, dict], against: dict) -> dict[int, float | None]:
    """Each seed's wall ratio against the supervised sweep, as make bench's ``amp_wall_ratio``: this run's seconds
    of training to the target (the warm start's included) over the supervised run's (training only); None where
    either did not reach it."""
    ratios: dict[int, float | None] = {}
    for seed, result in results.items():
        own = result.get("first_at_target")
        supervised = against["seeds"].get(str(seed), {}).get("first_at_target")
        ratios[seed] = own[1] / supervised[1] if own and supervised and supervised[1] > 0 else None
    return ratios


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("recipe", help="the recipe every seed runs (e.g. recipes/pure_amplification.yaml)")
parser.add_argument("rest", nargs="*", metavar="[OUT_DIR] [key=value ...]", help="where the runs go; overrides")
parser.add_argument("--seeds", default="0-3", help="seeds, e.g. 0-7 or 0,2,5 (default 0-3)")
parser.add_argument("--updates", type=int, default=10, help="updates per seed (default 10)")
parser.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2); threads are shared among them")
parser.add_argument("--target", type=float, default=0.97, help="held-out accuracy counted as reached (default 0.97)")
parser.add_argument(
    "--sft", action="store_true", help="run `debate-amp sft` (the supervised baseline), its held-out curve by step"
)
parser.add_argument(
    "--ida", action="store_true", help="run `debate-amp ida` (the IDA outer loop), A[t]'s held-out accuracy by round"
)
parser.add_argument("--tiny", action="store_true", help="an untrained tiny model, two small updates: mechanics only")
parser.add_argument(
    "--against",
    metavar="SWEEP_JSON",
    help="a supervised sweep's seed_sweep.json (--sft, same seeds, --target and threads): each seed's wall ratio",
)
args = parser.parse_intermixed_args()  # OUT_DIR and overrides may come after the options
mode = "sft" if args.sft else "ida" if args.ida else "train"
overrides = [item for item in args.rest if "=" in item]
places = [item for item in args.rest if "=" not in item]
try:
    seeds = seeds_from(args.seeds)
    if len(places) > 1:
        raise ValueError(f"one OUT_DIR at most, got {places}")
    if args.sft and args.ida:
        raise ValueError("--sft and --ida: one kind of run at a time")
    if args.updates < 1 or args.jobs < 1:
        raise ValueError("--updates and --jobs must be at least 1")
    out_dir = Path(places[0] if places else tempfile.mkdtemp(prefix="seed_sweep_")).resolve()
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    updates = None if mode != "train" else 2 if args.tiny else args.updates
    sweep = [*(TINY if args.tiny else [])]
    if mode == "sft":
        sweep += ["sft.eval_every_steps=2"] if args.tiny else []
    elif mode == "ida":
        sweep += TINY_IDA if args.tiny else []
    else:
        sweep += [f"trainer.updates={updates}", "trainer.eval_every=1"]
    sweep += [f"run.torch_threads={threads}"]
    against = None if args.against is None else read_against(Path(args.against), mode, args.target, threads)
    if args.sft and load_config(args.recipe, [*sweep, *overrides]).sft.eval_every_steps == 0:
        raise ValueError("--sft: the recipe evaluates no curve; set sft.eval_every_steps")
    configs = {
        s: load_config(args.recipe, [*sweep, f"run.output_dir={out_dir / f'seed{s}'}", f"run.seed={s}", *overrides])
        for s in seeds
    }
except (ConfigError, ValueError) as e:
    print(f"seed_sweep: error: {e}", file=sys.stderr)
    sys.exit(2)
print(f"{len(seeds)} seeds of {args.recipe}, {args.jobs} at a time ({threads} thread(s) each), runs in {out_dir}")

pending, running, results = list(seeds), {}, {}
started = time.perf_counter()
while pending or running:
    while pending and len(running) < args.jobs:
        s = pending.pop(0)
        command = [sys.executable, "-m", "debate_amp.cli", mode, args.recipe]
        command += ["--no-progress", "--overwrite"]
        command += [*sweep, f"run.output_dir={out_dir / f'seed{s}'}", f"run.seed={s}", *overrides]
        out_dir.mkdir(parents=True, exist_ok=True)
        log = (out_dir / f"seed{s}.log").open("w")
        running[s] = (
            subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **OFFLINE}),
            log,
        )
    time.sleep(0.5)
    for s, (proc, log) in list(running.items()):
        if proc.poll() is None:
            continue
        log.close()
        del running[s]
        minutes = (time.perf_counter() - started) / 60
        if proc.returncode:
            results[s] = {"returncode": proc.returncode}
            print(f"seed {s}: failed (exit {proc.returncode}); see {out_dir / f'seed{s}.log'}", flush=True)
            continue
        results[s] = {"returncode": 0, **summarise(configs[s], args.target, mode)}
        print(f"seed {s}: done ({minutes:.1f} min into the sweep)", flush=True)

beyond = beyond_name(make_task(configs[seeds[0]]))
unit = {"sft": "step", "ida": "round", "train": "update"}[mode]
clock = {
    "sft": "seconds of training",
    "ida": "seconds of the rounds, the warm start's not included",
    "train": "seconds of training, the warm start's included",
}[mode]
print(f"\nheld-out {beyond}, asked directly; first >= {args.target:.0%}: the {unit} ({clock})")
print(
    f"{'seed':>4} {'A[0]':>6} {'shortcut':>8} {'first':>12}  after each {'evaluation' if mode == 'sft' else unit} (%)"
)
for s in seeds:
    r = results[s]
    if r["returncode"]:
        print(f"{s:>4} failed")
        continue
    first = f"{r['first_at_target'][0]} ({r['first_at_target'][1]:.0f} s)" if r["first_at_target"] else "not"
    after = " ".join(f"{acc * 100:.1f}" for _, _, acc in r["curve"])
    print(f"{s:>4} {percent(r['a0']):>6} {percent(r['a0_shortcut']):>8} {first:>12}  {after}")
reached = [s for s in seeds if results[s].get("first_at_target")]
print(
    f"reached {args.target:.0%} on {len(reached)} of {len(seeds)} seeds"
    + (f" ({', '.join(map(str, reached))})" if reached else "")
)
summary = {"recipe": args.recipe, "overrides": overrides, "updates": updates, "target": args.target}
summary |= {"threads": threads, "jobs": args.jobs}  # the clock the seconds were read on
if against is not None:
    ratios = wall_ratios(results, against)
    print(
        f"\nwall time to {args.target:.0%}, this recipe's (warm start included) / the supervised run's ({args.against})"
    )
    print(f"{'seed':>4} {'supervised':>20} {'this recipe':>20} {'ratio':>6}")
    for s in seeds:
        supervised = against["seeds"].get(str(s), {}).get("first_at_target")
        own = results[s].get("first_at_target")
        cells = [f"{name} {p[0]} ({p[1]:.0f} s)" if p else "not" for name, p in (("step", supervised), (unit, own))]
        ratio = "-" if ratios[s] is None else f"{ratios[s]:.2f}"
        print(f"{s:>4} {cells[0]:>20} {cells[1]:>20} {ratio:>6}")
        results[s]["wall_ratio"] = ratios[s]
    both = sorted(r for r in ratios.values() if r is not None)
    if both:
        print(
            f"both reached it on {len(both)} of {len(seeds)} seeds: ratio median {statistics.median(both):.2f}, "
            f"{both[0]:.2f}-{both[-1]:.2f}"
        )
    summary["against"] = args.against
axis = "round (A[0], the warm start, at 0)" if mode == "ida" else clock  # IDA's curves are by round
summary |= {"unit": unit, "xlabel": axis}  # how the report labels the first point and the curves' axis
(out_dir / "seed_sweep.json").write_text(
    json.dumps({**summary, "seeds": {str(s): results[s] for s in seeds}}, indent=2)
)
curves = {f"seed {s}": sweep_curve(results[s], unit) for s in seeds if not results[s]["returncode"]}
figure = curves_figure(
    curves,
    args.target,
    xlabel=axis,
    ylabel=f"held-out accuracy, {beyond}",
    target_label=f"target {args.target:.0%}",
    integer_x=mode == "ida",
)
(out_dir / "seed_sweep.png").write_bytes(figure)
print(f"wrote {out_dir / 'seed_sweep.json'} and {out_dir / 'seed_sweep.png'}")
example = configs[seeds[0]].run_dir
print(f"each seed's report shows the sweep: debate-amp report {example}")
sys.exit(1 if any(results[s]["returncode"] for s in seeds) else 0)
