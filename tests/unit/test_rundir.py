"""Nothing outside a run directory is ever deleted or overwritten (issue 12, data loss)."""

import pytest

from debate_amp.config import ConfigError, load_config
from debate_amp.trainer.rundir import RunDirError, apply_plan, plan_run_dir, plan_sft_dir


@pytest.mark.parametrize("name", ["..", ".", "/tmp/elsewhere", "a/b", "a\\b", ""])
def test_a_run_name_is_one_plain_folder_name(name):
    with pytest.raises(ConfigError, match="one plain folder name|expected a string"):
        load_config("recipes/default.yaml", [f"run.name={name}"])


def _cfg(tmp_path, name="r"):
    return load_config("recipes/default.yaml", [f"run.output_dir={tmp_path / 'runs'}", f"run.name={name}"])


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path):
    cfg = _cfg(tmp_path)
    cfg.run_dir.mkdir(parents=True)
    (cfg.run_dir / "thesis.tex").write_text("years of work")
    for plan in (lambda: plan_run_dir(cfg, overwrite=True), lambda: plan_sft_dir(cfg, overwrite=True)):
        with pytest.raises(RunDirError, match="does not look like a run directory"):
            plan()
    assert (cfg.run_dir / "thesis.tex").read_text() == "years of work"


def test_overwrite_refuses_a_link_out_of_the_output_folder(tmp_path):
    cfg = _cfg(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "config.yaml").write_text("run: {}\n")  # looks like a run, but lies outside runs/
    cfg.run_dir.parent.mkdir(parents=True)
    cfg.run_dir.symlink_to(elsewhere)
    with pytest.raises(RunDirError, match="not a folder directly inside"):
        plan_run_dir(cfg, overwrite=True)
    assert (elsewhere / "config.yaml").is_file()


def test_overwrite_deletes_a_run_directory(tmp_path):
    cfg = _cfg(tmp_path)
    (cfg.run_dir / "transcripts").mkdir(parents=True)
    (cfg.run_dir / "config.yaml").write_text("run: {}\n")
    apply_plan(plan_run_dir(cfg, overwrite=True))
    assert cfg.run_dir.is_dir() and not any(cfg.run_dir.iterdir())


def test_overwrite_refuses_a_run_whose_labels_came_from_people(tmp_path):
    from debate_amp.agents.labels import LabelStore
    from debate_amp.protocol import Posed
    from debate_amp.tasks.perm import PermQuestion

    cfg = _cfg(tmp_path)
    cfg.run_dir.mkdir(parents=True)
    store = LabelStore(cfg.run_dir / "labels.sqlite")
    store.put(Posed("answer", PermQuestion((1, 0, 2), 0, 1)), "1", "synthetic")
    store.close()
    plan_run_dir(cfg, overwrite=True)  # the simulated human's answers: a run may start afresh
    store = LabelStore(cfg.run_dir / "labels.sqlite")
    store.put(Posed("answer", PermQuestion((1, 0, 2), 1, 1)), "0", "ann")
    store.close()
    for plan in (lambda: plan_run_dir(cfg, overwrite=True), lambda: plan_sft_dir(cfg, overwrite=True)):
        with pytest.raises(RunDirError, match="labels.sqlite holds 1 answers from people; .* debate-amp labels"):
            plan()
    assert len(LabelStore(cfg.run_dir / "labels.sqlite")) == 2


def test_overwrite_refuses_a_run_holding_peoples_judgments_an_unreadable_store_or_its_own_named_store(tmp_path):
    """--overwrite also keeps what `debate-amp serve --judge RUN` stores beside the transcripts, a label store it
    cannot read (it may hold answers from people), and a recipe's own ``human.store`` inside the run."""
    from debate_amp.agents.labels import LabelStore
    from debate_amp.protocol import Posed
    from debate_amp.serve.judgments import DEFAULT_NAME, JudgmentStore
    from debate_amp.tasks.perm import PermQuestion

    cfg = _cfg(tmp_path)
    (cfg.run_dir / "transcripts").mkdir(parents=True)
    (cfg.run_dir / "config.yaml").write_text("run: {}\n")
    judgments = cfg.run_dir / "transcripts" / DEFAULT_NAME
    store, debate = JudgmentStore(judgments), (str(cfg.run_dir / "transcripts" / "update_000001.jsonl"), 1)
    assert store.claim("ann", [debate], now=0) == debate
    store.close()
    plan_run_dir(cfg, overwrite=True)  # shown to ann, nothing given yet: nothing of hers to lose
    store = JudgmentStore(judgments)
    assert store.give_initial(debate, "ann", "4", 70, now=1)
    store.close()
    with pytest.raises(RunDirError, match=f"{DEFAULT_NAME} holds 1 first answers of judges"):
        plan_run_dir(cfg, overwrite=True)
    store = JudgmentStore(judgments)
    assert store.judge(debate, "ann", "odd", 90, question_id="q1", update=1, now=2)
    store.close()
    with pytest.raises(RunDirError, match="holds 1 judgments from people; move the file out"):
        plan_sft_dir(cfg, overwrite=True)
    judgments.unlink()

    (cfg.run_dir / "labels.sqlite").write_bytes(b"not a database, or a damaged one" * 200)
    with pytest.raises(RunDirError, match="labels.sqlite holds data that cannot be read"):
        plan_run_dir(cfg, overwrite=True)
    (cfg.run_dir / "labels.sqlite").unlink()

    own = cfg.run_dir / "people.db"  # not *.sqlite: found because the recipe names it
    store = LabelStore(own)
    store.put(Posed("answer", PermQuestion((1, 0, 2), 1, 1)), "0", "ann")
    store.close()
    plan_run_dir(cfg, overwrite=True)  # another recipe's: not this run's store
    named = load_config(
        "recipes/default.yaml", [f"run.output_dir={tmp_path / 'runs'}", "run.name=r", f"human.store={own}"]
    )
    with pytest.raises(RunDirError, match="people.db holds 1 answers from people"):
        plan_run_dir(named, overwrite=True)
    apply_plan(plan_run_dir(cfg, overwrite=True))
    assert not own.exists()


def test_sft_refuses_a_directory_holding_a_warm_start_or_training_output(tmp_path):
    cfg = _cfg(tmp_path)
    plan_sft_dir(cfg)  # nothing there yet: fine
    (cfg.run_dir / "sft").mkdir(parents=True)
    (cfg.run_dir / "sft" / "config.json").write_text("{}")
    with pytest.raises(RunDirError, match="already holds a warm start"):
        plan_sft_dir(cfg)
    (cfg.run_dir / "metrics.jsonl").write_text("")
    with pytest.raises(RunDirError, match="already holds training output"):
        plan_sft_dir(cfg)
    assert plan_sft_dir(cfg, overwrite=True).overwrite


def _trained(tmp_path, update=4):
    """A run directory as a run of the default recipe leaves it after ``update`` updates (config and checkpoint)."""
    from debate_amp.config import save_config
    from debate_amp.trainer import checkpoint

    cfg = _cfg(tmp_path)
    save_config(cfg, cfg.run_dir / "config.yaml")
    ckpt = cfg.run_dir / "checkpoints" / f"update_{update:06d}"
    ckpt.mkdir(parents=True)
    (ckpt / "state.json").write_text(f'{{"format_version": {checkpoint.FORMAT_VERSION}, "update": {update}}}')
    return cfg


@pytest.mark.parametrize(
    ("override", "key"),
    [("model.num_layers=2", "model.num_layers"), ("trainer.updates=2", "trainer.updates"), ("run.seed=1", "run.seed")],
)
def test_resume_refuses_a_recipe_that_changes_what_was_trained(tmp_path, override, key):
    _trained(tmp_path)
    cfg = load_config("recipes/default.yaml", [f"run.output_dir={tmp_path / 'runs'}", "run.name=r", override])
    with pytest.raises(RunDirError, match=rf"--resume would change what .* trained \({key}: "):
        plan_run_dir(cfg, resume=True)


def test_resume_may_run_longer_and_change_threads_saving_and_evaluation(tmp_path):
    trained = _trained(tmp_path).trainer.updates
    overrides = ["trainer.updates=80", "run.torch_threads=1", "trainer.save_every=1", "trainer.eval_every=0"]
    cfg = load_config("recipes/default.yaml", [f"run.output_dir={tmp_path / 'runs'}", "run.name=r", *overrides])
    plan = plan_run_dir(cfg, resume=True)
    assert (
        plan.resume_update == 4
        and f"trainer.updates: {trained} -> 80" in plan.note
        and "run.torch_threads" in plan.note
    )


def test_a_run_directory_copied_elsewhere_resumes_there(tmp_path):
    import shutil

    cfg = _trained(tmp_path)
    copy = tmp_path / "elsewhere" / "longer"
    shutil.copytree(cfg.run_dir, copy)
    moved = load_config(
        "recipes/default.yaml", [f"run.output_dir={copy.parent}", "run.name=longer", "trainer.updates=80"]
    )
    plan = plan_run_dir(moved, resume=True)
    assert plan.run_dir == copy and plan.resume_update == 4
    assert (
        f"run.output_dir: '{tmp_path / 'runs'}' -> '{copy.parent}'" in plan.note
        and "run.name: 'r' -> 'longer'" in plan.note
    )


@pytest.mark.parametrize("damage", ["text", "truncated", "directory"])
def test_a_damaged_label_store_stops_the_run_before_anything_is_written(tmp_path, damage):
    import sqlite3

    cfg = _trained(tmp_path)
    labels = cfg.run_dir / "labels.sqlite"
    if damage == "text":
        labels.write_text("not a database\n" * 100)
    elif damage == "directory":
        labels.mkdir()
    else:
        db = sqlite3.connect(labels)
        db.execute("CREATE TABLE labels (key TEXT PRIMARY KEY, kind, prompt, answer, human, created)")
        db.executemany("INSERT INTO labels VALUES (?, 'answer', 'p', 'a', 'h', 0)", [(str(i),) for i in range(2000)])
        db.commit()
        db.close()
        data = labels.read_bytes()
        labels.write_bytes(data[: len(data) // 2] + b"\x00" * 4096 + data[len(data) // 2 + 4096 :])
    before = {p: p.read_bytes() for p in cfg.run_dir.rglob("*") if p.is_file()}
    for resume in (True, False):
        with pytest.raises(RunDirError, match="labels.sqlite: .*nothing was written"):
            plan_run_dir(cfg, resume=resume)
    assert {p: p.read_bytes() for p in cfg.run_dir.rglob("*") if p.is_file()} == before


def test_the_label_store_opens_what_it_wrote_and_refuses_what_it_cannot_use(tmp_path):
    from debate_amp.agents.labels import LabelStore, LabelStoreError, check_label_store
    from debate_amp.protocol import Posed
    from debate_amp.tasks.perm import PermQuestion

    store = LabelStore(tmp_path / "labels.sqlite")
    store.put(Posed("answer", PermQuestion((1, 0, 2), 0, 1)), "1", "synthetic")
    check_label_store(tmp_path / "labels.sqlite")  # a store in use passes
    assert len(LabelStore(tmp_path / "labels.sqlite")) == 1
    with pytest.raises(LabelStoreError, match="no such folder"):
        LabelStore(tmp_path / "missing" / "x.sqlite", create_parents=False)
    assert not (tmp_path / "missing").exists()
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(LabelStoreError, match="not a readable label store"):
        LabelStore(tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "hello"


def test_a_resume_sets_aside_the_transcripts_after_its_checkpoint_the_liars_too(tmp_path):
    from debate_amp.trainer.rundir import _set_aside

    run_dir = tmp_path / "r"
    for folder in (run_dir / "transcripts", run_dir / "transcripts" / "liar"):
        folder.mkdir(parents=True)
        for update in (1, 2, 3):
            (folder / f"update_{update:06d}.jsonl").write_text(f"{folder.name} {update}\n")
    (run_dir / "transcripts" / "superseded").mkdir()
    (run_dir / "transcripts" / "superseded" / "update_000003.jsonl").write_text("an earlier resume's\n")
    _set_aside(run_dir, after_update=1)
    for folder in (run_dir / "transcripts", run_dir / "transcripts" / "liar"):
        assert sorted(f.name for f in folder.glob("update_*.jsonl")) == ["update_000001.jsonl"]
    assert (run_dir / "transcripts" / "liar" / "superseded" / "update_000003.jsonl").read_text() == "liar 3\n"
    assert (run_dir / "transcripts" / "superseded" / "update_000003.1.jsonl").read_text() == "transcripts 3\n"
    assert (run_dir / "transcripts" / "superseded" / "update_000003.jsonl").read_text() == "an earlier resume's\n"
