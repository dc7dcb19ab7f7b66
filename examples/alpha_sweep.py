"""The alpha dial: pure amplification, the hybrid and pure debate, from the same A[0] on the same budget.

    .venv/bin/python examples/alpha_sweep.py [OUT_DIR] [--a0 DIR] [--updates 6]   # after `make run`: ~8 min, 2 cores
    .venv/bin/python examples/alpha_sweep.py OUT_DIR --tiny                        # untrained tiny model, ~15 s

The way a researcher tunes alpha and the annealing schedule (references/001): train the same A[0] at three points
of the amplification-debate axis, each for the same number of updates of the same size:

- pure amplification: force_stop_p = 1 (every debate stops after arg_0), alpha = 0 (imitation only);
- hybrid: the default recipe's annealing, force_stop_p 0.9 -> 0 and alpha 0.1 -> 0.2;
- pure debate: force_stop_p = 0, alpha = 1 (the debate reward only; nothing is distilled).

It prints one line per run (alpha and force_stop_p at the first and last update, held-out accuracy on sigma^k(x)
for k >= 2 asked directly, mean debate length and continue_0 rate over the run), writes ``alpha_sweep.json`` and
``alpha_sweep.png`` (the three figures side by side) into OUT_DIR and each run's ``report.html`` (``debate-amp
report``: it shows the sweep's table and figure, that run outlined), then runs ``debate-amp eval --compare`` between
pure amplification (A) and pure debate (B). A[0] is ``--a0 DIR``, else ``runs/default/sft`` from ``make run``, else
one trained here with the default warm start (minutes). ``--tiny`` shows the mechanics on an untrained tiny model.
Last seen (2026-12-07, 12 updates from `make run`'s A[0] of the default that composes first (k >= 2 100%), two
threads, 8 min 1 s): arguments per debate 1.00 / 1.36 / 1.65, continue_0 0 / 35.9 / 62.5%, held-out k >= 2 99.0 /
100 / 43.8% (pure amplification / hybrid / pure debate); docs/training.md, "The alpha dial".
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from debate_amp.config import TINY_OVERRIDES, load_config
from debate_amp.eval.report import alpha_sweep_figure, write_report
from debate_amp.trainer.loop import train

CONSTANT = ["debate.force_stop_anneal.kind=constant", "debate.force_stop_anneal.end=null"]
CONSTANT += ["objective.anneal.kind=constant", "objective.anneal.end=null"]
SWEEP = {  # the liar's debates (debate.liar_fraction) are never stopped by force: none in pure amplification
    "pure_amplification": ["debate.force_stop_p=1.0", "objective.alpha=0.0", "debate.liar_fraction=0.0", *CONSTANT],
    "hybrid": [],  # recipes/default.yaml: force_stop_p 0.9 -> 0.0, alpha 0.1 -> 0.2
    "pure_debate": ["debate.force_stop_p=0.0", "objective.alpha=1.0", *CONSTANT],
}

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("out_dir", nargs="?", help="where the three runs go (default: a temporary folder)")
parser.add_argument("--a0", help="the warm start A[0] every run starts from (default: runs/default/sft)")
parser.add_argument("--updates", type=int, default=6, help="updates per run (default 6)")
parser.add_argument("--tiny", action="store_true", help="an untrained tiny model, two small updates: mechanics only")
args = parser.parse_args()
out_dir = Path(args.out_dir) if args.out_dir else Path(tempfile.mkdtemp(prefix="alpha_sweep_"))
print(f"runs in {out_dir}")

if args.tiny:
    budget = [*TINY_OVERRIDES, "trainer.updates=2", "trainer.questions_per_update=16", "amp.questions_per_update=16"]
    budget += ["sampler.kind=bernoulli"]  # mechanics only: the default's adversary doubles the time
    a0 = None
else:
    budget = [f"trainer.updates={args.updates}", "trainer.eval_every=0"]
    a0 = Path(args.a0) if args.a0 else Path("runs/default/sft")
    if not (a0 / "config.json").is_file():
        from debate_amp.bench import A0_EXAMPLES  # the default's 64,000 start from its pretrain stage's M
        from debate_amp.trainer.sft import run_sft

        print(f"no A[0] at {a0}: training one with the default warm start, from new weights")
        a0_cfg = [f"run.output_dir={out_dir}", "run.name=a0", f"sft.n_examples={A0_EXAMPLES}"]
        a0 = run_sft(load_config("recipes/default.yaml", a0_cfg)).model_dir

results = {}
print(f"{'run':<20} {'alpha':>11} {'force_stop_p':>12} {'k>=2':>6} {'mean turns':>10} {'cont_0':>7}")
for name, overrides in SWEEP.items():
    cfg = load_config("recipes/default.yaml", [*budget, f"run.output_dir={out_dir}", f"run.name={name}", *overrides])
    if a0 is not None:  # every run starts from the same A[0] (the warm start reuses a run directory's sft/)
        shutil.rmtree(cfg.run_dir, ignore_errors=True)
        shutil.copytree(a0, cfg.run_dir / cfg.sft.output_subdir)
    summary = train(cfg, progress=False)
    rows = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    first, last = rows[0], rows[-1]
    results[name] = {
        "alpha": [first["objective/alpha"], last["objective/alpha"]],
        "force_stop_p": [first["objective/force_stop_p"], last["objective/force_stop_p"]],
        "heldout_k_ge_2": summary["final"]["heldout_k_ge_2"],
        "mean_turns": sum(r["debate/mean_turns"] for r in rows) / len(rows),
        "continue0_rate": sum(r["debate/continue0_rate"] for r in rows) / len(rows),
    }
    r = results[name]
    print(
        f"{name:<20} {r['alpha'][0]:>4.2f} -> {r['alpha'][1]:<4.2f} {r['force_stop_p'][0]:>4.2f} -> "
        f"{r['force_stop_p'][1]:<4.2f} {r['heldout_k_ge_2']:>6.1%} {r['mean_turns']:>10.2f} {r['continue0_rate']:>7.1%}"
    )
(out_dir / "alpha_sweep.json").write_text(json.dumps(results, indent=2))

(out_dir / "alpha_sweep.png").write_bytes(alpha_sweep_figure(results))
for name in results:  # each run's report opens with the sweep's table and figure, that run outlined
    write_report(out_dir / name)
print(f"wrote {out_dir / 'alpha_sweep.json'}, {out_dir / 'alpha_sweep.png'} and each run's report.html")

command = ["debate-amp", "eval", "--compare", "pure_amplification", "pure_debate"]
print(f"\n$ {' '.join(command)}    (in {out_dir})")
compare = [sys.executable, "-m", "debate_amp.cli", *command[1:3], *(str(out_dir / run) for run in command[3:])]
sys.exit(subprocess.run(compare).returncode)
