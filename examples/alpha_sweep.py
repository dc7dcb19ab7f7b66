"""A small alpha sweep: pure amplification, the hybrid, pure debate, each trained on a tiny budget, then compared.

    .venv/bin/python examples/alpha_sweep.py [OUT_DIR]     # about 12 s on 2 CPU cores (default OUT_DIR: a temp dir)

The way a researcher tunes alpha and the annealing schedule: train the same tiny model (no warm start, 2 updates
of 16 debates) at three points of the amplification-debate axis, print one line per run (alpha and force_stop_p
at the first and last update, mean debate length, continue_0 rate, supervised loss), then run
``debate-amp eval --compare`` between pure amplification (A) and pure debate (B): each statistic of the two runs'
transcripts with B - A and its 95% interval.

- pure amplification: force_stop_p = 1 (every debate stops after arg_0), alpha = 0 (imitation only);
- hybrid: the default recipe's annealing, force_stop_p 0.9 -> 0 and alpha 0.1 -> 0.5;
- pure debate: force_stop_p = 0, alpha = 1 (the debate reward only).

alpha weights the RL loss: loss = alpha * L_rl + (1 - alpha) * L_sup (recipes/pure_amplification.yaml and
recipes/pure_debate.yaml are the full-size versions of the two ends). On this budget the models are untrained: the
comparison shows the mechanics, not which alpha is best. Last seen (2026-11-23, 2-core CPU, 12 s): every debate
has one argument in all three runs (the untrained M_target never answers "no" to "is it sufficient?", and anything
but "no" stops the debate); what differs is continue_0 forced false, 100% (A) against 0% (B), B - A -100.0%
[-100.0%, -84.8%] (Newcombe), and the unparsed verdicts (no verdict 96.9% against 87.5%). For a real sweep, run
the recipes at full length (warm start included) and compare their run directories the same way.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from debate_amp.config import TINY_OVERRIDES, load_config
from debate_amp.trainer.loop import train

BUDGET = ["trainer.updates=2", "trainer.questions_per_update=16"]
CONSTANT = ["debate.force_stop_anneal.kind=constant", "debate.force_stop_anneal.end=null"]
CONSTANT += ["objective.anneal.kind=constant", "objective.anneal.end=null"]
SWEEP = {
    "pure_amplification": ["debate.force_stop_p=1.0", "objective.alpha=0.0", *CONSTANT],
    "hybrid": [],  # recipes/default.yaml: force_stop_p 0.9 -> 0.0, alpha 0.1 -> 0.5
    "pure_debate": ["debate.force_stop_p=0.0", "objective.alpha=1.0", *CONSTANT],
}

out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="alpha_sweep_"))
print(f"runs in {out_dir}")
print(f"{'run':<20} {'alpha':>11} {'force_stop_p':>12} {'mean turns':>10} {'cont_0':>7} {'sup loss':>8}")
for name, overrides in SWEEP.items():
    cfg = load_config(
        "recipes/default.yaml", [*TINY_OVERRIDES, *BUDGET, f"run.output_dir={out_dir}", f"run.name={name}", *overrides]
    )
    train(cfg, progress=False)
    rows = [json.loads(line) for line in (out_dir / name / "metrics.jsonl").read_text().splitlines()]
    first, last = rows[0], rows[-1]
    turns = sum(r["debate/mean_turns"] for r in rows) / len(rows)
    continue0 = sum(r["debate/continue0_rate"] for r in rows) / len(rows)
    print(
        f"{name:<20} {first['objective/weight']:>4.2f} -> {last['objective/weight']:<4.2f} "
        f"{first['objective/force_stop_p']:>4.2f} -> {last['objective/force_stop_p']:<4.2f} {turns:>10.2f} "
        f"{continue0:>7.1%} {last['loss/sup']:>8.3f}"
    )

command = ["debate-amp", "eval", "--compare", "pure_amplification", "pure_debate"]
print(f"\n$ {' '.join(command)}    (in {out_dir})")
compare = [sys.executable, "-m", "debate_amp.cli", *command[1:3], *(str(out_dir / run) for run in command[3:])]
sys.exit(subprocess.run(compare).returncode)
