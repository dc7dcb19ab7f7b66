"""``make bench``: speed ratios measured side by side in one run, on this machine.

rollout_batched_speedup: 64 concurrent Amp~(H, M) calls on the tiny model A[0] (wave batching: one ``generate`` per
wave) against the same 64 calls made one at a time, same model, same sampling settings, same run.

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
from debate_amp.tasks.perm import PermHuman, score
from debate_amp.trainer.sft import make_task, run_sft

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
        policy = ModelAgent(hf_generate_fn(model, tokenizer, g.max_new_tokens, g.temperature, g.top_p), "policy")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m debate_amp.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="A[0] directory (default: runs/default/sft, trained if missing)")
    parser.add_argument("--recipe", default="recipes/default.yaml")
    args = parser.parse_args(argv)
    cfg = load_config(args.recipe)
    random.seed(cfg.run.seed)
    results = bench_rollouts(cfg, _a0(cfg, args.model))
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
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    merged = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    merged.update(results, machine=machine, date=str(date.today()))
    RESULTS.write_text(json.dumps(merged, indent=2))
    print(f"  written to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
