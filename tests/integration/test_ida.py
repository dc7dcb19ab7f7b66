"""`debate-amp ida`: the IDA outer loop on the tiny model, end to end, resumed, and refused in one line."""

import html
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from debate_amp.config import TINY_OVERRIDES, load_config
from debate_amp.models import load_model
from debate_amp.target import parameter_distance
from debate_amp.trainer.ida import format_rounds, run_ida
from debate_amp.trainer.rundir import RunDirError

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
# Two rounds of a few questions; the sampler asks the human at every asker step, so that even the untrained A[0]'s
# trees hold imitation examples (its own steps do not parse).
TINY = [
    *TINY_OVERRIDES,
    "ida.questions_per_round=24",
    "ida.epochs=1",
    "task.eval_size=16",
    "sampler.kind=always",
    "amp.levels=1",  # the curriculum then draws depths <= t + 1
]


def config(tmp_path, *overrides):
    return load_config("recipes/ida.yaml", [*TINY, f"run.output_dir={tmp_path}", "run.name=ida", *overrides])


def test_a_tiny_ida_run_saves_each_round_and_a_resume_continues_after_the_last_finished_one(tmp_path, capsys):
    # 1. One round: A[1] = Distill(Amplify(H, A[0])), saved whole, its record in rounds.jsonl.
    cfg = config(tmp_path, "ida.rounds=1")
    result = run_ida(cfg, progress=False)
    ida = cfg.run_dir / "ida"
    assert [row["round"] for row in result.rounds] == [1]
    assert sorted(p.name for p in ida.iterdir() if p.name.startswith(("round_", ".round"))) == ["round_0", "round_1"]
    first = (ida / "round_1" / "round.json").read_text()
    weights_1 = (ida / "round_1" / "model.safetensors").stat().st_mtime_ns
    row = result.rounds[0]
    assert row["examples"] > 0 and row["human_calls"] > 0 and row["distill_steps"] > 0
    assert row["max_depth"] == 1  # the curriculum: round 0 draws depths <= 1
    assert set(row["heldout"]["answer"]) == {str(k) for k in range(8)}

    # 2. A new start in the same directory is refused; --resume with more rounds continues at round 2.
    with pytest.raises(RunDirError, match="--resume"):
        run_ida(config(tmp_path, "ida.rounds=2"), progress=False)
    capsys.readouterr()
    result = run_ida(config(tmp_path, "ida.rounds=2"), progress=False, resume=True)
    out = capsys.readouterr().out
    assert "resuming" in out and "after round 1" in out
    assert "round 1:" not in out and "round 2:" in out  # round 1 is not redone
    assert (ida / "round_1" / "round.json").read_text() == first
    assert (ida / "round_1" / "model.safetensors").stat().st_mtime_ns == weights_1
    rows = [json.loads(line) for line in (ida / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2] == [r["round"] for r in result.rounds]
    assert rows[1]["max_depth"] == 2 and rows[1]["previous_examples"] > 0  # round 1's examples kept in part
    assert not list(ida.glob(".round_*"))

    # 3. Each round's model loads offline, and each round changed the weights.
    models = [load_model(cfg.model, ida / f"round_{r}")[0] for r in range(3)]
    assert parameter_distance(models[0], models[1]) > 1e-4 and parameter_distance(models[1], models[2]) > 1e-4

    # 4. The table has a row per model, its columns named by the task's difficulty; TensorBoard has the rounds.
    table = format_rounds(result).splitlines()
    assert (
        "k=7" in table[0]
        and "k>=2" in table[0]
        and [line.split()[0] for line in table[1:]]
        == [
            "A[0]",
            "A[1]",
            "A[2]",
        ]
    )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(cfg.run_dir / "tensorboard" / "ida"), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("eval/answer_accuracy_k_ge_2")] == [0, 1, 2]
    assert [e.step for e in events.Scalars("loss/sup")] == [1, 2]

    # 5. `debate-amp report` opens with the rounds: the table above, then the accuracies across rounds.
    proc = cli("report", str(cfg.run_dir))
    assert proc.returncode == 0, proc.stderr
    page = (cfg.run_dir / "report.html").read_text()
    assert page.index("<h2>IDA rounds") < page.index("config.yaml") and "Final table" not in page
    assert html.escape(format_rounds(result)) in page and page.count('alt="IDA rounds"') == 1


def test_a_round_killed_after_asking_the_human_counts_those_answers_when_redone(tmp_path, monkeypatch):
    # The killed attempt's answers are in the label store; the redo finds them there and does not ask again, so
    # without counting them the round reported fewer human calls than an uninterrupted one.
    from debate_amp.trainer import ida

    whole = run_ida(config(tmp_path / "whole", "ida.rounds=1"), progress=False).rounds[0]

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # after amplifying: where a kill -9 during the distillation would stop it

    monkeypatch.setattr(ida, "distill", killed)
    cfg = config(tmp_path / "killed", "ida.rounds=1")
    with pytest.raises(KeyboardInterrupt):
        run_ida(cfg, progress=False)
    monkeypatch.undo()
    redone = run_ida(cfg, progress=False, resume=True).rounds[0]
    assert whole["human_calls"] > 0 and redone["human_calls"] == whole["human_calls"]
    assert redone["labels_stored"] == whole["labels_stored"] == whole["human_calls"]


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "debate_amp.cli", *args], cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=120
    )


def test_the_rounds_run_with_the_setup_out_of_the_collectors_full_passes_and_unfreeze_after(tmp_path, freeze_counts):
    """gc.freeze() before the rounds (the warm start's examples and the rest of the setup were walked by about a
    full collection every 4 seconds of a round), gc.unfreeze() after them, so that a process running again can free
    them."""
    import gc

    import debate_amp.trainer.ida as ida

    frozen = freeze_counts(ida, "ida_round")
    assert gc.get_freeze_count() == 0
    run_ida(config(tmp_path, "ida.rounds=1", "trainer.warm_start=false"), progress=False)
    assert len(frozen) == 1 and frozen[0] > 10_000, frozen
    assert gc.get_freeze_count() == 0


def test_zero_rounds_fail_in_one_line(tmp_path):
    proc = cli("ida", "recipes/ida.yaml", "ida.rounds=0", f"run.output_dir={tmp_path}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["debate-amp: error: ida.rounds=0 is out of range: must be >= 1"]
    assert not (tmp_path / "ida").exists()
    proc = cli("ida", "recipes/ida.yaml", "ida.round=2", f"run.output_dir={tmp_path}")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "unknown key 'ida.round'" in proc.stderr and "ida.rounds" in proc.stderr


def test_resume_and_overwrite_exclude_each_other(tmp_path):
    proc = cli("ida", "recipes/ida.yaml", "--resume", "--overwrite", f"run.output_dir={tmp_path}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["debate-amp: error: --resume and --overwrite exclude each other"]


def test_a_fresh_student_is_distilled_from_a_new_initialisation_not_from_a_t(tmp_path):
    # ida.student=fresh: A[1] is trained from a tiny model of its own seed (run.seed + 100), so after a round of a
    # few steps it sits next to that initialisation and far from A[0]; ida.student=continue is the other way round.
    cfg = config(tmp_path / "fresh", "ida.rounds=1", "ida.student=fresh")
    run_ida(cfg, progress=False)
    a0, a1 = (load_model(cfg.model, cfg.run_dir / "ida" / f"round_{r}")[0] for r in (0, 1))
    init = load_model(cfg.model, None, seed=cfg.run.seed + 100)[0]
    assert parameter_distance(a1, init) < 0.05 < 0.5 < parameter_distance(a1, a0)

    cfg = config(tmp_path / "continue", "ida.rounds=1")
    run_ida(cfg, progress=False)
    a0, a1 = (load_model(cfg.model, cfg.run_dir / "ida" / f"round_{r}")[0] for r in (0, 1))
    assert parameter_distance(a1, a0) < 0.05 < 0.5 < parameter_distance(a1, init)


def test_a_fresh_student_with_a_model_directory_fails_in_one_line(tmp_path):
    proc = cli(
        "ida", "recipes/ida.yaml", "ida.student=fresh", f"model.path={ROOT / 'recipes'}", f"run.output_dir={tmp_path}"
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "ida.student=fresh" in proc.stderr and "model.path" in proc.stderr
