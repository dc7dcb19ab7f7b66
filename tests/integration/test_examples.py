"""Every example runs, and says what its header says it says."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_honest_vs_liar_table():
    proc = subprocess.run(
        [sys.executable, "examples/honest_vs_liar.py"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    rows = {int(line.split()[0]): line.split() for line in lines[2:8]}
    assert rows[1][3] == "56.2%" and rows[6][3] == "100.0%"
    losses = {int(line.split()[0]): line.split() for line in lines[10:16]}  # perfect agents: the protocol's limit
    assert losses[1][1:] == ["0.0%"] * 4 + ["43.8%"] and losses[6][1:] == ["0.0%"] * 5
    judge = lines[lines.index(next(line for line in lines if line.startswith("does the judge check"))) + 2 :]
    assert judge and all(line.split()[-1] == line.split()[-3] == "100.0%" for line in judge if "-" not in line)
    assert [line.split()[:2] for line in judge if line.split()[1] == "all"] == [[str(t), "all"] for t in range(1, 7)]


def test_amplification_tree():
    proc = subprocess.run(
        [sys.executable, "examples/amplification_tree.py"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "answer [x=5 k=13] -> '7'  (Amp; last step by policy)"
    assert "|-- step [x=5 k=13] -> 'ask 2^6;#1^6'  (human, replacing policy's" in proc.stdout
    assert "|-- answer [x=2 k=6] -> '6'  (policy)" in proc.stdout
    assert lines[-1] == "answer 7: correct; human calls 1"


def test_alpha_sweep_trains_three_runs_and_compares_two(tmp_path):
    proc = subprocess.run(
        [sys.executable, "examples/alpha_sweep.py", str(tmp_path), "--tiny"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:5]}
    assert rows["pure_amplification"][8] == "1.00"  # every debate stops after arg_0
    assert rows["pure_amplification"][1:4] == ["0.00", "->", "0.00"] and rows["pure_amplification"][4:7] == [
        "1.00",
        "->",
        "1.00",
    ]
    assert rows["hybrid"][1:7] == ["0.10", "->", "0.20", "0.90", "->", "0.00"]
    assert rows["pure_debate"][1:7] == ["1.00", "->", "1.00", "0.00", "->", "0.00"]
    for run in ("pure_amplification", "hybrid", "pure_debate"):
        assert len(list((tmp_path / run / "transcripts").glob("update_*.jsonl"))) == 2
    assert (tmp_path / "alpha_sweep.png").is_file()
    sweep = json.loads((tmp_path / "alpha_sweep.json").read_text())
    assert sweep["pure_amplification"]["continue0_rate"] == 0.0
    report = (tmp_path / "hybrid" / "report.html").read_text()  # each run's report shows the sweep, itself outlined
    assert '<table class="final" id="alpha-sweep">' in report
    assert '<tr class="this-run"><td>hybrid</td><td>0.10 &rarr; 0.20</td><td>0.90 &rarr; 0.00</td>' in report
    assert report.count('class="this-run"') == 1
    assert "$ debate-amp eval --compare pure_amplification pure_debate" in out
    assert "A: 32 debates in 2 files, updates 1-2" in out
    forced = next(line for line in out.splitlines() if line.startswith("  continue_0 forced false"))
    assert forced.split()[3:6] == ["100.0%", "0.0%", "-100.0%"]


def test_judge_check_trains_on_verdicts_and_scores_them_by_ending():
    proc = subprocess.run(
        [sys.executable, "examples/judge_check.py", "--examples", "400", "--eval", "300", "--recent-first"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("training on ") and "'lookup false'" in lines[0] and "coin flip" not in lines[0]
    assert lines[1] == "e.g. 's=41520376 x=6 k=3 |agree |6^3=7 via 6 W=' -> 'even'"  # newest argument first
    assert lines[-1].split()[:3] == ["final", "11", "steps"]  # 381 debates without coin flips, in batches of 32
    for ending in ("agree", "lookup false", "lookup true", "opening"):
        assert f" {ending} " in lines[-1]


def seed_sweep(recipe, out_dir, *args, timeout=300):
    """examples/seed_sweep.py RECIPE OUT_DIR ARGS, its output captured."""
    return subprocess.run(
        [sys.executable, "examples/seed_sweep.py", recipe, str(out_dir), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_seed_sweep_trains_each_seed_and_tabulates(tmp_path):
    # Mechanics on an untrained tiny model: two seeds side by side, each with its own tiny warm start (so A[0]'s
    # columns are read from its heldout.json) and two evaluated updates. --target 0 is reached at the first update
    # by construction, so the table's "first" column and the count are checked; learning is not (the tiny untrained
    # model learns nothing in two updates).
    # --against: a supervised sweep (written here) that reached the target on seed 0 after 2.5 s, not on seed 1.
    tiny = ["--tiny", "--seeds", "0,1", "--target", "0"]
    supervised = {"unit": "step", "target": 0, "seeds": {"0": {"first_at_target": [250, 2.5]}, "1": {}}}
    (tmp_path / "supervised.json").write_text(json.dumps(supervised))
    tiny += ["--against", str(tmp_path / "supervised.json")]
    out = tmp_path / "sweep"
    proc = seed_sweep("recipes/pure_amplification.yaml", out, *tiny, "trainer.warm_start=true")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    sweep = json.loads((out / "seed_sweep.json").read_text())
    assert sweep["updates"] == 2 and sweep["overrides"] == ["trainer.warm_start=true"]
    assert (out / "seed_sweep.png").read_bytes()[:4] == b"\x89PNG"
    for seed in (0, 1):
        run = out / f"seed{seed}" / "pure_amplification"
        assert yaml.safe_load((run / "config.yaml").read_text())["run"]["seed"] == seed  # each run its own seed
        result = sweep["seeds"][str(seed)]
        assert [update for update, _, _ in result["curve"]] == [1, 2]
        assert 0 < result["curve"][0][1] < result["curve"][1][1]  # seconds of training, growing
        assert result["first_at_target"] == result["curve"][0][:2] and result["final"] == result["curve"][1][2]
        a0 = json.loads((run / "sft" / "heldout.json").read_text())["answer"]
        assert result["a0"] == pytest.approx(
            sum(v for k, v in a0.items() if int(k) >= 2) / sum(int(k) >= 2 for k in a0)
        )
    lines = proc.stdout.splitlines()
    assert "reached 0% on 2 of 2 seeds (0, 1)" in lines
    # each seed's wall time to the target over the supervised run's: seed 0's seconds / 2.5, seed 1 none
    ratio = sweep["seeds"]["0"]["first_at_target"][1] / 2.5
    assert sweep["seeds"]["0"]["wall_ratio"] == pytest.approx(ratio) and sweep["seeds"]["1"]["wall_ratio"] is None
    ratio_rows = lines[lines.index(next(line for line in lines if line.startswith("wall time to 0%"))) + 2 :]
    seconds = sweep["seeds"]["0"]["first_at_target"][1]
    assert ratio_rows[0].split() == f"0 step 250 ({2.5:.0f} s) update 1 ({seconds:.0f} s) {ratio:.2f}".split()
    seconds = sweep["seeds"]["1"]["first_at_target"][1]
    assert ratio_rows[1].split() == f"1 not update 1 ({seconds:.0f} s) -".split()
    assert f"both reached it on 1 of 2 seeds: ratio median {ratio:.2f}, {ratio:.2f}-{ratio:.2f}" in lines
    lines = lines[: lines.index("reached 0% on 2 of 2 seeds (0, 1)")]  # the lottery's table
    rows = [line.split() for line in lines if re.match(r" +[01] ", line)]  # seed, A[0], shortcut, first, updates
    assert [row[0] for row in rows] == ["0", "1"]
    assert all(row[3] == "1" and re.fullmatch(r"\(\d+", row[4]) and len(row) == 8 for row in rows), rows
    # a seed's report shows the sweep, that seed outlined
    from debate_amp.eval.report import render_report

    page = render_report(out / "seed1" / "pure_amplification")
    assert '<table class="final" id="seed-sweep">' in page and "0% reached on 2 of 2 seeds" in page
    assert page.count('class="this-run"') == 1 and '<tr class="this-run"><td>1</td>' in page
    assert "<th>wall ratio against" in page and f"<td>{ratio:.2f}</td></tr>" in page
    (out / "seed_sweep.json").write_text("{")
    assert "seed_sweep.json does not parse" in render_report(out / "seed1" / "pure_amplification")


def test_seed_sweep_of_the_supervised_baseline_reads_its_curve_by_step(tmp_path):
    # --sft: each seed a `debate-amp sft` run (256 gold examples in batches of 32 on the untrained tiny model, held
    # out every 2 steps); the curve is heldout.json's, the first point at --target 0 is the first evaluation's step.
    proc = seed_sweep(
        "recipes/supervised_baseline.yaml", tmp_path, "--sft", "--tiny", "--seeds", "0,1", "--target", "0"
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    sweep = json.loads((tmp_path / "seed_sweep.json").read_text())
    assert sweep["unit"] == "step" and sweep["updates"] is None and sweep["xlabel"] == "seconds of training"
    from debate_amp.config import load_config
    from debate_amp.eval.report import heldout_json_beyond, render_report
    from debate_amp.tasks import make_task

    for seed in (0, 1):
        heldout = tmp_path / f"seed{seed}" / "supervised_baseline" / "sft" / "heldout.json"
        points = json.loads(heldout.read_text())["curve"]
        result = sweep["seeds"][str(seed)]
        assert [step for step, _, _ in result["curve"]] == [2, 4, 6, 8] == [p["step"] for p in points]
        assert [acc for _, _, acc in result["curve"]] == [p["answer_k_ge_2"] for p in points]
        assert result["first_at_target"] == result["curve"][0][:2] and result["a0"] is None
        task = make_task(load_config("recipes/supervised_baseline.yaml"))
        assert result["final"] == pytest.approx(heldout_json_beyond(heldout, task))
    assert "reached 0% on 2 of 2 seeds (0, 1)" in proc.stdout.splitlines()
    page = render_report(tmp_path / "seed0" / "supervised_baseline")
    assert '<tr class="this-run"><td>0</td><td>-</td><td>-</td><td>step 2 (' in page


def test_seed_sweep_of_ida_reads_each_round(tmp_path):
    # --ida: each seed a `debate-amp ida` run (two rounds of 24 questions on the untrained tiny model, each round
    # distilled into a fresh student); the curve is rounds.jsonl's A[1], A[2] with the rounds' seconds summed, A[0]
    # is a0.json's, and the first point at --target 0 is round 1.
    proc = seed_sweep("recipes/ida_fresh_student.yaml", tmp_path, "--ida", "--tiny", "--seeds", "0,1", "--target", "0")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    sweep = json.loads((tmp_path / "seed_sweep.json").read_text())
    assert sweep["unit"] == "round" and sweep["updates"] is None and sweep["xlabel"].startswith("round")
    from debate_amp.eval.report import render_report, sweep_curve

    for seed in (0, 1):
        ida = tmp_path / f"seed{seed}" / "ida_fresh_student" / "ida"
        rows = [json.loads(line) for line in (ida / "rounds.jsonl").read_text().splitlines()]
        result = sweep["seeds"][str(seed)]
        assert [r for r, _, _ in result["curve"]] == [1, 2] == [row["round"] for row in rows]
        assert [acc for _, _, acc in result["curve"]] == [row["heldout_beyond"] for row in rows]
        assert result["curve"][1][1] == pytest.approx(rows[0]["wall_s"] + rows[1]["wall_s"])
        assert result["a0"] == json.loads((ida / "a0.json").read_text())["heldout_beyond"]
        assert result["first_at_target"] == result["curve"][0][:2] and result["final"] == result["curve"][1][2]
        # the figures' curve is by round, A[0] at round 0
        assert sweep_curve(result, "round") == [[0, result["a0"]], *([r, acc] for r, _, acc in result["curve"])]
    assert "reached 0% on 2 of 2 seeds (0, 1)" in proc.stdout.splitlines()
    page = render_report(tmp_path / "seed1" / "ida_fresh_student")
    assert '<tr class="this-run"><td>1</td>' in page and "<td>round 1 (" in page


def test_seed_sweep_refuses_bad_input_in_one_line(tmp_path):
    # pure_amplification.yaml evaluates its warm start at the end only: --sft has no curve to read
    bad = ((["--seeds", "3-x"], "--seeds"), (["trainer.updatez=3"], "updatez"), (["--sft"], "sft.eval_every_steps"))
    bad += ((["--sft", "--ida"], "--ida"),)
    other_target = tmp_path / "other_target.json"
    other_target.write_text(json.dumps({"unit": "step", "target": 0.9, "seeds": {}}))
    bad += ((["--against", str(tmp_path / "missing.json")], "missing.json"),)
    bad += ((["--against", str(other_target)], "--target 0.97"),)
    for args, named in bad:
        proc = seed_sweep("recipes/pure_amplification.yaml", tmp_path / "out", *args, timeout=60)
        assert proc.returncode == 2 and named in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "out").exists()  # nothing started
