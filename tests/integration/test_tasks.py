"""Tasks as plug-ins, end to end: the add task and the user's own questions (the dataset task) through training,
transcripts, the final table and `debate-amp eval`, each a real run of two updates on the tiny model."""

import json

from debate_amp import cli
from debate_amp.config import TINY_OVERRIDES, load_config
from debate_amp.debate.transcript import read_transcripts
from debate_amp.models import load_model, save_model

TINY = list(TINY_OVERRIDES)


def _train(recipe, tmp_path, *overrides):
    from debate_amp.trainer.loop import train

    cfg = load_config(recipe, [*TINY, f"run.output_dir={tmp_path}", "trainer.updates=2", *overrides])
    return cfg, train(cfg, progress=False)


def _records(cfg):
    return [r for f in sorted((cfg.run_dir / "transcripts").glob("update_*.jsonl")) for r in read_transcripts(f)]


def test_the_add_recipe_trains_and_its_transcripts_are_read_as_add(tmp_path, capsys):
    cfg, summary = _train(
        "recipes/add.yaml", tmp_path, "task.eval_size=12", "trainer.eval_size=12", "trainer.eval_every=2"
    )
    assert cfg.task.name == "add"
    records = _records(cfg)
    assert len(records) == 16 and {r["task"] for r in records} == {"add"} and records[0]["schema_version"] == 2
    assert all(r["question"].startswith("a=") and r["gold"].isdigit() for r in records)
    final = json.loads((cfg.run_dir / "final.json").read_text())
    assert final["task"] == "add" and 0.0 <= final["heldout_digits_ge_2"] <= 1.0
    assert set(final["heldout_by_difficulty"]) == {"1", "2", "3", "4", "5", "6"}  # digits, not k
    assert 0.0 <= final["liar_judge_accuracy"] <= 1.0
    metrics = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert "eval/answer_accuracy_digits_ge_2" in metrics[-1]  # eval_every: the tags name the task's difficulty
    assert cli.main(["eval", str(cfg.run_dir), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["debates"] == 16 and stats["difficulty_name"] == "digits"
    assert set(stats["judge_accuracy_by_difficulty"]) <= {"1", "2", "3", "4", "5", "6"}
    assert cli.main(["report", str(cfg.run_dir)]) == 0
    assert "digits" in (cfg.run_dir / "report.html").read_text()


def test_the_dataset_recipe_runs_with_a_saved_model_as_the_human(tmp_path, tiny_model, capsys):
    """recipes/dataset_model_human.yaml offline: rows from a local JSONL (some without an answer), a tiny saved
    model as H; every human answer is the model's and in the label store; gold answers only where rows have them."""
    rows = [{"question": f"What is {a} plus {b}?", "answer": str(a + b)} for a in range(2, 9) for b in range(3, 7)]
    rows += [{"question": f"Is {a} a prime?"} for a in range(2, 12)]  # no gold
    data = tmp_path / "questions.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model, tokenizer = tiny_model
    save_model(model, tokenizer, tmp_path / "judge")
    overrides = [f"task.paths=[{data}]", f"human.model_path={tmp_path / 'judge'}", "trainer.rehearsal_examples=0"]
    cfg, summary = _train("recipes/dataset_model_human.yaml", tmp_path, *overrides, "sampler.p=0.5")
    assert cfg.task.name == "dataset" and cfg.human.kind == "model"
    records = _records(cfg)
    assert len(records) == 16 and {r["task"] for r in records} == {"dataset"}
    by_question = {r["question"]: r.get("answer") for r in rows}
    for r in records:  # each debate is about a row, with its gold answer where the row has one
        assert r["question"] in by_question and r["gold"] == by_question[r["question"]]
    assert summary["human_calls"] > 0
    final = json.loads((cfg.run_dir / "final.json").read_text())
    assert final["task"] == "dataset" and final["liar_judge_accuracy"] is None  # no scripted liar
    assert 0.0 <= final["heldout_difficulty_ge_1"] <= 1.0  # held-out rows with an answer
    from debate_amp.agents.labels import LabelStore

    labels = LabelStore(cfg.run_dir / "labels.sqlite")
    assert len(labels) > 0 and {label.human for label in labels} == {"model"}  # H is the frozen model
    assert cli.main(["eval", str(cfg.run_dir), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["debates"] == 16 and stats["difficulty_name"] == "difficulty"
    loaded, _ = load_model(cfg.model, cfg.run_dir / "model")  # the trained policy saved like any run's
    assert loaded is not None
