"""Checkpoints, resume and faults (issue 6): real tiny-model runs killed, interrupted and poisoned on purpose."""

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from debate_amp.config import load_config
from debate_amp.debate.transcript import read_transcripts
from debate_amp.trainer import checkpoint
from tests.integration.test_train import TINY

ROOT = Path(__file__).resolve().parents[2]
ENTRY = [sys.executable, "-m", "debate_amp.train", "recipes/default.yaml"]


def _args(out: Path, name: str, *extra: str) -> list[str]:
    return [*TINY, f"run.output_dir={out}", f"run.name={name}", "--no-progress", *extra]


def _launch(out: Path, name: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*ENTRY, *_args(out, name, *extra)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _run(out: Path, name: str, *extra: str, expect: int = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([*ENTRY, *_args(out, name, *extra)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == expect, proc.stderr[-3000:]
    return proc


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended before {path} appeared: {proc.stderr.read()[-2000:]}"  # type: ignore[union-attr]
        assert time.monotonic() < deadline, f"no {path} after {timeout}s"
        time.sleep(0.02)


def _human_calls(run_dir: Path) -> int:
    return json.loads((run_dir / "final.json").read_text())["human_calls"]


def _labels(run_dir: Path) -> set[tuple[str, str]]:
    db = sqlite3.connect(run_dir / "labels.sqlite")
    try:
        return set(db.execute("SELECT key, answer FROM labels").fetchall())
    finally:
        db.close()


def _policy(run_dir: Path, update: int) -> dict[str, torch.Tensor]:
    return load_file(str(checkpoint.checkpoint_dir(run_dir / "checkpoints", update) / "policy.safetensors"))


UPDATES = 8
SAVE = ["trainer.updates=8", "trainer.save_every=1", "trainer.keep_last=null"]


def test_sigkill_after_a_checkpoint_then_resume_matches_an_uninterrupted_run(tmp_path):
    _run(tmp_path, "reference", *SAVE)
    seed = random.randrange(10**6)
    delay = random.Random(seed).uniform(0.0, 1.0)
    proc = _launch(tmp_path, "killed", *SAVE)
    run_dir = tmp_path / "killed"
    _wait_for(run_dir / "checkpoints" / "update_000001" / "state.json", proc)
    time.sleep(delay)
    assert proc.poll() is None, f"the run finished before the kill (seed {seed}, delay {delay:.2f}s)"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    # What the kill left: whole checkpoints only, complete transcripts, committed labels.
    saved = checkpoint.list_checkpoints(run_dir / "checkpoints")
    assert saved and saved[0][0] == 1
    last = saved[-1][0]
    assert last < UPDATES, f"seed {seed}"
    before = {f.name: f.read_bytes() for f in (run_dir / "transcripts").glob("update_*.jsonl")}
    for name in before:
        assert len(list(read_transcripts(run_dir / "transcripts" / name))) == 8
    labels_before = _labels(run_dir)

    resumed = _run(tmp_path, "killed", *SAVE, "--resume")
    assert f"resuming {run_dir} from update {last}" in resumed.stdout

    # The counter continued from the checkpoint: every update logged once, in order.
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == list(range(1, UPDATES + 1))
    assert [u for u, _ in checkpoint.list_checkpoints(run_dir / "checkpoints")] == list(range(1, UPDATES + 1))
    # Every transcript file complete before the kill is intact (in place, or set aside if its update was redone).
    for name, data in before.items():
        candidates = [run_dir / "transcripts" / name, *(run_dir / "transcripts" / "superseded").glob(f"{name[:-6]}*")]
        assert any(c.is_file() and c.read_bytes() == data for c in candidates), name
    # The label store lost nothing, and the human calls are the uninterrupted run's: the answers given after the
    # checkpoint are counted once though the redone updates find them in the store.
    assert labels_before <= _labels(run_dir)
    assert _human_calls(run_dir) == _human_calls(tmp_path / "reference"), f"seed {seed}"
    # The resumed run's next update (and every later one) matches the uninterrupted run's.
    for update in range(last + 1, UPDATES + 1):
        ref, res = _policy(tmp_path / "reference", update), _policy(run_dir, update)
        assert ref.keys() == res.keys()
        diff = max(float((ref[k] - res[k]).abs().max()) for k in ref)
        assert diff <= 1e-6, f"update {update}: parameters differ by {diff} (seed {seed})"
    # ... and the policy really moved between checkpoints (the comparison is not of frozen weights).
    first, final = _policy(run_dir, 1), _policy(run_dir, UPDATES)
    assert max(float((first[k] - final[k]).abs().max()) for k in first) > 1e-5


def test_a_run_directory_refuses_another_recipe_and_another_start(tmp_path):
    from debate_amp.trainer.loop import train
    from debate_amp.trainer.rundir import RunDirError

    def cfg(*extra):
        return load_config(
            ROOT / "recipes" / "default.yaml", [*TINY, f"run.output_dir={tmp_path}", "run.name=r", *extra]
        )

    train(cfg("trainer.updates=1"), progress=False)
    other = _run(tmp_path, "r", "trainer.updates=1", "objective.alpha=0.3", expect=2)
    lines = other.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in other.stderr
    assert "holds a run of a different recipe (objective.alpha: 0.1 -> 0.3)" in lines[0]
    assert "--overwrite" in lines[0] and "a resume may not change these keys" in lines[0]
    with pytest.raises(RunDirError, match=r"--resume would change what .* trained \(objective.alpha: 0.1 -> 0.3\)"):
        train(cfg("trainer.updates=1", "objective.alpha=0.3"), progress=False, resume=True)
    with pytest.raises(RunDirError, match=r"already holds a run of this recipe \(checkpoints up to update_000001\)"):
        train(cfg("trainer.updates=1"), progress=False)
    # --overwrite starts again; --resume of a finished run does no update and reports the table again.
    train(cfg("trainer.updates=1", "objective.alpha=0.3"), progress=False, overwrite=True)
    assert load_config(tmp_path / "r" / "config.yaml").objective.alpha == 0.3
    assert len((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()) == 1
    summary = train(cfg("trainer.updates=1", "objective.alpha=0.3"), progress=False, resume=True)
    assert summary["report"] is not None and len((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_or_sigterm_writes_a_checkpoint_and_stops_cleanly(tmp_path, signum):
    proc = _launch(tmp_path, "int", "trainer.updates=50", "trainer.save_every=100")
    run_dir = tmp_path / "int"
    _wait_for(run_dir / "transcripts" / "update_000001.jsonl", proc)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    saved = checkpoint.list_checkpoints(run_dir / "checkpoints")
    assert len(saved) == 1 and 1 <= saved[0][0] < 50  # written at the interrupt, not by save_every
    assert f"interrupted after update {saved[0][0]}; latest checkpoint: {saved[0][1]}" in out
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == saved[0][0]


def test_a_non_finite_loss_skips_the_update_then_stops_the_run(tmp_path, monkeypatch):
    from debate_amp.trainer import loop

    real = loop.supervised_nll
    calls = {"n": 0}

    def poisoned(logits, labels):
        loss, n = real(logits, labels)
        calls["n"] += 1
        return (loss * float("nan") if poisoned.active else loss), n

    poisoned.active = False
    monkeypatch.setattr(loop, "supervised_nll", poisoned)
    original_save = loop.save_state

    def save_then_poison(*args, **kwargs):  # every update after the first checkpoint has a NaN loss
        original_save(*args, **kwargs)
        poisoned.active = True

    monkeypatch.setattr(loop, "save_state", save_then_poison)
    cfg = load_config(
        ROOT / "recipes" / "default.yaml",
        [*TINY, f"run.output_dir={tmp_path}", "run.name=nan", "trainer.updates=6", "trainer.save_every=1"]
        + ["trainer.max_bad_updates=2"],
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(
            loop.TrainingDiverged, match=r"2 updates in a row had a non-finite loss \(the last at update 3\)"
        ):
            loop.train(cfg, progress=False)
    skipped = [str(w.message) for w in caught if "non-finite loss, update skipped" in str(w.message)]
    assert skipped == [
        "update 2: non-finite loss, update skipped (1 in a row, stopping at 2)",
        "update 3: non-finite loss, update skipped (2 in a row, stopping at 2)",
    ]
    run_dir = tmp_path / "nan"
    assert [u for u, _ in checkpoint.list_checkpoints(run_dir / "checkpoints")] == [1]  # no bad update was saved
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["train/skipped"] for r in rows] == [0.0, 1.0, 1.0]
    weights = _policy(run_dir, 1)
    assert all(bool(torch.isfinite(t).all()) for t in weights.values())
    assert calls["n"] > 0


def test_lora_runs_save_adapters_only_and_resume(tmp_path):
    lora = ["model.lora.enabled=true", "target.sync_every=1", "debate.force_stop_p=0.0"]
    lora += ["debate.force_stop_anneal.end=null", "trainer.save_every=1"]
    _run(tmp_path, "lora", *lora, "trainer.updates=2")
    run_dir = tmp_path / "lora"
    policy = _policy(run_dir, 2)
    assert policy and all("lora_" in k for k in policy)  # the adapter, not the base weights
    target = load_file(str(run_dir / "checkpoints" / "update_000002" / "target_policy.safetensors"))
    assert max(float((policy[k] - target[k]).abs().max()) for k in policy) == 0.0  # hard sync every update
    assert (run_dir / "model" / "adapter_model.safetensors").is_file()
    _run(tmp_path, "lora", *lora, "trainer.updates=3", "--resume")
    moved = _policy(run_dir, 3)
    assert max(float((moved[k] - policy[k]).abs().max()) for k in policy) > 0.0
    assert os.path.isdir(run_dir / "checkpoints" / "update_000003")


def test_the_accelerate_state_path_for_sharded_topologies_resumes_exactly(tmp_path, monkeypatch):
    """DeepSpeed / FSDP checkpoints go through ``Accelerator.save_state``; no GPU here, so the path is forced on
    one CPU process (the sharding itself is accelerate's and untested here)."""
    from debate_amp.trainer import loop, state

    monkeypatch.setattr(state, "is_sharded", lambda accelerator: True)

    def cfg(name, updates):
        overrides = [*TINY, f"run.output_dir={tmp_path}", f"run.name={name}", f"trainer.updates={updates}"]
        return load_config(ROOT / "recipes" / "default.yaml", [*overrides, "trainer.save_every=1"])

    loop.train(cfg("reference", 2), progress=False)
    loop.train(cfg("split", 2), progress=False)
    run_dir = tmp_path / "split"
    shutil.rmtree(run_dir / "checkpoints" / "update_000002")  # as if killed before it was written
    assert (run_dir / "checkpoints" / "update_000001" / checkpoint.ACCELERATE_STATE).is_dir()
    loop.train(cfg("split", 2), progress=False, resume=True)
    a = load_file(str(tmp_path / "reference" / "model" / "model.safetensors"))
    b = load_file(str(run_dir / "model" / "model.safetensors"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6


def test_a_resumed_run_keeps_its_human_budget(tmp_path):
    from debate_amp.trainer import loop

    budget = ["sampler.kind=always", "sampler.per_run=6", "trainer.updates=2", "trainer.save_every=1"]
    cfg = load_config(
        ROOT / "recipes" / "default.yaml", [*TINY, f"run.output_dir={tmp_path}", "run.name=budget", *budget]
    )
    loop.train(cfg, progress=False)
    run_dir = tmp_path / "budget"
    shutil.rmtree(run_dir / "checkpoints" / "update_000002")  # as if killed before it was written
    loop.train(cfg, progress=False, resume=True)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2]
    assert rows[0]["amp/human_calls"] == 6.0 and rows[1]["amp/human_calls"] == 0.0  # the run's cap, spent in update 1
    # No warm start of its own: the rehearsal's examples are charged apart from the sampler's budget, each the first
    # time it is used, resumed or not (the pool is 256 examples, 32 an update).
    from debate_amp.trainer.sft import warm_start_examples

    pool = warm_start_examples(cfg)
    charged = [sum(e.human_calls for e in pool[i : i + 32]) for i in (0, 32)]
    assert [r["rehearsal/human_calls"] for r in rows] == charged and min(charged) >= 32
    assert json.loads((run_dir / "final.json").read_text())["human_calls"] == 6 + sum(charged)


def test_a_resumed_run_appends_to_its_tensorboard_events(tmp_path):
    from debate_amp.trainer import loop
    from tests.integration.test_train import logged_steps, tensorboard_steps

    def cfg(updates):
        overrides = [*TINY, f"run.output_dir={tmp_path}", "run.name=tb", f"trainer.updates={updates}"]
        return load_config(ROOT / "recipes" / "default.yaml", overrides)

    loop.train(cfg(1), progress=False)
    summary = loop.train(cfg(2), progress=False, resume=True)
    run_dir = tmp_path / "tb"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2]
    # one event file per start, in the same folder; the final table was logged at the end of each
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 2
    assert tensorboard_steps(run_dir) == logged_steps(rows, summary["report"].difficulties(), final_steps=[1, 2])


def test_a_run_restarted_after_its_warm_start_equals_an_uninterrupted_one(tmp_path):
    # Killed after the warm start and before the first checkpoint, a run restarts from A[0] on disk; the global
    # RNGs the warm start drew from must not make it a different run.
    from debate_amp.trainer.loop import train

    def cfg(name):
        overrides = [*TINY, "trainer.warm_start=true", "sft.n_examples=256", "trainer.updates=1"]
        return load_config(
            ROOT / "recipes" / "default.yaml", [*overrides, f"run.output_dir={tmp_path}", f"run.name={name}"]
        )

    train(cfg("whole"), progress=False)  # the warm start, then update 1, in one process
    (tmp_path / "restarted").mkdir()
    shutil.copytree(tmp_path / "whole" / "sft", tmp_path / "restarted" / "sft")
    train(cfg("restarted"), progress=False, resume=True)  # A[0] found on disk, no checkpoint: from the beginning
    a = load_file(str(tmp_path / "whole" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "restarted" / "model" / "model.safetensors"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) == 0.0


def test_a_resumed_run_distils_the_previous_updates_examples_it_saved(tmp_path):
    # amp.reuse_previous: the examples carried into the next update are in each process's checkpoint, so update 3
    # redone from update 2's checkpoint distils what the uninterrupted update 3 did.
    from debate_amp.trainer.loop import train

    def cfg(name):
        overrides = [*TINY, "trainer.updates=3", "trainer.save_every=1", "trainer.keep_last=null"]
        overrides += ["amp.questions_per_update=16", "amp.reuse_previous=true"]
        return load_config(
            ROOT / "recipes" / "pure_amplification.yaml",
            [*overrides, f"run.output_dir={tmp_path}", f"run.name={name}"],
        )

    train(cfg("whole"), progress=False)
    shutil.copytree(tmp_path / "whole", tmp_path / "resumed")
    shutil.rmtree(checkpoint.checkpoint_dir(tmp_path / "resumed" / "checkpoints", 3))
    train(cfg("resumed"), progress=False, resume=True)  # from update 2's checkpoint
    a, b = _policy(tmp_path / "whole", 3), _policy(tmp_path / "resumed", 3)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) == 0.0
    assert max(float((a[k] - _policy(tmp_path / "whole", 2)[k]).abs().max()) for k in a) > 1e-5


@pytest.mark.slow
def test_ten_sigkills_at_random_moments_lose_nothing_and_resume_exactly(tmp_path):
    """SIGKILL at 10 random moments of a run (before its first checkpoint too); each resumed run ends with the
    uninterrupted run's weights, every label the killed run committed, and every transcript file it finished."""
    started = time.monotonic()
    _run(tmp_path, "reference", *SAVE)
    duration = time.monotonic() - started
    reference = load_file(str(tmp_path / "reference" / "model" / "model.safetensors"))
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    for i in range(10):
        name = f"killed{i}"
        run_dir = tmp_path / name
        proc = _launch(tmp_path, name, *SAVE)
        time.sleep(rng.uniform(0.1, 0.9) * duration)
        if proc.poll() is not None:
            continue  # it finished first: nothing to resume
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        finished = {f.name: f.read_bytes() for f in (run_dir / "transcripts").glob("update_*.jsonl")}
        labels = _labels(run_dir) if (run_dir / "labels.sqlite").is_file() else set()
        _run(tmp_path, name, *SAVE, "--resume")
        final = load_file(str(run_dir / "model" / "model.safetensors"))
        diff = max(float((reference[k] - final[k]).abs().max()) for k in reference)
        assert diff <= 1e-6, f"kill {i} (seed {seed}): final weights differ by {diff}"
        after = _labels(run_dir)
        assert labels <= after, f"kill {i} (seed {seed}): labels lost"
        calls = _human_calls(tmp_path / "reference")
        assert _human_calls(run_dir) == calls, f"kill {i} (seed {seed}): human calls miscounted"
        db = sqlite3.connect(run_dir / "labels.sqlite")
        keys = [k for (k,) in db.execute("SELECT key FROM labels")]
        db.close()
        assert len(keys) == len(set(keys)), f"kill {i}: a label stored twice"
        for file, data in finished.items():
            candidates = [
                run_dir / "transcripts" / file,
                *(run_dir / "transcripts" / "superseded").glob(f"{file[:-6]}*"),
            ]
            assert any(c.is_file() and c.read_bytes() == data for c in candidates), f"kill {i}: {file} (seed {seed})"
