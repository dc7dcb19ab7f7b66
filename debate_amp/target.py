"""The target network M_target: a slowly moving copy of the policy, kept in step by hard or Polyak (EMA) updates.

Two layouts are supported:

- Two separate modules (full fine-tuning): :func:`hard_sync` and :func:`ema_sync` update ``target`` from
  ``policy`` parameter by parameter, matched by name.
- One peft model holding two LoRA adapters on a shared, frozen base model: the policy adapter (``"default"``,
  active and trainable) and the target adapter (``"target"``, frozen). This costs one adapter's memory instead
  of a second model. :func:`add_target_adapter` creates the target adapter, :func:`hard_sync_adapters` and
  :func:`ema_sync_adapters` update it, and the target runs inside :func:`use_adapter`::

      add_target_adapter(peft_model)                  # target := policy, frozen; "default" stays active
      ...                                             # optimise the policy ("default")
      ema_sync_adapters(peft_model, tau=0.01)         # target <- (1 - tau) target + tau policy
      with torch.no_grad(), use_adapter(peft_model, "target"):
          target_logits = peft_model(input_ids).logits

Every update runs under ``torch.no_grad`` and writes in place, so an optimizer holding the parameters keeps working.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from peft import PeftModel

# ---------------------------------------------------------------------------------------------------------------
# Two separate modules


@torch.no_grad()
def hard_sync(policy: nn.Module, target: nn.Module) -> None:
    """θ_target := θ_policy for every parameter and buffer, in place (dtype and device of ``target`` are kept).

    ``requires_grad`` flags of ``target`` are left as they are. Raises ValueError if the names or shapes differ.
    """
    for dst, src in _paired(target.named_parameters(), policy.named_parameters(), "parameters"):
        dst.copy_(src)
    for dst, src in _paired(target.named_buffers(), policy.named_buffers(), "buffers"):
        dst.copy_(src)


@torch.no_grad()
def ema_sync(policy: nn.Module, target: nn.Module, tau: float) -> None:
    """Polyak averaging in place: θ_target ← (1 − τ) θ_target + τ θ_policy, for every parameter; buffers are copied.

    τ = 1 is :func:`hard_sync`, τ = 0 leaves the parameters alone. Buffers (e.g. rotary frequencies, running
    statistics) are copied rather than averaged: they are not learned, so an average of two of them means nothing.
    """
    _check_tau(tau)
    for dst, src in _paired(target.named_parameters(), policy.named_parameters(), "parameters"):
        _polyak_(dst, src, tau)
    for dst, src in _paired(target.named_buffers(), policy.named_buffers(), "buffers"):
        dst.copy_(src)


@torch.no_grad()
def parameter_distance(a: nn.Module, b: nn.Module) -> float:
    """max_i |θ_a,i − θ_b,i| over parameters matched by name (0.0 for modules without parameters).

    Raises ValueError if the names or shapes differ.
    """
    pairs = _paired(a.named_parameters(), b.named_parameters(), "parameters")
    return _max_abs_difference(pairs)


# ---------------------------------------------------------------------------------------------------------------
# Two LoRA adapters on one peft model


def add_target_adapter(peft_model: PeftModel, name: str = "target", *, source: str = "default") -> None:
    """Add a LoRA adapter ``name`` with ``source``'s config, set to a copy of ``source`` and frozen.

    Afterwards the active adapter is what it was before (normally ``source``), every parameter keeps its
    ``requires_grad`` flag, and the new adapter's parameters have ``requires_grad=False``. The new adapter's
    modules take the model's train/eval mode (peft creates them in training mode whatever the model's mode).
    """
    configs = peft_model.peft_config
    if source not in configs:
        raise ValueError(f"no adapter {source!r} to copy; adapters: {', '.join(configs)}")
    if name in configs:
        raise ValueError(f"adapter {name!r} already exists; use hard_sync_adapters to reset it")
    # A copy, so the two adapters do not share one config object that peft may edit for either of them.
    config = copy.deepcopy(configs[source])
    if getattr(config, "modules_to_save", None) or getattr(config, "trainable_token_indices", None):
        # Those are full-module copies outside the LoRA layers, which the adapter sync below does not cover.
        raise NotImplementedError("a target adapter supports plain LoRA only; drop modules_to_save and token training")
    active = _single_active_adapter(peft_model)
    flags = _requires_grad_flags(peft_model.parameters())
    modules_before = {module_name for module_name, _ in peft_model.named_modules()}

    peft_model.add_adapter(name, config)

    # peft 0.21 keeps the active adapter and the existing flags through add_adapter (and leaves the new adapter
    # frozen); enforce all three anyway, since injection calls set_adapter, which re-marks trainability.
    if _single_active_adapter(peft_model) != active:
        peft_model.set_adapter(active)
    _restore_requires_grad(flags)
    for _, dst in _adapter_pairs(peft_model, source, name):
        dst.requires_grad_(False)
    for module_name, module in peft_model.named_modules():
        if module_name not in modules_before:
            module.train(peft_model.training)
    hard_sync_adapters(peft_model, source=source, target=name)


@torch.no_grad()
def hard_sync_adapters(peft_model: PeftModel, source: str = "default", target: str = "target") -> None:
    """θ_target := θ_source for the LoRA weights of the two adapters (the shared base weights are not touched)."""
    for src, dst in _adapter_pairs(peft_model, source, target):
        dst.copy_(src)


@torch.no_grad()
def ema_sync_adapters(peft_model: PeftModel, tau: float, source: str = "default", target: str = "target") -> None:
    """θ_target ← (1 − τ) θ_target + τ θ_source for the LoRA weights of the two adapters, in place.

    Averaging the factors A and B separately is Polyak averaging of the adapter's parameters, as for any network;
    the effective update ΔW = B A of the target is then not the average of the two ΔW (it is bilinear in A, B).
    """
    _check_tau(tau)
    for src, dst in _adapter_pairs(peft_model, source, target):
        _polyak_(dst, src, tau)


@torch.no_grad()
def adapter_distance(peft_model: PeftModel, source: str = "default", target: str = "target") -> float:
    """max_i |θ_source,i − θ_target,i| over the LoRA weights of two adapters (how far the target lags the policy)."""
    return _max_abs_difference(_adapter_pairs(peft_model, source, target))


@contextmanager
def use_adapter(peft_model: PeftModel, name: str) -> Iterator[None]:
    """Run ``peft_model`` with adapter ``name`` active inside the block; restore the previous adapter on exit.

    peft's ``set_adapter`` marks the adapter it activates trainable and freezes the others, so every parameter's
    ``requires_grad`` flag is put back right after switching (the target stays frozen inside the block, the policy
    stays trainable) and again on exit. Train/eval mode is not changed: wrap in ``torch.no_grad()`` and call
    ``eval()`` as needed.
    """
    if name not in peft_model.peft_config:
        raise ValueError(f"no adapter {name!r}; adapters: {', '.join(peft_model.peft_config)}")
    previous = _single_active_adapter(peft_model)
    flags = _requires_grad_flags(peft_model.parameters())
    peft_model.set_adapter(name)
    _restore_requires_grad(flags)
    try:
        yield
    finally:
        peft_model.set_adapter(previous)
        _restore_requires_grad(flags)


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def _check_tau(tau: float) -> None:
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must lie in [0, 1] (1 copies the policy, 0 freezes the target); got {tau}")


def _polyak_(dst: torch.Tensor, src: torch.Tensor, tau: float) -> None:
    """dst ← dst + τ (src − dst), in place; integer tensors (which cannot be averaged) are copied."""
    if dst.is_floating_point() or dst.is_complex():
        dst.lerp_(src.to(dtype=dst.dtype, device=dst.device), tau)
    else:
        dst.copy_(src)


def _paired(
    dst_named: Iterable[tuple[str, torch.Tensor]], src_named: Iterable[tuple[str, torch.Tensor]], what: str
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(dst, src) tensors matched by name; ValueError naming the first difference if names or shapes differ."""
    dst, src = dict(dst_named), dict(src_named)
    if dst.keys() != src.keys():
        only_dst, only_src = sorted(dst.keys() - src.keys()), sorted(src.keys() - dst.keys())
        raise ValueError(f"{what} do not match: only in target {only_dst[:3]}, only in source {only_src[:3]}")
    for key, tensor in dst.items():
        if tensor.shape != src[key].shape:
            raise ValueError(f"{what} do not match: {key} has shape {tuple(tensor.shape)} vs {tuple(src[key].shape)}")
    return [(dst[key], src[key]) for key in dst]


def _max_abs_difference(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    distance = 0.0
    for x, y in pairs:
        if x.numel():
            distance = max(distance, (x.detach().double() - y.detach().to(x.device).double()).abs().max().item())
    return distance


def _requires_grad_flags(parameters: Iterable[nn.Parameter]) -> list[tuple[nn.Parameter, bool]]:
    return [(p, p.requires_grad) for p in parameters]


def _restore_requires_grad(flags: list[tuple[nn.Parameter, bool]]) -> None:
    for p, flag in flags:
        p.requires_grad_(flag)


def _single_active_adapter(peft_model: PeftModel) -> str:
    active = list(peft_model.active_adapters)
    if len(active) != 1:
        raise ValueError(f"expected exactly one active adapter, found {active}")
    return active[0]


def _adapter_pairs(peft_model: PeftModel, source: str, target: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(source, target) LoRA parameters, matched by name with the adapter segment swapped.

    An adapter segment is a name part equal to the adapter name right after one of the tuner layers' adapter
    containers (``lora_A``, ``lora_B``, ``lora_embedding_A``, ...), e.g. ``...q_proj.lora_A.default.weight`` ↔
    ``...q_proj.lora_A.target.weight``; anchoring on the container keeps a module that happens to be called like an
    adapter from matching. Raises ValueError if either adapter is missing or their parameters do not correspond.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    for adapter in (source, target):
        if adapter not in peft_model.peft_config:
            raise ValueError(f"no adapter {adapter!r}; adapters: {', '.join(peft_model.peft_config)}")
    if source == target:
        raise ValueError(f"source and target are the same adapter {source!r}")
    containers = {
        layer_name
        for module in peft_model.modules()
        if isinstance(module, BaseTunerLayer)
        for layer_name in module.adapter_layer_names
    }

    def adapter_index(parts: list[str], adapter: str) -> int | None:
        hits = [i for i in range(1, len(parts)) if parts[i] == adapter and parts[i - 1] in containers]
        return hits[0] if len(hits) == 1 else None

    sources: dict[str, torch.Tensor] = {}
    targets: dict[str, torch.Tensor] = {}
    for param_name, param in peft_model.named_parameters():
        parts = param_name.split(".")
        i = adapter_index(parts, source)
        if i is not None:
            sources[".".join(parts[:i] + [target] + parts[i + 1 :])] = param
        elif adapter_index(parts, target) is not None:
            targets[param_name] = param
    if not sources:
        raise ValueError(f"adapter {source!r} has no LoRA parameters to sync")
    return [
        (src, dst)
        for dst, src in _paired(targets.items(), sources.items(), f"parameters of adapters {source!r} and {target!r}")
    ]


# ---------------------------------------------------------------------------------------------------------------
# The trainer's view: M_target and the KL reference for either layout


class AdapterView:
    """A peft model seen through one adapter, or through none (the base model): calls run with it active.

    With LoRA the trainer's M_target is ``AdapterView(policy, "target")`` and its KL reference
    ``AdapterView(policy, None)`` (adapters disabled): one base model in memory for all three.
    """

    def __init__(self, peft_model: PeftModel, adapter: str | None) -> None:
        self.peft_model = peft_model
        self.adapter = adapter

    def _active(self):
        return self.peft_model.disable_adapter() if self.adapter is None else use_adapter(self.peft_model, self.adapter)

    def __call__(self, *args, **kwargs):
        with self._active():
            return self.peft_model(*args, **kwargs)

    def generate(self, *args, **kwargs):
        with self._active():
            return self.peft_model.generate(*args, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.peft_model.device

    @property
    def training(self) -> bool:
        return self.peft_model.training

    def train(self, mode: bool = True) -> AdapterView:
        self.peft_model.train(mode)
        return self

    def eval(self) -> AdapterView:
        return self.train(False)


def is_peft(model: nn.Module) -> bool:
    return hasattr(model, "peft_config")


def make_target_and_reference(policy: nn.Module) -> tuple[nn.Module | AdapterView, nn.Module | AdapterView]:
    """M_target := M and the frozen KL reference: deep copies of a full model, or adapter views of a peft model."""
    if is_peft(policy):
        add_target_adapter(policy)  # type: ignore[arg-type]
        return AdapterView(policy, "target"), AdapterView(policy, None)  # type: ignore[arg-type]
    target = copy.deepcopy(policy).eval().requires_grad_(False)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    return target, reference


def sync_target(policy: nn.Module, target: nn.Module | AdapterView, mode: str, tau: float = 1.0) -> None:
    """One target update: ``hard`` (θ_target := θ) or ``ema`` with ``tau``, for either layout."""
    if isinstance(target, AdapterView):
        if mode == "hard":
            hard_sync_adapters(target.peft_model)
        else:
            ema_sync_adapters(target.peft_model, tau)
    elif mode == "hard":
        hard_sync(policy, target)
    else:
        ema_sync(policy, target, tau)


def trained_tensors(policy: nn.Module, adapter: str = "default") -> dict[str, torch.Tensor]:
    """What a checkpoint needs of a policy: every weight, or only the adapter's with LoRA."""
    if is_peft(policy):
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(policy, adapter_name=adapter)
    return policy.state_dict()


def load_trained_tensors(policy: nn.Module, tensors: dict[str, torch.Tensor], adapter: str = "default") -> None:
    if is_peft(policy):
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(policy, tensors, adapter_name=adapter)
        missing = [k for k in getattr(result, "unexpected_keys", [])]
        if missing:
            raise ValueError(f"adapter {adapter!r}: unexpected keys in checkpoint, e.g. {missing[0]}")
        return
    policy.load_state_dict(tensors)


def target_tensors(policy: nn.Module, target: nn.Module | AdapterView) -> dict[str, torch.Tensor]:
    if isinstance(target, AdapterView):
        return trained_tensors(policy, adapter="target")
    return target.state_dict()


def load_target_tensors(policy: nn.Module, target: nn.Module | AdapterView, tensors: dict[str, torch.Tensor]) -> None:
    if isinstance(target, AdapterView):
        load_trained_tensors(policy, tensors, adapter="target")
    else:
        target.load_state_dict(tensors)
