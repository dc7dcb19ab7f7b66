"""Each entry point as a subprocess, the way a user runs it."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from debate_amp.eval.protocols import LOSS_REASONS

from .test_train import TINY

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}


def run(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "debate_amp.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


def test_amp_prints_the_tree_with_provenance():
    # a sampler that looks at M's draft (bernoulli, p = 1) keeps it beside the human's step; `always` asks no draft
    question = "s=37016254 x=5 k=13"
    proc = run("amp", "--model", "perfect", "--question", question, "sampler.kind=bernoulli", "sampler.p=1.0")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "answer 7: correct; human calls 2" in out
    assert "step [x=5 k=13] -> 'ask 2^6;#1^6'  (human, replacing policy's" in out
    assert "answer [x=2 k=6] -> '6'  (policy)" in out
    always = run("amp", "--model", "perfect", "--question", question, "sampler.kind=always").stdout
    assert "step [x=5 k=13] -> 'ask 2^6;#1^6'  (human)\n" in always and "replacing" not in always
    assert "answer 7: correct; human calls 2" in always


def test_amp_uses_a_trained_adversary_from_its_file(tmp_path):
    # an adversary sure of every draft (p_wrong = sigmoid(-10)): the perfect model's draft stands, nobody is asked;
    # an uninformed one (no file: p_wrong 0.5 >= the confidence 0.2) doubts it, and the human takes the steps
    import torch

    from debate_amp.adversary import Adversary

    sure = Adversary()
    with torch.no_grad():
        sure.net.head.weight.zero_()
        sure.net.head.bias.fill_(-10.0)
    sure.save(tmp_path / "adversary.safetensors")
    question = ("--model", "perfect", "--question", "s=37016254 x=5 k=13", "sampler.kind=adversary")
    proc = run("amp", *question, f"sampler.adversary_path={tmp_path / 'adversary.safetensors'}")
    assert proc.returncode == 0, proc.stderr
    assert "answer 7: correct; human calls 0" in proc.stdout
    proc = run("amp", *question)
    assert proc.returncode == 0 and "answer 7: correct; human calls 0" not in proc.stdout, proc.stderr
    proc = run("amp", *question, f"sampler.adversary_path={tmp_path / 'missing.safetensors'}")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f"sampler.adversary_path: no such file: {tmp_path / 'missing.safetensors'}" in proc.stderr


def test_amp_rejects_a_bad_question_in_one_line():
    proc = run("amp", "--model", "perfect", "--question", "s=11 x=0 k=2")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "debate-amp: error: --question: s must list sigma(0), sigma(1), ... : each of 0..N-1 once, got '11'"
    ]


def test_amp_answers_a_huge_power_at_once_and_rejects_another_n():
    proc = run("amp", "--model", "perfect", "--question", "s=37016254 x=5 k=100000000000", timeout=60)
    assert proc.returncode == 0 and "answer 5: correct" in proc.stdout, proc.stderr  # 5 -> 5 after 10**11 steps
    other_n = run("amp", "--model", "perfect", "--question", "s=10234 x=1 k=2")
    assert other_n.returncode == 2
    assert other_n.stderr.strip().splitlines() == [
        "debate-amp: error: --question: sigma has 5 elements but the recipe's task.n_elements is 8 (what the model "
        "was trained on); add task.n_elements=5 to ask it anyway"
    ]
    assert run("amp", "--model", "perfect", "--question", "s=10234 x=1 k=2", "task.n_elements=5").returncode == 0


def test_config_keys_lists_documented_keys():
    proc = run("config", "--keys")
    assert proc.returncode == 0
    assert (
        "objective.alpha = 0.5\n    weighted: loss = alpha * L_rl + (1 - alpha) * L_sup (the start value" in proc.stdout
    )


def test_amp_records_labels_and_replays_them(tmp_path):
    db = str(tmp_path / "labels.sqlite")
    question = "s=37016254 x=5 k=13"
    first = run("amp", "--model", "perfect", "--question", question, "--labels", db, "sampler.kind=always")
    assert "human calls 2" in first.stdout, first.stderr
    replay = ["human.kind=replay", f"human.replay_from={db}", "sampler.kind=always"]
    again = run("amp", "--model", "perfect", "--question", question, *replay)
    assert again.returncode == 0, again.stderr
    assert "answer 7: correct; human calls 0" in again.stdout
    assert "step [x=5 k=13] -> 'ask 2^6;#1^6'  (human, from the label store)" in again.stdout
    unseen = run("amp", "--model", "perfect", "--question", question.replace("k=13", "k=12"), *replay)
    assert unseen.returncode == 1
    assert unseen.stderr.startswith("debate-amp: error: the replay human has no recorded answer to step question")
    assert "Traceback" not in unseen.stderr
    fallback = run(
        "amp", "--model", "perfect", "--question", question.replace("k=13", "k=12"), *replay, "human.fallback=synthetic"
    )
    assert "answer 1: correct; human calls 2" in fallback.stdout, fallback.stderr


def test_amp_refuses_labels_that_are_not_a_label_store_and_creates_no_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("not a database")
    cases = {
        str(tmp_path / "notes.txt"): "not a readable label store",
        str(tmp_path): "not a label store (not a file)",
        str(tmp_path / "missing" / "x.sqlite"): "no such folder",
    }
    for labels, reason in cases.items():
        proc = run("amp", "--model", "perfect", "--question", "s=37016254 x=5 k=13", "--labels", labels)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and reason in lines[0], proc.stderr
    assert not (tmp_path / "missing").exists() and (tmp_path / "notes.txt").read_text() == "not a database"


def test_scripted_models_and_bad_input_never_import_torch(tmp_path):
    # torch and transformers take seconds to import: a command that runs no model, or fails on its input, needs
    # neither (the scripted model's generate function and Generation live in protocol.py)
    code = (
        "import runpy, sys\n"
        "sys.argv = ['debate-amp', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('debate_amp.cli', run_name='__main__')\n"
        "except SystemExit as e:\n    print('exit', e.code)\n"
        "print('torch imported', 'torch' in sys.modules)\n"
    )
    perfect = ("--model", "perfect", "--question", "s=37016254 x=5 k=13")
    commands = {
        ("debate", *perfect, "--liar", "even"): "exit 0",
        ("amp", *perfect, "--labels", str(tmp_path / "l.sqlite")): "exit 0",
        ("amp", *perfect, "--labels", str(tmp_path / "no" / "x.sqlite")): "exit 2",
        ("eval", "--protocol", "liar", "--model", "perfect", "--n", "8", "--max-turns", "2"): "exit 0",
        ("train", "recipes/default.yaml", "trainer.nope=1"): "exit 2",
    }
    for args, status in commands.items():
        proc = subprocess.run(
            [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, env=ENV
        )
        assert status in proc.stdout and "torch imported False" in proc.stdout, (args, proc.stdout, proc.stderr)


def test_debate_prints_turns_judgments_and_verdict():
    proc = run("debate", "--model", "perfect", "--liar", "even", "--question", "s=37016254 x=5 k=13")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "question s=37016254 x=5 k=13   (gold 7)" in out
    assert "[0] even: 5^13=" in out and "(scripted liar)" in out
    assert "[1]  odd: no 2^6=6 via 1    (policy 7)" in out
    assert "continue_3 = false: judge said sufficient='yes'" in out
    assert "verdict: odd wins" in out and "the judge picked the honest side" in out


def test_debate_pure_amplification_and_trees():
    proc = run(
        "debate",
        "--model",
        "perfect",
        "--trees",
        "debate.force_stop_p=1.0",
        "sampler.kind=always",
        "--question",
        "s=37016254 x=5 k=6",
    )
    assert proc.returncode == 0, proc.stderr
    assert "continue_0 = false: forced (force_stop_p)" in proc.stdout
    assert "[1]" not in proc.stdout
    assert "|-- step [x=5 k=6] -> 'ask 5^3;#1^3'  (human)\n" in proc.stdout  # `always`: no draft of M's
    assert "verdict: even wins" in proc.stdout


def test_debate_bad_max_turns():
    proc = run("debate", "--model", "perfect", "--max-turns", "0")
    assert proc.returncode == 2 and proc.stderr.strip() == "debate-amp: error: --max-turns: must be at least 1, got 0"


def test_train_entry_point_runs_and_prints_the_final_table(tmp_path):
    tiny = [*TINY, "trainer.updates=2", f"run.output_dir={tmp_path}", "run.name=t"]
    proc = subprocess.run(
        [sys.executable, "-m", "debate_amp.train", "recipes/default.yaml", "--no-progress", *tiny],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "trained 2 updates" in proc.stdout and "human calls used:" in proc.stdout
    assert "final table (runs/<name>/final.json)" in proc.stdout and "held-out accuracy by k" in proc.stdout
    assert "verdicts that parse" in proc.stdout and "against the scripted liar" in proc.stdout
    assert len((tmp_path / "t" / "metrics.jsonl").read_text().splitlines()) == 2
    final = json.loads((tmp_path / "t" / "final.json").read_text())
    for key in ("heldout_k_ge_2", "verdict_parse_rate", "liar_judge_accuracy", "mean_debate_length", "human_calls"):
        assert key in final, key
    assert final["liar_questions"] == 8 and 0.0 <= final["liar_judge_accuracy"] <= 1.0
    lost = [final[f"liar_lost_{reason}"] for reason in LOSS_REASONS]  # why the honest side lost the rest
    assert math.isclose(sum(lost), 1 - final["liar_judge_accuracy"]) and "lost: the judge ruled" in proc.stdout
    for key in ("liar_judge_last_stands", "liar_judge_last_falls"):  # None only when no debate of that kind
        assert final[key] is None or 0.0 <= final[key] <= 1.0, key
    assert "judge agrees with its rule where the last argument falls" in proc.stdout
    assert final["liar_human_calls_per_debate"] >= 0.0 and "human calls per debate (the steps" in proc.stdout


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path):
    proc = run("report", str(tmp_path))
    assert proc.returncode == 2 and "not a run directory (no metrics.jsonl" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "report.html").exists()


def test_debate_says_so_when_the_verdict_does_not_parse(monkeypatch, capsys):
    from debate_amp import cli
    from debate_amp.protocol import Generation

    def babble(prompts, limits=None):  # a model whose every reply parses as nothing
        return Generation(["%%"] * len(prompts), [[] for _ in prompts], [[] for _ in prompts])

    monkeypatch.setattr(cli, "_generate_fn", lambda *args, **kwargs: babble)
    question = ["debate", "--model", "perfect", "--question", "s=37016254 x=5 k=13"]
    assert cli.main([*question, "debate.forfeit_unparsed=false"]) == 0
    out = capsys.readouterr().out
    assert "verdict: none, the judge's reply does not name a side   (judge said '?'" in out  # Amp's '?'
    assert "None wins" not in out
    assert cli.main(question) == 0  # by default the opening '?' is not an argument: it forfeits, no judge asked
    out = capsys.readouterr().out
    assert "verdict: odd wins: argument 0 is not an argument (forfeit)" in out and "rewards: even -1, odd +1" in out


def test_ctrl_c_during_the_warm_start_stops_in_one_line(tmp_path):
    import signal
    import time

    log = tmp_path / "stderr.txt"
    with open(log, "w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "debate_amp.cli", "train", "recipes/default.yaml", f"run.output_dir={tmp_path}"]
            + ["sft.n_examples=16000", "sft.batch_size=32"]  # 500 steps: long enough to be interrupted
            + ["pretrain.recipe=null"],  # the warm start from new weights, at once
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err_file,
            env=ENV,
        )
        deadline = time.time() + 120
        while "/500 [" not in log.read_text() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)  # until the warm start's training steps have begun
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    err = log.read_text()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    assert "\ndebate-amp: interrupted; a warm start that did not finish is redone by the same command\n" in err
    assert not (tmp_path / "default" / "sft" / "config.json").exists()


def test_ctrl_c_during_the_liar_protocol_stops_at_once_in_one_line(tmp_path):
    # Issue 12, item 7: Ctrl-C on `eval --protocol liar` was ignored for over 15 s (measured fix: 1.1 s).
    import signal
    import time

    log = tmp_path / "stderr.txt"
    with open(log, "w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "debate_amp.cli", "eval", "--protocol", "liar", "--model", "perfect"]
            + ["--n", "200000", "--max-turns", "4"],  # minutes of debates: long enough to be interrupted
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err_file,
            env=ENV,
        )
        time.sleep(4)  # imports and the first debates
        assert proc.poll() is None, log.read_text()[-2000:]
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        latency = time.perf_counter() - sent
    err = log.read_text()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("debate-amp: interrupted")
    assert latency < 5.0, f"{latency:.1f} s from Ctrl-C to exit"
