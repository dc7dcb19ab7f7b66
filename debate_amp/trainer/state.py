"""What a run carries from update to update, how a checkpoint saves it and how a resume restores it.

A checkpoint (:mod:`debate_amp.trainer.checkpoint` writes it atomically) holds the trained policy and value head, the
target policy, the optimizer, the counters below, the KL controller, the sampler's budgets, the adversary
(``sampler.kind: adversary``: its weights and optimizer in ``adversary.safetensors``, its labelled nodes in
``state.json``) and every process's random generators; a resumed run then draws and computes exactly what the
uninterrupted run would have.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from debate_amp.adversary import Adversary
from debate_amp.agents.labels import LabelStore
from debate_amp.config import Config, config_to_dict
from debate_amp.samplers import Budget, Sampler
from debate_amp.target import (
    is_peft,
    load_target_tensors,
    load_trained_tensors,
    target_tensors,
    trained_tensors,
)
from debate_amp.trainer import checkpoint
from debate_amp.trainer.rollout import SupervisedExample

# The counters a checkpoint keeps (and a resume restores), in TrainState's own names.
COUNTERS = (
    "update",
    "lagrange_multiplier",
    "sup_baseline",
    "target_updates",
    "human_calls",
    "amp_depth",
    "takeover",
    "history",
)


@dataclass
class TrainState:
    """Everything the next update starts from. ``model`` is the policy with its value head as the loop trains it
    (not wrapped by accelerate); ``generators`` are the run's own ``random.Random`` by name (questions, sampler,
    human)."""

    model: Any  # PolicyWithValue
    target_policy: nn.Module
    optimizer: torch.optim.Optimizer
    kl_ctl: Any  # AdaptiveKLController | FixedKLController
    sampler: Sampler
    generators: dict[str, random.Random]
    update: int = 0
    lagrange_multiplier: float = 0.0
    sup_baseline: float | None = None  # L_sup before the first update (the constrained mode's relative limit)
    target_updates: int = 0
    human_calls: int = 0
    amp_depth: int = 0  # the amplification curriculum's current depth
    takeover: int | None = None  # trainer.student: fresh: the update after which M took over from A[0] (None: not yet)
    history: list[dict[str, float]] = field(default_factory=list)
    adversary: Adversary | None = None  # references/000's Adv(q, a) (sampler.kind: adversary), trained online
    previous_examples: list[SupervisedExample] = field(default_factory=list)  # amp.reuse_previous; this process's
    # This process's own label store, when every answer in it is a human call of this run (not a shared store of
    # people's, nor replayed labels): a checkpoint notes how many it holds, so that a resume can count the answers
    # given after the checkpoint by the process that was stopped (the updates it redoes find them in the store).
    labels: LabelStore | None = None


def save_state(root, accelerator, state: TrainState, cfg: Config) -> None:
    """One checkpoint of ``state`` under ``root``: every process writes its RNG states, the main process the rest."""
    if accelerator.is_main_process:
        checkpoint.begin(root, state.update)
    accelerator.wait_for_everyone()
    partial = checkpoint.partial_dir(root, state.update)
    sampler = state.sampler
    local: dict[str, Any] = {"sampler": sampler.state_dict() if isinstance(sampler, Budget) else {}}  # per process
    local["previous_examples"] = [[e.prompt, e.completion, e.kind] for e in state.previous_examples]
    if state.labels is not None:
        local["labels_stored"] = len(state.labels)
    checkpoint.save_rng(partial, accelerator.process_index, state.generators, local)
    sharded = is_sharded(accelerator)
    if sharded:  # DeepSpeed / FSDP: the policy, value head and optimizer in accelerate's own (sharded) format
        accelerator.save_state(str(partial / checkpoint.ACCELERATE_STATE))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        policy = state.model.policy
        modules = {"target_policy": target_tensors(policy, state.target_policy)}
        if not sharded:
            modules |= {"policy": trained_tensors(policy), "value_head": state.model.value_head.state_dict()}
        adversary: dict[str, Any] = {}
        if state.adversary is not None:
            modules["adversary"], adversary = _adversary_parts(state.adversary)
        checkpoint.finish(
            root,
            state.update,
            modules=modules,
            optimizer=None if sharded else state.optimizer,
            state={name: getattr(state, name) for name in COUNTERS}
            | {
                "kl": state.kl_ctl.state_dict(),
                "num_processes": accelerator.num_processes,
                "lora": is_peft(policy),
                "sharded": sharded,
                "recipe": config_to_dict(cfg),
                "adversary": adversary,
            },
            keep_last=cfg.trainer.keep_last,
        )
    accelerator.wait_for_everyone()


def restore_state(path, accelerator, state: TrainState) -> int:
    """Load the checkpoint at ``path`` into ``state`` (modules in place); fails on a LoRA, sharding or process-count
    mismatch (another count would drop or invent processes' RNGs, sampler budgets and label stores).
    -> the human answers this process's label store gained after the checkpoint (given by the stopped process in
    the updates this run redoes, which find them there and do not ask again; 0 where the store is not counted)."""
    saved = checkpoint.load_state(path)
    policy = state.model.policy
    if saved["lora"] != is_peft(policy):
        raise checkpoint.CheckpointError(
            f"{path}: saved {'with' if saved['lora'] else 'without'} LoRA, the recipe says model.lora.enabled="
            f"{str(is_peft(policy)).lower()}"
        )
    saved_processes = saved.get("num_processes", accelerator.num_processes)
    if saved_processes != accelerator.num_processes:  # each process has its own questions, RNGs, budget and store
        raise checkpoint.CheckpointError(
            f"{path}: saved by {saved_processes} process(es), resumed with {accelerator.num_processes}; resume it with "
            f"{saved_processes} (accelerate launch --num_processes {saved_processes})"
        )
    if saved.get("sharded", False) != is_sharded(accelerator):
        raise checkpoint.CheckpointError(
            f"{path}: saved {'with' if saved.get('sharded') else 'without'} DeepSpeed / FSDP sharding; resume it with "
            "the topology it was saved with"
        )
    if saved.get("sharded", False):
        accelerator.load_state(str(path / checkpoint.ACCELERATE_STATE))
    else:
        load_trained_tensors(policy, checkpoint.load_tensors(path, "policy"))
        state.model.value_head.load_state_dict(checkpoint.load_tensors(path, "value_head"))
        checkpoint.load_optimizer(path, state.optimizer)
    load_target_tensors(policy, state.target_policy, checkpoint.load_tensors(path, "target_policy"))
    for name in COUNTERS:
        setattr(state, name, saved.get(name, getattr(state, name)))  # amp_depth: older checkpoints lack it
    state.kl_ctl.load_state_dict(saved["kl"])
    if state.adversary is not None:
        _load_adversary(state.adversary, checkpoint.load_tensors(path, "adversary"), saved["adversary"])
    local = checkpoint.load_rng(path, accelerator.process_index, state.generators)  # last: nothing draws after it
    if isinstance(state.sampler, Budget):
        state.sampler.load_state_dict(local["sampler"])
    state.previous_examples = [SupervisedExample(*e) for e in local.get("previous_examples", [])]
    if state.labels is None or "labels_stored" not in local:  # checkpoints before 2026-12-07 do not note it
        return 0
    return max(0, len(state.labels) - int(local["labels_stored"]))


def is_sharded(accelerator) -> bool:
    """DeepSpeed and FSDP shard parameters and optimizer state; their checkpoints go through accelerate."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)


def _adversary_parts(adversary: Adversary) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The adversary's state as tensors (weights ``net.*``, optimizer ``optimizer.*``) and JSON (the rest of the
    optimizer's state, the labelled nodes)."""
    saved = adversary.state_dict()
    opt_tensors, opt_plain = checkpoint._flatten_optimizer(saved["optimizer"])
    tensors = {f"net.{k}": v for k, v in saved["net"].items()} | {f"optimizer.{k}": v for k, v in opt_tensors.items()}
    return tensors, {"optimizer": opt_plain, "train": saved["train"], "heldout": saved["heldout"]}


def _load_adversary(adversary: Adversary, tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> None:
    net = {k.removeprefix("net."): v for k, v in tensors.items() if k.startswith("net.")}
    opt = {k.removeprefix("optimizer."): v for k, v in tensors.items() if k.startswith("optimizer.")}
    optimizer = checkpoint._unflatten_optimizer(opt, plain["optimizer"])
    adversary.load_state_dict(
        {"net": net, "optimizer": optimizer, "train": plain["train"], "heldout": plain["heldout"]}
    )
