"""The dataset task: the user's own questions read from disk, rendered by the recipe's templates."""

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from debate_amp.config import ConfigError, load_config
from debate_amp.protocol import Answer, Ask, Posed, Unparsed
from debate_amp.tasks import make_task, task_named
from debate_amp.tasks.dataset import DEFAULT_TEMPLATES, DatasetQuestion, DatasetTask, claimed_answer, load_rows

ROWS = [{"question": f"What is {a} plus {b}?", "answer": str(a + b)} for a in range(10) for b in range(10)]


@pytest.fixture()
def jsonl(tmp_path):
    path = tmp_path / "q.jsonl"
    rows = [*ROWS, {"question": "Why is the sky blue?"}]  # a row without an answer
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rows_load_from_jsonl_csv_parquet_and_a_saved_folder_alike(tmp_path, jsonl):
    import datasets

    data = datasets.Dataset.from_list(ROWS)
    data.to_csv(str(tmp_path / "q.csv"), index=False)
    data.to_parquet(str(tmp_path / "q.parquet"))
    data.save_to_disk(str(tmp_path / "saved"))
    expected = tuple((r["question"], r["answer"]) for r in ROWS)
    for path in ("q.csv", "q.parquet", "saved"):
        assert load_rows((str(tmp_path / path),), "question", "answer") == expected, path
    rows = load_rows((str(jsonl),), "question", "answer")
    assert rows[:100] == expected and rows[100] == ("Why is the sky blue?", None)


def test_a_bad_file_fails_in_one_line_naming_it(tmp_path, jsonl):
    labels = tmp_path / "labels.jsonl"
    labels.write_text("")  # no recorded answers yet: a replay file all the same
    base = ["task.name=dataset", "human.kind=replay", f"human.replay_from={labels}", "trainer.warm_start=false"]
    base.append("trainer.rehearsal_examples=0")
    with pytest.raises(ConfigError, match=r"^task.paths: no such file or folder: nope.jsonl$"):
        load_config(None, [*base, "task.paths=[nope.jsonl]"], check_paths=True)
    (tmp_path / "q.txt").write_text("hello")
    with pytest.raises(ConfigError, match=r"^task.paths: .*q.txt: expected a .jsonl"):
        load_config(None, [*base, f"task.paths=[{tmp_path / 'q.txt'}]"])
    with pytest.raises(ConfigError, match=r"^task.paths: .*q.jsonl: no column 'prompt' \(columns: answer, question\)"):
        load_config(None, [*base, f"task.paths=[{jsonl}]", "task.question_field=prompt"])


def test_the_recipe_refuses_what_a_task_without_a_synthetic_human_cannot_do(jsonl):
    paths = f"task.paths=[{jsonl}]"
    with pytest.raises(ConfigError, match=r"^human.kind=synthetic: the dataset task has no synthetic human"):
        load_config(None, ["task.name=dataset", paths], check_paths=False)
    ok = ["task.name=dataset", paths, "human.kind=replay", "human.replay_from=x.jsonl"]
    with pytest.raises(ConfigError, match=r"^trainer.warm_start=true: .* set it false$"):
        load_config(None, ok, check_paths=False)
    with pytest.raises(ConfigError, match=r"^trainer.rehearsal_examples: "):
        load_config(None, [*ok, "trainer.warm_start=false"], check_paths=False)
    quiet = ["trainer.warm_start=false", "trainer.rehearsal_examples=0"]
    with pytest.raises(
        ConfigError, match=r"^debate.liar_fraction: the dataset task has no scripted liar; set it to 0$"
    ):
        load_config(None, [*ok, *quiet, "debate.liar_fraction=0.5"], check_paths=False)
    with pytest.raises(ConfigError, match=r"^task.templates.answer: unknown field \{q\}"):
        load_config(None, [*ok, "task.templates={answer: '{q} A='}"], check_paths=False)
    with pytest.raises(ConfigError, match=r"^task.paths: the dataset task needs at least one file"):
        load_config(None, ["task.name=dataset"], check_paths=False)
    cfg = load_config(None, [*ok, "trainer.warm_start=false", "trainer.rehearsal_examples=0"], check_paths=False)
    task = make_task(cfg)
    assert not task.synthetic
    for method in (task.human, task.liar):
        with pytest.raises(ValueError, match="dataset task has no"):
            method()


def test_held_out_rows_never_train_and_evaluation_uses_only_rows_with_an_answer(jsonl):
    task = DatasetTask((str(jsonl),), heldout_fraction=0.25)
    rng = random.Random(0)
    train = {task.sample(rng).text for _ in range(2000)}
    heldout = {q.text for q in task.eval_questions(1000)}
    assert train and heldout and not train & heldout
    assert len(task.train_rows) + len(task.heldout_rows) == 101  # every row on exactly one side
    assert {text for text, _ in task.train_rows}.isdisjoint(text for text, _ in task.heldout_rows)
    assert all(q.gold is not None for q in task.eval_questions(1000))
    assert task.eval_questions(5, seed=1) == task.eval_questions(5, seed=1) != task.eval_questions(5, seed=2)


def test_templates_render_every_posed_kind_and_a_long_prompt_is_cut_to_fit():
    templates = {**DEFAULT_TEMPLATES, "answer": "Question: {question}\nAnswer:"}
    q = DatasetQuestion("What is 2 plus 3?", "5", tuple(templates.items()), 48)
    assert Posed("answer", q).render() == "Question: What is 2 plus 3?\nAnswer:"
    assert Posed("answer", q).step(("4", "1")).render() == "Question: What is 2 plus 3?\nAnswer: #1=4 #2=1 S"
    args = ("5 because 2 and 3", "no 6", "agree")
    assert Posed("winner", q, args[:1]).render() == "What is 2 plus 3? |5 because 2 and 3 W="
    assert Posed("sufficient", q, args[:2], argument=1).step(()).render() == "What is 2 plus 3? |... |no 6 @1 SE="
    long = Posed("winner", q, args).render()  # the oldest arguments give way first, then the question's start
    assert long == "What is 2 plus 3? |... |no 6 |agree W=" and len(long.encode()) <= 48
    tight = DatasetQuestion("x" * 200, None, tuple(templates.items()), 30)
    assert Posed("catastrophe", tight, ("ü" * 50,), argument=0).render().endswith("@0 C=")
    assert len(Posed("catastrophe", tight, ("ü" * 50,), argument=0).render().encode()) <= 30


def test_steps_subquestions_scores_and_claims():
    q = task_named("dataset").parse_question("What is 2 plus 3?", gold="5")
    assert q.parse_step("ans 5") == Answer("5") and q.parse_step("ask 2+1?;#1+2?") == Ask("2+1?", "#1+2?")
    assert isinstance(q.parse_step("five"), Unparsed)
    sub = q.subquestion("What is 2 plus 1?")
    assert sub is not None and sub.text == "What is 2 plus 3? >> What is 2 plus 1?" and sub.gold is None
    assert sub.subquestion("and 1?").text == "What is 2 plus 3? >> and 1?"  # about the row, not the chain
    assert q.subquestion("  ") is None
    assert q.score(" 5. ") == 1.0 and q.score("6") == 0.0 and q.score(None) == 0.0
    assert q.opening_claims_gold("5 because 2 + 3 = 5") and not q.opening_claims_gold("6 because")
    assert claimed_answer("Paris because it is the capital\nmore") == "paris"
    task = task_named("dataset")
    assert task.opening_reply(q, ["5"]) == "single"
    assert task.opening_reply(q, ["5", "agree"]) == task.opening_reply(q, ["5", "5 because"]) == "agree"
    assert task.opening_reply(q, ["5", "no 6"]) == "disagree" and task.opening_reply(q, ["5", " "]) == "other"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80), st.lists(st.text(max_size=30), max_size=5), st.integers(0, 120))
def test_any_text_renders_parses_and_never_exceeds_the_limit(text, context, limit):
    q = DatasetQuestion(text or "q", None, tuple(DEFAULT_TEMPLATES.items()), limit)
    for posed in (Posed("answer", q), Posed("argue", q, tuple(context)), Posed("winner", q, tuple(context))):
        rendered = posed.render()
        assert not limit or len(rendered.encode()) <= limit
        assert posed.step(tuple(context[:2])).render() is not None
    assert q.parse_step(text) is not None and isinstance(q.is_argument(text), bool)
    q.opening_claims_gold(text)
    task_named("dataset").opening_reply(q, [text, *context])
