"""The human-efficiency bench (issue 14): human calls to a target accuracy, per sampler."""

from debate_amp.bench import calls_to_target


def test_calls_to_target_is_the_first_point_at_or_above_the_target():
    curve = [(100, 0.2), (250, 0.6), (400, 0.95), (900, 0.99)]
    assert calls_to_target(curve, 0.95) == 400
    assert calls_to_target(curve, 0.5) == 250
    assert calls_to_target(curve, 0.1) == 100
    assert calls_to_target(curve, 0.995) is None
    assert calls_to_target([], 0.5) is None
