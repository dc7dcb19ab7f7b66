"""The training loop: PPO (or Lagrangian constrained PPO) on debates, mixed with supervised imitation.

One update, as in DESIGN.md section 1:
  1. rollout     debates of Amp~(H, M) judged by Amp~(H, M_target), all questions under one event loop
  2. rewards     side rewards +1 / -1, minus catastrophe_coef * cost_t, minus the per-token KL to the reference
  3. advantages  values and reference log-probs of every RL segment, GAE, whitening
  4. optimise    PPO epochs over minibatches: L_rl (clipped policy + value loss) combined with L_sup by the mode
  5. target      M_target follows M (hard copy every sync_every updates, or EMA with tau)
  6. log         accelerate's trackers (TensorBoard by default), metrics.jsonl, transcripts, progress bar
  7. faults       a non-finite loss skips the update; checkpoints every save_every updates, on SIGINT and at the end
Setup lives in small functions above the loop; the math lives in ``debate_amp.objectives``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate.utils import DistributedDataParallelKwargs, gather_object
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from debate_amp.agents.humans import build_human
from debate_amp.agents.labels import LabelStore
from debate_amp.agents.model import ModelAgent
from debate_amp.combinators import amp_approx
from debate_amp.config import AnnealConfig, Config, ConfigError, config_to_dict, save_config
from debate_amp.debate.engine import Debate, run_debates
from debate_amp.debate.transcript import debate_to_record, write_transcripts
from debate_amp.eval.final import final_evaluation, parse_rates
from debate_amp.eval.heldout import evaluate_heldout
from debate_amp.generation import hf_generate_fn
from debate_amp.models import ValueHead, apply_lora, hidden_size_of, load_model, save_model
from debate_amp.objectives import (
    AdaptiveKLController,
    FixedKLController,
    combine_constrained,
    combine_weighted,
    fold_supervised_into_reward,
    gae,
    kl_penalty,
    lagrange_update,
    masked_mean,
    policy_loss,
    supervised_nll,
    token_rewards,
    value_loss,
    whiten,
)
from debate_amp.protocol import UNKNOWN
from debate_amp.samplers import Budget, build_sampler
from debate_amp.schedules import Schedule
from debate_amp.target import (
    is_peft,
    load_target_tensors,
    load_trained_tensors,
    make_target_and_reference,
    sync_target,
    target_tensors,
    trained_tensors,
)
from debate_amp.tasks import make_task
from debate_amp.tasks.perm import PermTask, parse_argument, render_question
from debate_amp.tasks.perm import score as task_score
from debate_amp.trainer import checkpoint
from debate_amp.trainer.rollout import (
    Batch,
    SupervisedExample,
    amplification_examples,
    amplify,
    make_batch,
    policy_segments,
    supervised_batch,
    supervised_examples,
)
from debate_amp.trainer.rollout import (
    amplified as is_amplified,
)
from debate_amp.trainer.rundir import apply_plan, flatten_recipe, plan_run_dir
from debate_amp.trainer.sft import run_sft, seed_everything, warm_start_examples

# ---------------------------------------------------------------------------------------------------------------
# Setup


class PolicyWithValue(nn.Module):
    """The policy LM and its value head, trained together (one module for the optimizer and accelerate)."""

    def __init__(self, policy: nn.Module, value_head: ValueHead) -> None:
        super().__init__()
        self.policy = policy
        self.value_head = value_head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> logits [S, L, V], values [S, L]"""
        out = self.policy(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return out.logits, self.value_head(out.hidden_states[-1])


def action_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """log pi(token j+1 | tokens <= j): logits [S, L, V], input_ids [S, L] -> [S, L-1]"""
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return logprobs.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def score_batch(model: Any, batch: Batch, chunk: int = 256, with_values: bool = False):
    """Log-probs (and values) of a batch's tokens under a frozen pass, in chunks: -> [S, L-1] (, [S, L-1]).
    The pass is in eval mode (no dropout, as the tokens were sampled); the model's mode is restored after."""
    was_training = bool(getattr(model, "training", False))
    if was_training:
        model.eval()
    try:
        return _score(model, batch, chunk, with_values)
    finally:
        if was_training:
            model.train()


def _score(model: Any, batch: Batch, chunk: int, with_values: bool):
    logprobs, values = [], []
    for start in range(0, len(batch), chunk):
        part = batch[start : start + chunk]
        out = model(input_ids=part.input_ids, attention_mask=part.attention_mask)
        if isinstance(out, tuple):  # the policy with its value head
            logits, v = out
            values.append(v[:, :-1].float())
        else:  # a bare language model (reference or target)
            logits = out.logits
        logprobs.append(action_logprobs(logits, part.input_ids))
    if with_values:
        assert values, "with_values needs the policy with its value head"
        return torch.cat(logprobs), torch.cat(values)
    return torch.cat(logprobs)


def token_nll(model: nn.Module, batch: Batch) -> float:
    """The supervised distance L_sup of a batch: NLL per response token over the whole batch (a token mean, the
    definition :func:`~debate_amp.objectives.supervised_nll` and the ``objective/sup_loss`` tag use)."""
    logprobs = score_batch(model, batch)
    return float(-(logprobs * batch.action_mask).sum() / batch.action_mask.sum().clamp(min=1))


def judge_accuracy(debate: Debate) -> float | None:
    """Did the verdict go to the side gold supports? The even side opens with an answer; it should win exactly
    when that answer is right: a claim about the question's own x and k, of the gold value (the same definition as
    ``debate-amp eval``, docs/eval.md). None without a verdict, or when a forfeit decided (the judge was not
    asked)."""
    q = debate.question
    gold = getattr(q, "gold", None)
    if gold is None or debate.winner is None or debate.winner.value is None or debate.forfeit is not None:
        return None
    opening = parse_argument(debate.turns[0].text)
    even_right = (
        opening is not None
        and not opening.agree
        and not opening.no
        and (opening.x, opening.k) == (q.x, q.k)
        and opening.value == gold
    )
    return float((debate.winner.value == "even") == even_right)


@dataclass
class RunState:
    """What changes from update to update (and goes into checkpoints)."""

    update: int = 0
    lagrange_multiplier: float = 0.0
    sup_baseline: float | None = None
    target_updates: int = 0
    human_calls: int = 0
    amp_depth: int = 0  # the amplification curriculum's current depth
    history: list[dict[str, float]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# The loop


class TrainingDiverged(RuntimeError):
    """``max_bad_updates`` updates in a row had a non-finite loss; the message names the last good checkpoint."""


def train(cfg: Config, progress: bool = True, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Run a recipe. ``resume`` continues from the run directory's latest whole checkpoint; ``overwrite`` deletes
    the run directory first. Raises :class:`~debate_amp.trainer.rundir.RunDirError` (before any work) when the
    directory holds another run, :class:`~debate_amp.config.ConfigError` (before any work) when accelerate cannot
    use a tracker in ``run.log_with``, and :class:`TrainingDiverged` after ``max_bad_updates`` non-finite updates."""
    from accelerate import Accelerator
    from accelerate.tracking import TensorBoardTracker

    plan = plan_run_dir(cfg, resume=resume, overwrite=overwrite)  # read-only: every process, before any work
    started = time.perf_counter()
    if not progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Writing model shards" when saving
    run_dir = cfg.run_dir
    # TensorBoard by instance so that its events stay in <run>/tensorboard/ (by name, accelerate would put them in
    # <project_dir>/<project name>/); the other trackers by name, under the project "debate-amp".
    trackers = [TensorBoardTracker("tensorboard", run_dir) if t == "tensorboard" else t for t in cfg.run.log_with]
    # accelerate's DDP kwargs only know torch's older name (forward_sync_buffers); the meaning is the same here
    warnings.filterwarnings("ignore", message=r"`broadcast_buffers` is deprecated", category=FutureWarning)
    # Processes make different numbers of frozen scoring passes (their rollouts differ), so those go through the
    # unwrapped module, and DDP must not broadcast buffers on each forward (the model's are constant rotary tables):
    # every collective then happens the same number of times on every process.
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)],
        log_with=trackers or None,
        project_dir=str(run_dir),
    )
    # accelerate leaves out, with no error, a tracker whose package it does not find (load_config checked already)
    dropped = [t for t in cfg.run.log_with if t != "tensorboard" and t not in map(str, accelerator.log_with)]
    if dropped:
        raise ConfigError(f"run.log_with: accelerate cannot use {dropped[0]} here (is its package installed?)")
    if cfg.run.torch_threads:
        torch.set_num_threads(cfg.run.torch_threads)
    seed_everything(cfg.run.seed + accelerator.process_index)
    main = accelerator.is_main_process
    if main:
        apply_plan(plan)
        if plan.note:
            print(f"debate-amp: {plan.note}", flush=True)
        save_config(cfg, run_dir / "config.yaml")
    accelerator.wait_for_everyone()

    # Setup: A[0] (warm start), value head, reference and target policies, optimizer.
    a0_dir = run_dir / cfg.sft.output_subdir
    if cfg.trainer.warm_start and not (a0_dir / "config.json").is_file():
        if main:
            run_sft(cfg, progress=progress)
        accelerator.wait_for_everyone()
    # The warm start drew from the global RNGs; a run that finds A[0] already on disk (a restart) must draw the same.
    seed_everything(cfg.run.seed + accelerator.process_index)
    start_dir = a0_dir if cfg.trainer.warm_start else cfg.model.path
    policy, tokenizer = load_model(cfg.model, start_dir, seed=cfg.run.seed)
    if cfg.model.lora.enabled:
        policy = apply_lora(policy, cfg.model.lora)  # type: ignore[assignment]
    target_policy, ref_policy = make_target_and_reference(policy)
    model = PolicyWithValue(policy, ValueHead(hidden_size_of(policy)))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.trainer.learning_rate)
    model, optimizer = accelerator.prepare(model, optimizer)
    for frozen in (ref_policy, target_policy):
        if isinstance(frozen, nn.Module):
            frozen.to(accelerator.device)
    unwrapped: PolicyWithValue = accelerator.unwrap_model(model)

    task = make_task(cfg)
    store = LabelStore(run_dir / ("labels.sqlite" if main else f"labels.rank{accelerator.process_index}.sqlite"))
    human, expert = build_human(cfg.human, seed=cfg.run.seed + accelerator.process_index, store=store)
    # The rehearsal's pool: the warm start's own examples (paid for by the warm start when this run made it).
    rehearsal_pool = warm_start_examples(cfg) if cfg.trainer.replay_examples else []
    s = cfg.sampler
    sampler = build_sampler(
        s.kind, s.p, s.threshold, s.per_update, s.per_run, seed=cfg.run.seed + accelerator.process_index
    )
    g = cfg.generation
    policy_agent = ModelAgent(
        hf_generate_fn(unwrapped.policy, tokenizer, g.max_new_tokens, g.temperature, g.top_p),
        "policy",
        cfg.amp.max_batch,
        {"answer": g.max_answer_tokens},
    )
    target_agent = ModelAgent(
        hf_generate_fn(target_policy, tokenizer, g.max_new_tokens, cfg.target.temperature, 1.0),
        "target",
        cfg.amp.max_batch,
        {"answer": g.max_answer_tokens},
    )
    amp_policy = amp_approx(human, policy_agent, sampler, cfg.amp.max_rounds)
    amp_target = amp_approx(human, target_agent, sampler, cfg.amp.max_rounds)
    amplifier_agent = ModelAgent(  # M inside the amplification trees whose answers are distilled (greedy)
        hf_generate_fn(unwrapped.policy, tokenizer, g.max_new_tokens, cfg.amp.temperature, 1.0),
        "policy",
        cfg.amp.max_batch,
        {"answer": g.max_answer_tokens},
    )
    amplifier = amp_approx(human, amplifier_agent, sampler, cfg.amp.max_rounds, cfg.amp.levels)

    o = cfg.objective
    mode_start = {"weighted": o.alpha, "constrained": o.limit, "reward": o.reward_coef}[o.mode]
    weight_schedule = _schedule(o.anneal, mode_start)
    force_stop_schedule = _schedule(cfg.debate.force_stop_anneal, cfg.debate.force_stop_p)
    lr_schedule = _schedule(cfg.trainer.lr_anneal, cfg.trainer.learning_rate)
    kl_ctl = (
        AdaptiveKLController(o.kl.coef, o.kl.target, o.kl.horizon) if o.kl.adaptive else FixedKLController(o.kl.coef)
    )
    state = RunState(lagrange_multiplier=o.lagrange_init, amp_depth=min(cfg.amp.start_depth, task.max_depth))
    rng = random.Random(cfg.run.seed * 1000 + accelerator.process_index)
    generators = _generators(rng, sampler, expert)
    ckpt_root = run_dir / "checkpoints"
    if plan.resume_from is not None:
        _restore(plan.resume_from, accelerator, unwrapped, target_policy, optimizer, state, kl_ctl, sampler, generators)
    names = {"wandb": {"name": cfg.run.name}, "trackio": {"name": cfg.run.name}, "mlflow": {"run_name": cfg.run.name}}
    recipe = {k: v for k, v in flatten_recipe(config_to_dict(cfg)).items() if isinstance(v, (bool, int, float, str))}
    accelerator.init_trackers("debate-amp", config=recipe, init_kwargs=names)  # on the main process only
    metrics_file = open(run_dir / "metrics.jsonl", "a") if main else None  # noqa: SIM115 (closed at the end)
    local_questions = max(1, cfg.trainer.questions_per_update // accelerator.num_processes)
    local_amp_questions = -(-cfg.amp.questions_per_update // accelerator.num_processes)
    local_probe = -(-cfg.amp.curriculum_probe // accelerator.num_processes) if cfg.amp.curriculum else 0
    bar = tqdm(
        range(state.update, cfg.trainer.updates),
        desc="train",
        initial=state.update,
        total=cfg.trainer.updates,
        disable=not (progress and main),
    )
    interrupt = _Interrupt()
    interrupted = False
    bad_in_a_row = 0

    for update in bar:
        progress_frac = update / max(1, cfg.trainer.updates - 1) if cfg.trainer.updates > 1 else 0.0
        weight = weight_schedule(progress_frac)
        force_stop_p = force_stop_schedule(progress_frac)
        for group in optimizer.param_groups:
            group["lr"] = lr_schedule(progress_frac)
        if isinstance(sampler, Budget):
            sampler.new_update()
        calls_before = expert.calls

        # 1. Rollout: debates of Amp~(H, M), judged by Amp~(H, M_target).
        t0 = time.perf_counter()
        questions = [task.sample(rng) for _ in range(local_questions)]
        unwrapped.eval()
        debates = run_debates(
            questions,
            amp_policy,
            amp_target,
            cfg.debate.max_turns,
            force_stop_p,
            seed=rng.randrange(2**31),
            forfeit_unparsed=cfg.debate.forfeit_unparsed,
        )
        rollout_s = time.perf_counter() - t0
        #    Amplification: Amp~(H, M) answers training questions; its answers are distilled in step 4.
        #    Past depth 0 the questions are drawn from depths 1..d: at depth 0 Amp~ adds only the human's own answers
        #    (the rehearsal's), and M's direct replies are not distilled.
        depth = state.amp_depth if cfg.amp.curriculum else None
        lowest = min(1, state.amp_depth) if cfg.amp.curriculum else 0
        amp_questions = [task.sample(rng, max_depth=depth, min_depth=lowest) for _ in range(local_amp_questions)]
        #    and a probe one level deeper (amplified, scored against gold, never distilled) for the curriculum.
        probe = _deeper(task, rng, state.amp_depth, local_probe) if cfg.amp.curriculum else []
        replies = amplify(amp_questions + probe, amplifier) if amp_questions or probe else []
        amplified, probed = replies[: len(amp_questions)], replies[len(amp_questions) :]
        agreement = (
            _agreement(amplifier_agent, amplified, amp_questions, state.amp_depth) if amplified else float("nan")
        )
        teacher = _mean(
            [task_score(r.text, q) for r, q in zip(amplified, amp_questions, strict=True) if q.depth == state.amp_depth]
        )
        unwrapped.train()
        amplify_s = time.perf_counter() - t0 - rollout_s

        # 2. Rewards: terminal side reward - catastrophe penalty, per-token KL penalty to the reference.
        t1 = time.perf_counter()
        segments = policy_segments(debates, o.catastrophe_coef, skip_uncontested=True)
        amp_examples = amplification_examples(amplified)
        n_targets = sum(e.kind == "amplified" for e in amp_examples)  # the distilled amplified answers
        examples = supervised_examples(debates) + amp_examples
        rehearsal_calls = 0
        if rehearsal_pool:
            replay, rehearsal_calls = _rehearsal(
                rehearsal_pool, cfg.trainer.replay_examples, update, accelerator, paid=cfg.trainer.warm_start
            )
            examples += [SupervisedExample(e.prompt, e.completion, f"replay:{e.kind}") for e in replay]
        sup = supervised_batch(tokenizer, examples).to(accelerator.device) if examples else None
        rl = None
        if segments:
            rl = make_batch(
                tokenizer, [sg.prompt for sg in segments], [sg.response_ids for sg in segments], tokenizer.pad_token_id
            ).to(accelerator.device)
            old_logprobs, old_values = score_batch(unwrapped, rl, with_values=True)
            ref_logprobs = score_batch(ref_policy, rl)
            mask = rl.action_mask
            kl = torch.where(mask > 0, kl_penalty(old_logprobs, ref_logprobs, o.kl.estimator), 0.0)
            terminal = torch.tensor([sg.reward for sg in segments], device=old_logprobs.device)
            if o.mode == "reward" and sup is not None:
                # r <- r - c * d(arg_t, M(""arg_t)): the supervised distance of the segment's argument
                distances = _argument_distances(unwrapped, tokenizer, debates, accelerator.device)
                terminal = fold_supervised_into_reward(
                    terminal,
                    torch.tensor([distances[(sg.debate, sg.turn)] for sg in segments], device=terminal.device),
                    weight,
                )
            rewards = token_rewards(terminal, kl, mask, kl_ctl.value)

            # 3. Advantages: GAE over each segment's tokens, whitened over the update.
            advantages, returns = gae(rewards, old_values, mask, cfg.trainer.gamma, cfg.trainer.gae_lambda)
            if cfg.trainer.whiten_advantages and mask.sum() >= 2:
                advantages = whiten(advantages, mask)

        if o.mode == "constrained" and state.sup_baseline is None and sup is not None:
            state.sup_baseline = _mean_over_processes(accelerator, token_nll(unwrapped, sup))
        limit = (
            weight * state.sup_baseline
            if (o.mode == "constrained" and o.limit_kind == "relative" and state.sup_baseline is not None)
            else weight
        )

        # 4. Optimise: PPO epochs over minibatches, L_rl combined with L_sup by the objective's mode. Every process
        #    takes the same number of steps; a non-finite loss on any of them skips the rest of the update.
        stats: dict[str, list[float]] = {}
        n_rl = len(segments)
        n_sup = len(sup) if sup is not None else 0
        n_minibatches = _max_over_processes(
            accelerator,
            max(1, math.ceil(n_rl / cfg.trainer.minibatch_size), math.ceil(n_sup / cfg.trainer.sup_minibatch_size)),
        )
        bad = False
        for _epoch in range(cfg.trainer.ppo_epochs):
            rl_order = torch.randperm(n_rl) if n_rl else None
            sup_order = _by_length(sup.attention_mask.sum(1), n_minibatches) if sup is not None else None
            for mb in range(n_minibatches):
                anchor = torch.zeros((), device=accelerator.device)  # touches every parameter (DDP needs them all)
                rl_loss = torch.zeros((), device=accelerator.device)
                if (rl_idx := _rows(rl_order, mb, n_minibatches)) is not None:
                    part = rl[rl_idx]  # type: ignore[index]
                    logits, values = model(part.input_ids, part.attention_mask)
                    anchor = anchor + _zero_weight(logits, values)
                    logprobs = action_logprobs(logits, part.input_ids)
                    m = part.action_mask
                    pg_loss, clipfrac, approx_kl = policy_loss(
                        logprobs, old_logprobs[rl_idx], advantages[rl_idx], m, cfg.trainer.clip_range
                    )
                    v_loss, _ = value_loss(
                        values[:, :-1].float(), old_values[rl_idx], returns[rl_idx], m, cfg.trainer.clip_range_value
                    )
                    rl_loss = pg_loss + cfg.trainer.vf_coef * v_loss
                    with torch.no_grad():
                        dist = torch.distributions.Categorical(logits=logits[:, :-1].float())
                        entropy = masked_mean(dist.entropy(), m)
                    _record(
                        stats, pg_loss=pg_loss, v_loss=v_loss, clipfrac=clipfrac, approx_kl=approx_kl, entropy=entropy
                    )
                sup_loss = torch.zeros((), device=accelerator.device)
                if (sup_idx := _rows(sup_order, mb, n_minibatches)) is not None:
                    part = sup[sup_idx].trimmed()  # type: ignore[index]
                    logits, values = model(part.input_ids, part.attention_mask)
                    anchor = anchor + _zero_weight(logits, values)
                    labels = torch.where(part.action_mask > 0, part.input_ids[:, 1:], -100)
                    sup_loss, _ = supervised_nll(logits[:, :-1].float(), labels)
                    _record(stats, sup_loss=sup_loss, sup_tokens=(labels != -100).sum())
                elif anchor.grad_fn is None:  # nothing of this process's in this minibatch: a zero-weight pass
                    any_batch = sup if sup is not None else rl
                    assert any_batch is not None
                    anchor = _zero_weight(*model(any_batch.input_ids[:1], any_batch.attention_mask[:1]))
                if o.mode == "weighted":
                    loss = combine_weighted(rl_loss, sup_loss, weight)
                elif o.mode == "constrained":
                    loss = combine_constrained(rl_loss, sup_loss, state.lagrange_multiplier)
                else:
                    loss = rl_loss
                loss = loss + anchor
                if _any_process(accelerator, not bool(torch.isfinite(loss))):
                    bad = True
                    break
                optimizer.zero_grad()
                accelerator.backward(loss)
                grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.trainer.max_grad_norm)
                if grad_norm is not None and not bool(torch.isfinite(torch.as_tensor(grad_norm))):
                    optimizer.zero_grad()  # the same on every process: gradients are already averaged
                    bad = True
                    break
                optimizer.step()
                _record(stats, total=loss)
            if bad:
                break
        update_s = time.perf_counter() - t1

        # 5. Target: M_target follows M (not after a skipped update).
        if not bad and cfg.target.mode == "hard" and (update + 1) % cfg.target.sync_every == 0:
            sync_target(unwrapped.policy, target_policy, "hard")
            state.target_updates += 1
        elif not bad and cfg.target.mode == "ema":
            sync_target(unwrapped.policy, target_policy, "ema", cfg.target.tau)
            state.target_updates += 1

        # 6. Log: the same scalars to TensorBoard and metrics.jsonl (averaged over processes), transcripts of every
        #    debate; lambda and the KL coefficient move on the averaged numbers, so every process agrees.
        state.update = update + 1
        metrics = _metrics(
            debates,
            stats,
            segments,
            rl,
            old_values if rl is not None else None,
            returns if rl is not None else None,
            kl if rl is not None else None,
        )
        metrics.update(
            {
                # the annealed parameter of the mode (objective.anneal): alpha, the relative limit (logged as
                # constraint/limit, absolute) or the imitation coefficient folded into the reward
                "objective/alpha": weight if o.mode == "weighted" else float("nan"),
                "objective/reward_coef": weight if o.mode == "reward" else float("nan"),
                "objective/force_stop_p": force_stop_p,
                "constraint/limit": limit if o.mode == "constrained" else float("nan"),
                "constraint/violation": (_token_mean(stats) - limit) if o.mode == "constrained" else 0.0,
                "amp/human_calls": float(expert.calls - calls_before),
                "rehearsal/human_calls": float(rehearsal_calls),  # 0 when the warm start paid for them
                "target/updates": float(state.target_updates),
                "target/policy_target_kl": _policy_target_kl(unwrapped, target_policy, rl),
                "perf/rollout_s": rollout_s,
                "perf/amplify_s": amplify_s,
                "perf/amp_targets_per_s": n_targets / amplify_s if amplified else float("nan"),
                "amp/targets": float(n_targets),
                "amp/target_accuracy": _mean(
                    [task_score(r.text, q) for r, q in zip(amplified, amp_questions, strict=True)]
                ),
                "amp/depth": float(state.amp_depth),
                "amp/agreement": agreement,
                "amp/teacher_accuracy": teacher,
                "amp/probe_accuracy": _mean([task_score(r.text, q) for r, q in zip(probed, probe, strict=True)]),
                "perf/update_s": update_s,
                "perf/debates_per_s": len(debates) / max(rollout_s, 1e-9),
                "perf/tokens_per_s": (float(rl.attention_mask.sum()) if rl is not None else 0.0)
                * cfg.trainer.ppo_epochs
                / max(update_s, 1e-9),
                "objective/kl_coef": kl_ctl.value,
                "train/skipped": float(bad),
            }
        )
        metrics = _gather(accelerator, metrics)
        totals = ("amp/human_calls", "rehearsal/human_calls", "amp/subquestions", "amp/targets", "debate/count")
        for total in (*totals, "rl/segments"):
            metrics[total] *= accelerator.num_processes  # totals over processes, not means
        if not bad:
            if o.mode == "constrained" and not math.isnan(metrics["objective/sup_loss"]):
                state.lagrange_multiplier = lagrange_update(
                    state.lagrange_multiplier, metrics["objective/sup_loss"], limit, o.lagrange_lr
                )
            if metrics["rl/segments"] > 0 and not math.isnan(metrics["objective/kl"]):
                # the KL averaged over the processes that had segments; the step counts every process's segments
                kl_ctl.update(metrics["objective/kl"], int(metrics["rl/segments"]))
        metrics["constraint/lagrange_multiplier"] = state.lagrange_multiplier
        if cfg.amp.curriculum and not bad and metrics["amp/probe_accuracy"] >= cfg.amp.curriculum_threshold:
            state.amp_depth = min(state.amp_depth + 1, task.max_depth)  # on the gathered number: every process agrees
        metrics["perf/elapsed_s"] = time.perf_counter() - started  # since train() began (warm start included)
        if main and cfg.trainer.eval_every and state.update % cfg.trainer.eval_every == 0 and not bad:
            metrics |= _heldout_metrics(unwrapped.policy, tokenizer, task, cfg)
        state.human_calls += int(metrics["amp/human_calls"] + metrics["rehearsal/human_calls"])
        state.history.append({k: metrics[k] for k in _HISTORY_KEYS})
        records = [
            debate_to_record(
                d,
                run=cfg.run.name,
                update=state.update,
                question_id="",  # numbered below, over every process's debates
                question=render_question(d.question),
                gold=str(d.question.gold),
                force_stop_p=force_stop_p,
                alpha=weight if o.mode == "weighted" else None,
                lagrange_multiplier=state.lagrange_multiplier if o.mode == "constrained" else None,
            )
            for d in debates
        ]
        if accelerator.num_processes > 1:
            records = gather_object(records)
        if main:
            assert metrics_file is not None
            accelerator.log({tag: value for tag, value in metrics.items() if not math.isnan(value)}, step=state.update)
            metrics_file.write(json.dumps({"update": state.update, **metrics}) + "\n")
            metrics_file.flush()
            os.fsync(metrics_file.fileno())
            for i, record in enumerate(records):
                record["question_id"] = f"u{state.update}-q{i}"
            write_transcripts(run_dir / "transcripts" / f"update_{state.update:06d}.jsonl", records)
            if update == 0 or state.update == cfg.trainer.updates:
                accelerator.log({"transcripts": _transcript_text(debates[:3])}, step=state.update)
            bar.set_postfix(
                reward_even=f"{metrics['objective/reward_even']:+.2f}",
                turns=f"{metrics['debate/mean_turns']:.1f}",
                sup=f"{metrics['objective/sup_loss']:.3f}",
                humans=int(metrics["amp/human_calls"]),
            )

        # 7. Faults and checkpoints: a skipped update is never saved; max_bad_updates in a row stop the run.
        if bad:
            bad_in_a_row += 1
            last_good = checkpoint.latest_checkpoint(ckpt_root)
            warnings.warn(
                f"update {state.update}: non-finite loss, update skipped ({bad_in_a_row} in a row, "
                f"stopping at {cfg.trainer.max_bad_updates})",
                RuntimeWarning,
                stacklevel=1,
            )
            if bad_in_a_row >= cfg.trainer.max_bad_updates:
                _close(accelerator, metrics_file, store, interrupt)
                raise TrainingDiverged(
                    f"{bad_in_a_row} updates in a row had a non-finite loss (the last at update {state.update}); "
                    f"the last good checkpoint is {last_good or 'none (no update finished)'}"
                )
            if _any_process(accelerator, interrupt.requested):
                interrupted = True  # a skipped update is not saved: the last good checkpoint stays the one to resume
                break
            continue
        bad_in_a_row = 0
        interrupted = _any_process(accelerator, interrupt.requested)  # a signal to any process stops every one
        max_minutes = cfg.trainer.max_minutes
        out_of_time = max_minutes is not None and _any_process(
            accelerator, time.perf_counter() - started > 60 * max_minutes
        )
        final_update = state.update == cfg.trainer.updates or out_of_time
        if interrupted or final_update or state.update % cfg.trainer.save_every == 0:
            _save(ckpt_root, accelerator, unwrapped, target_policy, optimizer, state, kl_ctl, sampler, generators, cfg)
        if interrupted:
            break
        if out_of_time:
            if main:
                print(f"\ntrainer.max_minutes={max_minutes} reached after update {state.update}: training stops here")
            break

    # The end: save M, and the final table (held-out accuracy by k, human calls, debate length).
    summary: dict[str, Any] = {}
    if interrupted:
        if main:
            latest = checkpoint.latest_checkpoint(ckpt_root)
            print(f"\ninterrupted after update {state.update}; latest checkpoint: {latest}; continue with --resume")
        summary = {"interrupted": True, "update": state.update, "run_dir": run_dir} if main else {}
        _close(accelerator, metrics_file, store, interrupt)
        return summary
    fingerprints = gather_object([_fingerprint(unwrapped)])
    if main:
        model_dir = run_dir / "model"
        _save_policy(unwrapped.policy, tokenizer, model_dir)
        save_file(
            {k: v.contiguous() for k, v in unwrapped.value_head.state_dict().items()},
            str(model_dir / "value_head.safetensors"),
        )
        (model_dir / "process_fingerprints.json").write_text(json.dumps(fingerprints, indent=2))
        if len(set(fingerprints)) > 1:
            raise RuntimeError(f"parameters differ across processes after training: {fingerprints}")
        questions = _eval_questions(task, cfg)
        report = evaluate_heldout(
            unwrapped.policy, tokenizer, questions, max_new_tokens=g.max_new_tokens, progress=progress
        )
        answers = report.as_dict()["answer"].items()
        accelerator.log({f"eval/answer_accuracy_k{key}": value for key, value in answers}, step=state.update)
        last_length = state.history[-1]["debate/mean_turns"] if state.history else float("nan")
        final = final_evaluation(unwrapped.policy, tokenizer, cfg, questions, report, last_length)
        final["human_calls"] = state.human_calls
        final["updates"] = state.update
        summary = {
            "report": report,
            "final": final,
            "human_calls": state.human_calls,
            "mean_turns": _mean([h["debate/mean_turns"] for h in state.history]),
            "history": state.history,
            "run_dir": run_dir,
        }
        (model_dir / "heldout.json").write_text(json.dumps(report.as_dict(), indent=2))
        (run_dir / "final.json").write_text(json.dumps(final, indent=2))
    _close(accelerator, metrics_file, store, interrupt)
    return summary


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints, faults and processes

_HISTORY_KEYS = ("debate/mean_turns", "debate/judge_accuracy", "amp/human_calls", "objective/sup_loss")


class _Interrupt:
    """SIGINT (Ctrl-C) or SIGTERM (a scheduler's preemption) asks the loop to stop after the current update, with a
    checkpoint; a second signal stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        name = signal.Signals(signum).name
        print(f"\ndebate-amp: {name}: stopping after this update (again to stop now)", flush=True)

    def close(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}


def _close(accelerator, metrics_file, store: LabelStore, interrupt: _Interrupt) -> None:
    if metrics_file is not None:
        metrics_file.close()
    store.close()
    interrupt.close()
    accelerator.wait_for_everyone()
    accelerator.end_training()  # closes the trackers, then the process group: no collective may follow


def _generators(*owners: Any) -> dict[str, random.Random]:
    """The run's own ``random.Random`` generators by name (questions, sampler, humans), for checkpoints."""
    names = ("questions", "sampler", "human")
    found: dict[str, random.Random] = {}
    for name, owner in zip(names, owners, strict=True):
        owner = getattr(owner, "inner", owner)  # a Budget wraps the sampler that draws
        generator = owner if isinstance(owner, random.Random) else getattr(owner, "_rng", None)
        if isinstance(generator, random.Random):
            found[name] = generator
    return found


def _save(root, accelerator, unwrapped, target_policy, optimizer, state, kl_ctl, sampler, generators, cfg) -> None:
    """One checkpoint: every process writes its RNG states, the main process the rest (atomically)."""
    if accelerator.is_main_process:
        checkpoint.begin(root, state.update)
    accelerator.wait_for_everyone()
    partial = checkpoint.partial_dir(root, state.update)
    local = {"sampler": sampler.state_dict() if isinstance(sampler, Budget) else {}}  # budgets count per process
    checkpoint.save_rng(partial, accelerator.process_index, generators, local)
    sharded = _sharded(accelerator)
    if sharded:  # DeepSpeed / FSDP: the policy, value head and optimizer in accelerate's own (sharded) format
        accelerator.save_state(str(partial / checkpoint.ACCELERATE_STATE))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        modules = {"target_policy": target_tensors(unwrapped.policy, target_policy)}
        if not sharded:
            modules |= {"policy": trained_tensors(unwrapped.policy), "value_head": unwrapped.value_head.state_dict()}
        checkpoint.finish(
            root,
            state.update,
            modules=modules,
            optimizer=None if sharded else optimizer,
            state={
                "update": state.update,
                "lagrange_multiplier": state.lagrange_multiplier,
                "sup_baseline": state.sup_baseline,
                "target_updates": state.target_updates,
                "human_calls": state.human_calls,
                "amp_depth": state.amp_depth,
                "history": state.history,
                "kl": kl_ctl.state_dict(),
                "num_processes": accelerator.num_processes,
                "lora": is_peft(unwrapped.policy),
                "sharded": sharded,
                "recipe": config_to_dict(cfg),
            },
            keep_last=cfg.trainer.keep_last,
        )
    accelerator.wait_for_everyone()


def _restore(path, accelerator, unwrapped, target_policy, optimizer, state, kl_ctl, sampler, generators) -> None:
    saved = checkpoint.load_state(path)
    if saved["lora"] != is_peft(unwrapped.policy):
        raise checkpoint.CheckpointError(
            f"{path}: saved {'with' if saved['lora'] else 'without'} LoRA, the recipe says model.lora.enabled="
            f"{str(is_peft(unwrapped.policy)).lower()}"
        )
    if saved.get("sharded", False) != _sharded(accelerator):
        raise checkpoint.CheckpointError(
            f"{path}: saved {'with' if saved.get('sharded') else 'without'} DeepSpeed / FSDP sharding; resume it with "
            "the topology it was saved with"
        )
    if saved.get("sharded", False):
        accelerator.load_state(str(path / checkpoint.ACCELERATE_STATE))
    else:
        load_trained_tensors(unwrapped.policy, checkpoint.load_tensors(path, "policy"))
        unwrapped.value_head.load_state_dict(checkpoint.load_tensors(path, "value_head"))
        checkpoint.load_optimizer(path, optimizer)
    load_target_tensors(unwrapped.policy, target_policy, checkpoint.load_tensors(path, "target_policy"))
    state.update = saved["update"]
    state.lagrange_multiplier = saved["lagrange_multiplier"]
    state.sup_baseline = saved["sup_baseline"]
    state.target_updates = saved["target_updates"]
    state.human_calls = saved["human_calls"]
    state.amp_depth = saved.get("amp_depth", state.amp_depth)
    state.history = saved["history"]
    kl_ctl.load_state_dict(saved["kl"])
    local = checkpoint.load_rng(path, accelerator.process_index, generators)  # last: nothing draws after it
    if isinstance(sampler, Budget):
        sampler.load_state_dict(local["sampler"])


def _sharded(accelerator) -> bool:
    """DeepSpeed and FSDP shard parameters and optimizer state; their checkpoints go through accelerate."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)


def _save_policy(policy: nn.Module, tokenizer, model_dir) -> None:
    if is_peft(policy):  # the policy adapter only (the target adapter lives in the checkpoints)
        policy.save_pretrained(model_dir, selected_adapters=["default"])  # type: ignore[operator]
        tokenizer.save_pretrained(model_dir)
    else:
        save_model(policy, tokenizer, model_dir)  # type: ignore[arg-type]


@torch.no_grad()
def _fingerprint(unwrapped: nn.Module) -> str:
    """SHA-256 of every parameter's bytes: equal on every process exactly when the parameters are."""
    digest = hashlib.sha256()
    for name, parameter in unwrapped.named_parameters():
        digest.update(name.encode())
        digest.update(parameter.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def _any_process(accelerator, flag: bool) -> bool:
    if accelerator.num_processes == 1:
        return flag
    return bool(_max_over_processes(accelerator, int(flag)))


def _max_over_processes(accelerator, value: int) -> int:
    if accelerator.num_processes == 1:
        return value
    return int(accelerator.gather(torch.tensor([value], device=accelerator.device)).max())


def _mean_over_processes(accelerator, value: float) -> float:
    if accelerator.num_processes == 1:
        return value
    return float(accelerator.gather(torch.tensor([value], device=accelerator.device, dtype=torch.float64)).mean())


# ---------------------------------------------------------------------------------------------------------------
# Helpers of the loop


def _schedule(anneal: AnnealConfig, start: float) -> Schedule:
    """A recipe value and its annealing: from ``start`` to ``anneal.end`` (or constant) over training."""
    return Schedule(anneal.kind, start, start if anneal.end is None else anneal.end, tuple(anneal.step_milestones))


def _rehearsal(pool: list, n: int, update: int, accelerator: Any, paid: bool) -> tuple[list, int]:
    """``n`` of the warm start's examples for this update and process, taken in turn from ``pool`` (every process
    its own slice; the pool is walked through once before any example comes back), so that skills the updates do
    not exercise are not forgotten. Returns them and the human calls they cost: none when the warm start ``paid``
    for them (this run made A[0] from this pool), else each example's calls the first time it is used."""
    start = (update * accelerator.num_processes + accelerator.process_index) * n
    examples = [pool[(start + j) % len(pool)] for j in range(n)]
    calls = 0 if paid else sum(pool[i].human_calls for i in range(start, min(start + n, len(pool))))
    return examples, calls


def _eval_questions(task: PermTask, cfg: Config):
    return task.eval_questions(cfg.trainer.eval_size, seed=cfg.run.seed + 1)


def _deeper(task: PermTask, rng: random.Random, depth: int, n: int) -> list:
    """``n`` training questions exactly one decomposition level below ``depth`` (none past the task's deepest)."""
    if depth >= task.max_depth or n == 0:
        return []
    lo, hi = 2 ** (depth + 1), min(2 ** (depth + 2) - 1, task.max_power)
    return [task.sample(rng, k=rng.randint(lo, hi)) for _ in range(n)]


def _agreement(model_agent: ModelAgent, amplified: list, questions: list, depth: int) -> float:
    """How often M's direct answer equals the amplified answer it is distilled towards, over this update's targets
    at the curriculum's current depth: no gold answer is used (NaN when there is none at that depth)."""
    pairs = [(r, q) for r, q in zip(amplified, questions, strict=True) if q.depth == depth and r.text != UNKNOWN]
    pairs = [(r, q) for r, q in pairs if is_amplified(r.trace)]
    if not pairs:
        return float("nan")
    prompts = [r.trace.posed.render() for r, _ in pairs]
    direct = model_agent.generate_fn(prompts, [model_agent.reply_limits.get("answer")] * len(prompts)).texts
    return sum(d.strip() == r.text.strip() for d, (r, _) in zip(direct, pairs, strict=True)) / len(pairs)


def _heldout_metrics(policy, tokenizer, task: PermTask, cfg: Config) -> dict[str, float]:
    """``eval/`` scalars: held-out accuracy of direct answers by k, and over the powers beyond the human (k >= 2)."""
    report = evaluate_heldout(
        policy, tokenizer, _eval_questions(task, cfg), max_new_tokens=cfg.generation.max_new_tokens, progress=False
    )
    metrics = {f"eval/answer_accuracy_k{k}": value for k, value in report.as_dict()["answer"].items()}
    metrics["eval/answer_accuracy_k_ge_2"] = report.accuracy("answer", [k for k in report.ks() if k >= 2])
    return metrics


def _by_length(lengths: torch.Tensor, n_minibatches: int) -> torch.Tensor:
    """A shuffled order in which minibatch ``mb`` (``order[mb::n_minibatches]``, see :func:`_rows`) holds rows of
    like lengths: short answers are not padded to the width of the longest debate prompt. Which length band goes
    to which minibatch, and the order within a band, are random."""
    n = len(lengths)
    shuffled = torch.randperm(n)
    by_length = shuffled[torch.argsort(lengths[shuffled], stable=True)]  # ties in random order
    order = torch.empty(n, dtype=torch.long)
    start = 0
    for mb in torch.randperm(n_minibatches).tolist():  # the next band of lengths goes to a random minibatch
        size = len(range(mb, n, n_minibatches))
        order[mb::n_minibatches] = by_length[start : start + size]
        start += size
    return order


def _rows(order: torch.Tensor | None, mb: int, n_minibatches: int) -> torch.Tensor | None:
    """The rows of minibatch ``mb`` (every n-th of the shuffled ``order``), or None when this process has none."""
    if order is None:
        return None
    rows = order[mb::n_minibatches]
    return rows if len(rows) else None


def _zero_weight(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """0 with a gradient path to every parameter: DDP averages gradients only once every parameter has one."""
    return 0.0 * (logits.sum() + values.sum())


def _record(stats: dict[str, list[float]], **values: torch.Tensor) -> None:
    for key, value in values.items():
        stats.setdefault(key, []).append(float(value.detach()))


def _token_mean(stats: dict[str, list[float]]) -> float:
    """L_sup over the update: the minibatches' token means weighted by their tokens (one token mean, as the
    constraint's relative baseline is)."""
    tokens = sum(stats.get("sup_tokens", []))
    if not tokens:
        return float("nan")
    return sum(loss * n for loss, n in zip(stats["sup_loss"], stats["sup_tokens"], strict=True)) / tokens


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


@torch.no_grad()
def _argument_distances(model, tokenizer, debates: list[Debate], device) -> dict[tuple[int, int], float]:
    """d(arg_t, M(""arg_t)) for every argument: the NLL of the amplified argument asked directly."""
    keys, prompts, completions = [], [], []
    for d, debate in enumerate(debates):
        for t, turn in enumerate(debate.turns):
            keys.append((d, t))
            prompts.append(turn.trace.posed.render())
            completions.append(tokenizer(turn.text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id])
    batch = make_batch(tokenizer, prompts, completions, tokenizer.pad_token_id).to(device)
    nll = -(score_batch(model, batch, with_values=True)[0] * batch.action_mask).sum(1) / batch.action_mask.sum(1).clamp(
        min=1
    )
    return dict(zip(keys, nll.tolist(), strict=True))


@torch.no_grad()
def _policy_target_kl(model, target_policy, rl: Batch | None) -> float:
    """KL(policy || target) on the update's own samples, per token."""
    if rl is None:
        return 0.0
    policy_lp = score_batch(model, rl, with_values=True)[0]
    target_lp = score_batch(target_policy, rl)
    return float(masked_mean(policy_lp - target_lp, rl.action_mask))


def _metrics(debates, stats, segments, rl, values, returns, kl) -> dict[str, float]:
    n = len(debates)
    rewards = [d.rewards for d in debates]
    accuracies = [a for a in (judge_accuracy(d) for d in debates) if a is not None]
    human_nodes = model_nodes = subquestions = 0
    for d in debates:
        for trace in d.traces():
            for node in trace.walk():
                if node.op:
                    continue
                human_nodes += node.human_calls
                model_nodes += node.source.startswith("model:")
                subquestions += node.posed.kind == "answer"
    explained_variance = float("nan")
    if rl is not None:
        m = rl.action_mask > 0
        var_returns = returns[m].var()
        explained_variance = float(1 - (returns[m] - values[m]).var() / var_returns) if var_returns > 0 else 0.0
    return {
        "objective/reward_even": _mean([r["even"] for r in rewards]),
        "objective/reward_odd": _mean([r["odd"] for r in rewards]),
        "objective/catastrophe_cost": _mean([c.value for d in debates for c in d.costs]),
        "objective/kl": float(kl.sum(1).mean()) if kl is not None else float("nan"),  # none: not a zero KL
        "objective/sup_loss": _token_mean(stats),
        "policy/approx_kl": _mean(stats.get("approx_kl", [])),
        "policy/clipfrac": _mean(stats.get("clipfrac", [])),
        "policy/entropy": _mean(stats.get("entropy", [])),
        "loss/policy": _mean(stats.get("pg_loss", [])),
        "loss/value": _mean(stats.get("v_loss", [])),
        "loss/total": _mean(stats.get("total", [])),
        "value/explained_variance": explained_variance,
        "debate/mean_turns": _mean([len(d.turns) for d in debates]),
        "debate/continue0_rate": _mean([float(bool(d.continues and d.continues[0].value)) for d in debates]),
        "debate/even_win_rate": _mean([float(d.winner is not None and d.winner.value == "even") for d in debates]),
        "debate/judge_accuracy": _mean(accuracies),
        "debate/forfeit_rate": _mean([float(d.forfeit is not None) for d in debates]),
        **{f"debate/{k}": v for k, v in parse_rates(debates).items()},
        "debate/count": float(n),
        "amp/human_call_fraction": human_nodes / max(1, human_nodes + model_nodes),
        "amp/subquestions": float(subquestions),
        "rl/segments": float(len(segments)),
    }


def _gather(accelerator, metrics: dict[str, float]) -> dict[str, float]:
    """Average every scalar over processes (NaN where a process had none), once per update."""
    if accelerator.num_processes == 1:
        return metrics
    keys = sorted(metrics)
    local = torch.tensor([metrics[k] for k in keys], device=accelerator.device, dtype=torch.float64)
    gathered = accelerator.gather(local.unsqueeze(0))
    return {k: float(torch.nanmean(gathered[:, i])) for i, k in enumerate(keys)}


def _transcript_text(debates: list[Debate]) -> str:
    lines = []
    for d in debates:
        lines.append(f"**{render_question(d.question)}** (gold {d.question.gold})  ")
        for t, turn in enumerate(d.turns):
            lines.append(f"{t} {turn.side}: `{turn.text}`  ")
        lines.append(f"verdict: {None if d.winner is None else d.winner.value}\n")
    return "\n".join(lines)
