"""``debate-amp``: the command line.

    debate-amp train RECIPE [section.key=value ...] [--resume | --overwrite]
                                                     the main job: warm start, then PPO on debates + imitation
    debate-amp sft RECIPE [section.key=value ...]     warm start A[0] by imitating the synthetic human
    debate-amp amp --model DIR|perfect [--question Q]   print one question's amplification tree
    debate-amp debate --model DIR|perfect [--question Q] [--liar even|odd] [--max-turns N]   print one debate
    debate-amp config [RECIPE] [section.key=value ...]  print the resolved recipe, or every key with its meaning

Recipes are validated before anything heavy is imported: a bad key, value or path fails in one line, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from debate_amp.config import Config, ConfigError, config_to_dict, describe_fields, load_config

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3  # max_bad_updates non-finite updates in a row
EXIT_INTERRUPTED = 130  # SIGINT, after the checkpoint was written


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="debate-amp", description="Trainer for the debate-amplification hybrid.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="the main job: warm start, then PPO on debates mixed with imitation")
    train.add_argument("recipe", help="recipe YAML, e.g. recipes/default.yaml")
    train.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. trainer.updates=5")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.add_argument(
        "--resume", action="store_true", help="continue the run directory from its latest whole checkpoint"
    )
    train.add_argument("--overwrite", action="store_true", help="delete the run directory first and start again")

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

    debate = sub.add_parser("debate", help="run one debate and print its turns, judgments and verdict")
    debate.add_argument("--model", required=True, help="a local model directory, or 'perfect' for the scripted model")
    debate.add_argument("--question", help="a perm question (default: drawn from the task)")
    debate.add_argument("--liar", choices=["even", "odd"], help="a scripted liar argues this side")
    debate.add_argument("--max-turns", type=int, help="longest debate (default: the recipe's debate.max_turns)")
    debate.add_argument("--recipe", help="recipe YAML for the task, human, sampler and generation settings")
    debate.add_argument("--trees", action="store_true", help="also print each argument's amplification tree")
    debate.add_argument("overrides", nargs="*", help="section.key=value overrides")

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


def cmd_train(args: argparse.Namespace) -> int:
    cfg = _load(args.recipe, args.overrides)
    from debate_amp.trainer.checkpoint import CheckpointError
    from debate_amp.trainer.loop import TrainingDiverged, train
    from debate_amp.trainer.rundir import RunDirError

    try:
        summary = train(cfg, progress=not args.no_progress, resume=args.resume, overwrite=args.overwrite)
    except (RunDirError, CheckpointError) as e:
        print(f"debate-amp: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TrainingDiverged as e:
        print(f"debate-amp: training stopped: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    if not summary:  # not the main process
        return 0
    if summary.get("interrupted"):
        return EXIT_INTERRUPTED
    report = summary["report"]
    print(
        f"\ntrained {cfg.trainer.updates} updates; model, transcripts, metrics.jsonl and TensorBoard events in "
        f"{summary['run_dir']}"
    )
    print("held-out accuracy by k (answer: sigma^k(x) asked directly; step / integrate: the human's steps)")
    print(report.table())
    human_ks = [k for k in report.ks() if k <= 1]
    beyond = [k for k in report.ks() if k > 1]
    print(
        f"direct answers: k<=1 {report.accuracy('answer', human_ks):.1%}, "
        f"k>=2 (beyond the human) {report.accuracy('answer', beyond):.1%}"
    )
    print(f"human calls used: {summary['human_calls']}   mean debate length: {summary['mean_turns']:.2f} arguments")
    return 0


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


def _question(args: argparse.Namespace, cfg: Config):
    import random

    from debate_amp.tasks.perm import parse_question
    from debate_amp.trainer.sft import make_task

    if args.question is None:
        return make_task(cfg).sample(random.Random(cfg.run.seed), heldout=True)
    try:
        return parse_question(args.question)
    except ValueError as e:
        _fail(f"--question: {e}")


def _generate_fn(args: argparse.Namespace, cfg: Config, temperature: float):
    """The scripted perfect model, or a local model directory (loaded once, shared by policy and target)."""
    from debate_amp.agents.model import hf_generate_fn
    from debate_amp.tasks.perm import perfect_generate

    if args.model == "perfect":
        return perfect_generate
    if not Path(args.model, "config.json").is_file():
        _fail(f"--model: not a model directory (no config.json): {args.model}")
    from debate_amp.models import load_model

    if not hasattr(args, "_loaded"):
        args._loaded = load_model(cfg.model, args.model)
    model, tokenizer = args._loaded
    return hf_generate_fn(model, tokenizer, cfg.generation.max_new_tokens, temperature, cfg.generation.top_p)


def _amp_approx(cfg: Config, human, generate_fn, role: str):
    from debate_amp.agents.model import ModelAgent
    from debate_amp.combinators import amp_approx
    from debate_amp.samplers import build_sampler

    s = cfg.sampler
    sampler = build_sampler(s.kind, s.p, s.threshold, s.per_update, s.per_run, seed=cfg.run.seed)
    limits = {"answer": cfg.generation.max_answer_tokens}
    return amp_approx(human, ModelAgent(generate_fn, role, cfg.amp.max_batch, limits), sampler, cfg.amp.max_rounds)


def cmd_amp(args: argparse.Namespace) -> int:
    import asyncio

    from debate_amp.agents.humans import build_human
    from debate_amp.agents.humans.replay import UnseenQuestion
    from debate_amp.agents.labels import LabelStore
    from debate_amp.protocol import Posed

    cfg = _load(args.recipe, args.overrides)
    question = _question(args, cfg)
    generate_fn = _generate_fn(args, cfg, cfg.generation.temperature)
    human, expert = build_human(cfg.human, seed=cfg.run.seed, store=LabelStore(args.labels) if args.labels else None)
    agent = _amp_approx(cfg, human, generate_fn, "policy")
    try:
        reply = asyncio.run(agent(Posed("answer", question)))
    except UnseenQuestion as e:
        print(f"debate-amp: error: {e}", file=sys.stderr)
        return 1
    print(render_tree(reply.trace))
    verdict = "correct" if reply.text == str(question.gold) else f"wrong (gold {question.gold})"
    print(f"\nanswer {reply.text}: {verdict}; human calls {expert.calls}")
    return 0


def cmd_debate(args: argparse.Namespace) -> int:
    from debate_amp.agents.humans import build_human
    from debate_amp.debate.engine import ScriptedDebater, run_debates
    from debate_amp.tasks.perm import PermLiar, render_question

    cfg = _load(args.recipe, args.overrides)
    max_turns = cfg.debate.max_turns if args.max_turns is None else args.max_turns
    if max_turns < 1:
        _fail(f"--max-turns: must be at least 1, got {max_turns}")
    question = _question(args, cfg)
    human, expert = build_human(cfg.human, seed=cfg.run.seed)
    policy = _amp_approx(cfg, human, _generate_fn(args, cfg, cfg.generation.temperature), "policy")
    target = _amp_approx(cfg, human, _generate_fn(args, cfg, 0.0), "target")
    liar = {args.liar: ScriptedDebater(PermLiar(seed=cfg.run.seed))} if args.liar else {}
    (debate,) = run_debates([question], policy, target, max_turns, cfg.debate.force_stop_p, cfg.run.seed, **liar)

    print(f"question {render_question(question)}   (gold {question.gold})")
    for t, turn in enumerate(debate.turns):
        who = "scripted liar" if turn.trace.source.startswith("scripted") else _who_answered(turn.trace)
        print(f"\n[{t}] {turn.side:>4}: {turn.text}    ({who})")
        if args.trees:
            print("\n".join("      " + line for line in render_tree(turn.trace).splitlines()))
        c = debate.continues[t] if t < len(debate.continues) else None
        if c is not None:
            how = (
                "forced (force_stop_p)" if c.forced else f"judge said sufficient={c.text!r} ({_who_answered(c.trace)})"
            )
            print(f"     continue_{t} = {str(c.value).lower()}: {how}")
    assert debate.winner is not None
    print(
        f"\nverdict: {debate.winner.value} wins   (judge said {debate.winner.text!r}, "
        f"{_who_answered(debate.winner.trace)})"
    )
    print(
        "rewards: "
        + ", ".join(f"{side} {r:+.0f}" for side, r in debate.rewards.items())
        + "   catastrophe costs: "
        + " ".join(f"{c.value:g}" for c in debate.costs)
    )
    if args.liar:
        honest = "odd" if args.liar == "even" else "even"
        print(f"the judge picked the {'honest side' if debate.winner.value == honest else 'liar'}")
    print(f"human calls {expert.calls}")
    return 0


def _who_answered(trace) -> str:
    """Who answered the nodes of a tree: e.g. 'policy 3, human 1'."""
    if trace is None:
        return "no one"
    from collections import Counter

    def answered(node):  # the calls whose answers were used (a replaced draft was not)
        if not node.op:
            yield node.who
        for child in node.children:
            yield from answered(child)

    return ", ".join(f"{who} {n}" for who, n in Counter(answered(trace)).most_common())


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
    commands = {"train": cmd_train, "sft": cmd_sft, "amp": cmd_amp, "debate": cmd_debate, "config": cmd_config}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
