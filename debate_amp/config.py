"""Recipes: nested dataclasses filled from YAML plus ``a.b=value`` overrides.

Every field has a docstring (shown by ``debate-amp config``). Validation is pydantic's: unknown keys, wrong types,
out-of-range values and unknown choices are rejected, and :func:`load_config` turns the first problem into one
line that names the key and what is allowed (:class:`ConfigError`; the CLI prints it and exits with code 2).

This module imports neither torch nor transformers, so a bad recipe fails in well under a second.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import os
import string
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from debate_amp.durable import closest_existing, write_whole

# allow_inf_nan: a learning rate of .inf or a threshold of .nan is a typo, not a setting (it would train NaN weights
# into a checkpoint, or never ask the human)
_STRICT = ConfigDict(extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)

_FORMATTER = string.Formatter()

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]

# accelerate's experiment trackers (``accelerate.tracking.LOGGER_TYPE_TO_CLASS``) and the modules each needs
# (``accelerate.utils.is_<name>_available``), listed here so that a recipe is checked without importing torch.
TRACKER_MODULES = {
    "tensorboard": ("tensorboard", "tensorboardX"),
    "wandb": ("wandb",),
    "mlflow": ("mlflow",),
    "trackio": ("trackio",),
    "comet_ml": ("comet_ml",),
    "aim": ("aim",),
    "clearml": ("clearml",),
    "dvclive": ("dvclive",),
    "swanlab": ("swanlab",),
}
Tracker = Literal["tensorboard", "wandb", "mlflow", "trackio", "comet_ml", "aim", "clearml", "dvclive", "swanlab"]


class ConfigError(ValueError):
    """A recipe problem, stated in one line that names the key or path and what is allowed."""


@dataclass(config=_STRICT)
class RunConfig:
    name: str = "default"
    """Run name; outputs go to ``<output_dir>/<name>/``."""
    output_dir: str = "runs"
    """Parent folder of run directories."""
    seed: int = 0
    """Seed for Python, NumPy and torch; question generation and sampling derive from it."""
    torch_threads: NonNegativeInt = 0
    """Intra-op CPU threads for torch; 0 keeps torch's default (all cores)."""
    log_with: list[Tracker] = dataclasses.field(default_factory=lambda: ["tensorboard"])
    """Experiment trackers the trainer's scalars go to, through accelerate (``Accelerator(log_with=...)``):
    ``tensorboard`` (events in ``<run>/tensorboard/``), ``wandb``, ``mlflow``, ``trackio``, ``comet_ml``, ``aim``,
    ``clearml``, ``dvclive``, ``swanlab`` (project ``debate-amp``; each needs its package installed and is set up by
    its own environment variables). ``[]``: none; ``metrics.jsonl`` is always written. The warm start (``sft``)
    logs to ``<run>/tensorboard/sft/`` regardless."""

    def __post_init__(self) -> None:
        # ``--overwrite`` deletes <output_dir>/<name>: a name that is not one plain folder name could point it at
        # the output folder itself, its parent or anywhere on disk.
        name = self.name
        if not name or name in (".", "..") or any(sep in name for sep in ("/", "\\", os.sep)) or "\0" in name:
            raise ValueError(f"name={name!r} must be one plain folder name (no '/', not '.' or '..')")
        twice = sorted({t for t in self.log_with if self.log_with.count(t) > 1})
        if twice:
            raise ValueError(f"log_with names {', '.join(twice)} twice")


@dataclass(config=_STRICT)
class LoraConfig:
    enabled: bool = False
    """Train LoRA adapters (peft) instead of all weights."""
    r: PositiveInt = 8
    """LoRA rank."""
    alpha: PositiveInt = 16
    """LoRA scaling numerator (peft's ``lora_alpha``); not the objective's α."""
    dropout: Probability = 0.0
    """Dropout on the LoRA path."""
    target_modules: list[str] = dataclasses.field(default_factory=lambda: ["all-linear"])
    """Module names that get adapters (e.g. ``[q_proj, v_proj]``); ``[all-linear]``: every linear layer but the
    output head."""


@dataclass(config=_STRICT)
class ModelConfig:
    path: str | None = None
    """A local Hugging Face model directory (weights and tokenizer). None builds the tiny offline model below: a
    GPT-2-style prefix-LM (learned absolute positions; the prompt read both ways, the reply causally)."""
    hidden_size: PositiveInt = 64
    """Tiny model: width."""
    num_layers: PositiveInt = 4
    """Tiny model: transformer blocks (applications of the one block when ``shared_layers``)."""
    num_heads: PositiveInt = 4
    """Tiny model: attention heads (must divide hidden_size)."""
    intermediate_size: PositiveInt = 256
    """Tiny model: MLP width."""
    max_positions: PositiveInt = 128
    """Tiny model: longest sequence (prompt + generation) in tokens."""
    embedding_init_std: PositiveFloat = 0.2
    """Tiny model: standard deviation of the initial token and position embeddings. With GPT-2's 0.02 the first
    lookup sat on its plateau about 3 times longer (docs/perm.md)."""
    block_init_std: PositiveFloat = 0.02
    """Tiny model: standard deviation of the initial weights of the blocks (GPT-2's ``initializer_range``). 0.2
    here too learned the first lookup sooner but composed sigma with itself less often (docs/perm.md)."""
    shared_layers: bool = True
    """Tiny model: every block shares the first block's weights (one block applied num_layers times: a looped
    transformer, which reuses a lookup it has learned at every depth; docs/perm.md has the measurements)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Parameter dtype when loading or building the model."""
    lora: LoraConfig = dataclasses.field(default_factory=LoraConfig)
    """LoRA adapters (peft)."""

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must divide hidden_size ({self.hidden_size})")


@dataclass(config=_STRICT)
class PermConfig:
    """``task.name: perm``: permutation powering, sigma^k(x) (Christiano et al. 2018; docs/perm.md)."""

    name: Literal["perm"] = "perm"
    """The task (``perm``, ``add``, ``dataset``); each has its own keys below the generic ones."""
    n_elements: Annotated[int, Field(ge=2, le=10)] = 8
    """perm: size N of the permutation (at most 10: sigma is written one digit per element)."""
    max_power: Annotated[int, Field(ge=1, le=4096)] = 7
    """perm: largest power K asked."""
    balance: Literal["depth", "uniform"] = "depth"
    """Draw the difficulty evenly by decomposition depth (perm: floor(log2 k); add: ceil(log2 digits)) (``depth``),
    or uniformly (``uniform``). Uniform starves amplification of the easy questions the human can do (DESIGN.md
    section 4)."""
    heldout_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.0625
    """Fraction of questions' contexts (perm: permutations; add: operand pairs) reserved for evaluation; training
    never sees them."""
    eval_size: PositiveInt = 512
    """Held-out questions used to report accuracy."""


@dataclass(config=_STRICT)
class AddConfig:
    """``task.name: add``: multi-digit addition with a carry (after Christiano et al.'s algorithmic tasks;
    docs/add.md)."""

    name: Literal["add"] = "add"
    """The task (``perm``, ``add``, ``dataset``); each has its own keys below the generic ones."""
    max_digits: Annotated[int, Field(ge=1, le=16)] = 6
    """add: most digits in each operand (the human adds one digit pair with a carry)."""
    fixed_width: bool = True
    """add: operands always max_digits wide, a question of n digits asking for their low n digits (``r=0-2``), so a
    digit sits at the same prompt position in every question; false: operands exactly n digits wide."""
    balance: Literal["depth", "uniform"] = "depth"
    """Draw the difficulty evenly by decomposition depth (perm: floor(log2 k); add: ceil(log2 digits)) (``depth``),
    or uniformly (``uniform``)."""
    heldout_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.0625
    """Fraction of questions' contexts (perm: permutations; add: operand pairs) reserved for evaluation; training
    never sees them."""
    eval_size: PositiveInt = 512
    """Held-out questions used to report accuracy."""


POSED_KINDS = ("answer", "step", "argue", "sufficient", "winner", "catastrophe")
TEMPLATE_FIELDS = ("question", "arguments", "argument", "workspace", "goal", "cue")


@dataclass(config=_STRICT)
class DatasetConfig:
    """``task.name: dataset``: your own questions, rows ``{question, answer?}`` read from disk (docs/tasks.md). There
    is no synthetic human: H is a frozen local model (``human.kind: model``) or recorded answers (``replay``)."""

    name: Literal["dataset"] = "dataset"
    """The task (``perm``, ``add``, ``dataset``); each has its own keys below the generic ones."""
    paths: list[str] = dataclasses.field(default_factory=list)
    """dataset: .jsonl / .json / .csv / .parquet files, or folders written by ``datasets``' ``save_to_disk``; read
    offline with the ``datasets`` library."""
    question_field: str = "question"
    """dataset: the column holding the question text."""
    answer_field: str | None = "answer"
    """dataset: the column holding the gold answer, where a row has one (evaluation only; null: none)."""
    templates: dict[str, str] = dataclasses.field(default_factory=dict)
    """dataset: how each posed kind reads (``answer``, ``step``, ``argue``, ``sufficient``, ``winner``,
    ``catastrophe``), with the fields {question}, {arguments}, {argument}, {workspace}, {goal}, {cue}; a kind not
    given keeps the compact default (``{question} A=``: what the tiny model reads). docs/tasks.md has examples."""
    max_prompt_chars: NonNegativeInt = 0
    """dataset: longest prompt in characters (older arguments, then the question's start, are cut to fit; 0: no
    limit). The tiny default model reads at most 128 positions, its reply included."""
    heldout_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.0625
    """Fraction of questions' contexts (perm: permutations; add: operand pairs; dataset: rows, by a hash of the
    question) reserved for evaluation; training never sees them."""
    eval_size: PositiveInt = 512
    """Held-out questions used to report accuracy (dataset: held-out rows with an answer, at most this many)."""

    def __post_init__(self) -> None:
        if not self.paths:
            raise ValueError("paths: the dataset task needs at least one file or saved datasets folder")
        for kind, template in self.templates.items():
            if kind not in POSED_KINDS:
                raise ValueError(f"templates.{kind}: not a posed kind; one of {', '.join(POSED_KINDS)}")
            names = {f for _, f, _, _ in _FORMATTER.parse(template) if f is not None}
            unknown = sorted(f for f in names if f.split(".")[0].split("[")[0] not in TEMPLATE_FIELDS)
            if unknown:
                raise ValueError(
                    f"templates.{kind}: unknown field {{{unknown[0]}}}; the fields are "
                    + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
                )


TASK_CONFIGS: dict[str, type] = {"perm": PermConfig, "add": AddConfig, "dataset": DatasetConfig}
"""Each task's own section, chosen by ``task.name`` (the registry of tasks is ``debate_amp.tasks.TASKS``)."""

TaskConfig = Annotated[PermConfig | AddConfig | DatasetConfig, Field(discriminator="name")]


@dataclass(config=_STRICT)
class HumanConfig:
    kind: Literal["synthetic", "replay", "model", "web", "terminal"] = "synthetic"
    """Who plays H. ``synthetic``: the task's simulated weak expert. ``replay``: answers recorded earlier
    (``replay_from``). ``model``: a frozen local language model (``model_path``) acting as the human / judge.
    ``web``: real people, answering in ``debate-amp serve`` (docs/humans.md). ``terminal``: a person at the
    trainer's terminal."""
    error_rate: Probability = 0.0
    """synthetic: probability that a direct answer (a lookup) is wrong."""
    replay_from: str | None = None
    """replay: a label store (``.sqlite``) or a JSONL export of one."""
    fallback: Literal["none", "synthetic"] = "none"
    """replay: who answers a question with no recorded answer; ``none`` makes it an error."""
    model_path: str | None = None
    """model: a local Hugging Face model directory; the frozen LM that answers as H (greedy, never trained)."""
    timeout_s: PositiveFloat | None = 300.0
    """web / terminal: seconds a question waits for a person; then the model's draft is used, marked ``timed_out``
    in the trace (null: wait for ever)."""
    show_draft: bool = True
    """web / terminal: show people the model's draft (the terminal's default answer)."""
    store: str | None = None
    """web / terminal: the label store people answer into (several trainers may share one); default the run's
    ``labels.sqlite`` (every process of a distributed run then shares it)."""
    person: str | None = None
    """terminal: the name the answers are stored under (default: $USER)."""

    def __post_init__(self) -> None:
        if self.kind == "replay" and self.replay_from is None:
            raise ValueError("kind=replay needs replay_from: a label store (.sqlite) or a JSONL file of labels")
        if self.kind == "model" and self.model_path is None:
            raise ValueError("kind=model needs model_path: a local Hugging Face model directory")

    @property
    def people(self) -> bool:
        """Is H real people (``web`` / ``terminal``), answering through the label store's queue?"""
        return self.kind in ("web", "terminal")


@dataclass(config=_STRICT)
class SamplerConfig:
    kind: Literal["always", "never", "bernoulli", "confidence", "adversary"] = "bernoulli"
    """Samp: when Approx asks the real human instead of the model. ``always``: every call the human's (the model is
    not asked for a draft, unless people answer: web / terminal show it and keep it for a timeout). ``confidence``
    asks when the model's reply has mean token log-probability below ``threshold``. ``adversary``: references/000's
    adversarial amplification (docs/adversarial_ida.md): a learned predictor of "M's draft is wrong" skips the human
    where it is confident and sends the human down the subquestion it doubts most (Boltzmann exploration);
    ``amp.levels`` does not apply."""
    p: Probability = 0.1
    """bernoulli: probability that a call goes to the human."""
    threshold: float = -0.5
    """confidence: mean token log-probability below which the human is asked."""
    per_update: NonNegativeInt | None = None
    """Hard cap on human calls per update (None: no cap)."""
    per_run: NonNegativeInt | None = None
    """Hard cap on human calls in the whole run (None: no cap)."""
    confidence: Probability = 0.2
    """adversary: the human is asked about a node only when the adversary's probability that M's draft is wrong is
    at least this; below it M's draft stands (references/000's confidence threshold)."""
    temperature: PositiveFloat = 0.2
    """adversary: Boltzmann temperature of the choice of the subquestion the human works down: i with probability
    softmax(p_wrong / temperature)_i over the adversary's scores of M's two answers (Gumbel-max)."""
    adversary_steps: PositiveInt = 16
    """adversary: AdamW minibatch steps (64 labelled nodes each) the adversary takes each update."""
    adversary_warm_start: NonNegativeInt = 4096
    """adversary: before the first update of a fresh run, the adversary learns from this many of the warm start's own
    examples (the rehearsal's pool): M's greedy draft of each prompt against the human's reply, labels the warm
    start paid for (charged, as ``adversary/warm_start_human_calls``, when this run did not make A[0]). 0: it starts
    untrained and doubts every draft."""
    adversary_path: str | None = None
    """adversary: a trained adversary's weights (``RUN/adversary.safetensors``, which a run writes at its end) to
    start from: the trainer's adversary starts from them (its warm-up, if any, follows), and the commands outside
    the trainer (``amp``, ``debate``, ``eval --protocol``) use them instead of an uninformed adversary."""
    adversary_audit: Probability = 0.05
    """adversary: the share of the drafts the adversary trusts that are amplified all the same (their steps M's where
    it trusts those too, so seldom a human call): labels for trusted drafts, so that a confident mistake can be found
    and the held-out AUC is not measured on doubted nodes alone."""
    adversary_questions: Probability = 0.0
    """adversary: the share of each update's amplification questions (``amp.questions_per_update``) chosen by the
    adversary, as the ones whose direct answers by M it rates most likely wrong among ``adversary_pool`` times as
    many training questions; the rest come from the training distribution."""
    adversary_pool: PositiveInt = 4
    """adversary: candidates drawn per question the adversary chooses (``adversary_questions``)."""

    def __post_init__(self) -> None:
        if self.adversary_questions and self.kind != "adversary":
            raise ValueError(f"adversary_questions: needs kind=adversary (kind={self.kind} has no adversary)")
        if self.adversary_path is not None and self.kind != "adversary":
            raise ValueError(f"adversary_path: needs kind=adversary (kind={self.kind} has no adversary)")


@dataclass(config=_STRICT)
class AmpConfig:
    max_rounds: PositiveInt = 2
    """Rounds of two subquestions an asker may use before it must answer (perm needs 1)."""
    max_batch: PositiveInt = 1024
    """Most prompts in one batched generate call; a larger wave is split."""
    questions_per_update: NonNegativeInt = 1024
    """Amplification targets per update: training questions answered by Amp~(H, M) and distilled, M(""Q) trained
    towards Amp~(H, M)(Q) (the amplification of Christiano et al. 2018), besides what the debates distil. 0: the
    debates' own amplified outputs only."""
    levels: PositiveInt = 1
    """How many times amplification is applied in those trees: Amp~^n(H, M) answers subquestions with
    Amp~^(n-1)(H, M) (every asker step is still Approx(H, M)'s), so its answers rest on M's own only n
    decomposition levels down. 1 is Christiano et al. 2018's Amp(H, X): M must learn each depth before the next
    is right. More levels cost more model calls per target (docs/training.md measures both)."""
    temperature: Annotated[float, Field(ge=0.0)] = 0.0
    """Sampling temperature of M inside those amplification trees (0: greedy, the model's best answer)."""
    balance_depths: bool = False
    """Subsample each update's amplified answers (``debate-amp train``; ``debate-amp ida`` keeps them all) so that
    no decomposition depth has more of them than the deepest one: with ``levels`` > 1 the subquestions' amplified
    answers pile up at the low depths (perm, questions of every depth, two levels: 86% at k <= 3, where a fresh M
    learns first), and the composed answers, where M stalls, get a seventh of the steps. The human's own answers
    (``trainer.imitate_human``) are all kept. recipes/amplification_fresh_student.yaml uses it: an update in about
    two thirds of the time (docs/benchmarks.md, "Balanced depths"; over seeds 0-7 it composed on 4 of 8 within 40
    updates balanced, on 7 of 8 unbalanced, and on 7 of 8 balanced with ``reuse_previous``)."""
    reuse_previous: bool = False
    """Distil the previous update's amplification examples again beside this update's (``debate-amp train``): each
    target is learned from in two updates, the amplification (most of an update's model calls) paid once, so half
    the questions an update keep the distillation steps. recipes/amplification_fresh_student.yaml uses it with
    1,024 questions instead of 2,048 (docs/benchmarks.md, "The fresh student distils each target in two updates")."""
    curriculum: bool = True
    """Draw those questions up to a depth (decomposition levels) that grows: Amp~(H, M) at depth d + 1 rests on M's
    answers at depth d, so its targets are worth distilling only once M has learned depth d (Christiano et al.
    raise the difficulty the same way). Without it, targets built on wrong sub-answers are distilled too."""
    start_depth: NonNegativeInt = 0
    """curriculum: the first depth (0: the powers the human can do itself, k <= 1 on perm; their amplified answers
    are distilled only where the human gave them, so M first learns the lookups it will build on)."""
    curriculum_threshold: Probability = 0.9
    """curriculum: go one level deeper once Amp~(H, M)'s answers one level deeper (``curriculum_probe`` questions,
    amplified each update, never distilled) are right this often against gold: those answers rest on M's at the
    current depth, so they are worth distilling only once M has learned it (Christiano et al. 2018 gated their
    curriculum on accuracy too; gold schedules the curriculum, it is never a target). M's agreement with its
    teacher is logged too (``amp/agreement``), but it rose to 1.0 on wrong answers M had learned to repeat."""
    curriculum_probe: NonNegativeInt = 64
    """curriculum: questions one level below the current depth amplified each update to decide when to go there
    (``amp/probe_accuracy``)."""


@dataclass(config=_STRICT)
class GenerationConfig:
    max_new_tokens: PositiveInt = 32
    """Longest model reply, in tokens."""
    max_answer_tokens: PositiveInt = 8
    """Longest reply to an ``answer`` question (a subquestion), so that a wave of short answers does not wait on
    one that runs on to max_new_tokens."""
    temperature: Annotated[float, Field(ge=0.0)] = 1.0
    """Sampling temperature for rollouts; 0 is greedy."""
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    """Nucleus sampling mass for rollouts."""


@dataclass(config=_STRICT)
class SftConfig:
    n_examples: PositiveInt = 128000
    """Imitation examples generated from the synthetic human (answers, decompositions, integrations)."""
    epochs: PositiveFloat = 1.0
    """Passes over the examples."""
    learning_rate: PositiveFloat = 1e-3
    """Peak learning rate (AdamW, linear decay after warmup)."""
    warmup_ratio: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.05
    """Fraction of steps spent warming up the learning rate."""
    batch_size: PositiveInt = 32
    """Examples per optimizer step (of all processes together under ``accelerate launch``, each taking its share).
    The tiny model's first lookup is a plateau it leaves after enough steps, not examples: 128,000 examples in
    batches of 32 learned it (k <= 1 and every step 100%, two seeds) in 2.7 minutes, where batches of 128 needed
    256,000 (3.7 minutes) and 128,000 in batches of 64 stopped at 89% (docs/training.md)."""
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    """AdamW weight decay."""
    data: Literal["human", "answers", "gold"] = "human"
    """``human``: imitate the synthetic human (the warm start A[0]). ``answers``: only the human's own direct answers
    to what it can answer itself (perm: k <= 1 and the extra lookups), no steps, integrations or debates (for
    ``trainer.imitate_human: false``, where M never drafts a step). ``gold``: answer every question directly from
    its gold answer, for all k (the supervised baseline that amplification is compared with)."""
    debate_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.25
    """Share of the examples taken from the human's replies inside debates (arguing and judging)."""
    lookup_rate: Probability = 0.5
    """Extra one-lookup examples (the human's sigma(y) for a random y of the question's permutation), added with this
    probability per question drawn: the lookup is the skill every other one rests on, and its examples are short."""
    integrated_answers: bool = True
    """For every question the human decomposes, also distil its integrated answer as a direct answer to
    sigma^k(x) (Amp(H, H)'s answer: the human working the question out alone), charged the subtrees' human calls.
    Without them A[0] learns the lookups on their own and then cannot learn to compose them, even from gold
    answers; with them the default run learned sigma^2(x) (docs/training.md)."""
    integrated_arguments: bool = True
    """Likewise for debates: every argument the human made with the model's values (an opening ``x^k=v via m``, a
    dispute) is also taught as the direct reply to the argue prompt, the argument it would make working those
    values out alone, charged those calls. Without them the direct argue prompt after a decomposed claim never
    appears in the warm start (docs/training.md)."""
    output_subdir: str = "sft"
    """Where the warm-started model A[0] is saved, inside the run directory."""
    eval_every_steps: NonNegativeInt = 0
    """Held-out accuracy of direct answers (``task.eval_size`` questions) every this many optimizer steps, kept as a
    learning curve in ``heldout.json``; 0: at the end only."""
    max_minutes: PositiveFloat | None = None
    """Stop training after this much wall time (the model is saved and evaluated as usual); None: no limit."""


ScheduleKind = Literal["constant", "linear", "cosine", "step", "exponential"]


@dataclass(config=_STRICT)
class AnnealConfig:
    kind: ScheduleKind = "constant"
    """How the value moves from its start to ``end`` as training progresses (progress = update / (updates - 1), from 0
    at the first update to 1 at the last)."""
    end: float | None = None
    """The value at the end of training; None keeps the start value (same as ``constant``)."""
    step_milestones: list[float] = dataclasses.field(default_factory=lambda: [0.5])
    """step: the progress points where the value jumps (in equal jumps from start to end)."""

    def __post_init__(self) -> None:
        if sorted(self.step_milestones) != list(self.step_milestones) or not all(
            0.0 <= m <= 1.0 for m in self.step_milestones
        ):
            raise ValueError("step_milestones must be increasing progress points in [0, 1]")


@dataclass(config=_STRICT)
class DebateConfig:
    max_turns: PositiveInt = 4
    """Longest debate, in arguments."""
    force_stop_p: Probability = 0.0
    """Probability that continue_0 is forced false (1.0 is pure imitative amplification); the start value when
    annealed."""
    force_stop_anneal: AnnealConfig = dataclasses.field(default_factory=AnnealConfig)
    """Annealing of force_stop_p, e.g. from near-pure amplification (0.9) towards debate (0.0)."""
    forfeit_unparsed: bool = True
    """An argument that is not an argument in the task's format forfeits the debate: it ends there, the other side
    wins, and the judge is not asked for a verdict. False: the judge is asked about the garbage too, and a verdict
    that does not parse gives both sides 0 (a losing debater can learn to reach it; docs/training.md)."""
    liar_fraction: Probability = 0.0
    """The fraction of each update's training debates in which the task's scripted liar (``Task.liar``) takes one
    side, even and odd in turn, against Amp~(H, M): the false claims that self-play between honest debaters never
    makes, for the judge's verdicts and the honest side's disputes to learn from. Never forced to stop; logged
    and written apart (``liar/`` tags, ``transcripts/liar/``; docs/training.md)."""

    def __post_init__(self) -> None:
        if self.force_stop_anneal.end is not None and not 0.0 <= self.force_stop_anneal.end <= 1.0:
            raise ValueError(f"force_stop_anneal.end must be a probability, got {self.force_stop_anneal.end}")


@dataclass(config=_STRICT)
class KLConfig:
    coef: Annotated[float, Field(ge=0.0)] = 0.05
    """Per-token KL penalty coefficient against the reference model (the start value when adaptive)."""
    adaptive: bool = False
    """Adapt the coefficient towards ``target`` KL (Ziegler et al. 2019)."""
    target: PositiveFloat = 6.0
    """adaptive: the KL (nats per sequence) the coefficient steers towards."""
    horizon: PositiveInt = 10000
    """adaptive: how fast the coefficient moves (in segments)."""
    estimator: Literal["k1", "k3", "abs", "mse"] = "k1"
    """Per-token KL estimate used in the penalty."""


@dataclass(config=_STRICT)
class ObjectiveConfig:
    mode: Literal["weighted", "constrained", "reward"] = "weighted"
    """How RL and imitation combine: ``weighted`` (alpha), ``constrained`` (Lagrangian constrained PPO, not
    Achiam et al.'s CPO), ``reward`` (imitation distance folded into the reward). DESIGN.md section 1."""
    alpha: Probability = 0.5
    """weighted: loss = alpha * L_rl + (1 - alpha) * L_sup (the start value when annealed)."""
    limit: Annotated[float, Field(gt=0.0, allow_inf_nan=True)] = 1.1
    """constrained: the bound on the supervised loss L_sup (the start value when annealed); ``.inf``: no bound (λ
    only falls, to 0)."""
    limit_kind: Literal["absolute", "relative"] = "relative"
    """constrained: ``absolute`` bounds L_sup by limit; ``relative`` by limit x L_sup measured before the first
    update ("maintain baseline performance")."""
    lagrange_lr: PositiveFloat = 0.5
    """constrained: step size of the Lagrange multiplier update."""
    lagrange_init: Annotated[float, Field(ge=0.0)] = 1.0
    """constrained: initial Lagrange multiplier."""
    reward_coef: Annotated[float, Field(ge=0.0)] = 0.1
    """reward: r <- r - reward_coef * d(arg_t, M(""arg_t)) (the start value when annealed)."""
    anneal: AnnealConfig = dataclasses.field(default_factory=AnnealConfig)
    """Annealing of the mode's weight: alpha (weighted), limit (constrained) or reward_coef (reward)."""
    catastrophe_coef: Annotated[float, Field(ge=0.0)] = 1.0
    """Reward penalty per unit of catastrophe cost of an argument."""
    kl: KLConfig = dataclasses.field(default_factory=KLConfig)
    """KL penalty to the reference model (the initial policy)."""

    def __post_init__(self) -> None:
        if self.mode == "weighted" and self.anneal.end is not None and not 0.0 <= self.anneal.end <= 1.0:
            raise ValueError(f"anneal.end is an alpha here and must be in [0, 1], got {self.anneal.end}")


@dataclass(config=_STRICT)
class TargetConfig:
    mode: Literal["hard", "ema"] = "hard"
    """How M_target follows M: ``hard`` copies every ``sync_every`` updates; ``ema`` averages with ``tau`` each
    update."""
    sync_every: PositiveInt = 2
    """hard: updates between copies."""
    tau: Probability = 0.1
    """ema: theta_target <- (1 - tau) theta_target + tau theta_policy."""
    temperature: Annotated[float, Field(ge=0.0)] = 0.0
    """Sampling temperature of the target's judgments and steps (0 is greedy)."""


@dataclass(config=_STRICT)
class TrainerConfig:
    updates: PositiveInt = 60
    """PPO updates (rollout + optimisation rounds)."""
    questions_per_update: PositiveInt = 64
    """Debates rolled out per update (split across processes)."""
    warm_start: bool = True
    """Train A[0] with the SFT warm start first (reused if the run directory already has it)."""
    learning_rate: PositiveFloat = 5e-4
    """Peak learning rate of the policy and value head (AdamW)."""
    adam_beta2: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.999
    """AdamW's beta2 (PyTorch's default 0.999). Lower adapts sooner to a gradient much larger than the recent ones,
    which a converged distillation meets after thousands of tiny ones (a loss spike; docs/training.md).
    recipes/few_labels_amplification.yaml uses 0.95; its header has the measurements."""
    lr_anneal: AnnealConfig = dataclasses.field(default_factory=AnnealConfig)
    """Annealing of the learning rate (``end`` in absolute units)."""
    ppo_epochs: PositiveInt = 2
    """Passes over each update's rollout."""
    minibatch_size: PositiveInt = 128
    """RL segments (policy generations) per optimizer step."""
    sup_minibatch_size: PositiveInt = 256
    """Supervised examples per optimizer step. An epoch takes as many steps as the larger of the two needs; the
    RL minibatches (``minibatch_size`` segments each) are spread evenly over its steps, the imitation examples
    split over all of them."""
    clip_range: PositiveFloat = 0.2
    """PPO ratio clip epsilon."""
    clip_range_value: PositiveFloat = 0.2
    """Value clip epsilon."""
    vf_coef: Annotated[float, Field(ge=0.0)] = 0.5
    """Weight of the value loss inside L_rl."""
    gamma: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    """Discount over the tokens of a generation."""
    gae_lambda: Annotated[float, Field(ge=0.0, le=1.0)] = 0.95
    """GAE lambda."""
    whiten_advantages: bool = True
    """Normalise advantages over the update."""
    max_grad_norm: PositiveFloat = 1.0
    """Gradient clipping."""
    rehearsal_examples: NonNegativeInt = 256
    """Warm-start imitation examples added to each update's supervised examples (the rehearsal), so that skills the
    updates do not exercise are not forgotten; 0 turns it off. They are the warm start's own examples
    (``sft.*``: the human's answers, steps and integrations and its replies inside debates), taken in turn: the
    warm start paid their human calls; a run without a warm start of its own is charged each the first time.
    Formerly ``replay_examples`` (a recipe or a saved run with that name still loads)."""
    imitate_human: bool = True
    """Distil the human's own replies inside the trees (its decompositions and integrations, its judgments) into M
    beside the amplified outputs, so that M learns to draft them for Approx(H, M). False: M learns only from what
    amplification made; with ``sampler.kind: always`` (the human makes every step) and ``sft.data: answers`` this is
    Christiano et al. 2018's division of labour, the human decomposing and M learning only to answer (it composed
    on other seeds than imitating the steps did, 4 of 8 against 3: docs/benchmarks.md)."""
    student: Literal["continue", "fresh"] = "continue"
    """Where M starts. ``continue``: from A[0] (the warm start, or ``model.path``), which amplifies as M learns.
    ``fresh``: from a newly initialised tiny model (seed ``run.seed + 100``), with A[0] kept frozen as M_target and
    as the model inside the amplifier, Amp~(H, M_target), and as the KL reference, until M takes over: after the first
    update at whose start M's direct answers agreed with the amplified answers more often than A[0]'s did (all
    processes' targets, every depth) and, where the sampler handed steps to the human in place of A[0]'s draft, M's
    drafts of those steps agreed with the human's at least as often as A[0]'s, M_target := M and Amp~(H, M)
    amplifies as with ``continue``, M_target following M as ``target.*`` says. So that M learns the lookups and the
    composed answers together, as a model trained on gold from scratch does, instead of composing on top of how A[0]
    learned (recipes/amplification_fresh_student.yaml: 7 of 8 seeds within 40 updates with ``amp.balance_depths`` and
    ``amp.reuse_previous``; docs/benchmarks.md, "A fresh student in the trainer" and "The fresh student distils each
    target in two updates"; ``ida.student`` is the same idea between IDA rounds).
    Needs the tiny model (``model.path`` null, LoRA off)."""
    eval_size: PositiveInt = 256
    """Held-out questions in the final table."""
    eval_every: NonNegativeInt = 10
    """Held-out accuracy (``eval/`` tags, ``eval_size`` questions) every this many updates; 0: at the end only."""
    max_minutes: PositiveFloat | None = None
    """Stop after the update during which this much wall time has passed since the run began (warm start
    included), with a checkpoint and the final table; None: run all ``updates``. The schedules still span
    ``updates``."""
    save_every: PositiveInt = 5
    """Write a checkpoint every this many updates (and always after the last one)."""
    keep_last: PositiveInt | None = 2
    """Whole checkpoints kept on disk (older ones are deleted); null keeps them all."""
    max_bad_updates: PositiveInt = 3
    """Stop after this many updates in a row skipped for a non-finite loss (the last good checkpoint stays)."""


@dataclass(config=_STRICT)
class IdaConfig:
    """``debate-amp ida``: the IDA outer loop, A[t+1] = Distill(Amplify(H, A[t])) (``references/003``;
    docs/ida.md). Amplify is Amp~(H, A[t]) as the recipe wires it (``human``, ``sampler``, ``amp.max_rounds``,
    ``amp.levels``, ``amp.temperature``); Distill steps like the warm start (``sft.batch_size``,
    ``sft.warmup_ratio``, ``sft.weight_decay``) from A[t]'s weights or a fresh model (``student``)."""

    rounds: PositiveInt = 3
    """Rounds t = 0..rounds-1, each making A[t+1] from A[t]; A[0] is the warm start, ``model.path`` or (with
    ``trainer.warm_start: false``) an untrained model."""
    questions_per_round: PositiveInt = 4096
    """Training questions amplified by Amp~(H, A[t]) each round; their amplified answers and the human's answers
    inside the trees are the round's new imitation examples."""
    epochs: PositiveFloat = 2.0
    """Passes of the distillation over the round's dataset."""
    learning_rate: PositiveFloat = 1e-3
    """Peak learning rate of the distillation (AdamW, linear decay after warmup), restarted each round."""
    keep_previous: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5
    """Share of each round's dataset drawn from earlier rounds' examples (the warm start's included, when this run
    made A[0]), so that skills the new examples do not exercise are not forgotten: 0.5 adds as many old examples as
    there are new ones; 0: the new ones only."""
    curriculum: bool = True
    """Round t draws questions of depth (decomposition levels) <= t + n only, n = ``amp.levels``: Amp~^n(H, A[t])'s
    answers at depth d + n rest on A[t]'s at depth d, so they are right only once A[t] is (A[0] is at depth 0).
    False: every depth from round 0 on."""
    max_minutes: PositiveFloat | None = None
    """Stop each round's distillation after this much wall time (the round is saved and evaluated as usual);
    None: all ``epochs``."""
    student: Literal["continue", "fresh"] = "continue"
    """Whom each round distils into. ``continue``: A[t]'s own weights (A[t+1] trained on from A[t]). ``fresh``: a
    newly initialised tiny model (its own seed each round, ``run.seed + 100 * round``), so that how A[t] learned its
    skills (the lookup first, then the human's steps) cannot shape how A[t+1] composes them: one round of
    recipes/ida_fresh_student.yaml (12 epochs) reached 97% held-out k >= 2 on 7 of 9 seeds fresh; with 6 epochs, 5 of
    10 fresh and 2 of 10 continued from A[0] (docs/ida.md). Needs the tiny model (``model.path`` null, LoRA off)."""


@dataclass(config=_STRICT)
class PretrainConfig:
    """``debate-amp train``: a run of another recipe before the warm start, whose trained M the warm start A[0] then
    starts from instead of a newly built model (docs/training.md, "Composing before imitating")."""

    recipe: str | None = None
    """A ``debate-amp train`` recipe run first, in ``<run>/pretrain/`` on this run's model, task, seed, threads and
    trackers (its other sections are its own); then A[0] imitates the human from its M.
    recipes/default.yaml names recipes/amplification_fresh_student.yaml: M learns to answer by amplification, the
    human decomposing and M never imitating a step (Christiano et al. 2018's division), and only then the human's
    steps and debate moves, which, learned first, left M on the one-lookup guess on four seeds of five; composed
    first, M ended at 98.4-100% held-out k >= 2 on four (docs/training.md, "Composing before imitating"). Reused
    when it has finished, continued from its last checkpoint when it has not. Only ``train`` runs it: ``debate-amp
    sft`` and ``ida`` do not (they say so). None: no pretraining."""
    updates: PositiveInt | None = None
    """The pretraining recipe's ``trainer.updates`` (None: the recipe's own)."""


@dataclass(config=_STRICT)
class Config:
    """A recipe. Sections mirror the procedure in DESIGN.md section 1."""

    run: RunConfig = dataclasses.field(default_factory=RunConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    task: TaskConfig = dataclasses.field(default_factory=PermConfig)
    human: HumanConfig = dataclasses.field(default_factory=HumanConfig)
    sampler: SamplerConfig = dataclasses.field(default_factory=SamplerConfig)
    amp: AmpConfig = dataclasses.field(default_factory=AmpConfig)
    generation: GenerationConfig = dataclasses.field(default_factory=GenerationConfig)
    sft: SftConfig = dataclasses.field(default_factory=SftConfig)
    debate: DebateConfig = dataclasses.field(default_factory=DebateConfig)
    objective: ObjectiveConfig = dataclasses.field(default_factory=ObjectiveConfig)
    target: TargetConfig = dataclasses.field(default_factory=TargetConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    ida: IdaConfig = dataclasses.field(default_factory=IdaConfig)
    pretrain: PretrainConfig = dataclasses.field(default_factory=PretrainConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.run.output_dir) / self.run.name


# A model and budget small enough for smoke runs, tests and examples: a run of a few updates takes seconds.
# Use as overrides on any recipe: ``load_config("recipes/default.yaml", [*TINY_OVERRIDES, "trainer.updates=2"])``.
TINY_OVERRIDES = (
    "model.hidden_size=32",
    "model.num_layers=2",
    "model.num_heads=2",
    "model.intermediate_size=64",
    "trainer.warm_start=false",
    "trainer.questions_per_update=8",
    "trainer.eval_size=8",
    "trainer.minibatch_size=16",
    "trainer.rehearsal_examples=32",
    "sft.n_examples=256",  # the rehearsal's pool is the warm start's examples
    "amp.questions_per_update=16",
    "amp.curriculum_probe=8",
    "generation.max_new_tokens=12",
    "run.torch_threads=2",
    "pretrain.recipe=null",  # a smoke run's warm start, when it has one, starts from a new model
)

# ---------------------------------------------------------------------------------------------------------------
# Loading


def load_config(
    recipe: str | os.PathLike[str] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    check_paths: bool = True,
    task: str | None = None,
) -> Config:
    """Read a recipe (or the defaults when ``recipe`` is None), apply ``a.b=value`` overrides and validate.

    ``task`` (the CLI's ``--task``) replaces the recipe's ``task`` section by that task's defaults when the recipe is
    about another task (overrides of ``task.*`` still apply). Raises :class:`ConfigError` with one line naming the
    key or path at fault. ``check_paths=False`` skips the existence checks of model and label paths and of the
    trackers' packages (to validate a GPU recipe on a machine without its model).
    """
    data: dict[str, Any] = {}
    if recipe is not None:
        data = _read_yaml(Path(recipe))
    if task is not None:
        if task not in TASK_CONFIGS:
            raise ConfigError(f"--task {task}: allowed values are {', '.join(repr(t) for t in TASK_CONFIGS)}")
        section = data.get("task")
        if not (isinstance(section, dict) and section.get("name", "perm") == task):
            data["task"] = {"name": task}
    for override in overrides:
        _apply_override(data, override)
    cfg = _validate(data, recipe, check_paths)
    if cfg.pretrain.recipe is not None:
        pretrain_config(cfg, check_paths=check_paths)  # its problems, before any work
    return cfg


def _validate(data: dict[str, Any], recipe: Any, check_paths: bool) -> Config:
    if isinstance(data.get("task"), dict):
        data["task"].setdefault("name", "perm")  # a task section without a name is perm's, as before there were two
    _rename_old_keys(data)
    _reject_booleans_for_numbers(data)
    try:
        cfg = TypeAdapter(Config).validate_python(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, recipe)) from None
    _check_task_fits(cfg)
    _check_ida_student(cfg)
    if check_paths:
        _check_paths(cfg)
    return cfg


PRETRAIN_SUBDIR = "pretrain"
"""Where ``pretrain.recipe`` runs, inside the run directory."""


def pretrain_config(cfg: Config, *, check_paths: bool = True) -> Config:
    """``pretrain.recipe`` as it runs before ``cfg``'s warm start: its own sections, but ``cfg``'s model and task
    (the model it trains is the one A[0] starts from), seed, threads and trackers, in ``<run>/pretrain``
    (``pretrain.updates``: its ``trainer.updates``). :class:`ConfigError` in one line naming the key."""
    recipe = cfg.pretrain.recipe
    assert recipe is not None
    try:
        data = _read_yaml(Path(recipe))
        for section in ("pretrain", "run", "trainer"):  # the sections merged with cfg's below
            if data.get(section) is not None and not isinstance(data[section], dict):
                raise ConfigError(f"{section}: expected a section of key: value lines, got {data[section]!r}")
        if (data.get("pretrain") or {}).get("recipe") is not None:
            raise ConfigError("it has a pretrain.recipe of its own (one stage of pretraining only)")
        data["model"] = dataclasses.asdict(cfg.model)
        data["task"] = dataclasses.asdict(cfg.task)
        run = data["run"] if isinstance(data.get("run"), dict) else {}
        data["run"] = {
            **run,
            "name": PRETRAIN_SUBDIR,
            "output_dir": str(cfg.run_dir),
            "seed": cfg.run.seed,
            "torch_threads": cfg.run.torch_threads,
            "log_with": list(cfg.run.log_with),
        }
        if cfg.pretrain.updates is not None:
            trainer = data["trainer"] if isinstance(data.get("trainer"), dict) else {}
            data["trainer"] = {**trainer, "updates": cfg.pretrain.updates}
        return _validate(data, recipe, check_paths)
    except ConfigError as e:
        reason = str(e).removeprefix(f"{recipe}: ")  # the file's own messages name it already
        raise ConfigError(f"pretrain.recipe: {recipe}: {reason}") from None


def _check_task_fits(cfg: Config) -> None:
    """What a task without a synthetic human (``dataset``), or a run whose H is real people, cannot do, each in one
    line."""
    if cfg.human.people:
        start = "start from a saved A[0] instead (debate-amp sft, then model.path=RUN/sft)"
        if cfg.trainer.warm_start:
            raise ConfigError(
                f"trainer.warm_start=true: the warm start imitates the task's synthetic human, not the people of "
                f"human.kind={cfg.human.kind}; set it false and {start}"
            )
        if cfg.trainer.rehearsal_examples:
            raise ConfigError(
                f"trainer.rehearsal_examples: the rehearsal imitates the task's synthetic human, not the people of "
                f"human.kind={cfg.human.kind}; set it to 0"
            )
    if cfg.task.name != "dataset":
        return
    if cfg.human.kind == "synthetic" or (cfg.human.kind == "replay" and cfg.human.fallback == "synthetic"):
        key = "human.kind" if cfg.human.kind == "synthetic" else "human.fallback"
        raise ConfigError(
            f"{key}=synthetic: the dataset task has no synthetic human; use human.kind=model (a frozen local model, "
            "human.model_path) or human.kind=replay (recorded answers)"
        )
    if cfg.trainer.warm_start:
        raise ConfigError("trainer.warm_start=true: the dataset task has no synthetic human to imitate; set it false")
    if cfg.trainer.rehearsal_examples:
        raise ConfigError(
            "trainer.rehearsal_examples: the dataset task has no warm-start examples to rehearse; set it to 0"
        )
    if cfg.debate.liar_fraction:
        raise ConfigError("debate.liar_fraction: the dataset task has no scripted liar; set it to 0")


def _check_ida_student(cfg: Config) -> None:
    """A fresh student (an IDA round's, or the trainer's M) is a new tiny model: not a local model directory, nor its
    LoRA adapter."""
    for section, whose in (("ida", "each round's student"), ("trainer", "M")):
        if getattr(cfg, section).student == "fresh" and (cfg.model.path is not None or cfg.model.lora.enabled):
            key = "model.path" if cfg.model.path is not None else "model.lora.enabled"
            raise ConfigError(
                f"{section}.student=fresh: {whose} is a newly initialised tiny model; unset {key} "
                f"(or keep {section}.student=continue)"
            )


# Keys that were renamed: (section, old name) -> new name. A recipe or a saved run's config.yaml with the old name
# still loads (and resumes), as the new key.
RENAMED_KEYS = {("trainer", "replay_examples"): "rehearsal_examples"}


def _rename_old_keys(data: dict[str, Any]) -> None:
    for (section, old), new in RENAMED_KEYS.items():
        values = data.get(section)
        if isinstance(values, dict) and old in values:
            if new in values:
                raise ConfigError(f"{section}.{old} is the old name of {section}.{new}; give only {section}.{new}")
            values[new] = values.pop(old)


def _reject_booleans_for_numbers(data: Any, cls: Any = Config, prefix: str = "") -> None:
    """pydantic reads ``true`` as 1 for a number (``trainer.updates=true`` would train one update): refuse it."""
    if not isinstance(data, dict):
        return
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        hint = hints.get(key)
        if hint is None:
            continue  # an unknown key: pydantic names it
        if cls is Config and key == "task" and isinstance(value, dict):
            name = value.get("name")
            section = TASK_CONFIGS.get(name) if isinstance(name, str) else None
            if section is not None:  # an unknown task name: pydantic names it
                _reject_booleans_for_numbers(value, section, "task.")
            continue
        if dataclasses.is_dataclass(hint):
            _reject_booleans_for_numbers(value, hint, f"{prefix}{key}.")
            continue
        allowed = set(typing.get_args(hint)) | {hint}
        if isinstance(value, bool) and bool not in allowed and allowed & {int, float}:
            raise ConfigError(f"{prefix}{key}={value!r}: expected a number, not true/false")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one section", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise ConfigError(f"{path}: a directory, not a recipe file (a YAML file such as recipes/default.yaml)")
    if not path.is_file():
        raise ConfigError(f"recipe not found: {path}")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file (byte {e.start} is not UTF-8); a recipe is YAML text") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or "not valid YAML"
        raise ConfigError(f"{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of sections (run:, model:, ...), got {type(data).__name__}")
    return data


def _apply_override(data: dict[str, Any], override: str) -> None:
    key, sep, raw = override.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {override!r} is not of the form section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    *parents, leaf = key.split(".")
    node = data
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parents[: i + 1])
            raise ConfigError(f"override {key}: {where} is a value, not a section")
        node = child
    node[leaf] = value


def _all_keys(cls: Any = Config, prefix: str = "", task: str | None = None) -> list[str]:
    """Every key of a recipe; the ``task`` section's keys are those of every task, or of the one named ``task``."""
    keys = []
    defaults = _defaults(cls)
    for f in dataclasses.fields(cls):
        keys.append(prefix + f.name)
        value = defaults[f.name]
        if cls is Config and f.name == "task":
            for name, section in TASK_CONFIGS.items():
                if task in (None, name):
                    keys.extend(k for k in _all_keys(section, "task.") if k not in keys)
        elif dataclasses.is_dataclass(value):
            keys.extend(_all_keys(type(value), f"{prefix}{f.name}."))
    return keys


def _suggest(bad_key: str, task: str | None = None) -> str:
    """The valid keys whose last part is closest to the bad key's last part (same section first on a tie); for a
    key of the ``task`` section, the keys of the task named (``task``) only."""
    keys = _all_keys(task=task)
    parent, _, leaf = bad_key.rpartition(".")
    scores = {k: difflib.SequenceMatcher(None, leaf, k.rpartition(".")[2]).ratio() for k in keys}
    best = max(scores.values())
    if best >= 0.75:
        close = sorted((k for k, r in scores.items() if r == best), key=lambda k: k.rpartition(".")[0] != parent)
        return "; did you mean " + " or ".join(f"'{k}'" for k in close) + "?"
    siblings = [k for k in keys if k.rpartition(".")[0] == parent]
    names = ", ".join(k.rpartition(".")[2] for k in siblings) or ", ".join(k for k in keys if "." not in k)
    return f"; valid keys{' in ' + parent if parent else ''}: {names}"


_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _describe(error: ValidationError, recipe: Any) -> str:
    err = error.errors()[0]
    loc = [str(part) for part in err["loc"]]
    task = None
    if loc[:1] == ["task"] and len(loc) > 1 and loc[1] in TASK_CONFIGS:  # the union's tag: task.<name>.<key>
        task = loc.pop(1)
    key = ".".join(loc)
    value = err.get("input")
    kind = err["type"]
    ctx = err.get("ctx") or {}
    source = f" (in {recipe})" if recipe is not None else ""
    if kind == "union_tag_invalid":
        return f"{key}.name={ctx.get('tag')!r}: allowed values are {ctx.get('expected_tags')}"
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        if task is not None:
            return f"unknown key '{key}' for task.name={task}{source}{_suggest(key, task)}"
        return f"unknown key '{key}'{source}{_suggest(key)}"
    if kind == "literal_error":
        return f"{key}={value!r}: allowed values are {ctx.get('expected')}"
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()))
        return f"{key}={value!r} is out of range: must be {_BOUNDS[kind]} {bound}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{key}={value!r}: expected an integer"
    if kind in ("float_parsing", "float_type"):
        return f"{key}={value!r}: expected a number"
    if kind in ("bool_parsing", "bool_type"):
        return f"{key}={value!r}: expected true or false"
    if kind in ("string_type",):
        return f"{key}={value!r}: expected a string"
    if kind == "list_type":
        return f"{key}={value!r}: expected a list, e.g. [{value}]"
    if kind in ("dataclass_type", "dataclass_args_type", "model_type"):
        return f"{key}: expected a section (a mapping of keys), got {value!r}"
    if kind == "value_error":
        message = err["msg"].removeprefix("Value error, ")
        head, sep, rest = message.partition(": ")
        if sep and f"{key}.{head.split('.')[0]}" in _all_keys():  # the message names a key of the section
            return f"{key}.{head}: {rest}"
        return f"{key or 'recipe'}: {message}"
    return f"{key}={value!r}: {err['msg']}"


_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def _check_model_dir(key: str, path: Path) -> None:
    """A local model directory: a config.json that parses and a weights file (their contents load later)."""
    if not path.is_dir():
        raise ConfigError(f"{key}: no such directory: {path}")
    if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        return  # a LoRA adapter directory: its base model is checked when it loads
    config = path / "config.json"
    try:
        if not isinstance(json.loads(config.read_text(encoding="utf-8")), dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        raise ConfigError(f"{key}: {path} is not a Hugging Face model directory (no config.json)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"{key}: {config} does not parse ({e})") from None
    if not any((path / name).is_file() for name in _WEIGHTS):
        raise ConfigError(f"{key}: {path} has no weights ({' or '.join(_WEIGHTS[::2])})")


def _check_adversary_file(path: str) -> None:
    """``sampler.adversary_path``: a file of adversary weights that load (safetensors with the shape's metadata)."""
    if not Path(path).is_file():
        raise ConfigError(f"sampler.adversary_path: no such file: {path}")
    from debate_amp.adversary import Adversary

    try:
        Adversary.load(path)
    except Exception as e:  # not safetensors, or other weights: safetensors' and torch's many error types
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise ConfigError(f"sampler.adversary_path: {path} is not an adversary's weights ({reason})") from None


def _check_replay_file(path: Path) -> None:
    """``human.replay_from``: a JSONL file of label lines (``debate-amp labels --export``) or a label store, whole."""
    if not path.is_file():
        raise ConfigError(f"human.replay_from: no such file: {path}")
    from debate_amp.agents.labels import LabelStoreError, check_label_store

    try:
        if path.suffix == ".jsonl":
            from debate_amp.agents.humans.replay import load_jsonl_labels

            load_jsonl_labels(path)  # a bad line names file:line
        else:
            check_label_store(path)
    except UnicodeDecodeError:
        raise ConfigError(f"human.replay_from: {path}: not a text file of label lines") from None
    except (ValueError, LabelStoreError) as e:
        raise ConfigError(f"human.replay_from: {e}") from None


def _check_output_dir(path: Path) -> None:
    """``run.output_dir``: a folder, or one that can be made there (no file on the way). Whether it can be written
    is checked by the commands that write runs (``trainer/rundir.py``)."""
    existing = closest_existing(path)
    if not existing.is_dir():
        raise ConfigError(f"run.output_dir: {existing} is a file, not a folder")


def _check_paths(cfg: Config) -> None:
    _check_output_dir(Path(cfg.run.output_dir))
    if cfg.model.path is not None:
        _check_model_dir("model.path", Path(cfg.model.path))
    if cfg.sampler.adversary_path is not None:
        _check_adversary_file(cfg.sampler.adversary_path)
    if cfg.human.replay_from is not None:
        _check_replay_file(Path(cfg.human.replay_from))
    if cfg.human.model_path is not None:
        _check_model_dir("human.model_path", Path(cfg.human.model_path))
    if cfg.human.store is not None:
        from debate_amp.agents.labels import LabelStoreError, check_label_store

        if not Path(cfg.human.store).parent.is_dir():
            raise ConfigError(f"human.store: no such folder: {Path(cfg.human.store).parent}")
        try:
            check_label_store(cfg.human.store)
        except LabelStoreError as e:
            raise ConfigError(f"human.store: {e}") from None
    if isinstance(cfg.task, DatasetConfig):
        for path in cfg.task.paths:
            if not Path(path).exists():
                raise ConfigError(f"task.paths: no such file or folder: {path}")
        from debate_amp.tasks.dataset import load_rows  # the datasets library, only for a dataset recipe

        try:
            load_rows(tuple(cfg.task.paths), cfg.task.question_field, cfg.task.answer_field)
        except ValueError as e:
            raise ConfigError(f"task.paths: {e}") from None
    for tracker in cfg.run.log_with:
        if not any(importlib.util.find_spec(module) for module in TRACKER_MODULES[tracker]):
            raise ConfigError(
                f"run.log_with: {tracker} is not installed here (pip install {TRACKER_MODULES[tracker][0]}), "
                "or leave it out of run.log_with"
            )


# ---------------------------------------------------------------------------------------------------------------
# Saving and describing


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _defaults(cls: Any) -> dict[str, Any]:
    """Each field's default, without building the section (a dataset section is not valid without its paths)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def save_config(cfg: Config, path: str | os.PathLike[str]) -> None:
    """Write the resolved recipe (every field, defaults included) as YAML."""
    write_whole(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))  # a --resume checks against it


def describe_fields(cls: Any = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, docstring) for every leaf field, for ``debate-amp config``."""
    rows: list[tuple[str, str, str]] = []
    defaults = _defaults(cls)
    for f in dataclasses.fields(cls):
        value = defaults[f.name]
        full = f"{prefix}{f.name}"
        if cls is Config and f.name == "task":  # every task's keys, each once (the generic ones are shared)
            for section in TASK_CONFIGS.values():
                rows.extend(row for row in describe_fields(section, "task.") if row[0] not in {r[0] for r in rows})
        elif dataclasses.is_dataclass(value):
            rows.extend(describe_fields(type(value), full + "."))
        else:
            doc = cls.__pydantic_fields__[f.name].description or ""
            rows.append((full, repr(value), " ".join(doc.split())))
    return rows
