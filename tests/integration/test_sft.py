"""A real end-to-end warm start on the tiny model, through the CLI, with learning thresholds."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def sft(tmp_path, *overrides, timeout=900):
    args = [
        sys.executable,
        "-m",
        "debate_amp.cli",
        "sft",
        "recipes/default.yaml",
        "--no-progress",
        f"run.output_dir={tmp_path}",
        "run.name=sft",
        *overrides,
    ]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads((tmp_path / "sft" / "sft" / "heldout.json").read_text())


def test_default_warm_start_learns_what_the_human_does(tmp_path):
    # The default recipe end to end (about 5 minutes on 2 cores). Chance is 1/8 for an answer and near 0 for a
    # step or a debate reply. Measured on 2026-11-23: 100% on direct answers k <= 1, on integrations and on the
    # steps of k <= 4; 74% on the human's replies inside debates; the odd-k steps of k = 5 and 7 lag (16-27%).
    proc, acc = sft(tmp_path, "task.eval_size=256")
    run_dir = tmp_path / "sft"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["task"]["eval_size"] == 256
    assert (run_dir / "sft" / "config.json").is_file() and (run_dir / "sft" / "tokenizer.json").is_file()
    assert list((run_dir / "tensorboard" / "sft").glob("events.out.tfevents.*"))
    assert "held-out accuracy by k" in proc.stdout and "direct answers k<=1" in proc.stdout
    assert min(acc["answer"]["0"], acc["answer"]["1"]) >= 0.95, proc.stdout[-1500:]
    assert min(acc["integrate"].values()) >= 0.95, proc.stdout[-1500:]
    assert min(acc["step"][str(k)] for k in range(5)) >= 0.9, proc.stdout[-1500:]
    debate = acc["debate"]
    assert sum(debate.values()) / len(debate) >= 0.6, proc.stdout[-1500:]
