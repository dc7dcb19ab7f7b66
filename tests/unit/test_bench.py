"""The bench: human calls to a target accuracy per sampler (issue 14), and the supervised baseline per task."""

from debate_amp.bench import SUPERVISED_OVERRIDES, calls_to_target
from debate_amp.config import load_config


def test_calls_to_target_is_the_first_point_at_or_above_the_target():
    curve = [(100, 0.2), (250, 0.6), (400, 0.95), (900, 0.99)]
    assert calls_to_target(curve, 0.95) == 400
    assert calls_to_target(curve, 0.5) == 250
    assert calls_to_target(curve, 0.1) == 100
    assert calls_to_target(curve, 0.995) is None
    assert calls_to_target([], 0.5) is None


def test_the_supervised_overrides_load_for_their_tasks():
    for task, overrides in SUPERVISED_OVERRIDES.items():
        cfg = load_config("recipes/supervised_baseline.yaml", overrides, task=task)
        assert cfg.task.name == task and cfg.sft.data == "gold"
    assert load_config("recipes/supervised_baseline.yaml", SUPERVISED_OVERRIDES["add"], task="add").sft.n_examples == (
        1_000_000
    )


def test_the_learning_bench_reports_each_amplification_recipe_against_the_supervised_run(tmp_path, monkeypatch, capsys):
    # The bench's arithmetic with the training replaced by known curves: wall ratio = time to come within 3 points
    # of the supervised run's final accuracy over the supervised run's time to get there; human fraction = (the
    # updates' calls + the warm start's) / the gold labels the supervised run used, in all and when each got there.
    import json
    import types

    import debate_amp.bench as bench
    import debate_amp.trainer.loop as loop

    def fake_sft(cfg, progress=True):
        points = [(50, 0.6, 16_000), (100, 0.98, 32_000), (200, 1.0, 64_000)]
        curve = [{"seconds": s, "answer_k_ge_2": a, "examples": n} for s, a, n in points]
        report = types.SimpleNamespace(beyond=lambda: 1.0)
        return types.SimpleNamespace(curve=curve, report=report, train_seconds=240, n_examples_seen=320_000)

    runs = {  # run name -> (curve of (training seconds, held-out k >= 2), the updates' calls, the warm start's)
        "amplification": ([(300, 0.5), (330, 0.99), (600, 1.0)], 21_610, 223_381),
        "few_labels_amplification": ([(400, 0.9), (500, 0.96), (580, 0.97), (900, 1.0)], 8_171, 20_775),
        "amplification_fresh_student": ([(150, 0.3), (290, 0.974), (400, 1.0)], 268_771, 64_000),
        "few_labels_fresh_student": ([(60, 0.12), (160, 0.995), (200, 1.0)], 4_202, 8_000),
    }

    def fake_train(cfg, progress=True, overwrite=False):
        curve, calls, warm = runs[cfg.run.name]
        cfg.run_dir.mkdir(parents=True)
        # 20 s of the run were not training (the warm start's data preparation, evaluations): the ratio leaves them
        # out, as the supervised curve's clock does
        rows = [{"perf/elapsed_s": t + 20, "perf/train_s": t, "eval/answer_accuracy_k_ge_2": a} for t, a in curve]
        for row in rows:  # the updates' calls, spread evenly, the remainder in the last
            row["amp/human_calls"] = calls // len(rows)
        rows[-1]["amp/human_calls"] += calls % len(rows)
        (cfg.run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (cfg.run_dir / "sft").mkdir()
        (cfg.run_dir / "sft" / "heldout.json").write_text(json.dumps({"human_calls": warm}))
        return {"report": types.SimpleNamespace(beyond=lambda: curve[-1][1]), "human_calls": calls}

    monkeypatch.setattr(bench, "run_sft", fake_sft)
    monkeypatch.setattr(loop, "train", fake_train)
    monkeypatch.setattr(bench, "_isolated", lambda fn, *args: fn(*args))  # the fakes live in this process
    monkeypatch.setattr(bench, "apply_plan", lambda plan: None)
    results = bench.bench_learning(15.0, "perm", output_dir=str(tmp_path))
    assert results["supervised_heldout_accuracy"] == 1.0 and results["supervised_labels"] == 320_000
    assert results["amp_wall_ratio_since_start"] == 350 / 100
    assert results["amp_wall_ratio"] == 330 / 100 and results["amp_human_fraction"] == (21_610 + 223_381) / 320_000
    assert results["amp_minutes"] == 10.0 and results["amp_recipe"] == "recipes/pure_amplification.yaml"
    assert results["few_labels_amp_wall_ratio"] == 580 / 100
    assert results["few_labels_amp_human_fraction"] == (8_171 + 20_775) / 320_000 < 0.1
    assert results["few_labels_amp_heldout_accuracy"] == 1.0 and results["few_labels_amp_human_calls"] == 8_171
    assert results["fresh_student_amp_wall_ratio"] == 290 / 100
    assert results["fresh_student_amp_recipe"] == "recipes/amplification_fresh_student.yaml"
    assert results["fresh_student_amp_human_fraction"] == (268_771 + 64_000) / 320_000
    assert results["few_labels_fresh_student_amp_wall_ratio"] == 160 / 100
    assert results["few_labels_fresh_student_amp_human_fraction"] == (4_202 + 8_000) / 320_000 < 0.1
    # Against the labels each run had used when it first came within 3 points (supervised: 32,000 at 100 s; the
    # few-labels fresh student: 2 of its 3 updates' calls, 1,400 each, and the warm start's 8,000).
    assert results["supervised_labels_at_target"] == 32_000
    assert results["few_labels_fresh_student_amp_human_calls_at_target"] == 2 * 1_400 + 8_000
    assert results["few_labels_fresh_student_amp_human_fraction_at_target"] == (2 * 1_400 + 8_000) / 32_000
    assert results["amp_human_fraction_at_target"] == (2 * (21_610 // 3) + 223_381) / 32_000
    assert results["few_labels_amp_human_fraction_at_target"] == (3 * (8_171 // 4) + 20_775) / 32_000
    bench.print_learning(results, ["perm"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[-5].endswith("(4.0 min, 320000 gold labels; 32000 when first within 3 points of its end)")
    assert lines[-4].strip().startswith("amplification: 100.0% (10.0 min, 21610 human calls + 223381 in the warm")
    assert "0.766 of the gold labels); amp_wall_ratio 3.30 (3.50 from the run's start); at that point" in lines[-4]
    assert lines[-4].endswith("237787 human calls: 7.431 of the gold labels the supervised run had then")
    assert "0.090 of the gold labels); few_labels_amp_wall_ratio 5.80 (6.00 from the run's start)" in lines[-3]
    assert "1.040 of the gold labels); fresh_student_amp_wall_ratio 2.90 (3.10 from the run's start)" in lines[-2]
    assert lines[-1].strip().startswith("few_labels_fresh_student: 100.0% (3.3 min, 4202 human calls + 8000 in the")
    assert "0.038 of the gold labels); few_labels_fresh_student_amp_wall_ratio 1.60 (1.80 from" in lines[-1]
    assert lines[-1].endswith("at that point 10800 human calls: 0.338 of the gold labels the supervised run had then")


def test_each_part_of_the_bench_is_saved_as_it_ends(tmp_path, monkeypatch):
    # make bench runs for about 100 minutes: a part that fails (or a kill) must not take the finished parts' figures
    # with it, and the keys of earlier benches that this one does not measure stay in the file.
    import json

    import pytest

    import debate_amp.bench as bench

    results = tmp_path / "bench" / "results.json"
    results.parent.mkdir()
    results.write_text(json.dumps({"add_amp_wall_ratio": 9.0, "rollout_batched_speedup": 1.0}))
    monkeypatch.setattr(bench, "RESULTS", results)
    monkeypatch.setattr(bench, "_a0", lambda cfg, model_dir: tmp_path)
    monkeypatch.setattr(bench, "bench_rollouts", lambda cfg, a0: {"rollout_batched_speedup": 13.2})
    monkeypatch.setattr(bench, "bench_amplification_speed", lambda cfg, a0: {"amp_pipeline_efficiency": 0.13})

    def learning(minutes, task):
        raise RuntimeError("the learning part failed")

    monkeypatch.setattr(bench, "bench_learning", learning)
    with pytest.raises(RuntimeError, match="learning part failed"):
        bench.main(["--learning", "--tasks", "perm"])
    saved = json.loads(results.read_text())
    assert saved["rollout_batched_speedup"] == 13.2 and saved["amp_pipeline_efficiency"] == 0.13
    assert saved["human_decomposes_amp_pipeline_efficiency"] == 0.13  # the second amplifier's, prefixed
    assert saved["add_amp_wall_ratio"] == 9.0 and saved["machine"] and saved["date"]
    assert [p.name for p in results.parent.iterdir()] == ["results.json"]  # no temporary file left behind


def test_the_human_efficiency_part_reads_the_supervised_accuracy_an_earlier_bench_saved(tmp_path, monkeypatch):
    import json

    import debate_amp.bench as bench

    results = tmp_path / "results.json"
    results.write_text(json.dumps({"supervised_heldout_accuracy": 0.98}))
    monkeypatch.setattr(bench, "RESULTS", results)
    monkeypatch.setattr(bench, "_a0", lambda cfg, model_dir: tmp_path)
    monkeypatch.setattr(
        bench,
        "bench_rollouts",
        lambda cfg, a0: {
            "rollout_batched_per_s": 1.0,
            "rollout_sequential_per_s": 1.0,
            "rollout_batched_speedup": 1.0,
            "rollout_batched_generate_calls": 1,
            "rollout_sequential_generate_calls": 1,
            "rollout_amp_accuracy": 1.0,
        },
    )
    monkeypatch.setattr(
        bench,
        "bench_amplification_speed",
        lambda cfg, a0: {
            "amp_answers_per_s": 1.0,
            "amp_targets_per_s": 1.0,
            "bare_generate_per_s": 1.0,
            "amp_pipeline_efficiency": 1.0,
        },
    )
    seen = []

    def human_efficiency(a0, minutes, supervised):
        seen.append(supervised)
        return {
            "human_efficiency_target": 0.95 * supervised,
            "human_calls_to_target": {"adversary": 180},
            "human_efficiency_curves": {"adversary": [(180, 0.95)]},
            "human_efficiency_rehearsal_calls": {},
            "adversary_over_best_bernoulli": None,
        }

    monkeypatch.setattr(bench, "bench_human_efficiency", human_efficiency)
    assert bench.main(["--human-efficiency"]) == 0
    assert seen == [0.98]
    assert json.loads(results.read_text())["human_calls_to_target"] == {"adversary": 180}


def test_each_timed_run_of_the_learning_bench_gets_a_process_of_its_own(tmp_path):
    """Spawned, so that what an earlier run left in the process cannot slow a later one's clock; the recipe's
    config travels to it and its result comes back."""
    import os

    import debate_amp.bench as bench

    cfg = load_config("recipes/supervised_baseline.yaml", [f"run.output_dir={tmp_path}"])
    pid, name = bench._isolated(_pid_and_run_name, cfg)
    assert pid != os.getpid() and name == "supervised_baseline"


def _pid_and_run_name(cfg):
    import os

    return os.getpid(), cfg.run.name
