"""``make bench``: figures measured side by side in one run, on this machine.

- rollout_batched_speedup: 64 concurrent Amp~(H, M) calls on the tiny model A[0] (wave batching: one ``generate``
  per wave) against the same 64 calls made one at a time, same model, same sampling settings, same run.
- amp_heldout_accuracy / supervised_heldout_accuracy (with ``--learning``): ``recipes/pure_amplification.yaml``
  and ``recipes/supervised_baseline.yaml`` trained here on perm (N = 8, k <= 7), each asked sigma^k(x) directly on
  held-out questions with k >= 2 (the powers the human cannot do itself); learning_bench_minutes is the wall time.

A[0] comes from ``--model DIR``, else ``runs/default/sft`` if ``make run`` left one, else it is trained here with
the default recipe. Figures are printed and merged into ``runs/bench/results.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import time
from datetime import date
from pathlib import Path

import torch

from debate_amp.agents.humans.synthetic import SyntheticHuman
from debate_amp.agents.model import ModelAgent, hf_generate_fn
from debate_amp.combinators import amp_approx
from debate_amp.config import Config, load_config
from debate_amp.models import load_model
from debate_amp.protocol import Posed
from debate_amp.samplers import build_sampler
from debate_amp.tasks import make_task
from debate_amp.tasks.perm import PermHuman, score
from debate_amp.trainer.sft import run_sft

RESULTS = Path("runs/bench/results.json")


def _a0(cfg: Config, model_dir: str | None) -> Path:
    if model_dir:
        return Path(model_dir)
    if (cfg.run_dir / cfg.sft.output_subdir / "config.json").is_file():
        return cfg.run_dir / cfg.sft.output_subdir
    print(f"no A[0] at {cfg.run_dir / cfg.sft.output_subdir}: training one with the default recipe")
    return run_sft(cfg, progress=True).model_dir


def bench_rollouts(cfg: Config, model_dir: Path, n: int = 64, repeats: int = 3) -> dict[str, float]:
    """Rollouts per second for n concurrent Amp~ calls against the same calls made one at a time."""
    model, tokenizer = load_model(cfg.model, model_dir)
    g = cfg.generation
    questions = make_task(cfg).eval_questions(n, seed=cfg.run.seed)

    def agent():
        human = SyntheticHuman(PermHuman())
        policy = ModelAgent(
            hf_generate_fn(model, tokenizer, g.max_new_tokens, g.temperature, g.top_p),
            "policy",
            cfg.amp.max_batch,
            {"answer": g.max_answer_tokens},
        )
        sampler = build_sampler(cfg.sampler.kind, cfg.sampler.p, cfg.sampler.threshold, seed=cfg.run.seed)
        return amp_approx(human, policy, sampler, cfg.amp.max_rounds), policy

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
            accuracy[name] = sum(score(r.text, q) for r, q in zip(replies, questions, strict=True)) / n
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


def bench_learning(updates: int) -> dict[str, float]:
    """Pure amplification against the supervised baseline, same task, same held-out questions (k >= 2)."""
    from debate_amp.trainer.loop import train

    start = time.perf_counter()
    sup_cfg = load_config("recipes/supervised_baseline.yaml", ["run.output_dir=runs/bench", "run.name=supervised"])
    supervised = run_sft(sup_cfg, progress=True).report
    amp_cfg = load_config(
        "recipes/pure_amplification.yaml",
        ["run.output_dir=runs/bench", "run.name=amplification", f"trainer.updates={updates}"],
    )
    amplified = train(amp_cfg, progress=True, overwrite=True)["report"]  # from scratch, warm start included
    beyond = list(range(2, sup_cfg.task.max_power + 1))
    return {
        "amp_heldout_accuracy": amplified.accuracy("answer", beyond),
        "supervised_heldout_accuracy": supervised.accuracy("answer", beyond),
        "learning_bench_minutes": (time.perf_counter() - start) / 60,
        "learning_bench_updates": updates,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m debate_amp.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="A[0] directory (default: runs/default/sft, trained if missing)")
    parser.add_argument("--recipe", default="recipes/default.yaml")
    parser.add_argument("--learning", action="store_true", help="also the amplification vs supervised comparison")
    parser.add_argument("--updates", type=int, default=12, help="--learning: pure amplification updates")
    args = parser.parse_args(argv)
    cfg = load_config(args.recipe)
    random.seed(cfg.run.seed)
    results: dict[str, float] = bench_rollouts(cfg, _a0(cfg, args.model))
    if args.learning:
        results.update(bench_learning(args.updates))
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
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
    if args.learning:
        print(
            f"  held-out sigma^k(x), k >= 2, asked directly: pure amplification {results['amp_heldout_accuracy']:.1%}, "
            f"supervised baseline {results['supervised_heldout_accuracy']:.1%} "
            f"({results['learning_bench_minutes']:.1f} minutes)"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    merged = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    merged.update(results, machine=machine, date=str(date.today()))
    RESULTS.write_text(json.dumps(merged, indent=2))
    print(f"  written to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
