"""Warm start A[0]: imitate the synthetic human on what it can do itself (``references/003``: A[0] imitates H).

The examples are the human's direct answers (perm: k <= 1), its decompositions and its integrations, from the
recipe's task (``Task.imitation_examples``); TRL's ``SFTTrainer`` trains on the completions only. The model is saved
to ``<run_dir>/<sft.output_subdir>`` and its held-out accuracy by difficulty is printed and written next to it as
``heldout.json``.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import json
import math
import os
import random
import time
import types
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
from transformers import TrainerCallback

from debate_amp.agents.humans.synthetic import SyntheticHuman
from debate_amp.agents.model_agent import ModelAgent
from debate_amp.combinators import amp_approx
from debate_amp.config import Config, save_config
from debate_amp.debate.engine import ScriptedDebater, run_debates
from debate_amp.eval.heldout import SKILLS, HeldoutReport, beyond_name, evaluate_heldout, own_name
from debate_amp.models import encode_prompts, load_model, peft_lora_config, save_model
from debate_amp.protocol import Answer, Trace
from debate_amp.samplers import Always
from debate_amp.tasks import Example, Task, make_task
from debate_amp.trainer.rollout import used_nodes


@dataclass
class SftResult:
    model_dir: Path
    report: HeldoutReport
    train_seconds: float
    n_examples: int
    n_examples_seen: int  # examples the optimizer stepped on (fewer than epochs x n_examples after max_minutes)
    curve: list[dict[str, float]]  # held-out accuracy during training (sft.eval_every_steps)
    human_calls: int  # what the examples cost the human (0 for gold data; see Example.human_calls)
    examples: list[Example]  # what it trained on (warm_start_examples): the trainer's rehearsal pool, not rebuilt
    untimed_seconds: float  # run_sft's wall time less train_seconds: the data's preparation, evaluation, saving


class LearningCurve(TrainerCallback):
    """Held-out accuracy of direct answers every ``sft.eval_every_steps`` steps, against wall time and examples
    seen; stops training once ``sft.max_minutes`` have passed."""

    def __init__(self, task: Task, questions: list[Any], tokenizer: Any, cfg: Config, verbose: bool = False) -> None:
        self.task, self.questions, self.tokenizer, self.cfg, self.verbose = task, questions, tokenizer, cfg, verbose
        self.own, self.beyond = f"answer_{own_name(task)}", f"answer_{beyond_name(task)}"
        self.shortcut = f"shortcut_{beyond_name(task)}"
        self.points: list[dict[str, float]] = []
        self.start = time.perf_counter()
        self.evaluating = 0.0  # seconds spent evaluating, left out of the curve's training time

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        every = self.cfg.sft.eval_every_steps
        if every and state.global_step % every == 0 and model is not None:
            begin = time.perf_counter()
            seconds = begin - self.start - self.evaluating
            report = evaluate_heldout(
                model, self.tokenizer, self.task, self.questions, progress=False, skills=("answer",)
            )
            self.evaluating += time.perf_counter() - begin
            self.points.append(
                {
                    "step": state.global_step,
                    "examples": state.global_step * self.cfg.sft.batch_size,
                    "seconds": seconds,
                    self.own: report.own(),
                    self.beyond: report.beyond(),
                }
            )
            if not math.isnan(shortcut := report.shortcut_rate()):  # perm: the one-lookup plateau
                self.points[-1][self.shortcut] = shortcut
            if self.verbose:
                point = self.points[-1]
                name, h = self.task.difficulty_name, self.task.human_max_difficulty
                print(
                    f"step {point['step']} ({point['examples']} examples, {point['seconds']:.0f}s): held-out direct "
                    f"answers {name}<={h} {point[self.own]:.1%}, {name}>={h + 1} {point[self.beyond]:.1%}",
                    flush=True,
                )
        limit = self.cfg.sft.max_minutes
        if limit is not None and time.perf_counter() - self.start - self.evaluating > 60 * limit:
            control.should_training_stop = True
        return control


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def gc_frozen() -> Iterator[None]:
    """Hide from Python's garbage collector what exists now until the block ends: a loop's long-lived setup (models,
    tokenizer, the warm start's examples, the label store; 400,000-550,000 objects in the perm recipes). A full
    collection came about once a trainer update and walked all of them each time (0.2-0.5 s an update), and 11 times
    in an IDA round of 45 s (3.3 s; docs/benchmarks.md); frozen, it walks what the loop makes. Unfrozen at the end,
    so that a process that trains again (the tests, the bench) can free them."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _process() -> tuple[int, int]:
    """(this process's rank, the number of processes): (0, 1) unless a process group is up (``accelerate launch``)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def run_sft(cfg: Config, progress: bool = True, start: Path | None = None) -> SftResult:
    """The warm start A[0]: imitation examples from the synthetic human, distilled by TRL's ``SFTTrainer``, saved
    and evaluated on held-out questions. Under ``accelerate launch`` every process calls it (the trainer splits the
    batches; ``sft.batch_size`` stays the batch of all processes together) and the main one writes the files.
    ``start``: the weights A[0] starts from instead of ``cfg.model``'s (the ``pretrain`` stage's M); the run's
    ``config.yaml`` stays ``cfg``, so that ``--resume`` compares the recipe with the recipe."""
    import datasets

    if not progress:
        datasets.disable_progress_bars()

    began = time.perf_counter()
    if cfg.run.torch_threads:
        torch.set_num_threads(cfg.run.torch_threads)
    seed_everything(cfg.run.seed)
    main = _process()[0] == 0
    run_dir = cfg.run_dir
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")

    # 1. Imitation data from the synthetic human, on training questions only.
    examples = warm_start_examples(cfg)
    n_debate = _n_debate(cfg)
    human_calls = 0 if cfg.sft.data == "gold" else sum(e.human_calls for e in examples)
    task = make_task(cfg)

    # 2. Train with TRL's SFTTrainer, the loss on the completion tokens only (distill).
    model, tokenizer = load_model(cfg.model, start, seed=cfg.run.seed)
    questions = task.eval_questions(cfg.task.eval_size, seed=cfg.run.seed + 1)
    curve = LearningCurve(task, questions, tokenizer, cfg, progress)
    trainer = distill(
        cfg,
        model,
        tokenizer,
        examples,
        output_dir=run_dir / "sft_trainer",
        tensorboard_dir=run_dir / "tensorboard" / "sft",
        epochs=cfg.sft.epochs,
        learning_rate=cfg.sft.learning_rate,
        progress=progress,
        callbacks=[curve],
    )
    # the optimizer's time, as the curve counts it: from the first step, evaluation left out
    train_seconds = time.perf_counter() - curve.start - curve.evaluating
    trained: Any = trainer.model
    if cfg.model.lora.enabled:
        trained = trained.merge_and_unload()

    # 3. Held-out accuracy by difficulty, then A[0] saved with it: its config.json says the warm start is done, so
    # the folder appears whole, report included, or not at all.
    heldout_debates = (
        debate_imitation_examples(task, cfg.task.eval_size, cfg.run.seed + 1, cfg.debate.max_turns, heldout=True)
        if n_debate
        else []
    )
    report = evaluate_heldout(
        trained,
        tokenizer,
        task,
        questions,
        max_new_tokens=cfg.generation.max_new_tokens,
        progress=progress,
        debate_examples=heldout_debates,
        skills=SKILLS if cfg.sft.data == "human" else ("answer",),  # gold or answers alone teach no steps
    )
    heldout = {**report.as_dict(), "train_seconds": train_seconds, "human_calls": human_calls, "curve": curve.points}
    if not math.isnan(shortcut := report.shortcut_rate()):
        heldout[f"shortcut_{beyond_name(task)}"] = shortcut
    model_dir = run_dir / cfg.sft.output_subdir
    if main:
        save_model(trained, tokenizer, model_dir, files={"heldout.json": json.dumps(heldout, indent=2)})
    seen = min(trainer.state.global_step * cfg.sft.batch_size, int(len(examples) * cfg.sft.epochs))
    untimed = time.perf_counter() - began - train_seconds
    return SftResult(
        model_dir, report, train_seconds, len(examples), seen, curve.points, human_calls, examples, untimed
    )


def distill(
    cfg: Config,
    model: Any,
    tokenizer: Any,
    examples: list[Example],
    *,
    output_dir: Path,
    tensorboard_dir: Path | None,
    epochs: float,
    learning_rate: float,
    progress: bool = True,
    callbacks: Sequence[TrainerCallback] = (),
) -> Any:
    """Distill(examples) from ``model``'s current weights: TRL's ``SFTTrainer`` minimises the completion tokens' NLL,
    d(completion, M(""prompt)), over ``epochs`` passes, AdamW at ``learning_rate`` with linear decay after warmup,
    in batches of ``sft.batch_size`` of like lengths; LoRA adapters when ``model.lora.enabled``. Examples are
    tokenized here the way the trainer and ``generate`` read them (a prompt with the tokenizer's special tokens,
    e.g. the prefix-LM's ``<prompt_end>``; TRL would tokenize the prompt as plain text). The warm start
    (:func:`run_sft`) and each IDA round (:mod:`debate_amp.trainer.ida`) train through it. Returns the trained
    ``SFTTrainer`` (``.model``: a peft model when LoRA is on; ``.state.log_history``: the losses).
    ``tensorboard_dir`` None: no TensorBoard events."""
    from trl import SFTConfig, SFTTrainer

    # TRL's own config still sets the old name; the warning is not about anything a recipe can change.
    warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.* is deprecated", category=FutureWarning)
    dataset = _training_dataset(tokenizer, examples, cfg.model.max_positions)
    args = SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        per_device_train_batch_size=max(1, cfg.sft.batch_size // _process()[1]),  # sft.batch_size in all
        learning_rate=learning_rate,
        warmup_steps=cfg.sft.warmup_ratio,
        weight_decay=cfg.sft.weight_decay,
        lr_scheduler_type="linear",
        completion_only_loss=True,
        max_length=cfg.model.max_positions,
        logging_steps=25,
        save_strategy="no",
        report_to="tensorboard" if tensorboard_dir is not None else "none",
        seed=cfg.run.seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=cfg.model.dtype == "bfloat16",
        disable_tqdm=not progress,
        optim="adamw_torch",
        gradient_checkpointing=False,  # TRL turns it on to save memory; a small model only pays its recomputation
        train_sampling_strategy="group_by_length",  # batches of like lengths: short answers are not padded to debates
        dataset_kwargs={"skip_prepare_dataset": True},  # prepared here (_training_dataset)
    )
    peft_config = peft_lora_config(cfg.model.lora, model) if cfg.model.lora.enabled else None
    # transformers' TensorBoard callback reads its directory from the environment when the trainer is built
    with mock.patch.dict(os.environ, {"TENSORBOARD_LOGGING_DIR": str(tensorboard_dir or output_dir)}):
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
        )
    _small_vocabulary_lm_head(trainer)
    for callback in callbacks:
        trainer.add_callback(callback)
    trainer.train()
    return trainer


SMALL_VOCABULARY = 4096
"""Up to this many tokens, :func:`distill` scores the LM head from its full logits rather than TRL's fused head."""


def _small_vocabulary_lm_head(trainer: Any) -> None:
    """Replace the fused LM head TRL's ``SFTTrainer`` patches onto the model with one that builds the full logits,
    when the vocabulary has at most :data:`SMALL_VOCABULARY` tokens (the tiny model's bytes: 259).

    TRL scores the completion tokens in tiles so as never to hold (batch, length, vocabulary) logits: worth it for a
    150,000-token vocabulary; for 259 tokens the logits are smaller than the hidden states, and the tiled kernel
    took 38 ms of a step where the full logits take 9 (batches of 128 rows of 21 tokens, 2 cores; docs/training.md).
    The replacement keeps TRL's contract (``fused_lm_head=True`` returns a ``FusedCausalLMOutput`` with the loss, the
    completion tokens' log-probabilities, entropies and top-1 hits), so ``SFTTrainer.compute_loss``, its metrics and
    its scaling across processes are TRL's own; without ``fused_lm_head`` the forward is the model's (generation)."""
    from peft import PeftModel
    from trl.trainer.utils import FusedCausalLMOutput

    model: Any = trainer.model.get_base_model() if isinstance(trainer.model, PeftModel) else trainer.model
    if model.config.get_text_config().vocab_size > SMALL_VOCABULARY:
        return
    fused_forward = model.forward  # TRL's: with fused_lm_head=False it is the model's own forward

    @functools.wraps(type(model).forward)
    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head:
            return fused_forward(
                *args, labels=labels, shift_labels=shift_labels, num_items_in_batch=num_items_in_batch, **kwargs
            )
        kwargs["use_cache"] = False
        logits = fused_forward(*args, **kwargs).logits.float()
        if shift_labels is None:
            logits, labels = logits[:, :-1], labels[:, 1:]
        else:
            labels = shift_labels
        mask = labels != -100
        log_softmax = logits.log_softmax(-1)
        log_probs = log_softmax.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1).masked_fill(~mask, 0.0)
        with torch.no_grad():
            entropy = -(log_softmax.exp() * log_softmax).sum(-1).masked_fill(~mask, 0.0)
            is_top1 = (logits.argmax(-1) == labels) & mask
        loss = -log_probs.sum() / (mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
        return FusedCausalLMOutput(loss=loss, log_probs=log_probs, entropy=entropy, is_top1=is_top1, label_mask=mask)

    model.forward = types.MethodType(forward, model)


def imitation_rows(tokenizer, examples: list[Example]) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of each example, prompt + completion + end-of-sequence, and a mask that is 1 on the completion and
    its end-of-sequence (the prompt tokenized with the tokenizer's special tokens, as :func:`encode_prompts`)."""
    prompts = encode_prompts(tokenizer, [e.prompt for e in examples])
    completions = tokenizer(
        [e.completion for e in examples], add_special_tokens=False, return_attention_mask=False
    ).input_ids
    eos = [tokenizer.eos_token_id]
    ids = [p + list(c) + eos for p, c in zip(prompts, completions, strict=True)]
    masks = [[0] * len(p) + [1] * (len(c) + 1) for p, c in zip(prompts, completions, strict=True)]
    return ids, masks


def imitation_dataset(tokenizer, examples: list[Example]):
    """A tokenized ``datasets.Dataset``, one row per example in order: ``input_ids`` and ``completion_mask``
    (:func:`imitation_rows`)."""
    from datasets import Dataset

    ids, masks = imitation_rows(tokenizer, examples)
    return Dataset.from_dict({"input_ids": ids, "completion_mask": masks})


def _training_dataset(tokenizer, examples: list[Example], max_length: int):
    """What TRL's own preparation makes of :func:`imitation_dataset` (``labels`` -100 off the completion, rows cut
    to ``max_length`` from the start, rows left without a completion token dropped), built here from plain lists:
    TRL's three ``Dataset.map`` passes took 13.7 s of the default warm start's 128,000 examples."""
    from datasets import Dataset

    rows: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
    for ids, mask in zip(*imitation_rows(tokenizer, examples), strict=True):
        labels = [token if bit else -100 for token, bit in zip(ids, mask, strict=True)][:max_length]
        if any(label != -100 for label in labels):
            rows["input_ids"].append(ids[:max_length])
            rows["labels"].append(labels)
    return Dataset.from_dict(rows)


def warm_start_examples(cfg: Config) -> list[Example]:
    """The warm start's examples, shuffled, exactly as :func:`run_sft` trains on them (a function of the recipe
    and ``run.seed`` alone): the trainer's rehearsal draws from the same list, labels the warm start already paid.

    ``sft.data: gold``: question -> gold answer at every difficulty. ``human``: the human's own answers, steps and
    integrations (``Task.imitation_examples``) and, ``sft.debate_fraction`` of them, its replies inside debates.
    ``answers``: only the human's direct answers to what it answers itself, drawn as ``human`` draws them.
    """
    task = make_task(cfg)
    if cfg.sft.data == "gold":  # the supervised baseline: question -> gold, at every difficulty
        rng = random.Random(cfg.run.seed)
        examples = [
            Example(task.answer_prompt(q), str(q.gold), "answer", q.difficulty)
            for q in (task.sample(rng) for _ in range(cfg.sft.n_examples))
        ]
    elif cfg.sft.data == "answers":
        examples = _human_direct_answers(cfg, task)
    else:
        human = task.human(error_rate=cfg.human.error_rate, seed=cfg.run.seed)
        n_debate = _n_debate(cfg)
        examples = task.imitation_examples(
            human,
            cfg.sft.n_examples - n_debate,
            seed=cfg.run.seed,
            lookups=cfg.sft.lookup_rate,
            integrated_answers=cfg.sft.integrated_answers,
        )
        examples += debate_imitation_examples(
            task,
            n_debate,
            cfg.run.seed,
            cfg.debate.max_turns,
            cfg.human.error_rate,
            integrated_arguments=cfg.sft.integrated_arguments,
        )
    random.Random(cfg.run.seed).shuffle(examples)
    return examples


def _human_direct_answers(cfg: Config, task: Task) -> list[Example]:
    """``sft.n_examples`` of the human's direct answers to what it answers itself (difficulty up to
    ``Task.human_max_difficulty``; perm: k <= 1 with the extra lookups), in the order ``Task.imitation_examples``
    draws them, its decompositions and integrations left out."""
    human = task.human(error_rate=cfg.human.error_rate, seed=cfg.run.seed)
    examples: list[Example] = []
    for chunk in itertools.count():
        drawn = task.imitation_examples(
            human, cfg.sft.n_examples, seed=cfg.run.seed + chunk, lookups=cfg.sft.lookup_rate
        )
        answers = [e for e in drawn if e.kind == "answer" and e.difficulty <= task.human_max_difficulty]
        if not answers:
            raise ValueError(f"sft.data=answers: the {task.name} task's human gave no direct answer in {len(drawn)}")
        examples += answers
        if len(examples) >= cfg.sft.n_examples:
            return examples[: cfg.sft.n_examples]
    raise AssertionError("unreachable")


def _n_debate(cfg: Config) -> int:
    """How many of the warm start's examples come from debates (none but for the human's own warm start)."""
    return int(cfg.sft.n_examples * cfg.sft.debate_fraction) if cfg.sft.data == "human" else 0


def debate_imitation_examples(
    task: Task,
    n: int,
    seed: int,
    max_turns: int,
    error_rate: float = 0.0,
    heldout: bool = False,
    integrated_arguments: bool = False,
) -> list[Example]:
    """The human's replies inside debates: how it argues (with a model's values) and how it judges.

    Debates are run with the perfect scripted model and the human answering every step (sampler ``always``):
    a third in self-play, a third against the scripted liar on each side, so that A[0] has seen openings,
    disputes, agreements and verdicts both ways. Every human answer in the trees is an example, and so is the
    same reply posed directly (``... W=`` rather than the step ``... SW=``) where the human gave it without asking
    the model anything: every verdict, continue and catastrophe judgment, and the arguments it makes alone
    (agreements, lookup-level claims): M's own reply to the question, what distillation imitates. Amp~(H, M) itself
    poses a judgment to M only as the asker's step (``SW=``; tests/unit/test_amp.py), so the direct form reaches
    the debates' judge through shared weights (the commit that added them, with the rehearsal's debate share,
    measured verdicts parsed 9% -> 54% in ``make run``).

    An argument that used the model's values (an opening ``x^k=v via m``, a dispute of a decomposed claim) is
    posed directly only with ``integrated_arguments``, as the argument the human would make working those values
    out alone (Amp(H, H)); the perfect model's values are exactly those, and the example is charged the human
    calls of working them out (``Task.alone_calls`` per value, plus the human's own steps). Without them the
    direct argue prompt after a decomposed claim never appears in the data, and the trained model answered a
    liar's false opening with ``agree`` (docs/training.md).
    """
    rng = random.Random(seed)
    human = SyntheticHuman(task.human(error_rate=error_rate, seed=seed))
    amp = amp_approx(human, ModelAgent(task.perfect_generate, "policy"), Always())
    examples: list[Example] = []
    while len(examples) < n:
        questions = [task.sample(rng, heldout=heldout) for _ in range(64)]
        liar = ScriptedDebater(task.liar(seed=rng.randrange(2**31)))
        liar_side = rng.choice([None, "even", "odd"])
        even, odd = (liar if liar_side == "even" else None), (liar if liar_side == "odd" else None)
        for debate in run_debates(questions, amp, amp, max_turns, seed=rng.randrange(2**31), even=even, odd=odd):
            q = debate.question
            for trace in debate.traces():
                for node in used_nodes(trace):
                    if node.who == "human" and not node.op:
                        goal = node.posed.goal if node.posed.goal is not None else node.posed
                        examples.append(Example(node.posed.render(), node.text, goal.kind, q.difficulty, q))
                        reply = q.parse_step(node.text)
                        if node.posed.kind == "step" and not node.posed.workspace and isinstance(reply, Answer):
                            examples.append(Example(goal.render(), reply.text, goal.kind, q.difficulty, q))
                    elif integrated_arguments and node.op and node.posed.kind == "argue" and _used_model(node):
                        calls = _alone_calls(task, node)
                        examples.append(Example(node.posed.render(), node.text, "argue", q.difficulty, q, calls))
    rng.shuffle(examples)
    return examples[:n]


def _used_model(amp_node: Trace) -> bool:
    return amp_node.who == "human" and any(child.who != "human" for child in amp_node.children)


def _alone_calls(task: Task, amp_node: Trace) -> int:
    """Human calls of an Amp(H, M) node's reply had the human worked the model's values out alone: its own steps,
    and ``Task.alone_calls`` for every subquestion the model answered."""
    calls = 0
    for child in amp_node.children:
        if child.who == "human":
            calls += 1
        else:
            calls += task.alone_calls(child.posed.question)
    return calls
