"""``debate-amp``: the command line.

    debate-amp train RECIPE [section.key=value ...] [--resume | --overwrite]
                                                     the main job: warm start, then PPO on debates + imitation
    debate-amp sft RECIPE [section.key=value ...]     warm start A[0] by imitating the synthetic human
    debate-amp ida RECIPE [section.key=value ...] [--resume | --overwrite]
                                                     the IDA outer loop: A[t+1] = Distill(Amplify(H, A[t]))
    debate-amp amp --model DIR|perfect [--question Q]   print one question's amplification tree
    debate-amp debate --model DIR|perfect [--question Q] [--liar even|odd] [--max-turns N]   print one debate
    debate-amp eval PATH... [--json] [--skip-bad]     statistics of saved debates (files or run directories)
    debate-amp eval --compare RUN_A RUN_B              B - A for each statistic, with 95% intervals
    debate-amp eval --protocol liar --model DIR|perfect [--n 500] [--max-turns 1 2 4 6]   honest vs scripted liar
    debate-amp eval PATH... --rejudge --judge-model DIR|perfect|human   agreement of another judge with the verdicts
    debate-amp eval PATH... --human-judgments FILE    people's judgments of those debates (debate-amp serve --judge)
    debate-amp report RUN_DIR [--out FILE]             one self-contained HTML page: curves, eval table, transcripts
    debate-amp serve RUN_DIR|STORE [--host H] [--port P] [--token T]   the web app where people answer as H
    debate-amp serve --judge TRANSCRIPTS... [--store FILE]   the web app where people judge saved debates
    debate-amp labels RUN_DIR|STORE [--export FILE.jsonl] [--answer [--person NAME]]
                                                     who answered what, pending questions; export; answer here
    debate-amp config [RECIPE] [section.key=value ...]  print the resolved recipe, or every key with its meaning

Recipes are validated before anything heavy is imported: a bad key, value or path fails in one line, exit code 2.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import NoReturn

from debate_amp.config import Config, ConfigError, config_to_dict, describe_fields, load_config

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3  # max_bad_updates non-finite updates in a row
EXIT_INTERRUPTED = 130  # SIGINT, after the checkpoint was written
TASK_HELP = (
    "the task (perm, add, dataset): replaces the recipe's task section by that task's defaults when the recipe is "
    "about another task (task.* overrides still apply)"
)


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
    sft.add_argument("--overwrite", action="store_true", help="delete the run directory first and start again")

    ida = sub.add_parser("ida", help="the IDA outer loop: rounds of A[t+1] = Distill(Amplify(H, A[t]))")
    ida.add_argument("recipe", help="recipe YAML, e.g. recipes/ida.yaml")
    ida.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. ida.rounds=2")
    ida.add_argument("--no-progress", action="store_true", help="no progress bars")
    ida.add_argument("--resume", action="store_true", help="continue the run directory after its last finished round")
    ida.add_argument("--overwrite", action="store_true", help="delete the run directory first and start again")

    amp = sub.add_parser("amp", help="answer one question with Amp~(H, M) and print its amplification tree")
    amp.add_argument(
        "--model",
        required=True,
        help="a local model directory (e.g. runs/default/sft), or 'perfect' for the scripted perfect model",
    )
    amp.add_argument("--question", help="e.g. 's=37016254 x=5 k=6' for perm (default: drawn from the task)")
    amp.add_argument("--recipe", help="recipe YAML for the task, human, sampler and generation settings")
    amp.add_argument("--task", help=TASK_HELP)
    amp.add_argument("--labels", help="label store (SQLite) for the human's answers")
    amp.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. sampler.kind=always")

    debate = sub.add_parser("debate", help="run one debate and print its turns, judgments and verdict")
    debate.add_argument("--model", required=True, help="a local model directory, or 'perfect' for the scripted model")
    debate.add_argument("--question", help="a question of the recipe's task (default: drawn from the task)")
    debate.add_argument("--task", help=TASK_HELP)
    debate.add_argument("--liar", choices=["even", "odd"], help="a scripted liar argues this side")
    debate.add_argument("--max-turns", type=int, help="longest debate (default: the recipe's debate.max_turns)")
    debate.add_argument("--recipe", help="recipe YAML for the task, human, sampler and generation settings")
    debate.add_argument("--trees", action="store_true", help="also print each argument's amplification tree")
    debate.add_argument("overrides", nargs="*", help="section.key=value overrides")

    ev = sub.add_parser(
        "eval",
        help="statistics of saved debates; --compare two runs; --protocol liar; --rejudge with another judge",
        description="Statistics of saved debate transcripts (definitions: docs/eval.md). Malformed lines fail "
        "naming file:line (exit 2) unless --skip-bad.",
    )
    ev.add_argument("paths", nargs="*", metavar="PATH", help="transcript .jsonl files or run directories")
    ev.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ev.add_argument("--skip-bad", action="store_true", help="skip malformed lines (and say how many)")
    ev.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="B - A for each statistic, 95%% intervals")
    ev.add_argument("--protocol", choices=["liar"], help="liar: the policy against the scripted liar on both sides")
    ev.add_argument("--model", help="--protocol liar: a local model directory, or 'perfect'")
    ev.add_argument("--n", type=int, default=500, help="--protocol liar: held-out questions (default 500)")
    ev.add_argument(
        "--max-turns", type=int, nargs="+", default=[1, 2, 4, 6], help="--protocol liar: debate lengths (1 2 4 6)"
    )
    ev.add_argument("--rejudge", action="store_true", help="pose the saved debates' judgments to --judge-model")
    ev.add_argument(
        "--judge-model",
        help="the judge's M_target: a local model directory or 'perfect' (inside Amp~(H, M_target)), or 'human' "
        "(the synthetic human alone); for --protocol liar it defaults to --model",
    )
    ev.add_argument("--recipe", help="recipe YAML for the task, human, sampler and generation settings")
    ev.add_argument("--task", help="--protocol liar / --rejudge: " + TASK_HELP)
    ev.add_argument(
        "--human-judgments",
        metavar="FILE",
        help="also score people's judgments of these debates (the SQLite file of `debate-amp serve --judge`)",
    )
    ev.set_defaults(overrides=[])

    report = sub.add_parser("report", help="write one self-contained HTML report of a run")
    report.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, e.g. runs/default")
    report.add_argument("--out", help="output file (default RUN_DIR/report.html)")
    report.add_argument("--per-update", type=int, default=16, help="debates shown per update (default 16)")
    report.add_argument("--skip-bad", action="store_true", help="skip malformed transcript lines")

    serve = sub.add_parser(
        "serve",
        help="the local web app where people answer the label store's questions, or (--judge) judge saved debates",
        description="A local web app for real people acting as H (docs/humans.md). It listens on 127.0.0.1 unless "
        "--host says otherwise, which needs --token.",
    )
    serve.add_argument(
        "store", nargs="?", metavar="RUN_DIR|STORE", help="a run directory (its labels.sqlite) or a label store file"
    )
    serve.add_argument("--judge", nargs="+", metavar="TRANSCRIPTS", help="judge mode: transcript files or run dirs")
    serve.add_argument(
        "--store",
        dest="judgments",
        metavar="FILE",
        help="--judge: where judgments go (default: human_judgments.sqlite beside the first transcript file)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--token", help="a secret every request must carry (needed for a --host other than loopback)")
    serve.add_argument(
        "--lease-s", type=float, default=300.0, help="seconds a question or debate stays with one person (300)"
    )

    labels = sub.add_parser(
        "labels",
        help="a label store: answers by person and kind, pending questions; export them, or answer them here",
    )
    labels.add_argument("store", metavar="RUN_DIR|STORE", help="a run directory (its labels.sqlite) or a label store")
    labels.add_argument("--export", metavar="FILE", help="write every answer as JSONL (for human.kind=replay)")
    labels.add_argument("--answer", action="store_true", help="answer the pending questions at this terminal")
    labels.add_argument("--person", help="--answer: the name your answers are stored under (default $USER)")

    config = sub.add_parser("config", help="print the resolved recipe (or, with --keys, every key documented)")
    config.add_argument("recipe", nargs="?", help="recipe YAML (default: built-in defaults)")
    config.add_argument("overrides", nargs="*", help="section.key=value overrides")
    config.add_argument("--keys", action="store_true", help="list every key with its default and meaning")
    return parser


def _load(recipe: str | None, overrides: list[str], task: str | None = None) -> Config:
    try:
        cfg = load_config(recipe, overrides, task=task)
    except ConfigError as e:
        print(f"debate-amp: error: {e}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None
    if recipe is not None and cfg == load_config(None, overrides, check_paths=False, task=task):
        print(
            f"debate-amp: note: {recipe} changes nothing: the built-in defaults are used (`debate-amp config --keys`), "
            "which are not recipes/default.yaml",
            file=sys.stderr,
        )
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    cfg = _load(args.recipe, args.overrides)
    from debate_amp.models import ModelLoadError
    from debate_amp.trainer.checkpoint import CheckpointError
    from debate_amp.trainer.loop import TrainingDiverged, train
    from debate_amp.trainer.rundir import RunDirError

    try:
        summary = train(cfg, progress=not args.no_progress, resume=args.resume, overwrite=args.overwrite)
    except (ConfigError, RunDirError, CheckpointError, ModelLoadError) as e:
        print(f"debate-amp: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TrainingDiverged as e:
        print(f"debate-amp: training stopped: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    if not summary:  # not the main process
        return 0
    if summary.get("interrupted"):
        return EXIT_INTERRUPTED
    import json

    from debate_amp.eval.final import format_final
    from debate_amp.tasks import make_task
    from debate_amp.tasks.base import beyond_name, own_name

    task = make_task(cfg)
    report = summary["report"]
    print(
        f"\ntrained {summary['final']['updates']} updates; model, transcripts, metrics.jsonl, TensorBoard events and "
        f"final.json in {summary['run_dir']}"
    )
    print(_HELDOUT_TITLE.format(name=task.difficulty_name))
    print(report.table())
    a0_path = summary["run_dir"] / cfg.sft.output_subdir / "heldout.json"
    a0 = None
    if a0_path.is_file():  # A[0]'s direct answers, for comparison
        answers = json.loads(a0_path.read_text()).get("answer", {})
        h = task.human_max_difficulty
        a0 = {
            f"heldout_{own_name(task)}": _mean_of([v for d, v in answers.items() if int(d) <= h]),
            f"heldout_{beyond_name(task)}": _mean_of([v for d, v in answers.items() if int(d) > h]),
        }
    print("\nfinal table (runs/<name>/final.json)")
    print(format_final(summary["final"], task, a0))
    print(f"human calls used: {summary['human_calls']}")
    stage = summary["final"].get("pretrain")
    if stage is not None:  # pretrain.recipe: the run A[0] started from
        beyond = stage.get(f"heldout_{beyond_name(task)}")
        where = f"{task.difficulty_name} >= {task.human_max_difficulty + 1}"
        held = f", its M {beyond:.1%} on held-out {where}" if beyond is not None else ""
        print(
            f"pretrained by {stage['recipe']} ({summary['run_dir']}/pretrain): {stage['updates']} updates, "
            f"{stage['human_calls']} human calls{held}"
        )
    if "takeover" in summary["final"]:  # trainer.student: fresh
        took = summary["final"]["takeover"]
        print("A[0] amplified throughout" if took is None else f"M took over from A[0] after update {took}")
    return 0


_HELDOUT_TITLE = "held-out accuracy by {name} (answer: asked directly; step / integrate: the human's steps)"


def _mean_of(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _note_no_pretrain(cfg: Config, command: str) -> None:
    if cfg.pretrain.recipe is not None:
        print(
            f"debate-amp: note: pretrain.recipe ({cfg.pretrain.recipe}) is run by `debate-amp train` only; "
            f"`debate-amp {command}` does not pretrain: its A[0] starts as without it",
            flush=True,
        )


def cmd_sft(args: argparse.Namespace) -> int:
    cfg = _load(args.recipe, args.overrides)
    from debate_amp.models import ModelLoadError
    from debate_amp.trainer.rundir import RunDirError, apply_plan, plan_sft_dir
    from debate_amp.trainer.sft import run_sft

    try:
        plan = plan_sft_dir(cfg, overwrite=args.overwrite)
    except RunDirError as e:
        print(f"debate-amp: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    apply_plan(plan)
    if plan.note:
        print(f"debate-amp: {plan.note}", flush=True)
    _note_no_pretrain(cfg, "sft")
    try:
        result = run_sft(cfg, progress=not args.no_progress)
    except ModelLoadError as e:
        print(f"debate-amp: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    report = result.report
    name, h = report.difficulty_name, report.human_max_difficulty
    print(f"\nA[0] saved to {result.model_dir} ({result.n_examples} examples, {result.train_seconds:.0f}s training)")
    print(_HELDOUT_TITLE.format(name=name))
    print(report.table())
    summary = f"direct answers {name}<={h}: {report.own():.1%}   {name}>={h + 1}: {report.beyond():.1%}"
    if not math.isnan(shortcut := report.shortcut_rate()):  # the task names a shortcut
        summary += f" (the shortcut where wrong: {shortcut:.1%})"
    if any(skill == "step" for skill, _ in report.total):  # not for gold data, which teaches no steps
        summary += f"   steps, all {name}: {report.accuracy('step'):.1%}"
        summary += f"   integrate, all {name}: {report.accuracy('integrate'):.1%}"
    print(summary)
    return 0


def cmd_ida(args: argparse.Namespace) -> int:
    cfg = _load(args.recipe, args.overrides)
    if args.resume and args.overwrite:  # before torch is imported
        _fail("--resume and --overwrite exclude each other")
    from debate_amp.models import ModelLoadError
    from debate_amp.trainer.ida import format_rounds, run_ida
    from debate_amp.trainer.rundir import RunDirError

    _note_no_pretrain(cfg, "ida")
    try:
        result = run_ida(cfg, progress=not args.no_progress, resume=args.resume, overwrite=args.overwrite)
    except (ConfigError, RunDirError, ModelLoadError) as e:
        print(f"debate-amp: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(
        f"\n{len(result.rounds)} IDA rounds in {result.run_dir / 'ida'} (rounds.jsonl, round_<r>/); held-out accuracy "
        f"of direct answers by {result.difficulty_name}, A[r] = Distill(Amplify(H, A[r-1]))"
    )
    print(format_rounds(result))
    return 0


def _human(cfg: Config, task):
    """The recipe's human for ``task`` (its label store from ``human.store`` where people answer), or a one-line
    error."""
    from debate_amp.agents.humans import HumanSetupError, build_human

    try:
        return build_human(cfg.human, task, seed=cfg.run.seed)
    except HumanSetupError as e:
        _fail(str(e))


def _question(args: argparse.Namespace, cfg: Config):
    import random

    from debate_amp.tasks import make_task

    task = make_task(cfg)
    if args.question is None:
        try:
            return task.sample(random.Random(cfg.run.seed), heldout=True)
        except ValueError as e:  # a dataset with no held-out rows
            _fail(f"--question: none given, and {e}")
    try:
        question = task.parse_question(args.question)
    except ValueError as e:
        _fail(f"--question: {e}")
    if problem := task.check_question(question):
        _fail(f"--question: {problem}")
    return question


def _generate_fn(args: argparse.Namespace, cfg: Config, temperature: float, option: str = "model"):
    """The scripted perfect model, or a local model directory given by ``--<option>`` (each loaded once, shared
    by policy and target)."""
    from debate_amp.agents.wiring import recipe_generate_fn
    from debate_amp.tasks import make_task

    path = getattr(args, option)
    if path == "perfect":
        task = make_task(cfg)
        if not task.synthetic:
            _fail(f"--{option.replace('_', '-')} perfect: the {task.name} task has no perfect scripted model")
        return task.perfect_generate
    if not Path(path, "config.json").is_file():
        _fail(f"--{option.replace('_', '-')}: not a model directory (no config.json): {path}")
    from debate_amp.models import ModelLoadError, load_model

    if not hasattr(args, "_loaded"):
        args._loaded = {}
    if path not in args._loaded:
        try:
            args._loaded[path] = load_model(cfg.model, path)
        except (ModelLoadError, FileNotFoundError) as e:
            _fail(f"--{option.replace('_', '-')}: {e}")
    model, tokenizer = args._loaded[path]
    return recipe_generate_fn(cfg, model, tokenizer, temperature, cfg.generation.top_p)


def _amp_approx(cfg: Config, human, generate_fn, role: str):
    """Amp~(H, M) for a command: M from ``generate_fn`` and a sampler of its own built from the recipe (with
    ``sampler.kind: adversary``, the trained adversary of ``sampler.adversary_path``, else an uninformed one)."""
    from debate_amp.agents.wiring import recipe_amp, recipe_model_agent, recipe_sampler

    adversary = None
    if cfg.sampler.kind == "adversary" and cfg.sampler.adversary_path is not None:
        from debate_amp.adversary import Adversary

        adversary = Adversary.load(cfg.sampler.adversary_path)  # load_config checked that it loads
    sampler = recipe_sampler(cfg, cfg.run.seed, adversary)
    return recipe_amp(cfg, human, recipe_model_agent(cfg, generate_fn, role), sampler)


def cmd_amp(args: argparse.Namespace) -> int:
    import asyncio

    from debate_amp.agents.humans import HumanSetupError, build_human
    from debate_amp.agents.humans.replay import UnseenQuestion
    from debate_amp.agents.labels import LabelStore, LabelStoreError
    from debate_amp.protocol import Posed
    from debate_amp.tasks import make_task

    cfg = _load(args.recipe, args.overrides, args.task)
    question = _question(args, cfg)
    generate_fn = _generate_fn(args, cfg, cfg.generation.temperature)
    try:
        store = LabelStore(args.labels, create_parents=False) if args.labels else None
        human = build_human(cfg.human, make_task(cfg), seed=cfg.run.seed, store=store)
    except LabelStoreError as e:
        print(f"debate-amp: error: --labels {e}" if args.labels else f"debate-amp: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except HumanSetupError as e:
        _fail(f"{e}, or --labels PATH")
    agent = _amp_approx(cfg, human.agent, generate_fn, "policy")
    try:
        reply = asyncio.run(agent(Posed("answer", question)))
    except UnseenQuestion as e:
        print(f"debate-amp: error: {e}", file=sys.stderr)
        return 1
    print(render_tree(reply.trace))
    verdict = "correct" if reply.text == str(question.gold) else f"wrong (gold {question.gold})"
    print(f"\nanswer {reply.text}: {verdict}; human calls {human.calls}")
    return 0


def cmd_debate(args: argparse.Namespace) -> int:
    from debate_amp.agents.humans.replay import UnseenQuestion
    from debate_amp.debate.engine import ScriptedDebater, run_debates
    from debate_amp.tasks import make_task

    cfg = _load(args.recipe, args.overrides, args.task)
    task = make_task(cfg)
    max_turns = cfg.debate.max_turns if args.max_turns is None else args.max_turns
    if max_turns < 1:
        _fail(f"--max-turns: must be at least 1, got {max_turns}")
    question = _question(args, cfg)
    human = _human(cfg, task)
    policy = _amp_approx(cfg, human.agent, _generate_fn(args, cfg, cfg.generation.temperature), "policy")
    target = _amp_approx(cfg, human.agent, _generate_fn(args, cfg, 0.0), "target")
    if args.liar and not task.synthetic:
        _fail(f"--liar: the {task.name} task has no scripted liar")
    liar = ScriptedDebater(task.liar(seed=cfg.run.seed)) if args.liar else None
    try:
        (debate,) = run_debates(
            [question],
            policy,
            target,
            max_turns,
            cfg.debate.force_stop_p,
            cfg.run.seed,
            forfeit_unparsed=cfg.debate.forfeit_unparsed,
            even=liar if args.liar == "even" else None,
            odd=liar if args.liar == "odd" else None,
        )
    except UnseenQuestion as e:  # a replay human without a fallback, as in `amp`
        print(f"debate-amp: error: {e}", file=sys.stderr)
        return 1

    print(f"question {question.render()}   (gold {question.gold})")
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
    said = f"judge said {debate.winner.text!r}, {_who_answered(debate.winner.trace)}"
    if debate.forfeit is not None:
        print(f"\nverdict: {debate.winner.value} wins: argument {debate.forfeit} is not an argument (forfeit)")
    elif debate.winner.value is None:
        print(f"\nverdict: none, the judge's reply does not name a side   ({said})")
    else:
        print(f"\nverdict: {debate.winner.value} wins   ({said})")
    print(
        "rewards: "
        + ", ".join(f"{side} {r:+.0f}" for side, r in debate.rewards.items())
        + "   catastrophe costs: "
        + " ".join(f"{c.value:g}" for c in debate.costs)
    )
    if args.liar:
        honest = "odd" if args.liar == "even" else "even"
        verdict = "the forfeit went to" if debate.forfeit is not None else "the judge picked"
        print(f"{verdict} the {'honest side' if debate.winner.value == honest else 'liar'}")
    print(f"human calls {human.calls}")
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

    def head(node) -> str:
        posed = node.posed
        what = posed.kind + "".join(f" #{i + 1}={a}" for i, a in enumerate(posed.workspace))
        about = posed.question.describe()
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


def _fail(message: str) -> NoReturn:
    print(f"debate-amp: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def _read(paths: list[str], skip_bad: bool):
    """Transcripts under ``paths``; a missing path or a malformed line (without --skip-bad) fails in one line."""
    from debate_amp.debate.transcript import TranscriptError
    from debate_amp.eval.transcripts import load

    try:
        transcripts = load(paths, skip_bad=skip_bad)
    except (TranscriptError, OSError) as e:
        _fail(str(e))
    if transcripts.skipped:
        print(
            f"debate-amp: warning: skipped {len(transcripts.skipped)} bad lines (first: {transcripts.skipped[0]})",
            file=sys.stderr,
        )
    return transcripts


def _header(transcripts) -> str:
    updates = sorted({r.update for r in transcripts.rows})
    span = f"updates {updates[0]}-{updates[-1]}" if updates else "no updates"
    skipped = f"; skipped {len(transcripts.skipped)} bad lines" if transcripts.skipped else ""
    return f"{len(transcripts.rows)} debates in {len(transcripts.files)} files, {span}{skipped}"


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    # key=value overrides given before the options land among the paths
    args.overrides += [p for p in args.paths if "=" in p and not Path(p).exists()]
    args.paths = [p for p in args.paths if p not in args.overrides]
    modes = [
        m for m, on in (("--compare", args.compare), ("--protocol", args.protocol), ("--rejudge", args.rejudge)) if on
    ]
    if len(modes) > 1:
        _fail(f"{' and '.join(modes)} are separate modes; give one")
    if args.human_judgments and modes:
        _fail(f"--human-judgments scores saved debates; it does not go with {modes[0]}")
    if args.protocol == "liar":
        return _eval_liar(args)
    if args.compare:
        from debate_amp.eval.transcripts import compare, format_compare

        if args.paths:
            _fail("--compare takes its two runs itself: debate-amp eval --compare RUN_A RUN_B")
        a, b = (_read([p], args.skip_bad) for p in args.compare)
        result = compare(a.rows, b.rows)
        if args.json:
            result.update(skipped={"a": len(a.skipped), "b": len(b.skipped)}, paths=args.compare)
            print(json.dumps(result))
        else:
            print(f"A: {_header(a)}\nB: {_header(b)}")
            print(format_compare(result, *args.compare))
        return 0
    if not args.paths:
        _fail("give transcript files or run directories (or --compare RUN_A RUN_B, or --protocol liar)")
    transcripts = _read(args.paths, args.skip_bad)
    if args.rejudge:
        return _eval_rejudge(args, transcripts)
    from debate_amp.eval.transcripts import format_table, statistics

    stats = statistics(transcripts.rows)
    humans = _human_judges(args.human_judgments, transcripts.rows) if args.human_judgments else None
    if args.json:
        extra = {} if humans is None else {"human_judges": {"path": args.human_judgments, **humans}}
        print(
            json.dumps(
                {
                    "paths": args.paths,
                    "files": len(transcripts.files),
                    "skipped": len(transcripts.skipped),
                    **stats,
                    **extra,
                }
            )
        )
    else:
        print(_header(transcripts))
        print(format_table(stats))
        if humans is not None:
            from debate_amp.eval.human_judges import format_human_judges

            print()
            print(format_human_judges(humans, args.human_judgments))
    return 0


def _human_judges(path: str, rows) -> dict:
    """``--human-judgments``: the people's judgments of ``rows``; a file that is not a judgment store fails in one
    line."""
    from debate_amp.eval.human_judges import human_judge_statistics
    from debate_amp.serve.judgments import JudgmentStoreError, read_judgments

    try:
        judgments = read_judgments(path)
    except JudgmentStoreError as e:
        _fail(str(e))
    return human_judge_statistics(rows, judgments)


def _eval_liar(args: argparse.Namespace) -> int:
    import json

    from debate_amp.eval.protocols import honest_vs_liar, judge_table, liar_table, loss_table
    from debate_amp.tasks import make_task

    if args.model is None:
        _fail("--protocol liar needs --model DIR|perfect")
    if args.paths:
        _fail("--protocol liar plays new debates; it takes no transcript paths")
    if args.n < 1 or min(args.max_turns) < 1:
        _fail("--n and --max-turns must be at least 1")
    cfg = _load(args.recipe, args.overrides, args.task)
    task = make_task(cfg)
    if not task.synthetic:
        _fail(f"--protocol liar: the {task.name} task has no scripted liar")
    questions = task.eval_questions(args.n)
    human = _human(cfg, task)
    policy = _amp_approx(cfg, human.agent, _generate_fn(args, cfg, cfg.generation.temperature), "policy")
    if args.judge_model == "human":
        target, judge = human.agent, "the synthetic human alone"
    else:
        option = "model" if args.judge_model is None else "judge_model"
        target = _amp_approx(cfg, human.agent, _generate_fn(args, cfg, cfg.target.temperature, option), "target")
        judge = f"Amp~(H, M_target) with M_target = {getattr(args, option)}"
    rows = honest_vs_liar(task, questions, policy, target, args.max_turns, cfg.debate.forfeit_unparsed)
    if args.json:
        print(json.dumps({"questions": args.n, "rows": [row.as_dict() for row in rows], "human_calls": human.calls}))
        return 0
    print(
        f"{args.n} held-out {task.name} questions, {task.summary()}; the policy ({args.model}) against "
        f"the scripted liar on each side, judged by {judge}; accuracy = how often the honest side wins"
    )
    print(liar_table(rows))
    print("where the honest side lost (share of all its debates; docs/eval.md):")
    print(loss_table(rows))
    print("does the judge check the last argument or guess? its agreement with its rule (docs/eval.md):")
    print(judge_table(rows))
    print(f"human calls {human.calls}")
    return 0


def _eval_rejudge(args: argparse.Namespace, transcripts) -> int:
    import json

    from debate_amp.eval.protocols import rejudge
    from debate_amp.tasks import make_task

    if args.judge_model is None:
        _fail("--rejudge needs --judge-model DIR|perfect|human")
    recorded = sorted({row.task for row in transcripts.rows})
    default = recorded[0] if args.task is None and args.recipe is None and len(recorded) == 1 else None
    cfg = _load(args.recipe, args.overrides, args.task or default)  # no recipe: the transcripts' own task
    tasks = sorted(set(recorded) - {cfg.task.name})
    if tasks:
        _fail(
            f"--rejudge: the transcripts are about task {', '.join(tasks)} but the judge is built for "
            f"{cfg.task.name}; pass --task {tasks[0]} (or a recipe of that task)"
        )
    task = make_task(cfg)
    human = _human(cfg, task)
    if args.judge_model == "human":
        judge = human.agent
    else:
        judge = _amp_approx(cfg, human.agent, _generate_fn(args, cfg, cfg.target.temperature, "judge_model"), "target")
    result = rejudge(transcripts.rows, judge, task)
    if args.json:
        print(
            json.dumps(
                {
                    "paths": args.paths,
                    "skipped": len(transcripts.skipped),
                    **result.as_dict(),
                    "human_calls": human.calls,
                }
            )
        )
        return 0
    print(_header(transcripts))
    who = (
        "the synthetic human alone"
        if args.judge_model == "human"
        else f"Amp~(H, M_target), M_target = {args.judge_model}"
    )
    print(f"re-judged by {who}")
    print(result.table())
    print(f"human calls {human.calls}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from debate_amp.debate.transcript import TranscriptError

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        _fail(f"{args.run_dir}: not a run directory")
    # results.json: the bench's directory (runs/bench), whose report shows its human-efficiency comparison
    markers = ("metrics.jsonl", "transcripts", "final.json", "results.json", "ida/a0.json")  # the last: debate-amp ida
    if not any((run_dir / name).exists() for name in markers):
        _fail(
            f"{args.run_dir}: not a run directory (no metrics.jsonl, transcripts/, final.json, results.json or "
            "ida/a0.json); nothing written"
        )
    if args.per_update < 0:
        _fail("--per-update must be at least 0")
    from debate_amp.eval.report import write_report

    try:
        out = write_report(run_dir, args.out, per_update=args.per_update, skip_bad=args.skip_bad)
    except (TranscriptError, OSError) as e:
        _fail(str(e))
    print(f"wrote {out}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import socket

    from debate_amp.serve.app import is_loopback

    if (args.store is None) == (args.judge is None):
        _fail("give a run directory or label store to answer its questions, or --judge TRANSCRIPTS... (not both)")
    if args.judgments and not args.judge:
        _fail("--store is where --judge puts its judgments; a label store is given as RUN_DIR|STORE")
    if not is_loopback(args.host) and not args.token:
        _fail(f"--host {args.host} accepts connections from other machines: set --token too")
    if not 0 < args.port < 65536 or args.lease_s <= 0:
        _fail("--port must be 1-65535 and --lease-s positive")
    store = judge = None
    if args.judge:
        from debate_amp.debate.transcript import TranscriptError
        from debate_amp.serve.judgments import JudgeSession, JudgmentStoreError

        try:
            judge = JudgeSession.from_transcripts(args.judge, args.judgments)
        except (TranscriptError, JudgmentStoreError, OSError, ValueError) as e:
            _fail(str(e))
    else:
        store = _open_store(args.store)
    try:  # a port in use fails here in one line, not in uvicorn's log
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        socket.create_server((args.host, args.port), family=family).close()
    except OSError as e:
        _fail(f"cannot listen on {args.host}:{args.port} ({e.strerror or e})")
    import uvicorn

    from debate_amp.serve.app import create_app

    app = create_app(store, token=args.token, lease_s=args.lease_s, judge=judge)
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{args.port}/{'judge' if judge else ''}" + (f"?token={args.token}" if args.token else "")
    if judge is not None:
        what = f"{len(judge.debates)} debates to judge; judgments go to {judge.store.path}"
    else:
        what = f"questions from {store.path if store is not None else ''}"
    print(f"debate-amp serve: {what}\nopen {url}  (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _open_store(given: str):
    """The label store a command names (a run directory means its ``labels.sqlite``), or a one-line error."""
    from debate_amp.agents.labels import LabelStore, LabelStoreError

    path = Path(given)
    if path.is_dir():
        path = path / "labels.sqlite"
    if not path.is_file():
        _fail(f"{given}: no such run directory or label store")
    try:
        return LabelStore(path)
    except LabelStoreError as e:
        _fail(str(e))


def cmd_labels(args: argparse.Namespace) -> int:
    from collections import Counter

    from debate_amp.agents.humans.people import answer_at_terminal

    store = _open_store(args.store)
    if args.person and not args.answer:
        _fail("--person names who answers with --answer")
    if args.export:
        if not Path(args.export).parent.is_dir():
            _fail(f"--export: no such folder: {Path(args.export).parent}")
        if Path(args.export).exists():  # never write over a file the user made
            _fail(f"--export: {args.export} already exists; give a new file name")
        print(f"wrote {store.export_jsonl(args.export)} answers to {args.export}")
    if args.answer:
        person = args.person or os.environ.get("USER") or "terminal"
        print(f"answering the questions of {store.path} as {person} (Ctrl-D stops)", flush=True)
        answer_at_terminal(store.path, person, sys.stdin, sys.stdout, lease_s=3600.0)
        return 0
    if args.export:
        return 0
    by_person = Counter(label.human for label in store)
    by_kind = Counter(label.kind for label in store)
    pending = store.pending()
    print(f"{store.path}: {len(store)} answers, {len(pending)} questions pending")
    if by_person:
        print("by who answered: " + ", ".join(f"{who} {n}" for who, n in by_person.most_common()))
        print("by posed kind:   " + ", ".join(f"{kind} {n}" for kind, n in by_kind.most_common()))
    for question in pending:
        held = f" (with {question.leased_to})" if question.leased_to else ""
        print(f"  pending {question.kind}{held}: {question.prompt}")
    return 0


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
    commands = {
        "train": cmd_train,
        "sft": cmd_sft,
        "ida": cmd_ida,
        "amp": cmd_amp,
        "debate": cmd_debate,
        "eval": cmd_eval,
        "report": cmd_report,
        "serve": cmd_serve,
        "labels": cmd_labels,
        "config": cmd_config,
    }
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:  # Ctrl-C outside the trainer's own handler (the warm start, eval, amp, debate)
        what = {
            "train": "; a warm start that did not finish is redone by the same command",
            "sft": "",
            "ida": "; --resume continues after the last finished round",
        }
        print(f"\ndebate-amp: interrupted{what.get(args.command, '')}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `debate-amp eval RUN | head`: the reader left; not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
