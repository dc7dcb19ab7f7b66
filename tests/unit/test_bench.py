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
