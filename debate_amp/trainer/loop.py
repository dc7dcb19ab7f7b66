"""The training loop: PPO (or Lagrangian constrained PPO) on debates, mixed with supervised imitation.

One update, as in DESIGN.md section 1 (``train`` calls one function per step; each returns a small record):
  1. rollout     debates of Amp~(H, M) judged by Amp~(H, M_target), all questions under one event loop, and
                 Amp~(H, M)'s answers to training questions                                 collect -> Rollout
     adversary   (sampler.kind: adversary) Adv(q, a) learns from the nodes the trees labelled   update_adversary
  2. rewards     side rewards +1 / -1, minus catastrophe_coef * cost_t, minus the per-token KL to the reference
  3. advantages  values and reference log-probs of every RL segment, GAE, whitening   score_rollout -> ScoredBatch
  4. optimise    PPO epochs over minibatches: L_rl (clipped policy + value loss) combined with L_sup by the
                 objective's mode (debate_amp.trainer.modes)                             optimise -> UpdateStats
  5. target      M_target follows M (hard copy every sync_every updates, or EMA with tau)       follow_policy
  6. log         accelerate's trackers (TensorBoard by default), metrics.jsonl, transcripts, progress bar
                                                                                       update_metrics, adapt
  7. faults      a non-finite loss skips the update; checkpoints every save_every updates, on SIGINT / SIGTERM and
                 at the end                                                                 checkpoint_if_due
Setup (:func:`_setup`: A[0], the models, the agents) builds a :class:`Run` once and a :class:`TrainState`, the one
object checkpoints save (debate_amp.trainer.state); before the first update of a fresh run the adversary, if any,
warms up on A[0]'s drafts of the warm start's examples (:func:`warm_up_adversary`). The math lives in
``debate_amp.objectives``.
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
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from accelerate.utils import DistributedDataParallelKwargs, gather_object
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from debate_amp.adversary import Adversary, AdversaryExample, labelled_nodes
from debate_amp.agents.humans import Human, build_human
from debate_amp.agents.labels import LabelStore
from debate_amp.agents.model_agent import ModelAgent
from debate_amp.agents.wiring import recipe_amp, recipe_generate_fn, recipe_model_agent, recipe_sampler
from debate_amp.combinators import AdversarialAmp, Amp
from debate_amp.config import (
    PRETRAIN_SUBDIR,
    AnnealConfig,
    Config,
    ConfigError,
    TrainerConfig,
    config_to_dict,
    pretrain_config,
    save_config,
)
from debate_amp.debate.engine import Debate, ScriptedDebater, run_debates
from debate_amp.debate.transcript import debate_to_record, write_transcripts
from debate_amp.durable import write_whole, written_whole
from debate_amp.eval.final import final_evaluation
from debate_amp.eval.heldout import beyond_name, evaluate_heldout
from debate_amp.models import (
    FRESH_STUDENT_SEED,
    ValueHead,
    apply_lora,
    build_tiny_model,
    hidden_size_of,
    load_model,
)
from debate_amp.objectives import (
    AdaptiveKLController,
    FixedKLController,
    gae,
    kl_penalty,
    masked_mean,
    policy_loss,
    supervised_nll,
    token_rewards,
    value_loss,
    whiten,
)
from debate_amp.protocol import UNKNOWN, Posed, Reply
from debate_amp.samplers import Budget, Sampler
from debate_amp.schedules import Schedule
from debate_amp.target import is_peft, make_target_and_reference, sync_target
from debate_amp.tasks import Task, make_task
from debate_amp.trainer import checkpoint
from debate_amp.trainer.metrics import (
    debate_metrics,
    gather,
    liar_metrics,
    mean,
    optimisation_metrics,
    record,
    transcript_text,
    unanswered,
)
from debate_amp.trainer.modes import ObjectiveMode, objective_mode
from debate_amp.trainer.rollout import (
    Batch,
    SupervisedExample,
    amplification_examples,
    amplify,
    make_batch,
    policy_segments,
    replaced_steps,
    supervised_batch,
    supervised_examples,
)
from debate_amp.trainer.rollout import (
    amplified as is_amplified,
)
from debate_amp.trainer.rundir import RunPlan, apply_plan, flatten_recipe, plan_run_dir
from debate_amp.trainer.sft import gc_frozen, run_sft, seed_everything, warm_start_examples
from debate_amp.trainer.state import TrainState, restore_state, save_state

# ---------------------------------------------------------------------------------------------------------------
# The policy with its value head, and frozen scoring passes


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


# ---------------------------------------------------------------------------------------------------------------
# Records: what a run builds once, and what each step of an update hands to the next


@dataclass
class Run:
    """What a run builds once (:func:`_setup`) and every update uses."""

    cfg: Config
    accelerator: Any
    model: Any  # the PolicyWithValue as accelerate prepared it (DDP / DeepSpeed / FSDP); TrainState.model unwrapped
    ref_policy: nn.Module
    tokenizer: Any
    task: Task
    store: LabelStore
    human: Human
    debater: Amp | AdversarialAmp  # Amp~(H, M): the arguments
    judge: Amp | AdversarialAmp  # Amp~(H, M_target): continue_t, the winner, the catastrophe costs
    amplifier: Amp | AdversarialAmp  # Amp~(H, M) with M greedy: the answers distilled in step 4
    amplifier_agent: ModelAgent  # that M
    mode: ObjectiveMode
    schedules: dict[str, Schedule]  # weight (the mode's annealed parameter), force_stop_p, learning_rate
    rng: random.Random  # questions
    rehearsal_pool: list[Any]  # the warm start's examples, rehearsed every update (and the adversary's warm-up)
    questions: int  # this process's share of each update's debates, amplified questions and curriculum probe
    amp_questions: int
    probe_questions: int
    started: float  # perf_counter when train() began
    # seconds since then that were not training: the warm start's data preparation, evaluation and saving, and the
    # held-out evaluations of the updates (perf/train_s leaves them out, as the warm start's own clock does)
    untimed: float = 0.0
    # trainer.student: fresh: Amp~(H, M_target) with M_target held at A[0], greedy, and that A[0], the amplifier
    # until M takes over (None otherwise)
    a0_amplifier: Amp | AdversarialAmp | None = None
    a0_agent: ModelAgent | None = None


@dataclass
class Knobs:
    """This update's annealed values (``objective.anneal``, ``debate.force_stop_anneal``, ``trainer.lr_anneal``) and
    the Lagrange multiplier in force (constrained: it weights this update's L_sup, and moves only after it)."""

    weight: float  # alpha (weighted), the limit (constrained) or the reward coefficient (reward)
    force_stop_p: float
    learning_rate: float
    lagrange_multiplier: float

    ANNEALED: ClassVar[tuple[str, ...]] = ("weight", "force_stop_p", "learning_rate")


@dataclass
class Rollout:
    """Step 1: debates of Amp~(H, M) judged by Amp~(H, M_target), and Amp~(H, M)'s answers to training questions."""

    debates: list[Debate]  # self-play
    amp_questions: list[Any]
    amplified: list[Reply]  # Amp~(H, M)'s answers to amp_questions, distilled in step 4
    probe: list[Any]  # one level deeper than the curriculum's depth: amplified, scored, never distilled
    probed: list[Reply]
    agreement: float  # M's direct answer equal to the amplified one (no gold used); NaN without targets
    human_calls: int
    rollout_s: float
    amplify_s: float
    human_timeouts: int = 0  # questions real people left unanswered past human.timeout_s (the draft stood in)
    liar_debates: list[Debate] = field(default_factory=list)  # against the scripted liar (debate.liar_fraction)
    # trainer.student: fresh, before M takes over: M's and A[0]'s direct answers equal to the amplified ones, on the
    # same targets of every depth, and their drafts of the steps the human answered in place of A[0]'s draft equal
    # to the human's (NaN otherwise: the step's NaN also where the human makes every step)
    student_agreement: float = float("nan")
    a0_agreement: float = float("nan")
    student_step_agreement: float = float("nan")
    a0_step_agreement: float = float("nan")

    def all_debates(self) -> list[Debate]:
        """Every debate the update learns from: self-play and those against the scripted liar."""
        return self.debates + self.liar_debates


@dataclass
class ScoredBatch:
    """Steps 2 and 3: the RL segments as a batch with their rewards' advantages and returns, and the supervised
    examples as a batch. The RL fields are None when no debate had a segment to learn from."""

    segments: list[Any]
    sup: Batch | None
    n_targets: int  # this update's amplified answers distilled (amp.reuse_previous's previous ones not counted)
    rehearsal_calls: int  # human calls the rehearsed examples cost (0 when this run's warm start paid for them)
    limit: float  # the constraint on L_sup (constrained mode), else NaN
    rl: Batch | None = None
    old_logprobs: torch.Tensor | None = None
    old_values: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    kl: torch.Tensor | None = None


@dataclass
class UpdateStats:
    """Step 4: the minibatches' statistics (lists by name), whether a non-finite loss skipped the update, its time."""

    stats: dict[str, list[float]]
    skipped: bool
    update_s: float


# ---------------------------------------------------------------------------------------------------------------
# The loop


WARM_UP_PASSES = 4
"""Passes (in minibatch steps drawn with replacement) the adversary makes over its warm-up examples."""

TAKEOVER_TARGETS = 512
"""``trainer.student: fresh``: the amplified answers (the first of each process's update) on which M's and A[0]'s
direct answers are compared to decide the takeover."""


class TrainingDiverged(RuntimeError):
    """``max_bad_updates`` updates in a row had a non-finite loss; the message names the last good checkpoint."""


class _PretrainInterrupted(Exception):
    """The ``pretrain`` stage stopped before its end (a signal): so does the run, to be continued with --resume."""


def train(
    cfg: Config, progress: bool = True, *, resume: bool = False, overwrite: bool = False, stage: bool = False
) -> dict[str, Any]:
    """Run a recipe. ``resume`` continues from the run directory's latest whole checkpoint; ``overwrite`` deletes
    the run directory first; ``stage``: another run follows in this process (``pretrain``), so the end closes the
    trackers but not the process group. Raises :class:`~debate_amp.trainer.rundir.RunDirError` (before any work)
    when the directory holds another run, :class:`~debate_amp.config.ConfigError` (before any work) when accelerate
    cannot use a tracker in ``run.log_with``, and :class:`TrainingDiverged` after ``max_bad_updates`` non-finite
    updates."""
    plan = plan_run_dir(cfg, resume=resume, overwrite=overwrite)  # read-only: every process, before any work
    try:
        run, state = _setup(cfg, plan, progress)
    except _PretrainInterrupted:  # the stage said where it stopped and how to continue
        return {"interrupted": True, "update": 0, "run_dir": cfg.run_dir}
    with gc_frozen():  # what the setup built lives the whole run: out of the collector's full passes
        main = run.accelerator.is_main_process
        log = _Log(run, progress)
        interrupt = _Interrupt()
        bad_in_a_row, interrupted = 0, False
        warm_up = warm_up_adversary(run, state) if state.update == 0 else {}  # a fresh run's adversary, before update 1
        for update in log.bar(state.update):
            knobs = _knobs(run, state, update)
            rollout = collect(run, state, knobs)  # 1. debates and amplified answers
            adversary = update_adversary(run, state, rollout)  # the adversary learns from the nodes they labelled
            scored = score_rollout(run, state, rollout, knobs)  # 2. rewards and 3. advantages
            result = optimise(run, state, scored, knobs)  # 4. PPO epochs, L_rl and L_sup combined by the mode
            if not result.skipped:
                follow_policy(run, state, update)  # 5. M_target follows M
            state.update = update + 1
            metrics = update_metrics(run, state, knobs, rollout, scored, result)  # 6. log (pooled over processes)
            metrics |= adversary | warm_up  # the same on every process
            warm_up = {}
            adapt(run, state, scored, result, metrics)  # lambda, the KL coefficient, the curriculum's depth
            log.write(state, metrics, rollout.debates, knobs, rollout.liar_debates)
            # 7. Faults and checkpoints: a skipped update is never saved; max_bad_updates in a row stop the run.
            if result.skipped:
                bad_in_a_row += 1
                _warn_skipped(run, state, bad_in_a_row)
                if bad_in_a_row >= cfg.trainer.max_bad_updates:
                    _close(run, log, interrupt, stage)
                    raise _diverged(run, state, bad_in_a_row)
                if interrupted := _any_process(run.accelerator, interrupt.requested):
                    break  # a skipped update is not saved: the last good checkpoint stays the one to resume
                continue
            bad_in_a_row = 0
            stop = checkpoint_if_due(run, state, interrupt)
            if stop:
                interrupted = stop == "interrupted"
                break
        summary = _interrupted(run, state) if interrupted else _finish(run, state, progress)
        _close(run, log, interrupt, stage)
        return summary if main else {}


def _knobs(run: Run, state: TrainState, update: int) -> Knobs:
    """The annealed values at this point of training; sets the learning rate and opens the sampler's budget."""
    updates = run.cfg.trainer.updates
    progress = update / max(1, updates - 1) if updates > 1 else 0.0
    weight, force_stop_p, learning_rate = (run.schedules[name](progress) for name in Knobs.ANNEALED)
    knobs = Knobs(weight, force_stop_p, learning_rate, state.lagrange_multiplier)
    for group in state.optimizer.param_groups:
        group["lr"] = knobs.learning_rate
    if isinstance(state.sampler, Budget):
        state.sampler.new_update()
    return knobs


# ---------------------------------------------------------------------------------------------------------------
# The steps of one update


def collect(run: Run, state: TrainState, knobs: Knobs) -> Rollout:
    """1. Rollout: debates of Amp~(H, M), judged by Amp~(H, M_target), all questions under one event loop; and
    Amp~(H, M)'s answers to training questions, distilled in step 4. With the curriculum (``amp.curriculum``), past
    depth 0 those questions are drawn from depths 1..d (at depth 0 Amp~ adds only the human's own answers, which the
    rehearsal already teaches, and M's direct replies are not distilled), and a probe one level deeper is amplified
    and scored against gold to decide when to go deeper."""
    cfg, task, rng = run.cfg, run.task, run.rng
    calls_before, timeouts_before = run.human.calls, run.human.timeouts
    t0 = time.perf_counter()
    questions = [task.sample(rng) for _ in range(run.questions)]
    sides = _liar_sides(task, rng, len(questions), cfg.debate.liar_fraction)
    state.model.eval()
    debates = run_debates(
        questions,
        run.debater,
        run.judge,
        cfg.debate.max_turns,
        knobs.force_stop_p,
        seed=rng.randrange(2**31),
        forfeit_unparsed=cfg.debate.forfeit_unparsed,
        sides=sides,
    )
    liar_debates = [d for d in debates if d.scripted is not None]
    debates = [d for d in debates if d.scripted is None]
    rollout_s = time.perf_counter() - t0
    curriculum = cfg.amp.curriculum
    depth, lowest = (state.amp_depth, min(1, state.amp_depth)) if curriculum else (None, 0)
    amplifier, amplifier_agent = current_amplifier(run, state)
    n_hardest = round(cfg.sampler.adversary_questions * run.amp_questions) if state.adversary is not None else 0
    amp_questions = [task.sample(rng, max_depth=depth, min_depth=lowest) for _ in range(run.amp_questions - n_hardest)]
    if n_hardest:  # references/000: "from the training distribution or from the output of some adversary"
        pool = [
            task.sample(rng, max_depth=depth, min_depth=lowest) for _ in range(n_hardest * cfg.sampler.adversary_pool)
        ]
        amp_questions += _hardest(amplifier_agent, state.adversary, pool, n_hardest)
    probe = task.at_depth(rng, state.amp_depth + 1, run.probe_questions) if curriculum else []
    replies = amplify(amp_questions + probe, amplifier) if amp_questions or probe else []
    amplified, probed = replies[: len(amp_questions)], replies[len(amp_questions) :]
    agreement = _agreement(run.amplifier_agent, amplified, amp_questions, state.amp_depth)
    student_agreement = a0_agreement = student_step_agreement = a0_step_agreement = float("nan")
    if run.a0_agent is not None and state.takeover is None:  # trainer.student: fresh, A[0] still amplifying
        student_agreement = _agreement(run.amplifier_agent, amplified, amp_questions, None, TAKEOVER_TARGETS)
        a0_agreement = _agreement(run.a0_agent, amplified, amp_questions, None, TAKEOVER_TARGETS)
        student_step_agreement, a0_step_agreement = _step_agreements(run.amplifier_agent, amplified, TAKEOVER_TARGETS)
    state.model.train()
    amplify_s = time.perf_counter() - t0 - rollout_s
    human_calls, timeouts = run.human.calls - calls_before, run.human.timeouts - timeouts_before
    return Rollout(
        debates,
        amp_questions,
        amplified,
        probe,
        probed,
        agreement,
        human_calls,
        rollout_s,
        amplify_s,
        timeouts,
        liar_debates,
        student_agreement,
        a0_agreement,
        student_step_agreement,
        a0_step_agreement,
    )


def _liar_sides(task: Task, rng: random.Random, n: int, fraction: float) -> list[tuple[Any, Any]] | None:
    """Who replaces a side in each of the update's ``n`` debates (``debate.liar_fraction``): the task's scripted
    liar in ``round(fraction * n)`` of them, on the even side and the odd side in turn; None (self-play throughout,
    and ``rng`` untouched) at 0."""
    n_liar = round(fraction * n)
    if not n_liar:
        return None
    liar = ScriptedDebater(task.liar(seed=rng.randrange(2**31)))
    return [((liar, None) if i % 2 == 0 else (None, liar)) if i < n_liar else (None, None) for i in range(n)]


def warm_up_adversary(run: Run, state: TrainState) -> dict[str, float]:
    """Before the first update (``sampler.adversary_warm_start``): the adversary learns from the warm start's own
    examples, M's greedy draft of each prompt against the human's reply, so that it does not begin by doubting
    every draft (untrained, it sent 6,176 calls to the human in the bench's first update: docs/adversarial_ida.md).
    Those labels are the warm start's, paid for when this run made A[0]; otherwise each example's calls are charged
    (``adversary/warm_start_human_calls``). Every process drafts the same prompts greedily, so the adversaries stay
    equal. -> the ``adversary/warm_start_*`` scalars for the first update's log."""
    n = run.cfg.sampler.adversary_warm_start
    if state.adversary is None or not n or not run.rehearsal_pool:
        return {}
    examples = run.rehearsal_pool[:n]
    agent, batch = current_amplifier(run, state)[1], run.cfg.amp.max_batch  # batched as everywhere else
    drafts: list[str] = []
    confidence: list[float | None] = []
    state.model.eval()
    for start in range(0, len(examples), batch):
        chunk = examples[start : start + batch]
        limits = [agent.reply_limits.get(e.kind) for e in chunk]
        generation = agent.generate_fn([e.prompt for e in chunk], limits)
        drafts += generation.texts
        confidence += generation.min_logprobs()
    state.model.train()
    labelled = [
        AdversaryExample(e.prompt, d.strip(), d.strip() != e.completion.strip(), lp)
        for e, d, lp in zip(examples, drafts, confidence, strict=True)
    ]
    learned = state.adversary.learn(
        labelled, steps=max(1, WARM_UP_PASSES * len(labelled) // state.adversary.batch_size)
    )
    calls = 0 if run.cfg.trainer.warm_start else sum(e.human_calls for e in examples)
    state.human_calls += calls
    return {
        "adversary/warm_start_examples": float(len(labelled)),
        "adversary/warm_start_wrong_rate": learned["adversary/wrong_rate"],
        "adversary/warm_start_auc": learned["adversary/auc"],
        "adversary/warm_start_confidence_auc": learned["adversary/confidence_auc"],
        "adversary/warm_start_ece": learned["adversary/ece"],
        "adversary/warm_start_human_calls": float(calls),
    }


def update_adversary(run: Run, state: TrainState, rollout: Rollout) -> dict[str, float]:
    """The adversary (``sampler.kind: adversary``, ``references/000``) learns online from every node of this
    update's trees (debates, amplified answers, probes) where M's draft and the human's or the amplified answer are
    both known; one node in five, by a hash of its prompt, is held out for ``adversary/auc`` and ``adversary/ece``.
    Every process learns from every process's nodes, in the same order and steps, so the adversaries stay equal."""
    if state.adversary is None:
        return {}
    traces = [trace for debate in rollout.all_debates() for trace in debate.traces()]
    traces += [reply.trace for reply in rollout.amplified + rollout.probed]
    examples = [example for trace in traces for example in labelled_nodes(trace)]
    if run.accelerator.num_processes > 1:
        examples = gather_object(examples)
    return state.adversary.learn(examples)


def score_rollout(run: Run, state: TrainState, rollout: Rollout, knobs: Knobs) -> ScoredBatch:
    """2. Rewards: the terminal side reward minus catastrophe_coef * cost_t (the reward mode also folds in the
    arguments' imitation distance), and the per-token KL penalty to the reference. 3. Advantages: values and
    reference log-probs of every RL segment, GAE over its tokens, whitened over the update. The supervised examples
    (the debates' amplified outputs, the amplified answers, the rehearsal) become one batch beside them."""
    cfg, o, device = run.cfg, run.cfg.objective, run.accelerator.device
    debates = rollout.all_debates()
    segments = policy_segments(debates, o.catastrophe_coef, skip_uncontested=True)
    t = cfg.trainer
    balance_rng = run.rng if cfg.amp.balance_depths else None  # amp.balance_depths: the subanswers thinned out
    amp_examples = amplification_examples(rollout.amplified, t.imitate_human, balance_rng)
    n_targets = sum(e.kind == "amplified" for e in amp_examples)  # this update's own
    if cfg.amp.reuse_previous:  # the previous update's examples again, this update's kept for the next
        amp_examples, state.previous_examples = amp_examples + state.previous_examples, amp_examples
    rehearsed, rehearsal_calls = _rehearsal(
        run.rehearsal_pool, t.rehearsal_examples, state.update, run.accelerator, paid=t.warm_start
    )
    examples = supervised_examples(debates, t.imitate_human) + amp_examples
    examples += [SupervisedExample(e.prompt, e.completion, f"rehearsal:{e.kind}") for e in rehearsed]
    sup = supervised_batch(run.tokenizer, examples).to(device) if examples else None
    scored = ScoredBatch(
        segments,
        sup,
        n_targets=n_targets,
        rehearsal_calls=rehearsal_calls,
        limit=run.mode.limit(state, lambda: _sup_loss(run, state, sup), knobs.weight),
    )
    if not segments:
        return scored
    rl = make_batch(
        run.tokenizer, [sg.prompt for sg in segments], [sg.response_ids for sg in segments], run.tokenizer.pad_token_id
    ).to(device)
    old_logprobs, old_values = score_batch(state.model, rl, with_values=True)
    mask = rl.action_mask
    kl = torch.where(mask > 0, kl_penalty(old_logprobs, score_batch(run.ref_policy, rl), o.kl.estimator), 0.0)
    terminal = torch.tensor([sg.reward for sg in segments], device=old_logprobs.device)
    terminal = run.mode.reward(terminal, lambda: _segment_distances(run, state, debates, segments), knobs.weight)
    rewards = token_rewards(terminal, kl, mask, state.kl_ctl.value)
    advantages, returns = gae(rewards, old_values, mask, cfg.trainer.gamma, cfg.trainer.gae_lambda)
    if cfg.trainer.whiten_advantages and mask.sum() >= 2:
        advantages = whiten(advantages, mask)
    return replace(
        scored, rl=rl, old_logprobs=old_logprobs, old_values=old_values, advantages=advantages, returns=returns, kl=kl
    )


def optimise(run: Run, state: TrainState, scored: ScoredBatch, knobs: Knobs) -> UpdateStats:
    """4. Optimise: PPO epochs over minibatches, L_rl combined with L_sup by the objective's mode. Every process
    takes the same number of steps; a non-finite loss on any of them skips the rest of the update."""
    cfg, accelerator = run.cfg, run.accelerator
    t0 = time.perf_counter()
    stats: dict[str, list[float]] = {}
    n_rl = len(scored.segments)
    n_sup = len(scored.sup) if scored.sup is not None else 0
    t = cfg.trainer
    if not _any_process(accelerator, n_rl + n_sup > 0):  # nothing to learn from anywhere (e.g. no human was asked)
        return UpdateStats(stats, False, time.perf_counter() - t0)
    # RL minibatches hold minibatch_size segments however many imitation examples there are: spreading the segments
    # over every step instead (as before 2026-12-03) took ~20 times as many PPO steps on them as minibatch_size says
    # whenever the imitation examples outnumbered them, an approx_kl near 1 an update (docs/training.md).
    rl_steps = _max_over_processes(accelerator, math.ceil(n_rl / t.minibatch_size))
    n_minibatches = _max_over_processes(accelerator, max(1, rl_steps, math.ceil(n_sup / t.sup_minibatch_size)))
    rl_step_at = {j * n_minibatches // rl_steps: j for j in range(rl_steps)}  # spread evenly over the epoch
    imitation_counts = run.mode.sup_weight(knobs.weight, state) > 0
    for _epoch in range(t.ppo_epochs):
        rl_order = torch.randperm(n_rl) if n_rl else None
        sup_order = _by_length(scored.sup.attention_mask.sum(1), n_minibatches) if scored.sup is not None else None
        for mb in range(n_minibatches):
            j = rl_step_at.get(mb)
            sup_rows = _rows(sup_order, mb, n_minibatches)
            if j is None and not imitation_counts:  # nothing to learn here: L_sup measured (logs, constraint) only
                with torch.no_grad():
                    _imitation_loss(run, scored, sup_rows, stats)
                continue
            rl_loss, anchor = _rl_loss(run, scored, _rows(rl_order, j, rl_steps) if j is not None else None, stats)
            sup_loss, sup_anchor = _imitation_loss(run, scored, sup_rows, stats)
            anchor = anchor + sup_anchor  # touches every parameter (DDP needs them all)
            if anchor.grad_fn is None:  # nothing of this process's in this minibatch
                anchor = _idle_pass(run, scored)
            loss = run.mode.loss(rl_loss, sup_loss, knobs.weight, state) + anchor
            if not _step(run, state, loss):
                return UpdateStats(stats, True, time.perf_counter() - t0)
            record(stats, total=loss)
    return UpdateStats(stats, False, time.perf_counter() - t0)


def follow_policy(run: Run, state: TrainState, update: int) -> None:
    """5. Target: M_target follows M, a hard copy every ``sync_every`` updates or an EMA step every update (with
    ``trainer.student: fresh``, once M has taken over from A[0]: :func:`adapt`)."""
    if run.a0_agent is not None and state.takeover is None:
        return
    target = run.cfg.target
    if target.mode == "hard" and (update + 1) % target.sync_every == 0:
        sync_target(state.model.policy, state.target_policy, "hard")
    elif target.mode == "ema":
        sync_target(state.model.policy, state.target_policy, "ema", target.tau)
    else:
        return
    state.target_updates += 1


def update_metrics(
    run: Run, state: TrainState, knobs: Knobs, rollout: Rollout, scored: ScoredBatch, result: UpdateStats
) -> dict[str, float]:
    """6. Log: this update's scalars (docs/training.md lists the tags), the run's over every process (shares and
    means pooled, counts and throughputs summed: :func:`~debate_amp.trainer.metrics.gather`)."""
    n_targets = scored.n_targets
    metrics = {
        **debate_metrics(rollout.debates),
        **(liar_metrics(rollout.liar_debates) if run.cfg.debate.liar_fraction else {}),
        **optimisation_metrics(result.stats, scored),
        "objective/force_stop_p": knobs.force_stop_p,
        "objective/kl_coef": state.kl_ctl.value,
        "amp/human_calls": float(rollout.human_calls),
        "amp/human_timeouts": float(rollout.human_timeouts),
        "rehearsal/human_calls": float(scored.rehearsal_calls),  # 0 when the warm start paid for them
        "amp/targets": float(n_targets),
        "amp/target_accuracy": _accuracy(rollout.amplified, rollout.amp_questions),
        "amp/teacher_accuracy": _accuracy(rollout.amplified, rollout.amp_questions, depth=state.amp_depth),
        "amp/probe_accuracy": _accuracy(rollout.probed, rollout.probe),
        "amp/unanswered": unanswered(rollout.amplified),  # no gold: M's steps broke when this jumps
        "amp/depth": float(state.amp_depth),
        "amp/agreement": rollout.agreement,
        "amp/student_agreement": rollout.student_agreement,
        "amp/a0_agreement": rollout.a0_agreement,
        "amp/student_step_agreement": rollout.student_step_agreement,
        "amp/a0_step_agreement": rollout.a0_step_agreement,
        "target/updates": float(state.target_updates),
        "target/policy_target_kl": _policy_target_kl(state.model, state.target_policy, scored.rl),
        "perf/rollout_s": rollout.rollout_s,
        "perf/amplify_s": rollout.amplify_s,
        "perf/amp_targets_per_s": n_targets / rollout.amplify_s if rollout.amplified else float("nan"),
        "perf/update_s": result.update_s,
        "perf/debates_per_s": len(rollout.all_debates()) / max(rollout.rollout_s, 1e-9),
        # the RL segments' tokens (prompt and response, no padding) once per PPO epoch, per second of the whole of
        # step 4 (its supervised minibatches too): 0 without RL segments
        "perf/tokens_per_s": (float(scored.rl.attention_mask.sum()) if scored.rl is not None else 0.0)
        * run.cfg.trainer.ppo_epochs
        / max(result.update_s, 1e-9),
        "train/skipped": float(result.skipped),
    }
    metrics = gather(run.accelerator, metrics)
    # the constraint's violation of the pooled L_sup, which the multiplier moves on (the limit is the same everywhere)
    return metrics | run.mode.tags(knobs.weight, scored.limit, metrics["objective/sup_loss"])


def adapt(run: Run, state: TrainState, scored: ScoredBatch, result: UpdateStats, metrics: dict[str, float]) -> None:
    """What moves on the averaged numbers, so that every process agrees: the mode's multiplier, the adaptive KL
    coefficient, the curriculum's depth and (``trainer.student: fresh``) M's takeover from A[0] (not after a skipped
    update), and the run's count of human calls."""
    if not result.skipped:
        if _takes_over(metrics):
            sync_target(state.model.policy, state.target_policy, "hard")  # M_target := M; Amp~(H, M) from now on
            state.target_updates += 1
            state.takeover = state.update
        run.mode.after_update(state, metrics["objective/sup_loss"], scored.limit)
        if metrics["rl/segments"] > 0 and not math.isnan(metrics["objective/kl"]):
            # the KL averaged over the processes that had segments; the step counts every process's segments
            state.kl_ctl.update(metrics["objective/kl"], int(metrics["rl/segments"]))
        amp = run.cfg.amp
        if amp.curriculum and metrics["amp/probe_accuracy"] >= amp.curriculum_threshold:
            state.amp_depth = min(state.amp_depth + 1, run.task.max_depth)
    metrics["constraint/lagrange_multiplier"] = state.lagrange_multiplier
    state.human_calls += int(metrics["amp/human_calls"] + metrics["rehearsal/human_calls"])


def checkpoint_if_due(run: Run, state: TrainState, interrupt: _Interrupt) -> str | None:
    """7. Checkpoints every ``save_every`` updates, at the last, on a signal and when ``max_minutes`` runs out; says
    why the loop stops (``interrupted``, ``out of time``) or None. A signal to any process stops every one."""
    cfg, accelerator = run.cfg, run.accelerator
    interrupted = _any_process(accelerator, interrupt.requested)
    max_minutes = cfg.trainer.max_minutes
    out_of_time = max_minutes is not None and _any_process(
        accelerator, time.perf_counter() - run.started > 60 * max_minutes
    )
    final_update = state.update == cfg.trainer.updates or out_of_time
    if interrupted or final_update or state.update % cfg.trainer.save_every == 0:
        save_state(cfg.run_dir / "checkpoints", accelerator, state, cfg)
    if interrupted:
        return "interrupted"
    if out_of_time:
        if accelerator.is_main_process:
            print(f"\ntrainer.max_minutes={max_minutes} reached after update {state.update}: training stops here")
        return "out of time"
    return None


# ---------------------------------------------------------------------------------------------------------------
# Setup: the accelerator, A[0] and the models, the agents, the state


def _setup(cfg: Config, plan: RunPlan, progress: bool) -> tuple[Run, TrainState]:
    """Everything before the first update: the accelerator and trackers, the run directory, A[0] (trained here
    unless on disk), the value head, the reference and target policies, the optimizer, the human and the agents,
    and the state (restored from ``plan.resume_from`` when resuming)."""
    started = time.perf_counter()
    if not progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Writing model shards" when saving
    accelerator = _accelerator(cfg)
    if cfg.run.torch_threads:
        torch.set_num_threads(cfg.run.torch_threads)
    seed_everything(cfg.run.seed + accelerator.process_index)
    rank = accelerator.process_index
    if accelerator.is_main_process:
        apply_plan(plan)
        if plan.note:
            print(f"debate-amp: {plan.note}", flush=True)
        save_config(cfg, cfg.run_dir / "config.yaml")
    accelerator.wait_for_everyone()
    policy, target_policy, ref_policy, tokenizer, warm_start = _models(cfg, accelerator, progress)
    model = PolicyWithValue(policy, ValueHead(hidden_size_of(policy)))
    optimizer = build_optimizer(model, cfg.trainer)
    prepared, optimizer = accelerator.prepare(model, optimizer)
    for frozen in (ref_policy, target_policy):
        if isinstance(frozen, nn.Module):
            frozen.to(accelerator.device)
    unwrapped: PolicyWithValue = accelerator.unwrap_model(prepared)

    task = make_task(cfg)
    # real people answer one queue: every process shares the run's store (or human.store); else one store a rank
    shared = rank == 0 or cfg.human.people
    # people's answers are flushed to the disk one by one; a machine's are committed (a kill -9 loses none)
    labels_path = cfg.run_dir / ("labels.sqlite" if shared else f"labels.rank{rank}.sqlite")
    store = LabelStore(labels_path, fsync=cfg.human.people)
    human = build_human(cfg.human, task, seed=cfg.run.seed + rank, store=store)
    # the rehearsal's pool: the warm start's own examples (paid for by the warm start when this run made it); the
    # adversary's warm-up draws from it too
    warm_up = cfg.sampler.kind == "adversary" and cfg.sampler.adversary_warm_start > 0
    rehearsal_pool: list[Any] = []
    if cfg.trainer.rehearsal_examples or warm_up:
        rehearsal_pool = warm_start.examples if warm_start is not None else warm_start_examples(cfg)
    adversary = None
    if cfg.sampler.kind == "adversary":  # the same initial weights and minibatches on every process
        kwargs = {"steps": cfg.sampler.adversary_steps, "seed": cfg.run.seed, "device": accelerator.device}
        path = cfg.sampler.adversary_path
        adversary = Adversary(**kwargs) if path is None else Adversary.load(path, **kwargs)
    # one sampler for the debaters, the judge and the amplifier
    sampler = recipe_sampler(cfg, seed=cfg.run.seed + rank, adversary=adversary)
    g = cfg.generation
    debater_agent = recipe_model_agent(
        cfg, recipe_generate_fn(cfg, unwrapped.policy, tokenizer, g.temperature, g.top_p), "policy"
    )
    judge_agent = recipe_model_agent(
        cfg, recipe_generate_fn(cfg, target_policy, tokenizer, cfg.target.temperature), "target"
    )
    amplifier_agent = recipe_model_agent(
        cfg, recipe_generate_fn(cfg, unwrapped.policy, tokenizer, cfg.amp.temperature), "policy"
    )
    a0_agent = a0_amplifier = None
    if cfg.trainer.student == "fresh":  # M_target is A[0] until M takes over, and amplifies with the human till then
        a0_agent = recipe_model_agent(
            cfg, recipe_generate_fn(cfg, target_policy, tokenizer, cfg.amp.temperature), "target"
        )
        a0_amplifier = recipe_amp(cfg, human.agent, a0_agent, sampler, cfg.amp.levels)
    mode = objective_mode(cfg.objective)
    o = cfg.objective
    kl_ctl = (
        AdaptiveKLController(o.kl.coef, o.kl.target, o.kl.horizon) if o.kl.adaptive else FixedKLController(o.kl.coef)
    )
    rng = random.Random(cfg.run.seed * 1000 + rank)
    generators = {"questions": rng, "sampler": _sampler_rng(sampler), "human": human.rng}
    generators["adversary"] = adversary.rng if adversary is not None else None
    # Every answer in the store is a call of this run's human (which a resume counts: TrainState.labels) where it
    # is the run's own (people's on the main process only: every process shares it), not one named by
    # human.store, nor one that replayed labels go into.
    own_answers = cfg.human.kind != "replay" and cfg.human.store is None and (rank == 0 or not cfg.human.people)
    state = TrainState(
        model=unwrapped,
        target_policy=target_policy,
        optimizer=optimizer,
        kl_ctl=kl_ctl,
        sampler=sampler,
        generators={name: rng_ for name, rng_ in generators.items() if rng_ is not None},
        lagrange_multiplier=o.lagrange_init,
        amp_depth=min(cfg.amp.start_depth, task.max_depth),
        adversary=adversary,
        labels=store if own_answers else None,
    )
    # The answers a stopped run got after its last checkpoint (or, with none, since its start) are in the store: the
    # updates that redo them find them there and do not ask again, so they are counted here, once.
    if plan.resume_from is not None:
        answered = restore_state(plan.resume_from, accelerator, state)
    else:
        answered = len(store) if own_answers else 0  # a new run's store is empty
    answered = _sum_over_processes(accelerator, answered)
    state.human_calls += answered
    if answered and accelerator.is_main_process:
        since = f"update {state.update}'s checkpoint" if plan.resume_from is not None else "its start"
        print(
            f"debate-amp: --resume: {answered} answers the human gave the stopped run since {since} are in "
            "the label store: counted, not asked again",
            flush=True,
        )
    n = accelerator.num_processes
    run = Run(
        cfg=cfg,
        accelerator=accelerator,
        model=prepared,
        ref_policy=ref_policy,
        tokenizer=tokenizer,
        task=task,
        store=store,
        human=human,
        debater=recipe_amp(cfg, human.agent, debater_agent, sampler),
        judge=recipe_amp(cfg, human.agent, judge_agent, sampler),
        amplifier=recipe_amp(cfg, human.agent, amplifier_agent, sampler, cfg.amp.levels),
        amplifier_agent=amplifier_agent,
        mode=mode,
        schedules={
            "weight": _schedule(o.anneal, mode.start()),
            "force_stop_p": _schedule(cfg.debate.force_stop_anneal, cfg.debate.force_stop_p),
            "learning_rate": _schedule(cfg.trainer.lr_anneal, cfg.trainer.learning_rate),
        },
        rng=rng,
        rehearsal_pool=rehearsal_pool,
        questions=max(1, cfg.trainer.questions_per_update // n),
        amp_questions=-(-cfg.amp.questions_per_update // n),
        probe_questions=-(-cfg.amp.curriculum_probe // n) if cfg.amp.curriculum else 0,
        started=started,
        untimed=warm_start.untimed_seconds if warm_start is not None else 0.0,
        a0_amplifier=a0_amplifier,
        a0_agent=a0_agent,
    )
    names = {"wandb": {"name": cfg.run.name}, "trackio": {"name": cfg.run.name}, "mlflow": {"run_name": cfg.run.name}}
    recipe = {k: v for k, v in flatten_recipe(config_to_dict(cfg)).items() if isinstance(v, (bool, int, float, str))}
    accelerator.init_trackers("debate-amp", config=recipe, init_kwargs=names)  # on the main process only
    return run, state


def _accelerator(cfg: Config):
    """accelerate's Accelerator for this run, with the recipe's trackers (``run.log_with``)."""
    from accelerate import Accelerator
    from accelerate.tracking import TensorBoardTracker

    # TensorBoard by instance so that its events stay in <run>/tensorboard/ (by name, accelerate would put them in
    # <project_dir>/<project name>/); the other trackers by name, under the project "debate-amp".
    trackers = [TensorBoardTracker("tensorboard", cfg.run_dir) if t == "tensorboard" else t for t in cfg.run.log_with]
    # accelerate's DDP kwargs only know torch's older name (forward_sync_buffers); the meaning is the same here
    warnings.filterwarnings("ignore", message=r"`broadcast_buffers` is deprecated", category=FutureWarning)
    # Processes make different numbers of frozen scoring passes (their rollouts differ), so those go through the
    # unwrapped module, and DDP must not broadcast buffers on each forward (the model's are constant rotary tables):
    # every collective then happens the same number of times on every process.
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)],
        log_with=trackers or None,
        project_dir=str(cfg.run_dir),
    )
    # accelerate leaves out, with no error, a tracker whose package it does not find (load_config checked already)
    dropped = [t for t in cfg.run.log_with if t != "tensorboard" and t not in map(str, accelerator.log_with)]
    if dropped:
        raise ConfigError(f"run.log_with: accelerate cannot use {dropped[0]} here (is its package installed?)")
    return accelerator


def _models(cfg: Config, accelerator, progress: bool):
    """-> the policy (A[0], with LoRA when the recipe says; ``trainer.student: fresh``: a new tiny model), the target
    policy and the reference policy (A[0]), the tokenizer, and the warm start's :class:`SftResult` when this run
    trained A[0] (else None). A[0] is the warm start (trained here by every process together unless already on
    disk; from the ``pretrain`` stage's M when the recipe has one) or ``model.path``."""
    a0_dir = cfg.run_dir / cfg.sft.output_subdir
    warm_start = None
    if cfg.trainer.warm_start and not (a0_dir / "config.json").is_file():
        # A[0] imitates the human from the pretraining stage's M when the recipe has one
        start = pretrain(cfg, progress, accelerator.is_main_process) if cfg.pretrain.recipe is not None else None
        warm_start = run_sft(cfg, progress and accelerator.is_main_process, start)  # every process: TRL's DDP
        accelerator.wait_for_everyone()
    # The warm start drew from the global RNGs; a run that finds A[0] already on disk (a restart) must draw the same.
    seed_everything(cfg.run.seed + accelerator.process_index)
    policy, tokenizer = load_model(cfg.model, a0_dir if cfg.trainer.warm_start else cfg.model.path, seed=cfg.run.seed)
    if cfg.model.lora.enabled:
        policy = apply_lora(policy, cfg.model.lora)  # type: ignore[assignment]
    target_policy, ref_policy = make_target_and_reference(policy)
    if cfg.trainer.student == "fresh":  # M from new weights; A[0] stays M_target (until M takes over) and reference
        policy, _ = build_tiny_model(cfg.model, seed=cfg.run.seed + FRESH_STUDENT_SEED)
    return policy, target_policy, ref_policy, tokenizer, warm_start


def pretrain(cfg: Config, progress: bool, main: bool = True) -> Path:
    """``pretrain.recipe``, run on every process unless it has finished (continued from its last checkpoint when it
    has not): -> the directory of its trained M. Raises :class:`_PretrainInterrupted` when it stopped before its
    end."""
    stage_cfg = pretrain_config(cfg)
    stage_dir = stage_cfg.run_dir
    if not (stage_dir / "final.json").is_file():
        if progress and main:
            print(f"debate-amp: pretrain: {cfg.pretrain.recipe} in {stage_dir}, then A[0] from its M", flush=True)
        train(stage_cfg, progress, resume=stage_dir.is_dir(), stage=True)
        if not (stage_dir / "final.json").is_file():
            raise _PretrainInterrupted
    return stage_dir / "model"


def current_amplifier(run: Run, state: TrainState) -> tuple[Amp | AdversarialAmp, ModelAgent]:
    """The amplifier whose answers M is distilled towards, and its model: Amp~(H, M) and M; with ``trainer.student:
    fresh``, Amp~(H, M_target) and M_target (A[0]) until M takes over."""
    if run.a0_amplifier is not None and run.a0_agent is not None and state.takeover is None:
        return run.a0_amplifier, run.a0_agent
    return run.amplifier, run.amplifier_agent


def _sampler_rng(sampler: Sampler) -> random.Random | None:
    """The generator a sampler draws from (a Budget wraps the sampler that draws), for checkpoints."""
    return getattr(getattr(sampler, "inner", sampler), "rng", None)


# ---------------------------------------------------------------------------------------------------------------
# Helpers of the steps


def _rl_loss(run: Run, scored: ScoredBatch, rows: torch.Tensor | None, stats) -> tuple[torch.Tensor, torch.Tensor]:
    """L_rl on the RL batch's ``rows``: the clipped policy loss plus ``vf_coef`` times the clipped value loss; and
    a zero with a gradient path to every parameter (:func:`_zero_weight`). Zeros without rows."""
    zero = torch.zeros((), device=run.accelerator.device)
    if rows is None:
        return zero, zero
    assert scored.rl is not None and scored.old_logprobs is not None and scored.old_values is not None
    assert scored.advantages is not None and scored.returns is not None
    t = run.cfg.trainer
    part = scored.rl[rows].trimmed()  # the update's RL batch is padded to its longest segment
    width = part.action_mask.shape[1]
    logits, values = run.model(part.input_ids, part.attention_mask)
    m = part.action_mask
    old_logprobs, advantages = scored.old_logprobs[rows, :width], scored.advantages[rows, :width]
    pg_loss, clipfrac, approx_kl = policy_loss(
        action_logprobs(logits, part.input_ids), old_logprobs, advantages, m, t.clip_range
    )
    old_values, returns = scored.old_values[rows, :width], scored.returns[rows, :width]
    v_loss, _ = value_loss(values[:, :-1].float(), old_values, returns, m, t.clip_range_value)
    with torch.no_grad():
        entropy = masked_mean(torch.distributions.Categorical(logits=logits[:, :-1].float()).entropy(), m)
    record(stats, pg_loss=pg_loss, v_loss=v_loss, clipfrac=clipfrac, approx_kl=approx_kl, entropy=entropy)
    return pg_loss + t.vf_coef * v_loss, _zero_weight(logits, values)


def _imitation_loss(
    run: Run, scored: ScoredBatch, rows: torch.Tensor | None, stats
) -> tuple[torch.Tensor, torch.Tensor]:
    """L_sup on the supervised batch's ``rows``: the token-mean NLL of the amplified outputs; and the zero with a
    gradient path to every parameter. Zeros without rows."""
    zero = torch.zeros((), device=run.accelerator.device)
    if rows is None:
        return zero, zero
    assert scored.sup is not None
    part = scored.sup[rows].trimmed()
    logits, values = run.model(part.input_ids, part.attention_mask)
    labels = torch.where(part.action_mask > 0, part.input_ids[:, 1:], -100)
    sup_loss, _ = supervised_nll(logits[:, :-1].float(), labels)
    record(stats, sup_loss=sup_loss, sup_tokens=(labels != -100).sum())
    return sup_loss, _zero_weight(logits, values)


def _idle_pass(run: Run, scored: ScoredBatch) -> torch.Tensor:
    """A zero-weight pass on one row, for a minibatch in which this process has nothing: DDP averages gradients
    only once every process has given every parameter one."""
    any_batch = scored.sup if scored.sup is not None else scored.rl
    if any_batch is None:  # this process has nothing at all this update (others do): one padding token
        pad = torch.full((1, 1), run.tokenizer.pad_token_id, device=run.accelerator.device)
        return _zero_weight(*run.model(pad, torch.ones_like(pad)))
    return _zero_weight(*run.model(any_batch.input_ids[:1], any_batch.attention_mask[:1]))


def build_optimizer(model: nn.Module, trainer: TrainerConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters of the policy and value head, at the recipe's learning rate and beta2."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=trainer.learning_rate, betas=(0.9, trainer.adam_beta2))


def _step(run: Run, state: TrainState, loss: torch.Tensor) -> bool:
    """One optimizer step on ``loss`` with gradient clipping; False (no step) when the loss or the gradient norm is
    not finite on any process."""
    accelerator = run.accelerator
    if _any_process(accelerator, not bool(torch.isfinite(loss))):
        return False
    state.optimizer.zero_grad()
    accelerator.backward(loss)
    grad_norm = accelerator.clip_grad_norm_(run.model.parameters(), run.cfg.trainer.max_grad_norm)
    if grad_norm is not None and not bool(torch.isfinite(torch.as_tensor(grad_norm))):
        state.optimizer.zero_grad()  # the same on every process: gradients are already averaged
        return False
    state.optimizer.step()
    return True


def _sup_loss(run: Run, state: TrainState, sup: Batch | None) -> float | None:
    """L_sup of the whole supervised batch under the current policy: one token mean over every process's batch, as
    ``objective/sup_loss`` pools it (None where no process has one). Every process joins the sum, with a batch or
    without: a process that skipped it would leave the others waiting in the gather for ever."""
    accelerator = run.accelerator
    value = math.nan if sup is None else token_nll(state.model, sup)
    if accelerator.num_processes == 1:
        return None if math.isnan(value) else value
    tokens = 0.0 if sup is None or math.isnan(value) else float(sup.action_mask.sum())  # none here: adds nothing
    summed = accelerator.gather(
        torch.tensor([[value * tokens if tokens else 0.0, tokens]], device=accelerator.device, dtype=torch.float64)
    )
    total, tokens = (float(x) for x in summed.sum(dim=0))
    return total / tokens if tokens else None


def _segment_distances(run: Run, state: TrainState, debates: list[Debate], segments: list) -> torch.Tensor:
    """d(arg_t, M(""arg_t)) of each RL segment's argument (the reward mode's imitation distance)."""
    distances = _argument_distances(state.model, run.tokenizer, debates, run.accelerator.device)
    return torch.tensor([distances[(sg.debate, sg.turn)] for sg in segments], device=run.accelerator.device)


def _accuracy(replies: list[Reply], questions: list, depth: int | None = None) -> float:
    """The share of ``replies`` equal to gold (at ``depth`` only, when given); NaN for none."""
    pairs = zip(replies, questions, strict=True)
    return mean([q.score(r.text) for r, q in pairs if depth is None or q.depth == depth])


# ---------------------------------------------------------------------------------------------------------------
# Logging, the end of a run, faults


_HISTORY_KEYS = ("debate/mean_turns", "debate/judge_accuracy", "amp/human_calls", "objective/sup_loss")


class _Log:
    """Where step 6 writes (the main process): accelerate's trackers, ``metrics.jsonl``, the update's transcripts
    and the progress bar. Every process keeps ``state.history``."""

    def __init__(self, run: Run, progress: bool) -> None:
        self.run = run
        self.main = run.accelerator.is_main_process
        self.progress = progress
        self.file = open(run.cfg.run_dir / "metrics.jsonl", "a") if self.main else None  # noqa: SIM115 (close())
        self.tqdm: Any = None

    def bar(self, start: int) -> Any:
        updates = self.run.cfg.trainer.updates
        self.tqdm = tqdm(
            range(start, updates), desc="train", initial=start, total=updates, disable=not (self.progress and self.main)
        )
        return self.tqdm

    def write(
        self,
        state: TrainState,
        metrics: dict[str, float],
        debates: list[Debate],
        knobs: Knobs,
        liar_debates: Sequence[Debate] = (),
    ) -> None:
        """Self-play debates to ``transcripts/update_NNNNNN.jsonl``, those against the scripted liar
        (``debate.liar_fraction``) to ``transcripts/liar/`` (so that ``debate-amp eval RUN`` reads self-play)."""
        run, cfg, accelerator = self.run, self.run.cfg, self.run.accelerator
        now = time.perf_counter()
        metrics["perf/elapsed_s"] = now - run.started  # since train() began (warm start included)
        metrics["perf/train_s"] = now - run.started - run.untimed  # the same, less what was not training
        due = cfg.trainer.eval_every and state.update % cfg.trainer.eval_every == 0
        if self.main and due and not metrics["train/skipped"]:
            metrics |= _heldout_metrics(state.model.policy, run.tokenizer, run.task, cfg)
            run.untimed += time.perf_counter() - now
        state.history.append({k: metrics[k] for k in _HISTORY_KEYS})
        folders = {"": debates, "liar": liar_debates} if cfg.debate.liar_fraction else {"": debates}
        records = {
            folder: [
                debate_to_record(
                    d,
                    run=cfg.run.name,
                    update=state.update,
                    question_id="",  # numbered below, over every process's debates
                    question=d.question.render(),
                    gold=None if d.question.gold is None else str(d.question.gold),
                    task=run.task.name,
                    force_stop_p=knobs.force_stop_p,
                    **run.mode.transcript_fields(knobs.weight, knobs.lagrange_multiplier),
                )
                for d in folder_debates
            ]
            for folder, folder_debates in folders.items()
        }
        if accelerator.num_processes > 1:
            records = {folder: gather_object(recs) for folder, recs in records.items()}
        if not self.main:
            return
        assert self.file is not None
        accelerator.log({tag: value for tag, value in metrics.items() if not math.isnan(value)}, step=state.update)
        self.file.write(json.dumps({"update": state.update, **metrics}) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())
        for folder, recs in records.items():
            for i, rec in enumerate(recs):
                rec["question_id"] = f"u{state.update}-{'l' if folder else 'q'}{i}"
            path = cfg.run_dir / "transcripts" / folder / f"update_{state.update:06d}.jsonl"
            write_transcripts(path, recs)
        if state.update == 1 or state.update == cfg.trainer.updates:
            accelerator.log({"transcripts": transcript_text(debates[:3])}, step=state.update)
        self.tqdm.set_postfix(
            reward_even=f"{metrics['objective/reward_even']:+.2f}",
            turns=f"{metrics['debate/mean_turns']:.1f}",
            sup=f"{metrics['objective/sup_loss']:.3f}",
            humans=int(metrics["amp/human_calls"]),
        )

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _finish(run: Run, state: TrainState, progress: bool) -> dict[str, Any]:
    """The end: save M and its value head, and the final table (held-out accuracy by difficulty, parse rates, the judge
    against the scripted liar, human calls, debate length) in ``final.json``."""
    cfg, accelerator = run.cfg, run.accelerator
    fingerprints = gather_object([_fingerprint(state.model)])
    if not accelerator.is_main_process:
        return {}
    model_dir = cfg.run_dir / "model"
    with written_whole(model_dir) as partial:
        _save_policy(state.model.policy, run.tokenizer, partial)
        save_file(
            {k: v.contiguous() for k, v in state.model.value_head.state_dict().items()},
            str(partial / "value_head.safetensors"),
        )
        (partial / "process_fingerprints.json").write_text(json.dumps(fingerprints, indent=2))
    if state.adversary is not None:
        state.adversary.save(cfg.run_dir / "adversary.safetensors")
    if len(set(fingerprints)) > 1:
        raise RuntimeError(f"parameters differ across processes after training: {fingerprints}")
    questions = _eval_questions(run.task, cfg)
    report = evaluate_heldout(
        state.model.policy,
        run.tokenizer,
        run.task,
        questions,
        max_new_tokens=cfg.generation.max_new_tokens,
        progress=progress,
    )
    name = run.task.difficulty_name
    answers = report.as_dict()["answer"].items()
    accelerator.log({f"eval/answer_accuracy_{name}{key}": value for key, value in answers}, step=state.update)
    last_length = state.history[-1]["debate/mean_turns"] if state.history else float("nan")
    final = final_evaluation(
        state.model.policy, run.tokenizer, cfg, run.task, questions, report, last_length, state.adversary
    )
    final["human_calls"] = state.human_calls
    final["updates"] = state.update
    if cfg.trainer.student == "fresh":
        final["takeover"] = state.takeover  # the update after which M amplified in A[0]'s place (None: never)
    stage_final = cfg.run_dir / PRETRAIN_SUBDIR / "final.json"
    if cfg.pretrain.recipe is not None and stage_final.is_file():  # the stage A[0] started from (not: A[0] given)
        stage = json.loads(stage_final.read_text())
        final["pretrain"] = {
            "recipe": cfg.pretrain.recipe,
            "updates": stage["updates"],
            "human_calls": stage["human_calls"],
            **{key: stage[key] for key in stage if key.startswith("heldout_") and key != "heldout_by_difficulty"},
        }
    write_whole(model_dir / "heldout.json", json.dumps(report.as_dict(), indent=2))
    write_whole(  # last: a stage's says it finished. NaN (a kind never asked) as null: a bare NaN is not JSON
        cfg.run_dir / "final.json", json.dumps(json.loads(json.dumps(final), parse_constant=lambda _: None), indent=2)
    )
    return {
        "report": report,
        "final": final,
        "human_calls": state.human_calls,
        "mean_turns": float(mean([h["debate/mean_turns"] for h in state.history])),
        "history": state.history,
        "run_dir": cfg.run_dir,
    }


def _interrupted(run: Run, state: TrainState) -> dict[str, Any]:
    if run.accelerator.is_main_process:
        latest = checkpoint.latest_checkpoint(run.cfg.run_dir / "checkpoints")
        print(f"\ninterrupted after update {state.update}; latest checkpoint: {latest}; continue with --resume")
    return {"interrupted": True, "update": state.update, "run_dir": run.cfg.run_dir}


def _diverged(run: Run, state: TrainState, bad_in_a_row: int) -> TrainingDiverged:
    last_good = checkpoint.latest_checkpoint(run.cfg.run_dir / "checkpoints")
    return TrainingDiverged(
        f"{bad_in_a_row} updates in a row had a non-finite loss (the last at update {state.update}); "
        f"the last good checkpoint is {last_good or 'none (no update finished)'}"
    )


def _warn_skipped(run: Run, state: TrainState, bad_in_a_row: int) -> None:
    warnings.warn(
        f"update {state.update}: non-finite loss, update skipped ({bad_in_a_row} in a row, "
        f"stopping at {run.cfg.trainer.max_bad_updates})",
        RuntimeWarning,
        stacklevel=2,
    )


def _close(run: Run, log: _Log, interrupt: _Interrupt, stage: bool = False) -> None:
    log.close()
    run.store.close()
    interrupt.close()
    run.accelerator.wait_for_everyone()
    if run.accelerator.num_processes > 1:
        # The DDP wrapper goes first, while the process group is still registered: freed later, its Reducer would
        # drop the group's last reference holding the GIL, and gloo's destructor, which waits for its worker threads
        # while they wait for the GIL, hung a process at the end of a run (pytorch/pytorch#56297; seen once in CI)
        run.model = None
        run.accelerator.free_memory()
    if stage:  # another run follows in this process (train's ``stage``): its collectives need the group
        for tracker in run.accelerator.trackers:
            tracker.finish()
        return
    run.accelerator.end_training()  # closes the trackers, then the process group: no collective may follow


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


def _save_policy(policy: nn.Module, tokenizer, model_dir: Path) -> None:
    """M into ``model_dir`` (a folder :func:`written_whole` is writing)."""
    if is_peft(policy):  # the policy adapter only (the target adapter lives in the checkpoints)
        policy.save_pretrained(model_dir, selected_adapters=["default"])  # type: ignore[operator]
    else:
        policy.save_pretrained(model_dir)  # type: ignore[operator]
    tokenizer.save_pretrained(model_dir)


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


def _sum_over_processes(accelerator, value: int) -> int:
    if accelerator.num_processes == 1:
        return value
    return int(accelerator.gather(torch.tensor([value], device=accelerator.device)).sum())


def _schedule(anneal: AnnealConfig, start: float) -> Schedule:
    """A recipe value and its annealing: from ``start`` to ``anneal.end`` (or constant) over training."""
    return Schedule(anneal.kind, start, start if anneal.end is None else anneal.end, tuple(anneal.step_milestones))


def _rehearsal(pool: list, n: int, update: int, accelerator: Any, paid: bool) -> tuple[list, int]:
    """``n`` of the warm start's examples for this update and process, taken in turn from ``pool`` (every process
    its own slice; the pool is walked through once before any example comes back), so that skills the updates do
    not exercise are not forgotten. Returns them and the human calls they cost: none when the warm start ``paid``
    for them (this run made A[0] from this pool), else each example's calls the first time it is used."""
    if not pool or not n:
        return [], 0
    start = (update * accelerator.num_processes + accelerator.process_index) * n
    examples = [pool[(start + j) % len(pool)] for j in range(n)]
    calls = 0 if paid else sum(pool[i].human_calls for i in range(start, min(start + n, len(pool))))
    return examples, calls


def _eval_questions(task: Task, cfg: Config):
    return task.eval_questions(cfg.trainer.eval_size, seed=cfg.run.seed + 1)


def _takes_over(metrics: dict[str, float]) -> bool:
    """``trainer.student: fresh``: does M take over from A[0] after this update? Where M's direct answers agreed
    with the amplified ones more often than A[0]'s, and, where the sampler handed steps to the human in place of a
    draft (M will draft the steps it does not), M's drafts of those steps agreed with the human's at least as often
    as A[0]'s: M then amplifies as well as A[0] did. False when nothing was compared (not fresh, or taken over)."""
    answers = metrics["amp/student_agreement"] > metrics["amp/a0_agreement"]  # NaN: False
    m_steps, a0_steps = metrics["amp/student_step_agreement"], metrics["amp/a0_step_agreement"]
    return answers and (math.isnan(m_steps) or math.isnan(a0_steps) or m_steps >= a0_steps)


def _step_agreements(model_agent: ModelAgent, amplified: list[Reply], limit: int) -> tuple[float, float]:
    """How often M's greedy draft of a step, and the draft A[0] made in the tree, equal the human's reply, over the
    first ``limit`` steps the sampler handed to the human in this update's trees, A[0] amplifying (the human's own
    replies: no gold is used); NaN, NaN where there is none (``sampler.kind: always`` drafts no step)."""
    steps = [step for r in amplified for step in replaced_steps(r.trace)][:limit]
    if not steps:
        return float("nan"), float("nan")
    human = [e.completion for e, _ in steps]
    limits = [model_agent.reply_limits.get(e.kind) for e, _ in steps]
    drafts = model_agent.generate_fn([e.prompt for e, _ in steps], limits).texts
    return _share_equal(drafts, human), _share_equal([a0_draft for _, a0_draft in steps], human)


def _share_equal(texts: Sequence[str], references: Sequence[str]) -> float:
    """The share of ``texts`` equal to their ``references``, blanks at either end aside."""
    return sum(t.strip() == r.strip() for t, r in zip(texts, references, strict=True)) / len(texts)


def _agreement(
    model_agent: ModelAgent, amplified: list[Reply], questions: list, depth: int | None, limit: int | None = None
) -> float:
    """How often M's direct answer equals the amplified answer it is distilled towards, over this update's targets
    at ``depth`` (None: every depth), the first ``limit`` of them: no gold answer is used (NaN when there is none)."""
    pairs = [(r, q) for r, q in zip(amplified, questions, strict=True) if depth in (None, q.depth)]
    pairs = [(r, q) for r, q in pairs if r.text != UNKNOWN and is_amplified(r.trace)][:limit]
    if not pairs:
        return float("nan")
    prompts = [r.trace.posed.render() for r, _ in pairs]
    direct = model_agent.generate_fn(prompts, [model_agent.reply_limits.get("answer")] * len(prompts)).texts
    return _share_equal(direct, [r.text for r, _ in pairs])


def _hardest(model_agent: ModelAgent, adversary: Adversary | None, pool: list, n: int) -> list:
    """The ``n`` questions of ``pool`` whose direct answers by M the adversary rates most likely wrong (one batched
    generate for the pool, one batched scoring)."""
    assert adversary is not None
    prompts = [Posed("answer", q).render() for q in pool]
    direct = model_agent.generate_fn(prompts, [model_agent.reply_limits.get("answer")] * len(prompts))
    p_wrong = adversary.score(
        [(prompt, text.strip()) for prompt, text in zip(prompts, direct.texts, strict=True)],
        direct.min_logprobs(),
    )
    ranked = sorted(range(len(pool)), key=lambda i: -p_wrong[i])
    return [pool[i] for i in ranked[:n]]


def _heldout_metrics(policy, tokenizer, task: Task, cfg: Config) -> dict[str, float]:
    """``eval/`` scalars: held-out accuracy of direct answers by difficulty (perm: ``eval/answer_accuracy_k3``), and
    over the difficulties beyond the human (perm: ``eval/answer_accuracy_k_ge_2``); where the task names a shortcut,
    the share of its wrong shortcuts given (perm: ``eval/answer_shortcut_k_ge_2``, the one-lookup plateau)."""
    report = evaluate_heldout(
        policy,
        tokenizer,
        task,
        _eval_questions(task, cfg),
        max_new_tokens=cfg.generation.max_new_tokens,
        progress=False,
        skills=("answer",),
    )
    name = task.difficulty_name
    metrics = {f"eval/answer_accuracy_{name}{d}": value for d, value in report.as_dict()["answer"].items()}
    metrics[f"eval/answer_accuracy_{beyond_name(task)}"] = report.beyond()
    if not math.isnan(shortcut := report.shortcut_rate()):
        metrics[f"eval/answer_shortcut_{beyond_name(task)}"] = shortcut
    return metrics


def _by_length(lengths: torch.Tensor, n_minibatches: int) -> torch.Tensor:
    """A shuffled order in which minibatch ``mb`` (``order[mb::n_minibatches]``, see :func:`_rows`) holds rows of
    like lengths: short answers are not padded to the width of the longest debate prompt. Which length band goes
    to which minibatch, and the order within a band, are random. Mixed minibatches learned more per update in pure
    amplification but took 1.4-1.9 times as long an update, and came no sooner (docs/benchmarks.md, 2026-12-05)."""
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
    """KL(policy || target) on the update's own samples, per token; NaN (not measured, not a zero KL) without RL
    segments, as ``objective/kl``."""
    if rl is None:
        return math.nan
    policy_lp = score_batch(model, rl, with_values=True)[0]
    target_lp = score_batch(target_policy, rl)
    return float(masked_mean(policy_lp - target_lp, rl.action_mask))
