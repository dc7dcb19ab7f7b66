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
