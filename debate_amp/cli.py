"""``debate-amp``: the command line.

    debate-amp sft RECIPE [section.key=value ...]     warm start A[0] by imitating the synthetic human
    debate-amp amp --model DIR|perfect [--question Q]   print one question's amplification tree
    debate-amp config [RECIPE] [section.key=value ...]  print the resolved recipe, or every key with its meaning

Recipes are validated before anything heavy is imported: a bad key, value or path fails in one line, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from debate_amp.config import Config, ConfigError, config_to_dict, describe_fields, load_config

EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="debate-amp", description="Trainer for the debate-amplification hybrid.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sft = sub.add_parser("sft", help="warm start A[0]: imitate the synthetic human, report held-out accuracy by k")
    sft.add_argument("recipe", help="recipe YAML, e.g. recipes/default.yaml")
    sft.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. sft.epochs=1")
    sft.add_argument("--no-progress", action="store_true", help="no progress bars")

    amp = sub.add_parser("amp", help="answer one question with Amp~(H, M) and print its amplification tree")
    amp.add_argument(
        "--model",
        required=True,
        help="a local model directory (e.g. runs/default/sft), or 'perfect' for the scripted perfect model",
    )
    amp.add_argument(
        "--question", help="e.g. 's=6:5 7:4 0:3 1:7 2:0 3:1 4:6 5:2 x=5 k=6' (default: drawn from the task)"
    )
    amp.add_argument("--recipe", help="recipe YAML for the task, human, sampler and generation settings")
    amp.add_argument("--labels", help="label store (SQLite) for the human's answers")
    amp.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. sampler.kind=always")

    config = sub.add_parser("config", help="print the resolved recipe (or, with --keys, every key documented)")
    config.add_argument("recipe", nargs="?", help="recipe YAML (default: built-in defaults)")
    config.add_argument("overrides", nargs="*", help="section.key=value overrides")
    config.add_argument("--keys", action="store_true", help="list every key with its default and meaning")
    return parser


def _load(recipe: str | None, overrides: list[str]) -> Config:
    try:
        return load_config(recipe, overrides)
    except ConfigError as e:
        print(f"debate-amp: error: {e}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None


def cmd_sft(args: argparse.Namespace) -> int:
    cfg = _load(args.recipe, args.overrides)
    from debate_amp.trainer.sft import run_sft

    result = run_sft(cfg, progress=not args.no_progress)
    report = result.report
    print(f"\nA[0] saved to {result.model_dir} ({result.n_examples} examples, {result.train_seconds:.0f}s training)")
    print("held-out accuracy by k (answer: sigma^k(x) asked directly; step / integrate: the human's steps)")
    print(report.table())
    print(
        f"direct answers k<=1: {report.accuracy('answer', [0, 1]):.1%}   "
        f"steps, all k: {report.accuracy('step'):.1%}   integrate, all k: {report.accuracy('integrate'):.1%}"
    )
    return 0


def cmd_amp(args: argparse.Namespace) -> int:
    import asyncio
    import random

    from debate_amp.tasks.perm import parse_question

    cfg = _load(args.recipe, args.overrides)
    if args.model != "perfect" and not Path(args.model, "config.json").is_file():
        _fail(f"--model: not a model directory (no config.json): {args.model}")
    if args.question is not None:
        try:
            question = parse_question(args.question)
        except ValueError as e:
            _fail(f"--question: {e}")
    else:
        from debate_amp.trainer.sft import make_task

        question = make_task(cfg).sample(random.Random(cfg.run.seed), heldout=True)

    from debate_amp.agents.humans import build_human
    from debate_amp.agents.humans.replay import UnseenQuestion
    from debate_amp.agents.labels import LabelStore
    from debate_amp.agents.model import GenerateFn, ModelAgent, hf_generate_fn
    from debate_amp.combinators import amp_approx
    from debate_amp.protocol import Posed
    from debate_amp.samplers import build_sampler
    from debate_amp.tasks.perm import perfect_generate

    generate_fn: GenerateFn
    if args.model == "perfect":
        generate_fn = perfect_generate
    else:
        from debate_amp.models import load_model

        model, tokenizer = load_model(cfg.model, args.model)
        g = cfg.generation
        generate_fn = hf_generate_fn(model, tokenizer, g.max_new_tokens, g.temperature, g.top_p)
    human, expert = build_human(cfg.human, seed=cfg.run.seed, store=LabelStore(args.labels) if args.labels else None)
    s = cfg.sampler
    sampler = build_sampler(s.kind, s.p, s.threshold, s.per_update, s.per_run, seed=cfg.run.seed)
    agent = amp_approx(human, ModelAgent(generate_fn, "policy", cfg.amp.max_batch), sampler, cfg.amp.max_rounds)
    try:
        reply = asyncio.run(agent(Posed("answer", question)))
    except UnseenQuestion as e:
        print(f"debate-amp: error: {e}", file=sys.stderr)
        return 1
    print(render_tree(reply.trace))
    verdict = "correct" if reply.text == str(question.gold) else f"wrong (gold {question.gold})"
    print(f"\nanswer {reply.text}: {verdict}; human calls {expert.calls}")
    return 0


def render_tree(trace) -> str:
    """An amplification tree, one node a line, marking who answered each node."""
    from debate_amp.tasks.perm import render_query

    def head(node) -> str:
        posed = node.posed
        what = posed.kind + "".join(f" #{i + 1}={a}" for i, a in enumerate(posed.workspace))
        about = render_query(posed.question.x, posed.question.k)
        who = "human, from the label store" if node.from_store else node.who
        if node.replaced is not None:
            who += f", replacing {node.replaced.who}'s {node.replaced.text.strip()!r}"
        if node.op == "amp":
            who = f"Amp; last step by {who}"
        return f"{what} [{about}] -> {node.text.strip()!r}  ({who})"

    def walk(node, prefix: str) -> list[str]:
        lines = []
        for i, child in enumerate(node.children):
            last = i == len(node.children) - 1
            lines.append(prefix + ("`-- " if last else "|-- ") + head(child))
            lines.extend(walk(child, prefix + ("    " if last else "|   ")))
        return lines

    return "\n".join([head(trace), *walk(trace, "")])


def _fail(message: str) -> None:
    print(f"debate-amp: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def cmd_config(args: argparse.Namespace) -> int:
    if args.keys:
        for key, default, doc in describe_fields():
            print(f"{key} = {default}\n    {doc}")
        return 0
    import yaml

    cfg = _load(args.recipe, args.overrides)
    print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after options (argparse stops collecting positionals at the first option)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    commands = {"sft": cmd_sft, "amp": cmd_amp, "config": cmd_config}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
