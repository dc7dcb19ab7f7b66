"""Schedules (hand-computed values) and the target network: hard and Polyak sync, for modules and LoRA adapters."""

from __future__ import annotations

import math

import pytest
import torch

from debate_amp.config import LoraConfig
from debate_amp.models import apply_lora, build_tiny_model
from debate_amp.schedules import SCHEDULE_KINDS, Schedule, schedule_value
from debate_amp.target import (
    adapter_distance,
    add_target_adapter,
    ema_sync,
    ema_sync_adapters,
    hard_sync,
    hard_sync_adapters,
    parameter_distance,
    use_adapter,
)

# ---------------------------------------------------------------------------------------------------------------
# Schedules: start = 2, end = 10 unless stated, so end - start = 8.

PROGRESS = (0.0, 0.25, 0.5, 1.0)

EXPECTED = {
    # v = start
    "constant": (2.0, 2.0, 2.0, 2.0),
    # v = 2 + 8 p: 2 + 0 = 2, 2 + 2 = 4, 2 + 4 = 6, 2 + 8 = 10
    "linear": (2.0, 4.0, 6.0, 10.0),
    # v = 10 + (2 - 10)(1 + cos(pi p)) / 2 = 10 - 4 (1 + cos(pi p)):
    # p=0: 10 - 4*2 = 2; p=0.25: 10 - 4 (1 + sqrt(2)/2) = 6 - 2 sqrt(2) = 3.171573; p=0.5: 10 - 4 = 6; p=1: 10 - 0 = 10
    "cosine": (2.0, 6.0 - 2.0 * math.sqrt(2.0), 6.0, 10.0),
    # one milestone at 0.5 (n = 1): v = 2 + 8 * [0.5 <= p]; the milestone itself counts as passed
    "step": (2.0, 2.0, 10.0, 10.0),
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_schedule_values_by_hand(kind):
    for p, expected in zip(PROGRESS, EXPECTED[kind], strict=True):
        assert schedule_value(kind, 2.0, 10.0, p) == pytest.approx(expected, rel=1e-12), (kind, p)


def test_exponential_schedule_by_hand():
    # start = 8, end = 0.5, so end / start = 1/16 and v = 8 (1/16)^p:
    # p=0: 8; p=0.25: 8 * 1/2 = 4; p=0.5: 8 * 1/4 = 2; p=1: 8 * 1/16 = 0.5
    for p, expected in zip(PROGRESS, (8.0, 4.0, 2.0, 0.5), strict=True):
        assert schedule_value("exponential", 8.0, 0.5, p) == pytest.approx(expected, rel=1e-12), p


def test_step_schedule_with_several_milestones_moves_in_equal_jumps():
    # milestones 0.25 < 0.5 < 0.75 (n = 3): v = 2 + 8 k / 3 with k the milestones <= p
    # p=0: k=0 -> 2; p=0.25: k=1 -> 2 + 8/3 = 4.6667; p=0.5: k=2 -> 2 + 16/3 = 7.3333; p=1: k=3 -> 10
    expected = (2.0, 2.0 + 8.0 / 3.0, 2.0 + 16.0 / 3.0, 10.0)
    for p, value in zip(PROGRESS, expected, strict=True):
        assert schedule_value("step", 2.0, 10.0, p, step_milestones=(0.25, 0.5, 0.75)) == pytest.approx(value), p
    # just before a milestone the value has not moved yet: p=0.74 -> k=2
    assert schedule_value("step", 2.0, 10.0, 0.74, step_milestones=(0.25, 0.5, 0.75)) == pytest.approx(2 + 16 / 3)


@pytest.mark.parametrize("kind", SCHEDULE_KINDS)
def test_progress_is_clamped_into_unit_interval(kind):
    start, end = 8.0, 0.5
    assert schedule_value(kind, start, end, -3.0) == schedule_value(kind, start, end, 0.0)
    assert schedule_value(kind, start, end, 7.0) == schedule_value(kind, start, end, 1.0)
    if kind != "constant":
        assert schedule_value(kind, start, end, 7.0) != schedule_value(kind, start, end, 0.0)


def test_schedule_errors_name_the_fix():
    with pytest.raises(ValueError, match="constant, linear, cosine, step, exponential"):
        schedule_value("cosin", 1.0, 0.0, 0.5)
    with pytest.raises(ValueError, match=r"start > 0 and end > 0.*linear"):
        schedule_value("exponential", 1.0, 0.0, 0.5)
    with pytest.raises(ValueError, match="start > 0"):
        schedule_value("exponential", -1.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="strictly increasing"):
        schedule_value("step", 1.0, 0.0, 0.5, step_milestones=(0.5, 0.25))
    with pytest.raises(ValueError, match="at least one milestone"):
        schedule_value("step", 1.0, 0.0, 0.5, step_milestones=())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        schedule_value("step", 1.0, 0.0, 0.5, step_milestones=(0.5, 2.0))
    with pytest.raises(ValueError, match="NaN"):
        schedule_value("linear", 1.0, 0.0, float("nan"))


def test_schedule_dataclass_delegates_and_validates_on_construction():
    sched = Schedule("cosine", 2.0, 10.0)
    assert sched(0.5) == pytest.approx(6.0)
    assert sched(0.25) == schedule_value("cosine", 2.0, 10.0, 0.25)
    steps = Schedule("step", 2.0, 10.0, step_milestones=[0.25, 0.5, 0.75])  # type: ignore[arg-type]
    assert steps.step_milestones == (0.25, 0.5, 0.75)
    assert steps(0.5) == pytest.approx(2 + 16 / 3)
    hash(steps)  # frozen and hashable, even when built from a list
    with pytest.raises(ValueError, match="valid kinds"):
        Schedule("warmup", 1.0, 0.0)
    with pytest.raises(ValueError, match="end > 0"):
        Schedule("exponential", 1.0, 0.0)
    with pytest.raises(AttributeError):
        sched.start = 3.0  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------------------------
# Target network: two separate modules


@pytest.fixture()
def policy_and_target(tiny_model_cfg):
    policy, _ = build_tiny_model(tiny_model_cfg, seed=1)
    target, _ = build_tiny_model(tiny_model_cfg, seed=2)
    with torch.no_grad():
        for p in policy.parameters():  # the policy moved away from its initialisation
            p.add_(0.5)
    return policy, target


def test_hard_sync_makes_the_target_equal_to_the_policy(policy_and_target):
    policy, target = policy_and_target
    assert parameter_distance(policy, target) > 0.1
    hard_sync(policy, target)
    assert parameter_distance(policy, target) == 0.0
    for (name, a), (_, b) in zip(policy.state_dict().items(), target.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    # a copy, not an alias: moving the policy again leaves the target behind
    with torch.no_grad():
        next(policy.parameters()).add_(1.0)
    assert parameter_distance(policy, target) == pytest.approx(1.0)


def test_ema_sync_moves_every_parameter_by_tau_of_the_difference(policy_and_target):
    policy, target = policy_and_target
    tau = 0.25
    old = {name: p.detach().clone() for name, p in target.named_parameters()}
    ema_sync(policy, target, tau)
    pol = dict(policy.named_parameters())
    for name, new in target.named_parameters():
        step = new.detach() - old[name]
        torch.testing.assert_close(step, tau * (pol[name].detach() - old[name]))
        assert step.abs().max() > 0, name  # every parameter actually moved


def test_ema_sync_endpoints_and_errors(policy_and_target, tiny_model_cfg):
    policy, target = policy_and_target
    before = parameter_distance(policy, target)
    ema_sync(policy, target, 0.0)
    assert parameter_distance(policy, target) == before
    ema_sync(policy, target, 1.0)
    assert parameter_distance(policy, target) == 0.0
    for tau in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="tau"):
            ema_sync(policy, target, tau)
    other, _ = build_tiny_model(type(tiny_model_cfg)(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=32))
    with pytest.raises(ValueError, match="do not match"):
        hard_sync(policy, other)


def test_parameter_distance_is_the_largest_absolute_difference(tiny_model_cfg):
    a, _ = build_tiny_model(tiny_model_cfg, seed=3)
    b, _ = build_tiny_model(tiny_model_cfg, seed=3)
    assert parameter_distance(a, b) == 0.0
    with torch.no_grad():
        next(b.parameters()).view(-1)[5] -= 0.375  # |-0.375| is the only difference
        list(b.parameters())[-1].view(-1)[0] += 0.125
    assert parameter_distance(a, b) == pytest.approx(0.375)


# ---------------------------------------------------------------------------------------------------------------
# Target network: two LoRA adapters on one peft model

IDS = torch.tensor([[5, 17, 42, 99, 3, 200, 61, 7]])


def _lora_params(model, adapter):
    return {n: p for n, p in model.named_parameters() if f".{adapter}." in n and "lora_" in n}


def _base_params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}


def _perturb(params, seed, scale=0.2):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params.values():
            p.add_(scale * torch.randn(p.shape, generator=gen))


def _logits(model, adapter=None):
    with torch.no_grad():
        if adapter is None:
            return model(IDS).logits
        with use_adapter(model, adapter):
            return model(IDS).logits


@pytest.fixture()
def peft_model(tiny_model):
    model = apply_lora(tiny_model[0], LoraConfig(enabled=True, r=4))
    model.eval()
    _perturb(_lora_params(model, "default"), seed=0)  # B starts at 0; make the policy adapter do something
    return model


def test_add_target_adapter_copies_and_freezes(peft_model):
    base_before = _base_params(peft_model)
    add_target_adapter(peft_model)
    assert peft_model.active_adapters == ["default"]
    default, target = _lora_params(peft_model, "default"), _lora_params(peft_model, "target")
    assert len(target) == len(default) == 2 * 2 * 4  # A and B, 2 layers, 4 projections
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable == set(default)
    assert not any(p.requires_grad for p in target.values())
    # a copy of the (perturbed) policy adapter, not a fresh LoRA init with B = 0
    assert adapter_distance(peft_model) == 0.0
    target_logits = _logits(peft_model, "target")
    torch.testing.assert_close(target_logits, _logits(peft_model))
    with torch.no_grad(), peft_model.disable_adapter():  # and the target adapter is really applied
        assert (peft_model(IDS).logits - target_logits).abs().max() > 1e-3
    # the new adapter's modules follow the model's eval mode (peft creates them in training mode)
    assert not any(module.training for module in peft_model.modules())
    assert all(torch.equal(p, _base_params(peft_model)[n]) for n, p in base_before.items())
    with pytest.raises(ValueError, match="already exists"):
        add_target_adapter(peft_model)


def test_hard_sync_adapters_makes_the_outputs_equal(peft_model):
    add_target_adapter(peft_model)
    base_before = _base_params(peft_model)
    _perturb(_lora_params(peft_model, "default"), seed=1)  # a policy update
    assert (_logits(peft_model, "target") - _logits(peft_model)).abs().max() > 1e-3
    hard_sync_adapters(peft_model)
    torch.testing.assert_close(_logits(peft_model, "target"), _logits(peft_model))
    assert adapter_distance(peft_model) == 0.0
    after = _base_params(peft_model)
    assert all(torch.equal(p, after[n]) for n, p in base_before.items())
    assert not any(p.requires_grad for p in _lora_params(peft_model, "target").values())


def test_ema_sync_adapters_moves_by_tau(peft_model):
    add_target_adapter(peft_model)
    base_before = _base_params(peft_model)
    _perturb(_lora_params(peft_model, "default"), seed=2)
    tau = 0.3
    old = {n: p.detach().clone() for n, p in _lora_params(peft_model, "target").items()}
    ema_sync_adapters(peft_model, tau)
    default = _lora_params(peft_model, "default")
    for name, new in _lora_params(peft_model, "target").items():
        policy = default[name.replace(".target.", ".default.")]
        step = new.detach() - old[name]
        torch.testing.assert_close(step, tau * (policy.detach() - old[name]))
        assert step.abs().max() > 0, name
    after = _base_params(peft_model)
    assert all(torch.equal(p, after[n]) for n, p in base_before.items())
    assert peft_model.active_adapters == ["default"]
    with pytest.raises(ValueError, match="tau"):
        ema_sync_adapters(peft_model, 1.5)
    with pytest.raises(ValueError, match="no adapter 'nope'"):
        hard_sync_adapters(peft_model, target="nope")


def test_use_adapter_restores_the_active_adapter_and_keeps_the_target_frozen(peft_model):
    add_target_adapter(peft_model)
    flags = {n: p.requires_grad for n, p in peft_model.named_parameters()}
    with use_adapter(peft_model, "target"):
        assert peft_model.active_adapters == ["target"]
        assert {n: p.requires_grad for n, p in peft_model.named_parameters()} == flags
        # everything the target's forward touches is frozen, so no graph is built even without no_grad
        assert not peft_model(IDS).logits.requires_grad
    assert peft_model.active_adapters == ["default"]
    assert {n: p.requires_grad for n, p in peft_model.named_parameters()} == flags
    with pytest.raises(RuntimeError, match="boom"), use_adapter(peft_model, "target"):
        raise RuntimeError("boom")
    assert peft_model.active_adapters == ["default"]
    assert {n: p.requires_grad for n, p in peft_model.named_parameters()} == flags
    # a policy step afterwards gives gradients to the policy adapter only
    peft_model(IDS).logits.sum().backward()
    assert all(p.grad is not None for p in _lora_params(peft_model, "default").values())
    assert all(p.grad is None for p in _lora_params(peft_model, "target").values())
    with pytest.raises(ValueError, match="no adapter"), use_adapter(peft_model, "nope"):
        pass
