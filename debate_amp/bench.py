"""``make bench``: figures measured side by side in one run, on this machine.

- rollout_batched_speedup: 64 concurrent Amp~(H, M) calls on the tiny model A[0] (wave batching: one ``generate``
  per wave) against the same 64 calls made one at a time, same model, same sampling settings, same run.
- amp_pipeline_efficiency: amplified targets per second (greedy Amp~(H, M) on 1024 questions) over a bare batched
  ``generate`` of the same 1024 prompts (one model call per target: what the tree's waves cost beyond that); the
  same with ``recipes/amplification_human_decomposes.yaml``'s Amp~ (the human makes every step, M only answers and
  drafts nothing) under ``human_decomposes_`` keys.
- with ``--learning``: ``recipes/supervised_baseline.yaml``, ``recipes/pure_amplification.yaml``,
  ``recipes/few_labels_amplification.yaml``, ``recipes/amplification_fresh_student.yaml`` and
  ``recipes/few_labels_fresh_student.yaml`` trained here from scratch on perm (N = 8, k <= 7) for at most
  ``--minutes`` each, with learning curves (held-out sigma^k(x), k >= 2, asked directly, against wall time);
  amp_wall_ratio is the time amplification took to come within 3 points of the supervised run's final accuracy
  over the time the supervised run took (None: not reached), both on the training clock (from the first optimizer
  step of the run's first training, held-out evaluation left out: ``perf/train_s``, the supervised curve's seconds;
  ``amp_wall_ratio_since_start`` reads amplification's clock from the moment the run began, its data preparation
  and evaluations included), beside the gold labels the supervised run used and the
  human calls amplification used (its warm start's included); the other amplification runs' keys begin
  ``few_labels_amp_``, ``fresh_student_amp_`` and ``few_labels_fresh_student_amp_`` (:data:`AMP_RECIPES`). The same
  comparison on the add task (``--tasks`` names the tasks compared, both by default; add: operands of 1-6 digits,
  held-out digits >= 2; its supervised run over 1,000,000 examples, :data:`SUPERVISED_OVERRIDES`) writes the same
  keys prefixed ``add_``.
- with ``--human-efficiency``: held-out accuracy against cumulative human calls, pure amplification from the same
  A[0] with each sampler of :data:`SAMPLERS` (bernoulli at two rates, a per-update budget, the adversary of
  references/000), the same seeds and wall budget; ``human_calls_to_target`` per sampler is the human calls it took
  to reach 95% of the supervised baseline's held-out accuracy (k >= 2), None if it did not within the budget.

A[0] comes from ``--model DIR``, else ``runs/default/sft`` if ``make run`` left one, else it is trained here with
the default recipe. Each part's figures are merged into ``runs/bench/results.json`` as soon as it ends (a bench
stopped midway keeps the parts it finished), and all are printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import torch

from debate_amp.agents.humans import build_human
from debate_amp.agents.wiring import recipe_amp, recipe_generate_fn, recipe_model_agent, recipe_sampler
from debate_amp.config import Config, load_config
from debate_amp.generation import generate
from debate_amp.models import load_model
from debate_amp.protocol import Posed
from debate_amp.tasks import make_task
from debate_amp.tasks.base import beyond_name
from debate_amp.trainer.rollout import amplification_examples, amplify
from debate_amp.trainer.rundir import apply_plan, plan_sft_dir
from debate_amp.trainer.sft import run_sft

RESULTS = Path("runs/bench/results.json")

# The supervised baseline's overrides by task, beyond recipes/supervised_baseline.yaml. Its 320,000 examples are
# plenty for perm (100% held-out by 64,000) but ran out for add in 5.2 of the 15 minutes (21.1% on 2-6 digits, the
# learning rate already decayed to 0); over 1,000,000 examples the same model reached 97.7 / 98.8 / 70.6 / 40.0 /
# 35.3% on 2 / 3 / 4 / 5 / 6 digits in 14 minutes on one thread, and in this bench (two threads, 692,832 examples
# in 15 minutes) 99.5% (docs/add.md). The time cap still ends the run. Add keeps an evaluation every 2,000 steps
# (the recipe's was made finer for perm's wall ratio, which reads the time at the first evaluation within 3 points;
# add's amplification runs come nowhere near its supervised run, and 1,000,000 examples would be 125 evaluations).
SUPERVISED_OVERRIDES = {"add": ["sft.n_examples=1000000", "sft.eval_every_steps=2000"]}

# The amplification runs compared with the supervised baseline, by task: result key -> (run name, recipe). Every
# task: recipes/pure_amplification.yaml (on perm the default warm start: 223,381 human calls, 0.70 of the
# supervised run's labels before any update). Perm also: recipes/few_labels_amplification.yaml (a warm start of
# 12,000 examples and a human asked with p 0.015: the labels goal, a tenth of the supervised run's), and
# recipes/amplification_fresh_student.yaml (a fresh M distilling Amp~^2(H, A[0]) with the human decomposing every
# question, each update's targets distilled again in the next: at 0.6 as many human calls as the supervised run's
# labels), and recipes/few_labels_fresh_student.yaml (the same fresh M with A[0] drafting the steps, the human
# asked with p 0.05, and M learning the steps too: the ratio's and the labels' goals in one recipe).
PURE_AMPLIFICATION = {"amp": ("amplification", "recipes/pure_amplification.yaml")}
AMP_RECIPES = {
    "perm": {
        **PURE_AMPLIFICATION,
        "few_labels_amp": ("few_labels_amplification", "recipes/few_labels_amplification.yaml"),
        "fresh_student_amp": ("amplification_fresh_student", "recipes/amplification_fresh_student.yaml"),
        "few_labels_fresh_student_amp": ("few_labels_fresh_student", "recipes/few_labels_fresh_student.yaml"),
    },
}


A0_EXAMPLES = 128_000
"""The warm start of an A[0] trained from new weights with the default recipe (the bench's, and
``examples/alpha_sweep.py``'s, when no run left one), as every bench's A[0] since 2026-12-01: the default's own
64,000 examples start from its pretraining stage's M (a train run's), which :func:`run_sft` alone does not run."""


def _a0(cfg: Config, model_dir: str | None) -> Path:
    if model_dir:
        return Path(model_dir)
    if (cfg.run_dir / cfg.sft.output_subdir / "config.json").is_file():
        return cfg.run_dir / cfg.sft.output_subdir
    print(f"no A[0] at {cfg.run_dir / cfg.sft.output_subdir}: training one with the default recipe's warm start")
    return run_sft(replace(cfg, sft=replace(cfg.sft, n_examples=A0_EXAMPLES)), progress=True).model_dir


def bench_rollouts(cfg: Config, model_dir: Path, n: int = 64, repeats: int = 3) -> dict[str, float]:
    """Rollouts per second for n concurrent Amp~ calls against the same calls made one at a time."""
    model, tokenizer = load_model(cfg.model, model_dir)
    g = cfg.generation
    task = make_task(cfg)
    questions = task.eval_questions(n, seed=cfg.run.seed)

    def agent():
        human = build_human(cfg.human, task, seed=cfg.run.seed).agent
        policy = recipe_model_agent(cfg, recipe_generate_fn(cfg, model, tokenizer, g.temperature, g.top_p), "policy")
        return recipe_amp(cfg, human, policy, recipe_sampler(cfg, cfg.run.seed)), policy

    async def concurrent(amp):
        return await asyncio.gather(*(amp(Posed("answer", q)) for q in questions))

    async def one_at_a_time(amp):
        return [await amp(Posed("answer", q)) for q in questions]

    timings: dict[str, list[float]] = {"batched": [], "sequential": []}
    accuracy: dict[str, float] = {}
    calls: dict[str, int] = {}
    asyncio.run(concurrent(agent()[0]))  # warm-up
    for _ in range(repeats):  # interleaved, so both see the same machine state
        for name, runner in (("batched", concurrent), ("sequential", one_at_a_time)):
            torch.manual_seed(cfg.run.seed)
            amp, policy = agent()
            start = time.perf_counter()
            replies = asyncio.run(runner(amp))
            timings[name].append(time.perf_counter() - start)
            accuracy[name] = sum(q.score(r.text) for r, q in zip(replies, questions, strict=True)) / n
            calls[name] = policy.batcher.generate_calls
    best = {name: min(ts) for name, ts in timings.items()}
    return {
        "rollout_batched_per_s": n / best["batched"],
        "rollout_sequential_per_s": n / best["sequential"],
        "rollout_batched_speedup": best["sequential"] / best["batched"],
        "rollout_batched_generate_calls": calls["batched"],
        "rollout_sequential_generate_calls": calls["sequential"],
        "rollout_amp_accuracy": accuracy["batched"],
    }


def bench_amplification_speed(cfg: Config, model_dir: Path, n: int = 1024, repeats: int = 3) -> dict[str, float]:
    """Amplified targets per second (greedy Amp~(H, M) on n answer questions, one event loop) against a bare
    batched ``generate`` of the same n answer prompts in batches of the same size (the limit: one model call per
    target, no human, no tree). Best of ``repeats``, interleaved."""
    model, tokenizer = load_model(cfg.model, model_dir)
    g = cfg.generation
    task = make_task(cfg)
    questions = task.eval_questions(n, seed=cfg.run.seed + 2)
    prompts = [Posed("answer", q).render() for q in questions]

    def bare() -> None:
        for start in range(0, n, cfg.amp.max_batch):
            generate(model, tokenizer, prompts[start : start + cfg.amp.max_batch], max_new_tokens=g.max_answer_tokens)

    def amplified() -> list:
        policy = recipe_model_agent(cfg, recipe_generate_fn(cfg, model, tokenizer, 0.0), "policy")
        human = build_human(cfg.human, task, seed=cfg.run.seed).agent
        amp = recipe_amp(cfg, human, policy, recipe_sampler(cfg, cfg.run.seed), cfg.amp.levels)
        return amplify(questions, amp)

    timings: dict[str, list[float]] = {"bare": [], "amplified": []}
    replies: list = []
    for _ in range(repeats):
        start = time.perf_counter()
        bare()
        timings["bare"].append(time.perf_counter() - start)
        start = time.perf_counter()
        replies = amplified()
        timings["amplified"].append(time.perf_counter() - start)
    best = {name: min(ts) for name, ts in timings.items()}
    # What the distillation is fed: every amplified answer in the trees (with amp.levels > 1 the subquestions'
    # answers too), against one answer per prompt from the bare generate.
    targets = sum(e.kind == "amplified" for e in amplification_examples(replies))
    return {
        "amp_answers_per_s": n / best["amplified"],
        "amp_targets_per_s": targets / best["amplified"],
        "bare_generate_per_s": n / best["bare"],
        "amp_pipeline_efficiency": (targets / best["amplified"]) / (n / best["bare"]),
        "amp_targets_accuracy": sum(q.score(r.text) for r, q in zip(replies, questions, strict=True)) / n,
    }


def _first_time(curve: list[tuple[float, float]], target: float) -> float | None:
    """The first time (seconds) at which accuracy reached ``target``, or None."""
    return next((t for t, acc in curve if acc >= target), None)


def _isolated(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in a new Python process (spawned), its result returned: every timed run of the learning bench
    starts from the same state of a process, whatever ran before it. Run third in one process, after 30 minutes of
    the other two amplification recipes, the fresh-student recipe's clock ran 17-20% slower than in a process of its
    own, its warm start included (docs/benchmarks.md, 2026-12-07)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _supervised_run(cfg: Config) -> dict[str, Any]:
    """The supervised baseline (:func:`run_sft` on the recipe's gold answers): what the bench reads of it."""
    result = run_sft(cfg, progress=True)
    return {
        "curve": result.curve,
        "heldout_accuracy": result.report.beyond(),
        "train_seconds": result.train_seconds,
        "n_examples_seen": result.n_examples_seen,
    }


def _amplification_run(cfg: Config) -> dict[str, Any]:
    """An amplification recipe's run, from scratch (``overwrite``; its warm start included unless the recipe starts
    from a model): what the bench reads of it beside the run's ``metrics.jsonl``."""
    from debate_amp.trainer.loop import train

    summary = train(cfg, progress=True, overwrite=True)
    return {"heldout_accuracy": summary["report"].beyond(), "human_calls": summary["human_calls"]}


def bench_learning(minutes: float, task: str = "perm", output_dir: str = "runs/bench") -> dict[str, Any]:
    """Pure amplification against the supervised baseline, same task, same held-out questions (beyond the human:
    perm k >= 2, add digits >= 2), each trained from scratch for at most ``minutes`` of wall time, with learning
    curves. The recipes are perm's; for another task its defaults replace their task section, and the keys are
    prefixed with the task's name (``add_supervised_heldout_accuracy``)."""
    prefix = "" if task == "perm" else f"{task}_"
    sup_cfg = load_config(
        "recipes/supervised_baseline.yaml",
        [
            f"run.output_dir={output_dir}",
            f"run.name={prefix}supervised",
            f"sft.max_minutes={minutes}",
            *SUPERVISED_OVERRIDES.get(task, []),
        ],
        task=task,
    )
    apply_plan(plan_sft_dir(sup_cfg, overwrite=True))  # from scratch each time
    supervised = _isolated(_supervised_run, sup_cfg)
    beyond = beyond_name(make_task(sup_cfg))  # perm: k_ge_2
    sup_curve = [(p["seconds"], p[f"answer_{beyond}"]) for p in supervised["curve"]]
    sup_acc = supervised["heldout_accuracy"]
    target = sup_acc - 0.03  # "within 3 points of supervised"
    t_sup = _first_time(sup_curve, target)
    # the gold labels the supervised run had seen when it got there (not its whole budget, which is the recipe's)
    sup_labels_at_target = next((p["examples"] for p in supervised["curve"] if p[f"answer_{beyond}"] >= target), None)
    results: dict[str, Any] = {
        "supervised_heldout_accuracy": sup_acc,
        "supervised_minutes": supervised["train_seconds"] / 60,
        "supervised_labels": supervised["n_examples_seen"],
        "supervised_labels_at_target": sup_labels_at_target,
        "supervised_curve": sup_curve,
        "learning_bench_minutes_cap": minutes,
    }
    for key, (name, recipe) in AMP_RECIPES.get(task, PURE_AMPLIFICATION).items():
        amp_cfg = load_config(
            recipe,
            [f"run.output_dir={output_dir}", f"run.name={prefix}{name}", f"trainer.max_minutes={minutes}"],
            task=task,
        )
        amplified = _isolated(_amplification_run, amp_cfg)  # from scratch, warm start included
        rows = [json.loads(line) for line in (amp_cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
        tag = f"eval/answer_accuracy_{beyond}"
        evaluated = [r for r in rows if tag in r]
        # the supervised curve's clock: training only (data preparation and evaluation left out, as there)
        amp_curve = [(r["perf/train_s"], r[tag]) for r in evaluated]
        t_amp = _first_time(amp_curve, target)
        t_amp_since_start = _first_time([(r["perf/elapsed_s"], r[tag]) for r in evaluated], target)
        calls, calls_at_target = 0, None  # the updates' human calls up to the first update that got there
        for r in rows:
            calls += int(r.get("amp/human_calls", 0) + r.get("rehearsal/human_calls", 0))
            if calls_at_target is None and r.get(tag, -1.0) >= target:
                calls_at_target = calls
        # What the warm start cost the human: one call per reply imitated, the subtrees' calls per integrated answer.
        a0_heldout = json.loads((amp_cfg.run_dir / amp_cfg.sft.output_subdir / "heldout.json").read_text())
        a0_examples = int(a0_heldout.get("human_calls", amp_cfg.sft.n_examples))
        results |= {
            f"{key}_recipe": recipe,
            f"{key}_heldout_accuracy": amplified["heldout_accuracy"],
            f"{key}_minutes": amp_curve[-1][0] / 60 if amp_curve else float("nan"),
            f"{key}_wall_ratio": t_amp / t_sup if t_amp is not None and t_sup else None,
            f"{key}_wall_ratio_since_start": t_amp_since_start / t_sup
            if t_amp_since_start is not None and t_sup
            else None,
            f"{key}_human_calls": amplified["human_calls"],
            f"{key}_warm_start_human_calls": a0_examples,
            f"{key}_human_fraction": (amplified["human_calls"] + a0_examples) / max(1, supervised["n_examples_seen"]),
            # the same when each run first came within 3 points: the human's answers it took against the gold
            # labels the supervised run took (None where either never got there)
            f"{key}_human_calls_at_target": None if calls_at_target is None else calls_at_target + a0_examples,
            f"{key}_human_fraction_at_target": (calls_at_target + a0_examples) / sup_labels_at_target
            if calls_at_target is not None and sup_labels_at_target
            else None,
            f"{key}_curve": amp_curve,
        }
    return {prefix + key: value for key, value in results.items()}


SAMPLERS: dict[str, tuple[str, ...]] = {
    "bernoulli_0.1": ("sampler.kind=bernoulli", "sampler.p=0.1"),
    "bernoulli_0.3": ("sampler.kind=bernoulli", "sampler.p=0.3"),
    "budget": ("sampler.kind=bernoulli", "sampler.p=0.3", "sampler.per_update=500"),
    "adversary": ("sampler.kind=adversary", "amp.curriculum=false"),
}
"""The samplers the human-efficiency bench compares, as recipe overrides of recipes/pure_amplification.yaml. Not the
sampler alone: the adversary's run also turns the amplification curriculum off (with depth 0 first, where M is
always right, it learned "M is right" in one update: docs/adversarial_ida.md), so ``adversary_over_best_bernoulli``
compares the two settings, each as it is used."""


def calls_to_target(curve: list[tuple[int, float]], target: float) -> int | None:
    """The cumulative human calls at the first point of ``curve`` ((calls, accuracy), in order) whose accuracy
    reached ``target``; None if none did."""
    return next((calls for calls, acc in curve if acc >= target), None)


def bench_human_efficiency(
    a0: Path,
    minutes: float,
    supervised_accuracy: float | None,
    samplers: dict[str, tuple[str, ...]] = SAMPLERS,
    output_dir: str = "runs/bench",
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Human calls against held-out accuracy (perm, k >= 2, asked directly) for each sampler: pure amplification
    (``recipes/pure_amplification.yaml``, its rehearsal on) from the same A[0], evaluated every update, at most
    ``minutes`` each. The warm start's human calls are not counted (the same A[0] for all), nor the rehearsal's: it
    replays the warm-start examples of the recipe, which are the default recipe's (those ``make run``'s A[0], the
    bench's default, was trained on), labels that warm start paid for; the trainer logs them as
    ``rehearsal/human_calls`` all the same (it did not make A[0] itself), and they are reported apart
    (``human_efficiency_rehearsal_calls``), with the adversary's warm-up on the same examples
    (``adversary/warm_start_human_calls``, ``sampler.adversary_warm_start``). The target is 95% of
    ``supervised_accuracy`` (the supervised baseline's held-out accuracy from this bench run or an earlier one; 1.0
    when there is none). ``extra``: more overrides for every run (the tests' tiny model). Each sampler's run in a
    process of its own, as the learning part's (:func:`_isolated`): the minutes cap each alike."""
    target = 0.95 * (supervised_accuracy if supervised_accuracy is not None else 1.0)
    curves: dict[str, list[tuple[int, float]]] = {}
    rehearsal_calls: dict[str, int] = {}
    for name, overrides in samplers.items():
        cfg = load_config(
            "recipes/pure_amplification.yaml",
            [
                f"run.output_dir={output_dir}",
                f"run.name=human_efficiency_{name}",
                f"model.path={a0}",
                "trainer.warm_start=false",
                "trainer.eval_every=1",
                f"trainer.max_minutes={minutes}",
                *extra,
                *overrides,
            ],
        )
        print(f"\nhuman efficiency: {name} ({' '.join(overrides)}), at most {minutes:g} minutes")
        _isolated(_amplification_run, cfg)
        rows = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
        calls, curve = 0, []
        replayed = ("rehearsal/human_calls", "adversary/warm_start_human_calls")  # A[0]'s warm-start labels
        rehearsal_calls[name] = sum(int(row.get(key, 0)) for row in rows for key in replayed)
        for row in rows:
            calls += int(row.get("amp/human_calls", 0))
            if "eval/answer_accuracy_k_ge_2" in row:
                curve.append((calls, row["eval/answer_accuracy_k_ge_2"]))
        curves[name] = curve
    to_target = {name: calls_to_target(curve, target) for name, curve in curves.items()}
    reached = [n for name, n in to_target.items() if name.startswith("bernoulli") and n is not None]
    adversary = to_target.get("adversary")
    return {
        "human_efficiency_target": target,
        "human_efficiency_minutes_cap": minutes,
        "human_calls_to_target": to_target,
        "human_efficiency_curves": curves,
        "human_efficiency_rehearsal_calls": rehearsal_calls,
        "adversary_over_best_bernoulli": adversary / min(reached) if adversary is not None and reached else None,
    }


HUMAN_DECOMPOSES = "recipes/amplification_human_decomposes.yaml"
"""The second amplifier of the speed part: every step the human's, so the model's waves are its answers alone."""

SPEED_OVERRIDES = ("sampler.kind=bernoulli",)
"""The speed figures' Amp~ asks the human by a coin (p = 0.1, as every bench since the first): the default recipe's
adversary is learned during a run, and an untrained one here would doubt and trust nothing like a trained one."""


def print_learning(results: dict[str, Any], tasks: list[str]) -> None:
    """The learning comparison's lines of ``make bench``: each task's supervised run, then its amplification runs."""
    for task in tasks:
        p = "" if task == "perm" else f"{task}_"
        beyond = {"perm": "sigma^k(x), k >= 2", "add": "sums, digits >= 2"}.get(task, task)
        print(
            f"  held-out {beyond}, asked directly: supervised baseline "
            f"{results[f'{p}supervised_heldout_accuracy']:.1%} ({results[f'{p}supervised_minutes']:.1f} min, "
            f"{results[f'{p}supervised_labels']} gold labels; "
            + (
                "never within 3 points of its end)"
                if results.get(f"{p}supervised_labels_at_target") is None
                else f"{results[f'{p}supervised_labels_at_target']} when first within 3 points of its end)"
            )
        )
        for key, (name, _) in AMP_RECIPES.get(task, PURE_AMPLIFICATION).items():
            k = f"{p}{key}"
            ratio, since_start = results[f"{k}_wall_ratio"], results[f"{k}_wall_ratio_since_start"]
            print(
                f"    {name}: {results[f'{k}_heldout_accuracy']:.1%} ({results[f'{k}_minutes']:.1f} min, "
                f"{results[f'{k}_human_calls']} human calls + {results[f'{k}_warm_start_human_calls']} in the warm "
                f"start: {results[f'{k}_human_fraction']:.3f} of the gold labels); {key}_wall_ratio "
                + ("not reached" if ratio is None else f"{ratio:.2f}")
                + ("" if since_start is None else f" ({since_start:.2f} from the run's start)")
                + (
                    ""
                    if (at := results.get(f"{k}_human_fraction_at_target")) is None
                    else f"; at that point {results[f'{k}_human_calls_at_target']} human calls: {at:.3f} of the "
                    "gold labels the supervised run had then"
                )
            )


def save_results(results: dict[str, Any], machine: str) -> dict[str, Any]:
    """Merge ``results`` (with the machine and today's date) into :data:`RESULTS`, replacing the file whole: the keys
    of earlier benches that this one does not measure are kept, and a kill leaves the old file or the new one, never
    half of one. Returns ``results``."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    merged = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    merged.update(results, machine=machine, date=str(date.today()))
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(merged, indent=2))
    os.replace(tmp, RESULTS)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m debate_amp.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="A[0] directory (default: runs/default/sft, trained if missing)")
    parser.add_argument("--recipe", default="recipes/default.yaml")
    parser.add_argument("--learning", action="store_true", help="also the amplification vs supervised comparison")
    parser.add_argument("--minutes", type=float, default=15.0, help="--learning: wall-time cap of each run")
    parser.add_argument(
        "--tasks", nargs="+", default=["perm", "add"], help="--learning: the tasks compared (default: perm add)"
    )
    parser.add_argument(
        "--human-efficiency", action="store_true", help="also held-out accuracy against human calls, per sampler"
    )
    parser.add_argument("--he-minutes", type=float, default=8.0, help="--human-efficiency: minutes per sampler")
    args = parser.parse_args(argv)
    cfg = load_config(args.recipe, list(SPEED_OVERRIDES))
    random.seed(cfg.run.seed)
    a0 = _a0(cfg, args.model)
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    # Each part's keys are merged into the results file as soon as it ends: a bench stopped an hour in keeps them.
    results: dict[str, Any] = save_results(bench_rollouts(cfg, a0), machine)
    results.update(save_results(bench_amplification_speed(cfg, a0), machine))
    decomposes = bench_amplification_speed(load_config(HUMAN_DECOMPOSES), a0)
    results.update(save_results({f"human_decomposes_{key}": value for key, value in decomposes.items()}, machine))
    if args.learning:
        for task in args.tasks:
            results.update(save_results(bench_learning(args.minutes, task), machine))
    if args.human_efficiency:
        # The file now holds this bench's parts and an earlier bench's: the supervised accuracy from either.
        supervised = json.loads(RESULTS.read_text()).get("supervised_heldout_accuracy")
        results.update(save_results(bench_human_efficiency(a0, args.he_minutes, supervised), machine))
    print(f"\nbench ({date.today()}, {machine})")
    print(
        f"  64 concurrent Amp~ calls, batched:   {results['rollout_batched_per_s']:8.1f} rollouts/s "
        f"({results['rollout_batched_generate_calls']} generate calls)"
    )
    print(
        f"  the same calls one at a time:         {results['rollout_sequential_per_s']:8.1f} rollouts/s "
        f"({results['rollout_sequential_generate_calls']} generate calls)"
    )
    print(f"  rollout_batched_speedup:              {results['rollout_batched_speedup']:8.1f}x")
    print(f"  (Amp~ accuracy of A[0] on these questions: {results['rollout_amp_accuracy']:.1%})")
    print(
        f"  amplified targets (greedy Amp~^{cfg.amp.levels}, 1024 questions, {results['amp_answers_per_s']:.1f} "
        f"answers/s): {results['amp_targets_per_s']:8.1f}/s; bare generate of "
        f"the same prompts: {results['bare_generate_per_s']:8.1f}/s; efficiency {results['amp_pipeline_efficiency']:.2f}"
    )
    decomposed = {key: results[f"human_decomposes_{key}"] for key in ("amp_targets_per_s", "bare_generate_per_s")}
    print(
        f"  the same, the human making every step ({HUMAN_DECOMPOSES}): "
        f"{decomposed['amp_targets_per_s']:8.1f}/s against {decomposed['bare_generate_per_s']:8.1f}/s; "
        f"efficiency {results['human_decomposes_amp_pipeline_efficiency']:.2f}"
    )
    if args.learning:
        print_learning(results, args.tasks)
    if args.human_efficiency:
        print(
            f"  human calls to reach {results['human_efficiency_target']:.1%} held-out on k >= 2 (95% of supervised):"
        )
        for name, n in results["human_calls_to_target"].items():
            last = results["human_efficiency_curves"][name][-1:] or [(0, float("nan"))]
            reached = "not reached" if n is None else f"{n:,}"
            rehearsed = results["human_efficiency_rehearsal_calls"].get(name, 0)
            print(
                f"    {name:14s} {reached:>12s}   (last: {last[0][1]:.1%} after {last[0][0]:,} calls; A[0]'s "
                f"warm-start labels replayed worth {rehearsed:,} calls, not counted)"
            )
        ratio = results["adversary_over_best_bernoulli"]
        print("  adversary / best bernoulli: " + ("n/a" if ratio is None else f"{ratio:.2f}"))
    print(f"  written to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
