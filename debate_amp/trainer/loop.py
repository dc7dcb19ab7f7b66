"""The training loop: PPO (or Lagrangian constrained PPO) on debates, mixed with supervised imitation.

One update, as in DESIGN.md section 1:
  1. rollout     debates of Amp~(H, M) judged by Amp~(H, M_target), all questions under one event loop
  2. rewards     side rewards +1 / -1, minus catastrophe_coef * cost_t, minus the per-token KL to the reference
  3. advantages  values and reference log-probs of every RL segment, GAE, whitening
  4. optimise    PPO epochs over minibatches: L_rl (clipped policy + value loss) combined with L_sup by the mode
  5. target      M_target follows M (hard copy every sync_every updates, or EMA with tau)
  6. log         TensorBoard, metrics.jsonl, transcripts, progress bar
Setup lives in small functions above the loop; the math lives in ``debate_amp.objectives``.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from debate_amp.agents.humans import build_human
from debate_amp.agents.labels import LabelStore
from debate_amp.agents.model import ModelAgent, hf_generate_fn
from debate_amp.combinators import amp_approx
from debate_amp.config import AnnealConfig, Config, save_config
from debate_amp.debate.engine import Debate, run_debates
from debate_amp.debate.transcript import debate_to_record, write_transcripts
from debate_amp.eval.heldout import evaluate_heldout
from debate_amp.models import ValueHead, hidden_size_of, load_model, save_model
from debate_amp.objectives import (
    AdaptiveKLController,
    FixedKLController,
    combine_constrained,
    combine_weighted,
    gae,
    kl_penalty,
    lagrange_update,
    masked_mean,
    policy_loss,
    supervised_nll,
    value_loss,
    whiten,
)
from debate_amp.samplers import Budget, build_sampler
from debate_amp.schedules import Schedule
from debate_amp.target import ema_sync, hard_sync
from debate_amp.tasks.perm import PermHuman, PermTask, imitation_examples, parse_argument, render_question
from debate_amp.trainer.rollout import (
    Batch,
    SupervisedExample,
    make_batch,
    policy_segments,
    supervised_batch,
    supervised_examples,
)
from debate_amp.trainer.sft import make_task, run_sft, seed_everything

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
def score_batch(model: nn.Module, batch: Batch, chunk: int = 256, with_values: bool = False):
    """Log-probs (and values) of a batch's tokens under a frozen pass, in chunks: -> [S, L-1] (, [S, L-1])"""
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


def sequence_nll(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Mean token NLL of each sequence's response: [S] (the supervised distance d)."""
    logprobs = score_batch(model, batch)
    return -(logprobs * batch.action_mask).sum(1) / batch.action_mask.sum(1).clamp(min=1)


def judge_accuracy(debate: Debate) -> float | None:
    """Did the verdict go to the side gold supports? The even side opens with an answer; it should win exactly
    when that answer is right."""
    gold = getattr(debate.question, "gold", None)
    if gold is None or debate.winner is None or debate.winner.value is None:
        return None
    opening = parse_argument(debate.turns[0].text)
    even_right = opening is not None and not opening.agree and opening.value == gold
    return float((debate.winner.value == "even") == even_right)


@dataclass
class RunState:
    """What changes from update to update (and goes into checkpoints)."""

    update: int = 0
    lagrange_multiplier: float = 0.0
    sup_baseline: float | None = None
    target_updates: int = 0
    human_calls: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# The loop


def train(cfg: Config, progress: bool = True) -> dict[str, Any]:
    from accelerate import Accelerator
    from torch.utils.tensorboard import SummaryWriter

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    if cfg.run.torch_threads:
        torch.set_num_threads(cfg.run.torch_threads)
    seed_everything(cfg.run.seed + accelerator.process_index)
    run_dir = cfg.run_dir
    main = accelerator.is_main_process
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")

    # Setup: A[0] (warm start), value head, reference and target models, optimizer.
    a0_dir = run_dir / cfg.sft.output_subdir
    if cfg.trainer.warm_start and cfg.model.path is None and not (a0_dir / "config.json").is_file():
        if main:
            run_sft(cfg, progress=progress)
        accelerator.wait_for_everyone()
    start_dir = a0_dir if (cfg.trainer.warm_start and cfg.model.path is None) else cfg.model.path
    policy, tokenizer = load_model(cfg.model, start_dir, seed=cfg.run.seed)
    ref_policy = copy.deepcopy(policy).eval().requires_grad_(False)
    target_policy = copy.deepcopy(policy).eval().requires_grad_(False)
    model = PolicyWithValue(policy, ValueHead(hidden_size_of(policy)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.trainer.learning_rate)
    model, optimizer = accelerator.prepare(model, optimizer)
    ref_policy.to(accelerator.device)
    target_policy.to(accelerator.device)
    unwrapped: PolicyWithValue = accelerator.unwrap_model(model)

    task = make_task(cfg)
    store = LabelStore(run_dir / ("labels.sqlite" if main else f"labels.rank{accelerator.process_index}.sqlite"))
    human, expert = build_human(cfg.human, seed=cfg.run.seed + accelerator.process_index, store=store)
    replay_human = PermHuman(error_rate=cfg.human.error_rate, seed=cfg.run.seed)  # regenerates warm-start data
    s = cfg.sampler
    sampler = build_sampler(s.kind, s.p, s.threshold, s.per_update, s.per_run, seed=cfg.run.seed)
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

    o = cfg.objective
    mode_start = {"weighted": o.alpha, "constrained": o.limit, "reward": o.reward_coef}[o.mode]
    weight_schedule = _schedule(o.anneal, mode_start)
    force_stop_schedule = _schedule(cfg.debate.force_stop_anneal, cfg.debate.force_stop_p)
    lr_schedule = _schedule(cfg.trainer.lr_anneal, cfg.trainer.learning_rate)
    kl_ctl = (
        AdaptiveKLController(o.kl.coef, o.kl.target, o.kl.horizon) if o.kl.adaptive else FixedKLController(o.kl.coef)
    )
    state = RunState(lagrange_multiplier=o.lagrange_init)
    writer = SummaryWriter(str(run_dir / "tensorboard")) if main else None
    metrics_file = open(run_dir / "metrics.jsonl", "a") if main else None  # noqa: SIM115 (closed at the end)
    rng = random.Random(cfg.run.seed * 1000 + accelerator.process_index)
    local_questions = max(1, cfg.trainer.questions_per_update // accelerator.num_processes)
    bar = tqdm(range(cfg.trainer.updates), desc="train", disable=not (progress and main))

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
            questions, amp_policy, amp_target, cfg.debate.max_turns, force_stop_p, seed=rng.randrange(2**31)
        )
        unwrapped.train()
        rollout_s = time.perf_counter() - t0

        # 2. Rewards: terminal side reward - catastrophe penalty, per-token KL penalty to the reference.
        t1 = time.perf_counter()
        segments = policy_segments(debates, o.catastrophe_coef, skip_uncontested=True)
        examples = supervised_examples(debates)
        if cfg.trainer.replay_examples:
            replay = imitation_examples(task, replay_human, cfg.trainer.replay_examples, seed=rng.randrange(2**31))
            examples += [SupervisedExample(e.prompt, e.completion, f"replay:{e.kind}") for e in replay]
        sup = supervised_batch(tokenizer, examples).to(accelerator.device) if examples else None
        rl = None
        if segments:
            rl = make_batch(
                tokenizer, [sg.prompt for sg in segments], [sg.response_ids for sg in segments], tokenizer.pad_token_id
            ).to(accelerator.device)
            old_logprobs, old_values = score_batch(model, rl, with_values=True)
            ref_logprobs = score_batch(ref_policy, rl)
            mask = rl.action_mask
            kl = kl_penalty(old_logprobs, ref_logprobs, o.kl.estimator) * mask
            score = torch.zeros_like(old_logprobs)
            last = (mask.cumsum(1) == mask.sum(1, keepdim=True)) & (mask > 0)  # the final response token
            terminal = torch.tensor([sg.reward for sg in segments], device=score.device)
            if o.mode == "reward" and sup is not None:
                # r <- r - c * d(arg_t, M(""arg_t)): the supervised distance of the segment's argument
                distances = _argument_distances(model, tokenizer, debates, accelerator.device)
                terminal = terminal - weight * torch.tensor(
                    [distances[(sg.debate, sg.turn)] for sg in segments], device=score.device
                )
            score[last] = terminal
            rewards = score - kl_ctl.value * kl

            # 3. Advantages: GAE over each segment's tokens, whitened over the update.
            advantages, returns = gae(rewards, old_values, mask, cfg.trainer.gamma, cfg.trainer.gae_lambda)
            if cfg.trainer.whiten_advantages and mask.sum() >= 2:
                advantages = whiten(advantages, mask)

        if o.mode == "constrained" and state.sup_baseline is None and sup is not None:
            state.sup_baseline = float(sequence_nll(model, sup).mean())
        limit = (
            weight * state.sup_baseline
            if (o.mode == "constrained" and o.limit_kind == "relative" and state.sup_baseline is not None)
            else weight
        )

        # 4. Optimise: PPO epochs over minibatches, L_rl combined with L_sup by the objective's mode.
        stats: dict[str, list[float]] = {}
        n_rl = len(segments)
        n_minibatches = max(1, math.ceil(n_rl / cfg.trainer.minibatch_size))
        for _epoch in range(cfg.trainer.ppo_epochs):
            rl_order = torch.randperm(n_rl) if n_rl else None
            sup_order = torch.randperm(len(sup)) if sup is not None else None
            for mb in range(n_minibatches):
                rl_loss = torch.zeros((), device=accelerator.device)
                if rl is not None and rl_order is not None:
                    idx = rl_order[mb::n_minibatches]
                    part = rl[idx]
                    logits, values = model(part.input_ids, part.attention_mask)
                    logprobs = action_logprobs(logits, part.input_ids)
                    m = part.action_mask
                    pg_loss, clipfrac, approx_kl = policy_loss(
                        logprobs, old_logprobs[idx], advantages[idx], m, cfg.trainer.clip_range
                    )
                    v_loss, _ = value_loss(
                        values[:, :-1].float(), old_values[idx], returns[idx], m, cfg.trainer.clip_range_value
                    )
                    rl_loss = pg_loss + cfg.trainer.vf_coef * v_loss
                    with torch.no_grad():
                        dist = torch.distributions.Categorical(logits=logits[:, :-1].float())
                        entropy = masked_mean(dist.entropy(), m)
                    _record(
                        stats, pg_loss=pg_loss, v_loss=v_loss, clipfrac=clipfrac, approx_kl=approx_kl, entropy=entropy
                    )
                sup_loss = torch.zeros((), device=accelerator.device)
                if sup is not None and sup_order is not None:
                    part = sup[sup_order[mb::n_minibatches]]
                    logits, _ = model(part.input_ids, part.attention_mask)
                    labels = torch.where(part.action_mask > 0, part.input_ids[:, 1:], -100)
                    sup_loss, _ = supervised_nll(logits[:, :-1].float(), labels)
                    _record(stats, sup_loss=sup_loss)
                if o.mode == "weighted":
                    loss = combine_weighted(rl_loss, sup_loss, weight)
                elif o.mode == "constrained":
                    loss = combine_constrained(rl_loss, sup_loss, state.lagrange_multiplier)
                else:
                    loss = rl_loss
                if not torch.isfinite(loss):
                    continue
                optimizer.zero_grad()
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(model.parameters(), cfg.trainer.max_grad_norm)
                optimizer.step()
                _record(stats, total=loss)
        if o.mode == "constrained" and "sup_loss" in stats:
            state.lagrange_multiplier = lagrange_update(
                state.lagrange_multiplier, _mean(stats["sup_loss"]), limit, o.lagrange_lr
            )
        if rl is not None:
            kl_ctl.update(float((kl.sum(1)).mean()), n_rl)
        update_s = time.perf_counter() - t1

        # 5. Target: M_target follows M.
        if cfg.target.mode == "hard" and (update + 1) % cfg.target.sync_every == 0:
            hard_sync(unwrapped.policy, target_policy)
            state.target_updates += 1
        elif cfg.target.mode == "ema":
            ema_sync(unwrapped.policy, target_policy, cfg.target.tau)
            state.target_updates += 1

        # 6. Log: the same scalars to TensorBoard and metrics.jsonl, transcripts of every debate.
        state.update = update + 1
        state.human_calls += expert.calls - calls_before
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
                "objective/alpha": weight if o.mode == "weighted" else float("nan"),
                "objective/weight": weight,
                "objective/force_stop_p": force_stop_p,
                "constraint/lagrange_multiplier": state.lagrange_multiplier,
                "constraint/limit": limit if o.mode == "constrained" else float("nan"),
                "constraint/violation": (_mean(stats.get("sup_loss", [])) - limit) if o.mode == "constrained" else 0.0,
                "amp/human_calls": float(expert.calls - calls_before),
                "target/updates": float(state.target_updates),
                "target/policy_target_kl": _policy_target_kl(model, target_policy, rl),
                "perf/rollout_s": rollout_s,
                "perf/update_s": update_s,
                "perf/debates_per_s": len(debates) / max(rollout_s, 1e-9),
                "perf/tokens_per_s": (float(rl.attention_mask.sum()) if rl is not None else 0.0)
                * cfg.trainer.ppo_epochs
                / max(update_s, 1e-9),
                "objective/kl_coef": kl_ctl.value,
            }
        )
        metrics = _gather(accelerator, metrics)
        if main:
            assert writer is not None and metrics_file is not None
            for tag, value in metrics.items():
                if not math.isnan(value):
                    writer.add_scalar(tag, value, state.update)
            metrics_file.write(json.dumps({"update": state.update, **metrics}) + "\n")
            metrics_file.flush()
            records = [
                debate_to_record(
                    d,
                    run=cfg.run.name,
                    update=state.update,
                    question_id=f"u{state.update}-q{i}",
                    question=render_question(d.question),
                    gold=str(d.question.gold),
                    force_stop_p=force_stop_p,
                    alpha=weight if o.mode == "weighted" else None,
                    lagrange_multiplier=state.lagrange_multiplier if o.mode == "constrained" else None,
                )
                for i, d in enumerate(debates)
            ]
            write_transcripts(run_dir / "transcripts" / f"update_{state.update:06d}.jsonl", records)
            if update == 0 or state.update == cfg.trainer.updates:
                writer.add_text("transcripts", _transcript_text(debates[:3]), state.update)
            state.history.append(metrics)
            bar.set_postfix(
                reward_even=f"{metrics['objective/reward_even']:+.2f}",
                turns=f"{metrics['debate/mean_turns']:.1f}",
                sup=f"{metrics['loss/sup']:.3f}",
                humans=int(metrics["amp/human_calls"]),
            )

    # The end: save M, and the final table (held-out accuracy by k, human calls, debate length).
    summary: dict[str, Any] = {}
    if main:
        assert writer is not None and metrics_file is not None
        save_model(unwrapped.policy, tokenizer, run_dir / "model")  # type: ignore[arg-type]
        torch.save(unwrapped.value_head.state_dict(), run_dir / "model" / "value_head.pt")
        report = evaluate_heldout(
            unwrapped.policy, tokenizer, _eval_questions(task, cfg), max_new_tokens=g.max_new_tokens, progress=progress
        )
        for key, value in report.as_dict()["answer"].items():
            writer.add_scalar(f"eval/answer_accuracy_k{key}", value, state.update)
        summary = {
            "report": report,
            "human_calls": state.human_calls,
            "mean_turns": _mean([h["debate/mean_turns"] for h in state.history]),
            "history": state.history,
            "run_dir": run_dir,
        }
        (run_dir / "model" / "heldout.json").write_text(json.dumps(report.as_dict(), indent=2))
        writer.close()
        metrics_file.close()
    store.close()
    accelerator.wait_for_everyone()
    return summary


# ---------------------------------------------------------------------------------------------------------------
# Helpers of the loop


def _schedule(anneal: AnnealConfig, start: float) -> Schedule:
    """A recipe value and its annealing: from ``start`` to ``anneal.end`` (or constant) over training."""
    return Schedule(anneal.kind, start, start if anneal.end is None else anneal.end, tuple(anneal.step_milestones))


def _eval_questions(task: PermTask, cfg: Config):
    return task.eval_questions(cfg.trainer.eval_size, seed=cfg.run.seed + 1)


def _record(stats: dict[str, list[float]], **values: torch.Tensor) -> None:
    for key, value in values.items():
        stats.setdefault(key, []).append(float(value.detach()))


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
        "objective/kl": float(kl.sum(1).mean()) if kl is not None else 0.0,
        "objective/sup_loss": _mean(stats.get("sup_loss", [])),
        "policy/approx_kl": _mean(stats.get("approx_kl", [])),
        "policy/clipfrac": _mean(stats.get("clipfrac", [])),
        "policy/entropy": _mean(stats.get("entropy", [])),
        "loss/policy": _mean(stats.get("pg_loss", [])),
        "loss/value": _mean(stats.get("v_loss", [])),
        "loss/sup": _mean(stats.get("sup_loss", [])),
        "loss/total": _mean(stats.get("total", [])),
        "value/explained_variance": explained_variance,
        "debate/mean_turns": _mean([len(d.turns) for d in debates]),
        "debate/continue0_rate": _mean([float(bool(d.continues and d.continues[0].value)) for d in debates]),
        "debate/even_win_rate": _mean([float(d.winner is not None and d.winner.value == "even") for d in debates]),
        "debate/judge_accuracy": _mean(accuracies),
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
