"""The IDA outer loop (``references/003``; DESIGN.md section 1): A[t+1] = Distill(Amplify(H, A[t])).

A[0] imitates H (the warm start, ``debate-amp sft``), or is ``model.path``, or an untrained model. Each round
t = 0..T-1 (``ida.rounds`` = T):

1. Freeze A[t] and draw ``ida.questions_per_round`` training questions (``ida.curriculum``: depth <= t + n only,
   n = ``amp.levels``).
2. Amplify: answer them with Amp~(H, A[t]) as the recipe wires it (human, sampler, ``amp.*``), every wave of model
   calls one batched ``generate``. The imitation examples are the amplified answers and every answer the human gave
   inside the trees (:func:`~debate_amp.trainer.rollout.amplification_examples`), plus ``ida.keep_previous`` of
   the dataset drawn from earlier rounds' examples (the warm start's included).
3. Distill: supervised training from A[t]'s weights (``ida.student: fresh``: from a newly initialised tiny model)
   with TRL's ``SFTTrainer`` (:func:`~debate_amp.trainer.sft.distill`).
4. Evaluate A[t+1] on held-out questions by difficulty, asked directly (:func:`evaluate_heldout`).
5. Save A[t+1] to ``RUN/ida/round_<t+1>/`` (written under a temporary name, then renamed: a folder that exists is a
   whole round), with its examples and its record ``round.json``; ``RUN/ida/rounds.jsonl`` holds one record per
   round, and TensorBoard (``RUN/tensorboard/ida``) the same scalars at step t + 1. A[0]'s evaluation is
   ``RUN/ida/a0.json`` (step 0).

``--resume`` continues after the last whole round, which draws the same questions and seeds as a run that never
stopped (round t's generators are seeded by ``run.seed`` and t).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import TrainerCallback

from debate_amp.agents.humans import Human, build_human
from debate_amp.agents.labels import LabelStore
from debate_amp.agents.wiring import recipe_amp, recipe_generate_fn, recipe_model_agent, recipe_sampler
from debate_amp.config import Config, save_config
from debate_amp.durable import write_whole
from debate_amp.eval.heldout import HeldoutReport, evaluate_heldout
from debate_amp.models import FRESH_STUDENT_SEED, build_tiny_model, load_model, save_model
from debate_amp.protocol import Reply
from debate_amp.tasks import Example, Task, make_task
from debate_amp.tasks.base import beyond_name
from debate_amp.trainer.rollout import amplification_examples, amplify
from debate_amp.trainer.rundir import apply_plan, finished_rounds, plan_ida_dir
from debate_amp.trainer.sft import distill, gc_frozen, run_sft, seed_everything, warm_start_examples


@dataclass
class RoundRecord:
    """One round of IDA, as ``rounds.jsonl`` and ``round.json`` hold it: round ``round`` made A[round] from
    A[round - 1]. (A[0]'s record, ``a0.json``, has ``round`` 0 and only the evaluation and what A[0] cost.)"""

    round: int
    model_dir: str
    questions: int  # amplified by Amp~(H, A[round - 1])
    max_depth: int | None  # the curriculum's deepest depth this round (None: every depth)
    examples: int  # new imitation examples from the amplification trees
    previous_examples: int  # drawn from earlier rounds' (and the warm start's) examples
    human_calls: int  # H's calls while amplifying (the label store answers repeats for free; :func:`_redone`)
    amplified_accuracy: float  # Amp~(H, A[round - 1])'s answers against gold (a record, never a target)
    distill_loss: float  # mean completion-token NLL over the distillation's steps
    distill_steps: int
    amplify_s: float
    distill_s: float
    eval_s: float
    wall_s: float
    heldout: dict[str, dict[str, float]] = field(default_factory=dict)  # skill -> difficulty -> accuracy
    heldout_beyond: float = math.nan  # direct answers beyond the human (perm: k >= 2)
    labels_stored: int | None = None  # answers in the run's label store after the round (None: not counted)


@dataclass
class IdaResult:
    run_dir: Path
    a0: dict[str, Any]  # A[0]'s record (a0.json)
    rounds: list[dict[str, Any]]  # every finished round's record, round 1 first
    difficulty_name: str
    beyond_name: str


class StopAfter(TrainerCallback):
    """Stop a distillation after ``minutes`` of wall time (``ida.max_minutes``)."""

    def __init__(self, minutes: float | None) -> None:
        self.minutes, self.start = minutes, time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.minutes is not None and time.perf_counter() - self.start > 60 * self.minutes:
            control.should_training_stop = True
        return control


# ---------------------------------------------------------------------------------------------------------------
# The loop


def run_ida(cfg: Config, progress: bool = True, *, resume: bool = False, overwrite: bool = False) -> IdaResult:
    """Run ``ida.rounds`` rounds of A[t+1] = Distill(Amplify(H, A[t])) (see the module docstring). Raises
    :class:`~debate_amp.trainer.rundir.RunDirError` before any work when the run directory holds another run or
    rounds that neither ``resume`` nor ``overwrite`` says what to do with."""
    plan = plan_ida_dir(cfg, resume=resume, overwrite=overwrite)  # read-only
    if not progress:
        import datasets
        from transformers.utils import logging as hf_logging

        datasets.disable_progress_bars()
        hf_logging.disable_progress_bar()
    apply_plan(plan)
    if plan.note:
        print(f"debate-amp: {plan.note}", flush=True)
    if cfg.run.torch_threads:
        torch.set_num_threads(cfg.run.torch_threads)
    run_dir, ida_dir = cfg.run_dir, cfg.run_dir / "ida"
    save_config(cfg, run_dir / "config.yaml")
    ida_dir.mkdir(parents=True, exist_ok=True)
    task = make_task(cfg)
    questions = task.eval_questions(cfg.task.eval_size, seed=cfg.run.seed + 1)
    writer = _tensorboard(cfg)

    # A[0]: the warm start (made here unless on disk), model.path, or an untrained model; evaluated once.
    a0_dir, a0 = _a0(cfg, task, questions, progress)
    if writer is not None and plan.resume_update == 0:
        _log(writer, a0, task, step=0)
    store = LabelStore(run_dir / "labels.sqlite", fsync=cfg.human.people)  # as the trainer's store
    first = plan.resume_update + 1
    _write_rounds(ida_dir, plan.resume_update)  # on resume: the finished rounds' records only
    # the warm start's examples, the first of the earlier rounds' (rebuilt once: 128,000 take a while)
    warm = (
        warm_start_examples(cfg) if cfg.ida.keep_previous and cfg.trainer.warm_start and first <= cfg.ida.rounds else []
    )
    with gc_frozen():  # the warm start's examples and the rest live every round: out of the collector's full passes
        for r in tqdm(range(first, cfg.ida.rounds + 1), desc="IDA rounds", disable=not progress, initial=first - 1):
            t = r - 1
            a_t = a0_dir if t == 0 else ida_dir / f"round_{t}"
            record = ida_round(cfg, task, store, a_t, t, questions, warm, progress, redone=_redone(cfg, store, r))
            _write_rounds(ida_dir, r)
            if writer is not None:
                _log(writer, asdict(record), task, step=r)
            print(_round_line(asdict(record), task), flush=True)
    store.close()
    if writer is not None:
        writer.close()
    return IdaResult(run_dir, a0, load_rounds(run_dir), task.difficulty_name, beyond_name(task))


def ida_round(
    cfg: Config,
    task: Task,
    store: LabelStore,
    model_dir: Path,
    t: int,
    questions: Sequence[Any],
    warm: Sequence[Example] = (),
    progress: bool = True,
    redone: int = 0,
) -> RoundRecord:
    """Round t: A[t+1] = Distill(Amplify(H, A[t])), A[t] loaded from ``model_dir``, evaluated on the held-out
    ``questions``; saved to ``ida/round_<t+1>/``. ``warm``: the warm start's examples (the earliest of the earlier
    rounds' examples). ``redone``: the human's answers to this round in an attempt a kill stopped (:func:`_redone`),
    counted in its ``human_calls``."""
    started = time.perf_counter()
    r, ida_dir = t + 1, cfg.run_dir / "ida"
    seed_everything(cfg.run.seed + r)
    model, tokenizer = load_model(cfg.model, model_dir, seed=cfg.run.seed)
    if torch.cuda.is_available():
        model.to("cuda")  # type: ignore[arg-type]

    # 1. A[t] frozen; this round's training questions.
    rng = random.Random(f"ida-{cfg.run.seed}-{t}")
    # Amp~^n(H, A[t]) rests on A[t]'s answers n = amp.levels levels down: right to depth t + n once A[t] is to t
    max_depth = min(t + cfg.amp.levels, task.max_depth) if cfg.ida.curriculum else None
    round_questions = [task.sample(rng, max_depth=max_depth) for _ in range(cfg.ida.questions_per_round)]

    # 2. Amplify(H, A[t]): the amplified answers and the human's answers in the trees; and earlier rounds' examples.
    human = build_human(cfg.human, task, seed=cfg.run.seed + r, store=store)
    replies, new = amplify_round(cfg, human, model, tokenizer, round_questions, seed=cfg.run.seed + r)
    amplified_accuracy = sum(q.score(reply.text) for q, reply in zip(round_questions, replies, strict=True)) / max(
        1, len(replies)
    )
    previous = earlier_examples(_pool(cfg, ida_dir, t, warm), len(new), cfg.ida.keep_previous, rng)
    amplify_s = time.perf_counter() - started

    # 3. Distill into A[t+1]: from A[t]'s weights, or (ida.student: fresh) from a new tiny model of its own seed.
    student = model
    if cfg.ida.student == "fresh":
        student, _ = build_tiny_model(cfg.model, seed=cfg.run.seed + FRESH_STUDENT_SEED * r)
        if torch.cuda.is_available():
            student.to("cuda")  # type: ignore[arg-type]
    tmp = ida_dir / f".round_{r}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    trainer = distill(
        cfg,
        student,
        tokenizer,
        new + previous,
        output_dir=tmp / "trainer",
        tensorboard_dir=cfg.run_dir / "tensorboard" / f"ida_round_{r}" if "tensorboard" in cfg.run.log_with else None,
        epochs=cfg.ida.epochs,
        learning_rate=cfg.ida.learning_rate,
        progress=progress,
        callbacks=[StopAfter(cfg.ida.max_minutes)],
    )
    trained: Any = trainer.model.merge_and_unload() if cfg.model.lora.enabled else trainer.model
    losses = [entry["train_loss"] for entry in trainer.state.log_history if "train_loss" in entry]
    distill_s = time.perf_counter() - started - amplify_s

    # 4. Held-out accuracy of A[t+1]'s direct answers, by difficulty.
    report = evaluate_heldout(
        trained, tokenizer, task, questions, max_new_tokens=cfg.generation.max_new_tokens, progress=progress
    )
    eval_s = time.perf_counter() - started - amplify_s - distill_s

    # 5. Save A[t+1] and its record, then rename: a round folder that exists is whole.
    shutil.rmtree(tmp / "trainer", ignore_errors=True)
    save_model(trained, tokenizer, tmp)
    final = ida_dir / f"round_{r}"
    record = RoundRecord(
        round=r,
        model_dir=str(final),
        questions=len(round_questions),
        max_depth=max_depth,
        examples=len(new),
        previous_examples=len(previous),
        human_calls=human.calls + redone,
        amplified_accuracy=amplified_accuracy,
        distill_loss=losses[-1] if losses else math.nan,
        distill_steps=trainer.state.global_step,
        amplify_s=amplify_s,
        distill_s=distill_s,
        eval_s=eval_s,
        wall_s=time.perf_counter() - started,
        heldout=report.as_dict(),
        heldout_beyond=report.beyond(),
        labels_stored=None if _uncounted(cfg) else len(store),
    )
    _write_examples(tmp / "examples.jsonl", new)
    (tmp / "round.json").write_text(json.dumps(asdict(record), indent=1))  # last: it marks the folder whole
    if final.exists():
        shutil.rmtree(final)  # a folder a resume is redoing (rounds after the last whole one)
    os.replace(tmp, final)
    return record


def _uncounted(cfg: Config) -> bool:
    """The run's label store does not count the human's answers: they go to the recipe's own ``human.store``, or
    replayed labels are stored beside them (as the trainer's resume, docs/scaling.md)."""
    return cfg.human.kind == "replay" or cfg.human.store is not None


def _redone(cfg: Config, store: LabelStore, r: int) -> int:
    """The answers the run's label store gained since round r - 1 ended (none before round 1: the warm start does
    not use it): a round that a kill stopped left them, and its redo finds them there and does not ask again, so
    they are this round's human calls. 0 where the store does not count them or an older record lacks the count."""
    if _uncounted(cfg):
        return 0
    before = 0 if r == 1 else load_rounds(cfg.run_dir)[r - 2].get("labels_stored")
    return 0 if before is None else max(0, len(store) - int(before))


def amplify_round(
    cfg: Config, human: Human, model: Any, tokenizer: Any, questions: Sequence[Any], seed: int
) -> tuple[list[Reply], list[Example]]:
    """Amplify(H, A[t]) on ``questions``: Amp~(H, A[t]) as the recipe wires it (the human, the sampler seeded by
    ``seed``, ``amp.max_rounds``, ``amp.levels``, A[t] at ``amp.temperature``, every wave of calls one batched
    generate), with A[t] frozen (evaluation mode, no gradients: its weights are those it was saved with). Returns
    the replies and the round's imitation examples: each amplified answer and each answer H gave in the trees
    (:func:`amplification_examples`), labelled with the difficulty of the question they came from."""
    generate_fn = recipe_generate_fn(cfg, model, tokenizer, cfg.amp.temperature)
    agent = recipe_model_agent(cfg, generate_fn, "policy")
    amp = recipe_amp(cfg, human.agent, agent, recipe_sampler(cfg, seed=seed), cfg.amp.levels)
    with frozen(model):
        replies = amplify(list(questions), amp)
    examples = [
        Example(e.prompt, e.completion, e.kind, q.difficulty, human_calls=int(e.kind != "amplified"))
        for q, reply in zip(questions, replies, strict=True)
        for e in amplification_examples([reply], cfg.trainer.imitate_human)
    ]
    return replies, examples


def earlier_examples(pool: Sequence[Example], n_new: int, keep_previous: float, rng: random.Random) -> list[Example]:
    """``keep_previous`` of the round's dataset from earlier rounds: n = n_new * keep / (1 - keep) examples drawn
    from ``pool`` without replacement (all of it when it holds fewer)."""
    n = min(len(pool), round(n_new * keep_previous / (1.0 - keep_previous)))
    return rng.sample(list(pool), n) if n else []


@contextmanager
def frozen(model: Any) -> Iterator[Any]:
    """A[t] frozen while its dataset is amplified: evaluation mode and no gradients, restored afterwards."""
    was_training = model.training
    grads = [p.requires_grad for p in model.parameters()]
    model.eval()
    model.requires_grad_(False)
    try:
        with torch.no_grad():
            yield model
    finally:
        for p, g in zip(model.parameters(), grads, strict=True):
            p.requires_grad_(g)
        model.train(was_training)


# ---------------------------------------------------------------------------------------------------------------
# A[0], the pool of earlier examples, records


def _a0(cfg: Config, task: Task, questions: Sequence[Any], progress: bool) -> tuple[Path, dict[str, Any]]:
    """A[0]'s directory and record (``ida/a0.json``, written once): the warm start (``RUN/<sft.output_subdir>``, made
    here unless on disk), ``model.path``, or (``trainer.warm_start: false``) an untrained model saved to
    ``ida/round_0``."""
    ida_dir = cfg.run_dir / "ida"
    report: HeldoutReport | None = None
    human_calls, examples = 0, 0
    if cfg.model.path is not None and not cfg.trainer.warm_start:
        a0_dir = Path(cfg.model.path)
    elif cfg.trainer.warm_start:
        a0_dir = cfg.run_dir / cfg.sft.output_subdir
        if not (a0_dir / "config.json").is_file():
            result = run_sft(cfg, progress=progress)
            report, human_calls, examples = result.report, result.human_calls, result.n_examples
        elif (a0_dir / "heldout.json").is_file():
            human_calls = json.loads((a0_dir / "heldout.json").read_text()).get("human_calls", 0)
            examples = cfg.sft.n_examples
    else:
        a0_dir = ida_dir / "round_0"
        if not (a0_dir / "config.json").is_file():
            model, tokenizer = load_model(cfg.model, None, seed=cfg.run.seed)
            save_model(model, tokenizer, a0_dir)
    record_path = ida_dir / "a0.json"
    if record_path.is_file():
        return a0_dir, json.loads(record_path.read_text())
    if report is None:
        model, tokenizer = load_model(cfg.model, a0_dir, seed=cfg.run.seed)
        if torch.cuda.is_available():
            model.to("cuda")  # type: ignore[arg-type]
        report = evaluate_heldout(
            model, tokenizer, task, questions, max_new_tokens=cfg.generation.max_new_tokens, progress=progress
        )
    a0 = {
        "round": 0,
        "model_dir": str(a0_dir),
        "examples": examples,
        "human_calls": human_calls,
        "heldout": report.as_dict(),
        "heldout_beyond": report.beyond(),
    }
    write_whole(record_path, json.dumps(a0, indent=1))
    return a0_dir, a0


def _pool(cfg: Config, ida_dir: Path, t: int, warm: Sequence[Example]) -> list[Example]:
    """Earlier rounds' examples for round t: the warm start's (``warm``) and those of rounds 1..t."""
    if not cfg.ida.keep_previous:
        return []
    pool = list(warm)
    for r in range(1, t + 1):
        with open(ida_dir / f"round_{r}" / "examples.jsonl") as f:
            pool += [Example(**json.loads(line)) for line in f]
    return pool


def _write_examples(path: Path, examples: Sequence[Example]) -> None:
    with open(path, "w") as f:
        for e in examples:
            row = {k: v for k, v in asdict(e).items() if k != "question"}
            f.write(json.dumps(row) + "\n")


def _write_rounds(ida_dir: Path, last: int) -> None:
    """``rounds.jsonl``: the records of rounds 1..``last``, rebuilt from their folders (atomically)."""
    lines = [json.dumps(json.loads((ida_dir / f"round_{r}" / "round.json").read_text())) for r in range(1, last + 1)]
    write_whole(ida_dir / "rounds.jsonl", (line + "\n" for line in lines))


def _tensorboard(cfg: Config) -> Any:
    """A TensorBoard writer at ``RUN/tensorboard/ida`` when ``run.log_with`` names tensorboard (the other trackers
    are not used by ``ida``: ``rounds.jsonl`` is the record)."""
    if "tensorboard" not in cfg.run.log_with:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(cfg.run_dir / "tensorboard" / "ida"))


def _log(writer: Any, record: dict[str, Any], task: Task, step: int) -> None:
    """A round's scalars (DESIGN.md section 7 tags) at step ``record['round']``."""
    name = task.difficulty_name
    scalars = {f"eval/answer_accuracy_{name}{d}": v for d, v in record["heldout"].get("answer", {}).items()}
    scalars[f"eval/answer_accuracy_{beyond_name(task)}"] = record["heldout_beyond"]
    scalars["amp/human_calls"] = record["human_calls"]
    scalars["ida/examples"] = record["examples"]
    if step:
        scalars |= {
            "ida/previous_examples": record["previous_examples"],
            "ida/amplified_accuracy": record["amplified_accuracy"],
            "loss/sup": record["distill_loss"],
            "perf/round_s": record["wall_s"],
            "perf/amplify_s": record["amplify_s"],
            "perf/distill_s": record["distill_s"],
        }
    for tag, value in scalars.items():
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            writer.add_scalar(tag, value, step)
    writer.flush()


def _round_line(record: dict[str, Any], task: Task) -> str:
    return (
        f"round {record['round']}: A[{record['round']}] held-out {beyond_name(task)} {record['heldout_beyond']:.1%}, "
        f"{record['examples']} + {record['previous_examples']} examples, {record['human_calls']} human calls, "
        f"loss {record['distill_loss']:.3f}, {record['wall_s']:.0f}s"
    )


def format_rounds(result: IdaResult) -> str:
    """The per-round table: A[r]'s held-out accuracy of direct answers by difficulty (columns named by the task's
    difficulty), with what each round cost."""
    rows = [result.a0, *result.rounds]
    difficulties = sorted({int(d) for row in rows for d in row["heldout"].get("answer", {})})
    name = result.difficulty_name
    cols = [f"{name}={d}" for d in difficulties] + [result.beyond_name.replace("_ge_", ">=")]
    width = max(6, *(len(c) for c in cols))
    head = f"{'model':>6} {'examples':>15} {'human calls':>11} {'loss':>6} {'min':>5} " + " ".join(
        f"{c:>{width}}" for c in cols
    )
    lines = [head]
    for row in rows:
        r = row["round"]
        answers = row["heldout"].get("answer", {})
        cells = [f"{answers[str(d)]:>{width}.1%}" if str(d) in answers else f"{'-':>{width}}" for d in difficulties]
        cells.append(f"{row['heldout_beyond']:>{width}.1%}")
        if r == 0:
            examples, loss, minutes = f"{row['examples']}" if row["examples"] else "-", "-", "-"
        else:
            examples = f"{row['examples']}+{row['previous_examples']}"
            loss, minutes = f"{row['distill_loss']:.3f}", f"{row['wall_s'] / 60:.1f}"
        lines.append(
            f"{f'A[{r}]':>6} {examples:>15} {row['human_calls']:>11} {loss:>6} {minutes:>5} " + " ".join(cells)
        )
    return "\n".join(lines)


def load_rounds(run_dir: Path) -> list[dict[str, Any]]:
    """The records of a run's finished rounds (``ida/rounds.jsonl``)."""
    path = run_dir / "ida" / "rounds.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


__all__ = [
    "IdaResult",
    "RoundRecord",
    "amplify_round",
    "earlier_examples",
    "finished_rounds",
    "format_rounds",
    "frozen",
    "ida_round",
    "load_rounds",
    "run_ida",
]
