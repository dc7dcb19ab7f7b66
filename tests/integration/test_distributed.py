"""Two CPU processes over gloo through `accelerate launch` (issue 6): the way multi-process runs are tested here."""

import json
import subprocess
import sys
from pathlib import Path

from debate_amp.config import TINY_OVERRIDES
from debate_amp.debate.transcript import read_transcripts
from tests.integration.test_train import TINY

ROOT = Path(__file__).resolve().parents[2]


def test_two_processes_split_the_rollouts_and_end_with_identical_parameters(tmp_path):
    # recipes/default.yaml as it is (TINY_OVERRIDES, not the tests' TINY): its adversary, which every process trains
    # on every process's nodes, and its debates against the liar, half of each process's.
    overrides = [o for o in TINY_OVERRIDES if not o.startswith("run.torch_threads")] + ["run.torch_threads=1"]
    overrides += ["trainer.updates=2", "debate.force_stop_p=0.0", "debate.force_stop_anneal.end=null"]
    overrides += ["objective.kl.adaptive=true", "objective.kl.horizon=100"]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "recipes/accelerate/cpu_2proc.yaml"]
    cmd += ["-m", "debate_amp.train", "recipes/default.yaml", *overrides, f"run.output_dir={tmp_path}"]
    cmd += ["run.name=ddp", "--no-progress", "trainer.save_every=1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "ddp"

    # Both processes trained the same parameters (each process hashed its own and the main one compared them).
    fingerprints = json.loads((run_dir / "model" / "process_fingerprints.json").read_text())
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    # Rollouts were split (4 debates each, 2 of them against the liar) and gathered: one transcript file per update
    # with all 4 self-play debates and one with the 4 against the liar, one metrics line per update counting them
    # all, one RNG state per process in the checkpoint.
    for update in (1, 2):
        for folder in ("", "liar"):
            records = list(read_transcripts(run_dir / "transcripts" / folder / f"update_{update:06d}.jsonl"))
            assert len(records) == 4 and len({r["question_id"] for r in records}) == 4
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2]
    assert all(r["debate/count"] == 4 and r["liar/count"] == 4 and r["adversary/examples"] > 0 for r in rows)
    assert all(r["rl/segments"] > 0 for r in rows)  # the RL path ran, not only imitation
    # The adaptive KL controller steps once per update by the segments of both processes (not twice that):
    # beta_2 = beta_1 (1 + clip(KL_1 / target - 1, -0.2, 0.2) n_1 / horizon), target 6, horizon 100.
    error = min(max(rows[0]["objective/kl"] / 6.0 - 1.0, -0.2), 0.2)
    expected = rows[0]["objective/kl_coef"] * (1 + error * rows[0]["rl/segments"] / 100)
    assert abs(rows[1]["objective/kl_coef"] - expected) < 1e-9, (rows[0], rows[1]["objective/kl_coef"])
    checkpoint = run_dir / "checkpoints" / "update_000002"
    assert (checkpoint / "rng_rank0.json").is_file() and (checkpoint / "rng_rank1.json").is_file()
    # Only the main process writes: one config, one metrics file, one TensorBoard directory.
    assert not list(run_dir.glob("**/*rank1*.jsonl"))

    # Both processes resume from their own RNG states and still agree after a third update.
    proc = subprocess.run(
        [*cmd, "trainer.updates=3", "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming" in proc.stdout
    fingerprints = json.loads((run_dir / "model" / "process_fingerprints.json").read_text())
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2, 3]

    # One process does not resume two's checkpoint: it would drop process 1's RNGs, budget and questions (it ran).
    alone = [sys.executable, "-m", "debate_amp.train", *cmd[cmd.index("recipes/default.yaml") :]]
    proc = subprocess.run([*alone, "trainer.updates=4", "--resume"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "saved by 2 process(es), resumed with 1" in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and not (run_dir / "checkpoints" / "update_000004").exists()


def test_processes_whose_rollouts_differ_do_not_deadlock(tmp_path):
    """With force_stop_p 0.9 most debates have no RL segment, so in some updates one process has segments to score
    and the other none (with these seeds, update 2). A DDP forward on one process only would wait forever for a
    buffer broadcast the other never joins: frozen scoring goes through the unwrapped module."""
    overrides = [o for o in TINY if not o.startswith("run.torch_threads")] + ["run.torch_threads=1"]
    overrides += ["trainer.updates=3", "debate.force_stop_anneal.end=null", f"run.output_dir={tmp_path}"]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "recipes/accelerate/cpu_2proc.yaml"]
    cmd += ["-m", "debate_amp.train", "recipes/default.yaml", *overrides, "run.name=uneven", "--no-progress"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "uneven"
    segments = [json.loads(line)["rl/segments"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(segments) == 3 and 0.0 in segments and max(segments) > 0
    fingerprints = json.loads((run_dir / "model" / "process_fingerprints.json").read_text())
    assert fingerprints[0] == fingerprints[1]


def test_two_processes_pretrain_and_warm_start_together(tmp_path):
    """The warm start under `accelerate launch`: every process trains A[0] (TRL's DDP), after the pretraining stage,
    itself a two-process run. It hung before 2026-12-07: the main process alone ran TRL's trainer, whose collectives
    the other process, waiting at a barrier, never joined."""
    from tests.integration.test_train import PRETRAIN_RECIPE

    (tmp_path / "stage.yaml").write_text(PRETRAIN_RECIPE)
    overrides = [o for o in TINY if not o.startswith("run.torch_threads")] + ["run.torch_threads=1"]
    overrides += ["trainer.warm_start=true", "sft.n_examples=256", "trainer.updates=1", f"run.output_dir={tmp_path}"]
    overrides += [f"pretrain.recipe={tmp_path / 'stage.yaml'}", "pretrain.updates=2"]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "recipes/accelerate/cpu_2proc.yaml"]
    cmd += ["-m", "debate_amp.train", "recipes/default.yaml", *overrides, "run.name=pre", "--no-progress"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "pre"
    for model in (run_dir / "pretrain" / "model", run_dir / "model"):
        fingerprints = json.loads((model / "process_fingerprints.json").read_text())
        assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    heldout = json.loads((run_dir / "sft" / "heldout.json").read_text())
    assert heldout["human_calls"] > 0 and "answer" in heldout
    stage_rows = (run_dir / "pretrain" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["update"] for line in stage_rows] == [1, 2]
    assert (
        "pretrained by" in proc.stdout and json.loads((run_dir / "final.json").read_text())["pretrain"]["updates"] == 2
    )
