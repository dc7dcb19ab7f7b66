import subprocess
import sys
import typing
from importlib.util import find_spec
from pathlib import Path

import pytest
import yaml

from debate_amp.config import (
    TRACKER_MODULES,
    Config,
    ConfigError,
    Tracker,
    describe_fields,
    load_config,
    pretrain_config,
    save_config,
)

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").rglob("*.yaml"))
TRAINING_RECIPES = [p for p in RECIPES if "accelerate" not in p.parts]


def test_there_are_recipes():
    assert (ROOT / "recipes" / "default.yaml") in RECIPES


ACCELERATE_CONFIGS = [p for p in RECIPES if "accelerate" in p.parts]


@pytest.mark.parametrize("recipe", TRAINING_RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads_and_opens_with_its_command(recipe):
    raw = yaml.safe_load(recipe.read_text())
    if (path := raw.get("model", {}).get("path")) and not (ROOT / path).is_dir():
        # a GPU recipe (its model directory is not on this machine), or one starting from another run's A[0]
        cfg = load_config(recipe, check_paths=False)
        with pytest.raises(ConfigError, match=r"^model.path: no such directory"):
            load_config(recipe)
    elif (human := raw.get("human", {}).get("model_path")) and not (ROOT / human).is_dir():
        cfg = load_config(recipe, check_paths=False)  # H is a model made by another run (e.g. make run's A[0])
        with pytest.raises(ConfigError, match=r"^human.model_path: no such directory"):
            load_config(recipe)
    else:
        cfg = load_config(recipe)
    assert isinstance(cfg, Config)
    first = recipe.read_text().splitlines()[0]
    assert first.startswith("# debate-amp ") or first.startswith("# accelerate launch"), first


def test_the_gpu_recipe_trains_lora_adapters_on_a_local_model():
    cfg = load_config(ROOT / "recipes" / "hf_lora.yaml", check_paths=False)
    assert cfg.model.lora.enabled and cfg.model.path and cfg.model.dtype == "bfloat16"


def test_every_accelerate_topology_is_there_and_valid():
    from accelerate.commands.config.config_args import ClusterConfig

    names = {p.name for p in ACCELERATE_CONFIGS}
    assert names == {"cpu_2proc.yaml", "single_gpu.yaml", "multi_gpu.yaml", "deepspeed_zero2.yaml", "fsdp.yaml"}
    for path in ACCELERATE_CONFIGS:
        config = ClusterConfig.from_yaml_file(path)
        assert config.num_processes >= 1, path.name
        assert path.read_text().splitlines()[0].startswith("# "), f"{path.name}: no header comment"
    cpu = ClusterConfig.from_yaml_file(ROOT / "recipes" / "accelerate" / "cpu_2proc.yaml")
    assert (cpu.distributed_type.value, cpu.num_processes, cpu.use_cpu) == ("MULTI_GPU", 2, False)


def test_overrides_apply_and_coerce():
    cfg = load_config(None, ["objective.alpha=0.25", "debate.max_turns=3", "model.path=null", "run.name=x"])
    assert cfg.objective.alpha == 0.25 and cfg.debate.max_turns == 3 and cfg.model.path is None
    assert cfg.run.name == "x"


def test_the_trainers_adamw_takes_the_recipes_learning_rate_and_beta2_and_only_trainable_weights():
    from torch import nn

    from debate_amp.trainer.loop import build_optimizer

    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    model[0].requires_grad_(False)
    cfg = load_config(None, ["trainer.learning_rate=0.002", "trainer.adam_beta2=0.95"])
    (group,) = build_optimizer(model, cfg.trainer).param_groups
    assert group["lr"] == 0.002 and group["betas"] == (0.9, 0.95)
    assert [tuple(p.shape) for p in group["params"]] == [(1, 3), (1,)]
    assert load_config(None).trainer.adam_beta2 == 0.999  # PyTorch's default: every recipe's trajectory as before


@pytest.mark.parametrize(
    "override, needles",
    [
        ("trainer.alpah=0.3", ["unknown key 'trainer.alpah'", "objective.alpha"]),
        ("objective.alph=0.3", ["did you mean 'objective.alpha'"]),
        ("debate.max_turns=abc", ["debate.max_turns", "'abc'", "integer"]),
        ("objective.alpha=1.5", ["objective.alpha", "1.5", "<= 1"]),
        ("objective.mode=cpo", ["objective.mode", "'weighted', 'constrained' or 'reward'"]),
        ("model.path=/no/such/dir", ["model.path", "/no/such/dir"]),
        ("model.num_heads=3", ["num_heads (3) must divide hidden_size (64)"]),
        ("run=3", ["run", "section"]),
        ("sft.epochs", ["section.key=value"]),
        ("nosuchsection.x=1", ["unknown key 'nosuchsection'", "valid keys"]),
        ("trainer.updates=true", ["trainer.updates=True", "expected a number, not true/false"]),
        ("objective.alpha=false", ["objective.alpha=False", "expected a number"]),
        ("trainer.max_minutes=true", ["trainer.max_minutes=True", "expected a number"]),
        ("run.log_with=[tensorbord]", ["run.log_with.0='tensorbord'", "allowed values are 'tensorboard', 'wandb'"]),
        ("run.log_with=tensorboard", ["run.log_with='tensorboard'", "expected a list, e.g. [tensorboard]"]),
        ("run.log_with=[tensorboard, tensorboard]", ["log_with names tensorboard twice"]),
        ("trainer.adam_beta2=1.0", ["trainer.adam_beta2=1.0", "must be < 1.0"]),
        ("trainer.learning_rate=.inf", ["trainer.learning_rate=inf", "finite number"]),
        ("objective.kl.coef=.inf", ["objective.kl.coef=inf", "finite number"]),
        ("sampler.threshold=.nan", ["sampler.threshold=nan", "finite number"]),
        ("objective.limit=.nan", ["objective.limit=nan", "must be > 0"]),
    ],
)
def test_bad_values_fail_with_one_line_naming_the_key(override, needles):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message


def test_a_fresh_student_needs_the_tiny_model():
    # ida.student / trainer.student: fresh builds a new tiny model; a model directory or its LoRA cannot be it
    for section in ("ida", "trainer"):
        with pytest.raises(ConfigError, match=rf"^{section}.student=fresh: .*; unset model.lora.enabled \("):
            load_config(None, [f"{section}.student=fresh", "model.lora.enabled=true"])
    assert load_config(None, ["trainer.student=fresh"]).trainer.student == "fresh"


def test_the_pretraining_stage_is_its_recipe_on_this_runs_model_task_seed_and_directory(tmp_path):
    overrides = [f"run.output_dir={tmp_path}", "run.name=r", "run.seed=3", "model.hidden_size=32", "pretrain.updates=7"]
    cfg = load_config(ROOT / "recipes" / "default.yaml", overrides)
    assert cfg.pretrain.recipe == "recipes/amplification_fresh_student.yaml" and cfg.pretrain.updates == 7
    assert load_config(ROOT / "recipes" / "default.yaml", ["pretrain.recipe=null"]).pretrain.recipe is None
    stage = pretrain_config(cfg)
    assert stage.run_dir == tmp_path / "r" / "pretrain" and stage.run.seed == 3
    assert stage.model == cfg.model and stage.task == cfg.task and stage.model.hidden_size == 32
    # the rest is the recipe's own (pretrain.updates: its trainer.updates)
    own = load_config(ROOT / "recipes" / "amplification_fresh_student.yaml")
    assert stage.trainer.updates == 7 and stage.trainer.student == own.trainer.student == "fresh"
    assert stage.sampler == own.sampler and stage.amp == own.amp and stage.sft == own.sft
    assert stage.pretrain.recipe is None


def test_a_bad_pretraining_recipe_fails_in_one_line_naming_the_key(tmp_path):
    nested = tmp_path / "nested.yaml"
    nested.write_text("pretrain:\n  recipe: recipes/default.yaml\n")
    bad_key = tmp_path / "bad_key.yaml"
    bad_key.write_text("trainer:\n  updatez: 3\n")
    cases = [
        (tmp_path / "missing.yaml", "recipe not found"),
        (tmp_path, "a directory, not a recipe file"),
        (nested, "one stage of pretraining only"),
        (bad_key, "trainer.updatez"),
    ]
    for recipe, needle in cases:
        with pytest.raises(ConfigError) as info:
            load_config(None, [f"pretrain.recipe={recipe}"])
        message = str(info.value)
        assert message.startswith(f"pretrain.recipe: {recipe}: ") and needle in message and "\n" not in message


def test_a_pretraining_recipe_whose_sections_are_not_sections_fails_in_one_line(tmp_path):
    for section in ("pretrain", "run", "trainer"):
        recipe = tmp_path / f"{section}.yaml"
        recipe.write_text(f"{section}: 5\n")
        with pytest.raises(ConfigError, match=rf"^pretrain.recipe: {recipe}: {section}: expected a section .* got 5$"):
            load_config(None, [f"pretrain.recipe={recipe}"])


def test_a_replay_file_that_is_not_labels_and_an_output_folder_that_is_a_file_are_refused_by_name(tmp_path):
    def refused(*overrides):
        with pytest.raises(ConfigError) as info:
            load_config(None, ["human.kind=replay", *overrides])
        assert "\n" not in str(info.value)
        return str(info.value)

    lines = tmp_path / "labels.jsonl"
    lines.write_text('{"kind": "answer", "prompt": "s=102 x=0 k=1 A=", "answer": "1"}\n{"kind": "answer"}\n')
    assert refused(f"human.replay_from={lines}").startswith(f"human.replay_from: {lines}:2: not a label line")
    binary = tmp_path / "labels2.jsonl"
    binary.write_bytes(b"\xff\xfe\x00" * 10)
    assert refused(f"human.replay_from={binary}") == f"human.replay_from: {binary}: not a text file of label lines"
    store = tmp_path / "labels.sqlite"
    store.write_bytes(b"not a database" * 100)
    assert refused(f"human.replay_from={store}").startswith(f"human.replay_from: {store}")
    lines.write_text('{"kind": "answer", "prompt": "s=102 x=0 k=1 A=", "answer": "1"}\n')
    assert load_config(None, ["human.kind=replay", f"human.replay_from={lines}"]).human.replay_from == str(lines)
    afile = tmp_path / "afile"
    afile.write_text("")
    for output_dir in (afile, afile / "below"):
        with pytest.raises(ConfigError, match=rf"^run.output_dir: {afile} is a file, not a folder$"):
            load_config(None, [f"run.output_dir={output_dir}"])
    assert load_config(None, [f"run.output_dir={tmp_path / 'new' / 'runs'}"]).run.output_dir  # made when needed


def test_missing_recipe_and_bad_yaml_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="recipe not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("run:\n  name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(listy)


def test_a_directory_a_binary_file_and_a_key_given_twice_are_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match="a directory, not a recipe file"):
        load_config(tmp_path)
    binary = tmp_path / "model.safetensors"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00" * 10)
    with pytest.raises(ConfigError, match=r"model.safetensors: not a text file \(byte \d+ is not UTF-8\)"):
        load_config(binary)
    twice = tmp_path / "twice.yaml"
    twice.write_text("trainer:\n  updates: 3\n  learning_rate: 1.0e-4\n  updates: 4\n")
    with pytest.raises(ConfigError, match=r"twice.yaml:4: key 'updates' appears twice in one section"):
        load_config(twice)
    assert load_config(None, ["model.shared_layers=false"]).model.shared_layers is False  # a real boolean still is


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(ROOT / "recipes" / "default.yaml", ["objective.alpha=0.125"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["objective"]["alpha"] == 0.125


def test_every_field_is_documented():
    rows = describe_fields()
    assert len(rows) > 20
    undocumented = [key for key, _, doc in rows if not doc]
    assert undocumented == []


@pytest.mark.parametrize(
    "override, needle",
    [
        ("trainer.alpah=0.3", "trainer.alpah"),
        ("debate.max_turns=abc", "debate.max_turns"),
        ("objective.alpha=1.5", "objective.alpha"),
        ("model.path=/no/such/dir", "/no/such/dir"),
        ("pretrain.recipe=no/such.yaml", "pretrain.recipe: no/such.yaml: recipe not found"),
    ],
)
def test_cli_rejects_bad_recipe_with_exit_2_one_line_and_no_heavy_imports(override, needle):
    # The CLI checks the recipe before importing torch: that is what makes it fail within a second.
    code = (
        "import sys\n"
        "from debate_amp.cli import main\n"
        "try:\n"
        f"    main(['sft', 'recipes/default.yaml', {override!r}])\n"
        "except SystemExit as e:\n"
        "    print('torch' in sys.modules, file=sys.stdout)\n"
        "    raise\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout.strip() == "False"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("debate-amp: error:")
    assert "Traceback" not in proc.stderr


def test_the_trackers_are_accelerates():
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    assert set(typing.get_args(Tracker)) == set(TRACKER_MODULES) == set(LOGGER_TYPE_TO_CLASS)
    assert load_config(None).run.log_with == ["tensorboard"]
    assert load_config(None, ["run.log_with=[]"]).run.log_with == []


NOT_INSTALLED = [t for t, modules in TRACKER_MODULES.items() if not any(find_spec(m) for m in modules)]


@pytest.mark.parametrize("known", [True, False], ids=["not-installed", "unknown"])
def test_cli_train_rejects_a_tracker_it_cannot_use_in_one_line(known, tmp_path):
    if known and not NOT_INSTALLED:
        pytest.skip("every tracker accelerate knows is installed here")
    tracker = NOT_INSTALLED[0] if known else "tensorbored"
    proc = subprocess.run(
        [sys.executable, "-m", "debate_amp.cli", "train", "recipes/default.yaml", f"run.log_with=[{tracker}]"]
        + [f"run.output_dir={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    needle = f"{tracker} is not installed here (pip install" if known else "allowed values are 'tensorboard'"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("debate-amp: error: run.log_with") and needle in lines[0], lines
    assert not any(tmp_path.iterdir())


def test_cli_missing_recipe_file():
    proc = subprocess.run(
        [sys.executable, "-m", "debate_amp.cli", "sft", "recipes/nope.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "debate-amp: error: recipe not found: recipes/nope.yaml"


def test_an_empty_recipe_says_the_built_in_defaults_are_used(tmp_path, capsys):
    from debate_amp import cli

    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n")
    assert cli.main(["config", str(empty)]) == 0
    assert "empty.yaml changes nothing: the built-in defaults are used" in capsys.readouterr().err
    assert cli.main(["config", str(ROOT / "recipes" / "default.yaml")]) == 0
    assert "changes nothing" not in capsys.readouterr().err


def test_a_renamed_key_still_loads_under_its_old_name_and_both_names_at_once_are_refused(tmp_path):
    # trainer.replay_examples is now trainer.rehearsal_examples ("replay" is the recorded-labels human): recipes
    # and saved runs' config.yaml files with the old name load (and resume) as the new key.
    old = tmp_path / "old.yaml"
    old.write_text("trainer:\n  replay_examples: 17\n")
    assert load_config(old).trainer.rehearsal_examples == 17
    assert load_config(None, ["trainer.replay_examples=5"]).trainer.rehearsal_examples == 5
    with pytest.raises(ConfigError, match="trainer.replay_examples is the old name of trainer.rehearsal_examples"):
        load_config(old, ["trainer.rehearsal_examples=3"])
